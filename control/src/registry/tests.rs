//! Registry round trips: what is written is what is loaded, and the version counter moves
//! with every write and survives a reopen.

use super::*;
use crate::model::fixtures;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "realmctl-registry-{name}-{}-{}",
        std::process::id(),
        crate::time::now_ms()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn writes_bump_the_version_and_round_trip() {
    let reg = Registry::in_memory().await.expect("open");
    assert_eq!(
        reg.ensure_version().await.expect("v"),
        1,
        "empty registry is table 1"
    );
    assert_eq!(reg.ensure_version().await.expect("v"), 1, "and stays there");

    let app = UpstreamName::parse("app").expect("name");
    let up = fixtures::upstream(&["127.0.0.1:9001"]);
    assert_eq!(reg.save_upstream(&app, &up.spec, 5).await.expect("save"), 2);

    let (id, mut rec, _) = fixtures::tenant("acme", &["acme.test", "*.acme.test"], "app");
    rec.catalog = vec![CatalogEntry {
        name: "crm".into(),
        title: "CRM".into(),
        path: "/crm/".into(),
        icon: Some("lucide:users".into()),
    }];
    rec.wire.shell = Some(realmgate_table::Shell {
        enabled: true,
        upstream: Some("app".into()),
        excludes: vec!["/api/".into()],
    });
    rec.sync_wire();
    rec.wire.status = TenantStatus::Suspended;
    assert_eq!(reg.save_tenant(&rec).await.expect("save"), 3);

    let model = reg.load().await.expect("load");
    assert_eq!(model.version, 3);
    let loaded = model.tenants.get(&id).expect("tenant loaded");
    assert!(loaded.same_content(&rec), "{loaded:?}");
    assert_eq!(
        loaded.table_version, 3,
        "row carries the version of its change"
    );
    assert_eq!(model.upstreams.get(&app).map(|u| &u.spec), Some(&up.spec));
    let host = HostPattern::parse("x.acme.test").ok();
    assert!(host.is_some());
    let wildcard = HostPattern::parse("*.acme.test").expect("pattern");
    assert_eq!(model.host_owner(&wildcard), Some(&id));

    // Replace: hosts are rewritten, not accumulated.
    rec.wire.hosts = vec!["acme.example".into()];
    assert_eq!(reg.save_tenant(&rec).await.expect("update"), 4);
    let model = reg.load().await.expect("load");
    assert_eq!(model.host_owner(&wildcard), None);
    assert_eq!(
        model.tenants.get(&id).map(|t| t.wire.hosts.clone()),
        Some(vec!["acme.example".to_owned()])
    );

    assert_eq!(reg.delete_tenant(&id, &[], 1).await.expect("delete"), 5);
    assert_eq!(reg.delete_upstream(&app).await.expect("delete"), 6);
    let model = reg.load().await.expect("load");
    assert!(model.tenants.is_empty() && model.upstreams.is_empty());
    assert_eq!(model.version, 6);
}

#[tokio::test]
async fn a_host_belongs_to_one_tenant_even_in_the_database() {
    let reg = Registry::in_memory().await.expect("open");
    let (_, a, _) = fixtures::tenant("a", &["shared.test"], "app");
    let (_, b, _) = fixtures::tenant("b", &["shared.test"], "app");
    let v = reg.save_tenant(&a).await.expect("a");
    assert!(reg.save_tenant(&b).await.is_err(), "primary key on host");
    let model = reg.load().await.expect("load");
    assert_eq!(
        model.version, v,
        "the failed write did not bump the version"
    );
    assert_eq!(model.tenants.len(), 1);
}

