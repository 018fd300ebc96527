//! Checkpoints as Flink takes them: barriers flow with the data, operators
//! with several inputs align them, every subtask acknowledges, and the
//! coordinator completes the checkpoint. The protocols here are plain types
//! without I/O; the runtime and the JobManager drive them.
#![deny(missing_docs)]

pub mod barrier_aligner;
pub mod checkpoint_config;
pub mod checkpoint_coordinator;
pub mod checkpoint_storage;
pub mod operator_snapshot;

pub use barrier_aligner::{AlignerEvent, AlignmentMode, BarrierAligner};
pub use checkpoint_config::{CheckpointConfig, CheckpointingMode};
pub use checkpoint_coordinator::{
    CheckpointCoordinator, CheckpointOutcome, CheckpointStats, CheckpointStatus, SubtaskAck,
};
pub use checkpoint_storage::{CheckpointMetadata, CheckpointStorage, RestoredCheckpoint};
pub use operator_snapshot::{OperatorSnapshot, PendingSnapshot};
