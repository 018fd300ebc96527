//! The checkpoints of one job as its JobMaster runs them: triggering at the
//! sources, collecting acknowledgements, writing a checkpoint once every
//! subtask acknowledged it (or a savepoint into the user's directory), and
//! notifying the tasks. The decisions — when to trigger, when a checkpoint
//! completed, timed out or must fail the job — are the plain
//! [`CheckpointCoordinator`]'s; this type does the I/O around them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use sluice_checkpoint::checkpoint_coordinator::SubtaskAck;
use sluice_checkpoint::checkpoint_storage::SubtaskState;
use sluice_checkpoint::{
    CheckpointCoordinator, CheckpointMetadata, CheckpointOutcome, CheckpointStats,
    CheckpointStorage, OperatorSnapshot,
};
use sluice_core::{CheckpointBarrier, Result, SluiceError};
use sluice_runtime::split_enumerator::enumerator_key;
use sluice_runtime::task::{SnapshotDurations, TaskControl};
use tracing::{info, warn};

use crate::job_master::StateMap;
use crate::scheduler::Attempt;

/// A savepoint in progress: where it goes and who waits for it.
struct PendingSavepoint {
    /// 0 until the savepoint's checkpoint is triggered.
    checkpoint_id: u64,
    dir: String,
    stop: bool,
    reply: Sender<Result<String>>,
}

/// The checkpoints of one job.
pub(crate) struct JobCheckpoints {
    job_id: String,
    job_name: String,
    coordinator: Option<CheckpointCoordinator>,
    storage: Option<CheckpointStorage>,
    /// The latest completed checkpoint (its id and state): where a restart starts.
    latest: Option<(u64, StateMap)>,
    /// Acknowledged states of the pending checkpoint.
    acked: Vec<SubtaskState>,
    stats: Arc<Mutex<Vec<CheckpointStats>>>,
    savepoint: Option<PendingSavepoint>,
    /// Set when a stop-with-savepoint's savepoint is written.
    stop_requested: Arc<AtomicBool>,
}

impl JobCheckpoints {
    pub(crate) fn new(
        job_id: String,
        job_name: String,
        coordinator: Option<CheckpointCoordinator>,
        storage: Option<CheckpointStorage>,
        restored: Option<(u64, StateMap)>,
        stats: Arc<Mutex<Vec<CheckpointStats>>>,
        stop_requested: Arc<AtomicBool>,
    ) -> Self {
        Self {
            job_id,
            job_name,
            coordinator,
            storage,
            latest: restored,
            acked: Vec::new(),
            stats,
            savepoint: None,
            stop_requested,
        }
    }

    /// The latest completed checkpoint's id.
    pub(crate) fn latest_id(&self) -> Option<u64> {
        self.latest.as_ref().map(|(id, _)| *id)
    }

    /// The latest completed checkpoint: its id and state.
    pub(crate) fn latest(&self) -> Option<(u64, &StateMap)> {
        self.latest.as_ref().map(|(id, state)| (*id, state))
    }

    /// Asks for a savepoint into `dir`, taken as soon as no checkpoint is
    /// pending; `reply` gets its path or why it cannot be taken.
    pub(crate) fn request_savepoint(
        &mut self,
        dir: String,
        stop: bool,
        reply: Sender<Result<String>>,
        attempt: &mut Attempt,
        ending: bool,
        now: i64,
    ) {
        let refusal = if self.coordinator.is_none() {
            Some("savepoints need checkpointing enabled for the job")
        } else if ending {
            Some("the job is failing or finishing")
        } else if self.savepoint.is_some() {
            Some("a savepoint is already in progress")
        } else {
            None
        };
        if let Some(why) = refusal {
            let _ =
                reply.send(Err(SluiceError::InvalidJob(format!("cannot take a savepoint: {why}"))));
            return;
        }
        self.savepoint = Some(PendingSavepoint { checkpoint_id: 0, dir, stop, reply });
        self.maybe_trigger(attempt, now);
    }

    /// A new attempt runs from `now`: its first checkpoint is one interval away.
    pub(crate) fn start_attempt(&mut self, now: i64) {
        if let Some(coordinator) = self.coordinator.as_mut() {
            coordinator.start_scheduler(now);
        }
    }

    /// Triggers a checkpoint when one is due (or a savepoint waits): the
    /// split enumerators' snapshots first, then the triggers at the sources,
    /// with no assignment in between.
    pub(crate) fn maybe_trigger(&mut self, attempt: &mut Attempt, now: i64) {
        let Some(coordinator) = self.coordinator.as_mut() else { return };
        if let Some(outcome) = coordinator.check_timeout(now) {
            warn!(job = %self.job_name, ?outcome, "checkpoint timed out");
            self.acked.clear();
        }
        let savepoint_waiting = self.savepoint.as_ref().is_some_and(|s| s.checkpoint_id == 0);
        let due =
            coordinator.trigger_due(now) || (savepoint_waiting && coordinator.pending().is_none());
        if !due {
            return;
        }
        let id = coordinator.trigger(now);
        if let Some(s) = self.savepoint.as_mut().filter(|s| s.checkpoint_id == 0) {
            s.checkpoint_id = id;
            coordinator.mark_savepoint(id);
        }
        self.acked.clear();
        for coordinator in &mut attempt.coordinators {
            match coordinator.snapshot_state() {
                Ok(state) => self.acked.push(SubtaskState {
                    key: enumerator_key(coordinator.state_key()),
                    parallelism: 1,
                    subtask: 0,
                    snapshot: OperatorSnapshot { keyed: Vec::new(), operator: vec![state] },
                }),
                Err(e) => {
                    let reason = format!("the split enumerator cannot snapshot: {}", e.report());
                    self.fail_pending(&reason, now);
                    return;
                }
            }
        }
        let savepoint = self.savepoint.as_ref().is_some_and(|s| s.checkpoint_id == id);
        let barrier = CheckpointBarrier { id, timestamp: now, savepoint };
        for (is_source, control) in &attempt.controls {
            if *is_source {
                let _ = control.send(TaskControl::TriggerCheckpoint(barrier));
            }
        }
        self.publish_stats();
    }

