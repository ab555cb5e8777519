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
    /// routing table, so this takes no table version (a new version would make every
    /// gateway load an identical table). Fenced like every write, before it starts and again
    /// just before it commits.
    pub async fn save_app(&self, a: &AppRecord) -> Result<(), RegistryError> {
        self.fenced()?;
        let tx = self.conn.transaction().await?;
        let result = async {
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
            Ok::<_, RegistryError>(())
        }
        .await
        .and_then(|()| self.fenced());
        match result {
            Ok(()) => Ok(tx.commit().await?),
            Err(e) => {
                if let Err(rb) = tx.rollback().await {
                    log::error!("registry: rollback failed: {rb}");
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leadership::{Fence, Leadership};

    fn record(id: &str) -> AppRecord {
        AppRecord {
            id: id.into(),
            name: "todos".into(),
            pool: "app".into(),
            digest: [7; 32],
            prefix: "rga_abcd".into(),
            created_at_ms: 5,
            revoked_at_ms: None,
        }
    }

    #[tokio::test]
    async fn credentials_persist_without_a_table_version() {
        let dir = std::env::temp_dir().join(format!(
            "realmctl-registry-apps-{}-{}",
            std::process::id(),
            crate::time::now_ms()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let reg = Registry::open(&dir, None).await.expect("open");
            assert_eq!(reg.ensure_version().await.expect("v"), 1);
            reg.save_app(&record("a1")).await.expect("minted");
            reg.save_app(&AppRecord {
                revoked_at_ms: Some(9),
                ..record("a1")
            })
            .await
            .expect("revoked");
            assert_eq!(reg.ensure_version().await.expect("v"), 1);
        }
        let reg = Registry::open(&dir, None).await.expect("reopen");
        let m = reg.load().await.expect("load");
        assert_eq!(m.version, 1, "no version was taken");
        assert_eq!(m.apps["a1"].revoked_at_ms, Some(9), "and both writes kept");
        assert_eq!(m.app_by_digest(&[7; 32]).map(|a| a.id.as_str()), Some("a1"));
        drop(reg);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_closed_fence_refuses_a_credential() {
        let mut reg = Registry::in_memory().await.expect("open");
        let (fence, control) = Fence::closed("held by other-7");
        reg.set_fence(fence);
        assert!(matches!(
            reg.save_app(&record("a1")).await,
            Err(RegistryError::NotLeader(_))
        ));
        control.set(Leadership::Leading);
        reg.save_app(&record("a2")).await.expect("leading");
        let m = reg.load().await.expect("load");
        assert_eq!(m.apps.keys().collect::<Vec<_>>(), ["a2"]);
    }
}
