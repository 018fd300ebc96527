//! The operator contract and operator chains.
//!
//! A chain is a tree: each operator hands its output batches directly to the
//! operators chained after it (a method call, no channel, no lock) and to the
//! record writers of the network edges that leave it. A record crosses a
//! thread only at a record writer.

use std::any::Any;
use std::time::Instant;

use std::collections::HashMap;

use sluice_core::{
    CheckpointBarrier, KeyGroupRange, RecordBatch, Result, SluiceError, StreamRecord, Watermark,
};

use crate::record_writer::RecordWriter;
use crate::runtime_context::RuntimeContext;
use crate::snapshot::{OperatorSnapshot, PendingSnapshot};

/// A running operator instance of one subtask. All hooks run on the task's thread.
pub trait StreamOperator: Send {
    /// Called once before any element arrives.
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }

    /// Processes a batch of records that arrived on logical input `input`
    /// (0, or 1 for the second input of a two-input operator) and emits its
    /// results to `out`. Required: the one hook every operator implements.
    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()>;

    /// The combined watermark of the inputs advanced. The default forwards it.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        out.emit_watermark(watermark)
    }

    /// The combined idle status of the inputs changed. The default forwards it.
    fn process_idle_status(&mut self, idle: bool, out: &mut Output) -> Result<()> {
        out.emit_idle_status(idle)
    }

    /// The earliest processing time (ms) at which this operator wants
    /// [`Self::on_processing_time`] called; the task polls this after every
    /// batch, so registering a timer is a field update, not a message.
    fn next_processing_time(&self) -> Option<i64> {
        None
    }

    /// Processing time reached `now`, at or after [`Self::next_processing_time`].
    fn on_processing_time(&mut self, _now: i64, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Logical input `input` has ended: no record follows on it. An operator
    /// that buffers (windows, aggregations) emits what it holds here.
    fn end_input(&mut self, _input: usize, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Takes out the keyed state and timers of the key groups in `range`
    /// (to move them to another subtask); `None` for an operator without keyed state.
    fn extract_key_groups(&mut self, _range: KeyGroupRange) -> Result<Option<KeyGroupsState>> {
        Ok(None)
    }

    /// Puts in keyed state and timers taken out by [`Self::extract_key_groups`]
    /// of an instance of the same operator.
    fn insert_key_groups(&mut self, _state: KeyGroupsState) -> Result<()> {
        Err(SluiceError::Internal("this operator has no keyed state to restore".into()))
    }

    /// Takes the operator's state for checkpoint `checkpoint_id`. Called
    /// when the barrier reached this task, between two batches; keyed state
    /// should return deferred views
    /// ([`OperatorSnapshot::deferred_keyed`]) so the task is not held up by
    /// serialization.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<PendingSnapshot> {
        Ok(PendingSnapshot::Ready(OperatorSnapshot::default()))
    }

    /// Restores state from a checkpoint (after `open`, before any element);
    /// the snapshot holds exactly the key groups this subtask owns.
    fn restore_state(&mut self, state: OperatorSnapshot) -> Result<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(SluiceError::InvalidJob(
                "the checkpoint holds state for an operator that keeps none".into(),
            ))
        }
    }

    /// Checkpoint `checkpoint_id` is complete everywhere (sinks commit here).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Called once after the last element, also after a failure; releases resources.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// After the operator's input ended: what it must make visible once the
    /// whole job has finished, and only then (a transactional sink's last
    /// transactions). Run by the JobManager when every task finished.
    fn take_final_commit(&mut self) -> Option<FinalCommit> {
        None
    }

    /// After the operator's input ended: what a sink accumulated for the
    /// job's result (see [`SinkWriter::accumulator`](crate::sink::SinkWriter::accumulator)).
    fn take_accumulator(&mut self) -> Option<Vec<u8>> {
        None
    }
}

