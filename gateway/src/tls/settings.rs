//! The gateway's TLS configuration: the `gateway.tls_*`, `admin_tls`, `control_ca_file` and
//! `h2` keys, checked at start (every problem listed), and the rustls server configurations
//! built from them.

use realmgate_table::{Certificate, CheckedCert};
use rustls::crypto::CryptoProvider;
use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::ServerConfig;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default public HTTPS port (omitted from redirect `Location`s when it is this).
pub const DEFAULT_HTTPS_PORT: u16 = 443;
/// Default bound on concurrent HTTP/2 streams per connection.
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// TLS sessions kept for ID-based resumption (TLS 1.2); tickets need no server state.
pub const SESSION_CACHE_ENTRIES: usize = 32 * 1024;
/// Longest certificate or key file read at start.
const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// `cert_file` and `key_file`: a PEM chain (certificate first) and its private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `gateway.h2`: HTTP/2 limits on client connections.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct H2File {
    pub max_concurrent_streams: Option<u32>,
}

/// The TLS keys of `gateway:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TlsFile {
    pub tls_listen: Option<Vec<String>>,
    pub https_port: Option<u32>,
    pub tls_fallback_certificate: Option<CertFiles>,
    pub tls_min_version: Option<String>,
    pub admin_tls: Option<CertFiles>,
    pub control_ca_file: Option<PathBuf>,
    pub h2: H2File,
}

/// The oldest TLS version clients may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    #[default]
    Tls12,
    Tls13,
}

/// HTTP/2 limits applied to every client connection that negotiates h2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Limits {
    pub max_concurrent_streams: u32,
}

/// The checked TLS configuration.
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    pub https_port: u16,
    pub min_version: MinVersion,
    /// Served when no table certificate matches the client's SNI (or it sent none).
    pub fallback: Option<Arc<CheckedCert>>,
    /// The admin listener's certificate, when it serves HTTPS.
    pub admin: Option<Arc<rustls::sign::CertifiedKey>>,
    /// PEM of the CA that signs realmctl's certificate (for an https `control_url`).
    pub control_ca_pem: Option<Vec<u8>>,
    pub h2: H2Limits,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys.
        f.debug_struct("TlsConfig")
            .field("listen", &self.listen)
            .field("https_port", &self.https_port)
            .field("min_version", &self.min_version)
            .field("fallback", &self.fallback)
            .field("admin", &self.admin.is_some())
            .field("control_ca", &self.control_ca_pem.is_some())
            .field("h2", &self.h2)
            .finish()
    }
}

impl TlsConfig {
    /// Check the file's TLS keys (`extra_listen` from `--tls-listen` replaces
    /// `gateway.tls_listen` when given; `now`: Unix seconds). Every problem is pushed; files
    /// are named in errors.
    pub fn load(
        f: TlsFile,
        extra_listen: &[String],
        now: u64,
        problems: &mut Vec<String>,
    ) -> TlsConfig {
        let listen_text: Vec<String> = if extra_listen.is_empty() {
            f.tls_listen.unwrap_or_default()
        } else {
            extra_listen.to_vec()
        };
        let mut listen = Vec::new();
        for (i, text) in listen_text.iter().enumerate() {
            match text.parse::<SocketAddr>() {
                Ok(a) if listen.contains(&a) => {
                    problems.push(format!("tls_listen[{i}]: {a} listed twice"))
                }
                Ok(a) => listen.push(a),
                Err(_) => problems.push(format!(
                    "tls_listen[{i}]: {text:?} is not an IP:port address"
                )),
            }
        }
        let https_port = match f.https_port {
            None => DEFAULT_HTTPS_PORT,
            Some(p) => match u16::try_from(p) {
                Ok(p) if p != 0 => p,
                _ => {
                    problems.push("gateway.https_port: must be between 1 and 65535".into());
                    DEFAULT_HTTPS_PORT
                }
            },
        };
        let min_version = match f.tls_min_version.as_deref() {
            None | Some("1.2") => MinVersion::Tls12,
            Some("1.3") => MinVersion::Tls13,
            Some(other) => {
                problems.push(format!(
                    "gateway.tls_min_version: {other:?} must be \"1.2\" or \"1.3\""
                ));
                MinVersion::Tls12
            }
        };
        let fallback =
            f.tls_fallback_certificate
                .as_ref()
                .and_then(|files| match fallback_cert(files, now) {
                    Ok(c) => Some(Arc::new(c)),
                    Err(e) => {
                        problems.push(format!("gateway.tls_fallback_certificate: {e}"));
                        None
                    }
                });
        if fallback.is_some() && listen.is_empty() {
            log::warn!("gateway.tls_fallback_certificate is set but no TLS listener is configured");
        }
        let admin = f
            .admin_tls
            .as_ref()
            .and_then(|files| match certified_key(files) {
                Ok(k) => Some(Arc::new(k)),
                Err(e) => {
                    problems.push(format!("gateway.admin_tls: {e}"));
                    None
                }
            });
        let control_ca_pem = f.control_ca_file.as_deref().and_then(|p| {
            match read_pem(p).and_then(|pem| {
                reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("{}: not PEM certificates: {e}", p.display()))
                    .and_then(|certs| {
                        if certs.is_empty() {
                            Err(format!("{}: no CERTIFICATE block found", p.display()))
                        } else {
                            Ok(pem)
                        }
                    })
            }) {
                Ok(pem) => Some(pem),
                Err(e) => {
                    problems.push(format!("gateway.control_ca_file: {e}"));
                    None
                }
            }
        });
        let max_concurrent_streams = match f.h2.max_concurrent_streams {
            None => DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            Some(n) if (1..=10_000).contains(&n) => n,
            Some(_) => {
                problems
                    .push("gateway.h2.max_concurrent_streams: must be between 1 and 10000".into());
                DEFAULT_H2_MAX_CONCURRENT_STREAMS
            }
        };
        TlsConfig {
            listen,
            https_port,
            min_version,
            fallback,
            admin,
            control_ca_pem,
            h2: H2Limits {
                max_concurrent_streams,
            },
        }
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if buf.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_PEM_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(buf)
}

