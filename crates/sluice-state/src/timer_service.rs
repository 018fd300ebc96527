//! Timers of a keyed operator (Flink's InternalTimerService): per key and
//! timestamp at most one event-time and one processing-time timer. They
//! are keyed state: taken out and put back by key-group range like the rest.

use std::collections::BTreeMap;
use std::hash::Hash;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_core::{KeyGroupRange, Result};

use crate::key_grouped::{KeyGroupedState, KeyGroupedView};

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timestamp.
    EventTime,
    /// Fires when the processing-time clock reaches the timestamp.
    ProcessingTime,
}

/// The keys with a timer at one timestamp, with their key groups. Hashed
/// with hashbrown's fast hasher: timers are registered per record.
type KeysAt<K> = IndexMap<K, usize, hashbrown::DefaultHashBuilder>;

/// Timers of one domain: by timestamp, then by key in registration order.
/// The keys of the timestamp being fired are taken out whole and drained
/// from the back of a reversed map, so each firing is O(1).
#[derive(Debug)]
struct TimerQueue<K> {
    by_time: BTreeMap<i64, KeysAt<K>>,
    draining: Option<(i64, KeysAt<K>)>,
    len: usize,
    /// Emptied key maps, reused for the next new timestamp: when each timer
    /// has a timestamp of its own (session windows), registering would
    /// otherwise build and drop a map per timer.
    spare: Vec<KeysAt<K>>,
}

/// How many emptied key maps a queue keeps for reuse.
const SPARE_KEY_MAPS: usize = 16;

