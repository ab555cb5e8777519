//! The certificates of one table, indexed for the handshake: exact names in a hash map,
//! wildcards by the suffix they stand above. Built with the snapshot, swapped with it.

use realmgate_table::host::HostPattern;
use realmgate_table::CheckedCert;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// One named certificate of the table.
#[derive(Debug, Clone)]
pub struct NamedCert {
    pub name: Box<str>,
    pub cert: Arc<CheckedCert>,
}

/// Certificates by the names they serve. The table guarantees each exact name and each
/// wildcard is claimed by one certificate.
#[derive(Debug, Default)]
pub struct CertIndex {
    exact: HashMap<Box<str>, Arc<CheckedCert>, ahash::RandomState>,
    /// `*.beta.test` stored under `beta.test`.
    wildcard: HashMap<Box<str>, Arc<CheckedCert>, ahash::RandomState>,
    /// Every certificate, in table order.
    all: Box<[NamedCert]>,
}

impl CertIndex {
    /// Index certificates given with their table names, in table order.
    pub fn build(certs: impl IntoIterator<Item = (String, CheckedCert)>) -> CertIndex {
        let mut exact = HashMap::default();
        let mut wildcard = HashMap::default();
        let mut all = Vec::new();
        for (name, cert) in certs {
            let cert = Arc::new(cert);
            for host in &cert.hosts {
                let (map, key) = match host {
                    HostPattern::Exact(h) => (&mut exact, h),
                    HostPattern::Wildcard(s) => (&mut wildcard, s),
                };
                // Validation refuses a name claimed twice; were it not, the first would win.
                map.entry(key.as_str().into())
                    .or_insert_with(|| Arc::clone(&cert));
            }
            all.push(NamedCert {
                name: name.into_boxed_str(),
                cert,
            });
        }
        exact.shrink_to_fit();
        wildcard.shrink_to_fit();
        CertIndex {
            exact,
            wildcard,
            all: all.into_boxed_slice(),
        }
    }

    /// The most specific certificate for a normalised server name: the exact name, then a
    /// wildcard one label above it (`*.beta.test` covers `x.beta.test`, never
    /// `a.b.beta.test`).
    pub fn lookup(&self, name: &str) -> Option<&Arc<CheckedCert>> {
        if let Some(c) = self.exact.get(name) {
            return Some(c);
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() || label == "*" {
            return None;
        }
        self.wildcard.get(parent)
    }

    /// Every certificate with its table name, in table order.
    pub fn all(&self) -> &[NamedCert] {
        &self.all
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// Longest server name looked up; a DNS name is at most 253 characters.
pub const MAX_SERVER_NAME: usize = 253;

/// A server name as a client sent it, normalised for lookup: ASCII lower-case, one trailing
/// dot removed. `None` for what is no DNS name (empty, too long, an IP literal): such a name
/// never selects a certificate.
pub fn normalise_sni(raw: &str) -> Option<Cow<'_, str>> {
    let name = raw.strip_suffix('.').unwrap_or(raw);
    if name.is_empty()
        || name.len() > MAX_SERVER_NAME
        || name.starts_with('[')
        || name.parse::<std::net::IpAddr>().is_ok()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(name))
    }
}
