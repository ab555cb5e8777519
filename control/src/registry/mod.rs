//! The tenant registry on libsql: an embedded database file (optionally an embedded replica
//! of a remote libsql/Turso server), its migrations, and the writes that change tenant state.
//!
//! Every write runs in one transaction that also bumps the table version, so the version
//! counter and the rows it describes never disagree, across crashes and restarts. Writes of
//! a group commit share one transaction, each in a savepoint of its own (`batch`).

pub mod acme;
mod acme_status;
mod apps;
mod assertion_keys;
pub mod audit;
mod batch;
mod certs;
mod domains;
mod journal;
pub mod migrations;
pub mod operator_keys;
mod wal;

use crate::ids::{TenantId, UpstreamName};
use crate::leadership::Fence;
use crate::model::{CatalogEntry, KeyRecord, Model, TenantRecord, UpstreamRecord};
use libsql::{params, Connection, Database};
use realmgate_table::host::HostPattern;
use realmgate_table::{HttpsMode, Route, Tenant, TenantStatus, Upstream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of the registry layer. The API maps all of them to 500 and logs the details.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry database: {0}")]
    Db(#[from] libsql::Error),
    #[error("registry migration {version} failed: {source}")]
    Migration { version: i64, source: libsql::Error },
    #[error("registry schema version {found} is newer than this realmctl knows ({known}); upgrade realmctl")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("registry row {what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The fence is closed: this process does not hold the Lease (the API answers 503).
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// A group commit failed as a whole (`service::batch`): every change of it is refused.
    #[error("registry batch: {0}")]
    Batch(String),
}

/// Settings for an embedded replica of a remote libsql server (Turso or `sqld`).
#[derive(Clone)]
pub struct RemoteSync {
    /// `libsql://…`, `https://…` or `http://…` URL of the primary.
    pub url: String,
    /// The server's auth token (may be empty for an unauthenticated `sqld`).
    pub auth_token: String,
    /// Pull the primary's changes this often in the background; `None`: only at start.
    pub sync_interval: Option<Duration>,
    /// Whether a write is visible to reads on this replica before the next sync.
    pub read_your_writes: bool,
}

impl std::fmt::Debug for RemoteSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSync")
            .field("url", &self.url)
            .field("auth_token", &"<redacted>")
            .field("sync_interval", &self.sync_interval)
            .field("read_your_writes", &self.read_your_writes)
            .finish()
    }
}

pub struct Registry {
    // Kept alive: dropping the database stops a replica's background sync.
    _db: Database,
    conn: Connection,
    /// Checked by every write (before it starts and again just before it commits); open
    /// unless a Lease is configured. Opening the registry (migrations, the first version of
    /// an empty one) is not fenced: it is idempotent and runs under the writer lock.
    fence: Fence,
    /// The transaction a group of changes shares, while one is open (`batch`).
    batch: Option<batch::OpenBatch>,
}

impl Registry {
    /// Open (creating if needed) `<data_dir>/registry.db` and migrate it.
    pub async fn open(
        data_dir: &Path,
        remote: Option<&RemoteSync>,
    ) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(data_dir).map_err(|source| RegistryError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join("registry.db");
        let db = match remote {
            None => {
                let db = libsql::Builder::new_local(&path).build().await?;
                let registry = Self::from_database(db).await?;
                wal::write_ahead_log(&registry.conn).await?;
                return Ok(registry);
            }
            Some(r) => {
                let mut b =
                    libsql::Builder::new_remote_replica(&path, r.url.clone(), r.auth_token.clone())
                        .read_your_writes(r.read_your_writes);
                if let Some(every) = r.sync_interval {
                    b = b.sync_interval(every);
                }
                let db = b.build().await?;
                let synced = db.sync().await?;
                log::info!(
                    "registry: synced replica from {} (frame {:?})",
                    r.url,
                    synced.frame_no()
                );
                db
            }
        };
        Self::from_database(db).await
    }

    /// A registry in memory, for tests.
    pub async fn in_memory() -> Result<Registry, RegistryError> {
        Self::from_database(libsql::Builder::new_local(":memory:").build().await?).await
    }

    async fn from_database(db: Database) -> Result<Registry, RegistryError> {
        let conn = db.connect()?;
        // Several processes never share the file, but a slow disk should wait, not fail.
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute("PRAGMA foreign_keys = ON", ()).await?;
        migrations::migrate_registry(&conn).await?;
        Ok(Registry {
            _db: db,
            conn,
            fence: Fence::open(),
            batch: None,
        })
    }

