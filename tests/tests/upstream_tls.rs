//! `https://` pools through the real gateway: a TLS upstream (tokio-rustls, certificates
//! minted by rcgen) is reached when its certificate verifies against the pool's `ca_file`
//! for the pool's `server_name` (or the endpoint's IP), refused with 502 for a wrong CA or a
//! wrong name, reached unverified only with `insecure_skip_verify`; `h2` falls back to
//! HTTP/1.1; an unreadable `ca_file` refuses the table.

use realmgate_e2e::{Gateway, GatewayOpts, Table, TempDir};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA's PEM, and a key and certificate it signed for `app.test` and `127.0.0.1`.
fn mint() -> (String, Arc<CertifiedKey>) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "e2e upstream CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::new(vec!["app.test".to_owned()]).expect("params");
    leaf.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).expect("signing key");
    (
        ca_cert.pem(),
        Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
    )
}

#[derive(Debug)]
struct Recorder {
    key: Arc<CertifiedKey>,
    names: Arc<Mutex<Vec<Option<String>>>>,
}

impl ResolvesServerCert for Recorder {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Ok(mut n) = self.names.lock() {
            n.push(hello.server_name().map(str::to_owned));
        }
        Some(Arc::clone(&self.key))
    }
}

/// A TLS upstream answering every request `200 tls-ok` over HTTP/1.1; the SNI of each
/// handshake is recorded.
async fn tls_upstream(key: Arc<CertifiedKey>) -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let names = Arc::new(Mutex::new(Vec::new()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Recorder {
            key,
            names: Arc::clone(&names),
        }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\
                          connection: close\r\n\r\ntls-ok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, names)
}

/// One tenant `<id>.test` per pool, each routing `/` to its pool.
fn table(pools: &[(&str, Value)]) -> Value {
    let mut t = Table::new(1);
    for (id, _) in pools {
        let host = format!("{id}.test");
        t = t.tenant(id, &[host.as_str()], &[("/", id)]);
    }
    let mut v = t.build();
    for (id, pool) in pools {
        v["upstreams"][*id] = pool.clone();
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn https_pools_verify_their_upstreams() {
    let (ca_pem, key) = mint();
    let (other_ca, _) = mint();
    let (addr, names) = tls_upstream(key).await;
    let dir = TempDir::new("upstream-tls");
    let ca = dir.write("ca.pem", &ca_pem);
    let other = dir.write("other-ca.pem", &other_ca);
    let endpoint = format!("https://{addr}");
    let pool = |extra: Value| {
        let mut p = json!({"endpoints": [endpoint]});
        if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
            p.extend(extra);
        }
        p
    };
    let gw = Gateway::start(GatewayOpts::default()).await;
    gw.push_ok(&table(&[
        (
            "good",
            pool(json!({"server_name": "app.test", "ca_file": ca})),
        ),
        ("byip", pool(json!({"ca_file": ca}))),
        (
            "h2",
            pool(json!({"server_name": "app.test", "ca_file": ca, "h2": true})),
        ),
        (
            "wrongca",
            pool(json!({"server_name": "app.test", "ca_file": other})),
        ),
        (
            "wrongname",
            pool(json!({"server_name": "other.test", "ca_file": ca})),
        ),
        ("sysroots", pool(json!({"server_name": "app.test"}))),
        (
            "insecure",
            pool(json!({"server_name": "other.test", "insecure_skip_verify": true})),
        ),
    ]))
    .await;

    for host in ["good.test", "byip.test", "h2.test", "insecure.test"] {
        let r = gw.request(host, "/x").await;
        assert_eq!(r.status, 200, "{host}: {}\n{}", r.text, gw.logs());
        assert_eq!(r.text, "tls-ok", "{host}");
    }
    let seen = names.lock().expect("lock").clone();
    assert!(seen.contains(&Some("app.test".to_owned())), "{seen:?}");
    // The pool without a server name verifies the IP and sends no SNI.
    assert!(seen.contains(&None), "{seen:?}");

    // A certificate that does not verify is never talked to: 502 (from the connect, or from
    // the health check that already took the endpoint out).
    for host in ["wrongca.test", "wrongname.test", "sysroots.test"] {
        let r = gw.request(host, "/x").await;
        assert_eq!(r.status, 502, "{host}: {}", r.text);
        let code = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            code == "upstream_error" || code == "no_healthy_upstream",
            "{host}: {code}"
        );
        assert_ne!(r.text, "tls-ok");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_ca_file_refuses_the_table() {
    let gw = Gateway::start(GatewayOpts::default()).await;
    let bad = table(&[(
        "pay",
        json!({"endpoints": ["https://127.0.0.1:9"], "server_name": "pay.internal",
               "ca_file": "/nonexistent/realmgate-ca.pem"}),
    )]);
    let (status, body) = gw.push(&bad).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("pool pay: ca_file"), "{body}");
}
