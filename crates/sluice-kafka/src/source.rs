//! The Kafka source and its builder, as Flink's `KafkaSource`.
//!
//! ```no_run
//! use sluice_kafka::{KafkaSource, OffsetReset, OffsetsInitializer};
//!
//! let source = KafkaSource::builder()
//!     .bootstrap_servers("localhost:9092")
//!     .topics(["orders"])
//!     .group_id("sluice-orders")
//!     .starting_offsets(OffsetsInitializer::committed_or(OffsetReset::Earliest))
//!     .value_deserializer(|record| {
//!         let bytes = record.value().unwrap_or_default();
//!         String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
//!     })
//!     .build()
//!     .unwrap();
//! ```

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use regex::Regex;
use serde::de::DeserializeOwned;
use sluice_core::{Data, Result, SluiceError};
use sluice_runtime::rate_controller::Pid;
use sluice_runtime::source::{Boundedness, Source, SourceReader};
use sluice_runtime::split_enumerator::{Discoverer, SplitEnumerator};
use sluice_runtime::{DecodeErrorPolicy, RuntimeContext};

use crate::discovery::{discover_partitions, kafka_error, Subscription, DEFAULT_REQUEST_TIMEOUT};
use crate::enumerator::{KafkaEnumeratorState, KafkaSourceEnumerator};
use crate::reader::{KafkaReader, RateLimits};
use crate::split::{KafkaPartitionSplit, OffsetReset, OffsetsInitializer};

/// How often partitions are discovered unless set otherwise.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);

/// A record as a deserializer sees it: value, key, headers and where it came from.
pub struct KafkaRecord<'a> {
    message: &'a BorrowedMessage<'a>,
}

impl<'a> KafkaRecord<'a> {
    pub(crate) fn new(message: &'a BorrowedMessage<'a>) -> Self {
        Self { message }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        self.message.topic()
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.message.partition()
    }

    /// The offset.
    pub fn offset(&self) -> i64 {
        self.message.offset()
    }

    /// The record's timestamp (create or log-append time), ms since the epoch.
    pub fn timestamp(&self) -> Option<i64> {
        self.message.timestamp().to_millis()
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.message.key()
    }

    /// The value, if any (a tombstone has none).
    pub fn value(&self) -> Option<&[u8]> {
        self.message.payload()
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.message.headers()?.iter().find(|h| h.key == name).and_then(|h| h.value)
    }

    /// Every header, in order.
    pub fn headers(&self) -> Vec<(&str, Option<&[u8]>)> {
        self.message
            .headers()
            .map_or_else(Vec::new, |h| h.iter().map(|h| (h.key, h.value)).collect())
    }
}

/// Turns a Kafka record into a `T`; the error says what is wrong with it.
pub trait KafkaDeserializer<T>: Send + Sync + 'static {
    /// Decodes one record.
    fn deserialize(&self, record: &KafkaRecord<'_>) -> std::result::Result<T, String>;
}

impl<T, F> KafkaDeserializer<T> for F
where
    F: Fn(&KafkaRecord<'_>) -> std::result::Result<T, String> + Send + Sync + 'static,
{
    #[inline]
    fn deserialize(&self, record: &KafkaRecord<'_>) -> std::result::Result<T, String> {
        self(record)
    }
}

/// Values as UTF-8 text.
pub fn string_values(record: &KafkaRecord<'_>) -> std::result::Result<String, String> {
    let bytes = record.value().unwrap_or_default();
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| format!("not UTF-8: {e}"))
}

/// Values as JSON into `T`.
pub fn json_values<T: DeserializeOwned>(
    record: &KafkaRecord<'_>,
) -> std::result::Result<T, String> {
    serde_json::from_slice(record.value().unwrap_or_default()).map_err(|e| e.to_string())
}

/// Builds a [`KafkaSource`].
pub struct KafkaSourceBuilder<D> {
    bootstrap_servers: Option<String>,
    subscription: Option<Subscription>,
    group_id: Option<String>,
    starting_offsets: OffsetsInitializer,
    stopping_offsets: Option<OffsetsInitializer>,
    properties: BTreeMap<String, String>,
    discovery_interval: Duration,
    request_timeout: Duration,
    on_decode_error: DecodeErrorPolicy,
    rates: RateLimits,
    deserializer: D,
}

/// A builder without a deserializer yet.
pub struct NoDeserializer;

