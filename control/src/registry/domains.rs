//! Custom domains in the registry (`tenant_domains`): not part of the table (a verified
//! domain enters it as one of its tenant's hosts), so writing one bumps no version.

use super::{corrupt, get_u64, to_i64, Registry, RegistryError};
use crate::ids::TenantId;
use crate::model::{DomainRecord, DomainState, Model};
use libsql::params;

impl Registry {
    pub(super) async fn load_domains(&self, model: &mut Model) -> Result<(), RegistryError> {
        let mut rows = self
            .conn
            .query(
                "SELECT domain, tenant_id, state, token, reason, attempts, next_check_at_ms,
                        check_until_ms, verified_at_ms, created_at_ms, updated_at_ms
                 FROM tenant_domains",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let domain: String = row.get(0)?;
            let bad = |what: &str| corrupt(format!("tenant_domains/{domain}"), what.to_owned());
            let tenant = TenantId::parse(row.get_str(1)?).ok_or_else(|| bad("tenant id"))?;
            let state = DomainState::parse(row.get_str(2)?).ok_or_else(|| bad("state"))?;
            let verified: Option<i64> = row.get(8)?;
            let record = DomainRecord {
                tenant,
                state,
                token: row.get(3)?,
                reason: row.get(4)?,
                attempts: u32::try_from(row.get::<i64>(5)?).unwrap_or(0),
                next_check_at_ms: get_u64(&row, 6)?,
                check_until_ms: get_u64(&row, 7)?,
                verified_at_ms: verified.and_then(|v| u64::try_from(v).ok()),
                created_at_ms: get_u64(&row, 9)?,
                updated_at_ms: get_u64(&row, 10)?,
                domain,
            };
            model.domains.insert(record);
        }
        Ok(())
    }

    /// Insert or replace a domain (fenced: a standby writes nothing).
    pub async fn save_domain(&self, d: &DomainRecord) -> Result<(), RegistryError> {
        self.fence.check().map_err(RegistryError::NotLeader)?;
        self.conn
            .execute(
                "INSERT INTO tenant_domains (domain, tenant_id, state, token, reason, attempts,
                     next_check_at_ms, check_until_ms, verified_at_ms, created_at_ms,
                     updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (domain) DO UPDATE SET tenant_id = excluded.tenant_id,
                     state = excluded.state, token = excluded.token, reason = excluded.reason,
                     attempts = excluded.attempts,
                     next_check_at_ms = excluded.next_check_at_ms,
                     check_until_ms = excluded.check_until_ms,
                     verified_at_ms = excluded.verified_at_ms,
                     updated_at_ms = excluded.updated_at_ms",
                params![
                    d.domain.as_str(),
                    d.tenant.as_str(),
                    d.state.name(),
                    d.token.as_str(),
                    d.reason.clone(),
                    i64::from(d.attempts),
                    to_i64(d.next_check_at_ms),
                    to_i64(d.check_until_ms),
                    d.verified_at_ms.map(to_i64),
                    to_i64(d.created_at_ms),
                    to_i64(d.updated_at_ms)
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn delete_domain(&self, domain: &str) -> Result<(), RegistryError> {
        self.fence.check().map_err(RegistryError::NotLeader)?;
        self.conn
            .execute(
                "DELETE FROM tenant_domains WHERE domain = ?1",
                params![domain],
            )
            .await?;
        Ok(())
    }
}
