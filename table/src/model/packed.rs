//! How the model holds a tenant: its binary encoding ([`crate::binary`], a few times smaller
//! than its JSON and one allocation), beside its digest, which stays the SHA-256 of its
//! canonical JSON (the delta contract). A full table's tenants are packed on every core.

use super::digest::{self, PartDigest};
use super::Part;
use crate::wire::Tenant;
use std::fmt;

/// Below this many tenants a table is packed on the calling thread (threads cost more).
const PARALLEL_FROM: usize = 2048;

/// A tenant in the binary encoding; decoded when it leaves the model or is written out.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Packed(Box<[u8]>);

impl Packed {
    /// The tenant's part: its encoding and its digest (over its canonical JSON, written
    /// into the hash without a buffer).
    pub(super) fn part(t: &Tenant) -> Part<Packed> {
        Part {
            value: Packed(crate::binary::encode_tenant(t).into_boxed_slice()),
            digest: PartDigest::of(digest::TENANT, t),
        }
    }

    pub(super) fn tenant(&self) -> Tenant {
        // The bytes are the encoding of a tenant: they decode to it again.
        crate::binary::tenant(&self.0).expect("a packed tenant decodes")
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Packed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Packed({} bytes)", self.0.len())
    }
}

/// Every tenant's part, in order: in one shard per core for a large table.
pub(super) fn pack_all(tenants: &[Tenant]) -> Vec<Part<Packed>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || tenants.len() < PARALLEL_FROM {
        return tenants.iter().map(Packed::part).collect();
    }
    let per = tenants.len().div_ceil(threads);
    std::thread::scope(|s| {
        let shards: Vec<_> = tenants
            .chunks(per)
            .map(|c| s.spawn(move || c.iter().map(Packed::part).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(tenants.len());
        for shard in shards {
            match shard.join() {
                Ok(parts) => out.extend(parts),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}
