//! The signed identity assertion end to end: the real gateway signs `x-realmgate-assertion`
//! for every forwarded request and serves its keys at `/.realmgate/jwks.json`; the upstream
//! verifies it with the `realmgate-app` SDK against that JWKS; the real todos app refuses
//! what did not come through the gateway for its own pool; keys rotate under traffic.

use realmgate_app::{Auth, Principal, Rejection};
use realmgate_e2e::assertion::{claims, section, verifier};
use realmgate_e2e::tokens::access_claims;
use realmgate_e2e::{
    eventually, Gateway, GatewayOpts, JwksServer, Table, TestKey, Todos, Upstream,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ISS: &str = "http://id.test/realms/acme";
const KEY: &str = "rgk_acmeacmeacmeacmeacmeacmeacmeacmeacmeacmeacm";
const HEADER: &str = "x-realmgate-assertion";

struct Realm {
    jwks: JwksServer,
    key: TestKey,
}

impl Realm {
    async fn start() -> Realm {
        let jwks = JwksServer::start().await;
        let key = TestKey::rs256("r1");
        jwks.set_keys("/certs", vec![key.jwk()]);
        Realm { jwks, key }
    }

    fn json(&self) -> Value {
        json!({"issuer": ISS, "jwks_uri": self.jwks.url("/certs"), "audiences": ["acme-api"]})
    }

    fn bearer(&self, sub: &str) -> String {
        format!(
            "Bearer {}",
            self.key.sign(&access_claims(ISS, sub, "acme-api"))
        )
    }
}

fn route(prefix: &str, upstream: &str, auth: &str) -> Value {
    json!({"prefix": prefix, "upstream": upstream, "auth": auth})
}

/// The table: `app` (an echo upstream) behind public, jwt and api_key routes, optionally
/// todos, and the assertion section `keys` (none: no section).
fn table(
    version: u64,
    realm: &Realm,
    app: &Upstream,
    todos: Option<&Todos>,
    keys: &[(&str, u8, bool)],
) -> Value {
    let mut routes = vec![
        route("/", "app", "public"),
        route("/api/", "app", "jwt"),
        json!({"prefix": "/@acme/", "upstream": "app", "auth": "api_key", "namespace": "@acme"}),
    ];
    let mut t = Table::new(version).upstream("app", [app.addr()]);
    if let Some(todos) = todos {
        t = t.upstream("todos", [todos.addr()]);
        routes.push(route("/todos/", "todos", "jwt"));
    }
    let mut beta = vec![route("/", "app", "jwt")];
    if todos.is_some() {
        beta.push(route("/todos/", "todos", "public"));
    }
    let mut t = t
        .tenant_json(json!({"id": "acme", "hosts": ["acme.test", "localhost"],
                            "realm": realm.json(), "routes": routes}))
        .tenant_json(json!({"id": "beta", "hosts": ["beta.test"],
                            "realm": {"issuer": "http://id.test/realms/beta",
                                      "jwks_uri": realm.jwks.url("/none"), "audiences": ["b"]},
                            "routes": beta}))
        .build();
    t["api_keys"] = json!([{"id": "k-acme", "tenant": "acme", "namespaces": ["@acme"],
                            "digest": format!("sha256:{}", hex::encode(Sha256::digest(KEY)))}]);
    if !keys.is_empty() {
        t["assertion"] = section(keys);
    }
    t
}

async fn jwks(gw: &Gateway, host: &str) -> Value {
    let r = gw.request(host, "/.realmgate/jwks.json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("max-age=300"));
    r.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_gets_a_valid_assertion_for_each_policy() {
    let realm = Realm::start().await;
    let app = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(&table(
        1,
        &realm,
        &app,
        None,
        &[("k1", 1, true), ("k0", 2, false)],
    ))
    .await;
    let keys = jwks(&gw, "acme.test").await;
    let kids: Vec<&str> = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, ["k1", "k0"]);
    assert!(
        !keys.to_string().contains("\"d\""),
        "no private part: {keys}"
    );
    // Before auth, on every tenant host: beta's routes all need a token.
    assert_eq!(jwks(&gw, "beta.test").await, keys);
    let v = verifier(&keys, &["app"]);
    let cases: Vec<(&str, (&str, String), Principal)> = vec![
        (
            "/",
            ("x-no-credential", String::new()),
            Principal::Anonymous,
        ),
        (
            "/api/x",
            ("authorization", realm.bearer("user-1")),
            Principal::User {
                subject: "user-1".into(),
                roles: vec!["user".into(), "reader".into()],
                via: Auth::Jwt,
            },
        ),
        (
            "/@acme/x",
            ("x-api-key", KEY.to_owned()),
            Principal::ApiKey {
                key_id: "k-acme".into(),
                namespace: Some("@acme".into()),
            },
        ),
    ];
    for (path, (name, value), principal) in cases {
        let echo = gw
            .fetch(
                gw.get("acme.test", path)
                    .header(name, value)
                    // Never believed, never forwarded: the gateway's own replaces it.
                    .header(HEADER, "eyJhbGciOiJub25lIn0.eyJ0ZW5hbnQiOiJiZXRhIn0.")
                    .header("X_Realmgate_Assertion", "forged"),
            )
            .await
            .echo();
        let sent = echo.header_all(HEADER);
        assert_eq!(sent.len(), 1, "{path}: {sent:?}");
        assert!(echo.header_all("x_realmgate_assertion").is_empty());
        let token = &sent[0];
        let caller = v
            .verify(
                token,
                echo.header("x-realmgate-tenant"),
                realmgate_e2e::tokens::now(),
            )
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(caller.principal, principal, "{path}");
        assert_eq!(caller.tenant.as_str(), "acme");
        assert_eq!(caller.pool, "app");
        let c = claims(token);
        assert_eq!(c["iss"], "realmgate");
        assert_eq!(
            c["exp"].as_u64().zip(c["iat"].as_u64()).map(|(e, i)| e - i),
            Some(60),
            "{c}"
        );
        assert_eq!(c.get("sub").is_some(), path == "/api/x", "{c}");
        // Minted for this pool only: an app of another pool refuses it.
        let other = verifier(&keys, &["billing"]);
        assert_eq!(
            other
                .verify(token, None, realmgate_e2e::tokens::now())
                .await,
            Err(Rejection::WrongAudience)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_section_no_assertion_reaches_the_upstream() {
    let realm = Realm::start().await;
    let app = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(&table(1, &realm, &app, None, &[])).await;
    let echo = gw
        .fetch(gw.get("acme.test", "/").header(HEADER, "forged"))
        .await
        .echo();
    assert!(echo.header_all(HEADER).is_empty(), "{:?}", echo.headers);
    assert_eq!(
        gw.request("acme.test", "/.realmgate/jwks.json")
            .await
            .status,
        404
    );
    // The admin GET of the table never shows the signing keys.
    gw.push_ok(&table(2, &realm, &app, None, &[("k1", 1, true)]))
        .await;
    let (status, full) = gw.admin_get_json("/v1/table?full=1").await;
    assert_eq!(status, 200);
    let full = full.to_string();
    assert!(
        full.contains("\"kid\":\"k1\"") && !full.contains("PRIVATE KEY"),
        "{full}"
    );
}

struct Apps {
    realm: Realm,
    app: Upstream,
    todos: Todos,
    gw: Gateway,
}

/// The gateway, then todos verifying against the JWKS the gateway serves on `localhost`
/// (a host of tenant acme), for pool `todos`.
async fn with_todos(keys: &[(&str, u8, bool)]) -> Apps {
    let realm = Realm::start().await;
    let app = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let url = format!(
        "http://localhost:{}/.realmgate/jwks.json",
        gw.listen_addr().port()
    );
    let todos = Todos::verifying(&url, "todos", &["acme", "beta"]).await;
    gw.push_ok(&table(1, &realm, &app, Some(&todos), keys))
        .await;
    Apps {
        realm,
        app,
        todos,
        gw,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn todos_serves_users_through_the_gateway_and_refuses_everything_else() {
    let a = with_todos(&[("k1", 1, true)]).await;
    let (gw, bearer) = (&a.gw, a.realm.bearer("user-7"));
    let r = gw
        .fetch(
            gw.client()
                .post(gw.url("/todos/api/todos"))
                .header("host", "acme.test")
                .header("authorization", &bearer)
                .json(&json!({"title": "signed"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}\n{}", r.text, a.todos.logs());
    let r = gw
        .fetch(
            gw.get("acme.test", "/todos/api/todos")
                .header("authorization", &bearer),
        )
        .await;
    assert_eq!(r.json()["subject"], "user-7", "{}", r.text);
    // A public route (beta's) reaches todos with an anonymous assertion: todos wants a user.
    let r = gw.request("beta.test", "/todos/api/todos").await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("sign_in_required"), "{}", r.text);
    // Straight to todos, as anyone on its network could: the plain headers are not believed.
    let direct = |path: &str| {
        a.gw.client()
            .get(format!("http://{}{path}", a.todos.addr()))
    };
    let r = direct("/todos/api/todos")
        .header("x-realmgate-tenant", "acme")
        .header("x-realmgate-subject", "user-7")
        .send()
        .await
        .expect("todos answers");
    assert_eq!(r.status(), 401);
    assert!(r.text().await.expect("body").contains("assertion_missing"));
    // An assertion the gateway minted for another pool, replayed at todos.
    let echo = gw
        .fetch(
            gw.get("acme.test", "/api/x")
                .header("authorization", &bearer),
        )
        .await
        .echo();
    let foreign = echo.header(HEADER).expect("an assertion").to_owned();
    let r = direct("/todos/api/todos")
        .header(HEADER, &foreign)
        .send()
        .await
        .expect("todos answers");
    assert_eq!(r.status(), 401);
    assert!(r
        .text()
        .await
        .expect("body")
        .contains("assertion_wrong_audience"));
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_under_traffic_without_a_failed_request() {
    let a = Arc::new(with_todos(&[("k1", 1, true)]).await);
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (a, done, stop) = (Arc::clone(&a), Arc::clone(&done), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let bearer = a.realm.bearer(&format!("user-{w}"));
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r =
                    a.gw.fetch(
                        a.gw.get("acme.test", "/todos/api/todos")
                            .header("authorization", &bearer),
                    )
                    .await;
                if r.status != 200 {
                    failures.push(format!("{}: {}", r.status, r.text));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    // Pre-publish k2, make it the signer (k1 still published), then retire k1.
    let steps: [&[(&str, u8, bool)]; 3] = [
        &[("k1", 1, true), ("k2", 2, false)],
        &[("k2", 2, true), ("k1", 1, false)],
        &[("k2", 2, true)],
    ];
    for (i, keys) in steps.into_iter().enumerate() {
        let before = done.load(Ordering::Relaxed);
        eventually(Duration::from_secs(30), "traffic flows", || {
            let n = done.load(Ordering::Relaxed);
            async move { (n >= before + 40).then_some(()) }
        })
        .await;
        a.gw.push_ok(&table(2 + i as u64, &a.realm, &a.app, Some(&a.todos), keys))
            .await;
    }
    let before = done.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(30),
        "traffic flows after the rotation",
        || {
            let n = done.load(Ordering::Relaxed);
            async move { (n >= before + 40).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let failures = w.await.expect("worker");
        assert!(failures.is_empty(), "{failures:?}\n{}", a.todos.logs());
    }
    // The upstream now gets assertions by k2.
    let echo = a.gw.fetch(a.gw.get("acme.test", "/")).await.echo();
    let token = echo.header(HEADER).expect("assertion");
    let kid = jsonwebtoken::decode_header(token).expect("header").kid;
    assert_eq!(kid.as_deref(), Some("k2"));
}
