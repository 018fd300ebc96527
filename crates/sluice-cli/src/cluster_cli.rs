//! `sluice jobmanager`, `sluice taskmanager` and `sluice task-managers`: the
//! processes of a standalone cluster and a look at it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use sluice_rpc::job_manager::JobManagerConfig;
use sluice_rpc::task_executor::JobBuilder;
use sluice_rpc::task_manager::TaskManagerConfig;
use sluice_rpc::{Security, TlsFiles};

use crate::parse_duration;

/// How the processes of a cluster prove who they are: a shared secret,
/// mutual TLS, or both; with neither, the cluster listens on loopback only.
#[derive(Args, Debug, Clone)]
pub struct SecurityArgs {
    /// Secret every RPC and data connection must prove.
    #[arg(long, env = "SLUICE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// This process's TLS certificate (PEM), for RPCs over mutual TLS.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that signs every process of the cluster.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
}

impl SecurityArgs {
    /// The cluster security these flags give.
    pub fn security(self) -> Security {
        let tls = match (self.tls_cert, self.tls_key, self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
            _ => None,
        };
        Security { secret: self.cluster_secret, tls }
    }
}

/// Where a job runs when not on the mini-cluster: a standalone cluster's
/// JobManager, and how to prove membership of its cluster.
#[derive(Args, Debug, Clone)]
pub struct SubmitArgs {
    /// Run on the standalone cluster whose JobManager is here (HOST:PORT),
    /// on TaskManagers started with `sluice taskmanager`, instead of the mini-cluster.
    #[arg(long, env = "SLUICE_JOBMANAGER", conflicts_with = "task_managers")]
    pub jobmanager: Option<String>,
    #[command(flatten)]
    pub security: SecurityArgs,
}

impl SubmitArgs {
    /// The JobManager's address and the cluster's security, if a cluster is named.
    pub fn cluster(&self) -> Option<(String, Security)> {
        let job_manager = self.jobmanager.clone()?;
        Some((job_manager, self.security.clone().security()))
    }
}

