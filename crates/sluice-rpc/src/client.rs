//! A job's client on a standalone cluster: it submits the job to the
//! JobManager, which offers it slots on its TaskManagers, and runs the
//! job's JobMaster (scheduling, checkpoints, restarts) against those
//! TaskManagers' TaskExecutor services. The program's closures never cross
//! the network: each TaskManager builds the same job from the same
//! arguments and checks its fingerprint.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Select;
use sluice_cluster::remote::{
    RemoteDeployment, ResourceProvider, TaskExecutorGateway, TaskHandles,
};
use sluice_cluster::{JobClient, JobManager, JobOptions, TaskManager};
use sluice_core::{Result, SluiceError};
use sluice_runtime::execution_graph::ExecutionGraph;
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::operator::FinalCommit;
use sluice_runtime::task::{SnapshotDurations, TaskEvent};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Request;
use tracing::{info, warn};

use crate::proto::job_directive::Directive;
use crate::proto::task_executor_client::TaskExecutorClient;
use crate::proto::{
    attempt_message, job_update, AttemptMessage, DeployTasks, FinalCommitRequest, JobSpec,
    JobStatusUpdate, JobUpdate, PlacedSubtask, Placement, RequestSlots, SavepointResult, SlotOffer,
    SubmitJob,
};
use crate::task_manager::{client as job_manager_client, job_manager_error, Secret};
use crate::wire::Report;
use crate::Security;

/// A job submitted to a standalone cluster. Keep it while the job runs:
/// dropping it ends the job's registration with the JobManager, which takes
/// its slots back.
pub struct ClusterSession {
    runtime: Runtime,
    finish: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl std::fmt::Debug for ClusterSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSession")
    }
}

impl ClusterSession {
    /// Reports the job's final status to the JobManager and ends its registration.
    pub fn close(mut self) {
        if let (Some(finish), Some(done)) = (self.finish.take(), self.done.take()) {
            let _ = finish.send(());
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(3), done).await });
        }
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// Submits `job_graph` to the JobManager at `job_manager`; `args` are what
/// the TaskManagers build the same job from.
pub fn submit(
    job_manager: &str,
    security: &Security,
    job_graph: JobGraph,
    options: JobOptions,
    args: Vec<String>,
) -> Result<(JobClient, ClusterSession)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client-rpc")
        .enable_all()
        .build()
        .map_err(|e| SluiceError::Internal(format!("cannot start the RPC runtime: {e}")))?;
    let name = job_graph.stream_graph.job_name.clone();
    let slots = ExecutionGraph::slots_needed(&job_graph).max(1);
    let spec = JobSpec { job_name: name.clone(), args, fingerprint: job_graph.fingerprint() };
    let (updates, updates_rx) = mpsc::channel(16);
    let submit = JobUpdate {
        update: Some(job_update::Update::Submit(SubmitJob {
            job_name: name.clone(),
            slots: slots as u32,
        })),
    };
    updates.try_send(submit).expect("an empty channel");
    let (mut directives, offer) = runtime.block_on(async {
        let endpoint = security.endpoint(job_manager)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| job_manager_error(job_manager, format!("unreachable: {e}")))?;
        let mut jm = job_manager_client(channel, security.secret.clone());
        let mut directives = jm
            .run_job(ReceiverStream::new(updates_rx))
            .await
            .map_err(|s| refusal(job_manager, s))?
            .into_inner();
        match directives.message().await.map_err(|s| refusal(job_manager, s))? {
            Some(crate::proto::JobDirective { directive: Some(Directive::Offer(offer)) }) => {
                Ok((directives, offer))
            }
            _ => Err(job_manager_error(job_manager, "ended the job's registration without slots")),
        }
    })?;
    let (lost, _) = tokio::sync::broadcast::channel(16);
    let (offers, offers_rx) = crossbeam_channel::unbounded();
    let resources = Arc::new(ClusterResources {
        name: name.clone(),
        spec: Arc::new(spec),
        security: security.clone(),
        runtime: runtime.handle().clone(),
        lost: lost.clone(),
        updates: updates.clone(),
        offers: offers_rx,
    });
    let task_managers = resources.task_managers(&offer)?;
    let client =
        JobManager::with_resources(task_managers, resources).submit_job(job_graph, options)?;
    let view = client.view();
    let (finish, mut finishing) = tokio::sync::oneshot::channel();
    let (finished, done) = tokio::sync::oneshot::channel();
    runtime.spawn(async move {
        // The job's status, as it changes, and the JobManager's commands to it.
        let mut reported = String::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let status_update = |status: &str| JobUpdate {
            update: Some(job_update::Update::Status(JobStatusUpdate {
                job_id: view.job_id().to_string(),
                status: status.to_string(),
            })),
        };
        loop {
            tokio::select! {
                _ = &mut finishing => {
                    let status = format!("{:?}", view.status()).to_uppercase();
                    let _ = updates.send(status_update(&status)).await;
                    drop(updates);
                    // The JobManager ends its side once it has taken the job's slots back.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Ok(Some(_)) = directives.message().await {}
                    })
                    .await;
                    let _ = finished.send(());
                    return;
                }
                _ = tick.tick() => {
                    let status = format!("{:?}", view.status()).to_uppercase();
                    if status != reported {
                        if updates.send(status_update(&status)).await.is_err() {
                            return;
                        }
                        reported = status;
                    }
                }
                directive = directives.message() => match directive {
                    Ok(Some(crate::proto::JobDirective { directive: Some(Directive::Cancel(_)) })) => {
                        info!(job = %view.job_name(), "cancelled through the JobManager");
                        view.cancel();
                    }
                    Ok(Some(crate::proto::JobDirective { directive: Some(Directive::Savepoint(request)) })) => {
                        // Taking a savepoint waits for a checkpoint: off the runtime's threads.
                        let (view, updates) = (view.clone(), updates.clone());
                        tokio::task::spawn_blocking(move || {
                            let written = match request.stop {
                                true => view.stop_with_savepoint(&request.directory),
                                false => view.trigger_savepoint(&request.directory),
                            };
                            let (path, error) = match written {
                                Ok(path) => (path, String::new()),
                                Err(e) => (String::new(), e.report().to_string()),
                            };
                            let result = SavepointResult { request_id: request.request_id, path, error };
                            let _ = updates.blocking_send(JobUpdate { update: Some(job_update::Update::Savepoint(result)) });
                        });
                    }
                    Ok(Some(crate::proto::JobDirective { directive: Some(Directive::Offer(offer)) })) => {
                        let _ = offers.send(offer);
                    }
                    Ok(Some(crate::proto::JobDirective { directive: Some(Directive::TaskManagerLost(l)) })) => {
                        warn!(job = %view.job_name(), task_manager = %l.task_manager_id, "the JobManager lost a TaskManager of the job");
                        let _ = lost.send(l.task_manager_id);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        warn!(job = %view.job_name(), "the connection to the JobManager ended; the job goes on");
                        return;
                    }
                }
            }
        }
    });
    Ok((client, ClusterSession { runtime, finish: Some(finish), done: Some(done) }))
}

