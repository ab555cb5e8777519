//! Operator API keys in the registry (migration 11): inserted once, then only revoked. Not
//! part of the routing table: no version is taken (the audit log's rule).

use super::{corrupt, get_u64, to_i64, Registry, RegistryError};
use libsql::params;

/// One operator key as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorKeyRecord {
    pub id: String,
    pub name: String,
    /// `viewer` or `admin`.
    pub role: String,
    pub digest: [u8; 32],
    /// The secret's first characters (`rgo_AbCd`).
    pub prefix: String,
    pub created_at_ms: u64,
    pub created_by: String,
    pub expires_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| u64::try_from(v).unwrap_or(0))
}

impl Registry {
    /// Every operator key, revoked ones too, oldest first.
    pub async fn operator_keys(&self) -> Result<Vec<OperatorKeyRecord>, RegistryError> {
        let mut rows = self
            .conn
            .query(
                "SELECT id, name, role, digest, prefix, created_at_ms, created_by,
                        expires_at_ms, revoked_at_ms
                 FROM operator_keys ORDER BY created_at_ms, id",
                (),
            )
            .await?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await? {
            let id: String = row.get(0)?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(row.get_str(3)?, &mut digest)
                .map_err(|e| corrupt(format!("operator_keys/{id}"), e))?;
            out.push(OperatorKeyRecord {
                name: row.get(1)?,
                role: row.get(2)?,
                digest,
                prefix: row.get(4)?,
                created_at_ms: get_u64(&row, 5)?,
                created_by: row.get(6)?,
                expires_at_ms: opt_u64(row.get(7)?),
                revoked_at_ms: opt_u64(row.get(8)?),
                id,
            });
        }
        Ok(out)
    }

    /// Insert a key, or record its revocation (nothing else of a key ever changes).
    pub async fn save_operator_key(&self, k: &OperatorKeyRecord) -> Result<(), RegistryError> {
        self.fenced()?;
        self.conn
            .execute(
                "INSERT INTO operator_keys (id, name, role, digest, prefix, created_at_ms,
                                           created_by, expires_at_ms, revoked_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET revoked_at_ms = excluded.revoked_at_ms",
                params![
                    k.id.as_str(),
                    k.name.as_str(),
                    k.role.as_str(),
                    hex::encode(k.digest),
                    k.prefix.as_str(),
                    to_i64(k.created_at_ms),
                    k.created_by.as_str(),
                    k.expires_at_ms.map(to_i64),
                    k.revoked_at_ms.map(to_i64)
                ],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, role: &str) -> OperatorKeyRecord {
        OperatorKeyRecord {
            id: id.into(),
            name: format!("{id} name"),
            role: role.into(),
            digest: [id.len() as u8; 32],
            prefix: "rgo_AbCd".into(),
            created_at_ms: 1,
            created_by: "operator_token".into(),
            expires_at_ms: Some(2_000),
            revoked_at_ms: None,
        }
    }

    #[tokio::test]
    async fn keys_are_saved_revoked_and_read_back() {
        let r = Registry::in_memory().await.expect("registry");
        let a = key("oa", "viewer");
        let b = OperatorKeyRecord {
            expires_at_ms: None,
            ..key("obb", "admin")
        };
        r.save_operator_key(&a).await.expect("save");
        r.save_operator_key(&b).await.expect("save");
        assert_eq!(
            r.operator_keys().await.expect("load"),
            [a.clone(), b.clone()]
        );
        // A revocation changes that column only.
        let revoked = OperatorKeyRecord {
            revoked_at_ms: Some(5),
            name: "renamed".into(),
            ..a.clone()
        };
        r.save_operator_key(&revoked).await.expect("revoke");
        let back = r.operator_keys().await.expect("load");
        assert_eq!(back[0].revoked_at_ms, Some(5));
        assert_eq!(back[0].name, a.name);
        // The schema refuses a role that is not one.
        assert!(r.save_operator_key(&key("oc", "root")).await.is_err());
        // And a second key with the same digest.
        let twin = OperatorKeyRecord {
            digest: a.digest,
            ..key("od", "viewer")
        };
        assert!(r.save_operator_key(&twin).await.is_err());
    }
}
