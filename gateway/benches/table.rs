//! Micro benches: host → tenant lookup, and a whole table parsed, validated, compiled,
//! persisted and swapped in, at 1k, 10k and 100k tenants.
//!
//!     cargo bench -p realmgate --bench table

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use realmgate::metrics::Metrics;
use realmgate::snapshot::Store;
use realmgate_table::host::{normalise_authority, HostBuf};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// A table of `n` tenants, each with an exact host and a wildcard, two routes, four pools.
/// The version is right-aligned in ten columns so benches can bump it in place.
fn table_json(n: usize, version: u64) -> Vec<u8> {
    let mut s = String::with_capacity(n * 200);
    let _ = write!(s, "{{\"version\": {version:>10}, \"upstreams\": {{");
    for p in 0..4 {
        let sep = if p == 0 { "" } else { "," };
        let _ = write!(
            s,
            "{sep}\"pool-{p}\": {{\"endpoints\": [\"127.0.0.1:{}\"]}}",
            9000 + p
        );
    }
    s.push_str("}, \"tenants\": [");
    for t in 0..n {
        let sep = if t == 0 { "" } else { "," };
        let _ = write!(
            s,
            "{sep}{{\"id\": \"t{t}\", \"hosts\": [\"t{t}.bench.test\", \"*.t{t}.apps.test\"], \
             \"routes\": [{{\"prefix\": \"/\", \"upstream\": \"pool-{}\", \"auth\": \"public\"}}, \
             {{\"prefix\": \"/api/\", \"upstream\": \"pool-{}\", \"auth\": \"public\"}}]}}",
            t % 4,
            (t + 1) % 4
        );
    }
    s.push_str("]}");
    s.into_bytes()
}

fn set_version(raw: &mut [u8], version: u64) {
    let digits = format!("{version:>10}");
    let at = raw
        .windows(11)
        .position(|w| w == b"\"version\": ")
        .map(|p| p + 11)
        .expect("version field");
    raw[at..at + 10].copy_from_slice(digits.as_bytes());
}

fn state_dir(tag: &str) -> std::path::PathBuf {
    // tmpfs when there is one: the bench measures our work, not the disk.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("realmgate-bench-{tag}-{}", std::process::id()))
}

fn store(tag: &str) -> Store {
    let metrics = Arc::new(Metrics::new(1000).expect("metrics"));
    Store::new(state_dir(tag), metrics)
}

fn host_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("host_lookup");
    for n in SIZES {
        let s = store(&format!("lookup-{n}"));
        s.apply(Bytes::from(table_json(n, 1))).expect("valid table");
        let snap = s.current().expect("snapshot");
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
        let _ = std::fs::remove_dir_all(state_dir(&format!("lookup-{n}")));
    }
    group.finish();
}

fn validate_and_swap(c: &mut Criterion) {
    let mut group = c.benchmark_group("table_apply");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for n in SIZES {
        let tag = format!("apply-{n}");
        let s = store(&tag);
        let mut raw = table_json(n, 1);
        s.apply(Bytes::from(raw.clone())).expect("valid table");
        let mut version = 1;
        group.bench_function(
            BenchmarkId::new("parse_validate_compile_persist_swap", n),
            |b| {
                b.iter_batched(
                    || {
                        version += 1;
                        set_version(&mut raw, version);
                        Bytes::from(raw.clone())
                    },
                    |bytes| s.apply(bytes).expect("applied"),
                    BatchSize::PerIteration,
                )
            },
        );
        let _ = std::fs::remove_dir_all(state_dir(&tag));
    }
    group.finish();
}

/// The contract crate's share: parse + validate only, no compile, persist or swap.
fn parse_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("table_parse_validate");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for n in SIZES {
        let raw = table_json(n, 1);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| realmgate_table::parse(black_box(&raw)).expect("valid"))
        });
        let parsed: realmgate_table::Table = serde_json::from_slice(&raw).expect("valid");
        group.bench_function(BenchmarkId::new("validate_only", n), |b| {
            b.iter(|| realmgate_table::validate(black_box(&parsed)).expect("valid"))
        });
        group.bench_function(BenchmarkId::new("serde_only", n), |b| {
            b.iter(|| {
                serde_json::from_slice::<realmgate_table::Table>(black_box(&raw)).expect("valid")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, host_lookup, parse_only, validate_and_swap);
criterion_main!(benches);
