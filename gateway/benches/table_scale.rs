//! Scale benches for incremental tables (issue 15): host lookup at 1k, 100k and 1M tenants;
//! a one-tenant `build_delta` at 100k and 1M; a 100k-tenant full table's parse (serde and
//! validation) and build apart. Prints the snapshot's resident memory per tenant at 1M.
//!
//!     cargo bench -p realmgate --bench table_scale

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use realmgate::snapshot::build::{build, Caches};
use realmgate::snapshot::delta::build_delta;
use realmgate::snapshot::{Snapshot, Store};
use realmgate_table::delta::CheckedDelta;
use realmgate_table::host::{normalise_authority, HostBuf};
use realmgate_table::{CheckedTable, Table, Tenant};
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The tenant shape of `benches/table.rs`: an exact host, a wildcard, two routes, four pools.
fn tenant(t: usize, host: &str) -> Tenant {
    Tenant::test(&format!("t{t}"))
        .host(host)
        .host(&format!("*.t{t}.apps.test"))
        .route("/", &format!("pool-{}", t % 4), "public")
        .route("/api/", &format!("pool-{}", (t + 1) % 4), "public")
}

fn table(n: usize) -> Table {
    let mut table = Table::test();
    for p in 0..4 {
        table = table.upstream(&format!("pool-{p}"), &[&format!("127.0.0.1:{}", 9000 + p)]);
    }
    table.tenants = (0..n)
        .map(|t| tenant(t, &format!("t{t}.bench.test")))
        .collect();
    table
}

fn checked(table: Table) -> CheckedTable {
    let n = realmgate_table::validate(&table).expect("valid table");
    CheckedTable {
        table,
        hosts: n.hosts,
        key_expiry: n.key_expiry,
        certificates: n.certificates,
        acme_challenges: n.acme_challenges,
    }
}

fn snapshot(n: usize, deps: &Caches) -> Snapshot {
    build(&checked(table(n)), None, &deps.deps()).expect("builds")
}

/// Resident set size of this process, bytes (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn host_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale_host_lookup");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    for n in [1_000, 100_000, 1_000_000] {
        let deps = Caches::new(1000);
        let before = rss();
        let snap = snapshot(n, &deps);
        if let (Some(a), Some(b)) = (before, rss()) {
            eprintln!(
                "{n} tenants: snapshot RSS ~{} MB, ~{} bytes per tenant",
                b.saturating_sub(a) >> 20,
                b.saturating_sub(a) / n as u64
            );
        }
        let exact = format!("T{}.Bench.Test:8080", n / 2);
        let wildcard = format!("x.y.t{}.apps.test", n / 3);
        for (name, host) in [
            ("exact", exact.as_str()),
            ("wildcard", wildcard.as_str()),
            ("unknown", "nope.bench.test"),
        ] {
            group.bench_with_input(BenchmarkId::new(name, n), &host, |b, host| {
                b.iter(|| {
                    let mut buf = HostBuf::default();
                    let h =
                        normalise_authority(black_box(host.as_bytes()), &mut buf).expect("host");
                    black_box(snap.hosts.lookup(h))
                })
            });
        }
    }
    group.finish();
}

/// One tenant replaced (a host moved), on a snapshot of `n` tenants.
fn one_tenant_delta(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale_delta_one_tenant");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    for n in [100_000, 1_000_000] {
        let deps = Caches::new(1000);
        let prev = snapshot(n, &deps);
        let changed = tenant(n / 2, "moved.bench.test");
        let delta = CheckedDelta {
            base: prev.version,
            version: prev.version + 1,
            state_digest: "state:bench".into(),
            upstreams: vec![],
            delete_upstreams: vec![],
            tenants: vec![(changed.clone(), realmgate_table::validate::hosts(&changed))],
            delete_tenants: vec![],
            api_keys: vec![],
            delete_api_keys: vec![],
            certificates: vec![],
            delete_certificates: vec![],
            acme_challenges: vec![],
            delete_acme_challenges: vec![],
            assertion: None,
        };
        group.bench_function(BenchmarkId::new("build_delta", n), |b| {
            b.iter_batched(
                || delta.clone(),
                |d| build_delta(&prev, &d, &deps.deps()).expect("applies"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A 100k-tenant full table: JSON parse (serde and the contract's checks) and the build.
fn full_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale_full_table");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let n = 100_000;
    let raw = table(n).to_json();
    group.bench_function(BenchmarkId::new("serde_only", n), |b| {
        b.iter(|| serde_json::from_slice::<Table>(black_box(&raw)).expect("valid"))
    });
    group.bench_function(BenchmarkId::new("parse_validate", n), |b| {
        b.iter(|| realmgate_table::parse(black_box(&raw)).expect("valid"))
    });
    let binary = realmgate_table::binary::encode(&table(n));
    group.bench_function(BenchmarkId::new("parse_binary", n), |b| {
        b.iter(|| realmgate_table::parse_binary(black_box(&binary)).expect("valid"))
    });
    let parsed = realmgate_table::parse(&raw).expect("valid");
    let deps = Caches::new(1000);
    group.bench_function(BenchmarkId::new("build", n), |b| {
        b.iter(|| build(black_box(&parsed), None, &deps.deps()).expect("builds"))
    });
    group.finish();
}

/// The whole full apply as `PUT /v1/table` runs it (`Store::apply`: parse, validate,
/// version check, build, write + fsync + rename of `table.json`, swap) at 100k tenants, each
/// iteration one version newer; as JSON and in the binary encoding. Then, with the model made, the store's RSS per tenant.
fn full_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale_full_apply");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let n = 100_000;
    let mut t = table(n);
    let dir = std::env::temp_dir().join(format!("realmgate-bench-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let metrics = std::sync::Arc::new(realmgate::metrics::Metrics::new(1000).expect("metrics"));
    let store = Store::new(dir.clone(), metrics);
    for binary in [false, true] {
        let name = if binary {
            "store_apply_binary"
        } else {
            "store_apply"
        };
        group.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter_batched(
                || {
                    // The previous table's model (made on another thread after its swap) is
                    // waited for outside the measurement: it is off the push's path.
                    let _ = store.state_digest();
                    t.version += 1;
                    Bytes::from(if binary {
                        realmgate_table::binary::encode(&t)
                    } else {
                        t.to_json()
                    })
                },
                |raw| {
                    if binary {
                        store.apply_binary(raw).expect("applies")
                    } else {
                        store.apply(raw).expect("applies")
                    }
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(
    benches,
    host_lookup,
    one_tenant_delta,
    full_table,
    full_apply
);
criterion_main!(benches);
