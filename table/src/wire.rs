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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// API keys the gateways accept on `api_key` routes: digests only, never secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKey>,
    /// Certificates the gateways' TLS listeners serve, chosen per connection by SNI. They
    /// carry private keys: a table with certificates travels only over an authenticated,
    /// encrypted channel (or loopback).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<Certificate>,
    /// ACME http-01 challenge answers every gateway serves at
    /// `/.well-known/acme-challenge/<token>` while realmctl's ACME client has an order open
    /// (short-lived; absent means none, so tables from before stay valid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acme_challenges: Vec<AcmeChallenge>,
    /// The fleet's signing keys for the identity assertion (`x-realmgate-assertion`) the
    /// gateways add to every forwarded request. Absent: no assertions. It carries private
    /// keys: like certificates, it travels only over an authenticated, encrypted channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion: Option<crate::assertion::Assertion>,
}

/// One http-01 challenge answer (RFC 8555 §8.3): the gateway answers
/// `GET /.well-known/acme-challenge/<token>` on plain HTTP and HTTPS, for the listed hosts,
/// with `key_authorization` as `text/plain`, before tenant lookup, auth and HTTPS redirects,
/// until `expires_at`. Any other token is 404.
///
/// ```json
/// {"token": "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0",
///  "key_authorization": "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI",
///  "hosts": ["acme.example.dev"], "expires_at": "2026-03-01T00:10:00Z"}
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeChallenge {
    /// The CA's token: 16–256 characters of base64url (`A-Z a-z 0-9 - _`), unique in the
    /// table.
    pub token: String,
    /// `<token>.<account key thumbprint>` (the thumbprint base64url, at most 256 characters).
    pub key_authorization: String,
    /// The exact host names (no wildcards: http-01 cannot validate one) the answer is given
    /// for; at most 100. Empty: any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// RFC 3339 UTC; after it the gateway answers 404 even before the next table drops it.
    pub expires_at: String,
}

impl std::fmt::Debug for AcmeChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key authorization names the ACME account (its thumbprint): kept out of logs.
        f.debug_struct("AcmeChallenge")
            .field("token", &self.token)
            .field("hosts", &self.hosts)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key, and the host names the gateway serves it for.
///
/// ```json
/// {"name": "acme", "cert_pem": "-----BEGIN CERTIFICATE-----…", "key_pem": "-----BEGIN PRIVATE KEY-----…",
///  "hosts": ["acme.test", "*.acme.test"], "not_after": "2027-03-01T00:00:00Z"}
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Like an upstream name (1–63 of `a-z`, `0-9`, `.`, `_`, `-`), unique in the table.
    pub name: String,
    /// The chain in PEM: the certificate first, then each issuer in turn (the root may be
    /// left out). At most 64 KiB and 8 certificates.
    pub cert_pem: String,
    /// The certificate's private key in PEM (PKCS#8, SEC1 or PKCS#1; ECDSA P-256/P-384, RSA
    /// or Ed25519), unencrypted. At most 16 KiB.
    pub key_pem: String,
    /// The names it is served for: exact names or one leading wildcard label, each covered
    /// by one of the certificate's DNS names with certificate semantics (`*.beta.test` covers
    /// `x.beta.test`, not `a.b.beta.test` nor `beta.test`). An exact name belongs to one
    /// certificate of the table, a wildcard too.
    pub hosts: Vec<String>,
    /// The certificate's own not-after (RFC 3339 UTC), stated so that a reader of the table
    /// sees it; it must agree with the certificate to the second.
    pub not_after: String,
    /// A DER OCSP response for the certificate, base64, stapled to every handshake. At most
    /// 16 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_staple: Option<String>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key never reaches a log line.
        f.debug_struct("Certificate")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("not_after", &self.not_after)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// An API key as gateways see it: its SHA-256 digest and what it may reach.
