//! Group commit of the write path. Changes that arrive while a commit is in flight queue for
//! the write lock; each in turn is judged against the committed model plus what the open batch
//! has staged ([`View`]: exactly what it would see had the changes before it been committed),
//! written in a savepoint of the batch's one transaction with its own table version, and
//! answered once the batch's one COMMIT (one fsync) returns.
//!
//! The model only ever holds committed state: a batch's changes are applied to it, in order,
//! after its COMMIT returns, and only then are their answers, the new version (the compiler),
//! and the runner's wakes and events sent. A failed COMMIT fails every change of the batch and
//! leaves the model as it was (equal to the registry, which rolled back). Operations that do
//! not join batches take the lock through [`Control::lock_registry`], which commits the open
//! batch first, so they run as they did alone.
//!
//! Every commit also writes the audit entries queued since the last one (`service::audit`),
//! first in its batch. A batch nobody commits in time — its callers all gone, or only
//! entries queued — is committed by a task of realmctl's own ([`commit_when_due`]).

use super::{Control, ServiceError};
use crate::ids::TenantId;
use crate::model::{KeyRecord, Model, TenantRecord};
use crate::registry::audit::AuditEntry;
use crate::registry::{Registry, RegistryError};
use realmgate_table::host::HostPattern;
use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Mutex, MutexGuard, Notify};

mod commit;
pub(super) use commit::commit_when_due;

/// Bounds on one batch, so a steady stream of changes cannot hold a commit back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most changes in one commit.
    pub max_changes: usize,
    /// Longest a batch stays open after it was opened.
    pub max_open: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_changes: 256,
            max_open: Duration::from_millis(5),
        }
    }
}

/// The write lock: the registry, and the batch open on it.
pub(super) struct WriteLock {
    writer: Mutex<Writer>,
    /// Callers waiting for the lock. While one waits, a change leaves its batch open for it
    /// to join or commit; the last of a burst commits.
    waiting: AtomicUsize,
    limits: std::sync::Mutex<BatchLimits>,
    /// When the open batch was opened (it is due `max_open` later), for the committing task.
    batch_opened: std::sync::Mutex<Option<Instant>>,
    /// Wakes the committing task: a batch opened, an entry queued, the core dropped.
    alarm: Arc<Notify>,
}

struct Writer {
    registry: Registry,
    batch: Option<Batch>,
    /// Batches opened so far: which one a waiting change is in.
    opened: u64,
    /// A COMMIT was interrupted (its caller dropped): whether it took effect is not known,
    /// so the model is reloaded from the registry before the next write.
    unsure: bool,
    /// The audit entries of the COMMIT in flight: after an interrupted one, queued again
    /// unless the registry shows them.
    committing: Written,
}

/// Audit entries written in a batch, and the `seq` the last of them took.
#[derive(Default)]
struct Written {
    entries: Vec<AuditEntry>,
    last_seq: u64,
}

struct Batch {
    /// A change is being written: found set by the next holder of the lock, its writer was
    /// dropped mid-write and may have left part of it in the transaction.
    writing: bool,
    opened_at: Instant,
    staged: Staged,
    members: Vec<Finish>,
    audits: Written,
}

/// Run once the batch's COMMIT returned: with the model on success (apply the change, send
/// its answer), with the error on failure (send it). Returns the tenant to wake, if any.
type Finish = Box<dyn FnOnce(Result<&mut Model, &RegistryError>) -> Option<Effect> + Send>;

/// What the provisioning runner and the event stream hear of a committed change.
pub(super) struct Effect {
    pub tenant: TenantId,
    /// Also announced on the event stream (a tenant's deletion began).
    pub event: bool,
}

/// The registry, held for an operation that does not join batches.
pub struct WriteGuard<'a>(MutexGuard<'a, Writer>);

impl Deref for WriteGuard<'_> {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.0.registry
    }
}

impl DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Registry {
        &mut self.0.registry
    }
}

