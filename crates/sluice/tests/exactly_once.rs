//! The exactly-once harness: a deterministic input with per-key sequence
//! numbers, keyed state, and the exactly-once file sink; failures injected
//! at chosen points; a verifier that checks the committed output against
//! the input (lost = 0, duplicated = 0, per-key order kept).

use std::collections::{BTreeMap, BTreeSet};

mod common;
use common::{verify_except, KEYS};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice::connectors::{DataGeneratorSource, ExactlyOnceFileSink, FileSource};
use sluice::{
    Clock, DataPlane, DecodeErrorPolicy, DecodeFailure, OutputTag, RecordLocation, RestartStrategy,
    StreamExecutionEnvironment, SystemClock, TumblingEventTimeWindows, WatermarkStrategy,
};

/// Window size, in indices (event time = index, in ms).
const WINDOW: u64 = 1_000;

/// Where to inject one failure.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A panic in a user function before the key_by, at this record.
    BeforeShuffle(u64),
    /// A panic in the keyed operator after the key_by, at this record.
    AfterShuffle(u64),
    /// A failure while a task snapshots for a checkpoint.
    InSnapshot,
    /// A failure between checkpoint completion and the sink's commit.
    InCommit,
    /// A failure while restoring after a first failure.
    InRestore(u64),
    /// A data connection between TaskManagers breaks after this many frames.
    ConnectionLost(u32),
}

/// How barriers are aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alignment {
    Aligned,
    Unaligned,
    /// Aligned, switching to unaligned after 1 ms.
    UnalignedAfterTimeout,
}

/// Runs `count` records (key = i % KEYS, per-key sequence = i / KEYS) through
/// map → key_by → rolling count → exactly-once files, with one fault.
fn run(dir: &Path, count: u64, parallelism: usize, fault: Fault) -> sluice::JobExecutionResult {
    run_with(dir, count, parallelism, fault, Alignment::Aligned, DataPlane::InMemory)
}

fn run_with(
    dir: &Path,
    count: u64,
    parallelism: usize,
    fault: Fault,
    alignment: Alignment,
    data_plane: DataPlane,
) -> sluice::JobExecutionResult {
    let scenario = fail::FailScenario::setup();
    match fault {
        Fault::InSnapshot => {
            fail::cfg("sluice::task::snapshot", "1*off->1*panic(injected snapshot failure)")
                .unwrap()
        }
        Fault::InCommit => {
            fail::cfg("sluice::sink::commit", "1*panic(injected commit failure)").unwrap()
        }
        Fault::InRestore(_) => fail::cfg("sluice::task::restore", "1*return").unwrap(),
        Fault::ConnectionLost(after) => {
            fail::cfg("sluice::network::read", &format!("{after}*off->1*return")).unwrap()
        }
        _ => {}
    }
    let env = StreamExecutionEnvironment::new();
    let mut config = sluice::CheckpointConfig::new(Duration::from_millis(30));
    config.unaligned = alignment != Alignment::Aligned;
    if alignment == Alignment::UnalignedAfterTimeout {
        config.aligned_checkpoint_timeout = Duration::from_millis(1);
    }
    // A slow keyed operator keeps the channels full, so barriers overtake data when unaligned.
    let slow = alignment != Alignment::Aligned;
    env.set_parallelism(parallelism)
        .set_checkpoint_config(config)
        .set_channel_capacity(2)
        .set_batch_size(64)
        .set_checkpoint_storage(dir.join("checkpoints").to_str().unwrap())
        .set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::ZERO });
    if let Fault::ConnectionLost(_) = fault {
        // Both TaskManagers must notice the loss before the next attempt's channels
        // are registered; under load that can take an attempt or two more.
        env.set_restart_strategy(RestartStrategy::FixedDelay {
            attempts: 10,
            delay: Duration::ZERO,
        })
        .set_max_identical_failures(10);
    }
    if data_plane == DataPlane::Tcp {
        // One TaskManager per subtask index: every shuffle channel but i -> i crosses TCP.
        env.set_mini_cluster_with(parallelism, 1, DataPlane::Tcp);
    }
    let fired = Arc::new(AtomicBool::new(false));
    let (before, after) = match fault {
        Fault::BeforeShuffle(at) | Fault::InRestore(at) => (Some(at), None),
        Fault::AfterShuffle(at) => (None, Some(at)),
        _ => (None, None),
    };
    let (f1, f2) = (fired.clone(), fired);
    let source = DataGeneratorSource::new(|i| i, Some(count)).with_rate(60_000.0).unwrap();
    // Event time = the record's index, monotonous within each source split.
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|i: &u64, _| *i as i64);
    let records = env.from_source_with_watermarks(source, strategy, "input").uid("input").map(
        move |i: u64| {
            if before == Some(i) && !f1.swap(true, Ordering::SeqCst) {
                panic!("injected failure before the shuffle at {i}");
            }
            (i % KEYS, i / KEYS, 0u64)
        },
    );
    records
        .key_by(|r: &(u64, u64, u64)| r.0)
        .reduce(move |acc, r| {
            if after == Some(r.0 + r.1 * KEYS) && !f2.swap(true, Ordering::SeqCst) {
                panic!("injected failure after the shuffle");
            }
            if slow && r.1 % 50 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
            (r.0, r.1, acc.2 + 1)
        })
        .uid("count")
        .sink_to_exactly_once(ExactlyOnceFileSink::ndjson(dir.join("out")))
        .uid("sink");
    // Windows: per key, the number of records whose index falls in each 1,000-index window.
    records
        .map(|r: (u64, u64, u64)| (r.0, 1u64))
        .key_by(|r: &(u64, u64)| r.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(WINDOW)))
        .process(
            |k: &u64,
             ctx: &sluice::WindowContext,
             e: &[(u64, u64)],
             out: &mut sluice::Collector<'_, (u64, i64, u64)>| {
                out.collect((*k, ctx.window.start, e.len() as u64));
                Ok(())
            },
        )
        .uid("windows")
        .sink_to_exactly_once(ExactlyOnceFileSink::ndjson(dir.join("windows")))
        .uid("window-sink");
    let result = env.execute("exactly-once harness").unwrap();
    scenario.teardown();
    result
}

