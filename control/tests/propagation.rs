//! A change made through realmctl's API reaches two real gateways: creation within a second,
//! suspension (503) and deletion (404) without touching other tenants.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

async fn fleet(dir: &TempDir) -> (Upstream, Gateway, Gateway, Realmctl) {
    let up = Upstream::start("a").await;
    let g1 = Gateway::start(dir, "g1", None).await;
    let g2 = Gateway::start(dir, "g2", None).await;
    let ctl = Realmctl::start(dir, &[&g1, &g2]).await;
    let version = ctl.api().put_pool("app", up.addr).await;
    ctl.wait_in_sync(version, Duration::from_secs(10)).await;
    (up, g1, g2, ctl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_through_the_api_is_routed_by_both_gateways() {
    let dir = TempDir::new("create");
    let (_up, g1, g2, ctl) = fleet(&dir).await;
    for g in [&g1, &g2] {
        assert_eq!(
            g.get("acme.test").await.map(|r| r.0),
            Some(404),
            "unknown before"
        );
    }

    let (status, t) = ctl
        .api()
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body("acme", &["Acme.Test"], "app")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    // How fast is measured by benches/convergence.py, not here: this asserts that it arrives.
    let budget = Duration::from_secs(10);
    tokio::join!(
        until_answers(&g1, "acme.test", 200, Some("upstream a"), budget),
        until_answers(&g2, "ACME.test:8080", 200, Some("upstream a"), budget),
    );

    // Each gateway serves exactly the version that carried the change, and realmctl knows.
    let version = t["table_version"].as_u64().expect("version");
    assert_eq!(g1.version().await, Some(version));
    assert_eq!(g2.version().await, Some(version));
    let (_, gws) = ctl.api().call(Method::GET, "/v1/gateways", None).await;
    for g in gws["gateways"].as_array().expect("gateways") {
        assert_eq!(g["applied_version"].as_u64(), Some(version), "{g}");
        assert_eq!(g["in_sync"], true);
        assert_eq!(g["last_result"], "applied");
        assert!(g["last_success_at"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_answers_503_and_delete_404_at_both_gateways_leaving_others_alone() {
    let dir = TempDir::new("suspend");
    let (_up, g1, g2, ctl) = fleet(&dir).await;
    let api = ctl.api();
    for (id, host) in [("acme", "acme.test"), ("beta", "beta.test")] {
        let (status, _) = api
            .call(
                Method::POST,
                "/v1/tenants",
                Some(tenant_body(id, &[host], "app")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let within = Duration::from_secs(3);
    for g in [&g1, &g2] {
        until_answers(g, "acme.test", 200, Some("upstream a"), within).await;
        until_answers(g, "beta.test", 200, Some("upstream a"), within).await;
    }

    let (status, t) = api
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(
        (status, t["status"].as_str()),
        (StatusCode::OK, Some("suspended"))
    );
    for g in [&g1, &g2] {
        until_answers(g, "acme.test", 503, None, within).await;
        assert_eq!(
            g.get("beta.test").await.map(|r| r.0),
            Some(200),
            "beta untouched"
        );
    }

    let (status, _) = api
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for g in [&g1, &g2] {
        until_answers(g, "acme.test", 200, Some("upstream a"), within).await;
    }

    let (status, d) = api.call(Method::DELETE, "/v1/tenants/acme", None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    for g in [&g1, &g2] {
        until_answers(g, "acme.test", 404, None, within).await;
        assert_eq!(
            g.get("beta.test").await.map(|r| r.0),
            Some(200),
            "beta untouched"
        );
    }
    let (status, _) = api.call(Method::GET, "/v1/tenants/acme", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let version = d["table_version"].as_u64().expect("version");
    ctl.wait_in_sync(version, within).await;
}
