//! A standalone TaskManager process: its data plane, its registration with
//! the JobManager, and its heartbeats. It registers again whenever the
//! JobManager forgets it (declared lost after a pause) or the connection
//! breaks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_core::{Result, SluiceError};
use sluice_runtime::network::{DataTls, NetworkConfig, NetworkEnvironment};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Request;
use tracing::{info, warn};

use crate::proto::job_manager_client::JobManagerClient;
use crate::proto::task_executor_server::TaskExecutorServer;
use crate::proto::{
    task_manager_command, HeartbeatRequest, ListTaskManagersRequest, RegisterTaskManagerRequest,
    TaskManagerInfo, UnregisterTaskManagerRequest,
};
use crate::task_executor::{Executor, JobBuilder};
use crate::Security;
use tokio_stream::wrappers::TcpListenerStream;

/// How long a TaskManager keeps trying to reach the JobManager at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a standalone TaskManager.
#[derive(Debug, Clone)]
pub struct TaskManagerConfig {
    /// The JobManager's RPC address, HOST:PORT.
    pub job_manager: String,
    /// This TaskManager's id, unique in the cluster.
    pub id: String,
    /// Number of slots it offers.
    pub slots: u32,
    /// Where its data plane listens (port 0: any free port).
    pub data_address: SocketAddr,
    /// Where its TaskExecutor service listens for JobMasters (port 0: any free port).
    pub rpc_address: SocketAddr,
    /// The cluster secret and TLS certificates.
    pub security: Security,
}

/// Runs the TaskManager until Ctrl-C (or SIGTERM); `builder` builds the
/// jobs it is asked to run, as the program that submits them does.
pub fn run(config: TaskManagerConfig, builder: JobBuilder) -> Result<()> {
    if config.slots == 0 {
        return Err(SluiceError::Config("--slots must be at least 1".into()));
    }
    let network = NetworkEnvironment::start(NetworkConfig {
        task_manager: config.id.clone(),
        bind: config.data_address,
        secret: config.security.secret.as_ref().map(|s| s.as_bytes().to_vec()),
        tls: config
            .security
            .tls
            .as_ref()
            .map(|t| DataTls::load(&t.cert, &t.key, &t.ca))
            .transpose()?,
    })?;
    if !config.security.protects() && !config.rpc_address.ip().is_loopback() {
        return Err(SluiceError::Config(format!(
            "--rpc-address {} is not on loopback, so the cluster needs a secret or TLS certificates",
            config.rpc_address
        )));
    }
    let runtime = runtime()?;
    let executor = Executor::new(network.clone(), builder);
    let result = runtime.block_on(async {
        let rpc_address = serve_executor(&config, executor).await?;
        // Kept alive while unregistering: dropping it first would break the
        // registration stream, which the JobManager takes for a loss.
        let registered = stay_registered(&config, network.address(), rpc_address);
        tokio::pin!(registered);
        tokio::select! {
            r = &mut registered => r,
            _ = crate::job_manager::shutdown_signal() => {
                info!(task_manager = %config.id, "TaskManager stopping");
                unregister(&config).await;
                Ok(())
            }
        }
    });
    network.shutdown();
    result
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("taskmanager-rpc")
        .enable_all()
        .build()
        .map_err(|e| SluiceError::Internal(format!("cannot start the RPC runtime: {e}")))
}

async fn connect(job_manager: &str, security: &Security) -> Result<Channel> {
    let endpoint = security.endpoint(job_manager)?.connect_timeout(Duration::from_secs(2));
    let started = Instant::now();
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) if started.elapsed() < CONNECT_TIMEOUT => {
                tracing::debug!("JobManager at {job_manager} not reachable yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(job_manager_error(
                    job_manager,
                    format!("unreachable for {CONNECT_TIMEOUT:?}: {e}"),
                ))
            }
        }
    }
}

