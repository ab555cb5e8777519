//! The whole delta apply as `PATCH /v1/table` runs it (`Store::apply_delta`: parse, check
//! against the model, the model's copy and apply, the snapshot's build, the state digest, the
//! journal append with its fsync), for a stream of realmctl-sized deltas on a store holding
//! a large table: what gateway 1 of `ctl_scale --rate` spends per delta, on the core its
//! proxy workers share. `delta_apply` times the snapshot's build alone.
//!
//!     cargo bench -p realmgate --bench delta_store -- --tenants 100000 --changes 130 --deltas 100
//!
//! Reports the wall time per delta (median, p90) and the process's CPU per delta, background
//! threads included (freeing replaced snapshots and models, compaction). For instruction
//! counts by stage, `--profile` applies 10 deltas and nothing else:
//! `valgrind --tool=callgrind --toggle-collect='delta_store::step' target/release/deps/delta_store-* --profile`.

use bytes::Bytes;
use realmgate::snapshot::store::Store;
use realmgate_table::{Delta, Model, Table, Tenant};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::key;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// This process's CPU time (user + system, every thread), from `/proc/self/stat` in clock
/// ticks (10 ms here): the run is long enough that a tick is a small part of it.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Delta `d` of `changes` on `model` (which it then applies to keep up): a third new
/// tenants, a third suspensions, a third key revocations, as realmctl's JSON.
fn delta(model: &mut Model, n: usize, d: usize, changes: usize) -> Bytes {
    let per = changes / 3;
    let mut tenants: Vec<Tenant> = (0..changes - 2 * per)
        .map(|i| Tenant::bench(n + d * changes + i))
        .collect();
    tenants.extend((0..per).map(|i| Tenant::bench(d * per + i).suspended()));
    let mut wire = Delta {
        base: model.version(),
        version: model.version() + 1,
        tenants,
        delete_api_keys: (0..per).map(|i| key(d * per + i).id).collect(),
        ..Delta::default()
    };
    let (checked, digest) = model.preview(&wire).expect("a valid delta");
    wire.state_digest = digest;
    model.apply(&checked);
    Bytes::from(serde_json::to_vec(&wire).expect("encodes"))
}

/// One delta through the store.
#[inline(never)]
fn step(store: &Arc<Store>, raw: Bytes) {
    store.apply_delta(raw).expect("applies");
}

fn main() {
    let run = support::Stream::from_args(100);
    let (n, changes, count) = (run.tenants, run.changes, run.deltas);
    let dir = std::env::temp_dir().join(format!("realmgate-delta-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let metrics = Arc::new(realmgate::metrics::Metrics::new(1000).expect("metrics"));
    let store = Arc::new(Store::new(dir.clone(), metrics));

    let mut table = Table::bench(n);
    table.api_keys = (0..(count * changes / 3).min(n)).map(key).collect();
    let raw = Bytes::from(serde_json::to_vec(&table).expect("encodes"));
    let checked = realmgate_table::parse(&raw).expect("a valid table");
    let mut model = Model::from_checked(&checked);
    drop((table, checked));
    store.apply(raw).expect("the full table applies");
    // The store makes its model after the swap, on another thread: wait for it.
    assert_eq!(store.state_digest(), Some(model.state_digest()));
    let deltas: Vec<Bytes> = (0..count)
        .map(|d| delta(&mut model, n, d, changes))
        .collect();
    let bytes = deltas.iter().map(Bytes::len).sum::<usize>() / count.max(1);

    let mut took = Vec::with_capacity(count);
    let cpu0 = cpu();
    for raw in deltas {
        let started = Instant::now();
        step(&store, raw);
        took.push(started.elapsed().as_secs_f64() * 1e6);
    }
    // Let the background threads free what the last deltas replaced before the CPU is read.
    std::thread::sleep(Duration::from_millis(200));
    let cpu_per = (cpu() - cpu0).as_secs_f64() * 1e6 / count as f64;
    assert_eq!(store.state_digest(), Some(model.state_digest()));
    let (median, p90, min) = support::spread(&mut took);
    println!(
        "{n} tenants, {count} deltas of {changes} changes ({bytes} bytes of JSON each): apply_delta median {median:.0} µs, p90 {p90:.0} µs, min {min:.0} µs; CPU {cpu_per:.0} µs a delta (every thread)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
