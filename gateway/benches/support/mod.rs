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
