//! The JobManager: schedules a JobGraph onto TaskManager slots, deploys the
//! subtasks, coordinates checkpoints, and decides the job's fate. The first
//! failure fails the attempt; the restart strategy decides whether a new
//! attempt starts from the latest completed checkpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use rand::Rng;
use serde::Serialize;
use sluice_checkpoint::checkpoint_coordinator::SubtaskAck;
use sluice_checkpoint::checkpoint_storage::SubtaskState;
use sluice_checkpoint::{
    AlignmentMode, CheckpointCoordinator, CheckpointMetadata, CheckpointOutcome, CheckpointStats,
    CheckpointStorage, CheckpointingMode, OperatorSnapshot,
};
use sluice_core::{CheckpointBarrier, Result, SluiceError};
use sluice_runtime::execution_graph::ExecutionGraph;
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::metrics::TaskMetrics;
use sluice_runtime::source::SerializedSplit;
use sluice_runtime::stream_graph::NodeBody;
use sluice_runtime::task::{
    in_flight_key, SnapshotDurations, TaskCheckpointing, TaskControl, TaskDeployment, TaskEvent,
};
use tracing::{info, warn};

use crate::job_status::JobStatus;
use crate::restart_strategy::{RestartBackoff, RestartStrategy};
use crate::shuffle::create_channels;
use crate::task_manager::TaskManager;

/// What a finished job reports.
#[derive(Clone, Debug, Serialize)]
pub struct JobExecutionResult {
    /// The job id (32 hex digits, as Flink's JobID).
    pub job_id: String,
    /// The job's name.
    pub job_name: String,
    /// Wall-clock run time.
    pub duration: Duration,
    /// Final counters per vertex.
    pub vertices: Vec<VertexMetrics>,
    /// Restarts after failures.
    pub restarts: u32,
    /// Every checkpoint of the job.
    pub checkpoints: Vec<CheckpointStats>,
}

/// Counters of one job vertex, summed over its subtasks.
#[derive(Clone, Debug, Serialize)]
pub struct VertexMetrics {
    /// Vertex name.
    pub name: String,
    /// Parallelism.
    pub parallelism: usize,
    /// Records received from input channels.
    pub records_in: u64,
    /// Records sent to output channels.
    pub records_out: u64,
    /// Records its source produced (0 unless the vertex is a source).
    pub source_records: u64,
}

/// Where a job's state starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreSource {
    /// The newest completed checkpoint under the job's checkpoint storage.
    Latest,
    /// A checkpoint or savepoint directory (its `_metadata` inside).
    Path(String),
}

/// How a job runs: restarts and initial state.
#[derive(Clone, Debug, Default)]
pub struct JobOptions {
    /// Restart strategy (default: exponential delay with checkpointing, none without).
    pub restart_strategy: Option<RestartStrategy>,
    /// Start from a checkpoint or savepoint.
    pub restore: Option<RestoreSource>,
    /// Skip state of operators the job no longer has instead of refusing it.
    pub allow_non_restored_state: bool,
}

/// The default checkpoint directory when the job names none.
pub fn default_checkpoint_storage() -> String {
    std::env::temp_dir().join("sluice-checkpoints").display().to_string()
}

/// Operator state key → subtask snapshots, as a checkpoint holds them.
type StateMap = BTreeMap<String, Vec<OperatorSnapshot>>;

/// A request from a [`JobClient`] to the JobMaster.
enum JobCommand {
    /// Take a savepoint into `dir`; stop the job after it if `stop`.
    Savepoint { dir: String, stop: bool, reply: Sender<Result<String>> },
}

/// A savepoint in progress: where it goes and who waits for it.
struct PendingSavepoint {
    checkpoint_id: u64,
    dir: String,
    stop: bool,
    reply: Sender<Result<String>>,
}

/// The JobManager of a cluster.
#[derive(Debug)]
pub struct JobManager {
    task_managers: Vec<Arc<TaskManager>>,
}

impl JobManager {
    /// A JobManager scheduling onto `task_managers`.
    pub fn new(task_managers: Vec<Arc<TaskManager>>) -> Self {
        Self { task_managers }
    }

