//! Todos in each tenant's own libsql database (`<data-dir>/<tenant>.db`), rows keyed by caller.

use libsql::{params, Builder, Connection, Database};
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

/// Opens each tenant's database once and keeps it open.
pub struct Store {
    data_dir: PathBuf,
    dbs: Mutex<HashMap<String, Arc<Database>>>,
}

pub type Error = libsql::Error;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS todos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    title TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS todos_by_subject ON todos (subject, id);";

impl Store {
    pub fn new(data_dir: PathBuf) -> Store {
        Store {
            data_dir,
            dbs: Mutex::new(HashMap::new()),
        }
    }

    /// A connection to `tenant`'s database, created and migrated on first use. `tenant` has
    /// been checked to be a tenant id (a DNS label), so it is safe as a file name.
    async fn conn(&self, tenant: &str) -> Result<Connection, Error> {
        let mut dbs = self.dbs.lock().await;
        if let Some(db) = dbs.get(tenant) {
            return db.connect();
        }
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| libsql::Error::ConnectionFailed(format!("data dir: {e}")))?;
        let db = Builder::new_local(self.data_dir.join(format!("{tenant}.db")))
            .build()
            .await?;
        let conn = db.connect()?;
        conn.execute_batch(SCHEMA).await?;
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
        let store = Store::new(dir.clone());
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
}
