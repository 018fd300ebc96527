//! The DataStream API. Register sources, transform, register sinks, then
//! `execute`: everything before `execute` only builds the StreamGraph.
//!
//! ```
//! use sluice_api::StreamExecutionEnvironment;
//!
//! let env = StreamExecutionEnvironment::new();
//! let counts = env
//!     .from_collection(vec!["a b", "b"].into_iter().map(String::from).collect())
//!     .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
//!     .map(|w| (w, 1u64))
//!     .key_by(|(w, _): &(String, u64)| w.clone())
//!     .sum(|(_, c)| c)
//!     .collect();
//! env.execute("word count").unwrap();
//! let mut out = counts.take();
//! out.sort();
//! assert_eq!(out, vec![("a".into(), 1), ("b".into(), 1), ("b".into(), 2)]);
//! ```
#![deny(missing_docs)]

mod connected_streams;
mod data_stream;
mod environment;
mod joins;
mod keyed_stream;
mod output_tag;
mod windowed_stream;

pub use connected_streams::ConnectedStreams;
pub use data_stream::{AllWindowedStream, DataStream, DataStreamSink};
pub use environment::StreamExecutionEnvironment;
pub use joins::{
    CoGroupWhere, CoGroupedStreams, IntervalJoin, IntervalJoined, JoinWhere, JoinedStreams,
    KeyedCoGroup, KeyedJoin, TaggedUnion, WindowedCoGroup, WindowedJoin,
};
pub use keyed_stream::KeyedStream;
pub use output_tag::OutputTag;
pub use sluice_checkpoint::checkpoint_coordinator::CheckpointStatus;
pub use sluice_checkpoint::{CheckpointConfig, CheckpointStats, CheckpointingMode};
pub use sluice_cluster::{
    DataPlane, JobClient, JobException, JobExecutionResult, JobOptions, JobStatus,
    MiniClusterConfig, RestartStrategy, RestoreSource,
};
pub use sluice_core::{Result, SluiceError};
pub use sluice_runtime::functions::{
    CoProcessFunction, Collector, Context, KeyedContext, KeyedOpenContext, KeyedProcessFunction,
    ProcessFunction,
};
pub use sluice_runtime::operators::interval_join::{IntervalJoinContext, ProcessJoinFunction};
pub use sluice_runtime::plan::{Plan, PlanVertex};
pub use sluice_runtime::watermark_strategy::{
    BoundedOutOfOrderness, WatermarkGenerator, WatermarkOutput, WatermarkStrategy,
};
pub use sluice_runtime::windowing::{
    CountEvictor, CountTrigger, EventTimeSessionWindows, EventTimeTrigger, GlobalWindows,
    NeverTrigger, ProcessWindowFunction, ProcessingTimeSessionWindows, ProcessingTimeTrigger,
    PurgingTrigger, SlidingEventTimeWindows, SlidingProcessingTimeWindows, TimeEvictor, TimeWindow,
    Trigger, TriggerContext, TriggerResult, TumblingEventTimeWindows,
    TumblingProcessingTimeWindows, WindowAssigner, WindowContext,
};
pub use sluice_runtime::{DecodeErrorPolicy, DecodeFailure, RecordLocation};
pub use sluice_state::{
    AggregateFunction, AggregatingState, ListState, ListStateDescriptor, MapState,
    MapStateDescriptor, ReducingState, StateDescriptor, StateTtlConfig, TimeDomain, TtlUpdateType,
    ValueState, ValueStateDescriptor,
};
pub use windowed_stream::WindowedStream;
