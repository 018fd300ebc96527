//! The Sluice runtime: the three plan levels (StreamGraph → JobGraph →
//! ExecutionGraph), the operators, the tasks that run chains of them, and
//! the bounded channels with partitioners that connect tasks.
#![deny(missing_docs)]

pub mod channel;
pub mod decode_error;
pub mod execution_graph;
pub mod functions;
pub mod harness;
pub mod job_graph;
pub mod metrics;
pub mod network;
pub mod operator;
pub mod operators;
pub mod partitioner;
pub mod plan;
pub mod rate_controller;
pub mod record_writer;
pub mod runtime_context;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod split_enumerator;
pub mod stream_graph;
pub mod task;
pub mod two_phase_commit;
pub mod watermark_strategy;
pub mod watermark_valve;
pub mod windowing;

pub use decode_error::{DecodeErrorPolicy, DecodeFailure, RecordLocation, DECODE_FAILURES};
pub use operator::{Output, StreamOperator};
pub use runtime_context::RuntimeContext;
pub use sink::{Sink, SinkWriter};
pub use source::{Boundedness, InputStatus, Source, SourceOutput, SourceReader, SourceSplit};
pub use split_enumerator::{SplitEnumerator, SplitEnumeratorContext, StaticSplitEnumerator};
