//! Certificates from a real ACME CA, across processes: Pebble v2.10.3 (tests/setup/pebble.sh,
//! validating for real: PEBBLE_VA_ALWAYS_VALID off) resolving tenant hosts through the real
//! PowerDNS the tests run (tests/setup/powerdns.sh), the real `realmctl` (its dns step writes
//! the A record, its certificate step orders) and the real `realmgate` (answers the http-01
//! challenge from the table on its plain listener, serves the certificate on its TLS one).
//!
//! Between realmctl and Pebble sits a small recording and fault-injecting proxy (it counts
//! new-order requests, and can answer 503 to everything as an unreachable CA would fail).
//!
//! PowerDNS comes from the environment tests/run sets (`REALMGATE_POWERDNS_*`); without it
//! these tests skip and say so, unless `REALMGATE_REQUIRE_PROVISION=1` makes that a failure.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as AxumMethod, StatusCode as AxumStatus, Uri};
use axum::response::IntoResponse;
use common::provision::wait_state;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Dns {
    api_url: String,
    key_file: String,
    server: String,
    zone: String,
}

fn dns(test: &str) -> Option<Dns> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let found = (|| {
        Some(Dns {
            api_url: var("REALMGATE_POWERDNS_URL")?,
            key_file: var("REALMGATE_POWERDNS_KEY_FILE")?,
            server: var("REALMGATE_POWERDNS_DNS")?,
            zone: var("REALMGATE_POWERDNS_ZONE").unwrap_or_else(|| "realmgate.test".into()),
        })
    })();
    if found.is_none() {
        let msg = format!("{test}: needs REALMGATE_POWERDNS_URL/_KEY_FILE/_DNS (run ./tests/run)");
        assert!(
            var("REALMGATE_REQUIRE_PROVISION").is_none(),
            "{msg}: required under tests/run"
        );
        eprintln!("SKIPPED {msg}");
    }
    found
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/setup/pebble.sh")
}

/// A Pebble started by tests/setup/pebble.sh; stopped on drop.
struct Pebble {
    dir: PathBuf,
    directory_url: String,
    listener_ca: PathBuf,
    management: String,
}

impl Pebble {
    fn start(dir: &TempDir, dns_server: &str, http_port: u16, nonce_reject: u8) -> Pebble {
        let state = dir.path().join("pebble");
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&state)
            .env("PEBBLE_DNS_SERVER", dns_server)
            .env("PEBBLE_HTTP_PORT", http_port.to_string())
            .env("PEBBLE_WFE_NONCEREJECT", nonce_reject.to_string())
            .output()
            .expect("run tests/setup/pebble.sh");
        assert!(
            out.status.success(),
            "pebble.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 3, "pebble.sh printed: {text}");
        Pebble {
            dir: state,
            directory_url: lines[0].to_owned(),
            listener_ca: PathBuf::from(lines[1]),
            management: lines[2].to_owned(),
        }
    }

