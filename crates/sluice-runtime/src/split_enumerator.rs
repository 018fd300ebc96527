//! The SplitEnumerator (Flink's FLIP-27): one per source, on the
//! JobManager's side, never in a reader's thread. It discovers splits (at
//! start, periodically, on request), assigns them to reader subtasks by its
//! own policy, takes back the splits readers held in a restored checkpoint,
//! and snapshots its own state (pending splits, discovery progress) into
//! every checkpoint.
//!
//! The enumerator is a plain type: it never does I/O in its hooks beyond a
//! first listing in `start`, and never sends anything itself. Its hooks
//! write assignments into the [`SplitEnumeratorContext`]; the JobManager's
//! source coordinator delivers them as messages on each reader's control
//! channel, in the order they were made, and takes the enumerator's
//! snapshot on the same thread just before it sends a checkpoint's trigger
//! on those channels. So an assignment made before a checkpoint reaches the
//! reader before its barrier (and is in the reader's snapshot), and one
//! made after reaches it after (and is in neither snapshot twice). Slow
//! discovery (listing a directory, fetching broker metadata) runs on a
//! discovery thread the context starts; its results come back through
//! [`SplitEnumerator::handle_discovered`].

use std::any::Any;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::time::Duration;

use sluice_core::{Result, SluiceError};

use crate::source::{SerializedSplit, SourceSplit};

/// Finds the splits that exist now: runs on a discovery thread.
pub type Discoverer<S> = Box<dyn FnMut() -> Result<Vec<S>> + Send>;

/// What an enumerator's hook asked for, in order.
pub struct SplitEnumeratorContext<S> {
    parallelism: usize,
    assignments: Vec<(usize, S)>,
    removals: Vec<(usize, String)>,
    no_more_splits: BTreeSet<usize>,
    discovery: Option<(Duration, Discoverer<S>)>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SplitEnumeratorContext<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitEnumeratorContext")
            .field("parallelism", &self.parallelism)
            .field("assignments", &self.assignments)
            .field("no_more_splits", &self.no_more_splits)
            .field("discovery", &self.discovery.as_ref().map(|(interval, _)| interval))
            .finish()
    }
}

impl<S> SplitEnumeratorContext<S> {
    /// A context for a source read by `parallelism` subtasks.
    pub fn new(parallelism: usize) -> Self {
        Self {
            parallelism,
            assignments: Vec::new(),
            removals: Vec::new(),
            no_more_splits: BTreeSet::new(),
            discovery: None,
        }
    }

    /// Number of reader subtasks.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// Assigns `split` to reader `subtask`.
    pub fn assign_split(&mut self, subtask: usize, split: S) {
        debug_assert!(subtask < self.parallelism, "subtask {subtask} of {}", self.parallelism);
        self.assignments.push((subtask, split));
    }

    /// Withdraws split `split_id` from reader `subtask` (its partition is gone).
    pub fn remove_split(&mut self, subtask: usize, split_id: String) {
        self.removals.push((subtask, split_id));
    }

    /// The splits withdrawn so far, leaving the context without them.
    pub fn take_removals(&mut self) -> Vec<(usize, String)> {
        std::mem::take(&mut self.removals)
    }

    /// Tells reader `subtask` that no split will follow those it was given:
    /// it ends once it has read them.
    pub fn signal_no_more_splits(&mut self, subtask: usize) {
        self.no_more_splits.insert(subtask);
    }

    /// Runs `discoverer` now and then every `interval` (zero: only once) on
    /// a discovery thread; each result comes back to
    /// [`SplitEnumerator::handle_discovered`].
    /// A failing discovery is retried with back-off and fails the job when
    /// it keeps failing.
    pub fn discover_periodically(&mut self, interval: Duration, discoverer: Discoverer<S>) {
        self.discovery = Some((interval, discoverer));
    }

    /// The assignments and end signals made so far, in order, leaving the context empty.
    pub fn take_actions(&mut self) -> (Vec<(usize, S)>, BTreeSet<usize>) {
        (std::mem::take(&mut self.assignments), std::mem::take(&mut self.no_more_splits))
    }

    /// The periodic discovery asked for, if any (taken once).
    pub fn take_discovery(&mut self) -> Option<(Duration, Discoverer<S>)> {
        self.discovery.take()
    }
}

/// Discovers and assigns the splits of one source. Every hook runs on the
/// JobManager's side, one at a time; hooks must not block for long.
pub trait SplitEnumerator<S: SourceSplit>: Send {
    /// Starts: assign what is known (restored pending splits, a first
    /// listing) and ask for periodic discovery if the source grows.
    fn start(&mut self, ctx: &mut SplitEnumeratorContext<S>) -> Result<()>;

