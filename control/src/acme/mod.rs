//! realmctl's ACME client (RFC 8555, the `instant-acme` crate): one account per directory,
//! orders for a tenant's hosts via http-01, journaled so a restart resumes the same order.
//! An adapter: it never calls up into the service; what it keeps and publishes goes through
//! [`AcmeStore`], which the service implements (sealing secrets, writing the registry,
//! putting challenge answers in the table).

pub mod config;
mod http;
mod issue;

pub use issue::Issuer;

use std::time::Duration;

/// Which challenge proves control of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// The gateways answer `/.well-known/acme-challenge/<token>` from the table.
    Http01,
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
    /// Renew when this fraction of the lifetime is left (renewal itself is a later step).
    pub renew_before: f64,
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
