//! Deltas against the real gateway: `PATCH /v1/table` changes only what it names, refuses
//! what would break the table (nothing applied), survives kill -9 through the journal, starts
//! from the last good state after a torn journal write, keeps the journal bounded, and runs
//! on `table_cpus` when named.

use realmgate_e2e::delta::{tenant, Change, Deltas};
use realmgate_e2e::{eventually, Gateway, GatewayOpts, Table, Upstream};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

struct Fixture {
    gw: Gateway,
    a: Upstream,
    b: Upstream,
    chain: Deltas,
}

async fn fixture(gateway_yaml: &str) -> Fixture {
    let a = Upstream::start("app-a").await;
    let b = Upstream::start("app-b").await;
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml: gateway_yaml.to_owned(),
        ..GatewayOpts::default()
    })
    .await;
    let full = Table::new(1)
        .upstream("app-a", [a.addr()])
        .upstream("app-b", [b.addr()])
        .tenant("acme", &["acme.test"], &[("/", "app-a")])
        .tenant("beta", &["beta.test", "*.beta.test"], &[("/", "app-b")])
        .build();
    gw.push_ok(&full).await;
    Fixture {
        gw,
        a,
        b,
        chain: Deltas::from_full(&full),
    }
}

impl Fixture {
    async fn upstream_of(&self, host: &str) -> Option<String> {
        let reply = self.gw.request(host, "/").await;
        (reply.status == 200).then(|| reply.echo().upstream)
    }

    async fn apply(&mut self, changes: &[Change]) -> Value {
        let delta = self.chain.delta(changes);
        let (status, body) = self.gw.push_delta(&delta).await;
        assert_eq!(status, 200, "delta to {} refused: {body}", delta["version"]);
        assert_eq!(body["version"], delta["version"], "{body}");
        assert_eq!(body["state_digest"], self.chain.state_digest(), "{body}");
        body
    }

    /// Tenants `t0` … `t{n-1}` (host `t{i}.test`, routed to `upstream`), one delta each.
    async fn add_tenants(&mut self, n: usize, upstream: &str) {
        for i in 0..n {
            let (id, host) = (format!("t{i}"), format!("t{i}.test"));
            self.apply(&[Change::Upsert(tenant(&id, &[host.as_str()], upstream))])
                .await;
        }
    }

