//! The control service: the single writer of tenant state. Each change is validated, written
//! to the registry together with the next table version, applied to the in-memory model and
//! announced to the compiler. Changes are serialised, so none is lost and versions only grow;
//! those queued behind a commit share the next one (`batch`).

pub mod acme;
pub mod apps;
pub mod assertion;
pub mod audit;
pub mod batch;
mod certs;
mod domain_check;
pub mod domains;
pub mod keys;
pub mod operator_keys;
mod provisioning;
pub mod runner;
mod tenants;
pub mod validate;

use crate::ids::{TenantId, UpstreamName};
use crate::model::{self as page, Model, TenantRecord, UpstreamRecord};
use crate::provision::secrets::SecretBox;
use crate::provision::Plan;
use crate::registry::{Registry, RegistryError};
use crate::time::now_ms;
use crate::views::{TenantPage, TenantView, UpstreamView};
use realmgate_table::host::HostPattern;
use realmgate_table::Problem;
use serde_json::json;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{broadcast, mpsc, watch};

/// Most tenant ids listed in a conflict's details.
const MAX_LISTED: usize = 20;

/// Errors of the service layer; the API maps each to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid request ({} problem(s))", .0.len())]
    Invalid(Vec<Problem>),
    #[error("no {kind} {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: serde_json::Value,
    },
    #[error("revision {current} does not match If-Match")]
    PreconditionFailed { current: u64 },
    /// 403: the caller is authenticated but may not do this (a key minting beyond itself).
    #[error("{0}")]
    Forbidden(String),
    /// 404 with its own code: it exists, but is not handed out now (a suspended tenant's
    /// database), and says so.
    #[error("{message}")]
    Withheld {
        code: &'static str,
        message: String,
        details: serde_json::Value,
    },
    /// 410: it existed once and is gone for good (credentials already handed out).
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// 500, details logged only.
    #[error("{0}")]
    Internal(String),
}

/// What a commit needs: the registry under its write lock, the model it moves, and whom it
/// tells. Owned by [`Control`]; the committing task holds it only weakly.
pub(super) struct Core {
    /// The write lock: one change at a time, from validation to its write; changes queued
    /// behind it share one commit (`batch`).
    registry: batch::WriteLock,
    model: RwLock<Model>,
    changes: watch::Sender<u64>,
    /// The provisioning runner's inbox, once it runs.
    wake: std::sync::Mutex<Option<mpsc::UnboundedSender<TenantId>>>,
    /// Provisioning changes, for the live event stream.
    events: broadcast::Sender<TenantId>,
    /// Audit entries of answered calls, waiting for the next batch (`audit`).
    audits: audit::Pending,
}

impl Core {
    fn read(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Model> {
        self.model.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // The committing task ends once it sees no core.
        self.registry.wake_committer();
    }
}

pub struct Control {
    /// The write path, shared with the task that commits what no caller is left to commit
    /// (`batch::commit_when_due`).
    core: Arc<Core>,
    /// Which provisioning steps run; all `none`: tenants are ready at creation.
    plan: Plan,
    /// Seals step secrets at rest.
    secret_box: SecretBox,
    /// The registry's fence (a copy, readable without the write lock).
    fence: crate::leadership::Fence,
    /// `domains:` (custom domains' ownership checks), once configured.
    domain_settings: std::sync::OnceLock<domains::DomainSettings>,
    /// Wakes the domain checks (a domain added).
    domain_checks: tokio::sync::Notify,
    /// When the domain checks next sweep every verified domain (unix ms).
    domain_sweep_at: std::sync::atomic::AtomicU64,
    /// Tenant databases on a remote server: its fleet token (operators) and app tokens.
    remote_database: std::sync::OnceLock<crate::provision::database_token::RemoteAccess>,
}

impl Control {
    /// Load the registry (an empty one becomes table version 1).
    pub async fn new(registry: Registry) -> Result<Control, RegistryError> {
        Self::with_plan(registry, Plan::default(), SecretBox::random()).await
    }