/// Serves the TaskExecutor service; returns where it listens.
async fn serve_executor(config: &TaskManagerConfig, executor: Executor) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(config.rpc_address).await.map_err(|e| {
        SluiceError::Config(format!("cannot listen on --rpc-address {}: {e}", config.rpc_address))
    })?;
    let address = listener.local_addr().map_err(|e| SluiceError::Internal(e.to_string()))?;
    let secret = config.security.secret.clone();
    // Deployments carry restored state, which can be large.
    let server = TaskExecutorServer::new(executor)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let service = InterceptedService::new(server, move |request: Request<()>| {
        if crate::authorized(&request, secret.as_deref()) {
            return Ok(request);
        }
        let from = request.remote_addr().map_or("an unknown address".into(), |a| a.to_string());
        warn!(%from, "refused an RPC: wrong or missing cluster secret");
        Err(tonic::Status::unauthenticated("wrong or missing cluster secret"))
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = config.security.server_tls()? {
        builder = builder
            .tls_config(tls)
            .map_err(|e| SluiceError::Config(format!("the TLS certificates do not work: {e}")))?;
    }
    let router = builder.add_service(service);
    tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming(TcpListenerStream::new(listener)).await {
            warn!("the TaskExecutor service stopped: {e}");
        }
    });
    info!(task_manager = %config.id, %address, "TaskExecutor listening");
    Ok(address)
}

/// Adds the cluster secret to every request.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Option<String>);

impl tonic::service::Interceptor for Secret {
    fn call(&mut self, request: Request<()>) -> std::result::Result<Request<()>, tonic::Status> {
        crate::authorize(request, self.0.as_deref())
    }
}

type Client = JobManagerClient<InterceptedService<Channel, Secret>>;

pub(crate) fn client(channel: Channel, secret: Option<String>) -> Client {
    JobManagerClient::with_interceptor(channel, Secret(secret))
}

/// Registers, heartbeats, and registers again whenever the registration ends.
async fn stay_registered(
    config: &TaskManagerConfig,
    data_address: SocketAddr,
    rpc_address: SocketAddr,
) -> Result<()> {
    let channel = connect(&config.job_manager, &config.security).await?;
    let mut jm = client(channel, config.security.secret.clone());
    let mut first = true;
    loop {
        let request = RegisterTaskManagerRequest {
            task_manager_id: config.id.clone(),
            data_address: data_address.to_string(),
            slots: config.slots,
            version: env!("CARGO_PKG_VERSION").into(),
            rpc_address: rpc_address.to_string(),
        };
        let mut commands = match jm.register_task_manager(request).await {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Err(SluiceError::Config(format!(
                    "the JobManager at {} refused this TaskManager: {}",
                    config.job_manager,
                    status.message()
                )))
            }
            Err(status) if first => {
                return Err(job_manager_error(
                    &config.job_manager,
                    format!("registration failed: {}", status.message()),
                ))
            }
            Err(status) => {
                warn!(task_manager = %config.id, "registration failed, retrying: {}", status.message());
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let interval = match commands.message().await {
            Ok(Some(command)) => match command.command {
                Some(task_manager_command::Command::Registered(r)) => {
                    Duration::from_millis(r.heartbeat_interval_ms.max(1))
                }
                None => Duration::from_secs(1),
            },
            _ => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        info!(
            task_manager = %config.id,
            job_manager = %config.job_manager,
            slots = config.slots,
            %data_address,
            "registered with the JobManager"
        );
        first = false;
        let reason = heartbeat_until_lost(&mut jm, &mut commands, &config.id, interval).await;
        warn!(task_manager = %config.id, "{reason}; registering again");
    }
}

/// Sends heartbeats until the JobManager forgets this TaskManager or the
/// command stream ends; returns why.
async fn heartbeat_until_lost(
    jm: &mut Client,
    commands: &mut tonic::Streaming<crate::proto::TaskManagerCommand>,
    id: &str,
    interval: Duration,
) -> String {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match jm.heartbeat(HeartbeatRequest { task_manager_id: id.to_string() }).await {
                    Ok(r) if !r.get_ref().known => return "the JobManager declared this TaskManager lost".into(),
                    Ok(_) => {}
                    Err(status) => return format!("a heartbeat failed: {}", status.message()),
                }
            }
            command = commands.message() => match command {
                Ok(Some(_)) => {}
                Ok(None) => return "the JobManager ended the registration".into(),
                Err(status) => return format!("the connection to the JobManager broke: {}", status.message()),
            }
        }
    }
}

