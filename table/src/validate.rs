//! Whole-table validation: every problem is collected and reported, never just the first.

pub use crate::auth::MAX_AUDIENCES;
use crate::auth::{check_auth, check_realm};
use crate::host::HostPattern;
use crate::path::normalise_path;
use crate::shell::check_shell_fields;
pub use crate::shell::{MAX_CATALOG_APPS, MAX_SHELL_EXCLUDES};
use crate::wire::{ApiKey, RateLimit, RateLimits, Table, Tenant, Upstream};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;

/// Most endpoints in one pool, hosts in one tenant, routes in one tenant.
pub const MAX_ENDPOINTS: usize = 1024;
pub const MAX_HOSTS_PER_TENANT: usize = 256;
pub const MAX_ROUTES_PER_TENANT: usize = 1024;
const MAX_PREFIX_LEN: usize = 1024;
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The auth policies this version of the table knows.
pub const KNOWN_AUTH: &[&str] = &["public", "jwt", "session", "api_key"];
/// Paths under this prefix on every tenant host belong to the gateway (login callback,
/// logout); no route may claim them.
pub const GATEWAY_PATH_PREFIX: &str = "/.realmgate";
/// Most API keys in one table.
pub const MAX_API_KEYS: usize = 1_000_000;
/// Most namespaces one key lists, and the longest namespace name.
pub const MAX_KEY_NAMESPACES: usize = 256;
pub const MAX_NAMESPACE_LEN: usize = 64;
const MAX_LIMIT_REQUESTS: u64 = 1_000_000_000;
const MAX_LIMIT_WINDOW_S: u32 = 3600;

/// One thing wrong with a table: where (a JSON path like `tenants[1].hosts[0]`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: String,
    pub message: String,
}

impl Problem {
    pub fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            at: at.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

/// What validation learned and the gateway needs to index the table: each tenant's host
/// patterns, normalised, in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub hosts: Vec<Vec<HostPattern>>,
    /// Each API key's `expires_at` as seconds since the Unix epoch, in table order.
    pub key_expiry: Vec<Option<u64>>,
}

/// Validate a parsed table, collecting every problem.
pub fn validate(table: &Table) -> Result<Checked, Vec<Problem>> {
    let mut problems = Vec::new();
    if table.version == 0 {
        problems.push(Problem::new("version", "must be at least 1"));
    }
    for (name, upstream) in &table.upstreams {
        check_upstream(name, upstream, &mut problems);
    }
    let mut ids: FastMap<&str, usize> = map_with_capacity(table.tenants.len());
    let mut hosts = Vec::with_capacity(table.tenants.len());
    let mut issuers: FastMap<&str, usize> = map_with_capacity(0);
    for (t, tenant) in table.tenants.iter().enumerate() {
        if !is_tenant_id(&tenant.id) {
            problems.push(Problem::new(
                format!("tenants[{t}].id"),
                format!(
                    "{:?} is not a tenant id (1-63 of a-z, 0-9, '-'; starts and ends with a letter or digit)",
                    tenant.id
                ),
            ));
        } else if let Some(first) = ids.insert(&tenant.id, t) {
            problems.push(Problem::new(
                format!("tenants[{t}].id"),
                format!("tenant id {:?} already used by tenants[{first}]", tenant.id),
            ));
        }
        hosts.push(parse_hosts(t, tenant, &mut problems));
        check_routes(t, tenant, table, &mut problems);
        check_rate_limits(
            &format!("tenants[{t}].rate_limits"),
            &tenant.rate_limits,
            &mut problems,
        );
        if let Some(realm) = &tenant.realm {
            check_realm(t, realm, &mut problems);
            if let Some(first) = issuers.insert(realm.issuer.as_str(), t) {
                problems.push(Problem::new(
                    format!("tenants[{t}].realm.issuer"),
                    format!(
                        "issuer already used by tenant {:?}: each tenant has its own realm, or one tenant's tokens would open the other's routes",
                        table.tenants[first].id
                    ),
                ));
            }
        }
        if tenant.display_name.is_some() || !tenant.catalog.is_empty() || tenant.shell.is_some() {
            check_shell_fields(&format!("tenants[{t}]"), tenant, table, &mut problems);
        }
    }
    check_host_owners(table, &hosts, &mut problems);
    let key_expiry = check_api_keys(table, &ids, &mut problems);
    if problems.is_empty() {
        Ok(Checked { hosts, key_expiry })
    } else {
        Err(problems)
    }
}

