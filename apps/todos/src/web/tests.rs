//! The app through its router, without a socket.

use super::*;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn router() -> (Router, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "todos-web-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let store = Arc::new(Store::files(dir.clone()));
    (app(store, "/todos", Identify::TrustHeaders), dir)
}

async fn call(r: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let resp = r.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn req(
    method: &str,
    uri: &str,
    tenant: Option<&str>,
    subject: Option<&str>,
    body: Body,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = tenant {
        b = b.header("x-realmgate-tenant", t);
    }
    if let Some(s) = subject {
        b = b.header("x-realmgate-subject", s);
    }
    b.header("content-type", "application/json")
        .body(body)
        .expect("request")
}

/// The fleet's one key, and an assertion it signs with these claims.
fn fleet() -> (jsonwebtoken::jwk::JwkSet, String) {
    let pem = realmgate_table::assertion::key_pem_from_bytes(&[5; 32]).expect("scalar");
    let section = realmgate_table::assertion::Assertion {
        issuer: "realmgate".into(),
        keys: vec![realmgate_table::assertion::AssertionKey {
            kid: "k1".into(),
            alg: "ES256".into(),
            private_key_pem: pem.clone(),
            state: realmgate_table::assertion::KeyState::Active,
        }],
    };
    let jwks = realmgate_table::assertion::jwks(Some(&section));
    let jwks = serde_json::from_value(serde_json::to_value(jwks).expect("json")).expect("set");
    (jwks, pem)
}

fn assertion(pem: &str, claims: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut c = serde_json::json!({"iss": "realmgate", "aud": "todos", "tenant": "acme",
                                   "iat": now, "exp": now + 60, "jti": "j"});
    for (k, v) in claims.as_object().expect("object") {
        c[k] = v.clone();
    }
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("key");
    jsonwebtoken::encode(&h, &c, &key).expect("signed")
}

#[tokio::test]
async fn only_signed_in_users_with_a_valid_assertion_are_served() {
    let (jwks, pem) = fleet();
    let config =
        realmgate_app::VerifierConfig::new("http://unused.invalid/", "realmgate", ["todos"]);
    let verifier = Arc::new(realmgate_app::Verifier::with_keys(config, &jwks));
    let dir = std::env::temp_dir().join(format!("todos-assert-{}", std::process::id()));
    let r = app(
        Arc::new(Store::files(dir.clone())),
        "/todos",
        Identify::Assertion(verifier),
    );
    let alice = assertion(
        &pem,
        serde_json::json!({"auth": "session", "sub": "alice", "roles": []}),
    );
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, StatusCode);
    let cases: Vec<Case> = vec![
        (
            "alice",
            vec![("x-realmgate-assertion", alice.clone())],
            StatusCode::CREATED,
        ),
        (
            "no assertion: plain headers are not believed",
            vec![
                ("x-realmgate-tenant", "acme".into()),
                ("x-realmgate-subject", "alice".into()),
            ],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "public route: anonymous",
            vec![(
                "x-realmgate-assertion",
                assertion(&pem, serde_json::json!({"auth": "public"})),
            )],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "an API key has no user",
            vec![(
                "x-realmgate-assertion",
                assertion(&pem, serde_json::json!({"auth": "api_key", "key_id": "k"})),
            )],
            StatusCode::FORBIDDEN,
        ),
        (
            "another pool's assertion",
            vec![(
                "x-realmgate-assertion",
                assertion(
                    &pem,
                    serde_json::json!({"auth": "jwt", "sub": "alice", "aud": "billing"}),
                ),
            )],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "tenant header disagrees",
            vec![
                ("x-realmgate-assertion", alice.clone()),
                ("x-realmgate-tenant", "beta".into()),
            ],
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (name, headers, status) in cases {
        let mut b = Request::builder()
            .method("POST")
            .uri("/todos/api/todos")
            .header("content-type", "application/json");
        for (k, v) in &headers {
            b = b.header(*k, v.as_str());
        }
        let req = b.body(Body::from(r#"{"title":"t"}"#)).expect("request");
        let (got, _, body) = call(&r, req).await;
        assert_eq!(got, status, "{name}: {body}");
    }
    let list = Request::builder()
        .uri("/todos/api/todos")
        .header("x-realmgate-assertion", alice.as_str())
        .body(Body::empty())
        .expect("request");
    let (_, _, body) = call(&r, list).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["subject"], "alice", "{v}");
    assert_eq!(v["todos"].as_array().map(Vec::len), Some(1), "{v}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn needs_the_gateway_tenant_header() {
    let (r, _dir) = router();
    for tenant in [None, Some("../etc"), Some("Acme"), Some("")] {
        let (status, _, _) = call(&r, req("GET", "/todos/", tenant, None, Body::empty())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{tenant:?}");
    }
}

#[tokio::test]
async fn json_api_is_per_tenant_and_per_caller() {
    let (r, dir) = router();
    let add = |t: &str, s: Option<&str>, title: &str| {
        req(
            "POST",
            "/todos/api/todos",
            Some(t),
            s,
            Body::from(format!("{{\"title\":\"{title}\"}}")),
        )
    };
    assert_eq!(
        call(&r, add("acme", None, "anon task")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&r, add("acme", Some("alice"), "alice task")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&r, add("beta", None, "beta task")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&r, add("acme", None, "   ")).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let list = |t: &str, s: Option<&str>| req("GET", "/todos/api/todos", Some(t), s, Body::empty());
    let (status, _, body) = call(&r, list("acme", None)).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["subject"], "anonymous");
    assert_eq!(v["todos"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["todos"][0]["title"], "anon task");
    let (_, _, body) = call(&r, list("acme", Some("alice"))).await;
    assert!(
        body.contains("alice task") && !body.contains("anon task"),
        "{body}"
    );
    let (_, _, body) = call(&r, list("beta", None)).await;
    assert!(
        body.contains("beta task") && !body.contains("anon task"),
        "{body}"
    );
    assert!(dir.join("acme.db").exists() && dir.join("beta.db").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn html_page_escapes_and_refuses_foreign_frames() {
    let (r, dir) = router();
    let form = Request::builder()
        .method("POST")
        .uri("/todos/")
        .header("x-realmgate-tenant", "acme")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("title=%3Cscript%3Ealert(1)%3C%2Fscript%3E"))
        .expect("request");
    let (status, headers, _) = call(&r, form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/todos/");
    let (status, headers, body) =
        call(&r, req("GET", "/todos/", Some("acme"), None, Body::empty())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(body.contains("/.realmgate/shell/app.js"));
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    let (status, headers, _) =
        call(&r, req("GET", "/todos", Some("acme"), None, Body::empty())).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "/todos/");
    let _ = std::fs::remove_dir_all(dir);
}
