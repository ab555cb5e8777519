//! Provisioning step 2, database (`libsql`): one libsql database per tenant at
//! `<data-dir>/tenants/<id>.db`, migrated; `remove` archives it (renamed with a timestamp
//! under `tenants/archive/`), never deletes it.
//!
//! With a remote libsql server the file is an embedded replica: archiving it leaves the
//! server's database, rows and all. So `remove` first marks that database deleted
//! (`tenant_meta.deleted_at_ms`), and `ensure` refuses a database so marked: a tenant created
//! again with the same id stays `failed` on this step (retried) until the operator archives
//! the old database on the server and makes the namespace anew, instead of showing the new
//! tenant's users the old tenant's rows.

use super::{digest_of, Outputs, Step, StepError, StepKind, TenantInput};
use crate::migrate::{migrate, Migration};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The schema every tenant database starts with; apps add their own tables on top.
pub const TENANT_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "tenant metadata",
    sql: r#"
CREATE TABLE tenant_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
"#,
}];

pub struct Database {
    dir: PathBuf,
    /// `url_template` with `{tenant}`, and the auth token: each tenant database becomes an
    /// embedded replica of its remote database.
    remote: Option<(String, String)>,
}

impl Database {
    pub fn new(data_dir: &Path, remote: Option<(String, String)>) -> Database {
        Database {
            dir: data_dir.join("tenants"),
            remote,
        }
    }

    pub fn path_of(&self, tenant: &str) -> PathBuf {
        self.dir.join(format!("{tenant}.db"))
    }

    async fn open(&self, t: &TenantInput) -> Result<libsql::Database, StepError> {
        let path = self.path_of(t.id.as_str());
        let db = match &self.remote {
            None => libsql::Builder::new_local(&path).build().await,
            Some((template, token)) => {
                libsql::Builder::new_remote_replica(
                    &path,
                    template.replace("{tenant}", t.id.as_str()),
                    token.clone(),
                )
                .build()
                .await
            }
        };
        db.map_err(|e| StepError::new(format!("cannot open {}: {e}", path.display())))
    }
}

#[async_trait::async_trait]
impl Step for Database {
    fn kind(&self) -> StepKind {
        StepKind::Database
    }

    fn provider(&self) -> &'static str {
        "libsql"
    }

    fn input_digest(&self, t: &TenantInput) -> String {
        let remote = self.remote.as_ref().map_or("", |(u, _)| u.as_str());
        digest_of([t.id.as_str(), remote])
    }

    async fn ensure(&self, t: &TenantInput, _previous: &Outputs) -> Result<Outputs, StepError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| StepError::new(format!("cannot create {}: {e}", self.dir.display())))?;
        let db = self.open(t).await?;
        if self.remote.is_some() {
            db.sync()
                .await
                .map_err(|e| StepError::new(format!("remote sync: {e}")))?;
        }
        let conn = db
            .connect()
            .map_err(|e| StepError::new(format!("connect: {e}")))?;
        refuse_deleted(&conn, t).await?;
        let version = migrate(&conn, TENANT_MIGRATIONS, &format!("tenant {}", t.id))
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        conn.execute(
            "INSERT INTO tenant_meta (key, value) VALUES ('tenant', ?1)
             ON CONFLICT (key) DO NOTHING",
            libsql::params![t.id.as_str()],
        )
        .await
        .map_err(|e| StepError::new(format!("tenant_meta: {e}")))?;
        let mut out = Outputs::default();
        // Absolute: apps are handed this path (`GET /v1/tenants/{id}/database`).
        let path = self.path_of(t.id.as_str());
        let path = std::path::absolute(&path).unwrap_or(path);
        out.public
            .insert("path".into(), json!(path.display().to_string()));
        if let Some((template, _)) = &self.remote {
            out.public.insert(
                "url".into(),
                json!(template.replace("{tenant}", t.id.as_str())),
            );
        }
        out.public.insert("schema_version".into(), json!(version));
        Ok(out)
    }

    /// Archive: `tenants/archive/<id>-<unix-ms>.db` (with its WAL files). Never deletes.
    async fn remove(&self, t: &TenantInput, _previous: &Outputs) -> Result<(), StepError> {
        let path = self.path_of(t.id.as_str());
        if !path.exists() {
            return Ok(());
        }
        if self.remote.is_some() {
            self.mark_deleted(t).await?;
        }
        let archive = self.dir.join("archive");
        std::fs::create_dir_all(&archive)
            .map_err(|e| StepError::new(format!("cannot create {}: {e}", archive.display())))?;
        let stamp = crate::time::now_ms();
        let target = archive.join(format!("{}-{stamp}.db", t.id));
        // The WAL and shared-memory files first: the main file's presence is what says
        // "not archived yet", so it moves last.
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", path.display()));
            if side.exists() {
                let to = PathBuf::from(format!("{}{suffix}", target.display()));
                std::fs::rename(&side, &to)
                    .map_err(|e| StepError::new(format!("archive {}: {e}", side.display())))?;
            }
        }
        std::fs::rename(&path, &target)
            .map_err(|e| StepError::new(format!("archive {}: {e}", path.display())))?;
        log::info!("tenant {}: database archived as {}", t.id, target.display());
        Ok(())
    }
}

