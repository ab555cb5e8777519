//! Minting rules, visibility, revocation and digests-only storage.

use super::*;
use crate::registry::Registry;
use std::sync::Arc;

async fn control() -> Arc<Control> {
    let reg = Registry::in_memory().await.expect("registry");
    let c = Arc::new(Control::new(reg).await.expect("control"));
    c.put_upstream("app", br#"{"endpoints": ["127.0.0.1:9001"]}"#)
        .await
        .expect("upstream");
    for (id, host) in [("acme", "acme.test"), ("beta", "beta.test")] {
        let body = format!(
            r#"{{"id": "{id}", "hosts": ["{host}"], "routes": [{{"prefix": "/", "upstream": "app", "auth": "api_key"}}]}}"#
        );
        c.create_tenant(body.as_bytes()).await.expect("tenant");
    }
    c
}

async fn mint(c: &Control, caller: &Caller, body: &str) -> Result<CreatedKey, ServiceError> {
    c.create_key(caller, body.as_bytes()).await
}

fn as_key(c: &Control, k: &CreatedKey) -> Caller {
    Caller::Key(Box::new(
        c.key_caller(&digest(k.key.as_bytes())).expect("live key"),
    ))
}

#[tokio::test]
async fn keys_are_shown_once_and_stored_as_digests() {
    let c = control().await;
    let before = c.version();
    let k = mint(
        &c,
        &Caller::Operator,
        r#"{"tenant": "acme", "namespaces": ["@acme"]}"#,
    )
    .await
    .expect("mint");
    assert!(k.key.starts_with("rgk_") && k.key.len() == 47, "{}", k.key);
    assert_eq!(k.view.prefix, k.key[..8]);
    assert_eq!(k.view.table_version, before + 1);
    assert_eq!(k.view.created_by, "operator");
    let other = mint(&c, &Caller::Operator, r#"{"namespaces": ["*"]}"#)
        .await
        .expect("operator key");
    assert_ne!(k.key, other.key);
    assert_eq!(other.view.tenant, None);
    c.with_model(|m| {
        let rec = &m.keys[&k.view.id];
        assert_eq!(rec.digest, digest(k.key.as_bytes()));
        assert!(!format!("{rec:?}").contains(&k.key[4..]), "no secret kept");
    });
}

#[tokio::test]
async fn a_key_mints_only_within_its_tenant_namespaces_and_lifetime() {
    let c = control().await;
    let acme = mint(&c, &Caller::Operator, r#"{"tenant": "acme", "namespaces": ["@acme", "@acme.v2"], "expires_at": "2099-01-01T00:00:00Z"}"#)
        .await
        .expect("mint");
    let parent = as_key(&c, &acme);
    // Within: inherits the tenant and the expiry.
    let child = mint(&c, &parent, r#"{"namespaces": ["@acme"]}"#)
        .await
        .expect("child");
    assert_eq!(child.view.tenant.as_deref(), Some("acme"));
    assert_eq!(
        child.view.expires_at.as_deref(),
        Some("2099-01-01T00:00:00Z")
    );
    assert_eq!(child.view.created_by, format!("key:{}", acme.view.id));
    for denied in [
        r#"{"namespaces": ["*"]}"#,
        r#"{"namespaces": ["@other"]}"#,
        r#"{"namespaces": ["@acme", "@other"]}"#,
        r#"{"tenant": "beta", "namespaces": ["@acme"]}"#,
        r#"{"namespaces": ["@acme"], "expires_at": "2100-01-01T00:00:00Z"}"#,
    ] {
        let err = mint(&c, &parent, denied).await.expect_err(denied);
        assert!(
            matches!(err, ServiceError::Forbidden(_)),
            "{denied}: {err:?}"
        );
    }
    // A tenant `*` key may mint any namespace of its tenant, not an operator key.
    let star = mint(
        &c,
        &Caller::Operator,
        r#"{"tenant": "acme", "namespaces": ["*"]}"#,
    )
    .await
    .expect("star");
    let star = as_key(&c, &star);
    assert!(mint(&c, &star, r#"{"namespaces": ["@anything"]}"#)
        .await
        .is_ok());
    assert!(mint(&c, &star, r#"{"namespaces": ["*"]}"#).await.is_ok());
    let err = mint(&c, &star, r#"{"tenant": "beta", "namespaces": ["*"]}"#).await;
    assert!(matches!(err, Err(ServiceError::Forbidden(_))), "{err:?}");
}

#[tokio::test]
async fn every_problem_of_a_bad_key_is_listed() {
    let c = control().await;
    let err = mint(
        &c,
        &Caller::Operator,
        r#"{"tenant": "nope", "namespaces": ["acme", "*"], "expires_at": "soon",
            "rate_limit": {"requests": 0}, "colour": 1}"#,
    )
    .await
    .expect_err("invalid");
    let ServiceError::Invalid(p) = err else {
        panic!("{err:?}");
    };
    let mut at: Vec<&str> = p.iter().map(|p| p.at.as_str()).collect();
    at.sort_unstable();
    assert_eq!(
        at,
        [
            "colour",
            "expires_at",
            "namespaces",
            "namespaces[0]",
            "rate_limit.requests",
            "tenant"
        ],
        "{p:#?}"
    );
    let err = mint(
        &c,
        &Caller::Operator,
        r#"{"namespaces": ["*"], "expires_at": "2001-01-01T00:00:00Z"}"#,
    )
    .await
    .expect_err("past");
    assert!(matches!(err, ServiceError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn listing_and_revoking_stay_within_what_the_caller_covers() {
    let c = control().await;
    let acme = mint(
        &c,
        &Caller::Operator,
        r#"{"tenant": "acme", "namespaces": ["@acme"]}"#,
    )
    .await
    .expect("acme");
    let beta = mint(
        &c,
        &Caller::Operator,
        r#"{"tenant": "beta", "namespaces": ["*"]}"#,
    )
    .await
    .expect("beta");
    let parent = as_key(&c, &acme);
    let child = mint(&c, &parent, r#"{"namespaces": ["@acme"]}"#)
        .await
        .expect("child");
    let ids = |v: Vec<KeyView>| v.into_iter().map(|k| k.id).collect::<Vec<_>>();
    let seen = ids(c.list_keys(&parent));
    assert!(seen.contains(&child.view.id) && seen.contains(&acme.view.id));
    assert!(!seen.contains(&beta.view.id));
    assert_eq!(c.list_keys(&Caller::Operator).len(), 3);
    assert!(matches!(
        c.revoke_key(&parent, &beta.view.id).await,
        Err(ServiceError::NotFound { .. })
    ));
    let before = c.version();
    let revoked = c.revoke_key(&parent, &child.view.id).await.expect("revoke");
    assert!(revoked.revoked_at.is_some());
    assert_eq!(revoked.table_version, before + 1);
    assert!(
        c.key_caller(&digest(child.key.as_bytes())).is_none(),
        "revoked keys stop working"
    );
    let again = c
        .revoke_key(&parent, &child.view.id)
        .await
        .expect("idempotent");
    assert_eq!(again.table_version, before + 1, "no new version");
    // Deleting a tenant revokes its keys.
    c.delete_tenant(&TenantId::parse("acme").expect("id"), None)
        .await
        .expect("delete");
    assert!(c.key_caller(&digest(acme.key.as_bytes())).is_none());
}

#[tokio::test]
async fn a_minted_key_never_exceeds_its_parents_limit_nor_its_tenants_per_key() {
    let c = control().await;
    c.create_tenant(
        br#"{"id": "gamma", "hosts": ["gamma.test"], "rate_limits": {"per_key": {"requests": 10, "window_s": 1}},
             "routes": [{"prefix": "/", "upstream": "app", "auth": "api_key"}]}"#,
    )
    .await
    .expect("tenant with per_key");
    let limit_of = |k: &CreatedKey| c.with_model(|m| m.keys[&k.view.id].rate_limit);
    let rl = |requests, window_s| Some(RateLimit { requests, window_s });
    // Parents: two a minute of its own (the issue's), none of its own under per_key 10/s,
    // and an operator override above per_key (100/s).
    let slow = mint(&c, &Caller::Operator, r#"{"tenant": "gamma", "namespaces": ["*"], "rate_limit": {"requests": 2, "window_s": 60}}"#).await.expect("slow");
    let plain = mint(
        &c,
        &Caller::Operator,
        r#"{"tenant": "gamma", "namespaces": ["*"]}"#,
    )
    .await
    .expect("plain");
    let fast = mint(
        &c,
        &Caller::Operator,
        r#"{"tenant": "gamma", "namespaces": ["*"], "rate_limit": {"requests": 100}}"#,
    )
    .await
    .expect("operator may override per_key");
    let global = mint(&c, &Caller::Operator, r#"{"namespaces": ["*"]}"#)
        .await
        .expect("global");
    assert_eq!(limit_of(&fast), rl(100, 1));

    // (parent, child's rate_limit, tenant, Ok(stored limit) or Err(403)).
    type Case<'a> = (
        &'a CreatedKey,
        &'a str,
        &'a str,
        Result<Option<RateLimit>, ()>,
    );
    let none = "";
    let cases: &[Case<'_>] = &[
        (
            &slow,
            r#""rate_limit": {"requests": 1000000000}"#,
            "gamma",
            Err(()),
        ),
        (
            &slow,
            r#""rate_limit": {"requests": 2, "window_s": 1}"#,
            "gamma",
            Err(()),
        ),
        (
            &slow,
            r#""rate_limit": {"requests": 4, "window_s": 120}"#,
            "gamma",
            Err(()),
        ),
        (
            &slow,
            r#""rate_limit": {"requests": 1, "window_s": 60}"#,
            "gamma",
            Ok(rl(1, 60)),
        ),
        (
            &slow,
            r#""rate_limit": {"requests": 2, "window_s": 60}"#,
            "gamma",
            Ok(rl(2, 60)),
        ),
        (&slow, none, "gamma", Ok(rl(2, 60))),
        (
            &plain,
            r#""rate_limit": {"requests": 11}"#,
            "gamma",
            Err(()),
        ),
        (
            &plain,
            r#""rate_limit": {"requests": 10, "window_s": 1}"#,
            "gamma",
            Ok(rl(10, 1)),
        ),
        // Follows the tenant's per_key, as its parent does.
        (&plain, none, "gamma", Ok(None)),
        // The parent's override does not pass to its children beyond per_key.
        (&fast, r#""rate_limit": {"requests": 50}"#, "gamma", Err(())),
        (&fast, none, "gamma", Ok(rl(10, 1))),
        // A key of every tenant: the child's tenant's per_key binds.
        (
            &global,
            r#""rate_limit": {"requests": 1000000000}"#,
            "gamma",
            Err(()),
        ),
        (
            &global,
            r#""rate_limit": {"requests": 5}"#,
            "gamma",
            Ok(rl(5, 1)),
        ),
        (&global, none, "gamma", Ok(rl(10, 1))),
        (
            &global,
            r#""rate_limit": {"requests": 1000000000}"#,
            "acme",
            Ok(rl(1_000_000_000, 1)),
        ),
        (&global, none, "acme", Ok(None)),
    ];
    for (parent, limit, tenant, want) in cases {
        let sep = if limit.is_empty() { "" } else { ", " };
        let body = format!(r#"{{"tenant": "{tenant}", "namespaces": ["*"]{sep}{limit}}}"#);
        let got = mint(&c, &as_key(&c, parent), &body).await;
        match (want, got) {
            (Ok(limit), Ok(k)) => {
                assert_eq!(limit_of(&k), *limit, "{body} from {}", parent.view.id)
            }
            (Err(()), Err(ServiceError::Forbidden(m))) => {
                assert!(m.contains("cannot be allowed more"), "{m}")
            }
            (want, got) => panic!("{body}: wanted {want:?}, got {got:?}"),
        }
    }
}
