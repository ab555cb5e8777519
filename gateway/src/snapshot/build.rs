//! Wire → runtime: build a [`Snapshot`] from a checked table. Pure apart from the caches it
//! is given (pools, realms, rate counters, metric labels), which keep state warm across
//! table versions. Runs off the hot path, before the swap.

use super::{Snapshot, TenantRt};
use crate::acme::Challenges;
use crate::auth::api_key::Keys;
use crate::auth::{RealmRt, Realms};
use crate::limits::{KeyLimit, Limiters, TenantLimits};
use crate::metrics::{Metrics, TenantCounters};
use crate::persistent::{ShardMap, Slots};
use crate::route::{Namespace, Policy, PoolIdx, Route, RouteSets, Routes};
use crate::shell::ShellRt;
use crate::tenant::HostList;
use crate::tls::CertIndex;
use crate::upstream::PoolCache;
use bytes::Bytes;
use http::HeaderValue;
use realmgate_table::host::HostPattern;
use realmgate_table::{ApiKey, CheckedTable, Problem, Tenant};
use std::collections::HashMap;
use std::sync::Arc;

/// What a build reuses from the tables before it.
pub struct BuildDeps<'a> {
    pub pools: &'a PoolCache,
    pub limiters: &'a Limiters,
    pub metrics: &'a Metrics,
    pub realms: &'a Realms,
}

/// Fresh caches of their own, for building snapshots outside a store (tests, benches,
/// `realmgate check`-style uses): [`Caches::deps`] lends them as [`BuildDeps`].
pub struct Caches {
    pub pools: PoolCache,
    pub limiters: Limiters,
    pub metrics: Metrics,
    pub realms: Realms,
}

impl Caches {
    /// Empty caches, with `tenant_labels` tenants named in the metrics.
    pub fn new(tenant_labels: usize) -> Caches {
        Caches {
            pools: PoolCache::default(),
            limiters: Limiters::default(),
            metrics: Metrics::new(tenant_labels).expect("metrics registry"),
            realms: Realms::default(),
        }
    }

    pub fn deps(&self) -> BuildDeps<'_> {
        BuildDeps {
            pools: &self.pools,
            limiters: &self.limiters,
            metrics: &self.metrics,
            realms: &self.realms,
        }
    }
}

/// Why a document did not become a snapshot.
#[derive(Debug)]
pub enum Rejected {
    /// Every problem found.
    Invalid(Vec<Problem>),
    /// Valid, but not newer than `current`.
    NotNewer { current: u64, offered: u64 },
}

/// How a full table arrives: the JSON document (the contract), or the same table in the
/// binary encoding (`realmgate_table::binary`), negotiated by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Binary,
}

impl Encoding {
    /// Decode and check a document of this encoding: the same checks and problems either way.
    pub fn parse(self, raw: &[u8]) -> Result<CheckedTable, Vec<Problem>> {
        match self {
            Encoding::Json => realmgate_table::parse(raw),
            Encoding::Binary => realmgate_table::parse_binary(raw),
        }
    }

    /// The encoding of a stored table, by its first bytes.
    pub fn of(raw: &[u8]) -> Encoding {
        if realmgate_table::binary::looks_binary(raw) {
            Encoding::Binary
        } else {
            Encoding::Json
        }
    }
}

/// Parse and validate `raw`, refuse it unless its version is newer than `current`'s and its
/// new certificates are valid now (see [`certificate_validity`]), then build it. Both are
/// checked before anything is built: a build refreshes the caches in `deps`. This is the one
/// place that reads `realmgate_table::parse`'s result (with [`Keys::build`]). The checked
/// table comes back beside the snapshot: the table's model is made from it.
pub fn parse_newer(
    raw: &Bytes,
    encoding: Encoding,
    current: Option<&Snapshot>,
    now: u64,
    deps: &BuildDeps<'_>,
) -> Result<(Snapshot, CheckedTable), Rejected> {
    let checked = encoding.parse(raw).map_err(Rejected::Invalid)?;
    if let Some(current) = current {
        if checked.table.version <= current.version {
            return Err(Rejected::NotNewer {
                current: current.version,
                offered: checked.table.version,
            });
        }
    }
    let problems = certificate_validity(&checked, current.map(|s| &s.certs), now);
    if !problems.is_empty() {
        return Err(Rejected::Invalid(problems));
    }
    // The document is kept to be shown as received; a binary one is not JSON to show.
    let doc = (encoding == Encoding::Json).then(|| raw.clone());
    let snapshot = build(&checked, doc, deps).map_err(|p| Rejected::Invalid(vec![p]))?;
    Ok((snapshot, checked))
}

