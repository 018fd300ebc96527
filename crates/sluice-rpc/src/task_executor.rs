//! A TaskManager process's TaskExecutor service: it deploys its share of
//! an attempt, relays the JobMaster's messages to those subtasks and their
//! events back, and keeps what finished transactional sinks hold back until
//! the job's end asks for it. The job itself is built here, by this
//! program, from the arguments it was submitted with; a job whose
//! fingerprint differs from the submitted one is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use sluice_cluster::remote::{run_deployment, RemoteDeployment, TaskHandles};
use sluice_core::{Result, SluiceError};
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::metrics::TaskMetrics;
use sluice_runtime::network::NetworkEnvironment;
use sluice_runtime::operator::FinalCommit;
use sluice_runtime::task::{TaskControl, TaskEvent};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::proto::task_executor_server::TaskExecutor;
use crate::proto::{
    attempt_message, AttemptMessage, FinalCommitRequest, FinalCommitResponse, JobSpec, TaskReport,
};
use crate::wire::Report;

/// Builds a job's JobGraph from its spec, as the submitting program did.
pub type JobBuilder = Arc<dyn Fn(&JobSpec) -> Result<JobGraph> + Send + Sync>;

/// Final commits by (job, attempt, vertex, subtask).
type Commits = Mutex<HashMap<(u64, u32, u32, u32), Vec<FinalCommit>>>;

/// How often a deployment's counters are reported.
const METRICS_INTERVAL: Duration = Duration::from_millis(500);

/// The TaskExecutor service of one TaskManager.
#[derive(Clone)]
pub(crate) struct Executor(Arc<Inner>);

struct Inner {
    network: NetworkEnvironment,
    builder: JobBuilder,
    commits: Commits,
}

impl Executor {
    pub(crate) fn new(network: NetworkEnvironment, builder: JobBuilder) -> Self {
        Self(Arc::new(Inner { network, builder, commits: Mutex::default() }))
    }
}

/// A deployment this TaskManager cannot run, said with its id.
fn refused(task_manager: &str, e: &SluiceError) -> Status {
    let why = match e.root() {
        SluiceError::InvalidJob(m) => m.clone(),
        other => other.report().to_string(),
    };
    Status::failed_precondition(format!("TaskManager {task_manager}: {why}"))
}

#[tonic::async_trait]
impl TaskExecutor for Executor {
    type RunAttemptStream = ReceiverStream<std::result::Result<TaskReport, Status>>;