    /// Load the registry; tenants are provisioned by the steps of `plan`.
    pub async fn with_plan(
        registry: Registry,
        plan: Plan,
        secret_box: SecretBox,
    ) -> Result<Control, RegistryError> {
        registry.ensure_version().await?;
        let model = registry.load().await?;
        log::info!(
            "registry loaded: table version {}, {} tenants, {} upstreams",
            model.version,
            model.tenants.len(),
            model.upstreams.len()
        );
        let (changes, _) = watch::channel(model.version);
        let (events, _) = broadcast::channel(1024);
        let fence = registry.fence().clone();
        let core = Arc::new(Core {
            registry: batch::WriteLock::new(registry),
            model: RwLock::new(model),
            changes,
            wake: std::sync::Mutex::new(None),
            events,
            audits: audit::Pending::default(),
        });
        tokio::spawn(batch::commit_when_due(Arc::downgrade(&core)));
        Ok(Control {
            core,
            fence,
            plan,
            secret_box,
            domain_settings: std::sync::OnceLock::new(),
            domain_checks: tokio::sync::Notify::new(),
            domain_sweep_at: std::sync::atomic::AtomicU64::new(0),
            remote_database: std::sync::OnceLock::new(),
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn secret_box(&self) -> &SecretBox {
        &self.secret_box
    }

    /// Whether this process may write (the registry refuses writes while it is closed).
    pub fn fence(&self) -> &crate::leadership::Fence {
        &self.fence
    }

    /// Wait for the write in progress, if any, to commit or fail, and commit the open batch
    /// and the queued audit entries (at shutdown once the API has answered its last call;
    /// again before the Lease is released, with the fence already closed).
    pub async fn quiesce(&self) {
        drop(self.lock_registry().await);
    }

    /// Connect the provisioning runner: tenants to look at arrive on the returned channel.
    pub fn attach_runner(&self) -> mpsc::UnboundedReceiver<TenantId> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self
            .core
            .wake
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    fn hosts_of(&self, r: &TenantRecord) -> Vec<HostPattern> {
        r.wire
            .hosts
            .iter()
            .filter_map(|h| HostPattern::parse(h).ok())
            .collect()
    }

    /// The model's version, announced after every committed change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.core.changes.subscribe()
    }

    /// The current table version.
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// Move the table version above `seen`, a version some gateway serves that this registry
    /// did not publish (it was restored from a backup, say): the jump is persisted, so a
    /// restart does not go back, and announced, so the registry's state is compiled and
    /// pushed again under a version the gateways accept. Returns the version now current.
    pub async fn move_past(&self, seen: u64) -> Result<u64, ServiceError> {
        let registry = self.lock_registry().await;
        if self.version() > seen {
            return Ok(self.version());
        }
        let version = registry.move_version_past(seen).await?;
        self.commit(version, |_| ());
        Ok(version)
    }

    /// Compile the current model into a table (provisioned tenants' login secrets opened).
    pub fn compile(&self) -> Result<crate::compile::Compiled, serde_json::Error> {
        crate::compile::compile(&self.read(), &self.secret_box)
    }

    pub fn with_model<R>(&self, f: impl FnOnce(&Model) -> R) -> R {
        f(&self.read())
    }

    fn read(&self) -> RwLockReadGuard<'_, Model> {
        self.core.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, Model> {
        self.core.write()
    }

    /// Apply a committed change to the model and announce its version.
    fn commit<R>(&self, version: u64, f: impl FnOnce(&mut Model) -> R) -> R {
        let r = {
            let mut m = self.write();
            m.version = version;
            f(&mut m)
        };
        self.core.changes.send_replace(version);
        r
    }

    pub fn list_tenants(&self, after: Option<&str>, limit: usize) -> TenantPage {
        let model = self.read();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut iter = model.tenants.range::<str, _>((start, Bound::Unbounded));
        let tenants: Vec<TenantView> = iter
            .by_ref()
            .take(limit)
            .map(|(_, r)| certs::tenant_view(&model, r))
            .collect();
        let next = if iter.next().is_some() {
            tenants.last().map(|t| t.id.clone())
        } else {
            None
        };
        TenantPage { tenants, next }
    }

    pub fn tenant(&self, id: &TenantId) -> Result<TenantView, ServiceError> {
        let model = self.read();
        model
            .tenants
            .get(id)
            .map(|r| certs::tenant_view(&model, r))
            .ok_or_else(|| not_found("tenant", id.as_str()))
    }

    /// A page of pools after `after`, in name order, each with how many tenants use it.
    pub fn list_upstreams(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<UpstreamView>, Option<String>) {
        let model = self.read();
        let entries = model.upstreams.range::<str, _>(page::after_bound(after));
        page::page_of(
            entries.map(|(n, r)| (n.as_str(), (n, r))),
            limit,
            |(n, r)| {
                Some(UpstreamView::new(
                    n.as_str(),
                    r,
                    model.user_count(n.as_str()),
                ))
            },
        )
    }

    pub fn upstream(&self, name: &UpstreamName) -> Result<UpstreamView, ServiceError> {
        let model = self.read();
        let record = model
            .upstreams
            .get(name)
            .ok_or_else(|| not_found("upstream", name.as_str()))?;
        Ok(UpstreamView::new(
            name.as_str(),
            record,
            model.users_of(name).len(),
        ))
    }

    /// Create or replace a pool; `true` when it was created. Replacing it with the same
    /// content changes nothing.
    pub async fn put_upstream(
        &self,
        raw_name: &str,
        body: &[u8],
    ) -> Result<(UpstreamView, bool), ServiceError> {
        let (name, spec) =
            validate::decode_upstream(raw_name, body).map_err(ServiceError::Invalid)?;
        let registry = self.lock_registry().await;
        let created = match self.read().upstreams.get(&name) {
            Some(r) if r.spec == spec => return self.upstream(&name).map(|v| (v, false)),
            Some(_) => false,
            None => true,
        };
        let now = now_ms();
        let version = registry.save_upstream(&name, &spec, now).await?;
        let record = UpstreamRecord {
            spec,
            table_version: version,
            updated_at_ms: now,
        };
        self.commit(version, |m| m.upstreams.insert(name.clone(), record));
        self.upstream(&name).map(|v| (v, created))
    }

    /// Remove a pool no route uses; returns the table version without it.
    pub async fn delete_upstream(&self, name: &UpstreamName) -> Result<u64, ServiceError> {
        let registry = self.lock_registry().await;
        {
            let model = self.read();
            if !model.upstreams.contains_key(name) {
                return Err(not_found("upstream", name.as_str()));
            }
            let users = model.users_of(name);
            if !users.is_empty() {
                return Err(ServiceError::Conflict {
                    code: "upstream_in_use",
                    message: format!(
                        "upstream {:?} is used by {} tenant(s); change their routes or shell first",
                        name.as_str(),
                        users.len()
                    ),
                    details: json!({"tenants": users.iter().take(MAX_LISTED).collect::<Vec<_>>(), "count": users.len()}),
                });
            }
        }
        let version = registry.delete_upstream(name).await?;
        self.commit(version, |m| m.upstreams.remove(name));
        Ok(version)
    }
}

fn not_found(kind: &'static str, name: &str) -> ServiceError {
    ServiceError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

fn check_revision(current: u64, if_match: Option<u64>) -> Result<(), ServiceError> {
    match if_match {
        Some(expected) if expected != current => Err(ServiceError::PreconditionFailed { current }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