    /// Reader `subtask` has no split left to read and asks for one (pull-style
    /// sources); `finished` names the splits it completed since it last asked.
    fn handle_split_request(
        &mut self,
        subtask: usize,
        finished: &[String],
        ctx: &mut SplitEnumeratorContext<S>,
    ) -> Result<()> {
        let _ = (subtask, finished, ctx);
        Ok(())
    }

    /// Splits the readers held, at their positions, in the checkpoint the
    /// job restores from (at any parallelism): they are to be assigned again.
    /// Called before [`Self::start`].
    fn add_splits_back(&mut self, splits: Vec<S>) -> Result<()>;

    /// The splits that exist now, from the periodic discovery.
    fn handle_discovered(
        &mut self,
        splits: Vec<S>,
        ctx: &mut SplitEnumeratorContext<S>,
    ) -> Result<()> {
        let _ = (splits, ctx);
        Ok(())
    }

    /// The enumerator's state for a checkpoint: what a restored enumerator
    /// continues from (splits not yet assigned, discovery progress).
    fn snapshot_state(&mut self) -> Result<Vec<u8>>;
}

/// The enumerator of a source whose splits are fixed when the job starts:
/// round robin over the readers, then no more splits.
#[derive(Debug)]
pub struct StaticSplitEnumerator<S> {
    pending: Vec<S>,
}

impl<S: SourceSplit> StaticSplitEnumerator<S> {
    /// An enumerator assigning `splits`.
    pub fn new(splits: Vec<S>) -> Self {
        Self { pending: splits }
    }

    /// An enumerator restored from [`SplitEnumerator::snapshot_state`].
    pub fn restore(state: &[u8]) -> Result<Self> {
        Ok(Self { pending: postcard::from_bytes(state)? })
    }
}

impl<S: SourceSplit> SplitEnumerator<S> for StaticSplitEnumerator<S> {
    fn start(&mut self, ctx: &mut SplitEnumeratorContext<S>) -> Result<()> {
        for (i, split) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            ctx.assign_split(i % ctx.parallelism(), split);
        }
        for subtask in 0..ctx.parallelism() {
            ctx.signal_no_more_splits(subtask);
        }
        Ok(())
    }

    fn add_splits_back(&mut self, splits: Vec<S>) -> Result<()> {
        self.pending.extend(splits);
        Ok(())
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>> {
        Ok(postcard::to_allocvec(&self.pending)?)
    }
}

/// A discovery result with its split type erased.
pub type ErasedDiscovery = Box<dyn Any + Send>;

/// A discoverer with its split type erased.
pub type ErasedDiscoverer = Box<dyn FnMut() -> Result<ErasedDiscovery> + Send>;

/// What an enumerator's hook produced, serialized for the readers.
#[derive(Default)]
pub struct EnumeratorActions {
    /// Splits per reader subtask, in the order they were assigned.
    pub assignments: Vec<(usize, SerializedSplit)>,
    /// Splits withdrawn from reader subtasks, by id.
    pub removals: Vec<(usize, String)>,
    /// Readers told that no more splits will come.
    pub no_more_splits: BTreeSet<usize>,
    /// Periodic discovery to start.
    pub discovery: Option<(Duration, ErasedDiscoverer)>,
}

impl std::fmt::Debug for EnumeratorActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnumeratorActions")
            .field("assignments", &self.assignments)
            .field("no_more_splits", &self.no_more_splits)
            .field("discovery", &self.discovery.as_ref().map(|(interval, _)| interval))
            .finish()
    }
}

/// A [`SplitEnumerator`] with its split type erased, as the JobManager holds it.
pub trait ErasedSplitEnumerator: Send {
    /// See [`SplitEnumerator::start`].
    fn start(&mut self) -> Result<EnumeratorActions>;
    /// See [`SplitEnumerator::handle_split_request`].
    fn handle_split_request(
        &mut self,
        subtask: usize,
        finished: &[String],
    ) -> Result<EnumeratorActions>;
    /// See [`SplitEnumerator::add_splits_back`].
    fn add_splits_back(&mut self, splits: &[SerializedSplit]) -> Result<()>;
    /// See [`SplitEnumerator::handle_discovered`].
    fn handle_discovered(&mut self, discovery: ErasedDiscovery) -> Result<EnumeratorActions>;
    /// See [`SplitEnumerator::snapshot_state`].
    fn snapshot_state(&mut self) -> Result<Vec<u8>>;
}

/// Erases the split type of an enumerator.
pub struct EnumeratorAdapter<S> {
    enumerator: Box<dyn SplitEnumerator<S>>,
    parallelism: usize,
    _splits: PhantomData<fn() -> S>,
}

impl<S: SourceSplit> EnumeratorAdapter<S> {
    /// Wraps `enumerator` for a source read by `parallelism` subtasks.
    pub fn new(enumerator: Box<dyn SplitEnumerator<S>>, parallelism: usize) -> Self {
        Self { enumerator, parallelism, _splits: PhantomData }
    }