/// Tells the JobManager this TaskManager stops (best effort: if it cannot
/// be told in a second, it finds out as a loss).
async fn unregister(config: &TaskManagerConfig) {
    let tell = async {
        let endpoint = config.security.endpoint(&config.job_manager).ok()?;
        let mut jm = client(endpoint.connect().await.ok()?, config.security.secret.clone());
        jm.unregister_task_manager(UnregisterTaskManagerRequest {
            task_manager_id: config.id.clone(),
        })
        .await
        .ok()
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), tell).await;
}

/// The TaskManagers registered with the JobManager at `job_manager`.
pub fn list_task_managers(job_manager: &str, security: &Security) -> Result<Vec<TaskManagerInfo>> {
    runtime()?.block_on(async {
        let reply = connect_once(job_manager, security)
            .await?
            .list_task_managers(ListTaskManagersRequest {})
            .await
            .map_err(|s| job_manager_error(job_manager, s.message()))?;
        Ok(reply.into_inner().task_managers)
    })
}

/// The jobs the cluster at `job_manager` runs and ran.
pub fn list_jobs(job_manager: &str, security: &Security) -> Result<Vec<crate::proto::JobInfo>> {
    runtime()?.block_on(async {
        let mut jm = connect_once(job_manager, security).await?;
        let reply = jm
            .list_jobs(crate::proto::ListJobsRequest {})
            .await
            .map_err(|s| job_manager_error(job_manager, s.message()))?;
        Ok(reply.into_inner().jobs)
    })
}

/// Asks the cluster at `job_manager` to cancel job `job_id`.
pub fn cancel_job(job_manager: &str, security: &Security, job_id: &str) -> Result<()> {
    runtime()?.block_on(async {
        let mut jm = connect_once(job_manager, security).await?;
        jm.cancel_job(crate::proto::CancelJobRequest { job_id: job_id.to_string() })
            .await
            .map_err(|s| job_command_error(job_manager, &s))?;
        Ok(())
    })
}

/// Takes a savepoint of job `job_id` into `directory` (and stops the job
/// after it if `stop`); the savepoint's path.
pub fn trigger_savepoint(
    job_manager: &str,
    security: &Security,
    job_id: &str,
    directory: &str,
    stop: bool,
) -> Result<String> {
    runtime()?.block_on(async {
        let mut jm = connect_once(job_manager, security).await?;
        let request = crate::proto::SavepointRequest {
            job_id: job_id.to_string(),
            directory: directory.to_string(),
            stop,
            request_id: 0,
        };
        let reply =
            jm.trigger_savepoint(request).await.map_err(|s| job_command_error(job_manager, &s))?;
        Ok(reply.into_inner().path)
    })
}

/// A refused command about a job: no such job, or one that ended, is the
/// user's to fix; anything else is the JobManager's.
fn job_command_error(job_manager: &str, status: &tonic::Status) -> SluiceError {
    match status.code() {
        tonic::Code::NotFound | tonic::Code::FailedPrecondition => {
            SluiceError::Config(status.message().to_string())
        }
        _ => job_manager_error(job_manager, status.message()),
    }
}

async fn connect_once(job_manager: &str, security: &Security) -> Result<Client> {
    let channel = security
        .endpoint(job_manager)?
        .connect()
        .await
        .map_err(|e| job_manager_error(job_manager, format!("unreachable: {e}")))?;
    Ok(client(channel, security.secret.clone()))
}

/// An error talking to the JobManager at `address`: external, so a retry may help.
pub(crate) fn job_manager_error(address: &str, message: impl Into<String>) -> SluiceError {
    SluiceError::external(format!("JobManager at {address}"), message)
}
