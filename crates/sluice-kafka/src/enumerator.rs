//! The Kafka source's split enumerator: partitions are splits, each owned by
//! one reader subtask through a stable function of its topic and number, so
//! a restart at the same parallelism gives every partition to the same
//! subtask. Discovery is on by default: every interval the brokers'
//! metadata is read on the discovery thread; a partition added to a
//! subscribed topic, or a new topic matching the pattern, is assigned at
//! once and read from its earliest offset (nothing written before discovery
//! is lost); a deleted topic's partitions are withdrawn from their readers.
//! The partitions known so far are the checkpointed state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::Result;
use sluice_runtime::split_enumerator::{Discoverer, SplitEnumerator, SplitEnumeratorContext};
use sluice_runtime::SourceSplit;
use tracing::{info, warn};
use xxhash_rust::xxh3::xxh3_64;

use crate::split::{KafkaPartitionSplit, StartOffset};

/// The reader subtask that owns a partition: topics start at a stable
/// offset among the readers (a hash of the name), partitions follow round robin.
pub fn owner(topic: &str, partition: i32, readers: usize) -> usize {
    let readers = readers.max(1) as u64;
    let start = (xxh3_64(topic.as_bytes()) & 0x7fff_ffff) % readers;
    ((start + partition.max(0) as u64) % readers) as usize
}

/// What the enumerator checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaEnumeratorState {
    /// Every partition assigned so far, by split id.
    pub known: BTreeMap<String, (String, i32)>,
    /// Splits to assign when the enumerator starts (restored readers' splits).
    pub pending: Vec<KafkaPartitionSplit>,
    /// Whether the first discovery happened: later partitions start at their earliest offset.
    pub initial_discovery_done: bool,
}

/// Assigns partitions to readers as they are discovered.
pub struct KafkaSourceEnumerator {
    state: KafkaEnumeratorState,
    /// Zero: discover once.
    interval: Duration,
    bounded: bool,
    /// Makes the discoverer; it resolves starting offsets on its first run
    /// when asked to (the first discovery of a fresh job).
    make_discoverer: Box<dyn Fn(bool) -> Discoverer<KafkaPartitionSplit> + Send>,
}

impl KafkaSourceEnumerator {
    /// An enumerator from `state` (default for a fresh job).
    pub fn new(
        state: KafkaEnumeratorState,
        interval: Duration,
        bounded: bool,
        make_discoverer: Box<dyn Fn(bool) -> Discoverer<KafkaPartitionSplit> + Send>,
    ) -> Self {
        Self { state, interval, bounded, make_discoverer }
    }

    fn assign(
        &mut self,
        split: KafkaPartitionSplit,
        ctx: &mut SplitEnumeratorContext<KafkaPartitionSplit>,
    ) {
        let reader = owner(&split.topic, split.partition, ctx.parallelism());
        self.state.known.insert(split.split_id(), (split.topic.clone(), split.partition));
        ctx.assign_split(reader, split);
    }
}

impl SplitEnumerator<KafkaPartitionSplit> for KafkaSourceEnumerator {
    fn start(&mut self, ctx: &mut SplitEnumeratorContext<KafkaPartitionSplit>) -> Result<()> {
        for split in std::mem::take(&mut self.state.pending) {
            self.assign(split, ctx);
        }
        if self.bounded && self.state.initial_discovery_done {
            // A restored bounded source reads exactly the partitions it had.
            for reader in 0..ctx.parallelism() {
                ctx.signal_no_more_splits(reader);
            }
            return Ok(());
        }
        let interval = if self.bounded { Duration::ZERO } else { self.interval };
        let discoverer = (self.make_discoverer)(!self.state.initial_discovery_done);
        ctx.discover_periodically(interval, discoverer);
        Ok(())
    }

    fn add_splits_back(&mut self, splits: Vec<KafkaPartitionSplit>) -> Result<()> {
        self.state.pending.extend(splits);
        Ok(())
    }

