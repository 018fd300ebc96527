//! The Kafka sink, as Flink's `KafkaSink`, with three delivery guarantees:
//! - `None`: fire and forget (librdkafka);
//! - `AtLeastOnce`: every record of a checkpoint is acknowledged by the
//!   broker before the checkpoint completes (librdkafka, flushed at the barrier);
//! - `ExactlyOnce`: one Kafka transaction per sink subtask per checkpoint,
//!   pre-committed (flushed) at the barrier, committed when the checkpoint
//!   completes. The transactional id of the transaction that follows
//!   checkpoint `c` in subtask `i` is `<prefix>-<i>-<c>`, and each
//!   committable records (transactional id, producer id, epoch), so a
//!   restored job first commits what its checkpoint covers — an EndTxn
//!   with the recorded producer id and epoch, which a retry repeats safely —
//!   then aborts what earlier attempts left open (the ids after the
//!   checkpoint; after a downscale subtask `i` also cleans old subtask `j`
//!   when `j mod p = i`), then starts afresh.
//!
//! ```no_run
//! use sluice_kafka::{DeliveryGuarantee, KafkaSink, ProducerRecord};
//!
//! let sink = KafkaSink::builder()
//!     .bootstrap_servers("localhost:9092")
//!     .record_serializer(|(word, count): &(String, u64)| {
//!         ProducerRecord::to("counts").key(word.as_bytes()).value(count.to_string())
//!     })
//!     .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
//!     .transactional_id_prefix("word-counts")
//!     .build()
//!     .unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use sluice_checkpoint::CheckpointConfig;
use sluice_core::{Data, Result, SluiceError, StreamRecord};
use sluice_runtime::operator::StreamOperator;
use sluice_runtime::two_phase_commit::{TwoPhaseCommitSink, TwoPhaseCommitSinkOperator};
use sluice_runtime::{RuntimeContext, Sink, SinkWriter};
use tracing::info;

use crate::discovery::kafka_error;
use crate::transactions::{
    abort_if_used, end_transaction, Cluster, Outgoing, TopicPartition, Transaction,
};

/// What the sink promises about each record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryGuarantee {
    /// Fire and forget: a failure may lose records.
    None,
    /// Every record of a checkpoint is acknowledged before the checkpoint
    /// completes; a restore may write some again.
    #[default]
    AtLeastOnce,
    /// Kafka transactions tied to checkpoints: a `read_committed` reader
    /// sees each record exactly once.
    ExactlyOnce,
}

