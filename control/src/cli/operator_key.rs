//! `realmctl operator-key create|list|revoke`: operator API keys over `/v1/operator-keys`
//! (the operator token, or an admin's session, mints them; an operator key cannot).

use super::*;
use crate::operators::keys::{CreatedOperatorKey, OperatorKeyList, OperatorKeyView};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum OperatorKeyCmd {
    /// Mint an operator key with a role; its secret is printed once, alone on the first line.
    Create {
        /// What it is for, e.g. ci-deploys (1-64 characters).
        #[arg(long)]
        name: String,
        /// `viewer` (reads everything but secrets, changes nothing) or `admin` (what the
        /// operator token may, except minting or revoking operator keys).
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Expiry as RFC 3339 UTC, e.g. 2027-01-01T00:00:00Z; without it the key never
        /// expires.
        #[arg(long, conflicts_with = "expires_in")]
        expires_at: Option<String>,
        /// Expiry as a duration from now, e.g. 90d or 12h.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Every operator key: role, state, expiry (never a secret).
    List,
    /// Revoke an operator key: every call with it is refused from now on.
    Revoke {
        /// The key's id (`realmctl operator-key list`), not its secret.
        id: String,
    },
}

/// `--role`.
#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Viewer,
    Admin,
}

fn expiry(at: Option<String>, within: Option<String>) -> Result<Option<String>, CliError> {
    let Some(d) = within else {
        return Ok(at);
    };
    let d = humantime::parse_duration(&d)
        .map_err(|e| CliError::Usage(format!("--expires-in {d:?}: {e} (try 90d or 12h)")))?;
    let at = std::time::SystemTime::now() + d;
    Ok(Some(humantime::format_rfc3339_seconds(at).to_string()))
}

/// The table `operator-key list` prints.
fn table(keys: &[OperatorKeyView]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.id.clone(),
                k.name.clone(),
                k.role.name().to_owned(),
                k.state.clone(),
                k.prefix.clone(),
                k.expires_at.clone().unwrap_or_else(|| "never".into()),
                k.created_by.clone(),
            ]
        })
        .collect();
    output::columns(
        &[
            "ID",
            "NAME",
            "ROLE",
            "STATE",
            "PREFIX",
            "EXPIRES",
            "CREATED BY",
        ],
        &rows,
    )
}

pub(super) async fn operator_key(
    c: &Client,
    cmd: OperatorKeyCmd,
    json: bool,
) -> Result<String, CliError> {
    match cmd {
        OperatorKeyCmd::Create {
            name,
            role,
            expires_at,
            expires_in,
        } => {
            let role = match role {
                RoleArg::Viewer => "viewer",
                RoleArg::Admin => "admin",
            };
            let mut body = json!({"name": name, "role": role});
            if let Some(at) = expiry(expires_at, expires_in)? {
                body["expires_at"] = json!(at);
            }
            let k: CreatedOperatorKey = c
                .send(Method::POST, "/v1/operator-keys", Some(&body), None)
                .await?;
            if json {
                return pretty(&k);
            }
            // The secret first and alone on its line, so `| head -1` (or `grep rgo_`) takes
            // it; the summary after it names the key without its display prefix.
            Ok(format!(
                "{}\n\ncreated operator key {} ({}, role {}, expires {})\nStore it now: only its digest is kept, it cannot be shown again.\n",
                k.key,
                k.view.id,
                k.view.name,
                k.view.role.name(),
                k.view.expires_at.as_deref().unwrap_or("never"),
            ))
        }
        OperatorKeyCmd::List => {
            let v: OperatorKeyList = c.get("/v1/operator-keys").await?;
            if json {
                return pretty(&v.operator_keys);
            }
            Ok(table(&v.operator_keys))
        }
        OperatorKeyCmd::Revoke { id } => {
            let path = format!("/v1/operator-keys/{}", crate::percent::encode(&id));
            let k: OperatorKeyView = c.send(Method::DELETE, &path, None, None).await?;
            if json {
                return pretty(&k);
            }
            Ok(format!(
                "revoked operator key {} ({}); calls with it are refused from now on\n",
                k.id, k.name
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_parses_and_the_list_has_no_secret_column() {
        let cli = Cli::try_parse_from([
            "realmctl",
            "operator-key",
            "create",
            "--name",
            "ci",
            "--role",
            "viewer",
            "--expires-in",
            "30d",
        ])
        .expect("parse");
        let Command::OperatorKey(OperatorKeyCmd::Create {
            name,
            role,
            expires_in,
            ..
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(name, "ci");
        assert!(matches!(role, RoleArg::Viewer));
        let at = expiry(None, expires_in).expect("expiry").expect("some");
        assert!(at.ends_with('Z'), "{at}");
        assert!(expiry(None, Some("soon".into())).is_err());
        for bad in [
            &[
                "realmctl",
                "operator-key",
                "create",
                "--name",
                "x",
                "--role",
                "root",
            ][..],
            &["realmctl", "operator-key", "create", "--role", "admin"],
            &["realmctl", "operator-key", "revoke"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let k = OperatorKeyView {
            id: "o1".into(),
            name: "ci".into(),
            role: crate::operators::Role::Admin,
            prefix: "rgo_AbCd".into(),
            state: "live".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            created_by: "operator_token".into(),
            expires_at: None,
            revoked_at: None,
        };
        let out = table(&[k]);
        assert!(out.starts_with("ID"), "{out}");
        assert!(
            out.contains("o1  ci    admin  live   rgo_AbCd  never"),
            "{out}"
        );
    }
}
