//! `sluice bench kafka-source` and `sluice bench kafka-sink`: the Kafka
//! connector's throughput against its limits, measured in one run.
//!
//! - kafka-source: a topic read into a discarding sink, against a plain
//!   librdkafka consumer loop reading the same topic from the same broker;
//!   with `--max-rate-per-partition`, the rate the source then keeps to.
//! - kafka-sink: Kafka → map → Kafka at least once and exactly once
//!   (checkpoints every `--checkpoint-interval`), events/s on a filled
//!   topic, and end-to-end latency (p50/p99) of records produced at a
//!   steady rate while the job runs, read back with `read_committed`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice::{RestartStrategy, StreamExecutionEnvironment};
use sluice_kafka::{DeliveryGuarantee, KafkaSink, KafkaSource, OffsetsInitializer, ProducerRecord};

/// What the Kafka benchmarks read and write.
#[derive(Args, Clone)]
pub struct KafkaBenchArgs {
    /// Kafka brokers, host:port.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Partitions of the topics the benchmark creates.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// kafka-source: at most this many records per second per partition.
    #[arg(long)]
    max_rate_per_partition: Option<f64>,
    /// kafka-sink: records per second produced while the latency is measured.
    #[arg(long, default_value_t = 5_000)]
    latency_rate: u64,
}

/// What one benchmark run needs.
pub struct KafkaBench<'a> {
    /// Kafka settings.
    pub kafka: &'a KafkaBenchArgs,
    /// Records per run.
    pub events: u64,
    /// Bytes per record value.
    pub record_bytes: usize,
    /// Parallelism.
    pub parallelism: usize,
    /// Runs.
    pub runs: usize,
    /// Checkpoint interval (kafka-sink; default 1 s).
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints go.
    pub checkpoint_dir: &'a std::path::Path,
}

/// noida-db answers a fetch with everything it has, whatever the fetch's
/// size limits: the clients must accept large responses.
const RECEIVE_MAX_BYTES: &str = "1000000000";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn bootstrap(b: &KafkaBench<'_>) -> Result<String> {
    b.kafka
        .bootstrap_servers
        .clone()
        .context("the Kafka benchmarks need --bootstrap-servers HOST:PORT")
}

fn create_topic(bootstrap: &str, partitions: i32) -> Result<String> {
    let topic = format!("sluice-bench-{}", now_ms());
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let new = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1));
    for r in runtime.block_on(admin.create_topics([&new], &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("cannot create topic {t}: {e}"))?;
    }
    Ok(topic)
}

fn producer(bootstrap: &str) -> Result<BaseProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .create()?)
}

