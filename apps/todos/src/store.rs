//! Todos in each tenant's own database, rows keyed by caller: the database realmctl
//! provisioned for the tenant, reached through the `realmgate-app` SDK; or, for demos
//! that trust the plain headers, `<data-dir>/<tenant>.db` (which outlives the tenant).

use libsql::{params, Builder, Connection, Database};
use realmgate_app::{DbError, Migrate, TenantDatabases};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Mutex;

/// One todo as the JSON API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Todo {
    pub id: i64,
    pub title: String,
    pub done: bool,
    pub created_at: i64,
}

/// Where tenants' databases come from.
pub enum Store {
    /// The tenant's provisioned database, from realmctl (the SDK).
    Tenants(Arc<TenantDatabases>),
    /// Demo only (`--trust-headers --data-dir`): one file per tenant id, kept open.
    Files {
        data_dir: PathBuf,
        dbs: Mutex<HashMap<String, Arc<Database>>>,
    },
}

/// A failed store call: the tenant's database could not be had (its own status), or a
/// query failed (500).
#[derive(Debug)]
pub enum Error {
    Database(DbError),
    Sql(libsql::Error),
}

impl From<libsql::Error> for Error {
    fn from(e: libsql::Error) -> Error {
        Error::Sql(e)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Database(e) => write!(f, "{e}"),
            Error::Sql(e) => write!(f, "{e}"),
        }
    }
}

/// The app's own migrations, run by the SDK once per opened database. Its tables sit
/// beside realmctl's `tenant_meta`; `todos_schema` records the version.
/// Version 1 adopts a table made before versions were recorded (`IF NOT EXISTS`).
const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS todos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    title TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS todos_by_subject ON todos (subject, id);"];

/// Apply the migrations not yet applied, each in its own transaction.
pub async fn migrate(conn: Connection) -> Result<(), libsql::Error> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS todos_schema (version INTEGER PRIMARY KEY)",
        (),
    )
    .await?;
    let mut rows = conn
        .query("SELECT coalesce(max(version), 0) FROM todos_schema", ())
        .await?;
    let done: i64 = match rows.next().await? {
        Some(row) => row.get(0)?,
        None => 0,
    };
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= done {
            continue;
        }
        let tx = conn.transaction().await?;
        tx.execute_batch(sql).await?;
        tx.execute(
            "INSERT INTO todos_schema (version) VALUES (?1)",
            params![version],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// [`migrate`] as the SDK takes it.
pub fn migrations() -> Migrate {
    Arc::new(|conn| Box::pin(migrate(conn)))
}

impl Store {
    pub fn files(data_dir: PathBuf) -> Store {
        Store::Files {
            data_dir,
            dbs: Mutex::new(HashMap::new()),
        }
    }

    /// A connection to `tenant`'s database. `tenant` has been checked to be a tenant id (a
    /// DNS label), so it is safe as a file name.
    async fn conn(&self, tenant: &str) -> Result<Connection, Error> {
        let (data_dir, dbs) = match self {
            Store::Tenants(t) => return t.connect(tenant).await.map_err(Error::Database),
            Store::Files { data_dir, dbs } => (data_dir, dbs),
        };
        let mut dbs = dbs.lock().await;
        if let Some(db) = dbs.get(tenant) {
            return Ok(db.connect()?);
        }
        std::fs::create_dir_all(data_dir)
            .map_err(|e| libsql::Error::ConnectionFailed(format!("data dir: {e}")))?;
        let db = Builder::new_local(data_dir.join(format!("{tenant}.db")))
            .build()
            .await?;
        let conn = db.connect()?;
        migrate(conn.clone()).await?;
        dbs.insert(tenant.to_string(), Arc::new(db));
        Ok(conn)
    }

    pub async fn list(&self, tenant: &str, subject: &str) -> Result<Vec<Todo>, Error> {
        let conn = self.conn(tenant).await?;
        let mut rows = conn
            .query(
                "SELECT id, title, done, created_at FROM todos WHERE subject = ?1 ORDER BY id",
                params![subject],
            )
            .await?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await? {
            out.push(Todo {
                id: row.get(0)?,
                title: row.get(1)?,
                done: row.get::<i64>(2)? != 0,
                created_at: row.get(3)?,
            });
        }
        Ok(out)
    }

    pub async fn add(&self, tenant: &str, subject: &str, title: &str) -> Result<Todo, Error> {
        let conn = self.conn(tenant).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        conn.execute(
            "INSERT INTO todos (subject, title, done, created_at) VALUES (?1, ?2, 0, ?3)",
            params![subject, title, now],
        )
        .await?;
        Ok(Todo {
            id: conn.last_insert_rowid(),
            title: title.to_string(),
            done: false,
            created_at: now,
        })
    }

    /// Flip `done`; `false` when the caller has no such todo.
    pub async fn toggle(&self, tenant: &str, subject: &str, id: i64) -> Result<bool, Error> {
        let conn = self.conn(tenant).await?;
        let n = conn
            .execute(
                "UPDATE todos SET done = 1 - done WHERE id = ?1 AND subject = ?2",
                params![id, subject],
            )
            .await?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn todos_are_per_tenant_and_per_subject() {
        let dir = std::env::temp_dir().join(format!("todos-store-{}", std::process::id()));
        let store = Store::files(dir.clone());
        store.add("acme", "alice", "one").await.expect("add");
        store.add("acme", "bob", "two").await.expect("add");
        store.add("beta", "alice", "three").await.expect("add");
        let titles = |v: Vec<Todo>| v.into_iter().map(|t| t.title).collect::<Vec<_>>();
        assert_eq!(
            titles(store.list("acme", "alice").await.expect("list")),
            ["one"]
        );
        assert_eq!(
            titles(store.list("acme", "bob").await.expect("list")),
            ["two"]
        );
        assert_eq!(
            titles(store.list("beta", "alice").await.expect("list")),
            ["three"]
        );
        assert!(dir.join("acme.db").exists() && dir.join("beta.db").exists());
        let id = store.list("acme", "alice").await.expect("list")[0].id;
        assert!(
            !store.toggle("acme", "bob", id).await.expect("toggle"),
            "not bob's"
        );
        assert!(store.toggle("acme", "alice", id).await.expect("toggle"));
        assert!(store.list("acme", "alice").await.expect("list")[0].done);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn migrations_run_once() {
        let db = Builder::new_local(":memory:").build().await.expect("db");
        let conn = db.connect().expect("conn");
        migrate(conn.clone()).await.expect("first");
        conn.execute(
            "INSERT INTO todos (subject, title, created_at) VALUES ('a', 't', 0)",
            (),
        )
        .await
        .expect("insert");
        migrate(conn.clone()).await.expect("again");
        let mut rows = conn
            .query("SELECT count(*) FROM todos", ())
            .await
            .expect("q");
        let n: i64 = rows
            .next()
            .await
            .expect("row")
            .expect("one")
            .get(0)
            .expect("n");
        assert_eq!(n, 1, "kept");
    }
}
