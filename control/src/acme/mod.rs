//! realmctl's ACME client (RFC 8555, the `instant-acme` crate): one account per directory,
//! orders for a tenant's hosts via http-01 or dns-01 (wildcards always dns-01), journaled so
//! a restart resumes the same order.
//! An adapter: it never calls up into the service; what it keeps and publishes goes through
//! [`AcmeStore`], which the service implements (sealing secrets, writing the registry,
//! putting challenge answers in the table).

mod ari;
mod challenges;
pub mod config;
mod dns01;
mod http;
mod issue;
mod lifecycle;
pub mod renew;

pub use issue::Issuer;
pub use renew::Renewals;

use std::time::Duration;

/// Which challenge proves control of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// The gateways answer `/.well-known/acme-challenge/<token>` from the table.
    Http01,
    /// A `_acme-challenge.<name>` TXT record published through the DNS provider.
    Dns01,
}

/// How hosts under the platform's zone (the DNS provider's zone) get certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformHosts {
    /// One certificate per tenant for its exact hosts (the configured challenge).
    PerHost,
    /// One certificate for `*.<zone>` and the zone apex, via dns-01, shared by every tenant
    /// whose hosts are one label under the zone.
    Wildcard,
}

/// The DNS provider's side of dns-01, implemented by the dns step's provider (PowerDNS).
/// Names are absolute without the trailing dot (`_acme-challenge.example.dev`).
#[async_trait::async_trait]
pub trait TxtRecords: Send + Sync {
    /// The provider's zone that holds `name` (the longest that does), without the trailing
    /// dot; `None` when it has none.
    async fn zone_of(&self, name: &str) -> Result<Option<String>, String>;
    /// Make `values` the TXT records of `name` (in `zone`), replacing what was there.
    async fn publish_txt(&self, zone: &str, name: &str, values: &[String]) -> Result<(), String>;
    /// Delete the TXT records of `name` (in `zone`); nothing there is not an error.
    async fn remove_txt(&self, zone: &str, name: &str) -> Result<(), String>;
    /// The provider's own authoritative DNS server (address and port), when it can say.
    async fn authoritative_server(&self) -> Result<std::net::SocketAddr, String>;
}

/// The DNS provider as the ACME settings carry it.
#[derive(Clone)]
pub struct DnsProvider {
    /// What it is, for messages (`powerdns at http://…`).
    pub describe: String,
    /// Its zone, the platform's (without the trailing dot).
    pub zone: String,
    pub records: std::sync::Arc<dyn TxtRecords>,
}

impl std::fmt::Debug for DnsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

/// External account binding (RFC 8555 §7.3.4), for CAs that want one (ZeroSSL, some private
/// CAs). Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Eab {
    pub kid: String,
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// The resolved `certificates.acme` section.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory_url: String,
    /// PEM roots trusted for the directory's own TLS instead of the system's.
    pub directory_ca_pem: Option<Vec<u8>>,
    /// `mailto:` URLs for the account.
    pub contact: Vec<String>,
    pub eab: Option<Eab>,
    pub challenge: ChallengeKind,
    /// The DNS server asked whether a dns-01 TXT record is visible before the CA is told:
    /// the zone's authoritative server, asked directly (`None`: the DNS provider's own).
    pub resolver: Option<std::net::SocketAddr>,
    /// Longest wait for a published TXT record to be visible there.
    pub dns_wait: std::time::Duration,
    pub platform_hosts: PlatformHosts,
    /// Where dns-01 records are published (`provision.dns`); `None`: no dns-01.
    pub dns: Option<DnsProvider>,
    /// Renew when this fraction of the lifetime is left (less a jitter), unless the CA's
    /// renewal information (ARI) suggests a window.
    pub renew_before: f64,
    /// How often the renewal scheduler looks at the certificates.
    pub renew_check: Duration,
    /// Backoff after a failed renewal: the first pause, doubled per failure up to the last
    /// (a CA's `Retry-After`, or a rate limit, can make it longer).
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Longest wait for every gateway to apply the table that carries a challenge answer.
    pub challenge_wait: Duration,
    /// Longest wait for the CA to validate and issue, per attempt.
    pub validation_timeout: Duration,
}

/// An ACME problem document (RFC 7807), as kept for the operator: the type URN and detail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
}

/// Why an issuance attempt stopped. The message is fit for the API: no key material.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcmeError {
    /// The CA answered with a problem document.
    #[error("the CA refused: {} ({})", .0.detail, .0.kind)]
    Ca(Problem),
    /// The CA could not be reached or answered something that is not ACME.
    #[error("cannot reach the ACME CA at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// Ours: the registry, the gateways, a key.
    #[error("{0}")]
    Local(String),
}

impl AcmeError {
    /// The CA's problem document, if it sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            AcmeError::Ca(p) => Some(p),
            _ => None,
        }
    }
}

/// The journal of one certificate's order: what a restarted realmctl resumes from. The order
/// URL is written before anything else is asked of the CA, so a restart never orders twice.
#[derive(Clone, PartialEq, Eq)]
pub struct OrderJournal {
    /// The certificate record the order fills.
    pub certificate: String,
    pub tenant: String,
    pub directory_url: String,
    /// The names ordered, in order.
    pub hosts: Vec<String>,
    pub order_url: String,
    /// The certificate's private key (PEM, PKCS#8), made before finalisation and kept
    /// (sealed, by the store) until the certificate is installed.
    pub key_pem: Option<String>,
    /// The CA's last problem with this order.
    pub last_error: Option<Problem>,
}

