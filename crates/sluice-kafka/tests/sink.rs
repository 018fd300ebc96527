//! The Kafka sink against noida-db (which passed the transaction checks of
//! the conformance suite). The exactly-once harness: a Kafka topic → keyed
//! rolling count and event-time windows → two Kafka topics, exactly once;
//! a crash at each point of the two-phase commit, then a restore at 2→2,
//! 2→4 and 4→2; a read_committed reader must see every expected record
//! exactly once, and no transaction of the job may be left open.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice::connectors::DataGeneratorSource;
use sluice::{
    CheckpointConfig, RestartStrategy, RestoreSource, StreamExecutionEnvironment,
    TumblingEventTimeWindows, WatermarkStrategy,
};
use sluice_kafka::testing::{Broker, BrokerKind};
use sluice_kafka::{
    string_values, DeliveryGuarantee, KafkaSink, KafkaSource, OffsetsInitializer, ProducerRecord,
};

const KEYS: u64 = 7;
const WINDOW_MS: u64 = 500;
/// Event time of record 0: now, on a window boundary. Brokers delete records
/// whose timestamps are past their retention, so event time must be recent.
fn base_time() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let ms = now.as_millis() as u64;
        ms - ms % WINDOW_MS
    })
}

/// Where the first job dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    /// After a subtask pre-committed, before it acknowledged the checkpoint.
    AfterPreCommit,
    /// After every acknowledgement, before the checkpoint completed.
    BeforeCompletion,
    /// After the checkpoint completed, before any commit.
    BeforeAnyCommit,
    /// After some sink subtasks committed and others not.
    BetweenCommits,
    /// While the restored job ends the transactions earlier attempts left open.
    WhileAbortingLeftovers,
    /// While the restored job commits the transactions its checkpoint covers.
    WhileCommittingRestored,
}

struct Topics {
    input: String,
    counts: String,
    windows: String,
}

fn topics(broker: &Broker, records: u64) -> Topics {
    let t = Topics {
        input: Broker::unique_topic("eo-in"),
        counts: Broker::unique_topic("eo-counts"),
        windows: Broker::unique_topic("eo-windows"),
    };
    // As many partitions as the largest parallelism: every reader gets an
    // equal share and no source subtask ends early (which would stop checkpoints).
    broker.create_topic(&t.input, 4);
    broker.create_topic(&t.counts, 3);
    broker.create_topic(&t.windows, 2);
    for p in 0..4 {
        let values = (0..records).filter(|i| i % 4 == p as u64).map(|i| i.to_string().into_bytes());
        broker.produce(&t.input, p, values);
    }
    t
}