/// A record to write: topic (else the sink's), partition (else by key), key, value, headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic, if not the sink's default one.
    pub topic: Option<String>,
    /// The partition, if not chosen from the key (murmur2, as Kafka's Java client does).
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value (none: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Timestamp (ms since the epoch); default: the record's event time, else now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic`.
    pub fn to(topic: impl Into<String>) -> Self {
        Self { topic: Some(topic.into()), ..Self::default() }
    }

    /// A record for the sink's default topic.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Kafka's default partitioner's hash (murmur2 of the key, as the Java client).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's Java client picks for `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Builds a [`KafkaSink`].
pub struct KafkaSinkBuilder<S> {
    bootstrap_servers: Option<String>,
    serializer: S,
    guarantee: DeliveryGuarantee,
    prefix: Option<String>,
    transaction_timeout: Duration,
    properties: BTreeMap<String, String>,
}

/// A builder without a serializer yet.
pub struct NoSerializer;

/// Writes a stream to Kafka (see the module documentation).
pub struct KafkaSink<T, S> {
    shared: Arc<SinkShared<S>>,
    _records: PhantomData<fn(T)>,
}

struct SinkShared<S> {
    bootstrap: String,
    serializer: S,
    guarantee: DeliveryGuarantee,
    prefix: Option<String>,
    transaction_timeout: Duration,
    config: ClientConfig,
    /// Each subtask's connections, between its transactions.
    clusters: Mutex<HashMap<usize, Cluster>>,
}

impl KafkaSink<(), NoSerializer> {
    /// A builder: at-least-once, transactions time out after 15 minutes (Kafka's broker maximum by default).
    pub fn builder() -> KafkaSinkBuilder<NoSerializer> {
        KafkaSinkBuilder {
            bootstrap_servers: None,
            serializer: NoSerializer,
            guarantee: DeliveryGuarantee::AtLeastOnce,
            prefix: None,
            transaction_timeout: Duration::from_secs(15 * 60),
            properties: BTreeMap::new(),
        }
    }
}

impl<S> KafkaSinkBuilder<S> {
    /// The brokers to bootstrap from.
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.bootstrap_servers = Some(servers.into());
        self
    }

    /// What the sink promises (default: at least once).
    pub fn delivery_guarantee(mut self, guarantee: DeliveryGuarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// Exactly once: the prefix of the sink's transactional ids. It must
    /// be unique to the job: two running jobs with one prefix fence each other.
    pub fn transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Exactly once: how long the broker keeps a transaction open
    /// (`transaction.timeout.ms`); it must exceed the checkpoint interval
    /// plus the checkpoint timeout.
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    /// Any librdkafka producer property (at-least-once and none).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// How values become Kafka records.
    pub fn record_serializer<T, F>(self, serializer: F) -> KafkaSinkBuilder<F>
    where
        F: Fn(&T) -> ProducerRecord + Send + Sync + 'static,
    {
        KafkaSinkBuilder {
            bootstrap_servers: self.bootstrap_servers,
            serializer,
            guarantee: self.guarantee,
            prefix: self.prefix,
            transaction_timeout: self.transaction_timeout,
            properties: self.properties,
        }
    }

    /// The sink; the error names what is missing.
    pub fn build<T>(self) -> Result<KafkaSink<T, S>>
    where
        S: Fn(&T) -> ProducerRecord + Send + Sync + 'static,
    {
        let bootstrap = self
            .bootstrap_servers
            .ok_or_else(|| SluiceError::Config("the Kafka sink needs bootstrap_servers".into()))?;
        if self.guarantee == DeliveryGuarantee::ExactlyOnce && self.prefix.is_none() {
            return Err(SluiceError::Config(
                "an exactly-once Kafka sink needs a transactional_id_prefix, unique to the job"
                    .into(),
            ));
        }
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &bootstrap)
            // The Java client's partitioner, as the exactly-once path uses.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5");
        if self.guarantee == DeliveryGuarantee::AtLeastOnce {
            config.set("acks", "all").set("enable.idempotence", "true");
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        Ok(KafkaSink {
            shared: Arc::new(SinkShared {
                bootstrap,
                serializer: self.serializer,
                guarantee: self.guarantee,
                prefix: self.prefix,
                transaction_timeout: self.transaction_timeout,
                config,
                clusters: Mutex::new(HashMap::new()),
            }),
            _records: PhantomData,
        })
    }
}

impl<T: Data, S> Sink<T> for KafkaSink<T, S>
where
    S: Fn(&T) -> ProducerRecord + Send + Sync + 'static,
{
    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<T>>> {
        PlainSink::<T, S> { shared: self.shared.clone(), _records: PhantomData }.create_writer(ctx)
    }

    fn validate(&self, checkpointing: Option<&CheckpointConfig>) -> Result<()> {
        if self.shared.guarantee != DeliveryGuarantee::ExactlyOnce {
            return Ok(());
        }
        let Some(c) = checkpointing else {
            return Err(SluiceError::Config(
                "an exactly-once Kafka sink commits at checkpoints: enable checkpointing".into(),
            ));
        };
        let needed = c.interval + c.timeout;
        if self.shared.transaction_timeout <= needed {
            return Err(SluiceError::Config(format!(
                "the Kafka sink's transaction timeout ({} ms) must exceed the checkpoint interval ({} ms) \
                 plus the checkpoint timeout ({} ms): raise transaction_timeout above {} ms, or lower the \
                 checkpoint interval or timeout",
                self.shared.transaction_timeout.as_millis(),
                c.interval.as_millis(),
                c.timeout.as_millis(),
                needed.as_millis()
            )));
        }
        Ok(())
    }

    fn create_operator(self: Arc<Self>) -> Option<Box<dyn StreamOperator>> {
        (self.shared.guarantee == DeliveryGuarantee::ExactlyOnce).then(|| {
            let sink =
                TransactionalSink::<T, S> { shared: self.shared.clone(), _records: PhantomData };
            Box::new(TwoPhaseCommitSinkOperator::new(Arc::new(sink))) as Box<dyn StreamOperator>
        })
    }
}

/// Remembers the first failed delivery.
struct DeliveryErrors {
    first: Mutex<Option<String>>,
}

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((e, _)) = result {
            let mut first = self.first.lock().expect("delivery errors lock");
            if first.is_none() {
                *first = Some(e.to_string());
            }
        }
    }
}

