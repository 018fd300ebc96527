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
use crate::proto::{
    task_manager_command, HeartbeatRequest, ListTaskManagersRequest, RegisterTaskManagerRequest,
    TaskManagerInfo, UnregisterTaskManagerRequest,
};
use crate::Security;

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
    /// The cluster secret and TLS certificates.
    pub security: Security,
}

/// Runs the TaskManager until Ctrl-C (or SIGTERM).
pub fn run(config: TaskManagerConfig) -> Result<()> {
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
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        // Kept alive while unregistering: dropping it first would break the
        // registration stream, which the JobManager takes for a loss.
        let registered = stay_registered(&config, network.address());
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

/// Adds the cluster secret to every request.
#[derive(Clone)]
struct Secret(Option<String>);

impl tonic::service::Interceptor for Secret {
    fn call(&mut self, request: Request<()>) -> std::result::Result<Request<()>, tonic::Status> {
        crate::authorize(request, self.0.as_deref())
    }
}

type Client = JobManagerClient<InterceptedService<Channel, Secret>>;

fn client(channel: Channel, secret: Option<String>) -> Client {
    JobManagerClient::with_interceptor(channel, Secret(secret))
}

/// Registers, heartbeats, and registers again whenever the registration ends.
async fn stay_registered(config: &TaskManagerConfig, data_address: SocketAddr) -> Result<()> {
    let channel = connect(&config.job_manager, &config.security).await?;
    let mut jm = client(channel, config.security.secret.clone());
    let mut first = true;
    loop {
        let request = RegisterTaskManagerRequest {
            task_manager_id: config.id.clone(),
            data_address: data_address.to_string(),
            slots: config.slots,
            version: env!("CARGO_PKG_VERSION").into(),
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
        let endpoint = security.endpoint(job_manager)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| job_manager_error(job_manager, format!("unreachable: {e}")))?;
        let reply = client(channel, security.secret.clone())
            .list_task_managers(ListTaskManagersRequest {})
            .await
            .map_err(|s| job_manager_error(job_manager, s.message()))?;
        Ok(reply.into_inner().task_managers)
    })
}

/// An error talking to the JobManager at `address`: external, so a retry may help.
fn job_manager_error(address: &str, message: impl Into<String>) -> SluiceError {
    SluiceError::external(format!("JobManager at {address}"), message)
}