type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    HashMap::with_capacity_and_hasher(n, ahash::RandomState::new())
}

fn check_upstream(name: &str, upstream: &Upstream, problems: &mut Vec<Problem>) {
    let at = format!("upstreams.{name}");
    if !is_name(name) {
        problems.push(Problem::new(
            &at,
            "upstream name must be 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
        ));
    }
    if upstream.endpoints.is_empty() {
        problems.push(Problem::new(
            format!("{at}.endpoints"),
            "needs at least one endpoint",
        ));
    }
    if upstream.endpoints.len() > MAX_ENDPOINTS {
        problems.push(Problem::new(
            format!("{at}.endpoints"),
            format!("more than {MAX_ENDPOINTS} endpoints"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, ep) in upstream.endpoints.iter().enumerate() {
        match ep.parse::<SocketAddr>() {
            Ok(addr) if addr.port() == 0 => problems.push(Problem::new(
                format!("{at}.endpoints[{i}]"),
                format!("{ep:?}: port 0"),
            )),
            Ok(addr) => {
                if !seen.insert(addr) {
                    problems.push(Problem::new(
                        format!("{at}.endpoints[{i}]"),
                        format!("{ep:?} listed twice"),
                    ));
                }
            }
            Err(_) => problems.push(Problem::new(
                format!("{at}.endpoints[{i}]"),
                format!("{ep:?} is not an IP:port address"),
            )),
        }
    }
    for (field, value) in [
        ("connect_timeout_ms", upstream.connect_timeout_ms),
        ("read_timeout_ms", upstream.read_timeout_ms),
        ("write_timeout_ms", upstream.write_timeout_ms),
    ] {
        if let Some(ms) = value {
            if ms == 0 || ms > MAX_TIMEOUT_MS {
                problems.push(Problem::new(
                    format!("{at}.{field}"),
                    format!("must be between 1 and {MAX_TIMEOUT_MS}"),
                ));
            }
        }
    }
    if let Some(path) = upstream
        .health_check
        .as_ref()
        .and_then(|hc| hc.http_path.as_deref())
    {
        if !matches!(normalise_path(path), Ok(Cow::Borrowed(_))) {
            problems.push(Problem::new(
                format!("{at}.health_check.http_path"),
                format!("{path:?} is not a normalised absolute path"),
            ));
        }
    }
}

/// Each host entry normalised; a bad entry is reported and left out.
fn parse_hosts(t: usize, tenant: &Tenant, problems: &mut Vec<Problem>) -> Vec<HostPattern> {
    if tenant.hosts.is_empty() {
        problems.push(Problem::new(
            format!("tenants[{t}].hosts"),
            "needs at least one host",
        ));
    }
    if tenant.hosts.len() > MAX_HOSTS_PER_TENANT {
        problems.push(Problem::new(
            format!("tenants[{t}].hosts"),
            format!("more than {MAX_HOSTS_PER_TENANT} hosts"),
        ));
    }
    let mut patterns = Vec::with_capacity(tenant.hosts.len());
    for (h, raw) in tenant.hosts.iter().enumerate() {
        match HostPattern::parse(raw) {
            Ok(p) => patterns.push(p),
            Err(e) => problems.push(Problem::new(
                format!("tenants[{t}].hosts[{h}]"),
                format!("{raw:?} is not a host name or *.suffix pattern: {e}"),
            )),
        }
    }
    patterns
}

/// Every host pattern belongs to one tenant, once.
fn check_host_owners(table: &Table, hosts: &[Vec<HostPattern>], problems: &mut Vec<Problem>) {
    let total = hosts.iter().map(Vec::len).sum();
    let mut owners: FastMap<&HostPattern, usize> = map_with_capacity(total);
    for (t, patterns) in hosts.iter().enumerate() {
        for pattern in patterns {
            let Some(&owner) = owners.get(pattern) else {
                owners.insert(pattern, t);
                continue;
            };
            let at = table.tenants[t]
                .hosts
                .iter()
                .enumerate()
                .rev()
                .find(|(_, raw)| HostPattern::parse(raw).as_ref() == Ok(pattern))
                .map(|(h, _)| h)
                .map_or_else(
                    || format!("tenants[{t}].hosts"),
                    |h| format!("tenants[{t}].hosts[{h}]"),
                );
            let msg = if owner == t {
                format!("{pattern} listed twice")
            } else {
                format!(
                    "{pattern} is claimed by tenant {:?} and tenant {:?}",
                    table.tenants[owner].id, table.tenants[t].id
                )
            };
            problems.push(Problem::new(at, msg));
        }
    }
}

fn check_routes(t: usize, tenant: &Tenant, table: &Table, problems: &mut Vec<Problem>) {
    if tenant.routes.is_empty() {
        problems.push(Problem::new(
            format!("tenants[{t}].routes"),
            "needs at least one route",
        ));
    }
    if tenant.routes.len() > MAX_ROUTES_PER_TENANT {
        problems.push(Problem::new(
            format!("tenants[{t}].routes"),
            format!("more than {MAX_ROUTES_PER_TENANT} routes"),
        ));
    }
    for (r, route) in tenant.routes.iter().enumerate() {
        let rat = || format!("tenants[{t}].routes[{r}]");
        let p = &route.prefix;
        if p.len() > MAX_PREFIX_LEN || !matches!(normalise_path(p), Ok(Cow::Borrowed(_))) {
            problems.push(Problem::new(
                format!("{}.prefix", rat()),
                format!("{p:?} is not a normalised absolute path (starts with '/', no '//', '.', '..' or escapes of plain characters)"),
            ));
        } else if tenant.routes[..r].iter().any(|other| other.prefix == *p) {
            problems.push(Problem::new(
                format!("{}.prefix", rat()),
                format!("{p:?} listed twice"),
            ));
        }
        if !table.upstreams.contains_key(&route.upstream) {
            problems.push(Problem::new(
                format!("{}.upstream", rat()),
                format!("unknown upstream {:?}", route.upstream),
            ));
        }
        if p == GATEWAY_PATH_PREFIX || p.starts_with("/.realmgate/") {
            problems.push(Problem::new(
                format!("{}.prefix", rat()),
                format!("{p:?}: paths under {GATEWAY_PATH_PREFIX}/ belong to the gateway (login callback, logout)"),
            ));
        }
        check_auth(&rat, route, tenant, problems);
        check_route_namespace(&rat(), route, problems);
    }
}

/// A route's namespace and the path it serves must agree: `namespace: "@acme"` needs a
/// prefix `/@acme` or `/@acme/…`, and a prefix under `/@name` must declare `@name`.
fn check_route_namespace(at: &str, route: &crate::wire::Route, problems: &mut Vec<Problem>) {
    let first = first_segment(&route.prefix);
    let names_one = first.starts_with('@');
    match route.namespace.as_deref() {
        Some(ns) if !is_namespace(ns) => problems.push(Problem::new(
            format!("{at}.namespace"),
            format!("{ns:?} is not a namespace (@ then 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)"),
        )),
        Some(ns) if first != ns => problems.push(Problem::new(
            format!("{at}.namespace"),
            format!(
                "namespace {ns:?} needs a prefix of /{ns} or /{ns}/..., not {:?}",
                route.prefix
            ),
        )),
        Some(_) => {}
        None if names_one && is_namespace(first) => problems.push(Problem::new(
            format!("{at}.namespace"),
            format!("prefix {:?} lies in namespace {first:?}: declare \"namespace\": {first:?}", route.prefix),
        )),
        None if names_one && route.prefix.len() > first.len() + 1 => problems.push(Problem::new(
            format!("{at}.prefix"),
            format!("{first:?} is not a namespace (@ then 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)"),
        )),
        None => {}
    }
}

/// The first segment of a normalised path: `/@acme/x` → `@acme`, `/` → ``.
pub fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

/// `^@[a-z0-9][a-z0-9._-]*$`, at most 64 characters.
pub fn is_namespace(ns: &str) -> bool {
    let b = ns.as_bytes();
    b.len() >= 2
        && b.len() <= MAX_NAMESPACE_LEN
        && b[0] == b'@'
        && (b[1].is_ascii_lowercase() || b[1].is_ascii_digit())
        && b[2..].iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

fn check_rate_limits(at: &str, limits: &RateLimits, problems: &mut Vec<Problem>) {
    for (field, limit) in [
        ("tenant", limits.tenant),
        ("per_key", limits.per_key),
        ("per_client", limits.per_client),
    ] {
        if let Some(limit) = limit {
            check_rate_limit(&format!("{at}.{field}"), &limit, problems);
        }
    }
}

fn check_rate_limit(at: &str, limit: &RateLimit, problems: &mut Vec<Problem>) {
    if limit.requests == 0 || limit.requests > MAX_LIMIT_REQUESTS {
        problems.push(Problem::new(
            format!("{at}.requests"),
            format!("must be between 1 and {MAX_LIMIT_REQUESTS}"),
        ));
    }
    if limit.window_s == 0 || limit.window_s > MAX_LIMIT_WINDOW_S {
        problems.push(Problem::new(
            format!("{at}.window_s"),
            format!("must be between 1 and {MAX_LIMIT_WINDOW_S}"),
        ));
    }
}

/// `sha256:` and 64 lower-case hex digits.
pub fn is_key_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time (`2027-01-01T00:00:00Z`).
pub fn parse_expiry(text: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(text).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Every key well-formed, ids and digests unique, tenants known. Returns each key's expiry.
fn check_api_keys(
    table: &Table,
    tenant_ids: &FastMap<&str, usize>,
    problems: &mut Vec<Problem>,
) -> Vec<Option<u64>> {
    if table.api_keys.len() > MAX_API_KEYS {
        problems.push(Problem::new(
            "api_keys",
            format!("more than {MAX_API_KEYS} keys"),
        ));
    }
    let mut ids: FastMap<&str, usize> = map_with_capacity(table.api_keys.len());
    let mut digests: FastMap<&str, usize> = map_with_capacity(table.api_keys.len());
    let mut expiry = Vec::with_capacity(table.api_keys.len());
    for (k, key) in table.api_keys.iter().enumerate() {
        let at = format!("api_keys[{k}]");
        if !is_name(&key.id) {
            problems.push(Problem::new(
                format!("{at}.id"),
                format!("{:?} is not a key id (1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)", key.id),
            ));
        } else if let Some(first) = ids.insert(&key.id, k) {
            problems.push(Problem::new(
                format!("{at}.id"),
                format!("key id {:?} already used by api_keys[{first}]", key.id),
            ));
        }
        if !is_key_digest(&key.digest) {
            problems.push(Problem::new(
                format!("{at}.digest"),
                "must be sha256: and 64 lower-case hex digits",
            ));
        } else if let Some(first) = digests.insert(&key.digest, k) {
            problems.push(Problem::new(
                format!("{at}.digest"),
                format!("digest already used by api_keys[{first}]"),
            ));
        }
        if let Some(tenant) = &key.tenant {
            if !tenant_ids.contains_key(tenant.as_str()) {
                problems.push(Problem::new(
                    format!("{at}.tenant"),
                    format!("unknown tenant {tenant:?}"),
                ));
            }
        }
        check_key_namespaces(&at, key, problems);
        expiry.push(key.expires_at.as_deref().and_then(|text| {
            let parsed = parse_expiry(text);
            if parsed.is_none() {
                problems.push(Problem::new(
                    format!("{at}.expires_at"),
                    format!("{text:?} is not an RFC 3339 UTC time like 2027-01-01T00:00:00Z"),
                ));
            }
            parsed
        }));
        if let Some(limit) = &key.rate_limit {
            check_rate_limit(&format!("{at}.rate_limit"), limit, problems);
        }
    }
    expiry
}

fn check_key_namespaces(at: &str, key: &ApiKey, problems: &mut Vec<Problem>) {
    let ns = &key.namespaces;
    if ns.is_empty() {
        problems.push(Problem::new(
            format!("{at}.namespaces"),
            "needs at least one namespace (or \"*\")",
        ));
    }
    if ns.len() > MAX_KEY_NAMESPACES {
        problems.push(Problem::new(
            format!("{at}.namespaces"),
            format!("more than {MAX_KEY_NAMESPACES} namespaces"),
        ));
    }
    if ns.len() > 1 && ns.iter().any(|n| n == "*") {
        problems.push(Problem::new(
            format!("{at}.namespaces"),
            "\"*\" already covers every namespace: list it alone",
        ));
    }
    let mut seen = HashSet::with_capacity(ns.len());
    for (i, n) in ns.iter().enumerate() {
        if n != "*" && !is_namespace(n) {
            problems.push(Problem::new(
                format!("{at}.namespaces[{i}]"),
                format!("{n:?} is not \"*\" or a namespace like \"@acme\""),
            ));
        } else if !seen.insert(n.as_str()) {
            problems.push(Problem::new(
                format!("{at}.namespaces[{i}]"),
                format!("{n:?} listed twice"),
            ));
        }
    }
}

/// A DNS label: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`.
pub fn is_tenant_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// `^[a-z0-9][a-z0-9._-]{0,62}$`.
pub fn is_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}
