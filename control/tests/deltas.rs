//! Incremental tables end to end, real realmctl and two real gateways: each change travels as
//! a delta to a gateway at the version before it; a gateway that missed 1 000 changes catches
//! up with one delta composed from realmctl's history, and takes deltas again; every gateway
//! ends in exactly realmctl's state. (One further behind than the history gets the full
//! table: `compile::delta` and `push::delta` unit tests, and `?since=0` below.)

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

    // g2 is down for 1 000 changes: many versions, all in realmctl's history.
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
        last - first_missed > 100,
        "the changes made only {} versions",
        last - first_missed
    );
    let full_before = pushes(&ctl, "full").await;
    let delta_before = pushes(&ctl, "delta").await;
    g2.restart().await;
    ctl.wait_in_sync(last, Duration::from_secs(30)).await;
    assert_eq!(
        pushes(&ctl, "full").await,
        full_before,
        "the gateway far behind caught up without the full table"
    );
    assert!(pushes(&ctl, "delta").await > delta_before);
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

/// `GET /v1/table` on realmctl with the gateway token.
async fn pull(ctl: &Realmctl, query: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/v1/table{query}", ctl.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("realmctl table")
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Pull mode: a gateway started with `--control-url` and no pushes at all takes each change
/// as a delta from the version it serves, and ends in exactly realmctl's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulling_gateway_takes_deltas_and_ends_in_realmctls_state() {
    let dir = TempDir::new("pull-deltas");
    let up = Upstream::start("a").await;
    let ctl = Realmctl::start(&dir, &[]).await;
    let api = ctl.api();
    api.put_pool("app", up.addr).await;
    create(&api, "acme").await;
    let g = Gateway::start(&dir, "p1", Some(&ctl.url())).await;
    until_answers(
        &g,
        "acme.test",
        200,
        Some("upstream a"),
        Duration::from_secs(10),
    )
    .await;
    let mut last = 0;
    for id in ["beta", "gamma", "delta"] {
        last = create(&api, id).await;
        let host = format!("{id}.test");
        until_answers(&g, &host, 200, Some("upstream a"), Duration::from_secs(10)).await;
    }
    let log = g.proc.log_text();
    let deltas = log.matches("pulled delta to version").count();
    assert!(deltas >= 2, "{deltas} deltas pulled for 3 changes:\n{log}");

    // Exactly realmctl's table: the state digest of its full document.
    let full = pull(&ctl, "", GATEWAY_TOKEN).await;
    assert_eq!(content_type(&full), "application/json");
    let body = full.bytes().await.expect("full table");
    let table = realmgate_table::parse(&body).expect("a valid table").table;
    assert_eq!(table.version, last);
    let info = table_info(&g).await;
    assert_eq!(info["version"], last);
    assert_eq!(
        info["state_digest"].as_str(),
        Some(realmgate_table::state_digest(&table).as_str())
    );

    // What realmctl answers: the delta from a version it keeps one from, nothing newer
    // than the current version, the full table from further back or to an operator.
    let d = pull(&ctl, &format!("?since={}", last - 1), GATEWAY_TOKEN).await;
    assert_eq!(d.status(), StatusCode::OK);
    assert_eq!(content_type(&d), realmgate_table::delta::DELTA_CONTENT_TYPE);
    let base = d.headers()["x-realmgate-table-base"]
        .to_str()
        .ok()
        .map(str::to_owned);
    assert_eq!(base, Some((last - 1).to_string()));
    let delta = realmgate_table::delta::parse_delta(&d.bytes().await.expect("delta"))
        .expect("a delta document");
    assert_eq!((delta.base, delta.version), (last - 1, last));
    assert_eq!(delta.tenants.len(), 1, "one tenant changed");
    let none = pull(&ctl, &format!("?since={last}"), GATEWAY_TOKEN).await;
    assert_eq!(none.status(), StatusCode::NO_CONTENT);
    let far = pull(&ctl, "?since=0", GATEWAY_TOKEN).await;
    assert_eq!(content_type(&far), "application/json");
    let op = pull(&ctl, &format!("?since={}", last - 1), OPERATOR_TOKEN).await;
    assert_eq!(
        content_type(&op),
        "application/json",
        "operators get tables"
    );
}
