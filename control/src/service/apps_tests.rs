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
    match locate(&model(), caller, &id, None) {
        Ok(loc) => format!("ok {}", loc.path.unwrap_or_default()),
        Err(ServiceError::Forbidden(_)) => "403".into(),
        Err(ServiceError::Gone(_)) => "410".into(),
        Err(ServiceError::NotFound { .. }) => "404".into(),
        Err(ServiceError::Conflict { code, .. }) => format!("409 {code}"),
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
        (app("todos"), "sleepy", "409 tenant_suspended"),
        (app("other"), "sleepy", "403"),
        (app("todos"), "fresh", "409 not_provisioned"),
        (DbCaller::Operator, "acme", ok),
        (DbCaller::Operator, "beta", ok),
        (DbCaller::Operator, "nobody", "404"),
        (DbCaller::Operator, "gone", "410"),
        (DbCaller::Operator, "sleepy", "409 tenant_suspended"),
        (DbCaller::Operator, "fresh", "409 not_provisioned"),
    ] {
        assert_eq!(
            outcome(&caller, tenant),
            want,
            "{caller:?} asking for {tenant}"
        );
    }
}

#[test]
fn a_remote_database_comes_with_its_token() {
    let mut m = model();
    let id = TenantId::parse("acme").expect("id");
    if let Some(t) = m.tenants.get_mut(&id) {
        t.provision.steps[0]
            .outputs
            .insert("url".into(), json!("libsql://acme.db.example"));
    }
    let loc = locate(&m, &app("todos"), &id, Some("tok")).expect("located");
    assert_eq!(loc.kind, "remote");
    assert_eq!(loc.url.as_deref(), Some("libsql://acme.db.example"));
    assert_eq!(loc.auth_token.as_deref(), Some("tok"));
    assert_eq!(loc.path, None);
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
