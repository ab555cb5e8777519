//! Whole-table validation: every problem is collected and reported, never just the first.

use crate::host::HostPattern;
use crate::path::normalise_path;
use crate::shell::check_shell_fields;
pub use crate::shell::{MAX_CATALOG_APPS, MAX_SHELL_EXCLUDES};
use crate::wire::{Table, Tenant, Upstream};
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

/// The only auth policy this version of the table knows.
pub const KNOWN_AUTH: &[&str] = &["public"];

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
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(table.tenants.len());
    let mut owners: HashMap<HostPattern, usize> = HashMap::with_capacity(table.tenants.len());
    let mut hosts = Vec::with_capacity(table.tenants.len());
    for (t, tenant) in table.tenants.iter().enumerate() {
        let at = format!("tenants[{t}]");
        if !is_tenant_id(&tenant.id) {
            problems.push(Problem::new(
                format!("{at}.id"),
                format!(
                    "{:?} is not a tenant id (1-63 of a-z, 0-9, '-'; starts and ends with a letter or digit)",
                    tenant.id
                ),
            ));
        } else if let Some(first) = ids.insert(&tenant.id, t) {
            problems.push(Problem::new(
                format!("{at}.id"),
                format!("tenant id {:?} already used by tenants[{first}]", tenant.id),
            ));
        }
        hosts.push(check_hosts(
            &at,
            t,
            tenant,
            table,
            &mut owners,
            &mut problems,
        ));
        check_routes(&at, tenant, table, &mut problems);
        check_shell_fields(&at, tenant, table, &mut problems);
    }
    if problems.is_empty() {
        Ok(Checked { hosts })
    } else {
        Err(problems)
    }
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

fn check_hosts(
    at: &str,
    t: usize,
    tenant: &Tenant,
    table: &Table,
    owners: &mut HashMap<HostPattern, usize>,
    problems: &mut Vec<Problem>,
) -> Vec<HostPattern> {
    if tenant.hosts.is_empty() {
        problems.push(Problem::new(
            format!("{at}.hosts"),
            "needs at least one host",
        ));
    }
    if tenant.hosts.len() > MAX_HOSTS_PER_TENANT {
        problems.push(Problem::new(
            format!("{at}.hosts"),
            format!("more than {MAX_HOSTS_PER_TENANT} hosts"),
        ));
    }
    let mut patterns = Vec::with_capacity(tenant.hosts.len());
    for (h, raw) in tenant.hosts.iter().enumerate() {
        let pattern = match HostPattern::parse(raw) {
            Ok(p) => p,
            Err(e) => {
                problems.push(Problem::new(
                    format!("{at}.hosts[{h}]"),
                    format!("{raw:?} is not a host name or *.suffix pattern: {e}"),
                ));
                continue;
            }
        };
        if let Some(&owner) = owners.get(&pattern) {
            let msg = if owner == t {
                format!("{pattern} listed twice")
            } else {
                format!(
                    "{pattern} is claimed by tenant {:?} and tenant {:?}",
                    table.tenants[owner].id, tenant.id
                )
            };
            problems.push(Problem::new(format!("{at}.hosts[{h}]"), msg));
            continue;
        }
        owners.insert(pattern.clone(), t);
        patterns.push(pattern);
    }
    patterns
}

fn check_routes(at: &str, tenant: &Tenant, table: &Table, problems: &mut Vec<Problem>) {
    if tenant.routes.is_empty() {
        problems.push(Problem::new(
            format!("{at}.routes"),
            "needs at least one route",
        ));
    }
    if tenant.routes.len() > MAX_ROUTES_PER_TENANT {
        problems.push(Problem::new(
            format!("{at}.routes"),
            format!("more than {MAX_ROUTES_PER_TENANT} routes"),
        ));
    }
    let mut prefixes = HashSet::new();
    for (r, route) in tenant.routes.iter().enumerate() {
        let rat = format!("{at}.routes[{r}]");
        let p = &route.prefix;
        if p.len() > MAX_PREFIX_LEN || !matches!(normalise_path(p), Ok(Cow::Borrowed(_))) {
            problems.push(Problem::new(
                format!("{rat}.prefix"),
                format!("{p:?} is not a normalised absolute path (starts with '/', no '//', '.', '..' or escapes of plain characters)"),
            ));
        } else if !prefixes.insert(p.as_str()) {
            problems.push(Problem::new(
                format!("{rat}.prefix"),
                format!("{p:?} listed twice"),
            ));
        }
        if !table.upstreams.contains_key(&route.upstream) {
            problems.push(Problem::new(
                format!("{rat}.upstream"),
                format!("unknown upstream {:?}", route.upstream),
            ));
        }
        let names = route.auth.names();
        if names.is_empty() {
            problems.push(Problem::new(
                format!("{rat}.auth"),
                "needs at least one policy",
            ));
        }
        for name in names {
            if !KNOWN_AUTH.contains(&name.as_str()) {
                problems.push(Problem::new(
                    format!("{rat}.auth"),
                    format!(
                        "unknown auth policy {name:?} (known: {})",
                        KNOWN_AUTH.join(", ")
                    ),
                ));
            }
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