fn refusal(job_manager: &str, status: tonic::Status) -> SluiceError {
    match status.code() {
        tonic::Code::ResourceExhausted => SluiceError::Scheduling(status.message().to_string()),
        tonic::Code::Unauthenticated => SluiceError::Config(format!(
            "the JobManager at {job_manager} refused the job: {}",
            status.message()
        )),
        _ => job_manager_error(job_manager, status.message()),
    }
}

/// How long a TaskManager may take to accept a deployment.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a restart waits for enough slots (TaskManagers to join).
const SLOT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The TaskManagers the JobManager offers a job, attempt by attempt.
struct ClusterResources {
    name: String,
    spec: Arc<JobSpec>,
    security: Security,
    runtime: tokio::runtime::Handle,
    /// Ids of TaskManagers the JobManager lost.
    lost: tokio::sync::broadcast::Sender<String>,
    updates: mpsc::Sender<JobUpdate>,
    offers: crossbeam_channel::Receiver<SlotOffer>,
}

impl ClusterResources {
    /// The offered TaskManagers, as the JobMaster deploys to them.
    fn task_managers(&self, offer: &SlotOffer) -> Result<Vec<Arc<TaskManager>>> {
        offer
            .task_managers
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let data_address = o.data_address.parse().map_err(|_| {
                    SluiceError::Internal(format!(
                        "TaskManager {} has a malformed data address '{}'",
                        o.task_manager_id, o.data_address
                    ))
                })?;
                let executor = RemoteExecutor {
                    task_manager: o.task_manager_id.clone(),
                    rpc_address: o.rpc_address.clone(),
                    security: self.security.clone(),
                    spec: self.spec.clone(),
                    runtime: self.runtime.clone(),
                    lost: self.lost.clone(),
                };
                info!(job = %self.name, task_manager = %o.task_manager_id, slots = o.slots, "slots offered");
                Ok(Arc::new(TaskManager::remote(
                    i,
                    o.slots as usize,
                    o.task_manager_id.clone(),
                    data_address,
                    Arc::new(executor),
                )))
            })
            .collect()
    }
}

