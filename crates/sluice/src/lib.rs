//! Sluice: a stream processor in the family of Apache Flink, as one crate.
//!
//! Re-exports the DataStream API, the connectors and the runtime's public
//! types, and holds the built-in jobs the `sluice` command runs.
#![deny(missing_docs)]

pub mod jobs;
pub mod process_stats;

pub use sluice_api::*;
pub use sluice_cluster::VertexMetrics;
/// Sources and sinks.
pub use sluice_connectors as connectors;
pub use sluice_core::{
    Clock, ExecutionConfig, ManualClock, Result, SluiceError, StreamRecord, SystemClock, Timestamp,
    Watermark,
};
/// The Nexmark queries.
pub use sluice_nexmark as nexmark;
pub use sluice_runtime::{
    Boundedness, InputStatus, RuntimeContext, Sink, SinkWriter, Source, SourceOutput, SourceReader,
    SourceSplit,
};

/// The README's code, compiled as a doc test so that it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