impl<K: Clone> Clone for TimerQueue<K> {
    fn clone(&self) -> Self {
        // The spare maps are empty: a copy (a snapshot's view) needs none.
        Self {
            by_time: self.by_time.clone(),
            draining: self.draining.clone(),
            len: self.len,
            spare: Vec::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> TimerQueue<K> {
    fn new() -> Self {
        Self { by_time: BTreeMap::new(), draining: None, len: 0, spare: Vec::new() }
    }

    fn register(&mut self, time: i64, key: K, key_group: usize) {
        if let Some((t, keys)) = &mut self.draining {
            if *t == time && keys.contains_key(&key) {
                return;
            }
        }
        let spare = &mut self.spare;
        let keys = self.by_time.entry(time).or_insert_with(|| spare.pop().unwrap_or_default());
        if keys.insert(key, key_group).is_none() {
            self.len += 1;
        }
    }

    fn delete(&mut self, time: i64, key: &K) {
        if let Some((t, keys)) = &mut self.draining {
            if *t == time && keys.shift_remove(key).is_some() {
                self.len -= 1;
                return;
            }
        }
        let Some(keys) = self.by_time.get_mut(&time) else { return };
        if keys.shift_remove(key).is_some() {
            self.len -= 1;
        }
        if keys.is_empty() {
            let keys = self.by_time.remove(&time).expect("present");
            self.recycle(keys);
        }
    }

    /// Keeps an emptied key map for the next new timestamp.
    fn recycle(&mut self, keys: KeysAt<K>) {
        debug_assert!(keys.is_empty());
        if self.spare.len() < SPARE_KEY_MAPS {
            self.spare.push(keys);
        }
    }

    fn next(&self) -> Option<i64> {
        let draining = self.draining.as_ref().filter(|(_, k)| !k.is_empty()).map(|(t, _)| *t);
        match (draining, self.by_time.keys().next().copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pop_due(&mut self, up_to: i64) -> Option<(i64, K, usize)> {
        loop {
            if let Some((time, keys)) = &mut self.draining {
                let earlier = self.by_time.keys().next().is_some_and(|t| t < time);
                if !earlier {
                    if let Some((key, group)) = keys.pop() {
                        self.len -= 1;
                        return Some((*time, key, group));
                    }
                    if let Some((_, keys)) = self.draining.take() {
                        self.recycle(keys);
                    }
                }
            }
            let (&time, _) = self.by_time.first_key_value()?;
            if time > up_to {
                return None;
            }
            let mut keys = self.by_time.remove(&time).expect("present");
            keys.reverse();
            if let Some((t, rest)) = self.draining.take() {
                // An earlier timestamp was registered while draining: put the rest back.
                let mut rest = rest;
                rest.reverse();
                let entry = self.by_time.entry(t).or_default();
                for (k, g) in rest {
                    entry.insert(k, g);
                }
            }
            self.draining = Some((time, keys));
        }
    }

    fn extract(&mut self, range: KeyGroupRange) -> Vec<(i64, K, usize)> {
        if let Some((t, mut keys)) = self.draining.take() {
            keys.reverse();
            let entry = self.by_time.entry(t).or_default();
            for (k, g) in keys {
                entry.insert(k, g);
            }
        }
        let mut out = Vec::new();
        for (time, keys) in &mut self.by_time {
            keys.retain(|k, g| {
                let take = range.contains(*g);
                if take {
                    out.push((*time, k.clone(), *g));
                }
                !take
            });
        }
        self.by_time.retain(|_, keys| !keys.is_empty());
        self.len -= out.len();
        out
    }
}

/// Event-time and processing-time timers of one keyed operator instance.
#[derive(Clone, Debug)]
pub struct InternalTimerService<K> {
    event_time: TimerQueue<K>,
    processing_time: TimerQueue<K>,
}

/// Timers taken out by key-group range.
#[derive(Debug)]
pub struct TimersSnapshot<K> {
    event_time: Vec<(i64, K, usize)>,
    processing_time: Vec<(i64, K, usize)>,
}

impl<K: Eq + Hash + Clone> Default for InternalTimerService<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone> InternalTimerService<K> {
    /// No timers.
    pub fn new() -> Self {
        Self { event_time: TimerQueue::new(), processing_time: TimerQueue::new() }
    }

    fn queue(&mut self, domain: TimeDomain) -> &mut TimerQueue<K> {
        match domain {
            TimeDomain::EventTime => &mut self.event_time,
            TimeDomain::ProcessingTime => &mut self.processing_time,
        }
    }

    /// Registers a timer; registering the same key and time again does nothing.
    pub fn register(&mut self, domain: TimeDomain, time: i64, key: K, key_group: usize) {
        self.queue(domain).register(time, key, key_group);
    }

    /// Deletes a timer, if it exists.
    pub fn delete(&mut self, domain: TimeDomain, time: i64, key: &K) {
        self.queue(domain).delete(time, key);
    }

    /// The earliest processing-time timer.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.processing_time.next()
    }

    /// The earliest event-time timer.
    pub fn next_event_time(&self) -> Option<i64> {
        self.event_time.next()
    }

    /// Removes and returns the earliest timer of `domain` at or before `up_to`.
    pub fn pop_due(&mut self, domain: TimeDomain, up_to: i64) -> Option<(i64, K, usize)> {
        self.queue(domain).pop_due(up_to)
    }

    /// Number of timers.
    pub fn len(&self) -> usize {
        self.event_time.len + self.processing_time.len
    }

    /// Whether there is no timer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes out the timers of the key groups in `range`.
    pub fn extract_key_groups(&mut self, range: KeyGroupRange) -> TimersSnapshot<K> {
        TimersSnapshot {
            event_time: self.event_time.extract(range),
            processing_time: self.processing_time.extract(range),
        }
    }

    /// Puts back timers taken out by [`Self::extract_key_groups`].
    pub fn insert_key_groups(&mut self, snapshot: TimersSnapshot<K>) {
        for (t, k, g) in snapshot.event_time {
            self.event_time.register(t, k, g);
        }
        for (t, k, g) in snapshot.processing_time {
            self.processing_time.register(t, k, g);
        }
    }
}

/// A copy of the timers as they were at the barrier (timers are few next
/// to state, so a plain copy is the view).
struct TimersView<K>(InternalTimerService<K>);

impl<K: Serialize + Send> KeyGroupedView for TimersView<K> {
    fn snapshot_groups(&self) -> Result<BTreeMap<usize, Vec<u8>>> {
        let mut groups: BTreeMap<usize, Vec<(u8, i64, &K)>> = BTreeMap::new();
        for (domain, queue) in [(0u8, &self.0.event_time), (1u8, &self.0.processing_time)] {
            let draining = queue.draining.iter().map(|(t, keys)| (t, keys));
            for (time, keys) in queue.by_time.iter().chain(draining) {
                for (key, group) in keys {
                    groups.entry(*group).or_default().push((domain, *time, key));
                }
            }
        }
        groups.into_iter().map(|(g, timers)| Ok((g, postcard::to_allocvec(&timers)?))).collect()
    }
}

impl<K: Eq + Hash + Clone + Send + Serialize + DeserializeOwned + 'static> KeyGroupedState
    for InternalTimerService<K>
{
    fn view(&mut self) -> Box<dyn KeyGroupedView> {
        Box::new(TimersView(self.clone()))
    }

    fn restore_group(&mut self, key_group: usize, bytes: &[u8]) -> Result<()> {
        let timers: Vec<(u8, i64, K)> = postcard::from_bytes(bytes)?;
        for (domain, time, key) in timers {
            let domain =
                if domain == 0 { TimeDomain::EventTime } else { TimeDomain::ProcessingTime };
            self.register(domain, time, key, key_group);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::TimeDomain::*;
    use super::*;

    #[test]
    fn timers_are_deduplicated_per_key_and_time_and_fire_in_time_order() {
        let mut t = InternalTimerService::new();
        t.register(EventTime, 20, "b", 1);
        t.register(EventTime, 10, "a", 0);
        t.register(EventTime, 10, "a", 0);
        t.register(EventTime, 10, "c", 2);
        assert_eq!(t.len(), 3);
        assert_eq!(t.pop_due(EventTime, 15), Some((10, "a", 0)));
        assert_eq!(t.pop_due(EventTime, 15), Some((10, "c", 2)));
        assert_eq!(t.pop_due(EventTime, 15), None);
        assert_eq!(t.pop_due(EventTime, 20), Some((20, "b", 1)));
        assert!(t.is_empty());
    }

    #[test]
    fn a_deleted_timer_never_fires_and_domains_are_separate() {
        let mut t = InternalTimerService::new();
        t.register(EventTime, 10, 1u8, 0);
        t.register(ProcessingTime, 10, 1u8, 0);
        t.delete(EventTime, 10, &1);
        assert_eq!(t.pop_due(EventTime, 100), None);
        assert_eq!(t.next_processing_time(), Some(10));
        assert_eq!(t.pop_due(ProcessingTime, 10), Some((10, 1, 0)));
    }

    #[test]
    fn many_keys_at_one_time_fire_in_registration_order_and_stay_deduplicated_while_firing() {
        let mut t = InternalTimerService::new();
        for k in 0..10_000u32 {
            t.register(EventTime, 5, k, 0);
        }
        assert_eq!(t.pop_due(EventTime, 5), Some((5, 0, 0)));
        t.register(EventTime, 5, 7, 0);
        t.delete(EventTime, 5, &3);
        let rest: Vec<u32> =
            std::iter::from_fn(|| t.pop_due(EventTime, 5)).map(|(_, k, _)| k).collect();
        assert_eq!(rest.len(), 9_998);
        assert_eq!(&rest[..4], &[1, 2, 4, 5]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_timer_registered_earlier_than_the_one_firing_fires_first() {
        let mut t = InternalTimerService::new();
        t.register(EventTime, 10, "a", 0);
        t.register(EventTime, 10, "b", 0);
        assert_eq!(t.pop_due(EventTime, 20), Some((10, "a", 0)));
        t.register(EventTime, 8, "c", 0);
        assert_eq!(t.pop_due(EventTime, 20), Some((8, "c", 0)));
        assert_eq!(t.pop_due(EventTime, 20), Some((10, "b", 0)));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn timers_moved_to_later_times_one_by_one_fire_once_each_in_time_order() {
        // As session windows do: every record moves its key's timer later.
        let mut t = InternalTimerService::new();
        for step in 0..100i64 {
            for key in 0..5u32 {
                if step > 0 {
                    t.delete(EventTime, step * 10 + key as i64 - 10, &key);
                }
                t.register(EventTime, step * 10 + key as i64, key, 0);
            }
            if step == 50 {
                // Fire nothing yet, but drain a timestamp's map empty once.
                assert_eq!(t.pop_due(EventTime, 0), None);
            }
        }
        assert_eq!(t.len(), 5);
        let fired: Vec<(i64, u32)> = std::iter::from_fn(|| t.pop_due(EventTime, i64::MAX))
            .map(|(at, k, _)| (at, k))
            .collect();
        assert_eq!(fired, (0..5u32).map(|k| (990 + k as i64, k)).collect::<Vec<_>>());
        t.register(EventTime, 5, 9, 0);
        assert_eq!(t.pop_due(EventTime, 5), Some((5, 9, 0)));
    }

    #[test]
    fn timers_move_by_key_group_range() {
        let mut t = InternalTimerService::new();
        for k in 0..10u32 {
            t.register(EventTime, k as i64, k, k as usize);
        }
        let moved = t.extract_key_groups(KeyGroupRange::new(5, 10));
        assert_eq!(t.len(), 5);
        let mut other = InternalTimerService::new();
        other.insert_key_groups(moved);
        let fired: Vec<u32> =
            std::iter::from_fn(|| other.pop_due(EventTime, 100)).map(|(_, k, _)| k).collect();
        assert_eq!(fired, vec![5, 6, 7, 8, 9]);
    }
}
