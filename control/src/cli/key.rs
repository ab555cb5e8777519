//! `realmctl key create|list|show|revoke`: API keys over `/v1/keys`.

use super::body::parse_rate_limit;
use super::*;

pub(super) async fn key(c: &Client, cmd: KeyCmd, json: bool) -> Result<String, CliError> {
    match cmd {
        KeyCmd::Create {
            tenant,
            namespaces,
            expires_at,
            expires_in,
            rate_limit,
            wait,
            wait_timeout,
        } => {
            let mut body = Map::new();
            if let Some(t) = tenant {
                body.insert("tenant".into(), json!(t));
            }
            body.insert("namespaces".into(), json!(namespaces));
            let expires_at = match expires_in {
                Some(d) => {
                    let d = humantime::parse_duration(&d).map_err(|e| {
                        CliError::Usage(format!("--expires-in {d:?}: {e} (try 30d or 12h)"))
                    })?;
                    let at = std::time::SystemTime::now() + d;
                    Some(humantime::format_rfc3339_seconds(at).to_string())
                }
                None => expires_at,
            };
            if let Some(at) = expires_at {
                body.insert("expires_at".into(), json!(at));
            }
            if let Some(r) = rate_limit {
                body.insert("rate_limit".into(), parse_rate_limit(&r)?);
            }
            let k: CreatedKey = c
                .send(Method::POST, "/v1/keys", Some(&Value::Object(body)), None)
                .await?;
            if wait {
                wait_for_gateways(c, k.view.table_version, Duration::from_secs(wait_timeout))
                    .await?;
            }
            if json {
                return pretty(&k);
            }
            // The secret first and alone on its line, so `| head -1` (or `grep rgk_`) takes
            // it; the summary after it names the key without its display prefix.
            Ok(format!(
                "{}\n\ncreated key {} for {} (namespaces {}; table version {})\nStore it now: only its digest is kept, it cannot be shown again.\n",
                k.key,
                k.view.id,
                k.view
                    .tenant
                    .as_deref()
                    .map_or_else(|| "the operator".to_owned(), |t| format!("tenant {t}")),
                k.view.namespaces.join(","),
                k.view.table_version,
            ))
        }
        KeyCmd::List => {
            let v: KeyList = c.get_all("/v1/keys", "keys").await?;
            if json {
                return pretty(&v.keys);
            }
            Ok(output::keys(&v.keys))
        }
        KeyCmd::Revoke {
            id,
            wait,
            wait_timeout,
        } => {
            let path = format!("/v1/keys/{}", crate::percent::encode(&id));
            let k: KeyView = c.send(Method::DELETE, &path, None, None).await?;
            if wait {
                wait_for_gateways(c, k.table_version, Duration::from_secs(wait_timeout)).await?;
            }
            if json {
                return pretty(&k);
            }
            Ok(format!(
                "revoked key {} (table version {}{})\n",
                k.id,
                k.table_version,
                if wait {
                    ", refused by every gateway"
                } else {
                    ""
                }
            ))
        }
    }
}
