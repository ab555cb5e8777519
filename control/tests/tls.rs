//! The control channel over TLS, with real sockets and certificates minted by the test CA:
//! pushes to an https gateway endpoint verified by a CA or a pinned certificate (and refused
//! with the wrong ones), tables with secrets never sent in clear to a non-loopback gateway,
//! and realmctl's own API over https.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::pki::Pki;
use common::{eventually, free_addrs, Proc, TempDir, OPERATOR_TOKEN};
use realmctl::push::PushSettings;
use realmctl::registry::Registry;
use realmctl::server::{assemble, Wiring};
use realmctl::tls::{GatewayTrust, TlsListener};
use realmctl::views::GatewayView;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// What a gateway-like admin endpoint received: the tables pushed to it.
type Received = Arc<Mutex<Vec<Bytes>>>;

/// A gateway admin endpoint (`GET`/`PUT /v1/table`) on loopback, over TLS when `tls` is
/// given: enough of a gateway for realmctl's push, on a real socket.
async fn gateway_endpoint(tls: Option<(&TempDir, &common::pki::Leaf)>) -> (String, Received) {
    async fn show(State(r): State<Received>) -> (StatusCode, Json<Value>) {
        match r.lock().expect("lock").last() {
            None => (StatusCode::NOT_FOUND, Json(json!({"error": "no table"}))),
            Some(b) => {
                let v: Value = serde_json::from_slice(b).unwrap_or_default();
                (StatusCode::OK, Json(json!({"version": v["version"]})))
            }
        }
    }
    async fn put(State(r): State<Received>, body: Bytes) -> Json<Value> {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        r.lock().expect("lock").push(body);
        Json(json!({"version": v["version"]}))
    }
    let received: Received = Arc::default();
    let app = Router::new()
        .route("/v1/table", get(show).put(put))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    match tls {
        Some((dir, leaf)) => {
            let cert = dir.write("gw-cert.pem", &leaf.cert_pem);
            let key = dir.write("gw-key.pem", &leaf.key_pem);
            let config = realmctl::tls::server_config(&cert, &key).expect("server config");
            let listener = TlsListener::new(listener, config).expect("tls listener");
            tokio::spawn(async move { axum::serve(listener, app).await });
            (format!("https://127.0.0.1:{}", addr.port()), received)
        }
        None => {
            tokio::spawn(async move { axum::serve(listener, app).await });
            (format!("http://127.0.0.1:{}", addr.port()), received)
        }
    }
}

/// realmctl in process, pushing to `url` with `trust`, holding one certificate (a secret).
async fn control_pushing_to(url: &str, trust: GatewayTrust, pki: &Pki) -> realmctl::api::AppState {
    let settings = PushSettings {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        debounce: Duration::from_millis(1),
        ..PushSettings::default()
    };
    let state = assemble(
        Registry::in_memory().await.expect("registry"),
        Wiring {
            operator_token: OPERATOR_TOKEN,
            gateway_token: Some("gateway-token-0123456789".into()),
            gateways: &[url.to_owned()],
            gateway_trust: trust,
            push: settings,
            max_body_bytes: 1 << 20,
            api: Default::default(),
            provision: None,
            assertion: Default::default(),
        },
    )
    .await
    .expect("assemble");
    let leaf = pki.leaf(&["acme.test"]);
    let body = json!({"cert_pem": leaf.cert_pem, "key_pem": leaf.key_pem}).to_string();
    state
        .control
        .put_certificate("acme", body.as_bytes())
        .await
        .expect("certificate stored");
    state
}

/// The gateway's status once its last push attempt ended with something other than `None`.
async fn settled(state: &realmctl::api::AppState, want: &str) -> GatewayView {
    eventually(WAIT, want, || async {
        state
            .pusher
            .views()
            .into_iter()
            .next()
            .filter(|g| g.last_result.as_deref() == Some(want))
    })
    .await
}

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn pushes_to_an_https_gateway_verified_by_its_ca() {
    init();
    let dir = TempDir::new("tls-ca");
    let pki = Pki::new("gateway CA");
    let (url, received) =
        gateway_endpoint(Some((&dir, &pki.leaf(&["127.0.0.1", "localhost"])))).await;
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let trust = GatewayTrust::from_ca_file(&ca).expect("ca");
    let state = control_pushing_to(&url, trust, &pki).await;
    let g = settled(&state, "applied").await;
    assert!(g.in_sync, "{g:?}");
    let tables = received.lock().expect("lock").clone();
    let table: Value = serde_json::from_slice(tables.last().expect("pushed")).expect("json");
    assert!(
        table["certificates"][0]["key_pem"]
            .as_str()
            .is_some_and(|k| k.contains("PRIVATE KEY")),
        "the gateway gets the key, over TLS"
    );
}

