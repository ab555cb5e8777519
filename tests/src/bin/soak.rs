//! Soak: the real gateway under mixed traffic for minutes, its memory and descriptors sampled.
//!
//! ```text
//! cargo run -p realmgate-e2e --bin soak -- --minutes 10      # default 10; tests/run: 1
//! REALMGATE_BIN=target/release/realmgate cargo run -p realmgate-e2e --bin soak
//! ```
//!
//! Starts `realmgate` (`REALMGATE_BIN`, else the debug build), an echo upstream and a JWKS
//! stand-in, then drives public, `jwt` and `api_key` routes and shell navigations, pushes a
//! new table every few seconds with API keys added and removed, and keeps slow clients around
//! (headers dribbled a line a second, a request line never finished, idle keep-alives).
//! Every few seconds it prints the gateway's RSS (`VmRSS`) and open descriptors. It exits
//! non-zero when either grows without bound (the last third's median above the first third's
//! by more than a slack: 24 MiB or 20% for RSS, 24 descriptors), when descriptors do not come back near their baseline once the slow
//! clients are gone, when more than 1% of requests fail, or when the gateway dies.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use realmgate_e2e::tokens::access_claims;
use realmgate_e2e::{realmgate_bin, Gateway, GatewayOpts, JwksServer, Table, TestKey, Upstream};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ISS: &str = "http://id.test/realms/acme";
/// Concurrent traffic workers; each pauses between requests so the soak measures growth, not
/// the most a shared 2-core machine can take.
const WORKERS: usize = 4;
const PAUSE: Duration = Duration::from_millis(10);
const PUSH_EVERY: Duration = Duration::from_secs(3);
const KEYS: usize = 16;

struct Args {
    minutes: f64,
    sample_secs: Option<u64>,
    rss_slack_mb: f64,
    fd_slack: usize,
}