/// Checks the committed output: every (key, seq) exactly once, and per key,
/// in commit order, the rolling counts 0, 1, 2, ... — each record counted
/// once by the keyed state, none skipped, none counted twice, order kept.
/// (A key's records come from two source splits, so seq itself interleaves.)
fn verify(dir: &Path, count: u64) -> Result<(), String> {
    verify_except(dir, count, &BTreeSet::new())?;
    verify_windows(dir, count)
}

/// Checks the committed window counts: every (key, window) once, with its exact count.
fn verify_windows(dir: &Path, count: u64) -> Result<(), String> {
    let windows = dir.join("windows");
    if !windows.exists() {
        return Ok(());
    }
    let mut got: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for entry in std::fs::read_dir(&windows).map_err(|e| e.to_string())? {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(&path).map_err(|e| e.to_string())?.lines() {
            let (key, start, n): (u64, i64, u64) =
                serde_json::from_str(line).map_err(|e| e.to_string())?;
            if got.insert((key, start), n).is_some() {
                return Err(format!("window {start} of key {key} committed twice"));
            }
        }
    }
    let mut expected: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for i in 0..count {
        *expected.entry((i % KEYS, (i - i % WINDOW) as i64)).or_default() += 1;
    }
    if got != expected {
        let wrong = expected
            .iter()
            .find(|(k, v)| got.get(k) != Some(v))
            .map(|(k, v)| (*k, *v, got.get(k).copied()));
        return Err(format!(
            "window counts differ: (key, start), expected, got: {wrong:?}; {} windows committed",
            got.len()
        ));
    }
    Ok(())
}

fn check(fault: Fault, seed: u64, parallelism: usize) {
    check_with(fault, seed, parallelism, Alignment::Aligned)
}

fn check_with(fault: Fault, seed: u64, parallelism: usize, alignment: Alignment) {
    check_on(fault, seed, parallelism, alignment, DataPlane::InMemory)
}

fn check_on(
    fault: Fault,
    seed: u64,
    parallelism: usize,
    alignment: Alignment,
    data_plane: DataPlane,
) {
    let dir = tempfile::tempdir().unwrap();
    let count = 12_000 + seed * 1_000;
    let result = run_with(dir.path(), count, parallelism, fault, alignment, data_plane);
    if std::env::var("DEBUG_EO").is_ok() {
        for c in &result.checkpoints {
            eprintln!(
                "checkpoint {} {:?} size {} acks {}",
                c.id,
                c.status,
                c.state_size,
                c.acks.len()
            );
        }
        eprintln!("restarts {} vertices {:?}", result.restarts, result.vertices);
    }
    assert!(result.restarts >= 1, "{fault:?}: the fault fired and the job restarted");
    if let Err(e) = verify(dir.path(), count) {
        panic!("{fault:?} {alignment:?} {data_plane:?} seed {seed} parallelism {parallelism}: {e}");
    }
}

