//! What the CA and the operators can do wrong around an order, across processes (a real
//! Pebble behind the fault-injecting proxy of `common::acme`, the real PowerDNS, realmctl
//! and realmgate): the CA refusing an order (`caa`, `rejectedIdentifier`) fails the
//! certificate with its problem in the API and the CLI while what was served keeps serving,
//! and a retry succeeds with one order once the CA takes orders again; a custom domain
//! deleted while its order is in flight leaves no certificate, host or challenge behind; two
//! realmctl processes on one registry place one order between them.
//! (Rate limits, 500s, bad nonces and a kill between order and finalise: acme.rs,
//! acme_renewal.rs.)
//!
//! Needs the `REALMGATE_POWERDNS_*` environment tests/run sets; skips without it.

mod common;

use common::acme::*;
use common::provision::wait_state;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

/// A JSON list of names, sorted.
fn names(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|h| h.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn certificate(api: &Api, name: &str) -> (StatusCode, Value) {
    api.call(Method::GET, &format!("/v1/certificates/{name}"), None)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_order_fails_with_the_cas_problem_and_a_retry_orders_once_when_lifted() {
    let Some(d) = dns("a_refused_order") else {
        return;
    };
    let dir = TempDir::new("acme-refused");
    let up = Upstream::start("refused-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    let yaml = acme_yaml(&dir, &d, &pebble, &proxy.directory_url);
    let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let id = format!("rf{}", std::process::id());
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    wait_state(&api, &id, "ready", Duration::from_secs(90)).await;
    let root = pebble.root_pem().await;
    let mut serving = served_certificate(&gw, &host, &root).await;
    let mut hosts = vec![host.clone()];

    // Each refusal as the CA sends it: a CAA record forbidding it, a name it will not sign.
    let refusals = [
        (
            "urn:ietf:params:acme:error:caa",
            403,
            "CAA record for {} prevents issuance",
        ),
        (
            "urn:ietf:params:acme:error:rejectedIdentifier",
            400,
            "{} is a forbidden name",
        ),
    ];
    for (n, (kind, status, detail)) in refusals.into_iter().enumerate() {
        let extra = format!("{id}x{n}.{}", d.zone);
        let detail = format!("fault proxy: {}", detail.replace("{}", &extra));
        *proxy.refuse_orders.lock().expect("lock") =
            Some(json!({"type": kind, "detail": detail, "status": status}));
        let orders = proxy.new_orders.load(SeqCst);
        let before = certificate(&api, &id).await.1;

        // A host more: the certificate is ordered anew, and the CA refuses.
        hosts.push(extra.clone());
        let (st, v) = api
            .call(
                Method::PATCH,
                &format!("/v1/tenants/{id}"),
                Some(json!({ "hosts": hosts })),
            )
            .await;
        assert!(st.is_success(), "{v}");
        let c = eventually(Duration::from_secs(60), "the refused order", || async {
            let (_, c) = certificate(&api, &id).await;
            (c["acme"]["state"] == "failed" && c["acme"]["problem"]["type"] == kind).then_some(c)
        })
        .await;
        assert_eq!(c["acme"]["problem"]["detail"], detail.as_str(), "{c}");
        assert_eq!(names(&c["acme"]["hosts"]), names(&json!(hosts)), "{c}");
        assert!(c["acme"]["next_attempt_at"].is_string(), "{c}");
        let (_, list) = api.call(Method::GET, "/v1/certificates", None).await;
        let listed = list["certificates"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == id.as_str()))
            .unwrap_or(&Value::Null);
        assert_eq!(listed["acme"]["problem"]["type"], kind, "{list}");
        assert_eq!(listed["acme"]["problem"]["detail"], detail.as_str());
        let out = realmctl_cli(&api, &["cert", "list"]).await;
        assert!(
            out.contains(&format!("{id}: {detail} ({kind})")),
            "the CLI shows the CA's problem:\n{out}"
        );
        assert!(proxy.refused_orders.load(SeqCst) > 0);
        assert_eq!(
            proxy.new_orders.load(SeqCst),
            orders,
            "no order was created"
        );

        // Nothing that served stopped: the same certificate, for the same names, routed.
        assert_eq!(c["hosts"], before["hosts"], "{c}");
        assert_eq!(c["fingerprint"], before["fingerprint"], "{c}");
        assert_eq!(served_certificate(&gw, &host, &root).await, serving);
        let (_, t) = api
            .call(Method::GET, &format!("/v1/tenants/{id}"), None)
            .await;
        assert_eq!(t["status"], "active", "{t}");

        // The CA takes orders again: the next retry orders once and is issued.
        *proxy.refuse_orders.lock().expect("lock") = None;
        let c = eventually(Duration::from_secs(90), "issued once lifted", || async {
            let (_, c) = certificate(&api, &id).await;
            (c["acme"]["state"] == "valid" && names(&c["hosts"]) == names(&json!(hosts)))
                .then_some(c)
        })
        .await;
        assert!(c["acme"]["problem"].is_null(), "{c}");
        assert_eq!(
            proxy.new_orders.load(SeqCst),
            orders + 1,
            "one order for the retry that succeeded"
        );
        rc.wait_in_sync(
            c["table_version"].as_u64().expect("version"),
            Duration::from_secs(20),
        )
        .await;
        serving = served_certificate(&gw, &extra, &root).await;
        assert_eq!(served_certificate(&gw, &host, &root).await, serving);
    }
    wait_state(&api, &id, "ready", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_deleted_while_its_order_is_in_flight_leaves_nothing_behind() {
    let Some(d) = dns("a_domain_deleted_mid_order") else {
        return;
    };
    let dir = TempDir::new("acme-mid-order");
    let up = Upstream::start("mid-order-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    let yaml = domains_yaml(&dir, &d, &pebble, &proxy.directory_url);
    let rc = Realmctl::start_with(&dir, &[&gw], &yaml, &[]).await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let pid = std::process::id();
    let id = format!("mo{pid}");
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    wait_state(&api, &id, "ready", Duration::from_secs(90)).await;
    let root = pebble.root_pem().await;
    let serving = served_certificate(&gw, &host, &root).await;

    // The domain's DNS is right from the start; the CA is kept from validating.
    let owner = OwnerDns::create(&d, &format!("mid{pid}.example")).await;
    let domain = format!("shop.mid{pid}.example");
    owner.set(&domain, "A", "127.0.0.1").await;
    proxy.hold_challenges.store(true, SeqCst);
    let (st, v) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{id}/domains"),
            Some(json!({ "domain": domain })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let value = v["txt"]["value"].as_str().expect("value").to_owned();
    owner
        .set(
            &format!("_realmgate-challenge.{domain}"),
            "TXT",
            &format!("\"{value}\""),
        )
        .await;
    eventually(
        Duration::from_secs(90),
        "the domain's order in flight",
        || async { (proxy.held_challenges.load(SeqCst) > 0).then_some(()) },
    )
    .await;
    let (_, table) = api.call(Method::GET, "/v1/table?full=1", None).await;
    assert!(
        table["acme_challenges"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "the challenge answer is published: {table}"
    );

    // Deleted mid-order: the host leaves at once; the order's end cleans up after it.
    let (st, v) = api
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{id}/domains/{domain}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, t) = api
        .call(Method::GET, &format!("/v1/tenants/{id}"), None)
        .await;
    assert_eq!(t["hosts"], json!([host]), "{t}");
    proxy.hold_challenges.store(false, SeqCst);
    let cert_name = v["deleted"].as_str().unwrap_or(&domain).to_owned();
    eventually(
        Duration::from_secs(90),
        "no certificate, status or challenge left",
        || async {
            let (st, _) = certificate(&api, &cert_name).await;
            let (_, list) = api.call(Method::GET, "/v1/certificates", None).await;
            let (_, table) = api.call(Method::GET, "/v1/table?full=1", None).await;
            let ordering = list["ordering"]
                .as_array()
                .is_some_and(|l| l.iter().any(|a| a["certificate"] == cert_name.as_str()));
            (st == StatusCode::NOT_FOUND && !ordering && table["acme_challenges"].is_null())
                .then_some(())
        },
    )
    .await;
    let t = wait_state(&api, &id, "ready", Duration::from_secs(60)).await;
    assert_eq!(t["hosts"], json!([host]), "{t}");
    assert!(domain_of(&api, &id, &domain).await.is_null());
    let (_, table) = api.call(Method::GET, "/v1/table?full=1", None).await;
    assert!(!table.to_string().contains(&domain), "{table}");
    assert_eq!(served_certificate(&gw, &host, &root).await, serving);
    owner.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_realmctl_on_one_registry_place_one_order_between_them() {
    let Some(d) = dns("two_realmctl_one_order") else {
        return;
    };
    let dir = TempDir::new("acme-two-writers");
    let up = Upstream::start("two-writers-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    // The first dies right after its order is journaled; the second stands by meanwhile.
    let yaml = acme_yaml(&dir, &d, &pebble, &proxy.directory_url);
    let mut first = Realmctl::start_with(
        &dir,
        &[&gw],
        &yaml,
        &[("REALMCTL_TEST_CRASH_AT", "certificate:ordered")],
    )
    .await;
    let (mut second, addr) = first.spawn_standby(&dir);
    let second_log = dir.path().join("realmctl-standby.log");
    eventually(Duration::from_secs(20), "the second stands by", || async {
        std::fs::read_to_string(&second_log)
            .ok()
            .filter(|l| l.contains("standing by"))
            .map(|_| ())
    })
    .await;
    let api = first.api();
    api.put_pool("app", up.addr).await;
    let id = format!("tw{}", std::process::id());
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    for i in 0.. {
        if first.proc.exited().is_some() {
            break;
        }
        assert!(
            i < 900,
            "the first never ordered:\n{}",
            first.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        proxy.new_orders.load(SeqCst),
        1,
        "the standby ordered nothing"
    );

    // The second takes over and finishes the first's order instead of placing its own.
    let api = Api {
        base: format!("http://{addr}"),
        ..api
    };
    let t = eventually(Duration::from_secs(90), "the second finishes", || async {
        // (Refused until the second has taken the lock and listens.)
        let r = api
            .http
            .get(format!("{}/v1/tenants/{id}", api.base))
            .bearer_auth(&api.token)
            .send()
            .await
            .ok()?;
        let t: Value = r.json().await.ok()?;
        (t["provisioning"]["state"] == "ready").then_some(t)
    })
    .await;
    assert_eq!(step(&t, "certificate")["state"], "done", "{t}");
    assert_eq!(proxy.new_orders.load(SeqCst), 1, "one order between them");
    let log = std::fs::read_to_string(&second_log).unwrap_or_default();
    assert!(
        log.contains("taking over") && log.contains("resuming order"),
        "{log}"
    );
    let root = pebble.root_pem().await;
    served_certificate(&gw, &host, &root).await;
    second.kill();
}
