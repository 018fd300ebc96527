//! The Kafka source against real brokers (noida-db, and tansu for the
//! consumer path): exact reads at several parallelisms, partitions and
//! topics found while the job runs, restores from checkpoints and
//! savepoints at another parallelism, committed group offsets, idle
//! partitions, bad records, and errors a user can act on (authorization
//! failures on librdkafka's mock cluster).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::connectors::ExactlyOnceFileSink;
use sluice::{
    DecodeErrorPolicy, DecodeFailure, ErrorOrigin, JobClient, OutputTag, RecordLocation,
    RestartStrategy, RestoreSource, SluiceError, StreamExecutionEnvironment,
    TumblingEventTimeWindows, WatermarkStrategy,
};
use sluice_kafka::testing::{Broker, BrokerKind};
use sluice_kafka::{string_values, KafkaSource, OffsetsInitializer};

/// A source of numbers written as text.
type Numbers = KafkaSource<u64, fn(&sluice_kafka::KafkaRecord<'_>) -> Result<u64, String>>;

/// Records `0..count` as decimal text, record i in partition i % partitions.
fn fill(broker: &Broker, topic: &str, partitions: i32, range: std::ops::Range<u64>) {
    for p in 0..partitions {
        let values = range
            .clone()
            .filter(|i| *i as i32 % partitions == p)
            .map(|i| i.to_string().into_bytes());
        broker.produce(topic, p, values);
    }
}

fn numbers(record: &sluice_kafka::KafkaRecord<'_>) -> Result<u64, String> {
    string_values(record)?.parse().map_err(|e| format!("not a number: {e}"))
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_bounded(broker: &Broker, topic: &str, parallelism: usize) -> Vec<u64> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism);
    let source = KafkaSource::builder()
        .bootstrap_servers(&broker.bootstrap)
        .topics([topic])
        .bounded(OffsetsInitializer::latest())
        .value_deserializer(numbers)
        .build()
        .unwrap();
    let mut got = env.from_source(source, "kafka").execute_and_collect("bounded read").unwrap();
    got.sort_unstable();
    got
}

#[test]
fn a_topic_is_read_exactly_at_parallelism_1_2_and_3() {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("read");
    broker.create_topic(&topic, 4);
    fill(&broker, &topic, 4, 0..4000);
    for p in 1..=3 {
        assert_eq!(
            read_bounded(&broker, &topic, p),
            (0..4000).collect::<Vec<_>>(),
            "parallelism {p}"
        );
    }
}

#[test]
fn tansu_serves_the_consumer_path_of_an_unbounded_source() {
    // tansu reports wrong end offsets (see docs/KAFKA.md), so read unbounded until every record arrived.
    let broker = Broker::get(BrokerKind::Tansu);
    let topic = Broker::unique_topic("tansu");
    broker.create_topic(&topic, 2);
    fill(&broker, &topic, 2, 0..500);
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let source = KafkaSource::builder()
        .bootstrap_servers(&broker.bootstrap)
        .topics([topic.as_str()])
        .value_deserializer(numbers)
        .build()
        .unwrap();
    let out = env.from_source(source, "kafka").collect();
    let client = env.execute_async("tansu").unwrap();
    wait_until("500 records", Duration::from_secs(30), || client.source_records() >= 500);
    client.cancel();
    assert!(matches!(client.wait(), Err(SluiceError::Cancelled)));
    let mut got = out.take();
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
}

/// An unbounded job: Kafka → map (fails once at `fail_at`) → exactly-once files.
fn exactly_once_job(
    source: Numbers,
    dir: &std::path::Path,
    parallelism: usize,
    fail_at: Option<u64>,
    restore: Option<RestoreSource>,
) -> JobClient {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism)
        .enable_checkpointing(Duration::from_millis(50))
        .set_checkpoint_storage(dir.join("checkpoints").to_str().unwrap())
        .set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::ZERO });
    if let Some(r) = restore {
        env.restore_from(r);
    }
    let fired = Arc::new(AtomicBool::new(false));
    env.from_source(source, "kafka")
        .uid("kafka")
        .map(move |i: u64| {
            if fail_at == Some(i) && !fired.swap(true, Ordering::SeqCst) {
                panic!("injected failure at {i}");
            }
            i
        })
        .sink_to_exactly_once(ExactlyOnceFileSink::ndjson(dir.join("out")))
        .uid("sink");
    env.execute_async("kafka exactly once").unwrap()
}

