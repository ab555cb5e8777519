//! The persistent containers: a clone never sees its successor's changes, a change copies
//! one shard or chunk, and the contents match a plain map or vector.

use super::{ShardMap, Slots};
use std::collections::HashMap;

#[test]
fn shard_map_matches_a_hash_map_and_clones_are_snapshots() {
    let mut m: ShardMap<Box<str>, u32> = (0..10_000u32)
        .map(|i| (format!("h{i}.test").into_boxed_str(), i))
        .collect();
    assert_eq!(m.len(), 10_000);
    assert!(m.shard_count() > 1);
    let before = m.clone();
    assert_eq!(m.insert("h5.test".into(), 99), Some(5));
    assert_eq!(m.insert("new.test".into(), 7), None);
    assert_eq!(m.remove("h6.test"), Some(6));
    assert_eq!(m.remove("h6.test"), None);
    assert_eq!(m.get("h5.test"), Some(&99));
    assert_eq!(m.get("new.test"), Some(&7));
    assert_eq!(m.get("h6.test"), None);
    assert_eq!(m.len(), 10_000);
    // The old map answers as it did.
    assert_eq!(before.get("h5.test"), Some(&5));
    assert_eq!(before.get("h6.test"), Some(&6));
    assert_eq!(before.get("new.test"), None);
    assert_eq!(before.len(), 10_000);
    // Three keys changed: at most three shards copied.
    assert!(m.shared_shards(&before) >= m.shard_count() - 3);
    let plain: HashMap<&str, u32> = m.iter().map(|(k, v)| (&**k, *v)).collect();
    assert_eq!(plain.len(), m.len());
}

#[test]
fn shard_map_grown_one_key_at_a_time_reshards() {
    let mut m: ShardMap<u32, u32> = ShardMap::default();
    assert_eq!(m.shard_count(), 1);
    for i in 0..20_000 {
        m.insert(i, i * 2);
    }
    assert!(m.shard_count() > 1, "a grown map spreads over shards");
    assert!((0..20_000).all(|i| m.get(&i) == Some(&(i * 2))));
    assert_eq!(m.get(&20_000), None);
    for i in 0..20_000 {
        assert_eq!(m.remove(&i), Some(i * 2));
    }
    assert!(m.is_empty());
}

#[test]
fn slots_keep_indices_and_reuse_vacated_ones() {
    let mut s: Slots<u32> = (0..3000).collect();
    assert_eq!((s.len(), s.end()), (3000, 3000));
    let before = s.clone();
    assert_eq!(s.remove(1500), Some(1500));
    assert_eq!(s.remove(1500), None);
    assert_eq!(s.get(1500), None);
    assert_eq!(s.get(1501), Some(&1501));
    // The vacated slot is reused; then fresh ones.
    assert_eq!(s.insert(7), 1500);
    assert_eq!(s.insert(8), 3000);
    assert_eq!(s.get(3000), Some(&8));
    assert_eq!(s.len(), 3001);
    assert_eq!(before.get(1500), Some(&1500));
    assert_eq!(before.get(3000), None);
    // The chunks of 1500 and of 3000 copied; every other one shared.
    assert_eq!(s.shared_chunks(&before), before.shared_chunks(&before) - 2);
    assert_eq!(s.iter().count(), 3001);
    let idx: Vec<u32> = s.indexed().map(|(i, _)| i).take(3).collect();
    assert_eq!(idx, [0, 1, 2]);
}

#[test]
fn slots_appended_to_a_clone_leave_it_unchanged() {
    let mut s: Slots<u32> = (0..10).collect();
    let before = s.clone();
    for i in 10..2_000 {
        assert_eq!(s.insert(i * 3), i);
    }
    assert!((0..2_000).all(|i| s.get(i) == Some(&(i * 3)) || (i < 10 && s.get(i) == Some(&i))));
    assert_eq!((s.len(), s.end()), (2_000, 2_000));
    assert_eq!(s.get(2_000), None);
    assert_eq!(s.indexed().count(), 2_000);
    assert_eq!((before.len(), before.end()), (10, 10));
    assert_eq!(before.get(10), None);
    assert_eq!(before.iter().count(), 10);
}

#[test]
fn slots_take_does_not_offer_the_slot_and_set_fills_any() {
    let mut s: Slots<u32> = Slots::default();
    assert_eq!(s.set(5, 50), None);
    assert_eq!((s.len(), s.end()), (1, 6));
    assert_eq!(s.get(4), None);
    assert_eq!(s.take(5), Some(50));
    assert_eq!(s.insert(1), 6, "a taken slot is not reused");
    assert_eq!(s.remove(6), Some(1));
    assert_eq!(s.set(6, 2), None, "filled by set");
    assert_eq!(s.insert(3), 7, "the free entry filled since is skipped");
    assert!(s.get(100_000).is_none());
}

#[test]
fn a_long_free_list_drops_without_recursion() {
    let mut s: Slots<u32> = (0..300_000).collect();
    for i in 0..300_000 {
        s.remove(i);
    }
    drop(s);
}

#[test]
fn a_map_of_names_answers_by_str_and_a_clone_keeps_its_entries() {
    use smol_str::SmolStr;
    let long = "a-name-that-does-not-fit-in-place.example.com";
    let mut m: ShardMap<SmolStr, u32> = ShardMap::default();
    m.insert(SmolStr::new("short.test"), 1);
    m.insert(SmolStr::new(long), 2);
    let before = m.clone();
    m.insert(SmolStr::new("short.test"), 3);
    assert_eq!(m.get("short.test"), Some(&3));
    assert_eq!(m.get(long), Some(&2));
    assert_eq!(m.get("short.tes"), None);
    assert_eq!(before.get("short.test"), Some(&1));
    assert_eq!(m.remove(long), Some(2));
    assert_eq!(m.get(long), None);
    assert_eq!(before.get(long), Some(&2));
}
