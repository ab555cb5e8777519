//! Micro benches of a full table at 100k tenants, in the table crate alone: serde only,
//! `parse` (serde, unknown fields, repeated names and every check), `parse_binary` (the same
//! table in the binary encoding, the same checks), and the model made from it. Prints the model's resident memory per tenant at 100k and 1M.
//!
//!     cargo bench -p realmgate-table --bench full

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use realmgate_table::{Model, Table};
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident set size in bytes (Linux), 0 elsewhere.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn full(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_table");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    let raw = Table::bench(100_000).to_json();
    group.bench_function("serde_only/100000", |b| {
        b.iter(|| serde_json::from_slice::<Table>(black_box(&raw)).expect("valid"))
    });
    group.bench_function("parse/100000", |b| {
        b.iter(|| realmgate_table::parse(black_box(&raw)).expect("valid"))
    });
    let binary = realmgate_table::binary::encode(&Table::bench(100_000));
    println!(
        "100000 tenants: JSON {} bytes, binary {} bytes",
        raw.len(),
        binary.len()
    );
    group.bench_function("parse_binary/100000", |b| {
        b.iter(|| realmgate_table::parse_binary(black_box(&binary)).expect("valid"))
    });
    let checked = realmgate_table::parse(&raw).expect("valid");
    group.bench_function("model_from_checked/100000", |b| {
        b.iter(|| black_box(Model::from_checked(&checked).tenants_len()))
    });
    group.finish();
    drop(checked);
    for n in [100_000, 1_000_000] {
        let raw = Table::bench(n).to_json();
        let checked = realmgate_table::parse(&raw).expect("valid");
        drop(raw);
        let before = rss();
        let m = Model::from_checked(&checked);
        let grown = rss().saturating_sub(before);
        println!(
            "model of {n} tenants: {:.1} MiB resident, {} bytes per tenant",
            grown as f64 / (1024.0 * 1024.0),
            grown / n
        );
        black_box(m.tenants_len());
    }
}

criterion_group!(benches, full);
criterion_main!(benches);
