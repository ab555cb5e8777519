//! TLS to `https://` pools: how each endpoint's peer is verified (SNI, trust roots, ALPN),
//! decided once when the pool is built, and the health check that probes such a pool over
//! TLS with each endpoint's own peer.

use super::Endpoint;
use async_trait::async_trait;
use pingora_core::connectors::http::Connector as HttpConnector;
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HealthObserve};
use pingora_load_balancing::Backend;
use realmgate_table::Upstream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A CA file larger than this is not a CA file.
const MAX_CA_FILE: u64 = 1 << 20;
/// Most of a health check response body read before it counts as failed.
const MAX_PROBE_BODY: usize = 64 * 1024;
/// One probe, connect to last body byte, at most this long.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// The endpoint's address without its `https://` (`None` for a plain endpoint).
pub fn https_addr(endpoint: &str) -> Option<&str> {
    endpoint.strip_prefix("https://")
}

/// How a pool's endpoints are reached over TLS.
pub struct PoolTls {
    /// SNI and the name the certificate is verified against; `None`: each endpoint's IP
    /// address (no SNI is sent for an IP, and the certificate must name the IP).
    server_name: Option<String>,
    /// The pool's own trust roots (`ca_file`); `None`: the system's.
    ca: Option<Arc<[WrappedX509]>>,
    /// `false` only with `insecure_skip_verify`.
    verify: bool,
    h2: bool,
    /// Pooled connections are shared only between peers with the same key: Pingora's reuse
    /// hash does not cover the trust roots, so this does (a pool with another CA never gets
    /// a connection another pool's CA verified).
    group_key: u64,
}

impl PoolTls {
    /// The TLS settings of `spec`, or `None` for a pool of plain endpoints. The `ca_file` is
    /// read and parsed here: unreadable, not PEM, or without a certificate is an error that
    /// names the pool.
    pub fn from_spec(name: &str, spec: &Upstream) -> Result<Option<PoolTls>, String> {
        if !spec.uses_tls() {
            return Ok(None);
        }
        let (ca, ca_digest) = match spec.ca_file.as_deref() {
            Some(path) => {
                let (ca, digest) =
                    load_ca(path).map_err(|e| format!("pool {name}: ca_file {path}: {e}"))?;
                (Some(ca), digest)
            }
            None => (None, [0; 32]),
        };
        let verify = !spec.insecure_skip_verify;
        let mut key = Sha256::new();
        key.update(ca_digest);
        key.update([u8::from(verify), u8::from(spec.h2)]);
        key.update(spec.server_name.as_deref().unwrap_or("").as_bytes());
        let key = key.finalize();
        let mut group_key = [0u8; 8];
        group_key.copy_from_slice(&key[..8]);
        Ok(Some(PoolTls {
            server_name: spec.server_name.clone(),
            ca,
            verify,
            h2: spec.h2,
            group_key: u64::from_be_bytes(group_key),
        }))
    }

    /// The `Host` of the pool's health check requests: the server name, else `localhost` as
    /// for plain pools.
    pub fn host(&self) -> &str {
        self.server_name.as_deref().unwrap_or("localhost")
    }

    /// The peer for one endpoint of the pool, TLS settings in place (timeouts are the
    /// caller's).
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        // Never empty: Pingora skips verification for a peer without SNI.
        let sni = match &self.server_name {
            Some(name) => name.clone(),
            None => addr.ip().to_string(),
        };
        let mut peer = HttpPeer::new(addr, true, sni);
        peer.group_key = self.group_key;
        let o = &mut peer.options;
        o.verify_cert = self.verify;
        o.verify_hostname = self.verify;
        o.ca = self.ca.clone();
        o.alpn = if self.h2 { ALPN::H2H1 } else { ALPN::H1 };
        peer
    }
}

