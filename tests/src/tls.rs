//! TLS clients for the gateway's TLS listeners: curl (h1 and h2, `--resolve`, a test CA),
//! reqwest pinned to a test CA, and raw ClientHellos no well-behaved client sends.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What curl did: its exit code, the HTTP status and version it saw, the body, and the
/// served certificate's subject line from its verbose output.
#[derive(Debug)]
pub struct Curl {
    pub exit: i32,
    pub status: u16,
    pub http_version: String,
    pub body: String,
    pub subject: Option<String>,
    pub stderr: String,
}

/// `curl https://{host}:{port}{path}` against `addr` (`--resolve`), trusting only `ca_file`,
/// over HTTP/2 (ALPN) when `h2`, else HTTP/1.1.
pub async fn curl(addr: SocketAddr, host: &str, path: &str, ca_file: &Path, h2: bool) -> Curl {
    let port = addr.port();
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--max-time",
            "10",
            "--noproxy",
            "*",
            "--resolve",
            &format!("{host}:{port}:{}", addr.ip()),
            "--cacert",
        ])
        .arg(ca_file)
        .arg(if h2 { "--http2" } else { "--http1.1" })
        .args([
            "-w",
            "\n%{http_code} %{http_version}",
            &format!("https://{host}:{port}{path}"),
        ])
        .output()
        .await
        .expect("run curl (tests/run installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let mut tail = tail.split_whitespace();
    let status = tail.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let http_version = tail.next().unwrap_or("").to_owned();
    let subject = stderr
        .lines()
        .find_map(|l| l.trim_start_matches(['*', ' ']).strip_prefix("subject: "))
        .map(str::to_owned);
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status,
        http_version,
        body: body.to_owned(),
        subject,
        stderr,
    }
}

/// A rustls client configuration trusting only `ca_pem`, offering `alpn` in that order.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))
        .expect("CA root");
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A reqwest client for `https://{host}` names resolved to `addr`, trusting only `ca_pem`;
/// `fresh`: a new connection and a full handshake (no session resumption) per request, else
/// kept-alive connections.
pub fn https_client(
    ca_pem: &str,
    hosts: &[&str],
    addr: SocketAddr,
    fresh: bool,
) -> reqwest::Client {
    let mut tls = client_config(ca_pem, &[b"h2", b"http/1.1"]);
    if fresh {
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_info(true)
        .use_preconfigured_tls(tls);
    for h in hosts {
        b = b.resolve(h, addr);
    }
    if fresh {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().expect("https client")
}

/// SHA-256 of the certificate the server presented for `resp` (needs `tls_info`).
pub fn peer_fingerprint(resp: &reqwest::Response) -> Option<[u8; 32]> {
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>()?;
    Some(sha2::Sha256::digest(info.peer_certificate()?).into())
}

/// SHA-256 of a PEM certificate's first certificate (its DER).
pub fn pem_fingerprint(pem: &str) -> [u8; 32] {
    use base64::Engine;
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("PEM base64");
    sha2::Sha256::digest(der).into()
}

/// A TLS 1.3/1.2 ClientHello as one record, offering ECDHE AEAD suites, x25519 and P-256,
/// ALPN h2 and http/1.1, with this raw server name (`None`: no SNI extension at all).
pub fn client_hello(sni: Option<&[u8]>) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, typ: u16, body: &[u8]) {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0u8];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name);
        let mut body = (list.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(&list);
        ext(&mut exts, 0, &body);
    }
    ext(&mut exts, 10, &[0, 4, 0x00, 0x1d, 0x00, 0x17]);
    ext(&mut exts, 11, &[1, 0]);
    ext(&mut exts, 13, &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x08, 0x07]);
    ext(
        &mut exts,
        16,
        &[
            0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
        ],
    );
    ext(&mut exts, 43, &[4, 0x03, 0x04, 0x03, 0x03]);
    let mut share = vec![0, 36, 0x00, 0x1d, 0, 32];
    share.extend((0..32).map(|_| fastrand::u8(..)));
    ext(&mut exts, 51, &share);
    let mut hello = vec![0x03, 0x03];
    hello.extend((0..32).map(|_| fastrand::u8(..)));
    hello.push(0);
    let suites: [u16; 5] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f];
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]);
    hello.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    hello.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// What a server answered to bytes sent on a fresh connection.
#[derive(Debug)]
pub struct Probe {
    /// Everything read until the server closed (or 64 KiB).
    pub bytes: Vec<u8>,
    /// The server closed the connection (rather than the read deadline passing).
    pub closed: bool,
}

