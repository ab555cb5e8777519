//! The app through its router, without a socket.

use super::*;
use axum::body::Body;
use axum::http::Request;
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
    (app(Arc::new(Store::new(dir.clone())), "/todos"), dir)
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
