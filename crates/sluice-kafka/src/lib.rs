//! Kafka for Sluice, as Flink's Kafka connector: a source whose partitions
//! are splits, discovered while the job runs (on by default), with offsets
//! in checkpoints and per-partition watermarks. It lives in its own crate so
//! librdkafka's C build stays out of every other crate.
#![deny(missing_docs)]

pub mod discovery;
pub mod enumerator;
mod reader;
pub mod source;
pub mod split;
#[cfg(feature = "testing")]
pub mod testing;

pub use source::{
    json_values, string_values, KafkaDeserializer, KafkaRecord, KafkaSource, KafkaSourceBuilder,
    DEFAULT_DISCOVERY_INTERVAL,
};
pub use split::{KafkaPartitionSplit, OffsetReset, OffsetsInitializer, StartOffset};
