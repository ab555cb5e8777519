//! The tenant database cache against a fake realmctl: asked once, migrated once, bounded,
//! and dropped when the file moves away or realmctl says the tenant is gone.

use super::*;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex as StdMutex;

#[derive(Default)]
struct Fake {
    answers: StdMutex<HashMap<String, (u16, String)>>,
    asked: AtomicUsize,
    bad_token: AtomicUsize,
}

async fn answer(
    State(f): State<Arc<Fake>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    f.asked.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer rga_test") {
        f.bad_token.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let (status, body) = f
        .answers
        .lock()
        .map(|a| a.get(&tenant).cloned())
        .ok()
        .flatten()
        .unwrap_or((403, r#"{"message": "not yours"}"#.into()));
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
        body,
    )
        .into_response()
}

struct Setup {
    fake: Arc<Fake>,
    dir: PathBuf,
    dbs: TenantDatabases,
    migrations: Arc<AtomicUsize>,
}

impl Setup {
    async fn new(name: &str, ttl: Duration, capacity: usize) -> Setup {
        Setup::with_migration(name, ttl, capacity, true).await
    }

    /// `sql`: whether the migration runs SQL (not on the stand-in sqld, which is no database).
    async fn with_migration(name: &str, ttl: Duration, capacity: usize, sql: bool) -> Setup {
        let fake = Arc::new(Fake::default());
        let app = axum::Router::new()
            .route("/v1/tenants/{id}/database", axum::routing::get(answer))
            .with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = std::env::temp_dir().join(format!("sdk-db-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let migrations = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&migrations);
        let migrate: Migrate = Arc::new(move |conn: libsql::Connection| {
            let counter = Arc::clone(&counter);
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                if sql {
                    conn.execute("CREATE TABLE IF NOT EXISTS notes (x TEXT)", ())
                        .await?;
                }
                Ok(())
            })
        });
        let dbs = TenantDatabases::new(
            DatabasesConfig {
                realmctl_url: format!("http://{addr}"),
                credential: "rga_test".into(),
                ttl,
                capacity,
            },
            migrate,
        );
        Setup {
            fake,
            dir,
            dbs,
            migrations,
        }
    }

    /// realmctl will say `tenant` lives in `<dir>/<tenant>.db` (made empty now).
    fn provision(&self, tenant: &str) -> PathBuf {
        let path = self.dir.join(format!("{tenant}.db"));
        std::fs::write(&path, b"").expect("file");
        self.answer(
            tenant,
            200,
            &serde_json::json!({"tenant": tenant, "kind": "file", "path": path}).to_string(),
        );
        path
    }

    fn answer(&self, tenant: &str, status: u16, body: &str) {
        if let Ok(mut a) = self.fake.answers.lock() {
            a.insert(tenant.into(), (status, body.into()));
        }
    }

    fn asked(&self) -> usize {
        self.fake.asked.load(Ordering::SeqCst)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn asked_once_migrated_once_then_cached() {
    let s = Setup::new("cached", Duration::from_secs(3600), 8).await;
    s.provision("acme");
    for _ in 0..3 {
        let conn = s.dbs.connect("acme").await.expect("connect");
        conn.execute("INSERT INTO notes VALUES ('x')", ())
            .await
            .expect("insert");
    }
    assert_eq!(s.asked(), 1, "realmctl asked once");
    assert_eq!(s.migrations.load(Ordering::SeqCst), 1, "migrated once");
    assert_eq!(s.fake.bad_token.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expired_answers_are_asked_again_and_the_open_database_kept() {
    let s = Setup::new("expiry", Duration::ZERO, 8).await;
    s.provision("acme");
    s.dbs.connect("acme").await.expect("connect");
    s.dbs.connect("acme").await.expect("connect");
    assert_eq!(s.asked(), 2, "no answer kept with a zero ttl");
    assert_eq!(
        s.migrations.load(Ordering::SeqCst),
        1,
        "same file: not reopened"
    );
}

#[tokio::test]
async fn an_archived_file_ends_the_handle_and_gone_is_an_error() {
    let s = Setup::new("archived", Duration::from_secs(3600), 8).await;
    let path = s.provision("acme");
    s.dbs.connect("acme").await.expect("connect");
    // realmctl archives the file and forgets the tenant.
    std::fs::rename(&path, s.dir.join("acme-archived.db")).expect("archive");
    s.answer("acme", 410, r#"{"message": "tenant acme was deleted"}"#);
    let err = s.dbs.connect("acme").await.expect_err("gone");
    assert_eq!(err, DbError::Gone("tenant acme was deleted".into()));
    assert_eq!(s.dbs.cached().await, 0, "the entry went");
    assert_eq!(s.asked(), 2, "the moved file sent it back to realmctl");
    // Created again: a fresh file at the same path is a new database.
    s.provision("acme");
    let conn = s.dbs.connect("acme").await.expect("connect again");
    let mut rows = conn
        .query("SELECT count(*) FROM notes", ())
        .await
        .expect("query");
    let n: i64 = rows
        .next()
        .await
        .expect("row")
        .expect("one")
        .get(0)
        .expect("n");
    assert_eq!(n, 0);
    assert_eq!(s.migrations.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn refusals_missing_files_and_bad_answers_are_errors_not_panics() {
    let s = Setup::new("errors", Duration::from_secs(3600), 8).await;
    assert!(matches!(
        s.dbs.connect("other").await,
        Err(DbError::Refused(_))
    ));
    s.answer(
        "nowhere",
        200,
        &serde_json::json!({"tenant": "nowhere", "kind": "file", "path": s.dir.join("nope.db")})
            .to_string(),
    );
    match s.dbs.connect("nowhere").await {
        Err(DbError::Unavailable(m)) => assert!(m.contains("missing"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(
        !s.dir.join("nope.db").exists(),
        "a missing file is not created"
    );
    // Suspended is for now, not gone: unavailable, although realmctl answers 404.
    s.answer(
        "sleepy",
        404,
        r#"{"error": "tenant_suspended", "message": "tenant sleepy is suspended"}"#,
    );
    assert_eq!(
        s.dbs.connect("sleepy").await.err(),
        Some(DbError::Unavailable("tenant sleepy is suspended".into()))
    );
    s.answer(
        "unknown",
        404,
        r#"{"error": "not_found", "message": "no tenant"}"#,
    );
    assert_eq!(
        s.dbs.connect("unknown").await.err(),
        Some(DbError::Gone("no tenant".into()))
    );
    s.answer(
        "late",
        409,
        r#"{"error": "not_provisioned", "message": "not yet"}"#,
    );
    assert_eq!(
        s.dbs.connect("late").await.err(),
        Some(DbError::Unavailable("not yet".into()))
    );
    s.answer("junk", 200, "not json");
    assert!(matches!(
        s.dbs.connect("junk").await,
        Err(DbError::Unavailable(_))
    ));
    let corrupt = s.dir.join("corrupt.db");
    std::fs::write(&corrupt, b"this is not a sqlite database, not at all, no").expect("write");
    s.answer(
        "corrupt",
        200,
        &serde_json::json!({"kind": "file", "path": corrupt}).to_string(),
    );
    assert!(matches!(
        s.dbs.connect("corrupt").await,
        Err(DbError::Unavailable(_))
    ));
    assert_eq!(s.dbs.cached().await, 0);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let s = Setup::new("bounded", Duration::from_secs(3600), 2).await;
    for t in ["a", "b", "c", "d"] {
        s.provision(t);
        s.dbs.connect(t).await.expect("connect");
    }
    assert_eq!(s.dbs.cached().await, 2);
}

/// A stand-in for a libsql server (sqld): records each request's `Authorization` and
/// `x-namespace`, and answers 503 — it is no database; what counts is what the SDK sends.
async fn stand_in_sqld() -> (std::net::SocketAddr, Arc<StdMutex<Vec<(String, String)>>>) {
    let seen: Arc<StdMutex<Vec<(String, String)>>> = Arc::default();
    let record = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let record = Arc::clone(&record);
        async move {
            let h = |k: &str| {
                headers
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            if let Ok(mut seen) = record.lock() {
                seen.push((h("authorization"), h("x-namespace")));
            }
            (StatusCode::SERVICE_UNAVAILABLE, "a stand-in")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn remote(addr: std::net::SocketAddr, token: &str, life: u64) -> String {
    serde_json::json!({"tenant": "acme", "kind": "remote", "url": format!("http://{addr}"),
                       "namespace": "acme", "auth_token": token, "auth_token_expires_in": life})
    .to_string()
}

#[tokio::test]
async fn a_remote_database_is_opened_with_its_token_and_again_before_it_expires() {
    let s = Setup::with_migration("remote", Duration::from_secs(3600), 8, false).await;
    let (sqld, seen) = stand_in_sqld().await;
    let last = || seen.lock().map(|v| v.last().cloned()).ok().flatten();
    // A token with no life left is used for this request, and realmctl asked again next time.
    s.answer("acme", 200, &remote(sqld, "token-1", 0));
    let conn = s.dbs.connect("acme").await.expect("connect");
    assert!(conn.execute("SELECT 1", ()).await.is_err(), "no database");
    assert_eq!(last(), Some(("Bearer token-1".into(), "acme".into())));
    s.answer("acme", 200, &remote(sqld, "token-2", 300));
    let conn = s.dbs.connect("acme").await.expect("connect again");
    assert_eq!(s.asked(), 2, "asked again: the old token had no life left");
    assert!(conn.execute("SELECT 1", ()).await.is_err(), "no database");
    assert_eq!(last(), Some(("Bearer token-2".into(), "acme".into())));
    // Half of 300 s is left: kept, with its token.
    let conn = s.dbs.connect("acme").await.expect("cached");
    assert!(conn.execute("SELECT 1", ()).await.is_err(), "no database");
    assert_eq!(last(), Some(("Bearer token-2".into(), "acme".into())));
    assert_eq!(s.asked(), 2);
    assert_eq!(
        s.migrations.load(Ordering::SeqCst),
        2,
        "migrated on each opening (a new token opens the database anew)"
    );
    // Deleted at realmctl: the handle goes when realmctl is next asked (at half the token's
    // life at the latest).
    s.answer("beta", 200, &remote(sqld, "token-b", 0));
    s.dbs.connect("beta").await.expect("beta");
    s.answer("beta", 410, r#"{"message": "tenant beta was deleted"}"#);
    assert_eq!(
        s.dbs.connect("beta").await.err(),
        Some(DbError::Gone("tenant beta was deleted".into()))
    );
    assert_eq!(s.dbs.cached().await, 1, "acme only");
}

#[tokio::test]
async fn malformed_remote_answers_are_errors_not_panics() {
    let s = Setup::with_migration("remote-bad", Duration::from_secs(3600), 8, false).await;
    let base = serde_json::json!({"tenant": "acme", "kind": "remote", "url": "libsql://acme.db.example",
                                  "namespace": "acme", "auth_token": "t", "auth_token_expires_in": 300});
    for (field, value) in [
        ("auth_token", serde_json::Value::Null),
        ("url", serde_json::Value::Null),
        ("url", serde_json::json!("ftp://acme.db.example")),
        ("url", serde_json::json!("libsql://")),
        ("url", serde_json::json!("libsql://acme .db")),
        ("namespace", serde_json::json!("a\nb")),
        ("namespace", serde_json::json!("ac me")),
        ("namespace", serde_json::json!("")),
        ("kind", serde_json::json!("carrier-pigeon")),
    ] {
        let mut answer = base.clone();
        answer[field] = value.clone();
        s.answer("acme", 200, &answer.to_string());
        match s.dbs.connect("acme").await {
            Err(DbError::Unavailable(m)) => assert!(!m.contains("\"t\""), "{m}"),
            other => panic!("{field}={value}: {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(s.dbs.cached().await, 0);
    assert_eq!(s.migrations.load(Ordering::SeqCst), 0);
}