/// A boxed operator is an operator (the harness and factories hand them around).
impl StreamOperator for Box<dyn StreamOperator> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        (**self).open(ctx)
    }
    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        (**self).process_batch(input, batch, out)
    }
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        (**self).process_watermark(watermark, out)
    }
    fn process_idle_status(&mut self, idle: bool, out: &mut Output) -> Result<()> {
        (**self).process_idle_status(idle, out)
    }
    fn next_processing_time(&self) -> Option<i64> {
        (**self).next_processing_time()
    }
    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<()> {
        (**self).on_processing_time(now, out)
    }
    fn end_input(&mut self, input: usize, out: &mut Output) -> Result<()> {
        (**self).end_input(input, out)
    }
    fn extract_key_groups(&mut self, range: KeyGroupRange) -> Result<Option<KeyGroupsState>> {
        (**self).extract_key_groups(range)
    }
    fn insert_key_groups(&mut self, state: KeyGroupsState) -> Result<()> {
        (**self).insert_key_groups(state)
    }
    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<PendingSnapshot> {
        (**self).snapshot_state(checkpoint_id)
    }
    fn restore_state(&mut self, state: OperatorSnapshot) -> Result<()> {
        (**self).restore_state(state)
    }
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64, out: &mut Output) -> Result<()> {
        (**self).notify_checkpoint_complete(checkpoint_id, out)
    }
    fn take_final_commit(&mut self) -> Option<FinalCommit> {
        (**self).take_final_commit()
    }
    fn take_accumulator(&mut self) -> Option<Vec<u8>> {
        (**self).take_accumulator()
    }

    fn close(&mut self) -> Result<()> {
        (**self).close()
    }
}

/// Keyed state and timers of some key groups, in memory, on their way to another instance.
pub type KeyGroupsState = Box<dyn Any + Send>;

/// Clones a batch of the output type, for an output consumed more than once.
pub type BatchCloner = fn(&RecordBatch) -> Result<RecordBatch>;

/// Clones a batch of `StreamRecord<T>`.
pub fn clone_batch<T: Clone + Send + 'static>(batch: &RecordBatch) -> Result<RecordBatch> {
    Ok(RecordBatch::new(batch.records::<T>()?.clone()))
}

/// Where an operator's output goes.
pub enum OutputTarget {
    /// An operator chained after this one, called directly.
    Chained(Box<ChainedOperator>),
    /// A network edge to another task.
    Network(Box<dyn RecordWriter>),
}

/// The consumers of one output (the main one, or one side output).
pub struct Targets {
    targets: Vec<OutputTarget>,
    clone_batch: BatchCloner,
}

impl Targets {
    /// `targets`, with `clone_batch` cloning a batch of their record type.
    pub fn new(targets: Vec<OutputTarget>, clone_batch: BatchCloner) -> Self {
        Self { targets, clone_batch }
    }

    /// Emits a batch to every target; all but the last get a clone.
    fn emit(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let Some((last, rest)) = self.targets.split_last_mut() else {
            return Ok(());
        };
        for target in rest {
            target.process((self.clone_batch)(&batch)?)?;
        }
        last.process(batch)
    }
}

/// The output of one operator: the consumers of its main output and of
/// each of its side outputs (by tag).
pub struct Output {
    main: Targets,
    side: Vec<(String, Targets)>,
}

impl Output {
    /// An output to `targets`; `clone_batch` clones a batch of the operator's output type.
    pub fn new(targets: Vec<OutputTarget>, clone_batch: BatchCloner) -> Self {
        Self { main: Targets::new(targets, clone_batch), side: Vec::new() }
    }

    /// Adds the consumers of side output `tag`.
    pub fn with_side_output(mut self, tag: String, targets: Targets) -> Self {
        self.side.push((tag, targets));
        self
    }

    /// An output that drops everything (a sink's).
    pub fn none() -> Self {
        Self::new(Vec::new(), |b| Err(SluiceError::Internal(format!("{b:?} cloned by a sink"))))
    }

    /// Emits a batch to every consumer of the main output.
    pub fn emit(&mut self, batch: RecordBatch) -> Result<()> {
        self.main.emit(batch)
    }

    /// Emits a batch to the consumers of side output `tag` (none: dropped).
    pub fn emit_side(&mut self, tag: &str, batch: RecordBatch) -> Result<()> {
        match self.side.iter_mut().find(|(t, _)| t == tag) {
            Some((_, targets)) => targets.emit(batch),
            None => Ok(()),
        }
    }

