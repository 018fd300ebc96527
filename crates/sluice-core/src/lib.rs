//! Core types every Sluice crate shares: the [`StreamElement`] that carries
//! records and control in one ordered stream, event time, key groups with
//! their stable hash, job configuration, and the error type.
#![deny(missing_docs)]

pub mod config;
pub mod element;
pub mod error;
pub mod key_group;
pub mod panic;
pub mod time;

pub use config::ExecutionConfig;
pub use element::{CheckpointBarrier, RecordBatch, StreamElement, StreamRecord};
pub use error::{ErrorOrigin, FunctionResult, Report, Result, SluiceError};
pub use key_group::{KeyGroupRange, KeyHasher};
pub use time::{Clock, ManualClock, SystemClock, Timestamp, Watermark};

/// What a record type must be: cloneable (fan-out, broadcast), sendable
/// and shareable between task threads (snapshots are serialized off the
/// task thread), and serializable so it can cross processes and go into
/// snapshots. Implemented for every type that qualifies.
pub trait Data:
    serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
}

impl<T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static> Data for T {}

/// What a key (of `key_by`, keyed state, timers) must be: [`Data`] that can
/// be hashed into a key group and compared. Implemented for every such type.
pub trait Key: Data + Eq + std::hash::Hash {}

impl<T: Data + Eq + std::hash::Hash> Key for T {}
