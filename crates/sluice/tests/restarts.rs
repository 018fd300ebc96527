//! The JobMaster's attempt loop and failure policy, end to end: a failure
//! that can heal restarts the job and it finishes; a failure that repeats
//! identically ends the job after the bounded number of attempts; external
//! failures keep the configured strategy; cancel and restore failures are
//! handled while restarting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice::connectors::DataGeneratorSource;
use sluice::{
    Boundedness, ErrorOrigin, InputStatus, JobStatus, RestartStrategy, RuntimeContext, SluiceError,
    Source, SourceOutput, SourceReader, SourceSplit, StreamExecutionEnvironment,
};

fn no_delay(attempts: u32) -> RestartStrategy {
    RestartStrategy::FixedDelay { attempts, delay: Duration::ZERO }
}

/// Emits 0..1000 in one split; until attempt `heals_at`, fails half way
/// with an external error (a broker that is down).
struct FlakySource {
    heals_at: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Position(u64);

impl SourceSplit for Position {
    fn split_id(&self) -> String {
        "only".into()
    }
}

struct FlakyReader {
    next: u64,
    fails: bool,
}

impl Source<u64> for FlakySource {
    type Split = Position;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_splits(&self, _parallelism: usize) -> sluice::Result<Vec<Position>> {
        Ok(vec![Position(0)])
    }

    fn create_reader(
        &self,
        ctx: &RuntimeContext,
    ) -> sluice::Result<Box<dyn SourceReader<u64, Position>>> {
        Ok(Box::new(FlakyReader { next: 0, fails: ctx.attempt < self.heals_at }))
    }
}

impl SourceReader<u64, Position> for FlakyReader {
    fn add_splits(&mut self, splits: Vec<Position>) -> sluice::Result<()> {
        if let Some(p) = splits.first() {
            self.next = p.0;
        }
        Ok(())
    }

