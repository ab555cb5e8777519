//! The audit log in the registry (migrations 10 and 11): appended to, read in pages, pruned to the
//! newest [`KEEP`] entries. Not part of the routing table: no version is taken.

use super::{get_u64, to_i64, Registry, RegistryError};
use libsql::params;
use serde::Serialize;

/// Entries kept; older ones are pruned (a flood of refused calls cannot fill the disk).
pub const KEEP: u64 = 100_000;

/// One audit entry, as stored and as `GET /v1/audit` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: u64,
    /// `session`, `operator_token`, `gateway_token`, `api_key`, `app`, `anonymous`.
    pub actor: String,
    pub subject: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
    pub action: String,
    pub target: String,
    pub status: u16,
    /// `ok` or `refused`.
    pub outcome: String,
    pub peer: Option<String>,
    pub request_digest: Option<String>,
    pub response_digest: Option<String>,
    /// The object the change touched, before and after it (see `api::access`): `None` when
    /// there was none (created, deleted) or it has no GET of its own.
    pub before_digest: Option<String>,
    pub after_digest: Option<String>,
    pub detail: Option<String>,
}

impl Registry {
    /// Append `e` (its `seq` is assigned); returns the new `seq`.
    pub async fn append_audit(&self, e: &AuditEntry) -> Result<u64, RegistryError> {
        self.fenced()?;
        let mut rows = self
            .conn
            .query(
                "INSERT INTO audit_log (at_ms, actor, subject, name, role, action, target, status,
                                        outcome, peer, request_digest, response_digest, detail,
                                        before_digest, after_digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 RETURNING seq",
                params![
                    to_i64(e.at_ms),
                    e.actor.as_str(),
                    e.subject.as_deref(),
                    e.name.as_deref(),
                    e.role.as_deref(),
                    e.action.as_str(),
                    e.target.as_str(),
                    i64::from(e.status),
                    e.outcome.as_str(),
                    e.peer.as_deref(),
                    e.request_digest.as_deref(),
                    e.response_digest.as_deref(),
                    e.detail.as_deref(),
                    e.before_digest.as_deref(),
                    e.after_digest.as_deref()
                ],
            )
            .await?;
        let seq = match rows.next().await? {
            Some(row) => get_u64(&row, 0)?,
            None => 0,
        };
        drop(rows);
        if seq % 256 == 0 && seq > KEEP {
            self.conn
                .execute(
                    "DELETE FROM audit_log WHERE seq <= ?1",
                    params![to_i64(seq - KEEP)],
                )
                .await?;
        }
        Ok(seq)
    }

    /// Append `entries` in order in one transaction (one commit for a burst of calls):
    /// all or none; returns the `seq` the last one took (0 for none). In an open batch, in a
    /// savepoint of it (committed with the batch).
    pub async fn append_audits(&self, entries: &[AuditEntry]) -> Result<u64, RegistryError> {
        let append_all = || async {
            let mut last = 0;
            for e in entries {
                last = self.append_audit(e).await?;
            }
            Ok::<_, RegistryError>(last)
        };
        if self.batch_open() {
            return self.savepoint(append_all).await;
        }
        if let [e] = entries {
            return self.append_audit(e).await;
        }
        self.fenced()?;
        let tx = self.conn.transaction().await?;
        match append_all().await {
            Ok(last) => {
                tx.commit().await?;
                Ok(last)
            }
            Err(err) => {
                if let Err(rb) = tx.rollback().await {
                    log::error!("registry: rollback failed: {rb}");
                }
                Err(err)
            }
        }
    }

    /// Up to `limit` entries with `seq` above `after`, oldest first; with `after = None`
    /// the newest `limit`, still oldest first.
    pub async fn audit_page(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, RegistryError> {
        const COLS: &str = "seq, at_ms, actor, subject, name, role, action, target, status,
                            outcome, peer, request_digest, response_digest, detail,
                            before_digest, after_digest";
        let mut rows = match after {
            Some(a) => {
                self.conn
                    .query(
                        &format!(
                            "SELECT {COLS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                        ),
                        params![to_i64(a), i64::from(limit)],
                    )
                    .await?
            }
            None => {
                self.conn
                    .query(
                        &format!(
                            "SELECT * FROM (SELECT {COLS} FROM audit_log ORDER BY seq DESC LIMIT ?1)
                             ORDER BY seq"
                        ),
                        params![i64::from(limit)],
                    )
                    .await?
            }
        };
        let mut out = Vec::new();
        while let Some(row) = rows.next().await? {
            out.push(AuditEntry {
                seq: get_u64(&row, 0)?,
                at_ms: get_u64(&row, 1)?,
                actor: row.get(2)?,
                subject: row.get(3)?,
                name: row.get(4)?,
                role: row.get(5)?,
                action: row.get(6)?,
                target: row.get(7)?,
                status: u16::try_from(get_u64(&row, 8)?).unwrap_or(0),
                outcome: row.get(9)?,
                peer: row.get(10)?,
                request_digest: row.get(11)?,
                response_digest: row.get(12)?,
                detail: row.get(13)?,
                before_digest: row.get(14)?,
                after_digest: row.get(15)?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appended_entries_page_in_order() {
        let r = Registry::in_memory().await.expect("registry");
        for i in 0..5u64 {
            let e = AuditEntry {
                at_ms: i,
                actor: "operator_token".into(),
                action: "POST /v1/tenants".into(),
                target: "/v1/tenants".into(),
                status: 201,
                outcome: "ok".into(),
                before_digest: (i > 0).then(|| format!("b{i}")),
                after_digest: Some(format!("a{i}")),
                ..AuditEntry::default()
            };
            assert_eq!(r.append_audit(&e).await.expect("append"), i + 1);
        }
        let newest = r.audit_page(None, 2).await.expect("page");
        assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
        let next = r.audit_page(Some(1), 3).await.expect("page");
        assert_eq!(next.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(next[0].status, 201);
        assert_eq!(next[0].before_digest.as_deref(), Some("b1"));
        assert_eq!(next[0].after_digest.as_deref(), Some("a1"));
        assert_eq!(
            r.audit_page(Some(0), 1).await.expect("page")[0].before_digest,
            None
        );
        assert!(r.audit_page(Some(5), 3).await.expect("page").is_empty());
    }
}
