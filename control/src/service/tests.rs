//! The service's guarantees: versions only grow, concurrent changes are all kept, no-op
//! changes cost no version, and conflicts are found after normalisation.

use super::*;
use std::sync::Arc;

async fn control() -> Arc<Control> {
    let reg = Registry::in_memory().await.expect("registry");
    let c = Arc::new(Control::new(reg).await.expect("control"));
    c.put_upstream("app", br#"{"endpoints": ["127.0.0.1:9001"]}"#)
        .await
        .expect("upstream");
    c
}

fn tenant_body(id: &str, host: &str) -> Vec<u8> {
    format!(r#"{{"id": "{id}", "hosts": ["{host}"], "routes": [{{"prefix": "/", "upstream": "app", "auth": "public"}}]}}"#)
        .into_bytes()
}

fn id(s: &str) -> TenantId {
    TenantId::parse(s).expect("id")
}

#[tokio::test]
async fn each_change_is_the_next_version() {
    let c = control().await;
    assert_eq!(
        c.version(),
        2,
        "table 1 is the empty registry, 2 added the pool"
    );
    let t = c
        .create_tenant(&tenant_body("acme", "acme.test"))
        .await
        .expect("create");
    assert_eq!((t.table_version, c.version()), (3, 3));
    let t = c
        .update_tenant(&id("acme"), br#"{"status": "suspended"}"#, None)
        .await
        .expect("suspend");
    assert_eq!((t.table_version, t.revision), (4, 2));
    assert_eq!(c.delete_tenant(&id("acme"), None).await.expect("delete"), 5);
    assert_eq!(
        *c.subscribe().borrow(),
        5,
        "the compiler hears of every commit"
    );
}

#[tokio::test]
async fn no_op_changes_cost_no_version() {
    let c = control().await;
    c.create_tenant(&tenant_body("acme", "acme.test"))
        .await
        .expect("create");
    let v = c.version();
    let t = c
        .update_tenant(&id("acme"), br#"{"hosts": ["ACME.test."]}"#, None)
        .await
        .expect("same hosts");
    assert_eq!((t.revision, c.version()), (1, v));
    let (_, created) = c
        .put_upstream("app", br#"{"endpoints": ["127.0.0.1:9001"]}"#)
        .await
        .expect("same pool");
    assert!(!created);
    assert_eq!(c.version(), v);
}

#[tokio::test]
async fn hosts_conflict_after_normalisation() {
    let c = control().await;
    c.create_tenant(&tenant_body("acme", "acme.test"))
        .await
        .expect("create");
    let err = c
        .create_tenant(&tenant_body("other", "ACME.Test."))
        .await
        .expect_err("conflict");
    assert!(
        matches!(
            err,
            ServiceError::Conflict {
                code: "host_conflict",
                ..
            }
        ),
        "{err}"
    );
    let err = c
        .create_tenant(&tenant_body("acme", "new.test"))
        .await
        .expect_err("exists");
    assert!(
        matches!(
            err,
            ServiceError::Conflict {
                code: "tenant_exists",
                ..
            }
        ),
        "{err}"
    );
    // A tenant may keep its own hosts in a patch.
    c.update_tenant(
        &id("acme"),
        br#"{"hosts": ["acme.test", "www.acme.test"]}"#,
        None,
    )
    .await
    .expect("own host");
}

#[tokio::test]
async fn concurrent_patches_to_one_tenant_are_all_kept() {
    let c = control().await;
    c.create_tenant(&tenant_body("acme", "acme.test"))
        .await
        .expect("create");
    let start = c.version();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            // Each writer changes a different field or value; every one must land.
            let body = match i % 2 {
                0 => format!(r#"{{"display_name": "Acme {i}"}}"#),
                _ => format!(
                    r#"{{"catalog": [{{"name": "app{i}", "title": "App {i}", "path": "/a{i}/"}}]}}"#
                ),
            };
            c.update_tenant(&id("acme"), body.as_bytes(), None).await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("join").expect("patch").table_version);
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 16, "every change got its own version");
    assert_eq!(versions.first(), Some(&(start + 1)));
    assert_eq!(c.version(), start + 16);
    let t = c.tenant(&id("acme")).expect("tenant");
    assert_eq!(t.revision, 17);
}

#[tokio::test]
async fn if_match_guards_against_stale_writes() {
    let c = control().await;
    let t = c
        .create_tenant(&tenant_body("acme", "acme.test"))
        .await
        .expect("create");
    c.update_tenant(&id("acme"), br#"{"display_name": "A"}"#, Some(t.revision))
        .await
        .expect("fresh");
    let err = c
        .update_tenant(&id("acme"), br#"{"display_name": "B"}"#, Some(t.revision))
        .await
        .expect_err("stale");
    assert!(
        matches!(err, ServiceError::PreconditionFailed { current: 2 }),
        "{err}"
    );
    let err = c
        .delete_tenant(&id("acme"), Some(1))
        .await
        .expect_err("stale");
    assert!(matches!(err, ServiceError::PreconditionFailed { .. }));
}

#[tokio::test]
async fn pools_in_use_stay() {
    let c = control().await;
    c.create_tenant(&tenant_body("acme", "acme.test"))
        .await
        .expect("create");
    let app = UpstreamName::parse("app").expect("name");
    let err = c.delete_upstream(&app).await.expect_err("in use");
    assert!(
        matches!(
            err,
            ServiceError::Conflict {
                code: "upstream_in_use",
                ..
            }
        ),
        "{err}"
    );
    c.delete_tenant(&id("acme"), None).await.expect("delete");
    c.delete_upstream(&app).await.expect("now free");
    assert!(matches!(
        c.upstream(&app),
        Err(ServiceError::NotFound { .. })
    ));
}

#[tokio::test]
async fn listing_pages_in_id_order() {
    let c = control().await;
    for t in ["c", "a", "b"] {
        c.create_tenant(&tenant_body(t, &format!("{t}.test")))
            .await
            .expect("create");
    }
    let page = c.list_tenants(None, 2);
    let ids: Vec<&str> = page.tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!((ids, page.next.as_deref()), (vec!["a", "b"], Some("b")));
    let page = c.list_tenants(Some("b"), 2);
    assert_eq!(page.tenants.len(), 1);
    assert_eq!(page.next, None);
}