    async fn info(&self) -> Value {
        let (status, info) = self.gw.table_info().await;
        assert_eq!(status, 200, "{info}");
        info
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delta_changes_only_what_it_names_and_survives_kill_9() {
    let mut f = fixture("").await;
    f.apply(&[Change::Upsert(tenant("gamma", &["gamma.test"], "app-b"))])
        .await;
    assert_eq!(f.upstream_of("gamma.test").await.as_deref(), Some("app-b"));
    assert_eq!(f.upstream_of("acme.test").await.as_deref(), Some("app-a"));
    // A host moves from one tenant to another in one delta; a tenant goes.
    f.apply(&[
        Change::Upsert(tenant("acme", &["acme.test", "shop.test"], "app-b")),
        Change::Upsert(tenant("beta", &["beta.test"], "app-b")),
        Change::Upsert(tenant("delta", &["*.beta.test"], "app-a")),
        Change::Delete("gamma"),
    ])
    .await;
    assert_eq!(f.upstream_of("acme.test").await.as_deref(), Some("app-b"));
    assert_eq!(f.upstream_of("shop.test").await.as_deref(), Some("app-b"));
    assert_eq!(f.upstream_of("x.beta.test").await.as_deref(), Some("app-a"));
    assert_eq!(f.upstream_of("gamma.test").await, None);
    let before = f.info().await;
    assert_eq!(before["version"], 3);
    // kill -9 straight after the 200: the delta must already be durable.
    f.gw.kill();
    f.gw.restart().await;
    f.gw.wait_ready().await;
    let after = f.info().await;
    assert_eq!(after["version"], 3, "{after}");
    assert_eq!(after["state_digest"], before["state_digest"]);
    assert_eq!(f.upstream_of("shop.test").await.as_deref(), Some("app-b"));
    assert_eq!(f.upstream_of("x.beta.test").await.as_deref(), Some("app-a"));
    assert_eq!(f.upstream_of("gamma.test").await, None);
    // The full document the gateway shows is the chain's table.
    let (_, full) = f.gw.admin_get_json("/v1/table?full=1").await;
    let shown: realmgate_table::Table = serde_json::from_value(full).expect("full table");
    assert_eq!(
        realmgate_table::model::state_digest(&shown),
        f.chain.state_digest()
    );
    drop((f.a, f.b));
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_deltas_change_nothing_and_say_why() {
    let mut f = fixture("").await;
    let served = f.info().await;
    let gamma = || Change::Upsert(tenant("gamma", &["gamma.test"], "app-a"));
    // (delta, status, error code)
    let mut wrong_base = f.chain.peek(&[gamma()]);
    wrong_base["base"] = json!(7);
    wrong_base["version"] = json!(8);
    let mut bad_digest = f.chain.peek(&[gamma()]);
    bad_digest["state_digest"] = json!(format!("state:{}", "0".repeat(64)));
    let mut unknown_field = f.chain.peek(&[gamma()]);
    unknown_field["colour"] = json!("blue");
    let cases = [
        (wrong_base, 409, "wrong_base"),
        (bad_digest, 409, "digest_mismatch"),
        (unknown_field, 422, "invalid_delta"),
        // A host an unchanged tenant holds.
        (
            f.chain
                .peek(&[Change::Upsert(tenant("gamma", &["acme.test"], "app-a"))]),
            422,
            "invalid_delta",
        ),
        // A pool nobody defines.
        (
            f.chain
                .peek(&[Change::Upsert(tenant("gamma", &["gamma.test"], "nope"))]),
            422,
            "invalid_delta",
        ),
        // A tenant that does not exist.
        (
            f.chain.peek(&[Change::Delete("nobody")]),
            422,
            "invalid_delta",
        ),
        // Upserted and deleted at once.
        (
            f.chain.peek(&[gamma(), Change::Delete("gamma")]),
            422,
            "invalid_delta",
        ),
    ];
    for (delta, status, code) in cases {
        let (got, body) = f.gw.push_delta(&delta).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{delta}: {body}"
        );
        if code == "wrong_base" {
            assert_eq!(body["version"], 1, "the version in force is named: {body}");
        }
        let now = f.info().await;
        assert_eq!(now["version"], served["version"]);
        assert_eq!(now["state_digest"], served["state_digest"]);
    }
    assert_eq!(f.upstream_of("gamma.test").await, None);
    assert_eq!(f.upstream_of("acme.test").await.as_deref(), Some("app-a"));
    // Not JSON by its content type; not authenticated (the body is never read).
    let delta = f.chain.peek(&[gamma()]).to_string();
    let token = format!("Bearer {}", GatewayOpts::default().token);
    let (status, body) =
        f.gw.patch_with(delta.clone(), "text/plain", Some(&token))
            .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (status, _) = f.gw.patch_with(delta, "application/json", None).await;
    assert_eq!(status, 401);
    // Malformed JSON: every problem at once is the parser's; here one, and nothing applied.
    let (status, body) =
        f.gw.patch_with("{\"base\": 1,".into(), "application/json", Some(&token))
            .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid_delta")),
        "{body}"
    );
    assert_eq!(f.info().await["version"], 1);
    // The right delta still applies after all that.
    f.apply(&[gamma()]).await;
    assert_eq!(f.upstream_of("gamma.test").await.as_deref(), Some("app-a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_journal_write_starts_from_the_last_good_state_and_says_so() {
    let mut f = fixture("").await;
    f.apply(&[Change::Upsert(tenant("gamma", &["gamma.test"], "app-b"))])
        .await;
    let good = f.info().await;
    f.gw.kill();
    // What a crash in the middle of appending the next record leaves: part of a record.
    let next = f
        .chain
        .peek(&[Change::Upsert(tenant("omega", &["omega.test"], "app-a"))]);
    let journal = f.gw.state_dir().join("table.journal");
    let whole = std::fs::metadata(&journal).expect("journal").len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("journal");
    let mut record = b"RGJ1".to_vec();
    record.extend_from_slice(&(next.to_string().len() as u32).to_le_bytes());
    record.extend_from_slice(&2u64.to_le_bytes());
    record.extend_from_slice(&3u64.to_le_bytes());
    record.extend_from_slice(&[0u8; 8]);
    record.extend_from_slice(&next.to_string().as_bytes()[..20]);
    file.write_all(&record).expect("append");
    drop(file);
    f.gw.restart().await;
    f.gw.wait_ready().await;
    let now = f.info().await;
    assert_eq!(now["version"], good["version"]);
    assert_eq!(now["state_digest"], good["state_digest"]);
    assert!(
        f.gw.logs()
            .contains("the gateway starts from version 2, the last good state"),
        "{}",
        f.gw.logs()
    );
    assert_eq!(
        std::fs::metadata(&journal).expect("journal").len(),
        whole,
        "the torn tail is cut off"
    );
    assert_eq!(f.upstream_of("gamma.test").await.as_deref(), Some("app-b"));
    // The chain goes on from the last good version.
    f.apply(&[Change::Upsert(tenant("omega", &["omega.test"], "app-a"))])
        .await;
    assert_eq!(f.upstream_of("omega.test").await.as_deref(), Some("app-a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_stream_of_deltas_loses_no_acknowledged_one() {
    let mut f = fixture("").await;
    let start = f.chain.clone();
    // Every version's state digest, to check whatever version survives.
    let mut digests = std::collections::BTreeMap::new();
    let mut deltas = Vec::new();
    for i in 0..400 {
        let host = format!("t{i}.test");
        let d = f.chain.delta(&[Change::Upsert(tenant(
            &format!("t{i}"),
            &[host.as_str()],
            "app-a",
        ))]);
        digests.insert(f.chain.version(), f.chain.state_digest());
        deltas.push(d);
    }
    let gw_admin = f.gw.admin_url("/v1/table");
    let token = format!("Bearer {}", GatewayOpts::default().token);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    let pusher = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for d in deltas {
                let sent = client
                    .patch(&gw_admin)
                    .header("authorization", &token)
                    .header("content-type", "application/json")
                    .body(d.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.store(
                        d["version"].as_u64().unwrap_or(0),
                        std::sync::atomic::Ordering::SeqCst,
                    ),
                    _ => return,
                }
            }
        })
    };
    // Kill once some deltas went through, mid-stream.
    eventually(Duration::from_secs(30), "deltas acknowledged", || {
        let n = acked.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 50).then_some(()) }
    })
    .await;
    f.gw.kill();
    let _ = pusher.await;
    let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    f.gw.restart().await;
    f.gw.wait_ready().await;
    let now = f.info().await;
    let version = now["version"].as_u64().expect("version");
    assert!(
        version >= acked,
        "acknowledged {acked}, restarted at {version}"
    );
    assert!(
        version <= acked + 1,
        "at most the one in flight: {version} vs {acked}"
    );
    assert_eq!(now["state_digest"], digests[&version], "version {version}");
    let last = format!("t{}.test", version - 2);
    assert_eq!(f.upstream_of(&last).await.as_deref(), Some("app-a"));
    drop(start);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_is_compacted_and_stays_bounded() {
    let mut f = fixture("  journal_compact_bytes: 8192\n").await;
    f.add_tenants(300, "app-b").await;
    let journal = f.gw.state_dir().join("table.journal");
    let stored = f.gw.state_dir().join("table.json");
    // Compaction runs in the background: the stored table catches up, the journal shrinks.
    eventually(Duration::from_secs(30), "a compacted journal", || {
        let len = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
        let version = std::fs::read(&stored)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["version"].as_u64())
            .unwrap_or(0);
        async move { (len <= 8192 && version > 1).then_some(()) }
    })
    .await;
    let before = f.info().await;
    f.gw.kill();
    f.gw.restart().await;
    f.gw.wait_ready().await;
    let after = f.info().await;
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["state_digest"], before["state_digest"]);
    assert_eq!(f.upstream_of("t299.test").await.as_deref(), Some("app-b"));
    assert_eq!(f.upstream_of("t0.test").await.as_deref(), Some("app-b"));
    // A full table replaces everything and empties the journal.
    let full = Table::new(f.chain.version() + 1)
        .upstream("app-a", [f.a.addr()])
        .tenant("acme", &["acme.test"], &[("/", "app-a")])
        .build();
    f.gw.push_ok(&full).await;
    assert_eq!(std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0), 0);
    assert_eq!(f.upstream_of("t0.test").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pushes_racing_from_one_base_apply_one() {
    let f = fixture("").await;
    let one = f
        .chain
        .peek(&[Change::Upsert(tenant("one", &["one.test"], "app-a"))]);
    let two = f
        .chain
        .peek(&[Change::Upsert(tenant("two", &["two.test"], "app-b"))]);
    let (a, b) = tokio::join!(f.gw.push_delta(&one), f.gw.push_delta(&two));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let refused = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(refused["error"], "wrong_base");
    assert_eq!(refused["version"], 2);
    let served = [
        f.upstream_of("one.test").await.is_some(),
        f.upstream_of("two.test").await.is_some(),
    ];
    assert_eq!(served.iter().filter(|s| **s).count(), 1, "{served:?}");
}

/// A CPU list as `/proc` writes it (`0-3,6`).
fn cpu_list(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (Ok(lo), Ok(hi)) = (lo.parse::<usize>(), hi.parse::<usize>()) else {
            continue;
        };
        out.extend(lo..=hi);
    }
    out
}

