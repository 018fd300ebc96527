//! The error type of every Sluice library crate. Each error is classified
//! where it is raised — user code, an external system, or Sluice itself —
//! so a restart strategy reads [`SluiceError::origin`] instead of parsing text.

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
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot read", "cannot create", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An external system (socket, broker, ...) failed or cannot be reached.
    #[error("{system}: {message}")]
    External {
        /// The system and address, e.g. "socket source 127.0.0.1:9999".
        system: String,
        /// What went wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
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
        /// The error or panic message.
        message: String,
        /// The user's error, if it returned one.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// An error inside a task, with the operator and subtask it happened in.
    #[error("operator '{operator}' in subtask {subtask} failed: {source}")]
    Task {
        /// Name of the operator that failed.
        operator: String,
        /// The subtask, as "index/parallelism" counted from 1 (Flink's style).
        subtask: String,
        /// The cause.
        #[source]
        source: Box<SluiceError>,
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
            SluiceError::Task { source, .. } => source.origin(),
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
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SluiceError::Io { action, path: path.into(), source }
    }

    /// An external-system error.
    pub fn external(
        system: impl Into<String>,
        message: impl Into<String>,
        source: Option<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        SluiceError::External { system: system.into(), message: message.into(), source }
    }

    /// The innermost Sluice error, past task context.
    pub fn root(&self) -> &SluiceError {
        match self {
            SluiceError::Task { source, .. } => source.root(),
            other => other,
        }
    }

    /// The whole chain, "outer: inner: ...", for printing at the top level.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur: Option<&(dyn StdError + 'static)> = StdError::source(self);
        while let Some(e) = cur {
            let s = e.to_string();
            if !out.contains(&s) {
                out.push_str(": ");
                out.push_str(&s);
            }
            cur = e.source();
        }
        out
    }
}

impl From<postcard::Error> for SluiceError {
    fn from(e: postcard::Error) -> Self {
        SluiceError::Serialization(e.to_string())
    }
}