impl KafkaSource<(), NoDeserializer> {
    /// A builder with Flink's defaults: earliest offsets, unbounded,
    /// partition discovery every 10 s.
    pub fn builder() -> KafkaSourceBuilder<NoDeserializer> {
        KafkaSourceBuilder {
            bootstrap_servers: None,
            subscription: None,
            group_id: None,
            starting_offsets: OffsetsInitializer::Earliest,
            stopping_offsets: None,
            properties: BTreeMap::new(),
            discovery_interval: DEFAULT_DISCOVERY_INTERVAL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            on_decode_error: DecodeErrorPolicy::Fail,
            rates: RateLimits::default(),
            deserializer: NoDeserializer,
        }
    }
}

impl<D> KafkaSourceBuilder<D> {
    /// The brokers to bootstrap from, "host:port,host:port".
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.bootstrap_servers = Some(servers.into());
        self
    }

    /// Reads these topics.
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        self.subscription =
            Some(Subscription::Topics(topics.into_iter().map(Into::into).collect()));
        self
    }

    /// Reads every topic whose whole name matches `pattern`, also topics created later.
    pub fn topic_pattern(mut self, pattern: &str) -> Result<Self> {
        let re = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| SluiceError::Config(format!("topic pattern '{pattern}': {e}")))?;
        self.subscription = Some(Subscription::Pattern(re));
        Ok(self)
    }

    /// The consumer group: offsets are committed to it when checkpoints
    /// complete (for monitoring; recovery uses checkpoints).
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Where partitions start (default: earliest). Partitions found after
    /// the job started always start at their earliest offset.
    pub fn starting_offsets(mut self, offsets: OffsetsInitializer) -> Self {
        self.starting_offsets = offsets;
        self
    }

    /// Bounded mode: stop at these offsets (`latest`: the ends seen when the
    /// job starts), then end. No partition discovery.
    pub fn bounded(mut self, stopping: OffsetsInitializer) -> Self {
        self.stopping_offsets = Some(stopping);
        self
    }

    /// Any librdkafka consumer property (security, SASL, TLS, fetch sizes, ...).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// How often new partitions and topics are looked for (default 10 s; zero turns it off).
    pub fn partition_discovery_interval(mut self, interval: Duration) -> Self {
        self.discovery_interval = interval;
        self
    }

    /// How long one metadata or offset request to the brokers may take (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// What to do with a record the deserializer refuses (default: fail).
    pub fn on_decode_error(mut self, policy: DecodeErrorPolicy) -> Self {
        self.on_decode_error = policy;
        self
    }

    /// Reads at most this many records per second from each partition (Spark's `maxRatePerPartition`).
    pub fn max_records_per_partition_per_second(mut self, rate: f64) -> Self {
        self.rates.max_per_partition = Some(rate);
        self
    }

    /// Aims the reading rate at what the job processes, with Spark's PID
    /// estimator updated every `interval` (Spark's batch interval).
    pub fn rate_controller(mut self, pid: Pid, interval: Duration) -> Self {
        self.rates.pid = Some((pid, interval));
        self
    }

    /// How records become values; the error says what is wrong with a record.
    pub fn value_deserializer<T, F>(self, deserializer: F) -> KafkaSourceBuilder<F>
    where
        F: Fn(&KafkaRecord<'_>) -> std::result::Result<T, String> + Send + Sync + 'static,
    {
        KafkaSourceBuilder {
            bootstrap_servers: self.bootstrap_servers,
            subscription: self.subscription,
            group_id: self.group_id,
            starting_offsets: self.starting_offsets,
            stopping_offsets: self.stopping_offsets,
            properties: self.properties,
            discovery_interval: self.discovery_interval,
            request_timeout: self.request_timeout,
            on_decode_error: self.on_decode_error,
            rates: self.rates,
            deserializer,
        }
    }

    /// The source; the error names what is missing or wrong.
    pub fn build<T>(self) -> Result<KafkaSource<T, D>>
    where
        D: KafkaDeserializer<T>,
    {
        let bootstrap = self.bootstrap_servers.ok_or_else(|| {
            SluiceError::Config("the Kafka source needs bootstrap_servers".into())
        })?;
        let subscription = self.subscription.ok_or_else(|| {
            SluiceError::Config("the Kafka source needs topics or a topic_pattern".into())
        })?;
        if self.rates.max_per_partition.is_some_and(|r| r <= 0.0) {
            return Err(SluiceError::Config(
                "max_records_per_partition_per_second must be positive".into(),
            ));
        }
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &bootstrap)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("group.id", self.group_id.as_deref().unwrap_or("sluice"));
        if let OffsetsInitializer::Committed(OffsetReset::Latest) = self.starting_offsets {
            config.set("auto.offset.reset", "latest");
        } else {
            config.set("auto.offset.reset", "earliest");
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        Ok(KafkaSource {
            shared: Arc::new(Shared {
                bootstrap,
                subscription,
                group_id: self.group_id,
                starting_offsets: self.starting_offsets,
                stopping_offsets: self.stopping_offsets,
                config,
                discovery_interval: self.discovery_interval,
                request_timeout: self.request_timeout,
                on_decode_error: self.on_decode_error,
                rates: self.rates,
            }),
            deserializer: Arc::new(self.deserializer),
            _records: PhantomData,
        })
    }
}

