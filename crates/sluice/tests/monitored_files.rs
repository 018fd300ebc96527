//! The exactly-once harness over a monitored directory: files appear while
//! the job runs, failures are injected (in a reader's chain, in the split
//! enumerator's snapshot, during a restore), and the committed output holds
//! every line of every file exactly once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice::connectors::{ExactlyOnceFileSink, FileSource};
use sluice::{JobClient, RestartStrategy, SluiceError, StreamExecutionEnvironment};

mod common;
use common::{committed_records, verify_except, KEYS};

const FILES: u64 = 8;
const PER_FILE: u64 = 2_500;

/// Where to inject one failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A panic in the chain right after the source, at this record.
    Reader(u64),
    /// The split enumerator fails to snapshot, once.
    EnumeratorSnapshot,
    /// A panic at this record, then a failure while restoring.
    Restore(u64),
}

/// Starts map → key_by → rolling count → exactly-once files over `dir/in`, monitored.
fn start(dir: &Path, parallelism: usize, fault: Fault) -> JobClient {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(parallelism)
        .enable_checkpointing(Duration::from_millis(30))
        .set_checkpoint_storage(dir.join("checkpoints").to_str().unwrap())
        .set_restart_strategy(RestartStrategy::FixedDelay { attempts: 5, delay: Duration::ZERO });
    let fail_at = match fault {
        Fault::Reader(at) | Fault::Restore(at) => Some(at),
        Fault::EnumeratorSnapshot => None,
    };
    let fired = Arc::new(AtomicBool::new(false));
    let source =
        FileSource::<u64>::ndjson(dir.join("in")).monitor_continuously(Duration::from_millis(20));
    env.from_source(source, "monitored")
        .uid("monitored")
        .map(move |i: u64| {
            if fail_at == Some(i) && !fired.swap(true, Ordering::SeqCst) {
                panic!("injected failure in the reader's chain at {i}");
            }
            (i % KEYS, i / KEYS, 0u64)
        })
        .key_by(|r: &(u64, u64, u64)| r.0)
        .reduce(|acc, r| (r.0, r.1, acc.2 + 1))
        .uid("count")
        .sink_to_exactly_once(ExactlyOnceFileSink::ndjson(dir.join("out")))
        .uid("sink");
    env.execute_async("monitored directory").unwrap()
}

/// Writes file `n` (records n·PER_FILE .. (n+1)·PER_FILE, one per line) in
/// one go under a hidden name, then gives it its visible name.
fn add_file(dir: &Path, n: u64) {
    let text: String = (n * PER_FILE..(n + 1) * PER_FILE).map(|i| format!("{i}\n")).collect();
    let sub = dir.join("in").join(format!("day-{}", n % 3));
    std::fs::create_dir_all(&sub).unwrap();
    let hidden = sub.join(format!(".part-{n}.inprogress"));
    std::fs::write(&hidden, text).unwrap();
    std::fs::rename(hidden, sub.join(format!("part-{n}.ndjson"))).unwrap();
}

fn check(fault: Fault, parallelism: usize) {
    let scenario = fail::FailScenario::setup();
    match fault {
        Fault::EnumeratorSnapshot => {
            fail::cfg("sluice::enumerator::snapshot", "2*off->1*return").unwrap()
        }
        Fault::Restore(_) => fail::cfg("sluice::task::restore", "1*return").unwrap(),
        Fault::Reader(_) => {}
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    add_file(dir.path(), 0);
    let client = start(dir.path(), parallelism, fault);
    let total = FILES * PER_FILE;
    let mut next_file = 1;
    // New files arrive while the job runs, each once the previous one is
    // being committed; then wait until every record is committed.
    loop {
        let committed = committed_records(dir.path()) as u64;
        if next_file < FILES && committed >= (next_file - 1) * PER_FILE + PER_FILE / 2 {
            add_file(dir.path(), next_file);
            next_file += 1;
        }
        if committed >= total {
            break;
        }
        assert!(!client.is_done(), "{fault:?}: the job ended before committing everything");
        std::thread::sleep(Duration::from_millis(5));
    }
    let checkpoints = client.checkpoint_stats();
    let exceptions = client.exceptions();
    client.cancel();
    let result = client.wait();
    scenario.teardown();
    assert!(matches!(result, Err(SluiceError::Cancelled)), "{result:?}");
    let restarts = exceptions.iter().filter(|e| e.restarted).count();
    match fault {
        Fault::Reader(_) => assert_eq!(restarts, 1, "{exceptions:?}"),
        Fault::Restore(_) => {
            assert_eq!(restarts, 2, "the panic, then the restore: {exceptions:?}");
            assert!(exceptions[1].cause.contains("injected failure during restore"));
        }
        Fault::EnumeratorSnapshot => {}
    }
    if fault == Fault::EnumeratorSnapshot {
        assert!(
            checkpoints.iter().any(|c| matches!(&c.status, sluice::CheckpointStatus::Failed(r) if r.contains("enumerator"))),
            "the enumerator's snapshot failed once"
        );
    }
    if let Err(e) = verify_except(dir.path(), total, &Default::default()) {
        panic!("{fault:?} at parallelism {parallelism}: {e}");
    }
}

#[test]
fn every_line_of_every_new_file_is_committed_once_with_a_failure_in_a_reader() {
    check(Fault::Reader(3 * PER_FILE + 777), 2);
}

#[test]
fn every_line_of_every_new_file_is_committed_once_when_the_enumerator_snapshot_fails() {
    check(Fault::EnumeratorSnapshot, 2);
}

#[test]
fn every_line_of_every_new_file_is_committed_once_when_a_restore_fails() {
    check(Fault::Restore(4 * PER_FILE + 123), 3);
}

#[test]
fn a_monitored_directory_read_by_one_subtask_commits_every_line_once() {
    check(Fault::Reader(5 * PER_FILE + 1), 1);
}

#[test]
fn a_monitored_directory_that_disappears_fails_the_job_naming_it_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let env = StreamExecutionEnvironment::new();
    let source = FileSource::lines(&input).monitor_continuously(Duration::from_millis(10));
    env.from_source(source, "monitored").discard();
    let client = env.execute_async("vanishing input").unwrap();
    while client.status() != sluice::JobStatus::Running {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_dir(&input).unwrap();
    let err = client.wait().unwrap_err();
    let text = err.report().to_string();
    assert!(text.contains("Source: monitored") && text.contains("enumerator"), "{text}");
    assert!(
        text.contains("cannot read input path") && text.contains(input.to_str().unwrap()),
        "{text}"
    );
    assert_eq!(err.origin(), sluice::ErrorOrigin::External);
}

#[test]
fn a_monitored_directory_created_after_the_job_started_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let env = StreamExecutionEnvironment::new();
    let source = FileSource::lines(&input)
        .monitor_continuously(Duration::from_millis(10))
        .read_files_when(sluice::connectors::FileCompletion::NameAccepted(|_| true));
    let out = env.from_source(source, "monitored").collect();
    // The directory does not exist yet when the job starts.
    let client = env.execute_async("late input").unwrap();
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.txt"), "hello\n").unwrap();
    while client.source_records() < 1 {
        assert!(!client.is_done(), "the job must wait for the directory");
        std::thread::sleep(Duration::from_millis(5));
    }
    client.cancel();
    assert!(matches!(client.wait(), Err(SluiceError::Cancelled)));
    assert_eq!(out.take(), vec!["hello".to_string()]);
}
