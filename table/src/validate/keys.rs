//! API keys in the table: ids, digests, tenants, namespaces, expiry and limits.

use super::{
    check_rate_limit, is_name, is_namespace, map_with_capacity, rebase, FastMap, Problem,
    MAX_API_KEYS, MAX_KEY_NAMESPACES,
};
use crate::wire::{ApiKey, Table};
use std::collections::HashSet;

/// `sha256:` and 64 lower-case hex digits.
pub fn is_key_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time (`2027-01-01T00:00:00Z`).
pub fn parse_expiry(text: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(text).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Every key well-formed, ids and digests unique, tenants known. Returns each key's expiry.
pub(super) fn check_api_keys(
    table: &Table,
    has_tenant: &dyn Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
) -> Vec<Option<u64>> {
    if table.api_keys.len() > MAX_API_KEYS {
        problems.push(Problem::new(
            "api_keys",
            format!("more than {MAX_API_KEYS} keys"),
        ));
    }
    let mut ids: FastMap<&str, usize> = map_with_capacity(table.api_keys.len());
    let mut digests: FastMap<&str, usize> = map_with_capacity(table.api_keys.len());
    let mut expiry = Vec::with_capacity(table.api_keys.len());
    for (k, key) in table.api_keys.iter().enumerate() {
        let start = problems.len();
        if check_key_id(key, problems) {
            if let Some(first) = ids.insert(&key.id, k) {
                problems.push(Problem::new(
                    "id",
                    format!("key id {:?} already used by api_keys[{first}]", key.id),
                ));
            }
        }
        if check_key_digest(key, problems) {
            if let Some(first) = digests.insert(&key.digest, k) {
                problems.push(Problem::new(
                    "digest",
                    format!("digest already used by api_keys[{first}]"),
                ));
            }
        }
        if let Some(tenant) = &key.tenant {
            if !has_tenant(tenant) {
                problems.push(Problem::new("tenant", format!("unknown tenant {tenant:?}")));
            }
        }
        expiry.push(check_key_rest(key, problems));
        rebase(&mut problems[start..], || format!("api_keys[{k}]"));
    }
    expiry
}

/// Whether the key's id is well-formed; a problem if not.
pub(super) fn check_key_id(key: &ApiKey, problems: &mut Vec<Problem>) -> bool {
    let ok = is_name(&key.id);
    if !ok {
        problems.push(Problem::new(
            "id",
            format!("{:?} is not a key id (1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)", key.id),
        ));
    }
    ok
}

/// Whether the key's digest is well-formed; a problem if not.
pub(super) fn check_key_digest(key: &ApiKey, problems: &mut Vec<Problem>) -> bool {
    let ok = is_key_digest(&key.digest);
    if !ok {
        problems.push(Problem::new(
            "digest",
            "must be sha256: and 64 lower-case hex digits",
        ));
    }
    ok
}

/// The key's namespaces, expiry and limit; returns the expiry.
pub(super) fn check_key_rest(key: &ApiKey, problems: &mut Vec<Problem>) -> Option<u64> {
    check_key_namespaces(key, problems);
    let expiry = key.expires_at.as_deref().and_then(|text| {
        let parsed = parse_expiry(text);
        if parsed.is_none() {
            problems.push(Problem::new(
                "expires_at",
                format!("{text:?} is not an RFC 3339 UTC time like 2027-01-01T00:00:00Z"),
            ));
        }
        parsed
    });
    if let Some(limit) = &key.rate_limit {
        check_rate_limit("rate_limit", limit, problems);
    }
    expiry
}

pub(super) fn check_key_namespaces(key: &ApiKey, problems: &mut Vec<Problem>) {
    let ns = &key.namespaces;
    if ns.is_empty() {
        problems.push(Problem::new(
            "namespaces",
            "needs at least one namespace (or \"*\")",
        ));
    }
    if ns.len() > MAX_KEY_NAMESPACES {
        problems.push(Problem::new(
            "namespaces",
            format!("more than {MAX_KEY_NAMESPACES} namespaces"),
        ));
    }
    if ns.len() > 1 && ns.iter().any(|n| n == "*") {
        problems.push(Problem::new(
            "namespaces",
            "\"*\" already covers every namespace: list it alone",
        ));
    }
    let mut seen = HashSet::with_capacity(ns.len());
    for (i, n) in ns.iter().enumerate() {
        if n != "*" && !is_namespace(n) {
            problems.push(Problem::new(
                format!("namespaces[{i}]"),
                format!("{n:?} is not \"*\" or a namespace like \"@acme\""),
            ));
        } else if !seen.insert(n.as_str()) {
            problems.push(Problem::new(
                format!("namespaces[{i}]"),
                format!("{n:?} listed twice"),
            ));
        }
    }
}
