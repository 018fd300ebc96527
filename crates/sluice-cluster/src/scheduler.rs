//! The Scheduler: deploys an attempt of a job — every subtask of its
//! ExecutionGraph into the slot it was placed in, with the channels between
//! them, its source splits and its share of the restored state. Placement is
//! fixed for the life of the job; each restart deploys the same placement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use sluice_checkpoint::{AlignmentMode, CheckpointingMode, OperatorSnapshot};
use sluice_core::{Result, SluiceError};
use sluice_runtime::execution_graph::{ExecutionGraph, SlotId};
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::metrics::TaskMetrics;
use sluice_runtime::source::SerializedSplit;
use sluice_runtime::stream_graph::NodeBody;
use sluice_runtime::task::{
    in_flight_key, TaskCheckpointing, TaskControl, TaskDeployment, TaskEvent,
};

use crate::job_master::StateMap;
use crate::shuffle::create_channels;
use crate::task_manager::TaskManager;

/// One deployment of all subtasks: the JobMaster's handles on it.
pub(crate) struct Attempt {
    /// 0 for the first deployment, then one more per restart.
    pub(crate) number: usize,
    /// Set to stop every subtask of the attempt.
    pub(crate) cancel: Arc<AtomicBool>,
    /// Acknowledgements, declines and ends reported by the subtasks.
    pub(crate) events: Receiver<TaskEvent>,
    /// Per subtask: whether it is a source, and its control channel.
    pub(crate) controls: Vec<(bool, Sender<TaskControl>)>,
    /// The subtasks' threads.
    pub(crate) threads: Vec<JoinHandle<()>>,
}

/// Deploys attempts of a job onto the slots its ExecutionGraph placed it in.
pub(crate) struct Scheduler {
    pub(crate) job_graph: Arc<JobGraph>,
    pub(crate) execution_graph: ExecutionGraph,
    pub(crate) task_managers: Vec<Arc<TaskManager>>,
    /// Counters per (vertex, subtask), kept across attempts.
    pub(crate) metrics: Vec<(usize, usize, Arc<TaskMetrics>)>,
    alignment: Option<(AlignmentMode, Option<Duration>)>,
}

impl Scheduler {
    /// Places the job on `slots`; nothing is deployed yet.
    pub(crate) fn new(
        job_graph: Arc<JobGraph>,
        task_managers: Vec<Arc<TaskManager>>,
        slots: &[SlotId],
    ) -> Result<Self> {
        let execution_graph = ExecutionGraph::schedule(&job_graph, slots)?;
        let metrics = execution_graph
            .vertices
            .iter()
            .enumerate()
            .flat_map(|(v, subtasks)| {
                subtasks.iter().map(move |s| (v, s.subtask_index, Arc::new(TaskMetrics::default())))
            })
            .collect();
        let alignment = job_graph.stream_graph.checkpoint_config.as_ref().map(|c| match c.mode {
            CheckpointingMode::AtLeastOnce => (AlignmentMode::AtLeastOnce, None),
            CheckpointingMode::ExactlyOnce if !c.unaligned => (AlignmentMode::Aligned, None),
            // Unaligned after a timeout: align first, switch when it takes too long.
            CheckpointingMode::ExactlyOnce if !c.aligned_checkpoint_timeout.is_zero() => {
                (AlignmentMode::Aligned, Some(c.aligned_checkpoint_timeout))
            }
            CheckpointingMode::ExactlyOnce => (AlignmentMode::Unaligned, None),
        });
        Ok(Self { job_graph, execution_graph, task_managers, metrics, alignment })
    }

    /// Marks the job's slots taken, for as long as it runs.
    pub(crate) fn allocate_slots(&self) {
        for tm in &self.task_managers {
            tm.allocate(&self.execution_graph.slots_used);
        }
    }

    /// Gives the job's slots back.
    pub(crate) fn release_slots(&self) {
        for tm in &self.task_managers {
            tm.release(&self.execution_graph.slots_used);
        }
    }

