//! Operator API keys through `app()`: minted by the operator token or an admin session (the
//! secret once), a viewer key walks every documented route and changes nothing, an admin
//! key does what the operator token does except minting or revoking operator keys, a
//! revoked key is refused, and the audit log names the key.

use super::access::VIEWER_READS;
use super::access_tests::{app_with_sessions, message, operations, Browser};
use super::tests::{call, request, send, table};
use super::*;
use crate::operators::Role;
use axum::body::Body as AxBody;
use axum::http::Method;
use serde_json::{json, Value};

/// Mint a key with the operator token; its secret and id.
async fn mint(app: &Router, role: &str) -> (String, String) {
    let (s, h, body) = send(
        app,
        request(
            Method::POST,
            "/v1/operator-keys",
            Some(super::tests::OPERATOR),
            json!({"name": format!("{role} robot"), "role": role}).to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let v: Value = serde_json::from_slice(&body).expect("json");
    let id = v["id"].as_str().expect("id").to_owned();
    assert_eq!(
        h[header::LOCATION],
        format!("/v1/operator-keys/{id}").as_str()
    );
    (v["key"].as_str().expect("key").to_owned(), id)
}

async fn with_key(
    app: &Router,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map_or_else(AxBody::empty, |b| AxBody::from(b.to_string()));
    let (s, _, bytes) = send(app, request(method, path, Some(key), body)).await;
    (s, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_viewer_key_walks_every_route_and_changes_nothing() {
    let (app, _) = app_with_sessions().await;
    let (key, id) = mint(&app, "viewer").await;
    let before = table(&app).await;
    let (_, tenants_before) = call(&app, Method::GET, "/v1/tenants", None).await;
    let mut writes = 0;
    for (method, path, concrete) in operations() {
        if method == Method::GET && path.ends_with("/events") {
            continue;
        }
        let (status, v) = with_key(&app, &key, method.clone(), &concrete, Some(json!({}))).await;
        let msg = v["message"].as_str().unwrap_or("");
        if method == Method::GET && VIEWER_READS.contains(&path.as_str()) {
            assert!(
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "GET {path}: a viewer key reads it, got {status} {msg}"
            );
        } else if method == Method::GET {
            assert_eq!(status, StatusCode::FORBIDDEN, "GET {path}: {msg}");
            assert!(msg.contains("does not read secrets"), "{msg}");
        } else {
            writes += 1;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {msg}");
            assert!(
                msg.contains("changes nothing") || msg.contains("cannot mint or revoke"),
                "{method} {path}: {msg}"
            );
        }
    }
    assert!(writes >= 17, "only {writes} writes walked");
    assert_eq!(table(&app).await, before, "nothing changed");
    let (_, tenants_after) = call(&app, Method::GET, "/v1/tenants", None).await;
    assert_eq!(tenants_after, tenants_before);
    let (_, keys) = call(&app, Method::GET, "/v1/operator-keys", None).await;
    assert_eq!(keys["operator_keys"].as_array().map(Vec::len), Some(1));
    // Each refusal is in the audit log under the key's id, never its secret.
    let (_, audit) = call(&app, Method::GET, "/v1/audit?limit=500", None).await;
    let refused = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["actor"] == "operator_key" && e["outcome"] == "refused")
        .inspect(|e| {
            assert_eq!(e["subject"], id.as_str());
            assert_eq!(e["role"], "viewer");
        })
        .count();
    assert_eq!(refused, writes);
    assert!(!audit.to_string().contains(&key));
}

#[tokio::test]
async fn an_admin_key_changes_things_but_not_operator_keys_and_dies_when_revoked() {
    let (app, _) = app_with_sessions().await;
    let (admin, admin_id) = mint(&app, "admin").await;
    let (viewer, viewer_id) = mint(&app, "viewer").await;
    let patch = json!({"display_name": "Acme by key"});
    let (s, v) = with_key(&app, &admin, Method::PATCH, "/v1/tenants/acme", Some(patch)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["display_name"], "Acme by key");
    // Secrets too, and tenant API keys.
    let (s, _) = with_key(&app, &admin, Method::GET, "/v1/tenants/acme/database", None).await;
    assert_ne!(s, StatusCode::FORBIDDEN);
    assert_ne!(s, StatusCode::UNAUTHORIZED);
    let body = json!({"namespaces": ["*"], "tenant": "acme"});
    let (s, v) = with_key(&app, &admin, Method::POST, "/v1/keys", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Not operator keys: neither mint nor revoke.
    let body = json!({"name": "successor", "role": "admin"});
    let (s, v) = with_key(&app, &admin, Method::POST, "/v1/operator-keys", Some(body)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap_or("")
        .contains("operator token"));
    let path = format!("/v1/operator-keys/{viewer_id}");
    let (s, _) = with_key(&app, &admin, Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = with_key(&app, &viewer, Method::GET, "/v1/tenants", None).await;
    assert_eq!(s, StatusCode::OK, "the viewer key still works");
    // Revoked by the operator token: refused at once, reads and writes alike.
    let path = format!("/v1/operator-keys/{admin_id}");
    let (s, v) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "revoked");
    for (m, p) in [
        (Method::GET, "/v1/tenants"),
        (Method::PATCH, "/v1/tenants/acme"),
    ] {
        let (s, _) = with_key(&app, &admin, m, p, Some(json!({"display_name": "x"}))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{p}");
    }
    let (_, t) = call(&app, Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(t["display_name"], "Acme by key");
    // Unknown and malformed keys: 401 too.
    for bad in ["rgo_", "rgo_nope", &admin[..admin.len() - 1]] {
        let (s, _) = with_key(&app, bad, Method::GET, "/v1/tenants", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}");
    }
    // The audit log: the change by the admin key, with its id as who.
    let (_, audit) = call(&app, Method::GET, "/v1/audit?limit=500", None).await;
    let entries = audit["entries"].as_array().expect("entries");
    let by_key: Vec<&Value> = entries
        .iter()
        .filter(|e| e["actor"] == "operator_key" && e["outcome"] == "ok")
        .collect();
    assert_eq!(by_key.len(), 2, "{audit}");
    assert_eq!(by_key[0]["action"], "PATCH /v1/tenants/{id}");
    assert_eq!(by_key[0]["subject"], admin_id.as_str());
    assert_eq!(by_key[0]["name"], "admin robot");
    assert_eq!(by_key[0]["role"], "admin");
    assert!(!audit.to_string().contains(&admin));
}

#[tokio::test]
async fn sessions_mint_by_role_and_bad_bodies_change_nothing() {
    let (app, ops) = app_with_sessions().await;
    let admin = Browser::sign_in(&ops, Role::Admin);
    let viewer = Browser::sign_in(&ops, Role::Viewer);
    let body = || {
        Some(
            json!({"name": "from the console", "role": "viewer", "expires_at": "2099-01-01T00:00:00Z"}),
        )
    };
    let (s, msg) = message(
        &app,
        viewer.request(Method::POST, "/v1/operator-keys", body()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{msg}");
    let (s, _, bytes) = send(
        &app,
        admin.request(Method::POST, "/v1/operator-keys", body()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["created_by"], "session:admin-user");
    assert_eq!(v["expires_at"], "2099-01-01T00:00:00Z");
    // A viewer session lists keys (never a secret) but revokes none.
    let (s, _, bytes) = send(&app, viewer.request(Method::GET, "/v1/operator-keys", None)).await;
    assert_eq!(s, StatusCode::OK);
    let listed = String::from_utf8_lossy(&bytes).into_owned();
    assert!(listed.contains(v["id"].as_str().expect("id")));
    assert!(!listed.contains(v["key"].as_str().expect("key")));
    let path = format!("/v1/operator-keys/{}", v["id"].as_str().expect("id"));
    let (s, _) = message(&app, viewer.request(Method::DELETE, &path, None)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, one) = call(&app, Method::GET, &path, None).await;
    assert_eq!((s, one["state"].as_str()), (StatusCode::OK, Some("live")));
    let (s, _) = call(&app, Method::GET, "/v1/operator-keys/onope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Bad bodies: 422 with every problem, nothing minted.
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/operator-keys",
        Some(json!({"name": "", "role": "root", "expires_at": "soon", "extra": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let at: Vec<&str> = v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["at"].as_str())
        .collect();
    assert_eq!(at, ["extra", "name", "role", "expires_at"], "{v}");
    let (_, keys) = call(&app, Method::GET, "/v1/operator-keys", None).await;
    assert_eq!(keys["operator_keys"].as_array().map(Vec::len), Some(1));
}
