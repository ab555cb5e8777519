//! Changes per second through realmctl with traffic flowing: wrk drives a public route on one
//! gateway (after a warm-up of up to 5 s, not reported) for S seconds without changes, then
//! S seconds while K API clients make changes as fast as realmctl answers them (create a
//! tenant, suspend one, revoke an API key, in turn), then S seconds without changes again
//! once they have landed: the two runs without changes are the noise band the p99 with
//! changes is judged against (no verdict when those two disagree by more than 1.5x).
//! realmctl batches what arrives within its push debounce into one version and one delta per
//! gateway; at the end both gateways must serve realmctl's newest version with the same
//! state digest (each delta was checked against it on apply), and samples of the changes are
//! checked on both gateways' data path. With `--hold-traffic` realmctl pushes to the second
//! gateway only: the changes then load the control plane and not wrk's gateway, which tells
//! the two causes of a p99 rise apart. Every run reports the CPU each process used (and
//! by which threads), and all run with the same placement (`scale/placement.rs`).

use super::placement::{pin_this_thread, Cpu, Placement};
use super::{Ctl, TEMPLATE_HOST};
use realmgate_e2e::wrk;
use realmgate_e2e::Gateway;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the rate phase is given.
pub struct Plan {
    pub seconds: u64,
    pub clients: usize,
    /// Tenants `b…` from this index up are suspended here (below it: the latency phase's).
    pub suspend_from: u64,
    pub tenants: u64,
    /// Keys `k0000000` … in the registry, revoked here from the first up.
    pub keys: u64,
    pub place: Placement,
    /// wrk's gateway gets no deltas (`--hold-traffic`): the changes load the control plane only.
    pub held: bool,
    /// The processes whose CPU use is reported.
    pub cpu: Cpu,
}

/// wrk for `seconds` on `url`, from a thread pinned to `core` (wrk inherits it).
async fn wrk_on(core: Option<usize>, url: String, seconds: u64) -> wrk::Load {
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            pin_this_thread(core);
            wrk::run(&url, TEMPLATE_HOST, seconds)
        })
        .join()
        .expect("wrk's thread")
    })
    .await
    .expect("wrk")
}

