//! `jwt` routes end to end: the real gateway, a real echo upstream, and a loopback JWKS server
//! with locally generated keys — identity headers, realm isolation, refusals, the JWKS refetch
//! rules and the verified-token cache.

use realmgate_e2e::gateway::Reply;
use realmgate_e2e::tokens::{access_claims, now};
use realmgate_e2e::{Gateway, GatewayOpts, JwksServer, Table, TestKey, Upstream};
use serde_json::{json, Value};

const ISS_A: &str = "http://id.test/realms/acme";
const ISS_B: &str = "http://id.test/realms/beta";

struct F {
    gw: Gateway,
    _up: Upstream,
    jwks: JwksServer,
    key: TestKey,
}

fn realm(issuer: &str, jwks: &JwksServer, path: &str, aud: &str) -> Value {
    json!({"issuer": issuer, "jwks_uri": jwks.url(path), "audiences": [aud]})
}

async fn fixture(yaml: &str) -> F {
    let up = Upstream::start("app").await;
    let jwks = JwksServer::start().await;
    let key = TestKey::rs256("k1");
    // Both realms publish the same key: only the issuer tells their tokens apart.
    jwks.set_keys("/acme/certs", vec![key.jwk()]);
    jwks.set_keys("/beta/certs", vec![key.jwk()]);
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml: yaml.to_owned(),
        ..GatewayOpts::default()
    })
    .await;
    let route =
        |prefix: &str, auth: Value| json!({"prefix": prefix, "upstream": "app", "auth": auth});
    let table = Table::new(1)
        .upstream("app", [up.addr()])
        .tenant_json(json!({
            "id": "acme", "hosts": ["acme.test"],
            "realm": realm(ISS_A, &jwks, "/acme/certs", "acme-api"),
            "routes": [route("/", json!("public")), route("/api/", json!("jwt")),
                       route("/opt/", json!(["public", "jwt"])),
                       {"prefix": "/fwd/", "upstream": "app", "auth": "jwt", "forward_token": true}]}))
        .tenant_json(json!({
            "id": "beta", "hosts": ["beta.test"],
            "realm": realm(ISS_B, &jwks, "/beta/certs", "acme-api"),
            "routes": [route("/api/", json!("jwt"))]}))
        .build();
    gw.push_ok(&table).await;
    F {
        gw,
        _up: up,
        jwks,
        key,
    }
}

impl F {
    async fn call(&self, host: &str, path: &str, token: &str) -> Reply {
        self.gw
            .fetch(
                self.gw
                    .get(host, path)
                    .header("authorization", format!("Bearer {token}")),
            )
            .await
    }

    fn token(&self) -> String {
        self.key.sign(&access_claims(ISS_A, "user-1", "acme-api"))
    }
}