#[tokio::test]
async fn a_gateway_with_a_certificate_from_another_ca_gets_nothing() {
    init();
    let dir = TempDir::new("tls-wrong-ca");
    let pki = Pki::new("gateway CA");
    let (url, received) = gateway_endpoint(Some((&dir, &pki.leaf(&["127.0.0.1"])))).await;
    let other = Pki::new("another CA");
    let ca = dir.write("other-ca.pem", &other.ca_pem);
    let state = control_pushing_to(&url, GatewayTrust::from_ca_file(&ca).expect("ca"), &pki).await;
    let g = settled(&state, "unreachable").await;
    let error = g.last_error.unwrap_or_default();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(received.lock().expect("lock").is_empty(), "nothing sent");
    assert_eq!(g.applied_version, None);
}

#[tokio::test]
async fn a_pinned_gateway_certificate_is_the_only_one_accepted() {
    init();
    let dir = TempDir::new("tls-pin");
    let pki = Pki::new("self-signed, say");
    let leaf = pki.leaf(&["gateway.internal"]);
    let pin = hex::encode(Sha256::digest(&leaf.der));
    let (url, received) = gateway_endpoint(Some((&dir, &leaf))).await;
    // The name does not matter to a pin: the certificate is the identity.
    let state = control_pushing_to(&url, GatewayTrust::from_pin(&pin).expect("pin"), &pki).await;
    settled(&state, "applied").await;
    assert_eq!(received.lock().expect("lock").len(), 1);

    let (url, received) = gateway_endpoint(Some((&dir, &pki.leaf(&["gateway.internal"])))).await;
    let state = control_pushing_to(&url, GatewayTrust::from_pin(&pin).expect("pin"), &pki).await;
    let g = settled(&state, "unreachable").await;
    let error = g.last_error.unwrap_or_default();
    assert!(error.contains("not the pinned one"), "{error}");
    assert!(received.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn secrets_go_in_clear_to_loopback_only() {
    init();
    let pki = Pki::new("test CA");
    // Loopback, plain http: the local platform and the tests.
    let (url, received) = gateway_endpoint(None).await;
    let state = control_pushing_to(&url, GatewayTrust::System, &pki).await;
    settled(&state, "applied").await;
    assert_eq!(received.lock().expect("lock").len(), 1);
    // A non-loopback address (TEST-NET-1): refused before any connection is tried.
    let state = control_pushing_to("http://192.0.2.10:9080", GatewayTrust::System, &pki).await;
    let g = settled(&state, "refused_insecure").await;
    let error = g.last_error.unwrap_or_default();
    assert!(
        error.contains("carries secrets") && error.contains("admin_tls"),
        "{error}"
    );
    let metrics = String::from_utf8_lossy(&state.metrics.render()).into_owned();
    assert!(
        metrics.contains(r#"result="refused_insecure""#),
        "counted: {metrics}"
    );
}

#[tokio::test]
async fn realmctl_serves_its_api_over_https() {
    init();
    let dir = TempDir::new("tls-serve");
    let pki = Pki::new("realmctl CA");
    let leaf = pki.leaf(&["127.0.0.1", "localhost"]);
    let addr = free_addrs(1)[0];
    let conf = dir.write(
        "realmctl.yaml",
        &format!(
            "listen: {addr}\ndata_dir: {}\nadmin_token_file: {}\ntls:\n  cert_file: {}\n  key_file: {}\n",
            dir.path().join("data").display(),
            dir.write("token", OPERATOR_TOKEN).display(),
            dir.write("cert.pem", &leaf.cert_pem).display(),
            dir.write("key.pem", &leaf.key_pem).display(),
        ),
    );
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_realmctl"));
    cmd.arg("serve")
        .arg("--conf")
        .arg(&conf)
        .env("RUST_LOG", "info");
    let mut proc = Proc::spawn(cmd, dir.path().join("realmctl.log"));
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let url = format!("https://127.0.0.1:{}", addr.port());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert!(
            proc.exited().is_none(),
            "realmctl exited:\n{}",
            proc.log_text()
        );
        let ok = http.get(format!("{url}/healthz")).send().await;
        if ok.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", proc.log_text());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Plain http on the TLS port gets no API.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", addr.port())).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    // The CLI trusts it with --ca-file, and not without.
    let cli = |with_ca: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_realmctl"));
        c.args(["--url", &url])
            .env("REALMCTL_TOKEN", OPERATOR_TOKEN);
        c.env_remove("REALMCTL_CA_FILE");
        if with_ca {
            c.arg("--ca-file").arg(&ca);
        }
        c.args(["cert", "list"]).output().expect("run realmctl")
    };
    let ok = cli(true);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("NAME"));
    let refused = cli(false);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cannot reach realmctl"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// A real gateway applies what realmctl compiles from `realmctl cert add` and a tenant with