impl WriteLock {
    pub(super) fn new(registry: Registry) -> WriteLock {
        WriteLock {
            writer: Mutex::new(Writer {
                registry,
                batch: None,
                opened: 0,
                unsure: false,
                committing: Written::default(),
            }),
            waiting: AtomicUsize::new(0),
            limits: std::sync::Mutex::new(BatchLimits::default()),
            batch_opened: std::sync::Mutex::new(None),
            alarm: Arc::new(Notify::new()),
        }
    }

    pub(super) fn wake_committer(&self) {
        self.alarm.notify_one();
    }

    fn set_batch_opened(&self, at: Option<Instant>) {
        *self
            .batch_opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = at;
    }

    fn batch_opened(&self) -> Option<Instant> {
        *self
            .batch_opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn limits(&self) -> BatchLimits {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lock, counted among the waiters until it is ours (a dropped wait uncounts).
    async fn acquire(&self) -> MutexGuard<'_, Writer> {
        struct Counted<'a>(&'a AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _counted = Counted(&self.waiting);
        self.writer.lock().await
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// A change's answer read from the model.
pub(super) type AnswerFn<T> = Box<dyn FnOnce(&Model) -> Result<T, ServiceError> + Send>;

/// A written change put in the model under its version: its answer, and whom to wake.
pub(super) type ApplyFn<T> =
    Box<dyn FnOnce(&mut Model, u64) -> (Result<T, ServiceError>, Option<Effect>) + Send>;

/// What a batched change decided, judged against a [`View`].
// Made once per change and moved once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Plan<T> {
    /// Refused (not found, invalid, a conflict).
    Refuse(ServiceError),
    /// Nothing to write: the answer, read from the model (once what it was judged on is
    /// committed).
    Answer(AnswerFn<T>),
    /// Write `op`; once committed, `apply` puts it in the model under its version and makes
    /// the answer.
    Write {
        op: Op,
        stage: Stage,
        apply: ApplyFn<T>,
    },
}

/// A registry write that can join a batch.
// Made once per change and moved once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Op {
    SaveTenant(TenantRecord),
    DeleteTenant {
        id: TenantId,
        pools: Vec<String>,
        now_ms: u64,
    },
    SaveKey(KeyRecord),
}

impl Op {
    async fn run(&self, r: &Registry) -> Result<u64, RegistryError> {
        match self {
            Op::SaveTenant(record) => r.save_tenant(record).await,
            Op::DeleteTenant { id, pools, now_ms } => r.delete_tenant(id, pools, *now_ms).await,
            Op::SaveKey(k) => r.save_key(k).await,
        }
    }
}

/// What the open batch wrote and has not committed, as the next change must see it.
#[derive(Default)]
pub(super) struct Staged {
    /// `None`: deleted in this batch.
    tenants: HashMap<TenantId, Option<TenantRecord>>,
    /// Host ownership changed in this batch (`None`: freed).
    hosts: HashMap<HostPattern, Option<TenantId>>,
    keys: HashMap<String, KeyRecord>,
    /// Tenants deleted in this batch: their keys committed before it are revoked.
    revoked_with: HashSet<TenantId>,
}

impl Staged {
    fn is_empty(&self) -> bool {
        self.tenants.is_empty() && self.keys.is_empty() && self.revoked_with.is_empty()
    }

    fn add(&mut self, s: Stage) {
        self.tenants.extend(s.tenants);
        self.hosts.extend(s.hosts);
        self.keys
            .extend(s.keys.into_iter().map(|k| (k.id.clone(), k)));
        self.revoked_with.extend(s.revoked_with);
    }
}

/// What one change adds to [`Staged`] once it is written.
#[derive(Default)]
pub(super) struct Stage {
    tenants: Vec<(TenantId, Option<TenantRecord>)>,
    hosts: Vec<(HostPattern, Option<TenantId>)>,
    keys: Vec<KeyRecord>,
    revoked_with: Option<TenantId>,
}

/// The committed model as the open batch has changed it: what a change in the batch is
/// judged against (for the parts batched changes write: tenants, their hosts, keys).
pub(super) struct View<'a> {
    pub model: &'a Model,
    staged: &'a Staged,
}