    async fn run_attempt(
        &self,
        request: Request<Streaming<AttemptMessage>>,
    ) -> std::result::Result<Response<Self::RunAttemptStream>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.and_then(|m| m.message);
        let Some(attempt_message::Message::Deploy(deploy)) = first else {
            return Err(Status::invalid_argument("an attempt starts with its deployment"));
        };
        let spec =
            deploy.job.ok_or_else(|| Status::invalid_argument("a deployment names its job"))?;
        let deployment: RemoteDeployment = postcard::from_bytes(&deploy.deployment)
            .map_err(|e| Status::invalid_argument(format!("a malformed deployment: {e}")))?;
        let inner = self.0.clone();
        let id = inner.network.task_manager().to_string();
        info!(
            task_manager = %id,
            job = %spec.job_name,
            attempt = deployment.attempt,
            subtasks = deployment.subtasks.len(),
            "deploying subtasks"
        );
        // A newer attempt makes older attempts' commits moot.
        inner.commits.lock().expect("commits lock").retain(|(job, attempt, _, _), _| {
            *job != deployment.job || *attempt >= deployment.attempt
        });
        let count = deployment.subtasks.len();
        let metrics: Vec<Arc<TaskMetrics>> = (0..count).map(|_| Arc::default()).collect();
        let (events_tx, events) = unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        let (controls, control_rx): (Vec<_>, Vec<_>) = (0..count).map(|_| unbounded()).unzip();
        let handles = TaskHandles {
            controls: control_rx,
            metrics: metrics.clone(),
            events: events_tx,
            cancel: cancel.clone(),
        };
        let key = (deployment.job, deployment.attempt);
        let deploying = inner.clone();
        // Building the job runs the program's code: off the runtime's threads.
        tokio::task::spawn_blocking(move || {
            let graph = (deploying.builder)(&spec)?;
            let fingerprint = graph.fingerprint();
            if fingerprint != spec.fingerprint {
                return Err(SluiceError::InvalidJob(format!(
                    "it builds job '{}' from {:?} with fingerprint {fingerprint}, but the job was \
                     submitted with fingerprint {}: run the same build of the program, with the \
                     same arguments, as the client and as the TaskManager",
                    spec.job_name, spec.args, spec.fingerprint
                )));
            }
            run_deployment(Arc::new(graph), &deploying.network, deployment, handles)
        })
        .await
        .map_err(|e| Status::internal(format!("the deployment panicked: {e}")))?
        .map_err(|e| {
            warn!(task_manager = %id, "deployment refused: {}", e.report());
            refused(&id, &e)
        })?;
        let (reports, stream) = mpsc::channel(64);
        let forwarding = inner.clone();
        let stop = cancel.clone();
        let releasing = inner.clone();
        std::thread::Builder::new()
            .name(format!("reports-{}-{}", key.0, key.1))
            .spawn(move || forward_reports(&forwarding, key, events, &metrics, &reports, &cancel))
            .map_err(|e| Status::internal(format!("cannot start a thread: {e}")))?;
        tokio::spawn(async move {
            // The JobMaster's messages, until its side ends: then the attempt stops here.
            while let Ok(Some(message)) = incoming.message().await {
                let Some(attempt_message::Message::Control(bytes)) = message.message else {
                    continue;
                };
                match postcard::from_bytes::<(u32, TaskControl)>(&bytes) {
                    Ok((position, control)) => {
                        if let Some(c) = controls.get(position as usize) {
                            let _ = c.send(control);
                        }
                    }
                    Err(e) => warn!("a malformed message to a subtask: {e}"),
                }
            }
            // A JobMaster that is gone, or stopped the attempt, ends its subtasks
            // here; ending the attempt's channels wakes a subtask waiting for
            // credit from a TaskManager that will never grant it.
            stop.store(true, Ordering::Relaxed);
            releasing.network.release_attempt(key.0, key.1);
            info!(
                task_manager = %releasing.network.task_manager(),
                attempt = key.1,
                "the JobMaster ended the attempt here"
            );
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn final_commit(
        &self,
        request: Request<FinalCommitRequest>,
    ) -> std::result::Result<Response<FinalCommitResponse>, Status> {
        let r = request.into_inner();
        let key = (r.job, r.attempt, r.vertex, r.subtask);
        if !self.0.commits.lock().expect("commits lock").contains_key(&key) {
            return Err(Status::not_found(format!(
                "no commits held for subtask {} of vertex {} in attempt {}",
                r.subtask, r.vertex, r.attempt
            )));
        }
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let held = inner.commits.lock().expect("commits lock").remove(&key).unwrap_or_default();
            // Kept until they all succeed: commits are idempotent, so a retry runs them again.
            for commit in &held {
                if let Err(e) = commit.run() {
                    inner.commits.lock().expect("commits lock").insert(key, held);
                    return Err(Status::unavailable(e.report().to_string()));
                }
            }
            Ok(Response::new(FinalCommitResponse {}))
        })
        .await
        .map_err(|e| Status::internal(format!("a final commit panicked: {e}")))?
    }
}

/// Sends the subtasks' events and counters to the JobMaster until every
/// subtask ended. If the JobMaster is gone, the subtasks are cancelled.
fn forward_reports(
    inner: &Inner,
    (job, attempt): (u64, u32),
    events: Receiver<TaskEvent>,
    metrics: &[Arc<TaskMetrics>],
    reports: &mpsc::Sender<std::result::Result<TaskReport, Status>>,
    cancel: &AtomicBool,
) {
    let send = |report: &Report| {
        let bytes = postcard::to_allocvec(report).expect("reports serialize");
        if reports.blocking_send(Ok(TaskReport { report: bytes })).is_err() {
            cancel.store(true, Ordering::Relaxed);
        }
    };
    let counters = || Report::Metrics(metrics.iter().map(|m| m.values()).collect());
    let mut running = metrics.len();
    while running > 0 {
        match events.recv_timeout(METRICS_INTERVAL) {
            Ok(event) => {
                let (report, commits) = Report::from_event(event);
                if let Report::Finished { vertex, subtask_index, .. } = &report {
                    running -= 1;
                    if !commits.is_empty() {
                        let key = (job, attempt, *vertex as u32, *subtask_index as u32);
                        inner.commits.lock().expect("commits lock").insert(key, commits);
                    }
                    send(&counters());
                }
                send(&report);
            }
            Err(RecvTimeoutError::Timeout) => send(&counters()),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}