/// Every committed record, with how often it was committed.
fn committed(dir: &std::path::Path) -> BTreeMap<u64, u32> {
    let mut seen = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir.join("out")) else { return seen };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            *seen.entry(line.parse::<u64>().unwrap()).or_insert(0) += 1;
        }
    }
    seen
}

fn assert_exactly(dir: &std::path::Path, expected: std::ops::Range<u64>) {
    let seen = committed(dir);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "committed more than once: {twice:?}");
    let missing: Vec<u64> = expected.clone().filter(|i| !seen.contains_key(i)).collect();
    assert!(missing.is_empty(), "lost: {} records, first {:?}", missing.len(), missing.first());
    assert_eq!(seen.len() as u64, expected.end - expected.start, "no record from elsewhere");
}

fn unbounded_source(broker: &Broker, topic: &str, group: Option<&str>) -> Numbers {
    let mut builder = KafkaSource::builder()
        .bootstrap_servers(&broker.bootstrap)
        .topics([topic])
        .partition_discovery_interval(Duration::from_millis(200));
    if let Some(group) = group {
        builder = builder.group_id(group);
    }
    builder
        .value_deserializer(numbers as fn(&sluice_kafka::KafkaRecord<'_>) -> Result<u64, String>)
        .build()
        .unwrap()
}

#[test]
fn partitions_added_while_the_job_runs_are_read_from_their_start_exactly_once_across_a_failure() {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("grow");
    broker.create_topic(&topic, 2);
    fill(&broker, &topic, 2, 0..2000);
    let dir = tempfile::tempdir().unwrap();
    let client =
        exactly_once_job(unbounded_source(&broker, &topic, None), dir.path(), 2, Some(3100), None);
    wait_until("the first records", Duration::from_secs(30), || {
        committed(dir.path()).len() >= 2000
    });
    // Two new partitions; records land in them before the source can know of them.
    broker.add_partitions(&topic, 4).unwrap();
    for p in 2..4 {
        broker.produce(
            &topic,
            p,
            (2000..3000u64).filter(|i| *i as i32 % 4 == p).map(|i| i.to_string().into_bytes()),
        );
    }
    // ...and after discovery, in every partition.
    wait_until("discovery", Duration::from_secs(30), || committed(dir.path()).len() >= 2500);
    fill(&broker, &topic, 4, 3000..5000);
    let expected: Vec<u64> =
        (0..2000).chain((2000..3000).filter(|i| i % 4 >= 2)).chain(3000..5000).collect();
    wait_until("every expected record", Duration::from_secs(60), || {
        let c = committed(dir.path());
        expected.iter().all(|i| c.contains_key(i))
    });
    let restarts = client.exceptions().iter().filter(|e| e.restarted).count();
    client.cancel();
    let _ = client.wait();
    assert_eq!(restarts, 1, "the injected failure restarted the job");
    let seen = committed(dir.path());
    assert!(seen.values().all(|n| *n == 1), "nothing committed twice");
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), expected);
}

#[test]
fn a_new_topic_matching_the_pattern_is_picked_up_and_a_deleted_topic_is_dropped() {
    let broker = Broker::get(BrokerKind::Noida);
    let prefix = Broker::unique_topic("pattern");
    let first = format!("{prefix}-a");
    broker.create_topic(&first, 1);
    broker.produce(&first, 0, (0..10u64).map(|i| i.to_string().into_bytes()));
    let env = StreamExecutionEnvironment::new();
    let source = KafkaSource::builder()
        .bootstrap_servers(&broker.bootstrap)
        .topic_pattern(&format!("{prefix}-.*"))
        .unwrap()
        .partition_discovery_interval(Duration::from_millis(200))
        .value_deserializer(numbers)
        .build()
        .unwrap();
    let out = env.from_source(source, "kafka").collect();
    let client = env.execute_async("pattern").unwrap();
    wait_until("the first topic", Duration::from_secs(30), || client.source_records() >= 10);
    let second = format!("{prefix}-b");
    broker.create_topic(&second, 1);
    broker.produce(&second, 0, (100..110u64).map(|i| i.to_string().into_bytes()));
    wait_until("the new topic", Duration::from_secs(30), || client.source_records() >= 20);
    broker.delete_topic(&first).unwrap();
    broker.produce(&second, 0, (200..205u64).map(|i| i.to_string().into_bytes()));
    wait_until("the surviving topic", Duration::from_secs(30), || client.source_records() >= 25);
    assert!(!client.is_done(), "a deleted topic does not fail the job");
    client.cancel();
    assert!(matches!(client.wait(), Err(SluiceError::Cancelled)));
    let mut got = out.take();
    got.sort_unstable();
    let expected: Vec<u64> = (0..10).chain(100..110).chain(200..205).collect();
    assert_eq!(got, expected);
}

