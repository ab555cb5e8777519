//! Persistent (copy-on-write, structurally shared) containers for the table snapshot: a
//! change to the next snapshot copies only the shard or chunk it touches, and every request
//! still holding the previous snapshot keeps reading it unchanged.
//!
//! [`ShardMap`] is a hash map split into `Arc`ed shards (one hash per lookup picks the shard
//! and probes it); [`Slots`] is a vector of `Arc`ed chunks whose indices stay stable while
//! other entries come and go (a vacated slot is reused later). Names (hosts, key ids) are
//! keyed as `smol_str::SmolStr`: a short one lives in the entry, a long one is shared by
//! reference count, so copying a shard allocates nothing per entry.

mod map;
mod slots;

#[cfg(test)]
mod tests;

pub use map::{Parallel, Part, ShardMap, ShardMapBuilder};
pub use slots::Slots;
