//! The mini-cluster: one JobManager and N TaskManagers × S slots in one
//! process. It runs the same JobManager and TaskManager code as a
//! distributed cluster; only the transport (in-memory channels) differs.

use std::sync::Arc;

use sluice_core::{Result, SluiceError};
use sluice_runtime::execution_graph::{ExecutionGraph, SlotId};
use sluice_runtime::job_graph::JobGraph;

use crate::job_client::JobClient;
use crate::job_manager::{JobManager, JobOptions};
use crate::task_manager::TaskManager;

/// The shape of a mini-cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MiniClusterConfig {
    /// Number of TaskManagers.
    pub task_managers: usize,
    /// Slots per TaskManager.
    pub slots_per_task_manager: usize,
}

impl MiniClusterConfig {
    /// Checks the shape; the error names the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.task_managers == 0 {
            return Err(SluiceError::Config("a mini-cluster needs at least 1 TaskManager".into()));
        }
        if self.slots_per_task_manager == 0 {
            return Err(SluiceError::Config("a TaskManager needs at least 1 slot".into()));
        }
        Ok(())
    }

    /// All slots of the cluster, TaskManager by TaskManager.
    pub fn slots(&self) -> Vec<SlotId> {
        (0..self.task_managers)
            .flat_map(|tm| {
                (0..self.slots_per_task_manager).map(move |slot| SlotId { task_manager: tm, slot })
            })
            .collect()
    }

    /// Places a job on an empty cluster of this shape, without running it.
    pub fn place(&self, job_graph: &JobGraph) -> Result<ExecutionGraph> {
        self.validate()?;
        ExecutionGraph::schedule(job_graph, &self.slots())
    }
}

/// A JobManager and its TaskManagers in one process.
#[derive(Debug)]
pub struct MiniCluster {
    config: MiniClusterConfig,
    job_manager: JobManager,
}

impl MiniCluster {
    /// Starts a mini-cluster of the given shape.
    pub fn start(config: MiniClusterConfig) -> Result<Self> {
        config.validate()?;
        let tms = (0..config.task_managers)
            .map(|i| Arc::new(TaskManager::new(i, config.slots_per_task_manager)))
            .collect();
        Ok(Self { config, job_manager: JobManager::new(tms) })
    }

    /// The cluster's shape.
    pub fn config(&self) -> MiniClusterConfig {
        self.config
    }

    /// Submits a job; it runs in the background.
    pub fn submit_job(&self, job_graph: JobGraph, options: JobOptions) -> Result<JobClient> {
        self.job_manager.submit_job(job_graph, options)
    }
}
