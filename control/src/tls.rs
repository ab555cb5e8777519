//! TLS on the control channel: how realmctl trusts gateways' admin listeners when it pushes
//! (a CA, a pinned certificate, or the system roots), when a table may travel in clear, and
//! realmctl's own API over TLS (`tls:` in its configuration).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How realmctl verifies a gateway's `https://` admin URL.
#[derive(Clone, Default)]
pub enum GatewayTrust {
    /// The system's roots (a gateway with a publicly trusted certificate).
    #[default]
    System,
    /// A CA the gateways' admin certificates chain to (`gateways.ca_file`); names checked.
    Ca(Vec<CertificateDer<'static>>),
    /// The SHA-256 of the gateway admin certificate itself (DER), `gateways.cert_sha256`.
    Pin([u8; 32]),
}

impl std::fmt::Debug for GatewayTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayTrust::System => f.write_str("System"),
            GatewayTrust::Ca(c) => write!(f, "Ca({} certificate(s))", c.len()),
            GatewayTrust::Pin(p) => write!(f, "Pin(sha256:{})", hex::encode(p)),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl GatewayTrust {
    /// Read `gateways.ca_file`: one or more PEM certificates.
    pub fn from_ca_file(path: &Path) -> Result<GatewayTrust, String> {
        let certs = read_certs(path)?;
        Ok(GatewayTrust::Ca(certs))
    }

    /// `gateways.cert_sha256`: 64 hex digits, optionally `sha256:`-prefixed or colon-separated
    /// (as `openssl x509 -fingerprint -sha256` prints it).
    pub fn from_pin(text: &str) -> Result<GatewayTrust, String> {
        let t = text.trim();
        let t = t.strip_prefix("sha256:").unwrap_or(t).replace(':', "");
        let mut pin = [0u8; 32];
        hex::decode_to_slice(&t, &mut pin)
            .map_err(|_| "must be the certificate's SHA-256 (DER) as 64 hex digits".to_owned())?;
        Ok(GatewayTrust::Pin(pin))
    }

    /// The client TLS settings for pushes; `None`: reqwest's own (the system roots).
    pub fn client_config(&self) -> Result<Option<ClientConfig>, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = match self {
            GatewayTrust::System => return Ok(None),
            GatewayTrust::Ca(certs) => {
                let mut roots = RootCertStore::empty();
                for c in certs {
                    roots
                        .add(c.clone())
                        .map_err(|e| format!("gateways.ca_file: {e}"))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            GatewayTrust::Pin(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier {
                    pin: *pin,
                    provider: provider(),
                }))
                .with_no_client_auth(),
        };
        Ok(Some(config))
    }
}

/// Accepts exactly the certificate whose SHA-256 is pinned (compared in constant time), and
/// checks the handshake's signatures with its key. Names and dates are not checked: the pin
/// names the one certificate trusted, as an SSH host key would.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if bool::from(seen.ct_eq(&self.pin)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the gateway's certificate sha256:{} is not the pinned one (gateways.cert_sha256)",
                hex::encode(seen)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether a table carrying secrets (login client secrets, certificate keys) may be sent to
/// this gateway admin URL: over https, or in clear only to a loopback address.
pub fn may_carry_secrets(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    match u.scheme() {
        "https" => true,
        "http" => match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

/// Whether a listen address is loopback (a plain-http API there keeps secrets on the host).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: malformed PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in it", path.display()));
    }
    Ok(certs)
}

/// realmctl's API over TLS: the certificate chain and key files (PEM), checked to match.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: no private key found: {e}", key_file.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} and {}: {e}", cert_file.display(), key_file.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Longest a client may take to finish its handshake, and most handshakes at once: a slow
/// or silent client holds neither the accept loop nor unbounded memory.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HANDSHAKES: usize = 256;

/// A TLS listener for `axum::serve`: connections are accepted and their handshakes run in
/// their own tasks, and only finished ones are handed to the server.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and the like: wait a little rather than spin.
                        log::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let sender = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => log::debug!("TLS handshake from {peer}: {e}"),
                        Err(_) => log::debug!("TLS handshake from {peer}: timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { ready, local })
    }
}

/// A [`TlsListener`] that hands each connection's peer address to the handlers as
/// `ConnectInfo<SocketAddr>`, exactly as the plain listener does (axum provides
/// `ConnectInfo` for its own `TcpListener` and for any listener wrapped by `tap_io`; the tap
/// itself leaves the stream untouched). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub type PeerTlsListener = axum::serve::TapIo<TlsListener, fn(&mut TlsStream<TcpStream>)>;

impl TlsListener {
    /// This listener, with the peer's address for the audit log and the loopback rules.
    pub fn with_peer_addresses(self) -> PeerTlsListener {
        fn untouched(_: &mut TlsStream<TcpStream>) {}
        axum::serve::ListenerExt::tap_io(self, untouched as fn(&mut TlsStream<TcpStream>))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended (the server is shutting down): never resolve.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_travel_over_https_or_loopback_only() {
        for url in [
            "https://gw.example:9443",
            "https://10.0.0.7:9443",
            "http://127.0.0.1:9080",
            "http://127.8.9.10:9080",
            "http://[::1]:9080",
            "http://localhost:9080",
            "http://LOCALHOST:9080",
        ] {
            assert!(may_carry_secrets(url), "{url}");
        }
        for url in [
            "http://10.0.0.7:9080",
            "http://192.168.1.2:9080",
            "http://[2001:db8::1]:9080",
            "http://gw.example:9080",
            "http://localhost.evil.example:9080",
            "http://127.0.0.1.nip.io:9080",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(!may_carry_secrets(url), "{url}");
        }
    }

    #[test]
    fn pins_parse_in_the_usual_spellings() {
        let hex64 = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        for text in [hex64.clone(), format!("sha256:{hex64}"), colons] {
            assert!(
                matches!(GatewayTrust::from_pin(&text), Ok(GatewayTrust::Pin(p)) if p == [0xab; 32]),
                "{text}"
            );
        }
        assert!(GatewayTrust::from_pin("abcd").is_err());
        assert!(GatewayTrust::from_pin(&"zz".repeat(32)).is_err());
    }
}
