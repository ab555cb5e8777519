//! App credentials and tenant tombstones in the registry (migration 9).

use super::{corrupt, get_u64, to_i64, Registry, RegistryError};
use crate::ids::TenantId;
use crate::model::{AppRecord, Model};
use libsql::params;

impl Registry {
    pub(super) async fn load_apps(&self, model: &mut Model) -> Result<(), RegistryError> {
        let mut rows = self
            .conn
            .query(
                "SELECT id, name, pool, digest, prefix, created_at_ms, revoked_at_ms
                 FROM app_credentials",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let id: String = row.get(0)?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(row.get_str(3)?, &mut digest)
                .map_err(|e| corrupt(format!("app_credentials/{id}"), e))?;
            let revoked: Option<i64> = row.get(6)?;
            model.put_app(AppRecord {
                name: row.get(1)?,
                pool: row.get(2)?,
                digest,
                prefix: row.get(4)?,
                created_at_ms: get_u64(&row, 5)?,
                revoked_at_ms: revoked.map(|v| u64::try_from(v).unwrap_or(0)),
                id,
            });
        }
        let mut rows = self
            .conn
            .query("SELECT tenant_id, pools FROM tenant_tombstones", ())
            .await?;
        while let Some(row) = rows.next().await? {
            let raw: String = row.get(0)?;
            let at = || format!("tenant_tombstones/{raw}");
            let id = TenantId::parse(&raw).ok_or_else(|| corrupt(at(), "bad tenant id"))?;
            let pools = serde_json::from_str(row.get_str(1)?).map_err(|e| corrupt(at(), e))?;
            model.tombstones.insert(id, pools);
        }
        Ok(())
    }

    /// Insert an app credential, or record its revocation. App credentials are not in the
    /// routing table, but every change takes a version (the registry's one write path).
    pub async fn save_app(&self, a: &AppRecord) -> Result<u64, RegistryError> {
        self.write(|tx, _version| async move {
            tx.execute(
                "INSERT INTO app_credentials (id, name, pool, digest, prefix, created_at_ms,
                                              revoked_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET revoked_at_ms = excluded.revoked_at_ms",
                params![
                    a.id.as_str(),
                    a.name.as_str(),
                    a.pool.as_str(),
                    hex::encode(a.digest),
                    a.prefix.as_str(),
                    to_i64(a.created_at_ms),
                    a.revoked_at_ms.map(to_i64)
                ],
            )
            .await?;
            Ok(())
        })
        .await
    }
}