///
/// ```json
/// {"id": "k1", "digest": "sha256:<64 hex>", "tenant": "acme", "namespaces": ["@acme"],
///  "expires_at": "2027-01-01T00:00:00Z", "rate_limit": {"requests": 100, "window_s": 1}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Non-secret id (like an upstream name: 1-63 of `a-z`, `0-9`, `.`, `_`, `-`), unique.
    /// Sent upstream as `x-realmgate-key-id`.
    pub id: String,
    /// `sha256:` and 64 lower-case hex digits: SHA-256 of the whole key text (`rgk_…`).
    /// Unique.
    pub digest: String,
    /// The tenant the key belongs to; absent for an operator key, valid at every tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `["*"]` (every namespace), or namespaces like `@acme` (`^@[a-z0-9][a-z0-9._-]*$`, at
    /// most 64 characters). Non-empty, no duplicates; `*` stands alone.
    pub namespaces: Vec<String>,
    /// RFC 3339 UTC time (`2027-01-01T00:00:00Z`) from which the key is refused; checked
    /// on every request against the gateway's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The key's own limit; overrides its tenant's `rate_limits.per_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// At most `requests` requests in each window of `window_s` seconds. Windows are counted
/// by pingora-limits' `Rate` estimator: fixed windows, so a client may send up to
/// `requests` at once at the start of a window (the burst), then waits for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// 1 to 1 000 000 000.
    pub requests: u64,
    /// 1 to 3600 (default 1).
    #[serde(default = "RateLimit::default_window")]
    pub window_s: u32,
}

impl RateLimit {
    fn default_window() -> u32 {
        1
    }

    /// At most as permissive as `bound`: no higher rate (requests per second) and no larger
    /// burst (requests at once). What a key may mint under its own or its tenant's limit.
    pub fn within(&self, bound: &RateLimit) -> bool {
        let rate_ok = u128::from(self.requests) * u128::from(bound.window_s)
            <= u128::from(bound.requests) * u128::from(self.window_s);
        rate_ok && self.requests <= bound.requests
    }
}

/// A tenant's rate limits; each one optional. Over a limit the gateway answers 429 with
/// `Retry-After` and `RateLimit-Limit`/`-Remaining`/`-Reset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// Every request the tenant's routes let through, all clients together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<RateLimit>,
    /// Each API key on this tenant's routes (a key's own `rate_limit` overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_key: Option<RateLimit>,
    /// Each client address on requests admitted as `public` (no key). The address is the
    /// TCP peer, or the `X-Forwarded-For` entry a configured trusted proxy vouches for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_client: Option<RateLimit>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        *self == RateLimits::default()
    }

    /// The limit a gateway holds an API key of this tenant to: the key's own, else `per_key`.
    pub fn for_key(&self, own: Option<RateLimit>) -> Option<RateLimit> {
        own.or(self.per_key)
    }
}

/// An upstream pool: endpoints balanced round-robin, with active health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The name an `https://` endpoint's certificate is checked against, and sent as SNI.
    /// Absent: the endpoint's IP address (its certificate must then name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// A PEM file on the gateway with the CA certificates `https://` endpoints are verified
    /// against. Absent: the system's trust roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Do not verify `https://` endpoints' certificates at all. Only for endpoints reached
    /// over a network that is trusted anyway.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_skip_verify: bool,
    /// Speak HTTP/2 to `https://` endpoints (negotiated by ALPN; HTTP/1.1 if the endpoint
    /// declines). Default HTTP/1.1.
    #[serde(default, skip_serializing_if = "is_false")]
    pub h2: bool,
}

impl Upstream {
    /// Whether any endpoint is `https://`.
    pub fn uses_tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Requests per window for the tenant, each key and each public client.
    #[serde(default, skip_serializing_if = "RateLimits::is_empty")]
    pub rate_limits: RateLimits,
    /// The tenant's identity realm (its own Keycloak realm). Required when any route uses
    /// `jwt` or `session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<Realm>,
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
    /// What plain HTTP gets on the tenant's hosts: `off` (served, the default), `redirect`
    /// (`308` to the same host and path over https; `/.well-known/acme-challenge/` is never
    /// redirected) or `only` (refused with 403).
    #[serde(default, skip_serializing_if = "HttpsMode::is_off")]
    pub https: HttpsMode,
    /// `Strict-Transport-Security` on every response the tenant's hosts send over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

/// How a tenant's hosts treat plain HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpsMode {
    #[default]
    Off,
    Redirect,
    Only,
}