#[test]
fn exactly_once_with_a_failure_in_a_user_function_before_the_shuffle_over_seeds() {
    for seed in 0..4 {
        check(Fault::BeforeShuffle(3_000 + seed * 1_777), seed, 2);
    }
}

#[test]
fn exactly_once_with_a_failure_in_the_keyed_operator_over_seeds() {
    for seed in 0..4 {
        check(Fault::AfterShuffle(2_500 + seed * 2_011), seed, 3);
    }
}

#[test]
fn exactly_once_with_unaligned_checkpoints_and_failures_before_and_after_the_shuffle() {
    for seed in 0..3 {
        check_with(Fault::BeforeShuffle(3_000 + seed * 1_901), seed, 2, Alignment::Unaligned);
        check_with(Fault::AfterShuffle(2_600 + seed * 2_203), seed, 3, Alignment::Unaligned);
    }
}

#[test]
fn exactly_once_with_aligned_checkpoints_that_turn_unaligned_after_a_timeout() {
    for seed in 0..2 {
        check_with(
            Fault::BeforeShuffle(4_000 + seed * 1_333),
            seed,
            2,
            Alignment::UnalignedAfterTimeout,
        );
    }
}

#[test]
fn exactly_once_across_two_and_three_task_managers_over_tcp() {
    check_on(Fault::BeforeShuffle(3_500), 1, 2, Alignment::Aligned, DataPlane::Tcp);
    check_on(Fault::AfterShuffle(2_700), 2, 3, Alignment::Aligned, DataPlane::Tcp);
}

#[test]
fn exactly_once_when_a_data_connection_between_task_managers_breaks() {
    // The channels on it fail, the attempt fails, and the next one connects again.
    check_on(Fault::ConnectionLost(300), 0, 2, Alignment::Aligned, DataPlane::Tcp);
    check_on(Fault::ConnectionLost(500), 1, 3, Alignment::Unaligned, DataPlane::Tcp);
}

#[test]
fn exactly_once_over_tcp_with_unaligned_checkpoints() {
    check_on(Fault::AfterShuffle(2_900), 0, 2, Alignment::Unaligned, DataPlane::Tcp);
    check_on(Fault::BeforeShuffle(3_300), 1, 3, Alignment::UnalignedAfterTimeout, DataPlane::Tcp);
}

#[test]
fn exactly_once_with_a_failure_during_a_snapshot() {
    check(Fault::InSnapshot, 1, 2);
}

#[test]
fn exactly_once_with_a_failure_between_checkpoint_completion_and_commit() {
    check(Fault::InCommit, 2, 2);
}

#[test]
fn exactly_once_with_a_failure_during_recovery() {
    check(Fault::InRestore(4_000), 3, 2);
}

#[test]
fn the_verifier_catches_a_transaction_committed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let count = 12_000;
    run(dir.path(), count, 2, Fault::BeforeShuffle(5_000));
    verify(dir.path(), count).expect("a correct run verifies");
    // Plant the bug "a restore commits a transaction again under a new name".
    let out = dir.path().join("out");
    let first = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            !p.file_name().unwrap().to_string_lossy().starts_with('.')
                && std::fs::metadata(p).unwrap().len() > 0
        })
        .unwrap();
    std::fs::copy(&first, out.join("part-9-9999999999999-000000-ffffffff.ndjson")).unwrap();
    let err = verify(dir.path(), count).unwrap_err();
    assert!(err.contains("duplicated") || err.contains("counted"), "{err}");
}

/// The job of [`run`] without faults, stopped with a savepoint after a while,
/// then resumed from the savepoint at `to` subtasks.
fn rescale_after_savepoint(from: usize, to: usize) {
    let dir = tempfile::tempdir().unwrap();
    let count = 40_000;
    let job = |env: &StreamExecutionEnvironment| {
        let source = DataGeneratorSource::new(|i| i, Some(count)).with_rate(60_000.0).unwrap();
        env.from_source(source, "input")
            .uid("input")
            .map(|i: u64| (i % KEYS, i / KEYS, 0u64))
            .key_by(|r: &(u64, u64, u64)| r.0)
            .reduce(|acc, r| (r.0, r.1, acc.2 + 1))
            .uid("count")
            .sink_to_exactly_once(ExactlyOnceFileSink::ndjson(dir.path().join("out")))
            .uid("sink");
    };
    let savepoint = dir.path().join("savepoint");
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(from).enable_checkpointing(Duration::from_millis(50));
    env.set_checkpoint_storage(dir.path().join("checkpoints").to_str().unwrap());
    job(&env);
    let client = env.execute_async("before rescale").unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let path = client.stop_with_savepoint(savepoint.to_str().unwrap()).unwrap();
    let _ = client.wait();

    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(to)
        .enable_checkpointing(Duration::from_millis(50))
        .restore_from(sluice::RestoreSource::Path(path));
    env.set_checkpoint_storage(dir.path().join("checkpoints").to_str().unwrap());
    job(&env);
    env.execute("after rescale").unwrap();
    if let Err(e) = verify(dir.path(), count) {
        panic!("rescale {from} -> {to}: {e}");
    }
}