fn args() -> Args {
    let mut a = Args {
        minutes: 10.0,
        sample_secs: None,
        rss_slack_mb: 24.0,
        fd_slack: 24,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> f64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match flag.as_str() {
            "--minutes" => a.minutes = value("--minutes"),
            "--sample-secs" => a.sample_secs = Some(value("--sample-secs") as u64),
            "--rss-slack-mb" => a.rss_slack_mb = value("--rss-slack-mb"),
            "--fd-slack" => a.fd_slack = value("--fd-slack") as usize,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.minutes <= 0.0 {
        usage("--minutes must be positive");
    }
    a
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: soak [--minutes N (10)] [--sample-secs S] [--rss-slack-mb MB (24)] [--fd-slack N (24)]"
    );
    std::process::exit(2)
}

/// Counters by request kind.
#[derive(Default)]
struct Kind {
    ok: AtomicU64,
    /// Expected refusals (an API key removed by the last push).
    refused: AtomicU64,
    failed: AtomicU64,
}

#[derive(Default)]
struct Stats {
    public: Kind,
    jwt: Kind,
    api_key: Kind,
    shell: Kind,
    pushes: AtomicU64,
    push_failures: AtomicU64,
    persist_failures: AtomicU64,
    slow_clients: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

impl Stats {
    fn kinds(&self) -> [(&'static str, &Kind); 4] {
        [
            ("public", &self.public),
            ("jwt", &self.jwt),
            ("api_key", &self.api_key),
            ("shell", &self.shell),
        ]
    }

    fn total(&self) -> (u64, u64) {
        self.kinds().iter().fold((0, 0), |(n, f), (_, k)| {
            let ok = k.ok.load(Ordering::Relaxed) + k.refused.load(Ordering::Relaxed);
            let failed = k.failed.load(Ordering::Relaxed);
            (n + ok + failed, f + failed)
        })
    }

    fn fail(&self, kind: &Kind, what: String) {
        kind.failed.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
    }
}

/// An API key of the soak: its secret and whether the last pushed table holds it.
#[derive(Clone)]
struct ApiKey {
    id: String,
    secret: String,
    live: bool,
}

fn new_key(n: u64) -> ApiKey {
    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let secret: String = (0..43)
        .map(|_| char::from(B64URL[fastrand::usize(..B64URL.len())]))
        .collect();
    ApiKey {
        id: format!("soak-{n}"),
        secret: format!("rgk_{secret}"),
        live: true,
    }
}

fn table(version: u64, app: SocketAddr, jwks: &JwksServer, keys: &[ApiKey]) -> Value {
    let route =
        |prefix: &str, auth: &str| json!({"prefix": prefix, "upstream": "app", "auth": auth});
    let api_keys: Vec<Value> = keys
        .iter()
        .filter(|k| k.live)
        .map(|k| {
            json!({"id": k.id, "tenant": "acme", "namespaces": ["@acme"],
                   "digest": format!("sha256:{}", hex::encode(Sha256::digest(k.secret.as_bytes())))})
        })
        .collect();
    let mut t = Table::new(version)
        .upstream("app", [app])
        .tenant_json(json!({
            "id": "acme", "hosts": ["acme.test"],
            "realm": {"issuer": ISS, "jwks_uri": jwks.url("/acme/certs"), "audiences": ["api"]},
            "routes": [route("/", "public"), route("/api/", "jwt"),
                       {"prefix": "/@acme/", "upstream": "app", "auth": "api_key", "namespace": "@acme"}],
        }))
        .tenant("shell", &["shell.test"], &[("/", "app")])
        .with(
            "catalog",
            json!([{"name": "Todos", "path": "/todos/"}, {"name": "Notes", "path": "/notes/"}]),
        )
        .with("shell", json!({"enabled": true}))
        .build();
    t["api_keys"] = Value::Array(api_keys);
    t
}

/// The pid of the gateway started in `dir`: the process whose command line names a file there.
fn pid_in(dir: &Path) -> Option<u32> {
    let needle = dir.display().to_string();
    let found = std::fs::read_dir("/proc").ok().and_then(|entries| {
        entries.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("realmgate") && cmdline.contains(&needle)).then_some(pid)
        })
    });
    if found.is_none() {
        eprintln!("soak: cannot find the gateway's pid (no /proc entry names {needle})");
    }
    found
}

