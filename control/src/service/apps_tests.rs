//! The database-location rules, table-tested: who may read which tenant's database, and
//! what a gone, suspended or unprovisioned tenant answers.

use super::*;
use crate::model::fixtures;
use crate::provision::{Provision, StepRecord, TenantState};
use realmgate_table::TenantStatus;

fn app(pool: &str) -> DbCaller {
    DbCaller::App(Box::new(AppRecord {
        id: "a1".into(),
        name: "todos".into(),
        pool: pool.into(),
        digest: [0; 32],
        prefix: "rga_abcd".into(),
        created_at_ms: 1,
        revoked_at_ms: None,
    }))
}

fn db_step(state: StepState) -> StepRecord {
    let mut s = StepRecord::new(StepKind::Database, "libsql", 1);
    s.state = state;
    s.outputs
        .insert("path".into(), json!("/data/tenants/acme.db"));
    s
}

/// `acme` (pool `todos`, database done), `beta` (pool `other`), a deleted `gone` of pool
/// `todos`, a suspended `sleepy` and an unprovisioned `fresh` of pool `todos`.
fn model() -> Model {
    let mut m = Model::default();
    let mut add = |id: &str, pool: &str, f: &dyn Fn(&mut TenantRecord)| {
        let (id, mut r, hosts) = fixtures::tenant(id, &[&format!("{id}.example.dev")], pool);
        r.provision = Provision::ready(vec![db_step(StepState::Done)]);
        f(&mut r);
        m.put_tenant(id, r, hosts);
    };
    add("acme", "todos", &|_| {});
    add("beta", "other", &|_| {});
    add("sleepy", "todos", &|r| {
        r.wire.status = TenantStatus::Suspended
    });
    add("fresh", "todos", &|r| {
        r.provision = Provision::ready(vec![db_step(StepState::Pending)])
    });
    add("leaving", "todos", &|r| {
        r.provision.state = TenantState::Deleting
    });
    m.tombstones.insert(
        TenantId::parse("gone").expect("id"),
        vec!["todos".to_owned()],
    );
    m
}

fn outcome(caller: &DbCaller, tenant: &str) -> String {
    let id = TenantId::parse(tenant).expect("id");
    match locate(&model(), caller, &id, None, NOW) {
        Ok(loc) => format!("ok {}", loc.path.unwrap_or_default()),
        Err(ServiceError::Forbidden(_)) => "403".into(),
        Err(ServiceError::Gone(_)) => "410".into(),
        Err(ServiceError::NotFound { .. }) => "404".into(),
        Err(ServiceError::Conflict { code, .. }) => format!("409 {code}"),
        Err(ServiceError::Withheld { code, .. }) => format!("404 {code}"),
        Err(e) => format!("other {e}"),
    }
}

#[test]
fn who_reads_which_database() {
    let ok = "ok /data/tenants/acme.db";
    for (caller, tenant, want) in [
        (app("todos"), "acme", ok),
        (app("other"), "acme", "403"),
        (app("todos"), "beta", "403"),
        (app("todos"), "nobody", "403"),
        (app("todos"), "gone", "410"),
        (app("other"), "gone", "403"),
        (app("todos"), "leaving", "410"),
        (app("other"), "leaving", "403"),
        (app("todos"), "sleepy", "404 tenant_suspended"),
        (app("other"), "sleepy", "403"),
        (app("todos"), "fresh", "409 not_provisioned"),
        (DbCaller::Operator, "acme", ok),
        (DbCaller::Operator, "beta", ok),
        (DbCaller::Operator, "nobody", "404"),
        (DbCaller::Operator, "gone", "410"),
        (DbCaller::Operator, "sleepy", "404 tenant_suspended"),
        (DbCaller::Operator, "fresh", "409 not_provisioned"),
    ] {
        assert_eq!(
            outcome(&caller, tenant),
            want,
            "{caller:?} asking for {tenant}"
        );
    }
}

const NOW: u64 = 1_900_000_000;

/// `acme`'s database on a remote server at `url`.
fn remote_model(url: &str) -> Model {
    let mut m = model();
    let id = TenantId::parse("acme").expect("id");
    if let Some(t) = m.tenants.get_mut(&id) {
        t.provision.steps[0]
            .outputs
            .insert("url".into(), json!(url));
    }
    m
}

fn access(mint: bool) -> RemoteAccess {
    use crate::provision::database_token::{AppTokens, TEST_KEY};
    RemoteAccess {
        url_template: "libsql://{tenant}.db.example".into(),
        fleet_token: "fleet-secret".into(),
        app_tokens: mint
            .then(|| std::sync::Arc::new(AppTokens::from_pem(TEST_KEY, 300).expect("key"))),
    }
}

/// The claims of a token, unverified (the signature is `database_token`'s tests' part).
fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

