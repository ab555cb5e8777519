//! Certificates from a real ACME CA, across processes: Pebble v2.10.3 (tests/setup/pebble.sh,
//! validating for real: PEBBLE_VA_ALWAYS_VALID off) resolving tenant hosts through the real
//! PowerDNS the tests run (tests/setup/powerdns.sh), the real `realmctl` (its dns step writes
//! the A record, its certificate step orders) and the real `realmgate` (answers the http-01
//! challenge from the table on its plain listener, serves the certificate on its TLS one).
//!
//! Between realmctl and Pebble sits a small recording and fault-injecting proxy (it counts
//! new-order requests, and can answer 503 to everything as an unreachable CA would fail).
//!
//! PowerDNS comes from the environment tests/run sets (`REALMGATE_POWERDNS_*`); without it
//! these tests skip and say so, unless `REALMGATE_REQUIRE_PROVISION=1` makes that a failure.

mod common;

use common::acme::*;
use common::provision::wait_state;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_new_tenant_gets_a_certificate_from_the_ca_and_is_served_over_https() {
    let Some(d) = dns("a_new_tenant_gets_a_certificate") else {
        return;
    };
    let dir = TempDir::new("acme-issue");
    let up = Upstream::start("acme-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    let rc = Realmctl::start_with(
        &dir,
        &[&gw],
        &acme_yaml(&dir, &d, &pebble, &proxy.directory_url),
        &[],
    )
    .await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let id = format!("ac{}", std::process::id());
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    let t = wait_state(&api, &id, "ready", Duration::from_secs(90)).await;
    let cert = step(&t, "certificate");
    assert_eq!(cert["state"], "done", "{t}\n{}", rc.proc.log_text());
    assert_eq!(cert["provider"], "acme");

    // The certificate record, served by SNI: the chain verifies against Pebble's root.
    let (st, c) = api
        .call(Method::GET, &format!("/v1/certificates/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["hosts"], json!([host]));
    let v = c["table_version"].as_u64().expect("version");
    rc.wait_in_sync(v, Duration::from_secs(20)).await;
    let root = pebble.root_pem().await;
    let (status, _) = eventually(Duration::from_secs(20), "https 200", || async {
        https_get(&gw, &host, &root)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(proxy.new_orders.load(Ordering::SeqCst), 1);

    // The challenge answer left the table; any other token is 404.
    let (st, _) = http_get(
        &gw,
        &host,
        "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
    )
    .await;
    assert_eq!(st, 404);
    let (_, table) = api.call(Method::GET, "/v1/table?full=1", None).await;
    assert!(table["acme_challenges"].is_null(), "{table}");
    // Neither the account key nor the certificate key reached the log.
    assert!(!rc.proc.log_text().contains("PRIVATE KEY"));

    // The CA unreachable: a second tenant's certificate step fails with a clear error and is
    // retried; the first tenant is served all along; back up, the second gets its own.
    proxy.down.store(true, Ordering::SeqCst);
    let id2 = format!("ad{}", std::process::id());
    let host2 = format!("{id2}.{}", d.zone);
    create_tenant(&api, &id2, &host2).await;
    let t2 = wait_state(&api, &id2, "failed", Duration::from_secs(60)).await;
    let err = t2["provisioning"]["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("certificate: cannot reach the ACME CA at https://127.0.0.1:"),
        "{t2}"
    );
    let attempts = |t: &Value| step(t, "certificate")["attempts"].as_u64().unwrap_or(0);
    let first = attempts(&t2);
    eventually(Duration::from_secs(30), "a retry", || async {
        let (_, t) = api
            .call(Method::GET, &format!("/v1/tenants/{id2}"), None)
            .await;
        (attempts(&t) > first).then_some(())
    })
    .await;
    assert_eq!(
        https_get(&gw, &host, &root).await.map(|(s, _)| s),
        Ok(200),
        "what was serving keeps serving"
    );
    proxy.down.store(false, Ordering::SeqCst);
    wait_state(&api, &id2, "ready", Duration::from_secs(90)).await;
    let (status, _) = eventually(
        Duration::from_secs(20),
        "https 200 for the second",
        || async {
            https_get(&gw, &host2, &root)
                .await
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(proxy.new_orders.load(Ordering::SeqCst), 2);

    // Deprovisioning revokes (best effort) and deletes the certificate record.
    let (st, v) = api
        .call(Method::DELETE, &format!("/v1/tenants/{id2}"), None)
        .await;
    assert!(st.is_success(), "{v}");
    common::provision::wait_gone(&api, &id2, Duration::from_secs(60)).await;
    let (st, _) = api
        .call(Method::GET, &format!("/v1/certificates/{id2}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_between_order_and_finalise_resumes_the_same_order_despite_bad_nonces() {
    let Some(d) = dns("a_kill_between_order_and_finalise") else {
        return;
    };
    let dir = TempDir::new("acme-resume");
    let up = Upstream::start("acme-app2").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    // Pebble rejects half of all valid nonces with badNonce.
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 50);
    let proxy = FaultProxy::start(&pebble).await;
    let yaml = acme_yaml(&dir, &d, &pebble, &proxy.directory_url);
    let mut rc = Realmctl::start_with(
        &dir,
        &[&gw],
        &yaml,
        &[("REALMCTL_TEST_CRASH_AT", "certificate:ordered")],
    )
    .await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let id = format!("ar{}", std::process::id());
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    // realmctl dies right after journaling the order.
    for i in 0.. {
        if rc.proc.exited().is_some() {
            break;
        }
        assert!(
            i < 600,
            "realmctl never reached the crash point:\n{}",
            rc.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(proxy.new_orders.load(Ordering::SeqCst), 1);
    rc.restart().await;
    let t = wait_state(&rc.api(), &id, "ready", Duration::from_secs(90)).await;
    assert_eq!(step(&t, "certificate")["state"], "done", "{t}");
    assert_eq!(
        proxy.new_orders.load(Ordering::SeqCst),
        1,
        "the restart resumed the journaled order instead of placing another"
    );
    assert!(rc.proc.log_text().contains("resuming order"));
    assert!(
        proxy.bad_nonces.load(Ordering::SeqCst) > 0,
        "Pebble refused nonces, and the client retried them"
    );
    let root = pebble.root_pem().await;
    let (status, _) = eventually(Duration::from_secs(20), "https 200", || async {
        https_get(&gw, &host, &root)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
}
