//! App credentials at the API's door: each one reads its pool's tenants' database
//! locations and nothing else (403 everywhere else, 401 for an unknown one).

use super::tests::{call, request, send, test_app};
use axum::body::Body as AxBody;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

async fn mint(app: &axum::Router, pool: &str) -> String {
    let (s, v) = call(
        app,
        Method::POST,
        "/v1/apps",
        Some(json!({"name": "todos", "pool": pool})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["credential"].as_str().expect("credential").to_owned()
}

async fn as_app(
    app: &axum::Router,
    token: &str,
    method: Method,
    path: &str,
) -> (StatusCode, Value) {
    let (s, _, body) = send(app, request(method, path, Some(token), AxBody::empty())).await;
    (s, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_app_credential_reads_its_pools_tenants_only() {
    let app = test_app().await;
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/tenants",
        Some(
            json!({"id": "acme", "hosts": ["acme.example.dev"], "display_name": "Acme",
                    "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let mine = mint(&app, "app").await;
    let theirs = mint(&app, "other").await;
    // No database step in this plan: nothing to hand out yet.
    let (s, v) = as_app(&app, &mine, Method::GET, "/v1/tenants/acme/database").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("not_provisioned"))
    );
    let (s, v) = call(&app, Method::GET, "/v1/tenants/acme/database", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    for (token, method, path, want) in [
        (
            &theirs,
            Method::GET,
            "/v1/tenants/acme/database",
            StatusCode::FORBIDDEN,
        ),
        (
            &mine,
            Method::GET,
            "/v1/tenants/nobody/database",
            StatusCode::FORBIDDEN,
        ),
        (
            &mine,
            Method::GET,
            "/v1/tenants/NOT%20AN%20ID/database",
            StatusCode::FORBIDDEN,
        ),
        (&mine, Method::GET, "/v1/tenants", StatusCode::FORBIDDEN),
        (
            &mine,
            Method::GET,
            "/v1/tenants/acme",
            StatusCode::FORBIDDEN,
        ),
        (
            &mine,
            Method::DELETE,
            "/v1/tenants/acme",
            StatusCode::FORBIDDEN,
        ),
        (&mine, Method::GET, "/v1/table", StatusCode::FORBIDDEN),
        (&mine, Method::GET, "/v1/keys", StatusCode::FORBIDDEN),
        (&mine, Method::GET, "/v1/apps", StatusCode::FORBIDDEN),
        (&mine, Method::POST, "/v1/apps", StatusCode::FORBIDDEN),
        (
            &mine,
            Method::GET,
            "/v1/assertion-keys/status",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (s, v) = as_app(&app, token, method.clone(), path).await;
        assert_eq!(s, want, "{method} {path}: {v}");
    }
    let unknown = "rga_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (s, _) = as_app(&app, unknown, Method::GET, "/v1/tenants/acme/database").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = as_app(&app, unknown, Method::GET, "/v1/tenants").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Deleted: gone for its pool's app, still none of the other's business.
    let (s, _) = call(&app, Method::DELETE, "/v1/tenants/acme", None).await;
    assert!(s.is_success(), "{s}");
    let (s, _) = as_app(&app, &mine, Method::GET, "/v1/tenants/acme/database").await;
    assert_eq!(s, StatusCode::GONE);
    let (s, _) = as_app(&app, &theirs, Method::GET, "/v1/tenants/acme/database").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Revoked: unknown from then on.
    let (_, list) = call(&app, Method::GET, "/v1/apps", None).await;
    let apps = list["apps"].as_array().expect("apps");
    assert_eq!(apps.len(), 2);
    let text = list.to_string();
    assert!(
        !text.contains(&mine) && !text.contains(&theirs),
        "no secrets in the list"
    );
    let id = apps
        .iter()
        .find(|a| mine.starts_with(a["prefix"].as_str().unwrap_or("-")))
        .and_then(|a| a["id"].as_str())
        .expect("mine listed");
    let (s, _) = call(&app, Method::DELETE, &format!("/v1/apps/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = as_app(&app, &mine, Method::GET, "/v1/tenants/acme/database").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// `GET /v1/table`'s version, as the operator reads it.
async fn table_version(app: &axum::Router) -> u64 {
    let (s, v) = call(app, Method::GET, "/v1/table", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["version"].as_u64().expect("version")
}

#[tokio::test]
async fn minting_and_revoking_leave_the_table_version_alone() {
    let app = test_app().await;
    let before = table_version(&app).await;
    let token = mint(&app, "app").await;
    let (_, list) = call(&app, Method::GET, "/v1/apps", None).await;
    let id = list["apps"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(table_version(&app).await, before, "minted: same table");
    let (s, _) = call(&app, Method::DELETE, &format!("/v1/apps/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(table_version(&app).await, before, "revoked: same table");
    let (s, _) = as_app(&app, &token, Method::GET, "/v1/tenants/acme/database").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the revocation took effect");

    // A tenant change still moves it.
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/tenants",
        Some(json!({"id": "acme", "hosts": ["acme.example.dev"],
                    "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(
        table_version(&app).await > before,
        "a tenant is in the table"
    );
}
