//! Checkpoints end to end: exactly-once state across an injected failure,
//! and a new job resuming a stopped job's latest checkpoint at another parallelism.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::connectors::DataGeneratorSource;
use sluice::{RestartStrategy, RestoreSource, StreamExecutionEnvironment};

const KEYS: u64 = 100;

/// Builds: paced numbers 0..count → (key, 1) → keyed rolling sum (uid "sum") → collect.
fn rolling_sums(
    env: &StreamExecutionEnvironment,
    count: u64,
    fail_at: Option<(u64, Arc<AtomicBool>)>,
) -> sluice::connectors::CollectHandle<(u64, u64)> {
    let source = DataGeneratorSource::new(|i| i, Some(count)).with_rate(100_000.0).unwrap();
    env.from_source(source, "numbers")
        .uid("numbers")
        .map(move |i: u64| {
            if let Some((at, failed)) = &fail_at {
                if i == *at && !failed.swap(true, Ordering::SeqCst) {
                    panic!("injected failure at record {i}");
                }
            }
            (i % KEYS, 1u64)
        })
        .key_by(|(k, _): &(u64, u64)| *k)
        .sum(|(_, c)| c)
        .uid("sum")
        .collect()
}

/// The final (largest) rolling sum per key.
fn finals(updates: Vec<(u64, u64)>) -> BTreeMap<u64, u64> {
    let mut m = BTreeMap::new();
    for (k, c) in updates {
        let e = m.entry(k).or_insert(0);
        *e = c.max(*e);
    }
    m
}

#[test]
fn keyed_state_is_exactly_once_across_a_failure_and_a_restart_from_the_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2)
        .enable_checkpointing(Duration::from_millis(50))
        .set_checkpoint_storage(dir.path().to_str().unwrap())
        .set_restart_strategy(RestartStrategy::FixedDelay { attempts: 1, delay: Duration::ZERO });
    let failed = Arc::new(AtomicBool::new(false));
    let count = 60_000;
    let out = rolling_sums(&env, count, Some((45_000, failed.clone())));
    let result = env.execute("exactly-once").unwrap();

    assert!(failed.load(Ordering::SeqCst), "the failure was injected");
    assert_eq!(result.restarts, 1);
    let completed = result
        .checkpoints
        .iter()
        .filter(|c| {
            c.status == sluice_checkpoint::checkpoint_coordinator::CheckpointStatus::Completed
        })
        .count();
    assert!(completed >= 2, "checkpoints completed before the failure: {completed}");
    let expected: BTreeMap<u64, u64> = (0..KEYS).map(|k| (k, count / KEYS)).collect();
    assert_eq!(finals(out.take()), expected, "no count lost or doubled");
    // The sources replayed only what followed the restored checkpoint, not everything.
    let read: u64 = result.vertices.iter().map(|v| v.source_records).sum();
    assert!(read > count && read < count + 45_000, "records read over both attempts: {read}");
}

#[test]
fn a_new_job_resumes_the_latest_checkpoint_of_a_cancelled_one_at_another_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap().to_string();
    let count = 80_000;

    // First run: cancelled after some checkpoints, as a crash would stop it.
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2)
        .enable_checkpointing(Duration::from_millis(50))
        .set_checkpoint_storage(storage.as_str());
    let first = rolling_sums(&env, count, None);
    let client = env.execute_async("resumable").unwrap();
    let started = Instant::now();
    while client
        .checkpoint_stats()
        .iter()
        .filter(|c| {
            c.status == sluice_checkpoint::checkpoint_coordinator::CheckpointStatus::Completed
        })
        .count()
        < 3
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    client.cancel();
    assert!(client.wait().is_err());
    let before = finals(first.take());
    assert!(before.values().sum::<u64>() < count, "the first run stopped early");

    // Second run: same operators (uids), parallelism 3, from the latest checkpoint.
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(3)
        .enable_checkpointing(Duration::from_millis(50))
        .set_checkpoint_storage(storage.as_str())
        .restore_from(RestoreSource::Latest);
    let second = rolling_sums(&env, count, None);
    env.execute("resumed").unwrap();
    let expected: BTreeMap<u64, u64> = (0..KEYS).map(|k| (k, count / KEYS)).collect();
    assert_eq!(
        finals(second.take()),
        expected,
        "counts continue from the checkpoint: nothing lost, nothing doubled"
    );
}

#[test]
fn restoring_state_for_an_operator_the_job_no_longer_has_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap().to_string();
    let env = StreamExecutionEnvironment::new();
    env.enable_checkpointing(Duration::from_millis(20)).set_checkpoint_storage(storage.as_str());
    let _ = rolling_sums(&env, 30_000, None);
    env.execute("original").unwrap();

    // A job without the "sum" operator.
    let job = |allow: bool| {
        let env = StreamExecutionEnvironment::new();
        env.set_checkpoint_storage(storage.as_str()).restore_from(RestoreSource::Latest);
        if allow {
            env.allow_non_restored_state();
        }
        env.from_source(DataGeneratorSource::new(|i| i, Some(10)), "numbers")
            .uid("numbers")
            .discard();
        env.execute("changed")
    };
    let err = job(false).unwrap_err().to_string();
    assert!(err.contains("\"sum\"") && err.contains("allow non-restored state"), "{err}");
    job(true).unwrap();
}
