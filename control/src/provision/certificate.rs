//! The certificate step (after dns): the tenant's platform hosts get one certificate from
//! the configured ACME CA, stored as the certificate record named after the tenant, and each
//! verified custom domain one of its own (named after the domain), so one customer's DNS
//! cannot hold up another name's renewal. Exact names are proved with the configured
//! challenge, wildcard hosts always with dns-01. With `platform_hosts: wildcard`, hosts one
//! label under the platform's zone are covered instead by one shared `*.<zone>` certificate
//! (ordered by the first tenant that needs it, then found installed by every other: no new
//! order). Every gateway serves them from the next table on; the renewal scheduler renews
//! them. A certificate of the tenant's that is no longer wanted (a custom domain removed) is
//! revoked (best effort) and deleted once the wanted ones are in place, as `remove` does for
//! all of them; the shared one is no tenant's and stays.

use super::{digest_of, Outputs, Step, StepError, StepKind, TenantInput};
use crate::acme::{Installed, Issuer, PlatformHosts};
use serde_json::json;
use std::sync::Arc;

pub struct CertificateStep {
    issuer: Arc<Issuer>,
}

impl CertificateStep {
    pub fn new(issuer: Arc<Issuer>) -> CertificateStep {
        CertificateStep { issuer }
    }
}

/// The certificate record a tenant's ACME certificate fills: its id (tenant ids are
/// certificate names too).
pub fn certificate_name(t: &TenantInput) -> String {
    t.id.to_string()
}

/// The certificate record of a custom domain: the domain itself (it has a dot, which no
/// tenant id has), or `domain.<digest>` for one longer than a certificate name may be.
pub fn domain_certificate_name(domain: &str) -> String {
    if realmgate_table::is_name(domain) {
        return domain.to_owned();
    }
    let digest = digest_of([domain]);
    format!("domain.{}", &digest[..digest.len().min(32)])
}

/// The shared certificate of `platform_hosts: wildcard`: its record name (`wildcard.<zone>`,
/// or `wildcard.<digest>` for a zone too long for a name) and its names, `*.<zone>` and the
/// apex. No tenant owns it (its status's tenant is empty).
pub fn platform_certificate(zone: &str) -> (String, Vec<String>) {
    let zone = zone.trim_end_matches('.');
    let name = format!("wildcard.{zone}");
    let name = if realmgate_table::is_name(&name) {
        name
    } else {
        let digest = digest_of([zone]);
        format!("wildcard.{}", &digest[..digest.len().min(32)])
    };
    (name, vec![format!("*.{zone}"), zone.to_owned()])
}

/// Whether the shared `*.<zone>` certificate serves `host`: the apex, `*.<zone>` itself, or
/// a name one label under the zone (a wildcard covers one label, as browsers match it).
fn under_wildcard(host: &str, zone: &str) -> bool {
    if host == zone || host.strip_prefix("*.") == Some(zone) {
        return true;
    }
    host.strip_suffix(zone)
        .and_then(|p| p.strip_suffix('.'))
        .is_some_and(|label| !label.is_empty() && !label.contains('.') && label != "*")
}

/// The certificates the tenant should have: name → names ordered, in order; the shared
/// platform certificate first when the tenant has hosts it covers.
fn wanted(t: &TenantInput, mode: PlatformHosts, zone: Option<&str>) -> Vec<(String, Vec<String>)> {
    let shared_zone = zone.filter(|_| mode == PlatformHosts::Wildcard);
    let mut out = Vec::new();
    let mut platform = Vec::new();
    let mut shared = false;
    for h in t.platform_hosts() {
        match shared_zone {
            Some(z) if under_wildcard(&h, z) => shared = true,
            _ => platform.push(h),
        }
    }
    if let (true, Some(z)) = (shared, shared_zone) {
        out.push(platform_certificate(z));
    }
    if !platform.is_empty() {
        out.push((certificate_name(t), platform));
    }
    for d in &t.domains {
        out.push((domain_certificate_name(d), vec![d.clone()]));
    }
    out
}

impl CertificateStep {
    fn wanted(&self, t: &TenantInput) -> Vec<(String, Vec<String>)> {
        let s = self.issuer.settings();
        wanted(t, s.platform_hosts, s.dns.as_ref().map(|d| d.zone.as_str()))
    }

    /// The name a certificate's status and journal carry: the tenant's, or none for the
    /// shared platform certificate.
    fn owner<'a>(&self, t: &'a TenantInput, name: &str) -> &'a str {
        let s = self.issuer.settings();
        match &s.dns {
            Some(d) if platform_certificate(&d.zone).0 == name => "",
            _ => t.id.as_str(),
        }
    }
}

#[async_trait::async_trait]
impl Step for CertificateStep {
    fn kind(&self) -> StepKind {
        StepKind::Certificate
    }

