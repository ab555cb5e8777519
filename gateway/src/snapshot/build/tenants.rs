//! The tenants of a full table compiled on every core: each thread compiles a run of them
//! and sorts their ids and host patterns into the shards of the id map and host index, which
//! are then filled shard-run by shard-run ([`crate::persistent::Parallel`]). The result is
//! what one thread makes of the same table: the same tenants at the same indices, the same
//! maps, the same first problem.

use super::compile_tenant;
use super::TenantRt;
use crate::auth::RealmRt;
use crate::limits::Limiters;
use crate::metrics::TenantCounters;
use crate::persistent::{Parallel, Part, ShardMap};
use crate::route::PoolIdx;
use crate::route::RouteSets;
use crate::tenant::{Depths, HostIndex, TenantIdx};
use realmgate_table::host::HostPattern;
use realmgate_table::{Problem, Tenant};
use smol_str::SmolStr;
use std::sync::Arc;

/// Fewer tenants than this are compiled on one thread: threads would cost more than they
/// save.
pub(super) const MIN_TENANTS: usize = 4096;

/// The compiled tenants, in table order, with what is indexed over them.
pub(super) struct Compiled {
    pub tenants: Vec<Arc<TenantRt>>,
    /// Tenants using each pool, by [`PoolIdx`].
    pub users: Vec<u32>,
    pub ids: ShardMap<SmolStr, TenantIdx>,
    pub hosts: HostIndex,
}

/// What every thread reads.
pub(super) struct Shared<'a> {
    pub tenants: &'a [Tenant],
    pub hosts: &'a [Vec<HostPattern>],
    pub pool_of: &'a (dyn Fn(&str) -> Option<PoolIdx> + Sync),
    pub pools: usize,
    pub limiters: &'a Limiters,
}

/// One thread's run of tenants, compiled, and its entries for the maps.
struct Run {
    tenants: Vec<Arc<TenantRt>>,
    users: Vec<u32>,
    ids: Part<SmolStr, TenantIdx>,
    exact: Part<SmolStr, TenantIdx>,
    wildcard: Part<SmolStr, TenantIdx>,
    /// Its wildcards by suffix depth (for the host index).
    depths: Depths,
}

/// The maps being built, shared by the runs.
struct Maps {
    ids: Parallel,
    exact: Parallel,
    wildcard: Parallel,
}

/// How many threads compile `n` tenants.
pub(super) fn threads_for(n: usize) -> usize {
    if n < MIN_TENANTS {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |t| t.get())
    }
}