impl<'a> View<'a> {
    pub fn tenant(&self, id: &TenantId) -> Option<&'a TenantRecord> {
        match self.staged.tenants.get(id) {
            Some(staged) => staged.as_ref(),
            None => self.model.tenants.get(id),
        }
    }

    pub fn host_owner(&self, host: &HostPattern) -> Option<&'a TenantId> {
        match self.staged.hosts.get(host) {
            Some(staged) => staged.as_ref(),
            None => self.model.host_owner(host),
        }
    }

    /// A key by id, as the batch left it (a key of a tenant deleted in it is revoked).
    pub fn key(&self, id: &str) -> Option<std::borrow::Cow<'a, KeyRecord>> {
        if let Some(k) = self.staged.keys.get(id) {
            return Some(std::borrow::Cow::Borrowed(k));
        }
        let k = self.model.keys.get(id)?;
        let gone = k
            .tenant
            .as_ref()
            .is_some_and(|t| self.staged.revoked_with.contains(t));
        if gone && k.revoked_at_ms.is_none() {
            return Some(std::borrow::Cow::Owned(KeyRecord {
                revoked_at_ms: Some(0),
                ..k.clone()
            }));
        }
        Some(std::borrow::Cow::Borrowed(k))
    }

    /// Staging a tenant put (as [`Model::put_tenant`]: its old hosts freed, the new ones its).
    pub fn put_tenant(&self, record: &TenantRecord, hosts: &[HostPattern]) -> Stage {
        let mut stage = Stage::default();
        let Some(id) = TenantId::parse(&record.wire.id) else {
            return stage;
        };
        self.free_hosts(&id, &mut stage);
        stage
            .hosts
            .extend(hosts.iter().map(|h| (h.clone(), Some(id.clone()))));
        stage.tenants.push((id, Some(record.clone())));
        stage
    }

    /// Staging a tenant's removal: its hosts freed, its keys revoked.
    pub fn delete_tenant(&self, id: &TenantId) -> Stage {
        let mut stage = Stage::default();
        self.free_hosts(id, &mut stage);
        stage.tenants.push((id.clone(), None));
        stage.keys.extend(
            self.staged
                .keys
                .values()
                .filter(|k| k.tenant.as_ref() == Some(id) && k.revoked_at_ms.is_none())
                .map(|k| KeyRecord {
                    revoked_at_ms: Some(0),
                    ..k.clone()
                }),
        );
        stage.revoked_with = Some(id.clone());
        stage
    }

    pub fn put_key(&self, record: &KeyRecord) -> Stage {
        Stage {
            keys: vec![record.clone()],
            ..Stage::default()
        }
    }

    fn free_hosts(&self, id: &TenantId, stage: &mut Stage) {
        let Some(old) = self.tenant(id) else { return };
        for raw in &old.wire.hosts {
            if let Ok(h) = HostPattern::parse(raw) {
                if self.host_owner(&h) == Some(id) {
                    stage.hosts.push((h, None));
                }
            }
        }
    }
}

/// The error every change of a failed batch gets (the API: 503 for a lost Lease, else 500).
fn shared(e: &RegistryError) -> ServiceError {
    ServiceError::Registry(match e {
        RegistryError::NotLeader(reason) => RegistryError::NotLeader(reason.clone()),
        other => RegistryError::Batch(format!("the commit failed: {other}")),
    })
}

/// How a change in [`Control::join`] is answered.
enum Answer<T> {
    Now(Result<T, ServiceError>),
    AfterCommit(oneshot::Receiver<Result<T, ServiceError>>),
}