/// (RSS in MiB, open descriptors) of `pid`, `None` once it is gone.
fn sample(pid: u32) -> Option<(f64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((kb / 1024.0, fds))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

async fn traffic(
    worker: usize,
    gw: SocketAddr,
    stats: Arc<Stats>,
    tokens: Arc<Mutex<Vec<String>>>,
    keys: Arc<Mutex<Vec<ApiKey>>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(4)
        .build()
        .expect("client");
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let url = |path: &str| format!("http://{gw}{path}");
        match (n + worker as u64) % 4 {
            0 => {
                let r = http
                    .get(url(&format!("/pub/{worker}/{n}")))
                    .header("host", "acme.test")
                    .send()
                    .await;
                check(&stats, &stats.public, "public", r, &[200], &[]).await;
            }
            1 => {
                let token = {
                    let t = tokens.lock().unwrap_or_else(|p| p.into_inner());
                    t[fastrand::usize(..t.len())].clone()
                };
                let r = http
                    .get(url(&format!("/api/items/{n}")))
                    .header("host", "acme.test")
                    .bearer_auth(token)
                    .send()
                    .await;
                check(&stats, &stats.jwt, "jwt", r, &[200], &[]).await;
            }
            2 => {
                let key = {
                    let k = keys.lock().unwrap_or_else(|p| p.into_inner());
                    k[fastrand::usize(..k.len())].clone()
                };
                let r = http
                    .get(url(&format!("/@acme/things/{n}")))
                    .header("host", "acme.test")
                    .header("x-api-key", &key.secret)
                    .send()
                    .await;
                // A key churned out by the push in flight may still pass, or already fail.
                check(&stats, &stats.api_key, "api_key", r, &[200], &[401]).await;
            }
            _ => {
                let page = ["/", "/todos/", "/notes/x"][fastrand::usize(..3)];
                let r = http
                    .get(url(page))
                    .header("host", "shell.test")
                    .header("sec-fetch-dest", "document")
                    .header("accept", "text/html")
                    .send()
                    .await;
                check(&stats, &stats.shell, "shell", r, &[200], &[]).await;
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
}

async fn check(
    stats: &Stats,
    kind: &Kind,
    name: &str,
    r: reqwest::Result<reqwest::Response>,
    ok: &[u16],
    refused: &[u16],
) {
    match r {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Read the body whole, as a client would, so the gateway finishes the response.
            let body = resp.bytes().await;
            match body {
                Ok(_) if ok.contains(&status) => kind.ok.fetch_add(1, Ordering::Relaxed),
                Ok(_) if refused.contains(&status) => kind.refused.fetch_add(1, Ordering::Relaxed),
                Ok(b) => {
                    let text = String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
                    stats.fail(kind, format!("{name}: {status} {text}"));
                    0
                }
                Err(e) => {
                    stats.fail(kind, format!("{name}: body: {e}"));
                    0
                }
            };
        }
        Err(e) => stats.fail(kind, format!("{name}: {e}")),
    }
}

/// One round of slow clients, all at once: headers dribbled a line a second, a request line
/// left unfinished, keep-alive connections left idle. Each gives up after `hold`.
async fn slow_clients(gw: SocketAddr, stats: Arc<Stats>, hold: Duration) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        set.spawn(async move {
            let Ok(mut s) = TcpStream::connect(gw).await else {
                return;
            };
            let _ = s
                .write_all(format!("GET /pub/slow/{i} HTTP/1.1\r\nHost: acme.test\r\n").as_bytes())
                .await;
            let until = Instant::now() + hold;
            let mut line = 0;
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if s.write_all(format!("x-slow-{line}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                line += 1;
            }
            let _ = s.write_all(b"\r\n").await;
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        });
    }
    for i in 0..4 {
        set.spawn(async move {
            let Ok(mut s) = TcpStream::connect(gw).await else {
                return;
            };
            let _ = s
                .write_all(format!("GET /pub/half/{i} HT").as_bytes())
                .await;
            tokio::time::sleep(hold).await;
        });
    }
    for i in 0..8 {
        set.spawn(async move {
            let Ok(mut s) = TcpStream::connect(gw).await else {
                return;
            };
            let req = format!("GET /pub/idle/{i} HTTP/1.1\r\nHost: acme.test\r\n\r\n");
            if s.write_all(req.as_bytes()).await.is_err() {
                return;
            }
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            // Idle on a kept-alive connection until `hold` is over (or the gateway closes it).
            let _ = tokio::time::timeout(hold, s.read(&mut buf)).await;
        });
    }
    stats.slow_clients.fetch_add(20, Ordering::Relaxed);
    while set.join_next().await.is_some() {}
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    // Every process the soak started is stopped when `soak` returns (not on `exit`).
    let code = soak(args).await;
    std::process::exit(code)
}

/// The whole run; the exit code.
async fn soak(args: Args) -> i32 {
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let sample_every = Duration::from_secs(
        args.sample_secs
            .unwrap_or_else(|| (duration.as_secs() / 40).clamp(2, 15)),
    );
    let bin = realmgate_bin();
    println!(
        "soak: realmgate for {:.1} min, sampling every {}s; binary {}",
        args.minutes,
        sample_every.as_secs(),
        bin.display()
    );

    let app = Upstream::start("app").await;
    let jwks = JwksServer::start().await;
    let key = TestKey::rs256("k1");
    jwks.set_keys("/acme/certs", vec![key.jwk()]);
    let gw = Gateway::start(GatewayOpts::default()).await;
    let Some(pid) = pid_in(gw.dir().path()) else {
        return 1;
    };
    let addr = gw.listen_addr();

    let mut version = 1;
    let keys: Arc<Mutex<Vec<ApiKey>>> =
        Arc::new(Mutex::new((0..KEYS as u64).map(new_key).collect()));
    let mut key_serial = KEYS as u64;
    let first = table(version, app.addr(), &jwks, &keys.lock().expect("keys"));
    gw.push_ok(&first).await;

    let sign = |round: u64| -> Vec<String> {
        (0..20)
            .map(|i| key.sign(&access_claims(ISS, &format!("user-{round}-{i}"), "api")))
            .collect()
    };
    let tokens = Arc::new(Mutex::new(sign(0)));
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));

    // Warm-up: every kind once, then the baseline of descriptors with no slow client around.
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        workers.push(tokio::spawn(traffic(
            w,
            addr,
            stats.clone(),
            tokens.clone(),
            keys.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let Some((base_rss, base_fds)) = sample(pid) else {
        eprintln!("soak: the gateway died during warm-up\n{}", gw.logs());
        return 1;
    };

    let slow_stop = Arc::new(AtomicBool::new(false));
    let slow = {
        let (stats, slow_stop) = (stats.clone(), slow_stop.clone());
        let hold = Duration::from_secs(12).min(duration / 3);
        tokio::spawn(async move {
            while !slow_stop.load(Ordering::Relaxed) {
                slow_clients(addr, stats.clone(), hold).await;
            }
        })
    };

    println!(
        "\n{:>7} {:>9} {:>5} {:>9} {:>7} {:>7} {:>6}",
        "t (s)", "RSS (MiB)", "fds", "requests", "failed", "pushes", "table"
    );
    println!(
        "{:>7} {:>9.1} {:>5} {:>9} {:>7} {:>7} {:>6}   (baseline after warm-up)",
        0, base_rss, base_fds, "", "", "", version
    );
    let started = Instant::now();
    let mut next_push = Instant::now() + PUSH_EVERY;
    let mut next_sample = Instant::now() + sample_every;
    let mut next_tokens = Instant::now() + Duration::from_secs(60);
    let mut samples: Vec<(f64, f64, usize)> = Vec::new();
    let mut died = false;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if now >= next_push {
            next_push = now + PUSH_EVERY;
            // Key churn: two keys replaced by new ones, and each key in or out of the table.
            let body = {
                let mut k = keys.lock().expect("keys");
                for _ in 0..2 {
                    let i = fastrand::usize(..k.len());
                    k[i] = new_key(key_serial);
                    key_serial += 1;
                }
                for key in k.iter_mut() {
                    key.live = fastrand::u8(..10) < 7;
                }
                version += 1;
                table(version, app.addr(), &jwks, &k)
            };
            let (status, answer) = gw.push(&body).await;
            stats.pushes.fetch_add(1, Ordering::Relaxed);
            if status != 200 {
                // A full state disk (500 persist_failed) is the machine's doing, and the
                // gateway answers it as the contract says: reported, not failed. Anything
                // else is a refusal of a valid table. Leftovers in the state dir are
                // checked at the end.
                let disk = status == 500 && answer["error"] == "persist_failed";
                let counter = if disk {
                    &stats.persist_failures
                } else {
                    &stats.push_failures
                };
                counter.fetch_add(1, Ordering::Relaxed);
                println!("        push of table {version} refused: {status} {answer}");
            }
        }
        if now >= next_tokens {
            next_tokens = now + Duration::from_secs(60);
            let fresh = sign(started.elapsed().as_secs());
            *tokens.lock().expect("tokens") = fresh;
        }
        if now >= next_sample {
            next_sample = now + sample_every;
            let Some((rss, fds)) = sample(pid) else {
                died = true;
                break;
            };
            let (requests, failed) = stats.total();
            let t = started.elapsed().as_secs_f64();
            samples.push((t, rss, fds));
            println!(
                "{:>7.0} {:>9.1} {:>5} {:>9} {:>7} {:>7} {:>6}",
                t,
                rss,
                fds,
                requests,
                failed,
                stats.pushes.load(Ordering::Relaxed),
                version
            );
        }
    }

    // Quiet: the slow clients go, then the traffic; descriptors must come back.
    slow_stop.store(true, Ordering::Relaxed);
    slow.abort();
    let _ = slow.await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let mut quiet = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        quiet = sample(pid);
        if quiet.is_some_and(|(_, fds)| fds <= base_fds + args.fd_slack) {
            break;
        }
    }

    println!();
    for (name, k) in stats.kinds() {
        println!(
            "{name:>8}: {} ok, {} refused as expected, {} failed",
            k.ok.load(Ordering::Relaxed),
            k.refused.load(Ordering::Relaxed),
            k.failed.load(Ordering::Relaxed)
        );
    }
    println!(
        "  pushes: {} ({} refused, {} not persisted: state disk full); slow clients: {}",
        stats.pushes.load(Ordering::Relaxed),
        stats.push_failures.load(Ordering::Relaxed),
        stats.persist_failures.load(Ordering::Relaxed),
        stats.slow_clients.load(Ordering::Relaxed)
    );
    if let Some(f) = stats.last_failure.lock().expect("failure").as_ref() {
        println!("  last failure: {f}");
    }

    let mut problems = Vec::new();
    if died || quiet.is_none() {
        problems.push("the gateway died".to_owned());
    }
    let third = samples.len() / 3;
    if third == 0 {
        problems.push(format!("too few samples ({}): run longer", samples.len()));
    } else {
        let rss: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let fds: Vec<f64> = samples.iter().map(|s| s.2 as f64).collect();
        let (r0, r1) = (median(&rss[..third]), median(&rss[rss.len() - third..]));
        let (f0, f1) = (median(&fds[..third]), median(&fds[fds.len() - third..]));
        let rss_allowed = r0 + args.rss_slack_mb.max(r0 * 0.2);
        println!(
            "\nRSS median: first third {r0:.1} MiB, last third {r1:.1} MiB (allowed up to {rss_allowed:.1})"
        );
        println!(
            "fds median: first third {f0:.0}, last third {f1:.0} (allowed up to {:.0})",
            f0 + args.fd_slack as f64
        );
        if r1 > rss_allowed {
            problems.push(format!("RSS grows: {r0:.1} → {r1:.1} MiB"));
        }
        if f1 > f0 + args.fd_slack as f64 {
            problems.push(format!("descriptors grow: {f0:.0} → {f1:.0}"));
        }
    }
    if let Some((rss, fds)) = quiet {
        println!(
            "after the slow clients and traffic stopped: {fds} fds (baseline {base_fds}), RSS {rss:.1} MiB"
        );
        if fds > base_fds + args.fd_slack {
            problems.push(format!(
                "descriptors stay open after the clients left: {fds} (baseline {base_fds})"
            ));
        }
    }
    let (requests, failed) = stats.total();
    if requests == 0 || failed * 100 > requests {
        problems.push(format!(
            "{failed} of {requests} requests failed (more than 1%)"
        ));
    }
    if stats.push_failures.load(Ordering::Relaxed) > 0 {
        problems.push("valid table pushes were refused".to_owned());
    }
    // Every push rewrote the state file: nothing may pile up beside it.
    let state: Vec<(String, u64)> = std::fs::read_dir(gw.state_dir())
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default();
    println!("state dir: {state:?}");
    if state.len() > 2 || state.iter().map(|f| f.1).sum::<u64>() > 1 << 20 {
        problems.push(format!("the state dir grows: {state:?}"));
    }
    if problems.is_empty() {
        println!("\nsoak: PASS ({requests} requests)");
    } else {
        println!("\nsoak: FAIL");
        for p in &problems {
            println!("  - {p}");
        }
        if died {
            println!("{}", gw.logs());
        }
        return 1;
    }
    0
}
