//! The JobManager: schedules a JobGraph onto TaskManager slots, deploys the
//! subtasks, follows their ends, and decides the job's fate. The first
//! failure fails the job; the others it causes are consequences, not causes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use rand::Rng;
use serde::Serialize;
use sluice_core::{Result, SluiceError};
use sluice_runtime::execution_graph::ExecutionGraph;
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::metrics::TaskMetrics;
use sluice_runtime::source::SerializedSplit;
use sluice_runtime::stream_graph::NodeBody;
use sluice_runtime::task::TaskDeployment;
use tracing::{info, warn};

use crate::job_status::JobStatus;
use crate::shuffle::create_channels;
use crate::task_manager::{TaskExecutionState, TaskManager};

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
    /// source that cannot enumerate its splits) are returned here.
    pub fn submit_job(&self, job_graph: JobGraph) -> Result<JobClient> {
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
        let execution_graph =
            ExecutionGraph::schedule(&job_graph, &self.free_slots()).map_err(fail)?;
        let splits = enumerate_splits(&job_graph).map_err(fail)?;
        for tm in &self.task_managers {
            tm.allocate(&execution_graph.slots_used);
        }

        let mut channels = create_channels(&job_graph, sg.config.channel_capacity);
        let cancel = Arc::new(AtomicBool::new(false));
        let (report_tx, report_rx) = unbounded();
        let mut metrics = Vec::new();
        let mut threads = Vec::new();
        for (v, subtasks) in execution_graph.vertices.iter().enumerate() {
            for ev in subtasks {
                let task_metrics = Arc::new(TaskMetrics::default());
                metrics.push((v, task_metrics.clone()));
                let key = (v, ev.subtask_index);
                let deployment = TaskDeployment {
                    job_graph: job_graph.clone(),
                    vertex: v,
                    subtask_index: ev.subtask_index,
                    attempt: 0,
                    inputs: channels.inputs.remove(&key).unwrap_or_default(),
                    outputs: channels.outputs.remove(&key).unwrap_or_default(),
                    splits: splits[v].get(ev.subtask_index).cloned().unwrap_or_default(),
                    cancel: cancel.clone(),
                    metrics: task_metrics,
                };
                match self.task_managers[ev.slot.task_manager]
                    .submit_task(deployment, report_tx.clone())
                {
                    Ok(t) => threads.push(t),
                    Err(e) => {
                        cancel.store(true, Ordering::Relaxed);
                        return Err(fail(e));
                    }
                }
            }
        }
        transition(&status, &sg.job_name, JobStatus::Running);
        let total = threads.len();
        let job_master = JobMaster {
            job_id: job_id.clone(),
            job_graph: job_graph.clone(),
            status: status.clone(),
            cancel: cancel.clone(),
            reports: report_rx,
            total,
            task_managers: self.task_managers.clone(),
            execution_graph: execution_graph.clone(),
            metrics: metrics.clone(),
            submitted,
        };
        let master = std::thread::Builder::new()
            .name(format!("JobMaster {}", sg.job_name))
            .spawn(move || job_master.run(threads))
            .map_err(|e| {
                SluiceError::Internal(format!("cannot start the job master thread: {e}"))
            })?;
        Ok(JobClient {
            job_id,
            job_graph,
            execution_graph,
            status,
            cancel,
            metrics,
            master: Some(master),
        })
    }
}

