//! A value per key, on the heap, partitioned by key group.
//!
//! Invariant: a key lives in exactly the map of its key group, and only key
//! groups of the owning subtask's [`KeyGroupRange`] exist here.

use std::hash::Hash;

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_core::{KeyGroupRange, Result, SluiceError};

use crate::key_grouped::{KeyGroupedState, KeyGroupedView};

/// The entries of one key group, as extracted for a move to another subtask.
pub type KeyGroupEntries<K, V> = (usize, Vec<(K, V)>);

/// One value per key for the key groups of one subtask.
///
/// Copy-on-write per key group: each group's map sits behind an `Arc`, a
/// snapshot view shares them, and the first write to a group that a view
/// still holds copies that group only.
#[derive(Debug)]
pub struct HeapValueState<K, V> {
    range: KeyGroupRange,
    groups: Vec<Arc<HashMap<K, V>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> HeapValueState<K, V> {
    /// Empty state for the key groups in `range`.
    pub fn new(range: KeyGroupRange) -> Self {
        Self { range, groups: (0..range.len()).map(|_| Arc::new(HashMap::new())).collect() }
    }

    /// The key-group range this state holds.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    #[inline]
    fn group(&mut self, key_group: usize) -> &mut HashMap<K, V> {
        debug_assert!(
            self.range.contains(key_group),
            "key group {key_group} not in {:?}",
            self.range
        );
        Arc::make_mut(&mut self.groups[key_group - self.range.start])
    }

    /// The value of `key`, if any.
    #[inline]
    pub fn get(&self, key_group: usize, key: &K) -> Option<&V> {
        self.groups[key_group - self.range.start].get(key)
    }

    /// The value of `key`, mutable, if any.
    #[inline]
    pub fn get_mut(&mut self, key_group: usize, key: &K) -> Option<&mut V> {
        self.group(key_group).get_mut(key)
    }

    /// Sets the value of `key`, returning the previous one.
    #[inline]
    pub fn put(&mut self, key_group: usize, key: K, value: V) -> Option<V> {
        self.group(key_group).insert(key, value)
    }

    /// Replaces the value of `key` by `f(previous)` in one lookup, moving the
    /// previous value into `f` (no clone), and returns the new value.
    #[inline]
    pub fn update(&mut self, key_group: usize, key: K, f: impl FnOnce(Option<V>) -> V) -> &mut V {
        match self.group(key_group).entry(key) {
            Entry::Occupied(e) => match e.replace_entry_with(|_, v| Some(f(Some(v)))) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(_) => unreachable!("replace_entry_with returned Some"),
            },
            Entry::Vacant(e) => e.insert(f(None)),
        }
    }

    /// Removes the value of `key`.
    pub fn remove(&mut self, key_group: usize, key: &K) -> Option<V> {
        self.group(key_group).remove(key)
    }

    /// Keeps only the entries for which `keep` is true; maps left mostly
    /// empty give their memory back.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for map in &mut self.groups {
            if map.is_empty() {
                continue;
            }
            let map = Arc::make_mut(map);
            map.retain(|k, v| keep(k, v));
            if map.capacity() > 16 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
    }

    /// Every entry, key group by key group.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.groups.iter().flat_map(|m| m.iter())
    }

    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.is_empty())
    }

    /// Removes and returns the entries of every key group in `range`, per key group.
    pub fn extract_key_groups(
        &mut self,
        range: KeyGroupRange,
    ) -> Result<Vec<KeyGroupEntries<K, V>>> {
        self.check_range(range)?;
        Ok((range.start..range.end).map(|g| (g, self.group(g).drain().collect())).collect())
    }

    /// Inserts entries of one key group (for example from [`Self::extract_key_groups`]).
    pub fn insert_key_group(&mut self, key_group: usize, entries: Vec<(K, V)>) -> Result<()> {
        self.check_range(KeyGroupRange::new(key_group, key_group + 1))?;
        self.group(key_group).extend(entries);
        Ok(())
    }

    fn check_range(&self, range: KeyGroupRange) -> Result<()> {
        if range.start < self.range.start || range.end > self.range.end {
            return Err(SluiceError::Internal(format!(
                "key groups {range:?} are not in this state's range {:?}",
                self.range
            )));
        }
        Ok(())
    }
}

