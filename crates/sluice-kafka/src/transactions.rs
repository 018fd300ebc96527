//! A transactional Kafka producer that owns its producer id and epoch, so
//! that a transaction can be finished by another process after a failure:
//! librdkafka can neither resume another producer's transaction nor report
//! its producer id and epoch. It speaks the protocol itself
//! (FindCoordinator, InitProducerId, AddPartitionsToTxn, Produce, EndTxn)
//! over blocking connections on the sink's task thread; produce requests
//! are pipelined, and their acknowledgements collected at pre-commit.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest, InitProducerIdRequest,
    MetadataRequest, ProduceRequest, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_core::{Result, SluiceError};

use crate::wire::Connection;

/// The bootstrap connection, before node ids are known.
const BOOTSTRAP: i32 = i32::MIN;
/// Produce requests in flight per broker before the producer waits for one.
const MAX_IN_FLIGHT: usize = 8;
/// How long retriable coordinator errors are retried.
const RETRY_FOR: Duration = Duration::from_secs(30);

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The brokers of a cluster, their connections, and where partitions lead.
pub(crate) struct Cluster {
    bootstrap: String,
    timeout: Duration,
    brokers: HashMap<i32, String>,
    connections: HashMap<i32, Connection>,
    leaders: HashMap<(String, i32), i32>,
    partitions: HashMap<String, i32>,
}

impl Cluster {
    /// A cluster reached through `bootstrap` ("host:port,host:port").
    pub(crate) fn new(bootstrap: &str, timeout: Duration) -> Self {
        Self {
            bootstrap: bootstrap.to_string(),
            timeout,
            brokers: HashMap::new(),
            connections: HashMap::new(),
            leaders: HashMap::new(),
            partitions: HashMap::new(),
        }
    }

