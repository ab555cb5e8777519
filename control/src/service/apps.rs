//! App credentials (`rga_…`) and where a tenant's database lives: an app bound to a pool
//! reads the database location of exactly the tenants whose routes forward to that pool.
//! The secret is shown once; only its SHA-256 digest is kept (like API keys).

use super::{not_found, Control, ServiceError};
use crate::body::Fields;
use crate::ids::{TenantId, UpstreamName};
use crate::model::{AppRecord, Model, TenantRecord};
use crate::provision::database_token::{app_namespace, namespace_of, RemoteAccess};
use crate::provision::{StepKind, StepState};
use crate::time::{now_ms, rfc3339};
use base64::Engine;
use realmgate_table::Problem;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Who asks for a tenant's database.
#[derive(Debug, Clone)]
pub enum DbCaller {
    Operator,
    /// A live app credential.
    App(Box<AppRecord>),
}

/// An app credential as the API shows it (never the secret, never the digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    pub id: String,
    pub name: String,
    pub pool: String,
    /// The secret's first characters.
    pub prefix: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl From<&AppRecord> for AppView {
    fn from(a: &AppRecord) -> AppView {
        AppView {
            id: a.id.clone(),
            name: a.name.clone(),
            pool: a.pool.clone(),
            prefix: a.prefix.clone(),
            created_at: rfc3339(a.created_at_ms),
            revoked_at: a.revoked_at_ms.map(rfc3339),
        }
    }
}

/// `POST /v1/apps`: the credential, once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedApp {
    pub credential: String,
    #[serde(flatten)]
    pub view: AppView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppList {
    pub apps: Vec<AppView>,
}

/// `GET /v1/tenants/{id}/database`: where the tenant's provisioned database lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseLocation {
    pub tenant: String,
    /// `file` (an embedded libsql file on realmctl's host) or `remote` (a libsql server).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The server's namespace for this tenant (sqld's `x-namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// For an operator, the server's own token; for an app, a token for this tenant's
    /// namespace only, living `auth_token_expires_in` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Seconds from this answer until an app's `auth_token` expires: ask again before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_expires_in: Option<u64>,
}

