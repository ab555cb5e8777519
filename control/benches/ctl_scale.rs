//! realmctl at scale: a registry of N tenants (inserted in bulk into the real libsql file),
//! the real realmctl serving it and pushing to two real gateways; then one-tenant changes
//! (`PATCH /v1/tenants/{id}` suspending a tenant), each timed from the API call until both
//! gateways answer the tenant's host as suspended (503). Reports the load time, the first
//! full push, and the change latency (median, p99, max) with the compile and push counters.
//!
//! ```text
//! cargo build -p realmctl -p realmgate
//! cargo bench -p realmctl --bench ctl_scale -- --tenants 1000000 --changes 200
//! cargo test -p realmctl --bench ctl_scale -- --smoke        # a small run in the debug build
//! cargo bench -p realmctl --bench ctl_scale -- --tenants 100000 --changes 0 --rate 10 --clients 8
//! ```
//!
//! `--rate S` adds the changes-per-second phase (`scale/rate.rs`): wrk on a gateway for up
//! to 5 s to warm it (not reported), then S seconds without changes, then S seconds with `--clients` API clients creating tenants,
//! suspending tenants and revoking API keys (`--keys` copies of a template key are in the
//! registry for it), then S seconds without changes again once every change has landed.
//! Its report has a row (requests/s, p50, p99, failed) for each of the three runs, and a last
//! line judging the p99 with changes against the band the two runs without span:
//! `within the band`, `below the band`, or `ABOVE the band, by N % of its top`.
//!
//! The binaries are `$REALMCTL_BIN` and `$REALMGATE_BIN` (else `target/debug/…`). realmctl's
//! push debounce (`--debounce-ms`) is, unless given: with `--rate`, the product's default
//! (100 ms), what an operator runs and what gathers a burst of changes into one version and
//! one delta per gateway; without, 1 ms (its least), so the one-change latency is the
//! pipeline's and not the debounce's wait.
//!
//! `--pin` places the data plane (the gateway wrk drives, wrk, the upstream) on core 0 and
//! the control plane (realmctl, this process's API clients, the second gateway) on core 1,
//! as in production where they are separate machines; the runs with and without changes
//! then have the same placement. Without it every process shares every core. Either way the
//! rate phase reports each process's CPU use in each run (`scale/placement.rs`).
//!
//! `--hold-traffic` (with `--rate`): once both gateways serve the full table, realmctl is
//! restarted pushing to the second gateway alone, so the gateway wrk drives applies no delta
//! while the changes flow. Beside a run without it, it tells the p99 rise the gateway's own
//! delta work causes from the one the control plane's load on the other core causes.
//!
//! `--delta-idle-ms N` sets both gateways' `delta_idle_ms`: their delta applies run at the
//! kernel's idle priority for up to N ms (where the process may come back from it; as root it
//! may). Off, as in the product's default, unless given. `--delta-yield-ms N` sets their
//! `delta_yield_ms` (how long a delta's apply yields a busy core; 1000 by default, 0: never).
//!
//! `--table-cpu N` sets both gateways' `table_cpus: [N]`: their table work (the admin API, a
//! delta's apply, freeing replaced snapshots, compaction) runs on CPU N, and their other
//! threads start on the rest. With `--pin`, `--table-cpu 1` keeps gateway 1's table work off
//! the data plane's core, as on a gateway machine that keeps a core for it; `--pin` then puts
//! every thread of each gateway on its plane's core, and the table work moves to CPU N again
//! as it runs.

#[path = "scale/placement.rs"]
mod placement;
#[path = "scale/rate.rs"]
mod rate;

use placement::{pin_process, pin_this_thread, Placement};

use realmgate_e2e::process::{free_addrs, Proc, TempDir};
use realmgate_e2e::realmctl::serve;
use realmgate_e2e::{Gateway, GatewayOpts, Upstream};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const OPERATOR_TOKEN: &str = "operator-token-for-the-scale-bench";
const TEMPLATE: &str = "tmpl";
/// The template's host: never changed, so it carries the traffic of the rate phase.
const TEMPLATE_HOST: &str = "tmpl.bench.test";

