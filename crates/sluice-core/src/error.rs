//! The error type of every Sluice library crate. Each error is classified
//! where it is raised — user code, an external system, or Sluice itself —
//! so a restart strategy reads [`SluiceError::origin`] instead of parsing text.
//! Each message includes its cause's message, so printing an error once
//! shows the whole chain.

use std::error::Error as StdError;
use std::path::PathBuf;

/// Result with [`SluiceError`].
pub type Result<T, E = SluiceError> = std::result::Result<T, E>;

/// What a user function returns: any error the user's code raises.
pub type FunctionResult<T = ()> = std::result::Result<T, Box<dyn StdError + Send + Sync>>;

/// Who caused an error, and so whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done ("cannot read", "cannot create", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
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
    /// A user function returned an error or panicked.
    #[error("user function failed: {message}")]
    UserFunction {
        /// The user's error message, or the panic message.
        message: String,
    },
    /// An error inside a task, with the operator and subtask it happened in.
    #[error("operator '{operator}' in subtask {subtask} failed: {cause}")]
    Task {
        /// Name of the operator that failed.
        operator: String,
        /// The subtask, as "index/parallelism" counted from 1 (Flink's style).
        subtask: String,
        /// The cause.
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
            SluiceError::Task { cause, .. } => cause.origin(),
            SluiceError::Serialization(_) | SluiceError::Cancelled | SluiceError::Internal(_) => {
                ErrorOrigin::Internal
            }
        }
    }

    /// Whether restarting the job can help.
    pub fn is_retriable(&self) -> bool {
        self.origin() == ErrorOrigin::External
    }

    /// An I/O error on a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        SluiceError::Io { action, path: path.into(), cause }
    }

    /// An external-system error; `message` should carry the underlying error's text.
    pub fn external(system: impl Into<String>, message: impl Into<String>) -> Self {
        SluiceError::External { system: system.into(), message: message.into() }
    }

    /// A user function's error or panic message.
    pub fn user(message: impl Into<String>) -> Self {
        SluiceError::UserFunction { message: message.into() }
    }

    /// The innermost error, past task context.
    pub fn root(&self) -> &SluiceError {
        match self {
            SluiceError::Task { cause, .. } => cause.root(),
            other => other,
        }
    }
}

impl From<postcard::Error> for SluiceError {
    fn from(e: postcard::Error) -> Self {
        SluiceError::Serialization(e.to_string())
    }
}
