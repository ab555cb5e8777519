//! The JSON shapes of the REST API's responses, shared by the daemon and the CLI.

use crate::model::{CatalogEntry, KeyRecord, TenantRecord, UpstreamRecord};
use crate::provision::{Provision, StepState, TenantState};
use crate::time::rfc3339;
use realmgate_table::{Hsts, HttpsMode, RateLimit, RateLimits, Route, TenantStatus, Upstream};
use serde::{Deserialize, Serialize};

/// A tenant, as `GET /v1/tenants/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantView {
    pub id: String,
    pub display_name: String,
    pub status: TenantStatus,
    /// Normalised: lower-case, IDNA to ASCII, no trailing dot.
    pub hosts: Vec<String>,
    pub routes: Vec<Route>,
    pub catalog: Vec<CatalogEntry>,
    /// The app shell: browsers navigating to `/` or into a catalog app get it. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<realmgate_table::Shell>,
    /// Requests per window for the tenant, each key and each public client.
    #[serde(default, skip_serializing_if = "RateLimits::is_empty")]
    pub rate_limits: RateLimits,
    /// Plain HTTP: `off` (served), `redirect` (308 to https) or `only` (403).
    #[serde(default)]
    pub https: HttpsMode,
    /// `Strict-Transport-Security`, sent over TLS only. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
    /// The certificates that cover the tenant's hosts, with their expiry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<TenantCertView>,
    /// Hosts no certificate covers: a TLS handshake for them fails (unless the gateway has
    /// a fallback certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts_without_certificate: Vec<String>,
    /// Bumped by every change; send it back in `If-Match` to update only what you read.
    pub revision: u64,
    /// The table version that carries this tenant's last change: once a gateway's applied
    /// version reaches it, the gateway serves the change.
    pub table_version: u64,
    pub created_at: String,
    pub updated_at: String,
    /// Where provisioning stands: the tenant is routed only once every step is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<ProvisionView>,
}

/// A tenant's provisioning, as `GET /v1/tenants/{id}` and the event stream show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionView {
    /// `provisioning`, `ready`, `failed`, `deleting`, `delete_failed`.
    pub state: TenantState,
    /// Whether gateways route the tenant.
    pub routed: bool,
    /// `<step>: <error>` of the failed step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub steps: Vec<StepView>,
}

/// One step of a tenant's provisioning. Never shows secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub step: String,
    pub provider: String,
    /// `pending`, `running`, `done`, `skipped`, `failed`, `removing`, `removed`.
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What the step made (issuer, client ids, DNS records, Ingress name, database path).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub updated_at: String,
}

impl From<&Provision> for ProvisionView {
    fn from(p: &Provision) -> Self {
        ProvisionView {
            state: p.state,
            routed: p.routed,
            error: p.error.clone(),
            steps: p
                .steps
                .iter()
                .map(|s| StepView {
                    step: s.kind.name().to_owned(),
                    provider: s.provider.clone(),
                    state: s.state.name().to_owned(),
                    attempts: s.attempts,
                    last_error: s.last_error.clone(),
                    outputs: s.outputs.clone(),
                    next_attempt_at: match s.state {
                        StepState::Failed => s.next_attempt_at_ms.map(rfc3339),
                        _ => None,
                    },
                    duration_ms: s.duration_ms,
                    updated_at: rfc3339(s.updated_at_ms),
                })
                .collect(),
        }
    }
}

impl From<&TenantRecord> for TenantView {
    fn from(r: &TenantRecord) -> Self {
        TenantView {
            id: r.wire.id.clone(),
            display_name: r.display_name.clone(),
            status: r.wire.status,
            hosts: r.wire.hosts.clone(),
            routes: r.wire.routes.clone(),
            catalog: r.catalog.clone(),
            shell: r.wire.shell.clone(),
            rate_limits: r.wire.rate_limits,
            https: r.wire.https,
            hsts: r.wire.hsts,
            certificates: Vec::new(),
            hosts_without_certificate: Vec::new(),
            revision: r.revision,
            table_version: r.table_version,
            created_at: rfc3339(r.created_at_ms),
            updated_at: rfc3339(r.updated_at_ms),
            provisioning: (!r.provision.steps.is_empty()).then(|| (&r.provision).into()),
        }
    }
}

/// One page of `GET /v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantPage {
    pub tenants: Vec<TenantView>,
    /// Pass as `?after=` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// An upstream pool, as `GET /v1/upstreams/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamView {
    pub name: String,
    #[serde(flatten)]
    pub spec: Upstream,
    /// How many tenants route to it (it cannot be deleted while this is above 0).
    pub tenants_using: usize,
    pub table_version: u64,
    pub updated_at: String,
}

