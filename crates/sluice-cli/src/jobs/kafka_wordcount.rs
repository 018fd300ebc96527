//! Word count from Kafka to Kafka, the seed's Flink job in Sluice: lines
//! from a topic → words → a rolling count per word → `word` → `count` (key
//! and value as UTF-8 text) into another topic, at least once or exactly once.

use std::time::Duration;

use sluice::{Result, StreamExecutionEnvironment};
use sluice_kafka::{
    string_values, DeliveryGuarantee, KafkaSink, KafkaSource, OffsetReset, OffsetsInitializer,
    ProducerRecord,
};

use crate::jobs::wordcount::tokenize;

/// Where the word count reads and writes.
#[derive(Clone, Debug)]
pub struct KafkaWordCountOptions {
    /// The brokers.
    pub bootstrap_servers: String,
    /// The topic of lines.
    pub input_topic: String,
    /// The topic of counts.
    pub output_topic: String,
    /// The consumer group (offsets committed at checkpoints, for monitoring).
    pub group_id: String,
    /// How often new partitions are looked for (zero: never).
    pub partition_discovery_interval: Duration,
    /// What the sink promises.
    pub delivery_guarantee: DeliveryGuarantee,
}

/// Adds the job to `env`.
pub fn kafka_word_count(env: &StreamExecutionEnvironment, o: &KafkaWordCountOptions) -> Result<()> {
    let source = KafkaSource::builder()
        .bootstrap_servers(&o.bootstrap_servers)
        .topics([o.input_topic.as_str()])
        .group_id(&o.group_id)
        .starting_offsets(OffsetsInitializer::committed_or(OffsetReset::Earliest))
        .partition_discovery_interval(o.partition_discovery_interval)
        .value_deserializer(string_values)
        .build()?;
    let topic = o.output_topic.clone();
    let sink = KafkaSink::builder()
        .bootstrap_servers(&o.bootstrap_servers)
        .delivery_guarantee(o.delivery_guarantee)
        // Stable across restarts of this job, so a restore finds what it left open.
        .transactional_id_prefix(format!("sluice-kafka-wordcount-{}", o.output_topic))
        .record_serializer(move |(word, count): &(String, u64)| {
            ProducerRecord::to(topic.clone()).key(word.as_bytes()).value(count.to_string())
        })
        .build()?;
    env.from_source(source, "lines")
        .uid("lines")
        .rebalance()
        .flat_map(|line: String| tokenize(&line))
        .map(|word| (word, 1u64))
        .key_by(|(word, _): &(String, u64)| word.clone())
        .sum(|(_, count)| count)
        .uid("counts")
        .sink_to(sink)
        .name("Sink: Kafka")
        .uid("kafka-sink");
    Ok(())
}