/// Each of the process's threads: its name and the CPUs it may run on.
fn threads(pid: u32) -> Vec<(String, Vec<usize>)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
            };
            Some((field("Name:")?, cpu_list(&field("Cpus_allowed_list:")?)))
        })
        .collect()
}

/// The CPUs this process may use.
fn my_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(cpu_list)
        .unwrap_or_default()
}

/// Two CPUs this process may use, for the workers and for table work; `None` on one CPU.
fn workers_and_table_cpus() -> Option<(usize, usize)> {
    let mine = my_cpus();
    match (mine.first(), mine.last()) {
        (Some(&workers), Some(&table)) if workers != table => Some((workers, table)),
        _ => {
            eprintln!("one CPU: nothing to keep apart");
            None
        }
    }
}

/// The CPUs of each of `all`'s threads whose name starts with `name`.
fn cpus_of<'a>(all: &'a [(String, Vec<usize>)], name: &str) -> Vec<&'a Vec<usize>> {
    all.iter()
        .filter(|(n, _)| n.starts_with(name))
        .map(|(_, cpus)| cpus)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn table_work_runs_on_table_cpus_and_the_workers_stay_where_they_were_put() {
    let Some((workers, table)) = workers_and_table_cpus() else {
        return;
    };
    let mut f = fixture(&format!("  table_cpus: [{table}]\n")).await;
    let pid = f.gw.pid().expect("running");
    // Pinned from outside after start, as an operator (or `ctl_scale --pin`) would. A thread
    // that ends between taskset's listing and its pinning fails it ("No such process"): the
    // full table's parse threads have just ended. Again, then.
    let pin = || {
        std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &workers.to_string(), &pid.to_string()])
            .output()
            .expect("taskset (util-linux)")
    };
    let mut pinned = pin();
    for _ in 0..10 {
        if pinned.status.success()
            || !String::from_utf8_lossy(&pinned.stderr).contains("No such process")
        {
            break;
        }
        pinned = pin();
    }
    assert!(pinned.status.success(), "{pinned:?}");
    f.add_tenants(3, "app-a").await;
    assert_eq!(f.upstream_of("t2.test").await.as_deref(), Some("app-a"));
    let all = threads(pid);
    // Every snapshot a delta replaced was freed on table-drop, on the table CPU.
    assert_eq!(cpus_of(&all, "table-drop"), [&vec![table]], "{all:?}");
    // The admin API's thread that took the deltas went there too.
    assert!(cpus_of(&all, "BG admin").contains(&&vec![table]), "{all:?}");
    // The proxy's workers were left where the operator put them.
    let workers_on = cpus_of(&all, "realmgate");
    assert!(!workers_on.is_empty(), "{all:?}");
    assert!(workers_on.iter().all(|cpus| **cpus == [workers]), "{all:?}");
}