impl HttpsMode {
    pub fn is_off(&self) -> bool {
        *self == HttpsMode::Off
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            HttpsMode::Off => "off",
            HttpsMode::Redirect => "redirect",
            HttpsMode::Only => "only",
        }
    }
}

/// `Strict-Transport-Security` settings (RFC 6797).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hsts {
    /// Seconds browsers remember to use https only: 0 (forget) to 63 072 000 (two years).
    pub max_age: u64,
    /// The policy covers subdomains too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub include_subdomains: bool,
    /// Ask for the browsers' preload list: needs `include_subdomains` and a `max_age` of at
    /// least a year (31 536 000), as the list requires.
    #[serde(default, skip_serializing_if = "is_false")]
    pub preload: bool,
}

impl Hsts {
    /// The header's value.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
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

/// One app of a tenant's catalog: a link in the app shell's sidebar, framed when active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogApp {
    /// Shown in the sidebar. 1–64 characters, not blank, no control characters. Tables
    /// before 2026-12 called it `name`, which still parses.
    #[serde(alias = "name")]
    pub title: String,
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
    /// Who may use the route: `"public"`, `"jwt"` (a Bearer access token from the tenant's
    /// realm), `"session"` (the gateway's own browser login against the realm), `"api_key"`
    /// (a namespace-scoped key), or a list of these meaning "any of".
    pub auth: AuthSpec,
    /// The namespace the route belongs to (`@acme`): its prefix must be `/@acme` or start
    /// with `/@acme/`, and a prefix under `/@name` must declare it. An API key reaches it
    /// only if the key's namespaces include it (or are `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AuthSpec {
    One(String),
    AnyOf(Vec<String>),
}

/// Hand-written rather than `#[serde(untagged)]`, which buffers every value before trying
/// each variant: a 100k-tenant table parses measurably faster this way.
impl<'de> Deserialize<'de> for AuthSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AuthSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a policy name or a list of policy names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AuthSpec, E> {
                Ok(AuthSpec::One(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<AuthSpec, E> {
                Ok(AuthSpec::One(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<AuthSpec, A::Error> {
                let mut names = Vec::with_capacity(seq.size_hint().unwrap_or(2).min(8));
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(AuthSpec::AnyOf(names))
            }
        }
        d.deserialize_any(Visitor)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(requests: u64, window_s: u32) -> RateLimit {
        RateLimit { requests, window_s }
    }

    #[test]
    fn within_compares_rate_and_burst() {
        let two_a_minute = rl(2, 60);
        for (limit, bound, within) in [
            (rl(2, 60), two_a_minute, true),
            (rl(1, 60), two_a_minute, true),
            (rl(1, 30), two_a_minute, true),
            (rl(2, 120), two_a_minute, true),
            // The issue's child: a billion a second under two a minute.
            (rl(1_000_000_000, 1), two_a_minute, false),
            // Same rate, bigger burst.
            (rl(4, 120), two_a_minute, false),
            // Smaller burst, higher rate.
            (rl(1, 1), two_a_minute, false),
            (rl(1_000_000_000, 3600), rl(1_000_000_000, 1), true),
            (rl(1_000_000_000, 1), rl(1_000_000_000, 3600), false),
        ] {
            assert_eq!(limit.within(&bound), within, "{limit:?} within {bound:?}");
        }
        let limits = RateLimits {
            per_key: Some(two_a_minute),
            ..RateLimits::default()
        };
        assert_eq!(limits.for_key(None), Some(two_a_minute));
        assert_eq!(limits.for_key(Some(rl(9, 1))), Some(rl(9, 1)));
        assert_eq!(RateLimits::default().for_key(None), None);
    }
}
