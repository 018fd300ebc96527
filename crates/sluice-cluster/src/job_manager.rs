//! The JobManager: the cluster's coordinator. It takes job submissions (the
//! Dispatcher's part in Flink): checks the job and any state it restores,
//! places it on the TaskManagers' free slots, deploys its first attempt and
//! hands it to a [`JobMaster`](crate::job_master) thread of its own, which
//! follows it to its end. The caller gets a [`JobClient`].

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::unbounded;
use rand::Rng;
use sluice_checkpoint::{CheckpointCoordinator, CheckpointStorage};
use sluice_core::{Result, SluiceError};
use sluice_runtime::job_graph::JobGraph;
use tracing::info;

use crate::failure_handler::{FailureHandler, DEFAULT_MAX_IDENTICAL_FAILURES};
use crate::job_checkpoints::JobCheckpoints;
use crate::job_client::{JobClient, JobParts, JobView};
use crate::job_master::{transition, JobMaster, StateMap};
use crate::job_status::{JobState, JobStatus};
use crate::remote::ResourceProvider;
use crate::restart_strategy::RestartStrategy;
use crate::scheduler::Scheduler;
use crate::task_manager::TaskManager;

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
    /// How many identical failures that restarting cannot heal (user code,
    /// malformed input, internal errors) end the job (default 3).
    pub max_identical_failures: Option<u32>,
    /// Start from a checkpoint or savepoint.
    pub restore: Option<RestoreSource>,
    /// Skip state of operators the job no longer has instead of refusing it.
    pub allow_non_restored_state: bool,
}

/// The default checkpoint directory when the job names none.
pub fn default_checkpoint_storage() -> String {
    std::env::temp_dir().join("sluice-checkpoints").display().to_string()
}

/// The JobManager of a cluster.
#[derive(Debug)]
pub struct JobManager {
    task_managers: Vec<Arc<TaskManager>>,
    resources: Option<Arc<dyn ResourceProvider>>,
}

impl std::fmt::Debug for dyn ResourceProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResourceProvider")
    }
}

impl JobManager {
    /// A JobManager scheduling onto `task_managers`.
    pub fn new(task_managers: Vec<Arc<TaskManager>>) -> Self {
        Self { task_managers, resources: None }
    }

    /// A JobManager whose first attempt runs on `task_managers` and whose
    /// restarts ask `resources` for TaskManagers again.
    pub fn with_resources(
        task_managers: Vec<Arc<TaskManager>>,
        resources: Arc<dyn ResourceProvider>,
    ) -> Self {
        Self { task_managers, resources: Some(resources) }
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
        let id = rand::rng().random::<u128>();
        let job_id = format!("{id:032x}");
        // The data plane names channels by the id's high half (as printed, first).
        let network_job = (id >> 64) as u64;
        let sg = &job_graph.stream_graph;
        let status = Arc::new(Mutex::new(JobState::new()));
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
        if let Some((_, state)) = &restored {
            check_restored_state(&job_graph, state, options.allow_non_restored_state)
                .map_err(fail)?;
        }
        let first_checkpoint_id = restored.as_ref().map_or(1, |(id, _)| id + 1);

        let scheduler = Scheduler::new(
            job_graph.clone(),
            self.task_managers.clone(),
            &self.free_slots(),
            network_job,
        )
        .map_err(fail)?;
        if let Some(resources) = &self.resources {
            resources.placed(&scheduler.placement());
        }
        let attempt =
            scheduler.deploy(0, restored.as_ref().map(|(id, state)| (*id, state))).map_err(fail)?;
        scheduler.allocate_slots();
        transition(&status, &sg.job_name, JobStatus::Running);

        let strategy = options.restart_strategy.clone().unwrap_or(if checkpoint_config.is_some() {
            RestartStrategy::exponential_default()
        } else {
            RestartStrategy::None
        });
        let total_tasks = scheduler.metrics.len();
        let stats = Arc::new(Mutex::new(Vec::new()));
        let exceptions = Arc::new(Mutex::new(Vec::new()));
        let cancel_requested = Arc::new(AtomicBool::new(false));
        let (commands_tx, commands) = unbounded();
        let execution_graph = scheduler.execution_graph.clone();
        let metrics = scheduler.metrics.clone();
        let job_master = JobMaster {
            job_id: job_id.clone(),
            scheduler,
            status: status.clone(),
            cancel_requested: cancel_requested.clone(),
            submitted,
            checkpoints: JobCheckpoints::new(
                job_id.clone(),
                sg.job_name.clone(),
                checkpoint_config
                    .map(|c| CheckpointCoordinator::new(c, total_tasks, first_checkpoint_id)),
                storage,
                restored,
                stats.clone(),
                cancel_requested.clone(),
            ),
            failures: FailureHandler::new(
                strategy,
                options.max_identical_failures.unwrap_or(DEFAULT_MAX_IDENTICAL_FAILURES),
            ),
            commands,
            exceptions: exceptions.clone(),
            restore_path: match &options.restore {
                Some(RestoreSource::Path(path)) => Some(path.clone()),
                _ => None,
            },
            resources: self.resources.clone(),
        };
        let master = std::thread::Builder::new()
            .name(format!("JobMaster {}", sg.job_name))
            .spawn(move || job_master.run(attempt))
            .map_err(|e| {
                SluiceError::Internal(format!("cannot start the job master thread: {e}"))
            })?;
        let view = JobView::new(JobParts {
            job_id,
            job_graph,
            execution_graph,
            state: status,
            cancel_requested,
            metrics,
            stats,
            exceptions,
            commands: commands_tx,
            task_managers: self.task_managers.clone(),
        });
        Ok(JobClient::new(view, master))
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
        .filter(|k| {
            let node = ["#in-flight", "#enumerator"]
                .iter()
                .find_map(|suffix| k.strip_suffix(suffix))
                .unwrap_or(k.as_str());
            !keys.contains(node)
        })
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