#[test]
fn an_app_gets_a_token_for_its_tenants_namespace_only() {
    let m = remote_model("libsql://acme.db.example");
    let id = TenantId::parse("acme").expect("id");
    let loc = locate(&m, &app("todos"), &id, Some(&access(true)), NOW).expect("located");
    assert_eq!(loc.kind, "remote");
    assert_eq!(loc.url.as_deref(), Some("libsql://acme.db.example"));
    assert_eq!(loc.namespace.as_deref(), Some("acme"));
    assert_eq!(loc.path, None);
    assert_eq!(loc.auth_token_expires_in, Some(300));
    let token = loc.auth_token.expect("a token");
    assert_ne!(token, "fleet-secret", "never the server's own token");
    let c = claims_of(&token);
    assert_eq!(c["p"], json!({"rw": {"ns": ["acme"]}}));
    assert_eq!(
        (c["id"].clone(), c["exp"].clone()),
        (json!("acme"), json!(NOW + 300))
    );
    // The operator is trusted with the server's own token.
    let loc = locate(&m, &DbCaller::Operator, &id, Some(&access(true)), NOW).expect("located");
    assert_eq!(loc.auth_token.as_deref(), Some("fleet-secret"));
    assert_eq!(loc.auth_token_expires_in, None);
}

#[test]
fn an_app_is_refused_a_remote_database_it_cannot_be_scoped_to() {
    let id = TenantId::parse("acme").expect("id");
    for (url, remote, why) in [
        // No key to mint with: the fleet token is all there is.
        (
            "libsql://acme.db.example",
            Some(access(false)),
            "app_token_key_file",
        ),
        ("libsql://acme.db.example", None, "app_token_key_file"),
        // No namespace of its own to scope a token to.
        ("libsql://db.example/acme", Some(access(true)), "namespace"),
        ("libsql://localhost", Some(access(true)), "namespace"),
        // Another tenant's URL, or one recorded under an older template.
        ("libsql://beta.db.example", Some(access(true)), "namespace"),
        ("libsql://acme.old.example", Some(access(true)), "namespace"),
    ] {
        let m = remote_model(url);
        match locate(&m, &app("todos"), &id, remote.as_ref(), NOW) {
            Err(ServiceError::Forbidden(msg)) => {
                assert!(msg.contains(why), "{url}: {msg}");
                assert!(!msg.contains("fleet-secret"));
            }
            other => panic!("{url}: {other:?}"),
        }
        // Scope still comes first: another pool's app learns nothing more.
        assert!(matches!(
            locate(&m, &app("other"), &id, remote.as_ref(), NOW),
            Err(ServiceError::Forbidden(m)) if m.contains("own pool")
        ));
        // Operators still get the location.
        let loc = locate(&m, &DbCaller::Operator, &id, remote.as_ref(), NOW).expect("operator");
        assert_eq!(loc.kind, "remote");
    }
}

#[test]
fn secrets_are_app_credentials() {
    let s = new_secret().expect("secret");
    assert!(s.starts_with("rga_") && s.len() == 47, "{s}");
    assert_ne!(s, new_secret().expect("secret"));
}

#[tokio::test]
async fn created_revoked_and_found_by_digest() {
    let c = Control::new(crate::registry::Registry::in_memory().await.expect("reg"))
        .await
        .expect("control");
    let made = c
        .create_app(br#"{"name": "todos", "pool": "todos"}"#)
        .await
        .expect("created");
    let digest = super::super::keys::digest(made.credential.as_bytes());
    assert_eq!(c.app_caller(&digest).map(|a| a.pool), Some("todos".into()));
    assert!(c
        .app_caller(&super::super::keys::digest(b"rga_nope"))
        .is_none());
    assert_eq!(c.list_apps().len(), 1);
    let revoked = c.revoke_app(&made.view.id).await.expect("revoked");
    assert!(revoked.revoked_at.is_some());
    assert!(
        c.app_caller(&digest).is_none(),
        "a revoked credential is refused"
    );
    assert!(matches!(
        c.create_app(br#"{"name": "x", "pool": "Not A Pool"}"#)
            .await,
        Err(ServiceError::Invalid(_))
    ));
    assert!(matches!(
        c.revoke_app("nope").await,
        Err(ServiceError::NotFound { .. })
    ));
}

#[tokio::test]
async fn credentials_take_no_table_version_and_announce_nothing() {
    let c = Control::new(crate::registry::Registry::in_memory().await.expect("reg"))
        .await
        .expect("control");
    let mut changes = c.subscribe();
    changes.borrow_and_update();
    let before = c.version();
    let made = c
        .create_app(br#"{"name": "todos", "pool": "app"}"#)
        .await
        .expect("created");
    c.revoke_app(&made.view.id).await.expect("revoked");
    assert_eq!(c.version(), before, "the table did not change");
    assert!(
        !changes.has_changed().expect("open"),
        "nothing to compile or push"
    );
    // A table change still takes the next version, and is announced.
    c.put_upstream("app", br#"{"endpoints": ["127.0.0.1:9001"]}"#)
        .await
        .expect("pool");
    assert_eq!(c.version(), before + 1);
    assert!(changes.has_changed().expect("open"));
}
