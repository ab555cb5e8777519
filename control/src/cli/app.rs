//! `realmctl app create|list|revoke|database`: app credentials over `/v1/apps`, and a
//! tenant's database location.

use super::*;
use crate::service::apps::{AppList, AppView, CreatedApp, DatabaseLocation};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AppCmd {
    /// Mint an app credential bound to a pool; its secret is printed once.
    Create {
        /// What to call it, e.g. todos.
        name: String,
        /// The upstream pool the app serves: it may read the databases of exactly the
        /// tenants whose routes forward to this pool.
        #[arg(long)]
        pool: String,
    },
    /// List app credentials (never their secrets).
    List,
    /// Revoke an app credential at once.
    Revoke {
        /// The credential's id (from `app list`).
        id: String,
    },
    /// Where a tenant's provisioned database lives (what an app is told).
    Database {
        /// The tenant id.
        tenant: String,
    },
}

pub(super) async fn app(c: &Client, cmd: AppCmd, json: bool) -> Result<String, CliError> {
    match cmd {
        AppCmd::Create { name, pool } => {
            let body = json!({"name": name, "pool": pool});
            let a: CreatedApp = c.send(Method::POST, "/v1/apps", Some(&body), None).await?;
            if json {
                return pretty(&a);
            }
            // The secret first and alone on its line, so `| head -1` takes it.
            Ok(format!(
                "{}\n\ncreated app credential {} ({}) for pool {}\nStore it now: only its digest is kept, it cannot be shown again.\n",
                a.credential, a.view.id, a.view.name, a.view.pool
            ))
        }
        AppCmd::List => {
            let v: AppList = c.get_all("/v1/apps", "apps").await?;
            if json {
                return pretty(&v.apps);
            }
            let mut out =
                String::from("ID                 NAME         POOL         PREFIX    STATE\n");
            for a in &v.apps {
                out.push_str(&format!(
                    "{:<18} {:<12} {:<12} {:<9} {}\n",
                    a.id,
                    a.name,
                    a.pool,
                    a.prefix,
                    a.revoked_at
                        .as_deref()
                        .map_or("live".into(), |at| format!("revoked {at}"))
                ));
            }
            Ok(out)
        }
        AppCmd::Revoke { id } => {
            let path = format!("/v1/apps/{}", crate::percent::encode(&id));
            let a: AppView = c.send(Method::DELETE, &path, None, None).await?;
            if json {
                return pretty(&a);
            }
            Ok(format!("revoked app credential {} ({})\n", a.id, a.name))
        }
        AppCmd::Database { tenant } => {
            let path = format!("/v1/tenants/{}/database", crate::percent::encode(&tenant));
            let mut loc: DatabaseLocation = c.get(&path).await?;
            if json {
                return pretty(&loc);
            }
            if loc.auth_token.take().is_some() {
                return Ok(format!(
                    "{} (remote; token in --json)\n",
                    loc.url.unwrap_or_default()
                ));
            }
            Ok(format!("{}\n", loc.path.unwrap_or_default()))
        }
    }
}
