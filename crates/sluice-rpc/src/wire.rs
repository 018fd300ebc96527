//! What crosses the control plane inside its messages: the subtasks' events
//! and the JobMaster's messages to them, postcard-encoded. Errors cross as
//! their class and text, so the JobMaster's failure handling (retriable or
//! not, identical or not) decides on a remote failure as on a local one.

use serde::{Deserialize, Serialize};
use sluice_checkpoint::OperatorSnapshot;
use sluice_core::{ErrorOrigin, SluiceError};
use sluice_runtime::task::TaskEvent;

/// A subtask's report to its JobMaster.
#[derive(Debug, Serialize, Deserialize)]
pub enum Report {
    /// A subtask ended; `final_commits` says whether it holds commits back
    /// for the end of the job.
    Finished {
        vertex: usize,
        subtask_index: usize,
        result: Result<(), WireError>,
        final_commits: bool,
        accumulators: Vec<(String, Vec<u8>)>,
    },
    /// A subtask snapshotted its state for a checkpoint.
    Acknowledged {
        vertex: usize,
        subtask_index: usize,
        checkpoint_id: u64,
        states: Vec<(String, OperatorSnapshot)>,
        alignment_ms: i64,
        sync_ms: i64,
    },
    /// A source reader asks for splits.
    SplitRequest { vertex: usize, subtask_index: usize, finished: Vec<String> },
    /// A subtask cannot take part in a checkpoint.
    Declined { vertex: usize, subtask_index: usize, checkpoint_id: u64, reason: String },
    /// The deployment's subtasks' counters, in deployment order.
    Metrics(Vec<[i64; 8]>),
}

impl Report {
    /// The report of `event`, and the final commits it carried.
    pub fn from_event(event: TaskEvent) -> (Self, Vec<sluice_runtime::operator::FinalCommit>) {
        match event {
            TaskEvent::Finished { vertex, subtask_index, result, final_commits, accumulators } => (
                Report::Finished {
                    vertex,
                    subtask_index,
                    result: result.map_err(|e| WireError::from_error(&e)),
                    final_commits: !final_commits.is_empty(),
                    accumulators,
                },
                final_commits,
            ),
            TaskEvent::Acknowledged { vertex, subtask_index, checkpoint_id, states, durations } => {
                (
                    Report::Acknowledged {
                        vertex,
                        subtask_index,
                        checkpoint_id,
                        states,
                        alignment_ms: durations.alignment_ms,
                        sync_ms: durations.sync_ms,
                    },
                    Vec::new(),
                )
            }
            TaskEvent::SplitRequest { vertex, subtask_index, finished } => {
                (Report::SplitRequest { vertex, subtask_index, finished }, Vec::new())
            }
            TaskEvent::Declined { vertex, subtask_index, checkpoint_id, reason } => {
                (Report::Declined { vertex, subtask_index, checkpoint_id, reason }, Vec::new())
            }
        }
    }
}

/// A [`SluiceError`] as it crosses processes: its class, its context and its text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    /// The root error's class.
    pub kind: ErrorKind,
    /// The root error's own message.
    pub message: String,
    /// The operator and subtask it happened in, if it happened in a task.
    pub task: Option<(String, String)>,
}

/// The classes of errors a remote subtask ends with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The job cannot run as written.
    InvalidJob,
    /// A configuration value is wrong.
    Config,
    /// An input record is malformed; the input it came from.
    MalformedRecord(String),
    /// A user function failed.
    UserFunction,
    /// An external system failed; which one.
    External(String),
    /// Code panicked at a location.
    Panic(String, ErrorOrigin),
    /// The subtask was cancelled.
    Cancelled,
    /// Anything else, by origin.
    Other(ErrorOrigin),
}

impl WireError {
    /// `error` for the wire.
    pub fn from_error(error: &SluiceError) -> Self {
        let task = match error {
            SluiceError::Task { operator, subtask, .. } => {
                Some((operator.clone(), subtask.clone()))
            }
            _ => None,
        };
        let root = error.root();
        let (kind, message) = match root {
            SluiceError::InvalidJob(m) => (ErrorKind::InvalidJob, m.clone()),
            SluiceError::Config(m) => (ErrorKind::Config, m.clone()),
            SluiceError::MalformedRecord { input, message } => {
                (ErrorKind::MalformedRecord(input.clone()), message.clone())
            }
            SluiceError::UserFunction { cause } => {
                (ErrorKind::UserFunction, sluice_core::Report(cause.as_ref()).to_string())
            }
            SluiceError::External { system, message } => {
                (ErrorKind::External(system.clone()), message.clone())
            }
            SluiceError::Panic { message, location, origin } => {
                (ErrorKind::Panic(location.clone(), *origin), message.clone())
            }
            SluiceError::Cancelled => (ErrorKind::Cancelled, String::new()),
            other => (ErrorKind::Other(other.origin()), other.report().to_string()),
        };
        WireError { kind, message, task }
    }

    /// The error again, with the same class and text.
    pub fn into_error(self) -> SluiceError {
        let root = match self.kind {
            ErrorKind::InvalidJob => SluiceError::InvalidJob(self.message),
            ErrorKind::Config => SluiceError::Config(self.message),
            ErrorKind::MalformedRecord(input) => {
                SluiceError::MalformedRecord { input, message: self.message }
            }
            ErrorKind::UserFunction => SluiceError::user(self.message),
            ErrorKind::External(system) => SluiceError::external(system, self.message),
            ErrorKind::Panic(location, origin) => {
                SluiceError::Panic { message: self.message, location, origin }
            }
            ErrorKind::Cancelled => SluiceError::Cancelled,
            ErrorKind::Other(ErrorOrigin::External) => {
                SluiceError::external("task manager", self.message)
            }
            ErrorKind::Other(ErrorOrigin::User) => SluiceError::user(self.message),
            ErrorKind::Other(ErrorOrigin::Internal) => SluiceError::Internal(self.message),
        };
        match self.task {
            Some((operator, subtask)) => {
                SluiceError::Task { operator, subtask, cause: Box::new(root) }
            }
            None => root,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_error_keeps_its_class_operator_and_text_across_processes() {
        let error = SluiceError::Task {
            operator: "Map".into(),
            subtask: "2/4".into(),
            cause: Box::new(SluiceError::MalformedRecord {
                input: "words.txt line 3".into(),
                message: "not UTF-8".into(),
            }),
        };
        let bytes = postcard::to_allocvec(&WireError::from_error(&error)).unwrap();
        let back = postcard::from_bytes::<WireError>(&bytes).unwrap().into_error();
        assert_eq!(back.report().to_string(), error.report().to_string());
        assert_eq!(back.origin(), ErrorOrigin::User);
    }

    #[test]
    fn an_external_error_stays_retriable_across_processes() {
        let error = SluiceError::external("kafka broker 127.0.0.1:9092", "connection refused");
        let back = WireError::from_error(&error).into_error();
        assert!(back.is_retriable());
        assert_eq!(back.report().to_string(), error.report().to_string());
    }
}
