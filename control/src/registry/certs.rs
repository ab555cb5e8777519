//! Certificates in the registry: the chain, the sealed key and the names each is served for.

use super::{corrupt, get_u64, to_i64, Registry, RegistryError};
use crate::model::{CertRecord, Model};
use libsql::params;
use realmgate_table::host::HostPattern;
use realmgate_table::validate::parse_cert_name;

impl Registry {
    pub(super) async fn load_certificates(&self, model: &mut Model) -> Result<(), RegistryError> {
        let mut hosts: std::collections::HashMap<String, Vec<HostPattern>> = Default::default();
        let mut rows = self
            .conn
            .query(
                "SELECT certificate, host FROM certificate_hosts ORDER BY certificate, position",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let name: String = row.get(0)?;
            let host = parse_cert_name(row.get_str(1)?)
                .map_err(|e| corrupt(format!("certificate_hosts/{name}"), e))?;
            hosts.entry(name).or_default().push(host);
        }
        let mut rows = self
            .conn
            .query(
                "SELECT name, cert_pem, key_sealed, not_before, not_after, fingerprint,
                        table_version, created_at_ms, updated_at_ms FROM certificates",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let name: String = row.get(0)?;
            let record = CertRecord {
                hosts: hosts.remove(&name).unwrap_or_default(),
                cert_pem: row.get(1)?,
                key_sealed: row.get(2)?,
                not_before: get_u64(&row, 3)?,
                not_after: get_u64(&row, 4)?,
                fingerprint: row.get(5)?,
                table_version: get_u64(&row, 6)?,
                created_at_ms: get_u64(&row, 7)?,
                updated_at_ms: get_u64(&row, 8)?,
                name,
            };
            model.put_certificate(record);
        }
        Ok(())
    }

    /// Insert or replace a certificate and its names; returns the new table version. A name
    /// another certificate holds fails the write (the caller checks first).
    pub async fn save_certificate(&self, c: &CertRecord) -> Result<u64, RegistryError> {
        self.write(|tx, version| async move {
            let name = c.name.as_str();
            tx.execute(
                "DELETE FROM certificate_hosts WHERE certificate = ?1",
                params![name],
            )
            .await?;
            tx.execute(
                "INSERT INTO certificates (name, cert_pem, key_sealed, not_before, not_after,
                                           fingerprint, table_version, created_at_ms,
                                           updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (name) DO UPDATE SET cert_pem = excluded.cert_pem,
                     key_sealed = excluded.key_sealed, not_before = excluded.not_before,
                     not_after = excluded.not_after, fingerprint = excluded.fingerprint,
                     table_version = excluded.table_version,
                     updated_at_ms = excluded.updated_at_ms",
                params![
                    name,
                    c.cert_pem.as_str(),
                    c.key_sealed.as_str(),
                    to_i64(c.not_before),
                    to_i64(c.not_after),
                    c.fingerprint.as_str(),
                    to_i64(version),
                    to_i64(c.created_at_ms),
                    to_i64(c.updated_at_ms)
                ],
            )
            .await?;
            for (position, host) in c.hosts.iter().enumerate() {
                tx.execute(
                    "INSERT INTO certificate_hosts (host, certificate, position)
                     VALUES (?1, ?2, ?3)",
                    params![host.to_string(), name, position as i64],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// Remove a certificate (its names go with it); returns the new table version.
    pub async fn delete_certificate(&self, name: &str) -> Result<u64, RegistryError> {
        self.write(|tx, _| async move {
            tx.execute(
                "DELETE FROM certificate_hosts WHERE certificate = ?1",
                params![name],
            )
            .await?;
            tx.execute("DELETE FROM certificates WHERE name = ?1", params![name])
                .await?;
            Ok(())
        })
        .await
    }
}
