//! The audit log through the service: entries appended under the registry's write lock
//! (never failing the call they record: a failure is logged), and read in pages.

use super::{Control, ServiceError};
pub use crate::registry::audit::AuditEntry;

/// Most entries in one page of `GET /v1/audit`.
pub const MAX_PAGE: u32 = 500;

impl Control {
    /// Record `e`; a registry that refuses (a standby, a broken disk) is logged, not fatal.
    pub async fn record_audit(&self, mut e: AuditEntry) {
        e.at_ms = crate::time::now_ms();
        let registry = self.registry.lock().await;
        if let Err(err) = registry.append_audit(&e).await {
            log::error!(
                "audit log: cannot record {} {} by {}: {err}",
                e.action,
                e.target,
                e.actor
            );
        }
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