#[test]
fn exactly_once_across_a_savepoint_and_a_rescale_from_2_to_4() {
    rescale_after_savepoint(2, 4);
}

#[test]
fn exactly_once_across_a_savepoint_and_a_rescale_from_4_to_2() {
    rescale_after_savepoint(4, 2);
}

#[test]
fn exactly_once_across_a_savepoint_and_a_rescale_from_2_to_3() {
    rescale_after_savepoint(2, 3);
}

/// How a decode-error run treats the malformed lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BadLines {
    Skip,
    SideOutput,
}

/// Writes records `0..count` as NDJSON numbers over four files (record i
/// in file i % 4); one record in a hundred, placed by the seed, is
/// malformed instead — alternately not UTF-8 and not JSON. Returns each
/// malformed record's index with the file and line where it sits.
fn write_input_with_bad_lines(dir: &Path, count: u64, seed: u64) -> BTreeMap<u64, (String, u64)> {
    std::fs::create_dir_all(dir).unwrap();
    let paths: Vec<String> =
        (0..4).map(|f| dir.join(format!("part-{f}.ndjson")).display().to_string()).collect();
    let mut files: Vec<Vec<u8>> = vec![Vec::new(); 4];
    let mut bad = BTreeMap::new();
    for i in 0..count {
        let f = (i % 4) as usize;
        let line_number = i / 4 + 1;
        if i % 100 != (37 + seed) % 100 {
            files[f].extend_from_slice(format!("{i}\n").as_bytes());
            continue;
        }
        bad.insert(i, (paths[f].clone(), line_number));
        if i % 200 < 100 {
            files[f].extend_from_slice(&[0xff, 0xfe]);
            files[f].extend_from_slice(format!("{i}\n").as_bytes());
        } else {
            files[f].extend_from_slice(format!("{{\"broken\": {i}\n").as_bytes());
        }
    }
    for (path, bytes) in paths.iter().zip(&files) {
        std::fs::write(path, bytes).unwrap();
    }
    bad
}

/// The harness's keyed job over files holding one malformed line in a
/// hundred, with checkpoints and one failure in the keyed operator; the
/// policy skips the bad lines or sends them to an exactly-once dead-letter
/// sink. A slow map keeps the source reading while checkpoints are taken,
/// so the restore starts mid-file.
fn run_with_bad_lines(
    dir: &Path,
    count: u64,
    seed: u64,
    bad_lines: BadLines,
) -> (BTreeMap<u64, (String, u64)>, sluice::JobExecutionResult, i64) {
    let bad = write_input_with_bad_lines(&dir.join("in"), count, seed);
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2)
        .enable_checkpointing(Duration::from_millis(30))
        .set_channel_capacity(2)
        .set_batch_size(64)
        .set_checkpoint_storage(dir.join("checkpoints").to_str().unwrap())
        .set_restart_strategy(RestartStrategy::FixedDelay { attempts: 3, delay: Duration::ZERO });
    let policy = match bad_lines {
        BadLines::Skip => DecodeErrorPolicy::Skip,
        BadLines::SideOutput => DecodeErrorPolicy::SideOutput,
    };
    let fail_at = count / 2 + seed * 101;
    let failed_at = Arc::new(AtomicI64::new(0));
    let failed = failed_at.clone();
    let input = env
        .from_source(FileSource::<u64>::ndjson(dir.join("in")).on_decode_error(policy), "input")
        .uid("input");
    input
        .map(|i: u64| {
            if i.is_multiple_of(25) {
                std::thread::sleep(Duration::from_micros(500));
            }
            (i % KEYS, i / KEYS, 0u64)
        })
        .key_by(|r: &(u64, u64, u64)| r.0)
        .reduce(move |acc, r| {
            if r.0 + r.1 * KEYS == fail_at && failed.load(Ordering::SeqCst) == 0 {
                failed.store(SystemClock.now(), Ordering::SeqCst);
                panic!("injected failure after the shuffle");
            }
            (r.0, r.1, acc.2 + 1)
        })
        .uid("count")
        .sink_to_exactly_once(ExactlyOnceFileSink::ndjson(dir.join("out")))
        .uid("sink");
    input
        .get_side_output(&OutputTag::<DecodeFailure>::decode_failures())
        .sink_to_exactly_once(ExactlyOnceFileSink::ndjson(dir.join("dead-letters")))
        .uid("dead-letters");
    let result = env.execute("bad lines").unwrap();
    (bad, result, failed_at.load(Ordering::SeqCst))
}

