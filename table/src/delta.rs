//! Incremental tables: a [`Delta`] moves a table from version `base` to version `version` by
//! naming only what changed — whole tenants, pools, API keys, certificates and ACME answers
//! upserted by their identity, or deleted — so that a one-tenant change costs the gateway
//! the size of the change, not the size of the table. [`CheckedDelta`] is a delta that was
//! validated against the table in force (the same rules as a full table, the cross-tenant
//! ones checked against the whole); the gateway builds its next snapshot from it.
//!
//! Identity of each part: a tenant by `id`, a pool by its name, an API key by `id`, a
//! certificate by `name`, an ACME answer by `token`. An upsert replaces the whole part; a
//! part named both in an upsert and in a delete of the same delta is refused.
//!
//! The state digest: each part's digest is SHA-256 of its kind (`upstream`, `tenant`,
//! `api_key`, `certificate`, `acme_challenge`, `assertion`), a NUL byte and its canonical
//! JSON (`serde_json::to_vec` of the wire type; a pool as `[name, spec]`); the table's state
//! digest is the sum of its parts' digests as 256-bit big-endian numbers modulo 2^256,
//! written `state:<64 hex>`. The version is not part of it. A change updates it in the size
//! of the change (subtract the old part, add the new), and realmctl and the gateway compute
//! the same value from the same parts whatever the order or formatting of the documents.

use crate::assertion::Assertion;
use crate::host::HostPattern;
use crate::problem::Problem;
use crate::validate::{CheckedCert, CheckedChallenge};
use crate::wire::{AcmeChallenge, ApiKey, Certificate, Tenant, Upstream};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The content type of a delta where a full table could have come instead: realmctl's
/// answer to a gateway's pull `GET /v1/table?since=<version>` (a full table is
/// `application/json`). A `PATCH /v1/table` carries a delta as `application/json`.
pub const DELTA_CONTENT_TYPE: &str = "application/vnd.realmgate.delta+json";

/// A change to the table in force, as it travels (`PATCH /v1/table` on a gateway's admin
/// listener, `Content-Type: application/json`).
///
/// ```json
/// {"base": 41, "version": 42,
///  "state_digest": "sha256:…",
///  "tenants": [{"id": "acme", "hosts": ["acme.test"],
///               "routes": [{"prefix": "/", "upstream": "app-a", "auth": "public"}]}],
///  "delete_tenants": ["gone"]}
/// ```
///
/// Read one with [`parse_delta`]: like [`crate::parse`], it reports every unknown field and
/// repeated member name, each with its path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// The version this delta applies to: exactly the gateway's version in force, or the
    /// delta is refused (409, with the version the gateway has) and nothing changes.
    pub base: u64,
    /// The version after it; greater than `base`.
    pub version: u64,
    /// The table's [state digest](crate::delta) once applied. A gateway whose result
    /// differs refuses the delta (409 `digest_mismatch`): it and realmctl disagree about the
    /// base, and a full table puts that right.
    pub state_digest: String,
    /// Pools added or replaced, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, Upstream>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_upstreams: Vec<String>,
    /// Tenants added or replaced (the whole tenant), by id.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::pause::seq"
    )]
    pub tenants: Vec<Tenant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_tenants: Vec<String>,
    /// API keys added or replaced, by id.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::pause::seq"
    )]
    pub api_keys: Vec<ApiKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_api_keys: Vec<String>,
    /// Certificates added or replaced, by name.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::pause::seq"
    )]
    pub certificates: Vec<Certificate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_certificates: Vec<String>,
    /// ACME http-01 answers added or replaced, by token.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::pause::seq"
    )]
    pub acme_challenges: Vec<AcmeChallenge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_acme_challenges: Vec<String>,
    /// The assertion section: absent leaves it as it is; `{"set": {…}}` replaces it,
    /// `{"set": null}` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion: Option<AssertionChange>,
}

/// A change of the table's `assertion` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertionChange {
    pub set: Option<Assertion>,
}

/// A delta validated against the table in force: what the gateway builds its next snapshot
/// from. Every upserted part comes with what validation learned about it, as
/// [`crate::CheckedTable`] does for a full table.
#[derive(Debug, Clone)]
pub struct CheckedDelta {
    pub base: u64,
    pub version: u64,
    /// The state digest after the change (equal to the delta's).
    pub state_digest: String,
    pub upstreams: Vec<(String, Upstream)>,
    pub delete_upstreams: Vec<String>,
    /// Each upserted tenant with its host patterns, normalised, in the tenant's order.
    pub tenants: Vec<(Tenant, Vec<HostPattern>)>,
    pub delete_tenants: Vec<String>,
    /// Each upserted key with its expiry (seconds since the Unix epoch).
    pub api_keys: Vec<(ApiKey, Option<u64>)>,
    pub delete_api_keys: Vec<String>,
    pub certificates: Vec<(Certificate, CheckedCert)>,
    pub delete_certificates: Vec<String>,
    pub acme_challenges: Vec<(AcmeChallenge, CheckedChallenge)>,
    pub delete_acme_challenges: Vec<String>,
    /// `None`: unchanged; `Some(None)`: removed; `Some(Some(a))`: replaced.
    pub assertion: Option<Option<Assertion>>,
}

/// Why a delta was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaError {
    /// The delta's base is not the version in force (409, with `current`): the sender
    /// starts again from `current`, or sends a full table.
    WrongBase { current: u64, offered_base: u64 },
    /// The delta, or the table it would make, breaks a rule (422): every problem, at paths
    /// in the delta document (`tenants[0].hosts[1]`, `delete_upstreams[2]`).
    Invalid(Vec<Problem>),
    /// The delta is valid but the table it makes has another state digest than the delta
    /// says (409 `digest_mismatch`): sender and receiver disagree about the base.
    DigestMismatch { expected: String, computed: String },
}

impl fmt::Display for DeltaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeltaError::WrongBase {
                current,
                offered_base,
            } => write!(
                f,
                "the delta applies to version {offered_base}, the table in force is version {current}"
            ),
            DeltaError::Invalid(problems) => {
                write!(f, "the delta is invalid ({} problems)", problems.len())?;
                for (i, p) in problems.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    write!(f, "{p}")?;
                }
                Ok(())
            }
            DeltaError::DigestMismatch { expected, computed } => write!(
                f,
                "the delta makes state digest {computed}, not {expected} as it says: the base differs, send a full table"
            ),
        }
    }
}

impl std::error::Error for DeltaError {}

/// Decode a delta. On failure, every repeated member name and unknown field (each with its
/// path); a JSON syntax or type error is reported alone (after any repeated names before it).
/// Whether the delta fits the table in force is [`crate::Model::check`]'s.
pub fn parse_delta(bytes: &[u8]) -> Result<Delta, Vec<Problem>> {
    let mut found = Vec::new();
    match crate::decode::<Delta>(bytes, "delta", &mut found) {
        Some(delta) if found.is_empty() => Ok(delta),
        _ => Err(found),
    }
}

/// [`parse_delta`], calling `pause` after each tenant, key, certificate and ACME answer it
/// reads and each array element of its walk for repeated names (see [`Model::check_pausing`]):
/// a delta of a few hundred tenants takes a millisecond or more to read.
///
/// [`Model::check_pausing`]: crate::Model::check_pausing
pub fn parse_delta_pausing(bytes: &[u8], pause: fn()) -> Result<Delta, Vec<Problem>> {
    crate::pause::with_pauses(pause, || parse_delta(bytes))
}
