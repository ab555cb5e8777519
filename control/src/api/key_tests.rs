//! API keys through the API: minted, listed, revoked, and in the compiled table only as
//! digests; a key acts within its own tenant and namespaces.

use super::tests::{call, request, send, table, tenant, test_app};
use axum::body::Body as AxBody;
use axum::http::{Method, StatusCode};
use axum::Router;
use serde_json::{json, Value};

async fn as_key(
    app: &Router,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map_or_else(AxBody::empty, |b| AxBody::from(b.to_string()));
    let (status, _, bytes) = send(app, request(method, path, Some(key), body)).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn keys_mint_list_revoke_and_reach_the_table_as_digests() {
    let app = test_app().await;
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/tenants",
        Some(tenant("acme", "acme.test")),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, k) = call(
        &app,
        Method::POST,
        "/v1/keys",
        Some(json!({"tenant": "acme", "namespaces": ["@acme"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let secret = k["key"].as_str().expect("secret").to_owned();
    let id = k["id"].as_str().expect("id").to_owned();
    // The table carries the digest, never the secret.
    let t = table(&app).await;
    assert_eq!(t["api_keys"][0]["id"], id.as_str());
    assert!(!t.to_string().contains(&secret));
    // The key authenticates on /v1/keys only, and may not mint beyond itself.
    let (s, v) = as_key(&app, &secret, Method::GET, "/v1/keys", None).await;
    assert_eq!(
        (s, v["keys"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    assert!(
        v["keys"][0].get("key").is_none(),
        "listing never shows secrets"
    );
    let (s, _) = as_key(&app, &secret, Method::GET, "/v1/tenants", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = as_key(
        &app,
        &secret,
        Method::POST,
        "/v1/keys",
        Some(json!({"namespaces": ["*"]})),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{v}"
    );
    let (s, child) = as_key(
        &app,
        &secret,
        Method::POST,
        "/v1/keys",
        Some(json!({"namespaces": ["@acme"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{child}");
    // Revoke the parent: it stops working at once, and leaves the next table.
    let (s, v) = call(&app, Method::DELETE, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["revoked_at"].is_string());
    let (s, _) = as_key(&app, &secret, Method::GET, "/v1/keys", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let version = v["table_version"].as_u64().expect("version");
    let t = eventually_table(&app, version).await;
    let ids: Vec<&str> = t["api_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert_eq!(ids, [child["id"].as_str().expect("child id")]);
    let (s, _) = call(&app, Method::DELETE, "/v1/keys/knope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn eventually_table(app: &Router, version: u64) -> Value {
    for _ in 0..200 {
        let t = table(app).await;
        if t["version"].as_u64() >= Some(version) {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("table never reached version {version}");
}