impl ResourceProvider for ClusterResources {
    fn placed(&self, placement: &[(String, String, usize)]) {
        let subtasks = placement
            .iter()
            .map(|(subtask, task_manager, slot)| PlacedSubtask {
                subtask: subtask.clone(),
                task_manager_id: task_manager.clone(),
                slot: *slot as u32,
            })
            .collect();
        let update = job_update::Update::Placement(Placement { subtasks });
        let _ = self.updates.blocking_send(JobUpdate { update: Some(update) });
    }

    fn task_managers_for_attempt(&self, slots: usize) -> Result<Vec<Arc<TaskManager>>> {
        while self.offers.try_recv().is_ok() {}
        let request = RequestSlots {
            slots: slots as u32,
            timeout_ms: SLOT_REQUEST_TIMEOUT.as_millis() as u64,
        };
        let update = JobUpdate { update: Some(job_update::Update::RequestSlots(request)) };
        self.updates
            .blocking_send(update)
            .map_err(|_| SluiceError::external("JobManager", "the job's registration ended"))?;
        // The JobManager's own wait ends first; this one only guards against its silence.
        match self.offers.recv_timeout(SLOT_REQUEST_TIMEOUT + Duration::from_secs(5)) {
            Ok(offer) => self.task_managers(&offer),
            Err(_) => Err(SluiceError::Scheduling(format!(
                "job '{}' got no {slots} free slots within {SLOT_REQUEST_TIMEOUT:?}: start more TaskManagers",
                self.name
            ))),
        }
    }
}

/// A TaskManager process's TaskExecutor, as a JobMaster deploys to it.
#[derive(Debug, Clone)]
struct RemoteExecutor {
    task_manager: String,
    rpc_address: String,
    security: Security,
    spec: Arc<JobSpec>,
    runtime: tokio::runtime::Handle,
    /// Ids of TaskManagers the JobManager lost.
    lost: tokio::sync::broadcast::Sender<String>,
}

type Executor =
    TaskExecutorClient<tonic::service::interceptor::InterceptedService<Channel, Secret>>;