/// The apply rule for certificates in time: one that is new or changed (by name and
/// fingerprint, against the table in force) must be valid `now`; one already loaded keeps
/// serving after it expires (it is reported) and never blocks a later table. With no table
/// in force (first push, or the stored table at start) nothing is "already loaded": such a
/// certificate is accepted with a warning rather than leave the gateway without a table.
pub fn certificate_validity(
    checked: &CheckedTable,
    current: Option<&CertIndex>,
    now: u64,
) -> Vec<Problem> {
    let named = checked
        .table
        .certificates
        .iter()
        .map(|c| c.name.as_str())
        .zip(&checked.certificates);
    certificates_in_time(named, current, now)
}

/// The rule of [`certificate_validity`] over certificates given as `(name, certificate)` at
/// `certificates[i]` of a table or a delta (the delta's check calls it too).
pub fn certificates_in_time<'a>(
    named: impl Iterator<Item = (&'a str, &'a realmgate_table::CheckedCert)>,
    current: Option<&CertIndex>,
    now: u64,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, (name, cert)) in named.enumerate() {
        if cert.is_current(now) {
            continue;
        }
        let when = if now < cert.not_before {
            format!(
                "is not valid before {}",
                realmgate_table::validate::rfc3339(cert.not_before)
            )
        } else {
            format!(
                "expired at {}",
                realmgate_table::validate::rfc3339(cert.not_after)
            )
        };
        let Some(current) = current else {
            log::warn!("certificate {name:?} {when}: accepted because no table is in force yet");
            continue;
        };
        let loaded = current
            .named(name)
            .is_some_and(|c| c.cert.fingerprint == cert.fingerprint);
        if loaded {
            log::warn!("certificate {name:?} {when}; it keeps serving until replaced");
        } else {
            problems.push(Problem::new(
                format!("certificates[{i}]"),
                format!(
                    "certificate {name:?} {when}: a new or replaced certificate must be valid now"
                ),
            ));
        }
    }
    problems
}

/// Compile a parsed and validated table (`raw`: the JSON document as received, if it was).
/// The digest is left empty for the caller to set. Tenants, pools and keys get indices in
/// table order (pools in name order). The checked table is only read: the table's model is
/// made from it afterwards, without a second parse.
/// A large table's tenants are compiled on every core ([`tenants`]); the snapshot is the
/// same either way.
pub fn build(
    checked: &CheckedTable,
    raw: Option<Bytes>,
    deps: &BuildDeps<'_>,
) -> Result<Snapshot, Problem> {
    let threads = tenants::threads_for(checked.table.tenants.len());
    #[cfg(test)]
    BUILT_ON.with(|b| b.set(threads));
    build_on(checked, raw, deps, threads)
}