    /// Fails the pending checkpoint (and a savepoint waiting on it), if any.
    pub(crate) fn fail_pending(&mut self, reason: &str, now: i64) {
        let Some(c) = self.coordinator.as_mut() else { return };
        let Some(id) = c.pending() else { return };
        c.fail(id, reason, now);
        self.acked.clear();
        self.publish_stats();
        if let Some(s) = self.savepoint.take_if(|s| s.checkpoint_id == id) {
            let _ = s.reply.send(Err(SluiceError::external(
                "savepoint",
                format!("checkpoint {id} failed: {reason}"),
            )));
        }
    }

    /// A subtask declined checkpoint `id`; an error when too many checkpoints failed.
    pub(crate) fn on_declined(&mut self, id: u64, reason: &str, now: i64) -> Result<()> {
        let outcome = self.coordinator.as_mut().and_then(|c| c.fail(id, reason, now));
        self.acked.clear();
        self.publish_stats();
        if let Some(CheckpointOutcome::FailJob(msg)) = outcome {
            return Err(SluiceError::external("checkpointing", msg));
        }
        warn!(job = %self.job_name, checkpoint = id, %reason, "checkpoint declined");
        Ok(())
    }

    /// Subtask `subtask` of a vertex of `parallelism` acknowledged checkpoint
    /// `id` with its states; `task` is its index among all subtasks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_ack(
        &mut self,
        attempt: &Attempt,
        task: usize,
        parallelism: usize,
        subtask: usize,
        id: u64,
        states: Vec<(String, OperatorSnapshot)>,
        durations: SnapshotDurations,
        now: i64,
    ) -> Result<()> {
        let Some(coordinator) = self.coordinator.as_mut() else { return Ok(()) };
        if coordinator.pending() != Some(id) {
            return Ok(());
        }
        let mut size = 0;
        for (key, snapshot) in states {
            size += snapshot.keyed.iter().map(|(_, b)| b.len()).sum::<usize>()
                + snapshot.operator.iter().map(Vec::len).sum::<usize>();
            self.acked.push(SubtaskState {
                key,
                parallelism: parallelism as u32,
                subtask: subtask as u32,
                snapshot,
            });
        }
        let ack = SubtaskAck {
            task,
            ack_time: now,
            state_size: size as u64,
            alignment_ms: durations.alignment_ms,
            sync_ms: durations.sync_ms,
        };
        let outcome = coordinator.acknowledge(id, ack);
        self.publish_stats();
        if let Some(CheckpointOutcome::Completed(id)) = outcome {
            self.complete(attempt, id, now)?;
        }
        Ok(())
    }

    /// Writes a checkpoint whose every subtask acknowledged, then tells the tasks.
    fn complete(&mut self, attempt: &Attempt, id: u64, now: i64) -> Result<()> {
        // A fault point for tests: fail after every acknowledgement, before the checkpoint is complete.
        fail::fail_point!("sluice::checkpoint::complete", |_| Err(SluiceError::Internal(
            "injected failure before completing a checkpoint".into()
        )));
        let states = std::mem::take(&mut self.acked);
        let mut by_key: StateMap = BTreeMap::new();
        for s in &states {
            let slots = by_key
                .entry(s.key.clone())
                .or_insert_with(|| vec![OperatorSnapshot::default(); s.parallelism as usize]);
            slots[s.subtask as usize] = s.snapshot.clone();
        }
        let savepoint = self.savepoint.take_if(|s| s.checkpoint_id == id);
        let metadata = CheckpointMetadata {
            version: 0,
            job_name: self.job_name.clone(),
            job_id: self.job_id.clone(),
            checkpoint_id: id,
            timestamp: now,
            savepoint: savepoint.is_some(),
            operators: Vec::new(),
        };
        if let Some(s) = savepoint {
            // A savepoint goes to its own directory, owned by the user, never pruned.
            let written = CheckpointStorage::from_url(&s.dir)
                .and_then(|st| st.write_checkpoint("", metadata, states));
            match written {
                Ok(_) => {
                    info!(job = %self.job_name, path = %s.dir, "savepoint written");
                    let _ = s.reply.send(Ok(s.dir.clone()));
                    if s.stop {
                        self.stop_requested.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    let _ = s
                        .reply
                        .send(Err(SluiceError::external("savepoint", e.report().to_string())));
                }
            }
        } else if let Some(storage) = &self.storage {
            let dir = CheckpointStorage::checkpoint_dir(&self.job_id, id);
            storage.write_checkpoint(&dir, metadata, states)?;
            storage.prune(&self.job_id)?;
        }
        info!(job = %self.job_name, checkpoint = id, "checkpoint completed");
        self.latest = Some((id, by_key));
        for (_, control) in &attempt.controls {
            let _ = control.send(TaskControl::NotifyCheckpointComplete(id));
        }
        Ok(())
    }

    fn publish_stats(&self) {
        if let Some(c) = &self.coordinator {
            *self.stats.lock().expect("stats lock") = c.stats();
        }
    }

    /// Statistics of every checkpoint so far.
    pub(crate) fn stats(&self) -> Vec<CheckpointStats> {
        self.stats.lock().expect("stats lock").clone()
    }
}
