//! The tenant's own database, end to end: the real realmctl provisions each tenant's libsql
//! file (its database step alone, no Keycloak) and mints the todos app's credential; the real
//! gateway signs the assertion; the real todos asks realmctl where the tenant's database is
//! and keeps its rows there. Deleting a tenant archives its database and ends the app's
//! handle; a tenant created again with the same id starts empty.

use realmgate_e2e::assertion::section;
use realmgate_e2e::tokens::access_claims;
use realmgate_e2e::{Gateway, GatewayOpts, JwksServer, Realmctl, Table, TempDir, TestKey, Todos};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const ISS_ACME: &str = "http://id.test/realms/acme";
const ISS_BETA: &str = "http://id.test/realms/beta";
const AUD: &str = "todos-api";

struct World {
    jwks: JwksServer,
    key: TestKey,
    rc: Realmctl,
    gw: Gateway,
    todos: Todos,
    credential: String,
    _dir: TempDir,
}

fn tenant(id: &str, pool: &str) -> Value {
    json!({"id": id, "hosts": [format!("{id}.test")], "display_name": id,
           "routes": [{"prefix": "/todos/", "upstream": pool, "auth": "public"}]})
}

/// realmctl with tenants acme and beta on pool `todos` and gamma on pool `other`, each
/// with its provisioned database; the todos app's credential minted with the CLI; the
/// gateway routing acme's and beta's `/todos/` (jwt) to the real todos.
async fn world() -> World {
    let jwks = JwksServer::start().await;
    let key = TestKey::rs256("r1");
    jwks.set_keys("/certs", vec![key.jwk()]);
    let rc = Realmctl::with_databases().await;
    for pool in ["todos", "other"] {
        let (s, v) = rc
            .call(
                Method::PUT,
                &format!("/v1/upstreams/{pool}"),
                Some(json!({"endpoints": ["127.0.0.1:9"]})),
            )
            .await;
        assert!(s == 200 || s == 201, "{s} {v}");
    }
    for (id, pool) in [("acme", "todos"), ("beta", "todos"), ("gamma", "other")] {
        let (s, v) = rc
            .call(Method::POST, "/v1/tenants", Some(tenant(id, pool)))
            .await;
        assert!(s == 201 || s == 202, "{s} {v}");
        rc.until_database(id, 200).await;
    }
    let out = rc.cli(&["app", "create", "todos", "--pool", "todos"]);
    let credential = out.lines().next().unwrap_or("").to_owned();
    assert!(credential.starts_with("rga_"), "{out}");
    let dir = TempDir::new("app-database");
    let file = dir.write("todos-credential", &credential);
    let gw = Gateway::start(GatewayOpts::default()).await;
    let jwks_url = format!(
        "http://localhost:{}/.realmgate/jwks.json",
        gw.listen_addr().port()
    );
    let todos = Todos::with_realmctl(&jwks_url, "todos", &rc.url(), &file).await;
    let realm =
        |iss: &str| json!({"issuer": iss, "jwks_uri": jwks.url("/certs"), "audiences": [AUD]});
    let route = json!([{"prefix": "/todos/", "upstream": "todos", "auth": "jwt"}]);
    let mut t = Table::new(1)
        .upstream("todos", [todos.addr()])
        .tenant_json(json!({"id": "acme", "hosts": ["acme.test", "localhost"],
                            "realm": realm(ISS_ACME), "routes": route}))
        .tenant_json(json!({"id": "beta", "hosts": ["beta.test"],
                            "realm": realm(ISS_BETA), "routes": route}))
        .build();
    t["assertion"] = section(&[("k1", 1, true)]);
    gw.push_ok(&t).await;
    World {
        jwks,
        key,
        rc,
        gw,
        todos,
        credential,
        _dir: dir,
    }
}

impl World {
    fn bearer(&self, tenant: &str, sub: &str) -> String {
        let iss = if tenant == "acme" { ISS_ACME } else { ISS_BETA };
        format!("Bearer {}", self.key.sign(&access_claims(iss, sub, AUD)))
    }

    /// `GET /todos/api/todos` through the gateway as `sub` of `tenant`.
    async fn list(&self, tenant: &str, sub: &str) -> (u16, Value) {
        let r = self
            .gw
            .fetch(
                self.gw
                    .get(&format!("{tenant}.test"), "/todos/api/todos")
                    .header("authorization", self.bearer(tenant, sub)),
            )
            .await;
        (r.status, r.json())
    }

    async fn titles(&self, tenant: &str, sub: &str) -> Vec<String> {
        let (s, v) = self.list(tenant, sub).await;
        assert_eq!(s, 200, "{v}\n{}", self.todos.logs());
        titles_of(&v["todos"])
    }

