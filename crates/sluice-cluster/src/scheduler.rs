//! The Scheduler: deploys an attempt of a job — every subtask of its
//! ExecutionGraph into the slot it was placed in, with the channels between
//! them, its source splits and its share of the restored state. Placement is
//! fixed for the life of the job; each restart deploys the same placement.

use std::collections::{BTreeMap, HashMap};
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
use sluice_runtime::operator::FinalCommit;
use sluice_runtime::source::SerializedSplit;
use sluice_runtime::split_enumerator::enumerator_key;
use sluice_runtime::stream_graph::NodeBody;
use sluice_runtime::task::{
    in_flight_key, TaskCheckpointing, TaskControl, TaskDeployment, TaskEvent,
};

use crate::job_master::StateMap;
use crate::remote::{RemoteDeployment, RemoteSubtask, TaskHandles};
use crate::shuffle::{create_channels, Placement};
use crate::source_coordinator::{CoordinatorEvent, SourceCoordinator};
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
    /// One split enumerator per source.
    pub(crate) coordinators: Vec<SourceCoordinator>,
    /// Reports of the coordinators' discovery threads.
    pub(crate) coordinator_events: Receiver<CoordinatorEvent>,
    /// Keeps `coordinator_events` open while no discovery thread runs.
    _coordinator_sender: Sender<CoordinatorEvent>,
    /// What finished tasks' transactional sinks make visible when the job finishes.
    pub(crate) final_commits: Vec<FinalCommit>,
    /// What finished tasks' sinks accumulated, by operator state key: the
    /// job's result if this attempt is the one that finishes it.
    pub(crate) accumulators: Vec<(String, Vec<u8>)>,
}

/// Deploys attempts of a job onto the slots its ExecutionGraph placed it in.
pub(crate) struct Scheduler {
    pub(crate) job_graph: Arc<JobGraph>,
    pub(crate) execution_graph: ExecutionGraph,
    pub(crate) task_managers: Vec<Arc<TaskManager>>,
    /// Counters per (vertex, subtask), kept across attempts.
    pub(crate) metrics: Vec<(usize, usize, Arc<TaskMetrics>)>,
    alignment: Option<(AlignmentMode, Option<Duration>)>,
    /// The job as the data plane names its channels.
    network_job: u64,
    /// The slots the job was placed on: TaskManagers of other processes
    /// place it again from them, alike.
    slots: Vec<SlotId>,
}

impl Scheduler {
    /// Places the job on `slots`; nothing is deployed yet.
    pub(crate) fn new(
        job_graph: Arc<JobGraph>,
        task_managers: Vec<Arc<TaskManager>>,
        slots: &[SlotId],
        network_job: u64,
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
        let alignment = task_checkpointing(&job_graph);
        let scheduler = Self {
            job_graph,
            execution_graph,
            task_managers,
            metrics,
            alignment,
            network_job,
            slots: slots.to_vec(),
        };
        // Placement is fixed for the life of an attempt (and, on a fixed set
        // of TaskManagers, of the job): said when it is made.
        scheduler.log_placement();
        Ok(scheduler)
    }

    /// Places the job again, on `task_managers` (every one of their slots),
    /// for the attempts from now on.
    pub(crate) fn place_on(&mut self, task_managers: Vec<Arc<TaskManager>>) -> Result<()> {
        let slots: Vec<SlotId> = task_managers.iter().flat_map(|tm| tm.free_slots()).collect();
        self.execution_graph = ExecutionGraph::schedule(&self.job_graph, &slots)?;
        self.task_managers = task_managers;
        self.slots = slots;
        self.log_placement();
        Ok(())
    }

    /// Each subtask's name, TaskManager id and slot.
    pub(crate) fn placement(&self) -> Vec<(String, String, usize)> {
        let tm = |s: &sluice_runtime::execution_graph::ExecutionVertex| {
            self.task_managers[s.slot.task_manager].id()
        };
        self.execution_graph
            .vertices
            .iter()
            .flatten()
            .map(|s| (s.name.clone(), tm(s), s.slot.slot))
            .collect()
    }

    fn log_placement(&self) {
        for subtask in self.execution_graph.vertices.iter().flatten() {
            let tm = &self.task_managers[subtask.slot.task_manager];
            tracing::info!(
                job = %self.job_graph.stream_graph.job_name,
                subtask = %subtask.name,
                task_manager = %tm.id(),
                slot = subtask.slot.slot,
                "subtask placed"
            );
        }
    }

