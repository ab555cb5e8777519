//! Request bodies from command-line flags: a tenant's fields, routes, catalog apps and rate
//! limits, in the API's JSON (the API validates them; these only split the flags' syntax).

use super::client::CliError;
use super::{HttpsArg, StatusArg, TenantFields};
use serde_json::{json, Map, Value};

/// `100/1` or `100/60s`: requests per window of seconds.
pub(super) fn parse_rate_limit(raw: &str) -> Result<Value, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "--rate-limit {raw:?}: expected REQUESTS/SECONDS, like 100/1 or 1000/60"
        ))
    };
    let (n, w) = raw.split_once('/').ok_or_else(bad)?;
    let requests: u64 = n.trim().parse().map_err(|_| bad())?;
    let window: u32 = w.trim().trim_end_matches('s').parse().map_err(|_| bad())?;
    Ok(json!({"requests": requests, "window_s": window}))
}

impl TenantFields {
    pub(super) fn body(&self) -> Result<Map<String, Value>, CliError> {
        let mut body = Map::new();
        if !self.hosts.is_empty() {
            body.insert("hosts".into(), json!(self.hosts));
        }
        let mut routes = self
            .routes
            .iter()
            .map(|r| parse_route(r))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(u) = &self.upstream {
            routes.push(json!({"prefix": "/", "upstream": u, "auth": "public"}));
        }
        if !routes.is_empty() {
            body.insert("routes".into(), Value::Array(routes));
        }
        if let Some(d) = &self.display_name {
            body.insert("display_name".into(), json!(d));
        }
        if !self.apps.is_empty() {
            let apps = self
                .apps
                .iter()
                .map(|a| parse_app(a))
                .collect::<Result<Vec<_>, _>>()?;
            body.insert("catalog".into(), Value::Array(apps));
        }
        if self.no_shell {
            body.insert("shell".into(), Value::Null);
        } else if self.shell || self.shell_upstream.is_some() || !self.shell_excludes.is_empty() {
            let mut shell = json!({"enabled": true});
            if let Some(u) = &self.shell_upstream {
                shell["upstream"] = json!(u);
            }
            if !self.shell_excludes.is_empty() {
                shell["excludes"] = json!(self.shell_excludes);
            }
            body.insert("shell".into(), shell);
        }
        if let Some(s) = self.status {
            let s = match s {
                StatusArg::Active => "active",
                StatusArg::Suspended => "suspended",
            };
            body.insert("status".into(), json!(s));
        }
        if let Some(h) = self.https {
            let h = match h {
                HttpsArg::Off => "off",
                HttpsArg::Redirect => "redirect",
                HttpsArg::Only => "only",
            };
            body.insert("https".into(), json!(h));
        }
        if self.no_hsts {
            body.insert("hsts".into(), Value::Null);
        } else if let Some(max_age) = self.hsts_max_age {
            body.insert(
                "hsts".into(),
                json!({"max_age": max_age, "include_subdomains": self.hsts_include_subdomains,
                       "preload": self.hsts_preload}),
            );
        }
        Ok(body)
    }
}

/// `NAME=PATH`: a catalog entry titled NAME with its first letter in upper case.
fn parse_app(raw: &str) -> Result<Value, CliError> {
    let (name, path) = raw.split_once('=').ok_or_else(|| {
        CliError::Usage(format!(
            "--app {raw:?}: expected NAME=PATH, like todos=/todos/"
        ))
    })?;
    let mut chars = name.chars();
    let title: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    Ok(json!({"name": name, "title": title, "path": path}))
}

/// `PREFIX=UPSTREAM[:AUTH[,AUTH…]]`.
fn parse_route(raw: &str) -> Result<Value, CliError> {
    let (prefix, rest) = raw.split_once('=').ok_or_else(|| {
        CliError::Usage(format!(
            "--route {raw:?}: expected PREFIX=UPSTREAM[:AUTH], like /=app"
        ))
    })?;
    let (upstream, auth) = rest.split_once(':').unwrap_or((rest, "public"));
    // `session,jwt`: any of the policies (the API validates the names).
    let auth = if auth.contains(',') {
        json!(auth.split(',').collect::<Vec<_>>())
    } else {
        json!(auth)
    };
    Ok(json!({"prefix": prefix, "upstream": upstream, "auth": auth}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_apps_and_rate_limits() {
        assert_eq!(
            parse_route("/api=app:public").expect("route"),
            json!({"prefix": "/api", "upstream": "app", "auth": "public"})
        );
        assert_eq!(parse_route("/=app").expect("route")["auth"], "public");
        assert!(parse_route("/app").is_err());
        assert_eq!(
            parse_route("/todos/=app:session,jwt").expect("route")["auth"],
            json!(["session", "jwt"])
        );
        assert_eq!(
            parse_app("todos=/todos/").expect("app"),
            json!({"name": "todos", "title": "Todos", "path": "/todos/"})
        );
        assert!(parse_app("todos").is_err());
        assert_eq!(
            parse_rate_limit("100/60s").expect("limit"),
            json!({"requests": 100, "window_s": 60})
        );
        assert!(parse_rate_limit("fast").is_err());
    }

    #[test]
    fn https_and_hsts_flags() {
        use crate::cli::{Cli, Command, TenantCmd};
        use clap::Parser;
        let fields = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["realmctl", "tenant", "update", "acme"].iter().chain(args))
                    .expect("parse");
            let Command::Tenant(TenantCmd::Update { fields, .. }) = cli.command else {
                panic!("wrong command");
            };
            fields.body().expect("body")
        };
        let body = fields(&[
            "--https",
            "redirect",
            "--hsts-max-age",
            "31536000",
            "--hsts-include-subdomains",
        ]);
        assert_eq!(body["https"], "redirect");
        assert_eq!(
            body["hsts"],
            json!({"max_age": 31536000, "include_subdomains": true, "preload": false})
        );
        assert_eq!(fields(&["--no-hsts"])["hsts"], Value::Null);
        assert!(!fields(&["--https", "off"]).contains_key("hsts"));
        for bad in [
            &["--https", "sometimes"][..],
            &["--hsts-preload"],
            &["--no-hsts", "--hsts-max-age", "1"],
        ] {
            assert!(
                Cli::try_parse_from(["realmctl", "tenant", "update", "acme"].iter().chain(bad))
                    .is_err(),
                "{bad:?}"
            );
        }
    }
}
