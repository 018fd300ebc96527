//! The error type of every Sluice library crate. Each error is classified
//! where it is raised — user code, an external system, or Sluice itself —
//! so a restart strategy reads [`SluiceError::origin`] instead of parsing text.
//! An error's own message never repeats its cause's: the cause is its
//! [`source`](std::error::Error::source), and [`SluiceError::report`] prints
//! the whole chain.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;

/// Result with [`SluiceError`].
pub type Result<T, E = SluiceError> = std::result::Result<T, E>;

/// What a user function returns: any error the user's code raises.
pub type FunctionResult<T = ()> = std::result::Result<T, Box<dyn StdError + Send + Sync>>;

/// Who caused an error, and so whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorOrigin {
    /// The job's own code or configuration: a retry fails the same way.
    User,
    /// An external system (file, socket, broker): a retry may succeed.
    External,
    /// A bug or invariant violation inside Sluice.
    Internal,
}

/// Every error a Sluice library raises.
#[derive(Debug, thiserror::Error)]
pub enum SluiceError {
    /// The job as written cannot run (no sink, bad parallelism, reused environment, ...).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A configuration value is out of range or malformed.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file or directory could not be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("cannot read", "cannot create", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        cause: std::io::Error,
    },
    /// An external system (socket, broker, ...) failed or cannot be reached.
    #[error("{system}: {message}")]
    External {
        /// The system and address, e.g. "socket source 127.0.0.1:9999".
        system: String,
        /// What went wrong, with the underlying error's text.
        message: String,
    },
    /// An input record could not be read (bad encoding, malformed JSON, ...).
    #[error("malformed record in {input}: {message}")]
    MalformedRecord {
        /// Where the record came from, e.g. "events.json line 12".
        input: String,
        /// What is wrong with it.
        message: String,
    },
    /// A user function returned an error.
    #[error("user function failed")]
    UserFunction {
        /// The error the user's code returned.
        #[source]
        cause: Box<dyn StdError + Send + Sync>,
    },
    /// Code panicked: a user closure ([`ErrorOrigin::User`]) or Sluice's own
    /// code ([`ErrorOrigin::Internal`]), told apart by where the panic happened.
    #[error("panicked at {location}: {message}")]
    Panic {
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, or "unknown location".
        location: String,
        /// Whose code panicked.
        origin: ErrorOrigin,
    },
    /// An error inside a task, with the operator and subtask it happened in.
    #[error("operator '{operator}' in subtask {subtask} failed")]
    Task {
        /// Name of the operator that failed.
        operator: String,
        /// The subtask, as "index/parallelism" counted from 1 (Flink's style).
        subtask: String,
        /// The cause.
        #[source]
        cause: Box<SluiceError>,
    },
    /// The job failed for good: restarting was refused or cannot help.
    #[error("job '{job}' failed: {reason}")]
    JobFailed {
        /// The job's name.
        job: String,
        /// Why it is not restarted again.
        reason: String,
        /// The failure that ended it.
        #[source]
        cause: Box<SluiceError>,
    },
    /// The cluster cannot run the job as placed (not enough slots, ...).
    #[error("cannot schedule job: {0}")]
    Scheduling(String),
    /// Encoding or decoding failed.
    #[error("serialization failed: {0}")]
    Serialization(String),
    /// The job was cancelled.
    #[error("job was cancelled")]
    Cancelled,
    /// A bug in Sluice: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SluiceError {
    /// Classifies the error by who caused it.
    pub fn origin(&self) -> ErrorOrigin {
        match self {
            SluiceError::InvalidJob(_)
            | SluiceError::Config(_)
            | SluiceError::UserFunction { .. }
            | SluiceError::MalformedRecord { .. } => ErrorOrigin::User,
            SluiceError::Io { .. } | SluiceError::External { .. } | SluiceError::Scheduling(_) => {
                ErrorOrigin::External
            }
            SluiceError::Panic { origin, .. } => *origin,
            SluiceError::Task { cause, .. } | SluiceError::JobFailed { cause, .. } => {
                cause.origin()
            }
            SluiceError::Serialization(_) | SluiceError::Cancelled | SluiceError::Internal(_) => {
                ErrorOrigin::Internal
            }
        }
    }

    /// Whether restarting the job can help: only when an external system failed.
    pub fn is_retriable(&self) -> bool {
        self.origin() == ErrorOrigin::External
    }

    /// Whether the job as configured can never run, so that restarting is
    /// pointless even once (Flink's `SuppressRestartsException`).
    pub fn suppresses_restarts(&self) -> bool {
        matches!(self.root(), SluiceError::InvalidJob(_) | SluiceError::Config(_))
    }

    /// An I/O error on a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        SluiceError::Io { action, path: path.into(), cause }
    }

    /// An external-system error; `message` should carry the underlying error's text.
    pub fn external(system: impl Into<String>, message: impl Into<String>) -> Self {
        SluiceError::External { system: system.into(), message: message.into() }
    }

    /// A user function's error, from its message.
    pub fn user(message: impl Into<String>) -> Self {
        SluiceError::UserFunction { cause: message.into().into() }
    }

    /// The innermost Sluice error, past task and job context.
    pub fn root(&self) -> &SluiceError {
        match self {
            SluiceError::Task { cause, .. } | SluiceError::JobFailed { cause, .. } => cause.root(),
            other => other,
        }
    }

    /// The error with every cause after it, "a: b: c", for logs and messages.
    pub fn report(&self) -> Report<'_> {
        Report(self)
    }
}

/// An error and its chain of causes, displayed as "error: cause: cause".
#[derive(Debug, Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl From<postcard::Error> for SluiceError {
    fn from(e: postcard::Error) -> Self {
        SluiceError::Serialization(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_task() -> SluiceError {
        let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        SluiceError::Task {
            operator: "Source: words".into(),
            subtask: "1/2".into(),
            cause: Box::new(SluiceError::io("cannot open input file", "/in/a.txt", cause)),
        }
    }

    #[test]
    fn a_report_shows_every_cause_once_in_order() {
        let e = failed_task();
        assert_eq!(e.to_string(), "operator 'Source: words' in subtask 1/2 failed");
        assert_eq!(
            e.report().to_string(),
            "operator 'Source: words' in subtask 1/2 failed: cannot open input file /in/a.txt: no such file"
        );
    }

    #[test]
    fn causes_are_reachable_as_sources() {
        let e = failed_task();
        let io = e.source().and_then(|s| s.source()).expect("the io error");
        assert!(io.downcast_ref::<std::io::Error>().is_some());
    }

    #[test]
    fn context_takes_the_origin_of_its_cause() {
        assert_eq!(failed_task().origin(), ErrorOrigin::External);
        let user = SluiceError::Task {
            operator: "Map".into(),
            subtask: "1/1".into(),
            cause: Box::new(SluiceError::user("bad value")),
        };
        assert_eq!(user.origin(), ErrorOrigin::User);
        assert!(!user.is_retriable());
    }

    #[test]
    fn only_configuration_errors_suppress_restarts() {
        assert!(SluiceError::Config("x".into()).suppresses_restarts());
        assert!(!SluiceError::user("x").suppresses_restarts());
        assert!(!failed_task().suppresses_restarts());
    }
}