impl RemoteExecutor {
    async fn connect(&self) -> Result<Executor> {
        let channel = self
            .security
            .endpoint(&self.rpc_address)?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| self.lost(format!("unreachable at {}: {e}", self.rpc_address)))?;
        Ok(TaskExecutorClient::with_interceptor(channel, Secret(self.security.secret.clone()))
            // Acknowledgements carry state, which can be large.
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// An error of this TaskManager: external, so the job restarts.
    fn lost(&self, message: String) -> SluiceError {
        SluiceError::external(format!("TaskManager {}", self.task_manager), message)
    }

    /// A final commit that asks the TaskManager to run the commits it holds.
    fn final_commit(&self, request: FinalCommitRequest) -> FinalCommit {
        let (runtime, executor) = (self.runtime.clone(), self.clone());
        FinalCommit(Box::new(move || {
            runtime.block_on(async {
                let mut client = executor.connect().await?;
                client
                    .final_commit(Request::new(request))
                    .await
                    .map_err(|s| executor.lost(format!("final commit failed: {}", s.message())))?;
                Ok(())
            })
        }))
    }
}

impl TaskExecutorGateway for RemoteExecutor {
    fn deploy(&self, deployment: RemoteDeployment, handles: TaskHandles) -> Result<JoinHandle<()>> {
        let (job, attempt) = (deployment.job, deployment.attempt);
        let subtasks: Vec<(usize, usize)> =
            deployment.subtasks.iter().map(|s| (s.vertex, s.subtask_index)).collect();
        let deploy = AttemptMessage {
            message: Some(attempt_message::Message::Deploy(DeployTasks {
                job: Some((*self.spec).clone()),
                deployment: postcard::to_allocvec(&deployment)?,
            })),
        };
        let (out, out_rx) = mpsc::channel(64);
        out.try_send(deploy).expect("an empty channel");
        let mut lost = self.lost.subscribe();
        let mut reports = self.runtime.block_on(async {
            let mut client = self.connect().await?;
            let deployed = client.run_attempt(ReceiverStream::new(out_rx));
            // A paused TaskManager accepts the connection and then says nothing.
            let response = tokio::time::timeout(DEPLOY_TIMEOUT, deployed)
                .await
                .map_err(|_| {
                    self.lost(format!("no answer to the deployment within {DEPLOY_TIMEOUT:?}"))
                })?
                .map_err(|s| {
                    if s.code() == tonic::Code::FailedPrecondition {
                        SluiceError::InvalidJob(s.message().to_string())
                    } else {
                        self.lost(format!("deployment failed: {}", s.message()))
                    }
                })?;
            Ok::<_, SluiceError>(response.into_inner())
        })?;
        let (done, done_rx) = crossbeam_channel::bounded::<()>(1);
        let events = handles.events.clone();
        let metrics = handles.metrics.clone();
        let reader = self.clone();
        self.runtime.spawn(async move {
            let mut finished = vec![false; subtasks.len()];
            let cause = loop {
                let message = tokio::select! {
                    message = reports.message() => message,
                    gone = lost.recv() => match gone {
                        Ok(id) if id == reader.task_manager => {
                            break "the JobManager declared it lost".to_string()
                        }
                        _ => continue,
                    },
                };
                let report = match message {
                    Ok(Some(r)) => r,
                    Ok(None) => break "its report stream ended".to_string(),
                    Err(s) => break format!("its connection broke: {}", s.message()),
                };
                let report = match postcard::from_bytes::<Report>(&report.report) {
                    Ok(r) => r,
                    Err(e) => break format!("it sent a malformed report: {e}"),
                };
                let event = match report {
                    Report::Metrics(values) => {
                        for (m, v) in metrics.iter().zip(values) {
                            m.set_values(v);
                        }
                        continue;
                    }
                    Report::Finished {
                        vertex,
                        subtask_index,
                        result,
                        final_commits,
                        accumulators,
                    } => {
                        if let Some(k) = subtasks.iter().position(|s| *s == (vertex, subtask_index))
                        {
                            finished[k] = true;
                        }
                        let request = FinalCommitRequest {
                            job,
                            attempt,
                            vertex: vertex as u32,
                            subtask: subtask_index as u32,
                        };
                        TaskEvent::Finished {
                            vertex,
                            subtask_index,
                            result: result.map_err(|e| e.into_error()),
                            final_commits: match final_commits {
                                true => vec![reader.final_commit(request)],
                                false => Vec::new(),
                            },
                            accumulators,
                        }
                    }
                    Report::Acknowledged {
                        vertex,
                        subtask_index,
                        checkpoint_id,
                        states,
                        alignment_ms,
                        sync_ms,
                    } => TaskEvent::Acknowledged {
                        vertex,
                        subtask_index,
                        checkpoint_id,
                        states,
                        durations: SnapshotDurations { alignment_ms, sync_ms },
                    },
                    Report::SplitRequest { vertex, subtask_index, finished } => {
                        TaskEvent::SplitRequest { vertex, subtask_index, finished }
                    }
                    Report::Declined { vertex, subtask_index, checkpoint_id, reason } => {
                        TaskEvent::Declined { vertex, subtask_index, checkpoint_id, reason }
                    }
                };
                let _ = events.send(event);
                if finished.iter().all(|f| *f) {
                    break String::new();
                }
            };
            // A TaskManager that is gone ends each of its subtasks as failed.
            for (k, (vertex, subtask_index)) in subtasks.iter().enumerate() {
                if !finished[k] {
                    let _ = events.send(TaskEvent::Finished {
                        vertex: *vertex,
                        subtask_index: *subtask_index,
                        result: Err(reader.lost(format!("lost: {cause}"))),
                        final_commits: Vec::new(),
                        accumulators: Vec::new(),
                    });
                }
            }
            let _ = done.send(());
        });
        std::thread::Builder::new()
            .name(format!("attempt-{attempt}-{}", self.task_manager))
            .spawn(move || relay_controls(handles, out, &done_rx))
            .map_err(|e| SluiceError::Internal(format!("cannot start a thread: {e}")))
    }
}

/// Sends the JobMaster's messages to the remote subtasks until they all
/// ended; when the attempt is cancelled, ends the request stream, which
/// cancels them there.
fn relay_controls(
    handles: TaskHandles,
    out: mpsc::Sender<AttemptMessage>,
    done: &crossbeam_channel::Receiver<()>,
) {
    let mut out = Some(out);
    let mut select = Select::new();
    for c in &handles.controls {
        select.recv(c);
    }
    let done_index = select.recv(done);
    loop {
        if handles.cancel.load(Ordering::Relaxed) {
            out = None;
        }
        let Ok(operation) = select.select_timeout(Duration::from_millis(20)) else { continue };
        let index = operation.index();
        if index == done_index {
            let _ = operation.recv(done);
            return;
        }
        let Ok(control) = operation.recv(&handles.controls[index]) else {
            select.remove(index);
            continue;
        };
        if let Some(sender) = &out {
            let bytes =
                postcard::to_allocvec(&(index as u32, control)).expect("controls serialize");
            let message =
                AttemptMessage { message: Some(attempt_message::Message::Control(bytes)) };
            if sender.blocking_send(message).is_err() {
                out = None;
            }
        }
    }
}