    /// Every free slot, TaskManager by TaskManager.
    pub fn free_slots(&self) -> Vec<sluice_runtime::execution_graph::SlotId> {
        self.task_managers.iter().flat_map(|tm| tm.free_slots()).collect()
    }

    /// Schedules and deploys a job; errors before any task runs (no slots, a
    /// source that cannot enumerate its splits, a checkpoint that cannot be
    /// restored) are returned here.
    pub fn submit_job(&self, job_graph: JobGraph, options: JobOptions) -> Result<JobClient> {
        let submitted = Instant::now();
        let job_graph = Arc::new(job_graph);
        let job_id = format!("{:032x}", rand::rng().random::<u128>());
        let sg = &job_graph.stream_graph;
        let status = Arc::new(Mutex::new(JobStatus::Created));
        info!(job = %sg.job_name, %job_id, "job submitted");
        transition(&status, &sg.job_name, JobStatus::Scheduling);
        let fail = |e: SluiceError| {
            transition(&status, &sg.job_name, JobStatus::Failed);
            e
        };

        let checkpoint_config = sg.checkpoint_config.clone();
        let storage_url = sg.checkpoint_storage.clone().unwrap_or_else(default_checkpoint_storage);
        let storage = match (&checkpoint_config, &options.restore) {
            (None, None) => None,
            _ => Some(CheckpointStorage::from_url(&storage_url).map_err(fail)?),
        };
        let restored = match &options.restore {
            None => None,
            Some(source) => Some(resolve_restore(source, storage.as_ref()).map_err(fail)?),
        };
        let first_checkpoint_id = restored.as_ref().map_or(1, |(id, _)| id + 1);
        let restored_state = restored.map(|(_, s)| s);
        if let Some(state) = &restored_state {
            check_restored_state(&job_graph, state, options.allow_non_restored_state)
                .map_err(fail)?;
        }

        let execution_graph =
            ExecutionGraph::schedule(&job_graph, &self.free_slots()).map_err(fail)?;
        let metrics: Vec<(usize, usize, Arc<TaskMetrics>)> = execution_graph
            .vertices
            .iter()
            .enumerate()
            .flat_map(|(v, subtasks)| {
                subtasks.iter().map(move |s| (v, s.subtask_index, Arc::new(TaskMetrics::default())))
            })
            .collect();
        let deployer = Deployer {
            job_graph: job_graph.clone(),
            execution_graph: execution_graph.clone(),
            task_managers: self.task_managers.clone(),
            metrics: metrics.clone(),
            alignment: checkpoint_config.as_ref().map(|c| match c.mode {
                CheckpointingMode::AtLeastOnce => (AlignmentMode::AtLeastOnce, None),
                CheckpointingMode::ExactlyOnce if !c.unaligned => (AlignmentMode::Aligned, None),
                // Unaligned after a timeout: align first, switch when it takes too long.
                CheckpointingMode::ExactlyOnce if !c.aligned_checkpoint_timeout.is_zero() => {
                    (AlignmentMode::Aligned, Some(c.aligned_checkpoint_timeout))
                }
                CheckpointingMode::ExactlyOnce => (AlignmentMode::Unaligned, None),
            }),
        };
        let attempt = deployer.deploy(0, restored_state.as_ref()).map_err(fail)?;
        for tm in &self.task_managers {
            tm.allocate(&execution_graph.slots_used);
        }
        transition(&status, &sg.job_name, JobStatus::Running);

        let strategy = options.restart_strategy.clone().unwrap_or(if checkpoint_config.is_some() {
            RestartStrategy::exponential_default()
        } else {
            RestartStrategy::None
        });
        let total_tasks = metrics.len();
        let stats = Arc::new(Mutex::new(Vec::new()));
        let cancel_requested = Arc::new(AtomicBool::new(false));
        let (commands_tx, commands) = unbounded();
        let job_master = JobMaster {
            job_id: job_id.clone(),
            deployer,
            status: status.clone(),
            cancel_requested: cancel_requested.clone(),
            submitted,
            coordinator: checkpoint_config
                .map(|c| CheckpointCoordinator::new(c, total_tasks, first_checkpoint_id)),
            storage,
            latest: restored_state,
            acked: Vec::new(),
            backoff: RestartBackoff::new(strategy),
            stats: stats.clone(),
            commands,
            savepoint: None,
        };
        let master = std::thread::Builder::new()
            .name(format!("JobMaster {}", sg.job_name))
            .spawn(move || job_master.run(attempt))
            .map_err(|e| {
                SluiceError::Internal(format!("cannot start the job master thread: {e}"))
            })?;
        Ok(JobClient {
            job_id,
            job_graph,
            execution_graph,
            status,
            cancel_requested,
            metrics,
            stats,
            commands: commands_tx,
            master: Some(master),
        })
    }
}

