//! Partitioners: which downstream subtask receives each record of an edge.
//! Each is a channel selector over the channels one upstream subtask has on
//! that edge; the selector is generic, so routing a record is a direct call.

use std::marker::PhantomData;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sluice_core::key_group::operator_index_for_key_group;
use sluice_core::{KeyHasher, StreamRecord};

/// The partitioners of the DataStream API, by Flink's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PartitionerKind {
    /// Subtask i sends to subtask i; needs equal parallelism. The only one that allows chaining.
    Forward,
    /// Round robin over all downstream subtasks.
    Rebalance,
    /// Round robin over a local subset of downstream subtasks.
    Rescale,
    /// Uniformly random downstream subtask.
    Shuffle,
    /// Every record to every downstream subtask.
    Broadcast,
    /// By key group of the record's key (`key_by`).
    Hash,
}

impl PartitionerKind {
    /// Flink's display name.
    pub fn name(self) -> &'static str {
        match self {
            PartitionerKind::Forward => "FORWARD",
            PartitionerKind::Rebalance => "REBALANCE",
            PartitionerKind::Rescale => "RESCALE",
            PartitionerKind::Shuffle => "SHUFFLE",
            PartitionerKind::Broadcast => "BROADCAST",
            PartitionerKind::Hash => "HASH",
        }
    }

    /// How upstream and downstream subtasks are wired for this partitioner.
    pub fn distribution(self) -> DistributionPattern {
        match self {
            PartitionerKind::Forward | PartitionerKind::Rescale => DistributionPattern::Pointwise,
            _ => DistributionPattern::AllToAll,
        }
    }
}

/// Which downstream subtasks an upstream subtask has channels to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DistributionPattern {
    /// A contiguous subset (one downstream for each upstream when the parallelism is equal).
    Pointwise,
    /// Every downstream subtask.
    AllToAll,
}

impl DistributionPattern {
    /// The downstream subtasks upstream subtask `index` connects to.
    pub fn targets(
        self,
        index: usize,
        upstream: usize,
        downstream: usize,
    ) -> std::ops::Range<usize> {
        match self {
            DistributionPattern::AllToAll => 0..downstream,
            DistributionPattern::Pointwise if upstream >= downstream => {
                let t = index * downstream / upstream;
                t..t + 1
            }
            DistributionPattern::Pointwise => {
                (index * downstream).div_ceil(upstream)
                    ..((index + 1) * downstream).div_ceil(upstream)
            }
        }
    }
}

/// Picks the channel of one record, among `n` channels of an upstream subtask.
pub trait ChannelSelector<T>: Send {
    /// The channel index for `record`.
    fn select(&mut self, record: &StreamRecord<T>, n: usize) -> usize;
}

/// Round robin, for rebalance and rescale (over different channel sets).
#[derive(Debug)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// Starts at a channel that depends on the upstream subtask, so that
    /// several upstreams do not all begin with the same downstream.
    pub fn new(start: usize) -> Self {
        Self { next: start }
    }
}

impl<T> ChannelSelector<T> for RoundRobin {
    #[inline]
    fn select(&mut self, _record: &StreamRecord<T>, n: usize) -> usize {
        self.next += 1;
        if self.next >= n {
            self.next = 0;
        }
        self.next
    }
}

/// A uniformly random channel, from an RNG seeded by the subtask (replayable).
#[derive(Debug)]
pub struct Shuffle {
    rng: SmallRng,
}

impl Shuffle {
    /// A shuffle seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: SmallRng::seed_from_u64(seed) }
    }
}

impl<T> ChannelSelector<T> for Shuffle {
    #[inline]
    fn select(&mut self, _record: &StreamRecord<T>, n: usize) -> usize {
        self.rng.random_range(0..n)
    }
}

/// The key-group partitioner: key → key group → owning subtask.
pub struct KeyGroupSelector<T, K, F> {
    key_selector: F,
    hasher: KeyHasher,
    max_parallelism: usize,
    _types: PhantomData<fn(&T) -> K>,
}

impl<T, K, F> KeyGroupSelector<T, K, F> {
    /// A selector computing keys with `key_selector`.
    pub fn new(key_selector: F, max_parallelism: usize) -> Self {
        Self { key_selector, hasher: KeyHasher::new(), max_parallelism, _types: PhantomData }
    }
}

impl<T, K, F> ChannelSelector<T> for KeyGroupSelector<T, K, F>
where
    K: Serialize,
    F: Fn(&T) -> K + Send,
{
    #[inline]
    fn select(&mut self, record: &StreamRecord<T>, n: usize) -> usize {
        let key = (self.key_selector)(&record.value);
        let group = self.hasher.key_group(&key, self.max_parallelism);
        operator_index_for_key_group(self.max_parallelism, n, group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointwise_wiring_gives_every_downstream_at_least_one_upstream() {
        for up in 1..8 {
            for down in 1..8 {
                let mut seen = vec![0; down];
                for i in 0..up {
                    for t in DistributionPattern::Pointwise.targets(i, up, down) {
                        seen[t] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c >= 1), "up={up} down={down} {seen:?}");
                if up >= down {
                    assert_eq!(seen.iter().sum::<usize>(), up);
                } else {
                    assert_eq!(seen.iter().sum::<usize>(), down);
                }
            }
        }
    }
}
