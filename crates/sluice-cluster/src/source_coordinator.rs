//! The SourceCoordinator (Flink's name): runs one source's split
//! enumerator for one attempt of the job, on the JobMaster's thread. It
//! turns the enumerator's assignments into messages on the readers' control
//! channels, in the order they were made; the JobMaster snapshots it on the
//! same thread just before it sends a checkpoint's triggers on those
//! channels, so a barrier never overtakes an assignment made before the
//! snapshot, and no assignment made after it reaches a reader before the
//! barrier. Periodic discovery runs on a thread of its own and reports back
//! through [`CoordinatorEvent`]s: slow I/O never blocks checkpointing or
//! deployment. A failing discovery is retried with back-off and fails the
//! attempt when it keeps failing.

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use sluice_core::{Result, SluiceError};
use sluice_runtime::source::SerializedSplit;
use sluice_runtime::split_enumerator::{
    EnumeratorActions, ErasedDiscoverer, ErasedDiscovery, ErasedSplitEnumerator,
};
use sluice_runtime::task::TaskControl;
use tracing::{info, warn};

/// Consecutive failed discoveries after which the attempt fails.
const DISCOVERY_ATTEMPTS: u32 = 5;

/// What a discovery thread reports to the JobMaster.
pub(crate) struct CoordinatorEvent {
    /// The source's job vertex.
    pub(crate) vertex: usize,
    /// The splits that exist now, or the error that kept discovery failing.
    pub(crate) result: Result<ErasedDiscovery>,
}

/// One source's enumerator and the readers it assigns to.
pub(crate) struct SourceCoordinator {
    vertex: usize,
    name: String,
    state_key: String,
    enumerator: Box<dyn ErasedSplitEnumerator>,
    /// Each reader subtask's control channel.
    readers: Vec<Sender<TaskControl>>,
    events: Sender<CoordinatorEvent>,
    /// Dropping it stops the discovery thread.
    stop_discovery: Option<Sender<()>>,
}

impl SourceCoordinator {
    /// A coordinator for the source of `vertex` (named `name`), whose
    /// readers listen on `readers`; discovery reports go to `events`.
    pub(crate) fn new(
        vertex: usize,
        name: String,
        state_key: String,
        enumerator: Box<dyn ErasedSplitEnumerator>,
        readers: Vec<Sender<TaskControl>>,
        events: Sender<CoordinatorEvent>,
    ) -> Self {
        Self { vertex, name, state_key, enumerator, readers, events, stop_discovery: None }
    }

    /// The source's state key: its enumerator's state is stored beside its readers'.
    pub(crate) fn state_key(&self) -> &str {
        &self.state_key
    }

    /// The source's job vertex.
    pub(crate) fn vertex(&self) -> usize {
        self.vertex
    }

    /// Gives back the splits the readers held in the restored checkpoint.
    pub(crate) fn add_splits_back(&mut self, splits: &[SerializedSplit]) -> Result<()> {
        self.enumerator.add_splits_back(splits)
    }

    /// Starts the enumerator: first assignments, discovery.
    pub(crate) fn start(&mut self) -> Result<()> {
        let actions = self.enumerator.start()?;
        self.apply(actions)
    }

    /// Reader `subtask` asked for splits.
    pub(crate) fn handle_split_request(
        &mut self,
        subtask: usize,
        finished: &[String],
    ) -> Result<()> {
        if !finished.is_empty() {
            info!(source = %self.name, subtask = subtask + 1, splits = ?finished, "reader finished splits");
        }
        let actions = self.enumerator.handle_split_request(subtask, finished)?;
        self.apply(actions)
    }

    /// A discovery thread reported.
    pub(crate) fn handle_discovered(&mut self, result: Result<ErasedDiscovery>) -> Result<()> {
        let discovery = result.map_err(|e| SluiceError::Task {
            operator: self.name.clone(),
            subtask: "enumerator".into(),
            cause: Box::new(e),
        })?;
        let actions = self.enumerator.handle_discovered(discovery)?;
        self.apply(actions)
    }

    /// The enumerator's state for a checkpoint.
    pub(crate) fn snapshot_state(&mut self) -> Result<Vec<u8>> {
        self.enumerator.snapshot_state()
    }

    fn apply(&mut self, actions: EnumeratorActions) -> Result<()> {
        let mut per_reader: Vec<Vec<SerializedSplit>> = vec![Vec::new(); self.readers.len()];
        for (subtask, split) in actions.assignments {
            per_reader
                .get_mut(subtask)
                .ok_or_else(|| {
                    SluiceError::Internal(format!(
                        "the enumerator of '{}' assigned a split to subtask {subtask} of {}",
                        self.name,
                        self.readers.len()
                    ))
                })?
                .push(split);
        }
        // A reader that is gone (its task ended) needs nothing more.
        for (reader, splits) in self.readers.iter().zip(per_reader) {
            if !splits.is_empty() {
                let _ = reader.send(TaskControl::AddSplits(splits));
            }
        }
        for (subtask, id) in actions.removals {
            if let Some(reader) = self.readers.get(subtask) {
                let _ = reader.send(TaskControl::RemoveSplits(vec![id]));
            }
        }
        for subtask in actions.no_more_splits {
            if let Some(reader) = self.readers.get(subtask) {
                let _ = reader.send(TaskControl::NoMoreSplits);
            }
        }
        if let Some((interval, discoverer)) = actions.discovery {
            self.start_discovery(interval, discoverer)?;
        }
        Ok(())
    }

    fn start_discovery(&mut self, interval: Duration, discoverer: ErasedDiscoverer) -> Result<()> {
        let (stop, stopped) = bounded::<()>(0);
        let (vertex, name, events) = (self.vertex, self.name.clone(), self.events.clone());
        std::thread::Builder::new()
            .name(format!("discovery {name}"))
            .spawn(move || discover_loop(vertex, &name, interval, discoverer, &events, &stopped))
            .map_err(|e| SluiceError::Internal(format!("cannot start a discovery thread: {e}")))?;
        self.stop_discovery = Some(stop);
        Ok(())
    }
}

/// Discovers every `interval` (zero: once) until stopped; an external
/// system's failure is retried after a growing delay and reported once it
/// failed [`DISCOVERY_ATTEMPTS`] times in a row; any other failure at once.
fn discover_loop(
    vertex: usize,
    name: &str,
    interval: Duration,
    mut discover: ErasedDiscoverer,
    events: &Sender<CoordinatorEvent>,
    stopped: &Receiver<()>,
) {
    let mut failures = 0;
    loop {
        let wait = match discover() {
            Ok(found) => {
                failures = 0;
                if events.send(CoordinatorEvent { vertex, result: Ok(found) }).is_err()
                    || interval.is_zero()
                {
                    return;
                }
                interval
            }
            Err(e) => {
                failures += 1;
                // Only an external system's failure can heal by retrying.
                if failures >= DISCOVERY_ATTEMPTS || !e.is_retriable() {
                    let _ = events.send(CoordinatorEvent { vertex, result: Err(e) });
                    return;
                }
                let backoff = Duration::from_millis(100) * (1 << failures);
                warn!(
                    "split discovery of '{name}' failed ({failures} of {DISCOVERY_ATTEMPTS} attempts); \
                     retrying in {backoff:?}: {}",
                    e.report()
                );
                backoff
            }
        };
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