    fn poll_next(&mut self, output: &mut SourceOutput<u64>) -> sluice::Result<InputStatus> {
        while !output.is_full() && self.next < 1000 {
            if self.fails && self.next == 500 {
                return Err(SluiceError::external("broker localhost:9092", "connection refused"));
            }
            output.collect(self.next);
            self.next += 1;
        }
        Ok(if self.next == 1000 { InputStatus::EndOfInput } else { InputStatus::MoreAvailable })
    }
}

#[test]
fn a_transient_external_failure_restarts_the_job_which_then_finishes() {
    let env = StreamExecutionEnvironment::new();
    env.set_restart_strategy(no_delay(3));
    let out = env.from_source(FlakySource { heals_at: 2 }, "flaky").collect();
    let result = env.execute("transient").unwrap();
    assert_eq!(result.restarts, 2, "two failed attempts, the third heals");
    let mut got = out.take();
    got.sort_unstable();
    // Without checkpoints a restart replays from the start; the failed
    // attempts' output may or may not have reached the sink.
    got.dedup();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
}

#[test]
fn an_external_failure_that_keeps_happening_follows_the_strategy_past_the_identical_limit() {
    let env = StreamExecutionEnvironment::new();
    env.set_restart_strategy(no_delay(5));
    env.from_source(FlakySource { heals_at: usize::MAX }, "down").discard();
    let err = env.execute("broker down").unwrap_err();
    let text = err.report().to_string();
    assert!(text.contains("allows no more restarts after 5"), "{text}");
    assert!(text.contains("broker localhost:9092: connection refused"), "{text}");
    assert_eq!(err.origin(), ErrorOrigin::External);
}

#[test]
fn a_user_failure_that_repeats_ends_the_job_after_three_identical_failures() {
    let env = StreamExecutionEnvironment::new();
    env.set_restart_strategy(no_delay(100));
    env.from_sequence(100)
        .map(|i| {
            assert!(i != 42, "record {i} cannot be handled");
            i
        })
        .name("handler")
        .discard();
    let err = env.execute("poison record").unwrap_err();
    let text = err.report().to_string();
    assert!(matches!(err, SluiceError::JobFailed { .. }), "{err:?}");
    assert!(text.contains("happened 3 times") && text.contains("before any checkpoint"), "{text}");
    assert!(text.contains("operator 'handler'") && text.contains("record 42 cannot be handled"));
    assert_eq!(err.origin(), ErrorOrigin::User, "a panic in the user's closure is the user's");
}

#[test]
fn the_identical_failure_limit_is_settable() {
    let env = StreamExecutionEnvironment::new();
    env.set_restart_strategy(no_delay(100)).set_max_identical_failures(1);
    env.from_sequence(10).map(|i| if i == 3 { panic!("never") } else { i }).discard();
    let text = env.execute("limit 1").unwrap_err().report().to_string();
    assert!(text.contains("happened 1 times"), "{text}");
}

#[test]
fn a_user_failure_that_does_not_repeat_restarts_and_the_job_finishes() {
    let env = StreamExecutionEnvironment::new();
    env.set_restart_strategy(no_delay(3));
    let fired = Arc::new(AtomicBool::new(false));
    let out = env
        .from_sequence(100)
        .map(move |i| {
            assert!(i != 42 || fired.swap(true, Ordering::SeqCst), "once");
            i
        })
        .collect();
    let result = env.execute("heals").unwrap();
    assert_eq!(result.restarts, 1);
    assert!(out.take().contains(&99));
}

#[test]
fn cancelling_during_a_restart_delay_ends_the_job_at_once() {
    let env = StreamExecutionEnvironment::new();
    // A delay far beyond the test's time limit: only the cancel can end the wait.
    env.set_restart_strategy(RestartStrategy::FixedDelay {
        attempts: 1,
        delay: Duration::from_secs(3600),
    });
    env.from_source(FlakySource { heals_at: usize::MAX }, "down").discard();
    let client = env.execute_async("cancel while restarting").unwrap();
    while client.status() != JobStatus::Restarting {
        std::thread::sleep(Duration::from_millis(5));
    }
    client.cancel();
    assert!(matches!(client.wait(), Err(SluiceError::Cancelled)));
}

/// A paced job (10,000 records/s, `count` of them or without end) with 20 ms
/// checkpoints into `dir`, whose map fails once at record 2,000, after
/// several checkpoints completed.
fn failing_once_after_checkpoints(
    dir: &std::path::Path,
    attempts: u32,
    count: Option<u64>,
) -> StreamExecutionEnvironment {
    let env = StreamExecutionEnvironment::new();
    env.enable_checkpointing(Duration::from_millis(20))
        .set_checkpoint_storage(dir.to_str().unwrap())
        .set_restart_strategy(no_delay(attempts));
    let fired = Arc::new(AtomicBool::new(false));
    let source = DataGeneratorSource::new(|i| i, count).with_rate(10_000.0).unwrap();
    env.from_source(source, "paced")
        .uid("paced")
        .map(move |i: u64| {
            assert!(i != 2_000 || fired.swap(true, Ordering::SeqCst), "first failure");
            (i % 7, 1u64)
        })
        .key_by(|(k, _): &(u64, u64)| *k)
        .sum(|(_, c)| c)
        .uid("sum")
        .discard();
    env
}

#[test]
fn a_failure_during_restore_counts_as_an_identical_failure_from_the_same_checkpoint() {
    let scenario = fail::FailScenario::setup();
    fail::cfg("sluice::task::restore", "return").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Fails once, after several checkpoints; every restore then fails.
    let env = failing_once_after_checkpoints(dir.path(), 100, None);
    let err = env.execute("restore fails").unwrap_err();
    scenario.teardown();
    let text = err.report().to_string();
    assert!(text.contains("injected failure during restore"), "{text}");
    assert!(text.contains("happened 3 times, each time from checkpoint"), "{text}");
    assert_eq!(err.origin(), ErrorOrigin::Internal);
}

#[test]
fn a_restart_from_a_checkpoint_is_recorded_as_a_restore_of_that_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let env = failing_once_after_checkpoints(dir.path(), 3, Some(3_000));
    let client = env.execute_async("restored once").unwrap();
    let view = client.view();
    client.wait().unwrap();
    let restores = view.state().restores;
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert!(restores[0].checkpoint_id >= 1);
    assert_eq!(restores[0].external_path, None);
    let completed_before: Vec<u64> = view
        .checkpoint_stats()
        .iter()
        .filter(|c| c.status == sluice::CheckpointStatus::Completed)
        .map(|c| c.id)
        .collect();
    assert!(completed_before.contains(&restores[0].checkpoint_id), "{completed_before:?}");
}
