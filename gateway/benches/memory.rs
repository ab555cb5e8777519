//! Where a large table's memory goes, in bytes per tenant: the snapshot (the tenants and what
//! they point to, the host index, the id map) and the table's model (for deltas), each
//! measured as the growth of the process's resident memory while it is made (the workspace
//! forbids `unsafe`, so there is no counting allocator). The parts of the model are told
//! apart by modelling the same table with one host a tenant instead of two, and with
//! one route instead of two. The checked table (what `parse_binary` keeps and allocates on
//! the way) is measured the same way, before the rest.
//!
//!     cargo bench -p realmgate --bench memory -- --tenants 1000000

use realmgate::persistent::ShardMap;
use realmgate::snapshot::build::{build, Caches};
use realmgate::snapshot::TenantRt;
use realmgate::tenant::{HostIndex, TenantIdx};
use realmgate_table::{CheckedTable, Model, Table, Tenant};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The scale benches' table (`Table::bench`), each tenant changed by `change`.
fn table(n: usize, change: impl Fn(&mut Tenant)) -> Table {
    let mut table = Table::bench(n);
    table.tenants.iter_mut().for_each(change);
    table
}

/// The checked table, with what was made on the way kept alive: memory freed before a
/// measurement would be reused by what is measured, and hide it. With it, the resident
/// memory its parse added per tenant (decoded tenants, host patterns and what the parse
/// allocated on the way).
fn checked(table: Table, keep: &mut Vec<Box<dyn std::any::Any>>) -> (CheckedTable, f64) {
    let n = table.tenants.len().max(1);
    let raw = realmgate_table::binary::encode(&table);
    let (checked, grew) = grown(n, || realmgate_table::parse_binary(&raw).expect("valid"));
    keep.push(Box::new(table));
    keep.push(Box::new(raw));
    (checked, grew)
}

fn rss() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `make()`, and the resident memory it added per tenant.
fn grown<T>(n: usize, make: impl FnOnce() -> T) -> (T, f64) {
    let before = rss();
    let made = make();
    (made, (rss() - before) as f64 / n as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--tenants")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(100_000);
    let deps = Caches::new(1000);
    let mut keep = Vec::new();
    let (full, parsed) = checked(table(n, |_| {}), &mut keep);
    let (one_host, _) = checked(table(n, |t| t.hosts.truncate(1)), &mut keep);
    let (one_route, _) = checked(table(n, |t| t.routes.truncate(1)), &mut keep);
    let start = rss();

    let (snap, snapshot) = grown(n, || build(&full, None, &deps.deps()).expect("builds"));
    let (hosts, host_index) = grown(n, || HostIndex::build(&full.hosts));
    let (ids, id_map) = grown(n, || {
        ShardMap::<Arc<str>, TenantIdx>::build(
            n,
            snap.tenants.indexed().map(|(i, t)| (Arc::clone(&t.id), i)),
        )
    });
    let (model, model_full) = grown(n, || Model::from_checked(&full));
    let (m2, model_one_host) = grown(n, || Model::from_checked(&one_host));
    let (m3, model_one_route) = grown(n, || Model::from_checked(&one_route));
    let mut route_sets: Vec<*const ()> = snap
        .tenants
        .iter()
        .map(|t| {
            let routes: &realmgate::route::Routes = &t.routes;
            std::ptr::from_ref(routes).cast::<()>()
        })
        .collect();
    route_sets.sort_unstable();
    route_sets.dedup();

    println!("{n} tenants (bytes per tenant, resident memory growth while each is made)");
    println!("  checked table (parse_binary)            {parsed:>7.0}");
    println!("  snapshot                                {snapshot:>7.0}");
    println!("    of which host index                   {host_index:>7.0}");
    println!("    of which id map (ids shared)          {id_map:>7.0}");
    println!(
        "    of which tenants and what they hold   {:>7.0}  (TenantRt {} B inline; {} distinct route sets)",
        snapshot - host_index - id_map,
        std::mem::size_of::<TenantRt>(),
        route_sets.len(),
    );
    println!("  model                                   {model_full:>7.0}");
    println!(
        "    of which packed tenants               {:>7.0}",
        model.packed_tenant_bytes() as f64 / n as f64
    );
    println!(
        "    of which one host (index and packed)  {:>7.0}",
        model_full - model_one_host
    );
    println!(
        "    of which one route (pool users, packed) {:>5.0}",
        model_full - model_one_route
    );
    println!(
        "  RSS: {} MiB at start (three tables, encoded and checked), {} MiB at the end",
        start >> 20,
        rss() >> 20
    );
    drop((hosts, ids, m2, m3, model, snap, keep));
}
