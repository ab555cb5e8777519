//! What the gateway's hand-rolled benches (no criterion: a sequence, not a sample) share:
//! reading their flags, and the API keys of their bench tables.

#![allow(dead_code)] // each bench uses its own part

use realmgate_table::ApiKey;

/// The value after flag `name`, parsed; `None` when absent or unparsable.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

/// Bench key `k`: id `k0000123`, on tenant `t{k}` (`Tenant::bench(k)`), every namespace.
pub fn key(k: usize) -> ApiKey {
    ApiKey::test(&format!("k{k:07}"), Some(&format!("t{k}")), &["*"])
}

/// A stream of deltas as the delta benches take it from their flags: `--tenants` (100 000),
/// `--changes` a delta (130, about what realmctl sends at its default debounce), `--deltas`
/// (`default_deltas`; 10 with `--profile`, which runs them for callgrind and nothing else).
pub struct Stream {
    pub tenants: usize,
    pub changes: usize,
    pub deltas: usize,
}

impl Stream {
    pub fn from_args(default_deltas: usize) -> Stream {
        let args: Vec<String> = std::env::args().collect();
        let profile = args.iter().any(|a| a == "--profile");
        Stream {
            tenants: arg(&args, "--tenants").unwrap_or(100_000),
            changes: arg(&args, "--changes").unwrap_or(130),
            deltas: if profile {
                10
            } else {
                arg(&args, "--deltas").unwrap_or(default_deltas)
            },
        }
    }
}

/// Median, p90 and minimum of `took` (microseconds), for the report line.
pub fn spread(took: &mut [f64]) -> (f64, f64, f64) {
    took.sort_by(f64::total_cmp);
    let at = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
    (at(0.5), at(0.9), took[0])
}