/// The certificates of a PEM file, each checked to parse (Pingora's connector would panic on
/// one that does not), and the SHA-256 of their DER.
fn load_ca(path: &str) -> Result<(Arc<[WrappedX509]>, [u8; 32]), String> {
    use std::io::Read;
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE + 1).read_to_end(&mut pem))
        .map_err(|e| format!("cannot read it: {e}"))?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(format!("larger than {MAX_CA_FILE} bytes"));
    }
    let mut digest = Sha256::new();
    let mut certs = Vec::new();
    let mut roots = rustls::RootCertStore::empty();
    for (i, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let der = der.map_err(|e| format!("certificate {}: not PEM: {e}", i + 1))?;
        if x509_parser::parse_x509_certificate(der.as_ref()).is_err() {
            return Err(format!("certificate {}: not an X.509 certificate", i + 1));
        }
        roots
            .add(der.clone())
            .map_err(|e| format!("certificate {}: not a usable CA: {e}", i + 1))?;
        digest.update(der.as_ref());
        certs.push(WrappedX509::new(der.as_ref().to_vec(), parse_x509));
    }
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok((certs.into(), digest.finalize().into()))
}

/// Probes an https pool over TLS, each endpoint with its own prebuilt peer (its SNI and trust
/// roots): a TLS handshake, or a `GET` of the health path that must answer 200.
pub struct TlsHealthCheck {
    endpoints: Arc<[Endpoint]>,
    /// The health check request; `None`: the handshake alone.
    req: Option<RequestHeader>,
    timeout: Duration,
    observe: Box<dyn HealthObserve + Send + Sync>,
}

impl TlsHealthCheck {
    pub(super) fn new(
        endpoints: Arc<[Endpoint]>,
        req: Option<RequestHeader>,
        timeout: Duration,
        observe: Box<dyn HealthObserve + Send + Sync>,
    ) -> TlsHealthCheck {
        TlsHealthCheck {
            endpoints,
            req,
            timeout,
            observe,
        }
    }

    async fn probe(&self, target: &Backend) -> Result<()> {
        let Some(ep) = self
            .endpoints
            .iter()
            .find(|e| super::inet(target) == Some(e.addr))
        else {
            return Error::e_explain(ErrorType::InternalError, "no such endpoint");
        };
        let mut peer = ep.peer.clone();
        let o = &mut peer.options;
        o.connection_timeout = Some(self.timeout);
        o.total_connection_timeout = Some(self.timeout);
        o.read_timeout = Some(self.timeout);
        o.write_timeout = Some(self.timeout);
        let Some(req) = &self.req else {
            return transport().get_stream(&peer).await.map(|_| ());
        };
        let (mut session, _) = connector().get_http_session(&peer).await?;
        session.write_request_header(Box::new(req.clone())).await?;
        session.finish_request_body().await?;
        session.read_response_header().await?;
        let status = session.response_header().map(|r| r.status.as_u16());
        if status != Some(200) {
            return Error::e_explain(
                ErrorType::CustomCode("non 200 code", status.unwrap_or(0)),
                "during https health check",
            );
        }
        let mut read = 0;
        while let Some(chunk) = session.read_response_body().await? {
            read += chunk.len();
            if read > MAX_PROBE_BODY {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "health body too long");
            }
        }
        session.shutdown().await;
        Ok(())
    }
}

#[async_trait]
impl HealthCheck for TlsHealthCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        match tokio::time::timeout(PROBE_DEADLINE, self.probe(target)).await {
            Ok(r) => r,
            Err(_) => Error::e_explain(ErrorType::ConnectTimedout, "https health check"),
        }
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        self.observe.observe(target, healthy).await;
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

/// One connector for every https health check: each builds its TLS context from the system's
/// roots, which is worth doing once.
fn connector() -> &'static HttpConnector {
    static C: OnceLock<HttpConnector> = OnceLock::new();
    C.get_or_init(|| HttpConnector::new(None))
}

fn transport() -> &'static TransportConnector {
    static C: OnceLock<TransportConnector> = OnceLock::new();
    C.get_or_init(|| TransportConnector::new(None))
}

#[cfg(test)]
mod tests;
