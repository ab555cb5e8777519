//! A registry map that remembers which entries were written since the table compiler last
//! looked: the change tracking that lets a table version compile as a delta in the size of
//! the change (`compile::delta`), without scanning the registry.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::{Mutex, PoisonError};

/// A `BTreeMap` whose every write goes through [`Tracked::insert`], [`Tracked::remove`] or
/// [`Tracked::get_mut`], each recording the key. Reads go through `Deref`; there is no
/// `DerefMut`, so a write that skips the record does not compile.
pub struct Tracked<K, V> {
    map: BTreeMap<K, V>,
    /// Written since the last [`Tracked::take_touched`]. Behind a lock so the compiler can
    /// take it while it holds the model for reading (writers are kept out meanwhile; a writer
    /// reaches it through `get_mut`, without locking).
    touched: Mutex<BTreeSet<K>>,
}

impl<K, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Tracked {
            map: BTreeMap::new(),
            touched: Mutex::new(BTreeSet::new()),
        }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for Tracked<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.map.fmt(f)
    }
}

impl<K, V> Deref for Tracked<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<'a, K, V> IntoIterator for &'a Tracked<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::collections::btree_map::Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<K: Ord + Clone, V> Tracked<K, V> {
    fn touch(&mut self, key: K) {
        self.touched
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key);
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.touch(key.clone());
        self.map.insert(key, value)
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let (key, value) = self.map.remove_entry(key)?;
        self.touch(key);
        Some(value)
    }

    /// The entry, to change in place: recorded as written whether or not it changes.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let owned = self.map.get_key_value(key)?.0.clone();
        self.touch(owned);
        self.map.get_mut(key)
    }

    /// The keys written since the last call (present or removed since), and forget them.
    pub fn take_touched(&self) -> BTreeSet<K> {
        std::mem::take(&mut *self.touched.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_is_recorded_once_until_taken() {
        let mut m: Tracked<String, u32> = Tracked::default();
        m.insert("a".into(), 1);
        m.insert("b".into(), 2);
        m.insert("a".into(), 3);
        assert_eq!(m.take_touched(), BTreeSet::from(["a".into(), "b".into()]));
        assert!(m.take_touched().is_empty(), "taken once");
        assert_eq!(m.remove("zzz"), None);
        assert!(
            m.take_touched().is_empty(),
            "removing nothing changes nothing"
        );
        *m.get_mut("b").expect("b") += 1;
        assert_eq!(m.remove("a"), Some(3));
        assert_eq!(m.take_touched(), BTreeSet::from(["a".into(), "b".into()]));
        assert!(m.get_mut("a").is_none());
        assert!(m.take_touched().is_empty());
        assert_eq!(m.get("b"), Some(&3), "reads go through Deref");
    }
}
