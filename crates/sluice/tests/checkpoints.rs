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
        .filter(|c| c.status == sluice::CheckpointStatus::Completed)
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
        .filter(|c| c.status == sluice::CheckpointStatus::Completed)
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

fn stop_with_savepoint_then_resume(from_parallelism: usize, to_parallelism: usize) {
    let dir = tempfile::tempdir().unwrap();
    let savepoint = dir.path().join("savepoint-1");
    let count = 60_000;
    let env = StreamExecutionEnvironment::new();
    // Checkpoints are enabled but rare: the savepoint is what carries the state.
    env.set_parallelism(from_parallelism)
        .enable_checkpointing(Duration::from_secs(3600))
        .set_checkpoint_storage(dir.path().join("checkpoints").to_str().unwrap());
    let first = rolling_sums(&env, count, None);
    let client = env.execute_async("savepointed").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let path = client.stop_with_savepoint(savepoint.to_str().unwrap()).unwrap();
    assert!(client.wait().is_err(), "stopped");
    assert!(savepoint.join("_metadata").exists(), "{path}");
    assert!(finals(first.take()).values().sum::<u64>() < count);

    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(to_parallelism)
        .enable_checkpointing(Duration::from_secs(3600))
        .restore_from(RestoreSource::Path(path));
    let second = rolling_sums(&env, count, None);
    env.execute("from savepoint").unwrap();
    let expected: BTreeMap<u64, u64> = (0..KEYS).map(|k| (k, count / KEYS)).collect();
    assert_eq!(finals(second.take()), expected, "{from_parallelism} -> {to_parallelism}");
}

#[test]
fn a_job_stopped_with_a_savepoint_resumes_from_it_at_a_larger_parallelism() {
    stop_with_savepoint_then_resume(2, 3);
}

#[test]
fn a_job_stopped_with_a_savepoint_resumes_from_it_at_a_smaller_parallelism() {
    stop_with_savepoint_then_resume(3, 2);
}

#[test]
fn a_savepoint_of_a_running_job_leaves_it_running() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.enable_checkpointing(Duration::from_secs(3600))
        .set_checkpoint_storage(dir.path().join("c").to_str().unwrap());
    let out = rolling_sums(&env, 30_000, None);
    let client = env.execute_async("running").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    client.trigger_savepoint(dir.path().join("sp").to_str().unwrap()).unwrap();
    client.wait().unwrap();
    assert_eq!(finals(out.take()).values().sum::<u64>(), 30_000);
    assert!(dir.path().join("sp/_metadata").exists());
}

#[test]
fn a_savepoint_needs_checkpointing() {
    let env = StreamExecutionEnvironment::new();
    let _ = rolling_sums(&env, 1_000_000, None);
    let client = env.execute_async("no checkpoints").unwrap();
    let err = client.trigger_savepoint("/tmp/never").unwrap_err().to_string();
    assert!(err.contains("checkpointing"), "{err}");
    client.cancel();
    let _ = client.wait();
}
