//! dns-01 and wildcard certificates across processes: a real Pebble v2.10.3 (validating for
//! real: PEBBLE_VA_ALWAYS_VALID off) whose VA asks the real PowerDNS the tests run, the real
//! `realmctl` publishing `_acme-challenge` TXT records through PowerDNS's API and checking
//! them on its authoritative server before telling the CA, and the real `realmgate` serving
//! the certificate by SNI. Between realmctl and Pebble sits the recording fault proxy of
//! `common::acme` (it counts the orders the CA created).
//!
//! Needs the `REALMGATE_POWERDNS_*` environment tests/run sets; skips without it.

mod common;

use common::acme::*;
use common::provision::wait_state;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `GET https://host/` through the gateway until it answers 200 with a chain that verifies
/// against Pebble's root (and nothing else).
async fn served_200(gw: &Gateway, host: &str, root: &str) {
    let (status, body) = eventually(Duration::from_secs(30), "https 200", || async {
        https_get(gw, host, root)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_wildcard_certificate_via_dns01_serves_every_tenant_under_the_zone() {
    let Some(d) = dns("one_wildcard_certificate_via_dns01") else {
        return;
    };
    let dir = TempDir::new("acme-dns-wildcard");
    let up = Upstream::start("acme-dns-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    // `challenge` stays http-01: the wildcard uses dns-01 regardless. No `resolver`: the
    // records are checked on PowerDNS's own listener, as its API reports it.
    let yaml = acme_yaml_with(
        &dir,
        &d,
        &pebble,
        &proxy.directory_url,
        "    platform_hosts: wildcard\n    dns_wait_ms: 30000\n",
    );
    let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let zone = d.zone.trim_end_matches('.').to_owned();
    let shared = format!("wildcard.{zone}");

    let pid = std::process::id();
    let (id1, id2) = (format!("wa{pid}"), format!("wb{pid}"));
    let (host1, host2) = (format!("{id1}.{zone}"), format!("{id2}.{zone}"));
    create_tenant(&api, &id1, &host1).await;
    let t = wait_state(&api, &id1, "ready", Duration::from_secs(120)).await;
    let cert = step(&t, "certificate");
    assert_eq!(cert["state"], "done", "{t}\n{}", rc.proc.log_text());
    assert_eq!(cert["outputs"]["certificate"], json!(shared), "{t}");

    let (st, c) = api
        .call(Method::GET, &format!("/v1/certificates/{shared}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["hosts"], json!([format!("*.{zone}"), zone.clone()]));
    assert_eq!(c["acme"]["state"], "valid", "{c}");
    assert_eq!(c["acme"]["tenant"], "", "no tenant owns it: {c}");
    let v = c["table_version"].as_u64().expect("version");
    rc.wait_in_sync(v, Duration::from_secs(20)).await;
    let root = pebble.root_pem().await;
    served_200(&gw, &host1, &root).await;
    assert_eq!(proxy.new_orders.load(Ordering::SeqCst), 1);

    // A second tenant under the zone: served over HTTPS once routed, with no new order.
    create_tenant(&api, &id2, &host2).await;
    let t2 = wait_state(&api, &id2, "ready", Duration::from_secs(60)).await;
    assert_eq!(step(&t2, "certificate")["state"], "done", "{t2}");
    served_200(&gw, &host2, &root).await;
    served_200(&gw, &host1, &root).await;
    assert_eq!(
        proxy.new_orders.load(Ordering::SeqCst),
        1,
        "one order for every tenant under the zone"
    );
    assert_eq!(proxy.replacing_orders.load(Ordering::SeqCst), 0);
    // Neither tenant has a certificate of its own.
    for id in [&id1, &id2] {
        let (st, _) = api
            .call(Method::GET, &format!("/v1/certificates/{id}"), None)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{id}");
    }

    // The challenge record left the zone.
    assert_eq!(
        txt_in_zone(&d, &format!("_acme-challenge.{zone}")).await,
        Vec::<String>::new()
    );
    let log = rc.proc.log_text();
    assert!(
        log.contains("dns-01: 2 TXT value(s) published at _acme-challenge."),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"));

    // Deleting a tenant leaves the shared certificate to the others.
    let (st, v) = api
        .call(Method::DELETE, &format!("/v1/tenants/{id2}"), None)
        .await;
    assert!(st.is_success(), "{v}");
    common::provision::wait_gone(&api, &id2, Duration::from_secs(60)).await;
    let (st, _) = api
        .call(Method::GET, &format!("/v1/certificates/{shared}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    served_200(&gw, &host1, &root).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_txt_record_not_visible_in_time_fails_the_certificate_and_nothing_stops() {
    let Some(d) = dns("a_txt_record_not_visible_in_time") else {
        return;
    };
    let dir = TempDir::new("acme-dns-lag");
    let up = Upstream::start("acme-dns-lag").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    // realmctl checks the records on a server that never has them (a lagging secondary).
    let lagging = lagging_dns().await;
    let yaml = acme_yaml_with(
        &dir,
        &d,
        &pebble,
        &proxy.directory_url,
        &format!("    resolver: \"{lagging}\"\n    dns_wait_ms: 1500\n"),
    );
    let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let zone = d.zone.trim_end_matches('.').to_owned();
    let pid = std::process::id();

    // An exact host: http-01, served.
    let serving = format!("ls{pid}");
    let serving_host = format!("{serving}.{zone}");
    create_tenant(&api, &serving, &serving_host).await;
    wait_state(&api, &serving, "ready", Duration::from_secs(90)).await;
    let root = pebble.root_pem().await;
    served_200(&gw, &serving_host, &root).await;

    // A wildcard host: dns-01, whose record never shows on the resolver.
    let id = format!("lw{pid}");
    let wildcard = format!("*.{id}.{zone}");
    create_tenant(&api, &id, &wildcard).await;
    let want = format!(
        "certificate: dns-01: the TXT record is not visible on the zone's authoritative server {lagging} after 1.5s (_acme-challenge.{id}.{zone}: it answered with no TXT record); the CA was not asked to validate"
    );
    // The first failure may be another (PowerDNS is shared by the tests running beside this
    // one); the step is retried, and the failure this test makes must come.
    let t = eventually(Duration::from_secs(60), &want, || async {
        let (_, t) = api
            .call(Method::GET, &format!("/v1/tenants/{id}"), None)
            .await;
        (t["provisioning"]["state"] == "failed" && t["provisioning"]["error"] == want.as_str())
            .then_some(t)
    })
    .await;
    // The runner retries at once here (its backoff is short), so each look waits for a
    // moment between two attempts.
    let detail = want.trim_start_matches("certificate: ").to_owned();
    let c = eventually(
        Duration::from_secs(30),
        "the certificate failed",
        || async {
            let (_, c) = api
                .call(Method::GET, &format!("/v1/certificates/{id}"), None)
                .await;
            (c["acme"]["state"] == "failed" && c["acme"]["error"] == detail.as_str()).then_some(c)
        },
    )
    .await;
    assert_eq!(c["hosts"], json!([wildcard]));
    let txt = format!("_acme-challenge.{id}.{zone}");
    eventually(
        Duration::from_secs(30),
        "the TXT record removed",
        || async { txt_in_zone(&d, &txt).await.is_empty().then_some(()) },
    )
    .await;
    // What was serving keeps serving; the retries resume the one order.
    served_200(&gw, &serving_host, &root).await;
    let first = step(&t, "certificate")["attempts"].as_u64().unwrap_or(0);
    eventually(Duration::from_secs(30), "a retry", || async {
        let (_, t) = api
            .call(Method::GET, &format!("/v1/tenants/{id}"), None)
            .await;
        (step(&t, "certificate")["attempts"].as_u64().unwrap_or(0) > first).then_some(())
    })
    .await;
    assert_eq!(proxy.new_orders.load(Ordering::SeqCst), 2);
    assert!(rc.proc.log_text().contains("resuming order"));
    served_200(&gw, &serving_host, &root).await;

    // Deprovisioned, the certificate goes and no challenge record is left behind.
    let (st, v) = api
        .call(Method::DELETE, &format!("/v1/tenants/{id}"), None)
        .await;
    assert!(st.is_success(), "{v}");
    // Deleted while an attempt runs: the delete wins once the attempt ends.
    common::provision::wait_gone(&api, &id, Duration::from_secs(60)).await;
    assert_eq!(txt_in_zone(&d, &txt).await, Vec::<String>::new());
    served_200(&gw, &serving_host, &root).await;
}