impl std::fmt::Debug for OrderJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderJournal")
            .field("certificate", &self.certificate)
            .field("hosts", &self.hosts)
            .field("order_url", &self.order_url)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Where an ACME-managed certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertState {
    /// Ordered for the first time; nothing is served yet.
    Pending,
    /// Issued and installed.
    Valid,
    /// Being renewed; the current certificate keeps serving.
    Renewing,
    /// The last attempt failed (see the problem); retried with backoff, the current
    /// certificate (if any) keeps serving.
    Failed,
}

impl CertState {
    pub fn name(self) -> &'static str {
        match self {
            CertState::Pending => "pending",
            CertState::Valid => "valid",
            CertState::Renewing => "renewing",
            CertState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<CertState> {
        [
            CertState::Pending,
            CertState::Valid,
            CertState::Renewing,
            CertState::Failed,
        ]
        .into_iter()
        .find(|c| c.name() == s)
    }
}

/// The status of one ACME-managed certificate, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertStatus {
    pub certificate: String,
    pub tenant: String,
    pub hosts: Vec<String>,
    pub state: CertState,
    /// The CA's last problem document (kept while failed).
    pub problem: Option<Problem>,
    /// The last failure as the API shows it (any cause).
    pub error: Option<String>,
    /// Failures in a row.
    pub attempts: u32,
    pub next_attempt_at_ms: Option<u64>,
    /// When the scheduler renews the installed certificate.
    pub renew_at_ms: Option<u64>,
    /// `ari` (the CA's suggested window) or `lifetime` (two thirds, with jitter).
    pub renew_source: Option<String>,
    /// When the CA's renewal window is read again.
    pub ari_next_ms: Option<u64>,
    /// The CA's last suggested renewal window (ARI), start and end.
    pub ari_window_ms: Option<(u64, u64)>,
    pub updated_at_ms: u64,
}

/// A certificate the store holds: what `ensure` checks before ordering again.
#[derive(Debug, Clone)]
pub struct Installed {
    pub hosts: Vec<String>,
    pub not_before: u64,
    pub not_after: u64,
    pub cert_pem: String,
}

/// What the ACME client keeps and publishes, implemented by the service. Errors are messages
/// fit for the API.
#[async_trait::async_trait]
pub trait AcmeStore: Send + Sync {
    /// The account's credentials (instant-acme's JSON) for this directory, opened.
    async fn account(&self, directory_url: &str) -> Result<Option<String>, String>;
    /// Keep the account's credentials (the store seals them).
    async fn save_account(&self, directory_url: &str, credentials: &str) -> Result<(), String>;
    async fn order(&self, certificate: &str) -> Result<Option<OrderJournal>, String>;
    /// Journal an order (the store seals the key).
    async fn save_order(&self, journal: &OrderJournal) -> Result<(), String>;
    async fn delete_order(&self, certificate: &str) -> Result<(), String>;
    /// Add challenge answers to the next table version; returns that version.
    async fn publish_challenges(
        &self,
        answers: Vec<realmgate_table::AcmeChallenge>,
    ) -> Result<u64, String>;
    /// Take challenge answers out of the next table version.
    async fn withdraw_challenges(&self, tokens: &[String]) -> Result<(), String>;
    /// The table versions the known gateways serve (`None`: not known yet).
    fn gateway_versions(&self) -> Vec<(String, Option<u64>)>;
    /// The installed certificate of this name, if any.
    fn installed(&self, certificate: &str) -> Option<Installed>;
    /// Store an issued chain and its key as the certificate record (every gateway serves it
    /// from the next table on).
    async fn install(
        &self,
        certificate: &str,
        chain_pem: &str,
        key_pem: &str,
        hosts: &[String],
    ) -> Result<u64, String>;
    /// Delete the certificate record; `Ok(false)` when there was none.
    async fn uninstall(&self, certificate: &str) -> Result<bool, String>;
    /// Every ACME-managed certificate's status.
    async fn statuses(&self) -> Result<Vec<CertStatus>, String>;
    async fn save_status(&self, status: &CertStatus) -> Result<(), String>;
    async fn delete_status(&self, certificate: &str) -> Result<(), String>;
    /// Whether this process may write (holds the Lease, or none is configured): a standby
    /// never talks to the CA.
    fn leading(&self) -> bool;
}

/// The test-only crash points of the certificate step, like the runner's
/// (`REALMCTL_TEST_CRASH_AT=certificate:ordered`): `ordered` (the order journaled, nothing
/// else asked), `ready` (validated, not finalised), `finalized` (finalised, not installed).
pub(crate) fn crash_point(point: &str) {
    let wanted = std::env::var("REALMCTL_TEST_CRASH_AT").ok();
    if wanted.as_deref() == Some(&format!("certificate:{point}")) {
        log::error!("REALMCTL_TEST_CRASH_AT=certificate:{point}: aborting as a test asked");
        std::process::abort();
    }
}
