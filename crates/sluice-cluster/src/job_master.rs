//! The JobMaster: follows one job through its attempts. It runs an attempt
//! until every subtask ended; the first failure fails the attempt (every
//! other subtask is cancelled), and the [`FailureHandler`] decides whether a
//! new attempt starts from the latest completed checkpoint, after how long,
//! or whether the job fails. Every restart is logged at WARN with its number,
//! delay and cause, so a restarting job is never silent.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use sluice_checkpoint::OperatorSnapshot;
use sluice_core::{Result, SluiceError};
use sluice_runtime::task::TaskEvent;
use tracing::{info, warn};

use crate::failure_handler::{FailureDecision, FailureHandler};
use crate::job_checkpoints::JobCheckpoints;
use crate::job_client::{vertex_metrics, JobException, JobExecutionResult};
use crate::job_status::{JobState, JobStatus};
use crate::remote::ResourceProvider;
use crate::scheduler::{Attempt, Scheduler};
use crate::source_coordinator::{CoordinatorEvent, SourceCoordinator};
use sluice_runtime::execution_graph::ExecutionGraph;

/// Operator state key → subtask snapshots, as a checkpoint holds them.
pub(crate) type StateMap = BTreeMap<String, Vec<OperatorSnapshot>>;

/// A request from a [`JobClient`](crate::JobClient) to the JobMaster.
pub(crate) enum JobCommand {
    /// Take a savepoint into `dir`; stop the job after it if `stop`.
    Savepoint { dir: String, stop: bool, reply: Sender<Result<String>> },
}

/// How one attempt ended.
enum AttemptEnd {
    Finished,
    Cancelled,
    Failed(SluiceError),
}

/// Follows one job: its attempts, checkpoints and restarts.
pub(crate) struct JobMaster {
    pub(crate) job_id: String,
    pub(crate) scheduler: Scheduler,
    pub(crate) status: Arc<Mutex<JobState>>,
    pub(crate) cancel_requested: Arc<AtomicBool>,
    pub(crate) submitted: Instant,
    pub(crate) checkpoints: JobCheckpoints,
    pub(crate) failures: FailureHandler,
    pub(crate) commands: Receiver<JobCommand>,
    /// The job's failures, for its client.
    pub(crate) exceptions: Arc<Mutex<Vec<JobException>>>,
    /// The directory the job was submitted to restore from, until the first
    /// attempt's restore is recorded.
    pub(crate) restore_path: Option<String>,
    /// Where restarts find TaskManagers, when they can come and go.
    pub(crate) resources: Option<Arc<dyn ResourceProvider>>,
}

impl JobMaster {
    fn name(&self) -> &str {
        &self.scheduler.job_graph.stream_graph.job_name
    }

    fn now(&self) -> i64 {
        self.scheduler.job_graph.stream_graph.clock.now()
    }

    fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Relaxed)
    }

    /// Runs the job from its first attempt to its end.
    pub(crate) fn run(mut self, first: Attempt) -> Result<JobExecutionResult> {
        let outcome = self.run_attempts(first);
        self.scheduler.release_slots();
        let final_status = match &outcome {
            Ok(()) => JobStatus::Finished,
            Err(SluiceError::Cancelled) => JobStatus::Canceled,
            Err(_) => JobStatus::Failed,
        };
        transition(&self.status, self.name(), final_status);
        outcome.map(|()| JobExecutionResult {
            job_id: self.job_id.clone(),
            job_name: self.name().to_string(),
            duration: self.submitted.elapsed(),
            vertices: vertex_metrics(&self.scheduler.job_graph, &self.scheduler.metrics),
            restarts: self.failures.restarts(),
            checkpoints: self.checkpoints.stats(),
        })
    }

    /// The attempt loop: run, and after a failure restart or give up.
    fn run_attempts(&mut self, first: Attempt) -> Result<()> {
        let mut attempt = first;
        loop {
            let end = self.run_attempt(&mut attempt);
            for t in std::mem::take(&mut attempt.threads) {
                let _ = t.join();
            }
            self.scheduler.release_attempt(attempt.number);
            let error = match end {
                AttemptEnd::Finished => {
                    match self
                        .final_commits(&mut attempt)
                        .and_then(|()| self.merge_accumulators(&mut attempt))
                    {
                        Ok(()) => return Ok(()),
                        Err(e) => e,
                    }
                }
                AttemptEnd::Cancelled => {
                    // What the sinks got until the job stopped (a stop with a savepoint).
                    self.merge_accumulators(&mut attempt)?;
                    return Err(SluiceError::Cancelled);
                }
                AttemptEnd::Failed(e) => e,
            };
            attempt = self.restart(attempt.number, error)?;
            transition(&self.status, self.name(), JobStatus::Running);
        }
    }

    /// After attempt `number` failed with `error`: restarts under the
    /// failure handler, or fails the job. A deployment that fails (a data
    /// connection lost again while channels are registered) is a failed
    /// attempt like any other.
    fn restart(&mut self, mut number: usize, mut error: SluiceError) -> Result<Attempt> {
        loop {
            let latest = self.checkpoints.latest_id();
            let decision = self.failures.on_failure(&error, latest, self.now());
            self.exceptions.lock().expect("exceptions lock").push(JobException {
                timestamp: self.now(),
                cause: error.report().to_string(),
                origin: error.origin(),
                restarted: matches!(decision, FailureDecision::Restart { .. }),
            });
            let delay = match decision {
                FailureDecision::Fail { reason } => {
                    return Err(SluiceError::JobFailed {
                        job: self.name().to_string(),
                        reason,
                        cause: Box::new(error),
                    });
                }
                FailureDecision::Restart { delay, restart } => {
                    let from = match latest {
                        Some(id) => format!("checkpoint {id}"),
                        None => "the beginning".to_string(),
                    };
                    warn!(
                        "job '{}' failed; attempt {} (restart {restart}) starts in {delay:?} from {from}. Cause: {}",
                        self.name(),
                        number + 2,
                        error.report()
                    );
                    delay
                }
            };
            transition(&self.status, self.name(), JobStatus::Restarting);
            if self.wait_unless_cancelled(delay) {
                transition(&self.status, self.name(), JobStatus::Cancelling);
                return Err(SluiceError::Cancelled);
            }
            number += 1;
            match self.place_and_deploy(number) {
                Ok(attempt) => return Ok(attempt),
                Err(e) => {
                    self.scheduler.release_attempt(number);
                    error = e;
                }
            }
        }
    }

    /// Deploys attempt `number`, first placing the job again on the
    /// TaskManagers there are now, if they can come and go.
    fn place_and_deploy(&mut self, number: usize) -> Result<Attempt> {
        if let Some(resources) = &self.resources {
            let slots = ExecutionGraph::slots_needed(&self.scheduler.job_graph);
            let task_managers = resources.task_managers_for_attempt(slots)?;
            self.scheduler.place_on(task_managers)?;
            resources.placed(&self.scheduler.placement());
        }
        self.scheduler.deploy(number, self.checkpoints.latest())
    }

    /// Every task finished: what transactional sinks held back becomes
    /// visible now. Commits are idempotent, so a failed one is retried
    /// (a restart instead would replay what other commits made visible).
    fn final_commits(&mut self, attempt: &mut Attempt) -> Result<()> {
        for commit in std::mem::take(&mut attempt.final_commits) {
            let mut tries = 0;
            while let Err(e) = commit.run() {
                tries += 1;
                if tries == 5 {
                    return Err(e);
                }
                warn!(
                    "job '{}': final commit failed (try {tries} of 5): {}",
                    self.name(),
                    e.report()
                );
                std::thread::sleep(Duration::from_millis(100 << tries));
            }
        }
        Ok(())
    }

    /// The attempt that finished the job gives the sinks' accumulators to
    /// their sinks here, where the job was submitted; a failed attempt's
    /// are dropped, so a restart counts nothing twice.
    fn merge_accumulators(&self, attempt: &mut Attempt) -> Result<()> {
        let sg = &self.scheduler.job_graph.stream_graph;
        for (key, bytes) in std::mem::take(&mut attempt.accumulators) {
            let node = sg.nodes.iter().find(|n| n.state_key() == key).map(|n| n.id);
            if let Some((_, merge)) = sg.accumulators.iter().find(|(id, _)| Some(*id) == node) {
                merge(&bytes)?;
            }
        }
        Ok(())
    }

    /// Waits out a restart delay; true if the job was cancelled meanwhile.
    fn wait_unless_cancelled(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            if self.cancel_requested() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // Savepoints cannot be taken while no attempt runs: refuse them at once.
            while let Ok(JobCommand::Savepoint { reply, .. }) = self.commands.try_recv() {
                let _ = reply.send(Err(SluiceError::InvalidJob(
                    "cannot take a savepoint: the job is restarting".into(),
                )));
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }

    /// Runs `hook` on the coordinator of source `vertex`; its error fails the attempt.
    fn on_coordinator(
        &mut self,
        attempt: &mut Attempt,
        vertex: usize,
        hook: impl FnOnce(&mut SourceCoordinator) -> Result<()>,
    ) -> Option<SluiceError> {
        let coordinator = attempt.coordinators.iter_mut().find(|c| c.vertex() == vertex)?;
        hook(coordinator).err()
    }

    /// Tells every subtask of the attempt to stop, and ends its remote
    /// channels: a task waiting for credit from a TaskManager that will
    /// never grant it (its receiver failed) wakes, as it would when an
    /// in-memory receiver is dropped.
    fn stop_attempt(&self, attempt: &Attempt) {
        attempt.cancel.store(true, Ordering::Relaxed);
        self.scheduler.release_attempt(attempt.number);
    }

    fn run_attempt(&mut self, attempt: &mut Attempt) -> AttemptEnd {
        let now = self.now();
        self.checkpoints.start_attempt(now);
        // Every attempt is deployed from the latest checkpoint, if there is one.
        if let Some(id) = self.checkpoints.latest_id() {
            let path = self.restore_path.take();
            self.status.lock().expect("job status lock").restored(id, path);
        }
        // Every subtask reports its end; threads may run several remote ones.
        let total = self.scheduler.metrics.len();
        let mut finished = HashSet::new();
        let mut failure: Option<SluiceError> = None;
        let mut a_task_finished = false;
        loop {
            if finished.len() == total {
                return match failure {
                    Some(e) => AttemptEnd::Failed(e),
                    None if self.cancel_requested() => AttemptEnd::Cancelled,
                    None => AttemptEnd::Finished,
                };
            }
            if self.cancel_requested() && !attempt.cancel.load(Ordering::Relaxed) {
                transition(&self.status, self.name(), JobStatus::Cancelling);
                self.stop_attempt(attempt);
            }
            let mut failed = None;
            let event = crossbeam_channel::select! {
                recv(attempt.events) -> event => Some(event),
                recv(attempt.coordinator_events) -> report => {
                    if let Ok(CoordinatorEvent { vertex, result }) = report {
                        failed = self.on_coordinator(attempt, vertex, |c| c.handle_discovered(result));
                    }
                    None
                }
                default(Duration::from_millis(10)) => None,
            };
            match event {
                None => {}
                Some(Ok(TaskEvent::Finished {
                    vertex,
                    subtask_index,
                    result,
                    final_commits,
                    accumulators,
                })) => {
                    finished.insert((vertex, subtask_index));
                    attempt.final_commits.extend(final_commits);
                    attempt.accumulators.extend(accumulators);
                    match result {
                        Ok(()) => {
                            // Checkpoints need every task; one has finished, so no more are taken.
                            a_task_finished = true;
                            let now = self.now();
                            self.checkpoints.fail_pending(
                                "a task finished before the checkpoint completed",
                                now,
                            );
                        }
                        Err(SluiceError::Cancelled) => {}
                        Err(_) if self.cancel_requested() => {}
                        Err(e) => failed = Some(e),
                    }
                }
                Some(Ok(TaskEvent::Acknowledged {
                    vertex,
                    subtask_index,
                    checkpoint_id,
                    states,
                    durations,
                })) => {
                    let task = self
                        .scheduler
                        .metrics
                        .iter()
                        .position(|(v, i, _)| *v == vertex && *i == subtask_index)
                        .unwrap_or(0);
                    let parallelism = self.scheduler.job_graph.vertices[vertex].parallelism;
                    let now = self.now();
                    failed = self
                        .checkpoints
                        .on_ack(
                            attempt,
                            task,
                            parallelism,
                            subtask_index,
                            checkpoint_id,
                            states,
                            durations,
                            now,
                        )
                        .err();
                }
                Some(Ok(TaskEvent::Declined { checkpoint_id, reason, .. })) => {
                    let now = self.now();
                    failed = self.checkpoints.on_declined(checkpoint_id, &reason, now).err();
                }
                Some(Ok(TaskEvent::SplitRequest { vertex, subtask_index, finished })) => {
                    failed = self.on_coordinator(attempt, vertex, |c| {
                        c.handle_split_request(subtask_index, &finished)
                    });
                }
                Some(Err(_)) => {
                    return AttemptEnd::Failed(SluiceError::Internal(
                        "every task's event channel closed".into(),
                    ));
                }
            }
            if let Some(e) = failed.filter(|_| failure.is_none()) {
                info!(job = %self.name(), error = %e.report(), "failing the attempt");
                transition(&self.status, self.name(), JobStatus::Failing);
                self.stop_attempt(attempt);
                let now = self.now();
                self.checkpoints.fail_pending("a task failed", now);
                failure = Some(e);
            }
            let ending = failure.is_some() || a_task_finished;
            while let Ok(JobCommand::Savepoint { dir, stop, reply }) = self.commands.try_recv() {
                let now = self.now();
                self.checkpoints.request_savepoint(dir, stop, reply, attempt, ending, now);
            }
            if !ending && !attempt.cancel.load(Ordering::Relaxed) {
                let now = self.now();
                self.checkpoints.maybe_trigger(attempt, now);
            }
        }
    }
}

/// Moves the job to `next` if the state machine allows it, logging the transition.
pub(crate) fn transition(state: &Mutex<JobState>, job: &str, next: JobStatus) {
    let mut s = state.lock().expect("job status lock");
    if s.status.can_become(next) {
        info!(job, from = ?s.status, to = ?next, "job status");
        s.enter(next);
    } else {
        warn!(job, from = ?s.status, to = ?next, "illegal job status transition ignored");
    }
}