    /// Deploys attempt `number` of every subtask, with its share of `restore`.
    pub(crate) fn deploy(&self, number: usize, restore: Option<&StateMap>) -> Result<Attempt> {
        let jg = &self.job_graph;
        let sg = &jg.stream_graph;
        let splits = assign_splits(jg, restore)?;
        let mut channels = create_channels(jg, sg.config.channel_capacity);
        let cancel = Arc::new(AtomicBool::new(false));
        let (events_tx, events) = unbounded();
        let mut controls = Vec::new();
        let mut threads = Vec::new();
        for (v, subtasks) in self.execution_graph.vertices.iter().enumerate() {
            let vertex = &jg.vertices[v];
            for ev in subtasks {
                let i = ev.subtask_index;
                let (control_tx, control_rx) = unbounded();
                controls.push((vertex.is_source, control_tx));
                let range = sluice_core::KeyGroupRange::for_operator(
                    vertex.max_parallelism,
                    vertex.parallelism,
                    i,
                );
                let mut restore_map: HashMap<String, OperatorSnapshot> = HashMap::new();
                for n in &vertex.nodes {
                    let key = sg.nodes[*n].state_key();
                    if let Some(old) = restore.and_then(|state| state.get(&key)) {
                        let mine =
                            OperatorSnapshot::redistribute(old, range, i, vertex.parallelism);
                        restore_map.insert(key, mine);
                    }
                }
                let in_flight = in_flight_key(&sg.nodes[vertex.head].state_key());
                if let Some(old) = restore.and_then(|state| state.get(&in_flight)) {
                    // In-flight data belongs to the exact channel layout it was recorded on.
                    if old.len() != vertex.parallelism {
                        return Err(SluiceError::InvalidJob(format!(
                            "'{}' was checkpointed unaligned at parallelism {} with data in flight; it cannot \
                             be restored at parallelism {}: restore at the same parallelism, or rescale \
                             from a savepoint",
                            vertex.name,
                            old.len(),
                            vertex.parallelism
                        )));
                    }
                    restore_map.insert(in_flight, old[i].clone());
                }
                let metrics = self
                    .metrics
                    .iter()
                    .find(|(mv, mi, _)| *mv == v && *mi == i)
                    .expect("per task")
                    .2
                    .clone();
                let deployment = TaskDeployment {
                    job_graph: jg.clone(),
                    vertex: v,
                    subtask_index: i,
                    attempt: number,
                    inputs: channels.inputs.remove(&(v, i)).unwrap_or_default(),
                    outputs: channels.outputs.remove(&(v, i)).unwrap_or_default(),
                    splits: splits[v].get(i).cloned().unwrap_or_default(),
                    cancel: cancel.clone(),
                    metrics,
                    events: events_tx.clone(),
                    checkpointing: self.alignment.map(|(mode, alignment_timeout)| {
                        TaskCheckpointing { control: control_rx, mode, alignment_timeout }
                    }),
                    restore: restore_map,
                };
                match self.task_managers[ev.slot.task_manager].submit_task(deployment) {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        cancel.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }
        Ok(Attempt { number, cancel, events, controls, threads })
    }
}

/// Splits per vertex per subtask: from the checkpoint when restoring (as
/// the source subtasks left them), else freshly enumerated; round robin.
pub(crate) fn assign_splits(
    job_graph: &JobGraph,
    restore: Option<&StateMap>,
) -> Result<Vec<Vec<Vec<SerializedSplit>>>> {
    let sg = &job_graph.stream_graph;
    job_graph
        .vertices
        .iter()
        .map(|v| {
            let head = &sg.nodes[v.head];
            let NodeBody::Source { source, .. } = &head.body else { return Ok(Vec::new()) };
            let splits = match restore.and_then(|r| r.get(&head.state_key())) {
                Some(old) => old
                    .iter()
                    .flat_map(|s| s.operator.iter())
                    .map(|bytes| postcard::from_bytes::<SerializedSplit>(bytes).map_err(Into::into))
                    .collect::<Result<Vec<_>>>()?,
                None => source.create_splits(v.parallelism)?,
            };
            let mut per_subtask = vec![Vec::new(); v.parallelism];
            for (i, split) in splits.into_iter().enumerate() {
                per_subtask[i % v.parallelism].push(split);
            }
            Ok(per_subtask)
        })
        .collect()
}