fn restore_at_another_parallelism(savepoint: bool) {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("restore");
    broker.create_topic(&topic, 3);
    fill(&broker, &topic, 3, 0..3000);
    let dir = tempfile::tempdir().unwrap();
    let client =
        exactly_once_job(unbounded_source(&broker, &topic, None), dir.path(), 2, None, None);
    wait_until("the first records", Duration::from_secs(30), || {
        committed(dir.path()).len() >= 3000
    });
    let restore = if savepoint {
        let path =
            client.stop_with_savepoint(dir.path().join("savepoint").to_str().unwrap()).unwrap();
        let _ = client.wait();
        RestoreSource::Path(path)
    } else {
        // A checkpoint after everything read so far, then a hard stop.
        let before = client.checkpoint_stats().len();
        wait_until("another checkpoint", Duration::from_secs(30), || {
            client
                .checkpoint_stats()
                .iter()
                .skip(before)
                .any(|c| c.status == sluice::CheckpointStatus::Completed)
        });
        client.cancel();
        let _ = client.wait();
        RestoreSource::Latest
    };
    fill(&broker, &topic, 3, 3000..6000);
    let client = exactly_once_job(
        unbounded_source(&broker, &topic, None),
        dir.path(),
        3,
        None,
        Some(restore),
    );
    wait_until("every record", Duration::from_secs(60), || committed(dir.path()).len() >= 6000);
    client.cancel();
    let _ = client.wait();
    assert_exactly(dir.path(), 0..6000);
}

#[test]
fn a_restore_from_a_savepoint_at_another_parallelism_resumes_each_partition_after_its_offset() {
    restore_at_another_parallelism(true);
}

#[test]
fn a_restore_from_the_latest_checkpoint_at_another_parallelism_resumes_each_partition_after_its_offset(
) {
    restore_at_another_parallelism(false);
}

#[test]
fn committed_group_offsets_follow_completed_checkpoints() {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("commits");
    broker.create_topic(&topic, 2);
    fill(&broker, &topic, 2, 0..1000);
    let group = Broker::unique_topic("group");
    let dir = tempfile::tempdir().unwrap();
    let client = exactly_once_job(
        unbounded_source(&broker, &topic, Some(&group)),
        dir.path(),
        1,
        None,
        None,
    );
    wait_until("offsets committed at the end of each partition", Duration::from_secs(30), || {
        broker.committed(&group, &topic, 2) == vec![Some(500), Some(500)]
    });
    client.cancel();
    let _ = client.wait();
    assert_exactly(dir.path(), 0..1000);
}

#[test]
fn an_idle_partition_does_not_stall_an_event_time_window() {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("idle");
    broker.create_topic(&topic, 2);
    // Only partition 0 gets data; event time is the number, in ms.
    broker.produce(&topic, 0, (0..3000u64).step_by(10).map(|i| i.to_string().into_bytes()));
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let source = KafkaSource::builder()
        .bootstrap_servers(&broker.bootstrap)
        .topics([topic.as_str()])
        .value_deserializer(numbers)
        .build()
        .unwrap();
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|i: &u64, _| *i as i64)
        .with_idleness(Duration::from_millis(200));
    let out = env
        .from_source_with_watermarks(source, strategy, "kafka")
        .map(|i: u64| (0u8, i))
        .key_by(|r: &(u8, u64)| r.0)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .reduce(|a, b| (a.0, a.1.max(b.1)))
        .collect();
    let client = env.execute_async("idle partition").unwrap();
    wait_until("the windows before the last record", Duration::from_secs(30), || out.len() >= 2);
    client.cancel();
    let _ = client.wait();
    let got: Vec<u64> = out.take().into_iter().map(|(_, max)| max).collect();
    assert_eq!(&got[..2], &[990, 1990], "the first two windows fire although partition 1 is empty");
}