    /// The root Pebble issues under (fresh at each start): what clients trust.
    async fn root_pem(&self) -> String {
        let ca = std::fs::read(&self.listener_ca).expect("listener CA");
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
            .build()
            .expect("client");
        http.get(format!("{}/roots/0", self.management))
            .send()
            .await
            .expect("GET /roots/0")
            .text()
            .await
            .expect("root")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// The recording and fault-injecting proxy in front of Pebble: TLS with Pebble's listener
/// certificate (so realmctl's `directory_ca_file` trusts both), every request forwarded over
/// HTTP/1.1 with its own Host (Pebble builds its URLs, and checks each JWS `url`, from it, so
/// every later request comes back here); orders the CA created (201 to new-order) counted; `down` answers 503 with a non-ACME body to everything.
struct FaultProxy {
    directory_url: String,
    new_orders: Arc<AtomicUsize>,
    /// Answers that refused a nonce (`badNonce`), which the client must retry.
    bad_nonces: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    new_orders: Arc<AtomicUsize>,
    bad_nonces: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

async fn forward(
    State(s): State<ProxyState>,
    method: AxumMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if s.down.load(Ordering::SeqCst) {
        return (AxumStatus::SERVICE_UNAVAILABLE, "fault proxy: CA down").into_response();
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let new_order = method == AxumMethod::POST && uri.path() == "/order-plz";
    let mut req = s
        .http
        .request(method, format!("{}{path}", s.upstream))
        .body(body);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status();
            // Orders the CA created: a new-order refused for its nonce (and retried) is not one.
            if new_order && status == reqwest::StatusCode::CREATED {
                s.new_orders.fetch_add(1, Ordering::SeqCst);
            }
            let mut out = HeaderMap::new();
            for (k, v) in r.headers() {
                if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                    out.append(k, v.clone());
                }
            }
            let body = r.bytes().await.unwrap_or_default();
            if String::from_utf8_lossy(&body).contains("urn:ietf:params:acme:error:badNonce") {
                s.bad_nonces.fetch_add(1, Ordering::SeqCst);
            }
            (status, out, body).into_response()
        }
        Err(e) => (AxumStatus::BAD_GATEWAY, format!("fault proxy: {e}")).into_response(),
    }
}

impl FaultProxy {
    async fn start(pebble: &Pebble) -> FaultProxy {
        let ca = std::fs::read(&pebble.listener_ca).expect("listener CA");
        let upstream = pebble.directory_url.trim_end_matches("/dir").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = ProxyState {
            upstream,
            // HTTP/2 would carry the URL's authority, not the Host header.
            http: reqwest::Client::builder()
                .http1_only()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
                .build()
                .expect("client"),
            new_orders: Arc::new(AtomicUsize::new(0)),
            bad_nonces: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
        };
        let tls = realmctl::tls::server_config(
            &pebble.dir.join("listener.pem"),
            &pebble.dir.join("listener.key"),
        )
        .expect("proxy TLS");
        let listener = realmctl::tls::TlsListener::new(listener, tls).expect("tls listener");
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy {
            directory_url: format!("https://{addr}/dir"),
            new_orders: state.new_orders,
            bad_nonces: state.bad_nonces,
            down: state.down,
        }
    }
}

/// realmctl's configuration: PowerDNS A records to 127.0.0.1 (the gateway), and ACME.
fn acme_yaml(dir: &TempDir, d: &Dns, pebble: &Pebble, directory_url: &str) -> String {
    let key = dir.write(
        "secrets.key",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    format!(
        "provision:\n  secrets_key_file: {}\n  initial_backoff_ms: 200\n  max_backoff_ms: 1000\n\
         \x20 dns: {{provider: powerdns, api_url: \"{}\", api_key_file: {}, zone: {}, ttl: 5, addresses: [\"127.0.0.1\"]}}\n\
         certificates:\n  acme:\n    directory_url: \"{directory_url}\"\n    directory_ca_file: {}\n\
         \x20   contact: [\"mailto:ops@realmgate.test\"]\n    challenge: http-01\n\
         \x20   challenge_wait_ms: 20000\n    validation_timeout_ms: 60000\n",
        key.display(),
        d.api_url,
        d.key_file,
        d.zone,
        pebble.listener_ca.display(),
    )
}

/// `GET https://host/` on the gateway's TLS listener, trusting only `root_pem`.
async fn https_get(gw: &Gateway, host: &str, root_pem: &str) -> Result<(u16, String), String> {
    let tls = gw.tls.expect("a TLS listener");
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(root_pem.as_bytes()).map_err(|e| e.to_string())?,
        )
        .resolve(host, tls)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let r = http
        .get(format!("https://{host}:{}/", tls.port()))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.unwrap_or_default()))
}