/// Reads the checkpoint to start from: (its id, its state).
fn resolve_restore(
    source: &RestoreSource,
    storage: Option<&CheckpointStorage>,
) -> Result<(u64, StateMap)> {
    let restored = match source {
        RestoreSource::Latest => {
            let storage = storage.ok_or_else(|| {
                SluiceError::Config(
                    "restoring the latest checkpoint needs checkpoint storage".into(),
                )
            })?;
            storage.latest_checkpoint(None)?.ok_or_else(|| {
                SluiceError::Config(format!(
                    "no completed checkpoint found under {}",
                    storage.url()
                ))
            })?
        }
        RestoreSource::Path(path) => CheckpointStorage::from_url(path)?.read_checkpoint("")?,
    };
    info!(checkpoint = %restored.metadata.checkpoint_id, job = %restored.metadata.job_name, "restoring state from checkpoint");
    Ok((restored.metadata.checkpoint_id, restored.operators))
}

/// Refuses state the job cannot take: operators it no longer has (unless
/// allowed), or keyed state written with another number of key groups.
fn check_restored_state(
    job_graph: &JobGraph,
    state: &StateMap,
    allow_non_restored: bool,
) -> Result<()> {
    let sg = &job_graph.stream_graph;
    let keys: HashSet<String> = sg.nodes.iter().map(|n| n.state_key()).collect();
    let unknown: Vec<&String> = state
        .keys()
        .filter(|k| !keys.contains(k.strip_suffix("#in-flight").unwrap_or(k.as_str())))
        .collect();
    if !unknown.is_empty() && !allow_non_restored {
        return Err(SluiceError::InvalidJob(format!(
            "the checkpoint holds state for operator(s) {unknown:?} that this job does not have \
             (set a uid on operators to keep their state across changes, or allow non-restored state to skip it)"
        )));
    }
    let max = sg.config.max_parallelism;
    for snapshots in state.values() {
        if let Some((g, _)) =
            snapshots.iter().flat_map(|s| s.keyed.iter()).find(|(g, _)| *g as usize >= max)
        {
            return Err(SluiceError::InvalidJob(format!(
                "the checkpoint holds key group {g}, but this job has max_parallelism {max}: \
                 keyed state can only be restored with the same max_parallelism"
            )));
        }
    }
    Ok(())
}

fn transition(status: &Mutex<JobStatus>, job: &str, next: JobStatus) {
    let mut s = status.lock().expect("job status lock");
    if s.can_become(next) {
        info!(job, from = ?*s, to = ?next, "job status");
        *s = next;
    } else {
        warn!(job, from = ?*s, to = ?next, "illegal job status transition ignored");
    }
}

/// One deployment of all subtasks.
struct Attempt {
    number: usize,
    cancel: Arc<AtomicBool>,
    events: Receiver<TaskEvent>,
    controls: Vec<(bool, Sender<TaskControl>)>,
    threads: Vec<JoinHandle<()>>,
}

/// Deploys attempts of a job.
struct Deployer {
    job_graph: Arc<JobGraph>,
    execution_graph: ExecutionGraph,
    task_managers: Vec<Arc<TaskManager>>,
    metrics: Vec<(usize, usize, Arc<TaskMetrics>)>,
    alignment: Option<(AlignmentMode, Option<Duration>)>,
}