impl Database {
    /// Mark the tenant's database deleted, in the database itself (on a remote server: the
    /// primary, through the replica), so it is never handed to a new tenant of this id.
    async fn mark_deleted(&self, t: &TenantInput) -> Result<(), StepError> {
        let db = self.open(t).await?;
        let conn = db
            .connect()
            .map_err(|e| StepError::new(format!("connect: {e}")))?;
        conn.execute(
            "INSERT INTO tenant_meta (key, value) VALUES ('deleted_at_ms', ?1)
             ON CONFLICT (key) DO NOTHING",
            libsql::params![crate::time::now_ms().to_string()],
        )
        .await
        .map_err(|e| StepError::new(format!("marking tenant {}'s database deleted: {e}", t.id)))?;
        if self.remote.is_some() {
            db.sync()
                .await
                .map_err(|e| StepError::new(format!("remote sync: {e}")))?;
        }
        Ok(())
    }
}

/// A database a deleted tenant left behind is not a new tenant's.
async fn refuse_deleted(conn: &libsql::Connection, t: &TenantInput) -> Result<(), StepError> {
    let marked = conn
        .query(
            "SELECT value FROM tenant_meta WHERE key = 'deleted_at_ms'",
            (),
        )
        .await;
    // No tenant_meta yet: a new database.
    let Ok(mut rows) = marked else {
        return Ok(());
    };
    match rows.next().await {
        Ok(Some(row)) => Err(StepError::new(format!(
            "the database for tenant {} still holds the data of a deleted tenant of this id (deleted at unix ms {}): archive it on the libsql server and make its namespace anew (empty); this step is retried",
            t.id,
            row.get::<String>(0).unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;

    #[tokio::test]
    async fn ensure_is_idempotent_and_remove_archives() {
        let dir = std::env::temp_dir().join(format!("rc-db-step-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let step = Database::new(&dir, None);
        let t = TenantInput {
            id: TenantId::parse("acme").expect("id"),
            display_name: "Acme".into(),
            hosts: vec![],
            domains: vec![],
        };
        step.remove(&t, &Outputs::default())
            .await
            .expect("remove without ensure");
        let a = step.ensure(&t, &Outputs::default()).await.expect("ensure");
        let b = step.ensure(&t, &a).await.expect("ensure again");
        assert_eq!(a.public, b.public);
        assert_eq!(b.public["schema_version"], 1);
        assert!(step.path_of("acme").exists());
        step.remove(&t, &b).await.expect("remove");
        assert!(!step.path_of("acme").exists());
        let archived: Vec<_> = std::fs::read_dir(dir.join("tenants/archive"))
            .expect("archive dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            archived
                .iter()
                .any(|n| n.starts_with("acme-") && n.ends_with(".db")),
            "{archived:?}"
        );
        step.remove(&t, &b).await.expect("remove again");
        // What a remote server keeps after a deletion (the replica archived, the server's
        // database not): marked deleted, it is refused to the tenant created again.
        step.ensure(&t, &Outputs::default()).await.expect("fresh");
        step.mark_deleted(&t).await.expect("marked");
        let err = step
            .ensure(&t, &Outputs::default())
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("a deleted tenant"), "{err}");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", step.path_of("acme").display()));
        }
        // Created again: a new, empty file, not the archived one.
        {
            let db = step.open(&t).await.expect("open");
            let conn = db.connect().expect("connect");
            conn.execute("CREATE TABLE app_rows (x)", ())
                .await
                .expect("app table");
            conn.execute("INSERT INTO app_rows VALUES (1)", ())
                .await
                .expect("row");
        }
        step.remove(&t, &b).await.expect("archive the app's rows");
        let c = step.ensure(&t, &Outputs::default()).await.expect("again");
        assert_eq!(c.public["path"], a.public["path"], "same place");
        let db = step.open(&t).await.expect("open");
        let conn = db.connect().expect("connect");
        let mut rows = conn
            .query(
                "SELECT count(*) FROM sqlite_master WHERE name = 'app_rows'",
                (),
            )
            .await
            .expect("query");
        let row = rows.next().await.expect("row").expect("one");
        assert_eq!(row.get::<i64>(0).expect("n"), 0, "a fresh database");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