/// The job: Kafka → (key, seq) → rolling count per key → Kafka, and
/// per-key counts in 500 ms event-time windows (event time = the number) → Kafka.
fn job(
    broker: &Broker,
    t: &Topics,
    dir: &Path,
    parallelism: usize,
    prefix: &str,
    fail_at: Option<u64>,
) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::new();
    let mut config = CheckpointConfig::new(Duration::from_millis(60));
    config.timeout = Duration::from_secs(20);
    env.set_parallelism(parallelism)
        .set_checkpoint_config(config)
        .set_batch_size(64)
        .set_checkpoint_storage(dir.join("checkpoints").to_str().unwrap());
    let source = KafkaSource::builder()
        .bootstrap_servers(&broker.bootstrap)
        .topics([t.input.as_str()])
        .bounded(OffsetsInitializer::latest())
        .value_deserializer(|r| string_values(r)?.parse::<u64>().map_err(|e| e.to_string()))
        .build()
        .unwrap();
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|i: &u64, _| (base_time() + i) as i64);
    let fired = Arc::new(AtomicBool::new(false));
    let records = env.from_source_with_watermarks(source, strategy, "input").uid("input").map(
        move |i: u64| {
            if fail_at == Some(i) && !fired.swap(true, Ordering::SeqCst) {
                panic!("injected failure at record {i}");
            }
            // Every partition (i % 4) equally: the readers end together.
            if (i / 4).is_multiple_of(4) {
                // Keeps the job running across several checkpoints.
                std::thread::sleep(Duration::from_millis(1));
            }
            (i % KEYS, i / KEYS, 0u64)
        },
    );
    let sink = |topic: String, prefix: String| {
        KafkaSink::builder()
            .bootstrap_servers(&broker.bootstrap)
            .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
            .transactional_id_prefix(prefix)
            .transaction_timeout(Duration::from_secs(60))
            .record_serializer(move |r: &(u64, u64, u64)| {
                ProducerRecord::to(topic.clone())
                    .key(r.0.to_string())
                    .value(serde_json::to_vec(r).unwrap())
            })
            .build()
            .unwrap()
    };
    records
        .key_by(|r: &(u64, u64, u64)| r.0)
        .reduce(|acc, r| (r.0, r.1, acc.2 + 1))
        .uid("count")
        .sink_to(sink(t.counts.clone(), format!("{prefix}-counts")))
        .uid("counts-sink");
    records
        .map(|r: (u64, u64, u64)| (r.0, 1u64, 0u64))
        .key_by(|r: &(u64, u64, u64)| r.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(WINDOW_MS)))
        .process(
            |k: &u64,
             ctx: &sluice::WindowContext,
             e: &[(u64, u64, u64)],
             out: &mut sluice::Collector<'_, (u64, u64, u64)>| {
                out.collect((*k, ctx.window.start as u64, e.len() as u64));
                Ok(())
            },
        )
        .uid("windows")
        .sink_to(sink(t.windows.clone(), format!("{prefix}-windows")))
        .uid("windows-sink");
    env
}

/// Checks what a read_committed reader sees (reading to the end proves no
/// transaction is left open): every (key, seq) once with per-key rolling
/// counts 0, 1, 2, … in commit order, and every window once with its count.
fn verify(broker: &Broker, t: &Topics, records: u64) -> Result<(), String> {
    let mut seen: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, value) in broker.read_all(&t.counts, true) {
        let (key, seq, count): (u64, u64, u64) =
            serde_json::from_slice(&value).map_err(|e| e.to_string())?;
        *seen.entry((key, seq)).or_insert(0) += 1;
        let expected = next.entry(key).or_insert(0);
        if count != *expected {
            return Err(format!("key {key} seq {seq}: count {count}, {expected} expected"));
        }
        *expected += 1;
    }
    if let Some((k, n)) = seen.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{k:?} seen {n} times"));
    }
    if seen.len() as u64 != records {
        return Err(format!("{} of {records} records seen", seen.len()));
    }
    let mut windows: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for (_, value) in broker.read_all(&t.windows, true) {
        let (key, start, n): (u64, u64, u64) =
            serde_json::from_slice(&value).map_err(|e| e.to_string())?;
        if windows.insert((key, start), n).is_some() {
            return Err(format!("window {start} of key {key} seen twice"));
        }
    }
    let mut expected: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for i in 0..records {
        let t = base_time() + i;
        *expected.entry((i % KEYS, t - t % WINDOW_MS)).or_insert(0) += 1;
    }
    if windows != expected {
        return Err(format!(
            "window counts differ: {} seen, {} expected",
            windows.len(),
            expected.len()
        ));
    }
    Ok(())
}

