//! `realmctl upstream set|list|delete`: upstream pools over `/v1/upstreams`.

use super::*;

pub(super) async fn upstream(c: &Client, cmd: UpstreamCmd, json: bool) -> Result<String, CliError> {
    match cmd {
        UpstreamCmd::Set {
            name,
            endpoints,
            health_path,
            connect_timeout_ms,
            read_timeout_ms,
            write_timeout_ms,
        } => {
            let mut body = Map::new();
            body.insert("endpoints".into(), json!(endpoints));
            if let Some(p) = health_path {
                body.insert("health_check".into(), json!({"http_path": p}));
            }
            for (k, v) in [
                ("connect_timeout_ms", connect_timeout_ms),
                ("read_timeout_ms", read_timeout_ms),
                ("write_timeout_ms", write_timeout_ms),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), json!(v));
                }
            }
            let path = format!("/v1/upstreams/{}", crate::percent::encode(&name));
            let u: UpstreamView = c
                .send(Method::PUT, &path, Some(&Value::Object(body)), None)
                .await?;
            if json {
                return pretty(&u);
            }
            Ok(format!(
                "upstream {} set (table version {})\n",
                u.name, u.table_version
            ))
        }
        UpstreamCmd::List => {
            let v: UpstreamList = c.get_all("/v1/upstreams", "upstreams").await?;
            if json {
                return pretty(&v.upstreams);
            }
            Ok(output::upstreams(&v.upstreams))
        }
        UpstreamCmd::Show { name } => {
            let u: UpstreamView = c
                .get(&format!("/v1/upstreams/{}", crate::percent::encode(&name)))
                .await?;
            if json {
                return pretty(&u);
            }
            Ok(output::upstreams(std::slice::from_ref(&u)))
        }
        UpstreamCmd::Delete { name } => {
            let d: Deleted = c
                .send(
                    Method::DELETE,
                    &format!("/v1/upstreams/{}", crate::percent::encode(&name)),
                    None,
                    None,
                )
                .await?;
            if json {
                return pretty(&d);
            }
            Ok(format!(
                "deleted upstream {} (table version {})\n",
                d.deleted, d.table_version
            ))
        }
    }
}

#[derive(Deserialize)]
struct UpstreamList {
    upstreams: Vec<UpstreamView>,
}