/// Splits per vertex per subtask: enumerated once, assigned round robin.
fn enumerate_splits(job_graph: &JobGraph) -> Result<Vec<Vec<Vec<SerializedSplit>>>> {
    let sg = &job_graph.stream_graph;
    job_graph
        .vertices
        .iter()
        .map(|v| match &sg.nodes[v.head].body {
            NodeBody::Source { source, .. } => {
                let mut per_subtask = vec![Vec::new(); v.parallelism];
                let splits = source.create_splits(v.parallelism)?;
                for (i, split) in splits.into_iter().enumerate() {
                    per_subtask[i % v.parallelism].push(split);
                }
                Ok(per_subtask)
            }
            NodeBody::Operator { .. } => Ok(Vec::new()),
        })
        .collect()
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

/// Follows one job's subtasks to the end.
struct JobMaster {
    job_id: String,
    job_graph: Arc<JobGraph>,
    status: Arc<Mutex<JobStatus>>,
    cancel: Arc<AtomicBool>,
    reports: Receiver<TaskExecutionState>,
    total: usize,
    task_managers: Vec<Arc<TaskManager>>,
    execution_graph: ExecutionGraph,
    metrics: Vec<(usize, Arc<TaskMetrics>)>,
    submitted: Instant,
}

impl JobMaster {
    fn run(self, threads: Vec<JoinHandle<()>>) -> Result<JobExecutionResult> {
        let name = self.job_graph.stream_graph.job_name.clone();
        let mut ended = HashSet::new();
        let mut root_cause: Option<SluiceError> = None;
        while ended.len() < self.total {
            let Ok(state) = self.reports.recv() else {
                break;
            };
            if !ended.insert((state.vertex, state.subtask_index)) {
                continue;
            }
            if let Err(e) = state.result {
                let cancelling =
                    matches!(*self.status.lock().expect("job status lock"), JobStatus::Cancelling);
                if root_cause.is_none() && !cancelling && !matches!(e, SluiceError::Cancelled) {
                    warn!(job = %name, error = %e, "task failed; failing the job");
                    transition(&self.status, &name, JobStatus::Failing);
                    self.cancel.store(true, Ordering::Relaxed);
                    root_cause = Some(e);
                }
            }
        }
        for t in threads {
            let _ = t.join();
        }
        for tm in &self.task_managers {
            tm.release(&self.execution_graph.slots_used);
        }
        let final_status = match (&root_cause, *self.status.lock().expect("job status lock")) {
            (Some(_), _) => JobStatus::Failed,
            (None, JobStatus::Cancelling) => JobStatus::Canceled,
            (None, _) => JobStatus::Finished,
        };
        transition(&self.status, &name, final_status);
        match (root_cause, final_status) {
            (Some(e), _) => Err(e),
            (None, JobStatus::Canceled) => Err(SluiceError::Cancelled),
            _ => Ok(JobExecutionResult {
                job_id: self.job_id,
                job_name: name,
                duration: self.submitted.elapsed(),
                vertices: vertex_metrics(&self.job_graph, &self.metrics),
            }),
        }
    }
}

fn vertex_metrics(
    job_graph: &JobGraph,
    metrics: &[(usize, Arc<TaskMetrics>)],
) -> Vec<VertexMetrics> {
    job_graph
        .vertices
        .iter()
        .map(|v| {
            let of_vertex = metrics.iter().filter(|(id, _)| *id == v.id);
            VertexMetrics {
                name: v.name.clone(),
                parallelism: v.parallelism,
                records_in: of_vertex.clone().map(|(_, m)| m.records_in()).sum(),
                records_out: of_vertex.clone().map(|(_, m)| m.records_out()).sum(),
                source_records: of_vertex.map(|(_, m)| m.source_records()).sum(),
            }
        })
        .collect()
}

/// A handle on a submitted job: status, live counters, cancel, and its result.
pub struct JobClient {
    job_id: String,
    job_graph: Arc<JobGraph>,
    execution_graph: ExecutionGraph,
    status: Arc<Mutex<JobStatus>>,
    cancel: Arc<AtomicBool>,
    metrics: Vec<(usize, Arc<TaskMetrics>)>,
    master: Option<JoinHandle<Result<JobExecutionResult>>>,
}

impl JobClient {
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

    /// Records produced by all sources so far.
    pub fn source_records(&self) -> u64 {
        self.metrics.iter().map(|(_, m)| m.source_records()).sum()
    }

    /// Asks every subtask to stop; [`Self::wait`] then returns [`SluiceError::Cancelled`].
    pub fn cancel(&self) {
        transition(&self.status, &self.job_graph.stream_graph.job_name, JobStatus::Cancelling);
        self.cancel.store(true, Ordering::Relaxed);
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