/// What the enumerator and every reader share.
pub(crate) struct Shared {
    pub(crate) bootstrap: String,
    pub(crate) subscription: Subscription,
    pub(crate) group_id: Option<String>,
    pub(crate) starting_offsets: OffsetsInitializer,
    pub(crate) stopping_offsets: Option<OffsetsInitializer>,
    pub(crate) config: ClientConfig,
    pub(crate) discovery_interval: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) on_decode_error: DecodeErrorPolicy,
    pub(crate) rates: RateLimits,
}

impl Shared {
    pub(crate) fn consumer(&self) -> Result<BaseConsumer> {
        self.config
            .create()
            .map_err(|e| kafka_error(&self.bootstrap, "cannot create a consumer", &e))
    }
}

/// Reads Kafka topics: partitions are splits, discovered while the job runs,
/// offsets are checkpointed.
pub struct KafkaSource<T, D> {
    shared: Arc<Shared>,
    deserializer: Arc<D>,
    _records: PhantomData<fn() -> T>,
}

impl<T, D> KafkaSource<T, D> {
    fn enumerator(&self, state: KafkaEnumeratorState) -> KafkaSourceEnumerator {
        let shared = self.shared.clone();
        let make = move |resolve_starts: bool| -> Discoverer<KafkaPartitionSplit> {
            let shared = shared.clone();
            let mut consumer = None;
            let mut first = resolve_starts;
            Box::new(move || {
                if consumer.is_none() {
                    consumer = Some(shared.consumer()?);
                }
                let consumer = consumer.as_ref().expect("created above");
                let found = discover_partitions(
                    consumer,
                    shared.request_timeout,
                    &shared.bootstrap,
                    &shared.subscription,
                    !shared.discovery_interval.is_zero() && shared.stopping_offsets.is_none(),
                    first.then_some(&shared.starting_offsets),
                    shared.stopping_offsets.as_ref(),
                    shared.group_id.as_deref(),
                )?;
                first = false;
                Ok(found)
            })
        };
        KafkaSourceEnumerator::new(
            state,
            self.shared.discovery_interval,
            self.shared.stopping_offsets.is_some(),
            Box::new(make),
        )
    }
}

impl<T: Data, D: KafkaDeserializer<T>> Source<T> for KafkaSource<T, D> {
    type Split = KafkaPartitionSplit;

    fn boundedness(&self) -> Boundedness {
        match self.shared.stopping_offsets {
            Some(_) => Boundedness::Bounded,
            None => Boundedness::ContinuousUnbounded,
        }
    }

    fn create_enumerator(
        &self,
        _parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<KafkaPartitionSplit>>> {
        Ok(Box::new(self.enumerator(KafkaEnumeratorState::default())))
    }

    fn restore_enumerator(
        &self,
        _parallelism: usize,
        state: &[u8],
    ) -> Result<Box<dyn SplitEnumerator<KafkaPartitionSplit>>> {
        Ok(Box::new(self.enumerator(postcard::from_bytes(state)?)))
    }

    fn create_reader(
        &self,
        ctx: &RuntimeContext,
    ) -> Result<Box<dyn SourceReader<T, KafkaPartitionSplit>>> {
        Ok(Box::new(KafkaReader::new(self.shared.clone(), self.deserializer.clone(), ctx)?))
    }
}
