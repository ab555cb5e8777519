//! Tenants' custom domains: added `pending` with a random TXT value the operator publishes
//! at `_realmgate-challenge.<domain>`, checked against the configured resolver with backoff
//! until a deadline (`domain_check`), and only once seen entering the tenant's hosts (and
//! so its certificates). A domain another tenant has, or one under the platform's own zone,
//! is refused. Removal takes the host out of the table first; the certificate step then
//! revokes and deletes the domain's certificate.

use super::{not_found, Control, ServiceError};
use crate::body::Fields;
use crate::ids::TenantId;
pub use crate::model::CHALLENGE_LABEL;
use crate::model::{DomainRecord, DomainState};
use crate::time::now_ms;
use crate::views::{Deleted, DomainView};
use base64::Engine as _;
use realmgate_table::host::HostPattern;
use realmgate_table::Problem;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// The `domains:` section, resolved.
#[derive(Debug, Clone)]
pub struct DomainSettings {
    /// The DNS server asked (a recursive resolver in production; never the gateway's).
    pub resolver: SocketAddr,
    /// Zones of the platform's own hostnames (no trailing dot): never a custom domain.
    pub platform_zones: Vec<String>,
    /// How long a domain stays pending before it is `failed`.
    pub check_for: Duration,
    /// The first pause between checks, doubled up to `check_max`.
    pub check_initial: Duration,
    pub check_max: Duration,
    /// Longest wait for one answer.
    pub query_timeout: Duration,
}

impl Control {
    /// Set once at start (`domains:` configured); without it, domains are refused.
    pub fn set_domain_settings(&self, s: DomainSettings) {
        let _ = self.domain_settings.set(s);
    }

    pub(super) fn domain_settings(&self) -> Result<&DomainSettings, ServiceError> {
        self.domain_settings.get().ok_or_else(|| ServiceError::Conflict {
            code: "domains_not_configured",
            message: "custom domains need a resolver to check ownership with: set domains.resolver (host:port) in realmctl's configuration and restart".into(),
            details: json!({}),
        })
    }

    /// `POST /v1/tenants/{id}/domains`: `true` when added (or checked anew after `failed`).
    pub async fn add_domain(
        &self,
        tenant: &TenantId,
        body: &[u8],
    ) -> Result<(DomainView, bool), ServiceError> {
        let mut f = Fields::parse(body).map_err(ServiceError::Invalid)?;
        let raw: Option<String> = f.require("domain");
        let problems = f.finish();
        let Some(raw) = raw.filter(|_| problems.is_empty()) else {
            return Err(ServiceError::Invalid(problems));
        };
        let settings = self.domain_settings()?.clone();
        let domain = normalise(&raw, &settings.platform_zones)
            .map_err(|m| ServiceError::Invalid(vec![Problem::new("domain", m)]))?;
        let registry = self.lock_registry().await;
        let now = now_ms();
        let record = {
            let model = self.read();
            let t = model
                .tenants
                .get(tenant)
                .ok_or_else(|| not_found("tenant", tenant.as_str()))?;
            if t.provision.state.deleting() {
                return Err(ServiceError::Conflict {
                    code: "tenant_deleting",
                    message: format!("tenant \"{tenant}\" is being deleted"),
                    details: json!({"tenant": tenant}),
                });
            }
            let pattern = HostPattern::parse(&domain)
                .map_err(|e| ServiceError::Invalid(vec![Problem::new("domain", e.to_string())]))?;
            let owner = model
                .domains
                .get(&domain)
                .map(|d| d.tenant.clone())
                .or_else(|| model.host_owner(&pattern).cloned());
            match (owner, model.domains.get(&domain)) {
                (Some(other), _) if &other != tenant => {
                    return Err(ServiceError::Conflict {
                        code: "domain_taken",
                        message: format!(
                            "{domain} already belongs to tenant \"{other}\": a domain has one tenant; remove it there first"
                        ),
                        details: json!({"domain": domain, "tenant": other}),
                    });
                }
                (Some(_), None) => {
                    return Err(ServiceError::Conflict {
                        code: "domain_is_a_host",
                        message: format!(
                            "{domain} is already one of tenant \"{tenant}\"'s hosts (given by the operator, not checked): remove it from hosts first to have its ownership checked"
                        ),
                        details: json!({"domain": domain}),
                    });
                }
                (_, Some(d)) if d.state != DomainState::Failed => {
                    return Ok((DomainView::from(d), false));
                }
                _ => {}
            }
            let previous = model.domains.get(&domain);
            DomainRecord {
                domain: domain.clone(),
                tenant: tenant.clone(),
                state: DomainState::Pending,
                // Checked anew after a failure with the value the operator already has.
                token: previous.map_or_else(new_token, |d| d.token.clone()),
                reason: Some("not checked yet".into()),
                attempts: 0,
                next_check_at_ms: now,
                check_until_ms: now + settings.check_for.as_millis() as u64,
                verified_at_ms: None,
                created_at_ms: previous.map_or(now, |d| d.created_at_ms),
                updated_at_ms: now,
            }
        };
        registry.save_domain(&record).await?;
        drop(registry);
        log::info!(
            "domain {domain} added to tenant {tenant}: pending until its TXT record is seen at {}",
            record.txt_name()
        );
        let view = DomainView::from(&record);
        self.write().domains.insert(record);
        self.domain_checks.notify_one();
        Ok((view, true))
    }

