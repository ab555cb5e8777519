//! Stable indices in `Arc`ed chunks: a slot keeps its index while others are added and
//! removed; a change to a clone copies one chunk ([`CHUNK`] entries) and the chunk list.

use std::sync::Arc;

const CHUNK_BITS: u32 = 9;
/// Slots per chunk.
const CHUNK: usize = 1 << CHUNK_BITS;

type Chunk<T> = Arc<[Option<T>]>;

/// A persistent slot vector. `T` is cloned when a chunk is copied: keep it cheap to clone
/// (an `Arc`, a small value).
pub struct Slots<T> {
    chunks: Arc<[Chunk<T>]>,
    /// Slots in use.
    len: usize,
    /// Slots ever allocated (the next fresh index).
    end: u32,
    /// Vacated slots, most recent first, reused by [`Slots::insert`].
    free: FreeList,
}

impl<T> Clone for Slots<T> {
    fn clone(&self) -> Self {
        Slots {
            chunks: Arc::clone(&self.chunks),
            len: self.len,
            end: self.end,
            free: self.free.clone(),
        }
    }
}

impl<T: Clone> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Arc::new([]),
            len: 0,
            end: 0,
            free: FreeList::default(),
        }
    }
}

impl<T: Clone> Slots<T> {
    /// Slots `0..n` filled in order (a full build).
    pub fn from_vec(items: Vec<T>) -> Self {
        let len = items.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut items = items.into_iter().map(Some);
        loop {
            let chunk: Chunk<T> = items.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        Slots {
            chunks: chunks.into(),
            len,
            end: u32::try_from(len).unwrap_or(u32::MAX),
            free: FreeList::default(),
        }
    }

    #[inline]
    pub fn get(&self, idx: u32) -> Option<&T> {
        let i = idx as usize;
        self.chunks
            .get(i >> CHUNK_BITS)?
            .get(i & (CHUNK - 1))?
            .as_ref()
    }

    /// Put `value` in a vacated slot, or a new one; its index.
    pub fn insert(&mut self, value: T) -> u32 {
        let idx = loop {
            match self.free.pop() {
                // Skip entries another path filled since ([`Slots::set`]).
                Some(i) if self.get(i).is_some() => continue,
                Some(i) => break i,
                None => break self.end,
            }
        };
        self.set(idx, value);
        idx
    }

    /// Fill or replace slot `idx` (growing the vector if needed); the previous value.
    pub fn set(&mut self, idx: u32, value: T) -> Option<T> {
        let (c, s) = ((idx as usize) >> CHUNK_BITS, (idx as usize) & (CHUNK - 1));
        if c >= self.chunks.len() {
            let mut chunks = self.chunks.to_vec();
            chunks.resize_with(c + 1, || Arc::from(Vec::new()));
            self.chunks = chunks.into();
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        let chunk = &mut chunks[c];
        if s >= chunk.len() {
            // Grow the (last) chunk to hold `s`, by doubling: a change appending many slots
            // copies it a few times, not once a slot.
            let mut grown = Vec::with_capacity(CHUNK);
            grown.extend_from_slice(chunk);
            grown.resize((s + 1).max(2 * chunk.len()).min(CHUNK), None);
            *chunk = grown.into();
        }
        let prev = Arc::make_mut(chunk)[s].replace(value);
        if prev.is_none() {
            self.len += 1;
        }
        self.end = self.end.max(idx.saturating_add(1));
        prev
    }

    /// Vacate slot `idx` for reuse; its value.
    pub fn remove(&mut self, idx: u32) -> Option<T> {
        let prev = self.take(idx)?;
        self.free.push(idx);
        Some(prev)
    }

    /// Vacate slot `idx` without offering it for reuse (a vector indexed like another one).
    pub fn take(&mut self, idx: u32) -> Option<T> {
        self.get(idx)?;
        let (c, s) = ((idx as usize) >> CHUNK_BITS, (idx as usize) & (CHUNK - 1));
        let chunk = &mut Arc::make_mut(&mut self.chunks)[c];
        let prev = Arc::make_mut(chunk)[s].take();
        self.len -= 1;
        prev
    }

    /// Slots in use.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots ever allocated: every index in use is below this.
    pub fn end(&self) -> u32 {
        self.end
    }

    /// Every value in use, by index.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.indexed().map(|(_, v)| v)
    }

    /// Every value in use with its index, in index order.
    pub fn indexed(&self) -> impl Iterator<Item = (u32, &T)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .filter_map(move |(s, v)| Some(((c * CHUNK + s) as u32, v.as_ref()?)))
        })
    }

    /// Chunks `self` and `other` share (tests: a change copies one chunk).
    pub fn shared_chunks(&self, other: &Self) -> usize {
        self.chunks
            .iter()
            .zip(other.chunks.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
    }
}

impl<T: Clone> FromIterator<T> for Slots<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Slots::from_vec(iter.into_iter().collect())
    }
}

/// A persistent stack of vacated indices: push and pop are O(1) and share the tail.
#[derive(Clone, Default)]
struct FreeList(Option<Arc<FreeNode>>);

struct FreeNode {
    idx: u32,
    next: FreeList,
}

impl FreeList {
    fn push(&mut self, idx: u32) {
        let next = FreeList(self.0.take());
        self.0 = Some(Arc::new(FreeNode { idx, next }));
    }

    fn pop(&mut self) -> Option<u32> {
        let node = self.0.take()?;
        let idx = node.idx;
        self.0 = node.next.0.clone();
        Some(idx)
    }
}

impl Drop for FreeNode {
    /// Unlink the chain one node at a time: a long list must not recurse once per node.
    fn drop(&mut self) {
        let mut next = self.next.0.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut n) => next = n.next.0.take(),
                Err(_) => break,
            }
        }
    }
}
