//! A value per key, on the heap, partitioned by key group.
//!
//! Invariant: a key lives in exactly the map of its key group, and only key
//! groups of the owning subtask's [`KeyGroupRange`] exist here.

use std::hash::Hash;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

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
/// Snapshots are *serialize-on-write*: a view taken at a barrier freezes each
/// non-empty key group, and the group's bytes are written once, by whichever
/// comes first: the view, serializing off the task thread, or the task, just
/// before it next writes to the group. So a group is never copied, the task
/// serializes only the groups it writes while a snapshot is in flight (work a
/// synchronous snapshot would have done anyway), and a group not written
/// since the last barrier keeps its bytes for the next one. A group no view
/// holds is a plain map: reads and writes between checkpoints touch no
/// reference count.
#[derive(Debug)]
pub struct HeapValueState<K, V> {
    range: KeyGroupRange,
    groups: Vec<Group<K, V>>,
}

/// A key group's bytes in a snapshot, written at most once.
type GroupBytes = Arc<OnceLock<std::result::Result<Vec<u8>, String>>>;

/// Writes a key group's entries.
type SerializeGroup<K, V> = fn(&HashMap<K, V>) -> std::result::Result<Vec<u8>, String>;

/// One key group's map: owned, or frozen for the snapshot views taken since
/// it was last written.
#[derive(Debug)]
enum Group<K, V> {
    Owned(HashMap<K, V>),
    Frozen(Frozen<K, V>),
}

/// A key group frozen at a barrier. The views hold the map weakly, so the
/// task takes it back without a copy once the bytes are written.
#[derive(Debug)]
struct Frozen<K, V> {
    map: Arc<HashMap<K, V>>,
    bytes: GroupBytes,
    serialize: SerializeGroup<K, V>,
}

impl<K: Clone, V: Clone> Group<K, V> {
    #[inline]
    fn map(&self) -> &HashMap<K, V> {
        match self {
            Group::Owned(map) => map,
            Group::Frozen(f) => &f.map,
        }
    }

    #[inline]
    fn map_mut(&mut self) -> &mut HashMap<K, V> {
        if let Group::Frozen(_) = self {
            self.thaw();
        }
        match self {
            Group::Owned(map) => map,
            Group::Frozen(_) => unreachable!("thawed above"),
        }
    }

    /// Takes the map back for a write: first writes its bytes if a view
    /// still wants them and none has yet.
    #[cold]
    fn thaw(&mut self) {
        if let Group::Frozen(f) = std::mem::replace(self, Group::Owned(HashMap::new())) {
            if Arc::strong_count(&f.bytes) > 1 {
                f.bytes.get_or_init(|| (f.serialize)(&f.map));
            }
            // A view upgrades its weak reference only while writing the
            // bytes, which are written by now, so the map is not copied.
            *self = Group::Owned(Arc::try_unwrap(f.map).unwrap_or_else(|map| (*map).clone()));
        }
    }
}

impl<K, V> Group<K, V>
where
    K: Serialize + Eq + Hash,
    V: Serialize,
{
    /// Freezes the group for a view: its map, weakly, and the slot of its
    /// bytes. `None` for an empty group, which a snapshot leaves out.
    fn freeze(&mut self, key_group: usize) -> Option<FrozenRef<K, V>> {
        if let Group::Owned(map) = self {
            if map.is_empty() {
                return None;
            }
            *self = Group::Frozen(Frozen {
                map: Arc::new(std::mem::take(map)),
                bytes: Arc::default(),
                serialize: serialize_group::<K, V>,
            });
        }
        match self {
            Group::Frozen(f) => Some(FrozenRef {
                key_group,
                map: Arc::downgrade(&f.map),
                bytes: f.bytes.clone(),
                serialize: f.serialize,
            }),
            Group::Owned(_) => unreachable!("frozen above"),
        }
    }
}

fn serialize_group<K: Serialize + Eq + Hash, V: Serialize>(
    map: &HashMap<K, V>,
) -> std::result::Result<Vec<u8>, String> {
    // postcard writes a map as it writes a sequence of pairs, which is what
    // `restore_group` reads.
    postcard::to_allocvec(map).map_err(|e| e.to_string())
}

impl<K: Eq + Hash + Clone, V: Clone> HeapValueState<K, V> {
    /// Empty state for the key groups in `range`.
    pub fn new(range: KeyGroupRange) -> Self {
        Self { range, groups: (0..range.len()).map(|_| Group::Owned(HashMap::new())).collect() }
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
        self.groups[key_group - self.range.start].map_mut()
    }

    /// The value of `key`, if any.
    #[inline]
    pub fn get(&self, key_group: usize, key: &K) -> Option<&V> {
        self.groups[key_group - self.range.start].map().get(key)
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
        for group in &mut self.groups {
            if group.map().is_empty() {
                continue;
            }
            let map = group.map_mut();
            map.retain(|k, v| keep(k, v));
            if map.capacity() > 16 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
    }

    /// Every entry, key group by key group.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.groups.iter().flat_map(|g| g.map().iter())
    }

    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.map().len()).sum()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.map().is_empty())
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

/// A view's hold on one frozen key group.
struct FrozenRef<K, V> {
    key_group: usize,
    map: Weak<HashMap<K, V>>,
    bytes: GroupBytes,
    serialize: SerializeGroup<K, V>,
}

/// The key groups of a [`HeapValueState`] as they were when the view was taken.
struct HeapValueStateView<K, V> {
    groups: Vec<FrozenRef<K, V>>,
}

