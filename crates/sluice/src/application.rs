//! Flink's application mode for job programs built on this crate. A job's
//! closures cannot cross the network, so the same program is both the
//! client and the TaskManagers of its jobs:
//!
//! - `my-job ARGS` builds the job from `ARGS` and runs it on the embedded
//!   mini-cluster, or submits it to a standalone cluster with
//!   `--jobmanager HOST:PORT` (or `SLUICE_JOBMANAGER`) and follows it;
//! - `my-job taskmanager --jobmanager HOST:PORT [--slots N] [--id ID]
//!   [--data-address HOST:PORT] [--rpc-address HOST:PORT]` runs a
//!   TaskManager that builds the jobs it is sent from the client's `ARGS`
//!   with the same function, and refuses a job whose fingerprint differs
//!   from what it builds (another build or version of the program).
//!
//! Both take `--cluster-secret` (or `SLUICE_CLUSTER_SECRET`) and
//! `--tls-cert`, `--tls-key`, `--tls-ca`. The job's paths are read on the
//! TaskManagers' hosts: give them absolute.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_api::StreamExecutionEnvironment;
use sluice_cluster::JobExecutionResult;
use sluice_core::{Result, SluiceError};
use sluice_rpc::task_manager::TaskManagerConfig;
use sluice_rpc::{Security, TlsFiles};

/// Builds a job from the program's arguments.
pub type BuildJob = fn(&[String]) -> Result<StreamExecutionEnvironment>;

/// Runs the program in the role its arguments give (see the module's
/// documentation); the job's result, or `None` for a TaskManager.
pub fn run(job_name: &str, build: BuildJob) -> Result<Option<JobExecutionResult>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let security = take_security(&mut args)?;
    if args.first().is_some_and(|a| a == "taskmanager") {
        args.remove(0);
        let config = task_manager_config(&mut args, security)?;
        if let Some(unknown) = args.first() {
            return Err(SluiceError::Config(format!("taskmanager: unknown argument '{unknown}'")));
        }
        let builder = Arc::new(move |spec: &sluice_rpc::proto::JobSpec| {
            build(&spec.args)?.job(&spec.job_name).map(|(graph, _)| graph)
        });
        sluice_rpc::task_manager::run(config, builder)?;
        return Ok(None);
    }
    let job_manager = take(&mut args, "--jobmanager")?.or_else(|| env("SLUICE_JOBMANAGER"));
    let env = build(&args)?;
    let Some(job_manager) = job_manager else { return env.execute(job_name).map(Some) };
    let (job_graph, options) = env.job(job_name)?;
    let (client, session) =
        sluice_rpc::client::submit(&job_manager, &security, job_graph, options, args)?;
    let result = client.wait();
    session.close();
    result.map(Some)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Removes `--name VALUE` or `--name=VALUE` from `args`; its value.
fn take(args: &mut Vec<String>, name: &str) -> Result<Option<String>> {
    let prefix = format!("{name}=");
    let Some(i) = args.iter().position(|a| a == name || a.starts_with(&prefix)) else {
        return Ok(None);
    };
    let flag = args.remove(i);
    if let Some(value) = flag.strip_prefix(&prefix) {
        return Ok(Some(value.to_string()));
    }
    if i < args.len() {
        return Ok(Some(args.remove(i)));
    }
    Err(SluiceError::Config(format!("{name} needs a value")))
}

fn take_security(args: &mut Vec<String>) -> Result<Security> {
    let secret = take(args, "--cluster-secret")?.or_else(|| env("SLUICE_CLUSTER_SECRET"));
    let tls = match (take(args, "--tls-cert")?, take(args, "--tls-key")?, take(args, "--tls-ca")?) {
        (Some(cert), Some(key), Some(ca)) => {
            Some(TlsFiles { cert: cert.into(), key: key.into(), ca: ca.into() })
        }
        (None, None, None) => None,
        _ => {
            return Err(SluiceError::Config(
                "--tls-cert, --tls-key and --tls-ca go together".into(),
            ))
        }
    };
    Ok(Security { secret, tls })
}

fn task_manager_config(args: &mut Vec<String>, security: Security) -> Result<TaskManagerConfig> {
    let address = |args: &mut Vec<String>, name: &str| -> Result<SocketAddr> {
        let value = take(args, name)?.unwrap_or_else(|| "127.0.0.1:0".into());
        value.parse().map_err(|_| SluiceError::Config(format!("{name} '{value}' is not HOST:PORT")))
    };
    let slots = take(args, "--slots")?.unwrap_or_else(|| "1".into());
    Ok(TaskManagerConfig {
        job_manager: take(args, "--jobmanager")?
            .or_else(|| env("SLUICE_JOBMANAGER"))
            .unwrap_or_else(|| "127.0.0.1:6123".into()),
        id: take(args, "--id")?.unwrap_or_else(|| format!("taskmanager-{}", std::process::id())),
        slots: slots
            .parse()
            .map_err(|_| SluiceError::Config(format!("--slots '{slots}' is not a number")))?,
        data_address: address(args, "--data-address")?,
        rpc_address: address(args, "--rpc-address")?,
        security,
    })
}
