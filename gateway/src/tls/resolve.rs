//! The handshake's certificate choice: SNI → the current table's most specific certificate,
//! or the operator's fallback certificate, or none (the handshake fails with rustls's
//! alert). Never another tenant's certificate for a name nobody claimed.

use super::index::{normalise_sni, CertIndex};
use realmgate_table::CheckedCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

tokio::task_local! {
    /// The certificate the resolver chose for the handshake running on this task: the
    /// handshake-complete callback attaches it to the connection.
    pub(super) static CHOSEN: RefCell<Option<Arc<CheckedCert>>>;
}

/// Where the certificates come from: the store's snapshot in force (swapped with each table;
/// the store implements this), or an index of its own.
pub trait CertSource: Send + Sync {
    /// The most specific certificate for a normalised server name.
    fn lookup(&self, name: &str) -> Option<Arc<CheckedCert>>;
}

impl CertSource for CertIndex {
    fn lookup(&self, name: &str) -> Option<Arc<CheckedCert>> {
        CertIndex::lookup(self, name).cloned()
    }
}

/// The rustls certificate resolver of the TLS listeners.
pub struct SniResolver {
    source: Arc<dyn CertSource>,
    fallback: Option<Arc<CheckedCert>>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl SniResolver {
    pub fn new(source: Arc<dyn CertSource>, fallback: Option<Arc<CheckedCert>>) -> SniResolver {
        SniResolver { source, fallback }
    }

    /// The certificate for a server name as the client sent it (`None`: no SNI, or not a DNS
    /// name): the table's most specific one, else the fallback, else none.
    pub fn choose(&self, sni: Option<&str>) -> Option<Arc<CheckedCert>> {
        sni.and_then(normalise_sni)
            .and_then(|name| self.source.lookup(&name))
            .or_else(|| self.fallback.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(cert) = self.choose(hello.server_name()) else {
            log::debug!(
                "TLS handshake refused: no certificate for server name {:?}",
                hello.server_name()
            );
            return None;
        };
        let key = Arc::clone(&cert.key);
        // Outside a listener's handshake (a test calling the resolver) there is no slot.
        let _ = CHOSEN.try_with(|c| *c.borrow_mut() = Some(cert));
        Some(key)
    }
}

#[cfg(test)]
mod tests;