impl<K: Send + Sync, V: Send + Sync> KeyGroupedView for HeapValueStateView<K, V> {
    fn snapshot_groups(&self) -> Result<BTreeMap<usize, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for FrozenRef { key_group, map, bytes, serialize } in &self.groups {
            let written = bytes.get_or_init(|| match map.upgrade() {
                Some(map) => serialize(&map),
                None => Err("the task took the map back before writing its bytes".into()),
            });
            let written = written
                .as_ref()
                .map_err(|e| SluiceError::Serialization(format!("key group {key_group}: {e}")))?;
            out.insert(*key_group, written.clone());
        }
        Ok(out)
    }
}

impl<K, V> KeyGroupedState for HeapValueState<K, V>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn view(&mut self) -> Box<dyn KeyGroupedView> {
        let start = self.range.start;
        let groups =
            self.groups.iter_mut().enumerate().filter_map(|(i, g)| g.freeze(start + i)).collect();
        Box::new(HeapValueStateView { groups })
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
        let views = view_key_groups(&mut [&mut state]);
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
    fn views_taken_at_successive_barriers_each_keep_their_own_moment() {
        use crate::key_grouped::{serialize_key_groups, view_key_groups};
        let mut state = HeapValueState::new(KeyGroupRange::new(0, 4));
        state.put(1, 1u32, 1u64);
        let first = view_key_groups(&mut [&mut state]);
        state.put(1, 1u32, 2);
        let second = view_key_groups(&mut [&mut state]);
        state.put(1, 1u32, 3);
        drop(first);
        state.put(2, 2u32, 9);
        let bytes = |views: Vec<_>| serialize_key_groups(&views).unwrap();
        let mut expected = HeapValueState::new(KeyGroupRange::new(0, 4));
        expected.put(1, 1u32, 2u64);
        assert_eq!(bytes(second), bytes(view_key_groups(&mut [&mut expected])));
        assert_eq!(state.get(1, &1u32), Some(&3));
        assert_eq!(state.len(), 2);
    }

    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// A value that must never be copied, and counts in its test's counter
    /// how often it is written.
    #[derive(Debug)]
    struct NoCopy(u64, &'static AtomicUsize);

    impl PartialEq for NoCopy {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }

    impl Clone for NoCopy {
        fn clone(&self) -> Self {
            panic!("state entry {} was copied", self.0)
        }
    }

    impl<'de> serde::Deserialize<'de> for NoCopy {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> std::result::Result<Self, D::Error> {
            Err(serde::de::Error::custom("these tests restore NoCopy entries as u64"))
        }
    }

    impl Serialize for NoCopy {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            self.1.fetch_add(1, Relaxed);
            s.serialize_u64(self.0)
        }
    }

    #[test]
    fn writes_while_a_snapshot_is_in_flight_copy_nothing_and_each_entry_is_written_once() {
        use crate::key_grouped::{serialize_key_groups, view_key_groups};
        static WRITES: AtomicUsize = AtomicUsize::new(0);
        let groups = 8;
        let mut state = HeapValueState::new(KeyGroupRange::new(0, groups));
        for k in 0..64u64 {
            state.put(k as usize % groups, k, NoCopy(k, &WRITES));
        }
        let views = view_key_groups(&mut [&mut state]);
        // The task writes to half the groups before the view is serialized:
        // it writes their bytes itself, then takes its maps back unchanged.
        for k in (0..64u64).filter(|k| k % 8 < 4) {
            *state.get_mut(k as usize % groups, &k).expect("present") = NoCopy(k + 100, &WRITES);
        }
        let bytes = std::thread::spawn(move || serialize_key_groups(&views)).join().unwrap();
        assert_eq!(WRITES.load(Relaxed), 64, "each entry written once");
        let mut restored = HeapValueState::<u64, u64>::new(KeyGroupRange::new(0, groups));
        crate::key_grouped::restore_key_groups(&mut [&mut restored], &bytes.unwrap()).unwrap();
        assert!((0..64u64).all(|k| restored.get(k as usize % groups, &k) == Some(&k)));
        assert_eq!(state.get(0, &0), Some(&NoCopy(100, &WRITES)));
    }

    #[test]
    fn a_key_group_not_written_since_the_last_barrier_keeps_its_bytes_for_the_next() {
        use crate::key_grouped::{serialize_key_groups, view_key_groups};
        let mut state = HeapValueState::new(KeyGroupRange::new(0, 4));
        state.put(1, 1u32, 1u64);
        state.put(2, 2u32, 2u64);
        let first = serialize_key_groups(&view_key_groups(&mut [&mut state])).unwrap();
        let views = view_key_groups(&mut [&mut state]);
        state.put(2, 2u32, 3);
        let second = serialize_key_groups(&views).unwrap();
        assert_eq!(first, second, "the second view saw the state of its barrier");
        let third = serialize_key_groups(&view_key_groups(&mut [&mut state])).unwrap();
        assert_eq!(third[0], first[0], "group 1 kept its bytes");
        assert_ne!(third[1], first[1], "group 2 was written again");
    }

    #[test]
    fn a_snapshot_dropped_unserialized_costs_the_task_nothing() {
        use crate::key_grouped::view_key_groups;
        static WRITES: AtomicUsize = AtomicUsize::new(0);
        let mut state = HeapValueState::new(KeyGroupRange::new(0, 4));
        state.put(3, 3u32, NoCopy(3, &WRITES));
        drop(view_key_groups(&mut [&mut state]));
        state.put(3, 3u32, NoCopy(4, &WRITES));
        assert_eq!(WRITES.load(Relaxed), 0);
    }

    #[test]
    fn extracting_a_range_outside_the_state_is_an_error() {
        let mut s: HeapValueState<u64, u64> = HeapValueState::new(KeyGroupRange::new(0, 64));
        assert!(s.extract_key_groups(KeyGroupRange::new(32, 96)).is_err());
    }
}
