//! A Kafka partition as a source split, and where reading it starts and stops.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_runtime::SourceSplit;

/// Where a partition without a committed offset starts (Kafka's `auto.offset.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetReset {
    /// From its first record.
    Earliest,
    /// After its last record.
    Latest,
}

/// Where reading a partition starts, or stops in bounded mode (Flink's `OffsetsInitializer`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OffsetsInitializer {
    /// The partition's first record.
    Earliest,
    /// The partition's end when the source first sees it.
    Latest,
    /// The consumer group's committed offset, else `reset`.
    Committed(OffsetReset),
    /// The first record at or after this timestamp (ms since the epoch).
    Timestamp(i64),
    /// Given offsets per (topic, partition); partitions not listed start from the earliest.
    Offsets(BTreeMap<(String, i32), i64>),
}

impl OffsetsInitializer {
    /// The first record of each partition.
    pub fn earliest() -> Self {
        Self::Earliest
    }

    /// The end of each partition when first seen.
    pub fn latest() -> Self {
        Self::Latest
    }

    /// The group's committed offsets; `reset` where there are none.
    pub fn committed_or(reset: OffsetReset) -> Self {
        Self::Committed(reset)
    }

    /// The first record at or after `millis` since the epoch.
    pub fn timestamp(millis: i64) -> Self {
        Self::Timestamp(millis)
    }

    /// Given offsets.
    pub fn offsets(offsets: impl IntoIterator<Item = ((String, i32), i64)>) -> Self {
        Self::Offsets(offsets.into_iter().collect())
    }
}

/// Where a split starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartOffset {
    /// This offset: the next record to read.
    Offset(i64),
    /// The partition's first record (resolved by the consumer when it assigns).
    Earliest,
}

/// One partition of one topic: a split of the Kafka source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaPartitionSplit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Where reading continues.
    pub start: StartOffset,
    /// Bounded mode: the offset reading stops before.
    pub stop: Option<i64>,
}

impl KafkaPartitionSplit {
    /// The split id of a partition, "topic-partition" as Kafka names it.
    pub fn id_of(topic: &str, partition: i32) -> String {
        format!("{topic}-{partition}")
    }
}

impl SourceSplit for KafkaPartitionSplit {
    fn split_id(&self) -> String {
        Self::id_of(&self.topic, self.partition)
    }
}