    fn all_targets(&mut self) -> impl Iterator<Item = &mut OutputTarget> {
        let side = self.side.iter_mut().flat_map(|(_, t)| t.targets.iter_mut());
        self.main.targets.iter_mut().chain(side)
    }

    /// Emits typed records.
    #[inline]
    pub fn emit_records<T: Send + 'static>(&mut self, records: Vec<StreamRecord<T>>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.emit(RecordBatch::new(records))
    }

    /// Forwards a watermark to every target, side outputs included.
    pub fn emit_watermark(&mut self, watermark: Watermark) -> Result<()> {
        for target in self.all_targets() {
            match target {
                OutputTarget::Chained(op) => op.process_watermark(watermark)?,
                OutputTarget::Network(w) => w.broadcast_watermark(watermark)?,
            }
        }
        Ok(())
    }

    /// Forwards an idle status change to every target.
    pub fn emit_idle_status(&mut self, idle: bool) -> Result<()> {
        for target in self.all_targets() {
            match target {
                OutputTarget::Chained(op) => op.process_idle_status(idle)?,
                OutputTarget::Network(w) => w.broadcast_idle_status(idle)?,
            }
        }
        Ok(())
    }

    /// The producing operator will emit nothing more.
    pub fn end_input(&mut self) -> Result<()> {
        for target in self.all_targets() {
            match target {
                OutputTarget::Chained(op) => op.end_input(0)?,
                OutputTarget::Network(w) => w.end_input()?,
            }
        }
        Ok(())
    }

    /// Sends partly filled batches older than the buffer timeout, down the whole chain.
    pub fn flush_if_due(&mut self, now: Instant) -> Result<()> {
        for target in self.all_targets() {
            match target {
                OutputTarget::Chained(op) => op.output.flush_if_due(now)?,
                OutputTarget::Network(w) => w.flush_if_due(now)?,
            }
        }
        Ok(())
    }

    /// Passes a checkpoint barrier on: chained operators were snapshotted
    /// with the task, so the barrier goes straight to the network edges.
    pub fn emit_barrier(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        for target in self.all_targets() {
            match target {
                OutputTarget::Chained(op) => op.output.emit_barrier(barrier)?,
                OutputTarget::Network(w) => w.broadcast_barrier(barrier)?,
            }
        }
        Ok(())
    }

    /// Snapshots every operator chained after this output.
    pub fn snapshot_chain(
        &mut self,
        checkpoint_id: u64,
        states: &mut Vec<(String, PendingSnapshot)>,
    ) -> Result<()> {
        for target in self.all_targets() {
            if let OutputTarget::Chained(op) = target {
                op.snapshot_chain(checkpoint_id, states)?;
            }
        }
        Ok(())
    }

    /// Restores every operator chained after this output from `states` (by state key).
    pub fn restore_chain(&mut self, states: &mut HashMap<String, OperatorSnapshot>) -> Result<()> {
        for target in self.all_targets() {
            if let OutputTarget::Chained(op) = target {
                op.restore_chain(states)?;
            }
        }
        Ok(())
    }

    /// Tells every operator chained after this output that a checkpoint completed.
    pub fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        for target in self.all_targets() {
            if let OutputTarget::Chained(op) = target {
                op.notify_checkpoint_complete(checkpoint_id)?;
            }
        }
        Ok(())
    }

    /// The earliest processing-time callback wanted by an operator chained after this output.
    pub fn next_processing_time(&self) -> Option<i64> {
        let main = self.main.targets.iter();
        let side = self.side.iter().flat_map(|(_, t)| t.targets.iter());
        main.chain(side)
            .filter_map(|t| match t {
                OutputTarget::Chained(op) => op.next_processing_time(),
                OutputTarget::Network(_) => None,
            })
            .min()
    }

    /// Calls every chained operator whose processing-time callback is due.
    pub fn on_processing_time(&mut self, now: i64) -> Result<()> {
        for target in self.all_targets() {
            if let OutputTarget::Chained(op) = target {
                op.on_processing_time(now)?;
            }
        }
        Ok(())
    }

    pub(crate) fn open(&mut self, ctx_for: &mut dyn FnMut(&str) -> RuntimeContext) -> Result<()> {
        for target in self.all_targets() {
            if let OutputTarget::Chained(op) = target {
                op.open(ctx_for)?;
            }
        }
        Ok(())
    }

    /// The final commits of every operator chained after this output.
    pub(crate) fn take_final_commits(&mut self, into: &mut Vec<FinalCommit>) {
        for target in self.all_targets() {
            if let OutputTarget::Chained(op) = target {
                op.take_final_commits(into);
            }
        }
    }

    /// The accumulators of every operator chained after this output.
    pub(crate) fn take_accumulators(&mut self, into: &mut Vec<(String, Vec<u8>)>) {
        for target in self.all_targets() {
            if let OutputTarget::Chained(op) = target {
                op.take_accumulators(into);
            }
        }
    }

    pub(crate) fn close(&mut self) -> Result<()> {
        let mut first = Ok(());
        let targets: Vec<&mut OutputTarget> = self.all_targets().collect();
        for target in targets {
            if let OutputTarget::Chained(op) = target {
                let r = op.close();
                if first.is_ok() {
                    first = r;
                }
            }
        }
        first
    }
}