/// Every committed dead letter, as (file, line) → how often, with its bytes.
fn dead_letters(dir: &Path) -> BTreeMap<(String, u64), (u32, Vec<u8>)> {
    let mut letters: BTreeMap<(String, u64), (u32, Vec<u8>)> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir.join("dead-letters")) else { return letters };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let failure: DecodeFailure = serde_json::from_str(line).unwrap();
            let RecordLocation::File { path, line, .. } = failure.location else {
                panic!("a file source's dead letter has a file location")
            };
            let seen = letters.entry((path.display().to_string(), line)).or_insert((0, Vec::new()));
            seen.0 += 1;
            seen.1 = failure.bytes;
        }
    }
    letters
}

fn check_bad_lines(bad_lines: BadLines, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let count = 40_000;
    let (bad, result, failed_at) = run_with_bad_lines(dir.path(), count, seed, bad_lines);
    assert_eq!(bad.len(), 400, "1% of the lines are malformed");
    assert!(result.restarts >= 1 && failed_at > 0, "the injected failure fired");
    assert!(
        result.checkpoints.iter().any(|c| c.status == sluice::CheckpointStatus::Completed
            && c.trigger_time + c.duration_ms.unwrap_or(0) < failed_at),
        "a checkpoint completed before the failure, so the restore started mid-input"
    );
    let absent: BTreeSet<u64> = bad.keys().copied().collect();
    if let Err(e) = verify_except(dir.path(), count, &absent) {
        panic!("{bad_lines:?} seed {seed}: {e}");
    }
    // Each bad line is counted when read; lines re-read after the restore count again.
    let counted: u64 = result.vertices.iter().map(|v| v.records_in_errors).sum();
    assert!(counted >= 400, "every malformed line is counted: {counted}");
    let letters = dead_letters(dir.path());
    match bad_lines {
        BadLines::Skip => assert!(letters.is_empty(), "skipped lines go nowhere"),
        BadLines::SideOutput => {
            let expected: BTreeSet<(String, u64)> = bad.values().cloned().collect();
            let got: BTreeSet<(String, u64)> = letters.keys().cloned().collect();
            assert_eq!(got, expected, "every malformed line is a dead letter");
            for ((path, line), (times, bytes)) in &letters {
                assert_eq!(*times, 1, "{path} line {line} committed {times} times");
                let text = String::from_utf8_lossy(bytes);
                assert!(text.contains("broken") || bytes.starts_with(&[0xff, 0xfe]), "{text}");
            }
        }
    }
}

#[test]
fn skipped_bad_lines_lose_no_good_record_across_a_restore() {
    for seed in 0..2 {
        check_bad_lines(BadLines::Skip, seed);
    }
}

#[test]
fn bad_lines_reach_the_dead_letter_sink_exactly_once_across_a_restore() {
    for seed in 0..2 {
        check_bad_lines(BadLines::SideOutput, seed);
    }
}

#[test]
fn without_failures_skip_counts_exactly_the_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_input_with_bad_lines(&dir.path().join("in"), 10_000, 5);
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let source =
        FileSource::<u64>::ndjson(dir.path().join("in")).on_decode_error(DecodeErrorPolicy::Skip);
    let handle = env.from_source(source, "input").collect();
    let result = env.execute("skip").unwrap();
    let good: BTreeSet<u64> = handle.take().into_iter().collect();
    let counted: u64 = result.vertices.iter().map(|v| v.records_in_errors).sum();
    assert_eq!(counted, bad.len() as u64, "the metric counts each malformed line once");
    let expected: BTreeSet<u64> = (0..10_000).filter(|i| !bad.contains_key(i)).collect();
    assert_eq!(good, expected, "every good line arrives, no bad one");
}
