//! Certificates: validated with the table crate's own check (the one every gateway runs),
//! refused when expired, not yet valid or claiming a name another certificate serves, then
//! stored with the key sealed. Views never carry the key.

use super::{not_found, Control, ServiceError};
use crate::acme::CertStatus;
use crate::body::Fields;
use crate::model::{CertRecord, Model, TenantRecord};
use crate::time::{now_ms, rfc3339};
use crate::views::{
    days_left, validity, AcmeCertView, CertList, CertView, TenantCertView, TenantView,
};
use realmgate_table::host::HostPattern;
use realmgate_table::validate::rfc3339 as rfc3339_secs;
use realmgate_table::{is_name, Certificate, Problem};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

impl Control {
    /// `GET /v1/certificates?after=&limit=`: a page of certificates in name order with their
    /// ACME status, the next page's `after`, and (on the first page) the ACME certificates
    /// not issued yet. Costs the page, not the registry.
    pub async fn certificate_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(CertList, Option<String>), ServiceError> {
        let (mut certificates, next) = {
            let model = self.read();
            let now = now_ms() / 1000;
            crate::model::page_of(
                model
                    .certificates
                    .range::<str, _>(crate::model::after_bound(after))
                    .map(|(k, c)| (k.as_str(), c)),
                limit,
                |c| Some(cert_view(&model, c, now)),
            )
        };
        let registry = self.lock_registry().await;
        let mut statuses: BTreeMap<String, CertStatus> =
            match (certificates.first(), certificates.last()) {
                (Some(first), Some(last)) => registry
                    .acme_statuses_between(&first.name, &last.name)
                    .await?
                    .into_iter()
                    .map(|s| (s.certificate.clone(), s))
                    .collect(),
                _ => BTreeMap::new(),
            };
        for c in &mut certificates {
            c.acme = statuses.remove(&c.name).map(|s| AcmeCertView::from(&s));
        }
        let ordering = if after.is_none() {
            let unsettled = registry.acme_statuses_unsettled().await?;
            drop(registry);
            let model = self.read();
            unsettled
                .iter()
                .filter(|s| !model.certificates.contains_key(&s.certificate))
                .map(AcmeCertView::from)
                .collect()
        } else {
            Vec::new()
        };
        Ok((
            CertList {
                certificates,
                ordering,
            },
            next,
        ))
    }

    /// `GET /v1/certificates/{name}`, with its ACME status (also before it is issued: then
    /// the view has only its name, hosts and status).
    pub async fn certificate_shown(&self, name: &str) -> Result<CertView, ServiceError> {
        let status = {
            let registry = self.lock_registry().await;
            registry.acme_statuses_between(name, name).await?
        };
        let status = status.first().map(AcmeCertView::from);
        match self.certificate(name) {
            Ok(mut v) => {
                v.acme = status;
                Ok(v)
            }
            Err(e) => {
                let Some(s) = status else { return Err(e) };
                Ok(CertView {
                    name: name.to_owned(),
                    hosts: s.hosts.clone(),
                    not_before: String::new(),
                    not_after: String::new(),
                    days_left: 0,
                    state: s.state.clone(),
                    fingerprint: String::new(),
                    tenants: vec![s.tenant.clone()],
                    issuer: String::new(),
                    table_version: 0,
                    created_at: s.updated_at.clone(),
                    updated_at: s.updated_at.clone(),
                    acme: Some(s),
                })
            }
        }
    }

    /// Set `realmctl_certificate_expiry_seconds` from the certificates in force (at scrape).
    pub fn observe_certificate_expiry(&self, metrics: &crate::metrics::Metrics) {
        let model = self.read();
        metrics.certificate_expiry(
            model
                .certificates
                .values()
                .map(|c| (c.name.as_str(), c.not_after)),
            now_ms() / 1000,
        );
    }

    pub fn certificate(&self, name: &str) -> Result<CertView, ServiceError> {
        let model = self.read();
        let c = model
            .certificates
            .get(name)
            .ok_or_else(|| not_found("certificate", name))?;
        Ok(cert_view(&model, c, now_ms() / 1000))
    }