#[tokio::test]
async fn state_and_version_survive_a_reopen() {
    let dir = temp_dir("reopen");
    {
        let reg = Registry::open(&dir, None).await.expect("open");
        reg.ensure_version().await.expect("v");
        let (_, rec, _) = fixtures::tenant("acme", &["acme.test"], "app");
        assert_eq!(reg.save_tenant(&rec).await.expect("save"), 2);
    }
    let reg = Registry::open(&dir, None).await.expect("reopen");
    assert_eq!(reg.ensure_version().await.expect("v"), 2);
    let model = reg.load().await.expect("load");
    assert_eq!(model.tenants.len(), 1);
    let (_, rec, _) = fixtures::tenant("beta", &["beta.test"], "app");
    assert_eq!(
        reg.save_tenant(&rec).await.expect("save"),
        3,
        "counter continues"
    );
    drop(reg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let reg = Registry::in_memory().await.expect("open");
    reg.conn
        .execute(
            "INSERT INTO tenants VALUES ('acme', 'Acme', 'active', 'not json', '[]', 1, 1, 0, 0, '{}', 'ready', 1, NULL, NULL, 'off', NULL)",
            (),
        )
        .await
        .expect("insert");
    let err = reg.load().await.expect_err("corrupt");
    assert!(matches!(err, RegistryError::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn the_version_moves_past_a_gateways_and_stays_there_after_a_reopen() {
    let dir = temp_dir("move-past");
    {
        let reg = Registry::open(&dir, None).await.expect("open");
        assert_eq!(reg.ensure_version().await.expect("v"), 1);
        // A gateway reports 29 (this registry was restored at 1): continue at 30.
        assert_eq!(reg.move_version_past(29).await.expect("move"), 30);
        // Never backwards, and a lower report changes nothing.
        assert_eq!(reg.move_version_past(12).await.expect("no-op"), 30);
        assert_eq!(reg.move_version_past(30).await.expect("equal"), 31);
    }
    let reg = Registry::open(&dir, None).await.expect("reopen");
    assert_eq!(reg.ensure_version().await.expect("v"), 31, "persisted");
    let (_, rec, _) = fixtures::tenant("acme", &["acme.test"], "app");
    assert_eq!(reg.save_tenant(&rec).await.expect("save"), 32);
    drop(reg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn https_hsts_and_certificates_round_trip() {
    let dir = temp_dir("certs");
    let (_, mut rec, _) = fixtures::tenant("acme", &["acme.test"], "app");
    rec.wire.https = realmgate_table::HttpsMode::Redirect;
    rec.wire.hsts = Some(realmgate_table::Hsts {
        max_age: 600,
        include_subdomains: true,
        preload: false,
    });
    let cert = crate::model::CertRecord {
        name: "acme".into(),
        cert_pem: "-----BEGIN CERTIFICATE-----".into(),
        key_sealed: "sealed".into(),
        hosts: vec![
            HostPattern::parse("acme.test").expect("host"),
            HostPattern::parse("*.acme.test").expect("host"),
        ],
        not_before: 1,
        not_after: 2,
        fingerprint: "sha256:00".into(),
        table_version: 0,
        created_at_ms: 3,
        updated_at_ms: 4,
    };
    {
        let reg = Registry::open(&dir, None).await.expect("open");
        reg.save_tenant(&rec).await.expect("save tenant");
        let v = reg.save_certificate(&cert).await.expect("save cert");
        let m = reg.load().await.expect("load");
        assert_eq!(m.certificates["acme"].table_version, v);
        // A name held by another certificate cannot be written.
        let twin = crate::model::CertRecord {
            name: "twin".into(),
            ..cert.clone()
        };
        assert!(reg.save_certificate(&twin).await.is_err());
    }
    let reg = Registry::open(&dir, None).await.expect("reopen");
    let m = reg.load().await.expect("load");
    let t = m.tenants.values().next().expect("tenant");
    assert_eq!(t.wire.https, rec.wire.https);
    assert_eq!(t.wire.hsts, rec.wire.hsts);
    let c = &m.certificates["acme"];
    assert_eq!(
        (&c.hosts, &c.key_sealed, c.not_after),
        (&cert.hosts, &cert.key_sealed, 2)
    );
    assert_eq!(m.certificates.len(), 1, "the failed write left nothing");
    reg.delete_certificate("acme").await.expect("delete");
    assert!(reg.load().await.expect("load").certificates.is_empty());
    drop(reg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_closed_fence_refuses_every_write_and_commits_nothing() {
    use crate::leadership::{Fence, Leadership};
    let mut reg = Registry::in_memory().await.expect("open");
    let (fence, control) = Fence::closed("held by other-7");
    reg.set_fence(fence);
    // Opening (the first version of an empty registry) is not a fenced write.
    assert_eq!(reg.ensure_version().await.expect("v"), 1);
    let app = UpstreamName::parse("app").expect("name");
    let up = fixtures::upstream(&["127.0.0.1:9001"]);
    let not_leader = |r: Result<u64, RegistryError>| match r {
        Err(RegistryError::NotLeader(reason)) => assert_eq!(reason, "held by other-7"),
        other => panic!("{other:?}"),
    };
    not_leader(reg.save_upstream(&app, &up.spec, 5).await);
    not_leader(reg.move_version_past(40).await);
    let (id, rec, _) = fixtures::tenant("acme", &["acme.test"], "app");
    let step = crate::provision::StepRecord::new(crate::provision::StepKind::Database, "libsql", 1);
    assert!(matches!(
        reg.save_step(&id, &step).await,
        Err(RegistryError::NotLeader(_))
    ));
    assert!(matches!(
        reg.save_provision_state(&id, &rec.provision).await,
        Err(RegistryError::NotLeader(_))
    ));

    // Closed while a write's body runs: checked again before commit, rolled back.
    control.set(Leadership::Leading);
    let closing = reg
        .write(|_, _| async {
            control.set(Leadership::not_leading("held by other-7"));
            Ok(())
        })
        .await;
    not_leader(closing);
    let model = reg.load().await.expect("load");
    assert_eq!(model.version, 1, "nothing committed");
    assert!(model.upstreams.is_empty());

    control.set(Leadership::Leading);
    assert_eq!(reg.save_upstream(&app, &up.spec, 5).await.expect("save"), 2);
}
