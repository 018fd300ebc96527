//! The job lifecycle as a typed state machine; the legal transitions are
//! declared once, here, and the same names appear in logs and (later) the REST API.

use serde::Serialize;

/// The state of a job, by Flink's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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

impl JobStatus {
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
