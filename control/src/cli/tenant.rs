//! `realmctl tenant …`: create, update, list, show, retry and delete, with `--wait`.

use super::client::{CliError, Client};
use super::{output, pretty, provision, wait_for_gateways, TenantCmd, TenantFields};
use crate::views::{Deleted, TenantPage, TenantView};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

pub(super) async fn tenant(c: &Client, cmd: TenantCmd, json: bool) -> Result<String, CliError> {
    match cmd {
        TenantCmd::Create { id, fields } => {
            let mut body = fields.body()?;
            body.insert("id".into(), Value::String(id));
            let t: TenantView = c
                .send(
                    Method::POST,
                    "/v1/tenants",
                    Some(&Value::Object(body)),
                    None,
                )
                .await?;
            finish(c, t, &fields, json, "created").await
        }
        TenantCmd::Update {
            id,
            fields,
            if_revision,
        } => {
            let body = Value::Object(fields.body()?);
            let path = format!("/v1/tenants/{}", crate::percent::encode(&id));
            let t: TenantView = c
                .send(Method::PATCH, &path, Some(&body), if_revision)
                .await?;
            finish(c, t, &fields, json, "updated").await
        }
        TenantCmd::List => {
            let page: TenantPage = c.get_all("/v1/tenants", "tenants").await?;
            let all = page.tenants;
            if json {
                return pretty(&all);
            }
            Ok(output::tenants(&all))
        }
        TenantCmd::Show { id } => {
            let t: TenantView = c
                .get(&format!("/v1/tenants/{}", crate::percent::encode(&id)))
                .await?;
            if json {
                return pretty(&t);
            }
            Ok(output::tenant(&t) + &provision::steps_text(&t))
        }
        TenantCmd::Retry {
            id,
            wait,
            wait_timeout,
        } => {
            let timeout = wait.then(|| Duration::from_secs(wait_timeout));
            provision::retry(c, &id, timeout, json).await
        }
        TenantCmd::Delete {
            id,
            if_revision,
            wait,
            wait_timeout,
        } => {
            let path = format!("/v1/tenants/{}", crate::percent::encode(&id));
            let d: Deleted = c.send(Method::DELETE, &path, None, if_revision).await?;
            if wait {
                // Unrouted everywhere first, then every provisioned part removed: only then
                // can the same id be created again.
                let timeout = Duration::from_secs(wait_timeout);
                wait_for_gateways(c, d.table_version, timeout).await?;
                provision::wait_gone(c, &id, timeout).await?;
            }
            if json {
                return pretty(&d);
            }
            Ok(format!(
                "deleted tenant {} (table version {})\n",
                d.deleted, d.table_version
            ))
        }
    }
}

async fn finish(
    c: &Client,
    t: TenantView,
    f: &TenantFields,
    json: bool,
    what: &str,
) -> Result<String, CliError> {
    let mut credentials = None;
    let t = if f.wait {
        let timeout = Duration::from_secs(f.wait_timeout);
        let t = provision::wait_ready(c, &t.id, timeout).await?;
        wait_for_gateways(c, t.table_version, timeout).await?;
        if what == "created" && !json {
            credentials = provision::claim(c, &t.id).await;
        }
        t
    } else {
        t
    };
    if json {
        return pretty(&t);
    }
    let served = if f.wait {
        ", served by every gateway"
    } else {
        ""
    };
    Ok(format!(
        "{what} tenant {} (revision {}, table version {}{served})\n{}{}{}",
        t.id,
        t.revision,
        t.table_version,
        output::tenant(&t),
        provision::steps_text(&t),
        credentials.unwrap_or_default()
    ))
}
