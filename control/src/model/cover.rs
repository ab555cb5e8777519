//! Which tenants a certificate covers and which certificates cover a tenant, through the
//! model's host indexes (by host, by an exact host's parent, certificate names by host): in
//! the size of the answer, never a scan of every tenant or certificate.

use super::{CertRecord, Model, TenantId};
use realmgate_table::host::HostPattern;
use std::collections::BTreeSet;

impl Model {
    /// The tenants a certificate is served for (see [`CertRecord::covers`]), in id order:
    /// through the host indexes, in the size of the answer.
    pub fn covered_by(&self, c: &CertRecord) -> BTreeSet<TenantId> {
        let mut out = BTreeSet::new();
        for name in &c.hosts {
            out.extend(self.hosts.get(name).cloned());
            if let HostPattern::Wildcard(suffix) = name {
                out.extend(self.under.get(suffix).into_iter().flatten().cloned());
            }
        }
        out
    }

    /// Insert or replace a certificate (by its name), keeping the certificate index in step.
    pub fn put_certificate(&mut self, c: CertRecord) {
        self.remove_certificate(&c.name);
        for h in &c.hosts {
            self.cert_names
                .entry(h.clone())
                .or_default()
                .insert(c.name.clone());
        }
        self.certificates.insert(c.name.clone(), c);
    }

    pub fn remove_certificate(&mut self, name: &str) -> Option<CertRecord> {
        let old = self.certificates.remove(name)?;
        for h in &old.hosts {
            if let Some(names) = self.cert_names.get_mut(h) {
                names.remove(name);
                if names.is_empty() {
                    self.cert_names.remove(h);
                }
            }
        }
        Some(old)
    }

    /// The certificates that cover any of `hosts` (see [`CertRecord::covers`]), in name
    /// order: through the certificate index, in the size of the answer.
    pub fn certificates_covering(&self, hosts: &[HostPattern]) -> Vec<&CertRecord> {
        let mut names = BTreeSet::new();
        for h in hosts {
            names.extend(self.cert_names.get(h).into_iter().flatten());
            if let Some(parent) = exact_parent(h) {
                let wildcard = HostPattern::Wildcard(parent.to_owned());
                names.extend(self.cert_names.get(&wildcard).into_iter().flatten());
            }
        }
        names
            .into_iter()
            .filter_map(|n| self.certificates.get(n))
            .collect()
    }
}

/// The parent of an exact host (`example.com` for `acme.example.com`); none for a wildcard.
pub(super) fn exact_parent(host: &HostPattern) -> Option<&str> {
    match host {
        HostPattern::Exact(h) => h.split_once('.').map(|(_, parent)| parent),
        HostPattern::Wildcard(_) => None,
    }
}