/// Writes `count` records round robin over the partitions; each value starts with its produce time.
fn fill(bootstrap: &str, topic: &str, partitions: i32, count: u64, bytes: usize) -> Result<()> {
    let producer = producer(bootstrap)?;
    let padding = "x".repeat(bytes.saturating_sub(14));
    for i in 0..count {
        let value = format!("{:013}:{padding}", now_ms());
        let mut record = BaseRecord::<(), str>::to(topic)
            .partition((i % partitions as u64) as i32)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(5));
                    record = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Assigns every partition of `topic` to `consumer`, from its first record.
fn assign_from_start(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(())
}

/// A plain librdkafka consumer loop: every partition from the start, until `count` records.
fn plain_loop(bootstrap: &str, topic: &str, partitions: i32, count: u64) -> Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-bench-plain")
        // The same client settings as the Kafka source's, so only the loop differs.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("receive.message.max.bytes", RECEIVE_MAX_BYTES)
        .create()?;
    assign_from_start(&consumer, topic, partitions)?;
    let started = Instant::now();
    let (mut seen, mut bytes) = (0u64, 0usize);
    while seen < count {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            bytes += m?.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

/// Kafka → discard against the plain loop; with a rate limit, the rate kept.
pub fn source(b: &KafkaBench<'_>) -> Result<()> {
    let bootstrap = bootstrap(b)?;
    let partitions = b.kafka.partitions;
    let topic = create_topic(&bootstrap, partitions)?;
    fill(&bootstrap, &topic, partitions, b.events, b.record_bytes)?;
    println!(
        "kafka-source: {} records of {} bytes in {partitions} partitions of {topic}, parallelism {}",
        b.events, b.record_bytes, b.parallelism
    );
    let (mut plain, mut sluice) = (Vec::new(), Vec::new());
    for run in 1..=b.runs {
        let limit = b.kafka.max_rate_per_partition;
        // With a limit, the figure is the rate kept: the plain loop is not the bound.
        let baseline = match limit {
            None => plain_loop(&bootstrap, &topic, partitions, b.events)?,
            Some(max) => max * partitions as f64,
        };
        let env = StreamExecutionEnvironment::new();
        env.set_parallelism(b.parallelism);
        let mut builder = KafkaSource::builder()
            .bootstrap_servers(&bootstrap)
            .topics([topic.as_str()])
            .property("receive.message.max.bytes", RECEIVE_MAX_BYTES)
            .bounded(OffsetsInitializer::latest());
        if let Some(rate) = limit {
            builder = builder.max_records_per_partition_per_second(rate);
        }
        let source =
            builder.value_deserializer(|r| Ok(r.value().map_or(0, <[u8]>::len) as u64)).build()?;
        env.from_source(source, "kafka").discard();
        let started = Instant::now();
        let result = env.execute("kafka source benchmark")?;
        let rate = b.events as f64 / started.elapsed().as_secs_f64();
        let read: u64 = result.vertices.iter().map(|v| v.source_records).sum();
        if read != b.events {
            bail!("the source read {read} records, not {}", b.events);
        }
        match limit {
            None => println!(
                "run {run}: plain loop {baseline:.0} records/s, Sluice {rate:.0} records/s, ratio {:.2}",
                rate / baseline
            ),
            Some(max) => println!(
                "run {run}: limit {max:.0} records/s per partition, kept {:.0} per partition ({:.3} of the limit)",
                rate / partitions as f64,
                rate / baseline
            ),
        }
        plain.push(baseline);
        sluice.push(rate);
    }
    let ratios: Vec<f64> = sluice.iter().zip(&plain).map(|(s, p)| s / p).collect();
    let ((pmin, pmed), (smin, smed), (rmin, rmed)) =
        (median(plain), median(sluice), median(ratios));
    if b.kafka.max_rate_per_partition.is_none() {
        println!("plain loop records/s: min {pmin:.0}, median {pmed:.0}");
    }
    println!("Sluice records/s:     min {smin:.0}, median {smed:.0}");
    println!("Sluice / bound:       min {rmin:.2}, median {rmed:.2}");
    Ok(())
}

/// One Kafka → map → Kafka job over `input` into `output`; bounded or not.
fn pipeline(
    b: &KafkaBench<'_>,
    bootstrap: &str,
    input: &str,
    output: String,
    guarantee: DeliveryGuarantee,
    bounded: bool,
    run: usize,
) -> Result<StreamExecutionEnvironment> {
    let env = StreamExecutionEnvironment::new();
    let dir = b.checkpoint_dir.join(format!("{guarantee:?}-{run}-{}", now_ms()));
    env.set_parallelism(b.parallelism)
        .enable_checkpointing(b.checkpoint_interval.unwrap_or(Duration::from_secs(1)))
        .set_checkpoint_storage(dir.display().to_string())
        .set_restart_strategy(RestartStrategy::None);
    let mut builder = KafkaSource::builder()
        .bootstrap_servers(bootstrap)
        .topics([input])
        .property("receive.message.max.bytes", RECEIVE_MAX_BYTES);
    if bounded {
        builder = builder.bounded(OffsetsInitializer::latest());
    }
    let source =
        builder.value_deserializer(|r| Ok(r.value().unwrap_or_default().to_vec())).build()?;
    let sink = KafkaSink::builder()
        .bootstrap_servers(bootstrap)
        .delivery_guarantee(guarantee)
        .transactional_id_prefix(format!("sluice-bench-{output}"))
        .record_serializer(move |v: &Vec<u8>| ProducerRecord::to(output.clone()).value(v.clone()))
        .build()?;
    // The map: what a job does to each record (here: upper-case the padding).
    env.from_source(source, "kafka")
        .map(|mut v: Vec<u8>| {
            v.make_ascii_uppercase();
            v
        })
        .sink_to(sink);
    Ok(env)
}

/// Reads `topic` (read_committed) until `expected` records came or `stop`;
/// latency = read time − the time in the value (−1 for records sent before
/// `measure_from`).
fn latencies(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    measure_from: i64,
    stop: &AtomicBool,
) -> Result<Vec<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-bench-latency")
        .set("isolation.level", "read_committed")
        .set("receive.message.max.bytes", RECEIVE_MAX_BYTES)
        .create()?;
    assign_from_start(&consumer, topic, partitions)?;
    let mut samples = Vec::new();
    while samples.len() < expected && !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let sent: Option<i64> = m
                .payload()
                .and_then(|v| std::str::from_utf8(&v[..13.min(v.len())]).ok()?.parse().ok());
            match sent {
                // Records sent while the job started up count as read, not measured.
                Some(sent) if sent >= measure_from => samples.push(now_ms() - sent),
                _ => samples.push(-1),
            }
        }
    }
    Ok(samples)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0)
}

