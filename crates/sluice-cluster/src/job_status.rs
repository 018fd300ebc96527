//! The job lifecycle as a typed state machine; the legal transitions are
//! declared once, here, and the same names appear in logs and (later) the REST API.

use serde::Serialize;

/// The state of a job, by Flink's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum JobStatus {
    /// Submitted, not yet scheduled.
    Created,
    /// Subtasks are being placed and deployed.
    Scheduling,
    /// Subtasks run.
    Running,
    /// A subtask failed; the others are being stopped.
    Failing,
    /// Every subtask stopped after a failure; the job restarts from its latest checkpoint.
    Restarting,
    /// The job failed.
    Failed,
    /// A user asked to cancel; subtasks are being stopped.
    Cancelling,
    /// The job was cancelled.
    Canceled,
    /// Every subtask finished.
    Finished,
}

/// A job's status and when it entered each status so far (ms since the
/// epoch), as Flink's job details report `timestamps`.
#[derive(Clone, Debug)]
pub struct JobState {
    /// The current status.
    pub status: JobStatus,
    /// Each status entered, with its time, oldest first.
    pub timestamps: Vec<(JobStatus, i64)>,
    /// Each attempt that started from a checkpoint or savepoint, oldest first.
    pub restores: Vec<Restore>,
}

/// An attempt started from a checkpoint or savepoint (Flink's restored checkpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restore {
    /// The checkpoint's id.
    pub checkpoint_id: u64,
    /// When the attempt was deployed from it (ms since the epoch).
    pub timestamp: i64,
    /// The directory the job was submitted to restore from; `None` for a
    /// restart from the job's own latest checkpoint.
    pub external_path: Option<String>,
}

impl JobState {
    /// A job just created.
    pub fn new() -> Self {
        Self {
            status: JobStatus::Created,
            timestamps: vec![(JobStatus::Created, now_ms())],
            restores: Vec::new(),
        }
    }

    /// Records that an attempt was deployed from checkpoint `checkpoint_id`.
    pub fn restored(&mut self, checkpoint_id: u64, external_path: Option<String>) {
        self.restores.push(Restore { checkpoint_id, timestamp: now_ms(), external_path });
    }

    /// Enters `next` now.
    pub fn enter(&mut self, next: JobStatus) {
        self.status = next;
        self.timestamps.push((next, now_ms()));
    }

    /// When the job was created (ms since the epoch).
    pub fn start_time(&self) -> i64 {
        self.timestamps.first().map_or(0, |(_, t)| *t)
    }

    /// When the job ended, if it has.
    pub fn end_time(&self) -> Option<i64> {
        self.status.is_terminal().then(|| self.timestamps.last().map_or(0, |(_, t)| *t))
    }
}

impl Default for JobState {
    fn default() -> Self {
        Self::new()
    }
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl JobStatus {
    /// Flink's name of the status, as the REST API reports it.
    pub fn flink_name(self) -> &'static str {
        match self {
            JobStatus::Created => "CREATED",
            JobStatus::Scheduling => "INITIALIZING",
            JobStatus::Running => "RUNNING",
            JobStatus::Failing => "FAILING",
            JobStatus::Restarting => "RESTARTING",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelling => "CANCELLING",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Finished => "FINISHED",
        }
    }

    /// Whether the job can go from `self` to `next`.
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Created, Scheduling)
                | (Created, Failed)
                | (Scheduling, Running)
                | (Scheduling, Failed)
                | (Running, Finished)
                | (Running, Failing)
                | (Running, Cancelling)
                | (Failing, Failed)
                | (Failing, Restarting)
                | (Restarting, Running)
                | (Restarting, Failed)
                | (Restarting, Cancelling)
                | (Cancelling, Canceled)
                | (Cancelling, Failed)
        )
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Canceled | JobStatus::Finished)
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;

    #[test]
    fn terminal_states_have_no_way_out() {
        let all = [
            Created, Scheduling, Running, Failing, Restarting, Failed, Cancelling, Canceled,
            Finished,
        ];
        for from in all.iter().filter(|s| s.is_terminal()) {
            for to in all {
                assert!(!from.can_become(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn a_running_job_finishes_fails_through_failing_or_cancels_through_cancelling() {
        assert!(Running.can_become(Finished));
        assert!(!Running.can_become(Failed));
        assert!(Running.can_become(Failing) && Failing.can_become(Failed));
        assert!(Running.can_become(Cancelling) && Cancelling.can_become(Canceled));
    }
}
