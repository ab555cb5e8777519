//! Versioned schema migrations of a libsql database — the registry's and each tenant's —
//! recorded in `schema_migrations`.
//!
//! Each migration runs in its own transaction together with its `schema_migrations` row, so a
//! crash leaves either all of it or none. A database migrated by a newer `realmctl` is refused
//! rather than guessed at.

use libsql::Connection;

/// One schema step.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Why a database could not be brought up to date. The registry words these as its own
/// errors (`RegistryError`), a provisioning step as the step's.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database: {0}")]
    Db(#[from] libsql::Error),
    #[error("migration {version} failed: {source}")]
    Failed { version: i64, source: libsql::Error },
    #[error(
        "schema version {found} is newer than this realmctl knows ({known}); upgrade realmctl"
    )]
    TooNew { found: i64, known: i64 },
}

/// Bring the schema up to date; returns the schema version now in force.
/// `what` names the database in the log.
pub async fn migrate(
    conn: &Connection,
    migrations: &[Migration],
    what: &str,
) -> Result<i64, MigrateError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version       INTEGER PRIMARY KEY,
             name          TEXT NOT NULL,
             applied_at_ms INTEGER NOT NULL
         )",
        (),
    )
    .await?;
    let current = current_version(conn).await?;
    let latest = migrations.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(MigrateError::TooNew {
            found: current,
            known: latest,
        });
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        let tx = conn.transaction().await?;
        let applied = async {
            tx.execute_batch(m.sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
                libsql::params![m.version, m.name, crate::time::now_ms() as i64],
            )
            .await?;
            Ok::<_, libsql::Error>(())
        }
        .await;
        match applied {
            Ok(()) => tx.commit().await?,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(MigrateError::Failed {
                    version: m.version,
                    source: e,
                });
            }
        }
        log::info!("{what}: applied migration {} ({})", m.version, m.name);
    }
    current_version(conn).await
}

async fn current_version(conn: &Connection) -> Result<i64, MigrateError> {
    let mut rows = conn
        .query(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            (),
        )
        .await?;
    match rows.next().await? {
        Some(row) => Ok(row.get::<i64>(0)?),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::migrations::MIGRATIONS;

    async fn memory() -> Connection {
        let db = libsql::Builder::new_local(":memory:")
            .build()
            .await
            .expect("in-memory db");
        db.connect().expect("connect")
    }

    async fn tables(conn: &Connection) -> Vec<String> {
        let mut rows = conn
            .query(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
                (),
            )
            .await
            .expect("query");
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.expect("row") {
            out.push(row.get::<String>(0).expect("name"));
        }
        out
    }

    #[tokio::test]
    async fn later_migrations_apply_on_top() {
        let conn = memory().await;
        migrate(&conn, &MIGRATIONS[..1], "test")
            .await
            .expect("migrate");
        let more = [
            Migration {
                version: 1,
                name: MIGRATIONS[0].name,
                sql: MIGRATIONS[0].sql,
            },
            Migration {
                version: 2,
                name: "extra",
                sql: "CREATE TABLE extra (x INTEGER) STRICT;",
            },
        ];
        assert_eq!(migrate(&conn, &more, "test").await.expect("migrate 2"), 2);
        assert!(tables(&conn).await.contains(&"extra".to_owned()));
    }

    #[tokio::test]
    async fn failed_migration_rolls_back_and_is_reported() {
        let conn = memory().await;
        let bad = [Migration {
            version: 1,
            name: "broken",
            sql: "CREATE TABLE ok (x INTEGER); CREATE TABLE broken (;",
        }];
        let err = migrate(&conn, &bad, "test").await.expect_err("must fail");
        assert!(
            matches!(err, MigrateError::Failed { version: 1, .. }),
            "{err}"
        );
        assert_eq!(
            tables(&conn).await,
            ["schema_migrations"],
            "nothing half-applied"
        );
    }
}
