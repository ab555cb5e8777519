//! The API through `app()`, without a socket: status codes, error bodies, auth, limits, and
//! what each change does to the compiled table.

use super::*;
use crate::push::PushSettings;
use crate::registry::Registry;
use crate::server::{assemble, Wiring};
use axum::body::Body as AxBody;
use axum::http::{Method, Request as HttpRequest};
use serde_json::{json, Value};
use tower::ServiceExt;

pub(super) const OPERATOR: &str = "operator-token-0123456789";
pub(super) const GATEWAY: &str = "gateway-token-0123456789";

pub(super) async fn app_with_limit(max_body_bytes: usize) -> Router {
    let state = assemble(
        Registry::in_memory().await.expect("registry"),
        Wiring {
            operator_token: OPERATOR,
            gateway_token: Some(GATEWAY.into()),
            gateways: &[],
            gateway_trust: Default::default(),
            push: PushSettings::default(),
            max_body_bytes,
            api: ApiLimits::default(),
            provision: None,
            assertion: Default::default(),
        },
    )
    .await
    .expect("assemble");
    app(state)
}

pub(super) async fn test_app() -> Router {
    let app = app_with_limit(1 << 20).await;
    let (s, _) = call(
        &app,
        Method::PUT,
        "/v1/upstreams/app",
        Some(json!({"endpoints": ["127.0.0.1:9001"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    app
}

pub(super) async fn send(app: &Router, req: HttpRequest<AxBody>) -> (StatusCode, HeaderMap, Bytes) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, body)
}

pub(super) fn request(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: impl Into<AxBody>,
) -> HttpRequest<AxBody> {
    let mut b = HttpRequest::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request")
}

pub(super) async fn call(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map_or_else(AxBody::empty, |b| AxBody::from(b.to_string()));
    let (status, _, bytes) = send(app, request(method, path, Some(OPERATOR), body)).await;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

pub(super) fn tenant(id: &str, host: &str) -> Value {
    json!({"id": id, "hosts": [host], "display_name": id,
           "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]})
}

pub(super) async fn table(app: &Router) -> Value {
    let (status, _, bytes) = send(
        app,
        request(Method::GET, "/v1/table", Some(GATEWAY), AxBody::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&bytes).expect("table JSON")
}

fn problem_paths(v: &Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["at"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let app = test_app().await;
    for token in [None, Some("wrong-token-0123456789"), Some(GATEWAY)] {
        let (status, headers, body) = send(
            &app,
            request(Method::GET, "/v1/tenants", token, AxBody::empty()),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(
            headers.get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"], "unauthorized");
    }
    let (status, _, _) = send(
        &app,
        request(Method::GET, "/v1/table", None, AxBody::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for open in ["/healthz", "/metrics", "/v1/openapi.json"] {
        let (status, _, _) = send(&app, request(Method::GET, open, None, AxBody::empty())).await;
        assert_eq!(status, StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn create_show_list_and_route() {
    let app = test_app().await;
    let (status, headers, body) = send(
        &app,
        request(
            Method::POST,
            "/v1/tenants",
            Some(OPERATOR),
            tenant("acme", "ACME.Test.").to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        headers.get(header::LOCATION).map(|v| v.as_bytes()),
        Some(&b"/v1/tenants/acme"[..])
    );
    let created: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        created["hosts"],
        json!(["acme.test"]),
        "hosts are normalised"
    );
    assert_eq!(created["status"], "active");
    let version = created["table_version"].as_u64().expect("version");

    let (status, shown) = call(&app, Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!((status, &shown), (StatusCode::OK, &created));
    let (_, list) = call(&app, Method::GET, "/v1/tenants", None).await;
    assert_eq!(list["tenants"][0]["id"], "acme");

    let t = table(&app).await;
    assert_eq!(
        t["version"].as_u64(),
        Some(version),
        "the table includes the acknowledged change"
    );
    assert_eq!(t["tenants"][0]["hosts"], json!(["acme.test"]));
    assert_eq!(
        t["upstreams"]["app"]["endpoints"],
        json!(["127.0.0.1:9001"])
    );
    realmgate_table::parse(t.to_string().as_bytes()).expect("a valid table");
}

#[tokio::test]
async fn malformed_and_invalid_bodies_are_422_with_every_problem() {
    let app = test_app().await;
    let (status, _, body) = send(
        &app,
        request(
            Method::POST,
            "/v1/tenants",
            Some(OPERATOR),
            "{\"id\": \"acme\",",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"], "invalid_request");
    assert!(
        v["problems"][0]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("malformed JSON"),
        "{v}"
    );

    let bad = json!({"id": "-bad", "hosts": ["ok.test", "not a host", "*.*.x"],
                     "routes": [{"prefix": "/", "upstream": "nope", "auth": "public"}], "extra": true});
    let (status, v) = call(&app, Method::POST, "/v1/tenants", Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut paths = problem_paths(&v);
    paths.sort();
    assert_eq!(
        paths,
        ["extra", "hosts[1]", "hosts[2]", "id", "routes[0].upstream"],
        "{v:#}"
    );

    let (status, v) = call(
        &app,
        Method::PUT,
        "/v1/upstreams/Bad!",
        Some(json!({"endpoints": []})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut paths = problem_paths(&v);
    paths.sort();
    assert_eq!(paths, ["endpoints", "name"], "{v:#}");
    let (_, list) = call(&app, Method::GET, "/v1/tenants", None).await;
    assert_eq!(list["tenants"], json!([]), "nothing was created");
}

#[tokio::test]
async fn conflicts_are_409_after_normalisation() {
    let app = test_app().await;
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/v1/tenants",
            Some(tenant("acme", "acme.test"))
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (status, v) = call(
        &app,
        Method::POST,
        "/v1/tenants",
        Some(tenant("other", "ACME.test")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"], "host_conflict");
    assert_eq!(
        v["details"]["hosts"][0],
        json!({"host": "acme.test", "tenant": "acme"})
    );
    let (status, v) = call(
        &app,
        Method::POST,
        "/v1/tenants",
        Some(tenant("acme", "x.test")),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("tenant_exists"))
    );
    // Said in words, not Rust's debug formatting of the id type.
    assert_eq!(v["message"], "tenant \"acme\" already exists", "{v}");
    let (status, v) = call(
        &app,
        Method::PATCH,
        "/v1/tenants/acme",
        Some(json!({"hosts": ["acme.test", "other.test"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = call(&app, Method::DELETE, "/v1/upstreams/app", None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("upstream_in_use"))
    );
    assert_eq!(v["details"]["tenants"], json!(["acme"]));
}

#[tokio::test]
async fn unknown_things_are_404() {
    let app = test_app().await;
    for (method, path) in [
        (Method::GET, "/v1/tenants/ghost"),
        (Method::PATCH, "/v1/tenants/ghost"),
        (Method::DELETE, "/v1/tenants/ghost"),
        (Method::GET, "/v1/tenants/NOT_AN_ID"),
        (Method::GET, "/v1/upstreams/ghost"),
        (Method::DELETE, "/v1/upstreams/ghost"),
        (Method::GET, "/v1/nothing-here"),
    ] {
        let (status, v) = call(
            &app,
            method.clone(),
            path,
            Some(json!({"display_name": "x"})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (status, v) = call(&app, Method::PUT, "/v1/tenants", None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = app_with_limit(4096).await;
    let huge = format!(
        "{{\"id\": \"acme\", \"display_name\": \"{}\"}}",
        "x".repeat(8192)
    );
    let (status, _, body) = send(
        &app,
        request(Method::POST, "/v1/tenants", Some(OPERATOR), huge),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"], "body_too_large");
}

#[tokio::test]
async fn suspend_and_delete_reach_the_table() {
    let app = test_app().await;
    for (id, host) in [("acme", "acme.test"), ("beta", "beta.test")] {
        assert_eq!(
            call(&app, Method::POST, "/v1/tenants", Some(tenant(id, host)))
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let (status, v) = call(
        &app,
        Method::PATCH,
        "/v1/tenants/acme",
        Some(json!({"status": "suspended"})),
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("suspended"))
    );
    let t = table(&app).await;
    assert_eq!(t["tenants"][0]["status"], "suspended");
    assert!(
        t["tenants"][1].get("status").is_none(),
        "beta untouched (active is the default)"
    );

    let (status, v) = call(&app, Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(
        (status, v["deleted"].as_str()),
        (StatusCode::OK, Some("acme"))
    );
    let t = table(&app).await;
    assert_eq!(t["version"], v["table_version"]);
    let ids: Vec<&str> = t["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, ["beta"]);
}

#[tokio::test]
async fn if_match_preconditions() {
    let app = test_app().await;
    call(
        &app,
        Method::POST,
        "/v1/tenants",
        Some(tenant("acme", "acme.test")),
    )
    .await;
    let patch = |etag: &'static str| {
        let mut r = request(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(OPERATOR),
            json!({"display_name": "A"}).to_string(),
        );
        r.headers_mut()
            .insert(header::IF_MATCH, header::HeaderValue::from_static(etag));
        r
    };
    let (status, headers, _) = send(&app, patch("\"1\"")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get(header::ETAG).map(|v| v.as_bytes()),
        Some(&b"\"2\""[..])
    );
    let (status, _, body) = send(&app, patch("\"1\"")).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["details"]["revision"], 2);
    let (status, _, _) = send(&app, patch("soon")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn table_summary_and_gateways() {
    let app = test_app().await;
    let (status, v) = call(&app, Method::GET, "/v1/table?summary=1", None).await;
    assert_eq!(status, StatusCode::OK);
    // Version 1: the empty registry; 2: the pool; 3: the first assertion key.
    assert_eq!(
        (v["version"].as_u64(), v["tenants"].as_u64()),
        (Some(3), Some(0))
    );
    assert!(v["digest"].as_str().unwrap_or("").starts_with("sha256:"));
    let (status, v) = call(&app, Method::GET, "/v1/gateways", None).await;
    assert_eq!((status, &v["gateways"]), (StatusCode::OK, &json!([])));
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let app = test_app().await;
    call(&app, Method::GET, "/v1/tenants/ghost", None).await;
    table(&app).await; // waits for the compiler, which sets the version gauge
    let (_, _, body) = send(
        &app,
        request(Method::GET, "/metrics", None, AxBody::empty()),
    )
    .await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(
            r#"realmctl_http_requests_total{class="4xx",method="GET",route="/v1/tenants/{id}"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("realmctl_table_version 3"), "{text}");
}

#[test]
fn openapi_documents_every_route() {
    let doc = openapi::spec();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/v1/tenants", &["get", "post"][..]),
        ("/v1/tenants/{id}", &["get", "patch", "delete"]),
        ("/v1/tenants/{id}/retry", &["post"]),
        ("/v1/tenants/{id}/events", &["get"]),
        ("/v1/tenants/{id}/credentials", &["post"]),
        ("/v1/upstreams", &["get"]),
        ("/v1/upstreams/{name}", &["get", "put", "delete"]),
        ("/v1/table", &["get"]),
        ("/v1/gateways", &["get"]),
        ("/v1/gateways/upstreams", &["get"]),
        ("/v1/keys", &["get", "post"]),
        ("/v1/keys/{id}", &["get", "delete"]),
        ("/v1/certificates", &["get"]),
        ("/v1/certificates/{name}", &["get", "put", "delete"]),
        ("/v1/assertion-keys", &["get"]),
        ("/v1/assertion-keys/status", &["get"]),
        ("/v1/assertion-keys/rotate", &["post"]),
        ("/v1/assertion-keys/{kid}/retire", &["post"]),
        ("/v1/domains", &["get"]),
        ("/v1/apps", &["get", "post"]),
        ("/v1/apps/{id}", &["delete"]),
        ("/v1/tenants/{id}/database", &["get"]),
        ("/v1/tenants/{id}/domains", &["get", "post"]),
        ("/v1/tenants/{id}/domains/{domain}", &["delete"]),
        ("/v1/audit", &["get"]),
        ("/v1/operator-keys", &["get", "post"]),
        ("/v1/operator-keys/{id}", &["get", "delete"]),
        ("/v1/traffic", &["get"]),
        ("/v1/openapi.json", &["get"]),
        ("/metrics", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} undocumented"
            );
        }
    }
    assert_eq!(paths.len(), 32, "no stale paths");
    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap_or("");
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    // Every /v1 operation documents the concurrency bound; minting its quota.
    assert!(doc["paths"]["/v1/tenants"]["post"]["responses"]["503"].is_object());
    assert!(doc["paths"]["/v1/keys"]["get"]["responses"]["503"].is_object());
    assert!(doc["paths"]["/v1/keys"]["post"]["responses"]["429"].is_object());
}