struct Args {
    tenants: u64,
    changes: usize,
    /// Seconds of each load run of the rate phase; 0: no rate phase.
    rate: u64,
    clients: usize,
    /// API keys in the registry (copies of a template key on the first tenants).
    keys: Option<u64>,
    /// realmctl's push debounce (`None`: 100 ms with `--rate`, else 1 ms).
    debounce_ms: Option<u64>,
    pin: bool,
    /// After the full push, realmctl pushes to the second gateway only (see `scale/rate.rs`).
    hold_traffic: bool,
    /// The gateways' `delta_idle_ms` (`None`: not set, the product's default).
    delta_idle_ms: Option<u64>,
    /// The gateways' `delta_yield_ms` (`None`: not set, the product's default).
    delta_yield_ms: Option<u64>,
    /// The gateways' `table_cpus` (one CPU; `None`: not set, the product's default).
    table_cpu: Option<u64>,
}

fn args() -> Args {
    let mut a = Args {
        tenants: 100_000,
        changes: 200,
        rate: 0,
        clients: 8,
        keys: None,
        debounce_ms: None,
        pin: false,
        hold_traffic: false,
        delta_idle_ms: None,
        delta_yield_ms: None,
        table_cpu: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match flag.as_str() {
            "--tenants" => a.tenants = number("--tenants"),
            "--changes" => a.changes = number("--changes") as usize,
            "--rate" => a.rate = number("--rate"),
            "--clients" => a.clients = number("--clients").max(1) as usize,
            "--keys" => a.keys = Some(number("--keys")),
            "--debounce-ms" => a.debounce_ms = Some(number("--debounce-ms").max(1)),
            "--pin" => a.pin = true,
            "--hold-traffic" => a.hold_traffic = true,
            "--delta-idle-ms" => a.delta_idle_ms = Some(number("--delta-idle-ms")),
            "--delta-yield-ms" => a.delta_yield_ms = Some(number("--delta-yield-ms")),
            "--table-cpu" => a.table_cpu = Some(number("--table-cpu")),
            "--smoke" => {
                a.tenants = 500;
                a.changes = 10;
            }
            // What `cargo bench` / `cargo test` pass to a harness-less target.
            "--bench" | "--nocapture" => {}
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.hold_traffic && a.rate == 0 {
        usage("--hold-traffic needs --rate");
    }
    a
}

fn usage(problem: &str) -> ! {
    eprintln!("ctl_scale: {problem}\nusage: ctl_scale [--tenants N] [--changes C] [--rate S] [--clients K] [--keys K] [--debounce-ms D] [--pin] [--hold-traffic] [--delta-idle-ms N] [--delta-yield-ms N] [--table-cpu N] [--smoke]");
    std::process::exit(2)
}

/// realmctl as a process on `dir`'s configuration.
struct Ctl {
    proc: Proc,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Ctl {
    async fn start(dir: &TempDir, gateways: &[&Gateway], token: &str, debounce_ms: u64) -> Ctl {
        let addr = free_addrs(1)[0];
        let admin = dir.write("operator-token", OPERATOR_TOKEN);
        let gw_token = dir.write("gateway-token", token);
        let urls: Vec<String> = gateways
            .iter()
            .map(|g| format!("\"{}\"", g.admin_url("")))
            .collect();
        let conf = dir.write(
            "realmctl.yaml",
            format!(
                "listen: {addr}\ndata_dir: {}\nadmin_token_file: {}\n\
                 gateways:\n  urls: [{}]\n  token_file: {}\n\
                 \x20 push: {{debounce_ms: {debounce_ms}, initial_backoff_ms: 50, max_backoff_ms: 500, timeout_ms: 600000}}\n",
                dir.join("data").display(),
                admin.display(),
                urls.join(", "),
                gw_token.display()
            ),
        );
        // Loading a million tenants takes minutes.
        let proc = serve(&conf, dir, addr, Duration::from_secs(3600)).await;
        let http = reqwest::Client::new();
        Ctl { proc, addr, http }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("http://{}{path}", self.addr))
            .bearer_auth(OPERATOR_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("realmctl answers");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Whether every gateway is in sync at `version` or later.
    async fn in_sync(&self, version: u64) -> bool {
        let v = self.call(reqwest::Method::GET, "/v1/gateways", None).await;
        v["gateways"].as_array().is_some_and(|gs| {
            gs.iter().all(|g| {
                g["in_sync"] == true && g["applied_version"].as_u64().is_some_and(|a| a >= version)
            })
        })
    }

    async fn metric(&self, name: &str) -> String {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// N copies of the template tenant (`b0000000` … with host `b0000000.bench.test`), written
/// straight into the registry file, with every row the template has in tables keyed by
/// tenant.
async fn bulk_insert(db_path: &std::path::Path, n: u64, keys: u64) -> Result<(), libsql::Error> {
    let db = libsql::Builder::new_local(db_path).build().await?;
    let conn = db.connect()?;
    let columns = |table: &'static str| {
        let conn = conn.clone();
        async move {
            let mut rows = conn
                .query(
                    &format!("SELECT name FROM pragma_table_info('{table}')"),
                    (),
                )
                .await?;
            let mut cols = Vec::new();
            while let Some(r) = rows.next().await? {
                cols.push(r.get::<String>(0)?);
            }
            Ok::<_, libsql::Error>(cols)
        }
    };
    let seq = format!(
        "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < {})",
        n - 1
    );
    let id = "printf('b%07d', seq.n)";
    conn.execute("BEGIN", ()).await?;
    let cols = columns("tenants").await?;
    let select: Vec<String> = cols
        .iter()
        .map(|c| match c.as_str() {
            "id" => id.to_owned(),
            "display_name" => id.to_owned(),
            other => format!("t.{other}"),
        })
        .collect();
    conn.execute(
        &format!(
            "{seq} INSERT INTO tenants ({}) SELECT {} FROM seq, tenants t WHERE t.id = '{TEMPLATE}'",
            cols.join(", "),
            select.join(", ")
        ),
        (),
    )
    .await?;
    conn.execute(
        &format!(
            "{seq} INSERT INTO tenant_hosts (host, tenant_id, position) SELECT {id} || '.bench.test', {id}, 0 FROM seq"
        ),
        (),
    )
    .await?;
    // Whatever else the template has by tenant (its provisioning state).
    let mut tables = conn
        .query(
            "SELECT m.name FROM sqlite_master m WHERE m.type = 'table' AND m.name NOT IN ('tenants', 'tenant_hosts', 'api_keys', 'tenant_domains', 'audit_log') AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) WHERE name = 'tenant_id')",
            (),
        )
        .await?;
    let mut others = Vec::new();
    while let Some(r) = tables.next().await? {
        others.push(r.get::<String>(0)?);
    }
    for table in others {
        let conn2 = conn.clone();
        let mut rows = conn2
            .query(
                &format!("SELECT name FROM pragma_table_info('{table}')"),
                (),
            )
            .await?;
        let mut cols = Vec::new();
        while let Some(r) = rows.next().await? {
            cols.push(r.get::<String>(0)?);
        }
        let select: Vec<String> = cols
            .iter()
            .map(|c| {
                if c == "tenant_id" {
                    id.to_owned()
                } else {
                    format!("t.{c}")
                }
            })
            .collect();
        let copied = conn
            .execute(
                &format!(
                    "{seq} INSERT INTO {table} ({}) SELECT {} FROM seq, {table} t WHERE t.tenant_id = '{TEMPLATE}'",
                    cols.join(", "),
                    select.join(", ")
                ),
                (),
            )
            .await?;
        eprintln!("  {table}: {copied} rows");
    }
    if keys > 0 {
        // Copies of the template's key (`k0000000` on `b0000000`, …), each its own digest.
        let cols = columns("api_keys").await?;
        let select: Vec<String> = cols
            .iter()
            .map(|c| match c.as_str() {
                "id" => "printf('k%07d', seq.n)".to_owned(),
                "digest" => "lower(hex(randomblob(32)))".to_owned(),
                "tenant_id" => id.to_owned(),
                other => format!("t.{other}"),
            })
            .collect();
        let seq = format!(
            "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < {})",
            keys.min(n) - 1
        );
        let copied = conn
            .execute(
                &format!(
                    "{seq} INSERT INTO api_keys ({}) SELECT {} FROM seq, api_keys t WHERE t.tenant_id = '{TEMPLATE}'",
                    cols.join(", "),
                    select.join(", ")
                ),
                (),
            )
            .await?;
        eprintln!("  api_keys: {copied} rows");
    }
    conn.execute("COMMIT", ()).await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let place = if a.pin {
        assert!(
            std::thread::available_parallelism().map_or(0, usize::from) >= 2,
            "--pin needs two cores"
        );
        Placement::pinned(0, 1)
    } else {
        Placement::SHARED
    };
    // This process (the API clients) on the control plane's core; the threads it starts
    // from here on inherit it, but for the upstream's, which moves to the data plane's.
    pin_process(std::process::id(), place.control);
    let debounce_ms = a.debounce_ms.unwrap_or(if a.rate > 0 { 100 } else { 1 });
    let dir = TempDir::new("ctl-scale");
    let up = upstream(place.data).await;
    let opts = GatewayOpts {
        health_check_interval_ms: 60_000,
        gateway_yaml: [
            ("delta_idle_ms", a.delta_idle_ms.map(|ms| ms.to_string())),
            ("delta_yield_ms", a.delta_yield_ms.map(|ms| ms.to_string())),
            ("table_cpus", a.table_cpu.map(|cpu| format!("[{cpu}]"))),
        ]
        .iter()
        .filter_map(|(key, value)| Some(format!("  {key}: {}\n", value.as_ref()?)))
        .collect(),
        ..GatewayOpts::default()
    };
    let token = opts.token.clone();
    let g1 = Gateway::start(opts.clone()).await;
    let g2 = Gateway::start(opts).await;
    let pids = [&g1, &g2]
        .map(|g| placement::child_listening(g.admin_addr().port()).expect("the gateway's process"));
    pin_process(pids[0], place.data);
    pin_process(pids[1], place.control);

    // The registry: one pool and a template tenant made by realmctl itself, then copies.
    {
        let ctl = Ctl::start(&dir, &[], &token, 1).await;
        let pool = json!({"endpoints": [up.to_string()]});
        ctl.call(reqwest::Method::PUT, "/v1/upstreams/app", Some(pool))
            .await;
        let t = json!({"id": TEMPLATE, "hosts": ["tmpl.bench.test"], "display_name": TEMPLATE,
            "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]});
        ctl.call(reqwest::Method::POST, "/v1/tenants", Some(t))
            .await;
        let key = json!({"tenant": TEMPLATE, "namespaces": ["*"]});
        ctl.call(reqwest::Method::POST, "/v1/keys", Some(key)).await;
        let mut proc = ctl.proc;
        proc.kill();
    }
    let started = Instant::now();
    let keys = a
        .keys
        .unwrap_or(if a.rate > 0 { a.tenants.min(20_000) } else { 0 });
    bulk_insert(&dir.join("data").join("registry.db"), a.tenants, keys)
        .await
        .expect("bulk insert");
    let inserted = started.elapsed();
    eprintln!("inserted {} tenants in {inserted:?}", a.tenants);

    let started = Instant::now();
    let ctl = Ctl::start(&dir, &[&g1, &g2], &token, debounce_ms).await;
    let ctl_pid = ctl.proc.id().expect("realmctl's process");
    pin_process(ctl_pid, place.control);
    let loaded = started.elapsed();
    eprintln!(
        "realmctl serving {} tenants after {loaded:?}",
        a.tenants + 1
    );
    let version = ctl
        .call(reqwest::Method::GET, "/v1/tenants?limit=1", None)
        .await;
    drop(version);
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !ctl.in_sync(1).await {
        assert!(Instant::now() < deadline, "gateways never in sync");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_push = started.elapsed();
    eprintln!("both gateways serve the full table {first_push:?} after realmctl's start");

    let client = reqwest::Client::new();
    let mut took = Vec::with_capacity(a.changes);
    for i in 0..a.changes {
        // The lower half: the rate phase suspends tenants of the upper one.
        let n = (i as u64 * 7919 + 13) % (a.tenants / 2).max(1);
        let id = format!("b{n:07}");
        let host = format!("{id}.bench.test");
        let t0 = Instant::now();
        ctl.call(
            reqwest::Method::PATCH,
            &format!("/v1/tenants/{id}"),
            Some(json!({"status": "suspended"})),
        )
        .await;
        let mut pending = vec![&g1, &g2];
        while !pending.is_empty() {
            let mut still = Vec::new();
            for g in pending {
                let status = client
                    .get(g.url("/"))
                    .header("host", &host)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                if status != 503 {
                    still.push(g);
                }
            }
            pending = still;
            if !pending.is_empty() {
                // Not a busy loop: on two cores it would take one from realmctl and the
                // gateways (the timer's granularity, 1 ms, is the most this adds).
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "{id} never suspended"
            );
        }
        took.push(t0.elapsed());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let first = took.first().copied().unwrap_or_default();
    let mut failed = false;
    let rest_max = took.iter().skip(1).max().copied().unwrap_or_default();
    took.sort();
    println!(
        "ctl_scale: {} tenants (+1 template), 2 gateways, {} one-tenant changes (API call -> both gateways answer 503); push debounce {debounce_ms} ms; {}{}",
        a.tenants,
        a.changes,
        place.describe(),
        a.table_cpu
            .map(|cpu| format!("; the gateways' table work on CPU {cpu} (table_cpus)"))
            .unwrap_or_default()
    );
    println!("  bulk insert: {inserted:.2?}; realmctl start (registry load): {loaded:.2?}; first full push to both: {first_push:.2?}");
    if !took.is_empty() {
        println!(
            "  change latency: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(percentile(&took, 0.5)),
            ms(percentile(&took, 0.99)),
            ms(percentile(&took, 1.0))
        );
        println!(
            "  the first change: {:.1} ms; the slowest of the others: {:.1} ms",
            ms(first),
            ms(rest_max)
        );
    }
    println!(
        "  realmctl: {}",
        ctl.metric("realmctl_table_pushes_total").await
    );
    if a.rate > 0 {
        let (ctl, ctl_pid, pushed) = if a.hold_traffic {
            drop(ctl);
            let ctl = Ctl::start(&dir, &[&g2], &token, debounce_ms).await;
            let pid = ctl.proc.id().expect("realmctl's process");
            pin_process(pid, place.control);
            eprintln!("realmctl restarted, pushing to gateway 2 only (--hold-traffic)");
            (ctl, pid, vec![&g2])
        } else {
            (ctl, ctl_pid, vec![&g1, &g2])
        };
        let plan = rate::Plan {
            seconds: a.rate,
            clients: a.clients,
            suspend_from: a.tenants / 2,
            tenants: a.tenants,
            keys,
            place,
            held: a.hold_traffic,
            cpu: placement::Cpu::new(vec![
                ("realmctl".into(), ctl_pid),
                ("gateway 1 (wrk's)".into(), pids[0]),
                ("gateway 2".into(), pids[1]),
                ("bench (API clients, upstream)".into(), std::process::id()),
            ]),
        };
        failed |= !rate::run(std::sync::Arc::new(ctl), &g1, &pushed, plan).await;
    }
    if failed {
        eprintln!("ctl_scale: FAILED (a failed request, or a change missing on a gateway)");
        std::process::exit(1);
    }
}

/// The upstream, on a thread of its own (pinned to `core`) with its own runtime, so that with
/// `--pin` it serves on the data plane's core while the API clients run on the other.
async fn upstream(core: Option<usize>) -> SocketAddr {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("upstream".into())
        .spawn(move || {
            pin_this_thread(core);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the upstream's runtime");
            rt.block_on(async move {
                let up = Upstream::start("a").await;
                let _ = tx.send(up.addr());
                std::future::pending::<()>().await;
            });
        })
        .expect("the upstream's thread");
    rx.await.expect("the upstream started")
}
