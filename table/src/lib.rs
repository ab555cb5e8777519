//! The routing-table contract between `realmctl` (which compiles it) and `realmgate` (which
//! serves it): wire types, host and path normalisation, whole-table validation.
//!
//! A table is one JSON document; [`parse`] is the one way in. It rejects unknown fields and
//! reports every problem it finds — unknown fields and semantic errors alike — so an operator
//! fixes a table in one round. The field-by-field reference is on the types in [`wire`] and in
//! `docs/routing-table.md`.

pub mod assertion;
pub mod binary;
mod claims;
pub mod delta;
mod duplicates;
pub mod host;
pub mod model;
pub mod path;
mod pause;
mod problem;
mod shard;
pub mod validate;
pub mod wire;

#[cfg(any(test, feature = "test-util"))]
pub mod fixtures;
#[cfg(any(test, feature = "test-util"))]
pub mod test_certs;

pub use delta::{
    parse_delta, parse_delta_pausing, AssertionChange, CheckedDelta, Delta, DeltaError,
};
pub use duplicates::duplicate_keys;
pub use model::{state_digest, Model};
pub use problem::Problem;
/// Whole-table validation under its old name (the benches call it).
pub use validate::table as validate;
pub use validate::{certificate, leaf_names_and_expiry, CheckedCert};
pub use validate::{
    first_segment, is_key_digest, is_name, is_namespace, is_tenant_id, parse_expiry, CheckedTable,
    GATEWAY_PATH_PREFIX, KNOWN_AUTH, MAX_API_KEYS, MAX_AUDIENCES, MAX_CATALOG_APPS, MAX_ENDPOINTS,
    MAX_HOSTS_PER_TENANT, MAX_KEY_NAMESPACES, MAX_NAMESPACE_LEN, MAX_ROUTES_PER_TENANT,
    MAX_SHELL_EXCLUDES,
};
pub use wire::{
    AcmeChallenge, ApiKey, AuthSpec, CatalogApp, Certificate, HealthCheck, Hsts, HttpsMode,
    RateLimit, RateLimits, Realm, Route, Shell, Table, Tenant, TenantStatus, Upstream,
};

use sha2::{Digest, Sha256};

/// Parse and validate a table. On failure, every problem found is returned: repeated member
/// names and unknown fields (each with its path) and all semantic problems. A JSON syntax or
/// type error stops parsing, so it is reported alone (after any repeated names before it).
pub fn parse(bytes: &[u8]) -> Result<CheckedTable, Vec<Problem>> {
    // A large valid table is decoded and checked on every core; anything else (a small
    // table, or any problem) in one pass, which is also what reports problems.
    match shard::parse(bytes) {
        Some(checked) => Ok(checked),
        None => parse_one_pass(bytes),
    }
}

/// [`parse`] for a table in the binary encoding ([`binary`]): the same checks, the same
/// problems for the same table. What only a document in JSON can get wrong (unknown fields,
/// repeated member names, syntax) is here a malformed encoding, reported alone.
pub fn parse_binary(bytes: &[u8]) -> Result<CheckedTable, Vec<Problem>> {
    let (table, tenants) = binary::decode(bytes).map_err(|p| vec![p])?;
    let mut table = match shard::check(table, &tenants, |b| binary::tenant(b).ok()) {
        Ok(checked) => return Ok(checked),
        Err(table) => *table,
    };
    // Some tenant does not decode, or the table has a problem: decode on one core and check
    // the way [`parse_one_pass`] does, for its report.
    table.tenants.reserve_exact(tenants.len());
    for (i, b) in tenants.iter().enumerate() {
        let tenant = binary::tenant(b).map_err(|why| vec![binary::malformed_tenant(i, &why)])?;
        table.tenants.push(tenant);
    }
    let n = validate::table(&table)?;
    Ok(n.with(table))
}

/// [`parse`] on one core, in one pass over the document.
pub(crate) fn parse_one_pass(bytes: &[u8]) -> Result<CheckedTable, Vec<Problem>> {
    let mut found = Vec::new();
    let Some(table) = decode::<Table>(bytes, "table", &mut found) else {
        return Err(found);
    };
    match validate::table(&table) {
        Ok(n) if found.is_empty() => Ok(n.with(table)),
        Ok(_) => Err(found),
        Err(mut problems) => {
            found.append(&mut problems);
            Err(found)
        }
    }
}

/// Decode one document (a table, a delta), recording in `found` every repeated member name
/// and unknown field with its path. A JSON syntax or type error ends decoding: it is recorded
/// (after any repeated names before it) and `None` returned.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    found: &mut Vec<Problem>,
) -> Option<T> {
    // Last-one-wins would let two readers of one document see two documents.
    found.append(&mut duplicate_keys(bytes));
    let parsed = if found.is_empty() {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_ignored::deserialize(&mut de, |path| {
            found.push(Problem::new(field_path(&path), "unknown field"));
        })
        .and_then(|t: T| de.end().map(|()| t))
    } else {
        // serde refuses a struct field given twice; to still report every other problem,
        // decode the document with the repeats collapsed (they are refused regardless).
        serde_json::from_slice::<serde_json::Value>(bytes).and_then(|v| {
            serde_ignored::deserialize(v, |path| {
                found.push(Problem::new(field_path(&path), "unknown field"));
            })
        })
    };
    match parsed {
        Ok(t) => Some(t),
        Err(e) => {
            found.push(Problem::new("", format!("malformed {what} JSON: {e}")));
            None
        }
    }
}

/// `sha256:<hex>` of the table's bytes as received: what `GET /v1/table` reports, so an
/// operator can tell which document a gateway serves.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `tenants[1].routes[0].foo` from serde_ignored's path (also used for YAML configs).
pub fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}