/// 401 `unauthorized` with a Bearer challenge naming the tenant and, for a bad token, the
/// RFC 6750 error and this description fragment.
fn assert_401(r: &Reply, tenant: &str, description: &str) {
    r.assert_error(401, "unauthorized");
    let challenge = r
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("401 without WWW-Authenticate: {:?}", r.headers));
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{tenant}\"")),
        "{challenge}"
    );
    if !description.is_empty() {
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(
            challenge.contains(description),
            "{challenge} lacks {description:?}"
        );
        assert!(r.text.contains(description), "{}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_token_reaches_the_upstream_with_its_identity() {
    let f = fixture("").await;
    let token = f.token();
    let r =
        f.gw.fetch(
            f.gw.get("acme.test", "/api/items")
                .header("authorization", format!("Bearer {token}"))
                .header("x-realmgate-subject", "root")
                .header("x-realmgate-roles", "admin"),
        )
        .await;
    let e = r.echo();
    assert_eq!(e.header_all("x-realmgate-subject"), ["user-1"]);
    assert_eq!(e.header_all("x-realmgate-roles"), ["user,reader"]);
    assert_eq!(e.header_all("x-realmgate-tenant"), ["acme"]);
    assert!(
        e.header("authorization").is_none(),
        "the token is not forwarded unless the route says so: {:?}",
        e.headers
    );
    // forward_token: the verified token goes upstream as it came.
    let e = f.call("acme.test", "/fwd/x", &token).await.echo();
    assert_eq!(e.header_all("authorization"), [format!("Bearer {token}")]);
    assert_eq!(e.header_all("x-realmgate-subject"), ["user-1"]);
    // public route: no identity, token passed through untouched.
    let e = f.call("acme.test", "/", &token).await.echo();
    assert!(e.header("x-realmgate-subject").is_none());
    // public + jwt: identity when the token verifies, anonymous otherwise.
    let e = f.call("acme.test", "/opt/", &token).await.echo();
    assert_eq!(e.header_all("x-realmgate-subject"), ["user-1"]);
    let e = f.call("acme.test", "/opt/", "garbage").await.echo();
    assert!(e.header("x-realmgate-subject").is_none());
    let e = f.gw.echo("acme.test", "/opt/").await;
    assert!(e.header("x-realmgate-subject").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_one_realm_never_opens_another_tenant() {
    let f = fixture("").await;
    let a = f.token();
    assert_eq!(f.call("acme.test", "/api/", &a).await.status, 200);
    let r = f.call("beta.test", "/api/", &a).await;
    assert_401(&r, "beta", "issued by another realm");
    let b = f.key.sign(&access_claims(ISS_B, "user-2", "acme-api"));
    assert_eq!(f.call("beta.test", "/api/", &b).await.status, 200);
    assert_401(
        &f.call("acme.test", "/api/", &b).await,
        "acme",
        "issued by another realm",
    );
    // Cached on acme, still refused on beta.
    assert_401(
        &f.call("beta.test", "/api/", &a).await,
        "beta",
        "another realm",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_expired_and_foreign_tokens_are_401() {
    let f = fixture("").await;
    let r = f.gw.request("acme.test", "/api/").await;
    assert_401(&r, "acme", "");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"acme\""));
    let mut expired = access_claims(ISS_A, "u", "acme-api");
    expired["exp"] = json!(now() - 61);
    assert_401(
        &f.call("acme.test", "/api/", &f.key.sign(&expired)).await,
        "acme",
        "expired",
    );
    let mut early = access_claims(ISS_A, "u", "acme-api");
    early["nbf"] = json!(now() + 3600);
    assert_401(
        &f.call("acme.test", "/api/", &f.key.sign(&early)).await,
        "acme",
        "not valid yet",
    );
    let wrong_aud = access_claims(ISS_A, "u", "beta-api");
    assert_401(
        &f.call("acme.test", "/api/", &f.key.sign(&wrong_aud)).await,
        "acme",
        "not meant for this site",
    );
    let mut id_token = access_claims(ISS_A, "u", "acme-api");
    id_token["typ"] = json!("ID");
    assert_401(
        &f.call("acme.test", "/api/", &f.key.sign(&id_token)).await,
        "acme",
        "ID token",
    );
    let mut no_exp = access_claims(ISS_A, "u", "acme-api");
    no_exp.as_object_mut().expect("object").remove("exp");
    assert_401(
        &f.call("acme.test", "/api/", &f.key.sign(&no_exp)).await,
        "acme",
        "no exp",
    );
    // Another scheme is no bearer token.
    let r =
        f.gw.fetch(
            f.gw.get("acme.test", "/api/")
                .header("authorization", "Basic dTpw"),
        )
        .await;
    r.assert_error(401, "unauthorized");
    // Browsers get a page, still 401.
    let r =
        f.gw.fetch(f.gw.get("acme.test", "/api/").header("accept", "text/html"))
            .await;
    assert_eq!(r.status, 401);
    assert!(r.text.contains("<h1>401</h1>"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_token_anywhere_else_is_400() {
    let f = fixture("").await;
    let token = f.token();
    let other = f.key.sign(&access_claims(ISS_A, "user-2", "acme-api"));
    let r = f
        .call("acme.test", &format!("/api/?access_token={other}"), &token)
        .await;
    r.assert_error(400, "invalid_request");
    assert!(r
        .header("www-authenticate")
        .is_some_and(|c| c.contains("invalid_request")));
    // Only in the query, without a header: still 400 (RFC 6750 query tokens are not accepted).
    let r =
        f.gw.request("acme.test", &format!("/api/?x=1&access_token={token}"))
            .await;
    r.assert_error(400, "invalid_request");
    let r =
        f.gw.fetch(
            f.gw.get("acme.test", "/api/")
                .header("authorization", format!("Bearer {token}"))
                .header("cookie", format!("theme=dark; jwt={other}")),
        )
        .await;
    r.assert_error(400, "invalid_request");
    // The same token in a cookie is no second credential; other cookies are fine.
    let r =
        f.gw.fetch(
            f.gw.get("acme.test", "/api/")
                .header("authorization", format!("Bearer {token}"))
                .header("cookie", format!("theme=dark; jwt={token}")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Two Authorization headers.
    let raw = format!(
        "GET /api/ HTTP/1.1\r\nHost: acme.test\r\nAuthorization: Bearer {token}\r\nAuthorization: Bearer {other}\r\nConnection: close\r\n\r\n"
    );
    let r = f.gw.raw(raw).await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_tokens_are_cached_and_keys_fetched_once() {
    let f = fixture("").await;
    let token = f.token();
    for _ in 0..20 {
        assert_eq!(f.call("acme.test", "/api/", &token).await.status, 200);
    }
    let m = f.gw.metrics().await;
    assert_eq!(
        m.value("realmgate_token_cache_total", &[("result", "miss")]),
        1.0
    );
    assert_eq!(
        m.value("realmgate_token_cache_total", &[("result", "hit")]),
        19.0
    );
    assert_eq!(f.jwks.hits("/acme/certs"), 1);
    assert_eq!(
        m.value("realmgate_jwks_fetches_total", &[("result", "ok")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_realm_keeps_its_cached_keys() {
    // Keys go stale after 1 s; refetch attempts at most every 200 ms.
    let yaml = "  auth:\n    jwks_ttl_min_s: 1\n    jwks_ttl_default_s: 1\n    jwks_refetch_interval_ms: 200\n";
    let f = fixture(yaml).await;
    assert_eq!(f.call("acme.test", "/api/", &f.token()).await.status, 200);
    f.jwks.set_failing(true);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // Fresh tokens (cache misses) still verify with the cached key, while refreshes fail.
    for i in 0..5 {
        let t = f
            .key
            .sign(&access_claims(ISS_A, &format!("u{i}"), "acme-api"));
        assert_eq!(f.call("acme.test", "/api/", &t).await.status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let m = f.gw.metrics().await;
    assert!(
        m.value("realmgate_jwks_fetches_total", &[("result", "error")]) >= 1.0,
        "failed refreshes are counted"
    );
    // A realm that was never reached: 503, not 401.
    f.jwks.set_failing(false);
    let r = f
        .call(
            "beta.test",
            "/api/",
            &f.key.sign(&access_claims(ISS_B, "u", "acme-api")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_realm_with_no_reachable_keys_is_503() {
    let f = fixture("").await;
    f.jwks.set_failing(true);
    let r = f
        .call(
            "beta.test",
            "/api/",
            &f.key.sign(&access_claims(ISS_B, "u", "acme-api")),
        )
        .await;
    r.assert_error(503, "realm_unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_keys_are_picked_up_through_the_unknown_kid_refetch() {
    let f = fixture("  auth:\n    jwks_refetch_interval_ms: 300\n").await;
    let old = f.token();
    assert_eq!(f.call("acme.test", "/api/", &old).await.status, 200);
    let unseen_old = f.key.sign(&access_claims(ISS_A, "user-9", "acme-api"));
    // New active key k2; k1 removed.
    let k2 = TestKey::new("ec256", jsonwebtoken::Algorithm::ES256, "k2");
    f.jwks.set_keys("/acme/certs", vec![k2.jwk()]);
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let new = k2.sign(&access_claims(ISS_A, "user-1", "acme-api"));
    let r = f.call("acme.test", "/api/", &new).await;
    assert_eq!(r.status, 200, "new key after one refetch: {}", r.text);
    assert_eq!(f.jwks.hits("/acme/certs"), 2);
    // A k1 token never seen before no longer verifies.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert_401(
        &f.call("acme.test", "/api/", &unseen_old).await,
        "acme",
        "not one of the realm's keys",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_random_kids_causes_at_most_one_refetch() {
    let f = std::sync::Arc::new(fixture("").await);
    assert_eq!(f.call("acme.test", "/api/", &f.token()).await.status, 200);
    assert_eq!(f.jwks.hits("/acme/certs"), 1);
    let claims = access_claims(ISS_A, "u", "acme-api").to_string();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = 10_000 / 40;
    let started = std::time::Instant::now();
    for t in 0..40 {
        let f = std::sync::Arc::clone(&f);
        let claims = claims.clone();
        tasks.spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for i in 0..per_task {
                let header =
                    json!({"alg": "RS256", "kid": format!("random-{t}-{i}-{}", fastrand::u64(..))});
                // The kid is looked up before the signature is checked: no need to sign.
                let token = format!(
                    "{}.{}.c2lnbmF0dXJl",
                    realmgate_e2e::tokens::b64(header.to_string().as_bytes()),
                    realmgate_e2e::tokens::b64(claims.as_bytes())
                );
                let r = f.call("acme.test", "/api/", &token).await;
                *statuses.entry(r.status).or_default() += 1;
            }
            statuses
        });
    }
    let mut all = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(r) = tasks.join_next().await {
        for (s, n) in r.expect("task") {
            *all.entry(s).or_default() += n;
        }
    }
    assert_eq!(all.get(&401), Some(&10_000), "{all:?}");
    let fetches = f.jwks.hits("/acme/certs");
    // The first fetch, then at most one refetch per 10 s refetch interval the burst spanned
    // (one, unless this machine took longer than that for the 10 000 requests).
    let intervals = (started.elapsed().as_secs() / 10 + 1) as usize;
    assert!(
        fetches <= 1 + intervals,
        "{fetches} JWKS fetches for a burst over {intervals} 10 s interval(s)"
    );
    assert_eq!(
        f.gw.metrics().await.value(
            "realmgate_auth_failures_total",
            &[("reason", "unknown_kid")]
        ),
        10_000.0
    );
}
