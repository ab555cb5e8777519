//! TLS at the edge: what a client connection was established with, read by the request
//! path (the SNI/Host rule, the scheme of redirects and cookies); the certificate index and
//! the SNI resolver the handshake uses; the listeners' TLS configuration and accept step.

pub mod accept;
pub mod admin;
pub mod index;
pub mod resolve;
pub mod settings;

pub use accept::TlsEdge;
pub use index::CertIndex;
pub use resolve::SniResolver;
pub use settings::{MinVersion, TlsConfig};

use pingora_core::protocols::Digest;
use realmgate_table::CheckedCert;
use std::sync::Arc;

/// What a client's TLS connection was established with. Attached to the connection's SSL
/// digest when the handshake completes; every request on the connection reads it.
#[derive(Debug)]
pub struct ConnTls {
    /// The server name the client asked for (SNI), normalised; `None` when it sent none.
    pub sni: Option<Box<str>>,
    /// The certificate the connection was established with (a table's, or the fallback).
    pub cert: Arc<CheckedCert>,
}

impl ConnTls {
    /// Whether a request for `host` (normalised) may travel on this connection: the
    /// certificate covers it, with certificate semantics. Otherwise the answer is 421.
    pub fn covers(&self, host: &str) -> bool {
        self.cert.covers(host)
    }
}

/// The TLS facts of the connection a request came in on; `None` on plain HTTP.
pub fn conn_tls(digest: Option<&Digest>) -> Option<&ConnTls> {
    digest?.ssl_digest.as_ref()?.extension.get::<ConnTls>()
}