impl OutputTarget {
    #[inline]
    fn process(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            OutputTarget::Chained(op) => op.process_batch(0, batch),
            OutputTarget::Network(w) => w.emit(batch),
        }
    }
}

/// An operator with its output, inside a task's chain.
pub struct ChainedOperator {
    name: String,
    state_key: String,
    subtask: String,
    operator: Box<dyn StreamOperator>,
    output: Output,
    open_inputs: usize,
}

impl ChainedOperator {
    /// Chains `operator` (with `inputs` logical inputs) before `output`;
    /// its state is stored under `state_key` (the uid).
    pub fn new(
        name: String,
        state_key: String,
        operator: Box<dyn StreamOperator>,
        inputs: usize,
        output: Output,
    ) -> Self {
        Self { name, state_key, subtask: String::new(), operator, output, open_inputs: inputs }
    }

    /// Snapshots this operator and everything chained after it.
    pub fn snapshot_chain(
        &mut self,
        checkpoint_id: u64,
        states: &mut Vec<(String, PendingSnapshot)>,
    ) -> Result<()> {
        let op = &mut self.operator;
        let snapshot = guard(&self.name, &self.subtask, || op.snapshot_state(checkpoint_id))?;
        if !matches!(&snapshot, PendingSnapshot::Ready(s) if s.is_empty()) {
            states.push((self.state_key.clone(), snapshot));
        }
        self.output.snapshot_chain(checkpoint_id, states)
    }

    /// Restores this operator and everything chained after it (each takes its own key out of `states`).
    pub fn restore_chain(&mut self, states: &mut HashMap<String, OperatorSnapshot>) -> Result<()> {
        if let Some(state) = states.remove(&self.state_key) {
            let op = &mut self.operator;
            guard(&self.name, &self.subtask, || op.restore_state(state))?;
        }
        self.output.restore_chain(states)
    }

