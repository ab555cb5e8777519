//! Certificate bench: realmctl's certificate provisioning against Pebble on loopback, with the
//! real PowerDNS and two real gateways. (a) Tenant creation → first HTTPS 200 through the
//! gateway with Pebble's chain, tenants one after another (median and p90); (b) many
//! certificates at once, issued and pushed to both gateways (total, certificates/s), each cut
//! into phases by a timing proxy in front of Pebble. Prints markdown.
//!
//! ```sh
//! export REALMGATE_POWERDNS_URL=… REALMGATE_POWERDNS_KEY_FILE=… REALMGATE_POWERDNS_DNS=…
//! REALMGATE_BIN=target/release/realmgate REALMCTL_BIN=target/release/realmctl \
//!   cargo run -p realmctl --example cert_bench -- [--sequential 20] [--bulk 1000] \
//!   [--max-parallel N] [--smoke]
//! ```
//! `--smoke`: 2 tenants and 10 certificates (a wiring check, e.g. with debug binaries).
//! Pebble runs with `PEBBLE_VA_NOSLEEP=1` (tests/setup/pebble.sh sets it): without it Pebble
//! sleeps up to 15 s at random before each validation. The tenants are deleted at the end.

mod harness;
mod phases;
mod proxy;

use harness::{Api, Pebble};
use phases::{breakdown, ms, quantile, Breakdown};
use realmgate_e2e::gateway::{Gateway, GatewayOpts};
use realmgate_e2e::process::{free_addrs, workspace_bin, Proc, TempDir};
use realmgate_e2e::upstream::Upstream;
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(name: &str, default: usize) -> Result<usize, String> {
    arg(name).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| format!("{name}: {v:?} is not a number"))
    })
}

fn env(k: &str) -> Result<String, String> {
    std::env::var(k)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!("{k} is not set: the bench needs the tests' PowerDNS (see tests/run)")
        })
}

/// The lowest table version every gateway has applied, sampled every 10 ms.
type Timeline = Arc<Mutex<Vec<(Instant, u64)>>>;

