//! A hash map in `Arc`ed shards: cloning it is one reference count, and an insert or removal
//! into a clone copies one shard (about [`TARGET`] entries) and the list of shard pointers.

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

mod parallel;
pub use parallel::{Parallel, Part};

/// Entries per shard the map aims for when sized: a change copies about this many.
const TARGET: usize = 128;
/// Never more shards than this (the shard bits must stay clear of hashbrown's: see
/// [`ShardMap::shard_of`]).
const MAX_SHARDS: usize = 1 << 14;

type Shard<K, V> = HashTable<(K, V)>;

/// A persistent hash map. The hasher's seeds are random per map family (a map and every map
/// derived from it by clone share them), so nobody outside the process can aim keys at one
/// shard or one bucket.
pub struct ShardMap<K, V> {
    hasher: ahash::RandomState,
    /// `shards.len() - 1`; the count is a power of two.
    mask: usize,
    shards: Arc<[Arc<Shard<K, V>>]>,
    len: usize,
}

impl<K, V> Clone for ShardMap<K, V> {
    fn clone(&self) -> Self {
        ShardMap {
            hasher: self.hasher.clone(),
            mask: self.mask,
            shards: Arc::clone(&self.shards),
            len: self.len,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for ShardMap<K, V> {
    fn default() -> Self {
        ShardMap::with_capacity(0)
    }
}

fn shards_for(entries: usize) -> usize {
    (entries / TARGET).next_power_of_two().clamp(1, MAX_SHARDS)
}

impl<K: Hash + Eq + Clone, V: Clone> ShardMap<K, V> {
    /// An empty map sized for `entries`.
    pub fn with_capacity(entries: usize) -> Self {
        let n = shards_for(entries);
        let per_shard = entries.div_ceil(n);
        ShardMap {
            hasher: ahash::RandomState::new(),
            mask: n - 1,
            shards: (0..n)
                .map(|_| Arc::new(HashTable::with_capacity(per_shard)))
                .collect(),
            len: 0,
        }
    }

    /// A map of `entries` (about `n` of them) built in one pass ([`ShardMapBuilder`]).
    pub fn build(n: usize, entries: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut b = ShardMapBuilder::new(n);
        for (k, v) in entries {
            b.insert(k, v);
        }
        b.finish()
    }

    /// The shard of a hash: bits 32 and up, clear of the low bits hashbrown picks a bucket
    /// with and of the top seven it keeps as the control byte, so the entries of one shard
    /// still spread over its buckets.
    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        ((hash >> 32) as usize) & self.mask
    }

    #[inline]
    fn hash<Q: Hash + ?Sized>(&self, q: &Q) -> u64 {
        self.hasher.hash_one(q)
    }

    #[inline]
    pub fn get<Q>(&self, q: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let h = self.hash(q);
        self.shards[self.shard_of(h)]
            .find(h, |(k, _)| k.borrow() == q)
            .map(|(_, v)| v)
    }

    pub fn contains_key<Q>(&self, q: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(q).is_some()
    }

    /// Insert or replace; the previous value, if any. Copies the shard if it is shared.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if self.len >= self.shards.len() * TARGET * 4 && self.shards.len() < MAX_SHARDS {
            self.reshard(shards_for(self.len * 2));
        }
        let h = self.hash(&key);
        let i = self.shard_of(h);
        let hasher = &self.hasher;
        let shard = Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[i]);
        match shard.entry(h, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k)) {
            Entry::Occupied(mut e) => Some(std::mem::replace(&mut e.get_mut().1, value)),
            Entry::Vacant(e) => {
                e.insert((key, value));
                self.len += 1;
                None
            }
        }
    }

    /// Remove `q`; its value, if it was there. A miss copies nothing.
    pub fn remove<Q>(&mut self, q: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let h = self.hash(q);
        let i = self.shard_of(h);
        self.shards[i].find(h, |(k, _)| k.borrow() == q)?;
        let shard = Arc::make_mut(&mut Arc::make_mut(&mut self.shards)[i]);
        let (_, v) = shard
            .find_entry(h, |(k, _)| k.borrow() == q)
            .ok()?
            .remove()
            .0;
        self.len -= 1;
        Some(v)
    }

    /// Redistribute over `n` shards: O(len), done when the map has outgrown its shard count,
    /// so a map grown one change at a time still copies a bounded shard per change.
    fn reshard(&mut self, n: usize) {
        let mut next = ShardMap {
            hasher: self.hasher.clone(),
            mask: n - 1,
            shards: (0..n)
                .map(|_| Arc::new(HashTable::with_capacity(self.len.div_ceil(n))))
                .collect(),
            len: 0,
        };
        for (k, v) in self.iter() {
            next.insert(k.clone(), v.clone());
        }
        *self = next;
    }

    /// Whether `other` is this very map (a clone never changed since): one pointer compare.
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shards, &other.shards)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.iter())
            .map(|(k, v)| (k, v))
    }

    /// Shards (tests and the memory report).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Shards `self` and `other` share (tests: a change copies one shard).
    pub fn shared_shards(&self, other: &Self) -> usize {
        self.shards
            .iter()
            .zip(other.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
    }
}

/// A [`ShardMap`] being filled before anyone shares it: no copy-on-write check per insert.
pub struct ShardMapBuilder<K, V> {
    hasher: ahash::RandomState,
    mask: usize,
    shards: Vec<Shard<K, V>>,
    len: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> ShardMapBuilder<K, V> {
    /// Sized for about `n` entries.
    pub fn new(n: usize) -> Self {
        let count = shards_for(n);
        ShardMapBuilder {
            hasher: ahash::RandomState::new(),
            mask: count - 1,
            shards: (0..count)
                .map(|_| HashTable::with_capacity(n.div_ceil(count)))
                .collect(),
            len: 0,
        }
    }

    /// Insert or replace (a repeated key keeps its last value).
    pub fn insert(&mut self, key: K, value: V) {
        let hasher = &self.hasher;
        let h = hasher.hash_one(&key);
        let shard = &mut self.shards[((h >> 32) as usize) & self.mask];
        // One probe: find the key or the slot it goes in.
        match shard.entry(h, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k)) {
            Entry::Occupied(mut e) => e.get_mut().1 = value,
            Entry::Vacant(e) => {
                e.insert((key, value));
                self.len += 1;
            }
        }
    }

    pub fn finish(self) -> ShardMap<K, V> {
        ShardMap {
            hasher: self.hasher,
            mask: self.mask,
            shards: self.shards.into_iter().map(Arc::new).collect(),
            len: self.len,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for ShardMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let iter = iter.into_iter();
        ShardMap::build(iter.size_hint().0, iter)
    }
}
