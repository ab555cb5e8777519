//! Changes per second with traffic flowing, at the gateway alone: the real gateway holding T
//! tenants, wrk driving a public route, and a stream of deltas (create a tenant, suspend it,
//! delete it, in turn) pushed by one client as fast as the gateway acknowledges them — side by
//! side with the same load and no changes, in one run, so the ratio means something on a
//! noisy machine. The issue's mix (create, suspend, revoke an API key) through realmctl's API,
//! with realmctl batching and pushing to two gateways, is `realmctl`'s `ctl_scale --rate`.
//!
//! ```text
//! cargo build --release -p realmgate && cargo run --release -p realmgate-e2e --bin delta_bench -- \
//!     --tenants 100000 --seconds 20
//! REALMGATE_BIN=target/debug/realmgate cargo run -p realmgate-e2e --bin delta_bench -- --smoke
//! ```
//!
//! Reports: the full table's apply time (as the push round trip), the gateway's resident memory
//! with the table and its model, one-delta round trips
//! (median, p99) on an idle gateway, deltas per second sustained under load with the
//! refused/failed count, and wrk's requests/s, p99 latency and non-2xx count with and without
//! the changes. Exits non-zero when any delta is refused or any request fails.

use realmgate_e2e::delta::{tenant, Change, Deltas};
use realmgate_e2e::wrk;
use realmgate_e2e::{Gateway, GatewayOpts, Table, Upstream};
use serde_json::Value;
use std::time::{Duration, Instant};

struct Args {
    tenants: usize,
    seconds: u64,
    smoke: bool,
}

fn args() -> Args {
    let mut a = Args {
        tenants: 100_000,
        seconds: 20,
        smoke: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match flag.as_str() {
            "--tenants" => a.tenants = number("--tenants") as usize,
            "--seconds" => a.seconds = number("--seconds"),
            "--smoke" => a.smoke = true,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.smoke {
        a.tenants = a.tenants.min(200);
        a.seconds = a.seconds.min(2);
    }
    a
}

fn usage(problem: &str) -> ! {
    eprintln!("delta_bench: {problem}\nusage: delta_bench [--tenants N] [--seconds S] [--smoke]");
    std::process::exit(2)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The next change in the mix: create a tenant, suspend the one created before, revoke (drop)
/// the tenant created before that — a tenant's API key goes with it in a real registry.
fn change(n: usize, upstream: &str) -> Vec<Change> {
    let id = |k: usize| format!("churn-{k}");
    match n % 3 {
        0 => vec![Change::Upsert(tenant(
            &id(n),
            &[format!("{}.churn.test", id(n)).as_str()],
            upstream,
        ))],
        1 => {
            let mut t = tenant(
                &id(n - 1),
                &[format!("{}.churn.test", id(n - 1)).as_str()],
                upstream,
            );
            t.status = realmgate_table::TenantStatus::Suspended;
            vec![Change::Upsert(t)]
        }
        _ => vec![Change::DeleteOwned(id(n - 2))],
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let up = Upstream::start("app").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let mut table = Table::new(1).upstream("app", [up.addr()]);
    for i in 0..a.tenants {
        table = table.tenant(&format!("t{i}"), &[&format!("t{i}.test")], &[("/", "app")]);
    }
    let full = table.build();
    let started = Instant::now();
    gw.push_ok(&full).await;
    let full_push = started.elapsed();
    let mut chain = Deltas::from_full(&full);
    drop(full);

    // One delta at a time on an idle gateway: the round trip includes the journal's fsync.
    let mut idle = Vec::new();
    let mut n = 0usize;
    let rounds = if a.smoke { 30 } else { 300 };
    for _ in 0..rounds {
        let d = chain.delta(&change(n, "app"));
        n += 1;
        let t = Instant::now();
        let (status, body) = gw.push_delta(&d).await;
        idle.push(t.elapsed());
        assert_eq!(status, 200, "{body}");
    }
    idle.sort_unstable();
    // The table, its model (the deltas above needed it) and nothing else: the document as
    // received went with the first delta.
    let rss_mib = gw.rss().map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));

    let url = gw.url("/");
    let host = "t0.test".to_owned();
    let quiet = {
        let (url, host, s) = (url.clone(), host.clone(), a.seconds);
        tokio::task::spawn_blocking(move || wrk::run(&url, &host, s))
            .await
            .expect("wrk")
    };
    let busy = {
        let (url, host, s) = (url.clone(), host.clone(), a.seconds);
        tokio::task::spawn_blocking(move || wrk::run(&url, &host, s))
    };
    let until = Instant::now() + Duration::from_secs(a.seconds);
    let (mut applied, mut refused) = (0u64, 0u64);
    let mut under_load = Vec::new();
    let load_started = Instant::now();
    while Instant::now() < until {
        let d = chain.delta(&change(n, "app"));
        n += 1;
        let t = Instant::now();
        let (status, body) = gw.push_delta(&d).await;
        under_load.push(t.elapsed());
        if status == 200 {
            applied += 1;
        } else {
            refused += 1;
            eprintln!("delta refused: {status} {body}");
            break;
        }
    }
    let rate = applied as f64 / load_started.elapsed().as_secs_f64();
    let busy = busy.await.expect("wrk");
    under_load.sort_unstable();
    let (_, info) = gw.table_info().await;
    let ok_digest = info["state_digest"] == Value::String(chain.state_digest());

    println!(
        "delta bench: {} tenants, {} s per load run",
        a.tenants, a.seconds
    );
    println!("full table push (validate, build, persist, swap): {full_push:?}");
    println!(
        "gateway RSS with the table and its model, after the idle deltas: {rss_mib:.0} MiB ({:.0} B a tenant)",
        rss_mib * 1024.0 * 1024.0 / a.tenants.max(1) as f64
    );
    println!(
        "one delta, idle gateway (PATCH round trip with fsync): median {:?}, p99 {:?} over {}",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        idle.len()
    );
    println!(
        "deltas under load: {applied} applied, {refused} refused, {rate:.0}/s; round trip median {:?}, p99 {:?}",
        percentile(&under_load, 0.5),
        percentile(&under_load, 0.99)
    );
    println!("| run | requests/s | p99 latency | non-2xx | socket errors |");
    println!("|---|---|---|---|---|");
    for (name, l) in [("no changes", &quiet), ("deltas flowing", &busy)] {
        println!(
            "| {name} | {:.0} | {:.2} ms | {} | {} |",
            l.rps, l.p99_ms, l.non_2xx, l.errors
        );
    }
    println!(
        "ratio with/without changes: requests/s {:.2}, p99 {:.2}; state digest after the run {}",
        busy.rps / quiet.rps,
        busy.p99_ms / quiet.p99_ms,
        if ok_digest { "matches" } else { "DIFFERS" }
    );
    let failed = refused > 0
        || quiet.non_2xx + quiet.errors + busy.non_2xx + busy.errors > 0
        || !ok_digest
        || busy.rps == 0.0;
    drop(gw);
    drop(up);
    if failed {
        eprintln!("delta_bench: FAILED (a refused delta, a failed request or a state mismatch)");
        std::process::exit(1);
    }
}