/// At least once and none: librdkafka's producer.
struct PlainSink<T, S> {
    shared: Arc<SinkShared<S>>,
    _records: PhantomData<fn(T)>,
}

struct PlainWriter<T, S> {
    shared: Arc<SinkShared<S>>,
    producer: BaseProducer<DeliveryErrors>,
    _records: PhantomData<fn(T)>,
}

impl<T: Data, S: Fn(&T) -> ProducerRecord + Send + Sync + 'static> Sink<T> for PlainSink<T, S> {
    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<T>>> {
        let producer = self
            .shared
            .config
            .create_with_context(DeliveryErrors { first: Mutex::new(None) })
            .map_err(|e| kafka_error(&self.shared.bootstrap, "cannot create a producer", &e))?;
        Ok(Box::new(PlainWriter { shared: self.shared.clone(), producer, _records: PhantomData }))
    }
}

impl<T, S> PlainWriter<T, S> {
    fn check_deliveries(&self) -> Result<()> {
        match self.producer.context().first.lock().expect("delivery errors lock").take() {
            Some(e) => Err(SluiceError::external(
                format!("kafka {}", self.shared.bootstrap),
                format!("a record was not delivered: {e}"),
            )),
            None => Ok(()),
        }
    }
}

impl<T: Data, S: Fn(&T) -> ProducerRecord + Send + Sync + 'static> SinkWriter<T>
    for PlainWriter<T, S>
{
    fn write_batch(&mut self, records: Vec<StreamRecord<T>>) -> Result<()> {
        for r in records {
            let out = (self.shared.serializer)(&r.value);
            let topic = out.topic.as_deref().ok_or_else(|| {
                SluiceError::user(
                    "the Kafka sink's record serializer returned a record without a topic",
                )
            })?;
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if let Some(k) = out.key.as_deref() {
                record = record.key(k);
            }
            if let Some(v) = out.value.as_deref() {
                record = record.payload(v);
            }
            if let Some(p) = out.partition {
                record = record.partition(p);
            }
            if let Some(ts) = out.timestamp.or((r.timestamp.0 != i64::MIN).then_some(r.timestamp.0))
            {
                record = record.timestamp(ts);
            }
            if !out.headers.is_empty() {
                let headers = out.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(Header { key: k, value: Some(v) })
                });
                record = record.headers(headers);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((e, back))
                        if e.rdkafka_error_code()
                            == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                    {
                        // The local queue is full: serve deliveries, then try again.
                        self.producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                    Err((e, _)) => {
                        return Err(kafka_error(&self.shared.bootstrap, "cannot send a record", &e))
                    }
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn flush(&mut self, end_of_input: bool) -> Result<()> {
        if end_of_input || self.shared.guarantee == DeliveryGuarantee::AtLeastOnce {
            self.producer
                .flush(Duration::from_secs(60))
                .map_err(|e| kafka_error(&self.shared.bootstrap, "flushing", &e))?;
        }
        self.check_deliveries()
    }
}

/// Exactly once: Kafka transactions of the sink's own protocol client.
struct TransactionalSink<T, S> {
    shared: Arc<SinkShared<S>>,
    _records: PhantomData<fn(T)>,
}

/// An open transaction of one subtask and the connections it uses.
struct OpenTransaction {
    subtask: usize,
    cluster: Cluster,
    txn: Transaction,
    /// Where the next record without key and partition goes, per topic.
    sticky: HashMap<String, i32>,
}

/// What a pre-committed transaction leaves to commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaCommittable {
    /// The transaction's id.
    pub transactional_id: String,
    /// The producer id it was given.
    pub producer_id: i64,
    /// The producer epoch it was given.
    pub epoch: i16,
}

impl<T, S> TransactionalSink<T, S> {
    fn prefix(&self) -> &str {
        self.shared.prefix.as_deref().expect("checked at build")
    }

    fn timeout_ms(&self) -> i32 {
        self.shared.transaction_timeout.as_millis().min(i32::MAX as u128) as i32
    }

    fn cluster(&self) -> Cluster {
        Cluster::new(&self.shared.bootstrap, Duration::from_secs(10))
    }

    fn take_cluster(&self, subtask: usize) -> Cluster {
        self.shared
            .clusters
            .lock()
            .expect("clusters lock")
            .remove(&subtask)
            .unwrap_or_else(|| self.cluster())
    }

    fn give_back(&self, subtask: usize, cluster: Cluster) {
        self.shared.clusters.lock().expect("clusters lock").insert(subtask, cluster);
    }
}

/// Transactional ids probed past the last one used before concluding none follows.
const UNUSED_IDS_TO_STOP: u64 = 3;

impl<T: Data, S: Fn(&T) -> ProducerRecord + Send + Sync + 'static> TwoPhaseCommitSink<T>
    for TransactionalSink<T, S>
{
    type Transaction = OpenTransaction;
    type Committable = KafkaCommittable;

    fn recover(&self, ctx: &RuntimeContext) -> Result<()> {
        // What earlier attempts (of this subtask, and of the subtasks a
        // downscale folded into it) began after the restored checkpoint.
        let start = ctx.restored_checkpoint_id.unwrap_or(0);
        let mut cluster = self.take_cluster(ctx.subtask_index);
        let mut aborted = 0;
        for old in (ctx.subtask_index..).step_by(ctx.parallelism.max(1)) {
            let (mut checkpoint, mut unused, mut any) = (start, 0, false);
            while unused < UNUSED_IDS_TO_STOP {
                let id = format!("{}-{old}-{checkpoint}", self.prefix());
                if abort_if_used(&mut cluster, &id, self.timeout_ms())? {
                    unused = 0;
                    any = true;
                    aborted += 1;
                    // A fault point for tests: fail while ending leftover transactions.
                    fail::fail_point!("sluice::kafka::abort_leftover");
                } else {
                    unused += 1;
                }
                checkpoint += 1;
            }
            if !any && old >= ctx.parallelism {
                break;
            }
        }
        if aborted > 0 {
            info!(
                subtask = ctx.subtask_index + 1,
                "Kafka sink: ended {aborted} transaction(s) of earlier attempts after checkpoint {start}"
            );
        }
        self.give_back(ctx.subtask_index, cluster);
        Ok(())
    }

    fn begin_transaction(
        &self,
        ctx: &RuntimeContext,
        after_checkpoint: u64,
    ) -> Result<OpenTransaction> {
        let mut cluster = self.take_cluster(ctx.subtask_index);
        let id = format!("{}-{}-{after_checkpoint}", self.prefix(), ctx.subtask_index);
        let txn = Transaction::begin(&mut cluster, id, self.timeout_ms())?;
        Ok(OpenTransaction { subtask: ctx.subtask_index, cluster, txn, sticky: HashMap::new() })
    }

    fn write(&self, open: &mut OpenTransaction, records: Vec<StreamRecord<T>>) -> Result<()> {
        let mut by_partition: Vec<(TopicPartition, Vec<Outgoing>)> = Vec::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for r in records {
            let out = (self.shared.serializer)(&r.value);
            let topic = out.topic.ok_or_else(|| {
                SluiceError::user(
                    "the Kafka sink's record serializer returned a record without a topic",
                )
            })?;
            let partition = match (out.partition, &out.key) {
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, open.cluster.partition_count(&topic)?),
                (None, None) => {
                    let count = open.cluster.partition_count(&topic)?;
                    *open.sticky.entry(topic.clone()).or_insert(0) % count.max(1)
                }
            };
            let outgoing = Outgoing {
                key: out.key.map(Bytes::from),
                value: out.value.map(Bytes::from),
                headers: out
                    .headers
                    .into_iter()
                    .map(|(k, v)| (StrBytes::from_string(k), Some(Bytes::from(v))))
                    .collect::<IndexMap<_, _>>(),
                timestamp: out.timestamp.unwrap_or(if r.timestamp.0 == i64::MIN {
                    now
                } else {
                    r.timestamp.0
                }),
            };
            match by_partition.iter_mut().find(|((t, p), _)| *p == partition && *t == topic) {
                Some((_, list)) => list.push(outgoing),
                None => by_partition.push(((topic, partition), vec![outgoing])),
            }
        }
        // Records without a key stick to one partition per batch, then move on.
        for (topic, next) in open.sticky.iter_mut() {
            if by_partition.iter().any(|((t, _), _)| t == topic) {
                *next = next.wrapping_add(1);
            }
        }
        if by_partition.is_empty() {
            return Ok(());
        }
        let OpenTransaction { cluster, txn, .. } = open;
        txn.send(cluster, by_partition)
    }

    fn pre_commit(&self, open: OpenTransaction) -> Result<Option<KafkaCommittable>> {
        let OpenTransaction { subtask, mut cluster, txn, .. } = open;
        // Every record of the transaction is acknowledged before the checkpoint is.
        cluster.drain_all()?;
        self.give_back(subtask, cluster);
        if txn.is_empty() {
            return Ok(None);
        }
        Ok(Some(KafkaCommittable {
            transactional_id: txn.transactional_id,
            producer_id: txn.producer_id,
            epoch: txn.epoch,
        }))
    }

    fn commit(&self, c: &KafkaCommittable) -> Result<()> {
        let mut cluster = self.cluster();
        end_transaction(&mut cluster, &c.transactional_id, c.producer_id, c.epoch, true)
    }

    fn abort(&self, open: OpenTransaction) -> Result<()> {
        let OpenTransaction { subtask, mut cluster, txn, .. } = open;
        let ended = if txn.is_empty() {
            Ok(())
        } else {
            end_transaction(&mut cluster, &txn.transactional_id, txn.producer_id, txn.epoch, false)
        };
        self.give_back(subtask, cluster);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Kafka's UtilsTest vectors.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58_897_971);
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn exactly_once_needs_a_prefix() {
        let err = KafkaSink::builder()
            .bootstrap_servers("k:9092")
            .record_serializer(|v: &String| ProducerRecord::to("t").value(v.clone()))
            .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
            .build()
            .err()
            .unwrap();
        assert!(err.to_string().contains("transactional_id_prefix"), "{err}");
    }

    fn exactly_once(
        timeout: Duration,
    ) -> KafkaSink<String, impl Fn(&String) -> ProducerRecord + Send + Sync> {
        KafkaSink::builder()
            .bootstrap_servers("k:9092")
            .record_serializer(|v: &String| ProducerRecord::to("t").value(v.clone()))
            .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
            .transactional_id_prefix("job")
            .transaction_timeout(timeout)
            .build()
            .unwrap()
    }

    #[test]
    fn exactly_once_needs_checkpointing_and_a_transaction_timeout_above_interval_plus_timeout() {
        let sink = exactly_once(Duration::from_secs(60));
        let err = Sink::<String>::validate(&sink, None).unwrap_err().to_string();
        assert!(err.contains("enable checkpointing"), "{err}");
        let mut config = CheckpointConfig::new(Duration::from_secs(50));
        config.timeout = Duration::from_secs(20);
        let err = Sink::<String>::validate(&sink, Some(&config)).unwrap_err().to_string();
        assert!(
            err.contains("60000 ms") && err.contains("50000 ms") && err.contains("20000 ms"),
            "{err}"
        );
        config.timeout = Duration::from_secs(5);
        assert!(Sink::<String>::validate(&sink, Some(&config)).is_ok());
    }
}
