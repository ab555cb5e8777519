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
    /// The tenant's identity realm (its own Keycloak realm). Required when any route uses
    /// `jwt` or `session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<Realm>,
}

/// A tenant's identity realm: whose tokens its `jwt` routes accept and where its `session`
/// routes send browsers to log in.
///
/// ```json
/// {"issuer": "https://id.example.dev/realms/acme", "audiences": ["acme-api"],
///  "client_id": "realmgate", "client_secret": "…"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Realm {
    /// The realm's issuer URL, compared byte for byte with a token's `iss`. An absolute
    /// `http(s)` URL without query or fragment (and no trailing `/`, as OIDC issuers go). Each
    /// tenant has its own issuer: no two tenants may share one.
    pub issuer: String,
    /// Where the realm's signing keys are published. Default:
    /// `<issuer>/protocol/openid-connect/certs` (Keycloak's layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// A token on a `jwt` route must name one of these in `aud` (or `azp`). 1 to 32 non-empty
    /// strings.
    pub audiences: Vec<String>,
    /// The gateway's login client in the realm (standard flow, PKCE S256). Required by
    /// `session` routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Secret of a confidential login client, sent to the token endpoint (HTTP Basic). Absent:
    /// a public client (PKCE alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl Realm {
    /// `jwks_uri`, or Keycloak's default below the issuer.
    pub fn jwks_uri(&self) -> String {
        match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => format!("{}/protocol/openid-connect/certs", self.issuer),
        }
    }
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
    /// Who may use the route: `"public"`, `"jwt"` (a Bearer access token from the tenant's
    /// realm), `"session"` (the gateway's own browser login against the realm), or a list of
    /// these meaning "any of". `"api_key"` is reserved and refused until it is implemented.
    pub auth: AuthSpec,
    /// Send the verified access token upstream in `Authorization: Bearer …` (default
    /// `false`: the upstream sees only the `x-realmgate-*` identity headers and no
    /// `Authorization` header). Needs a `jwt` or `session` policy.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forward_token: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
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
