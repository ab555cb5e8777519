//! Incremental tables end to end, real realmctl and two real gateways: each change travels as
//! a delta to a gateway at the version before it; a gateway that missed more versions than
//! realmctl keeps deltas for (here 1 000 changes) catches up with the full table and then
//! takes deltas again; every gateway ends in exactly realmctl's state.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

async fn metrics(ctl: &Realmctl) -> String {
    reqwest::get(format!("{}/metrics", ctl.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// `realmctl_table_pushes_total{kind}`.
async fn pushes(ctl: &Realmctl, kind: &str) -> u64 {
    let text = metrics(ctl).await;
    let prefix = format!("realmctl_table_pushes_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn table_info(g: &Gateway) -> Value {
    reqwest::Client::new()
        .get(format!("{}/v1/table", g.admin_url()))
        .bearer_auth(GATEWAY_TOKEN)
        .send()
        .await
        .expect("gateway table")
        .json()
        .await
        .expect("gateway table JSON")
}

async fn create(api: &Api, id: &str) -> u64 {
    let host = format!("{id}.test");
    let (status, t) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body(id, &[host.as_str()], "app")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    t["table_version"].as_u64().expect("table version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_travel_as_deltas_and_a_gateway_that_missed_1000_catches_up() {
    let dir = TempDir::new("deltas");
    let up = Upstream::start("a").await;
    let g1 = Gateway::start(&dir, "g1", None).await;
    let mut g2 = Gateway::start(&dir, "g2", None).await;
    let ctl = Realmctl::start(&dir, &[&g1, &g2]).await;
    let api = ctl.api();
    let v = api.put_pool("app", up.addr).await;
    ctl.wait_in_sync(v, Duration::from_secs(10)).await;

    // One change at a time, each awaited: from the second table on, both gateways are at
    // the version before it, so they get deltas.
    let before = pushes(&ctl, "delta").await;
    for id in ["acme", "beta", "gamma"] {
        let v = create(&api, id).await;
        ctl.wait_in_sync(v, Duration::from_secs(10)).await;
    }
    let deltas = pushes(&ctl, "delta").await - before;
    assert!(
        deltas >= 4,
        "{deltas} delta pushes for 3 changes to 2 gateways"
    );
    for g in [&g1, &g2] {
        until_answers(
            g,
            "gamma.test",
            200,
            Some("upstream a"),
            Duration::from_secs(5),
        )
        .await;
    }

    // g2 is down for 1 000 changes: more versions than realmctl keeps deltas for.
    g2.kill();
    let first_missed = create(&api, "t0").await;
    let mut last = first_missed;
    for i in 1..1000 {
        let id = format!("t{i}");
        let (status, body) = api
            .call(
                Method::PATCH,
                &format!("/v1/tenants/{}", if i % 2 == 0 { "acme" } else { "beta" }),
                Some(json!({"display_name": format!("change {i}")})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        last = last.max(body["table_version"].as_u64().unwrap_or(last));
        if i % 100 == 0 {
            last = create(&api, &id).await;
        }
    }
    until_answers(
        &g1,
        "t900.test",
        200,
        Some("upstream a"),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        last - first_missed > 16,
        "the changes made {} versions, fewer than realmctl keeps",
        last - first_missed
    );
    let full_before = pushes(&ctl, "full").await;
    g2.restart().await;
    ctl.wait_in_sync(last, Duration::from_secs(30)).await;
    assert!(
        pushes(&ctl, "full").await > full_before,
        "the gateway far behind got the full table"
    );
    until_answers(
        &g2,
        "t900.test",
        200,
        Some("upstream a"),
        Duration::from_secs(10),
    )
    .await;

    // Then deltas again, to both.
    let before = pushes(&ctl, "delta").await;
    let v = create(&api, "omega").await;
    ctl.wait_in_sync(v, Duration::from_secs(10)).await;
    assert!(pushes(&ctl, "delta").await - before >= 2);
    for g in [&g1, &g2] {
        until_answers(
            g,
            "omega.test",
            200,
            Some("upstream a"),
            Duration::from_secs(5),
        )
        .await;
    }
    // Both hold exactly the same table, and realmctl counts both in sync by it.
    let (i1, i2) = (table_info(&g1).await, table_info(&g2).await);
    assert_eq!(i1["version"], i2["version"]);
    assert!(i1["state_digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("state:")));
    assert_eq!(i1["state_digest"], i2["state_digest"]);
    let (_, gws) = api.call(Method::GET, "/v1/gateways", None).await;
    for g in gws["gateways"].as_array().expect("gateways") {
        assert_eq!(g["in_sync"], true, "{g}");
    }
    let text = metrics(&ctl).await;
    for reason in ["wrong_base", "digest_mismatch", "rejected"] {
        let line = format!("realmctl_table_delta_fallbacks_total{{reason=\"{reason}\"}} 0");
        assert!(
            text.contains(&line),
            "no {reason} fallback expected:\n{text}"
        );
    }
}