#[test]
fn bad_records_fail_the_job_or_are_skipped_or_sent_to_the_side_output_naming_topic_partition_and_offset(
) {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("bad");
    broker.create_topic(&topic, 1);
    let values: Vec<Vec<u8>> =
        (0..100u64)
            .map(|i| {
                if i % 25 == 7 {
                    b"\xff not a number".to_vec()
                } else {
                    i.to_string().into_bytes()
                }
            })
            .collect();
    broker.produce(&topic, 0, values);
    let run = |policy: DecodeErrorPolicy| {
        let env = StreamExecutionEnvironment::new();
        let source = KafkaSource::builder()
            .bootstrap_servers(&broker.bootstrap)
            .topics([topic.as_str()])
            .bounded(OffsetsInitializer::latest())
            .on_decode_error(policy)
            .value_deserializer(numbers)
            .build()
            .unwrap();
        let stream = env.from_source(source, "kafka");
        let good = stream.collect();
        let dead = stream.get_side_output(&OutputTag::<DecodeFailure>::decode_failures()).collect();
        env.execute("bad records").map(|r| (r, good.take(), dead.take()))
    };
    let err = run(DecodeErrorPolicy::Fail).unwrap_err();
    let text = err.report().to_string();
    assert!(
        text.contains(&format!("topic '{topic}' partition 0 offset 7"))
            && text.contains("not UTF-8"),
        "{text}"
    );
    assert_eq!(err.origin(), ErrorOrigin::User);

    let (result, good, dead) = run(DecodeErrorPolicy::Skip).unwrap();
    assert_eq!(good.len(), 96);
    assert!(dead.is_empty());
    assert_eq!(result.vertices.iter().map(|v| v.records_in_errors).sum::<u64>(), 4);

    let (_, good, dead) = run(DecodeErrorPolicy::SideOutput).unwrap();
    assert_eq!(good.len(), 96);
    let offsets: Vec<i64> = dead
        .iter()
        .map(|d| match &d.location {
            RecordLocation::Partition { topic: t, partition: 0, offset } if *t == topic => *offset,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(offsets, vec![7, 32, 57, 82]);
    assert!(dead.iter().all(|d| d.bytes.starts_with(b"\xff")));
}

#[test]
fn an_unreachable_broker_fails_the_job_naming_the_bootstrap_servers_after_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bootstrap = format!("127.0.0.1:{port}");
    let env = StreamExecutionEnvironment::new();
    let source = KafkaSource::builder()
        .bootstrap_servers(&bootstrap)
        .topics(["orders"])
        .request_timeout(Duration::from_millis(500))
        .value_deserializer(numbers)
        .build()
        .unwrap();
    env.from_source(source, "kafka").discard();
    let err = env.execute("no broker").unwrap_err();
    let text = err.report().to_string();
    assert!(text.contains(&format!("kafka {bootstrap}")) && text.contains("metadata"), "{text}");
    assert_eq!(err.origin(), ErrorOrigin::External);
}

#[test]
fn a_missing_topic_is_an_error_without_discovery_and_is_waited_for_with_it() {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("later");
    let env = StreamExecutionEnvironment::new();
    let source = KafkaSource::builder()
        .bootstrap_servers(&broker.bootstrap)
        .topics([topic.as_str()])
        .partition_discovery_interval(Duration::ZERO)
        .value_deserializer(numbers)
        .build()
        .unwrap();
    env.from_source(source, "kafka").discard();
    let text = env.execute("missing").unwrap_err().report().to_string();
    assert!(text.contains(&format!("topic '{topic}' does not exist")), "{text}");

    let env = StreamExecutionEnvironment::new();
    let source = KafkaSource::builder()
        .bootstrap_servers(&broker.bootstrap)
        .topics([topic.as_str()])
        .partition_discovery_interval(Duration::from_millis(100))
        .value_deserializer(numbers)
        .build()
        .unwrap();
    let out = env.from_source(source, "kafka").collect();
    let client = env.execute_async("waits").unwrap();
    broker.create_topic(&topic, 1);
    broker.produce(&topic, 0, (0..5u64).map(|i| i.to_string().into_bytes()));
    wait_until("the topic's records", Duration::from_secs(30), || client.source_records() >= 5);
    client.cancel();
    let _ = client.wait();
    assert_eq!(out.take(), vec![0, 1, 2, 3, 4]);
}

/// librdkafka's mock cluster, which can answer with any error a real broker
/// with ACLs would (noida-db and tansu have no ACLs).
fn denying_cluster(
    topic: &str,
) -> rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic(topic, 2, 1).unwrap();
    cluster
}

