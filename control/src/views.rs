//! The JSON shapes of the REST API's responses, shared by the daemon and the CLI.

use crate::model::{rfc3339, CatalogEntry, TenantRecord, UpstreamRecord};
use realmgate_table::{Route, TenantStatus, Upstream};
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
    /// Bumped by every change; send it back in `If-Match` to update only what you read.
    pub revision: u64,
    /// The table version that carries this tenant's last change: once a gateway's applied
    /// version reaches it, the gateway serves the change.
    pub table_version: u64,
    pub created_at: String,
    pub updated_at: String,
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
            revision: r.revision,
            table_version: r.table_version,
            created_at: rfc3339(r.created_at_ms),
            updated_at: rfc3339(r.updated_at_ms),
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
    /// The table version the gateway is known to serve; `null` until it first answers.
    pub applied_version: Option<u64>,
    /// The newest compiled version; the gateway is in sync when `applied_version` reaches it.
    pub target_version: Option<u64>,
    pub in_sync: bool,
    /// `applied`, `already_current`, `rejected`, `unauthorized`, `error`, `unreachable`;
    /// `null` before the first attempt.
    pub last_result: Option<String>,
    /// What went wrong, for the results that are not `applied`/`already_current`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_success_at: Option<String>,
    pub consecutive_failures: u32,
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
