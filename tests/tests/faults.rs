//! Fault injection against the real gateway: the identity provider, realmctl, the gateway
//! itself (kill -9 mid-push), the state disk and an upstream fail while traffic flows; the
//! gateway keeps serving what it knows and never a half-written table.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use realmgate_e2e::tokens::access_claims;
use realmgate_e2e::{
    eventually, free_addrs, workspace_bin, Gateway, GatewayOpts, JwksServer, Pool, Proc, Table,
    TempDir, TestKey, Upstream,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// No request of these tests may take longer than this: a hang is a failure, not a wait.
const REQUEST_BOUND: Duration = Duration::from_secs(8);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_BOUND)
        .build()
        .expect("reqwest client")
}

/// GET on the data listener: `(status, body)`, or the transport error as text.
async fn get(
    http: &reqwest::Client,
    gw: SocketAddr,
    host: &str,
    path: &str,
    bearer: Option<&str>,
) -> Result<(u16, String), String> {
    let mut req = http.get(format!("http://{gw}{path}")).header("host", host);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.map_err(|e| format!("{e:?}"))?))
}

fn upstream_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["upstream"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("<not an echo: {body}>"))
}

// ---------------------------------------------------------------------------------------
// (a) The identity provider goes away mid-traffic

const ISS_ACME: &str = "http://id.test/realms/acme";
const ISS_NEWCO: &str = "http://id.test/realms/newco";

