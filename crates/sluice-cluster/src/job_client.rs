//! The JobClient: a handle on a submitted job — its status, live counters
//! and checkpoint statistics, savepoints, cancel — and what it reports when
//! it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, Sender};
use serde::Serialize;
use sluice_checkpoint::CheckpointStats;
use sluice_core::{ErrorOrigin, Result, SluiceError};
use sluice_runtime::execution_graph::ExecutionGraph;
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::metrics::TaskMetrics;

use crate::job_master::JobCommand;
use crate::job_status::{JobState, JobStatus};
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

/// A failure of the job, as Flink's exception history lists it.
#[derive(Clone, Debug, Serialize)]
pub struct JobException {
    /// When it happened, ms of the job's clock.
    pub timestamp: i64,
    /// The error with its causes.
    pub cause: String,
    /// Whose fault: the user's code or input, an external system, or Sluice.
    pub origin: ErrorOrigin,
    /// Whether the job restarted after it (else the job failed).
    pub restarted: bool,
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
    /// Records its source could not decode and skipped or sent to the side
    /// output (Flink's `numRecordsInErrors`).
    pub records_in_errors: u64,
}

/// Sums the subtasks' counters per vertex.
pub(crate) fn vertex_metrics(
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
                source_records: of_vertex.clone().map(|(_, _, m)| m.source_records()).sum(),
                records_in_errors: of_vertex.map(|(_, _, m)| m.records_in_errors()).sum(),
            }
        })
        .collect()
}

/// What the JobManager shows of a running or ended job: status, placement,
/// live counters, checkpoints, failures; and the commands a user may send
/// it. Cheap to clone, and shared with the REST API.
#[derive(Clone)]
pub struct JobView {
    job_id: String,
    job_graph: Arc<JobGraph>,
    execution_graph: ExecutionGraph,
    state: Arc<Mutex<JobState>>,
    cancel_requested: Arc<AtomicBool>,
    metrics: Vec<(usize, usize, Arc<TaskMetrics>)>,
    stats: Arc<Mutex<Vec<CheckpointStats>>>,
    exceptions: Arc<Mutex<Vec<JobException>>>,
    commands: Sender<JobCommand>,
    task_managers: Vec<Arc<TaskManager>>,
}

/// The parts a [`JobView`] is made of, as the JobManager has them.
pub(crate) struct JobParts {
    pub job_id: String,
    pub job_graph: Arc<JobGraph>,
    pub execution_graph: ExecutionGraph,
    pub state: Arc<Mutex<JobState>>,
    pub cancel_requested: Arc<AtomicBool>,
    pub metrics: Vec<(usize, usize, Arc<TaskMetrics>)>,
    pub stats: Arc<Mutex<Vec<CheckpointStats>>>,
    pub exceptions: Arc<Mutex<Vec<JobException>>>,
    pub commands: Sender<JobCommand>,
    pub task_managers: Vec<Arc<TaskManager>>,
}

impl JobView {
    pub(crate) fn new(p: JobParts) -> Self {
        Self {
            job_id: p.job_id,
            job_graph: p.job_graph,
            execution_graph: p.execution_graph,
            state: p.state,
            cancel_requested: p.cancel_requested,
            metrics: p.metrics,
            stats: p.stats,
            exceptions: p.exceptions,
            commands: p.commands,
            task_managers: p.task_managers,
        }
    }

    /// Takes a savepoint into directory `dir` and returns its path once written.
    pub fn trigger_savepoint(&self, dir: &str) -> Result<String> {
        self.savepoint(dir, false)
    }

    /// Takes a savepoint into `dir`, then stops the job ([`JobClient::wait`]
    /// then returns [`SluiceError::Cancelled`]).
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

    /// Whether the job takes checkpoints (and so savepoints).
    pub fn checkpoints_enabled(&self) -> bool {
        self.job_graph.stream_graph.checkpoint_config.is_some()
    }

    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.job_graph.stream_graph.job_name
    }

    /// The job's current status.
    pub fn status(&self) -> JobStatus {
        self.state.lock().expect("job status lock").status
    }

    /// The status and when the job entered each status.
    pub fn state(&self) -> JobState {
        self.state.lock().expect("job status lock").clone()
    }

    /// The job's plan.
    pub fn job_graph(&self) -> &JobGraph {
        &self.job_graph
    }

    /// Where every subtask runs.
    pub fn execution_graph(&self) -> &ExecutionGraph {
        &self.execution_graph
    }

    /// The TaskManagers the job runs on.
    pub fn task_managers(&self) -> &[Arc<TaskManager>] {
        &self.task_managers
    }

    /// Live counters per vertex.
    pub fn vertex_metrics(&self) -> Vec<VertexMetrics> {
        vertex_metrics(&self.job_graph, &self.metrics)
    }

    /// Live counters of every subtask: (vertex, subtask index, counters).
    pub fn subtask_metrics(&self) -> &[(usize, usize, Arc<TaskMetrics>)] {
        &self.metrics
    }

    /// Statistics of every checkpoint so far (id, trigger time, duration, size, alignment, acks, failure).
    pub fn checkpoint_stats(&self) -> Vec<CheckpointStats> {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Every failure of the job so far, oldest first, and whether it restarted.
    pub fn exceptions(&self) -> Vec<JobException> {
        self.exceptions.lock().expect("exceptions lock").clone()
    }

    /// Restarts after failures so far.
    pub fn restarts(&self) -> usize {
        self.exceptions.lock().expect("exceptions lock").iter().filter(|e| e.restarted).count()
    }

    /// Records produced by all sources so far.
    pub fn source_records(&self) -> u64 {
        self.metrics.iter().map(|(_, _, m)| m.source_records()).sum()
    }

    /// Asks every subtask to stop; [`JobClient::wait`] then returns [`SluiceError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel_requested.store(true, Ordering::Relaxed);
    }
}

/// A handle on a submitted job: status, live counters, checkpoints, cancel, and its result.
pub struct JobClient {
    view: JobView,
    master: Option<JoinHandle<Result<JobExecutionResult>>>,
}

impl std::ops::Deref for JobClient {
    type Target = JobView;

    fn deref(&self) -> &JobView {
        &self.view
    }
}

impl JobClient {
    /// A client for a job whose JobMaster runs on `master`.
    pub(crate) fn new(view: JobView, master: JoinHandle<Result<JobExecutionResult>>) -> Self {
        Self { view, master: Some(master) }
    }

    /// A shareable view of the job (for the REST API).
    pub fn view(&self) -> JobView {
        self.view.clone()
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
