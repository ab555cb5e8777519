//! Operator keys against a real (in-memory) registry: minting, every bad field, lookup,
//! expiry, revocation, the live bound, and a restart reading them back.

use super::*;
use crate::registry::Registry;

async fn control() -> Control {
    Control::new(Registry::in_memory().await.expect("registry"))
        .await
        .expect("control")
}

fn body(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn problems(e: ServiceError) -> Vec<(String, String)> {
    match e {
        ServiceError::Invalid(p) => p.into_iter().map(|p| (p.at, p.message)).collect(),
        other => panic!("not a 422: {other}"),
    }
}

#[tokio::test]
async fn a_minted_key_authenticates_until_revoked() {
    let c = control().await;
    let keys = OperatorKeys::load(&c).await.expect("load");
    let k = keys
        .mint(
            &c,
            &body(json!({"name": "ci deploys", "role": "admin"})),
            "operator_token".into(),
        )
        .await
        .expect("mint");
    assert!(k.key.starts_with("rgo_"));
    assert_eq!(k.key.len(), 4 + 43, "256 bits, base64url");
    assert_eq!(k.view.prefix, &k.key[..8]);
    assert_eq!(k.view.state, "live");
    assert_eq!(k.view.role, Role::Admin);
    let caller = keys.caller(k.key.as_bytes()).expect("live");
    assert_eq!(caller.id, k.view.id);
    assert_eq!(caller.role, Role::Admin);
    // Near misses find nothing.
    for wrong in [
        &k.key[..k.key.len() - 1],
        "rgo_",
        "",
        &format!("{}x", k.key),
    ] {
        assert!(keys.caller(wrong.as_bytes()).is_none(), "{wrong}");
    }
    // The list never carries the secret.
    let listed = serde_json::to_string(&keys.list()).expect("json");
    assert!(!listed.contains(&k.key));
    assert!(listed.contains(&k.view.id));
    // Revoked: refused from now on; revoking again changes nothing.
    let r = keys.revoke(&c, &k.view.id).await.expect("revoke");
    assert_eq!(r.state, "revoked");
    assert!(keys.caller(k.key.as_bytes()).is_none());
    let again = keys.revoke(&c, &k.view.id).await.expect("again");
    assert_eq!(again.revoked_at, r.revoked_at);
    assert!(matches!(
        keys.revoke(&c, "onope").await,
        Err(ServiceError::NotFound { .. })
    ));
    // A restart reads the same keys back from the registry.
    let reloaded = OperatorKeys::load(&c).await.expect("reload");
    assert_eq!(reloaded.list(), keys.list());
    assert!(reloaded.caller(k.key.as_bytes()).is_none());
}

#[tokio::test]
async fn every_bad_field_is_reported_and_nothing_is_minted() {
    let c = control().await;
    let keys = OperatorKeys::load(&c).await.expect("load");
    let by = || "operator_token".to_owned();
    let cases = [
        (json!({}), vec!["name", "role"]),
        (json!({"name": "", "role": "root"}), vec!["name", "role"]),
        (json!({"name": " x", "role": "viewer"}), vec!["name"]),
        (json!({"name": "a\nb", "role": "viewer"}), vec!["name"]),
        (
            json!({"name": "x".repeat(65), "role": "viewer"}),
            vec!["name"],
        ),
        (json!({"name": 7, "role": "viewer"}), vec!["name"]),
        (json!({"name": "x", "role": "Admin"}), vec!["role"]),
        (
            json!({"name": "x", "role": "viewer", "expires_at": "tomorrow"}),
            vec!["expires_at"],
        ),
        (
            json!({"name": "x", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"}),
            vec!["expires_at"],
        ),
        (
            json!({"name": "x", "role": "viewer", "tenant": "acme"}),
            vec!["tenant"],
        ),
    ];
    for (b, fields) in cases {
        let found = problems(
            keys.mint(&c, &body(b.clone()), by())
                .await
                .expect_err("bad"),
        );
        let at: Vec<&str> = found.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(at, fields, "{b}: {found:?}");
    }
    for raw in [
        &b"not json"[..],
        b"[]",
        b"{\"name\": \"a\", \"name\": \"b\", \"role\": \"viewer\"}",
    ] {
        assert!(matches!(
            keys.mint(&c, raw, by()).await,
            Err(ServiceError::Invalid(_))
        ));
    }
    assert!(keys.list().is_empty());
    assert!(c.operator_keys().await.expect("registry").is_empty());
}

#[tokio::test]
async fn expired_keys_are_refused_and_live_keys_are_bounded() {
    let c = control().await;
    let keys = OperatorKeys::load(&c).await.expect("load");
    let k = keys
        .mint(
            &c,
            &body(json!({"name": "short", "role": "viewer", "expires_at": "2099-01-01T00:00:00Z"})),
            "session:alice".into(),
        )
        .await
        .expect("mint");
    assert_eq!(k.view.expires_at.as_deref(), Some("2099-01-01T00:00:00Z"));
    assert_eq!(k.view.created_by, "session:alice");
    assert_eq!(
        keys.caller(k.key.as_bytes()).map(|c| c.role),
        Some(Role::Viewer)
    );
    // Its expiry passes (moved into the past as time would).
    keys.keys.write().expect("lock")[0].record.expires_at_ms = Some(now_ms() - 1);
    assert!(keys.caller(k.key.as_bytes()).is_none());
    assert_eq!(keys.list()[0].state, "expired");
    // The bound counts live keys only: the expired one leaves room for MAX_LIVE more.
    for i in 0..MAX_LIVE {
        keys.mint(
            &c,
            &body(json!({"name": format!("k{i}"), "role": "viewer"})),
            "t".into(),
        )
        .await
        .expect("within the bound");
    }
    let over = keys
        .mint(
            &c,
            &body(json!({"name": "one more", "role": "viewer"})),
            "t".into(),
        )
        .await;
    assert!(
        matches!(
            over,
            Err(ServiceError::Conflict {
                code: "too_many_operator_keys",
                ..
            })
        ),
        "{over:?}"
    );
    assert_eq!(keys.list().len(), MAX_LIVE + 1);
}