/// Kafka → map → Kafka, at least once and exactly once, in turns.
pub fn sink(b: &KafkaBench<'_>) -> Result<()> {
    let bootstrap = bootstrap(b)?;
    let partitions = b.kafka.partitions;
    let input = create_topic(&bootstrap, partitions)?;
    fill(&bootstrap, &input, partitions, b.events, b.record_bytes)?;
    println!(
        "kafka-sink: Kafka -> map -> Kafka, {} records of {} bytes, {partitions} partitions, parallelism {}, checkpoints every {:?}",
        b.events,
        b.record_bytes,
        b.parallelism,
        b.checkpoint_interval.unwrap_or(Duration::from_secs(1))
    );
    let guarantees = [DeliveryGuarantee::AtLeastOnce, DeliveryGuarantee::ExactlyOnce];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for run in 1..=b.runs {
        for (g, guarantee) in guarantees.iter().enumerate() {
            let output = create_topic(&bootstrap, partitions)?;
            let env = pipeline(b, &bootstrap, &input, output, *guarantee, true, run)?;
            let started = Instant::now();
            env.execute("kafka sink benchmark")?;
            let rate = b.events as f64 / started.elapsed().as_secs_f64();
            println!("run {run}: {guarantee:?} {rate:.0} records/s");
            rates[g].push(rate);
        }
    }
    let ratios: Vec<f64> = rates[1].iter().zip(&rates[0]).map(|(e, a)| e / a).collect();
    for (g, guarantee) in guarantees.iter().enumerate() {
        let (min, med) = median(rates[g].clone());
        println!("{guarantee:?} records/s: min {min:.0}, median {med:.0}");
    }
    let (rmin, rmed) = median(ratios);
    println!("exactly once / at least once: min {rmin:.2}, median {rmed:.2}");

    // Latency: records produced at a steady rate while the job runs.
    for guarantee in guarantees {
        let input = create_topic(&bootstrap, partitions)?;
        let output = create_topic(&bootstrap, partitions)?;
        let env = pipeline(b, &bootstrap, &input, output.clone(), guarantee, false, 0)?;
        let client = env.execute_async("kafka sink latency")?;
        let stop = Arc::new(AtomicBool::new(false));
        let rate = b.kafka.latency_rate.max(1);
        // 2 s to start the job, then 10 s measured.
        let total = rate * 12;
        let measure_from = now_ms() + 2_000;
        let reader = {
            let (bootstrap, stop) = (bootstrap.clone(), stop.clone());
            std::thread::spawn(move || {
                latencies(&bootstrap, &output, partitions, total as usize, measure_from, &stop)
            })
        };
        let producer = producer(&bootstrap)?;
        let started = Instant::now();
        for i in 0..total {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let value = format!("{:013}:latency", now_ms());
            let record = BaseRecord::<(), str>::to(&input)
                .partition((i % partitions as u64) as i32)
                .payload(&value);
            let _ = producer.send(record);
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30))?;
        // The reader ends when every record came; a stuck job ends it here.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        let mut samples =
            reader.join().map_err(|_| anyhow::anyhow!("the latency reader panicked"))??;
        client.cancel();
        let _ = client.wait();
        if samples.is_empty() {
            bail!("no record came through for {guarantee:?}");
        }
        let read = samples.len();
        samples.retain(|l| *l >= 0);
        samples.sort_unstable();
        println!(
            "{guarantee:?} latency at {rate} records/s: p50 {} ms, p99 {} ms ({} measured, {read} of {total} records read)",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples.len()
        );
    }
    Ok(())
}