    /// Gate every write from now on with `fence`.
    pub fn set_fence(&mut self, fence: Fence) {
        self.fence = fence;
    }

    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// `NotLeader` unless the fence is open.
    fn fenced(&self) -> Result<(), RegistryError> {
        self.fence.check().map_err(RegistryError::NotLeader)
    }

    /// The table version; an empty registry starts at version 1 (an empty table), so
    /// gateways always have something to load.
    pub async fn ensure_version(&self) -> Result<u64, RegistryError> {
        let v = read_version(&self.conn).await?;
        if v > 0 {
            return Ok(v);
        }
        // Unfenced (a standby serves reads of an empty registry too), and idempotent.
        self.conn
            .execute(
                "UPDATE meta SET value = 1 WHERE key = 'table_version' AND value < 1",
                (),
            )
            .await?;
        read_version(&self.conn).await
    }

    /// Set the table version to `seen + 1` if it is at or below `seen`; returns the version.
    /// Nothing else changes: the next compile carries the same state under the new number.
    pub async fn move_version_past(&self, seen: u64) -> Result<u64, RegistryError> {
        let next = to_i64(seen.saturating_add(1));
        self.fenced()?;
        self.conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'table_version' AND value < ?1",
                params![next],
            )
            .await?;
        read_version(&self.conn).await
    }

    /// Everything, for the in-memory model.
    pub async fn load(&self) -> Result<Model, RegistryError> {
        let mut model = Model::default();
        model.version = read_version(&self.conn).await?;
        let mut rows = self
            .conn
            .query(
                "SELECT name, spec, table_version, updated_at_ms FROM upstreams",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let name: String = row.get(0)?;
            let spec: String = row.get(1)?;
            let what = || format!("upstreams/{name}");
            let key = UpstreamName::parse(&name).ok_or_else(|| corrupt(what(), "bad name"))?;
            let spec: Upstream = serde_json::from_str(&spec).map_err(|e| corrupt(what(), e))?;
            let record = UpstreamRecord {
                spec,
                table_version: get_u64(&row, 2)?,
                updated_at_ms: get_u64(&row, 3)?,
            };
            model.upstreams.insert(key, record);
        }
        let mut hosts: std::collections::HashMap<String, Vec<String>> = Default::default();
        let mut rows = self
            .conn
            .query(
                "SELECT tenant_id, host FROM tenant_hosts ORDER BY tenant_id, position",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            hosts.entry(row.get(0)?).or_default().push(row.get(1)?);
        }
        let mut provisions = self.load_provision().await?;
        let mut rows = self
            .conn
            .query(
                "SELECT id, display_name, status, routes, catalog, revision, table_version,
                        created_at_ms, updated_at_ms, rate_limits, shell, https, hsts
                 FROM tenants",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let id: String = row.get(0)?;
            let what = || format!("tenants/{id}");
            let key = TenantId::parse(&id).ok_or_else(|| corrupt(what(), "bad id"))?;
            let status = match row.get_str(2)? {
                "active" => TenantStatus::Active,
                "suspended" => TenantStatus::Suspended,
                other => return Err(corrupt(what(), format!("status {other:?}"))),
            };
            let routes: Vec<Route> =
                serde_json::from_str(row.get_str(3)?).map_err(|e| corrupt(what(), e))?;
            let catalog: Vec<CatalogEntry> =
                serde_json::from_str(row.get_str(4)?).map_err(|e| corrupt(what(), e))?;
            let host_list = hosts.remove(&id).unwrap_or_default();
            let patterns = host_list
                .iter()
                .map(|h| HostPattern::parse(h).map_err(|e| corrupt(what(), e)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut record = TenantRecord {
                wire: Tenant {
                    https: match row.get_str(11)? {
                        "off" => HttpsMode::Off,
                        "redirect" => HttpsMode::Redirect,
                        "only" => HttpsMode::Only,
                        other => return Err(corrupt(what(), format!("https {other:?}"))),
                    },
                    hsts: match row.get::<Option<String>>(12)? {
                        Some(text) => {
                            Some(serde_json::from_str(&text).map_err(|e| corrupt(what(), e))?)
                        }
                        None => None,
                    },
                    id: id.clone(),
                    hosts: host_list,
                    routes,
                    status,
                    rate_limits: serde_json::from_str(row.get_str(9)?)
                        .map_err(|e| corrupt(what(), e))?,
                    realm: None,
                    // Filled from the record's own fields below.
                    display_name: None,
                    catalog: Vec::new(),
                    shell: match row.get::<Option<String>>(10)? {
                        Some(text) => {
                            Some(serde_json::from_str(&text).map_err(|e| corrupt(what(), e))?)
                        }
                        None => None,
                    },
                },
                display_name: row.get(1)?,
                catalog,
                revision: get_u64(&row, 5)?,
                table_version: get_u64(&row, 6)?,
                created_at_ms: get_u64(&row, 7)?,
                updated_at_ms: get_u64(&row, 8)?,
                provision: provisions
                    .remove(&id)
                    .unwrap_or_else(|| crate::provision::Provision::ready(Vec::new())),
            };
            record.sync_wire();
            model.put_tenant(key, record, patterns);
        }
        self.load_keys(&mut model).await?;
        self.load_certificates(&mut model).await?;
        self.load_acme_challenges(&mut model).await?;
        self.load_assertion_keys(&mut model).await?;
        self.load_domains(&mut model).await?;
        self.load_apps(&mut model).await?;
        Ok(model)
    }

    async fn load_keys(&self, model: &mut Model) -> Result<(), RegistryError> {
        let mut rows = self
            .conn
            .query(
                "SELECT id, digest, prefix, tenant_id, namespaces, expires_at_ms, rate_limit,
                        created_at_ms, created_by, revoked_at_ms, table_version FROM api_keys",
                (),
            )
            .await?;
        while let Some(row) = rows.next().await? {
            let id: String = row.get(0)?;
            let what = || format!("api_keys/{id}");
            let mut digest = [0u8; 32];
            hex::decode_to_slice(row.get_str(1)?, &mut digest).map_err(|e| corrupt(what(), e))?;
            let tenant = match row.get::<Option<String>>(3)? {
                None => None,
                Some(t) => Some(TenantId::parse(&t).ok_or_else(|| corrupt(what(), "bad tenant"))?),
            };
            let rate_limit = match row.get::<Option<String>>(6)? {
                None => None,
                Some(j) => Some(serde_json::from_str(&j).map_err(|e| corrupt(what(), e))?),
            };
            let opt_u64 = |idx: i32| -> Result<Option<u64>, RegistryError> {
                Ok(row
                    .get::<Option<i64>>(idx)?
                    .map(|v| u64::try_from(v).unwrap_or(0)))
            };
            let record = KeyRecord {
                digest,
                prefix: row.get(2)?,
                tenant,
                namespaces: serde_json::from_str(row.get_str(4)?)
                    .map_err(|e| corrupt(what(), e))?,
                expires_at_ms: opt_u64(5)?,
                rate_limit,
                created_at_ms: get_u64(&row, 7)?,
                created_by: row.get(8)?,
                revoked_at_ms: opt_u64(9)?,
                table_version: get_u64(&row, 10)?,
                id,
            };
            model.put_key(record);
        }
        Ok(())
    }

    /// Insert or replace a key; returns the new table version.
    pub async fn save_key(&self, k: &KeyRecord) -> Result<u64, RegistryError> {
        let namespaces = to_json(&k.namespaces)?;
        let rate_limit = k.rate_limit.as_ref().map(to_json).transpose()?;
        self.write(|tx, version| async move {
            tx.execute(
                "INSERT INTO api_keys (id, digest, prefix, tenant_id, namespaces, expires_at_ms,
                                       rate_limit, created_at_ms, created_by, revoked_at_ms,
                                       table_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (id) DO UPDATE SET revoked_at_ms = excluded.revoked_at_ms,
                     table_version = excluded.table_version",
                params![
                    k.id.as_str(),
                    hex::encode(k.digest),
                    k.prefix.as_str(),
                    k.tenant.as_ref().map(|t| t.as_str().to_owned()),
                    namespaces,
                    k.expires_at_ms.map(to_i64),
                    rate_limit,
                    to_i64(k.created_at_ms),
                    k.created_by.as_str(),
                    k.revoked_at_ms.map(to_i64),
                    to_i64(version)
                ],
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Insert or replace a tenant and its hosts; returns the new table version, which the
    /// stored row carries as its `table_version`.
    pub async fn save_tenant(&self, record: &TenantRecord) -> Result<u64, RegistryError> {
        let routes = to_json(&record.wire.routes)?;
        let catalog = to_json(&record.catalog)?;
        let rate_limits = to_json(&record.wire.rate_limits)?;
        let shell = record.wire.shell.as_ref().map(to_json).transpose()?;
        let hsts = record.wire.hsts.as_ref().map(to_json).transpose()?;
        self.write(|tx, version| async move {
            let id = record.wire.id.as_str();
            tx.execute("DELETE FROM tenant_hosts WHERE tenant_id = ?1", params![id])
                .await?;
            tx.execute(
                "DELETE FROM tenant_tombstones WHERE tenant_id = ?1",
                params![id],
            )
            .await?;
            tx.execute(
                "INSERT INTO tenants (id, display_name, status, routes, catalog, revision,
                                      table_version, created_at_ms, updated_at_ms, rate_limits,
                                      provision_state, routed, provision_error, shell, https,
                                      hsts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (id) DO UPDATE SET
                     display_name = excluded.display_name, status = excluded.status,
                     routes = excluded.routes, catalog = excluded.catalog,
                     rate_limits = excluded.rate_limits,
                     revision = excluded.revision, table_version = excluded.table_version,
                     updated_at_ms = excluded.updated_at_ms,
                     provision_state = excluded.provision_state, routed = excluded.routed,
                     provision_error = excluded.provision_error, shell = excluded.shell,
                     https = excluded.https, hsts = excluded.hsts",
                params![
                    id,
                    record.display_name.as_str(),
                    status_text(record.wire.status),
                    routes,
                    catalog,
                    to_i64(record.revision),
                    to_i64(version),
                    to_i64(record.created_at_ms),
                    to_i64(record.updated_at_ms),
                    rate_limits,
                    record.provision.state.name(),
                    i64::from(record.provision.routed),
                    record.provision.error.clone(),
                    shell,
                    record.wire.https.as_str(),
                    hsts
                ],
            )
            .await?;
            for step in &record.provision.steps {
                journal::upsert_step(&tx, id, step).await?;
            }
            for (position, host) in record.wire.hosts.iter().enumerate() {
                tx.execute(
                    "INSERT INTO tenant_hosts (host, tenant_id, position) VALUES (?1, ?2, ?3)",
                    params![host.as_str(), id, position as i64],
                )
                .await?;
            }
            Ok(())
        })
        .await
    }

    /// Remove a tenant (its hosts go with it, its keys are revoked at `now_ms`); returns
    /// the new table version.
    pub async fn delete_tenant(
        &self,
        id: &TenantId,
        pools: &[String],
        now_ms: u64,
    ) -> Result<u64, RegistryError> {
        let pools = to_json(&pools)?;
        self.write(|tx, version| async move {
            tx.execute(
                "INSERT INTO tenant_tombstones (tenant_id, pools, deleted_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant_id) DO UPDATE SET pools = excluded.pools,
                     deleted_at_ms = excluded.deleted_at_ms",
                params![id.as_str(), pools, to_i64(now_ms)],
            )
            .await?;
            tx.execute(
                "UPDATE api_keys SET revoked_at_ms = ?2, table_version = ?3
                 WHERE tenant_id = ?1 AND revoked_at_ms IS NULL",
                params![id.as_str(), to_i64(now_ms), to_i64(version)],
            )
            .await?;
            tx.execute(
                "DELETE FROM tenant_hosts WHERE tenant_id = ?1",
                params![id.as_str()],
            )
            .await?;
            tx.execute("DELETE FROM tenants WHERE id = ?1", params![id.as_str()])
                .await?;
            Ok(())
        })
        .await
    }

    pub async fn save_upstream(
        &self,
        name: &UpstreamName,
        spec: &Upstream,
        updated_at_ms: u64,
    ) -> Result<u64, RegistryError> {
        let spec = to_json(spec)?;
        self.write(|tx, version| async move {
            tx.execute(
                "INSERT INTO upstreams (name, spec, table_version, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec,
                     table_version = excluded.table_version, updated_at_ms = excluded.updated_at_ms",
                params![name.as_str(), spec, to_i64(version), to_i64(updated_at_ms)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn delete_upstream(&self, name: &UpstreamName) -> Result<u64, RegistryError> {
        self.write(|tx, _| async move {
            tx.execute(
                "DELETE FROM upstreams WHERE name = ?1",
                params![name.as_str()],
            )
            .await?;
            Ok(())
        })
        .await
    }
}

async fn read_version(conn: &Connection) -> Result<u64, RegistryError> {
    let mut rows = conn
        .query("SELECT value FROM meta WHERE key = 'table_version'", ())
        .await?;
    match rows.next().await? {
        Some(row) => get_u64(&row, 0),
        None => Err(corrupt("meta/table_version".into(), "missing")),
    }
}

pub(crate) fn get_u64(row: &libsql::Row, idx: i32) -> Result<u64, RegistryError> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| corrupt(format!("column {idx}"), format!("negative value {v}")))
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, RegistryError> {
    serde_json::to_string(v).map_err(|e| corrupt("serialised value".into(), e))
}

pub(crate) fn corrupt(what: String, detail: impl std::fmt::Display) -> RegistryError {
    RegistryError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

fn status_text(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
}

#[cfg(test)]
mod tests;
