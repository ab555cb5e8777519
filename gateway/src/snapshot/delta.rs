//! Checked change → next snapshot: [`build_delta`] makes the snapshot after a
//! [`CheckedDelta`] from the one in force in O(size of the change). Every index is a
//! persistent structure, so the next snapshot is the previous one with the touched shards and
//! chunks copied; it answers every lookup as `build` of the resulting full table would (the
//! property tests in `delta_tests.rs` hold it to that). Runs off the hot path, before the swap.

use super::build::{compile_tenant, key_limit, BuildDeps};
use super::pace;
use super::Snapshot;
use crate::auth::api_key::KeyRefused;
use crate::route::{PoolIdx, RouteSets};
use crate::tenant::TenantIdx;
use crate::tls::CertIndex;
use crate::upstream::Pool;
use realmgate_table::delta::CheckedDelta;
use realmgate_table::Problem;
use smol_str::SmolStr;
use std::sync::Arc;

/// What a change took from the shared caches (labels, counters, realms): handed back if the
/// change fails, so a refused delta leaves nothing behind.
#[derive(Default)]
struct Acquired {
    labels: Vec<Box<str>>,
    scopes: Vec<u64>,
    realms: Vec<u64>,
}

/// What a change let go of, released from the caches once it has built.
#[derive(Default)]
struct Released {
    labels: Vec<Box<str>>,
    scopes: Vec<u64>,
    realms: Vec<u64>,
    pools: Vec<Box<str>>,
}

/// The snapshot after `delta`, sharing with `prev` all the change does not touch. `prev` is
/// left as it is (requests holding it keep reading it). The digest is the delta's state
/// digest; `raw` is `None`. On error nothing changed anywhere, the caches included.
///
/// The order makes moves within one change work: a host, pool name or key digest released
/// by one part may be claimed by another; slots freed by this change are not reused by it,
/// so a key still naming a deleted tenant is caught rather than pointed at a newcomer.
pub fn build_delta(
    prev: &Snapshot,
    delta: &CheckedDelta,
    deps: &BuildDeps<'_>,
) -> Result<Snapshot, Problem> {
    let (next, effects) = build_delta_pending(prev, delta, deps)?;
    effects.commit(deps);
    Ok(next)
}

/// [`build_delta`], with what the change does to the shared caches left to the caller:
/// [`Effects::commit`] once the snapshot is journaled and goes in force, [`Effects::abort`]
/// when it does not (the journal refused it).
pub fn build_delta_pending(
    prev: &Snapshot,
    delta: &CheckedDelta,
    deps: &BuildDeps<'_>,
) -> Result<(Snapshot, Effects), Problem> {
    let mut acquired = Acquired::default();
    match apply(prev, delta, deps, &mut acquired) {
        Ok((next, released, new_pools)) => Ok((
            next,
            Effects {
                acquired,
                released,
                new_pools,
            },
        )),
        Err(p) => {
            give_back(acquired, deps);
            Err(p)
        }
    }
}

/// What a built change took from the shared caches and lets go of in them.
#[must_use = "commit or abort: otherwise the caches keep what the change took"]
pub struct Effects {
    acquired: Acquired,
    released: Released,
    new_pools: Vec<Arc<Pool>>,
}

impl Effects {
    /// The change is in force: its new pools are cached, what it let go of is released.
    pub fn commit(self, deps: &BuildDeps<'_>) {
        let Effects {
            released,
            new_pools,
            ..
        } = self;
        deps.pools
            .commit(new_pools.iter(), released.pools.iter().map(|n| &**n));
        let_go(&released.labels, released.scopes, released.realms, deps);
    }

    /// The change is not in force: what it took is handed back.
    pub fn abort(self, deps: &BuildDeps<'_>) {
        give_back(self.acquired, deps);
    }
}

fn give_back(acquired: Acquired, deps: &BuildDeps<'_>) {
    let_go(&acquired.labels, acquired.scopes, acquired.realms, deps);
}

/// Release tenant labels, rate-counter scopes and realms in the shared caches.
fn let_go(labels: &[Box<str>], scopes: Vec<u64>, realms: Vec<u64>, deps: &BuildDeps<'_>) {
    for id in labels {
        deps.metrics.release_tenant_label(id);
    }
    deps.limiters.release(scopes);
    deps.limiters.prune_released();
    deps.realms.release(realms);
    deps.realms.prune_released();
}

type Applied = (Snapshot, Released, Vec<Arc<Pool>>);

