//! The audit log through the service: entries appended under the registry's write lock
//! (never failing the call they record: a failure is logged), and read in pages. An entry
//! joins the open batch of changes (`service::batch`): a burst of calls costs one commit
//! (one fsync), and each call still returns only once its own entry is committed.

use super::batch::{Op, Plan};
use super::{Control, ServiceError};
pub use crate::registry::audit::AuditEntry;

/// Most entries in one page of `GET /v1/audit`.
pub const MAX_PAGE: u32 = 500;

impl Control {
    /// Record `e`; a registry that refuses (a standby, a broken disk) is logged, not fatal.
    pub async fn record_audit(&self, mut e: AuditEntry) {
        e.at_ms = crate::time::now_ms();
        let (action, target, actor) = (e.action.clone(), e.target.clone(), e.actor.clone());
        let written = self
            .join(|_| Plan::Write {
                op: Op::Audit(e),
                stage: Default::default(),
                apply: Box::new(|_, _| (Ok(()), None)),
            })
            .await;
        if let Err(err) = written {
            log::error!("audit log: cannot record {action} {target} by {actor}: {err}");
        }
    }

    /// Entries after `after` (or the newest), oldest first, at most `limit`.
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
        // Batches last until the test commits them.
        c.set_batch_limits(crate::service::batch::BatchLimits {
            max_changes: 1000,
            max_open: std::time::Duration::from_secs(60),
        });
        let held = c.lock_registry().await;
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
        while c.registry.waiting() < 40 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for call in calls {
            call.await.expect("call");
        }
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
