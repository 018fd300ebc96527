//! The checkpoint coordinator's decisions (Flink's CheckpointCoordinator),
//! as a plain type: when to trigger, when a checkpoint is complete, and when
//! failed checkpoints must fail the job. Times are ms of the job's clock.
//!
//! Invariants: at most one checkpoint is pending; ids only grow; a
//! checkpoint completes exactly when every subtask acknowledged it; after
//! more consecutive failures than tolerated, the job fails.

use serde::Serialize;

use crate::checkpoint_config::CheckpointConfig;

/// One subtask's acknowledgement.
#[derive(Clone, Debug, Serialize)]
pub struct SubtaskAck {
    /// The subtask (index into the job's task list).
    pub task: usize,
    /// When the ack arrived.
    pub ack_time: i64,
    /// Bytes of state it wrote.
    pub state_size: u64,
    /// How long it waited for barrier alignment.
    pub alignment_ms: i64,
    /// How long the task stopped processing to take its snapshot.
    pub sync_ms: i64,
}

/// Where a checkpoint stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum CheckpointStatus {
    /// Waiting for acknowledgements.
    InProgress,
    /// Every subtask acknowledged; the metadata was written.
    Completed,
    /// Declined, timed out or abandoned.
    Failed(String),
}

/// Statistics of one checkpoint, as the API reports them.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointStats {
    /// Checkpoint id.
    pub id: u64,
    /// When it was triggered.
    pub trigger_time: i64,
    /// From trigger to completion (or failure).
    pub duration_ms: Option<i64>,
    /// Total bytes of state.
    pub state_size: u64,
    /// Longest alignment of any subtask.
    pub alignment_ms: i64,
    /// Longest synchronous snapshot part of any subtask.
    pub sync_ms: i64,
    /// Acknowledgements received.
    pub acks: Vec<SubtaskAck>,
    /// Status.
    pub status: CheckpointStatus,
    /// Whether a user asked for it as a savepoint.
    pub is_savepoint: bool,
}

/// What a coordinator step decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// Checkpoint `id` is complete: write its metadata, then notify the tasks.
    Completed(u64),
    /// Checkpoint `id` failed; the job goes on.
    Failed(u64, String),
    /// Too many checkpoints failed in a row: fail the job.
    FailJob(String),
}

/// Decides about the checkpoints of one job.
#[derive(Debug)]
pub struct CheckpointCoordinator {
    config: CheckpointConfig,
    tasks: usize,
    next_id: u64,
    pending: Option<CheckpointStats>,
    last_trigger: Option<i64>,
    last_end: Option<i64>,
    consecutive_failures: u32,
    history: Vec<CheckpointStats>,
}

impl CheckpointCoordinator {
    /// A coordinator for a job of `tasks` subtasks; the first checkpoint gets `first_id`.
    pub fn new(config: CheckpointConfig, tasks: usize, first_id: u64) -> Self {
        Self {
            config,
            tasks,
            next_id: first_id,
            pending: None,
            last_trigger: None,
            last_end: None,
            consecutive_failures: 0,
            history: Vec::new(),
        }
    }

    /// Starts the periodic trigger for a new attempt at `now`: its first
    /// checkpoint is due one interval later, as Flink's scheduler waits an
    /// initial delay. A checkpoint taken the moment an attempt starts holds
    /// no progress, yet it would count as progress for the failure handler.
    pub fn start_scheduler(&mut self, now: i64) {
        self.last_trigger = Some(now);
    }

    /// Whether a checkpoint should be triggered at `now`.
    pub fn trigger_due(&self, now: i64) -> bool {
        let interval = self.config.interval.as_millis() as i64;
        let pause = self.config.min_pause_between_checkpoints.as_millis() as i64;
        self.pending.is_none()
            && self.last_trigger.is_none_or(|t| now - t >= interval)
            && self.last_end.is_none_or(|t| now - t >= pause)
    }

