//! ACME state in the registry: accounts (sealed credentials), the order journal, and the
//! http-01 answers that enter the table. Sealing is the caller's; nothing here is in the clear
//! that should not be.

use super::{corrupt, to_i64, Registry, RegistryError};
use crate::model::Model;
use libsql::params;
use realmgate_table::AcmeChallenge;

/// One `acme_orders` row.
#[derive(Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub certificate: String,
    pub tenant: String,
    pub directory_url: String,
    pub hosts: Vec<String>,
    pub order_url: String,
    pub key_sealed: Option<String>,
    /// JSON `{type, detail}`.
    pub last_error: Option<String>,
}

impl Registry {
    pub async fn acme_account(&self, directory_url: &str) -> Result<Option<String>, RegistryError> {
        let mut rows = self
            .conn
            .query(
                "SELECT credentials_sealed FROM acme_accounts WHERE directory_url = ?1",
                params![directory_url],
            )
            .await?;
        match rows.next().await? {
            Some(row) => Ok(Some(row.get(0)?)),
            None => Ok(None),
        }
    }

    pub async fn save_acme_account(
        &self,
        directory_url: &str,
        sealed: &str,
        now_ms: u64,
    ) -> Result<(), RegistryError> {
        self.conn
            .execute(
                "INSERT INTO acme_accounts (directory_url, credentials_sealed, created_at_ms)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (directory_url) DO UPDATE SET
                     credentials_sealed = excluded.credentials_sealed",
                params![directory_url, sealed, to_i64(now_ms)],
            )
            .await?;
        Ok(())
    }

    pub async fn acme_order(&self, certificate: &str) -> Result<Option<OrderRow>, RegistryError> {
        let mut rows = self
            .conn
            .query(
                "SELECT tenant_id, directory_url, hosts, order_url, key_sealed, last_error
                 FROM acme_orders WHERE certificate = ?1",
                params![certificate],
            )
            .await?;
        let Some(row) = rows.next().await? else {
            return Ok(None);
        };
        let hosts = serde_json::from_str(row.get_str(2)?)
            .map_err(|e| corrupt(format!("acme_orders/{certificate}"), e))?;
        Ok(Some(OrderRow {
            certificate: certificate.to_owned(),
            tenant: row.get(0)?,
            directory_url: row.get(1)?,
            hosts,
            order_url: row.get(3)?,
            key_sealed: row.get(4)?,
            last_error: row.get(5)?,
        }))
    }

    pub async fn save_acme_order(&self, o: &OrderRow, now_ms: u64) -> Result<(), RegistryError> {
        let hosts = serde_json::to_string(&o.hosts).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "INSERT INTO acme_orders (certificate, tenant_id, directory_url, hosts, order_url,
                                          key_sealed, last_error, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (certificate) DO UPDATE SET tenant_id = excluded.tenant_id,
                     directory_url = excluded.directory_url, hosts = excluded.hosts,
                     order_url = excluded.order_url, key_sealed = excluded.key_sealed,
                     last_error = excluded.last_error, updated_at_ms = excluded.updated_at_ms",
                params![
                    o.certificate.as_str(),
                    o.tenant.as_str(),
                    o.directory_url.as_str(),
                    hosts,
                    o.order_url.as_str(),
                    o.key_sealed.clone(),
                    o.last_error.clone(),
                    to_i64(now_ms)
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn delete_acme_order(&self, certificate: &str) -> Result<(), RegistryError> {
        self.conn
            .execute(
                "DELETE FROM acme_orders WHERE certificate = ?1",
                params![certificate],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn load_acme_challenges(
        &self,
        model: &mut Model,
    ) -> Result<(), RegistryError> {
        let mut rows = self
            .conn
            .query(
                "SELECT token, key_authorization, hosts, expires_at_ms FROM acme_challenges",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let token: String = row.get(0)?;
            let hosts = serde_json::from_str(row.get_str(2)?)
                .map_err(|e| corrupt(format!("acme_challenges/{token}"), e))?;
            let expires_at_ms = u64::try_from(row.get::<i64>(3)?).unwrap_or(0);
            model.acme_challenges.insert(
                token.clone(),
                AcmeChallenge {
                    token,
                    key_authorization: row.get(1)?,
                    hosts,
                    expires_at: crate::time::rfc3339_seconds(expires_at_ms),
                },
            );
        }
        Ok(())
    }

    /// Add challenge answers; returns the table version that carries them.
    pub async fn put_acme_challenges(
        &self,
        answers: &[(AcmeChallenge, u64)],
    ) -> Result<u64, RegistryError> {
        self.write(|tx, _| async move {
            for (a, expires_at_ms) in answers {
                let hosts = serde_json::to_string(&a.hosts).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    "INSERT INTO acme_challenges (token, key_authorization, hosts, expires_at_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (token) DO UPDATE SET
                         key_authorization = excluded.key_authorization,
                         hosts = excluded.hosts, expires_at_ms = excluded.expires_at_ms",
                    params![
                        a.token.as_str(),
                        a.key_authorization.as_str(),
                        hosts,
                        to_i64(*expires_at_ms)
                    ],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// Remove challenge answers; returns the table version without them.
    pub async fn delete_acme_challenges(&self, tokens: &[String]) -> Result<u64, RegistryError> {
        self.write(|tx, _| async move {
            for t in tokens {
                tx.execute(
                    "DELETE FROM acme_challenges WHERE token = ?1",
                    params![t.as_str()],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }
}
