//! The certificates of one table, indexed for the handshake: exact names in a hash map,
//! wildcards by the suffix they stand above. Built with the snapshot (or changed from the
//! previous one by a delta), swapped with it.

use crate::persistent::ShardMap;
use realmgate_table::host::HostPattern;
use realmgate_table::CheckedCert;
use std::borrow::Cow;
use std::sync::Arc;

/// One named certificate of the table.
#[derive(Debug, Clone)]
pub struct NamedCert {
    pub name: Box<str>,
    pub cert: Arc<CheckedCert>,
}

/// Certificates by the names they serve. The table guarantees each exact name and each
/// wildcard is claimed by one certificate. Persistent: replacing one certificate for the next
/// table copies the shards its names fall in ([`ShardMap`]).
#[derive(Clone, Default)]
pub struct CertIndex {
    exact: ShardMap<Box<str>, Arc<CheckedCert>>,
    /// `*.beta.test` stored under `beta.test`.
    wildcard: ShardMap<Box<str>, Arc<CheckedCert>>,
    /// Every certificate by its table name.
    by_name: ShardMap<Box<str>, NamedCert>,
}

impl std::fmt::Debug for CertIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertIndex")
            .field("certificates", &self.by_name.len())
            .finish_non_exhaustive()
    }
}

impl CertIndex {
    /// Index certificates given with their table names.
    pub fn build(certs: impl IntoIterator<Item = (String, CheckedCert)>) -> CertIndex {
        let mut index = CertIndex::default();
        for (name, cert) in certs {
            index.upsert(name, cert);
        }
        index
    }

    /// Add a certificate, or replace the one with its name. Validation refuses a server name
    /// claimed twice; were one to be, the certificate holding it keeps it.
    pub fn upsert(&mut self, name: String, cert: CheckedCert) {
        self.remove(&name);
        let cert = Arc::new(cert);
        for host in &cert.hosts {
            let (map, key) = match host {
                HostPattern::Exact(h) => (&mut self.exact, h),
                HostPattern::Wildcard(s) => (&mut self.wildcard, s),
            };
            if !map.contains_key(key.as_str()) {
                map.insert(key.as_str().into(), Arc::clone(&cert));
            }
        }
        let name: Box<str> = name.into_boxed_str();
        self.by_name.insert(name.clone(), NamedCert { name, cert });
    }

    /// Remove the certificate named `name`, and the server names it holds.
    pub fn remove(&mut self, name: &str) -> Option<NamedCert> {
        let old = self.by_name.remove(name)?;
        for host in &old.cert.hosts {
            let (map, key) = match host {
                HostPattern::Exact(h) => (&mut self.exact, h),
                HostPattern::Wildcard(s) => (&mut self.wildcard, s),
            };
            if map
                .get(key.as_str())
                .is_some_and(|c| Arc::ptr_eq(c, &old.cert))
            {
                map.remove(key.as_str());
            }
        }
        Some(old)
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

    /// The certificate with this table name.
    pub fn named(&self, name: &str) -> Option<&NamedCert> {
        self.by_name.get(name)
    }

    /// Every certificate with its table name, in no particular order.
    pub fn all(&self) -> impl Iterator<Item = &NamedCert> + '_ {
        self.by_name.iter().map(|(_, c)| c)
    }

    /// Every certificate, by table name (reports: the order does not depend on the hasher).
    pub fn sorted(&self) -> Vec<&NamedCert> {
        let mut all: Vec<&NamedCert> = self.all().collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Whether `other` holds the very same certificates (unchanged since a clone): the
    /// expiry metrics are only redone when they changed.
    pub fn same_as(&self, other: &CertIndex) -> bool {
        self.by_name.same_as(&other.by_name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
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