    /// Ends attempt `number`'s remote channels on every TaskManager: their
    /// frames are refused from now on, so a zombie cannot feed a later attempt.
    pub(crate) fn release_attempt(&self, number: usize) {
        for network in self.task_managers.iter().filter_map(|tm| tm.network()) {
            network.release_attempt(self.network_job, number as u32);
        }
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

    /// Deploys attempt `number` of every subtask, with its share of
    /// `restore`. Source enumerators start first: an error there (a missing
    /// input path) fails the attempt before any task runs.
    pub(crate) fn deploy(
        &self,
        number: usize,
        restored: Option<(u64, &StateMap)>,
    ) -> Result<Attempt> {
        let restore = restored.map(|(_, state)| state);
        let jg = &self.job_graph;
        let sg = &jg.stream_graph;
        let placement = Placement {
            execution_graph: &self.execution_graph,
            task_managers: &self.task_managers,
            job: self.network_job,
            attempt: number as u32,
        };
        let mut channels = create_channels(jg, sg.config.channel_capacity, Some(&placement))?;
        let mut control_rx = HashMap::new();
        let mut controls = Vec::new();
        for (v, subtasks) in self.execution_graph.vertices.iter().enumerate() {
            for ev in subtasks {
                let (tx, rx) = unbounded();
                control_rx.insert((v, ev.subtask_index), rx);
                controls.push((jg.vertices[v].is_source, tx));
            }
        }
        let (coordinator_tx, coordinator_events) = unbounded();
        let coordinators = self.start_coordinators(&controls, restore, &coordinator_tx)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let (events_tx, events) = unbounded();
        let mut threads = Vec::new();
        // Per TaskManager of another process: its subtasks and their handles.
        let mut remote: BTreeMap<usize, (Vec<RemoteSubtask>, TaskHandles)> = BTreeMap::new();
        for (v, subtasks) in self.execution_graph.vertices.iter().enumerate() {
            for ev in subtasks {
                let i = ev.subtask_index;
                let restore_map = match restore_for(jg, v, i, restore) {
                    Ok(map) => map,
                    Err(e) => {
                        cancel.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                };
                let metrics = self
                    .metrics
                    .iter()
                    .find(|(mv, mi, _)| *mv == v && *mi == i)
                    .expect("per task")
                    .2
                    .clone();
                let control = control_rx.remove(&(v, i)).expect("a control channel per subtask");
                let task_manager = ev.slot.task_manager;
                if self.task_managers[task_manager].executor().is_some() {
                    let (subtasks, handles) = remote.entry(task_manager).or_insert_with(|| {
                        (Vec::new(), TaskHandles::new(events_tx.clone(), cancel.clone()))
                    });
                    subtasks.push(RemoteSubtask {
                        vertex: v,
                        subtask_index: i,
                        restore: restore_map.into_iter().collect(),
                    });
                    handles.controls.push(control);
                    handles.metrics.push(metrics);
                    continue;
                }
                let deployment = TaskDeployment {
                    job_graph: jg.clone(),
                    vertex: v,
                    subtask_index: i,
                    attempt: number,
                    inputs: channels.inputs.remove(&(v, i)).unwrap_or_default(),
                    outputs: channels.outputs.remove(&(v, i)).unwrap_or_default(),
                    control,
                    cancel: cancel.clone(),
                    metrics,
                    events: events_tx.clone(),
                    checkpointing: self.alignment.map(|(mode, alignment_timeout)| {
                        TaskCheckpointing { mode, alignment_timeout }
                    }),
                    restore: restore_map,
                    restored_checkpoint_id: restored.map(|(id, _)| id),
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
        if !remote.is_empty() {
            if let Err(e) =
                self.deploy_remote(number, restored.map(|(id, _)| id), remote, &mut threads)
            {
                cancel.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(Attempt {
            number,
            cancel,
            events,
            controls,
            threads,
            coordinators,
            coordinator_events,
            _coordinator_sender: coordinator_tx,
            final_commits: Vec::new(),
            accumulators: Vec::new(),
        })
    }

    /// Sends each TaskManager of another process its share of attempt
    /// `number`; the threads that follow them join `threads`.
    fn deploy_remote(
        &self,
        number: usize,
        restored_checkpoint_id: Option<u64>,
        remote: BTreeMap<usize, (Vec<RemoteSubtask>, TaskHandles)>,
        threads: &mut Vec<JoinHandle<()>>,
    ) -> Result<()> {
        // Indexed like the placement's TaskManagers, so every one needs a data plane.
        let endpoints = self
            .task_managers
            .iter()
            .map(|tm| match tm.endpoint() {
                Some((id, address)) => Ok((id.to_string(), address)),
                None => Err(SluiceError::Internal(format!(
                    "TaskManager {} has no data plane, but shares a job with other processes",
                    tm.id()
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        for (task_manager, (subtasks, handles)) in remote {
            let deployment = RemoteDeployment {
                job: self.network_job,
                attempt: number as u32,
                slots: self.slots.clone(),
                task_managers: endpoints.clone(),
                task_manager,
                restored_checkpoint_id,
                subtasks,
            };
            let executor =
                self.task_managers[task_manager].executor().expect("a remote TaskManager");
            threads.push(executor.deploy(deployment, handles)?);
        }
        Ok(())
    }

    /// Creates and starts one coordinator per source vertex: a fresh
    /// enumerator, or the checkpointed one given back its readers' splits.
    /// `controls` are every subtask's control channel, in deployment order.
    fn start_coordinators(
        &self,
        controls: &[(bool, Sender<TaskControl>)],
        restore: Option<&StateMap>,
        events: &Sender<CoordinatorEvent>,
    ) -> Result<Vec<SourceCoordinator>> {
        let jg = &self.job_graph;
        let sg = &jg.stream_graph;
        let mut coordinators = Vec::new();
        let mut first_task = 0;
        for (v, subtasks) in self.execution_graph.vertices.iter().enumerate() {
            let readers: Vec<Sender<TaskControl>> = controls
                [first_task..first_task + subtasks.len()]
                .iter()
                .map(|(_, c)| c.clone())
                .collect();
            first_task += subtasks.len();
            let vertex = &jg.vertices[v];
            let head = &sg.nodes[vertex.head];
            let NodeBody::Source { source, .. } = &head.body else { continue };
            let reader_state = restore.and_then(|r| r.get(&head.state_key()));
            let enumerator_state = restore
                .and_then(|r| r.get(&enumerator_key(&head.state_key())))
                .and_then(|s| s.first())
                .and_then(|s| s.operator.first());
            if reader_state.is_some() && enumerator_state.is_none() {
                return Err(SluiceError::InvalidJob(format!(
                    "the checkpoint holds the readers of source '{}' but not its split enumerator: \
                     it was written by an older Sluice and cannot be restored",
                    head.name
                )));
            }
            let enumerator = source
                .create_enumerator(vertex.parallelism, enumerator_state.map(Vec::as_slice))?;
            let mut coordinator = SourceCoordinator::new(
                v,
                head.name.clone(),
                head.state_key(),
                enumerator,
                readers,
                events.clone(),
            );
            if let Some(old) = reader_state {
                let splits = old
                    .iter()
                    .flat_map(|s| s.operator.iter())
                    .map(|bytes| postcard::from_bytes::<SerializedSplit>(bytes).map_err(Into::into))
                    .collect::<Result<Vec<_>>>()?;
                coordinator.add_splits_back(&splits)?;
            }
            coordinator.start()?;
            coordinators.push(coordinator);
        }
        Ok(coordinators)
    }
}

/// How the job's tasks take part in checkpoints, from its checkpoint config.
pub(crate) fn task_checkpointing(
    job_graph: &JobGraph,
) -> Option<(AlignmentMode, Option<Duration>)> {
    job_graph.stream_graph.checkpoint_config.as_ref().map(|c| match c.mode {
        CheckpointingMode::AtLeastOnce => (AlignmentMode::AtLeastOnce, None),
        CheckpointingMode::ExactlyOnce if !c.unaligned => (AlignmentMode::Aligned, None),
        // Unaligned after a timeout: align first, switch when it takes too long.
        CheckpointingMode::ExactlyOnce if !c.aligned_checkpoint_timeout.is_zero() => {
            (AlignmentMode::Aligned, Some(c.aligned_checkpoint_timeout))
        }
        CheckpointingMode::ExactlyOnce => (AlignmentMode::Unaligned, None),
    })
}

/// Subtask `i` of vertex `v`'s share of `restore`, per operator state key:
/// its key groups, its operator state, and its channels' in-flight data.
fn restore_for(
    jg: &JobGraph,
    v: usize,
    i: usize,
    restore: Option<&StateMap>,
) -> Result<HashMap<String, OperatorSnapshot>> {
    let sg = &jg.stream_graph;
    let vertex = &jg.vertices[v];
    let mut restore_map = HashMap::new();
    let Some(restore) = restore else { return Ok(restore_map) };
    let range =
        sluice_core::KeyGroupRange::for_operator(vertex.max_parallelism, vertex.parallelism, i);
    for n in &vertex.nodes {
        let key = sg.nodes[*n].state_key();
        if let Some(old) = restore.get(&key) {
            let mine = OperatorSnapshot::redistribute(old, range, i, vertex.parallelism);
            restore_map.insert(key, mine);
        }
    }
    let in_flight = in_flight_key(&sg.nodes[vertex.head].state_key());
    if let Some(old) = restore.get(&in_flight) {
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
    Ok(restore_map)
}
