//! The Flink Kafka word count in Sluice: lines from a Kafka topic, with
//! event time and watermarks per partition; `rebalance`; words keyed by
//! themselves; a rolling sum; counts written back to Kafka exactly once.
//!
//! Run against a broker (for example `scripts/kafka-brokers start`):
//! `cargo run --release -p sluice-kafka --example kafka_wordcount -- localhost:9092 lines counts`
//! and write lines into the topic `lines`; stop with Ctrl-C.

use std::time::Duration;

use sluice::{Result, StreamExecutionEnvironment, WatermarkStrategy};
use sluice_kafka::{
    string_values, DeliveryGuarantee, KafkaSink, KafkaSource, OffsetReset, OffsetsInitializer,
    ProducerRecord,
};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(brokers), Some(input), Some(output)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: kafka_wordcount BOOTSTRAP_SERVERS INPUT_TOPIC OUTPUT_TOPIC");
        std::process::exit(2);
    };

    let env = StreamExecutionEnvironment::new();
    // Exactly-once output commits with checkpoints.
    env.enable_checkpointing(Duration::from_secs(1));

    // Partitions are discovered while the job runs (every 10 s by default),
    // and read from the group's committed offsets, else from the start.
    let source = KafkaSource::builder()
        .bootstrap_servers(&brokers)
        .topics([input.as_str()])
        .group_id("kafka-wordcount-example")
        .starting_offsets(OffsetsInitializer::committed_or(OffsetReset::Earliest))
        .value_deserializer(string_values)
        .build()?;
    // Event time is the Kafka record's timestamp; each partition has its own
    // watermark, and a partition with no records for 5 s stops holding it back.
    let watermarks = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(2))
        .with_timestamp_assigner(|_: &String, kafka_timestamp| kafka_timestamp)
        .with_idleness(Duration::from_secs(5));

    let topic = output.clone();
    let sink = KafkaSink::builder()
        .bootstrap_servers(&brokers)
        .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .transactional_id_prefix(format!("kafka-wordcount-example-{output}"))
        .record_serializer(move |(word, count): &(String, u64)| {
            ProducerRecord::to(topic.clone()).key(word.as_bytes()).value(count.to_string())
        })
        .build()?;

    env.from_source_with_watermarks(source, watermarks, "lines")
        .rebalance()
        .flat_map(|line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .map(|word| (word, 1u64))
        .key_by(|(word, _): &(String, u64)| word.clone())
        .sum(|(_, count)| count)
        .sink_to(sink);

    env.execute("kafka word count")?;
    Ok(())
}
