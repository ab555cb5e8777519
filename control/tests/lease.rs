//! One writer across machines, against a real Kubernetes API server: realmctl holds a
//! coordination.k8s.io Lease before it writes. A standby takes over from a dead leader and
//! finishes its provisioning without doing anything twice; a leader whose Lease is stolen
//! stops writing and exits; an unreachable API server stops writes (never reads) until it is
//! back; a missing RBAC rule is named.

mod common;

use common::provision::{provision_yaml, wait_state};
use common::*;
use realmgate_e2e::kube::Kube;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/edge/leases/realmctl";

/// `lease:` with short timings (the defaults are checked in the unit tests), reaching the API
/// server through the test's proxy with `kubeconfig`.
fn lease_yaml(dir: &TempDir, kubeconfig: &str) -> String {
    let path = dir.write("lease-kubeconfig", kubeconfig);
    format!(
        "lease: {{namespace: edge, kubeconfig: {}, duration_ms: 3000, renew_deadline_ms: 2000, retry_ms: 500}}\n",
        path.display()
    )
}

async fn readyz(base: &str) -> Option<(StatusCode, Value)> {
    let r = reqwest::get(format!("{base}/readyz")).await.ok()?;
    let st = r.status();
    let text = r.text().await.ok()?;
    Some((
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Wait for `/readyz` to answer `status`; returns its body.
async fn until_ready_is(base: &str, status: StatusCode, within: Duration) -> Value {
    eventually(within, &format!("/readyz {status} at {base}"), || async {
        readyz(base)
            .await
            .filter(|(st, _)| *st == status)
            .map(|(_, v)| v)
    })
    .await
}

async fn put_pool(api: &Api, name: &str) -> (StatusCode, Value) {
    api.call(
        Method::PUT,
        &format!("/v1/upstreams/{name}"),
        Some(json!({"endpoints": ["127.0.0.1:9"]})),
    )
    .await
}

fn step<'a>(tenant: &'a Value, name: &str) -> &'a Value {
    tenant["provisioning"]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == name))
        .unwrap_or(&Value::Null)
}