/// The key groups of a [`HeapValueState`] as they were when the view was taken.
struct HeapValueStateView<K, V> {
    start: usize,
    groups: Vec<Arc<HashMap<K, V>>>,
}

impl<K: Serialize + Send + Sync, V: Serialize + Send + Sync> KeyGroupedView
    for HeapValueStateView<K, V>
{
    fn snapshot_groups(&self) -> Result<BTreeMap<usize, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for (i, map) in self.groups.iter().enumerate() {
            if !map.is_empty() {
                let entries: Vec<(&K, &V)> = map.iter().collect();
                out.insert(self.start + i, postcard::to_allocvec(&entries)?);
            }
        }
        Ok(out)
    }
}

impl<K, V> KeyGroupedState for HeapValueState<K, V>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn view(&self) -> Box<dyn KeyGroupedView> {
        Box::new(HeapValueStateView { start: self.range.start, groups: self.groups.clone() })
    }

    fn restore_group(&mut self, key_group: usize, bytes: &[u8]) -> Result<()> {
        let entries: Vec<(K, V)> = postcard::from_bytes(bytes)?;
        self.insert_key_group(key_group, entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::KeyHasher;

    #[test]
    fn entries_moved_between_subtasks_by_key_group_keep_their_values() {
        let max = 128;
        let mut h = KeyHasher::new();
        let mut from = HeapValueState::new(KeyGroupRange::new(0, max));
        for k in 0..1000u64 {
            from.put(h.key_group(&k, max), k, k * 2);
        }
        let mut to = [0, 1].map(|i| HeapValueState::new(KeyGroupRange::for_operator(max, 2, i)));
        for (i, target) in to.iter_mut().enumerate() {
            let range = target.key_group_range();
            for (g, entries) in from.extract_key_groups(range).unwrap() {
                assert_eq!(sluice_core::key_group::operator_index_for_key_group(max, 2, g), i);
                target.insert_key_group(g, entries).unwrap();
            }
        }
        assert!(from.is_empty());
        assert_eq!(to[0].len() + to[1].len(), 1000);
        for k in 0..1000u64 {
            let g = h.key_group(&k, max);
            let owner = &to[sluice_core::key_group::operator_index_for_key_group(max, 2, g)];
            assert_eq!(owner.get(g, &k), Some(&(k * 2)));
        }
    }

    #[test]
    fn a_view_taken_at_a_barrier_keeps_the_values_of_that_moment_while_writes_go_on() {
        use crate::key_grouped::{restore_key_groups, serialize_key_groups, view_key_groups};
        let max = 16;
        let mut h = KeyHasher::new();
        let mut state = HeapValueState::new(KeyGroupRange::new(0, max));
        for k in 0..100u64 {
            state.put(h.key_group(&k, max), k, 1u64);
        }
        let views = view_key_groups(&[&state]);
        // The task writes on after the barrier: every key, and new keys.
        for k in 0..200u64 {
            state.put(h.key_group(&k, max), k, 2);
        }
        let snapshot = std::thread::spawn(move || serialize_key_groups(&views)).join().unwrap();
        let mut restored = HeapValueState::<u64, u64>::new(KeyGroupRange::new(0, max));
        restore_key_groups(&mut [&mut restored], &snapshot.unwrap()).unwrap();
        assert_eq!(restored.len(), 100);
        for k in 0..100u64 {
            assert_eq!(restored.get(h.key_group(&k, max), &k), Some(&1));
        }
        assert_eq!(state.get(h.key_group(&7u64, max), &7), Some(&2));
    }

    #[test]
    fn extracting_a_range_outside_the_state_is_an_error() {
        let mut s: HeapValueState<u64, u64> = HeapValueState::new(KeyGroupRange::new(0, 64));
        assert!(s.extract_key_groups(KeyGroupRange::new(32, 96)).is_err());
    }
}
