//! Tenant provisioning: the steps (identity, database, ingress, dns, certificate), each an idempotent
//! `ensure`/`remove` pair, and the journal types the runner records in the registry.
//!
//! A step reads the actual state of what it manages and converges it; `remove` tolerates
//! finding nothing (it may run without a prior `ensure`). The runner journals every step
//! before and after each `.await` that changes the world, so a realmctl killed anywhere
//! resumes where it stopped.

pub mod certificate;
pub mod config;
pub mod database;
pub mod database_token;
pub mod dns;
pub mod identity;
pub mod ingress;
pub mod keycloak;
pub mod secrets;

use crate::ids::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The steps, in the order `ensure` runs them (`remove` runs them in reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Identity,
    Database,
    Ingress,
    Dns,
    /// ACME (`certificates.acme`): after dns, so the CA finds the host.
    Certificate,
}

impl StepKind {
    pub const ALL: [StepKind; 5] = [
        StepKind::Identity,
        StepKind::Database,
        StepKind::Ingress,
        StepKind::Dns,
        StepKind::Certificate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StepKind::Identity => "identity",
            StepKind::Database => "database",
            StepKind::Ingress => "ingress",
            StepKind::Dns => "dns",
            StepKind::Certificate => "certificate",
        }
    }

    pub fn parse(raw: &str) -> Option<StepKind> {
        StepKind::ALL.into_iter().find(|k| k.name() == raw)
    }

    pub fn position(self) -> usize {
        self as usize
    }
}

/// Where one step of one tenant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not run yet (or its inputs changed and it must run again).
    Pending,
    /// Started; a restart finds it here if realmctl died during it, and runs it again.
    Running,
    Done,
    /// Provider `none`: nothing to do.
    Skipped,
    /// The last attempt failed; retried at `next_attempt_at`.
    Failed,
    /// `remove` started (deletion).
    Removing,
    Removed,
}

impl StepState {
    pub fn name(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Skipped => "skipped",
            StepState::Failed => "failed",
            StepState::Removing => "removing",
            StepState::Removed => "removed",
        }
    }

    pub fn parse(raw: &str) -> Option<StepState> {
        [
            StepState::Pending,
            StepState::Running,
            StepState::Done,
            StepState::Skipped,
            StepState::Failed,
            StepState::Removing,
            StepState::Removed,
        ]
        .into_iter()
        .find(|s| s.name() == raw)
    }
}

/// Where a tenant's provisioning stands as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// Steps are running (first creation, or re-running after a change of hosts).
    Provisioning,
    /// Every step is done or skipped.
    Ready,
    /// A step failed; retried with backoff, or now with `POST /v1/tenants/{id}/retry`.
    Failed,
    /// Out of the table; the steps' `remove`s run in reverse.
    Deleting,
    /// A `remove` failed; retried like a failed step.
    DeleteFailed,
}

impl TenantState {
    pub fn name(self) -> &'static str {
        match self {
            TenantState::Provisioning => "provisioning",
            TenantState::Ready => "ready",
            TenantState::Failed => "failed",
            TenantState::Deleting => "deleting",
            TenantState::DeleteFailed => "delete_failed",
        }
    }

    pub fn parse(raw: &str) -> Option<TenantState> {
        [
            TenantState::Provisioning,
            TenantState::Ready,
            TenantState::Failed,
            TenantState::Deleting,
            TenantState::DeleteFailed,
        ]
        .into_iter()
        .find(|s| s.name() == raw)
    }

    pub fn deleting(self) -> bool {
        matches!(self, TenantState::Deleting | TenantState::DeleteFailed)
    }
}

/// One journal row: a step of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub kind: StepKind,
    /// `keycloak`, `libsql`, `kubernetes`, `powerdns`, `acme` or `none`.
    pub provider: String,
    pub state: StepState,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// What the step made that may be shown (issuer, client ids, record names, paths).
    pub outputs: Map<String, Value>,
    /// The step's secrets, sealed (AES-256-GCM, see [`secrets`]); never shown.
    pub sealed: Option<String>,
    /// Digest of the inputs the last successful run converged to; a different digest
    /// means the step must run again.
    pub input_digest: Option<String>,
    pub next_attempt_at_ms: Option<u64>,
    /// How long the last run took (the bench reads it).
    pub duration_ms: Option<u64>,
    pub updated_at_ms: u64,
}

impl StepRecord {
    pub fn new(kind: StepKind, provider: &str, now_ms: u64) -> StepRecord {
        StepRecord {
            kind,
            provider: provider.to_owned(),
            state: if provider == "none" {
                StepState::Skipped
            } else {
                StepState::Pending
            },
            attempts: 0,
            last_error: None,
            outputs: Map::new(),
            sealed: None,
            input_digest: None,
            next_attempt_at_ms: None,
            duration_ms: None,
            updated_at_ms: now_ms,
        }
    }
}

/// A tenant's provisioning: its state, whether it is in the routing table, and its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provision {
    pub state: TenantState,
    /// In the routing table. Set once every step is done; stays set while steps re-run
    /// after a change of hosts; cleared when deletion starts.
    pub routed: bool,
    /// `<step>: <error>` of the failed step.
    pub error: Option<String>,
    /// In [`StepKind`] order.
    pub steps: Vec<StepRecord>,
}

