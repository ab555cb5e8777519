//! The status of each ACME-managed certificate (`acme_certificates`): its state, the CA's last
//! problem, the backoff and when it is renewed next. Not part of the table: writing it does
//! not bump the table version.

use super::{corrupt, to_i64, Registry, RegistryError};
use crate::acme::{CertState, CertStatus, Problem};
use libsql::params;

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

impl Registry {
    pub async fn acme_statuses(&self) -> Result<Vec<CertStatus>, RegistryError> {
        self.acme_statuses_where("1 = 1", ()).await
    }

    /// The statuses of the certificates named `first` to `last` (inclusive): one page of
    /// the certificate list.
    pub async fn acme_statuses_between(
        &self,
        first: &str,
        last: &str,
    ) -> Result<Vec<CertStatus>, RegistryError> {
        self.acme_statuses_where("name >= ?1 AND name <= ?2", params![first, last])
            .await
    }

    /// The statuses not `valid` (few): those that may have nothing issued yet.
    pub async fn acme_statuses_unsettled(&self) -> Result<Vec<CertStatus>, RegistryError> {
        self.acme_statuses_where("state <> 'valid'", ()).await
    }

    async fn acme_statuses_where(
        &self,
        filter: &str,
        params: impl libsql::params::IntoParams,
    ) -> Result<Vec<CertStatus>, RegistryError> {
        let sql = format!(
            "SELECT name, tenant_id, hosts, state, problem, error, attempts,
                    next_attempt_at_ms, renew_at_ms, renew_source, ari_next_ms, updated_at_ms,
                    ari_start_ms, ari_end_ms
             FROM acme_certificates WHERE {filter} ORDER BY name"
        );
        let mut rows = self.conn.query(&sql, params).await?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await? {
            let name: String = row.get(0)?;
            let hosts = serde_json::from_str(row.get_str(2)?)
                .map_err(|e| corrupt(format!("acme_certificates/{name}"), e))?;
            let state = CertState::parse(row.get_str(3)?)
                .ok_or_else(|| corrupt(format!("acme_certificates/{name}"), "unknown state"))?;
            let problem: Option<String> = row.get(4)?;
            out.push(CertStatus {
                tenant: row.get(1)?,
                hosts,
                state,
                problem: problem.and_then(|p| serde_json::from_str::<Problem>(&p).ok()),
                error: row.get(5)?,
                attempts: u32::try_from(row.get::<i64>(6)?).unwrap_or(0),
                next_attempt_at_ms: opt_u64(row.get(7)?),
                renew_at_ms: opt_u64(row.get(8)?),
                renew_source: row.get(9)?,
                ari_next_ms: opt_u64(row.get(10)?),
                updated_at_ms: opt_u64(row.get(11)?).unwrap_or(0),
                ari_window_ms: opt_u64(row.get(12)?).zip(opt_u64(row.get(13)?)),
                certificate: name,
            });
        }
        Ok(out)
    }

    /// Insert or replace a status (fenced: a standby writes nothing).
    pub async fn save_acme_status(&self, s: &CertStatus) -> Result<(), RegistryError> {
        self.fence.check().map_err(RegistryError::NotLeader)?;
        let hosts = serde_json::to_string(&s.hosts).unwrap_or_else(|_| "[]".into());
        let problem = s
            .problem
            .as_ref()
            .and_then(|p| serde_json::to_string(p).ok());
        let opt = |v: Option<u64>| v.map(to_i64);
        self.conn
            .execute(
                "INSERT INTO acme_certificates (name, tenant_id, hosts, state, problem, error,
                     attempts, next_attempt_at_ms, renew_at_ms, renew_source, ari_next_ms,
                     updated_at_ms, ari_start_ms, ari_end_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (name) DO UPDATE SET tenant_id = excluded.tenant_id,
                     hosts = excluded.hosts, state = excluded.state,
                     problem = excluded.problem, error = excluded.error,
                     attempts = excluded.attempts,
                     next_attempt_at_ms = excluded.next_attempt_at_ms,
                     renew_at_ms = excluded.renew_at_ms, renew_source = excluded.renew_source,
                     ari_next_ms = excluded.ari_next_ms, updated_at_ms = excluded.updated_at_ms,
                     ari_start_ms = excluded.ari_start_ms, ari_end_ms = excluded.ari_end_ms",
                params![
                    s.certificate.as_str(),
                    s.tenant.as_str(),
                    hosts,
                    s.state.name(),
                    problem,
                    s.error.clone(),
                    i64::from(s.attempts),
                    opt(s.next_attempt_at_ms),
                    opt(s.renew_at_ms),
                    s.renew_source.clone(),
                    opt(s.ari_next_ms),
                    to_i64(s.updated_at_ms),
                    opt(s.ari_window_ms.map(|w| w.0)),
                    opt(s.ari_window_ms.map(|w| w.1))
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn delete_acme_status(&self, name: &str) -> Result<(), RegistryError> {
        self.fence.check().map_err(RegistryError::NotLeader)?;
        self.conn
            .execute(
                "DELETE FROM acme_certificates WHERE name = ?1",
                params![name],
            )
            .await?;
        Ok(())
    }
}