fn watch_gateways(api: Api) -> Timeline {
    let t: Timeline = Arc::default();
    let out = Arc::clone(&t);
    tokio::spawn(async move {
        loop {
            if let Ok((200, v)) = api.call(Method::GET, "/v1/gateways", None).await {
                let all = v["gateways"].as_array().cloned().unwrap_or_default();
                let min = all
                    .iter()
                    .map(|g| g["applied_version"].as_u64().unwrap_or(0))
                    .min();
                if let Some(min) = min.filter(|_| !all.is_empty()) {
                    out.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((Instant::now(), min));
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    t
}

/// When every gateway first had `version` applied.
fn applied_at(t: &Timeline, version: u64) -> Option<Instant> {
    let t = t.lock().unwrap_or_else(PoisonError::into_inner);
    t.iter().find(|(_, v)| *v >= version).map(|(at, _)| *at)
}

/// The breakdowns of `hosts` (host, created, served) from the proxy's events.
fn breakdowns(events: &[proxy::Event], hosts: &[(String, Instant, Instant)]) -> Vec<Breakdown> {
    let mut by_host: HashMap<&str, Vec<&proxy::Event>> = HashMap::new();
    for e in events {
        if let Some(h) = &e.host {
            by_host.entry(h.as_str()).or_default().push(e);
        }
    }
    hosts
        .iter()
        .filter_map(|(h, created, served)| {
            breakdown(
                by_host.get(h.as_str()).map_or(&[][..], |v| &v[..]),
                *created,
                *served,
            )
        })
        .collect()
}

/// (a): one tenant after another, creation → first HTTPS 200 through gateway 1.
async fn sequential(
    api: &Api,
    gw: &Gateway,
    root: &str,
    zone: &str,
    n: usize,
    ids: &mut Vec<String>,
) -> Result<Vec<(String, Instant, Instant)>, String> {
    let root = reqwest::Certificate::from_pem(root.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("cb{}a{i}", std::process::id());
        let host = format!("{id}.{zone}");
        // A new handshake per request (no pooled connection): each try sees what is served now.
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root.clone())
            .resolve(&host, gw.tls_addr())
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("https://{host}:{}/", gw.tls_addr().port());
        let created = Instant::now();
        api.create(&id, &host).await?;
        ids.push(id.clone());
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            if created.elapsed() > Duration::from_secs(120) {
                let (_, t) = api
                    .call(Method::GET, &format!("/v1/tenants/{id}"), None)
                    .await?;
                return Err(format!("{host}: no HTTPS 200 within 120 s; tenant: {t}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out.push((host, created, Instant::now()));
    }
    Ok(out)
}

/// (b): `n` tenants created back to back; done when every certificate is in the table and
/// every gateway applied it. Returns (host, created, served) and the total.
async fn bulk(
    api: &Api,
    timeline: &Timeline,
    zone: &str,
    n: usize,
    timeout: Duration,
    ids: &mut Vec<String>,
) -> Result<(Vec<(String, Instant, Instant)>, Duration), String> {
    let started = Instant::now();
    let names: Vec<String> = (0..n)
        .map(|i| format!("cb{}b{i}", std::process::id()))
        .collect();
    let creator = {
        let (api, names, zone) = (api.clone(), names.clone(), zone.to_owned());
        tokio::spawn(async move {
            let mut created = HashMap::new();
            for id in &names {
                api.create(id, &format!("{id}.{zone}")).await?;
                created.insert(id.clone(), Instant::now());
            }
            Ok::<_, String>(created)
        })
    };
    ids.extend(names.iter().cloned());
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut last_report = Instant::now();
    while versions.len() < n {
        if started.elapsed() > timeout {
            return Err(format!(
                "{} of {n} certificates after {timeout:?}",
                versions.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, list) = api.call(Method::GET, "/v1/certificates", None).await?;
        for c in list["certificates"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default();
            if name.starts_with(&format!("cb{}b", std::process::id())) {
                versions.insert(name.to_owned(), c["table_version"].as_u64().unwrap_or(0));
            }
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "cert_bench: {} of {n} certificates issued after {:.0} s",
                versions.len(),
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let created = creator.await.map_err(|e| e.to_string())??;
    let newest = versions.values().copied().max().unwrap_or(0);
    let end = loop {
        if let Some(at) = applied_at(timeline, newest) {
            break at;
        }
        if started.elapsed() > timeout {
            return Err(format!("the gateways never applied table version {newest}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut out = Vec::new();
    for id in &names {
        let served = applied_at(timeline, versions[id]).unwrap_or(end);
        out.push((format!("{id}.{zone}"), created[id], served));
    }
    Ok((out, end.saturating_duration_since(started)))
}

/// P-256 key and CSR, as realmctl makes them per certificate, timed here.
fn keygen_cost(n: u32) -> Result<Duration, String> {
    let started = Instant::now();
    for i in 0..n {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| e.to_string())?;
        let params = rcgen::CertificateParams::new(vec![format!("k{i}.bench.test")])
            .map_err(|e| e.to_string())?;
        params.serialize_request(&key).map_err(|e| e.to_string())?;
        let _ = key.serialize_pem();
    }
    Ok(started.elapsed() / n)
}

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split(':')
                .nth(1)
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = read("/proc/loadavg");
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("nproc {nproc} ({cpu}); loadavg {}", load.join(" "))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smoke = std::env::args().any(|a| a == "--smoke");
    let n_seq = number("--sequential", if smoke { 2 } else { 20 })?;
    let n_bulk = number("--bulk", if smoke { 10 } else { 1000 })?;
    let timeout = Duration::from_secs(number("--timeout-s", 3600)? as u64);
    let max_parallel = arg("--max-parallel");
    let (pdns_url, pdns_key, pdns_dns) = (
        env("REALMGATE_POWERDNS_URL")?,
        env("REALMGATE_POWERDNS_KEY_FILE")?,
        env("REALMGATE_POWERDNS_DNS")?,
    );
    let zone = env("REALMGATE_POWERDNS_ZONE").unwrap_or_else(|_| "realmgate.test".into());
    let realmctl_bin = workspace_bin("realmctl", "REALMCTL_BIN");
    let realmgate_bin = workspace_bin("realmgate", "REALMGATE_BIN");

    let dir = TempDir::new("cert-bench");
    let up = Upstream::start("cert-bench").await;
    let gw1 = Gateway::start_tls(GatewayOpts::default()).await;
    let gw2 = Gateway::start_tls(GatewayOpts::default()).await;
    // Pebble's http-01 validations go to gateway 1 (one port on loopback); realmctl still waits
    // for both gateways to apply each challenge table, as it would with real replicas.
    let pebble = Pebble::start(&dir.join("pebble"), &pdns_dns, gw1.listen_addr().port())?;
    let proxy =
        proxy::TimingProxy::start(&pebble.directory_url, &pebble.listener_ca, &pebble.dir).await?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| e.to_string())?;
    use base64::Engine as _;
    let key = dir.write(
        "secrets.key",
        base64::engine::general_purpose::STANDARD.encode(secret),
    );
    let token = hex::encode(&secret[..16]);
    let operator = dir.write("operator-token", &token);
    let gw_token = dir.write("gateway-token", GatewayOpts::default().token);
    let addr = free_addrs(1)[0];
    let parallel = max_parallel
        .as_ref()
        .map_or(String::new(), |n| format!("  max_parallel: {n}\n"));
    let conf = format!(
        "listen: {addr}\ndata_dir: {}\nadmin_token_file: {}\n\
         gateways:\n  urls: [\"http://{}\", \"http://{}\"]\n  token_file: {}\n\
         provision:\n  secrets_key_file: {}\n{parallel}\
         \x20 dns: {{provider: powerdns, api_url: \"{pdns_url}\", api_key_file: {pdns_key}, zone: {zone}, ttl: 5, addresses: [\"127.0.0.1\"]}}\n\
         certificates:\n  acme:\n    directory_url: \"{}\"\n    directory_ca_file: {}\n    contact: [\"mailto:ops@{zone}\"]\n",
        dir.join("realmctl-data").display(),
        operator.display(),
        gw1.admin_addr(),
        gw2.admin_addr(),
        gw_token.display(),
        key.display(),
        proxy.directory_url,
        pebble.listener_ca.display(),
    );
    let conf = dir.write("realmctl.yaml", conf);
    let mut rc = Proc::spawn(
        "realmctl",
        &realmctl_bin,
        &[
            OsString::from("serve"),
            OsString::from("--conf"),
            conf.into_os_string(),
        ],
        dir.path(),
    );
    let api = Api {
        base: format!("http://{addr}"),
        token,
        http: reqwest::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(api.call(Method::GET, "/healthz", None).await, Ok((200, _))) {
        if let Some(s) = rc.try_wait() {
            return Err(format!("realmctl exited ({s}):\n{}", rc.logs()));
        }
        if Instant::now() > deadline {
            return Err(format!("realmctl not healthy in 30 s:\n{}", rc.logs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/upstreams/app",
            Some(json!({"endpoints": [up.addr().to_string()]})),
        )
        .await?;
    if !(200..300).contains(&s) {
        return Err(format!("PUT /v1/upstreams/app: {s} {v}"));
    }
    let root = pebble.root_pem().await?;
    let timeline = watch_gateways(api.clone());

    let mut ids = Vec::new();
    let result = run(
        &api,
        &gw1,
        &root,
        &zone,
        &timeline,
        &proxy,
        (n_seq, n_bulk),
        timeout,
        &mut ids,
    )
    .await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "cert_bench: {e}\nrealmctl's log is in {}",
                dir.path().display()
            );
            eprintln!(
                "{}",
                rc.logs()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            cleanup(&api, &ids).await;
            return Err(e);
        }
    };
    println!("## Certificate bench\n");
    println!(
        "{}; realmctl {}, realmgate {}; Pebble v2.10.3 with PEBBLE_VA_NOSLEEP=1; PowerDNS at {pdns_dns}; runner max_parallel {}\n",
        machine(),
        realmctl_bin.display(),
        realmgate_bin.display(),
        max_parallel.as_deref().unwrap_or("8 (default)")
    );
    println!("{report}");
    cleanup(&api, &ids).await;
    drop(rc);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    api: &Api,
    gw1: &Gateway,
    root: &str,
    zone: &str,
    timeline: &Timeline,
    proxy: &proxy::TimingProxy,
    (n_seq, n_bulk): (usize, usize),
    timeout: Duration,
    ids: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::new();
    if n_seq > 0 {
        let hosts = sequential(api, gw1, root, zone, n_seq, ids).await?;
        let events = proxy.take();
        let times: Vec<Duration> = hosts
            .iter()
            .map(|(_, c, s)| s.saturating_duration_since(*c))
            .collect();
        out += &format!(
            "### (a) tenant created → first HTTPS 200 through the gateway, {n_seq} tenants one after another\n\n\
             median **{} ms**, p90 {} ms, min {} ms, max {} ms\n\n",
            ms(quantile(&times, 0.5)),
            ms(quantile(&times, 0.9)),
            ms(quantile(&times, 0.0)),
            ms(quantile(&times, 1.0)),
        );
        out += &phases::table(&breakdowns(&events, &hosts));
        out += "\n";
        out += &phases::requests(&events);
        out += "\n";
    }
    if n_bulk > 0 {
        let metric_names = [
            "realmctl_table_compile_seconds_sum",
            "realmctl_table_compile_seconds_count",
            "realmctl_push_seconds_sum",
            "realmctl_push_seconds_count",
        ];
        let mut before = Vec::new();
        for m in metric_names {
            before.push(api.metric(m).await);
        }
        let (hosts, total) = bulk(api, timeline, zone, n_bulk, timeout, ids).await?;
        let events = proxy.take();
        let mut after = Vec::new();
        for m in metric_names {
            after.push(api.metric(m).await);
        }
        let bytes = api.metric("realmctl_table_bytes").await;
        let d: Vec<f64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
        let acme: Duration = events.iter().map(|e| e.upstream).sum();
        out += &format!(
            "### (b) {n_bulk} certificates issued and pushed to two gateways\n\n\
             total **{:.1} s**, **{:.1} certificates/s** (first tenant created → every gateway applied the table with the last certificate)\n\n",
            total.as_secs_f64(),
            n_bulk as f64 / total.as_secs_f64()
        );
        out += &phases::table(&breakdowns(&events, &hosts));
        out += &format!(
            "\nrealmctl's own counters over (b): {:.0} table compiles, {:.1} s compiling ({:.1} ms each); \
             {:.0} pushes, {:.1} s pushing ({:.1} ms each; pushes to the two gateways overlap); \
             the last table {:.1} MB. Pebble's time over all ACME requests: {:.1} s. \
             A P-256 key and CSR (rcgen, in this bench process, {} build): {:.2} ms.\n\n",
            d[1],
            d[0],
            1000.0 * d[0] / d[1].max(1.0),
            d[3],
            d[2],
            1000.0 * d[2] / d[3].max(1.0),
            bytes / 1e6,
            acme.as_secs_f64(),
            if cfg!(debug_assertions) { "debug" } else { "release" },
            keygen_cost(200)?.as_secs_f64() * 1000.0,
        );
        out += &phases::requests(&events);
    }
    Ok(out)
}

/// Delete the bench's tenants (their DNS records and certificates go with them), 8 at a time.
async fn cleanup(api: &Api, ids: &[String]) {
    for chunk in ids.chunks(8) {
        let mut set = tokio::task::JoinSet::new();
        for id in chunk {
            let (api, id) = (api.clone(), id.clone());
            set.spawn(async move {
                api.call(Method::DELETE, &format!("/v1/tenants/{id}"), None)
                    .await
            });
        }
        while set.join_next().await.is_some() {}
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    for id in ids {
        while Instant::now() < deadline {
            match api
                .call(Method::GET, &format!("/v1/tenants/{id}"), None)
                .await
            {
                Ok((404, _)) | Err(_) => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}
