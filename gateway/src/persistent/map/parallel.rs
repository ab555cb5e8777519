//! A [`ShardMap`] built on several threads: each worker sorts the entries it makes into the
//! shard ranges of the threads that will build them ([`Part`]), then each thread fills its
//! own range of shards ([`Parallel::finish`]). The result is the map [`ShardMap::build`]
//! makes of the same entries in the same order (a repeated key keeps its last value).

use super::{shards_for, Shard, ShardMap};
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use std::hash::Hash;
use std::sync::Arc;

/// The shape of a map being built on `threads` threads: its seeds and shard count.
pub struct Parallel {
    hasher: ahash::RandomState,
    mask: usize,
    threads: usize,
    /// Entries expected, for the shards' capacity.
    entries: usize,
}

/// One worker's entries, sorted by the thread that builds their shard, each with its hash.
pub struct Part<K, V> {
    hasher: ahash::RandomState,
    mask: usize,
    threads: usize,
    by_thread: Vec<Vec<(u64, K, V)>>,
}

impl Parallel {
    /// A map of about `entries` entries, built on `threads` threads (at least one).
    pub fn new(entries: usize, threads: usize) -> Parallel {
        Parallel {
            hasher: ahash::RandomState::new(),
            mask: shards_for(entries) - 1,
            threads: threads.max(1),
            entries,
        }
    }

    /// A part for one worker, sized for about `entries` of its entries.
    pub fn part<K, V>(&self, entries: usize) -> Part<K, V> {
        let per = entries.div_ceil(self.threads) + entries / 16;
        Part {
            hasher: self.hasher.clone(),
            mask: self.mask,
            threads: self.threads,
            by_thread: (0..self.threads).map(|_| Vec::with_capacity(per)).collect(),
        }
    }

    /// The thread that builds shard `shard`: the shards are cut in `threads` runs.
    fn thread_of(shard: usize, shards: usize, threads: usize) -> usize {
        shard * threads / shards
    }

    /// The map of every part's entries, the parts taken in order: each thread fills its run
    /// of shards from what every part sorted for it.
    pub fn finish<K, V>(self, parts: Vec<Part<K, V>>) -> ShardMap<K, V>
    where
        K: Hash + Eq + Send,
        V: Send,
    {
        let shards = self.mask + 1;
        let per_shard = self.entries.div_ceil(shards);
        // `columns[t]`: what each part sorted for thread `t`, in part order.
        let mut columns: Vec<Vec<Vec<(u64, K, V)>>> =
            (0..self.threads).map(|_| Vec::new()).collect();
        for part in parts {
            for (t, entries) in part.by_thread.into_iter().enumerate() {
                columns[t].push(entries);
            }
        }
        let hasher = &self.hasher;
        let threads = self.threads;
        let run = |t: usize, column: Vec<Vec<(u64, K, V)>>| -> (Vec<Shard<K, V>>, usize) {
            let first = (0..shards)
                .position(|s| Self::thread_of(s, shards, threads) == t)
                .unwrap_or(shards);
            let count = (first..shards)
                .take_while(|&s| Self::thread_of(s, shards, threads) == t)
                .count();
            let mut own: Vec<Shard<K, V>> = (0..count)
                .map(|_| HashTable::with_capacity(per_shard))
                .collect();
            let mut len = 0;
            for (h, key, value) in column.into_iter().flatten() {
                let shard = &mut own[((h >> 32) as usize & (shards - 1)) - first];
                match shard.entry(h, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k)) {
                    Entry::Occupied(mut e) => e.get_mut().1 = value,
                    Entry::Vacant(e) => {
                        e.insert((key, value));
                        len += 1;
                    }
                }
            }
            (own, len)
        };
        let runs: Vec<(Vec<Shard<K, V>>, usize)> = if threads == 1 {
            columns.into_iter().map(|c| run(0, c)).collect()
        } else {
            std::thread::scope(|scope| {
                let mut columns = columns.into_iter().enumerate();
                let first = columns.next();
                let handles: Vec<_> = columns
                    .map(|(t, c)| scope.spawn(move || run(t, c)))
                    .collect();
                let mut out = Vec::with_capacity(threads);
                if let Some((t, c)) = first {
                    out.push(run(t, c));
                }
                for h in handles {
                    match h.join() {
                        Ok(r) => out.push(r),
                        Err(e) => std::panic::resume_unwind(e),
                    }
                }
                out
            })
        };
        let len = runs.iter().map(|(_, l)| l).sum();
        let shards: Arc<[Arc<Shard<K, V>>]> = runs
            .into_iter()
            .flat_map(|(own, _)| own)
            .map(Arc::new)
            .collect();
        ShardMap {
            hasher: self.hasher,
            mask: self.mask,
            shards,
            len,
        }
    }
}

impl<K: Hash, V> Part<K, V> {
    /// Add an entry (a later one with the same key, in this part or a later one, wins).
    pub fn push(&mut self, key: K, value: V) {
        let h = self.hasher.hash_one(&key);
        let shard = (h >> 32) as usize & self.mask;
        let t = Parallel::thread_of(shard, self.mask + 1, self.threads);
        self.by_thread[t].push((h, key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map of `entries` built by `parts` workers on `threads` threads.
    fn built(entries: &[(String, u32)], parts: usize, threads: usize) -> ShardMap<String, u32> {
        let plan = Parallel::new(entries.len(), threads);
        let per = entries.len().div_ceil(parts).max(1);
        let parts = entries
            .chunks(per)
            .map(|chunk| {
                let mut part = plan.part(chunk.len());
                for (k, v) in chunk {
                    part.push(k.clone(), *v);
                }
                part
            })
            .collect();
        plan.finish(parts)
    }

    #[test]
    fn a_map_built_on_several_threads_holds_what_one_thread_builds() {
        let mut entries: Vec<(String, u32)> = (0..20_000).map(|i| (format!("k{i}"), i)).collect();
        // Repeats, the later one in a later part: the last value wins, as in `build`.
        entries.push(("k7".into(), 70_000));
        entries.push(("k19999".into(), 90_000));
        let one = ShardMap::build(entries.len(), entries.iter().cloned());
        for (parts, threads) in [(1, 1), (3, 2), (4, 4), (7, 3), (2, 64)] {
            let many = built(&entries, parts, threads);
            assert_eq!(many.len(), 20_000, "{parts} parts, {threads} threads");
            assert_eq!(many.len(), one.len());
            assert_eq!(many.shard_count(), one.shard_count());
            for (k, v) in one.iter() {
                assert_eq!(many.get(k.as_str()), Some(v), "{k}");
            }
            assert_eq!(many.get("k7"), Some(&70_000));
            assert_eq!(many.get("k19999"), Some(&90_000));
            assert_eq!(many.get("k20000"), None);
        }
    }

    #[test]
    fn a_map_built_on_several_threads_changes_like_any_other() {
        let entries: Vec<(String, u32)> = (0..5_000).map(|i| (format!("k{i}"), i)).collect();
        let map = built(&entries, 2, 2);
        let mut next = map.clone();
        next.insert("new".into(), 1);
        next.remove("k1");
        assert_eq!((map.get("new"), map.get("k1")), (None, Some(&1)));
        assert_eq!((next.get("new"), next.get("k1")), (Some(&1), None));
        // The two changes copied at most two shards; the rest are shared.
        assert!(next.shared_shards(&map) >= map.shard_count() - 2);
        assert!(built(&[], 1, 2).is_empty());
    }
}