/// The `j`th change of client `c` of `k`: the method, path and body, and what it is.
fn change(plan: &Plan, c: usize, j: u64) -> (reqwest::Method, String, Option<Value>, usize) {
    let k = plan.clients as u64;
    let nth = (j / 3) * k + c as u64;
    match j % 3 {
        0 => {
            let id = format!("r{c}x{}", j / 3);
            let body = json!({"id": id, "hosts": [format!("{id}.rate.test")], "display_name": id,
                "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]});
            (reqwest::Method::POST, "/v1/tenants".into(), Some(body), 0)
        }
        1 => {
            let n = plan.suspend_from + nth;
            assert!(
                n < plan.tenants,
                "more suspensions than tenants: raise --tenants"
            );
            let path = format!("/v1/tenants/b{n:07}");
            let body = json!({"status": "suspended"});
            (reqwest::Method::PATCH, path, Some(body), 1)
        }
        _ => {
            assert!(nth < plan.keys, "more revocations than keys: raise --keys");
            (
                reqwest::Method::DELETE,
                format!("/v1/keys/k{nth:07}"),
                None,
                2,
            )
        }
    }
}

/// Two runs without changes whose p99s differ by more than this factor are no band: one of
/// them met a disturbance of its own (a stall elsewhere on the machine), and a band stretched
/// to it would call nearly anything "within".
const BAND_MAX_SPREAD: f64 = 1.5;

/// Whether the p99 with changes lies within the spread of the two runs without (the band
/// from the lower to the higher of them), below it, or above it and by how much; no verdict
/// when the two runs without changes disagree.
fn p99_verdict(before: f64, with: f64, after: f64) -> String {
    let (lo, hi) = (before.min(after), before.max(after));
    let place = if hi > lo * BAND_MAX_SPREAD {
        format!(
            "NO VERDICT: the runs without changes disagree ({:.1}x apart, more than {BAND_MAX_SPREAD}x); run again",
            hi / lo
        )
    } else if with > hi {
        format!(
            "ABOVE the band, by {:.0} % of its top",
            (with / hi - 1.0) * 100.0
        )
    } else if with < lo {
        "below the band".to_owned()
    } else {
        "within the band".to_owned()
    };
    format!("p99 without changes {before:.2} ms before, {after:.2} ms after (band {lo:.2}-{hi:.2} ms); with changes {with:.2} ms: {place}")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// One API client: changes until `until`; what each kind made and every call's latency.
async fn client(
    ctl: Arc<Ctl>,
    plan: Arc<Plan>,
    c: usize,
    until: Instant,
) -> ([u64; 3], Vec<Duration>) {
    let mut made = [0u64; 3];
    let mut took = Vec::new();
    let mut j = 0u64;
    while Instant::now() < until {
        let (method, path, body, kind) = change(&plan, c, j);
        j += 1;
        let t = Instant::now();
        ctl.call(method, &path, body).await;
        took.push(t.elapsed());
        made[kind] += 1;
    }
    (made, took)
}

/// The gateways' `state_digest` and version, once both serve realmctl's newest version and
/// it is at least `floor`: realmctl's target lags the last change by up to its push debounce
/// (every change is a version of its own, so after C changes from version V the newest is at
/// least V + C).
async fn settled(ctl: &Ctl, gateways: &[&Gateway], floor: u64) -> (u64, String) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let v = ctl.call(reqwest::Method::GET, "/v1/gateways", None).await;
        let target = v["gateways"][0]["target_version"].as_u64().unwrap_or(0);
        if target >= floor && ctl.in_sync(target).await {
            let mut seen = Vec::new();
            for g in gateways.iter() {
                let (_, info) = g.table_info().await;
                seen.push((info["version"].as_u64(), info["state_digest"].clone()));
            }
            if seen.iter().all(|s| s.0 == Some(target)) {
                assert!(
                    seen.iter().all(|s| s.1 == seen[0].1),
                    "the gateways' state digests differ"
                );
                let digest = seen[0].1.as_str().unwrap_or_default().to_owned();
                return (target, digest);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the gateways never settled at version {floor} or later"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `host` answers `want` on every gateway (and says what each answered when not).
async fn answers(gateways: &[&Gateway], host: &str, want: u16) -> bool {
    let mut seen = Vec::new();
    for g in gateways {
        seen.push(g.request(host, "/").await.status);
    }
    let all = seen.iter().all(|&s| s == want);
    if !all {
        eprintln!("{host}: the gateways answer {seen:?}, not {want}");
    }
    all
}

/// Run the phase and print its report; `false` when a request failed or a change is missing.
/// wrk drives `traffic`; `gateways` are those realmctl pushes to, which must all end on its
/// newest version and serve the changes (`traffic` among them unless `plan.held`).
pub async fn run(ctl: Arc<Ctl>, traffic: &Gateway, gateways: &[&Gateway], plan: Plan) -> bool {
    let plan = Arc::new(plan);
    let url = traffic.url("/");
    // A warm-up, not reported: just after the full push gateway 1 may still be making the
    // table's model and freeing what the load left, and the first run measured that (its
    // p99 was 1.2-4.8x the run's after the changes in each of 29 runs without a warm-up).
    let _ = settled(&ctl, gateways, 0).await;
    let _ = wrk_on(plan.place.data, url.clone(), plan.seconds.min(5)).await;
    let cpu0 = plan.cpu.sample();
    let t0 = Instant::now();
    let quiet = wrk_on(plan.place.data, url.clone(), plan.seconds).await;
    let quiet_cpu = plan.cpu.sample().since(&cpu0, t0.elapsed().as_secs_f64());
    let pushes_before = ctl.metric("realmctl_table_pushes_total").await;
    let (v0, _) = settled(&ctl, gateways, 0).await;
    let cpu1 = plan.cpu.sample();
    let busy = tokio::spawn(wrk_on(plan.place.data, url.clone(), plan.seconds));
    let started = Instant::now();
    let until = started + Duration::from_secs(plan.seconds);
    let tasks: Vec<_> = (0..plan.clients)
        .map(|c| tokio::spawn(client(Arc::clone(&ctl), Arc::clone(&plan), c, until)))
        .collect();
    let mut made = [0u64; 3];
    let mut took = Vec::new();
    let mut per_client = Vec::new();
    for t in tasks {
        let (m, d) = t.await.expect("client");
        per_client.push(m);
        for (a, b) in made.iter_mut().zip(m) {
            *a += b;
        }
        took.extend(d);
    }
    let elapsed = started.elapsed();
    let busy = busy.await.expect("wrk");
    let busy_cpu = plan
        .cpu
        .sample()
        .since(&cpu1, started.elapsed().as_secs_f64());
    let changes: u64 = made.iter().sum();
    let (v1, digest) = settled(&ctl, gateways, v0 + changes).await;
    let settled_after = started.elapsed();
    took.sort_unstable();
    // The run without changes again, same placement, once every change has landed: two
    // runs without changes give the noise band the run with them is judged against.
    let cpu2 = plan.cpu.sample();
    let t2 = Instant::now();
    let after = wrk_on(plan.place.data, url.clone(), plan.seconds).await;
    let after_cpu = plan.cpu.sample().since(&cpu2, t2.elapsed().as_secs_f64());

    // Samples on the data path: each client's last tenant made serves, its last suspension
    // answers 503, on every gateway pushed to.
    let mut missing = 0;
    for (c, m) in per_client.iter().enumerate() {
        if m[0] > 0 {
            let host = format!("r{c}x{}.rate.test", m[0] - 1);
            if !answers(gateways, &host, 200).await {
                missing += 1;
            }
        }
        if m[1] > 0 {
            let n = plan.suspend_from + (m[1] - 1) * plan.clients as u64 + c as u64;
            let host = format!("b{n:07}.bench.test");
            if !answers(gateways, &host, 503).await {
                missing += 1;
            }
        }
    }
    let pushes_after = ctl.metric("realmctl_table_pushes_total").await;

    println!(
        "changes/s through realmctl: {} API clients, {} s, wrk -t1 -c16 on {TEMPLATE_HOST} at one gateway{}; {}",
        plan.clients,
        plan.seconds,
        if plan.held {
            " (HELD: realmctl pushes nothing to it, only to the other)"
        } else {
            ""
        },
        plan.place.describe()
    );
    println!(
        "  changes answered: {changes} ({} creates, {} suspends, {} key revokes) in {elapsed:.2?}: {:.0}/s; {} gateway(s) pushed to at version {v1} (from {v0}) {settled_after:.2?} after the start, state digest {digest}",
        made[0],
        made[1],
        made[2],
        changes as f64 / elapsed.as_secs_f64(),
        gateways.len(),
    );
    println!(
        "  API call latency: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        percentile(&took, 1.0)
    );
    println!("  pushes before: {pushes_before}\n  pushes after:  {pushes_after}");
    println!("  | run | requests/s | p50 | p99 | failed |");
    println!("  |---|---|---|---|---|");
    for (name, l) in [
        ("no changes, before", &quiet),
        ("changes flowing", &busy),
        ("no changes, after", &after),
    ] {
        println!(
            "  | {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            l.rps,
            l.p50_ms,
            l.p99_ms,
            l.failed()
        );
    }
    for (name, lines) in [
        ("no changes, before", &quiet_cpu),
        ("changes flowing", &busy_cpu),
        ("no changes, after", &after_cpu),
    ] {
        println!("  CPU, {name} (100 % = one core):");
        for l in lines {
            println!("    {l}");
        }
    }
    println!(
        "  ratio with/without changes: requests/s {:.2}, p99 {:.2} (against the run before; {:.2} and {:.2} against the run after); samples missing on the gateways: {missing}",
        busy.rps / quiet.rps,
        busy.p99_ms / quiet.p99_ms,
        busy.rps / after.rps,
        busy.p99_ms / after.p99_ms
    );
    println!("  {}", p99_verdict(quiet.p99_ms, busy.p99_ms, after.p99_ms));
    quiet.failed() + busy.failed() + after.failed() == 0 && missing == 0 && busy.rps > 0.0
}