/// Compile every tenant on `threads` threads (`labels` and `realms` per tenant, in table
/// order). The first problem in table order, if any.
pub(super) fn compile(
    shared: &Shared<'_>,
    labels: Vec<Arc<TenantCounters>>,
    realms: Vec<Option<Arc<RealmRt>>>,
    threads: usize,
) -> Result<Compiled, Problem> {
    let n = shared.tenants.len();
    let threads = threads.clamp(1, n.max(1));
    let per = n.div_ceil(threads).max(1);
    // Each run's exact names and wildcards, counted on every core (a pass over every
    // tenant's patterns): the maps are sized by their sums, each run's parts by its own.
    let counts: Vec<(usize, usize)> = if threads > 1 {
        std::thread::scope(|scope| {
            let mut chunks = shared.hosts.chunks(per);
            let first = chunks.next().map_or((0, 0), kinds);
            let handles: Vec<_> = chunks.map(|c| scope.spawn(move || kinds(c))).collect();
            let mut out = vec![first];
            for h in handles {
                match h.join() {
                    Ok(c) => out.push(c),
                    Err(e) => std::panic::resume_unwind(e),
                }
            }
            out
        })
    } else {
        shared.hosts.chunks(per).map(kinds).collect()
    };
    let (exact, wild) = counts.iter().fold((0, 0), |(e, w), &(a, b)| (e + a, w + b));
    let maps = Maps {
        ids: Parallel::new(n, threads),
        exact: Parallel::new(exact, threads),
        wildcard: Parallel::new(wild, threads),
    };
    // Each run owns its tenants' counters and realms: cut them off from the end.
    let mut labels = labels;
    let mut realms = realms;
    let mut owned = Vec::with_capacity(threads);
    let mut start = n;
    while start > 0 {
        let from = (start - 1) / per * per;
        let kinds = counts.get(from / per).copied().unwrap_or_default();
        owned.push((from, kinds, labels.split_off(from), realms.split_off(from)));
        start = from;
    }
    owned.reverse();
    let runs: Vec<Result<Run, Problem>> = if owned.len() <= 1 {
        owned
            .into_iter()
            .map(|(from, k, l, r)| run(shared, &maps, from, k, l, r))
            .collect()
    } else {
        std::thread::scope(|scope| {
            let mut owned = owned.into_iter();
            let first = owned.next();
            let maps = &maps;
            let handles: Vec<_> = owned
                .map(|(from, k, l, r)| scope.spawn(move || run(shared, maps, from, k, l, r)))
                .collect();
            let mut out = Vec::with_capacity(threads);
            if let Some((from, k, l, r)) = first {
                out.push(run(shared, maps, from, k, l, r));
            }
            for h in handles {
                match h.join() {
                    Ok(r) => out.push(r),
                    Err(e) => std::panic::resume_unwind(e),
                }
            }
            out
        })
    };
    let mut tenants = Vec::with_capacity(n);
    let mut users = vec![0u32; shared.pools];
    let (mut ids, mut exact, mut wildcard) = (Vec::new(), Vec::new(), Vec::new());
    let mut depths = Depths::default();
    for r in runs {
        // Runs are in table order: the first error is the one tenant-by-tenant gives.
        let r = r?;
        tenants.extend(r.tenants);
        for (u, add) in users.iter_mut().zip(r.users) {
            *u += add;
        }
        ids.push(r.ids);
        exact.push(r.exact);
        wildcard.push(r.wildcard);
        depths.add(&r.depths);
    }
    let Maps {
        ids: id_map,
        exact: exact_map,
        wildcard: wildcard_map,
    } = maps;
    let hosts = || {
        let (exact, wildcard) = (exact_map.finish(exact), wildcard_map.finish(wildcard));
        HostIndex::from_maps(exact, wildcard, depths)
    };
    // The id map is filled beside the host index (each on every core again).
    let (ids, hosts) = if threads > 1 {
        std::thread::scope(|scope| {
            let ids = scope.spawn(|| id_map.finish(ids));
            let hosts = hosts();
            match ids.join() {
                Ok(ids) => (ids, hosts),
                Err(e) => std::panic::resume_unwind(e),
            }
        })
    } else {
        (id_map.finish(ids), hosts())
    };
    Ok(Compiled {
        tenants,
        users,
        ids,
        hosts,
    })
}

/// Exact names and wildcards among `hosts`' patterns.
fn kinds(hosts: &[Vec<HostPattern>]) -> (usize, usize) {
    let wild = hosts
        .iter()
        .flatten()
        .filter(|p| matches!(p, HostPattern::Wildcard(_)))
        .count();
    (hosts.iter().map(Vec::len).sum::<usize>() - wild, wild)
}

/// Compile the tenants from index `from` on, one per label, on this thread (`(exact, wild)`:
/// their patterns of each kind, [`kinds`]).
fn run(
    shared: &Shared<'_>,
    maps: &Maps,
    from: usize,
    (exact, wild): (usize, usize),
    labels: Vec<Arc<TenantCounters>>,
    realms: Vec<Option<Arc<RealmRt>>>,
) -> Result<Run, Problem> {
    let count = labels.len();
    let tenants = &shared.tenants[from..from + count];
    let hosts = &shared.hosts[from..from + count];
    let mut out = Run {
        tenants: Vec::with_capacity(count),
        users: vec![0; shared.pools],
        ids: maps.ids.part(count),
        exact: maps.exact.part(exact),
        wildcard: maps.wildcard.part(wild),
        depths: Depths::default(),
    };
    let parts = tenants.iter().zip(hosts).zip(labels).zip(realms);
    // Equal route sets are shared within a run (one set per run: runs compile in parallel).
    let mut sets = RouteSets::default();
    for (i, (((t, hosts), counters), realm)) in parts.enumerate() {
        let idx = (from + i) as TenantIdx;
        let rt = compile_tenant(
            t,
            hosts,
            shared.pool_of,
            counters,
            realm,
            shared.limiters,
            &mut sets,
        )?;
        for &p in rt.pools.iter() {
            if let Some(u) = out.users.get_mut(p as usize) {
                *u += 1;
            }
        }
        for p in hosts {
            match p {
                HostPattern::Exact(h) => out.exact.push(SmolStr::new(h.as_str()), idx),
                HostPattern::Wildcard(s) => {
                    out.depths.count(s);
                    out.wildcard.push(SmolStr::new(s.as_str()), idx);
                }
            }
        }
        out.ids.push(SmolStr::new(&*rt.id), idx);
        out.tenants.push(Arc::new(rt));
    }
    Ok(out)
}
