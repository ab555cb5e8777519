//! The fleet's assertion keys in the registry: sealed key, public JWK, state and times.

use super::{corrupt, get_u64, to_i64, Registry, RegistryError};
use crate::model::{AssertionKeyRecord, KeyPhase, Model};
use libsql::params;

fn opt_u64(row: &libsql::Row, idx: i32) -> Result<Option<u64>, RegistryError> {
    let v: Option<i64> = row.get(idx)?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

impl Registry {
    pub(super) async fn load_assertion_keys(&self, model: &mut Model) -> Result<(), RegistryError> {
        let mut rows = self
            .conn
            .query(
                "SELECT kid, key_sealed, public_jwk, state, created_at_ms, activate_at_ms,
                        retire_at_ms, table_version FROM assertion_keys",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let kid: String = row.get(0)?;
            let at = || format!("assertion_keys/{kid}");
            let public = serde_json::from_str(row.get_str(2)?).map_err(|e| corrupt(at(), e))?;
            let phase =
                KeyPhase::parse(row.get_str(3)?).ok_or_else(|| corrupt(at(), "unknown state"))?;
            let record = AssertionKeyRecord {
                key_sealed: row.get(1)?,
                public,
                phase,
                created_at_ms: get_u64(&row, 4)?,
                activate_at_ms: opt_u64(&row, 5)?,
                retire_at_ms: opt_u64(&row, 6)?,
                table_version: get_u64(&row, 7)?,
                kid,
            };
            model.assertion.keys.insert(record.kid.clone(), record);
        }
        Ok(())
    }

    /// Write these keys (inserted or replaced) and delete `gone`, in one change; returns the
    /// new table version.
    pub async fn save_assertion_keys(
        &self,
        keys: &[AssertionKeyRecord],
        gone: &[String],
    ) -> Result<u64, RegistryError> {
        let publics = keys
            .iter()
            .map(|k| serde_json::to_string(&k.public))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt("assertion key".into(), e))?;
        self.write(|tx, version| async move {
            for (k, public) in keys.iter().zip(&publics) {
                tx.execute(
                    "INSERT INTO assertion_keys (kid, key_sealed, public_jwk, state, created_at_ms,
                                                 activate_at_ms, retire_at_ms, table_version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (kid) DO UPDATE SET state = excluded.state,
                         activate_at_ms = excluded.activate_at_ms,
                         retire_at_ms = excluded.retire_at_ms,
                         table_version = excluded.table_version",
                    params![
                        k.kid.as_str(),
                        k.key_sealed.as_str(),
                        public.as_str(),
                        k.phase.name(),
                        to_i64(k.created_at_ms),
                        k.activate_at_ms.map(to_i64),
                        k.retire_at_ms.map(to_i64),
                        to_i64(version)
                    ],
                )
                .await?;
            }
            for kid in gone {
                tx.execute(
                    "DELETE FROM assertion_keys WHERE kid = ?1",
                    params![kid.as_str()],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }
}
