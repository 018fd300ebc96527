//! Subtasks in other processes: what a JobMaster sends a TaskManager
//! process to deploy its share of an attempt ([`RemoteDeployment`]), the
//! gateway it sends it through ([`TaskExecutorGateway`], implemented by the
//! control plane), and what the TaskManager process does with it
//! ([`run_deployment`]). Both sides build the same JobGraph from the same
//! program, so only placement, attempt and restored state cross the wire.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use sluice_checkpoint::OperatorSnapshot;
use sluice_core::{Result, SluiceError};
use sluice_runtime::execution_graph::{ExecutionGraph, SlotId};
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::metrics::TaskMetrics;
use sluice_runtime::network::NetworkEnvironment;
use sluice_runtime::task::{TaskCheckpointing, TaskControl, TaskDeployment, TaskEvent};

use crate::scheduler::task_checkpointing;
use crate::shuffle::{create_channels, Placement};
use crate::task_manager::TaskManager;

/// One TaskManager process's share of an attempt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoteDeployment {
    /// The job, as the data plane names its channels.
    pub job: u64,
    /// The attempt; frames of older attempts are refused.
    pub attempt: u32,
    /// The slots the job was placed on (the placement is made again from them).
    pub slots: Vec<SlotId>,
    /// Every TaskManager of the placement by index: its id and data address.
    pub task_managers: Vec<(String, SocketAddr)>,
    /// Which of them receives this deployment.
    pub task_manager: usize,
    /// The checkpoint the restored state comes from.
    pub restored_checkpoint_id: Option<u64>,
    /// The subtasks it runs, each with its share of the restored state.
    pub subtasks: Vec<RemoteSubtask>,
}

/// A subtask to run in a TaskManager process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoteSubtask {
    /// Job vertex.
    pub vertex: usize,
    /// Subtask index.
    pub subtask_index: usize,
    /// State to restore, per operator state key.
    pub restore: Vec<(String, OperatorSnapshot)>,
}

/// The JobMaster's ends of a deployment's subtasks, in the deployment's
/// subtask order.
#[derive(Debug)]
pub struct TaskHandles {
    /// Each subtask's messages from the JobMaster.
    pub controls: Vec<Receiver<TaskControl>>,
    /// Each subtask's counters.
    pub metrics: Vec<Arc<TaskMetrics>>,
    /// Where the subtasks report acknowledgements and their ends.
    pub events: Sender<TaskEvent>,
    /// Set when the attempt stops.
    pub cancel: Arc<AtomicBool>,
}

impl TaskHandles {
    /// Handles with no subtask yet.
    pub fn new(events: Sender<TaskEvent>, cancel: Arc<AtomicBool>) -> Self {
        Self { controls: Vec::new(), metrics: Vec::new(), events, cancel }
    }
}

/// How a JobMaster deploys subtasks to a TaskManager in another process.
pub trait TaskExecutorGateway: Send + Sync + std::fmt::Debug {
    /// Starts `deployment`'s subtasks there. The returned thread ends once
    /// every one of them reported its end on `handles.events` (a lost
    /// TaskManager reports each as failed).
    fn deploy(&self, deployment: RemoteDeployment, handles: TaskHandles) -> Result<JoinHandle<()>>;
}

/// Where a job's attempts find their TaskManagers when they can come and
/// go (a standalone cluster): each restart asks for slots again, so an
/// attempt after a TaskManager was lost runs on the remaining or new ones.
pub trait ResourceProvider: Send + Sync {
    /// TaskManagers offering `slots` slots for the next attempt; the slots of
    /// the attempt before are given back first. Waits for TaskManagers to
    /// join up to a timeout, then fails (and the restart strategy decides).
    fn task_managers_for_attempt(&self, slots: usize) -> Result<Vec<Arc<TaskManager>>>;

    /// The job was placed (at submission or a restart): each subtask's
    /// name, TaskManager id and slot, for the cluster's books.
    fn placed(&self, placement: &[(String, String, usize)]) {
        let _ = placement;
    }
}

/// In a TaskManager process: makes this TaskManager's channel ends of the
/// attempt and starts its subtasks, one thread each.
pub fn run_deployment(
    job_graph: Arc<JobGraph>,
    network: &NetworkEnvironment,
    deployment: RemoteDeployment,
    handles: TaskHandles,
) -> Result<Vec<JoinHandle<()>>> {
    let d = deployment;
    let execution_graph = ExecutionGraph::schedule(&job_graph, &d.slots)?;
    match d.task_managers.get(d.task_manager) {
        Some((id, _)) if id == network.task_manager() => {}
        _ => {
            return Err(SluiceError::Internal(format!(
                "a deployment for TaskManager {} of {:?} reached TaskManager {}",
                d.task_manager,
                d.task_managers,
                network.task_manager()
            )))
        }
    }
    let task_managers: Vec<Arc<TaskManager>> = d
        .task_managers
        .iter()
        .enumerate()
        .map(|(i, (id, address))| match i == d.task_manager {
            true => Arc::new(TaskManager::deployed_on(i, network.clone())),
            false => Arc::new(TaskManager::peer(i, id.clone(), *address)),
        })
        .collect();
    let placement = Placement {
        execution_graph: &execution_graph,
        task_managers: &task_managers,
        job: d.job,
        attempt: d.attempt,
    };
    let sg = &job_graph.stream_graph;
    let mut channels = create_channels(&job_graph, sg.config.channel_capacity, Some(&placement))?;
    let checkpointing = task_checkpointing(&job_graph);
    let here = &task_managers[d.task_manager];
    let mut threads = Vec::new();
    let subtasks = d.subtasks.into_iter().zip(handles.controls).zip(handles.metrics);
    for ((subtask, control), metrics) in subtasks {
        let (v, i) = (subtask.vertex, subtask.subtask_index);
        let placed = execution_graph.vertices.get(v).and_then(|s| s.get(i));
        if placed.is_none_or(|p| p.slot.task_manager != d.task_manager) {
            handles.cancel.store(true, Ordering::Relaxed);
            return Err(SluiceError::Internal(format!(
                "subtask {i} of vertex {v} is not placed on TaskManager {}",
                network.task_manager()
            )));
        }
        let deployment = TaskDeployment {
            job_graph: job_graph.clone(),
            vertex: v,
            subtask_index: i,
            attempt: d.attempt as usize,
            inputs: channels.inputs.remove(&(v, i)).unwrap_or_default(),
            outputs: channels.outputs.remove(&(v, i)).unwrap_or_default(),
            control,
            cancel: handles.cancel.clone(),
            metrics,
            events: handles.events.clone(),
            checkpointing: checkpointing
                .map(|(mode, alignment_timeout)| TaskCheckpointing { mode, alignment_timeout }),
            restore: subtask.restore.into_iter().collect(),
            restored_checkpoint_id: d.restored_checkpoint_id,
        };
        match here.submit_task(deployment) {
            Ok(t) => threads.push(t),
            Err(e) => {
                handles.cancel.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    Ok(threads)
}
