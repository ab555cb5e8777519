//! The provisioning journal in the registry: a tenant's provisioning columns and one
//! `provision_steps` row per step, read at start and written at every step transition.

use super::{corrupt, get_u64, to_i64, Registry, RegistryError};
use crate::ids::TenantId;
use crate::provision::{Provision, StepKind, StepRecord, StepState, TenantState};
use libsql::{params, Connection};
use std::collections::HashMap;

/// Insert or replace one step row.
pub(super) async fn upsert_step(
    conn: &Connection,
    tenant: &str,
    s: &StepRecord,
) -> Result<(), libsql::Error> {
    let outputs = serde_json::to_string(&s.outputs).unwrap_or_else(|_| "{}".into());
    conn.execute(
        "INSERT INTO provision_steps (tenant_id, step, position, provider, state, attempts,
             last_error, outputs, secrets, input_digest, next_attempt_at_ms, duration_ms,
             updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (tenant_id, step) DO UPDATE SET provider = excluded.provider,
             state = excluded.state, attempts = excluded.attempts,
             last_error = excluded.last_error, outputs = excluded.outputs,
             secrets = excluded.secrets, input_digest = excluded.input_digest,
             next_attempt_at_ms = excluded.next_attempt_at_ms,
             duration_ms = excluded.duration_ms, updated_at_ms = excluded.updated_at_ms",
        params![
            tenant,
            s.kind.name(),
            s.kind.position() as i64,
            s.provider.as_str(),
            s.state.name(),
            i64::from(s.attempts),
            s.last_error.clone(),
            outputs,
            s.sealed.clone(),
            s.input_digest.clone(),
            s.next_attempt_at_ms.map(to_i64),
            s.duration_ms.map(to_i64),
            to_i64(s.updated_at_ms)
        ],
    )
    .await?;
    Ok(())
}

impl Registry {
    /// Journal one step transition (no new table version: the table does not change).
    pub async fn save_step(&self, tenant: &TenantId, s: &StepRecord) -> Result<(), RegistryError> {
        self.fenced()?;
        upsert_step(&self.conn, tenant.as_str(), s).await?;
        Ok(())
    }

    /// A tenant's provisioning state and error (no new table version).
    pub async fn save_provision_state(
        &self,
        tenant: &TenantId,
        p: &Provision,
    ) -> Result<(), RegistryError> {
        self.fenced()?;
        self.conn
            .execute(
                "UPDATE tenants SET provision_state = ?2, routed = ?3, provision_error = ?4
                 WHERE id = ?1",
                params![
                    tenant.as_str(),
                    p.state.name(),
                    i64::from(p.routed),
                    p.error.clone()
                ],
            )
            .await?;
        Ok(())
    }

    /// Every tenant's provisioning, by tenant id.
    pub(super) async fn load_provision(&self) -> Result<HashMap<String, Provision>, RegistryError> {
        let mut steps: HashMap<String, Vec<StepRecord>> = HashMap::new();
        let mut rows = self
            .conn
            .query(
                "SELECT tenant_id, step, provider, state, attempts, last_error, outputs, secrets,
                        input_digest, next_attempt_at_ms, duration_ms, updated_at_ms
                 FROM provision_steps ORDER BY tenant_id, position",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let tenant: String = row.get(0)?;
            let step: String = row.get(1)?;
            let what = || format!("provision_steps/{tenant}/{step}");
            let kind = StepKind::parse(&step).ok_or_else(|| corrupt(what(), "unknown step"))?;
            let state = StepState::parse(row.get_str(3)?)
                .ok_or_else(|| corrupt(what(), "unknown state"))?;
            let opt_u64 = |idx: i32| -> Result<Option<u64>, RegistryError> {
                Ok(row
                    .get::<Option<i64>>(idx)?
                    .map(|v| u64::try_from(v).unwrap_or(0)))
            };
            let record = StepRecord {
                kind,
                provider: row.get(2)?,
                state,
                attempts: u32::try_from(get_u64(&row, 4)?).unwrap_or(u32::MAX),
                last_error: row.get(5)?,
                outputs: serde_json::from_str(row.get_str(6)?).map_err(|e| corrupt(what(), e))?,
                sealed: row.get(7)?,
                input_digest: row.get(8)?,
                next_attempt_at_ms: opt_u64(9)?,
                duration_ms: opt_u64(10)?,
                updated_at_ms: get_u64(&row, 11)?,
            };
            steps.entry(tenant).or_default().push(record);
        }
        let mut out = HashMap::new();
        let mut rows = self
            .conn
            .query(
                "SELECT id, provision_state, routed, provision_error FROM tenants",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let id: String = row.get(0)?;
            let state = TenantState::parse(row.get_str(1)?)
                .ok_or_else(|| corrupt(format!("tenants/{id}"), "provision_state"))?;
            let p = Provision {
                state,
                routed: row.get::<i64>(2)? != 0,
                error: row.get(3)?,
                steps: steps.remove(&id).unwrap_or_default(),
            };
            out.insert(id, p);
        }
        Ok(out)
    }
}
