//! Kafka for Sluice, as Flink's Kafka connector: a source whose partitions
//! are splits, discovered while the job runs (on by default), with offsets
//! in checkpoints and per-partition watermarks; and a sink that writes at
//! least once, or exactly once through Kafka transactions tied to
//! checkpoints. It lives in its own crate so librdkafka's C build stays out
//! of every other crate.
#![deny(missing_docs)]

pub mod discovery;
pub mod enumerator;
mod reader;
pub mod sink;
pub mod source;
pub mod split;
#[cfg(feature = "testing")]
pub mod testing;
mod transactions;
mod wire;

pub use sink::{DeliveryGuarantee, KafkaCommittable, KafkaSink, KafkaSinkBuilder, ProducerRecord};
pub use source::{
    json_values, string_values, KafkaDeserializer, KafkaRecord, KafkaSource, KafkaSourceBuilder,
    DEFAULT_DISCOVERY_INTERVAL,
};
pub use split::{KafkaPartitionSplit, OffsetReset, OffsetsInitializer, StartOffset};
