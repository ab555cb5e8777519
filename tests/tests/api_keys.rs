//! Namespace-scoped API keys through the real gateway: where keys come from, 401/403/400,
//! tenant and namespace scope, every path trick of issue 4 one by one, identity headers sent
//! upstream (and the secret not), and expiry checked per request.

use realmgate_e2e::{get_request, Echo, Gateway, GatewayOpts, RawResponse, Table, Upstream};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ACME_KEY: &str = "rgk_acmeacmeacmeacmeacmeacmeacmeacmeacmeacmeacm";
const ACME_STAR: &str = "rgk_starstarstarstarstarstarstarstarstarstarsta";
const BETA_KEY: &str = "rgk_betabetabetabetabetabetabetabetabetabetabet";
const OPERATOR_KEY: &str = "rgk_operatoroperatoroperatoroperatoroperatoropx";
const EXPIRED_KEY: &str = "rgk_expiredexpiredexpiredexpiredexpiredexpiredx";
const UNKNOWN_KEY: &str = "rgk_unknownunknownunknownunknownunknownunknownx";

pub fn digest(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

fn key(id: &str, secret: &str, tenant: Option<&str>, ns: &[&str]) -> Value {
    let mut k = json!({"id": id, "digest": digest(secret), "namespaces": ns});
    if let Some(t) = tenant {
        k["tenant"] = json!(t);
    }
    k
}

struct Fixture {
    gw: Gateway,
    up: Upstream,
}

fn table(version: u64, up: &Upstream, extra_keys: Vec<Value>) -> Value {
    let route = |prefix: &str, auth: Value, ns: Option<&str>| {
        let mut r = json!({"prefix": prefix, "upstream": "app", "auth": auth});
        if let Some(ns) = ns {
            r["namespace"] = json!(ns);
        }
        r
    };
    let mut t = Table::new(version)
        .upstream("app", [up.addr()])
        .tenant_json(json!({"id": "acme", "hosts": ["acme.test"], "routes": [
            route("/", json!("api_key"), None),
            route("/@acme/", json!("api_key"), Some("@acme")),
            route("/@other/", json!("api_key"), Some("@other")),
            route("/docs/", json!(["public", "api_key"]), None),
            route("/open/", json!("public"), None),
        ]}))
        .tenant_json(json!({"id": "beta", "hosts": ["beta.test"], "routes": [
            route("/", json!("api_key"), None),
            route("/@beta/", json!("api_key"), Some("@beta")),
        ]}))
        .build();
    let mut keys = vec![
        key("k-acme", ACME_KEY, Some("acme"), &["@acme"]),
        key("k-acme-star", ACME_STAR, Some("acme"), &["*"]),
        key("k-beta", BETA_KEY, Some("beta"), &["@beta"]),
        key("k-op", OPERATOR_KEY, None, &["*"]),
    ];
    let mut expired = key("k-expired", EXPIRED_KEY, Some("acme"), &["*"]);
    expired["expires_at"] = json!("2020-01-01T00:00:00Z");
    keys.push(expired);
    keys.extend(extra_keys);
    t["api_keys"] = Value::Array(keys);
    t
}

async fn fixture() -> Fixture {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(&table(1, &up, vec![])).await;
    Fixture { gw, up }
}

impl Fixture {
    async fn get(&self, host: &str, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        self.gw
            .raw(get_request(Some(host.as_bytes()), target, headers))
            .await
    }

    async fn with_key(&self, host: &str, target: &str, key: &str) -> RawResponse {
        self.get(host, target, &[("X-API-Key", key)]).await
    }
}

fn echo(r: &RawResponse) -> Echo {
    assert_eq!(r.status, 200, "expected a proxied 200: {}", r.text());
    Echo::from_json(&r.json())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_from_either_header_reach_upstream_as_identity_not_secret() {
    let f = fixture().await;
    let bearer = format!("Bearer {ACME_KEY}");
    for headers in [
        vec![("X-API-Key", ACME_KEY)],
        vec![("Authorization", bearer.as_str())],
        vec![("X-API-Key", ACME_KEY), ("Authorization", bearer.as_str())],
    ] {
        let r = f.get("acme.test", "/@acme/items?x=1", &headers).await;
        let e = echo(&r);
        assert_eq!(
            e.header("x-realmgate-key-id"),
            Some("k-acme"),
            "{headers:?}"
        );
        assert_eq!(e.header("x-realmgate-namespace"), Some("@acme"));
        assert_eq!(e.header("x-realmgate-tenant"), Some("acme"));
        assert_eq!(e.header("x-api-key"), None, "the secret stays at the edge");
        assert_eq!(e.header("authorization"), None);
    }
    // Client-sent identity headers never survive.
    let r = f
        .get(
            "acme.test",
            "/@acme/x",
            &[
                ("X-API-Key", ACME_KEY),
                ("X-Realmgate-Key-Id", "k-op"),
                ("X-Realmgate-Namespace", "@other"),
            ],
        )
        .await;
    let e = echo(&r);
    assert_eq!(e.header_all("x-realmgate-key-id"), ["k-acme"]);
    assert_eq!(e.header_all("x-realmgate-namespace"), ["@acme"]);
    // A non-key bearer (a JWT) is not a key: the route still needs one.
    f.get(
        "acme.test",
        "/@acme/x",
        &[("Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.x")],
    )
    .await
    .assert_error(401, "missing_api_key");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_unknown_expired_and_conflicting_keys() {
    let f = fixture().await;
    let before = f.up.hits();
    f.get("acme.test", "/@acme/x", &[])
        .await
        .assert_error(401, "missing_api_key");
    for bad in [UNKNOWN_KEY, EXPIRED_KEY, "rgk_short", "not-a-key", ""] {
        f.with_key("acme.test", "/@acme/x", bad)
            .await
            .assert_error(401, "invalid_api_key");
    }
    let bearer = format!("Bearer {BETA_KEY}");
    f.get(
        "acme.test",
        "/@acme/x",
        &[("X-API-Key", ACME_KEY), ("Authorization", &bearer)],
    )
    .await
    .assert_error(400, "conflicting_api_keys");
    f.get(
        "acme.test",
        "/@acme/x",
        &[("X-API-Key", ACME_KEY), ("X-API-Key", ACME_STAR)],
    )
    .await
    .assert_error(400, "conflicting_api_keys");
    assert_eq!(f.up.hits(), before, "nothing refused reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_and_tenant_scope() {
    let f = fixture().await;
    // @acme key: its namespace, and namespace-less paths of its tenant.
    echo(&f.with_key("acme.test", "/@acme/x", ACME_KEY).await);
    echo(&f.with_key("acme.test", "/plain", ACME_KEY).await);
    let denied = f.with_key("acme.test", "/@other/x", ACME_KEY).await;
    let body = denied.assert_error(403, "namespace_denied");
    assert_eq!(body["error"], "namespace_denied");
    // Another tenant's host, even for a namespace the key names.
    f.with_key("beta.test", "/@acme/x", ACME_KEY)
        .await
        .assert_error(403, "namespace_denied");
    f.with_key("beta.test", "/@beta/x", ACME_STAR)
        .await
        .assert_error(403, "namespace_denied");
    // `*` covers its own tenant's namespaces.
    for path in ["/@acme/x", "/@other/x", "/@anything/x"] {
        let e = echo(&f.with_key("acme.test", path, ACME_STAR).await);
        assert_eq!(
            e.header("x-realmgate-key-id"),
            Some("k-acme-star"),
            "{path}"
        );
    }
    // The operator key (no tenant, `*`) covers every tenant.
    echo(&f.with_key("acme.test", "/@other/x", OPERATOR_KEY).await);
    let e = echo(&f.with_key("beta.test", "/@beta/x", OPERATOR_KEY).await);
    assert_eq!(e.header("x-realmgate-namespace"), Some("@beta"));
    // A namespace named only by the path (catch-all route) is still enforced and sent.
    let e = echo(&f.with_key("acme.test", "/@acme", ACME_KEY).await);
    assert_eq!(e.header("x-realmgate-namespace"), Some("@acme"));
    // Public and "any of" routes.
    let e = echo(&f.get("acme.test", "/docs/x", &[]).await);
    assert_eq!(e.header("x-realmgate-key-id"), None);
    let e = echo(&f.with_key("acme.test", "/docs/x", ACME_KEY).await);
    assert_eq!(e.header("x-realmgate-key-id"), Some("k-acme"));
    f.with_key("acme.test", "/docs/x", UNKNOWN_KEY)
        .await
        .assert_error(401, "invalid_api_key");
    let e = echo(&f.with_key("acme.test", "/open/x", UNKNOWN_KEY).await);
    assert_eq!(
        e.header("x-realmgate-key-id"),
        None,
        "public routes ignore keys"
    );
}

/// Issue 4's path tricks, one by one: each ends at 400 or at the decision for the namespace
/// it really names, and none reaches the upstream with an @acme key.
#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_never_cross_a_namespace() {
    let f = fixture().await;
    let before = f.up.hits();
    let cases: [(&str, u16, &str); 7] = [
        // Dot segments resolve first: this names @other.
        ("/@acme/../@other/x", 403, "namespace_denied"),
        // An encoded slash hiding `..` is refused outright.
        ("/@acme%2F..%2F@other/x", 400, "bad_path"),
        // `%40` is what an upstream decodes to `@`: that reading reaches the `/@other/` route,
        // another route than `/`, so the path is refused before any key is looked at.
        ("/%40other/x", 400, "ambiguous_path"),
        // With no route of its own, a `%40` namespace is still decided as written.
        ("/%40beta/x", 403, "namespace_denied"),
        // Not a valid namespace (upper case): not guessed at.
        ("/@OTHER/x", 400, "bad_namespace"),
        // `//` collapses: names @other.
        ("//@other/x", 403, "namespace_denied"),
        // A matrix parameter an upstream may strip (it would read `/@other/`): refused.
        ("/@other;x/", 400, "ambiguous_path"),
    ];
    for (target, status, code) in cases {
        let r = f.with_key("acme.test", target, ACME_KEY).await;
        assert_eq!(r.status, status, "{target}: {}", r.text());
        r.assert_error(status, code);
    }
    assert_eq!(f.up.hits(), before, "no trick reached the upstream");
    // The same tricks with a key for @other end at @other's own decision.
    for target in ["/@acme/../@other/x", "//@other/x"] {
        let e = echo(&f.with_key("acme.test", target, ACME_STAR).await);
        assert_eq!(
            e.header("x-realmgate-namespace"),
            Some("@other"),
            "{target}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_is_checked_per_request_not_only_at_table_build() {
    let f = fixture().await;
    let soon = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 2;
    let soon_text = {
        // RFC 3339 by hand: the harness has no date crate.
        let secs = soon;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    };
    let secret = "rgk_soonsoonsoonsoonsoonsoonsoonsoonsoonsoonsoo";
    let mut k = key("k-soon", secret, Some("acme"), &["@acme"]);
    k["expires_at"] = json!(soon_text);
    f.gw.push_ok(&table(2, &f.up, vec![k])).await;
    echo(&f.with_key("acme.test", "/@acme/x", secret).await);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    f.with_key("acme.test", "/@acme/x", secret)
        .await
        .assert_error(401, "invalid_api_key");
    let (_, info) = f.gw.table_info().await;
    assert_eq!(info["version"], 2, "no new table was needed");
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_with_bad_keys_is_refused_whole() {
    let f = fixture().await;
    let mut t = table(2, &f.up, vec![]);
    t["api_keys"][0]["namespaces"] = json!(["acme"]);
    t["api_keys"][1]["tenant"] = json!("nobody");
    t["tenants"][0]["routes"][1]["namespace"] = json!("@beta");
    let (status, body) = f.gw.push(&t).await;
    assert_eq!(status, 422, "{body}");
    let problems = body["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 3, "{body}");
    // The old table (and its keys) stays in force.
    echo(&f.with_key("acme.test", "/@acme/x", ACME_KEY).await);
}
