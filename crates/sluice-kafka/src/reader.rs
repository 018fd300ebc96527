//! The Kafka source's reader: one librdkafka consumer per subtask, assigned
//! its partitions by hand (no group rebalancing: the enumerator owns
//! assignment). Positions (the next offset per partition) are the
//! checkpointed split state; when a checkpoint completes, the offsets it
//! holds are committed to the consumer group for monitoring. Each partition
//! is a split of its own for watermarks. Rate limits pause a partition and
//! rewind it to the record that exceeded them.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_core::{Data, Result, SluiceError, Timestamp};
use sluice_runtime::rate_controller::{Pid, PidRateEstimator, TokenBucket};
use sluice_runtime::source::{InputStatus, SourceOutput, SourceReader};
use sluice_runtime::{RecordLocation, RuntimeContext};
use tracing::warn;

use crate::discovery::kafka_error;
use crate::source::{KafkaDeserializer, KafkaRecord, Shared};
use crate::split::{KafkaPartitionSplit, StartOffset};

/// How long all brokers may be unreachable before the reader fails.
const BROKERS_DOWN_LIMIT: Duration = Duration::from_secs(30);
/// A rate-limited partition pauses until this many seconds' worth of records may go.
const RATE_PAUSE_SECS: f64 = 0.05;

/// Rate limits of a Kafka source.
#[derive(Clone, Debug, Default)]
pub(crate) struct RateLimits {
    /// At most this many records per second per partition.
    pub(crate) max_per_partition: Option<f64>,
    /// The PID rate controller and its update interval.
    pub(crate) pid: Option<(Pid, Duration)>,
}

/// Keeps the consumer lag librdkafka reports in its statistics, for the
/// rate controller and the source's lag metric.
pub(crate) struct LagContext {
    lag: Arc<AtomicI64>,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        // librdkafka's own `consumer_lag` counts from the committed offset,
        // which moves only with checkpoints: the lag that matters is from
        // the position the reader consumed to the partition's (stable) end.
        let lag = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.desired)
            .filter_map(|p| {
                let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                (end >= 0 && p.app_offset >= 0).then(|| (end - p.app_offset).max(0))
            })
            .fold(None, |sum: Option<i64>, lag| Some(sum.unwrap_or(0) + lag));
        // Unknown (−1) until the reader consumed from a partition.
        self.lag.store(lag.unwrap_or(-1), Ordering::Relaxed);
    }
}

impl ConsumerContext for LagContext {}

/// The offsets a checkpoint holds: (topic, partition, next offset).
type Positions = Vec<(String, i32, i64)>;

/// One assigned partition and how far it has been read.
struct Partition {
    topic: String,
    partition: i32,
    /// The next offset to read: where a restore continues.
    next: StartOffset,
    stop: Option<i64>,
    /// Its split number for watermarks.
    id: u32,
    bucket: Option<TokenBucket>,
    /// Paused for the rate limit until this time (ms).
    paused_until: Option<i64>,
}

impl Partition {
    fn split(&self) -> KafkaPartitionSplit {
        KafkaPartitionSplit {
            topic: self.topic.clone(),
            partition: self.partition,
            start: self.next,
            stop: self.stop,
        }
    }

    fn finished(&self) -> bool {
        matches!((self.next, self.stop), (StartOffset::Offset(n), Some(stop)) if n >= stop)
    }

    fn list(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partition);
        tpl
    }
}

/// The PID controller's measurements over one interval.
struct RateControl {
    estimator: PidRateEstimator,
    interval_ms: i64,
    lag: Arc<AtomicI64>,
    since: i64,
    emitted: u64,
    idle_ms: i64,
    rate: Option<f64>,
}

