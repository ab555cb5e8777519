//! TLS to `https://` pools: how each endpoint's peer is verified (SNI, trust roots, ALPN),
//! decided once when the pool is built.

use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use realmgate_table::Upstream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

/// A CA file larger than this is not a CA file.
const MAX_CA_FILE: u64 = 1 << 20;

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

#[cfg(test)]
mod tests;