impl Deployer {
    fn deploy(&self, number: usize, restore: Option<&StateMap>) -> Result<Attempt> {
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
fn assign_splits(
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

/// How one attempt ended.
enum AttemptEnd {
    Finished,
    Cancelled,
    Failed(SluiceError),
}

/// Follows one job: its attempts, checkpoints and restarts.
struct JobMaster {
    job_id: String,
    deployer: Deployer,
    status: Arc<Mutex<JobStatus>>,
    cancel_requested: Arc<AtomicBool>,
    submitted: Instant,
    coordinator: Option<CheckpointCoordinator>,
    storage: Option<CheckpointStorage>,
    /// The state of the latest completed checkpoint: where a restart starts.
    latest: Option<StateMap>,
    /// Acknowledged states of the pending checkpoint.
    acked: Vec<SubtaskState>,
    backoff: RestartBackoff,
    stats: Arc<Mutex<Vec<CheckpointStats>>>,
    commands: Receiver<JobCommand>,
    savepoint: Option<PendingSavepoint>,
}

impl JobMaster {
    fn name(&self) -> String {
        self.deployer.job_graph.stream_graph.job_name.clone()
    }

    fn now(&self) -> i64 {
        self.deployer.job_graph.stream_graph.clock.now()
    }

    fn run(mut self, first: Attempt) -> Result<JobExecutionResult> {
        let name = self.name();
        let mut attempt = first;
        let outcome = loop {
            let end = self.run_attempt(&mut attempt);
            for t in std::mem::take(&mut attempt.threads) {
                let _ = t.join();
            }
            match end {
                AttemptEnd::Finished => break Ok(()),
                AttemptEnd::Cancelled => break Err(SluiceError::Cancelled),
                AttemptEnd::Failed(e) => {
                    let Some(delay) = self.backoff.on_failure(self.now()) else {
                        break Err(e);
                    };
                    warn!(job = %name, error = %e, ?delay, attempt = attempt.number + 1, "restarting the job from its latest checkpoint");
                    transition(&self.status, &name, JobStatus::Restarting);
                    std::thread::sleep(delay);
                    if self.cancel_requested.load(Ordering::Relaxed) {
                        transition(&self.status, &name, JobStatus::Cancelling);
                        break Err(SluiceError::Cancelled);
                    }
                    match self.deployer.deploy(attempt.number + 1, self.latest.as_ref()) {
                        Ok(next) => {
                            attempt = next;
                            transition(&self.status, &name, JobStatus::Running);
                        }
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        for tm in &self.deployer.task_managers {
            tm.release(&self.deployer.execution_graph.slots_used);
        }
        let final_status = match &outcome {
            Ok(()) => JobStatus::Finished,
            Err(SluiceError::Cancelled) => JobStatus::Canceled,
            Err(_) => JobStatus::Failed,
        };
        transition(&self.status, &name, final_status);
        outcome.map(|()| JobExecutionResult {
            job_id: self.job_id.clone(),
            job_name: name,
            duration: self.submitted.elapsed(),
            vertices: vertex_metrics(&self.deployer.job_graph, &self.deployer.metrics),
            restarts: self.backoff.restarts(),
            checkpoints: self.stats.lock().expect("stats lock").clone(),
        })
    }

    fn run_attempt(&mut self, attempt: &mut Attempt) -> AttemptEnd {
        let name = self.name();
        let total = attempt.threads.len();
        let mut finished = HashSet::new();
        let mut failure: Option<SluiceError> = None;
        let mut a_task_finished = false;
        loop {
            if finished.len() == total {
                return match failure {
                    Some(e) => AttemptEnd::Failed(e),
                    None if self.cancel_requested.load(Ordering::Relaxed) => AttemptEnd::Cancelled,
                    None => AttemptEnd::Finished,
                };
            }
            if self.cancel_requested.load(Ordering::Relaxed)
                && !attempt.cancel.load(Ordering::Relaxed)
            {
                transition(&self.status, &name, JobStatus::Cancelling);
                attempt.cancel.store(true, Ordering::Relaxed);
            }
            match attempt.events.recv_timeout(Duration::from_millis(10)) {
                Ok(TaskEvent::Finished { vertex, subtask_index, result }) => {
                    finished.insert((vertex, subtask_index));
                    match result {
                        Ok(()) => {
                            // Checkpoints need every task; one has finished, so no more are taken.
                            a_task_finished = true;
                            self.fail_pending_checkpoint(
                                "a task finished before the checkpoint completed",
                            );
                        }
                        Err(e) => {
                            let cancelled = self.cancel_requested.load(Ordering::Relaxed);
                            if failure.is_none()
                                && !cancelled
                                && !matches!(e, SluiceError::Cancelled)
                            {
                                warn!(job = %name, error = %e, "task failed; failing the attempt");
                                transition(&self.status, &name, JobStatus::Failing);
                                attempt.cancel.store(true, Ordering::Relaxed);
                                self.fail_pending_checkpoint("a task failed");
                                failure = Some(e);
                            }
                        }
                    }
                }
                Ok(TaskEvent::Acknowledged {
                    vertex,
                    subtask_index,
                    checkpoint_id,
                    states,
                    durations,
                }) => {
                    if let Err(e) = self.on_ack(
                        attempt,
                        vertex,
                        subtask_index,
                        checkpoint_id,
                        states,
                        durations,
                    ) {
                        if failure.is_none() {
                            attempt.cancel.store(true, Ordering::Relaxed);
                            transition(&self.status, &name, JobStatus::Failing);
                            failure = Some(e);
                        }
                    }
                }
                Ok(TaskEvent::Declined { checkpoint_id, reason, .. }) => {
                    let now = self.now();
                    let outcome =
                        self.coordinator.as_mut().and_then(|c| c.fail(checkpoint_id, &reason, now));
                    self.acked.clear();
                    self.publish_stats();
                    if let Some(CheckpointOutcome::FailJob(msg)) = outcome {
                        if failure.is_none() {
                            attempt.cancel.store(true, Ordering::Relaxed);
                            transition(&self.status, &name, JobStatus::Failing);
                            failure = Some(SluiceError::external("checkpointing", msg));
                        }
                    } else {
                        warn!(job = %name, checkpoint_id, %reason, "checkpoint declined");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return AttemptEnd::Failed(SluiceError::Internal(
                        "every task's event channel closed".into(),
                    ));
                }
            }
            while let Ok(command) = self.commands.try_recv() {
                self.on_command(command, attempt, failure.is_some() || a_task_finished);
            }
            if failure.is_none() && !a_task_finished && !attempt.cancel.load(Ordering::Relaxed) {
                self.maybe_trigger(attempt);
            }
        }
    }

    fn on_command(&mut self, command: JobCommand, attempt: &Attempt, cannot: bool) {
        match command {
            JobCommand::Savepoint { dir, stop, reply } => {
                let refusal = if self.coordinator.is_none() {
                    Some("savepoints need checkpointing enabled for the job")
                } else if cannot {
                    Some("the job is failing or finishing")
                } else if self.savepoint.is_some() {
                    Some("a savepoint is already in progress")
                } else {
                    None
                };
                if let Some(why) = refusal {
                    let _ = reply.send(Err(SluiceError::InvalidJob(format!(
                        "cannot take a savepoint: {why}"
                    ))));
                    return;
                }
                // The savepoint is the next checkpoint, triggered as soon as none is pending.
                self.savepoint = Some(PendingSavepoint { checkpoint_id: 0, dir, stop, reply });
                self.maybe_trigger(attempt);
            }
        }
    }

    fn maybe_trigger(&mut self, attempt: &Attempt) {
        let now = self.now();
        let Some(coordinator) = self.coordinator.as_mut() else { return };
        if let Some(outcome) = coordinator.check_timeout(now) {
            warn!(?outcome, "checkpoint timed out");
            self.acked.clear();
        }
        let savepoint_waiting = self.savepoint.as_ref().is_some_and(|s| s.checkpoint_id == 0);
        let due =
            coordinator.trigger_due(now) || (savepoint_waiting && coordinator.pending().is_none());
        if !due {
            return;
        }
        let id = coordinator.trigger(now);
        if let Some(s) = self.savepoint.as_mut().filter(|s| s.checkpoint_id == 0) {
            s.checkpoint_id = id;
        }
        self.acked.clear();
        let savepoint = self.savepoint.as_ref().is_some_and(|s| s.checkpoint_id == id);
        let barrier = CheckpointBarrier { id, timestamp: now, savepoint };
        for (is_source, control) in &attempt.controls {
            if *is_source {
                let _ = control.send(TaskControl::TriggerCheckpoint(barrier));
            }
        }
        self.publish_stats();
    }

    fn fail_pending_checkpoint(&mut self, reason: &str) {
        let now = self.now();
        if let Some(c) = self.coordinator.as_mut() {
            if let Some(id) = c.pending() {
                c.fail(id, reason, now);
                self.acked.clear();
                self.publish_stats();
                if let Some(s) = self.savepoint.take_if(|s| s.checkpoint_id == id) {
                    let _ = s.reply.send(Err(SluiceError::external(
                        "savepoint",
                        format!("checkpoint {id} failed: {reason}"),
                    )));
                }
            }
        }
    }

    fn on_ack(
        &mut self,
        attempt: &Attempt,
        vertex: usize,
        subtask: usize,
        checkpoint_id: u64,
        states: Vec<(String, OperatorSnapshot)>,
        durations: SnapshotDurations,
    ) -> Result<()> {
        let now = self.now();
        let Some(coordinator) = self.coordinator.as_mut() else { return Ok(()) };
        if coordinator.pending() != Some(checkpoint_id) {
            return Ok(());
        }
        let parallelism = self.deployer.job_graph.vertices[vertex].parallelism as u32;
        let mut size = 0;
        for (key, snapshot) in states {
            size += snapshot.keyed.iter().map(|(_, b)| b.len()).sum::<usize>()
                + snapshot.operator.iter().map(Vec::len).sum::<usize>();
            self.acked.push(SubtaskState { key, parallelism, subtask: subtask as u32, snapshot });
        }
        let task = self
            .deployer
            .metrics
            .iter()
            .position(|(v, i, _)| *v == vertex && *i == subtask)
            .unwrap_or(0);
        let ack = SubtaskAck {
            task,
            ack_time: now,
            state_size: size as u64,
            alignment_ms: durations.alignment_ms,
            sync_ms: durations.sync_ms,
        };
        let outcome = coordinator.acknowledge(checkpoint_id, ack);
        self.publish_stats();
        if let Some(CheckpointOutcome::Completed(id)) = outcome {
            self.complete_checkpoint(attempt, id)?;
        }
        Ok(())
    }

    /// Writes a checkpoint whose every subtask acknowledged, then tells the tasks.
    fn complete_checkpoint(&mut self, attempt: &Attempt, id: u64) -> Result<()> {
        let states = std::mem::take(&mut self.acked);
        let mut by_key: StateMap = BTreeMap::new();
        for s in &states {
            let slots = by_key
                .entry(s.key.clone())
                .or_insert_with(|| vec![OperatorSnapshot::default(); s.parallelism as usize]);
            slots[s.subtask as usize] = s.snapshot.clone();
        }
        let savepoint = self.savepoint.take_if(|s| s.checkpoint_id == id);
        let metadata = CheckpointMetadata {
            version: 0,
            job_name: self.name(),
            job_id: self.job_id.clone(),
            checkpoint_id: id,
            timestamp: self.now(),
            savepoint: savepoint.is_some(),
            operators: Vec::new(),
        };
        if let Some(s) = savepoint {
            // A savepoint goes to its own directory, owned by the user, never pruned.
            let written = CheckpointStorage::from_url(&s.dir)
                .and_then(|st| st.write_checkpoint("", metadata, states));
            match written {
                Ok(_) => {
                    info!(job = %self.name(), path = %s.dir, "savepoint written");
                    let _ = s.reply.send(Ok(s.dir.clone()));
                    if s.stop {
                        self.cancel_requested.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    let _ = s.reply.send(Err(SluiceError::external("savepoint", e.to_string())));
                }
            }
        } else if let Some(storage) = &self.storage {
            let dir = CheckpointStorage::checkpoint_dir(&self.job_id, id);
            storage.write_checkpoint(&dir, metadata, states)?;
            storage.prune(&self.job_id)?;
        }
        info!(job = %self.name(), checkpoint = id, "checkpoint completed");
        self.latest = Some(by_key);
        for (_, control) in &attempt.controls {
            let _ = control.send(TaskControl::NotifyCheckpointComplete(id));
        }
        Ok(())
    }

    fn publish_stats(&self) {
        if let Some(c) = &self.coordinator {
            *self.stats.lock().expect("stats lock") = c.stats();
        }
    }
}

fn vertex_metrics(
    job_graph: &JobGraph,
    metrics: &[(usize, usize, Arc<TaskMetrics>)],
) -> Vec<VertexMetrics> {
    job_graph
        .vertices
        .iter()
        .map(|v| {
            let of_vertex = metrics.iter().filter(|(id, _, _)| *id == v.id);
            VertexMetrics {
                name: v.name.clone(),
                parallelism: v.parallelism,
                records_in: of_vertex.clone().map(|(_, _, m)| m.records_in()).sum(),
                records_out: of_vertex.clone().map(|(_, _, m)| m.records_out()).sum(),
                source_records: of_vertex.map(|(_, _, m)| m.source_records()).sum(),
            }
        })
        .collect()
}

/// A handle on a submitted job: status, live counters, checkpoints, cancel, and its result.
pub struct JobClient {
    job_id: String,
    job_graph: Arc<JobGraph>,
    execution_graph: ExecutionGraph,
    status: Arc<Mutex<JobStatus>>,
    cancel_requested: Arc<AtomicBool>,
    metrics: Vec<(usize, usize, Arc<TaskMetrics>)>,
    stats: Arc<Mutex<Vec<CheckpointStats>>>,
    commands: Sender<JobCommand>,
    master: Option<JoinHandle<Result<JobExecutionResult>>>,
}

impl JobClient {
    /// Takes a savepoint into directory `dir` and returns its path once written.
    pub fn trigger_savepoint(&self, dir: &str) -> Result<String> {
        self.savepoint(dir, false)
    }

    /// Takes a savepoint into `dir`, then stops the job ([`Self::wait`] then
    /// returns [`SluiceError::Cancelled`]).
    pub fn stop_with_savepoint(&self, dir: &str) -> Result<String> {
        self.savepoint(dir, true)
    }

    fn savepoint(&self, dir: &str, stop: bool) -> Result<String> {
        let (reply, answer) = unbounded();
        self.commands.send(JobCommand::Savepoint { dir: dir.to_string(), stop, reply }).map_err(
            |_| SluiceError::InvalidJob("cannot take a savepoint: the job has ended".into()),
        )?;
        answer.recv().map_err(|_| {
            SluiceError::InvalidJob("cannot take a savepoint: the job ended first".into())
        })?
    }

    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The job's current status.
    pub fn status(&self) -> JobStatus {
        *self.status.lock().expect("job status lock")
    }

    /// Where every subtask runs.
    pub fn execution_graph(&self) -> &ExecutionGraph {
        &self.execution_graph
    }

    /// Live counters per vertex.
    pub fn vertex_metrics(&self) -> Vec<VertexMetrics> {
        vertex_metrics(&self.job_graph, &self.metrics)
    }

    /// Statistics of every checkpoint so far (id, trigger time, duration, size, alignment, acks, failure).
    pub fn checkpoint_stats(&self) -> Vec<CheckpointStats> {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Records produced by all sources so far.
    pub fn source_records(&self) -> u64 {
        self.metrics.iter().map(|(_, _, m)| m.source_records()).sum()
    }

    /// Asks every subtask to stop; [`Self::wait`] then returns [`SluiceError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel_requested.store(true, Ordering::Relaxed);
    }

    /// Whether the job has ended.
    pub fn is_done(&self) -> bool {
        self.master.as_ref().is_none_or(|m| m.is_finished())
    }

    /// Waits for the job to end.
    pub fn wait(mut self) -> Result<JobExecutionResult> {
        let master = self.master.take().expect("wait is called once");
        master.join().map_err(|_| SluiceError::Internal("the job master thread panicked".into()))?
    }
}