/// `GET http://host/<path>` on the gateway's plain listener.
async fn http_get(gw: &Gateway, host: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{}{path}", gw.listen))
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .expect("plain GET");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

async fn create_tenant(api: &Api, id: &str, host: &str) {
    let (st, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body(id, &[host], "app")),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
}

fn step<'a>(tenant: &'a Value, kind: &str) -> &'a Value {
    tenant["provisioning"]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == kind))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_tenant_gets_a_certificate_from_the_ca_and_is_served_over_https() {
    let Some(d) = dns("a_new_tenant_gets_a_certificate") else {
        return;
    };
    let dir = TempDir::new("acme-issue");
    let up = Upstream::start("acme-app").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 0);
    let proxy = FaultProxy::start(&pebble).await;
    let rc = Realmctl::start_with(
        &dir,
        &[&gw],
        &acme_yaml(&dir, &d, &pebble, &proxy.directory_url),
        &[],
    )
    .await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let id = format!("ac{}", std::process::id());
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    let t = wait_state(&api, &id, "ready", Duration::from_secs(90)).await;
    let cert = step(&t, "certificate");
    assert_eq!(cert["state"], "done", "{t}\n{}", rc.proc.log_text());
    assert_eq!(cert["provider"], "acme");

    // The certificate record, served by SNI: the chain verifies against Pebble's root.
    let (st, c) = api
        .call(Method::GET, &format!("/v1/certificates/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["hosts"], json!([host]));
    let v = c["table_version"].as_u64().expect("version");
    rc.wait_in_sync(v, Duration::from_secs(20)).await;
    let root = pebble.root_pem().await;
    let (status, _) = eventually(Duration::from_secs(20), "https 200", || async {
        https_get(&gw, &host, &root)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(proxy.new_orders.load(Ordering::SeqCst), 1);

    // The challenge answer left the table; any other token is 404.
    let (st, _) = http_get(
        &gw,
        &host,
        "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
    )
    .await;
    assert_eq!(st, 404);
    let (_, table) = api.call(Method::GET, "/v1/table?full=1", None).await;
    assert!(table["acme_challenges"].is_null(), "{table}");
    // Neither the account key nor the certificate key reached the log.
    assert!(!rc.proc.log_text().contains("PRIVATE KEY"));

    // The CA unreachable: a second tenant's certificate step fails with a clear error and is
    // retried; the first tenant is served all along; back up, the second gets its own.
    proxy.down.store(true, Ordering::SeqCst);
    let id2 = format!("ad{}", std::process::id());
    let host2 = format!("{id2}.{}", d.zone);
    create_tenant(&api, &id2, &host2).await;
    let t2 = wait_state(&api, &id2, "failed", Duration::from_secs(60)).await;
    let err = t2["provisioning"]["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("certificate: cannot reach the ACME CA at https://127.0.0.1:"),
        "{t2}"
    );
    let attempts = |t: &Value| step(t, "certificate")["attempts"].as_u64().unwrap_or(0);
    let first = attempts(&t2);
    eventually(Duration::from_secs(30), "a retry", || async {
        let (_, t) = api
            .call(Method::GET, &format!("/v1/tenants/{id2}"), None)
            .await;
        (attempts(&t) > first).then_some(())
    })
    .await;
    assert_eq!(
        https_get(&gw, &host, &root).await.map(|(s, _)| s),
        Ok(200),
        "what was serving keeps serving"
    );
    proxy.down.store(false, Ordering::SeqCst);
    wait_state(&api, &id2, "ready", Duration::from_secs(90)).await;
    let (status, _) = eventually(
        Duration::from_secs(20),
        "https 200 for the second",
        || async {
            https_get(&gw, &host2, &root)
                .await
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(proxy.new_orders.load(Ordering::SeqCst), 2);

    // Deprovisioning revokes (best effort) and deletes the certificate record.
    let (st, v) = api
        .call(Method::DELETE, &format!("/v1/tenants/{id2}"), None)
        .await;
    assert!(st.is_success(), "{v}");
    common::provision::wait_gone(&api, &id2, Duration::from_secs(60)).await;
    let (st, _) = api
        .call(Method::GET, &format!("/v1/certificates/{id2}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_between_order_and_finalise_resumes_the_same_order_despite_bad_nonces() {
    let Some(d) = dns("a_kill_between_order_and_finalise") else {
        return;
    };
    let dir = TempDir::new("acme-resume");
    let up = Upstream::start("acme-app2").await;
    let gw = Gateway::start_tls(&dir, "gw").await;
    // Pebble rejects half of all valid nonces with badNonce.
    let pebble = Pebble::start(&dir, &d.server, gw.listen.port(), 50);
    let proxy = FaultProxy::start(&pebble).await;
    let yaml = acme_yaml(&dir, &d, &pebble, &proxy.directory_url);
    let mut rc = Realmctl::start_with(
        &dir,
        &[&gw],
        &yaml,
        &[("REALMCTL_TEST_CRASH_AT", "certificate:ordered")],
    )
    .await;
    let api = rc.api();
    api.put_pool("app", up.addr).await;
    let id = format!("ar{}", std::process::id());
    let host = format!("{id}.{}", d.zone);
    create_tenant(&api, &id, &host).await;
    // realmctl dies right after journaling the order.
    for i in 0.. {
        if rc.proc.exited().is_some() {
            break;
        }
        assert!(
            i < 600,
            "realmctl never reached the crash point:\n{}",
            rc.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(proxy.new_orders.load(Ordering::SeqCst), 1);
    rc.restart().await;
    let t = wait_state(&rc.api(), &id, "ready", Duration::from_secs(90)).await;
    assert_eq!(step(&t, "certificate")["state"], "done", "{t}");
    assert_eq!(
        proxy.new_orders.load(Ordering::SeqCst),
        1,
        "the restart resumed the journaled order instead of placing another"
    );
    assert!(rc.proc.log_text().contains("resuming order"));
    assert!(
        proxy.bad_nonces.load(Ordering::SeqCst) > 0,
        "Pebble refused nonces, and the client retried them"
    );
    let root = pebble.root_pem().await;
    let (status, _) = eventually(Duration::from_secs(20), "https 200", || async {
        https_get(&gw, &host, &root)
            .await
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
}
