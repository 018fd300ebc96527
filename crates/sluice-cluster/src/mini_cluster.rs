//! The mini-cluster: one JobManager and N TaskManagers × S slots in one
//! process. It runs the same JobManager and TaskManager code as a
//! distributed cluster; only the transport differs: in-memory channels, or
//! with [`DataPlane::Tcp`] the TaskManagers' own data planes on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::RngCore;
use sluice_runtime::network::{NetworkConfig, NetworkEnvironment};

use sluice_core::{Result, SluiceError};
use sluice_runtime::execution_graph::{ExecutionGraph, SlotId};
use sluice_runtime::job_graph::JobGraph;

use crate::job_client::JobClient;
use crate::job_manager::{JobManager, JobOptions};
use crate::task_manager::TaskManager;

/// How a mini-cluster's TaskManagers exchange records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataPlane {
    /// In-memory channels between every pair of subtasks (Flink's MiniCluster).
    #[default]
    InMemory,
    /// Each TaskManager listens on loopback; channels between subtasks on
    /// different TaskManagers cross a TCP connection, as between processes.
    Tcp,
}

/// The shape of a mini-cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MiniClusterConfig {
    /// Number of TaskManagers.
    pub task_managers: usize,
    /// Slots per TaskManager.
    pub slots_per_task_manager: usize,
    /// How TaskManagers exchange records.
    pub data_plane: DataPlane,
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
        let slots = config.slots_per_task_manager;
        let tms: Vec<Arc<TaskManager>> = match config.data_plane {
            DataPlane::InMemory => {
                (0..config.task_managers).map(|i| Arc::new(TaskManager::new(i, slots))).collect()
            }
            DataPlane::Tcp => {
                let mut secret = vec![0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                // The shuffle connects the TaskManagers that exchange records, at each deployment.
                (0..config.task_managers)
                    .map(|i| {
                        let network = NetworkEnvironment::start(NetworkConfig {
                            task_manager: format!("tm-{i}"),
                            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                            secret: Some(secret.clone()),
                            tls: None,
                        })?;
                        Ok(Arc::new(TaskManager::with_network(i, slots, network)))
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
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
