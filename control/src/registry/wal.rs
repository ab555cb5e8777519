//! The registry file's journal: a write-ahead log, so a change costs one fsync.

use super::RegistryError;
use libsql::Connection;

/// Put a local registry file in write-ahead-log mode (persistent: recorded in the file). A
/// commit is then one append and one fsync of the log (`synchronous` stays `FULL`: a change
/// answered is on disk), instead of the rollback journal's three, and reads never wait for a
/// writer. (An embedded replica's log is libsql's own, and left alone.)
pub(super) async fn write_ahead_log(conn: &Connection) -> Result<(), RegistryError> {
    let mut rows = conn.query("PRAGMA journal_mode = WAL", ()).await?;
    let mode = match rows.next().await? {
        Some(row) => row.get::<String>(0)?,
        None => String::new(),
    };
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("registry: journal mode {mode:?}, not WAL: every commit costs more fsyncs");
    }
    drop(rows);
    conn.execute("PRAGMA synchronous = FULL", ()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Registry;

    async fn pragma(reg: &Registry, name: &str) -> String {
        let mut rows = reg
            .conn
            .query(&format!("PRAGMA {name}"), ())
            .await
            .expect("pragma");
        let row = rows.next().await.expect("row").expect("a value");
        row.get_value(0).map(|v| format!("{v:?}")).expect("value")
    }

    /// A registry file is in WAL mode with full sync (an answered change is on disk), and
    /// stays so when reopened; the version counter carries on across the reopen.
    #[tokio::test]
    async fn a_registry_file_is_write_ahead_logged_with_full_sync() {
        let dir = std::env::temp_dir().join(format!(
            "realmctl-registry-wal-{}-{}",
            std::process::id(),
            crate::time::now_ms()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for round in 0..2u64 {
            let reg = Registry::open(&dir, None).await.expect("open");
            assert_eq!(pragma(&reg, "journal_mode").await, "Text(\"wal\")");
            assert_eq!(pragma(&reg, "synchronous").await, "Integer(2)", "FULL");
            let v = reg.ensure_version().await.expect("version");
            let app = crate::ids::UpstreamName::parse("app").expect("name");
            let up = crate::model::fixtures::upstream(&["127.0.0.1:9001"]);
            let saved = reg.save_upstream(&app, &up.spec, 5).await.expect("save");
            assert_eq!((v, saved), (1 + round, 2 + round));
            assert!(
                dir.join("registry.db-wal").exists(),
                "the log is beside the file"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
