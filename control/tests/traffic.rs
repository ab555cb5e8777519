//! Traffic at a glance, end to end: the real realmctl scrapes real gateways' `/metrics` and
//! `GET /v1/traffic` shows requests/s and the 5xx share; a gateway restart (its counters
//! start again) makes no negative or huge point; a gateway that does not answer is a gap,
//! logged once.

mod common;

use common::{
    eventually, free_addrs, tenant_body, until_answers, Gateway, Realmctl, TempDir, Upstream,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);
/// Appended to realmctl's `gateways:` section: scrape every 300 ms.
const FAST_SCRAPES: &str = "  traffic: {scrape_interval_ms: 300, timeout_ms: 250}\n";

/// An upstream that answers 500 to everything.
async fn failing_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "broken") });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// Requests to `hosts` at `gw` until dropped; counts those answered.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(gw: SocketAddr, hosts: &[&'static str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let hosts = hosts.to_vec();
        let (s, n) = (Arc::clone(&stop), Arc::clone(&sent));
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !s.load(Ordering::Relaxed) {
                for host in &hosts {
                    let r = http
                        .get(format!("http://{gw}/"))
                        .header(reqwest::header::HOST, *host)
                        .send()
                        .await;
                    if r.is_ok() {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load { stop, sent, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.sent.load(Ordering::Relaxed)
    }
}

async fn traffic(rc: &Realmctl, query: &str) -> Value {
    let (status, v) = rc
        .api()
        .call(Method::GET, &format!("/v1/traffic{query}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

fn points(v: &Value) -> &[Value] {
    v["points"].as_array().map_or(&[], Vec::as_slice)
}

fn max_of(v: &Value, field: &str) -> Option<f64> {
    points(v)
        .iter()
        .filter_map(|p| p[field].as_f64())
        .reduce(f64::max)
}

async fn put_tenant(rc: &Realmctl, id: &str, host: &str, pool: &str) -> u64 {
    let (s, v) = rc
        .api()
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body(id, &[host], pool)),
        )
        .await;
    assert!(s.is_success(), "{v}");
    v["table_version"].as_u64().expect("version")
}

#[tokio::test]
async fn traffic_flows_and_a_failing_upstream_shows_its_5xx_share() {
    let dir = TempDir::new("traffic-flows");
    let gw = Gateway::start(&dir, "gw", None).await;
    let rc = Realmctl::start_with(&dir, &[&gw], FAST_SCRAPES, &[]).await;
    let app = Upstream::start("app").await;
    let (broken, _broken_task) = failing_upstream().await;
    rc.api().put_pool("app", app.addr).await;
    rc.api().put_pool("broken", broken).await;
    put_tenant(&rc, "acme", "acme.test", "app").await;
    let v = put_tenant(&rc, "wreck", "wreck.test", "broken").await;
    rc.wait_in_sync(v, WITHIN).await;
    until_answers(&gw, "acme.test", 200, Some("upstream app"), WITHIN).await;

    let load = Load::start(gw.listen, &["acme.test", "wreck.test"]);
    let acme = eventually(WITHIN, "acme's requests/s above 0 and its p95", || async {
        let v = traffic(&rc, "?tenant=acme").await;
        (max_of(&v, "rps").is_some_and(|r| r > 0.0) && max_of(&v, "p95_ms").is_some()).then_some(v)
    })
    .await;
    // The tenant's own p95, from its duration histogram: positive, and under the 10 s the
    // gateway's buckets end at (a loopback answer).
    assert!(
        max_of(&acme, "p95_ms").is_some_and(|ms| ms > 0.0 && ms < 10_000.0),
        "{acme}"
    );
    assert_eq!(acme["scope"], "tenant");
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(
        max_of(&acme, "error_rate"),
        Some(0.0),
        "acme answers 200: {acme}"
    );
    let wreck = eventually(WITHIN, "wreck's 5xx share", || async {
        let v = traffic(&rc, "?tenant=wreck").await;
        max_of(&v, "rps").is_some_and(|r| r > 0.0).then_some(v)
    })
    .await;
    let shares: Vec<f64> = points(&wreck)
        .iter()
        .filter(|p| p["rps"].as_f64().is_some_and(|r| r > 0.0))
        .filter_map(|p| p["error_rate"].as_f64())
        .collect();
    assert!(
        !shares.is_empty() && shares.iter().all(|s| *s == 1.0),
        "every answer of wreck is a 5xx: {wreck}"
    );
    // The fleet: both tenants, the sum of their rates, every request's p95, one gateway.
    let fleet = eventually(WITHIN, "fleet p95 and both tenants listed", || async {
        let v = traffic(&rc, "").await;
        let listed = v["tenants"].as_array()?.len();
        (listed == 2 && max_of(&v, "p95_ms").is_some()).then_some(v)
    })
    .await;
    load.stop().await;
    assert_eq!(fleet["scope"], "fleet");
    assert_eq!(fleet["gateways"][0]["url"], gw.admin_url());
    assert_eq!(fleet["gateways"][0]["state"], "ok");
    // The fleet's answers mix acme's 200s and wreck's 5xx. Over the window, not per point:
    // a short round on a slow machine may hold one tenant's requests only.
    let (requests, errors) = points(&fleet)
        .iter()
        .filter_map(|p| Some((p["rps"].as_f64()?, p["error_rate"].as_f64()?)))
        .fold((0.0, 0.0), |(r, e), (rps, share)| {
            (r + rps, e + rps * share)
        });
    assert!(errors > 0.0 && errors < requests, "{fleet}");
    assert!(points(&fleet).len() <= 3600);

    // Bad input: each a clear error, the series unchanged.
    for (query, status) in [
        ("?tenant=nobody", StatusCode::NOT_FOUND),
        ("?tenant=Not%20An%20Id", StatusCode::NOT_FOUND),
        ("?tenant=acme&tenant=wreck", StatusCode::BAD_REQUEST),
        ("?window=1d", StatusCode::BAD_REQUEST),
    ] {
        let (s, v) = rc
            .api()
            .call(Method::GET, &format!("/v1/traffic{query}"), None)
            .await;
        assert_eq!(s, status, "{query}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let anon = reqwest::get(format!("{}/v1/traffic", rc.url()))
        .await
        .expect("answers");
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);

    // A viewer may read it (an operator key with the viewer role).
    let (s, minted) = rc
        .api()
        .call(
            Method::POST,
            "/v1/operator-keys",
            Some(json!({"name": "dashboards", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{minted}");
    let mut viewer = rc.api();
    viewer.token = minted["key"].as_str().expect("secret").to_owned();
    for q in ["", "?tenant=acme"] {
        let (s, v) = viewer
            .call(Method::GET, &format!("/v1/traffic{q}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

#[tokio::test]
async fn a_gateway_restart_makes_no_negative_or_huge_point() {
    let dir = TempDir::new("traffic-restart");
    let mut gw = Gateway::start(&dir, "gw", None).await;
    let rc = Realmctl::start_with(&dir, &[&gw], FAST_SCRAPES, &[]).await;
    let app = Upstream::start("app").await;
    rc.api().put_pool("app", app.addr).await;
    let v = put_tenant(&rc, "acme", "acme.test", "app").await;
    rc.wait_in_sync(v, WITHIN).await;
    until_answers(&gw, "acme.test", 200, Some("upstream app"), WITHIN).await;

    let load = Load::start(gw.listen, &["acme.test"]);
    eventually(WITHIN, "traffic before the restart", || async {
        let v = traffic(&rc, "?tenant=acme").await;
        max_of(&v, "rps").is_some_and(|r| r > 0.0).then_some(())
    })
    .await;
    let before = load.stop().await;
    let t_restart = traffic(&rc, "").await["points"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p["t"].as_u64())
        .expect("a point");
    // Its counters start again from zero (the table comes back from its state dir).
    gw.restart().await;
    until_answers(&gw, "acme.test", 200, Some("upstream app"), WITHIN).await;
    let load = Load::start(gw.listen, &["acme.test"]);
    eventually(WITHIN, "traffic after the restart", || async {
        let v = traffic(&rc, "?tenant=acme").await;
        points(&v)
            .iter()
            .any(|p| p["t"].as_u64() > Some(t_restart) && p["rps"].as_f64() > Some(0.0))
            .then_some(())
    })
    .await;
    let after = load.stop().await;
    // Let a few more rounds see the (now still) counters.
    let last_t = traffic(&rc, "").await["points"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p["t"].as_u64())
        .expect("a point");
    eventually(WITHIN, "two more rounds", || async {
        let v = traffic(&rc, "").await;
        (points(&v)
            .iter()
            .filter(|p| p["t"].as_u64() > Some(last_t + 1))
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    // A point is a rate over the time since the previous scrape: no round can hold more
    // requests than were ever sent, and none is below zero.
    let sent = (before + after) as f64;
    for q in ["", "?tenant=acme"] {
        let v = traffic(&rc, q).await;
        let step = v["step_seconds"].as_f64().expect("step");
        for p in points(&v) {
            for field in ["rps", "error_rate"] {
                if let Some(x) = p[field].as_f64() {
                    assert!(x >= 0.0, "{field} below zero after a restart: {v}");
                }
            }
            if let Some(r) = p["rps"].as_f64() {
                assert!(
                    r * step <= sent * 1.5,
                    "a spike: {r}/s × {step} s, with {sent} requests sent in all: {v}"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_unreachable_gateway_is_a_gap_logged_once() {
    let dir = TempDir::new("traffic-unreachable");
    let mut gw = Gateway::start(&dir, "gw", None).await;
    let mut rc = Realmctl::start_with(&dir, &[&gw], FAST_SCRAPES, &[]).await;
    // A second gateway that never answers (nothing listens on its address), put in the
    // configuration by hand: the harness lists only real gateways.
    let dead = format!("http://{}", free_addrs(1)[0]);
    let conf = dir.path().join("realmctl.yaml");
    let text = std::fs::read_to_string(&conf).expect("conf");
    let listed = format!("urls: [\"{}\"]", gw.admin_url());
    assert!(text.contains(&listed), "{text}");
    let text = text.replacen(
        &listed,
        &format!("urls: [\"{}\", \"{dead}\"]", gw.admin_url()),
        1,
    );
    std::fs::write(&conf, text).expect("write conf");
    rc.restart().await;
    let app = Upstream::start("app").await;
    rc.api().put_pool("app", app.addr).await;
    let v = put_tenant(&rc, "acme", "acme.test", "app").await;
    eventually(WITHIN, "the live gateway in sync", || async {
        (gw.version().await >= Some(v)).then_some(())
    })
    .await;
    until_answers(&gw, "acme.test", 200, Some("upstream app"), WITHIN).await;

    let load = Load::start(gw.listen, &["acme.test"]);
    let fleet = eventually(WITHIN, "traffic with one gateway down", || async {
        let v = traffic(&rc, "").await;
        let dead_failing = v["gateways"].as_array()?.iter().any(|g| {
            g["url"] == dead.as_str()
                && g["state"] == "failing"
                && g["consecutive_failures"].as_u64() >= Some(5)
        });
        (dead_failing && max_of(&v, "rps").is_some_and(|r| r > 0.0)).then_some(v)
    })
    .await;
    load.stop().await;
    // The live gateway's rates, each point saying one gateway gave them.
    assert!(
        points(&fleet)
            .iter()
            .filter(|p| p["rps"].is_number())
            .all(|p| p["gateways"] == 1),
        "{fleet}"
    );
    let dead_entry = fleet["gateways"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["url"] == dead.as_str()))
        .expect("listed");
    assert!(dead_entry["last_error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));

    // Both down: the newest rounds are gaps, and the API still answers.
    gw.kill();
    let gap = eventually(WITHIN, "a gap once no gateway answers", || async {
        let v = traffic(&rc, "").await;
        let tail: Vec<&Value> = points(&v).iter().rev().take(2).collect();
        (tail.len() == 2
            && tail
                .iter()
                .all(|p| p["rps"].is_null() && p["gateways"] == 0))
        .then_some(v)
    })
    .await;
    assert!(gap["gateways"]
        .as_array()
        .is_some_and(|g| g.iter().all(|g| g["state"] == "failing")));
    let tenant = traffic(&rc, "?tenant=acme").await;
    assert!(
        points(&tenant).last().is_some_and(|p| p["rps"].is_null()),
        "{tenant}"
    );
    // No error storm: one warning per gateway however many rounds failed.
    let log = rc.proc.log_text();
    let warned = |url: &str| {
        log.lines()
            .filter(|l| l.contains("cannot scrape") && l.contains(url))
            .count()
    };
    assert_eq!(warned(&dead), 1, "{log}");
    assert_eq!(warned(&gw.admin_url()), 1, "{log}");
}
