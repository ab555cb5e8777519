//! `realmctl domain add|list|rm`: tenants' custom domains, over `/v1/tenants/{id}/domains`.

use super::client::{CliError, Client};
use super::output::columns;
use super::pretty;
use crate::views::{Deleted, DomainList, DomainView};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

#[derive(Subcommand)]
pub enum DomainCmd {
    /// Add a custom domain to a tenant: it stays pending until the TXT record printed here
    /// is published and seen, then it becomes one of the tenant's hosts and gets a
    /// certificate of its own.
    Add {
        /// The tenant's id.
        tenant: String,
        /// The domain (one exact name outside the platform's zone, like app.acme-corp.com).
        domain: String,
    },
    /// List custom domains and where their ownership checks stand.
    List {
        /// Only this tenant's (default: every tenant's).
        tenant: Option<String>,
    },
    /// Remove a custom domain: it leaves the tenant's hosts (and the table) first, then its
    /// certificate is revoked and deleted.
    Rm {
        /// The tenant's id.
        tenant: String,
        /// The domain.
        domain: String,
    },
}

fn path(tenant: &str) -> String {
    format!("/v1/tenants/{}/domains", crate::percent::encode(tenant))
}

pub(super) async fn domain(c: &Client, cmd: DomainCmd, json: bool) -> Result<String, CliError> {
    match cmd {
        DomainCmd::Add { tenant, domain } => {
            let body = json!({ "domain": domain });
            let v: DomainView = c
                .send(Method::POST, &path(&tenant), Some(&body), None)
                .await?;
            if json {
                return pretty(&v);
            }
            Ok(added(&v))
        }
        DomainCmd::List { tenant } => {
            let p = tenant
                .as_deref()
                .map_or_else(|| "/v1/domains".to_owned(), path);
            let v: DomainList = c.get_all(&p, "domains").await?;
            if json {
                return pretty(&v);
            }
            Ok(list(&v.domains))
        }
        DomainCmd::Rm { tenant, domain } => {
            let p = format!("{}/{}", path(&tenant), crate::percent::encode(&domain));
            let d: Deleted = c.send(Method::DELETE, &p, None, None).await?;
            if json {
                return pretty(&d);
            }
            Ok(format!(
                "removed domain {} from tenant {tenant} (table version {}); its certificate is revoked and deleted next\n",
                d.deleted, d.table_version
            ))
        }
    }
}

/// What the operator hands to the domain's owner.
fn added(v: &DomainView) -> String {
    let mut out = format!("domain {} of tenant {}: {}\n", v.domain, v.tenant, v.state);
    if v.state != "verified" {
        out.push_str(&format!(
            "publish this record in the domain's DNS; realmctl checks it until {}:\n  {} {} {:?}\nthen point {} at the edge (a CNAME to a platform host).\n",
            v.check_until, v.txt.name, v.txt.kind, v.txt.value, v.domain
        ));
    }
    out
}

fn list(domains: &[DomainView]) -> String {
    let rows: Vec<Vec<String>> = domains
        .iter()
        .map(|d| {
            vec![
                d.domain.clone(),
                d.tenant.clone(),
                d.state.clone(),
                format!("{} TXT {}", d.txt.name, d.txt.value),
                d.reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    columns(&["DOMAIN", "TENANT", "STATE", "RECORD", "REASON"], &rows)
}