/// Reads the partitions assigned to one subtask.
pub(crate) struct KafkaReader<T, D> {
    shared: Arc<Shared>,
    deserializer: Arc<D>,
    consumer: BaseConsumer<LagContext>,
    lag: Arc<AtomicI64>,
    partitions: Vec<Partition>,
    next_id: u32,
    /// Split numbers to register with, or finish in, the next output.
    to_register: Vec<u32>,
    to_finish: Vec<u32>,
    /// Positions snapshotted per checkpoint, committed when it completes.
    snapshots: VecDeque<(u64, Positions)>,
    clock: Instant,
    control: Option<RateControl>,
    /// When the last poll found nothing (idle time for the rate controller).
    idle_since: Option<i64>,
    brokers_down_since: Option<Instant>,
    /// Time blocked in `poll` waiting for a first record (idle time).
    waited: Duration,
    _records: PhantomData<fn() -> T>,
}

impl<T, D> KafkaReader<T, D> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        deserializer: Arc<D>,
        _ctx: &RuntimeContext,
    ) -> Result<Self> {
        let lag = Arc::new(AtomicI64::new(-1));
        let mut config = shared.config.clone();
        // Statistics carry the lag: every second for the metric, more often for the PID.
        let stats_interval =
            shared.rates.pid.map_or(Duration::from_secs(1), |(_, i)| i.min(Duration::from_secs(1)));
        config.set("statistics.interval.ms", stats_interval.as_millis().max(100).to_string());
        let consumer = config
            .create_with_context(LagContext { lag: lag.clone() })
            .map_err(|e| kafka_error(&shared.bootstrap, "cannot create a consumer", &e))?;
        let control = shared.rates.pid.map(|(pid, interval)| {
            let interval_ms = interval.as_millis() as i64;
            RateControl {
                estimator: PidRateEstimator::new(pid, interval_ms),
                interval_ms,
                lag: lag.clone(),
                since: 0,
                emitted: 0,
                idle_ms: 0,
                rate: None,
            }
        });
        Ok(Self {
            shared,
            deserializer,
            consumer,
            lag,
            partitions: Vec::new(),
            next_id: 0,
            to_register: Vec::new(),
            to_finish: Vec::new(),
            snapshots: VecDeque::new(),
            clock: Instant::now(),
            control,
            idle_since: None,
            brokers_down_since: None,
            waited: Duration::ZERO,
            _records: PhantomData,
        })
    }

    fn now(&self) -> i64 {
        self.clock.elapsed().as_millis() as i64
    }

    fn error(&self, what: &str, e: &KafkaError) -> SluiceError {
        kafka_error(&self.shared.bootstrap, what, e)
    }

    /// Each partition's share of the rate: the hard maximum, or the
    /// controller's rate split evenly, whichever is lower.
    fn partition_rate(&self) -> Option<f64> {
        let share = self
            .control
            .as_ref()
            .and_then(|c| c.rate)
            .map(|r| r / self.partitions.len().max(1) as f64);
        match (self.shared.rates.max_per_partition, share) {
            (Some(max), Some(share)) => Some(max.min(share)),
            (max, share) => max.or(share),
        }
    }

    fn apply_rates(&mut self, now: i64) {
        let rate = self.partition_rate();
        for p in &mut self.partitions {
            match (rate, p.bucket.as_mut()) {
                (Some(rate), Some(bucket)) => bucket.set_rate(rate),
                (Some(rate), None) => p.bucket = Some(TokenBucket::new(rate, now)),
                (None, _) => p.bucket = None,
            }
        }
    }

    /// Feeds the rate controller once per interval.
    fn update_rate(&mut self, now: i64) {
        let Some(c) = self.control.as_mut() else { return };
        if now - c.since < c.interval_ms {
            return;
        }
        let processing = (now - c.since - c.idle_ms).max(1);
        let processing_rate = c.emitted as f64 / processing as f64 * 1000.0;
        let backlog = c.lag.load(Ordering::Relaxed).max(0) as f64;
        let scheduling =
            if processing_rate > 0.0 { (backlog / processing_rate * 1000.0) as i64 } else { 0 };
        if let Some(rate) = c.estimator.compute(now, c.emitted, processing, scheduling) {
            c.rate = Some(rate);
        }
        c.since = now;
        c.emitted = 0;
        c.idle_ms = 0;
        self.apply_rates(now);
    }

    /// Resumes the partitions whose pause is over, and seeks each back to
    /// the record that went over the rate: the seek also wakes librdkafka's
    /// fetcher, which a resume alone leaves asleep for up to a second.
    fn resume_due(&mut self, now: i64) -> Result<()> {
        for p in self.partitions.iter_mut().filter(|p| p.paused_until.is_some_and(|t| t <= now)) {
            let offset = match p.next {
                StartOffset::Offset(o) => Offset::Offset(o),
                StartOffset::Earliest => Offset::Beginning,
            };
            self.consumer
                .resume(&p.list())
                .and_then(|()| self.consumer.seek(&p.topic, p.partition, offset, Duration::ZERO))
                .map_err(|e| {
                    kafka_error(&self.shared.bootstrap, "cannot resume a partition", &e)
                })?;
            p.paused_until = None;
        }
        Ok(())
    }

    fn unassign(&mut self, index: usize) -> Result<()> {
        let p = self.partitions.remove(index);
        self.to_finish.push(p.id);
        self.consumer
            .incremental_unassign(&p.list())
            .map_err(|e| self.error("cannot unassign a partition", &e))
    }
}

