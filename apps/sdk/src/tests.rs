//! The verifier, table-tested (each bad assertion its own 401), principals from claims, the
//! bounded JWKS refetch on unknown kids, and the extractors' answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{encode, EncodingKey, Header};
use realmgate_table::assertion::{jwks, key_pem_from_bytes, Assertion, AssertionKey, KeyState};
use serde_json::{json, Value};
use std::sync::Arc;

const NOW: u64 = 1_900_000_000;

fn pem(seed: u8) -> String {
    key_pem_from_bytes(&[seed; 32]).expect("scalar")
}

/// The fleet's JWKS: key `k1` (seed 1) active, `k0` (seed 2) published.
fn fleet_jwks() -> JwkSet {
    let a = Assertion {
        issuer: "fleet".into(),
        keys: vec![
            AssertionKey {
                kid: "k1".into(),
                alg: "ES256".into(),
                private_key_pem: pem(1),
                state: KeyState::Active,
            },
            AssertionKey {
                kid: "k0".into(),
                alg: "ES256".into(),
                private_key_pem: pem(2),
                state: KeyState::Published,
            },
        ],
    };
    serde_json::from_value(serde_json::to_value(jwks(Some(&a))).expect("json")).expect("jwks")
}

fn config() -> VerifierConfig {
    VerifierConfig::new("http://unused.invalid/", "fleet", ["todos", "todos-b"])
}

fn claims() -> Value {
    json!({"iss": "fleet", "aud": "todos", "tenant": "acme", "auth": "jwt", "sub": "u1",
           "roles": ["user"], "iat": NOW - 5, "exp": NOW + 55, "jti": "j1"})
}

fn sign(kid: &str, seed: u8, claims: &Value) -> String {
    let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(kid.into());
    let key = EncodingKey::from_ec_pem(pem(seed).as_bytes()).expect("key");
    encode(&h, claims, &key).expect("signed")
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut c = claims();
    f(&mut c);
    c
}

#[tokio::test]
async fn verification_table() {
    let v = Verifier::with_keys(config(), &fleet_jwks());
    let good = sign("k1", 1, &claims());
    let hs = encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims(),
        &EncodingKey::from_secret(b"secret"),
    )
    .expect("hs");
    let unsigned = {
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[2] = "";
        parts.join(".")
    };
    type Case<'a> = (&'a str, String, Option<&'a str>, Result<(), Rejection>);
    let cases: Vec<Case> = vec![
        ("valid", good.clone(), None, Ok(())),
        (
            "valid, tenant header agrees",
            good.clone(),
            Some("acme"),
            Ok(()),
        ),
        (
            "the published key still verifies",
            sign("k0", 2, &claims()),
            None,
            Ok(()),
        ),
        (
            "second audience",
            sign("k1", 1, &with(|c| c["aud"] = json!("todos-b"))),
            None,
            Ok(()),
        ),
        (
            "forged: another key under a fleet kid",
            sign("k1", 9, &claims()),
            None,
            Err(Rejection::Forged),
        ),
        (
            "forged: HS256 with a guessable secret",
            hs,
            None,
            Err(Rejection::Forged),
        ),
        ("no signature", unsigned, None, Err(Rejection::Forged)),
        (
            "unknown kid",
            sign("k9", 1, &claims()),
            None,
            Err(Rejection::UnknownKey),
        ),
        (
            "expired",
            sign(
                "k1",
                1,
                &with(|c| {
                    c["iat"] = json!(NOW - 70);
                    c["exp"] = json!(NOW - 10)
                }),
            ),
            None,
            Err(Rejection::Expired),
        ),
        (
            "issued in the future",
            sign(
                "k1",
                1,
                &with(|c| {
                    c["iat"] = json!(NOW + 30);
                    c["exp"] = json!(NOW + 90)
                }),
            ),
            None,
            Err(Rejection::BadTime),
        ),
        (
            "lives too long",
            sign("k1", 1, &with(|c| c["exp"] = json!(NOW + 3600))),
            None,
            Err(Rejection::BadTime),
        ),
        (
            "another pool's assertion",
            sign("k1", 1, &with(|c| c["aud"] = json!("billing"))),
            None,
            Err(Rejection::WrongAudience),
        ),
        (
            "another issuer",
            sign("k1", 1, &with(|c| c["iss"] = json!("evil"))),
            None,
            Err(Rejection::WrongIssuer),
        ),
        (
            "tenant header disagrees",
            good.clone(),
            Some("beta"),
            Err(Rejection::TenantMismatch),
        ),
        ("not a JWT", "hello".into(), None, Err(Rejection::Malformed)),
        ("huge", "a".repeat(9000), None, Err(Rejection::Malformed)),
        (
            "jwt without sub",
            sign(
                "k1",
                1,
                &with(|c| {
                    c.as_object_mut().expect("o").remove("sub");
                }),
            ),
            None,
            Err(Rejection::Malformed),
        ),
        (
            "public with a sub",
            sign("k1", 1, &with(|c| c["auth"] = json!("public"))),
            None,
            Err(Rejection::Malformed),
        ),
        (
            "unknown auth",
            sign("k1", 1, &with(|c| c["auth"] = json!("magic"))),
            None,
            Err(Rejection::Malformed),
        ),
        (
            "no tenant",
            sign(
                "k1",
                1,
                &with(|c| {
                    c.as_object_mut().expect("o").remove("tenant");
                }),
            ),
            None,
            Err(Rejection::Malformed),
        ),
        (
            "no exp",
            sign(
                "k1",
                1,
                &with(|c| {
                    c.as_object_mut().expect("o").remove("exp");
                }),
            ),
            None,
            Err(Rejection::Malformed),
        ),
    ];
    for (name, token, tenant, expected) in cases {
        let got = v.verify(&token, tenant, NOW).await.map(|_| ());
        assert_eq!(got, expected, "{name}");
    }
    assert_eq!(v.jwks_fetches(), 0);
}

