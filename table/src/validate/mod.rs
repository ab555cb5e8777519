//! Validation, every problem collected and reported, never just the first: a whole table
//! ([`table`], what [`crate::parse`] runs), or one tenant ([`tenant`]), pool ([`upstream`]) or
//! key ([`api_key`]) as it would enter a table (what realmctl checks a request body with).

mod acme;
mod assertion;
mod auth;
mod certs;
mod hosts;
mod keys;
mod pools;
mod shell;

pub use crate::problem::Problem;
pub use acme::{
    is_acme_token, CheckedChallenge, MAX_ACME_CHALLENGES, MAX_ACME_CHALLENGE_HOSTS,
    MAX_ACME_TOKEN_LEN, MIN_ACME_TOKEN_LEN,
};
pub use auth::MAX_AUDIENCES;
pub(crate) use certs::{cert_host_taken, name_certificate};
pub use certs::{
    cert_name_covers, certificate, leaf_names_and_expiry, parse_cert_name, rfc3339, CheckedCert,
    MAX_CERTIFICATES, MAX_CERT_HOSTS, MAX_CERT_PEM_BYTES, MAX_CHAIN_LEN, MAX_KEY_PEM_BYTES,
    MAX_OCSP_BYTES,
};
pub use shell::{
    label, LabelProblem, MAX_APP_TITLE_CHARS, MAX_CATALOG_APPS, MAX_DISPLAY_NAME_CHARS,
    MAX_SHELL_EXCLUDES,
};

use crate::host::HostPattern;
use crate::path::normalise_path;
use crate::wire::{ApiKey, Hsts, RateLimit, RateLimits, Table, Tenant, Upstream};
use auth::{check_auth, check_realm, RealmFacts};
use hosts::{check_host_owners, parse_hosts};
use keys::{check_api_keys, check_key_digest, check_key_id, check_key_rest};
pub use keys::{is_key_digest, parse_expiry};
use shell::check_shell_fields;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
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

/// A table that passed validation, with what validation learned and a gateway indexes it
/// by: each tenant's host patterns, normalised, and each API key's expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedTable {
    pub table: Table,
    /// `hosts[t]`: tenant `t`'s host patterns, normalised, in the tenant's order.
    pub hosts: Vec<Vec<HostPattern>>,
    /// `key_expiry[k]`: API key `k`'s `expires_at` as seconds since the Unix epoch.
    pub key_expiry: Vec<Option<u64>>,
    /// `certificates[c]`: certificate `c`, parsed and ready to serve.
    pub certificates: Vec<CheckedCert>,
    /// `acme_challenges[c]`: challenge `c`'s hosts and expiry, parsed.
    pub acme_challenges: Vec<CheckedChallenge>,
}

/// What [`table`] learned besides "valid": see [`CheckedTable`].
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    pub hosts: Vec<Vec<HostPattern>>,
    pub key_expiry: Vec<Option<u64>>,
    pub certificates: Vec<CheckedCert>,
    pub acme_challenges: Vec<CheckedChallenge>,
}

impl Normalised {
    /// The checked table: `table` with what checking it learned.
    pub fn with(self, table: Table) -> CheckedTable {
        CheckedTable {
            table,
            hosts: self.hosts,
            key_expiry: self.key_expiry,
            certificates: self.certificates,
            acme_challenges: self.acme_challenges,
        }
    }
}

/// What one tenant is checked against: the rest of the table it will enter.
pub struct TenantContext<'a> {
    /// Whether the table has an upstream pool of this name.
    pub has_upstream: &'a dyn Fn(&str) -> bool,
    /// The tenant's realm comes from elsewhere, login client included (realmctl's identity
    /// step makes it), so `jwt` and `session` routes need no `realm` field.
    pub realm_supplied: bool,
    /// Parts the caller checks itself, or could not decode and has reported already.
    pub skip: Skip,
}

/// Parts of a tenant [`tenant`] leaves out, with the checks that lean on them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skip {
    /// `hosts`.
    pub hosts: bool,
    /// `routes`, and whether a route matches each catalog path.
    pub routes: bool,
    /// The display name and the catalog titles (the label rule: [`label`]).
    pub labels: bool,
}

