//! A real TLS upstream for `https://` pools: tokio-rustls on a loopback port, its certificate
//! (for `app.test` and `127.0.0.1`) minted by rcgen under a fresh CA, answering every request
//! `200` with a fixed body over HTTP/1.1 (it offers no h2, so a client asking for h2 falls
//! back), and recording each ClientHello's SNI and ALPN offer.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA (its PEM) and a server key and certificate it signed for `app.test` and `127.0.0.1`.
pub struct Pki {
    pub ca_pem: String,
    pub server: Arc<CertifiedKey>,
}

impl Pki {
    pub fn mint() -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "realmgate test upstream CA");
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
        Pki {
            ca_pem: ca_cert.pem(),
            server: Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
        }
    }
}

/// What the upstream saw of each ClientHello: the SNI, and the ALPN protocols offered.
pub type Hello = (Option<String>, Vec<Vec<u8>>);

#[derive(Debug)]
struct Recorder {
    key: Arc<CertifiedKey>,
    hellos: Arc<Mutex<Vec<Hello>>>,
}

impl ResolvesServerCert for Recorder {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let alpn = hello
            .alpn()
            .map(|a| a.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        if let Ok(mut h) = self.hellos.lock() {
            h.push((hello.server_name().map(str::to_owned), alpn));
        }
        Some(Arc::clone(&self.key))
    }
}

/// A running TLS upstream; stops when dropped.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    hellos: Arc<Mutex<Vec<Hello>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    /// Serve with `key` (e.g. [`Pki::server`]), answering `body` to every request.
    pub async fn start(key: Arc<CertifiedKey>, body: &'static str) -> TlsUpstream {
        let hellos = Arc::new(Mutex::new(Vec::new()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Recorder {
                key,
                hellos: Arc::clone(&hellos),
            }));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let reply = reply.clone();
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
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsUpstream { addr, hellos, task }
    }

    /// The ClientHellos seen since the last call.
    pub fn take_hellos(&self) -> Vec<Hello> {
        std::mem::take(&mut *self.hellos.lock().expect("lock"))
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
