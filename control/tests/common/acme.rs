//! The ACME tests' parts: the PowerDNS they need from the environment, a real Pebble
//! (tests/setup/pebble.sh), the recording and fault-injecting proxy in front of it, and the
//! HTTP(S) calls through the gateway, the domain owner's DNS, and `realmctl` as a CLI.

use super::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as AxumMethod, StatusCode as AxumStatus, Uri};
use axum::response::IntoResponse;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Dns {
    pub api_url: String,
    pub key_file: String,
    pub server: String,
    pub zone: String,
}

pub fn dns(test: &str) -> Option<Dns> {
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

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/setup/pebble.sh")
}

/// A Pebble started by tests/setup/pebble.sh; stopped on drop.
pub struct Pebble {
    pub dir: PathBuf,
    pub directory_url: String,
    pub listener_ca: PathBuf,
    pub management: String,
}

impl Pebble {
    pub fn start(dir: &TempDir, dns_server: &str, http_port: u16, nonce_reject: u8) -> Pebble {
        Pebble::start_with(dir, dns_server, http_port, nonce_reject, None)
    }

    /// With certificates valid for `validity_s` seconds (Pebble's default: 90 days).
    pub fn start_with(
        dir: &TempDir,
        dns_server: &str,
        http_port: u16,
        nonce_reject: u8,
        validity_s: Option<u64>,
    ) -> Pebble {
        let state = dir.path().join("pebble");
        let mut cmd = Command::new("bash");
        if let Some(v) = validity_s {
            cmd.env("PEBBLE_VALIDITY_S", v.to_string());
        }
        let out = cmd
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
    pub async fn root_pem(&self) -> String {
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
/// `refuse_orders` (a problem document with its `status`) refuses every new-order while set,
/// as a CA refuses for CAA or a rejected identifier; `hold_challenges` holds each "challenge
/// ready" request (Pebble's `/chalZ/`) while set, so a test acts while an order is in flight.
pub struct FaultProxy {
    pub directory_url: String,
    pub new_orders: Arc<AtomicUsize>,
    /// Answers that refused a nonce (`badNonce`), which the client must retry.
    pub bad_nonces: Arc<AtomicUsize>,
    pub down: Arc<AtomicBool>,
    /// The next this-many new-order requests are refused as a rate-limited CA would refuse
    /// them (429, a `rateLimited` problem, `Retry-After: 2`).
    pub rate_limit_orders: Arc<AtomicUsize>,
    pub refuse_orders: Arc<Mutex<Option<Value>>>,
    /// New-order requests refused by `refuse_orders` or `rate_limit_orders`.
    pub refused_orders: Arc<AtomicUsize>,
    pub hold_challenges: Arc<AtomicBool>,
    /// "Challenge ready" requests held so far.
    pub held_challenges: Arc<AtomicUsize>,
    /// Created orders whose request named a certificate they replace (ARI `replaces`).
    pub replacing_orders: Arc<AtomicUsize>,
    /// Renewal information (ARI) the CA answered.
    pub renewal_infos: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    new_orders: Arc<AtomicUsize>,
    bad_nonces: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    rate_limit_orders: Arc<AtomicUsize>,
    refuse_orders: Arc<Mutex<Option<Value>>>,
    refused_orders: Arc<AtomicUsize>,
    hold_challenges: Arc<AtomicBool>,
    held_challenges: Arc<AtomicUsize>,
    replacing_orders: Arc<AtomicUsize>,
    renewal_infos: Arc<AtomicUsize>,
}

/// Whether a JWS request body's payload has a `replaces` field.
fn names_replaces(body: &[u8]) -> bool {
    use base64::Engine as _;
    let payload = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["payload"].as_str().map(str::to_owned))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok());
    payload.is_some_and(|p| p.get("replaces").is_some())
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
    if method == AxumMethod::POST && uri.path().starts_with("/chalZ/") {
        if s.hold_challenges.load(Ordering::SeqCst) {
            s.held_challenges.fetch_add(1, Ordering::SeqCst);
        }
        while s.hold_challenges.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let refusal = s.refuse_orders.lock().map(|r| r.clone()).unwrap_or(None);
    if let Some(problem) = refusal.filter(|_| new_order) {
        s.refused_orders.fetch_add(1, Ordering::SeqCst);
        let status = problem["status"].as_u64().unwrap_or(403) as u16;
        return (
            AxumStatus::from_u16(status).unwrap_or(AxumStatus::FORBIDDEN),
            [("content-type", "application/problem+json")],
            problem.to_string(),
        )
            .into_response();
    }
    if new_order {
        let limited = s
            .rate_limit_orders
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if limited {
            s.refused_orders.fetch_add(1, Ordering::SeqCst);
            let problem = serde_json::json!({
                "type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "fault proxy: too many new orders recently",
                "status": 429,
            });
            return (
                AxumStatus::TOO_MANY_REQUESTS,
                [
                    ("content-type", "application/problem+json"),
                    ("retry-after", "2"),
                ],
                problem.to_string(),
            )
                .into_response();
        }
    }
    let replacing = new_order && names_replaces(&body);
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
                if replacing {
                    s.replacing_orders.fetch_add(1, Ordering::SeqCst);
                }
            }
            // Pebble's ARI resource: `/draft-ietf-acme-ari-NN/renewalInfo/<id>`.
            if status.is_success() && path.contains("renewalInfo") {
                s.renewal_infos.fetch_add(1, Ordering::SeqCst);
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
    pub async fn start(pebble: &Pebble) -> FaultProxy {
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
            rate_limit_orders: Arc::new(AtomicUsize::new(0)),
            refuse_orders: Arc::default(),
            refused_orders: Arc::default(),
            hold_challenges: Arc::default(),
            held_challenges: Arc::default(),
            replacing_orders: Arc::new(AtomicUsize::new(0)),
            renewal_infos: Arc::new(AtomicUsize::new(0)),
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
            rate_limit_orders: state.rate_limit_orders,
            refuse_orders: state.refuse_orders,
            refused_orders: state.refused_orders,
            hold_challenges: state.hold_challenges,
            held_challenges: state.held_challenges,
            replacing_orders: state.replacing_orders,
            renewal_infos: state.renewal_infos,
        }
    }
}

/// realmctl's configuration: PowerDNS A records to 127.0.0.1 (the gateway), and ACME.
pub fn acme_yaml(dir: &TempDir, d: &Dns, pebble: &Pebble, directory_url: &str) -> String {
    acme_yaml_with(dir, d, pebble, directory_url, "")
}

/// With more `certificates.acme` keys (`extra`: lines indented four spaces).
pub fn acme_yaml_with(
    dir: &TempDir,
    d: &Dns,
    pebble: &Pebble,
    directory_url: &str,
    extra: &str,
) -> String {
    let key = dir.write(
        "secrets.key",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    format!(
        "provision:\n  secrets_key_file: {}\n  initial_backoff_ms: 200\n  max_backoff_ms: 1000\n\
         \x20 dns: {{provider: powerdns, api_url: \"{}\", api_key_file: {}, zone: {}, ttl: 5, addresses: [\"127.0.0.1\"]}}\n\
         certificates:\n  acme:\n    directory_url: \"{directory_url}\"\n    directory_ca_file: {}\n\
         \x20   contact: [\"mailto:ops@realmgate.test\"]\n    challenge: http-01\n\
         \x20   challenge_wait_ms: 20000\n    validation_timeout_ms: 60000\n{extra}",
        key.display(),
        d.api_url,
        d.key_file,
        d.zone,
        pebble.listener_ca.display(),
    )
}

/// [`acme_yaml`] with custom domains checked through `d`'s DNS server, a short deadline and
/// quick rechecks.
pub fn domains_yaml(dir: &TempDir, d: &Dns, pebble: &Pebble, directory_url: &str) -> String {
    format!(
        "{}domains:\n  resolver: \"{}\"\n  check_for_ms: 60000\n  check_initial_ms: 200\n  check_max_ms: 1000\n",
        acme_yaml(dir, d, pebble, directory_url),
        d.server
    )
}

/// The domain owner's DNS: a zone of its own in the tests' PowerDNS.
pub struct OwnerDns {
    api: String,
    key: String,
    zone: String,
}

impl OwnerDns {
    pub async fn create(d: &Dns, zone: &str) -> OwnerDns {
        let key = std::fs::read_to_string(&d.key_file)
            .expect("PowerDNS key")
            .trim()
            .to_owned();
        let o = OwnerDns {
            api: d.api_url.trim_end_matches('/').to_owned(),
            key,
            zone: format!("{zone}."),
        };
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/servers/localhost/zones", o.api))
            .header("X-API-Key", &o.key)
            .json(&serde_json::json!({"name": o.zone, "kind": "Native", "nameservers": [format!("ns1.{}", o.zone)]}))
            .send()
            .await
            .expect("PowerDNS");
        assert!(
            r.status().is_success(),
            "create zone: {}",
            r.text().await.unwrap_or_default()
        );
        o
    }

    pub async fn set(&self, name: &str, ty: &str, content: &str) {
        let r = reqwest::Client::new()
            .patch(format!(
                "{}/api/v1/servers/localhost/zones/{}",
                self.api, self.zone
            ))
            .header("X-API-Key", &self.key)
            .json(
                &serde_json::json!({"rrsets": [{"name": format!("{name}."), "type": ty, "ttl": 1,
                "changetype": "REPLACE", "records": [{"content": content, "disabled": false}]}]}),
            )
            .send()
            .await
            .expect("PowerDNS");
        assert!(
            r.status().is_success(),
            "set {name} {ty}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    pub async fn delete(self) {
        let _ = reqwest::Client::new()
            .delete(format!(
                "{}/api/v1/servers/localhost/zones/{}",
                self.api, self.zone
            ))
            .header("X-API-Key", &self.key)
            .send()
            .await;
    }
}

/// `domain` as `GET /v1/tenants/{tenant}/domains` lists it (`Null`: not listed).
pub async fn domain_of(api: &Api, tenant: &str, domain: &str) -> Value {
    let (st, v) = api
        .call(Method::GET, &format!("/v1/tenants/{tenant}/domains"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["domains"]
        .as_array()
        .and_then(|l| l.iter().find(|d| d["domain"] == domain).cloned())
        .unwrap_or(Value::Null)
}

/// `realmctl <args>` as an operator runs it against `api`: its standard output (it must
/// succeed).
pub async fn realmctl_cli(api: &Api, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realmctl"));
    cmd.args(args)
        .env("REALMCTL_URL", &api.base)
        .env("REALMCTL_TOKEN", &api.token)
        .env_remove("REALMCTL_TOKEN_FILE");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run realmctl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "realmctl {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What one `GET https://host/` on a TLS listener got: the status, the body and the
/// certificate the listener presented (DER).
pub struct Served {
    pub status: u16,
    pub body: String,
    pub certificate: Vec<u8>,
}

/// The certificate `gw` serves for `host` (DER), once it answers 200 with one (20 s).
pub async fn served_certificate(gw: &Gateway, host: &str, root: &str) -> Vec<u8> {
    eventually(
        Duration::from_secs(20),
        &format!("https 200 for {host}"),
        || async {
            https_served(gw.tls.expect("a TLS listener"), host, root)
                .await
                .ok()
                .filter(|s| s.status == 200)
                .map(|s| s.certificate)
        },
    )
    .await
}

/// `GET https://host/` on the TLS listener at `tls`, trusting only `root_pem`. A client per
/// call: every call is a new handshake, so it sees the certificate served now.
pub async fn https_served(
    tls: std::net::SocketAddr,
    host: &str,
    root_pem: &str,
) -> Result<Served, String> {
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(root_pem.as_bytes()).map_err(|e| e.to_string())?,
        )
        .tls_info(true)
        .resolve(host, tls)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let r = http
        .get(format!("https://{host}:{}/", tls.port()))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let certificate = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
        .ok_or("no peer certificate")?;
    let status = r.status().as_u16();
    Ok(Served {
        status,
        body: r.text().await.unwrap_or_default(),
        certificate,
    })
}

/// `GET https://host/` on the gateway's TLS listener, trusting only `root_pem`.
pub async fn https_get(gw: &Gateway, host: &str, root_pem: &str) -> Result<(u16, String), String> {
    let s = https_served(gw.tls.expect("a TLS listener"), host, root_pem).await?;
    Ok((s.status, s.body))
}

/// `GET http://host/<path>` on the gateway's plain listener.
pub async fn http_get(gw: &Gateway, host: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{}{path}", gw.listen))
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .expect("plain GET");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

pub async fn create_tenant(api: &Api, id: &str, host: &str) {
    let (st, v) = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant_body(id, &[host], "app")),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
}

pub fn step<'a>(tenant: &'a Value, kind: &str) -> &'a Value {
    tenant["provisioning"]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == kind))
        .unwrap_or(&Value::Null)
}

/// The TXT values PowerDNS holds at `name` (absolute, without the trailing dot), read
/// through its API (not through DNS, whose answers a cache may keep).
pub async fn txt_in_zone(d: &Dns, name: &str) -> Vec<String> {
    let key = std::fs::read_to_string(&d.key_file).expect("PowerDNS key");
    let zone = format!("{}.", d.zone.trim_end_matches('.'));
    let v: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/servers/localhost/zones/{zone}",
            d.api_url
        ))
        .header("X-API-Key", key.trim())
        .send()
        .await
        .expect("PowerDNS zone")
        .json()
        .await
        .expect("zone JSON");
    let name = format!("{name}.");
    v["rrsets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rr| rr["name"] == name.as_str() && rr["type"] == "TXT")
        .flat_map(|rr| rr["records"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["content"].as_str().map(str::to_owned))
        .collect()
}

/// A DNS server that has no record yet (a lagging secondary): every question gets an
/// authoritative NOERROR answer with nothing in it. Stops with the test's runtime.
pub async fn lagging_dns() -> std::net::SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = sock.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if n < 12 {
                continue;
            }
            // The question echoed; QR and AA set, RD kept, rcode 0, no records.
            let mut answer = buf[..n].to_vec();
            answer[2] = 0x84 | (answer[2] & 0x01);
            answer[3] = 0;
            answer[6..12].fill(0);
            let _ = sock.send_to(&answer, from).await;
        }
    });
    addr
}
