//! The audit log's before and after digests through `app()`: each is the SHA-256 of what a
//! GET of the changed object answered just before and just after the change — null when it
//! was created, deleted, or has no GET — and reading it back changes nothing.

use super::tests::{call, request, send, tenant, test_app};
use super::*;
use axum::body::Body as AxBody;
use axum::http::Method;
use serde_json::{json, Value};

/// The hex SHA-256 of what GET `path` answers now (`None` unless 200).
async fn digest_of(app: &Router, path: &str) -> Option<String> {
    let (s, _, body) = send(
        app,
        request(
            Method::GET,
            path,
            Some(super::tests::OPERATOR),
            AxBody::empty(),
        ),
    )
    .await;
    (s == StatusCode::OK).then(|| hex::encode(super::auth::digest(&body)))
}

async fn last_entry(app: &Router) -> Value {
    let (_, audit) = call(app, Method::GET, "/v1/audit?limit=1", None).await;
    audit["entries"][0].clone()
}

fn digests(e: &Value) -> (Option<&str>, Option<&str>) {
    (e["before_digest"].as_str(), e["after_digest"].as_str())
}

#[tokio::test]
async fn each_change_records_its_object_before_and_after() {
    let app = test_app().await;
    // Created: nothing before; after, the object as it was answered.
    let (s, _, body) = send(
        &app,
        request(
            Method::POST,
            "/v1/tenants",
            Some(super::tests::OPERATOR),
            tenant("acme", "acme.example.com").to_string(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let e = last_entry(&app).await;
    assert_eq!(e["action"], "POST /v1/tenants");
    let created = hex::encode(super::auth::digest(&body));
    assert_eq!(digests(&e), (None, Some(created.as_str())));

    // Changed: the GET before and the GET after; the change ran once.
    let before = digest_of(&app, "/v1/tenants/acme").await;
    let (_, t) = call(&app, Method::GET, "/v1/tenants/acme", None).await;
    let patch = json!({"display_name": "Acme Inc"});
    let (s, changed) = call(&app, Method::PATCH, "/v1/tenants/acme", Some(patch)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        changed["revision"],
        t["revision"].as_u64().map(|r| r + 1).expect("rev")
    );
    let after = digest_of(&app, "/v1/tenants/acme").await;
    assert_ne!(before, after);
    let e = last_entry(&app).await;
    assert_eq!(digests(&e), (before.as_deref(), after.as_deref()));

    // A pool PUT that creates it: nothing before.
    let pool = json!({"endpoints": ["127.0.0.1:9002"]});
    let (s, _) = call(&app, Method::PUT, "/v1/upstreams/spare", Some(pool)).await;
    assert_eq!(s, StatusCode::CREATED);
    let e = last_entry(&app).await;
    let spare = digest_of(&app, "/v1/upstreams/spare").await;
    assert_eq!(digests(&e), (None, spare.as_deref()));

    // Revoked: the key is still there, revoked, after.
    let (_, k) = call(
        &app,
        Method::POST,
        "/v1/keys",
        Some(json!({"namespaces": ["*"]})),
    )
    .await;
    let path = format!("/v1/keys/{}", k["id"].as_str().expect("id"));
    let live = digest_of(&app, &path).await;
    let (s, _) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::OK);
    let e = last_entry(&app).await;
    assert_eq!(
        digests(&e),
        (live.as_deref(), digest_of(&app, &path).await.as_deref())
    );
    assert!(e["after_digest"].is_string() && e["before_digest"] != e["after_digest"]);

    // Deleted: nothing after; the delete ran once (a second one would find nothing).
    let (s, _) = call(&app, Method::DELETE, "/v1/upstreams/spare", None).await;
    assert_eq!(s, StatusCode::OK);
    let e = last_entry(&app).await;
    assert_eq!(digests(&e), (spare.as_deref(), None));
    let (_, audit) = call(&app, Method::GET, "/v1/audit?limit=500", None).await;
    let deletes = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "DELETE /v1/upstreams/{name}")
        .count();
    assert_eq!(deletes, 1);

    // Refused: nothing changed, no digests.
    let (s, _, _) = send(
        &app,
        request(
            Method::DELETE,
            "/v1/tenants/acme",
            Some("rgk_forged"),
            AxBody::empty(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let e = last_entry(&app).await;
    assert_eq!(
        (e["outcome"].as_str(), digests(&e)),
        (Some("refused"), (None, None))
    );
    assert_eq!(
        digest_of(&app, "/v1/tenants/acme").await,
        after,
        "still there, unchanged"
    );
}

/// Calls answered concurrently: once a call is answered, a read of the log shows its entry
/// (the one whose `response_digest` is its answer's), though no commit of its own was waited
/// for. (The order of entries is the order they were recorded: `service::audit`'s tests.)
#[tokio::test]
async fn an_answered_calls_entry_is_in_the_log_at_once() {
    let app = test_app().await;
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = tenant(&format!("t{i}"), &format!("t{i}.example.com")).to_string();
                let req = request(
                    Method::POST,
                    "/v1/tenants",
                    Some(super::tests::OPERATOR),
                    body,
                );
                let (s, _, bytes) = send(&app, req).await;
                assert_eq!(s, StatusCode::CREATED);
                let digest = hex::encode(super::auth::digest(&bytes));
                let (_, audit) = call(&app, Method::GET, "/v1/audit?limit=500", None).await;
                let entries = audit["entries"].as_array().cloned().unwrap_or_default();
                assert!(
                    entries
                        .iter()
                        .any(|e| e["response_digest"].as_str() == Some(digest.as_str())),
                    "call {i}'s entry is in the log once it is answered"
                );
            })
        })
        .collect();
    for c in calls {
        c.await.expect("call");
    }
}