/// `--https redirect`: the table with certificates and https settings passes the gateway's
/// own validation, and `tenant show` reports the certificate's expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_gateway_applies_certificates_added_with_the_cli() {
    let dir = TempDir::new("tls-gateway");
    let up = common::Upstream::start("a").await;
    let g = common::Gateway::start(&dir, "g1", None).await;
    let key = dir.write("secrets.key", &"ab".repeat(32));
    let ctl = common::Realmctl::start_with(
        &dir,
        &[&g],
        &format!("provision:\n  secrets_key_file: {}\n", key.display()),
        &[],
    )
    .await;
    let version = ctl.api().put_pool("app", up.addr).await;
    ctl.wait_in_sync(version, WAIT).await;
    let pki = Pki::new("test CA");
    let leaf = pki.leaf(&["acme.test", "*.acme.test"]);
    let chain = dir.write(
        "acme-chain.pem",
        &format!("{}{}", leaf.cert_pem, pki.ca_pem),
    );
    let key = dir.write("acme-key.pem", &leaf.key_pem);
    let realmctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_realmctl"))
            .args(["--url", &ctl.url()])
            .env("REALMCTL_TOKEN", OPERATOR_TOKEN)
            .args(args)
            .output()
            .expect("run realmctl");
        assert!(
            out.status.success(),
            "realmctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let added = realmctl(&[
        "cert",
        "add",
        "acme",
        "--cert",
        &chain.display().to_string(),
        "--key",
        &key.display().to_string(),
    ]);
    assert!(
        added.contains("*.acme.test") && !added.contains("PRIVATE"),
        "{added}"
    );
    realmctl(&[
        "tenant",
        "create",
        "acme",
        "--host",
        "acme.test",
        "--host",
        "plain.test",
        "--upstream",
        "app",
        "--https",
        "redirect",
        "--hsts-max-age",
        "600",
    ]);
    let (_, t) = ctl
        .api()
        .call(reqwest::Method::GET, "/v1/tenants/acme", None)
        .await;
    let version = t["table_version"].as_u64().expect("version");
    ctl.wait_in_sync(version, WAIT).await;
    assert_eq!(g.version().await, Some(version), "the gateway applied it");
    let shown = realmctl(&["tenant", "show", "acme"]);
    assert!(shown.contains("https:     redirect"), "{shown}");
    assert!(shown.contains("hsts:      max-age=600"), "{shown}");
    assert!(
        shown.contains("acme for acme.test: not after 4096-01-01"),
        "{shown}"
    );
    assert!(shown.contains("none for plain.test"), "{shown}");
    let listed = realmctl(&["cert", "list"]);
    assert!(
        listed.contains("acme") && listed.contains("day(s) left"),
        "{listed}"
    );
    realmctl(&["cert", "rm", "acme"]);
    // Without provision.secrets_key_file a key could not be opened after a restart: refused.
    let plain = common::Realmctl::start(&TempDir::new("tls-no-key"), &[]).await;
    let (status, v) = plain
        .api()
        .call(
            reqwest::Method::PUT,
            "/v1/certificates/acme",
            Some(json!({"cert_pem": leaf.cert_pem, "key_pem": leaf.key_pem})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "no_secrets_key");
    let (_, list) = ctl
        .api()
        .call(reqwest::Method::GET, "/v1/certificates", None)
        .await;
    assert_eq!(list["certificates"], json!([]));
}

