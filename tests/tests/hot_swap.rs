//! Table swaps under sustained traffic: no request fails, none sees a half-applied table.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use realmgate_e2e::gateway::http_client;
use realmgate_e2e::{eventually, Echo, Gateway, GatewayOpts, Table, Upstream};
use serde_json::Value;

const CLIENTS: usize = 6;
const PUSHES: u64 = 100;

/// Version `v`: acme.test always goes to `main`; other.test goes to `px` on odd versions and to
/// `py` on even ones. Every pool exists in every version.
fn table(v: u64, main: &Upstream, x: &Upstream, y: &Upstream) -> Value {
    let other = if v % 2 == 1 { "px" } else { "py" };
    Table::new(v)
        .upstream("main", [main.addr()])
        .upstream("px", [x.addr()])
        .upstream("py", [y.addr()])
        .tenant("acme", &["acme.test"], &[("/", "main")])
        .tenant("other", &["other.test"], &[("/", other)])
        .build()
}

/// `None` if the response is one a valid table version can produce, else what was wrong.
fn check(host: &str, status: u16, body: &str) -> Option<String> {
    if status != 200 {
        return Some(format!("{host}: status {status}: {body}"));
    }
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Some(format!("{host}: body not JSON ({e}): {body}")),
    };
    let Some(e) = Echo::try_from_json(&v) else {
        return Some(format!("{host}: not an echo: {body}"));
    };
    let tenant = e.header_all("x-realmgate-tenant").to_vec();
    let ok = match host {
        "acme.test" => e.upstream == "main" && tenant == ["acme"],
        _ => (e.upstream == "x" || e.upstream == "y") && tenant == ["other"],
    };
    (!ok).then(|| format!("{host}: served by {} for tenant {tenant:?}", e.upstream))
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_pushes_under_sustained_traffic_drop_nothing() {
    let main = Upstream::start("main").await;
    let x = Upstream::start("x").await;
    let y = Upstream::start("y").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(&table(1, &main, &x, &y)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
        let base = gw.url("/");
        clients.push(tokio::spawn(async move {
            // One client, one keep-alive connection pool, per task.
            let client = http_client();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let host = ["acme.test", "other.test"][(i + c) % 2];
                let problem = match client
                    .get(format!("{base}c{c}/{i}"))
                    .header("host", host)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        match r.text().await {
                            Ok(body) => check(host, status, &body),
                            Err(e) => Some(format!("{host}: body read failed: {e:?}")),
                        }
                    }
                    Err(e) => Some(format!("{host}: request failed: {e:?}")),
                };
                if let Some(p) = problem {
                    failures.lock().expect("failures lock").push(p);
                }
                done.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }

    // Traffic flows before the first push...
    let wait_for = |n: usize| {
        let done = done.clone();
        async move {
            eventually(Duration::from_secs(10), "client traffic", || {
                let d = done.load(Ordering::SeqCst);
                async move { (d >= n).then_some(()) }
            })
            .await
        }
    };
    wait_for(50).await;
    let started = Instant::now();
    let before = done.load(Ordering::SeqCst);
    for v in 2..=PUSHES + 1 {
        gw.push_ok(&table(v, &main, &x, &y)).await;
        // ...and between any two pushes, so every version serves some of it.
        let now = done.load(Ordering::SeqCst);
        wait_for(now + CLIENTS).await;
    }
    let during = done.load(Ordering::SeqCst) - before;
    let push_time = started.elapsed();

    // After the last push (odd version) the new routing is in effect.
    for _ in 0..10 {
        assert_eq!(gw.echo("other.test", "/after").await.upstream, "x");
    }
    assert_eq!(gw.table_info().await.1["version"], PUSHES + 1);

    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client task panicked");
    }
    let failures = failures.lock().expect("failures lock").clone();
    let total = done.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed during {PUSHES} pushes; first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        x.hits() > 0 && y.hits() > 0,
        "other.test never alternated: x {} y {}",
        x.hits(),
        y.hits()
    );
    eprintln!("{total} requests, {during} during {PUSHES} pushes in {push_time:?}, 0 failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_requests_finish_on_the_table_they_started_with() {
    let old = Upstream::start("old").await;
    let new = Upstream::start("new").await;
    old.set_delay(Duration::from_millis(1000));
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(
        &Table::new(1)
            .upstream("old-pool", [old.addr()])
            .tenant("acme", &["acme.test"], &[("/", "old-pool")])
            .build(),
    )
    .await;

    let gw = Arc::new(gw);
    let mut inflight = Vec::new();
    for i in 0..4 {
        let gw = gw.clone();
        inflight.push(tokio::spawn(async move {
            gw.request("acme.test", &format!("/slow/{i}")).await
        }));
    }
    eventually(
        Duration::from_secs(5),
        "slow requests reached the old upstream",
        || async { (old.hits() == 4).then_some(()) },
    )
    .await;
    // v2 removes the pool the in-flight requests are using.
    gw.push_ok(
        &Table::new(2)
            .upstream("new-pool", [new.addr()])
            .tenant("acme", &["acme.test"], &[("/", "new-pool")])
            .build(),
    )
    .await;
    assert_eq!(gw.echo("acme.test", "/fresh").await.upstream, "new");
    for r in inflight {
        let r = r.await.expect("request task panicked");
        assert_eq!(
            r.echo().upstream,
            "old",
            "an in-flight request was not completed"
        );
    }
}
