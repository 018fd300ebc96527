//! Partition discovery: which partitions the subscription covers now, read
//! from the brokers' metadata on the enumerator's discovery thread, and the
//! concrete offsets a new partition starts (and, bounded, stops) at.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;
use sluice_core::{Result, SluiceError};
use tracing::{info, warn};

use crate::split::{KafkaPartitionSplit, OffsetReset, OffsetsInitializer, StartOffset};

/// How long one metadata or offset request may take unless set otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The topics a source reads.
#[derive(Clone, Debug)]
pub enum Subscription {
    /// These topics.
    Topics(Vec<String>),
    /// Every topic whose whole name matches.
    Pattern(Regex),
}

impl Subscription {
    fn matches(&self, topic: &str) -> bool {
        match self {
            Subscription::Topics(topics) => topics.iter().any(|t| t == topic),
            Subscription::Pattern(re) => re.is_match(topic),
        }
    }
}

/// A Kafka client error, naming the cluster; authorization failures are the
/// job's configuration (restarting cannot help), anything else may heal.
pub fn kafka_error(bootstrap: &str, what: &str, e: &KafkaError) -> SluiceError {
    let code = e.rdkafka_error_code();
    let denied = matches!(
        code,
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
        )
    );
    if denied {
        SluiceError::Config(format!("kafka {bootstrap}: {what}: not authorized: {e}"))
    } else {
        SluiceError::external(format!("kafka {bootstrap}"), format!("{what}: {e}"))
    }
}

/// Finds the partitions of the subscription. A listed topic that does not
/// exist is waited for when `wait_for_topics` (logged), else an error.
/// New partitions are resolved to concrete offsets with `start` (`None`:
/// the earliest offset, for partitions found after the first discovery)
/// and, bounded, `stop`.
#[allow(clippy::too_many_arguments)]
pub fn discover_partitions(
    consumer: &BaseConsumer,
    timeout: Duration,
    bootstrap: &str,
    subscription: &Subscription,
    wait_for_topics: bool,
    start: Option<&OffsetsInitializer>,
    stop: Option<&OffsetsInitializer>,
    group: Option<&str>,
) -> Result<Vec<KafkaPartitionSplit>> {
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| kafka_error(bootstrap, "cannot fetch metadata", &e))?;
    let mut found = Vec::new();
    let mut present = BTreeSet::new();
    for topic in metadata.topics() {
        if !subscription.matches(topic.name()) || topic.name().starts_with("__") {
            continue;
        }
        if let Some(code) = topic.error() {
            let e = KafkaError::MetadataFetch(code.into());
            return Err(kafka_error(bootstrap, &format!("topic '{}'", topic.name()), &e));
        }
        present.insert(topic.name().to_string());
        for p in topic.partitions() {
            found.push(KafkaPartitionSplit {
                topic: topic.name().to_string(),
                partition: p.id(),
                start: StartOffset::Earliest,
                stop: None,
            });
        }
    }
    if let Subscription::Topics(topics) = subscription {
        for missing in topics.iter().filter(|t| !present.contains(*t)) {
            if wait_for_topics {
                warn!("kafka {bootstrap}: topic '{missing}' does not exist (yet); waiting for it");
            } else {
                return Err(SluiceError::Config(format!(
                    "kafka {bootstrap}: topic '{missing}' does not exist (partition discovery is off, so the source does not wait for it)"
                )));
            }
        }
    }
    found.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    if let Some(start) = start {
        resolve_starts(consumer, timeout, bootstrap, &mut found, start, group)?;
    }
    if let Some(stop) = stop {
        resolve_stops(consumer, timeout, bootstrap, &mut found, stop)?;
    }
    Ok(found)
}

fn watermarks(
    consumer: &BaseConsumer,
    timeout: Duration,
    bootstrap: &str,
    s: &KafkaPartitionSplit,
) -> Result<(i64, i64)> {
    consumer.fetch_watermarks(&s.topic, s.partition, timeout).map_err(|e| {
        let partition = KafkaPartitionSplit::id_of(&s.topic, s.partition);
        kafka_error(bootstrap, &format!("offsets of {partition}"), &e)
    })
}

fn resolve_starts(
    consumer: &BaseConsumer,
    timeout: Duration,
    bootstrap: &str,
    splits: &mut [KafkaPartitionSplit],
    start: &OffsetsInitializer,
    group: Option<&str>,
) -> Result<()> {
    match start {
        OffsetsInitializer::Earliest => {}
        OffsetsInitializer::Latest => {
            for s in splits.iter_mut() {
                s.start = StartOffset::Offset(watermarks(consumer, timeout, bootstrap, s)?.1);
            }
        }
        OffsetsInitializer::Offsets(given) => {
            for s in splits.iter_mut() {
                if let Some(offset) = given.get(&(s.topic.clone(), s.partition)) {
                    s.start = StartOffset::Offset(*offset);
                }
            }
        }
        OffsetsInitializer::Timestamp(ts) => {
            let mut tpl = TopicPartitionList::new();
            for s in splits.iter() {
                tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(*ts))
                    .map_err(|e| kafka_error(bootstrap, "offsets for a timestamp", &e))?;
            }
            let found = consumer
                .offsets_for_times(tpl, timeout)
                .map_err(|e| kafka_error(bootstrap, "offsets for a timestamp", &e))?;
            for s in splits.iter_mut() {
                let offset = found.find_partition(&s.topic, s.partition).map(|e| e.offset());
                s.start = match offset {
                    Some(Offset::Offset(o)) => StartOffset::Offset(o),
                    // No record at or after the timestamp: start at the end.
                    _ => StartOffset::Offset(watermarks(consumer, timeout, bootstrap, s)?.1),
                };
            }
        }
        OffsetsInitializer::Committed(reset) => {
            let Some(group) = group else {
                return Err(SluiceError::Config(
                    "starting from committed offsets needs a group_id".into(),
                ));
            };
            let mut tpl = TopicPartitionList::new();
            for s in splits.iter() {
                tpl.add_partition(&s.topic, s.partition);
            }
            let committed = consumer.committed_offsets(tpl, timeout).map_err(|e| {
                kafka_error(bootstrap, &format!("committed offsets of group '{group}'"), &e)
            })?;
            for s in splits.iter_mut() {
                let offset = committed.find_partition(&s.topic, s.partition).map(|e| e.offset());
                s.start = match (offset, reset) {
                    (Some(Offset::Offset(o)), _) => StartOffset::Offset(o),
                    (_, OffsetReset::Earliest) => StartOffset::Earliest,
                    (_, OffsetReset::Latest) => {
                        StartOffset::Offset(watermarks(consumer, timeout, bootstrap, s)?.1)
                    }
                };
            }
        }
    }
    Ok(())
}

fn resolve_stops(
    consumer: &BaseConsumer,
    timeout: Duration,
    bootstrap: &str,
    splits: &mut [KafkaPartitionSplit],
    stop: &OffsetsInitializer,
) -> Result<()> {
    for s in splits.iter_mut() {
        s.stop = Some(match stop {
            OffsetsInitializer::Offsets(given) => {
                match given.get(&(s.topic.clone(), s.partition)) {
                    Some(o) => *o,
                    None => watermarks(consumer, timeout, bootstrap, s)?.1,
                }
            }
            OffsetsInitializer::Earliest => watermarks(consumer, timeout, bootstrap, s)?.0,
            _ => watermarks(consumer, timeout, bootstrap, s)?.1,
        });
    }
    info!(
        partitions = splits.len(),
        "kafka {bootstrap}: bounded source stops at the offsets resolved now"
    );
    Ok(())
}