/// Every problem with one tenant as it would enter a table, at paths relative to the tenant
/// (`hosts[1]`, `routes[0].auth`). What only a whole table can tell — the id's syntax and
/// uniqueness, hosts or issuers shared with other tenants — is [`table`]'s.
pub fn tenant(tenant: &Tenant, ctx: &TenantContext<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_tenant(tenant, ctx, &mut problems);
    problems
}

/// The normalised host patterns of a tenant that [`tenant`] found no problem with.
pub fn hosts(tenant: &Tenant) -> Vec<HostPattern> {
    tenant
        .hosts
        .iter()
        .filter_map(|h| HostPattern::parse(h).ok())
        .collect()
}

/// Every problem with one upstream pool's spec, at paths relative to it (`endpoints[0]`).
/// The pool's name is checked with [`is_name`].
pub fn upstream(spec: &Upstream) -> Vec<Problem> {
    let mut problems = Vec::new();
    pools::check_upstream_spec(spec, &mut problems);
    problems
}

/// One API key as it would enter a table, at paths relative to it (`namespaces[0]`): its
/// expiry (seconds since the Unix epoch), or every problem. Uniqueness and whether its
/// tenant exists are the table's ([`table`]).
pub fn api_key(key: &ApiKey) -> Result<Option<u64>, Vec<Problem>> {
    let mut problems = Vec::new();
    check_key_id(key, &mut problems);
    check_key_digest(key, &mut problems);
    let expiry = check_key_rest(key, &mut problems);
    if problems.is_empty() {
        Ok(expiry)
    } else {
        Err(problems)
    }
}

/// [`tenant`] and the tenant's normalised host patterns (those without a problem), in one
/// pass: what a delta's check runs on each tenant it upserts.
pub fn tenant_and_hosts(
    tenant: &Tenant,
    ctx: &TenantContext<'_>,
) -> (Vec<HostPattern>, Vec<Problem>) {
    let mut problems = Vec::new();
    let hosts = check_tenant(tenant, ctx, &mut problems);
    (hosts, problems)
}

/// The problem with a tenant id's syntax, at `id`, if any; uniqueness is the table's.
pub fn tenant_id(id: &str) -> Option<Problem> {
    (!is_tenant_id(id)).then(|| {
        Problem::new(
            "id",
            format!(
                "{id:?} is not a tenant id (1-63 of a-z, 0-9, '-'; starts and ends with a letter or digit)"
            ),
        )
    })
}

/// The problem with a pool's name, at the pool's own path, if any.
pub fn upstream_name(name: &str) -> Option<Problem> {
    (!is_name(name)).then(|| {
        Problem::new(
            "",
            "upstream name must be 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
        )
    })
}

/// A tenant's realm issuer is already another tenant's (`owner`), at `realm.issuer`.
pub(crate) fn issuer_taken(owner: &str) -> Problem {
    Problem::new(
        "realm.issuer",
        format!(
            "issuer already used by tenant {owner:?}: each tenant has its own realm, or one tenant's tokens would open the other's routes"
        ),
    )
}

/// `tenant` claims `pattern`, which tenant `owner` claims too: at the tenant's (last) entry
/// that normalises to it, relative to the tenant.
pub(crate) fn host_claimed(tenant: &Tenant, pattern: &HostPattern, owner: &str) -> Problem {
    let at = tenant
        .hosts
        .iter()
        .enumerate()
        .rev()
        .find(|(_, raw)| HostPattern::parse(raw).as_ref() == Ok(pattern))
        .map_or_else(|| "hosts".to_owned(), |(h, _)| format!("hosts[{h}]"));
    Problem::new(
        at,
        format!(
            "{pattern} is claimed by tenant {owner:?} and tenant {:?}",
            tenant.id
        ),
    )
}

