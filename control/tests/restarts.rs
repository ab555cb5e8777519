//! Processes die and come back: a gateway that missed changes converges, realmctl keeps its
//! registry and version counter, and a fresh gateway pulls the table from realmctl.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(10);

async fn create(api: &Api, id: &str, host: &str) -> u64 {
    let (status, t) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body(id, &[host], "app")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    t["table_version"].as_u64().expect("version")
}

async fn pool(api: &Api, up: &Upstream) -> u64 {
    api.put_pool("app", up.addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_and_restarted_converges() {
    let dir = TempDir::new("gw-restart");
    let up = Upstream::start("a").await;
    let g1 = Gateway::start(&dir, "g1", None).await;
    let mut g2 = Gateway::start(&dir, "g2", None).await;
    let ctl = Realmctl::start(&dir, &[&g1, &g2]).await;
    let api = ctl.api();
    ctl.wait_in_sync(pool(&api, &up).await, WITHIN).await;

    g2.kill();
    let version = create(&api, "acme", "acme.test").await;
    until_answers(&g1, "acme.test", 200, Some("upstream a"), WITHIN).await;

    // realmctl sees the dead gateway and keeps retrying.
    eventually(WITHIN, "g2 reported unreachable with retries", || async {
        let (_, v) = api.call(Method::GET, "/v1/gateways", None).await;
        let g = v["gateways"]
            .as_array()?
            .iter()
            .find(|g| g["url"] == g2.admin_url())?
            .clone();
        (g["last_result"] == "unreachable"
            && g["consecutive_failures"].as_u64()? >= 2
            && g["in_sync"] == false)
            .then_some(())
    })
    .await;

    g2.restart().await;
    until_answers(&g2, "acme.test", 200, Some("upstream a"), WITHIN).await;
    ctl.wait_in_sync(version, WITHIN).await;
    assert_eq!(g2.version().await, Some(version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realmctl_restarted_keeps_its_state_and_version_counter() {
    let dir = TempDir::new("ctl-restart");
    let up = Upstream::start("a").await;
    let g1 = Gateway::start(&dir, "g1", None).await;
    let g2 = Gateway::start(&dir, "g2", None).await;
    // A kept secrets key: the assertion signing key sealed with it opens after the restart
    // (with a key made at start, realmctl would have to make a new signing key: a change).
    let key = dir.write("secrets.key", &"cd".repeat(32));
    let conf = format!("provision:\n  secrets_key_file: {}\n", key.display());
    let mut ctl = Realmctl::start_with(&dir, &[&g1, &g2], &conf, &[]).await;
    let api = ctl.api();
    pool(&api, &up).await;
    create(&api, "acme", "acme.test").await;
    let (status, t) = api
        .call(
            Method::PATCH,
            "/v1/tenants/beta-less",
            Some(json!({"display_name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{t}");
    let before = create(&api, "beta", "beta.test").await;
    ctl.wait_in_sync(before, WITHIN).await;
    let (_, tenants_before) = api.call(Method::GET, "/v1/tenants", None).await;

    ctl.restart().await;
    let api = ctl.api();
    let (_, tenants_after) = api.call(Method::GET, "/v1/tenants", None).await;
    assert_eq!(
        tenants_after, tenants_before,
        "registry survives the restart"
    );
    let (_, summary) = api.call(Method::GET, "/v1/table?summary=1", None).await;
    assert_eq!(
        summary["version"].as_u64(),
        Some(before),
        "the counter is where it was"
    );

    // The next change continues the sequence and reaches both gateways (no 409 confusion).
    let next = create(&api, "gamma", "gamma.test").await;
    assert_eq!(next, before + 1);
    for g in [&g1, &g2] {
        until_answers(g, "gamma.test", 200, Some("upstream a"), WITHIN).await;
        assert_eq!(g.get("acme.test").await.map(|r| r.0), Some(200));
    }
    ctl.wait_in_sync(next, WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_with_control_url_pulls_the_current_table() {
    let dir = TempDir::new("pull");
    let up = Upstream::start("a").await;
    // realmctl pushes to no gateway here: the only way in is the gateway's own pull.
    let ctl = Realmctl::start(&dir, &[]).await;
    let api = ctl.api();
    pool(&api, &up).await;
    let version = create(&api, "acme", "acme.test").await;

    let g = Gateway::start(&dir, "puller", Some(&ctl.url())).await;
    until_answers(&g, "acme.test", 200, Some("upstream a"), WITHIN).await;
    assert_eq!(g.version().await, Some(version));

    // Then it keeps a long poll open: later changes reach it with no push at all, each
    // well before realmctl's resync could matter (it has no gateway to resync).
    for (id, host) in [("beta", "beta.test"), ("gamma", "gamma.test")] {
        let version = create(&api, id, host).await;
        until_answers(&g, host, 200, Some("upstream a"), WITHIN).await;
        assert_eq!(g.version().await, Some(version));
    }
}

/// A long poll answers 204 when nothing newer comes within its wait, at once when something
/// newer exists, and holds no permit of the API's own concurrency bound while it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_wait_for_a_newer_table() {
    let dir = TempDir::new("long-poll");
    let up = Upstream::start("a").await;
    let ctl = Realmctl::start(&dir, &[]).await;
    let api = ctl.api();
    pool(&api, &up).await;
    let version = create(&api, "acme", "acme.test").await;
    let http = reqwest::Client::new();
    let poll = |after: u64, wait_s: u64| {
        http.get(format!(
            "{}/v1/table?after={after}&wait_s={wait_s}",
            ctl.url()
        ))
        .bearer_auth(GATEWAY_TOKEN)
        .send()
    };
    // Something newer exists: answered at once with it.
    let r = poll(version - 1, 60).await.expect("poll");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-realmgate-table-version"],
        version.to_string().as_str()
    );
    // Nothing newer: 204 once the wait is over.
    let r = poll(version, 1).await.expect("poll");
    assert_eq!(r.status(), 204);
    // More waiting polls than the API's concurrency bound (64) do not block the API, and
    // each is answered with the change that ends its wait.
    let waiting: Vec<_> = (0..80).map(|_| tokio::spawn(poll(version, 30))).collect();
    let next = create(&api, "beta", "beta.test").await;
    for w in waiting {
        let r = w.await.expect("join").expect("poll");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-realmgate-table-version"],
            next.to_string().as_str()
        );
    }
}
