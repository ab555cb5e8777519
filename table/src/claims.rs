//! The rules across a large table's tenants — no tenant id, host pattern or realm issuer
//! claimed by two tenants — checked on every core for the sharded parse ([`crate::shard`]):
//! each thread hashes the claims of its run of tenants and sorts them by the thread that owns
//! their hash range, then each thread looks for a repeat in its own range. It only says
//! whether the rules hold (and which tenant ids exist, for the API keys' check): on a repeat
//! the caller's one-pass validation reports it, like every other problem.

use crate::host::HostPattern;
use crate::wire::Tenant;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use std::hash::Hash;

/// What a tenant claims; two tenants may not claim the same.
#[derive(PartialEq, Eq, Hash)]
enum Key<'a> {
    Id(&'a str),
    Host(&'a HostPattern),
    Issuer(&'a str),
}

/// [`Claim::slot`] of a tenant's id and of its realm's issuer; a host's is its index.
const ID: u32 = u32::MAX;
const ISSUER: u32 = u32::MAX - 1;

/// Tenant `t`'s id, issuer or host `slot`.
#[derive(Clone, Copy)]
struct Claim {
    t: u32,
    slot: u32,
}

fn key<'a>(tenants: &'a [Tenant], hosts: &'a [Vec<HostPattern>], c: Claim) -> Key<'a> {
    let tenant = &tenants[c.t as usize];
    match c.slot {
        ID => Key::Id(&tenant.id),
        // Only tenants with a realm claim an issuer.
        ISSUER => Key::Issuer(tenant.realm.as_ref().map_or("", |r| r.issuer.as_str())),
        h => Key::Host(&hosts[c.t as usize][h as usize]),
    }
}

/// The claims of a table whose tenants claim nothing twice, by hash range: what
/// [`Claims::has_tenant`] reads.
pub(crate) struct Claims {
    hasher: ahash::RandomState,
    ranges: Vec<HashTable<Claim>>,
}

/// The range (thread) of a hash.
fn range_of(h: u64, ranges: usize) -> usize {
    ((h >> 32) as usize) % ranges
}

impl Claims {
    /// Whether a tenant of `tenants` (the table these claims were made of) has this id.
    pub(crate) fn has_tenant(&self, tenants: &[Tenant], id: &str) -> bool {
        let h = self.hasher.hash_one(Key::Id(id));
        self.ranges[range_of(h, self.ranges.len())]
            .find(h, |c| c.slot == ID && tenants[c.t as usize].id == id)
            .is_some()
    }
}

/// One run of tenants' claims, hashed and sorted by the range (thread) that checks them: made
/// tenant by tenant ([`Sort::tenant`]) while each is decoded and its data is still in cache,
/// then handed to [`unique_sorted`].
pub(crate) struct Sort {
    hasher: ahash::RandomState,
    by_range: Vec<Vec<(u64, Claim)>>,
}

impl Sort {
    /// For about `tenants` tenants, checked on `threads` threads, hashing with `hasher` (the
    /// same for every run of a table).
    pub(crate) fn new(hasher: &ahash::RandomState, threads: usize, tenants: usize) -> Sort {
        // Two hosts, an id and rarely an issuer a tenant, as a rule.
        let claims = 3 * tenants;
        Sort {
            hasher: hasher.clone(),
            by_range: (0..threads.max(1))
                .map(|_| Vec::with_capacity(claims / threads.max(1) + claims / 16))
                .collect(),
        }
    }

    /// Tenant `t`'s claims: its host patterns (`hosts`, its own), its id and its realm's issuer.
    pub(crate) fn tenant(&mut self, t: usize, tenant: &Tenant, hosts: &[HostPattern]) {
        let ranges = self.by_range.len();
        let t = t as u32;
        let mut push = |slot: u32, k: Key<'_>| {
            let h = self.hasher.hash_one(k);
            self.by_range[range_of(h, ranges)].push((h, Claim { t, slot }));
        };
        for (slot, host) in hosts.iter().enumerate() {
            push(slot as u32, Key::Host(host));
        }
        push(ID, Key::Id(&tenant.id));
        if let Some(realm) = &tenant.realm {
            push(ISSUER, Key::Issuer(realm.issuer.as_str()));
        }
    }
}

/// `Some` if no id, host pattern or issuer is claimed by two tenants (`hosts[t]`: tenant
/// `t`'s patterns, no pattern twice in one tenant), checked on `threads` threads.
#[cfg(test)]
pub(crate) fn unique(
    tenants: &[Tenant],
    hosts: &[Vec<HostPattern>],
    threads: usize,
) -> Option<Claims> {
    let threads = threads.clamp(1, tenants.len().max(1));
    let hasher = ahash::RandomState::new();
    let per = tenants.len().div_ceil(threads).max(1);
    let sorts = (0..tenants.len())
        .step_by(per)
        .map(|from| {
            let count = per.min(tenants.len() - from);
            let mut sort = Sort::new(&hasher, threads, count);
            for t in from..from + count {
                sort.tenant(t, &tenants[t], &hosts[t]);
            }
            sort
        })
        .collect();
    unique_sorted(tenants, hosts, &hasher, sorts)
}

/// [`unique`] of claims already sorted: `sorts` made by [`Sort::tenant`] of every tenant,
/// each with `hasher` and the same number of ranges; each range is checked on a thread of
/// its own.
pub(crate) fn unique_sorted(
    tenants: &[Tenant],
    hosts: &[Vec<HostPattern>],
    hasher: &ahash::RandomState,
    sorts: Vec<Sort>,
) -> Option<Claims> {
    let threads = sorts.first().map_or(1, |s| s.by_range.len());
    if sorts.iter().any(|s| s.by_range.len() != threads) {
        return None;
    }
    let sorted: Vec<Vec<Vec<(u64, Claim)>>> = sorts.into_iter().map(|s| s.by_range).collect();
    let check = |r: usize, sorted: &[Vec<Vec<(u64, Claim)>>]| -> Option<HashTable<Claim>> {
        let len = sorted.iter().map(|s| s[r].len()).sum();
        let mut table: HashTable<Claim> = HashTable::with_capacity(len);
        for &(h, c) in sorted.iter().flat_map(|s| &s[r]) {
            let k = key(tenants, hosts, c);
            let entry = table.entry(
                h,
                |o| key(tenants, hosts, *o) == k,
                |o| hasher.hash_one(key(tenants, hosts, *o)),
            );
            match entry {
                // A tenant's own repeats are its own check's (and never reach here).
                Entry::Occupied(o) if o.get().t == c.t => {}
                Entry::Occupied(_) => return None,
                Entry::Vacant(v) => {
                    v.insert(c);
                }
            }
        }
        Some(table)
    };
    let ranges: Vec<Option<HashTable<Claim>>> = if threads == 1 {
        vec![check(0, &sorted)]
    } else {
        std::thread::scope(|scope| {
            let (sorted, check) = (&sorted, &check);
            let handles: Vec<_> = (1..threads)
                .map(|r| scope.spawn(move || check(r, sorted)))
                .collect();
            // Range 0 on this thread.
            let first = check(0, sorted);
            std::iter::once(first)
                .chain(
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
                )
                .collect()
        })
    };
    Some(Claims {
        hasher: hasher.clone(),
        ranges: ranges.into_iter().collect::<Option<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> (Vec<Tenant>, Vec<Vec<HostPattern>>) {
        let tenants: Vec<Tenant> = (0..n).map(Tenant::bench).collect();
        let hosts = tenants.iter().map(crate::validate::hosts).collect();
        (tenants, hosts)
    }

    fn with_realm(mut t: Tenant, issuer: &str) -> Tenant {
        t.realm = Some(crate::wire::Realm {
            issuer: issuer.into(),
            jwks_uri: None,
            audiences: vec!["api".into()],
            client_id: None,
            client_secret: None,
        });
        t
    }

    #[test]
    fn distinct_claims_pass_and_name_every_tenant() {
        for threads in [1, 2, 3, 8] {
            let (mut tenants, hosts) = table(1000);
            tenants[3] = with_realm(tenants[3].clone(), "https://id.test/realms/a");
            tenants[9] = with_realm(tenants[9].clone(), "https://id.test/realms/b");
            let claims = unique(&tenants, &hosts, threads).expect("nothing claimed twice");
            assert!(tenants.iter().all(|t| claims.has_tenant(&tenants, &t.id)));
            assert!(!claims.has_tenant(&tenants, "t1000"));
            // A host is not an id.
            assert!(!claims.has_tenant(&tenants, "t1.bench.test"));
        }
        assert!(unique(&[], &[], 2).is_some());
    }

    #[test]
    fn an_id_host_or_issuer_claimed_twice_is_found() {
        let issuer = "https://id.test/realms/a";
        for threads in [1, 2, 3, 8] {
            let (tenants, hosts) = table(1000);
            let mut id = tenants.clone();
            id[999].id = "t0".into();
            assert!(unique(&id, &hosts, threads).is_none(), "id, {threads}");
            let mut host = hosts.clone();
            host[700][1] = host[2][1].clone();
            assert!(
                unique(&tenants, &host, threads).is_none(),
                "host, {threads}"
            );
            let mut realms = tenants.clone();
            realms[5] = with_realm(realms[5].clone(), issuer);
            realms[600] = with_realm(realms[600].clone(), issuer);
            assert!(
                unique(&realms, &hosts, threads).is_none(),
                "issuer, {threads}"
            );
            // An exact host and a wildcard over the same suffix are different claims, and
            // an id equal to another tenant's host is no clash.
            let mut kinds = hosts.clone();
            kinds[1][0] = HostPattern::Exact("t0.apps.test".into());
            kinds[2][0] = HostPattern::Exact("t0".into());
            assert!(
                unique(&tenants, &kinds, threads).is_some(),
                "kinds, {threads}"
            );
        }
    }
}
