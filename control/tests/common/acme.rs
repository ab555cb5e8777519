//! The ACME tests' parts: the PowerDNS they need from the environment, a real Pebble
//! (tests/setup/pebble.sh), the recording and fault-injecting proxy in front of it, and the
//! HTTP(S) calls through the gateway, the domain owner's DNS, and `realmctl` as a CLI.

use super::*;
// Every certificate test puts one in front of Pebble: `use common::acme::*` brings it.
#[allow(unused_imports)]
pub use super::fault_proxy::FaultProxy;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
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