    fn provider(&self) -> &'static str {
        "acme"
    }

    fn input_digest(&self, t: &TenantInput) -> String {
        let wanted = self.wanted(t);
        let mut parts = vec![self.issuer.settings().directory_url.clone()];
        for (name, hosts) in wanted {
            parts.push(format!("{name}={}", hosts.join(",")));
        }
        digest_of(parts.iter().map(String::as_str))
    }

    async fn ensure(&self, t: &TenantInput, _previous: &Outputs) -> Result<Outputs, StepError> {
        let wanted = self.wanted(t);
        let mut out = Outputs::default();
        let renew_before = self.issuer.settings().renew_before;
        let mut certificates = Vec::new();
        for (name, hosts) in &wanted {
            // Issued already and not due: the renewal scheduler takes it from here.
            let stale = |c: Option<&Installed>| {
                let now = crate::time::now_ms() / 1000;
                !c.is_some_and(|c| {
                    let lifetime = c.not_after.saturating_sub(c.not_before) as f64;
                    let renew_at = c.not_after as f64 - lifetime * renew_before;
                    &c.hosts == hosts && c.not_before <= now && (now as f64) < renew_at
                })
            };
            let version = self
                .issuer
                .issue_if(self.owner(t, name), name, hosts, stale)
                .await
                .map_err(|e| {
                    // The platform certificate's error as it always read; others name it.
                    if *name == certificate_name(t) {
                        StepError::new(e.to_string())
                    } else {
                        StepError::new(format!("certificate {name:?}: {e}"))
                    }
                })?;
            let mut c = json!({"certificate": name, "hosts": hosts});
            if let Some(i) = self.issuer.installed(name) {
                c["not_after"] = json!(realmgate_table::validate::rfc3339(i.not_after));
            }
            if let Some(v) = version {
                c["table_version"] = json!(v);
            }
            certificates.push(c);
        }
        // Certificates of the tenant no longer wanted (a custom domain removed, hosts now
        // under the shared wildcard): the wanted ones serve already; now these go.
        let statuses = self
            .issuer
            .status_of_tenant(t.id.as_str())
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        for stale in statuses
            .iter()
            .filter(|s| !wanted.iter().any(|(n, _)| n == &s.certificate))
        {
            self.issuer
                .remove(&stale.certificate)
                .await
                .map_err(|e| StepError::new(e.to_string()))?;
            log::info!(
                "tenant {}: certificate {:?} no longer wanted: revoked and deleted",
                t.id,
                stale.certificate
            );
        }
        if wanted.is_empty() {
            out.public
                .insert("note".into(), json!("no host: nothing to order"));
            return Ok(out);
        }
        // The first certificate's fields stay where they were for one certificate.
        if let Some(first) = certificates.first() {
            for k in ["certificate", "hosts", "not_after", "table_version"] {
                if let Some(v) = first.get(k) {
                    out.public.insert(k.into(), v.clone());
                }
            }
        }
        if certificates.len() > 1 || !t.domains.is_empty() {
            out.public
                .insert("certificates".into(), json!(certificates));
        }
        Ok(out)
    }

    async fn remove(&self, t: &TenantInput, _previous: &Outputs) -> Result<(), StepError> {
        // The shared platform certificate is no tenant's: it stays.
        let mut names: Vec<String> = self
            .wanted(t)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| self.owner(t, n) == t.id.as_str())
            .collect();
        if !names.contains(&certificate_name(t)) {
            names.push(certificate_name(t));
        }
        let statuses = self
            .issuer
            .status_of_tenant(t.id.as_str())
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        for s in statuses {
            if !names.contains(&s.certificate) {
                names.push(s.certificate);
            }
        }
        for name in names {
            self.issuer
                .remove(&name)
                .await
                .map_err(|e| StepError::new(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(hosts: &[&str], domains: &[&str]) -> TenantInput {
        TenantInput {
            id: crate::ids::TenantId::parse("acme").expect("id"),
            display_name: "Acme".into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            domains: domains.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn which_certificates_a_tenant_needs() {
        let t = tenant(
            &[
                "acme.example.dev",
                "*.acme.example.dev",
                "example.dev",
                "app.acme-corp.com",
            ],
            &["app.acme-corp.com"],
        );
        let per_host = wanted(&t, PlatformHosts::PerHost, Some("example.dev"));
        assert_eq!(
            per_host,
            [
                (
                    "acme".to_owned(),
                    ["acme.example.dev", "*.acme.example.dev", "example.dev"]
                        .map(String::from)
                        .to_vec()
                ),
                (
                    "app.acme-corp.com".to_owned(),
                    vec!["app.acme-corp.com".to_owned()]
                ),
            ]
        );
        // Under the shared wildcard: one label under the zone and the apex; a tenant's own
        // wildcard (two labels under) keeps its own certificate, via dns-01.
        let shared = wanted(&t, PlatformHosts::Wildcard, Some("example.dev"));
        assert_eq!(shared[0], platform_certificate("example.dev"));
        assert_eq!(
            shared[0].1,
            ["*.example.dev", "example.dev"].map(String::from)
        );
        assert_eq!(shared[0].0, "wildcard.example.dev");
        assert_eq!(
            shared[1],
            ("acme".to_owned(), vec!["*.acme.example.dev".to_owned()])
        );
        assert_eq!(shared.len(), 3);
        // Only hosts the wildcard covers: nothing of the tenant's own.
        let t = tenant(&["b.example.dev"], &[]);
        let only = wanted(&t, PlatformHosts::Wildcard, Some("example.dev"));
        assert_eq!(only, [platform_certificate("example.dev")]);
        assert!(
            platform_certificate(&format!("{}.dev", "z".repeat(60)))
                .0
                .len()
                <= 63
        );
    }

    #[test]
    fn the_wildcard_covers_one_label() {
        for (host, covered) in [
            ("a.example.dev", true),
            ("example.dev", true),
            ("*.example.dev", true),
            ("a.b.example.dev", false),
            ("*.a.example.dev", false),
            ("aexample.dev", false),
            ("a.example.dev.other", false),
        ] {
            assert_eq!(under_wildcard(host, "example.dev"), covered, "{host}");
        }
    }
}