/// Start `realmctl serve --conf conf` and wait until `base` answers `/healthz` through
/// `http`; then add a certificate (a secret) with the operator token.
async fn serve_with_a_certificate(
    dir: &TempDir,
    conf: &Path,
    http: &reqwest::Client,
    base: &str,
) -> Proc {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_realmctl"));
    cmd.arg("serve")
        .arg("--conf")
        .arg(conf)
        .env("RUST_LOG", "info");
    let mut proc = Proc::spawn(cmd, dir.path().join("realmctl.log"));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert!(
            proc.exited().is_none(),
            "realmctl exited:\n{}",
            proc.log_text()
        );
        let ok = http.get(format!("{base}/healthz")).send().await;
        if ok.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", proc.log_text());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let leaf = Pki::new("test CA").leaf(&["acme.test"]);
    let r = http
        .put(format!("{base}/v1/certificates/acme"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"cert_pem": leaf.cert_pem, "key_pem": leaf.key_pem}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    proc
}

/// This host's address on its outward interface (no packet is sent), if it has one.
fn outward_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Over plain http, realmctl hands the full table (with a certificate key) to a gateway on
/// loopback only; from another address the gateway gets 403, operators their redacted view.
#[tokio::test]
async fn plain_http_realmctl_gives_secrets_to_loopback_only() {
    init();
    let Some(ip) = outward_ip() else {
        eprintln!("no non-loopback interface on this host: nothing to test from");
        return;
    };
    let dir = TempDir::new("tls-pull");
    let port = free_addrs(1)[0].port();
    let conf = dir.write(
        "realmctl.yaml",
        &format!(
            "listen: 0.0.0.0:{port}\ndata_dir: {}\nadmin_token_file: {}\ngateways:\n  token_file: {}\nprovision:\n  secrets_key_file: {}\n",
            dir.path().join("data").display(),
            dir.write("token", OPERATOR_TOKEN).display(),
            dir.write("gw-token", common::GATEWAY_TOKEN).display(),
            dir.write("secrets.key", &"cd".repeat(32)).display(),
        ),
    );
    let http = reqwest::Client::new();
    let local = format!("http://127.0.0.1:{port}");
    let remote = format!("http://{}", std::net::SocketAddr::new(ip, port));
    let _proc = serve_with_a_certificate(&dir, &conf, &http, &local).await;
    let get = |base: &str, token: &str| {
        http.get(format!("{base}/v1/table"))
            .bearer_auth(token)
            .send()
    };
    let from_loopback = get(&local, common::GATEWAY_TOKEN).await.expect("get");
    assert_eq!(from_loopback.status(), StatusCode::OK);
    assert!(from_loopback
        .text()
        .await
        .unwrap_or_default()
        .contains("PRIVATE KEY"));
    let from_afar = get(&remote, common::GATEWAY_TOKEN).await.expect("get");
    assert_eq!(from_afar.status(), StatusCode::FORBIDDEN);
    let body = from_afar.text().await.unwrap_or_default();
    assert!(
        body.contains("insecure_channel") && !body.contains("PRIVATE KEY"),
        "{body}"
    );
    let operator = get(&remote, OPERATOR_TOKEN).await.expect("get");
    assert_eq!(operator.status(), StatusCode::OK);
    assert!(operator
        .text()
        .await
        .unwrap_or_default()
        .contains("(redacted)"));
}

/// Over https realmctl knows its callers' addresses as over plain http: the audit log records
/// where a change came from, and the full table (with a certificate key) still goes to a
/// gateway on another host, the channel being encrypted.
#[tokio::test]
async fn realmctl_over_https_records_the_callers_address() {
    init();
    // From the outward interface when there is one, so the address is not just loopback.
    let caller = outward_ip().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let dir = TempDir::new("tls-peer");
    let pki = Pki::new("realmctl CA");
    let names = [caller.to_string(), "127.0.0.1".to_owned()];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let leaf = pki.leaf(if caller.is_loopback() {
        &names[1..]
    } else {
        &names
    });
    let port = free_addrs(1)[0].port();
    let conf = dir.write(
        "realmctl.yaml",
        &format!(
            "listen: 0.0.0.0:{port}\ndata_dir: {}\nadmin_token_file: {}\ngateways:\n  token_file: {}\nprovision:\n  secrets_key_file: {}\ntls:\n  cert_file: {}\n  key_file: {}\n",
            dir.path().join("data").display(),
            dir.write("token", OPERATOR_TOKEN).display(),
            dir.write("gw-token", common::GATEWAY_TOKEN).display(),
            dir.write("secrets.key", &"cd".repeat(32)).display(),
            dir.write("cert.pem", &leaf.cert_pem).display(),
            dir.write("key.pem", &leaf.key_pem).display(),
        ),
    );
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let url = format!("https://{}", std::net::SocketAddr::new(caller, port));
    let _proc = serve_with_a_certificate(&dir, &conf, &http, &url).await;
    let audit: Value = http
        .get(format!("{url}/v1/audit"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("audit json");
    let entries = audit["entries"].as_array().expect("entries");
    let change = entries
        .iter()
        .find(|e| e["action"] == "PUT /v1/certificates/{name}")
        .unwrap_or_else(|| panic!("no entry for the change: {audit}"));
    assert_eq!(change["actor"], "operator_token", "{change}");
    assert_eq!(change["outcome"], "ok", "{change}");
    let peer: std::net::SocketAddr = change["peer"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no caller's address: {change}"));
    assert_eq!(peer.ip(), caller, "{change}");
    // The loopback rule is plain http's: over https a gateway anywhere gets the full table.
    let table = http
        .get(format!("{url}/v1/table"))
        .bearer_auth(common::GATEWAY_TOKEN)
        .send()
        .await
        .expect("table");
    assert_eq!(table.status(), StatusCode::OK);
    assert!(table
        .text()
        .await
        .unwrap_or_default()
        .contains("PRIVATE KEY"));
}