impl Control {
    /// The registry for an operation that does not join batches: the open batch is
    /// committed (and answered) first, so the operation runs as it would alone.
    pub async fn lock_registry(&self) -> WriteGuard<'_> {
        let core = &*self.core;
        let mut w = core.registry.acquire().await;
        core.settle(&mut w).await;
        core.flush(&mut w).await;
        WriteGuard(w)
    }

    /// Set the batches' bounds (tests use long-lived batches to look inside one).
    pub fn set_batch_limits(&self, limits: BatchLimits) {
        *self
            .core
            .registry
            .limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = limits;
        // A due time may have moved.
        self.core.registry.wake_committer();
    }

    /// Join (or open) the batch: judge the change against the batch's [`View`] (an error is
    /// its refusal), write it in a savepoint, and answer once the batch is committed.
    pub(super) async fn join<T: Send + 'static>(
        &self,
        plan: impl FnOnce(&View<'_>) -> Result<Plan<T>, ServiceError>,
    ) -> Result<T, ServiceError> {
        let core = &*self.core;
        let limits = core.registry.limits();
        let answer = {
            let mut w = core.registry.acquire().await;
            core.settle(&mut w).await;
            let over = w.batch.as_ref().is_some_and(|b| {
                b.members.len() >= limits.max_changes || b.opened_at.elapsed() >= limits.max_open
            });
            if over {
                core.flush(&mut w).await;
            }
            let answer = self
                .stage(&mut w, |v| plan(v).unwrap_or_else(Plan::Refuse))
                .await;
            // The last of a burst commits; one waiting will join (or commit) the batch.
            let due = w.batch.as_ref().map(|b| {
                b.members.is_empty()
                    || core.registry.waiting() == 0
                    || b.members.len() >= limits.max_changes
                    || b.opened_at.elapsed() >= limits.max_open
            });
            if due == Some(true) {
                core.flush(&mut w).await;
            }
            answer
        };
        let rx = match answer {
            Answer::Now(r) => return r,
            Answer::AfterCommit(rx) => rx,
        };
        // Normally a later caller commits the batch well within its bound; should every
        // caller have gone away, the committing task commits it at its bound.
        rx.await.unwrap_or_else(|_| {
            Err(ServiceError::Internal(
                "the commit of this change was interrupted; its outcome is not known".into(),
            ))
        })
    }

    async fn stage<T: Send + 'static>(
        &self,
        w: &mut Writer,
        plan: impl FnOnce(&View<'_>) -> Plan<T>,
    ) -> Answer<T> {
        let plan = {
            let model = self.read();
            let empty = Staged::default();
            let staged = w.batch.as_ref().map_or(&empty, |b| &b.staged);
            plan(&View {
                model: &model,
                staged,
            })
        };
        // Judged on committed state only: answered now.
        let settled = w.batch.as_ref().is_none_or(|b| b.staged.is_empty());
        let (tx, rx) = oneshot::channel();
        let finish: Finish = match plan {
            Plan::Refuse(e) if settled => return Answer::Now(Err(e)),
            Plan::Answer(f) if settled => return Answer::Now(f(&self.read())),
            Plan::Refuse(e) => Box::new(move |r| {
                let _ = tx.send(r.map_or_else(|c| Err(shared(c)), |_| Err(e)));
                None
            }),
            Plan::Answer(f) => Box::new(move |r| {
                let _ = tx.send(r.map_or_else(|c| Err(shared(c)), |m| f(m)));
                None
            }),
            Plan::Write { op, stage, apply } => {
                if let Err(e) = self.core.open_batch(w).await {
                    return Answer::Now(Err(e.into()));
                }
                if let Some(b) = w.batch.as_mut() {
                    b.writing = true;
                }
                let written = op.run(&w.registry).await;
                if let Some(b) = w.batch.as_mut() {
                    b.writing = false;
                    if written.is_ok() {
                        b.staged.add(stage);
                    }
                }
                let version = match written {
                    Ok(v) => v,
                    Err(e) => return Answer::Now(Err(e.into())),
                };
                Box::new(move |r| match r {
                    Ok(m) => {
                        if version > 0 {
                            m.version = version;
                        }
                        let (answer, effect) = apply(m, version);
                        let _ = tx.send(answer);
                        effect
                    }
                    Err(c) => {
                        let _ = tx.send(Err(shared(c)));
                        None
                    }
                })
            }
        };
        match w.batch.as_mut() {
            Some(b) => {
                b.members.push(finish);
                Answer::AfterCommit(rx)
            }
            None => Answer::Now(Err(ServiceError::Internal("no batch to join".into()))),
        }
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