    /// `GET /v1/tenants/{id}/domains` (or every tenant's).
    pub fn list_domains(&self, tenant: Option<&TenantId>) -> Result<Vec<DomainView>, ServiceError> {
        let model = self.read();
        if let Some(t) = tenant {
            if !model.tenants.contains_key(t) {
                return Err(not_found("tenant", t.as_str()));
            }
        }
        Ok(model
            .domains
            .values()
            .filter(|d| {
                tenant.is_none_or(|t| &d.tenant == t) && model.tenants.contains_key(&d.tenant)
            })
            .map(DomainView::from)
            .collect())
    }

    /// A page of [`Control::list_domains`] after `after`, in domain order.
    pub fn list_domains_page(
        &self,
        tenant: Option<&TenantId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DomainView>, Option<String>), ServiceError> {
        let model = self.read();
        if let Some(t) = tenant {
            if !model.tenants.contains_key(t) {
                return Err(not_found("tenant", t.as_str()));
            }
        }
        Ok(crate::model::page_of(
            model.domains.after(tenant, after),
            limit,
            |d| {
                model
                    .tenants
                    .contains_key(&d.tenant)
                    .then(|| DomainView::from(d))
            },
        ))
    }

    /// `DELETE /v1/tenants/{id}/domains/{domain}`: the host leaves the tenant (and the
    /// table) first; the certificate step then revokes and deletes its certificate.
    pub async fn remove_domain(
        &self,
        tenant: &TenantId,
        raw: &str,
    ) -> Result<Deleted, ServiceError> {
        let domain = raw.trim_end_matches('.').to_ascii_lowercase();
        let in_hosts = {
            let model = self.read();
            match model.domains.get(&domain) {
                Some(d) if &d.tenant == tenant => {}
                _ => return Err(not_found("domain", &domain)),
            }
            model
                .tenants
                .get(tenant)
                .is_some_and(|t| t.wire.hosts.contains(&domain))
        };
        if in_hosts {
            self.set_domain_host(tenant, &domain, false).await?;
        }
        let registry = self.lock_registry().await;
        registry.delete_domain(&domain).await?;
        self.write().domains.remove(&domain);
        log::info!("domain {domain} removed from tenant {tenant}");
        Ok(Deleted {
            deleted: domain,
            table_version: self.version(),
        })
    }

    /// Add `domain` to (or take it out of) the tenant's hosts, through the same path as a
    /// PATCH: validated, conflicts checked, provisioning woken (the certificate step).
    pub(super) async fn set_domain_host(
        &self,
        tenant: &TenantId,
        domain: &str,
        present: bool,
    ) -> Result<(), ServiceError> {
        let hosts: Vec<String> = {
            let model = self.read();
            let Some(t) = model.tenants.get(tenant) else {
                return Err(not_found("tenant", tenant.as_str()));
            };
            let mut hosts: Vec<String> = t
                .wire
                .hosts
                .iter()
                .filter(|h| h.as_str() != domain)
                .cloned()
                .collect();
            if present {
                hosts.push(domain.to_owned());
            }
            if hosts == t.wire.hosts {
                return Ok(());
            }
            hosts
        };
        let body = serde_json::to_vec(&json!({ "hosts": hosts }))
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.update_tenant(tenant, &body, None).await.map(|_| ())
    }
}

/// 24 random bytes, base64url: the TXT value of one domain.
fn new_token() -> String {
    let mut bytes = [0u8; 24];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy: a value nobody can guess is not possible; fastrand is better than
        // a constant, and the check still binds the domain to whoever publishes it.
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The domain as a host (normalised), or why it cannot be a custom domain.
pub fn normalise(raw: &str, platform_zones: &[String]) -> Result<String, String> {
    let pattern = HostPattern::parse(raw).map_err(|e| format!("{raw:?}: {e}"))?;
    let HostPattern::Exact(host) = &pattern else {
        return Err(format!(
            "{raw:?} is a wildcard: a custom domain is one exact name (each is checked on its own)"
        ));
    };
    let host = host.to_string();
    if host.parse::<std::net::IpAddr>().is_ok() || !host.contains('.') {
        return Err(format!(
            "{raw:?} is not a domain name under a public suffix"
        ));
    }
    if let Some(zone) = platform_zones
        .iter()
        .find(|z| host == **z || host.ends_with(&format!(".{z}")))
    {
        return Err(format!(
            "{host} is under the platform's own zone {zone}: give it to the tenant as a host (PATCH /v1/tenants/{{id}} hosts); custom domains are names outside it"
        ));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_domains_are_exact_names_outside_the_platform() {
        let zones = vec!["realmgate.test".to_owned()];
        assert_eq!(
            normalise("App.Acme-Corp.COM.", &zones).as_deref(),
            Ok("app.acme-corp.com")
        );
        for (bad, why) in [
            ("*.acme-corp.com", "wildcard"),
            ("acme.realmgate.test", "platform's own zone"),
            ("realmgate.test", "platform's own zone"),
            ("localhost", "not a domain name"),
            ("10.0.0.1", "not a domain name"),
            ("a b.com", "\"a b.com\""),
        ] {
            let e = normalise(bad, &zones).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        // A zone's suffix is not the zone.
        assert!(normalise("notrealmgate.test", &zones).is_ok());
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 32);
    }
}