/// A first job at `from` subtasks dies at `crash`; a second one restores
/// its latest checkpoint at `to` subtasks and finishes.
fn crash_and_restore(crash: Crash, from: usize, to: usize) {
    let broker = Broker::get(BrokerKind::Noida);
    let records = 8_000;
    let t = topics(&broker, records);
    let dir = tempfile::tempdir().unwrap();
    let prefix = Broker::unique_topic("eo");
    let scenario = fail::FailScenario::setup();
    // Two sinks of `from` subtasks each pre-commit once per checkpoint, and
    // commit when their transaction holds records: the crash comes after a
    // few completed checkpoints.
    let skip = 3 * 2 * from;
    let first_fault = match crash {
        Crash::AfterPreCommit => fail::cfg(
            "sluice::sink::pre_commit",
            &format!("{skip}*off->1*panic(crash after pre-commit)"),
        ),
        Crash::BeforeCompletion => fail::cfg("sluice::checkpoint::complete", "3*off->1*return"),
        Crash::BeforeAnyCommit => {
            fail::cfg("sluice::sink::commit", "4*off->1*panic(crash before commit)")
        }
        Crash::BetweenCommits => {
            fail::cfg("sluice::sink::commit", "5*off->1*panic(crash between commits)")
        }
        Crash::WhileAbortingLeftovers | Crash::WhileCommittingRestored => Ok(()),
    };
    first_fault.unwrap();
    let panic_at = matches!(crash, Crash::WhileAbortingLeftovers | Crash::WhileCommittingRestored)
        .then_some(records / 2);
    let env = job(&broker, &t, dir.path(), from, &prefix, panic_at);
    env.set_restart_strategy(RestartStrategy::None);
    let died = env.execute("before the crash");
    assert!(died.is_err(), "{crash:?}: the first job must die");
    fail::remove("sluice::sink::pre_commit");
    fail::remove("sluice::checkpoint::complete");
    fail::remove("sluice::sink::commit");
    match crash {
        Crash::WhileAbortingLeftovers => {
            fail::cfg("sluice::kafka::abort_leftover", "1*panic(crash while aborting)").unwrap()
        }
        Crash::WhileCommittingRestored => {
            fail::cfg("sluice::sink::restore_commit", "1*panic(crash while committing restored)")
                .unwrap()
        }
        _ => {}
    }
    let env = job(&broker, &t, dir.path(), to, &prefix, None);
    env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::ZERO })
        .restore_from(RestoreSource::Latest);
    let result = env
        .execute("after the crash")
        .unwrap_or_else(|e| panic!("{crash:?} {from}->{to}: {}", e.report()));
    scenario.teardown();
    if matches!(crash, Crash::WhileAbortingLeftovers | Crash::WhileCommittingRestored) {
        assert!(result.restarts >= 1, "{crash:?}: the restore itself failed once");
    }
    if let Err(e) = verify(&broker, &t, records) {
        panic!("{crash:?} {from}->{to}: {e}");
    }
}

fn every_rescale(crash: Crash) {
    for (from, to) in [(2, 2), (2, 4), (4, 2)] {
        crash_and_restore(crash, from, to);
    }
}

#[test]
fn exactly_once_after_a_crash_between_pre_commit_and_acknowledgement() {
    every_rescale(Crash::AfterPreCommit);
}

#[test]
fn exactly_once_after_a_crash_before_the_checkpoint_completed() {
    every_rescale(Crash::BeforeCompletion);
}

#[test]
fn exactly_once_after_a_crash_between_completion_and_commit() {
    every_rescale(Crash::BeforeAnyCommit);
}

#[test]
fn exactly_once_after_a_crash_with_some_subtasks_committed() {
    every_rescale(Crash::BetweenCommits);
}

#[test]
fn exactly_once_after_a_crash_while_ending_leftover_transactions_on_restore() {
    every_rescale(Crash::WhileAbortingLeftovers);
}

#[test]
fn exactly_once_after_a_crash_while_committing_restored_transactions() {
    every_rescale(Crash::WhileCommittingRestored);
}

#[test]
fn without_failures_each_record_is_committed_once() {
    let broker = Broker::get(BrokerKind::Noida);
    let t = topics(&broker, 2_000);
    let dir = tempfile::tempdir().unwrap();
    let env = job(&broker, &t, dir.path(), 2, &Broker::unique_topic("eo"), None);
    env.execute("no failure").unwrap();
    verify(&broker, &t, 2_000).unwrap();
}