/// `sluice jobmanager` options.
#[derive(Args, Debug)]
pub struct JobManagerArgs {
    /// Where TaskManagers and clients reach the JobManager.
    #[arg(long, default_value = "127.0.0.1:6123")]
    pub rpc_address: SocketAddr,
    /// How often TaskManagers send heartbeats.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub heartbeat_interval: Duration,
    /// A TaskManager silent this long is lost (a broken connection is lost at once).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub heartbeat_timeout: Duration,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// `sluice taskmanager` options.
#[derive(Args, Debug)]
pub struct TaskManagerArgs {
    /// The JobManager's RPC address.
    #[arg(long, default_value = "127.0.0.1:6123")]
    pub jobmanager: String,
    /// Slots this TaskManager offers.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Where its data plane listens (other TaskManagers connect here).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub data_address: SocketAddr,
    /// Where its TaskExecutor service listens (JobMasters deploy subtasks here).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub rpc_address: SocketAddr,
    /// Its id in the cluster (default: host name and process id).
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// `sluice task-managers` options.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// The JobManager's RPC address.
    #[arg(long, default_value = "127.0.0.1:6123")]
    pub jobmanager: String,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Runs a JobManager until Ctrl-C.
pub fn job_manager(args: JobManagerArgs) -> Result<()> {
    sluice_rpc::job_manager::run(JobManagerConfig {
        rpc_address: args.rpc_address,
        security: args.security.security(),
        heartbeat_interval: args.heartbeat_interval,
        heartbeat_timeout: args.heartbeat_timeout,
    })?;
    Ok(())
}

/// Runs a TaskManager until Ctrl-C; it builds the jobs it runs with `builder`.
pub fn task_manager(args: TaskManagerArgs, builder: JobBuilder) -> Result<()> {
    let id = args.id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    sluice_rpc::task_manager::run(
        TaskManagerConfig {
            job_manager: args.jobmanager,
            id,
            slots: args.slots,
            data_address: args.data_address,
            rpc_address: args.rpc_address,
            security: args.security.security(),
        },
        builder,
    )?;
    Ok(())
}

/// Prints the registered TaskManagers.
pub fn list(args: ListArgs) -> Result<()> {
    let tms =
        sluice_rpc::task_manager::list_task_managers(&args.jobmanager, &args.security.security())?;
    println!(
        "{:<24}{:>7}{:>7}  {:<22}{:>16}",
        "task manager", "slots", "free", "data address", "last heartbeat"
    );
    for tm in &tms {
        println!(
            "{:<24}{:>7}{:>7}  {:<22}{:>13} ms",
            tm.task_manager_id, tm.slots, tm.free_slots, tm.data_address, tm.last_heartbeat_ms_ago
        );
    }
    println!("{} TaskManagers, {} slots", tms.len(), tms.iter().map(|t| t.slots).sum::<u32>());
    Ok(())
}

/// Prints the jobs of a standalone cluster.
pub fn list_jobs(args: ListArgs) -> Result<()> {
    let jobs = sluice_rpc::task_manager::list_jobs(&args.jobmanager, &args.security.security())?;
    println!("{:<34}{:<24}{:<12}{:>6}{:>16}", "job id", "name", "status", "slots", "submitted");
    for j in &jobs {
        let id = if j.job_id.is_empty() { "(submitting)" } else { &j.job_id };
        println!(
            "{:<34}{:<24}{:<12}{:>6}{:>10.1} s ago",
            id,
            j.job_name,
            j.status,
            j.slots,
            j.submitted_ms_ago as f64 / 1000.0
        );
    }
    Ok(())
}

/// Cancels a job of a standalone cluster.
pub fn cancel(job_id: &str, args: ListArgs) -> Result<()> {
    sluice_rpc::task_manager::cancel_job(&args.jobmanager, &args.security.security(), job_id)?;
    println!("cancellation of job {job_id} requested");
    Ok(())
}

/// Takes a savepoint of a job of a standalone cluster, stopping it after if `stop`.
pub fn savepoint(job_id: &str, directory: &str, stop: bool, args: ListArgs) -> Result<()> {
    // A relative directory means the one the user is in.
    let directory = match directory.contains("://") {
        true => directory.to_string(),
        false => std::path::absolute(directory)?.display().to_string(),
    };
    let path = sluice_rpc::task_manager::trigger_savepoint(
        &args.jobmanager,
        &args.security.security(),
        job_id,
        &directory,
        stop,
    )?;
    match stop {
        true => println!("job {job_id} stopped with a savepoint at {path}"),
        false => println!("savepoint of job {job_id} written to {path}"),
    }
    Ok(())
}

/// The job's plan placed on the standalone cluster's free slots as they are
/// now, the way the JobManager offers them (TaskManager by TaskManager in id
/// order).
pub fn plan_on_cluster(
    env: &sluice::StreamExecutionEnvironment,
    name: &str,
    job_manager: &str,
    security: &Security,
) -> Result<sluice_runtime::plan::Plan> {
    use sluice_runtime::execution_graph::{ExecutionGraph, SlotId};
    let (job_graph, _) = env.job(name)?;
    let mut tms = sluice_rpc::task_manager::list_task_managers(job_manager, security)?;
    tms.sort_by(|a, b| a.task_manager_id.cmp(&b.task_manager_id));
    let mut wanted = ExecutionGraph::slots_needed(&job_graph);
    let mut slots = Vec::new();
    let mut ids = Vec::new();
    for tm in tms.iter().filter(|t| t.free_slots > 0) {
        let take = (tm.free_slots as usize).min(wanted);
        if take == 0 {
            break;
        }
        slots.extend((0..take).map(|slot| SlotId { task_manager: ids.len(), slot }));
        ids.push(tm.task_manager_id.clone());
        wanted -= take;
    }
    let placed = ExecutionGraph::schedule(&job_graph, &slots)?;
    Ok(sluice_runtime::plan::Plan::new(&job_graph, placed).with_task_managers(ids))
}