    fn run(
        &mut self,
        hook: impl FnOnce(&mut dyn SplitEnumerator<S>, &mut SplitEnumeratorContext<S>) -> Result<()>,
    ) -> Result<EnumeratorActions> {
        let mut ctx = SplitEnumeratorContext::new(self.parallelism);
        hook(self.enumerator.as_mut(), &mut ctx)?;
        let (assignments, no_more_splits) = ctx.take_actions();
        let removals = ctx.take_removals();
        let assignments = assignments
            .into_iter()
            .map(|(subtask, split)| Ok((subtask, SerializedSplit::of(&split)?)))
            .collect::<Result<_>>()?;
        let discovery = ctx.take_discovery().map(|(interval, mut discover)| {
            let erased: ErasedDiscoverer =
                Box::new(move || discover().map(|splits| Box::new(splits) as ErasedDiscovery));
            (interval, erased)
        });
        Ok(EnumeratorActions { assignments, removals, no_more_splits, discovery })
    }
}

impl<S: SourceSplit> ErasedSplitEnumerator for EnumeratorAdapter<S> {
    fn start(&mut self) -> Result<EnumeratorActions> {
        self.run(|e, ctx| e.start(ctx))
    }

    fn handle_split_request(
        &mut self,
        subtask: usize,
        finished: &[String],
    ) -> Result<EnumeratorActions> {
        self.run(|e, ctx| e.handle_split_request(subtask, finished, ctx))
    }

    fn add_splits_back(&mut self, splits: &[SerializedSplit]) -> Result<()> {
        let splits = splits.iter().map(SerializedSplit::decode).collect::<Result<Vec<S>>>()?;
        self.enumerator.add_splits_back(splits)
    }

    fn handle_discovered(&mut self, discovery: ErasedDiscovery) -> Result<EnumeratorActions> {
        let splits = *discovery.downcast::<Vec<S>>().map_err(|_| {
            SluiceError::Internal("a discovery result of another source's split type".into())
        })?;
        self.run(|e, ctx| e.handle_discovered(splits, ctx))
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>> {
        // A fault point for tests: the enumerator fails to snapshot.
        fail::fail_point!("sluice::enumerator::snapshot", |_| Err(SluiceError::Internal(
            "injected failure in the enumerator's snapshot".into()
        )));
        self.enumerator.snapshot_state()
    }
}

/// The state key of a source's enumerator in checkpoints.
pub fn enumerator_key(source_state_key: &str) -> String {
    format!("{source_state_key}#enumerator")
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Part(u32);

    impl SourceSplit for Part {
        fn split_id(&self) -> String {
            self.0.to_string()
        }
    }

    #[test]
    fn a_static_enumerator_assigns_round_robin_then_says_no_more() {
        let mut e = StaticSplitEnumerator::new((0..5).map(Part).collect());
        let mut ctx = SplitEnumeratorContext::new(2);
        e.start(&mut ctx).unwrap();
        let (assigned, ended) = ctx.take_actions();
        let to: Vec<(usize, u32)> = assigned.iter().map(|(s, p)| (*s, p.0)).collect();
        assert_eq!(to, vec![(0, 0), (1, 1), (0, 2), (1, 3), (0, 4)]);
        assert_eq!(ended, BTreeSet::from([0, 1]));
        assert_eq!(
            e.snapshot_state().unwrap(),
            postcard::to_allocvec(&Vec::<Part>::new()).unwrap()
        );
    }

    #[test]
    fn a_restored_static_enumerator_reassigns_the_splits_given_back_at_the_new_parallelism() {
        let mut e = StaticSplitEnumerator::<Part>::restore(
            &postcard::to_allocvec(&Vec::<Part>::new()).unwrap(),
        )
        .unwrap();
        e.add_splits_back(vec![Part(7), Part(8), Part(9)]).unwrap();
        let mut ctx = SplitEnumeratorContext::new(3);
        e.start(&mut ctx).unwrap();
        let (assigned, ended) = ctx.take_actions();
        assert_eq!(assigned, vec![(0, Part(7)), (1, Part(8)), (2, Part(9))]);
        assert_eq!(ended.len(), 3);
    }

    #[test]
    fn the_adapter_serializes_assignments_in_order() {
        let mut e =
            EnumeratorAdapter::new(Box::new(StaticSplitEnumerator::new(vec![Part(1), Part(2)])), 1);
        let actions = e.start().unwrap();
        let ids: Vec<&str> = actions.assignments.iter().map(|(_, s)| s.id.as_str()).collect();
        assert_eq!(ids, vec!["1", "2"]);
        assert_eq!(actions.assignments[1].1.decode::<Part>().unwrap(), Part(2));
    }
}