    /// Add or replace a certificate; `true` when it was added. The same chain, names and key
    /// again change nothing.
    pub async fn put_certificate(
        &self,
        name: &str,
        body: &[u8],
    ) -> Result<(CertView, bool), ServiceError> {
        let (wire, defaulted) = decode(name, body).map_err(|mut problems| {
            for p in &mut problems {
                p.message = format!("certificate {name:?}: {}", p.message);
            }
            ServiceError::Invalid(problems)
        })?;
        let named = |mut problems: Vec<Problem>| {
            for p in &mut problems {
                if defaulted && p.at == "hosts" && wire.hosts.is_empty() {
                    p.message = "the certificate (first in the chain) names no DNS host (subjectAltName): give the hosts it serves".into();
                }
                p.message = format!("certificate {name:?}: {}", p.message);
            }
            ServiceError::Invalid(problems)
        };
        if self.secret_box.is_ephemeral() {
            return Err(ServiceError::Conflict {
                code: "no_secrets_key",
                message: "certificate keys are sealed at rest with provision.secrets_key_file, which is not configured: make one (head -c 32 /dev/urandom | base64 > FILE), set it, and restart realmctl".into(),
                details: json!({"certificate": name}),
            });
        }
        let checked = realmgate_table::certificate(&wire).map_err(named)?;
        let now = now_ms();
        let now_s = now / 1000;
        if !checked.is_current(now_s) {
            let message = if now_s > checked.not_after {
                format!(
                    "expired at {}: give a current certificate",
                    rfc3339_secs(checked.not_after)
                )
            } else {
                format!(
                    "not valid before {}: add it once it is",
                    rfc3339_secs(checked.not_before)
                )
            };
            return Err(named(vec![Problem::new("cert_pem", message)]));
        }
        let registry = self.lock_registry().await;
        let (record, created) = {
            let model = self.read();
            let taken: Vec<serde_json::Value> = checked
                .hosts
                .iter()
                .filter_map(|h| {
                    model
                        .certificates
                        .values()
                        .find(|c| c.name != name && c.hosts.contains(h))
                        .map(|c| json!({"host": h.to_string(), "certificate": c.name}))
                })
                .collect();
            if !taken.is_empty() {
                let list: Vec<String> = taken
                    .iter()
                    .map(|t| format!("{} (certificate {})", t["host"], t["certificate"]))
                    .collect();
                return Err(ServiceError::Conflict {
                    code: "certificate_host_conflict",
                    message: format!(
                        "certificate {name:?}: a host name has one certificate; already served: {}",
                        list.join(", ")
                    ),
                    details: json!({"hosts": taken}),
                });
            }
            let existing = model.certificates.get(name);
            if let Some(old) = existing {
                let same_key = self
                    .secret_box
                    .open_certificate_key(name, &old.key_sealed)
                    .is_ok_and(|k| bool::from(k.as_bytes().ct_eq(wire.key_pem.as_bytes())));
                if same_key && old.cert_pem == wire.cert_pem && old.hosts == checked.hosts {
                    return Ok((cert_view(&model, old, now_s), false));
                }
            }
            let key_sealed = self
                .secret_box
                .seal_certificate_key(name, &wire.key_pem)
                .ok_or_else(|| ServiceError::Internal("cannot seal a certificate key".into()))?;
            let record = CertRecord {
                name: name.to_owned(),
                cert_pem: wire.cert_pem,
                key_sealed,
                hosts: checked.hosts.clone(),
                not_before: checked.not_before,
                not_after: checked.not_after,
                fingerprint: checked.fingerprint_hex(),
                table_version: 0,
                created_at_ms: existing.map_or(now, |o| o.created_at_ms),
                updated_at_ms: now,
            };
            (record, existing.is_none())
        };
        let version = registry.save_certificate(&record).await?;
        let record = CertRecord {
            table_version: version,
            ..record
        };
        log::info!(
            "certificate {name:?} {} for {} (not after {}, {}), table version {version}",
            if created { "added" } else { "replaced" },
            record
                .hosts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            rfc3339_secs(record.not_after),
            record.fingerprint
        );
        self.commit(version, |m| {
            m.put_certificate(record);
        });
        self.certificate(name).map(|v| (v, created))
    }

    /// Remove a certificate; returns the table version without it.
    pub async fn delete_certificate(&self, name: &str) -> Result<u64, ServiceError> {
        let registry = self.lock_registry().await;
        if !self.read().certificates.contains_key(name) {
            return Err(not_found("certificate", name));
        }
        let version = registry.delete_certificate(name).await?;
        self.commit(version, |m| m.remove_certificate(name));
        log::info!("certificate {name:?} removed, table version {version}");
        Ok(version)
    }
}

