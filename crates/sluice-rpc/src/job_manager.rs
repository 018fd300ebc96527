//! The standalone JobManager's control plane: registration of TaskManagers,
//! heartbeats, and loss detection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sluice_core::{Result, SluiceError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::proto::job_manager_server::{JobManager, JobManagerServer};
use crate::proto::{
    job_directive, job_update, task_manager_command, CancelJobRequest, CancelJobResponse,
    HeartbeatRequest, HeartbeatResponse, JobDirective, JobInfo, JobUpdate, ListJobsRequest,
    ListJobsResponse, ListTaskManagersRequest, ListTaskManagersResponse, OfferedSlots,
    RegisterTaskManagerRequest, Registered, SavepointRequest, SavepointResponse, SavepointResult,
    SlotOffer, TaskManagerCommand, TaskManagerInfo, TaskManagerLost, UnregisterTaskManagerRequest,
    UnregisterTaskManagerResponse,
};
use crate::Security;

/// Settings of a standalone JobManager.
#[derive(Debug, Clone)]
pub struct JobManagerConfig {
    /// Where TaskManagers and clients reach it (port 0: any free port).
    pub rpc_address: SocketAddr,
    /// The cluster secret every RPC must carry, and TLS certificates;
    /// with neither, loopback only.
    pub security: Security,
    /// How often TaskManagers send heartbeats.
    pub heartbeat_interval: Duration,
    /// How long without a heartbeat before a TaskManager is lost.
    pub heartbeat_timeout: Duration,
}