    fn handle_discovered(
        &mut self,
        partitions: Vec<KafkaPartitionSplit>,
        ctx: &mut SplitEnumeratorContext<KafkaPartitionSplit>,
    ) -> Result<()> {
        let first = !self.state.initial_discovery_done;
        let mut new = Vec::new();
        for mut split in partitions.iter().cloned() {
            if self.state.known.contains_key(&split.split_id()) {
                continue;
            }
            if !first {
                // Found while running: read everything it holds.
                split.start = StartOffset::Earliest;
            }
            new.push(format!(
                "{} → subtask {}",
                split.split_id(),
                owner(&split.topic, split.partition, ctx.parallelism()) + 1
            ));
            self.assign(split, ctx);
        }
        if !new.is_empty() {
            info!(partitions = ?new, "{} Kafka partitions", if first { "assigned" } else { "discovered new" });
        }
        // A topic gone from the metadata was deleted: its partitions are withdrawn.
        let topics: BTreeSet<&str> = partitions.iter().map(|s| s.topic.as_str()).collect();
        let gone: Vec<String> = self
            .state
            .known
            .iter()
            .filter(|(_, (topic, _))| !topics.contains(topic.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some((topic, partition)) = self.state.known.remove(&id) {
                warn!("Kafka topic '{topic}' was deleted: partition {partition} is no longer read");
                ctx.remove_split(owner(&topic, partition, ctx.parallelism()), id);
            }
        }
        self.state.initial_discovery_done = true;
        if self.bounded {
            for reader in 0..ctx.parallelism() {
                ctx.signal_no_more_splits(reader);
            }
        }
        Ok(())
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>> {
        Ok(postcard::to_allocvec(&self.state)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(topic: &str, partition: i32) -> KafkaPartitionSplit {
        KafkaPartitionSplit {
            topic: topic.into(),
            partition,
            start: StartOffset::Offset(5),
            stop: None,
        }
    }

    fn enumerator(state: KafkaEnumeratorState, bounded: bool) -> KafkaSourceEnumerator {
        KafkaSourceEnumerator::new(
            state,
            Duration::from_secs(10),
            bounded,
            Box::new(|_| Box::new(|| Ok(Vec::new()))),
        )
    }

    fn discover(
        e: &mut KafkaSourceEnumerator,
        found: Vec<KafkaPartitionSplit>,
        readers: usize,
    ) -> SplitEnumeratorContext<KafkaPartitionSplit> {
        let mut ctx = SplitEnumeratorContext::new(readers);
        e.handle_discovered(found, &mut ctx).unwrap();
        ctx
    }

    #[test]
    fn each_partition_has_one_stable_owner_and_a_topic_spreads_over_all_readers() {
        for readers in 1..6 {
            let owners: BTreeSet<usize> =
                (0..readers as i32).map(|p| owner("orders", p, readers)).collect();
            assert_eq!(owners.len(), readers, "{readers} partitions over {readers} readers");
        }
        assert_eq!(owner("orders", 3, 4), owner("orders", 3, 4));
    }

    #[test]
    fn the_first_discovery_keeps_the_starting_offsets_and_later_partitions_start_at_the_earliest() {
        let mut e = enumerator(KafkaEnumeratorState::default(), false);
        let mut ctx = discover(&mut e, vec![split("a", 0), split("a", 1)], 2);
        let (assigned, ended) = ctx.take_actions();
        assert_eq!(assigned.len(), 2);
        assert!(assigned.iter().all(|(_, s)| s.start == StartOffset::Offset(5)));
        assert!(ended.is_empty(), "an unbounded source never ends its readers");
        let mut ctx = discover(&mut e, vec![split("a", 0), split("a", 1), split("a", 2)], 2);
        let (assigned, _) = ctx.take_actions();
        assert_eq!(assigned.len(), 1, "only the new partition");
        assert_eq!(assigned[0].1.partition, 2);
        assert_eq!(assigned[0].1.start, StartOffset::Earliest);
        assert_eq!(assigned[0].0, owner("a", 2, 2));
    }

    #[test]
    fn a_deleted_topic_is_withdrawn_from_its_readers() {
        let mut e = enumerator(KafkaEnumeratorState::default(), false);
        discover(&mut e, vec![split("a", 0), split("b", 0)], 2);
        let mut ctx = discover(&mut e, vec![split("a", 0)], 2);
        assert_eq!(ctx.take_removals(), vec![(owner("b", 0, 2), "b-0".to_string())]);
        assert_eq!(e.state.known.len(), 1);
    }

    #[test]
    fn a_restored_enumerator_reassigns_the_readers_splits_by_owner_and_knows_its_partitions() {
        let mut e = enumerator(KafkaEnumeratorState::default(), false);
        discover(&mut e, vec![split("a", 0), split("a", 1), split("a", 2)], 2);
        let state: KafkaEnumeratorState =
            postcard::from_bytes(&e.snapshot_state().unwrap()).unwrap();
        for readers in [2, 3] {
            let mut e = enumerator(state.clone(), false);
            e.add_splits_back(vec![split("a", 0), split("a", 1), split("a", 2)]).unwrap();
            let mut ctx = SplitEnumeratorContext::new(readers);
            e.start(&mut ctx).unwrap();
            let (assigned, _) = ctx.take_actions();
            for (reader, s) in &assigned {
                assert_eq!(*reader, owner(&s.topic, s.partition, readers));
            }
            assert_eq!(assigned.len(), 3);
            let (again, _) =
                discover(&mut e, vec![split("a", 0), split("a", 1), split("a", 2)], readers)
                    .take_actions();
            assert!(again.is_empty(), "known partitions are never assigned twice");
        }
    }

    #[test]
    fn a_bounded_source_ends_its_readers_after_the_first_discovery() {
        let mut e = enumerator(KafkaEnumeratorState::default(), true);
        let (_, ended) = discover(&mut e, vec![split("a", 0)], 3).take_actions();
        assert_eq!(ended, BTreeSet::from([0, 1, 2]));
    }
}