    /// Tells this operator and everything chained after it that a checkpoint completed.
    pub fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let (op, out) = (&mut self.operator, &mut self.output);
        guard(&self.name, &self.subtask, || op.notify_checkpoint_complete(checkpoint_id, out))?;
        self.output.notify_checkpoint_complete(checkpoint_id)
    }

    /// Name of the operator.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens this operator and everything chained after it.
    pub fn open(&mut self, ctx_for: &mut dyn FnMut(&str) -> RuntimeContext) -> Result<()> {
        let ctx = ctx_for(&self.name);
        self.subtask = ctx.subtask_label();
        let op = &mut self.operator;
        guard(&self.name, &self.subtask, || op.open(&ctx))?;
        self.output.open(ctx_for)
    }

    /// Processes a batch from logical input `input`.
    #[inline]
    pub fn process_batch(&mut self, input: usize, batch: RecordBatch) -> Result<()> {
        let (op, out) = (&mut self.operator, &mut self.output);
        guard(&self.name, &self.subtask, || op.process_batch(input, batch, out))
    }

    /// Processes a watermark.
    pub fn process_watermark(&mut self, watermark: Watermark) -> Result<()> {
        let (op, out) = (&mut self.operator, &mut self.output);
        guard(&self.name, &self.subtask, || op.process_watermark(watermark, out))
    }

    /// Processes an idle status change.
    pub fn process_idle_status(&mut self, idle: bool) -> Result<()> {
        let (op, out) = (&mut self.operator, &mut self.output);
        guard(&self.name, &self.subtask, || op.process_idle_status(idle, out))
    }

    /// The earliest processing-time callback wanted by this operator or one chained after it.
    pub fn next_processing_time(&self) -> Option<i64> {
        match (self.operator.next_processing_time(), self.output.next_processing_time()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Calls the processing-time callbacks that are due at `now`, down the chain.
    pub fn on_processing_time(&mut self, now: i64) -> Result<()> {
        if self.operator.next_processing_time().is_some_and(|t| t <= now) {
            let (op, out) = (&mut self.operator, &mut self.output);
            guard(&self.name, &self.subtask, || op.on_processing_time(now, out))?;
        }
        self.output.on_processing_time(now)
    }

    /// Logical input `input` ended; once all have, the end travels down the chain.
    pub fn end_input(&mut self, input: usize) -> Result<()> {
        let (op, out) = (&mut self.operator, &mut self.output);
        guard(&self.name, &self.subtask, || op.end_input(input, out))?;
        self.open_inputs = self.open_inputs.saturating_sub(1);
        if self.open_inputs == 0 {
            self.output.end_input()?;
        }
        Ok(())
    }

    /// Sends partly filled batches older than the buffer timeout.
    pub fn flush_if_due(&mut self, now: Instant) -> Result<()> {
        self.output.flush_if_due(now)
    }

    /// Passes a checkpoint barrier on after this operator (snapshotted already).
    pub fn emit_barrier(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        self.output.emit_barrier(barrier)
    }

    /// The final commits of this operator and everything chained after it.
    pub fn take_final_commits(&mut self, into: &mut Vec<FinalCommit>) {
        into.extend(self.operator.take_final_commit());
        self.output.take_final_commits(into);
    }

    /// The accumulators of this operator and everything chained after it, by state key.
    pub fn take_accumulators(&mut self, into: &mut Vec<(String, Vec<u8>)>) {
        if let Some(bytes) = self.operator.take_accumulator() {
            into.push((self.state_key.clone(), bytes));
        }
        self.output.take_accumulators(into);
    }

    /// Closes this operator and everything chained after it; reports the first error.
    pub fn close(&mut self) -> Result<()> {
        let op = &mut self.operator;
        let r = guard(&self.name, &self.subtask, || op.close());
        let rest = self.output.close();
        r.and(rest)
    }
}

/// What a transactional sink makes visible when the job has finished; may run
/// more than once (its commits are idempotent).
pub struct FinalCommit(pub Box<dyn Fn() -> Result<()> + Send>);

impl FinalCommit {
    /// Makes it visible.
    pub fn run(&self) -> Result<()> {
        (self.0)()
    }
}

impl std::fmt::Debug for FinalCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinalCommit")
    }
}

/// Runs an operator hook, turning a panic or an error into an error that
/// names the operator and subtask. An error already naming an operator
/// further down the chain passes unchanged.
#[inline]
fn guard<R>(operator: &str, subtask: &str, f: impl FnOnce() -> Result<R>) -> Result<R> {
    match sluice_core::panic::catch(f) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e @ SluiceError::Task { .. })) => Err(e),
        Ok(Err(e)) | Err(e) => Err(task_error(operator, subtask, e)),
    }
}

/// Wraps an error with the operator and subtask it happened in.
pub fn task_error(operator: &str, subtask: &str, e: SluiceError) -> SluiceError {
    SluiceError::Task {
        operator: operator.to_string(),
        subtask: subtask.to_string(),
        cause: Box::new(e),
    }
}