/// A gateway with `cpus` (YAML lines), nobody pinning it from outside, after three deltas:
/// `table-drop` and the admin thread that took them are on `table`, and every other thread,
/// the workers among them, on `rest`.
async fn assert_split(cpus: &str, table: usize, rest: &[usize]) {
    let mut f = fixture(cpus).await;
    let pid = f.gw.pid().expect("running");
    f.add_tenants(3, "app-a").await;
    // Served: the proxy's workers have run.
    assert_eq!(f.upstream_of("t2.test").await.as_deref(), Some("app-a"));
    let all = threads(pid);
    assert_eq!(
        cpus_of(&all, "table-drop"),
        [&vec![table]],
        "{cpus}: {all:?}"
    );
    assert!(
        cpus_of(&all, "BG admin").contains(&&vec![table]),
        "{cpus}: {all:?}"
    );
    let others: Vec<_> = all
        .iter()
        .filter(|(n, _)| !n.starts_with("table-") && !n.starts_with("BG admin"))
        .collect();
    assert!(
        others.iter().any(|(n, _)| n.starts_with("realmgate")),
        "{all:?}"
    );
    assert!(
        others.iter().all(|(_, cpus)| cpus == rest),
        "{cpus}: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_cpus_pin_the_gateway_at_start_and_table_work_leaves_them() {
    let Some((workers, table)) = workers_and_table_cpus() else {
        return;
    };
    assert_split(
        &format!("  worker_cpus: [{workers}]\n  table_cpus: [{table}]\n"),
        table,
        &[workers],
    )
    .await;
    // Table CPUs alone are kept for table work: the rest runs on every other CPU.
    let rest: Vec<usize> = my_cpus().into_iter().filter(|&c| c != table).collect();
    assert_split(&format!("  table_cpus: [{table}]\n"), table, &rest).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_moves_to_the_table_cpus_for_any_request_not_only_table_pushes() {
    let Some((_, table)) = workers_and_table_cpus() else {
        return;
    };
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml: format!("  table_cpus: [{table}]\n"),
        ..GatewayOpts::default()
    })
    .await;
    // No table pushed: only probes and scrapes have reached the admin API.
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let reply = client
            .get(gw.admin_url(path))
            .send()
            .await
            .expect("admin API");
        assert_ne!(reply.status(), 404, "{path}");
    }
    let all = threads(gw.pid().expect("running"));
    assert!(cpus_of(&all, "BG admin").contains(&&vec![table]), "{all:?}");
}
