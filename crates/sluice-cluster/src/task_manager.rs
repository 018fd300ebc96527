//! A TaskManager: a fixed number of slots, each running the subtasks the
//! JobManager deployed to it, one thread per subtask. A TaskManager in
//! another process is reached through its [`TaskExecutorGateway`]; one that
//! only exchanges records with this process's subtasks is a peer, known by
//! its data address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sluice_core::{Result, SluiceError};
use sluice_runtime::execution_graph::SlotId;
use sluice_runtime::network::NetworkEnvironment;
use sluice_runtime::operator::task_error;
use sluice_runtime::task::{run_task, TaskDeployment, TaskEvent};

use crate::remote::TaskExecutorGateway;

/// A TaskManager of another process, as this one sees it.
#[derive(Debug, Clone)]
struct Remote {
    id: String,
    data_address: SocketAddr,
    /// How subtasks are deployed to it; none for a peer that only exchanges records.
    executor: Option<Arc<dyn TaskExecutorGateway>>,
}

/// One TaskManager of a cluster.
#[derive(Debug)]
pub struct TaskManager {
    index: usize,
    free: Mutex<Vec<bool>>,
    /// Its data plane, when channels to other TaskManagers cross TCP.
    network: Option<NetworkEnvironment>,
    /// Set when it runs in another process.
    remote: Option<Remote>,
    /// Whether its data plane ends with it (not when it is a view of a
    /// TaskManager process's data plane for one deployment).
    owns_network: bool,
}

impl TaskManager {
    /// TaskManager number `index` with `slots` slots; all its channels are in memory.
    pub fn new(index: usize, slots: usize) -> Self {
        let free = Mutex::new(vec![true; slots]);
        Self { index, free, network: None, remote: None, owns_network: false }
    }

    /// A TaskManager whose channels to other TaskManagers go through
    /// `network`, which it shuts down when it is dropped.
    pub fn with_network(index: usize, slots: usize, network: NetworkEnvironment) -> Self {
        let free = Mutex::new(vec![true; slots]);
        Self { index, free, network: Some(network), remote: None, owns_network: true }
    }

    /// TaskManager number `index` of a deployment placed in this process,
    /// on a data plane that outlives it.
    pub fn deployed_on(index: usize, network: NetworkEnvironment) -> Self {
        let free = Mutex::new(Vec::new());
        Self { index, free, network: Some(network), remote: None, owns_network: false }
    }

    /// A TaskManager process `id` whose data plane listens at `data_address`;
    /// subtasks are deployed to it through `executor`.
    pub fn remote(
        index: usize,
        slots: usize,
        id: String,
        data_address: SocketAddr,
        executor: Arc<dyn TaskExecutorGateway>,
    ) -> Self {
        let remote = Remote { id, data_address, executor: Some(executor) };
        let free = Mutex::new(vec![true; slots]);
        Self { index, free, network: None, remote: Some(remote), owns_network: false }
    }

    /// A TaskManager of another process that this one only exchanges records with.
    pub fn peer(index: usize, id: String, data_address: SocketAddr) -> Self {
        let remote = Remote { id, data_address, executor: None };
        let free = Mutex::new(Vec::new());
        Self { index, free, network: None, remote: Some(remote), owns_network: false }
    }

    /// How subtasks reach it when it runs in another process.
    pub fn executor(&self) -> Option<&Arc<dyn TaskExecutorGateway>> {
        self.remote.as_ref().and_then(|r| r.executor.as_ref())
    }

    /// Whether its subtasks run in this process.
    pub fn is_local(&self) -> bool {
        self.remote.is_none()
    }

    /// Its data plane's id and address, if it has one.
    pub fn endpoint(&self) -> Option<(&str, SocketAddr)> {
        match (&self.network, &self.remote) {
            (Some(n), _) => Some((n.task_manager(), n.address())),
            (None, Some(r)) => Some((&r.id, r.data_address)),
            (None, None) => None,
        }
    }

    /// Its data plane, if it has one.
    pub fn network(&self) -> Option<&NetworkEnvironment> {
        self.network.as_ref()
    }

    /// Its id: its data plane's, or `tm-INDEX`.
    pub fn id(&self) -> String {
        match self.endpoint() {
            Some((id, _)) => id.to_string(),
            None => format!("tm-{}", self.index),
        }
    }

    /// This TaskManager's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.free.lock().expect("slot table lock").len()
    }

    /// The slots that are free now.
    pub fn free_slots(&self) -> Vec<SlotId> {
        let free = self.free.lock().expect("slot table lock");
        (0..free.len())
            .filter(|&s| free[s])
            .map(|slot| SlotId { task_manager: self.index, slot })
            .collect()
    }

    /// Marks slots as taken by a job.
    pub fn allocate(&self, slots: &[SlotId]) {
        let mut free = self.free.lock().expect("slot table lock");
        for s in slots.iter().filter(|s| s.task_manager == self.index) {
            free[s.slot] = false;
        }
    }

    /// Returns slots after a job ended.
    pub fn release(&self, slots: &[SlotId]) {
        let mut free = self.free.lock().expect("slot table lock");
        for s in slots.iter().filter(|s| s.task_manager == self.index) {
            free[s.slot] = true;
        }
    }

    /// Starts a subtask on its own thread; its acks and its end are reported on its event channel.
    pub fn submit_task(&self, deployment: TaskDeployment) -> Result<JoinHandle<()>> {
        let name = deployment.task_name();
        let vertex_info = &deployment.job_graph.vertices[deployment.vertex];
        let (operator, subtask) = (
            vertex_info.name.clone(),
            format!("{}/{}", deployment.subtask_index + 1, vertex_info.parallelism),
        );
        let (vertex, subtask_index) = (deployment.vertex, deployment.subtask_index);
        let events = deployment.events.clone();
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                // Operator hooks catch their own panics; this catches the rest
                // (a source reader, the task loop) and classes it by where it happened.
                if let Err(panic) = sluice_core::panic::catch(|| run_task(deployment)) {
                    let _ = events.send(TaskEvent::Finished {
                        vertex,
                        subtask_index,
                        result: Err(task_error(&operator, &subtask, panic)),
                        final_commits: Vec::new(),
                        accumulators: Vec::new(),
                    });
                }
            })
            .map_err(|e| SluiceError::Internal(format!("cannot start a task thread: {e}")))
    }
}

impl Drop for TaskManager {
    fn drop(&mut self) {
        if let Some(network) = self.network.as_ref().filter(|_| self.owns_network) {
            network.shutdown();
        }
    }
}