#[tokio::test]
async fn principals_from_claims() {
    let v = Verifier::with_keys(config(), &fleet_jwks());
    let cases = [
        (
            claims(),
            Principal::User {
                subject: "u1".into(),
                roles: vec!["user".into()],
                via: Auth::Jwt,
            },
        ),
        (
            with(|c| c["auth"] = json!("session")),
            Principal::User {
                subject: "u1".into(),
                roles: vec!["user".into()],
                via: Auth::Session,
            },
        ),
        (
            json!({"iss": "fleet", "aud": "todos", "tenant": "acme", "auth": "api_key", "key_id": "k-1",
                   "namespace": "@acme", "iat": NOW, "exp": NOW + 60, "jti": "j"}),
            Principal::ApiKey {
                key_id: "k-1".into(),
                namespace: Some("@acme".into()),
            },
        ),
        (
            json!({"iss": "fleet", "aud": "todos", "tenant": "acme", "auth": "public",
                   "iat": NOW, "exp": NOW + 60, "jti": "j"}),
            Principal::Anonymous,
        ),
    ];
    for (c, principal) in cases {
        let caller = v
            .verify(&sign("k1", 1, &c), None, NOW)
            .await
            .expect("valid");
        assert_eq!(caller.principal, principal);
        assert_eq!(caller.tenant.as_str(), "acme");
        assert_eq!(caller.pool, "todos");
    }
}

/// A JWKS server that counts its requests.
async fn jwks_server() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&hits);
    let body = serde_json::to_string(&fleet_jwks()).expect("json");
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = body.clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/jwks.json"), hits)
}

#[tokio::test]
async fn an_unknown_kid_flood_fetches_once_per_interval() {
    let (url, hits) = jwks_server().await;
    let mut cfg = config();
    cfg.jwks_url = url;
    cfg.refetch_interval = std::time::Duration::from_secs(3600);
    let v = Arc::new(Verifier::new(cfg));
    let now = super::verify_now();
    let fresh = with(|c| {
        c["iat"] = json!(now);
        c["exp"] = json!(now + 60);
    });
    v.verify(&sign("k1", 1, &fresh), None, now)
        .await
        .expect("valid");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let v = Arc::clone(&v);
        let token = sign(&format!("nope-{i}"), 1, &fresh);
        tasks.push(tokio::spawn(
            async move { v.verify(&token, None, now).await },
        ));
    }
    for t in tasks {
        assert_eq!(
            t.await.expect("task").map(|_| ()),
            Err(Rejection::UnknownKey)
        );
    }
    // The first fetch, and none for the flood: it came within the refetch interval.
    assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(v.jwks_fetches(), 1);
}

#[tokio::test]
async fn no_reachable_jwks_is_503_not_401() {
    let mut cfg = config();
    cfg.jwks_url = "http://127.0.0.1:9/none".into();
    let v = Verifier::new(cfg);
    let got = v.verify(&sign("k1", 1, &claims()), None, NOW).await;
    assert_eq!(got, Err(Rejection::KeysUnavailable));
    assert_eq!(Rejection::KeysUnavailable.status(), 503);
}

#[tokio::test]
async fn the_extractor_refuses_with_a_clear_401() {
    use tower::ServiceExt;
    let v = Arc::new(Verifier::with_keys(config(), &fleet_jwks()));
    async fn who(tenant: Tenant, principal: Principal) -> String {
        format!("{tenant} {:?}", principal.subject())
    }
    let app = axum::Router::new()
        .route("/", axum::routing::get(who))
        .with_state(v);
    let now = super::verify_now();
    let valid = sign(
        "k1",
        1,
        &with(|c| {
            c["iat"] = json!(now);
            c["exp"] = json!(now + 60)
        }),
    );
    let request = |headers: &[(&str, &str)]| {
        let mut b = axum::http::Request::builder().uri("/");
        for (k, val) in headers {
            b = b.header(*k, *val);
        }
        b.body(axum::body::Body::empty()).expect("request")
    };
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![(ASSERTION_HEADER, valid.as_str())],
            200,
            "acme Some(\"u1\")",
        ),
        (vec![], 401, "assertion_missing"),
        (
            vec![
                ("x-realmgate-subject", "admin"),
                ("x-realmgate-tenant", "acme"),
            ],
            401,
            "assertion_missing",
        ),
        (
            vec![(ASSERTION_HEADER, valid.as_str()), (TENANT_HEADER, "beta")],
            401,
            "assertion_tenant_mismatch",
        ),
        (
            vec![
                (ASSERTION_HEADER, valid.as_str()),
                (ASSERTION_HEADER, valid.as_str()),
            ],
            401,
            "assertion_malformed",
        ),
    ];
    for (headers, status, needle) in cases {
        let resp = app
            .clone()
            .oneshot(request(&headers))
            .await
            .expect("response");
        assert_eq!(resp.status().as_u16(), status, "{headers:?}");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(needle), "{headers:?}: {text}");
    }
}