impl Provision {
    /// A tenant from before provisioning existed, or one created with every provider
    /// `none`: ready and routed.
    pub fn ready(steps: Vec<StepRecord>) -> Provision {
        Provision {
            state: TenantState::Ready,
            routed: true,
            error: None,
            steps,
        }
    }

    pub fn step(&self, kind: StepKind) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.kind == kind)
    }

    pub fn step_mut(&mut self, kind: StepKind) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|s| s.kind == kind)
    }
}

/// Which provider each step uses; `none` everywhere means nothing to provision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub providers: Vec<(StepKind, &'static str)>,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            providers: StepKind::ALL.iter().map(|k| (*k, "none")).collect(),
        }
    }
}

impl Plan {
    /// The same plan with `kind` run by `provider` (`none`: skipped).
    pub fn with(mut self, kind: StepKind, provider: &'static str) -> Plan {
        match self.providers.iter_mut().find(|(k, _)| *k == kind) {
            Some(slot) => slot.1 = provider,
            None => {
                self.providers.push((kind, provider));
                self.providers.sort_by_key(|(k, _)| *k);
            }
        }
        self
    }

    /// Whether the identity step makes each tenant a realm (Keycloak).
    pub fn provisions_realm(&self) -> bool {
        self.providers
            .iter()
            .any(|(k, p)| *k == StepKind::Identity && *p != "none")
    }

    /// Whether any step has work to do (then creation answers 202 and runs in the
    /// background).
    pub fn active(&self) -> bool {
        self.providers.iter().any(|(_, p)| *p != "none")
    }

    pub fn records(&self, now_ms: u64) -> Vec<StepRecord> {
        self.providers
            .iter()
            .map(|(k, p)| StepRecord::new(*k, p, now_ms))
            .collect()
    }
}

/// What a step knows of the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantInput {
    pub id: TenantId,
    pub display_name: String,
    /// Normalised host patterns (`acme.test`, `*.acme.test`).
    pub hosts: Vec<String>,
    /// Those of `hosts` that are verified custom domains (outside the platform's zone: the
    /// dns step leaves them to their owner; each gets a certificate of its own).
    pub domains: Vec<String>,
}

impl TenantInput {
    /// The hosts under the platform's zone (not custom domains).
    pub fn platform_hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| !self.domains.contains(h))
            .cloned()
            .collect()
    }
}

/// What a step made: public outputs, and secrets that are sealed before they are stored.
#[derive(Default, Clone)]
pub struct Outputs {
    pub public: Map<String, Value>,
    pub secrets: Map<String, Value>,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("public", &self.public)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Outputs {
    pub fn secret_str(&self, key: &str) -> Option<&str> {
        self.secrets.get(key).and_then(Value::as_str)
    }

    pub fn public_str(&self, key: &str) -> Option<&str> {
        self.public.get(key).and_then(Value::as_str)
    }
}

/// A step's failure, in words fit for the API (never a secret).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

impl StepError {
    pub fn new(msg: impl Into<String>) -> StepError {
        StepError(msg.into())
    }
}

/// One provisioning step: `ensure` converges the world to what the tenant needs and
/// returns what it made; `remove` undoes it, finding nothing being fine.
#[async_trait::async_trait]
pub trait Step: Send + Sync {
    fn kind(&self) -> StepKind;
    fn provider(&self) -> &'static str;
    /// What of the tenant (and of this step's configuration) the step's result depends on;
    /// a change re-runs the step.
    fn input_digest(&self, t: &TenantInput) -> String;
    async fn ensure(&self, t: &TenantInput, previous: &Outputs) -> Result<Outputs, StepError>;
    async fn remove(&self, t: &TenantInput, previous: &Outputs) -> Result<(), StepError>;
}

/// SHA-256 hex of the parts, separated so that `["ab","c"]` and `["a","bc"]` differ.
pub fn digest_of<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The root cause of an error chain, for messages (reqwest's top level says little).
pub use crate::error_text::root_cause;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in StepKind::ALL {
            assert_eq!(StepKind::parse(k.name()), Some(k));
        }
        for s in [
            "pending", "running", "done", "skipped", "failed", "removing", "removed",
        ] {
            assert_eq!(StepState::parse(s).map(StepState::name), Some(s));
        }
        for s in [
            "provisioning",
            "ready",
            "failed",
            "deleting",
            "delete_failed",
        ] {
            assert_eq!(TenantState::parse(s).map(TenantState::name), Some(s));
        }
    }

    #[test]
    fn digests_separate_parts() {
        assert_ne!(digest_of(["ab", "c"]), digest_of(["a", "bc"]));
        assert_eq!(digest_of(["a"]), digest_of(["a"]));
    }

    #[test]
    fn plan_none_is_inactive_and_skips() {
        let p = Plan::default();
        assert!(!p.active());
        assert!(p.records(1).iter().all(|r| r.state == StepState::Skipped));
    }
}
