//! Micro benches of incremental tables: a one-tenant delta checked and applied on a model of
//! 1k, 100k and 1M tenants, the delta between two models, and a model built from a full
//! table at 100k. Prints each model's resident memory (RSS growth while it was built).
//!
//!     cargo bench -p realmgate-table --bench delta

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use realmgate_table::{CheckedTable, Delta, Model, Table, Tenant};
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// Tenant `t`: an exact host and a wildcard, two routes over four pools (the shape of the
/// gateway's table bench).
fn tenant(t: usize, tag: &str) -> Tenant {
    Tenant::test(&format!("t{t}"))
        .host(&format!("t{t}.bench{tag}.test"))
        .host(&format!("*.t{t}.apps.test"))
        .route("/", &format!("pool-{}", t % 4), "public")
        .route("/api/", &format!("pool-{}", (t + 1) % 4), "public")
}

fn table(n: usize) -> Table {
    let mut t = Table::test();
    for p in 0..4 {
        t = t.upstream(&format!("pool-{p}"), &[&format!("127.0.0.1:{}", 9000 + p)]);
    }
    t.tenants = (0..n).map(|i| tenant(i, "")).collect();
    t
}

fn checked(table: Table) -> CheckedTable {
    let n = realmgate_table::validate(&table).expect("a valid table");
    CheckedTable {
        table,
        hosts: n.hosts,
        key_expiry: n.key_expiry,
        certificates: n.certificates,
        acme_challenges: n.acme_challenges,
    }
}

/// Resident set size in bytes (Linux), 0 elsewhere.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// A model of `n` tenants, and what building it added to the resident set.
fn model(n: usize) -> (Model, usize) {
    let ct = checked(table(n));
    let before = rss();
    let m = Model::from_checked(&ct);
    let grown = rss().saturating_sub(before);
    drop(ct);
    (m, grown)
}

/// One-tenant deltas on `m`: tenant `t` gets a new host (and is suspended), digest filled.
fn deltas(m: &Model, n: usize) -> Vec<Delta> {
    (0..64)
        .map(|k| {
            let t = (k * 7919) % n;
            let mut d = Delta {
                base: m.version(),
                version: m.version() + 1,
                tenants: vec![tenant(t, "-moved").suspended()],
                ..Delta::default()
            };
            d.state_digest = m.preview(&d).expect("a valid delta").1;
            d
        })
        .collect()
}

fn check_and_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("delta_check_apply_one_tenant");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let (m, grown) = model(n);
        println!(
            "model of {n} tenants: {:.1} MiB resident, {} bytes per tenant",
            grown as f64 / (1024.0 * 1024.0),
            grown / n
        );
        let ds = deltas(&m, n);
        let mut i = 0;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                // A clone shares everything: applying copies only the paths it changes,
                // as when a background writer still holds the previous model.
                let mut next = m.clone();
                let d = &ds[i % ds.len()];
                i += 1;
                let checked = next.check(d).expect("accepted");
                next.apply(&checked);
                black_box(next.version())
            });
        });
        // The delta realmctl would send: one model against the next.
        let mut next = m.clone();
        next.apply(&m.check(&ds[0]).expect("accepted"));
        group.bench_with_input(BenchmarkId::new("delta_to", n), &n, |b, _| {
            b.iter(|| black_box(m.delta_to(&next).tenants.len()));
        });
    }
    group.finish();
}

fn from_checked(c: &mut Criterion) {
    let mut group = c.benchmark_group("model_from_checked");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let ct = checked(table(100_000));
    group.bench_function("100000", |b| {
        b.iter(|| black_box(Model::from_checked(&ct).tenants_len()));
    });
    group.finish();
}

criterion_group!(benches, check_and_apply, from_checked);
criterion_main!(benches);
