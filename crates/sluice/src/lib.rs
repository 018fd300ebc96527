//! Sluice: a stream processor in the family of Apache Flink, as one crate.
//!
//! Re-exports the DataStream API, the connectors and the runtime's public
//! types: what a job program needs, and nothing more (the `sluice` command,
//! its built-in jobs and benchmarks live in `sluice-cli`).
#![deny(missing_docs)]

#[cfg(feature = "cluster")]
pub mod application;

pub use sluice_api::*;
pub use sluice_cluster::VertexMetrics;
/// Sources and sinks.
pub use sluice_connectors as connectors;
pub use sluice_core::{
    Clock, Data, ErrorOrigin, ExecutionConfig, FunctionResult, ManualClock, Result, SluiceError,
    StreamRecord, SystemClock, Timestamp, Watermark,
};
pub use sluice_runtime::{
    Boundedness, InputStatus, RuntimeContext, Sink, SinkWriter, Source, SourceOutput, SourceReader,
    SourceSplit,
};

/// The README's code, compiled as a doc test so that it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
