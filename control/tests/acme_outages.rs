//! Outages around an order, across processes (a real Pebble behind the fault proxy of
//! `common::acme`, the real PowerDNS, realmctl and realmgate): a challenge the CA can never
//! validate (the tenant's name points where no gateway listens) fails the certificate with
//! the CA's own problem and is retried while the gateway keeps serving; a
//! gateway that is down while a certificate is issued and pushed serves it once it is back
//! (catch-up), with no second order.
//!
//! Needs the `REALMGATE_POWERDNS_*` environment tests/run sets; skips without it.

mod common;

use common::acme::*;
use common::provision::wait_state;
use common::*;
use reqwest::Method;
use serde_json::Value;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

async fn certificate(api: &Api, name: &str) -> Value {
    api.call(Method::GET, &format!("/v1/certificates/{name}"), None)
        .await
        .1
}

#[tokio::test(flavor = "multi_thread")]
async fn a_challenge_that_never_validates_fails_with_the_cas_problem_and_nothing_stops() {
    let Some(d) = dns("a_challenge_never_validates") else {
        return;
    };
    let dir = TempDir::new("acme-never-valid");
    let up = Upstream::start("never-valid-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    // Tenant names point at 127.0.0.9, where nothing listens: the CA's http-01 request is
    // refused however often it is tried.
    let yaml = acme_yaml(&dir, &d, &pebble, &proxy.directory_url)
        .replace("addresses: [\"127.0.0.1\"]", "addresses: [\"127.0.0.9\"]");
    let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let id = format!("nv{}", std::process::id());
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;

    let c = eventually(
        Duration::from_secs(90),
        "the certificate failed",
        || async {
            let c = certificate(&api, &id).await;
            (c["acme"]["state"] == "failed" && c["acme"]["problem"]["type"].is_string())
                .then_some(c)
        },
    )
    .await;
    let problem = &c["acme"]["problem"];
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:ietf:params:acme:error:")),
        "the CA's own problem type: {c}"
    );
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("127.0.0.9") || detail.contains(&host),
        "the CA's detail names what it could not reach: {c}"
    );
    assert!(c["acme"]["next_attempt_at"].is_string(), "retried: {c}");
    // The tenant's certificate step says why, with the CA's problem (between retries).
    let kind = problem["type"].as_str().unwrap_or("?").to_owned();
    eventually(Duration::from_secs(30), "the step's error", || async {
        let (_, t) = api
            .call(Method::GET, &format!("/v1/tenants/{id}"), None)
            .await;
        let step = step(&t, "certificate");
        (step["state"] == "failed"
            && step["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(&kind)))
        .then_some(())
    })
    .await;
    assert!(proxy.new_orders.load(SeqCst) >= 1);
    // The gateway kept running and answering.
    assert!(gw.get("unknown.invalid").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_down_while_a_certificate_is_pushed_serves_it_after_catching_up() {
    let Some(d) = dns("a_gateway_down_catches_up") else {
        return;
    };
    let dir = TempDir::new("acme-catch-up");
    let up = Upstream::start("catch-up-app").await;
    let gw1 = Gateway::start_tls(&dir, "gw1").await;
    let mut gw2 = Gateway::start_tls(&dir, "gw2").await;
    // The CA validates on gw1's port; gw2 is down while the order runs.
    let pebble = Pebble::start(&dir, &d.server, gw1.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    let yaml = acme_yaml(&dir, &d, &pebble, &proxy.directory_url)
        .replace("challenge_wait_ms: 20000", "challenge_wait_ms: 2000");
    let rc = Realmctl::start_with(&dir, &[&gw1, &gw2], &yaml, &[]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    gw2.kill();

    let id = format!("cu{}", std::process::id());
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    wait_state(&api, &id, "ready", Duration::from_secs(90)).await;
    let c = certificate(&api, &id).await;
    assert_eq!(c["acme"]["state"], "valid", "{c}");
    let root = pebble.root_pem().await;
    let on_gw1 = served_certificate(&gw1, &host, &root).await;
    let orders = proxy.new_orders.load(SeqCst);
    assert_eq!(orders, 1, "one order, issued while gw2 was down");

    // Back with the state it had: it catches up and serves the same certificate.
    gw2.restart().await;
    let on_gw2 = served_certificate(&gw2, &host, &root).await;
    assert_eq!(on_gw2, on_gw1, "the same certificate on both gateways");
    assert_eq!(proxy.new_orders.load(SeqCst), orders, "no second order");
}