impl UpstreamView {
    pub fn new(name: &str, r: &UpstreamRecord, tenants_using: usize) -> UpstreamView {
        UpstreamView {
            name: name.to_owned(),
            spec: r.spec.clone(),
            tenants_using,
            table_version: r.table_version,
            updated_at: rfc3339(r.updated_at_ms),
        }
    }
}

/// The answer to a delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: String,
    pub table_version: u64,
}

/// A gateway as `GET /v1/gateways` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayView {
    pub url: String,
    /// Where realmctl learnt of it: `static` (its configuration) or `kubernetes` (an
    /// EndpointSlice of the gateways' Service).
    #[serde(default = "static_source")]
    pub source: String,
    /// The table version the gateway is known to serve; `null` until it first answers.
    pub applied_version: Option<u64>,
    /// The newest compiled version; the gateway is in sync when `applied_version` reaches it.
    pub target_version: Option<u64>,
    pub in_sync: bool,
    /// `applied`, `already_current`, `version_not_newer`, `rejected`, `unauthorized`,
    /// `error`, `unreachable`, `refused_insecure` (a table with secrets was not sent over
    /// plain http to a non-loopback address); `null` before the first attempt.
    pub last_result: Option<String>,
    /// What went wrong, for the results that are not `applied`/`already_current`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_success_at: Option<String>,
    pub consecutive_failures: u32,
}

fn static_source() -> String {
    "static".into()
}

/// Gateway discovery, as `GET /v1/gateways` shows it (`discovery`, absent without).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryView {
    /// `kubernetes`.
    pub provider: String,
    /// The Service whose EndpointSlices name the gateways, and its namespace.
    pub service: String,
    pub namespace: String,
    /// `starting` (no complete list yet), `watching`, or `error` (the gateways last listed
    /// are kept and pushed to while the error lasts).
    pub state: String,
    /// The last failure, in words an operator can act on (a 403 names the missing RBAC rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Slices that name no gateway although they have endpoints (the port is missing…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// EndpointSlices seen, and gateways they name (ready, not terminating).
    pub slices: usize,
    pub gateways: usize,
    /// Complete lists taken: the first, and one after every expired watch (410 Gone).
    pub lists: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_at: Option<String>,
}

/// An error body: `{"error": code, "message": ..., "problems": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// One problem of a 422: where in the request body, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemView {
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for ProblemView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

/// An API key as `GET /v1/keys` shows it: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    /// The key's first characters (`rgk_AbCd`), to tell keys apart.
    pub prefix: String,
    /// Absent for an operator key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    pub created_at: String,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The table version that carries the key's last change: once a gateway applied it, the
    /// gateway accepts (or, after a revocation, refuses) the key.
    pub table_version: u64,
}

impl From<&KeyRecord> for KeyView {
    fn from(k: &KeyRecord) -> Self {
        KeyView {
            id: k.id.clone(),
            prefix: k.prefix.clone(),
            tenant: k.tenant.as_ref().map(ToString::to_string),
            namespaces: k.namespaces.clone(),
            expires_at: k.expires_at_ms.map(crate::time::rfc3339_seconds),
            rate_limit: k.rate_limit,
            created_at: rfc3339(k.created_at_ms),
            created_by: k.created_by.clone(),
            revoked_at: k.revoked_at_ms.map(rfc3339),
            table_version: k.table_version,
        }
    }
}

/// `POST /v1/keys`: the key, with its secret shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedKey {
    /// The whole key (`rgk_…`). Only its SHA-256 digest is stored: it cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub view: KeyView,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// `POST /v1/tenants/{id}/credentials`: the first admin and the tenant's API client, handed
/// out once. A secret already handed out is `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsView {
    pub tenant: String,
    pub issuer: String,
    pub admin_username: String,
    pub admin_password: Option<String>,
    /// The password must be changed at the first login.
    pub admin_password_temporary: bool,
    pub admin_client_id: String,
    pub admin_client_secret: Option<String>,
}

/// A certificate covering some of a tenant's hosts, as the tenant's view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCertView {
    pub name: String,
    /// The tenant's hosts it covers.
    pub hosts: Vec<String>,
    pub not_after: String,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    /// `valid`, `expired` or `not_yet_valid`.
    pub state: String,
}