/// Every problem with one ACME http-01 answer as it would enter a table, at paths relative
/// to it, or its parsed hosts and expiry. Uniqueness of its token is the table's.
pub fn challenge(c: &crate::wire::AcmeChallenge) -> Result<CheckedChallenge, Vec<Problem>> {
    let mut problems = Vec::new();
    let checked = acme::check_challenge(c, &mut problems);
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

/// Every problem with an assertion section, at paths under `assertion`.
pub fn assertion(a: &crate::assertion::Assertion) -> Vec<Problem> {
    let mut problems = Vec::new();
    assertion::check_assertion(a, &mut problems);
    problems
}

/// Validate a parsed table, collecting every problem.
pub fn table(table: &Table) -> Result<Normalised, Vec<Problem>> {
    whole(table)
}

/// [`table`], with each tenant's own checks ([`tenant_id`] and [`tenant`]) already passed
/// and its host patterns given (`tenants_hosts[t]`, as [`tenant_and_hosts`] returns them),
/// and no id, host pattern or issuer claimed by two tenants (`has_tenant`: whether a tenant
/// of this id exists): what is left is the rest of the table. What the sharded parse
/// ([`crate::shard`]) runs after checking tenants and their claims on several cores.
pub(crate) fn with_tenants_checked(
    table: &Table,
    tenants_hosts: Vec<Vec<HostPattern>>,
    has_tenant: &dyn Fn(&str) -> bool,
) -> Result<Normalised, Vec<Problem>> {
    let mut problems = Vec::new();
    table_fields(table, &mut problems);
    rest(table, tenants_hosts, has_tenant, problems)
}

/// The version and the pools.
fn table_fields(table: &Table, problems: &mut Vec<Problem>) {
    if table.version == 0 {
        problems.push(Problem::new("version", "must be at least 1"));
    }
    for (name, upstream) in &table.upstreams {
        let start = problems.len();
        problems.extend(upstream_name(name));
        pools::check_upstream_spec(upstream, problems);
        rebase(&mut problems[start..], || format!("upstreams.{name}"));
    }
}

/// What comes after the tenants: keys, certificates, ACME answers, the assertion.
fn rest(
    table: &Table,
    hosts: Vec<Vec<HostPattern>>,
    has_tenant: &dyn Fn(&str) -> bool,
    mut problems: Vec<Problem>,
) -> Result<Normalised, Vec<Problem>> {
    let key_expiry = check_api_keys(table, has_tenant, &mut problems);
    let certificates = certs::check_certificates(table, &mut problems);
    let acme_challenges = acme::check_challenges(&table.acme_challenges, &mut problems);
    if let Some(a) = &table.assertion {
        assertion::check_assertion(a, &mut problems);
    }
    if problems.is_empty() {
        Ok(Normalised {
            hosts,
            key_expiry,
            certificates,
            acme_challenges,
        })
    } else {
        Err(problems)
    }
}

fn whole(table: &Table) -> Result<Normalised, Vec<Problem>> {
    let mut problems = Vec::new();
    table_fields(table, &mut problems);
    let ctx = TenantContext {
        has_upstream: &|name| table.upstreams.contains_key(name),
        realm_supplied: false,
        skip: Skip::default(),
    };
    let mut ids: FastMap<&str, usize> = map_with_capacity(table.tenants.len());
    let mut hosts = Vec::with_capacity(table.tenants.len());
    let mut issuers: FastMap<&str, usize> = map_with_capacity(0);
    for (t, tenant) in table.tenants.iter().enumerate() {
        let start = problems.len();
        problems.extend(tenant_id(&tenant.id));
        if problems.len() == start {
            if let Some(first) = ids.insert(&tenant.id, t) {
                problems.push(Problem::new(
                    "id",
                    format!("tenant id {:?} already used by tenants[{first}]", tenant.id),
                ));
            }
        }
        hosts.push(check_tenant(tenant, &ctx, &mut problems));
        if let Some(realm) = &tenant.realm {
            if let Some(first) = issuers.insert(realm.issuer.as_str(), t) {
                problems.push(issuer_taken(&table.tenants[first].id));
            }
        }
        rebase(&mut problems[start..], || format!("tenants[{t}]"));
    }
    check_host_owners(table, &hosts, &mut problems);
    rest(table, hosts, &|id| ids.contains_key(id), problems)
}

/// Problems found relative to a part, moved under the part's own path. Runs only when there
/// are problems: the prefix is not even formatted otherwise.
fn rebase(problems: &mut [Problem], prefix: impl FnOnce() -> String) {
    if problems.is_empty() {
        return;
    }
    let prefix = prefix();
    for p in problems {
        *p = std::mem::replace(p, Problem::new("", "")).under(&prefix);
    }
}

/// Every check of one tenant, at paths relative to it; returns its host patterns.
fn check_tenant(
    tenant: &Tenant,
    ctx: &TenantContext<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<HostPattern> {
    let hosts = if ctx.skip.hosts {
        Vec::new()
    } else {
        parse_hosts(tenant, problems)
    };
    let realm = if ctx.realm_supplied {
        Some(RealmFacts { login_client: true })
    } else {
        tenant.realm.as_ref().map(|r| RealmFacts {
            login_client: r.client_id.is_some(),
        })
    };
    if !ctx.skip.routes {
        check_routes(tenant, ctx, realm, problems);
    }
    check_rate_limits("rate_limits", &tenant.rate_limits, problems);
    if let Some(realm) = &tenant.realm {
        check_realm(realm, problems);
    }
    if tenant.display_name.is_some() || !tenant.catalog.is_empty() || tenant.shell.is_some() {
        check_shell_fields(tenant, ctx, problems);
    }
    if let Some(hsts) = &tenant.hsts {
        check_hsts(hsts, problems);
    }
    hosts
}

/// Longest HSTS `max_age` (two years), and the least the preload list takes (one year).
pub const MAX_HSTS_AGE: u64 = 63_072_000;
pub const MIN_HSTS_PRELOAD_AGE: u64 = 31_536_000;

fn check_hsts(hsts: &Hsts, problems: &mut Vec<Problem>) {
    if hsts.max_age > MAX_HSTS_AGE {
        problems.push(Problem::new(
            "hsts.max_age",
            format!("must be between 0 and {MAX_HSTS_AGE} (two years)"),
        ));
    }
    if hsts.preload && (!hsts.include_subdomains || hsts.max_age < MIN_HSTS_PRELOAD_AGE) {
        problems.push(Problem::new(
            "hsts.preload",
            format!("the preload list needs include_subdomains and a max_age of at least {MIN_HSTS_PRELOAD_AGE}"),
        ));
    }
}

type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    HashMap::with_capacity_and_hasher(n, ahash::RandomState::new())
}

fn check_routes(
    tenant: &Tenant,
    ctx: &TenantContext<'_>,
    realm: Option<RealmFacts>,
    problems: &mut Vec<Problem>,
) {
    if tenant.routes.is_empty() {
        problems.push(Problem::new("routes", "needs at least one route"));
    }
    if tenant.routes.len() > MAX_ROUTES_PER_TENANT {
        problems.push(Problem::new(
            "routes",
            format!("more than {MAX_ROUTES_PER_TENANT} routes"),
        ));
    }
    for (r, route) in tenant.routes.iter().enumerate() {
        let rat = || format!("routes[{r}]");
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
        if !(ctx.has_upstream)(&route.upstream) {
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
        check_auth(&rat, route, realm, problems);
        check_route_namespace(&rat, route, problems);
    }
}

/// A route's namespace and the path it serves must agree: `namespace: "@acme"` needs a
/// prefix `/@acme` or `/@acme/…`, and a prefix under `/@name` must declare `@name`.
fn check_route_namespace(
    at: &dyn Fn() -> String,
    route: &crate::wire::Route,
    problems: &mut Vec<Problem>,
) {
    let first = first_segment(&route.prefix);
    let names_one = first.starts_with('@');
    match route.namespace.as_deref() {
        Some(ns) if !is_namespace(ns) => problems.push(Problem::new(
            format!("{}.namespace", at()),
            format!("{ns:?} is not a namespace (@ then 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)"),
        )),
        Some(ns) if first != ns => problems.push(Problem::new(
            format!("{}.namespace", at()),
            format!(
                "namespace {ns:?} needs a prefix of /{ns} or /{ns}/..., not {:?}",
                route.prefix
            ),
        )),
        Some(_) => {}
        None if names_one && is_namespace(first) => problems.push(Problem::new(
            format!("{}.namespace", at()),
            format!("prefix {:?} lies in namespace {first:?}: declare \"namespace\": {first:?}", route.prefix),
        )),
        None if names_one && route.prefix.len() > first.len() + 1 => problems.push(Problem::new(
            format!("{}.prefix", at()),
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

#[cfg(test)]
mod tests;
