//! The routing table's binary encoding, `application/vnd.realmgate.table+postcard`: the same
//! table as the JSON document (which stays the documented contract), written positionally
//! with postcard so that a gateway decodes a large table several times faster. Offered by
//! gateways, used by realmctl's full pushes when a gateway offers it; read through
//! [`crate::parse_binary`], which runs the same checks as [`crate::parse`] and reports the
//! same problems.
//!
//! Layout: the bytes `RGTB`, the format byte ([`FORMAT`]), then in postcard the table's
//! fields in wire order — version, upstreams as `(name, pool)` pairs, tenants, API keys,
//! certificates, ACME answers, assertion — where each tenant is a byte string holding its own
//! postcard encoding, so that the tenants are cut apart without decoding them and decoded on
//! every core.

mod positional;
#[cfg(test)]
pub(crate) mod tests;

use crate::assertion::Assertion;
use crate::wire::{AcmeChallenge, ApiKey, Certificate, Table, Tenant, Upstream};
use crate::Problem;
use positional::{Own, Ref};
use serde::ser::{Error as _, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// The media type of the encoding, as `Content-Type` of `PUT /v1/table`.
pub const MEDIA_TYPE: &str = "application/vnd.realmgate.table+postcard";
/// The first bytes of every binary table.
pub const MAGIC: &[u8; 4] = b"RGTB";
/// The format written after [`MAGIC`]; a reader refuses any other.
pub const FORMAT: u8 = 1;

/// Whether `content_type` (a `Content-Type` value, parameters allowed) names this encoding.
pub fn is_media_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Whether `bytes` start as a binary table does (any format); a JSON document never does.
pub fn looks_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The table in the binary encoding.
pub fn encode(table: &Table) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + table.tenants.len() * 96);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    // A postcard struct is its fields one after the other, so this tuple is [`Body`].
    let body = (
        table.version,
        Pools(&table.upstreams),
        Tenants(&table.tenants),
        Seq(&table.api_keys),
        Seq(&table.certificates),
        Seq(&table.acme_challenges),
        &table.assertion,
    );
    // The wire types always serialise (no maps with non-string keys, no floats).
    postcard::to_extend(&body, out).expect("wire types serialise to postcard")
}

/// The table of a JSON document, in the binary encoding (what realmctl sends a gateway that
/// offers it). The document is only decoded, not checked: the gateway checks.
pub fn from_json(json: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::from_slice::<Table>(json).map(|t| encode(&t))
}

/// The version a binary table claims, read from its first bytes alone (`None`: not a
/// binary table of the format this crate reads).
pub fn version(bytes: &[u8]) -> Option<u64> {
    let rest = bytes.strip_prefix(MAGIC)?.strip_prefix(&[FORMAT])?;
    postcard::take_from_bytes::<u64>(rest).ok().map(|(v, _)| v)
}

/// The binary table decoded as far as its tenants: the table without them, and each
/// tenant's encoding (decoded by [`tenant`], on every core).
pub(crate) fn decode(bytes: &[u8]) -> Result<(Table, Vec<&[u8]>), Problem> {
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        return Err(Problem::new(
            "",
            format!("not a binary routing table (it does not start with {:?}): send JSON as application/json, or the binary encoding as {MEDIA_TYPE}", "RGTB"),
        ));
    };
    match rest.first() {
        Some(&FORMAT) => {}
        Some(&other) => {
            return Err(Problem::new(
                "",
                format!("binary table format {other}: this gateway reads format {FORMAT} only; send the table as application/json"),
            ))
        }
        None => return Err(malformed("it ends after its first 4 bytes")),
    }
    let (body, trailing) = postcard::take_from_bytes::<Body<'_>>(&rest[1..]).map_err(malformed)?;
    if !trailing.is_empty() {
        return Err(malformed(format!("{} bytes after its end", trailing.len())));
    }
    let mut upstreams = BTreeMap::new();
    for (name, pool) in body.upstreams {
        if upstreams.contains_key(&name) {
            // What JSON reports for a repeated member name: one name, one meaning.
            return Err(Problem::new(format!("upstreams.{name}"), "duplicate key"));
        }
        upstreams.insert(name, pool.0);
    }
    let table = Table {
        version: body.version,
        upstreams,
        tenants: Vec::new(),
        api_keys: unwrap(body.api_keys),
        certificates: unwrap(body.certificates),
        acme_challenges: unwrap(body.acme_challenges),
        assertion: body.assertion,
    };
    Ok((table, body.tenants))
}

/// One tenant's encoding, as [`decode`] cut it out.
pub(crate) fn tenant(bytes: &[u8]) -> Result<Tenant, String> {
    match postcard::take_from_bytes::<Own<Tenant>>(bytes) {
        Ok((t, [])) => Ok(t.0),
        Ok((_, trailing)) => Err(format!("{} bytes after its end", trailing.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// One tenant in the binary encoding (what [`tenant`] decodes): the table's model holds
/// tenants this way.
pub(crate) fn encode_tenant(t: &Tenant) -> Vec<u8> {
    // The wire types always serialise to postcard.
    postcard::to_allocvec(&Ref(t)).expect("wire types serialise to postcard")
}

/// The problem with tenant `i`'s encoding.
pub(crate) fn malformed_tenant(i: usize, why: &str) -> Problem {
    Problem::new(
        format!("tenants[{i}]"),
        format!("malformed binary tenant: {why}"),
    )
}

fn malformed(why: impl std::fmt::Display) -> Problem {
    Problem::new("", format!("malformed binary table: {why}"))
}

fn unwrap<T>(v: Vec<Own<T>>) -> Vec<T> {
    v.into_iter().map(|o| o.0).collect()
}

/// What follows the format byte (see the module docs); the tenants borrowed, undecoded.
#[derive(Deserialize)]
struct Body<'a> {
    version: u64,
    upstreams: Vec<(String, Own<Upstream>)>,
    #[serde(borrow)]
    tenants: Vec<&'a [u8]>,
    api_keys: Vec<Own<ApiKey>>,
    certificates: Vec<Own<Certificate>>,
    acme_challenges: Vec<Own<AcmeChallenge>>,
    assertion: Option<Assertion>,
}

/// Writes the pools as `(name, pool)` pairs.
struct Pools<'a>(&'a BTreeMap<String, Upstream>);

impl Serialize for Pools<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(name, pool)| (name, Ref(pool))))
    }
}

/// Writes each tenant as a byte string of its own encoding.
struct Tenants<'a>(&'a [Tenant]);

impl Serialize for Tenants<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        let mut buf = Vec::with_capacity(256);
        for t in self.0 {
            buf.clear();
            buf = postcard::to_extend(&Ref(t), buf).map_err(S::Error::custom)?;
            seq.serialize_element(&Bytes(&buf))?;
        }
        seq.end()
    }
}

/// A byte string (serde writes `[u8]` element by element otherwise).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Writes a list of positional values.
struct Seq<'a, T>(&'a [T]);

impl<T: positional::Positional> Serialize for Seq<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Ref))
    }
}
