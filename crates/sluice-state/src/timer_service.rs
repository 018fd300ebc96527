//! Timers of a keyed operator (Flink's InternalTimerService): per key and
//! timestamp at most one event-time and one processing-time timer. They
//! are keyed state: taken out and put back by key-group range like the rest.

use std::collections::BTreeMap;
use std::hash::Hash;

use indexmap::IndexMap;
use sluice_core::KeyGroupRange;

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timestamp.
    EventTime,
    /// Fires when the processing-time clock reaches the timestamp.
    ProcessingTime,
}

/// Timers of one domain: by timestamp, then by key in registration order.
#[derive(Debug)]
struct TimerQueue<K> {
    by_time: BTreeMap<i64, IndexMap<K, usize>>,
    len: usize,
}

impl<K: Eq + Hash + Clone> TimerQueue<K> {
    fn new() -> Self {
        Self { by_time: BTreeMap::new(), len: 0 }
    }

    fn register(&mut self, time: i64, key: K, key_group: usize) {
        if self.by_time.entry(time).or_default().insert(key, key_group).is_none() {
            self.len += 1;
        }
    }

    fn delete(&mut self, time: i64, key: &K) {
        if let Some(keys) = self.by_time.get_mut(&time) {
            if keys.shift_remove(key).is_some() {
                self.len -= 1;
            }
            if keys.is_empty() {
                self.by_time.remove(&time);
            }
        }
    }

    fn next(&self) -> Option<i64> {
        self.by_time.keys().next().copied()
    }

    fn pop_due(&mut self, up_to: i64) -> Option<(i64, K, usize)> {
        let mut first = self.by_time.first_entry()?;
        let time = *first.key();
        if time > up_to {
            return None;
        }
        let (key, group) =
            first.get_mut().shift_remove_index(0).expect("timestamps with no key are removed");
        if first.get().is_empty() {
            first.remove();
        }
        self.len -= 1;
        Some((time, key, group))
    }

    fn extract(&mut self, range: KeyGroupRange) -> Vec<(i64, K, usize)> {
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
#[derive(Debug)]
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