    fn connection(&mut self, node: i32) -> Result<&mut Connection> {
        if !self.connections.contains_key(&node) {
            let conn = if node == BOOTSTRAP {
                let mut last = None;
                let mut found = None;
                for address in self.bootstrap.split(',').map(str::trim) {
                    match Connection::open(address, self.timeout) {
                        Ok(c) => {
                            found = Some(c);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                found.ok_or_else(|| {
                    SluiceError::external(
                        format!("kafka {}", self.bootstrap),
                        format!(
                            "no bootstrap server reachable: {}",
                            last.map_or_else(String::new, |e| e.report().to_string())
                        ),
                    )
                })?
            } else {
                let address = self.brokers.get(&node).cloned().ok_or_else(|| {
                    SluiceError::external(
                        format!("kafka {}", self.bootstrap),
                        format!("unknown broker {node}"),
                    )
                })?;
                Connection::open(&address, self.timeout)?
            };
            self.connections.insert(node, conn);
        }
        Ok(self.connections.get_mut(&node).expect("inserted above"))
    }

    /// A connection for a metadata or coordinator call: one that has no
    /// produce request in flight, or else one whose acknowledgements are
    /// collected first (a call's answer must be the next on its connection).
    fn any(&mut self) -> Result<&mut Connection> {
        let idle = self.connections.iter().find(|(_, c)| c.in_flight() == 0).map(|(n, _)| *n);
        let node = match idle.or_else(|| self.connections.keys().next().copied()) {
            Some(node) => node,
            None => BOOTSTRAP,
        };
        self.drain(node)?;
        self.connection(node)
    }

    /// Learns the brokers, and the partitions and leaders of `topics`.
    fn refresh(&mut self, topics: &[&str]) -> Result<()> {
        let request = MetadataRequest::default().with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(name(t)))))
                .collect(),
        ));
        let bootstrap = self.bootstrap.clone();
        let conn = self.any()?;
        let metadata = conn.call(9, request)?;
        for b in &metadata.brokers {
            self.brokers.insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        for t in &metadata.topics {
            let topic = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            if let Some(e) = ResponseError::try_from_code(t.error_code) {
                return Err(SluiceError::external(
                    format!("kafka {bootstrap}"),
                    format!("topic '{topic}': {e}"),
                ));
            }
            self.partitions.insert(topic.clone(), t.partitions.len() as i32);
            for p in &t.partitions {
                self.leaders.insert((topic.clone(), p.partition_index), p.leader_id.0);
            }
        }
        Ok(())
    }

    /// The number of partitions of `topic`.
    pub(crate) fn partition_count(&mut self, topic: &str) -> Result<i32> {
        if !self.partitions.contains_key(topic) {
            self.refresh(&[topic])?;
        }
        Ok(self.partitions.get(topic).copied().unwrap_or(0))
    }

    fn leader(&mut self, topic: &str, partition: i32) -> Result<i32> {
        let key = (topic.to_string(), partition);
        if !self.leaders.contains_key(&key) {
            self.refresh(&[topic])?;
        }
        self.leaders.get(&key).copied().ok_or_else(|| {
            SluiceError::external(
                format!("kafka {}", self.bootstrap),
                format!("partition {partition} of topic '{topic}' has no leader"),
            )
        })
    }

    /// The transaction coordinator of `transactional_id`.
    fn coordinator(&mut self, transactional_id: &str) -> Result<i32> {
        let conn = self.any()?;
        let version = conn.version::<FindCoordinatorRequest>(4)?;
        // Version 4 asks for a list of keys; earlier ones for one.
        let request = if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![name(transactional_id)])
        } else {
            FindCoordinatorRequest::default().with_key(name(transactional_id))
        }
        .with_key_type(1);
        let response = conn.call_at(version, request)?;
        let (code, node, host, port) = match response.coordinators.first() {
            Some(c) => (c.error_code, c.node_id.0, c.host.to_string(), c.port),
            None => {
                (response.error_code, response.node_id.0, response.host.to_string(), response.port)
            }
        };
        if let Some(e) = ResponseError::try_from_code(code) {
            return Err(retriable(e, &self.bootstrap, "finding the transaction coordinator"));
        }
        self.brokers.insert(node, format!("{host}:{port}"));
        Ok(node)
    }

    /// Waits for the acknowledgements of every produce request in flight to `node`.
    fn drain(&mut self, node: i32) -> Result<()> {
        let Some(conn) = self.connections.get_mut(&node) else { return Ok(()) };
        while conn.in_flight() > 0 {
            let response = conn.receive::<ProduceRequest>()?;
            for t in &response.responses {
                for p in &t.partition_responses {
                    if let Some(e) = ResponseError::try_from_code(p.error_code) {
                        return Err(conn.error(
                            "producing",
                            &format!("partition {} of topic '{}': {e}", p.index, t.name.0.as_str()),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits for every produce acknowledgement.
    pub(crate) fn drain_all(&mut self) -> Result<()> {
        let nodes: Vec<i32> = self.connections.keys().copied().collect();
        nodes.into_iter().try_for_each(|n| self.drain(n))
    }

    /// Runs a coordinator request for `transactional_id`, retrying while
    /// the coordinator moves or is busy finishing an earlier transaction.
    fn with_coordinator<T>(
        &mut self,
        transactional_id: &str,
        mut call: impl FnMut(&mut Connection) -> Result<std::result::Result<T, ResponseError>>,
    ) -> Result<T> {
        let until = Instant::now() + RETRY_FOR;
        loop {
            let node = self.coordinator(transactional_id)?;
            self.drain(node)?;
            let bootstrap = self.bootstrap.clone();
            let outcome = call(self.connection(node)?)?;
            match outcome {
                Ok(value) => return Ok(value),
                Err(
                    e @ (ResponseError::ConcurrentTransactions
                    | ResponseError::CoordinatorLoadInProgress
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::NotCoordinator),
                ) if Instant::now() < until => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(coordinator_error(e, &bootstrap, transactional_id));
                }
            }
        }
    }
}

fn retriable(e: ResponseError, bootstrap: &str, what: &str) -> SluiceError {
    SluiceError::external(format!("kafka {bootstrap}"), format!("{what}: {e}"))
}

/// A coordinator's refusal; being fenced means another producer took the
/// transactional id: a prefix shared by two jobs, or a zombie of this one.
fn coordinator_error(e: ResponseError, bootstrap: &str, transactional_id: &str) -> SluiceError {
    match e {
        ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch => SluiceError::external(
            format!("kafka {bootstrap}"),
            format!(
                "transaction '{transactional_id}' was fenced: another producer uses this transactional id \
                 (is the transactional id prefix shared with another job?): {e}"
            ),
        ),
        ResponseError::TransactionalIdAuthorizationFailed => SluiceError::Config(format!(
            "kafka {bootstrap}: not authorized to use transactional id '{transactional_id}': {e}"
        )),
        e => SluiceError::external(format!("kafka {bootstrap}"), format!("transaction '{transactional_id}': {e}")),
    }
}

/// Gets a producer id and epoch for `transactional_id`; the broker aborts
/// a transaction the id left open and fences any producer still using it.
pub(crate) fn init_producer_id(
    cluster: &mut Cluster,
    transactional_id: &str,
    transaction_timeout_ms: i32,
) -> Result<(i64, i16)> {
    cluster.with_coordinator(transactional_id, |conn| {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(name(transactional_id))))
            .with_transaction_timeout_ms(transaction_timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = conn.call(4, request)?;
        Ok(match ResponseError::try_from_code(response.error_code) {
            None => Ok((response.producer_id.0, response.producer_epoch)),
            Some(e) => Err(e),
        })
    })
}

/// Commits (or aborts) the transaction `producer_id`/`epoch` of
/// `transactional_id` began, from any process. A commit of a transaction
/// that is already committed succeeds again.
pub(crate) fn end_transaction(
    cluster: &mut Cluster,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> Result<()> {
    cluster.drain_all()?;
    cluster.with_coordinator(transactional_id, |conn| {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(name(transactional_id)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let response = conn.call(4, request)?;
        Ok(match ResponseError::try_from_code(response.error_code) {
            None => Ok(()),
            Some(e) => Err(e),
        })
    })
}

/// A topic and one of its partitions.
pub(crate) type TopicPartition = (String, i32);

/// One record to write.
pub(crate) struct Outgoing {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: IndexMap<StrBytes, Option<Bytes>>,
    pub(crate) timestamp: i64,
}

/// One transaction of one transactional id.
pub(crate) struct Transaction {
    pub(crate) transactional_id: String,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    added: HashSet<TopicPartition>,
    sequences: HashMap<TopicPartition, i32>,
}

impl Transaction {
    /// Starts a transaction under `transactional_id` (fencing earlier users of it).
    pub(crate) fn begin(
        cluster: &mut Cluster,
        transactional_id: String,
        timeout_ms: i32,
    ) -> Result<Self> {
        let (producer_id, epoch) = init_producer_id(cluster, &transactional_id, timeout_ms)?;
        Ok(Self {
            transactional_id,
            producer_id,
            epoch,
            added: HashSet::new(),
            sequences: HashMap::new(),
        })
    }

    /// Whether it holds any record.
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty()
    }

    /// Adds partitions to the transaction before the first record goes to each.
    fn add_partitions(
        &mut self,
        cluster: &mut Cluster,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        let new: Vec<&(String, i32)> =
            partitions.iter().filter(|p| !self.added.contains(*p)).collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for (topic, partition) in &new {
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(*partition),
                None => topics.push(
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(name(topic)))
                        .with_partitions(vec![*partition]),
                ),
            }
        }
        let (id, pid, epoch) = (self.transactional_id.clone(), self.producer_id, self.epoch);
        cluster.with_coordinator(&id, |conn| {
            let request = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(name(&id)))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(topics.clone());
            let response = conn.call(3, request)?;
            let code = response
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| t.results_by_partition.iter())
                .map(|p| p.partition_error_code)
                .find(|c| *c != 0)
                .unwrap_or(response.error_code);
            Ok(match ResponseError::try_from_code(code) {
                None => Ok(()),
                Some(e) => Err(e),
            })
        })?;
        self.added.extend(new.into_iter().cloned());
        Ok(())
    }

    /// Sends `records` of each partition as one transactional batch;
    /// acknowledgements are collected later ([`Cluster::drain_all`]).
    pub(crate) fn send(
        &mut self,
        cluster: &mut Cluster,
        by_partition: Vec<(TopicPartition, Vec<Outgoing>)>,
    ) -> Result<()> {
        let partitions: Vec<(String, i32)> = by_partition.iter().map(|(p, _)| p.clone()).collect();
        self.add_partitions(cluster, &partitions)?;
        let mut by_leader: HashMap<i32, Vec<(TopicPartition, Bytes)>> = HashMap::new();
        for ((topic, partition), outgoing) in by_partition {
            let sequence = self.sequences.entry((topic.clone(), partition)).or_insert(0);
            let records: Vec<Record> = outgoing
                .into_iter()
                .enumerate()
                .map(|(i, o)| Record {
                    transactional: true,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: self.producer_id,
                    producer_epoch: self.epoch,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: sequence.wrapping_add(i as i32),
                    timestamp: o.timestamp,
                    key: o.key,
                    value: o.value,
                    headers: o.headers,
                })
                .collect();
            *sequence = sequence.wrapping_add(records.len() as i32);
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions { version: 2, compression: Compression::None };
            RecordBatchEncoder::encode(&mut buf, &records, &options)
                .map_err(|e| SluiceError::Serialization(format!("encoding a record batch: {e}")))?;
            let leader = cluster.leader(&topic, partition)?;
            by_leader.entry(leader).or_default().push(((topic, partition), buf.freeze()));
        }
        for (leader, batches) in by_leader {
            let mut topic_data: Vec<TopicProduceData> = Vec::new();
            for ((topic, partition), records) in batches {
                let data = PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records));
                match topic_data.iter_mut().find(|t| t.name.0.as_str() == topic) {
                    Some(t) => t.partition_data.push(data),
                    None => topic_data.push(
                        TopicProduceData::default()
                            .with_name(TopicName(name(&topic)))
                            .with_partition_data(vec![data]),
                    ),
                }
            }
            let request = ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(name(&self.transactional_id))))
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(topic_data);
            let conn = cluster.connection(leader)?;
            let version = conn.version::<ProduceRequest>(9)?;
            conn.send(version, &request)?;
            if conn.in_flight() > MAX_IN_FLIGHT {
                cluster.drain(leader)?;
            }
        }
        Ok(())
    }
}

/// Whether `transactional_id` was ever used: a fresh id gets epoch 0 from
/// InitProducerId; initializing a used one aborts what it left open.
pub(crate) fn abort_if_used(
    cluster: &mut Cluster,
    transactional_id: &str,
    timeout_ms: i32,
) -> Result<bool> {
    let (_, epoch) = init_producer_id(cluster, transactional_id, timeout_ms)?;
    Ok(epoch > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn being_fenced_names_the_transactional_id_and_the_likely_cause() {
        let e = coordinator_error(ResponseError::ProducerFenced, "k:9092", "orders-0-7");
        let text = e.to_string();
        assert!(text.contains("orders-0-7") && text.contains("shared with another job"), "{text}");
    }

    #[test]
    fn a_denied_transactional_id_is_a_configuration_error() {
        let e =
            coordinator_error(ResponseError::TransactionalIdAuthorizationFailed, "k:9092", "x-0-1");
        assert!(e.suppresses_restarts());
    }
}