#[test]
fn exactly_once_spreads_keyless_records_over_partitions_added_mid_transaction() {
    // Each small batch of keyless records goes to the next partition, so
    // partitions join a transaction while produce requests are in flight.
    let broker = Broker::get(BrokerKind::Noida);
    let out = Broker::unique_topic("eo-keyless");
    broker.create_topic(&out, 6);
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1)
        .set_batch_size(16)
        .enable_checkpointing(Duration::from_millis(100))
        .set_restart_strategy(RestartStrategy::None);
    let dir = tempfile::tempdir().unwrap();
    env.set_checkpoint_storage(dir.path().to_str().unwrap());
    let source = DataGeneratorSource::new(|i| i, Some(20_000)).with_rate(40_000.0).unwrap();
    let topic = out.clone();
    env.from_source(source, "numbers").sink_to(
        KafkaSink::builder()
            .bootstrap_servers(&broker.bootstrap)
            .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
            .transactional_id_prefix(Broker::unique_topic("eo-keyless"))
            .record_serializer(move |i: &u64| {
                ProducerRecord::to(topic.clone()).value(i.to_string())
            })
            .build()
            .unwrap(),
    );
    env.execute("keyless exactly once").unwrap();
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    let mut partitions = std::collections::BTreeSet::new();
    for (p, v) in broker.read_all(&out, true) {
        partitions.insert(p);
        *seen.entry(String::from_utf8(v).unwrap().parse().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 20_000, "every record committed");
    assert!(seen.values().all(|n| *n == 1), "no record committed twice");
    assert_eq!(partitions.len(), 6, "records spread over every partition");
}

#[test]
fn at_least_once_loses_nothing_across_a_failure() {
    let broker = Broker::get(BrokerKind::Noida);
    let out = Broker::unique_topic("alo");
    broker.create_topic(&out, 2);
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2)
        .enable_checkpointing(Duration::from_millis(50))
        .set_restart_strategy(RestartStrategy::FixedDelay { attempts: 2, delay: Duration::ZERO });
    let dir = tempfile::tempdir().unwrap();
    env.set_checkpoint_storage(dir.path().to_str().unwrap());
    let fired = Arc::new(AtomicBool::new(false));
    let source = DataGeneratorSource::new(|i| i, Some(5_000)).with_rate(10_000.0).unwrap();
    let topic = out.clone();
    env.from_source(source, "numbers")
        .uid("numbers")
        .map(move |i: u64| {
            assert!(i != 2_500 || fired.swap(true, Ordering::SeqCst), "injected failure");
            i
        })
        .sink_to(
            KafkaSink::builder()
                .bootstrap_servers(&broker.bootstrap)
                .delivery_guarantee(DeliveryGuarantee::AtLeastOnce)
                .record_serializer(move |i: &u64| {
                    ProducerRecord::to(topic.clone()).value(i.to_string())
                })
                .build()
                .unwrap(),
        );
    let result = env.execute("at least once").unwrap();
    assert_eq!(result.restarts, 1);
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for (_, v) in broker.read_all(&out, false) {
        *seen.entry(String::from_utf8(v).unwrap().parse().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 5_000, "nothing lost");
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    eprintln!("at least once: {duplicates} duplicates after one failure");
}

#[test]
fn exactly_once_without_checkpointing_is_refused_before_the_job_starts() {
    let env = StreamExecutionEnvironment::new();
    env.from_sequence(10).sink_to(
        KafkaSink::builder()
            .bootstrap_servers("127.0.0.1:1")
            .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
            .transactional_id_prefix("x")
            .record_serializer(|i: &u64| ProducerRecord::to("t").value(i.to_string()))
            .build()
            .unwrap(),
    );
    let err = env.execute("refused").unwrap_err().report().to_string();
    assert!(err.contains("enable checkpointing"), "{err}");
}
