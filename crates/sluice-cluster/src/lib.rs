//! The Sluice cluster roles: the JobManager turns a JobGraph into a placed
//! ExecutionGraph, deploys its subtasks to TaskManager slots and follows the
//! job through its lifecycle; the mini-cluster runs one JobManager and N
//! TaskManagers in one process, connected by in-memory channels.
#![deny(missing_docs)]

pub mod failure_handler;
mod job_checkpoints;
pub mod job_client;
pub mod job_manager;
mod job_master;
pub mod job_status;
pub mod mini_cluster;
pub mod remote;
pub mod restart_strategy;
mod scheduler;
pub mod shuffle;
mod source_coordinator;
pub mod task_manager;

pub use failure_handler::{FailureDecision, FailureHandler};
pub use job_client::{JobClient, JobException, JobExecutionResult, JobView, VertexMetrics};
pub use job_manager::{JobManager, JobOptions, RestoreSource};
pub use job_status::{JobState, JobStatus, Restore};
pub use mini_cluster::{DataPlane, MiniCluster, MiniClusterConfig};
pub use restart_strategy::{RestartBackoff, RestartStrategy};
pub use task_manager::TaskManager;
