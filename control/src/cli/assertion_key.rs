//! `realmctl assertion-key list|rotate|retire`: the fleet's identity assertion keys, over
//! `/v1/assertion-keys`.

use super::client::{CliError, Client};
use super::output::columns;
use super::pretty;
use crate::service::assertion::AssertionKeysView;
use clap::Subcommand;
use reqwest::Method;

#[derive(Subcommand)]
pub enum AssertionKeyCmd {
    /// List the keys: which one signs, which are only published, and when each changes.
    List,
    /// Make a new signing key.
    ///
    /// It is published at once and signs after `assertion.activation_delay_s` (so apps that
    /// fetched the keys a moment ago find it); the key it replaces stays published for
    /// `assertion.retire_after_s`, or until `realmctl assertion-key retire`.
    Rotate,
    /// Take a rotated-out (published) key out of every table now: assertions it signed are
    /// refused from then on.
    Retire {
        /// The key's id (`kid`), as `realmctl assertion-key list` shows it.
        kid: String,
    },
}

pub async fn assertion_key(
    c: &Client,
    cmd: AssertionKeyCmd,
    json: bool,
) -> Result<String, CliError> {
    let v: AssertionKeysView = match &cmd {
        AssertionKeyCmd::List => c.get("/v1/assertion-keys/status").await?,
        AssertionKeyCmd::Rotate => {
            c.send(Method::POST, "/v1/assertion-keys/rotate", None, None)
                .await?
        }
        AssertionKeyCmd::Retire { kid } => {
            let path = format!("/v1/assertion-keys/{}/retire", crate::percent::encode(kid));
            c.send(Method::POST, &path, None, None).await?
        }
    };
    if json {
        return pretty(&v);
    }
    let head = match cmd {
        AssertionKeyCmd::List => String::new(),
        AssertionKeyCmd::Rotate => "rotation started\n".into(),
        AssertionKeyCmd::Retire { kid } => format!("retired {kid}\n"),
    };
    Ok(format!("{head}{}", list(&v)))
}

fn list(v: &AssertionKeysView) -> String {
    let rows: Vec<Vec<String>> = v
        .keys
        .iter()
        .map(|k| {
            vec![
                k.kid.clone(),
                k.state.name().to_owned(),
                k.created_at.clone(),
                k.activate_at.clone().unwrap_or_else(|| "-".into()),
                k.retire_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    format!(
        "issuer: {}\n{}",
        v.issuer.as_deref().unwrap_or("-"),
        columns(
            &["KID", "STATE", "CREATED", "SIGNS FROM", "RETIRES AT"],
            &rows
        )
    )
}