fn apply(
    prev: &Snapshot,
    delta: &CheckedDelta,
    deps: &BuildDeps<'_>,
    acquired: &mut Acquired,
) -> Result<Applied, Problem> {
    let CheckedDelta {
        base,
        version,
        state_digest,
        upstreams,
        delete_upstreams,
        tenants,
        delete_tenants,
        api_keys,
        delete_api_keys,
        certificates,
        delete_certificates,
        acme_challenges,
        delete_acme_challenges,
        assertion,
    } = delta;
    let (base, version) = (*base, *version);
    if base != prev.version {
        return Err(Problem::new(
            "base",
            format!(
                "the delta applies to version {base}, the table is at {}",
                prev.version
            ),
        ));
    }
    if version <= base {
        return Err(Problem::new(
            "version",
            format!("version {version} is not newer than base {base}"),
        ));
    }
    let mut next = Snapshot {
        version,
        digest: state_digest.clone(),
        state_digest: state_digest.clone(),
        raw: None,
        hosts: prev.hosts.clone(),
        tenants: prev.tenants.clone(),
        tenant_ids: prev.tenant_ids.clone(),
        pools: prev.pools.clone(),
        pool_ids: prev.pool_ids.clone(),
        pool_users: prev.pool_users.clone(),
        keys: prev.keys.clone(),
        key_limits: prev.key_limits.clone(),
        certs: prev.certs.clone(),
        acme: prev.acme.clone(),
        assertion: prev.assertion.clone(),
    };
    let mut released = Released::default();

    // Pools: upserts keep their index, so routes naming them follow; deletions wait until
    // the tenants have let go of them.
    let mut new_pools = Vec::with_capacity(upstreams.len());
    for (name, spec) in upstreams {
        let pool = deps
            .pools
            .get_or_build(name, spec)
            .map_err(|e| Problem::new(format!("upstreams.{name}"), e))?;
        match next.pool_ids.get(name.as_str()).copied() {
            Some(idx) => {
                next.pools.set(idx, Arc::clone(&pool));
            }
            None => {
                let idx = next.pools.insert(Arc::clone(&pool));
                next.pool_ids.insert(name.as_str().into(), idx);
            }
        }
        new_pools.push(pool);
    }

    // Tenants: each named once; first every replaced or deleted one lets go of its hosts
    // and pools.
    let mut named = std::collections::HashSet::with_capacity(tenants.len() + delete_tenants.len());
    for (id, hosts) in tenants
        .iter()
        .map(|(t, h)| (t.id.as_str(), Some(h.as_slice())))
        .chain(delete_tenants.iter().map(|id| (id.as_str(), None)))
    {
        pace::point();
        if !named.insert(id) {
            return Err(Problem::new(
                "tenants",
                format!("tenant {id:?} is named twice in one change"),
            ));
        }
        if let Some((idx, old)) = prev
            .tenant_ids
            .get(id)
            .and_then(|&i| Some((i, prev.tenants.get(i)?)))
        {
            // A tenant whose hosts stay (a suspension, new routes) keeps them: its claim
            // below finds them its own and copies no shard of the host index.
            if !hosts.is_some_and(|h| old.hosts.is(h)) {
                next.hosts.release(idx, &old.hosts.patterns());
            }
            for &p in old.pools.iter() {
                add_users(&mut next, p, -1);
            }
        }
    }
    drop(named);
    let mut deleted: Vec<TenantIdx> = Vec::with_capacity(delete_tenants.len());
    for id in delete_tenants {
        let (idx, old) = prev
            .tenant_by_id(id)
            .ok_or_else(|| Problem::new("delete_tenants", format!("unknown tenant {id:?}")))?;
        released.realms.extend(old.realm.as_ref().map(|r| r.id));
        deleted.push(idx);
    }
    // Then the upserted ones are compiled and claim their hosts; a tenant whose routes did
    // not change keeps sharing its route set.
    let mut sets = RouteSets::default();
    for (t, hosts) in tenants {
        pace::point();
        let id = t.id.clone();
        let old = prev.tenant_by_id(&id);
        let counters = match old {
            Some((_, o)) => Arc::clone(&o.counters),
            None => {
                acquired.labels.push(id.as_str().into());
                deps.metrics.tenant_label(&id)
            }
        };
        let realm = t.realm.as_ref().map(|r| deps.realms.compile_one(r));
        match (&realm, old.and_then(|(_, o)| o.realm.as_ref())) {
            (Some(new), Some(was)) if Arc::ptr_eq(new, was) => {}
            (new, was) => {
                acquired.realms.extend(new.as_ref().map(|r| r.id));
                released.realms.extend(was.map(|r| r.id));
            }
        }
        let scope = crate::limits::scope_of(Some(&id));
        acquired.scopes.push(scope);
        if old.is_some() {
            released.scopes.push(scope);
        }
        if let Some((_, o)) = old {
            sets.offer(&o.routes);
        }
        let pool_of = |name: &str| next.pool_ids.get(name).copied();
        let rt = Arc::new(compile_tenant(
            t,
            hosts,
            &pool_of,
            counters,
            realm,
            deps.limiters,
            &mut sets,
        )?);
        let idx = match old {
            Some((idx, _)) => {
                next.tenants.set(idx, Arc::clone(&rt));
                idx
            }
            None => {
                let idx = next.tenants.insert(Arc::clone(&rt));
                next.tenant_ids.insert(SmolStr::new(&*rt.id), idx);
                idx
            }
        };
        next.hosts.claim(idx, hosts).map_err(|taken| {
            Problem::new(
                format!("tenants.{id}.hosts"),
                format!(
                    "{} is claimed by tenant {:?} and tenant {id:?}",
                    taken.pattern,
                    next.tenants.get(taken.by).map_or("?", |t| &*t.id)
                ),
            )
        })?;
        for &p in rt.pools.iter() {
            add_users(&mut next, p, 1);
        }
    }
    // Deleted slots are freed only now: nothing in this change reuses them.
    for (idx, id) in deleted.iter().zip(delete_tenants) {
        next.tenants.remove(*idx);
        next.tenant_ids.remove(id.as_str());
        released.labels.push(id.as_str().into());
        released.scopes.push(crate::limits::scope_of(Some(id)));
    }

    // Pools no tenant uses any more may go.
    for name in delete_upstreams {
        let idx = next.pool_ids.get(name.as_str()).copied().ok_or_else(|| {
            Problem::new("delete_upstreams", format!("unknown upstream {name:?}"))
        })?;
        if let Some(n) = next.pool_users.get(&idx).filter(|&&n| n > 0) {
            return Err(Problem::new(
                "delete_upstreams",
                format!("upstream {name:?} is still used by {n} tenant(s)"),
            ));
        }
        next.pools.remove(idx);
        next.pool_ids.remove(name.as_str());
        released.pools.push(name.as_str().into());
    }

    // Keys: removals, then every changed key lets go of its digest, then upserts (a digest
    // may move from a removed or changed key to another, or two keys may swap theirs).
    for id in delete_api_keys {
        pace::point();
        let idx = next
            .keys
            .remove(id)
            .ok_or_else(|| Problem::new("delete_api_keys", format!("unknown API key {id:?}")))?;
        if let Some(l) = next.key_limits.take(idx) {
            released.scopes.push(l.scope);
        }
    }
    for (key, _) in api_keys {
        next.keys.release_digest(&key.id);
    }
    for (key, expiry) in api_keys {
        pace::point();
        let tenant_ids = &next.tenant_ids;
        let idx = next
            .keys
            .upsert(key, *expiry, |t| tenant_ids.get(t).copied())
            .map_err(|e| key_problem(&key.id, &e))?;
        let limit = key_limit(deps.limiters, key);
        acquired.scopes.push(limit.scope);
        if let Some(old) = next.key_limits.set(idx, Arc::new(limit)) {
            released.scopes.push(old.scope);
        }
    }
    for (idx, id) in deleted.iter().zip(delete_tenants) {
        let n = next.keys.of_tenant(*idx);
        if n > 0 {
            return Err(Problem::new(
                "delete_tenants",
                format!("tenant {id:?} is deleted but {n} API key(s) still name it"),
            ));
        }
    }

    // Certificates, ACME answers, the assertion.
    for name in delete_certificates {
        next.certs.remove(name).ok_or_else(|| {
            Problem::new(
                "delete_certificates",
                format!("unknown certificate {name:?}"),
            )
        })?;
    }
    // Every replaced certificate lets go of its server names before any claims new ones: a
    // name may move from one changed certificate to another.
    for (wire, _) in certificates {
        next.certs.remove(&wire.name);
    }
    for (wire, cert) in certificates {
        next.certs.upsert(wire.name.clone(), cert.clone());
    }
    for token in delete_acme_challenges {
        if !next.acme.remove(token) {
            return Err(Problem::new(
                "delete_acme_challenges",
                format!("unknown ACME challenge {token:?}"),
            ));
        }
    }
    for (wire, checked) in acme_challenges {
        next.acme.upsert(wire.clone(), checked.clone());
    }
    if let Some(a) = assertion {
        next.assertion = crate::assertion::Signer::compile(a.as_ref());
    }
    Ok((next, released, new_pools))
}

fn add_users(next: &mut Snapshot, pool: PoolIdx, by: i64) {
    let n = i64::from(next.pool_users.get(&pool).copied().unwrap_or(0)) + by;
    match u32::try_from(n) {
        Ok(n) if n > 0 => {
            next.pool_users.insert(pool, n);
        }
        _ => {
            next.pool_users.remove(&pool);
        }
    }
}

fn key_problem(id: &str, e: &KeyRefused) -> Problem {
    Problem::new(format!("api_keys.{id}"), format!("API key {id:?}: {e}"))
}

/// The apply rule for certificates in time, for a change: a certificate it adds or replaces
/// must be valid `now`, unless the table in force already serves the same one (same name and
/// fingerprint), which keeps serving after it expires (see `build::certificate_validity`).
pub fn certificate_validity(delta: &CheckedDelta, current: &CertIndex, now: u64) -> Vec<Problem> {
    let named = delta
        .certificates
        .iter()
        .map(|(wire, cert)| (wire.name.as_str(), cert));
    super::build::certificates_in_time(named, Some(current), now)
}
