//! The certificate step (after dns): the tenant's exact hosts get one certificate from the
//! configured ACME CA via http-01, stored as the certificate record named after the tenant,
//! so every gateway serves it from the next table on. `remove` revokes it (best effort) and
//! deletes the record. Wildcard hosts need dns-01, which this version does not do: they are
//! left to hand-supplied certificates.

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

/// The names ordered: the tenant's exact hosts, in its order (http-01 cannot prove a
/// wildcard).
fn exact_hosts(t: &TenantInput) -> Vec<String> {
    t.hosts
        .iter()
        .filter(|h| !h.starts_with("*."))
        .cloned()
        .collect()
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
        let hosts = exact_hosts(t);
        let mut parts = vec![self.issuer.settings().directory_url.as_str()];
        parts.extend(hosts.iter().map(String::as_str));
        digest_of(parts)
    }

    async fn ensure(&self, t: &TenantInput, _previous: &Outputs) -> Result<Outputs, StepError> {
        let hosts = exact_hosts(t);
        let name = certificate_name(t);
        let mut out = Outputs::default();
        if hosts.is_empty() {
            out.public
                .insert("note".into(), json!("no exact host: nothing to order"));
            return Ok(out);
        }
        let renew_before = self.issuer.settings().renew_before;
        // Issued already and not due: the renewal scheduler takes it from here.
        let stale = |c: Option<&Installed>| {
            let now = crate::time::now_ms() / 1000;
            !c.is_some_and(|c| {
                let lifetime = c.not_after.saturating_sub(c.not_before) as f64;
                let renew_at = c.not_after as f64 - lifetime * renew_before;
                c.hosts == hosts && c.not_before <= now && (now as f64) < renew_at
            })
        };
        let version = self
            .issuer
            .issue_if(t.id.as_str(), &name, &hosts, stale)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        out.public.insert("certificate".into(), json!(name));
        out.public.insert("hosts".into(), json!(hosts));
        if let Some(c) = self.issuer.installed(&name) {
            out.public.insert(
                "not_after".into(),
                json!(realmgate_table::validate::rfc3339(c.not_after)),
            );
        }
        if let Some(v) = version {
            out.public.insert("table_version".into(), json!(v));
        }
        Ok(out)
    }

    async fn remove(&self, t: &TenantInput, _previous: &Outputs) -> Result<(), StepError> {
        self.issuer
            .remove(&certificate_name(t))
            .await
            .map_err(|e| StepError::new(e.to_string()))
    }
}
