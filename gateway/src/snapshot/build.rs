//! Wire → runtime: build a [`Snapshot`] from a checked table. Pure apart from the caches it
//! is given (pools, realms, rate counters, metric labels), which keep state warm across
//! table versions. Runs off the hot path, before the swap.

use super::{Snapshot, TenantRt};
use crate::acme::Challenges;
use crate::auth::api_key::Keys;
use crate::auth::Realms;
use crate::limits::{KeyLimit, Limiters, TenantLimits};
use crate::metrics::Metrics;
use crate::route::{Namespace, Policy, PoolIdx, Route, Routes};
use crate::shell::ShellRt;
use crate::tenant::{HostIndex, TenantIdx};
use crate::tls::CertIndex;
use crate::upstream::PoolCache;
use bytes::Bytes;
use http::HeaderValue;
use realmgate_table::{CheckedTable, Problem};
use std::collections::HashMap;

/// What a build reuses from the tables before it.
pub struct BuildDeps<'a> {
    pub pools: &'a PoolCache,
    pub limiters: &'a Limiters,
    pub metrics: &'a Metrics,
    pub realms: &'a Realms,
}

/// Why a document did not become a snapshot.
#[derive(Debug)]
pub enum Rejected {
    /// Every problem found.
    Invalid(Vec<Problem>),
    /// Valid, but not newer than `current`.
    NotNewer { current: u64, offered: u64 },
}

/// Parse and validate `raw`, refuse it unless its version is newer than `current`'s and its
/// new certificates are valid now (see [`certificate_validity`]), then build it. Both are
/// checked before anything is built: a build refreshes the caches in `deps`. This is the one
/// place that reads `realmgate_table::parse`'s result (with [`Keys::build`]).
pub fn parse_newer(
    raw: &Bytes,
    current: Option<&Snapshot>,
    now: u64,
    deps: &BuildDeps<'_>,
) -> Result<Snapshot, Rejected> {
    let checked = realmgate_table::parse(raw).map_err(Rejected::Invalid)?;
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
    build(checked, raw.clone(), deps).map_err(|p| Rejected::Invalid(vec![p]))
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
    let mut problems = Vec::new();
    let named = checked.table.certificates.iter().zip(&checked.certificates);
    for (i, (wire, cert)) in named.enumerate() {
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
            log::warn!(
                "certificate {:?} {when}: accepted because no table is in force yet",
                wire.name
            );
            continue;
        };
        let loaded = current
            .all()
            .iter()
            .any(|c| *c.name == *wire.name && c.cert.fingerprint == cert.fingerprint);
        if loaded {
            log::warn!(
                "certificate {:?} {when}; it keeps serving until replaced",
                wire.name
            );
        } else {
            problems.push(Problem::new(
                format!("certificates[{i}]"),
                format!(
                    "certificate {:?} {when}: a new or replaced certificate must be valid now",
                    wire.name
                ),
            ));
        }
    }
    problems
}

/// Compile a parsed and validated table. The digest is left empty for the caller to set.
pub fn build(checked: CheckedTable, raw: Bytes, deps: &BuildDeps<'_>) -> Result<Snapshot, Problem> {
    let CheckedTable {
        table,
        hosts,
        key_expiry,
        certificates,
        acme_challenges,
    } = checked;
    let acme = Challenges::build(table.acme_challenges, acme_challenges);
    let certs = CertIndex::build(
        table
            .certificates
            .iter()
            .map(|c| c.name.clone())
            .zip(certificates),
    );
    let pool_index: HashMap<&str, PoolIdx> = table
        .upstreams
        .keys()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i as PoolIdx))
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
    // Consume the parsed table: ids and prefixes move into the snapshot, not copied.
    let version = table.version;
    let limiters = deps.limiters;
    let mut tenants = Vec::with_capacity(table.tenants.len());
    for ((t, counters), realm) in table.tenants.into_iter().zip(labels).zip(realms) {
        let shell = ShellRt::compile(&t, &pool_index);
        let mut routes = Vec::with_capacity(t.routes.len());
        for r in t.routes {
            // Validation guarantees the upstream exists; be safe anyway.
            let pool = pool_index
                .get(r.upstream.as_str())
                .copied()
                .ok_or_else(|| {
                    Problem::new(
                        format!("tenants.{}.routes", t.id),
                        format!("unknown upstream {}", r.upstream),
                    )
                })?;
            routes.push(Route {
                pool,
                policy: Policy::from_route(&r),
                prefix: r.prefix.into_boxed_str(),
                namespace: r.namespace.map(|ns| Namespace {
                    // Namespaces are validated to [@a-z0-9._-].
                    header: HeaderValue::from_str(&ns).unwrap_or(HeaderValue::from_static("")),
                    name: ns.into_boxed_str(),
                }),
            });
        }
        tenants.push(TenantRt {
            limits: TenantLimits::compile(limiters, &t.id, &t.rate_limits),
            // Tenant ids are validated to [a-z0-9-], always a valid header value.
            header: HeaderValue::from_str(&t.id).unwrap_or(HeaderValue::from_static("")),
            id: t.id.into_boxed_str(),
            routes: Routes::new(routes),
            suspended: !t.status.is_active(),
            counters,
            realm,
            shell,
            https: t.https,
            hsts: t
                .hsts
                .and_then(|h| HeaderValue::from_str(&h.header_value()).ok()),
        });
    }
    let tenants = tenants.into_boxed_slice();
    let tenant_index: HashMap<&str, TenantIdx> = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (&*t.id, i as TenantIdx))
        .collect();
    // Limits in table order, then in the order of the keys kept.
    let mut limits: Vec<Option<KeyLimit>> = table
        .api_keys
        .iter()
        .map(|k| {
            Some(KeyLimit::compile(
                limiters,
                k.tenant.as_deref(),
                &k.id,
                k.rate_limit.as_ref(),
            ))
        })
        .collect();
    let keys = Keys::build(table.api_keys, &key_expiry, |id| {
        tenant_index.get(id).copied()
    });
    drop(tenant_index);
    let key_limits = keys
        .table_positions()
        .map(|i| limits.get_mut(i).and_then(Option::take).unwrap_or_default())
        .collect();
    drop(limits);
    limiters.prune();
    Ok(Snapshot {
        version,
        digest: String::new(),
        raw,
        hosts: HostIndex::build(hosts),
        tenants,
        pools: pools.into_boxed_slice(),
        keys,
        key_limits,
        certs,
        acme,
        assertion,
    })
}

#[cfg(test)]
mod tests;
