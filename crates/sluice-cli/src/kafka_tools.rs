//! `sluice kafka produce|consume`: write lines into a topic and read a topic
//! to its end, so the Kafka jobs can be tried without Kafka's own tools.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Kafka tools.
#[derive(Subcommand)]
pub enum KafkaCommand {
    /// Write each line of standard input as one record (the value) into a topic.
    Produce(ProduceArgs),
    /// Print a topic from its start to its current end: `key<TAB>value` per record.
    Consume(ConsumeArgs),
}

/// Where to find the topic.
#[derive(Args)]
pub struct TopicArgs {
    /// Kafka brokers, `HOST:PORT[,HOST:PORT…]`.
    #[arg(long)]
    bootstrap_servers: String,
    /// The topic.
    #[arg(long)]
    topic: String,
}

/// `sluice kafka produce`.
#[derive(Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    topic: TopicArgs,
    /// Creates the topic with this many partitions if it does not exist.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
}

/// `sluice kafka consume`.
#[derive(Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    topic: TopicArgs,
    /// Read only committed transactions, as a downstream exactly-once reader does.
    #[arg(long)]
    read_committed: bool,
    /// Give up (with an error naming the partitions not at their end) after this long.
    #[arg(long, value_parser = crate::parse_duration, default_value = "30s")]
    timeout: Duration,
}

/// Keeps librdkafka's retries quiet: a tool reports the one error that ends it.
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: KafkaError, _: &str) {}
}

impl ConsumerContext for Quiet {}

/// Runs a Kafka tool.
pub fn run(command: &KafkaCommand) -> Result<()> {
    match command {
        KafkaCommand::Produce(args) => produce(args),
        KafkaCommand::Consume(args) => consume(args),
    }
}

fn produce(args: &ProduceArgs) -> Result<()> {
    let TopicArgs { bootstrap_servers: bootstrap, topic } = &args.topic;
    create_if_missing(bootstrap, topic, args.partitions)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .with_context(|| format!("kafka {bootstrap}"))?;
    let mut count = 0u64;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading standard input")?;
        let mut record = BaseRecord::<(), str>::to(topic).payload(&line);
        // A full local queue is waited out, never dropped.
        while let Err((e, back)) = producer.send(record) {
            if e.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull) {
                bail!("kafka {bootstrap}: cannot write to topic '{topic}': {e}");
            }
            producer.poll(Duration::from_millis(10));
            record = back;
        }
        count += 1;
    }
    producer
        .flush(Duration::from_secs(60))
        .with_context(|| format!("kafka {bootstrap}: records to '{topic}' not acknowledged"))?;
    eprintln!("wrote {count} records to {topic}");
    Ok(())
}

fn create_if_missing(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<Quiet> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create_with_context(Quiet)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .with_context(|| format!("kafka {bootstrap}: cannot create topic '{topic}'"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("kafka {bootstrap}: cannot create topic '{t}': {e}"),
        }
    }
    Ok(())
}

fn consume(args: &ConsumeArgs) -> Result<()> {
    let TopicArgs { bootstrap_servers: bootstrap, topic } = &args.topic;
    let isolation = if args.read_committed { "read_committed" } else { "read_uncommitted" };
    let consumer: BaseConsumer<Quiet> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-kafka-consume")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create_with_context(Quiet)
        .with_context(|| format!("kafka {bootstrap}"))?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("kafka {bootstrap}: cannot fetch metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("kafka {bootstrap}: topic '{topic}' does not exist");
    }
    // The end of each partition now; the read stops there.
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .with_context(|| format!("kafka {bootstrap}: end offset of {topic}-{p}"))?;
        ends.push((p, high));
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + args.timeout;
    let mut out = std::io::stdout().lock();
    loop {
        let position = consumer.position()?;
        let behind: Vec<String> = ends
            .iter()
            .filter(|(p, end)| match position.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o < *end,
                _ => *end > 0,
            })
            .map(|(p, end)| format!("{topic}-{p} (end {end})"))
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let hint =
                if args.read_committed { " (an open transaction holds them back)" } else { "" };
            bail!("not at the end after {:?}: {}{hint}", args.timeout, behind.join(", "));
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message =
                message.with_context(|| format!("kafka {bootstrap}: reading '{topic}'"))?;
            let key = message.key().map(String::from_utf8_lossy).unwrap_or_default();
            let value = message.payload().map(String::from_utf8_lossy).unwrap_or_default();
            writeln!(out, "{key}\t{value}")?;
        }
    }
}