impl<T: Data, D: KafkaDeserializer<T>> SourceReader<T, KafkaPartitionSplit> for KafkaReader<T, D> {
    fn add_splits(&mut self, splits: Vec<KafkaPartitionSplit>) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for split in splits {
            let offset = match split.start {
                StartOffset::Offset(o) => Offset::Offset(o),
                StartOffset::Earliest => Offset::Beginning,
            };
            tpl.add_partition_offset(&split.topic, split.partition, offset)
                .map_err(|e| self.error("cannot assign a partition", &e))?;
            self.partitions.push(Partition {
                topic: split.topic,
                partition: split.partition,
                next: split.start,
                stop: split.stop,
                id: self.next_id,
                bucket: None,
                paused_until: None,
            });
            self.to_register.push(self.next_id);
            self.next_id += 1;
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| self.error("cannot assign partitions", &e))?;
        let now = self.now();
        self.apply_rates(now);
        Ok(())
    }

    fn remove_splits(&mut self, split_ids: &[String]) -> Result<()> {
        while let Some(i) = self
            .partitions
            .iter()
            .position(|p| split_ids.contains(&KafkaPartitionSplit::id_of(&p.topic, p.partition)))
        {
            self.unassign(i)?;
        }
        Ok(())
    }

    fn lag(&self) -> Option<u64> {
        u64::try_from(self.lag.load(Ordering::Relaxed)).ok()
    }

    fn take_idle(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }

    fn poll_next(&mut self, output: &mut SourceOutput<T>) -> Result<InputStatus> {
        let now = self.now();
        if let (Some(since), Some(c)) = (self.idle_since.take(), self.control.as_mut()) {
            c.idle_ms += now - since;
        }
        self.update_rate(now);
        self.resume_due(now)?;
        // Bounded partitions that are already at their end (or empty).
        while let Some(i) = self.partitions.iter().position(Partition::finished) {
            self.unassign(i)?;
        }
        for id in self.to_register.drain(..) {
            output.register_split(id);
        }
        for id in self.to_finish.drain(..) {
            output.finish_split(id);
        }
        if self.partitions.is_empty() {
            return Ok(InputStatus::EndOfInput);
        }
        let mut failed = None;
        while !output.is_full() {
            // Wait a little for the first record of a batch, never for later ones.
            let wait = if output.is_empty() { Duration::from_millis(5) } else { Duration::ZERO };
            let polled = if wait.is_zero() {
                self.consumer.poll(wait)
            } else {
                let started = Instant::now();
                let polled = self.consumer.poll(wait);
                self.waited += started.elapsed();
                polled
            };
            let message = match polled {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    failed = Some(e);
                    break;
                }
            };
            self.brokers_down_since = None;
            let (topic, partition, offset) =
                (message.topic(), message.partition(), message.offset());
            let Some(index) =
                self.partitions.iter().position(|p| p.partition == partition && p.topic == topic)
            else {
                continue; // withdrawn meanwhile
            };
            let p = &mut self.partitions[index];
            if p.stop.is_some_and(|stop| offset >= stop) {
                p.next = StartOffset::Offset(offset);
                continue;
            }
            if p.paused_until.is_some() {
                continue; // fetched before the pause; fetched again on resume
            }
            if let Some(bucket) = p.bucket.as_mut() {
                if !bucket.try_take(now) {
                    // Over the rate: pause until a batch's worth of tokens is
                    // due (each pause costs a fetch round trip); the resume
                    // rewinds to this record, which `p.next` still names.
                    p.paused_until =
                        Some(bucket.tokens_at((bucket.rate() * RATE_PAUSE_SECS).max(1.0)));
                    self.consumer.pause(&p.list()).map_err(|e| {
                        kafka_error(&self.shared.bootstrap, "cannot pause a partition", &e)
                    })?;
                    continue;
                }
            }
            output.set_split(p.id);
            p.next = StartOffset::Offset(offset + 1);
            let record = KafkaRecord::new(&message);
            match self.deserializer.deserialize(&record) {
                Ok(value) => match record.timestamp() {
                    Some(ts) => output.collect_with_timestamp(value, Timestamp(ts)),
                    None => output.collect(value),
                },
                Err(reason) => {
                    let location =
                        RecordLocation::Partition { topic: topic.to_string(), partition, offset };
                    let bytes = message.payload().unwrap_or_default();
                    output.decode_error(self.shared.on_decode_error, location, reason, bytes)?;
                }
            }
            if let Some(c) = self.control.as_mut() {
                c.emitted += 1;
            }
        }
        if let Some(e) = failed {
            self.on_poll_error(&e)?;
        }
        if output.is_empty() {
            self.idle_since = Some(self.now());
            return Ok(InputStatus::NothingAvailable);
        }
        Ok(InputStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<KafkaPartitionSplit>> {
        let positions = self
            .partitions
            .iter()
            .filter_map(|p| match p.next {
                StartOffset::Offset(o) => Some((p.topic.clone(), p.partition, o)),
                StartOffset::Earliest => None,
            })
            .collect();
        self.snapshots.push_back((checkpoint_id, positions));
        Ok(self.partitions.iter().map(Partition::split).collect())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let mut latest = None;
        while self.snapshots.front().is_some_and(|(id, _)| *id <= checkpoint_id) {
            latest = self.snapshots.pop_front();
        }
        let (Some((_, positions)), Some(_)) = (latest, self.shared.group_id.as_ref()) else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in &positions {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| self.error("cannot commit offsets", &e))?;
        }
        if tpl.count() > 0 {
            // For monitoring and lag only: a failed commit is logged, never fatal.
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                warn!(
                    "kafka {}: committing offsets of checkpoint {checkpoint_id} failed: {e}",
                    self.shared.bootstrap
                );
            }
        }
        Ok(())
    }
}

impl<T, D> KafkaReader<T, D> {
    /// Transient errors are librdkafka's to retry; brokers unreachable for
    /// too long, or a fatal error, fail the reader.
    fn on_poll_error(&mut self, e: &KafkaError) -> Result<()> {
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::PartitionEOF) => Ok(()),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure) => {
                let since = *self.brokers_down_since.get_or_insert_with(Instant::now);
                if since.elapsed() > BROKERS_DOWN_LIMIT {
                    return Err(self.error(
                        &format!("no broker reachable for {}s", BROKERS_DOWN_LIMIT.as_secs()),
                        e,
                    ));
                }
                Ok(())
            }
            Some(RDKafkaErrorCode::Fatal) => Err(self.error("fatal consumer error", e)),
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed,
            ) => Err(self.error("reading", e)),
            _ => {
                warn!("kafka {}: {e}", self.shared.bootstrap);
                Ok(())
            }
        }
    }
}
