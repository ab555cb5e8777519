//! The audit log through the service: entries appended under the registry's write lock
//! (never failing the call they record: a failure is logged), and read in pages. Entries
//! recorded while the lock is busy are written together by whichever caller takes it next,
//! in one transaction: a burst of calls costs one commit (one fsync), and each call still
//! returns only once its entry is committed.

use super::{Control, ServiceError};
pub use crate::registry::audit::AuditEntry;

/// Most entries in one page of `GET /v1/audit`.
pub const MAX_PAGE: u32 = 500;

impl Control {
    /// Record `e`; a registry that refuses (a standby, a broken disk) is logged, not fatal.
    pub async fn record_audit(&self, mut e: AuditEntry) {
        e.at_ms = crate::time::now_ms();
        self.audit_queue().push(e);
        let registry = self.registry.lock().await;
        // Ours, and whatever queued meanwhile; empty if a caller before us wrote ours (under
        // this lock, so it is committed by now).
        let batch = std::mem::take(&mut *self.audit_queue());
        if batch.is_empty() {
            return;
        }
        if let Err(err) = registry.append_audits(&batch).await {
            for e in &batch {
                log::error!(
                    "audit log: cannot record {} {} by {}: {err}",
                    e.action,
                    e.target,
                    e.actor
                );
            }
        }
    }

    fn audit_queue(&self) -> std::sync::MutexGuard<'_, Vec<AuditEntry>> {
        self.audit_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Entries after `after` (or the newest), oldest first, at most `limit`.
    pub async fn audit_page(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        let registry = self.registry.lock().await;
        Ok(registry.audit_page(after, limit.clamp(1, MAX_PAGE)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use std::sync::Arc;

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

    /// Calls recorded while the write lock is busy are all written once it is free, and
    /// each call returns only when its own entry is in the log.
    #[tokio::test]
    async fn entries_queued_behind_a_write_are_all_committed_before_their_calls_return() {
        let reg = Registry::in_memory().await.expect("registry");
        let c = Arc::new(Control::new(reg).await.expect("control"));
        let held = c.registry.lock().await;
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let c = Arc::clone(&c);
                tokio::spawn(async move {
                    c.record_audit(entry(i)).await;
                    let log = c.audit_page(None, MAX_PAGE).await.expect("page");
                    assert!(
                        log.iter().any(|e| e.action == entry(i).action),
                        "entry {i} is committed when its call returns"
                    );
                })
            })
            .collect();
        while c.audit_queue().len() < 40 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for call in calls {
            call.await.expect("call");
        }
        assert!(c.audit_queue().is_empty());
        let log = c.audit_page(None, MAX_PAGE).await.expect("page");
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
        let mut actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        actions.sort_unstable();
        let mut expected: Vec<String> = (0..40).map(|i| entry(i).action).collect();
        expected.sort_unstable();
        assert_eq!(actions, expected);
    }
}
