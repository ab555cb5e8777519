//! The audit log through the service. A call's entry is queued, in the order the calls are
//! answered, before its answer goes out, and written first in the next batch's transaction
//! (`service::batch`): by the next change's commit, by a read of the log, or at the latest
//! by the committing task when the batch's bound (`max_open`) passes. The call never waits
//! for that commit; an entry whose commit fails is logged and counted, never dropped
//! silently (`realmctl_audit_entries_lost_total`).

use super::{Control, ServiceError};
pub use crate::registry::audit::AuditEntry;
use crate::registry::RegistryError;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Most entries in one page of `GET /v1/audit`.
pub const MAX_PAGE: u32 = 500;

/// Entries of answered calls not yet written into a batch, oldest first.
#[derive(Default)]
pub(super) struct Pending {
    queue: Mutex<Queue>,
    /// Entries whose write or commit failed.
    lost: AtomicU64,
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<AuditEntry>,
    /// When the oldest queued entry was queued.
    since: Option<Instant>,
}

impl Pending {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `e` behind every entry queued before it; whether it is the first queued.
    fn push(&self, e: AuditEntry) -> bool {
        let mut q = self.queue();
        q.entries.push_back(e);
        q.since.get_or_insert_with(Instant::now);
        q.entries.len() == 1
    }

    /// Every queued entry, in order, for a batch to write.
    pub(super) fn take(&self) -> Vec<AuditEntry> {
        let mut q = self.queue();
        q.since = None;
        q.entries.drain(..).collect()
    }

    /// Put back entries a batch that was undone had taken: ahead of those queued since.
    pub(super) fn requeue(&self, entries: Vec<AuditEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut q = self.queue();
        for e in entries.into_iter().rev() {
            q.entries.push_front(e);
        }
        q.since = Some(Instant::now());
    }

    /// When the oldest entry was queued, if any is.
    pub(super) fn since(&self) -> Option<Instant> {
        self.queue().since
    }

    /// Entries that will not be in the log: each logged (what and by whom, never a body or a
    /// credential: an entry holds digests only), and counted.
    pub(super) fn lost(&self, entries: &[AuditEntry], why: &RegistryError) {
        for e in entries {
            log::error!(
                "audit log: cannot record {} {} by {}: {why}",
                e.action,
                e.target,
                e.actor
            );
        }
        self.lost.fetch_add(entries.len() as u64, Ordering::Relaxed);
    }
}

impl Control {
    /// Record `e`, after every entry recorded before it. Returns once it is queued for the
    /// next commit (see the module doc), not once it is committed; a read of the log
    /// (`audit_page`) commits it first.
    pub fn record_audit(&self, mut e: AuditEntry) {
        e.at_ms = crate::time::now_ms();
        if self.core.audits.push(e) {
            self.core.registry.wake_committer();
        }
    }

    /// Audit entries whose write or commit failed since start (each was logged).
    pub fn audit_entries_lost(&self) -> u64 {
        self.core.audits.lost.load(Ordering::Relaxed)
    }

    /// Entries after `after` (or the newest), oldest first, at most `limit`. Every entry
    /// recorded before the call is committed first, so it is there.
    pub async fn audit_page(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let registry = self.lock_registry().await;
        Ok(registry.audit_page(after, limit.clamp(1, MAX_PAGE)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leadership::{Fence, Leadership};
    use crate::registry::Registry;
    use crate::service::batch::BatchLimits;
    use std::sync::Arc;
    use std::time::Duration;

    fn entry(i: usize) -> AuditEntry {
        AuditEntry {
            actor: "operator_token".into(),
            action: format!("PATCH /v1/tenants/t{i}"),
            target: format!("/v1/tenants/t{i}"),
            status: 200,
            outcome: "ok".into(),
            ..AuditEntry::default()
        }
    }

    /// A control whose batches are committed by time only after `max_open`.
    async fn control(max_open: Duration) -> Arc<Control> {
        let reg = Registry::in_memory().await.expect("registry");
        let c = Arc::new(Control::new(reg).await.expect("control"));
        c.set_batch_limits(BatchLimits {
            max_changes: 1000,
            max_open,
        });
        c
    }

    fn actions(log: &[AuditEntry]) -> Vec<&str> {
        log.iter().map(|e| e.action.as_str()).collect()
    }

    /// Recording does not wait for a commit; a read of the log commits every entry recorded
    /// before it, in the order they were recorded.
    #[tokio::test]
    async fn recorded_entries_are_read_back_at_once_in_order() {
        let c = control(Duration::from_secs(600)).await;
        for i in 0..40 {
            c.record_audit(entry(i));
        }
        assert_eq!(
            c.committed_audit_log().await,
            None,
            "queued, not yet committed"
        );
        let log = c.audit_page(None, MAX_PAGE).await.expect("page");
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
        let expected: Vec<String> = (0..40).map(|i| entry(i).action).collect();
        assert_eq!(actions(&log), expected);
        let committed = c.committed_audit_log().await.expect("nothing left open");
        assert_eq!(committed, log);
    }

    /// An entry queued before a change is committed with that change (in its batch, ahead
    /// of it): no read, no timer needed.
    #[tokio::test]
    async fn an_entry_is_committed_with_the_next_change() {
        let c = control(Duration::from_secs(600)).await;
        c.put_upstream("app", br#"{"endpoints": ["127.0.0.1:9001"]}"#)
            .await
            .expect("upstream");
        c.record_audit(entry(1));
        c.create_tenant(
            br#"{"id": "a", "hosts": ["a.test"], "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]}"#,
        )
        .await
        .expect("create");
        let log = c.committed_audit_log().await.expect("nothing left open");
        assert_eq!(actions(&log), [entry(1).action.as_str()]);
    }

    /// With no change and no read to carry it, a queued entry is committed by realmctl's own
    /// task once the batch bound passes.
    #[tokio::test]
    async fn an_entry_no_call_carries_is_committed_by_the_bound() {
        let c = control(Duration::from_millis(20)).await;
        c.record_audit(entry(1));
        let log = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match c.committed_audit_log().await {
                    Some(log) if !log.is_empty() => return log,
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        })
        .await
        .expect("committed within its bound");
        assert_eq!(actions(&log), [entry(1).action.as_str()]);
    }

    /// An entry the registry refuses (this process lost the Lease) is logged and counted,
    /// not silently dropped.
    #[tokio::test]
    async fn an_entry_that_cannot_be_committed_is_counted() {
        let mut reg = Registry::in_memory().await.expect("registry");
        let (fence, lease) = Fence::closed("starting");
        lease.set(Leadership::Leading);
        reg.set_fence(fence);
        let c = Arc::new(Control::new(reg).await.expect("control"));
        c.set_batch_limits(BatchLimits {
            max_changes: 1000,
            max_open: Duration::from_secs(600),
        });
        c.record_audit(entry(1));
        let _ = c.audit_page(None, MAX_PAGE).await.expect("page");
        assert_eq!(c.audit_entries_lost(), 0);
        lease.set(Leadership::not_leading("lost"));
        c.record_audit(entry(2));
        c.record_audit(entry(3));
        let log = c.audit_page(None, MAX_PAGE).await.expect("page");
        assert_eq!(actions(&log), [entry(1).action.as_str()]);
        assert_eq!(c.audit_entries_lost(), 2);
    }
}