    async fn add(&self, tenant: &str, sub: &str, title: &str) {
        let r = self
            .gw
            .fetch(
                self.gw
                    .client()
                    .post(self.gw.url("/todos/api/todos"))
                    .header("host", format!("{tenant}.test"))
                    .header("authorization", self.bearer(tenant, sub))
                    .json(&json!({"title": title})),
            )
            .await;
        assert_eq!(r.status, 201, "{}\n{}", r.text, self.todos.logs());
    }
}

fn titles_of(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["title"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The titles in a libsql file's `todos` table, read straight from the file.
async fn titles_in(path: &Path) -> Vec<String> {
    let db = libsql::Builder::new_local(path)
        .build()
        .await
        .expect("open");
    let conn = db.connect().expect("connect");
    let mut rows = conn
        .query("SELECT title FROM todos ORDER BY id", ())
        .await
        .expect("query");
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.expect("row") {
        out.push(row.get::<String>(0).expect("title"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tenants_each_see_their_own_todos_in_their_own_database() {
    let w = world().await;
    w.add("acme", "user-1", "acme plan").await;
    w.add("beta", "user-1", "beta plan").await;
    w.add("acme", "user-2", "acme other user").await;
    assert_eq!(w.titles("acme", "user-1").await, ["acme plan"]);
    assert_eq!(w.titles("beta", "user-1").await, ["beta plan"]);
    assert_eq!(w.titles("acme", "user-2").await, ["acme other user"]);
    // The rows are in the databases realmctl provisioned, one per tenant.
    let dir = w.rc.tenants_dir();
    assert_eq!(
        titles_in(&dir.join("acme.db")).await,
        ["acme plan", "acme other user"]
    );
    assert_eq!(titles_in(&dir.join("beta.db")).await, ["beta plan"]);
    // And that is where realmctl tells the app to look.
    let (s, v) =
        w.rc.call_as(
            &w.credential,
            Method::GET,
            "/v1/tenants/acme/database",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kind"], "file");
    let path = v["path"].as_str().expect("path");
    assert!(Path::new(path).is_absolute(), "{path}");
    assert_eq!(
        std::fs::canonicalize(path).expect("exists"),
        std::fs::canonicalize(dir.join("acme.db")).expect("exists")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_tenant_starts_empty_and_the_archive_keeps_the_old_rows() {
    let w = world().await;
    w.add("acme", "user-1", "old secret").await;
    assert_eq!(w.titles("acme", "user-1").await, ["old secret"]);
    let (s, v) = w.rc.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert!(s == 200 || s == 202, "{s} {v}");
    w.rc.until_database("acme", 410).await;
    // The deletion has finished (the database archived) once the tenant itself is gone;
    // until then realmctl already answers 410 but the file is still in place.
    realmgate_e2e::eventually(Duration::from_secs(30), "tenant acme deleted", || async {
        let (s, _) = w.rc.call(Method::GET, "/v1/tenants/acme", None).await;
        (s == 404).then_some(())
    })
    .await;
    let (s, v) =
        w.rc.call_as(
            &w.credential,
            Method::GET,
            "/v1/tenants/acme/database",
            None,
        )
        .await;
    assert_eq!(s, 410, "{v}");
    // The gateway still routes acme (its table is this test's), but the app's handle is
    // over: todos says the tenant's database is gone.
    let (s, v) = w.list("acme", "user-1").await;
    assert_eq!(s, 410, "{v}\n{}", w.todos.logs());
    assert_eq!(v["error"], "tenant_database_gone", "{v}");
    // The same id again: a new, empty database.
    let (s, v) =
        w.rc.call(Method::POST, "/v1/tenants", Some(tenant("acme", "todos")))
            .await;
    assert!(s == 201 || s == 202, "{s} {v}");
    w.rc.until_database("acme", 200).await;
    assert!(
        w.titles("acme", "user-1").await.is_empty(),
        "the new acme sees nothing old"
    );
    w.add("acme", "user-1", "new start").await;
    assert_eq!(w.titles("acme", "user-1").await, ["new start"]);
    // The old rows are kept, in the archive.
    let archive = w.rc.tenants_dir().join("archive");
    let archived: Vec<_> = std::fs::read_dir(&archive)
        .expect("archive dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("acme-") && n.ends_with(".db"))
        })
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(titles_in(&archived[0]).await, ["old secret"]);
    // beta never noticed.
    w.add("beta", "user-1", "still here").await;
    assert_eq!(w.titles("beta", "user-1").await, ["still here"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_credential_stays_within_its_pool() {
    let w = world().await;
    let c = w.credential.as_str();
    for (method, path, want) in [
        (Method::GET, "/v1/tenants/acme/database", 200),
        (Method::GET, "/v1/tenants/beta/database", 200),
        (Method::GET, "/v1/tenants/gamma/database", 403),
        (Method::GET, "/v1/tenants/nobody/database", 403),
        (Method::GET, "/v1/tenants", 403),
        (Method::GET, "/v1/tenants/acme", 403),
        (Method::DELETE, "/v1/tenants/acme", 403),
        (Method::GET, "/v1/upstreams", 403),
        (Method::GET, "/v1/apps", 403),
        (Method::POST, "/v1/apps", 403),
        (Method::GET, "/v1/keys", 403),
        (Method::GET, "/v1/table", 403),
    ] {
        let (s, v) = w.rc.call_as(c, method.clone(), path, None).await;
        assert_eq!(s, want, "{method} {path}: {v}");
    }
    // Still there: the DELETE above was refused.
    w.rc.until_database("acme", 200).await;
    // Listed without its secret; revoked, it opens nothing.
    let list = w.rc.cli(&["app", "list", "-o", "json"]);
    assert!(list.contains("\"pool\": \"todos\""), "{list}");
    assert!(!list.contains(c), "{list}");
    let apps: Value = serde_json::from_str(&list).expect("json");
    let id = apps[0]["id"].as_str().expect("id");
    w.rc.cli(&["app", "revoke", id]);
    let (s, _) =
        w.rc.call_as(c, Method::GET, "/v1/tenants/acme/database", None)
            .await;
    assert_eq!(s, 401);
    // The credential never reached realmctl's log.
    assert!(!w.rc.logs().contains(c));
    assert!(!w.todos.logs().contains(c));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_locked_database_file_is_a_clear_error() {
    let w = world().await;
    w.add("beta", "user-1", "kept").await;
    // beta's file moved away behind realmctl's back: a clear 503, nothing crashes.
    let file = w.rc.tenants_dir().join("beta.db");
    let aside = w.rc.tenants_dir().join("beta.db.aside");
    std::fs::rename(&file, &aside).expect("move");
    let (s, v) = w.list("beta", "user-1").await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"], "tenant_database_unavailable");
    assert!(
        v["message"].as_str().unwrap_or("").contains("missing"),
        "{v}"
    );
    std::fs::rename(&aside, &file).expect("back");
    assert_eq!(w.titles("beta", "user-1").await, ["kept"]);
    // acme's file locked by another writer before todos first opens it: its migration
    // cannot run, a clear 503; once the lock goes, it works.
    let db = libsql::Builder::new_local(w.rc.tenants_dir().join("acme.db"))
        .build()
        .await
        .expect("open");
    let conn = db.connect().expect("connect");
    conn.execute("BEGIN EXCLUSIVE", ()).await.expect("lock");
    let (s, v) = w.list("acme", "user-1").await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"], "tenant_database_unavailable");
    conn.execute("COMMIT", ()).await.expect("unlock");
    assert!(w.titles("acme", "user-1").await.is_empty());
    let _ = &w.jwks;
}

/// The table version realmctl serves (`GET /v1/table`, as an operator).
async fn table_version(rc: &Realmctl) -> u64 {
    let (s, v) = rc.call(Method::GET, "/v1/table", None).await;
    assert_eq!(s, 200, "{v}");
    v["version"].as_u64().expect("version")
}

#[tokio::test(flavor = "multi_thread")]
async fn minting_and_revoking_a_credential_leave_the_table_alone() {
    let rc = Realmctl::with_databases().await;
    let credential = realmgate_e2e::todos::provision_for_todos(&rc, "todos", &["acme"]).await;
    let before = table_version(&rc).await;
    // Another credential minted, and both revoked: the table is the same, and so is its
    // version (no gateway is sent an identical table).
    let out = rc.cli(&["app", "create", "reports", "--pool", "todos"]);
    assert!(out.starts_with("rga_"), "{out}");
    let apps: Value = serde_json::from_str(&rc.cli(&["app", "list", "-o", "json"])).expect("json");
    for app in apps.as_array().expect("apps") {
        rc.cli(&["app", "revoke", app["id"].as_str().expect("id")]);
    }
    assert_eq!(table_version(&rc).await, before);
    let (s, _) = rc
        .call_as(&credential, Method::GET, "/v1/tenants/acme/database", None)
        .await;
    assert_eq!(s, 401, "revoked, and kept so");
    // A tenant change is the very next version.
    let (s, v) = rc
        .call(Method::POST, "/v1/tenants", Some(tenant("beta", "todos")))
        .await;
    assert!(s == 201 || s == 202, "{s} {v}");
    assert_eq!(v["table_version"].as_u64(), Some(before + 1), "{v}");
    assert!(table_version(&rc).await > before);
}