/// The realms' keys come from the harness's JWKS stand-in, not from the run's Keycloak: that
/// Keycloak is shared by every test of the run and cannot be stopped without breaking them.
#[tokio::test(flavor = "multi_thread")]
async fn identity_provider_down_cached_keys_verify_new_realms_get_503() {
    let up = Upstream::start("app").await;
    let idp = JwksServer::start().await;
    let key = TestKey::rs256("k1");
    idp.set_keys("/acme/certs", vec![key.jwk()]);
    idp.set_keys("/newco/certs", vec![key.jwk()]);
    // Key sets go stale after a second, so the outage below outlives the cache's freshness:
    // the gateway must keep the keys it has when a refetch fails.
    let gw = Gateway::start(GatewayOpts {
        gateway_yaml: "  auth:\n    jwks_ttl_min_s: 1\n    jwks_ttl_default_s: 1\n    \
                       jwks_refetch_interval_ms: 200\n    realm_timeout_ms: 1000\n"
            .into(),
        ..GatewayOpts::default()
    })
    .await;
    let tenant = |id: &str, iss: &str| {
        json!({"id": id, "hosts": [format!("{id}.test")],
               "realm": {"issuer": iss, "jwks_uri": idp.url(&format!("/{id}/certs")), "audiences": ["api"]},
               "routes": [{"prefix": "/", "upstream": "app", "auth": "jwt"}]})
    };
    gw.push_ok(
        &Table::new(1)
            .upstream("app", [up.addr()])
            .tenant_json(tenant("acme", ISS_ACME))
            .tenant_json(tenant("newco", ISS_NEWCO))
            .build(),
    )
    .await;
    let http = client();
    let addr = gw.listen_addr();
    let token = |sub: &str, iss: &str| key.sign(&access_claims(iss, sub, "api"));
    let (status, body) = get(
        &http,
        addr,
        "acme.test",
        "/",
        Some(&token("warm", ISS_ACME)),
    )
    .await
    .expect("warm-up request");
    assert_eq!(status, 200, "warm-up: {body}");
    assert!(
        idp.hits("/acme/certs") >= 1,
        "the acme keys were never fetched"
    );
    assert_eq!(
        idp.hits("/newco/certs"),
        0,
        "newco must be a realm never seen"
    );

    // Traffic from acme users, each request with a token never seen before (the verified-token
    // cache cannot answer: the signature is checked against the cached keys every time).
    let stop = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Result<u16, String>>>> = Arc::default();
    let traffic = {
        let (stop, results, http) = (stop.clone(), results.clone(), http.clone());
        let key = key.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while stop.load(Ordering::SeqCst) == 0 {
                n += 1;
                let t = key.sign(&access_claims(ISS_ACME, &format!("user-{n}"), "api"));
                let r = get(&http, addr, "acme.test", "/x", Some(&t)).await;
                let r = match r {
                    Ok((200, _)) => Ok(200),
                    Ok((s, b)) => Err(format!("{s}: {b}")),
                    Err(e) => Err(e),
                };
                results.lock().expect("results").push(r);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Down: the listener closes, and connections the gateway may still hold get 503s.
    idp.stop();
    idp.set_failing(true);
    let down_at = Instant::now();
    // Past the key set's freshness, with refetches failing.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let started = Instant::now();
    let r = get(
        &http,
        addr,
        "newco.test",
        "/",
        Some(&token("n1", ISS_NEWCO)),
    )
    .await
    .expect("newco request answered");
    let waited = started.elapsed();
    stop.store(1, Ordering::SeqCst);
    traffic.await.expect("acme traffic task");
    assert_eq!(
        r.0, 503,
        "a realm never seen while its provider is down: {}",
        r.1
    );
    let v: Value = serde_json::from_str(&r.1).expect("503 body is JSON");
    assert_eq!(v["error"], "realm_unavailable", "{v}");
    assert!(
        waited < REQUEST_BOUND,
        "the 503 took {waited:?}: bounded by the realm timeout"
    );

    let results = std::mem::take(&mut *results.lock().expect("results"));
    assert!(
        results.len() >= 20,
        "too little acme traffic during the outage: {}",
        results.len()
    );
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "acme requests failed: {failed:?}");
    // The outage was met: refetches of the stale acme keys (and newco's first fetch) failed.
    let errors = gw
        .metrics()
        .await
        .value("realmgate_jwks_fetches_total", &[("result", "error")]);
    assert!(
        errors >= 2.0,
        "JWKS fetch errors during the outage: {errors}"
    );
    // Still verifying now, well past the key set's freshness.
    let (status, body) = get(
        &http,
        addr,
        "acme.test",
        "/late",
        Some(&token("late", ISS_ACME)),
    )
    .await
    .expect("late acme request");
    assert_eq!(status, 200, "{body}");
    assert!(
        down_at.elapsed() > Duration::from_secs(2),
        "the outage must outlive the 1 s key-set freshness"
    );
}

// ---------------------------------------------------------------------------------------
// (b) realmctl stops: gateways keep serving

/// A `realmctl serve` pushing to one gateway.
struct Realmctl {
    proc: Proc,
    base: String,
    token: String,
    _dir: TempDir,
}

impl Realmctl {
    async fn start(addr: SocketAddr, gateway_admin: SocketAddr, gateway_token: &str) -> Realmctl {
        let dir = TempDir::new("faults-ctl");
        let token = "faults-operator-token-7d2e".to_owned();
        let admin = dir.write("operator-token", &token);
        let gw_token = dir.write("gateway-token", gateway_token);
        let conf = dir.write(
            "realmctl.yaml",
            format!(
                "listen: {addr}\ndata_dir: {}\nadmin_token_file: {}\ngateways:\n  urls: [\"http://{gateway_admin}\"]\n  \
                 token_file: {}\n  push: {{initial_backoff_ms: 50, max_backoff_ms: 250, resync_interval_ms: 1000, timeout_ms: 10000}}\n",
                dir.join("data").display(),
                admin.display(),
                gw_token.display()
            ),
        );
        let args: Vec<OsString> = vec!["serve".into(), "--conf".into(), conf.into()];
        let proc = Proc::spawn(
            "realmctl",
            &workspace_bin("realmctl", "REALMCTL_BIN"),
            &args,
            dir.path(),
        );
        let ctl = Realmctl {
            proc,
            base: format!("http://{addr}"),
            token,
            _dir: dir,
        };
        let http = client();
        eventually(Duration::from_secs(30), "realmctl /healthz", || async {
            let r = http.get(format!("{}/healthz", ctl.base)).send().await;
            r.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        ctl
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = client()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("realmctl {path}: {e}\n{}", self.proc.logs()));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn realmctl_down_gateways_keep_serving_and_restart_from_their_state() {
    let up = Upstream::start("app").await;
    let ctl_addr = free_addrs(1)[0];
    let opts = GatewayOpts {
        // The gateway asks realmctl for the current table at start: that must not be needed.
        gateway_yaml: format!("  control_url: \"http://{ctl_addr}\"\n"),
        ..GatewayOpts::default()
    };
    let token = opts.token.clone();
    let mut gw = Gateway::start(opts).await;
    let mut ctl = Realmctl::start(ctl_addr, gw.admin_addr(), &token).await;
    let (status, v) = ctl
        .call(
            reqwest::Method::PUT,
            "/v1/upstreams/app",
            json!({"endpoints": [up.addr().to_string()]}),
        )
        .await;
    assert!((200..300).contains(&status), "put pool: {status} {v}");
    let (status, v) = ctl
        .call(
            reqwest::Method::POST,
            "/v1/tenants",
            json!({"id": "acme", "hosts": ["acme.test"], "display_name": "Acme",
                   "routes": [{"prefix": "/", "upstream": "app", "auth": "public"}]}),
        )
        .await;
    assert_eq!(status, 201, "create tenant: {v}");
    let http = client();
    eventually(
        Duration::from_secs(10),
        "acme routed through realmctl's push",
        || async {
            let r = get(&http, gw.listen_addr(), "acme.test", "/", None).await;
            matches!(r, Ok((200, _))).then_some(())
        },
    )
    .await;
    let version = gw.table_info().await.1["version"].clone();

    ctl.proc.kill();
    // Served for a good while with realmctl gone (past its push resync interval).
    let until = Instant::now() + Duration::from_millis(2500);
    let mut n = 0;
    while Instant::now() < until {
        let r = get(&http, gw.listen_addr(), "acme.test", &format!("/{n}"), None).await;
        assert!(
            matches!(&r, Ok((200, b)) if upstream_of(b) == "app"),
            "request {n} with realmctl down: {r:?}"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A gateway restarted while realmctl is still down serves from its state file.
    gw.restart().await;
    gw.wait_ready().await;
    assert_eq!(gw.table_info().await.1["version"], version);
    let r = get(&http, gw.listen_addr(), "acme.test", "/after-restart", None).await;
    assert!(
        matches!(&r, Ok((200, b)) if upstream_of(b) == "app"),
        "after a restart with realmctl down: {r:?}\n{}",
        gw.logs()
    );
}

// ---------------------------------------------------------------------------------------
// (c) kill -9 while tables are being pushed

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Table `v`: acme answers on `v<v>.acme.test` (so the version served is visible in traffic),
/// padded with tenants so a write takes a while.
fn marked_table(v: u64, app: SocketAddr) -> String {
    let mut t = Table::new(v).upstream("app", [app]).tenant(
        "acme",
        &["acme.test", &format!("v{v}.acme.test")],
        &[("/", "app")],
    );
    for i in 0..300 {
        let host = format!("t{i}.pad.test");
        t = t.tenant(
            &format!("pad{i}"),
            &[&host],
            &[("/", "app"), ("/api/", "app")],
        );
    }
    t.build().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_pushes_restarts_on_the_last_acknowledged_table_or_later() {
    let up = Upstream::start("app").await;
    let opts = GatewayOpts::default();
    let token = opts.token.clone();
    let mut gw = Gateway::start(opts).await;
    let http = client();
    let mut next = 1u64;
    let mut acked_total = 0u64;
    for round in 0..5u64 {
        let admin = gw.admin_addr();
        let acked = Arc::new(AtomicU64::new(0));
        let sent: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
        let pusher = {
            let (acked, sent, token, http) =
                (acked.clone(), sent.clone(), token.clone(), http.clone());
            let app = up.addr();
            let first = next;
            tokio::spawn(async move {
                for v in first.. {
                    let body = marked_table(v, app);
                    sent.lock()
                        .expect("sent")
                        .insert(v, digest(body.as_bytes()));
                    let r = http
                        .put(format!("http://{admin}/v1/table"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().as_u16() == 200 => acked.store(v, Ordering::SeqCst),
                        Ok(r) => panic!("push of {v} answered {}", r.status()),
                        // The gateway died under us: the round is over.
                        Err(_) => return,
                    }
                }
            })
        };
        // Let a few pushes through, then kill at a point that varies per round.
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.load(Ordering::SeqCst) < next + 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..150))).await;
        gw.kill();
        tokio::time::timeout(REQUEST_BOUND, pusher)
            .await
            .expect("the pusher stops once the gateway is gone")
            .expect("pusher task");
        let acked = acked.load(Ordering::SeqCst);
        assert!(acked >= next, "round {round}: no push was acknowledged");

        gw.restart().await;
        gw.wait_ready().await;
        let (status, info) = gw.table_info().await;
        assert_eq!(status, 200, "{info}");
        let served = info["version"].as_u64().expect("version");
        let sent = sent.lock().expect("sent").clone();
        assert!(
            served >= acked,
            "round {round}: acknowledged {acked}, but restarted on {served}"
        );
        assert_eq!(
            info["digest"].as_str(),
            sent.get(&served).map(String::as_str),
            "round {round}: restarted on version {served}, whose bytes differ from the table pushed"
        );
        let host = format!("v{served}.acme.test");
        let r = get(&http, gw.listen_addr(), &host, "/", None).await;
        assert!(matches!(&r, Ok((200, _))), "round {round}: {host}: {r:?}");
        eprintln!(
            "round {round}: pushed from {next}, acknowledged up to {acked}, restarted on {served}"
        );
        acked_total += acked - next + 1;
        next = served + 1;
    }
    assert!(
        acked_total >= 10,
        "too few pushes acknowledged: {acked_total}"
    );
}

// ---------------------------------------------------------------------------------------
// (d) The state disk full, then read-only

/// A tmpfs mounted over a directory; unmounted on drop (also when the test panics).
struct Mount {
    at: PathBuf,
}

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
                &at.display().to_string(),
            ],
        );
        Mount { at: at.to_owned() }
    }

    fn remount(&self, opts: &str) {
        run(
            "mount",
            &[
                "-o",
                &format!("remount,{opts}"),
                &self.at.display().to_string(),
            ],
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l", &self.at.display().to_string()])
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Fill the file system holding `dir` until a write fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn state_disk_full_or_read_only_refuses_the_push_and_keeps_the_old_table() {
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED state_disk_full_or_read_only_refuses_the_push_and_keeps_the_old_table: \
             mounting a tmpfs needs root (tests/run and CI run as root) ***\n"
        );
        return;
    }
    let a = Upstream::start("app-a").await;
    let b = Upstream::start("app-b").await;
    let gw = Gateway::start(GatewayOpts::default()).await;
    let mount = Mount::tmpfs(gw.state_dir(), "256k");
    let table = |v: u64, to: &str| {
        Table::new(v)
            .upstream("app-a", [a.addr()])
            .upstream("app-b", [b.addr()])
            .tenant("acme", &["acme.test"], &[("/", to)])
            .build()
    };
    gw.push_ok(&table(1, "app-a")).await;
    assert_eq!(gw.echo("acme.test", "/").await.upstream, "app-a");

    let filler = fill(gw.state_dir());
    let (status, body) = gw.push(&table(2, "app-b")).await;
    assert_eq!(status, 500, "push onto a full disk: {body}");
    assert_eq!(body["error"], "persist_failed", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("state directory")),
        "the message says what failed: {body}"
    );
    assert_eq!(gw.table_info().await.1["version"], 1);
    assert_eq!(
        gw.echo("acme.test", "/").await.upstream,
        "app-a",
        "the old table serves"
    );

    // Space again: the same table is accepted.
    std::fs::remove_file(&filler).expect("remove filler");
    gw.push_ok(&table(2, "app-b")).await;
    assert_eq!(gw.echo("acme.test", "/").await.upstream, "app-b");

    mount.remount("ro");
    let (status, body) = gw.push(&table(3, "app-a")).await;
    assert_eq!(status, 500, "push onto a read-only disk: {body}");
    assert_eq!(body["error"], "persist_failed", "{body}");
    assert_eq!(gw.table_info().await.1["version"], 2);
    assert_eq!(
        gw.echo("acme.test", "/").await.upstream,
        "app-b",
        "the old table serves"
    );
    mount.remount("rw");
    gw.push_ok(&table(3, "app-a")).await;
    assert_eq!(gw.echo("acme.test", "/").await.upstream, "app-a");
    drop(mount);
}

// ---------------------------------------------------------------------------------------
// (e) An upstream flapping under traffic

#[tokio::test(flavor = "multi_thread")]
async fn flapping_upstream_requests_reach_the_healthy_one_and_none_hangs() {
    let steady = Upstream::start("steady").await;
    let flappy = Upstream::start("flappy").await;
    let gw = Gateway::start(GatewayOpts {
        health_check_interval_ms: 100,
        ..GatewayOpts::default()
    })
    .await;
    gw.push_ok(
        &Table::new(1)
            .pool(
                "app",
                Pool::new([steady.addr(), flappy.addr()])
                    .connect_timeout_ms(300)
                    .read_timeout_ms(2000),
            )
            .tenant("acme", &["acme.test"], &[("/", "app")])
            .build(),
    )
    .await;
    let addr = gw.listen_addr();
    let http = client();
    let stop = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (stop, http) = (stop.clone(), http.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<Result<(u16, String), String>> = Vec::new();
            let mut n = 0;
            while stop.load(Ordering::SeqCst) == 0 {
                let started = Instant::now();
                let r = get(&http, addr, "acme.test", &format!("/{c}/{n}"), None).await;
                assert!(started.elapsed() < REQUEST_BOUND, "a request hung: {r:?}");
                seen.push(r.map(|(s, b)| (s, upstream_of(&b))));
                n += 1;
            }
            seen
        }));
    }
    // Flap: down and up at uneven intervals, for about four seconds.
    let flapping_until = Instant::now() + Duration::from_secs(4);
    let mut flaps = 0;
    while Instant::now() < flapping_until {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..400))).await;
        flappy.stop().await;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..400))).await;
        flappy.resume().await;
        flaps += 1;
    }
    stop.store(1, Ordering::SeqCst);
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.expect("client task"));
    }
    let failures = all.iter().filter(|r| !matches!(r, Ok((200, _)))).count();
    eprintln!(
        "{flaps} flaps, {} requests, {failures} not 200: {:?}",
        all.len(),
        all.iter()
            .filter(|r| !matches!(r, Ok((200, _))))
            .collect::<Vec<_>>()
    );
    assert!(flaps >= 5, "only {flaps} flaps");
    assert!(all.len() >= 100, "too little traffic: {}", all.len());
    let transport: Vec<_> = all.iter().filter(|r| r.is_err()).collect();
    assert!(transport.is_empty(), "client-side failures: {transport:?}");
    // A connect failure, and a GET whose endpoint dies before answering, go once more to the
    // other endpoint (nginx's `proxy_next_upstream error timeout`): no client sees the flapping.
    let failed: Vec<_> = all
        .iter()
        .flatten()
        .filter(|(s, up)| *s != 200 || (up != "steady" && up != "flappy"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed while an endpoint flapped: {failed:?}",
        failed.len(),
        all.len()
    );
    // Down for good: every request goes to the healthy endpoint once the check notices.
    flappy.stop().await;
    eventually(
        Duration::from_secs(5),
        "30 requests in a row served by steady",
        || async {
            for _ in 0..30 {
                match get(&http, addr, "acme.test", "/after", None).await {
                    Ok((200, b)) if upstream_of(&b) == "steady" => {}
                    _ => return None,
                }
            }
            Some(())
        },
    )
    .await;
    // Back: it takes traffic again.
    flappy.resume().await;
    let before = flappy.hits();
    eventually(
        Duration::from_secs(5),
        "flappy back in rotation",
        || async {
            let r = get(&http, addr, "acme.test", "/back", None).await;
            assert!(matches!(r, Ok((200, _))), "{r:?}");
            (flappy.hits() > before).then_some(())
        },
    )
    .await;
}