impl Probe {
    /// The first record is a TLS alert (content type 21).
    pub fn is_alert(&self) -> bool {
        self.bytes.first() == Some(&21)
    }

    /// The first record is a TLS ServerHello (a handshake record going on).
    pub fn is_server_hello(&self) -> bool {
        self.bytes.first() == Some(&22) && self.bytes.get(5) == Some(&2)
    }
}

/// Send `bytes` to `addr` on a new connection and read what comes back until the server
/// closes, 64 KiB, or `wait` passes.
pub async fn probe(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Probe {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Probe {
                    bytes: out,
                    closed: true,
                }
            }
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() >= 64 * 1024 {
                    return Probe {
                        bytes: out,
                        closed: false,
                    };
                }
            }
            Err(_) => {
                return Probe {
                    bytes: out,
                    closed: false,
                }
            }
        }
    }
}

/// Fixtures of the TLS tests: certificates for acme.test, *.beta.test and www.beta.test from
/// one test CA, a table serving them, a gateway with a TLS listener, raw h2 clients.
pub mod fixtures {
    use std::sync::Arc;

    use crate::{Gateway, GatewayOpts, Table, TempDir, Upstream};
    use realmgate_table::test_certs::{Minted, TestCa};
    use serde_json::Value;

    /// Certificates for acme.test (exact), *.beta.test (wildcard) and www.beta.test (exact, more
    /// specific than the wildcard), all issued by one test CA.
    pub struct Certs {
        pub ca: TestCa,
        pub ca_file: std::path::PathBuf,
        pub acme: Minted,
        pub beta: Minted,
        pub www: Minted,
        _dir: TempDir,
    }

    /// Mint [`Certs`] and write the CA to a file for curl.
    pub fn certs() -> Certs {
        let ca = TestCa::new("realmgate tls tests CA");
        let dir = TempDir::new("tls-ca");
        let ca_file = dir.write("ca.pem", ca.pem.clone());
        Certs {
            acme: ca.leaf(&["acme.test"]),
            beta: ca.leaf(&["*.beta.test"]),
            www: ca.leaf(&["www.beta.test"]),
            ca,
            ca_file,
            _dir: dir,
        }
    }

    /// The table entry for a minted certificate, as JSON.
    pub fn entry(m: &Minted, name: &str, hosts: &[&str]) -> Value {
        serde_json::to_value(m.entry(name, hosts)).expect("certificate JSON")
    }

    /// Tenants acme (acme.test) and beta (beta.test, *.beta.test), one upstream; `certificates`.
    pub fn table(v: u64, up: &Upstream, certificates: Vec<Value>) -> Value {
        let mut t = Table::new(v)
            .upstream("app", [up.addr()])
            .tenant("acme", &["acme.test"], &[("/", "app")])
            .tenant("beta", &["beta.test", "*.beta.test"], &[("/", "app")])
            .build();
        t["certificates"] = Value::Array(certificates);
        t
    }

    /// acme, beta and www, each for its own name.
    pub fn all_certs(c: &Certs) -> Vec<Value> {
        vec![
            entry(&c.acme, "acme", &["acme.test"]),
            entry(&c.beta, "beta", &["*.beta.test"]),
            entry(&c.www, "www", &["www.beta.test"]),
        ]
    }

    /// A gateway with a TLS listener and `yaml` under `gateway:`.
    pub async fn tls_gateway(yaml: &str) -> Gateway {
        Gateway::start_tls(GatewayOpts {
            gateway_yaml: yaml.to_owned(),
            ..GatewayOpts::default()
        })
        .await
    }

    /// A raw h2 connection over TLS to `addr` for `host`.
    pub async fn h2_connect(
        addr: std::net::SocketAddr,
        host: &str,
        ca_pem: &str,
    ) -> (
        h2::client::SendRequest<bytes::Bytes>,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ) {
        let tls = tls_h2(addr, host, ca_pem).await;
        let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
        (send, tokio::spawn(conn))
    }

    /// A TLS connection to `addr` for `host` with ALPN h2 only.
    pub async fn tls_h2(
        addr: std::net::SocketAddr,
        host: &str,
        ca_pem: &str,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        use rustls::pki_types::ServerName;
        let config = super::client_config(ca_pem, &[b"h2"]);
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(host.to_owned()).expect("name"), tcp)
            .await
            .expect("TLS handshake")
    }

    /// One HTTP/2 frame header and payload.
    pub fn frame(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[typ, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
}