async fn lease(kube: &Kube) -> Value {
    let (st, v) = kube.admin(Method::GET, LEASE_PATH, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn a_standby_takes_over_the_lease_and_finishes_the_provisioning_once() {
    let dir = TempDir::new("lease-failover");
    let kube = Kube::start(&["edge"]).await;
    // The Ingress step fails until healed: the provisioning stays in flight.
    kube.set_failing_paths(Some("/ingresses/"));
    let yaml = provision_yaml(&dir, None, &kube) + &lease_yaml(&dir, &kube.kubeconfig());
    let mut leader = Realmctl::start_with(&dir, &[], &yaml, &[]).await;
    until_ready_is(&leader.url(), StatusCode::OK, Duration::from_secs(15)).await;
    let api = leader.api();
    let (st, v) = put_pool(&api, "app").await;
    assert!(st.is_success(), "{v}");
    let id = "failover";
    let (st, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(common::provision::body(id, "failover.test")),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    eventually(
        Duration::from_secs(20),
        "the Ingress step retrying",
        || async {
            let (_, v) = api
                .call(Method::GET, &format!("/v1/tenants/{id}"), None)
                .await;
            (step(&v, "ingress")["attempts"].as_u64() >= Some(2)).then_some(())
        },
    )
    .await;
    assert_eq!(lease(&kube).await["spec"]["leaseTransitions"], 0);

    let (mut standby, addr) = leader.spawn_standby(&dir);
    let standby_url = format!("http://{addr}");
    let standby_log = dir.path().join("realmctl-standby.log");
    let log = || std::fs::read_to_string(&standby_log).unwrap_or_default();
    eventually(Duration::from_secs(20), "the standby stands by", || async {
        log().contains("standing by").then_some(())
    })
    .await;
    leader.proc.kill();
    // The flock, then the Lease once it has expired by the standby's own observation.
    let v = until_ready_is(&standby_url, StatusCode::OK, Duration::from_secs(15)).await;
    assert_eq!(v, "ready\n");
    assert!(
        log().contains("is held by"),
        "the standby waited for the dead leader's Lease to expire:\n{}",
        log()
    );
    let held = lease(&kube).await;
    let pid = standby.id().expect("standby pid");
    assert!(
        held["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| h.ends_with(&format!("-{pid}"))),
        "{held}"
    );
    assert_eq!(held["spec"]["leaseTransitions"], 1, "{held}");

    // The new leader resumes the provisioning from the journal once the cause is gone.
    let before = kube.requests_for(&format!("realmgate-{id}"), "PATCH").len();
    kube.set_failing_paths(None);
    let standby_api = Api {
        base: standby_url.clone(),
        token: OPERATOR_TOKEN.into(),
        http: reqwest::Client::new(),
    };
    let v = wait_state(&standby_api, id, "ready", Duration::from_secs(30)).await;
    assert_eq!(kube.ingress_count("edge").await, 1, "one Ingress");
    assert_eq!(
        kube.requests_for(&format!("realmgate-{id}"), "PATCH").len() - before,
        1,
        "applied once after healing"
    );
    assert_eq!(step(&v, "database")["state"], "done");
    assert_eq!(
        step(&v, "database")["attempts"],
        1,
        "the database step, done by the first leader, was not done again: {v}"
    );
    assert_eq!(step(&v, "ingress")["state"], "done", "{v}");
    let (st, v) = put_pool(&standby_api, "second").await;
    assert!(st.is_success(), "the new leader writes: {v}");
    standby.kill();
}

#[tokio::test]
async fn a_leader_whose_lease_is_stolen_stops_writing_and_exits() {
    let dir = TempDir::new("lease-stolen");
    let kube = Kube::start(&["edge"]).await;
    let mut rc = Realmctl::start_with(&dir, &[], &lease_yaml(&dir, &kube.kubeconfig()), &[]).await;
    until_ready_is(&rc.url(), StatusCode::OK, Duration::from_secs(15)).await;
    let api = rc.api();
    let (st, v) = put_pool(&api, "app").await;
    assert!(st.is_success(), "{v}");

    // Another process takes the Lease (as a contender with a skewed clock might).
    let mut stolen = lease(&kube).await;
    stolen["spec"]["holderIdentity"] = json!("thief-1");
    stolen["spec"]["leaseTransitions"] = json!(1);
    let (st, v) = kube.admin(Method::PUT, LEASE_PATH, Some(stolen)).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let v = until_ready_is(
        &rc.url(),
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(v["error"], "not_leader");
    assert!(
        v["reason"].as_str().is_some_and(|r| r.contains("thief-1")),
        "{v}"
    );
    // It waits one lease duration (3 s here) before it could take the Lease back.
    let (st, v) = put_pool(&api, "other").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"], "not_leader", "{v}");
    let (st, _) = api.call(Method::GET, "/v1/upstreams", None).await;
    assert_eq!(st, StatusCode::OK, "reads go on");
    // Once it could take the Lease back, it knows someone else held it: it exits non-zero.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = rc.proc.exited() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "realmctl did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "{status}");
    let log = rc.proc.log_text();
    assert!(log.contains("was held by another process"), "{log}");
}

#[tokio::test]
async fn an_unreachable_api_server_stops_writes_not_reads_until_it_is_back() {
    let dir = TempDir::new("lease-unreachable");
    let kube = Kube::start(&["edge"]).await;
    kube.set_unreachable(true);
    let yaml = provision_yaml(&dir, None, &kube) + &lease_yaml(&dir, &kube.kubeconfig());
    let mut rc = Realmctl::start_with(&dir, &[], &yaml, &[]).await;
    let api = rc.api();

    // At start: reads, no writes, and /readyz says why.
    let v = until_ready_is(
        &rc.url(),
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    let unreachable = |v: &Value| v.to_string().contains("unreachable");
    eventually(
        Duration::from_secs(10),
        "/readyz naming the cause",
        || async {
            readyz(&rc.url())
                .await
                .filter(|(_, v)| unreachable(&v["reason"]))
        },
    )
    .await;
    assert_eq!(v["error"], "not_leader");
    let (st, _) = api.call(Method::GET, "/v1/upstreams", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = put_pool(&api, "app").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"], "not_leader");
    assert!(unreachable(&v["details"]["reason"]), "{v}");

    // Back: it leads and writes.
    kube.set_unreachable(false);
    until_ready_is(&rc.url(), StatusCode::OK, Duration::from_secs(15)).await;
    let (st, v) = put_pool(&api, "app").await;
    assert!(st.is_success(), "{v}");

    // Mid-run, with a provisioning in flight: writes stop at the renew deadline, reads go on.
    kube.set_failing_paths(Some("/ingresses/"));
    let (st, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(common::provision::body("midrun", "midrun.test")),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    kube.set_unreachable(true);
    let v = until_ready_is(
        &rc.url(),
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    assert!(unreachable(&v["reason"]), "{v}");
    let (st, _) = api.call(Method::GET, "/v1/tenants/midrun", None).await;
    assert_eq!(st, StatusCode::OK, "reads go on");
    let (st, v) = put_pool(&api, "more").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");

    // Back, and nobody else held the Lease: the same process resumes, provisioning too.
    kube.set_failing_paths(None);
    kube.set_unreachable(false);
    until_ready_is(&rc.url(), StatusCode::OK, Duration::from_secs(15)).await;
    wait_state(&api, "midrun", "ready", Duration::from_secs(30)).await;
    let (st, v) = put_pool(&api, "more").await;
    assert!(st.is_success(), "{v}");
    assert!(rc.proc.exited().is_none(), "it kept running");
    assert!(rc.proc.log_text().contains("nobody else held it meanwhile"));
    assert_eq!(kube.ingress_count("edge").await, 1);

    // SIGTERM: it hands the Lease back (no holder), so that a standby need not wait.
    let pid = rc.proc.id().expect("pid").to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = rc.proc.exited() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "realmctl did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    let released = lease(&kube).await;
    assert!(
        released["spec"]["holderIdentity"]
            .as_str()
            .is_none_or(str::is_empty),
        "{released}"
    );
    assert!(rc.proc.log_text().contains("released the Lease"));
}

#[tokio::test]
async fn a_missing_rbac_rule_is_named_in_readyz_and_the_log() {
    let dir = TempDir::new("lease-rbac");
    let kube = Kube::start(&["edge"]).await;
    let rc = Realmctl::start_with(
        &dir,
        &[],
        &lease_yaml(&dir, &kube.kubeconfig_limited()),
        &[],
    )
    .await;
    let names_the_rule = |text: &str| {
        text.contains("403")
            && text.contains("verb \"get\"")
            && text.contains("leases.coordination.k8s.io")
            && text.contains("namespace edge")
    };
    let v = eventually(
        Duration::from_secs(10),
        "/readyz naming the rule",
        || async {
            readyz(&rc.url())
                .await
                .filter(|(st, v)| {
                    *st == StatusCode::SERVICE_UNAVAILABLE
                        && v["reason"].as_str().is_some_and(names_the_rule)
                })
                .map(|(_, v)| v)
        },
    )
    .await;
    assert_eq!(v["error"], "not_leader");
    assert!(
        names_the_rule(&rc.proc.log_text()),
        "{}",
        rc.proc.log_text()
    );
    let (st, _) = put_pool(&rc.api(), "app").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
}