/// Reads `topic` from the mock cluster with restarts allowed; the job's error.
fn run_denied(
    cluster: &rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    topic: &str,
) -> SluiceError {
    let env = StreamExecutionEnvironment::new();
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 5, delay: Duration::ZERO });
    let source = KafkaSource::builder()
        .bootstrap_servers(cluster.bootstrap_servers())
        .topics([topic])
        .value_deserializer(numbers)
        .build()
        .unwrap();
    env.from_source(source, "kafka").discard();
    env.execute("denied").unwrap_err()
}

#[test]
fn a_topic_the_job_may_not_describe_fails_at_once_with_the_brokers_message() {
    let topic = "orders";
    let cluster = denying_cluster(topic);
    cluster
        .topic_error(
            topic,
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    let err = run_denied(&cluster, topic);
    let text = err.report().to_string();
    assert!(text.contains("not authorized") && text.contains("topic 'orders'"), "{text}");
    assert!(text.contains("Topic authorization failed"), "the broker's message: {text}");
    assert_eq!(err.origin(), ErrorOrigin::User, "a retry cannot help: no restart");
}

#[test]
fn a_fetch_the_job_may_not_make_fails_the_job_without_restarts() {
    let topic = "orders";
    let cluster = denying_cluster(topic);
    // Every fetch is refused, as a broker does when the ACL allows Describe
    // but not Read.
    let denied = [rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 64];
    cluster.request_errors(rdkafka::types::RDKafkaApiKey::Fetch, &denied);
    let err = run_denied(&cluster, topic);
    let text = err.report().to_string();
    assert!(text.contains("reading: not authorized"), "{text}");
    assert!(text.contains("Topic authorization failed"), "the broker's message: {text}");
    assert_eq!(err.origin(), ErrorOrigin::User, "{text}");
}

#[test]
fn a_reader_reports_how_many_records_it_is_behind_the_partitions_ends() {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("lag");
    broker.create_topic(&topic, 2);
    fill(&broker, &topic, 2, 0..2_000);
    let env = StreamExecutionEnvironment::new();
    // 50 records per second per partition: the backlog drains slowly.
    let source = KafkaSource::builder()
        .bootstrap_servers(&broker.bootstrap)
        .topics([topic.as_str()])
        .max_records_per_partition_per_second(50.0)
        .value_deserializer(numbers)
        .build()
        .unwrap();
    env.from_source(source, "kafka").discard();
    let client = env.execute_async("lag").unwrap();
    let lag = || client.subtask_metrics().iter().find_map(|(_, _, m)| m.source_lag());
    wait_until("the reader's lag", Duration::from_secs(30), || lag().is_some_and(|l| l > 0));
    let behind = lag().unwrap();
    assert!((1_000..=2_000).contains(&behind), "{behind} records behind of 2000 written");
    client.cancel();
    let _ = client.wait();
}

#[test]
fn a_reader_waiting_for_records_counts_as_idle_not_busy() {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("idle");
    broker.create_topic(&topic, 1);
    let env = StreamExecutionEnvironment::new();
    env.from_source(unbounded_source(&broker, &topic, None), "kafka").discard();
    let client = env.execute_async("idle").unwrap();
    let started = Instant::now();
    let idle = || client.subtask_metrics()[0].2.idle_nanos() as f64 / 1e9;
    // An empty topic: nearly all of the reader's time is waiting.
    wait_until("a second of idle time", Duration::from_secs(30), || idle() >= 1.0);
    let share = idle() / started.elapsed().as_secs_f64();
    assert!(share > 0.5, "idle {share:.2} of the time");
    client.cancel();
    let _ = client.wait();
}
