//! The full apply at scale, as `PUT /v1/table` runs it (`Store::apply`: decode, validate,
//! version check, build, write + fsync + rename, swap), timed round by round for each wire
//! encoding, with the process's resident memory after each round and once the table's
//! model (for deltas) is made. Not criterion: a 1M-tenant table takes seconds a round.
//!
//!     cargo bench -p realmgate --bench full_apply -- --tenants 1000000 --rounds 3
//!
//! `--encoding json|binary|both` (default both); `--profile` runs one round of each and
//! nothing else (for `valgrind --tool=callgrind --toggle-collect=*Store*apply*`).

use bytes::Bytes;
use realmgate::snapshot::Store;
use realmgate_table::Table;
use std::time::{Duration, Instant};

mod support;
use support::arg;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident set size of this process, bytes (Linux).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn encode(enc: &str, t: &Table) -> Vec<u8> {
    match enc {
        "json" => t.to_json(),
        _ => realmgate_table::binary::encode(t),
    }
}

fn apply(
    store: &Store,
    enc: &str,
    raw: Bytes,
) -> Result<std::sync::Arc<realmgate::snapshot::Snapshot>, realmgate::snapshot::ApplyError> {
    match enc {
        "json" => store.apply(raw),
        _ => store.apply_binary(raw),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let profile = args.iter().any(|a| a == "--profile");
    let n: usize = arg(&args, "--tenants").unwrap_or(100_000);
    let rounds: usize = if profile {
        1
    } else {
        arg(&args, "--rounds").unwrap_or(3)
    };
    let encoding: String = arg(&args, "--encoding").unwrap_or_else(|| "both".into());
    let encodings: &[&str] = match encoding.as_str() {
        "json" => &["json"],
        "binary" => &["binary"],
        _ => &["json", "binary"],
    };
    let dir = std::env::temp_dir().join(format!("realmgate-full-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let metrics = std::sync::Arc::new(realmgate::metrics::Metrics::new(1000).expect("metrics"));
    let store = Store::new(dir.clone(), metrics);
    let mut version = 0;
    for enc in encodings {
        for round in 0..rounds {
            // Made afresh each round and dropped before the apply: what stays resident is
            // the store's (and the document, which a gateway holds too).
            let mut t = Table::bench(n);
            version += 1;
            t.version = version;
            let raw = Bytes::from(encode(enc, &t));
            drop(t);
            let len = raw.len();
            let before = rss();
            let started = Instant::now();
            let snap = apply(&store, enc, raw).expect("applies");
            let took = started.elapsed();
            let after_apply = rss();
            let modelled = Instant::now();
            let _ = store.state_digest();
            let model_took = modelled.elapsed();
            drop(snap);
            // The previous snapshot is freed on another thread: let it go first.
            std::thread::sleep(Duration::from_millis(if n >= 500_000 { 500 } else { 50 }));
            println!(
                "{enc:6} round {round}: {:>6.1} MiB document, apply {:>8.1} ms; model ready {:>7.1} ms later; RSS {:>6.0} MiB after the apply (+{:.0}), {:>6.0} MiB with the model",
                mib(len as u64),
                took.as_secs_f64() * 1e3,
                model_took.as_secs_f64() * 1e3,
                mib(after_apply),
                mib(after_apply.saturating_sub(before)),
                mib(rss()),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