/// `rga_` and base64url (no padding) of 32 bytes from the OS CSPRNG.
fn new_secret() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::Internal(format!("OS random source: {e}")))?;
    Ok(format!(
        "rga_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn new_id() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::Internal(format!("OS random source: {e}")))?;
    Ok(format!("a{}", hex::encode(bytes)))
}

impl Control {
    /// The live app credential with this digest (found by digest: constant-time in the
    /// secret, as the API key lookup).
    pub fn app_caller(&self, digest: &[u8; 32]) -> Option<AppRecord> {
        let model = self.read();
        model
            .app_by_digest(digest)
            .filter(|a| a.revoked_at_ms.is_none())
            .cloned()
    }

    pub(crate) fn set_remote_database(&self, access: RemoteAccess) {
        let _ = self.remote_database.set(access);
    }

    pub async fn create_app(&self, body: &[u8]) -> Result<CreatedApp, ServiceError> {
        let mut f = Fields::parse(body).map_err(ServiceError::Invalid)?;
        let name: Option<String> = f.require("name");
        let pool: Option<String> = f.require("pool");
        let mut problems = f.finish();
        if let Some(n) = &name {
            if n.is_empty() || n.len() > 64 || n.chars().any(char::is_control) {
                problems.push(Problem::new(
                    "name",
                    "1-64 characters, no control characters",
                ));
            }
        }
        if let Some(p) = &pool {
            if UpstreamName::parse(p).is_none() {
                problems.push(Problem::new("pool", "not an upstream pool name"));
            }
        }
        let (Some(name), Some(pool), true) = (name, pool, problems.is_empty()) else {
            return Err(ServiceError::Invalid(problems));
        };
        let registry = self.lock_registry().await;
        let secret = new_secret()?;
        let record = AppRecord {
            id: new_id()?,
            name,
            pool,
            digest: super::keys::digest(secret.as_bytes()),
            prefix: secret[..8].to_owned(),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        // Not in the table: saved and applied without a new table version or a push.
        registry.save_app(&record).await?;
        let view = AppView::from(&record);
        self.write().put_app(record);
        Ok(CreatedApp {
            credential: secret,
            view,
        })
    }

    pub fn list_apps(&self) -> Vec<AppView> {
        self.read().apps.values().map(AppView::from).collect()
    }

    /// A page of app credentials after `after`, in id order.
    pub fn list_apps_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<AppView>, Option<String>) {
        let model = self.read();
        let entries = model.apps.range::<str, _>(crate::model::after_bound(after));
        crate::model::page_of(entries.map(|(id, a)| (id.as_str(), a)), limit, |a| {
            Some(AppView::from(a))
        })
    }

    /// Revoke an app credential; revoking a revoked one changes nothing.
    pub async fn revoke_app(&self, id: &str) -> Result<AppView, ServiceError> {
        let registry = self.lock_registry().await;
        let record = {
            let model = self.read();
            let a = model.apps.get(id).ok_or_else(|| not_found("app", id))?;
            if a.revoked_at_ms.is_some() {
                return Ok(AppView::from(a));
            }
            AppRecord {
                revoked_at_ms: Some(now_ms()),
                ..a.clone()
            }
        };
        registry.save_app(&record).await?;
        let view = AppView::from(&record);
        self.write().put_app(record);
        Ok(view)
    }

    /// Where `id`'s database lives, for the operator or an app of one of its pools.
    pub fn tenant_database(
        &self,
        caller: &DbCaller,
        id: &TenantId,
    ) -> Result<DatabaseLocation, ServiceError> {
        let model = self.read();
        locate(
            &model,
            caller,
            id,
            self.remote_database.get(),
            now_ms() / 1000,
        )
    }
}

/// The rules, in order: scope (403) before anything that tells about the tenant; gone
/// (410); unknown (404); suspended (404 `tenant_suspended`: for now); database step not done (409
/// `not_provisioned`); a remote database for an app only with a token scoped to its
/// tenant's namespace (else 403). `now_s`: unix seconds, when a token is minted.
pub(crate) fn locate(
    model: &Model,
    caller: &DbCaller,
    id: &TenantId,
    remote: Option<&RemoteAccess>,
    now_s: u64,
) -> Result<DatabaseLocation, ServiceError> {
    let serves = |pools: &[String]| match caller {
        DbCaller::Operator => true,
        DbCaller::App(a) => pools.contains(&a.pool),
    };
    let forbidden = || {
        ServiceError::Forbidden(
            "this app credential reads the databases of its own pool's tenants only".into(),
        )
    };
    let gone = || {
        ServiceError::Gone(format!(
            "tenant {id} was deleted and its database archived; a tenant created again with this id gets a new, empty database"
        ))
    };
    let Some(t) = model.tenants.get(id) else {
        return match model.tombstones.get(id) {
            Some(pools) if serves(pools) => Err(gone()),
            _ if matches!(caller, DbCaller::App(_)) => Err(forbidden()),
            _ => Err(not_found("tenant", id.as_str())),
        };
    };
    if !serves(&Model::pools_of(t)) {
        return Err(forbidden());
    }
    if t.provision.state.deleting() {
        return Err(gone());
    }
    if !t.wire.status.is_active() {
        return Err(ServiceError::Withheld {
            code: "tenant_suspended",
            message: format!(
                "tenant {id} is suspended: its database is not handed out until it is active again"
            ),
            details: json!({"tenant": id.as_str()}),
        });
    }
    location_of(t, id, caller, remote, now_s)
}

fn location_of(
    t: &TenantRecord,
    id: &TenantId,
    caller: &DbCaller,
    remote: Option<&RemoteAccess>,
    now_s: u64,
) -> Result<DatabaseLocation, ServiceError> {
    let not_provisioned = |why: &str| ServiceError::Conflict {
        code: "not_provisioned",
        message: format!("tenant {id} has no database yet: {why}"),
        details: json!({"tenant": id.as_str()}),
    };
    let step = t
        .provision
        .steps
        .iter()
        .find(|s| s.kind == StepKind::Database)
        .ok_or_else(|| not_provisioned("realmctl provisions no databases (provision.database)"))?;
    if step.state != StepState::Done {
        return Err(not_provisioned(&format!(
            "its database step is {}",
            step.state.name()
        )));
    }
    let text = |k: &str| {
        step.outputs
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    match text("url") {
        Some(url) => remote_location(id, url, caller, remote, now_s),
        None => Ok(DatabaseLocation {
            tenant: id.to_string(),
            kind: "file".into(),
            path: Some(text("path").ok_or_else(|| not_provisioned("the step recorded no path"))?),
            url: None,
            namespace: None,
            auth_token: None,
            auth_token_expires_in: None,
        }),
    }
}

/// A database on a remote libsql server. The server's own token opens every tenant's
/// database, so it goes to operators only; an app gets a token minted for this tenant's
/// namespace, or nothing (deny on doubt: no key to mint with, no namespace to scope to).
fn remote_location(
    id: &TenantId,
    url: String,
    caller: &DbCaller,
    remote: Option<&RemoteAccess>,
    now_s: u64,
) -> Result<DatabaseLocation, ServiceError> {
    let namespace = namespace_of(&url);
    let mut loc = DatabaseLocation {
        tenant: id.to_string(),
        kind: "remote".into(),
        path: None,
        url: Some(url),
        namespace: namespace.clone(),
        auth_token: None,
        auth_token_expires_in: None,
    };
    let refuse = |why: &str| {
        ServiceError::Forbidden(format!(
            "tenant {id}'s database is on a remote libsql server and {why}: an app credential is never handed the server's own token, which opens every tenant's database"
        ))
    };
    match caller {
        DbCaller::Operator => loc.auth_token = remote.map(|r| r.fleet_token.clone()),
        DbCaller::App(_) => {
            let Some((minter, template)) =
                remote.and_then(|r| Some((r.app_tokens.as_deref()?, r.url_template.as_str())))
            else {
                return Err(refuse(
                    "realmctl mints no per-tenant tokens (set provision.database.remote.app_token_key_file)",
                ));
            };
            let url = loc.url.as_deref().unwrap_or_default();
            let Some(ns) = app_namespace(template, id.as_str(), url) else {
                return Err(refuse(
                    "its URL is not the configured url_template's for it, with the tenant in the host's first label (its namespace)",
                ));
            };
            let t = minter.mint(&ns, now_s).map_err(|e| {
                ServiceError::Internal(format!("minting tenant {id}'s app token: {e}"))
            })?;
            loc.namespace = Some(ns);
            loc.auth_token = Some(t.token);
            loc.auth_token_expires_in = Some(t.expires_in_s);
        }
    }
    Ok(loc)
}

#[cfg(test)]
#[path = "apps_tests.rs"]
mod tests;