    /// When the next trigger can be due (for the caller's sleep).
    pub fn next_trigger_time(&self) -> Option<i64> {
        if self.pending.is_some() {
            return None;
        }
        let interval = self.config.interval.as_millis() as i64;
        let pause = self.config.min_pause_between_checkpoints.as_millis() as i64;
        let by_interval = self.last_trigger.map_or(i64::MIN, |t| t + interval);
        let by_pause = self.last_end.map_or(i64::MIN, |t| t + pause);
        Some(by_interval.max(by_pause))
    }

    /// Starts checkpoint `id` at `now` and returns its id.
    pub fn trigger(&mut self, now: i64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.last_trigger = Some(now);
        self.pending = Some(CheckpointStats {
            id,
            trigger_time: now,
            duration_ms: None,
            state_size: 0,
            alignment_ms: 0,
            sync_ms: 0,
            acks: Vec::new(),
            status: CheckpointStatus::InProgress,
            is_savepoint: false,
        });
        id
    }

    /// Marks the pending checkpoint `id` as a savepoint.
    pub fn mark_savepoint(&mut self, id: u64) {
        if let Some(p) = self.pending.as_mut().filter(|p| p.id == id) {
            p.is_savepoint = true;
        }
    }

    /// The pending checkpoint, if any.
    pub fn pending(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// A subtask acknowledged checkpoint `id`.
    pub fn acknowledge(&mut self, id: u64, ack: SubtaskAck) -> Option<CheckpointOutcome> {
        let p = self.pending.as_mut().filter(|p| p.id == id)?;
        if p.acks.iter().any(|a| a.task == ack.task) {
            return None;
        }
        p.state_size += ack.state_size;
        p.alignment_ms = p.alignment_ms.max(ack.alignment_ms);
        p.sync_ms = p.sync_ms.max(ack.sync_ms);
        let now = ack.ack_time;
        p.acks.push(ack);
        if p.acks.len() < self.tasks {
            return None;
        }
        let mut done = self.pending.take().expect("checked");
        done.duration_ms = Some(now - done.trigger_time);
        done.status = CheckpointStatus::Completed;
        self.history.push(done);
        self.last_end = Some(now);
        self.consecutive_failures = 0;
        Some(CheckpointOutcome::Completed(id))
    }

    /// Checkpoint `id` failed (a subtask declined, storage failed, ...).
    pub fn fail(&mut self, id: u64, reason: &str, now: i64) -> Option<CheckpointOutcome> {
        let mut failed = self.pending.take_if(|p| p.id == id)?;
        failed.duration_ms = Some(now - failed.trigger_time);
        failed.status = CheckpointStatus::Failed(reason.to_string());
        self.history.push(failed);
        self.last_end = Some(now);
        self.consecutive_failures += 1;
        if self.consecutive_failures > self.config.tolerable_failed_checkpoints {
            return Some(CheckpointOutcome::FailJob(format!(
                "{} checkpoint(s) failed in a row, {} tolerated; last: checkpoint {id}: {reason}",
                self.consecutive_failures, self.config.tolerable_failed_checkpoints
            )));
        }
        Some(CheckpointOutcome::Failed(id, reason.to_string()))
    }

    /// Fails the pending checkpoint if it is past its timeout at `now`.
    pub fn check_timeout(&mut self, now: i64) -> Option<CheckpointOutcome> {
        let p = self.pending.as_ref()?;
        let timeout = self.config.timeout.as_millis() as i64;
        if now - p.trigger_time < timeout {
            return None;
        }
        let id = p.id;
        self.fail(id, &format!("not complete after the timeout of {timeout} ms"), now)
    }

    /// Every checkpoint so far, oldest first, with the pending one last.
    pub fn stats(&self) -> Vec<CheckpointStats> {
        self.history.iter().chain(self.pending.iter()).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ack(task: usize, at: i64) -> SubtaskAck {
        SubtaskAck { task, ack_time: at, state_size: 10, alignment_ms: task as i64, sync_ms: 0 }
    }

    fn config(interval_ms: u64) -> CheckpointConfig {
        CheckpointConfig::new(Duration::from_millis(interval_ms))
    }

    #[test]
    fn a_checkpoint_completes_when_every_subtask_acknowledged_once() {
        let mut c = CheckpointCoordinator::new(config(100), 2, 1);
        assert!(c.trigger_due(0));
        let id = c.trigger(0);
        assert_eq!(id, 1);
        assert!(!c.trigger_due(1_000), "one checkpoint at a time");
        assert_eq!(c.acknowledge(1, ack(0, 30)), None);
        assert_eq!(c.acknowledge(1, ack(0, 31)), None, "a duplicate ack counts once");
        assert_eq!(c.acknowledge(1, ack(1, 40)), Some(CheckpointOutcome::Completed(1)));
        let stats = &c.stats()[0];
        assert_eq!((stats.duration_ms, stats.state_size, stats.alignment_ms), (Some(40), 20, 1));
        assert_eq!(stats.status, CheckpointStatus::Completed);
    }

    #[test]
    fn triggers_follow_the_interval_and_the_minimum_pause() {
        let mut cfg = config(100);
        cfg.min_pause_between_checkpoints = Duration::from_millis(80);
        let mut c = CheckpointCoordinator::new(cfg, 1, 1);
        c.trigger(0);
        c.acknowledge(1, ack(0, 90));
        assert!(!c.trigger_due(100), "interval passed, but only 10 ms since the last one ended");
        assert_eq!(c.next_trigger_time(), Some(170));
        assert!(c.trigger_due(170));
    }

    #[test]
    fn an_attempt_takes_its_first_checkpoint_one_interval_after_it_starts() {
        let mut c = CheckpointCoordinator::new(config(1000), 1, 1);
        c.trigger(0);
        c.acknowledge(1, ack(0, 10));
        // The attempt failed; the next one starts long after the interval passed.
        c.start_scheduler(5_000);
        assert!(!c.trigger_due(5_000));
        assert!(!c.trigger_due(5_999));
        assert!(c.trigger_due(6_000));
    }

    #[test]
    fn acks_for_an_old_or_unknown_checkpoint_are_ignored() {
        let mut c = CheckpointCoordinator::new(config(100), 1, 5);
        c.trigger(0);
        assert_eq!(c.acknowledge(4, ack(0, 1)), None);
        assert_eq!(c.pending(), Some(5));
    }

    #[test]
    fn failures_beyond_the_tolerated_number_fail_the_job_and_a_success_resets_the_count() {
        let mut cfg = config(10);
        cfg.tolerable_failed_checkpoints = 1;
        let mut c = CheckpointCoordinator::new(cfg, 1, 1);
        c.trigger(0);
        assert_eq!(
            c.fail(1, "disk full", 5),
            Some(CheckpointOutcome::Failed(1, "disk full".into()))
        );
        c.trigger(20);
        assert_eq!(c.acknowledge(2, ack(0, 25)), Some(CheckpointOutcome::Completed(2)));
        c.trigger(40);
        assert!(matches!(c.fail(3, "x", 41), Some(CheckpointOutcome::Failed(3, _))));
        c.trigger(60);
        match c.fail(4, "y", 61) {
            Some(CheckpointOutcome::FailJob(msg)) => {
                assert!(msg.contains("2 checkpoint(s) failed in a row, 1 tolerated"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_checkpoint_past_its_timeout_fails() {
        let mut cfg = config(10);
        cfg.timeout = Duration::from_millis(50);
        cfg.tolerable_failed_checkpoints = 3;
        let mut c = CheckpointCoordinator::new(cfg, 2, 1);
        c.trigger(0);
        assert_eq!(c.check_timeout(49), None);
        assert!(
            matches!(c.check_timeout(50), Some(CheckpointOutcome::Failed(1, reason)) if reason.contains("timeout"))
        );
        assert_eq!(c.pending(), None);
    }
}