/// A certificate, as `GET /v1/certificates/{name}` shows it: never its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertView {
    pub name: String,
    /// The names it is served for (exact, or a one-label wildcard).
    pub hosts: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    /// `valid`, `expired` or `not_yet_valid`. A stored certificate that expires keeps being
    /// served until it is replaced.
    pub state: String,
    /// `sha256:<hex>` of the leaf certificate (DER).
    pub fingerprint: String,
    /// Tenants with a host it covers.
    pub tenants: Vec<String>,
    /// The issuer of the leaf (its common name, or the whole name without one).
    #[serde(default)]
    pub issuer: String,
    /// For a certificate realmctl orders from its ACME CA: where it stands. Absent: handed
    /// in (`PUT /v1/certificates/{name}`), renewed by whoever handed it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeCertView>,
    pub table_version: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// An ACME-managed certificate's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeCertView {
    /// The certificate record it fills.
    pub certificate: String,
    pub tenant: String,
    /// `pending` (first order, nothing served yet), `valid`, `renewing` (the current
    /// certificate serves meanwhile) or `failed` (retried with backoff; the current one, if
    /// any, keeps serving).
    pub state: String,
    /// The names ordered.
    pub hosts: Vec<String>,
    /// The CA's last problem document (`type`, `detail`) while failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<crate::acme::Problem>,
    /// The last failure, whatever its cause (the CA unreachable, a challenge not served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failures in a row.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// When the renewal scheduler renews it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<String>,
    /// `ari` (the CA's suggested window, RFC 9773) or `lifetime` (two thirds, less jitter:
    /// the CA has no ARI, or its window is wider than the certificate's lifetime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_source: Option<String>,
    /// The CA's last suggested renewal window (ARI), when it offers one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_window: Option<AriWindowView>,
    pub updated_at: String,
}

/// A renewal window (RFC 9773 `suggestedWindow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriWindowView {
    pub start: String,
    pub end: String,
}

impl From<&crate::acme::CertStatus> for AcmeCertView {
    fn from(s: &crate::acme::CertStatus) -> Self {
        AcmeCertView {
            certificate: s.certificate.clone(),
            tenant: s.tenant.clone(),
            state: s.state.name().to_owned(),
            hosts: s.hosts.clone(),
            problem: s.problem.clone(),
            error: s.error.clone(),
            attempts: s.attempts,
            next_attempt_at: s.next_attempt_at_ms.map(rfc3339),
            renew_at: s.renew_at_ms.map(rfc3339),
            renew_source: s.renew_source.clone(),
            ari_window: s.ari_window_ms.map(|(start, end)| AriWindowView {
                start: rfc3339(start),
                end: rfc3339(end),
            }),
            updated_at: rfc3339(s.updated_at_ms),
        }
    }
}

/// `GET /v1/certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertList {
    pub certificates: Vec<CertView>,
    /// ACME certificates ordered but not issued yet (`pending`, or `failed` on their first
    /// order): nothing is served for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ordering: Vec<AcmeCertView>,
}

/// Whole days from `now` to `not_after` (seconds), rounded down; negative once past.
pub fn days_left(not_after: u64, now: u64) -> i64 {
    let diff = i128::from(not_after) - i128::from(now);
    i64::try_from(diff.div_euclid(86_400)).unwrap_or(0)
}

/// `valid`, `expired` or `not_yet_valid` at `now` (seconds).
pub fn validity(not_before: u64, not_after: u64, now: u64) -> &'static str {
    if now > not_after {
        "expired"
    } else if now < not_before {
        "not_yet_valid"
    } else {
        "valid"
    }
}

/// A tenant's custom domain, as `/v1/tenants/{id}/domains` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainView {
    pub domain: String,
    pub tenant: String,
    /// `pending` (checked with backoff until `check_until`), `verified` (one of the
    /// tenant's hosts; it gets a certificate of its own) or `failed` (add it again).
    pub state: String,
    /// The record the domain's owner publishes to prove it.
    pub txt: TxtRecordView,
    /// Why it is still pending, or failed: what the resolver answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_at: Option<String>,
    pub check_until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// The certificate record its certificate fills (with `certificates.acme`).
    pub certificate: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A DNS record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxtRecordView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// `GET /v1/tenants/{id}/domains`, `GET /v1/domains`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainList {
    pub domains: Vec<DomainView>,
}

impl From<&crate::model::DomainRecord> for DomainView {
    fn from(d: &crate::model::DomainRecord) -> Self {
        use crate::model::DomainState;
        DomainView {
            domain: d.domain.clone(),
            tenant: d.tenant.to_string(),
            state: d.state.name().to_owned(),
            txt: TxtRecordView {
                name: d.txt_name(),
                kind: "TXT".into(),
                value: d.token.clone(),
            },
            reason: d.reason.clone(),
            attempts: d.attempts,
            next_check_at: (d.state == DomainState::Pending).then(|| rfc3339(d.next_check_at_ms)),
            check_until: rfc3339(d.check_until_ms),
            verified_at: d.verified_at_ms.map(rfc3339),
            certificate: crate::provision::certificate::domain_certificate_name(&d.domain),
            created_at: rfc3339(d.created_at_ms),
            updated_at: rfc3339(d.updated_at_ms),
        }
    }
}