#[cfg(test)]
thread_local! {
    /// How many threads this thread's last [`build`] compiled its tenants on (for tests).
    pub static BUILT_ON: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// [`build`] with the tenants compiled on `threads` threads (one: all on this thread).
pub(super) fn build_on(
    checked: &CheckedTable,
    raw: Option<Bytes>,
    deps: &BuildDeps<'_>,
    threads: usize,
) -> Result<Snapshot, Problem> {
    let CheckedTable {
        table,
        hosts,
        key_expiry,
        certificates,
        acme_challenges,
    } = checked;
    let acme = Challenges::build(table.acme_challenges.clone(), acme_challenges.clone());
    let certs = CertIndex::build(
        table
            .certificates
            .iter()
            .map(|c| c.name.clone())
            .zip(certificates.iter().cloned()),
    );
    let pool_ids: ShardMap<Box<str>, PoolIdx> = table
        .upstreams
        .keys()
        .enumerate()
        .map(|(i, name)| (Box::from(name.as_str()), i as PoolIdx))
        .collect();
    let pools = deps
        .pools
        .resolve(table.upstreams.iter())
        .map_err(|e| Problem::new("upstreams", e))?;
    let labels = deps
        .metrics
        .tenant_labels(table.tenants.iter().map(|t| t.id.as_str()));
    let realms = deps
        .realms
        .compile(table.tenants.iter().map(|t| t.realm.as_ref()));
    let assertion = crate::assertion::Signer::compile(table.assertion.as_ref());
    let version = table.version;
    let limiters = deps.limiters;
    let pool_of = |name: &str| pool_ids.get(name).copied();
    let shared = tenants::Shared {
        tenants: &table.tenants,
        hosts,
        pool_of: &pool_of,
        pools: pool_ids.len(),
        limiters,
    };
    let tenants::Compiled {
        tenants,
        users,
        ids: tenant_ids,
        hosts: host_index,
    } = tenants::compile(&shared, labels, realms, threads)?;
    let pool_users = ShardMap::build(
        users.len(),
        users
            .iter()
            .enumerate()
            .filter(|(_, &u)| u > 0)
            .map(|(p, &u)| (p as PoolIdx, u)),
    );
    let mut keys = Keys::with_capacity(table.api_keys.len());
    let mut key_limits = Slots::default();
    for (k, key) in table.api_keys.iter().enumerate() {
        let expiry = key_expiry.get(k).copied().flatten();
        // Validation guarantees the key goes in; one that does not is left out.
        let Ok(idx) = keys.upsert(key, expiry, |id| tenant_ids.get(id).copied()) else {
            continue;
        };
        key_limits.set(idx, Arc::new(key_limit(limiters, key)));
    }
    limiters.prune();
    Ok(Snapshot {
        version,
        digest: String::new(),
        state_digest: String::new(),
        raw,
        hosts: host_index,
        tenants: Slots::from_vec(tenants),
        tenant_ids,
        pools: Slots::from_vec(pools),
        pool_ids,
        pool_users,
        keys,
        key_limits,
        certs,
        acme,
        assertion,
    })
}

pub(super) fn key_limit(limiters: &Limiters, k: &ApiKey) -> KeyLimit {
    KeyLimit::compile(limiters, k.tenant.as_deref(), &k.id, k.rate_limit.as_ref())
}

/// One tenant as requests read it: routes with their pools (`pool_of` a pool name), shell,
/// limits, headers. The same for a full table and a change; its routes are shared through
/// `sets` with the tenants compiled before it whose routes compile the same.
pub(super) fn compile_tenant(
    t: &Tenant,
    hosts: &[HostPattern],
    pool_of: &dyn Fn(&str) -> Option<PoolIdx>,
    counters: Arc<TenantCounters>,
    realm: Option<Arc<RealmRt>>,
    limiters: &Limiters,
    sets: &mut RouteSets,
) -> Result<TenantRt, Problem> {
    let unknown = |name: &str| {
        Problem::new(
            format!("tenants.{}.routes", t.id),
            format!("unknown upstream {name}"),
        )
    };
    let shell_pool = t.shell.as_ref().and_then(|s| s.upstream.as_deref());
    let shell_pools: HashMap<&str, PoolIdx> = match shell_pool {
        Some(name) => [(name, pool_of(name).ok_or_else(|| unknown(name))?)].into(),
        None => HashMap::new(),
    };
    let shell = ShellRt::compile(t, &shell_pools);
    let mut used = Used::default();
    shell_pools.values().for_each(|&p| used.push(p));
    let mut routes = Vec::with_capacity(t.routes.len());
    for r in &t.routes {
        // Validation guarantees the upstream exists; be safe anyway.
        let pool = pool_of(&r.upstream).ok_or_else(|| unknown(&r.upstream))?;
        used.push(pool);
        routes.push(Route {
            pool,
            policy: Policy::from_route(r),
            prefix: Box::from(r.prefix.as_str()),
            namespace: r.namespace.as_deref().map(|ns| Namespace {
                // Namespaces are validated to [@a-z0-9._-].
                header: HeaderValue::from_str(ns).unwrap_or(HeaderValue::from_static("")),
                name: Box::from(ns),
            }),
        });
    }
    let pools = used.finish();
    Ok(TenantRt {
        limits: TenantLimits::compile(limiters, &t.id, &t.rate_limits),
        // Tenant ids are validated to [a-z0-9-], always a valid header value.
        header: HeaderValue::from_str(&t.id).unwrap_or(HeaderValue::from_static("")),
        id: Arc::from(t.id.as_str()),
        hosts: HostList::new(hosts),
        pools,
        routes: sets.intern(Routes::new(routes)),
        suspended: !t.status.is_active(),
        counters,
        realm,
        shell,
        https: t.https,
        hsts: t
            .hsts
            .and_then(|h| HeaderValue::from_str(&h.header_value()).ok())
            .map(Box::new),
    })
}

/// The pools a tenant uses, gathered without a heap allocation for the usual few (a full
/// table compiles every tenant): the first [`Used::INLINE`] distinct ones are kept on the
/// stack, more spill into a vector. [`Used::finish`] gives them sorted, each once.
#[derive(Default)]
struct Used {
    inline: [PoolIdx; Used::INLINE],
    len: usize,
    spilled: Vec<PoolIdx>,
}

impl Used {
    const INLINE: usize = 8;

    fn push(&mut self, pool: PoolIdx) {
        if self.spilled.is_empty() {
            if self.inline[..self.len].contains(&pool) {
                return;
            }
            if self.len < Used::INLINE {
                self.inline[self.len] = pool;
                self.len += 1;
                return;
            }
            self.spilled.extend_from_slice(&self.inline);
        }
        self.spilled.push(pool);
    }

    fn finish(mut self) -> Box<[PoolIdx]> {
        if self.spilled.is_empty() {
            let pools = &mut self.inline[..self.len];
            pools.sort_unstable();
            return Box::from(&*pools);
        }
        self.spilled.sort_unstable();
        self.spilled.dedup();
        self.spilled.into_boxed_slice()
    }
}

mod tenants;

#[cfg(test)]
mod tests;