fn read_pem_text(path: &Path) -> Result<String, String> {
    String::from_utf8(read_pem(path)?).map_err(|_| format!("{}: not PEM text", path.display()))
}

/// The fallback certificate from its files, checked like a table certificate and served
/// for the certificate's own DNS names (which the 421 rule then holds requests to).
pub fn fallback_cert(files: &CertFiles, now: u64) -> Result<CheckedCert, String> {
    let cert_pem = read_pem_text(&files.cert_file)?;
    let key_pem = read_pem_text(&files.key_file)?;
    let (names, not_after) = realmgate_table::leaf_names_and_expiry(&cert_pem)
        .map_err(|e| format!("{}: {e}", files.cert_file.display()))?;
    if names.is_empty() {
        return Err(format!(
            "{}: the certificate has no DNS names (subjectAltName)",
            files.cert_file.display()
        ));
    }
    let cert = Certificate {
        name: "fallback".into(),
        cert_pem,
        key_pem,
        hosts: names,
        not_after: realmgate_table::validate::rfc3339(not_after),
        ocsp_staple: None,
    };
    let checked = realmgate_table::certificate(&cert).map_err(|problems| {
        problems
            .iter()
            .map(|p| {
                let file = if p.to_string().starts_with("key_pem") {
                    &files.key_file
                } else {
                    &files.cert_file
                };
                format!("{}: {p}", file.display())
            })
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    if !checked.is_current(now) {
        log::warn!(
            "the fallback certificate {} is outside its validity (not after {})",
            files.cert_file.display(),
            realmgate_table::validate::rfc3339(checked.not_after)
        );
    }
    Ok(checked)
}

/// A chain and key from files, for the admin listener: the key must belong to the
/// certificate. Its names are the operator's business (an admin endpoint is often an IP).
pub fn certified_key(files: &CertFiles) -> Result<rustls::sign::CertifiedKey, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem = read_pem(&files.cert_file)?;
    let key_pem = read_pem(&files.key_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: malformed PEM: {e}", files.cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no CERTIFICATE block found",
            files.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: no private key found: {e}", files.key_file.display()))?;
    let signing = provider().key_provider.load_private_key(key).map_err(|e| {
        format!(
            "{}: not a usable private key: {e}",
            files.key_file.display()
        )
    })?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "{} does not belong to {}: {e}",
            files.key_file.display(),
            files.cert_file.display()
        )
    })?;
    Ok(certified)
}

/// The one crypto provider of the gateway's TLS: ring.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A server configuration for the data-plane listeners: TLS 1.3 and (unless the minimum is
/// 1.3) TLS 1.2 with ring's suites, which are all ECDHE with an AEAD; ECDSA, RSA and
/// Ed25519 keys; ALPN `h2` then `http/1.1`; stateless resumption tickets (rotating keys)
/// and a bounded session cache; no 0-RTT data (replayable).
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    min: MinVersion,
    alpn: &[&[u8]],
) -> Result<ServerConfig, String> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.max_early_data_size = 0;
    Ok(config)
}

/// ALPN of the data-plane listeners, most preferred first.
pub const ALPN_H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN of the admin listener (axum serves HTTP/1.1 there).
pub const ALPN_H1: &[&[u8]] = &[b"http/1.1"];

/// The admin listener's server configuration: its one certificate.
pub fn admin_server_config(
    key: Arc<rustls::sign::CertifiedKey>,
    min: MinVersion,
) -> Result<ServerConfig, String> {
    server_config(Arc::new(Single(key)), min, ALPN_H1)
}

#[derive(Debug)]
struct Single(Arc<rustls::sign::CertifiedKey>);

impl ResolvesServerCert for Single {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Largest decoded header list an h2 client may send (as for HTTP/1.1 heads).
pub const H2_MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// Streams a client may reset before the gateway accepted them (rapid reset,
/// CVE-2023-44487): past this, GOAWAY `ENHANCE_YOUR_CALM` closes the connection.
pub const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the gateway may reset for a client's protocol errors (streams over the
/// concurrency limit included) before it closes the connection.
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;

/// The h2 server settings of client connections: bounded concurrent streams and header
/// lists, and abusers of resets cut off. (A client's SETTINGS are acknowledged one at a
/// time, with reading paused until the acknowledgement is written, so a SETTINGS flood
/// queues nothing.)
pub fn h2_options(limits: H2Limits) -> pingora_core::protocols::http::v2::server::H2Options {
    let mut o = pingora_core::protocols::http::v2::server::default_h2_options();
    o.max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(H2_MAX_HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(H2_MAX_LOCAL_ERROR_RESETS));
    o
}

#[cfg(test)]
mod tests;
