//! The state digest (defined in [`crate::delta`]): each part's SHA-256 over its kind and
//! canonical JSON, summed modulo 2^256 so that a change updates it in the size of the change.

use super::Model;
use crate::delta::CheckedDelta;
use crate::wire::Table;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;

/// The kinds of part, as hashed.
pub(crate) const UPSTREAM: &str = "upstream";
pub(crate) const TENANT: &str = "tenant";
pub(crate) const API_KEY: &str = "api_key";
pub(crate) const CERTIFICATE: &str = "certificate";
pub(crate) const ACME_CHALLENGE: &str = "acme_challenge";
pub(crate) const ASSERTION: &str = "assertion";

/// One part's digest: SHA-256 of its kind, a NUL byte and its canonical JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartDigest(pub [u8; 32]);

impl PartDigest {
    pub fn of<T: Serialize + ?Sized>(kind: &str, part: &T) -> PartDigest {
        let mut hasher = Sha256::new();
        hasher.update(kind.as_bytes());
        hasher.update([0]);
        // Writing into a hasher cannot fail, and the wire types always serialise (string
        // map keys, no floats that could be NaN).
        let mut w = HashWriter(&mut hasher);
        serde_json::to_writer(&mut w, part).expect("wire types serialise to JSON");
        PartDigest(hasher.finalize().into())
    }

    /// A pool is hashed as `[name, spec]`.
    pub fn upstream(name: &str, spec: &crate::wire::Upstream) -> PartDigest {
        PartDigest::of(UPSTREAM, &(name, spec))
    }
}

impl fmt::Display for PartDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for PartDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `serde_json::to_writer` into a SHA-256 without an intermediate buffer.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The sum of part digests, a 256-bit number held as four big-endian 64-bit limbs.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StateSum([u64; 4]);

impl StateSum {
    fn limbs(d: &PartDigest) -> [u64; 4] {
        let mut out = [0u64; 4];
        for (limb, chunk) in out.iter_mut().zip(d.0.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *limb = u64::from_be_bytes(b);
        }
        out
    }

    pub fn add(&mut self, d: &PartDigest) {
        let other = Self::limbs(d);
        let mut carry = false;
        for i in (0..4).rev() {
            let (s, c1) = self.0[i].overflowing_add(other[i]);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            self.0[i] = s;
            carry = c1 || c2;
        }
    }

    pub fn sub(&mut self, d: &PartDigest) {
        let other = Self::limbs(d);
        let mut borrow = false;
        for i in (0..4).rev() {
            let (s, b1) = self.0[i].overflowing_sub(other[i]);
            let (s, b2) = s.overflowing_sub(u64::from(borrow));
            self.0[i] = s;
            borrow = b1 || b2;
        }
    }

    /// Whether `text` is a well-formed state digest: `state:` and 64 lower-case hex digits.
    pub fn is_well_formed(text: &str) -> bool {
        text.strip_prefix("state:").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    }
}

impl fmt::Display for StateSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("state:")?;
        for limb in self.0 {
            write!(f, "{limb:016x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StateSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The state digest of a whole table (`state:<64 hex>`): the same value a [`crate::Model`]
/// of it holds, whatever the order of its parts or the formatting of its document.
pub fn state_digest(table: &Table) -> String {
    let mut sum = StateSum::default();
    for (name, spec) in &table.upstreams {
        sum.add(&PartDigest::upstream(name, spec));
    }
    for t in &table.tenants {
        sum.add(&PartDigest::of(TENANT, t));
    }
    for k in &table.api_keys {
        sum.add(&PartDigest::of(API_KEY, k));
    }
    for c in &table.certificates {
        sum.add(&PartDigest::of(CERTIFICATE, c));
    }
    for c in &table.acme_challenges {
        sum.add(&PartDigest::of(ACME_CHALLENGE, c));
    }
    if let Some(a) = &table.assertion {
        sum.add(&PartDigest::of(ASSERTION, a));
    }
    sum.to_string()
}

impl Model {
    /// The state digest once `d` (checked) is applied: the parts that go or are replaced
    /// subtracted, the new ones added.
    pub(super) fn state_after(&self, d: &CheckedDelta) -> String {
        let mut sum = self.state;
        let mut out = |p: Option<&PartDigest>| {
            if let Some(p) = p {
                sum.sub(p);
            }
        };
        for n in d
            .delete_upstreams
            .iter()
            .chain(d.upstreams.iter().map(|u| &u.0))
        {
            out(self.upstreams.get(n.as_str()).map(|p| &p.digest));
        }
        for n in d
            .delete_tenants
            .iter()
            .chain(d.tenants.iter().map(|t| &t.0.id))
        {
            out(self.tenants.get(n.as_str()).map(|p| &p.digest));
        }
        for n in d
            .delete_api_keys
            .iter()
            .chain(d.api_keys.iter().map(|k| &k.0.id))
        {
            out(self.api_keys.get(n.as_str()).map(|p| &p.digest));
        }
        let names = d.certificates.iter().map(|c| &c.0.name);
        for n in d.delete_certificates.iter().chain(names) {
            out(self.certificates.get(n.as_str()).map(|p| &p.digest));
        }
        let tokens = d.acme_challenges.iter().map(|c| &c.0.token);
        for n in d.delete_acme_challenges.iter().chain(tokens) {
            out(self.acme_challenges.get(n.as_str()).map(|p| &p.digest));
        }
        if d.assertion.is_some() {
            out(self.assertion.as_ref().map(|p| &p.digest));
        }
        for (name, spec) in &d.upstreams {
            sum.add(&PartDigest::upstream(name, spec));
        }
        for (t, _) in &d.tenants {
            sum.add(&PartDigest::of(TENANT, t));
        }
        for (k, _) in &d.api_keys {
            sum.add(&PartDigest::of(API_KEY, k));
        }
        for (c, _) in &d.certificates {
            sum.add(&PartDigest::of(CERTIFICATE, c));
        }
        for (c, _) in &d.acme_challenges {
            sum.add(&PartDigest::of(ACME_CHALLENGE, c));
        }
        if let Some(Some(a)) = &d.assertion {
            sum.add(&PartDigest::of(ASSERTION, a));
        }
        sum.to_string()
    }
}