/// A tenant's view with the certificates that cover its hosts.
pub(super) fn tenant_view(model: &Model, r: &TenantRecord) -> TenantView {
    let mut view = TenantView::from(r);
    let now = now_ms() / 1000;
    let hosts: Vec<HostPattern> = r
        .wire
        .hosts
        .iter()
        .filter_map(|h| HostPattern::parse(h).ok())
        .collect();
    let mut covered = vec![false; hosts.len()];
    for c in model.certificates_covering(&hosts) {
        let mine: Vec<String> = hosts
            .iter()
            .zip(covered.iter_mut())
            .filter(|(h, _)| c.covers(h))
            .map(|(h, seen)| {
                *seen = true;
                h.to_string()
            })
            .collect();
        if !mine.is_empty() {
            view.certificates.push(TenantCertView {
                name: c.name.clone(),
                hosts: mine,
                not_after: rfc3339_secs(c.not_after),
                days_left: days_left(c.not_after, now),
                state: validity(c.not_before, c.not_after, now).to_owned(),
            });
        }
    }
    view.hosts_without_certificate = hosts
        .iter()
        .zip(&covered)
        .filter(|(_, seen)| !**seen)
        .map(|(h, _)| h.to_string())
        .collect();
    view
}

fn cert_view(model: &Model, c: &CertRecord, now: u64) -> CertView {
    let tenants = model
        .covered_by(c)
        .iter()
        .map(ToString::to_string)
        .collect();
    CertView {
        name: c.name.clone(),
        hosts: c.hosts.iter().map(ToString::to_string).collect(),
        not_before: rfc3339_secs(c.not_before),
        not_after: rfc3339_secs(c.not_after),
        days_left: days_left(c.not_after, now),
        state: validity(c.not_before, c.not_after, now).to_owned(),
        fingerprint: c.fingerprint.clone(),
        tenants,
        issuer: Leaf::read(&c.cert_pem)
            .map(|l| l.issuer)
            .unwrap_or_default(),
        acme: None,
        table_version: c.table_version,
        created_at: rfc3339(c.created_at_ms),
        updated_at: rfc3339(c.updated_at_ms),
    }
}

/// `PUT /v1/certificates/{name}`: `cert_pem`, `key_pem` and optional `hosts` (by default
/// the certificate's own DNS names), as the table's certificate entry, and whether the
/// hosts are that default.
fn decode(name: &str, body: &[u8]) -> Result<(Certificate, bool), Vec<Problem>> {
    let mut f = Fields::parse(body)?;
    let cert_pem: Option<String> = f.require("cert_pem");
    let key_pem: Option<String> = f.require("key_pem");
    let hosts: Option<Vec<String>> = f.take_list("hosts");
    let mut problems = f.finish();
    if !is_name(name) {
        problems.insert(
            0,
            Problem::new(
                "name",
                format!("{name:?} is not a certificate name (1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)"),
            ),
        );
    }
    let (Some(cert_pem), Some(key_pem), true) = (cert_pem, key_pem, problems.is_empty()) else {
        return Err(problems);
    };
    let leaf = Leaf::read(&cert_pem);
    let defaulted = hosts.is_none();
    let hosts = hosts.unwrap_or_else(|| {
        leaf.as_ref()
            .map(|l| l.dns_names.clone())
            .unwrap_or_default()
    });
    let wire = Certificate {
        name: name.to_owned(),
        // Stated from the certificate itself; an unreadable one is reported by the check.
        not_after: leaf.map(|l| rfc3339_secs(l.not_after)).unwrap_or_default(),
        cert_pem,
        key_pem,
        hosts,
        ocsp_staple: None,
    };
    Ok((wire, defaulted))
}

/// What the default `hosts` and the stated not-after come from.
struct Leaf {
    dns_names: Vec<String>,
    not_after: u64,
    /// The issuer's common name, or its whole name.
    issuer: String,
}

impl Leaf {
    fn read(pem: &str) -> Option<Leaf> {
        let der = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()?
            .ok()?;
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
                    _ => None,
                })
                // IP literals are never asked for by SNI; any other name the entry cannot
                // carry (a wildcard of two labels) is reported by the check.
                .filter(|d| d.parse::<std::net::IpAddr>().is_err())
                .collect(),
            _ => Vec::new(),
        };
        let issuer = cert
            .issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map_or_else(|| cert.issuer().to_string(), str::to_owned);
        Some(Leaf {
            issuer,
            dns_names,
            not_after: u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0),
        })
    }
}
