//! The Sluice cluster roles: the JobManager turns a JobGraph into a placed
//! ExecutionGraph, deploys its subtasks to TaskManager slots and follows the
//! job through its lifecycle; the mini-cluster runs one JobManager and N
//! TaskManagers in one process, connected by in-memory channels.
#![deny(missing_docs)]

pub mod job_manager;
pub mod job_status;
pub mod mini_cluster;
pub mod restart_strategy;
pub mod shuffle;
pub mod task_manager;

pub use job_manager::{
    JobClient, JobExecutionResult, JobManager, JobOptions, RestoreSource, VertexMetrics,
};
pub use job_status::JobStatus;
pub use mini_cluster::{MiniCluster, MiniClusterConfig};
pub use restart_strategy::{RestartBackoff, RestartStrategy};
pub use task_manager::TaskManager;
