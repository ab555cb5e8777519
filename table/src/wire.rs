//! Wire types of the routing table, version 1: exactly what travels as JSON between
//! `realmctl` and `realmgate`. Read them through [`crate::parse`], which rejects unknown
//! fields (all of them listed) and validates the whole document.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The routing table: every tenant a gateway serves, and the upstream pools they route to.
///
/// ```json
/// {"version": 1,
///  "upstreams": {"app-a": {"endpoints": ["127.0.0.1:9001"]}},
///  "tenants": [{"id": "acme", "hosts": ["acme.test"],
///               "routes": [{"prefix": "/", "upstream": "app-a", "auth": "public"}]}]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Monotonically increasing table version, at least 1. A gateway refuses a table whose
    /// version is not newer than the one it serves (409), so pushes can be retried safely.
    pub version: u64,
    /// Upstream pools by name. A name is 1–63 characters of `a-z`, `0-9`, `.`, `_`, `-`,
    /// starting with a letter or digit.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// Tenants, in any order. Ids and hosts are unique across the table.
    #[serde(default)]
    pub tenants: Vec<Tenant>,
}

/// An upstream pool: endpoints balanced round-robin, with active health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// `IP:port` socket addresses (IPv6 as `[::1]:80`), 1 to 1024, no duplicates. Host names
    /// are not resolved by the gateway: the control plane writes addresses.
    pub endpoints: Vec<String>,
    /// How endpoints are probed. Absent: a TCP connect every health-check interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Time to establish a TCP connection to an endpoint, in ms (default 2000). A connect
    /// failure is retried once on another endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Longest wait for each read from the endpoint (response header or body chunk), in ms
    /// (default 60000). Exceeding it answers 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout_ms: Option<u64>,
    /// Longest wait for each write to the endpoint, in ms (default 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_timeout_ms: Option<u64>,
}

/// Active health check of an upstream pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// When set, probe with `GET <http_path>` and count only a 200 as healthy; otherwise a TCP
    /// connect. Must start with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
}

/// A tenant: the hosts it answers and how its paths route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// 1–63 characters of `a-z`, `0-9` and `-`, starting and ending with a letter or digit
    /// (a DNS label: it also names the tenant's realm and database).
    pub id: String,
    /// At least one host. Exact names (`acme.test`) or one leading wildcard label
    /// (`*.beta.test`: matches `x.beta.test` and `a.b.beta.test`, not `beta.test`). Normalised
    /// like a request's Host: lower-case, trailing dot stripped, IDNA to ASCII; no port.
    pub hosts: Vec<String>,
    /// At least one route. The longest matching prefix wins.
    pub routes: Vec<Route>,
    /// `active` (default) or `suspended`: a suspended tenant's hosts answer 503 with a clear
    /// page, and nothing reaches its upstreams.
    #[serde(default, skip_serializing_if = "TenantStatus::is_active")]
    pub status: TenantStatus,
    /// The tenant's name as people read it (the app shell's title). 1–100 characters, no
    /// control characters. Absent: the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The apps the app shell lists, in order (at most 64). Paths are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catalog: Vec<CatalogApp>,
    /// The app shell: what a browser navigating to `/` or into a catalog app sees. Absent:
    /// no shell, every request goes to the routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Shell>,
}

/// One app of a tenant's catalog: a link in the app shell's sidebar, framed when active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogApp {
    /// Shown in the sidebar. 1–64 characters, no control characters.
    pub name: String,
    /// Where the app lives: a normalised absolute path that a route of the tenant matches,
    /// at most 256 bytes. Like a route prefix, `/todos/` covers `/todos/` and everything under
    /// it; `/todos` covers `/todos` and `/todos/...`. The shell frames this path.
    pub path: String,
    /// Icon name, `set:name` or `name` of `a-z`, `0-9`, `-`, `:` (at most 64), e.g.
    /// `lucide:check-square`. The built-in shell knows a few and falls back to the initial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

/// A tenant's app shell settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shell {
    /// Whether top-level navigations get the shell at all.
    pub enabled: bool,
    /// A pool serving the tenant's own shell HTML (the gateway injects the context into it).
    /// Absent: the gateway's built-in shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Path prefixes that never get the shell (at most 64, each a normalised absolute path).
    /// Matched like route prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
}

/// Whether a tenant is served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    #[default]
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn is_active(&self) -> bool {
        *self == TenantStatus::Active
    }
}

/// A route: where requests under a path prefix go, and who may send them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// A normalised absolute path (no `//`, `.`/`..` segments or escapes of unreserved
    /// characters). A prefix ending in `/` matches every path starting with it; otherwise it
    /// matches itself and paths continuing with `/` (`/api` matches `/api` and `/api/x`, not
    /// `/apix`).
    pub prefix: String,
    /// Name of a pool in `upstreams`.
    pub upstream: String,
    /// Who may use the route. `"public"`, or a list of policies meaning "any of". Only
    /// `public` exists in this version; other names are refused until they are implemented.
    pub auth: AuthSpec,
}

/// A route's auth policy: one name, or a non-empty list meaning "any of".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AuthSpec {
    One(String),
    AnyOf(Vec<String>),
}

impl AuthSpec {
    /// The policy names, in the order written.
    pub fn names(&self) -> &[String] {
        match self {
            AuthSpec::One(name) => std::slice::from_ref(name),
            AuthSpec::AnyOf(names) => names,
        }
    }
}