/// Runs the JobManager until Ctrl-C (or SIGTERM).
pub fn run(config: JobManagerConfig) -> Result<()> {
    if !config.security.protects() && !config.rpc_address.ip().is_loopback() {
        return Err(SluiceError::Config(format!(
            "--rpc-address {} is not on loopback, so the cluster needs a secret \
             (--cluster-secret or SLUICE_CLUSTER_SECRET) or TLS certificates (--tls-cert, --tls-key, --tls-ca)",
            config.rpc_address
        )));
    }
    if config.heartbeat_timeout <= config.heartbeat_interval {
        return Err(SluiceError::Config(format!(
            "--heartbeat-timeout ({:?}) must be longer than the heartbeat interval ({:?})",
            config.heartbeat_timeout, config.heartbeat_interval
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("jobmanager-rpc")
        .enable_all()
        .build()
        .map_err(|e| SluiceError::Internal(format!("cannot start the RPC runtime: {e}")))?;
    runtime.block_on(serve(config))
}

async fn serve(config: JobManagerConfig) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.rpc_address).await.map_err(|e| {
        SluiceError::Config(format!("cannot listen on --rpc-address {}: {e}", config.rpc_address))
    })?;
    let address = listener.local_addr().map_err(|e| SluiceError::Internal(e.to_string()))?;
    if !config.security.protects() {
        warn!("no cluster secret and no TLS: the JobManager listens on loopback only");
    }
    let tls = config.security.server_tls()?;
    info!(%address, tls = tls.is_some(), "JobManager listening");
    let service = Service(Arc::new(State {
        task_managers: Mutex::default(),
        jobs: Mutex::default(),
        savepoints: Mutex::default(),
        savepoint_requests: AtomicU64::new(0),
        registrations: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        heartbeat_interval: config.heartbeat_interval,
        heartbeat_timeout: config.heartbeat_timeout,
    }));
    tokio::spawn(watch_heartbeats(service.0.clone()));
    let state = service.0.clone();
    let stop = async move {
        shutdown_signal().await;
        state.stopping.store(true, Ordering::Release);
    };
    let secret = config.security.secret.clone();
    let server = JobManagerServer::with_interceptor(service, move |request: Request<()>| {
        if crate::authorized(&request, secret.as_deref()) {
            return Ok(request);
        }
        let from = request.remote_addr().map_or("an unknown address".into(), |a| a.to_string());
        warn!(%from, "refused an RPC: wrong or missing cluster secret");
        Err(Status::unauthenticated("wrong or missing cluster secret"))
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| SluiceError::Config(format!("the TLS certificates do not work: {e}")))?;
    }
    builder
        // A TaskManager whose host vanished (no FIN, no RST) is found by HTTP/2 pings.
        .http2_keepalive_interval(Some(config.heartbeat_interval))
        .http2_keepalive_timeout(Some(config.heartbeat_timeout))
        .add_service(server)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
        .await
        .map_err(|e| SluiceError::Internal(format!("the JobManager's RPC server failed: {e}")))?;
    info!("JobManager stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

struct State {
    task_managers: Mutex<HashMap<String, Registration>>,
    /// Jobs by submission number, running and ended.
    jobs: Mutex<Vec<Job>>,
    /// Savepoint requests waiting for the job's answer, by request id.
    savepoints: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<SavepointResult>>>,
    savepoint_requests: AtomicU64,
    /// Numbers registrations, so the end of a replaced one's stream is not
    /// taken for the loss of its successor.
    registrations: AtomicU64,
    stopping: AtomicBool,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
}

/// A job submitted to the cluster, as its client reports it.
struct Job {
    job_id: String,
    name: String,
    status: String,
    /// Slots it holds per TaskManager, until its client's stream ends.
    slots: Vec<(String, u32)>,
    submitted: Instant,
    /// Commands to its client; none once it ended.
    directives: Option<mpsc::Sender<Result<JobDirective, Status>>>,
}

struct Registration {
    number: u64,
    data_address: String,
    rpc_address: String,
    slots: u32,
    /// Slots held by running jobs.
    allocated: u32,
    peer: String,
    last_heartbeat: Instant,
    /// Ends the TaskManager's command stream when dropped.
    _commands: mpsc::Sender<Result<TaskManagerCommand, Status>>,
}

impl State {
    /// Forgets `id`'s registration `number` (if still current) and logs the loss.
    fn lost(&self, id: &str, number: u64, reason: &str) {
        let mut tms = self.task_managers.lock().expect("registry lock");
        if tms.get(id).is_some_and(|r| r.number == number) {
            tms.remove(id);
            // When the JobManager stops, it leaves its TaskManagers; none is lost.
            if !self.stopping.load(Ordering::Acquire) {
                warn!(task_manager = id, remaining = tms.len(), "TaskManager lost: {reason}");
                drop(tms);
                self.tell_jobs_lost(id);
            }
        }
    }
}

/// Declares lost every TaskManager silent for longer than the timeout.
async fn watch_heartbeats(state: Arc<State>) {
    let mut tick = tokio::time::interval(state.heartbeat_interval / 2);
    loop {
        tick.tick().await;
        let silent: Vec<(String, u64, Duration)> = {
            let tms = state.task_managers.lock().expect("registry lock");
            tms.iter()
                .filter(|(_, r)| r.last_heartbeat.elapsed() > state.heartbeat_timeout)
                .map(|(id, r)| (id.clone(), r.number, r.last_heartbeat.elapsed()))
                .collect()
        };
        for (id, number, silence) in silent {
            let reason = format!(
                "no heartbeat for {:.1}s (timeout {:?})",
                silence.as_secs_f64(),
                state.heartbeat_timeout
            );
            state.lost(&id, number, &reason);
        }
    }
}

#[derive(Clone)]
struct Service(Arc<State>);

/// A TaskManager's command stream; its end (the TaskManager crashed or its
/// connection broke) is the TaskManager's loss.
struct CommandStream {
    commands: ReceiverStream<Result<TaskManagerCommand, Status>>,
    state: Arc<State>,
    task_manager: String,
    number: u64,
}

impl Stream for CommandStream {
    type Item = Result<TaskManagerCommand, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().commands).poll_next(cx)
    }
}

impl Drop for CommandStream {
    fn drop(&mut self) {
        self.state.lost(&self.task_manager, self.number, "its connection closed");
    }
}

#[tonic::async_trait]
impl JobManager for Service {
    type RegisterTaskManagerStream =
        Pin<Box<dyn Stream<Item = Result<TaskManagerCommand, Status>> + Send>>;

    async fn register_task_manager(
        &self,
        request: Request<RegisterTaskManagerRequest>,
    ) -> std::result::Result<Response<Self::RegisterTaskManagerStream>, Status> {
        let peer = request.remote_addr().map_or_else(String::new, |a| a.to_string());
        let r = request.into_inner();
        if r.task_manager_id.is_empty() || r.slots == 0 {
            return Err(Status::invalid_argument(format!(
                "a TaskManager needs an id and at least one slot (got id '{}', {} slots)",
                r.task_manager_id, r.slots
            )));
        }
        if r.data_address.parse::<SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "TaskManager {}: data address '{}' is not HOST:PORT",
                r.task_manager_id, r.data_address
            )));
        }
        let state = &self.0;
        let number = state.registrations.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        let registered = Registered {
            heartbeat_interval_ms: state.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: state.heartbeat_timeout.as_millis() as u64,
        };
        let first = TaskManagerCommand {
            command: Some(task_manager_command::Command::Registered(registered)),
        };
        tx.send(Ok(first)).await.map_err(|_| Status::internal("command stream closed"))?;
        let mut tms = state.task_managers.lock().expect("registry lock");
        let again = tms.contains_key(&r.task_manager_id);
        tms.insert(
            r.task_manager_id.clone(),
            Registration {
                number,
                data_address: r.data_address.clone(),
                rpc_address: r.rpc_address.clone(),
                slots: r.slots,
                allocated: 0,
                peer: peer.clone(),
                last_heartbeat: Instant::now(),
                _commands: tx,
            },
        );
        info!(
            task_manager = %r.task_manager_id,
            slots = r.slots,
            data_address = %r.data_address,
            from = %peer,
            version = %r.version,
            task_managers = tms.len(),
            "TaskManager {}",
            if again { "registered again" } else { "registered" }
        );
        drop(tms);
        let stream = CommandStream {
            commands: ReceiverStream::new(rx),
            state: state.clone(),
            task_manager: r.task_manager_id,
            number,
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> std::result::Result<Response<HeartbeatResponse>, Status> {
        let id = request.into_inner().task_manager_id;
        let mut tms = self.0.task_managers.lock().expect("registry lock");
        let known = match tms.get_mut(&id) {
            Some(r) => {
                r.last_heartbeat = Instant::now();
                true
            }
            None => false,
        };
        Ok(Response::new(HeartbeatResponse { known }))
    }

    async fn unregister_task_manager(
        &self,
        request: Request<UnregisterTaskManagerRequest>,
    ) -> std::result::Result<Response<UnregisterTaskManagerResponse>, Status> {
        let id = request.into_inner().task_manager_id;
        let mut tms = self.0.task_managers.lock().expect("registry lock");
        if tms.remove(&id).is_some() {
            info!(task_manager = %id, remaining = tms.len(), "TaskManager stopped");
            drop(tms);
            self.0.tell_jobs_lost(&id);
        }
        Ok(Response::new(UnregisterTaskManagerResponse {}))
    }

    async fn list_task_managers(
        &self,
        _request: Request<ListTaskManagersRequest>,
    ) -> std::result::Result<Response<ListTaskManagersResponse>, Status> {
        let tms = self.0.task_managers.lock().expect("registry lock");
        let mut task_managers: Vec<TaskManagerInfo> = tms
            .iter()
            .map(|(id, r)| TaskManagerInfo {
                task_manager_id: id.clone(),
                data_address: r.data_address.clone(),
                slots: r.slots,
                free_slots: r.slots.saturating_sub(r.allocated),
                last_heartbeat_ms_ago: r.last_heartbeat.elapsed().as_millis() as u64,
                rpc_peer: r.peer.clone(),
                rpc_address: r.rpc_address.clone(),
            })
            .collect();
        task_managers.sort_by(|a, b| a.task_manager_id.cmp(&b.task_manager_id));
        Ok(Response::new(ListTaskManagersResponse { task_managers }))
    }

    type RunJobStream = ReceiverStream<Result<JobDirective, Status>>;

    async fn run_job(
        &self,
        request: Request<tonic::Streaming<JobUpdate>>,
    ) -> std::result::Result<Response<Self::RunJobStream>, Status> {
        let mut updates = request.into_inner();
        let Some(job_update::Update::Submit(submit)) =
            updates.message().await?.and_then(|u| u.update)
        else {
            return Err(Status::invalid_argument("a job's stream starts with its submission"));
        };
        let state = self.0.clone();
        let offer = state.allocate(&submit.job_name, submit.slots)?;
        let (tx, rx) = mpsc::channel(8);
        let directive =
            JobDirective { directive: Some(job_directive::Directive::Offer(offer.clone())) };
        tx.send(Ok(directive)).await.map_err(|_| Status::internal("directive stream closed"))?;
        let number = {
            let mut jobs = state.jobs.lock().expect("job registry lock");
            jobs.push(Job {
                job_id: String::new(),
                name: submit.job_name.clone(),
                status: "CREATED".into(),
                slots: offer
                    .task_managers
                    .iter()
                    .map(|t| (t.task_manager_id.clone(), t.slots))
                    .collect(),
                submitted: Instant::now(),
                directives: Some(tx),
            });
            jobs.len() - 1
        };
        tokio::spawn(async move {
            // The client reports its job's status until the job ends or the client goes.
            while let Ok(Some(update)) = updates.message().await {
                if let Some(job_update::Update::RequestSlots(request)) = &update.update {
                    state.offer_again(number, request.slots, request.timeout_ms).await;
                }
                if let Some(job_update::Update::Placement(placement)) = &update.update {
                    let name = state.jobs.lock().expect("job registry lock")[number].name.clone();
                    for s in &placement.subtasks {
                        info!(
                            job = %name,
                            subtask = %s.subtask,
                            task_manager = %s.task_manager_id,
                            slot = s.slot,
                            "subtask placed"
                        );
                    }
                }
                if let Some(job_update::Update::Savepoint(result)) = &update.update {
                    let waiting =
                        state.savepoints.lock().expect("savepoint lock").remove(&result.request_id);
                    if let Some(reply) = waiting {
                        let _ = reply.send(result.clone());
                    }
                }
                if let Some(job_update::Update::Status(s)) = update.update {
                    let mut jobs = state.jobs.lock().expect("job registry lock");
                    let job = &mut jobs[number];
                    if job.job_id.is_empty() {
                        info!(job = %job.name, job_id = %s.job_id, "job submitted");
                    }
                    if job.status != s.status {
                        info!(job = %job.name, job_id = %s.job_id, status = %s.status, "job status");
                    }
                    job.job_id = s.job_id;
                    job.status = s.status;
                }
            }
            state.release(number);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_jobs(
        &self,
        _request: Request<ListJobsRequest>,
    ) -> std::result::Result<Response<ListJobsResponse>, Status> {
        let jobs = self.0.jobs.lock().expect("job registry lock");
        let jobs = jobs
            .iter()
            .map(|j| JobInfo {
                job_id: j.job_id.clone(),
                job_name: j.name.clone(),
                status: j.status.clone(),
                slots: j.slots.iter().map(|(_, n)| n).sum(),
                submitted_ms_ago: j.submitted.elapsed().as_millis() as u64,
            })
            .collect();
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn trigger_savepoint(
        &self,
        request: Request<SavepointRequest>,
    ) -> std::result::Result<Response<SavepointResponse>, Status> {
        let mut request = request.into_inner();
        let directives = self.0.job_directives(&request.job_id)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        request.request_id = self.0.savepoint_requests.fetch_add(1, Ordering::Relaxed);
        self.0.savepoints.lock().expect("savepoint lock").insert(request.request_id, reply);
        let job_id = request.job_id.clone();
        info!(%job_id, directory = %request.directory, stop = request.stop, "savepoint requested");
        let directive =
            JobDirective { directive: Some(job_directive::Directive::Savepoint(request)) };
        directives
            .send(Ok(directive))
            .await
            .map_err(|_| Status::failed_precondition(format!("job {job_id} already ended")))?;
        match answer.await {
            Ok(r) if r.error.is_empty() => Ok(Response::new(SavepointResponse { path: r.path })),
            Ok(r) => Err(Status::failed_precondition(r.error)),
            Err(_) => Err(Status::unavailable(format!(
                "job {job_id}'s client went away before the savepoint was written"
            ))),
        }
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> std::result::Result<Response<CancelJobResponse>, Status> {
        let job_id = request.into_inner().job_id;
        let directives = self.0.job_directives(&job_id)?;
        let cancel = JobDirective {
            directive: Some(job_directive::Directive::Cancel(CancelJobRequest {
                job_id: job_id.clone(),
            })),
        };
        directives
            .send(Ok(cancel))
            .await
            .map_err(|_| Status::failed_precondition(format!("job {job_id} already ended")))?;
        info!(%job_id, "job cancellation requested");
        Ok(Response::new(CancelJobResponse {}))
    }
}

impl State {
    /// The command stream of running job `job_id`.
    fn job_directives(
        &self,
        job_id: &str,
    ) -> Result<mpsc::Sender<Result<JobDirective, Status>>, Status> {
        let jobs = self.jobs.lock().expect("job registry lock");
        let job = jobs
            .iter()
            .find(|j| j.job_id == job_id)
            .ok_or_else(|| Status::not_found(format!("no job {job_id} on this cluster")))?;
        job.directives.clone().ok_or_else(|| {
            Status::failed_precondition(format!("job {job_id} already ended ({})", job.status))
        })
    }

    /// Takes `slots` free slots for a job, TaskManager by TaskManager in id
    /// order; refuses the job if the cluster has fewer free.
    fn allocate(&self, job: &str, slots: u32) -> Result<SlotOffer, Status> {
        let mut tms = self.task_managers.lock().expect("registry lock");
        let free: u32 = tms.values().map(|r| r.slots.saturating_sub(r.allocated)).sum();
        if free < slots {
            return Err(Status::resource_exhausted(format!(
                "job '{job}' needs {slots} slots, but the cluster's {} TaskManagers have {free} free",
                tms.len()
            )));
        }
        let mut ids: Vec<&String> = tms.keys().collect();
        ids.sort();
        let ids: Vec<String> = ids.into_iter().cloned().collect();
        let mut wanted = slots;
        let mut offer = SlotOffer { task_managers: Vec::new() };
        for id in ids {
            let r = tms.get_mut(&id).expect("listed");
            let take = r.slots.saturating_sub(r.allocated).min(wanted);
            if take == 0 {
                continue;
            }
            r.allocated += take;
            wanted -= take;
            offer.task_managers.push(OfferedSlots {
                task_manager_id: id.clone(),
                rpc_address: r.rpc_address.clone(),
                data_address: r.data_address.clone(),
                slots: take,
            });
        }
        Ok(offer)
    }

    /// Gives job `number`'s slots back, then offers it `slots` slots as soon
    /// as the cluster has them free, waiting up to `timeout_ms`.
    async fn offer_again(&self, number: usize, slots: u32, timeout_ms: u64) {
        let name = {
            let mut jobs = self.jobs.lock().expect("job registry lock");
            self.give_back(&mut jobs[number]);
            jobs[number].name.clone()
        };
        let until = Instant::now() + Duration::from_millis(timeout_ms);
        let offer = loop {
            match self.allocate(&name, slots) {
                Ok(offer) => break offer,
                Err(_) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => {
                    warn!(job = %name, "no slots for the job's next attempt: {}", status.message());
                    return;
                }
            }
        };
        let mut jobs = self.jobs.lock().expect("job registry lock");
        let job = &mut jobs[number];
        job.slots =
            offer.task_managers.iter().map(|t| (t.task_manager_id.clone(), t.slots)).collect();
        info!(job = %name, task_managers = ?job.slots, "slots offered again");
        let directive = JobDirective { directive: Some(job_directive::Directive::Offer(offer)) };
        if let Some(d) = &job.directives {
            let _ = d.try_send(Ok(directive));
        }
    }

    /// Frees the slots `job` holds.
    fn give_back(&self, job: &mut Job) {
        let mut tms = self.task_managers.lock().expect("registry lock");
        for (id, n) in job.slots.drain(..) {
            if let Some(r) = tms.get_mut(&id) {
                r.allocated = r.allocated.saturating_sub(n);
            }
        }
    }

    /// Tells every job with slots on TaskManager `id` that it is gone.
    fn tell_jobs_lost(&self, id: &str) {
        let jobs = self.jobs.lock().expect("job registry lock");
        for job in jobs.iter().filter(|j| j.slots.iter().any(|(tm, _)| tm == id)) {
            let lost = TaskManagerLost { task_manager_id: id.to_string() };
            let directive =
                JobDirective { directive: Some(job_directive::Directive::TaskManagerLost(lost)) };
            if let Some(d) = &job.directives {
                let _ = d.try_send(Ok(directive));
            }
        }
    }

    /// A job's client went: its slots are free again.
    fn release(&self, number: usize) {
        let mut jobs = self.jobs.lock().expect("job registry lock");
        let job = &mut jobs[number];
        job.directives = None;
        self.give_back(job);
        if !matches!(job.status.as_str(), "FINISHED" | "CANCELED" | "FAILED") {
            warn!(job = %job.name, job_id = %job.job_id, status = %job.status, "the job's client went away");
            job.status = "LOST".into();
        }
        info!(job = %job.name, job_id = %job.job_id, "job's slots released");
    }
}
