//! The certificate step (after dns): the tenant's exact platform hosts get one certificate
//! from the configured ACME CA via http-01, stored as the certificate record named after
//! the tenant, and each verified custom domain one of its own (named after the domain), so
//! one customer's DNS cannot hold up another name's renewal. Every gateway serves them from
//! the next table on; the renewal scheduler renews them. A certificate of the tenant's that
//! is no longer wanted (a custom domain removed) is revoked (best effort) and deleted, as
//! `remove` does for all of them. Wildcard hosts need dns-01, which this version does not
//! do: they are left to hand-supplied certificates.

use super::{digest_of, Outputs, Step, StepError, StepKind, TenantInput};
use crate::acme::{Installed, Issuer};
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

/// The certificates the tenant should have: name → names ordered, in order. The platform
/// certificate covers the exact platform hosts (http-01 cannot prove a wildcard).
fn wanted(t: &TenantInput) -> Vec<(String, Vec<String>)> {
    let platform: Vec<String> = t
        .platform_hosts()
        .into_iter()
        .filter(|h| !h.starts_with("*."))
        .collect();
    let mut out = Vec::new();
    if !platform.is_empty() {
        out.push((certificate_name(t), platform));
    }
    for d in &t.domains {
        out.push((domain_certificate_name(d), vec![d.clone()]));
    }
    out
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
        let wanted = wanted(t);
        let mut parts = vec![self.issuer.settings().directory_url.clone()];
        for (name, hosts) in wanted {
            parts.push(format!("{name}={}", hosts.join(",")));
        }
        digest_of(parts.iter().map(String::as_str))
    }

    async fn ensure(&self, t: &TenantInput, _previous: &Outputs) -> Result<Outputs, StepError> {
        let wanted = wanted(t);
        let mut out = Outputs::default();
        // Certificates of the tenant no longer wanted (a custom domain removed): the host
        // already left the table; now the certificate goes.
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
                .insert("note".into(), json!("no exact host: nothing to order"));
            return Ok(out);
        }
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
                .issue_if(t.id.as_str(), name, hosts, stale)
                .await
                .map_err(|e| {
                    // The platform certificate's error as it always read; a domain's names it.
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
        // The platform certificate's fields stay where they were for one certificate.
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
        let mut names: Vec<String> = wanted(t).into_iter().map(|(n, _)| n).collect();
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
