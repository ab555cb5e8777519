//! A stream of realmctl-sized deltas applied one after another to a large snapshot, as
//! gateway 1 of `ctl_scale --rate` sees them: each delta creates tenants, suspends tenants
//! and revokes API keys (~130 changes at the default push debounce), and each next snapshot
//! replaces the one before, which is then freed (as the `table-drop` thread does). Times each
//! `build_delta` + drop of the replaced snapshot. Not criterion: the deltas are a sequence.
//!
//!     cargo bench -p realmgate --bench delta_apply -- --tenants 100000 --changes 130 --deltas 40
//!
//! For instruction counts, `--profile` applies 10 deltas and nothing else:
//! `valgrind --tool=callgrind --toggle-collect='delta_apply::step' target/release/deps/delta_apply-* --profile`.

use realmgate::snapshot::build::{build, Caches};
use realmgate::snapshot::delta::build_delta;
use realmgate::snapshot::Snapshot;
use realmgate_table::delta::CheckedDelta;
use realmgate_table::{CheckedTable, Table, Tenant};
use std::time::Instant;

mod support;
use support::key;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `n` bench tenants (an exact host and a wildcard each), the first `keys` with a key.
fn checked(n: usize, keys: usize) -> CheckedTable {
    let mut table = Table::bench(n);
    table.api_keys = (0..keys).map(key).collect();
    let v = realmgate_table::validate(&table).expect("valid table");
    CheckedTable {
        table,
        hosts: v.hosts,
        key_expiry: v.key_expiry,
        certificates: v.certificates,
        acme_challenges: v.acme_challenges,
    }
}

/// Delta `d` of `changes` changes on top of `version`: a third new tenants, a third
/// suspensions of existing ones, a third key revocations (each tenant and key once).
fn delta(n: usize, d: usize, changes: usize, version: u64) -> CheckedDelta {
    let per = changes / 3;
    let with_hosts = |t: Tenant| {
        let hosts = realmgate_table::validate::hosts(&t);
        (t, hosts)
    };
    let mut tenants: Vec<_> = (0..changes - 2 * per)
        .map(|i| with_hosts(Tenant::bench(n + d * changes + i)))
        .collect();
    tenants.extend((0..per).map(|i| with_hosts(Tenant::bench(d * per + i).suspended())));
    CheckedDelta {
        base: version,
        version: version + 1,
        state_digest: format!("state:{d}"),
        upstreams: vec![],
        delete_upstreams: vec![],
        tenants,
        delete_tenants: vec![],
        api_keys: vec![],
        delete_api_keys: (0..per).map(|i| key(d * per + i).id).collect(),
        certificates: vec![],
        delete_certificates: vec![],
        acme_challenges: vec![],
        delete_acme_challenges: vec![],
        assertion: None,
    }
}

/// One delta applied and the snapshot it replaces freed.
#[inline(never)]
fn step(prev: Snapshot, d: CheckedDelta, deps: &Caches) -> Snapshot {
    let next = build_delta(&prev, &d, &deps.deps()).expect("applies");
    drop(prev);
    next
}

fn main() {
    let run = support::Stream::from_args(40);
    let (n, changes, count) = (run.tenants, run.changes, run.deltas);
    let keys = (count * changes / 3).min(n);
    let deps = Caches::new(1000);
    let mut snap = build(&checked(n, keys), None, &deps.deps()).expect("builds");
    let deltas: Vec<CheckedDelta> = (0..count)
        .map(|d| delta(n, d, changes, snap.version + d as u64))
        .collect();
    let mut took = Vec::with_capacity(count);
    for d in deltas {
        let started = Instant::now();
        snap = step(snap, d, &deps);
        took.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let (median, p90, min) = support::spread(&mut took);
    println!(
        "{n} tenants, {count} deltas of {changes} changes: build + drop median {median:.0} µs, p90 {p90:.0} µs, min {min:.0} µs"
    );
}
