//! A task: one subtask of a job vertex, running its operator chain on its
//! own thread. The loop takes input (a source reader's batches, or the input
//! gate's events), pushes it through the chain, sends partly filled batches
//! when the buffer timeout passes, and takes part in checkpoints: a source
//! task snapshots when the JobManager triggers it and emits the barrier; any
//! other task snapshots when its gate has aligned the barrier.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use sluice_checkpoint::{AlignmentMode, OperatorSnapshot, PendingSnapshot};
use sluice_core::{CheckpointBarrier, Clock, Result, SluiceError, Watermark};

use crate::channel::{ChannelSender, GateEvent, InputChannel, InputGate};
use crate::decode_error::DECODE_FAILURES;
use crate::job_graph::JobGraph;
use crate::metrics::TaskMetrics;
use crate::operator::{task_error, ChainedOperator, FinalCommit, Output, OutputTarget, Targets};
use crate::operators::timestamps_and_watermarks::emit_update;
use crate::record_writer::WriterSetup;
use crate::runtime_context::RuntimeContext;
use crate::source::{ErasedSourceReader, InputStatus, SerializedSplit};
use crate::stream_graph::{NodeBody, NodeKind};
use crate::watermark_strategy::SourceWatermarker;

/// A subtask's output channels: per outgoing job edge id, one channel per
/// connected downstream subtask, in subtask order.
pub type OutputChannels = HashMap<usize, Vec<ChannelSender>>;

/// From the JobManager to a task, in order on one channel: an assignment
/// sent before a checkpoint's trigger reaches the reader before it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum TaskControl {
    /// Source tasks: snapshot now and emit this barrier.
    TriggerCheckpoint(CheckpointBarrier),
    /// The checkpoint is complete everywhere.
    NotifyCheckpointComplete(u64),
    /// Source tasks: splits the enumerator assigned to this reader.
    AddSplits(Vec<SerializedSplit>),
    /// Source tasks: the enumerator will assign no more splits.
    NoMoreSplits,
    /// Source tasks: stop reading these splits (by id); their partitions are gone.
    RemoveSplits(Vec<String>),
}

/// From a task to the JobManager.
#[derive(Debug)]
pub enum TaskEvent {
    /// The task ended: `Ok` if it finished, the error if it failed or was cancelled.
    Finished {
        /// Job vertex.
        vertex: usize,
        /// Subtask index.
        subtask_index: usize,
        /// Outcome.
        result: Result<()>,
        /// What its transactional sinks make visible once the whole job finished.
        final_commits: Vec<FinalCommit>,
        /// What its sinks accumulated for the job's result, by operator state key.
        accumulators: Vec<(String, Vec<u8>)>,
    },
    /// The task snapshotted its state for a checkpoint.
    Acknowledged {
        /// Job vertex.
        vertex: usize,
        /// Subtask index.
        subtask_index: usize,
        /// Checkpoint id.
        checkpoint_id: u64,
        /// State per operator (by state key) of this subtask.
        states: Vec<(String, OperatorSnapshot)>,
        /// How long alignment and the snapshot's synchronous part took.
        durations: SnapshotDurations,
    },
    /// A source reader has no split left and asks the enumerator for more.
    SplitRequest {
        /// Job vertex.
        vertex: usize,
        /// Subtask index.
        subtask_index: usize,
        /// Ids of the splits it finished since it last asked.
        finished: Vec<String>,
    },
    /// The task cannot take part in a checkpoint.
    Declined {
        /// Job vertex.
        vertex: usize,
        /// Subtask index.
        subtask_index: usize,
        /// Checkpoint id.
        checkpoint_id: u64,
        /// Why.
        reason: String,
    },
}

/// How long a subtask spent on its part of a checkpoint, as Flink reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotDurations {
    /// From the first barrier to the snapshot.
    pub alignment_ms: i64,
    /// Processing stopped to take the snapshot (views of the state, split positions).
    pub sync_ms: i64,
}

/// How a task takes part in checkpoints.
pub struct TaskCheckpointing {
    /// Barrier alignment at inputs.
    pub mode: AlignmentMode,
    /// Aligned checkpoints still aligning after this continue unaligned.
    pub alignment_timeout: Option<Duration>,
}

/// The state key of a task's in-flight data (unaligned checkpoints).
pub fn in_flight_key(head_state_key: &str) -> String {
    format!("{head_state_key}#in-flight")
}

/// Everything a TaskManager needs to run one subtask.
pub struct TaskDeployment {
    /// The job.
    pub job_graph: Arc<JobGraph>,
    /// The job vertex.
    pub vertex: usize,
    /// The subtask index.
    pub subtask_index: usize,
    /// Execution attempt.
    pub attempt: usize,
    /// Input channels (empty for a source).
    pub inputs: Vec<InputChannel>,
    /// Output channels per outgoing job edge id, in downstream subtask order.
    pub outputs: OutputChannels,
    /// Messages from the JobManager: checkpoint triggers and completions, split assignments.
    pub control: Receiver<TaskControl>,
    /// Set when the job is cancelled or failing.
    pub cancel: Arc<AtomicBool>,
    /// The task's counters.
    pub metrics: Arc<TaskMetrics>,
    /// Where the task reports acks and its end.
    pub events: Sender<TaskEvent>,
    /// Checkpointing, if the job has it.
    pub checkpointing: Option<TaskCheckpointing>,
    /// State to restore, per operator state key (already redistributed to this subtask).
    pub restore: HashMap<String, OperatorSnapshot>,
    /// The checkpoint that state comes from.
    pub restored_checkpoint_id: Option<u64>,
}

impl TaskDeployment {
    /// "Vertex name (i/p)".
    pub fn task_name(&self) -> String {
        let v = &self.job_graph.vertices[self.vertex];
        format!("{} ({}/{})", v.name, self.subtask_index + 1, v.parallelism)
    }
}

/// The head of a task: where its input comes from.
enum Head {
    Source {
        reader: Box<dyn ErasedSourceReader>,
        watermarks: Option<Box<dyn SourceWatermarker>>,
        output: Output,
        name: String,
        state_key: String,
    },
    Operator {
        gate: Box<InputGate>,
        chain: ChainedOperator,
    },
}

/// Runs a task to completion and reports its end (the first error, naming
/// the operator and subtask) while the task's channel ends are still open:
/// a root cause is reported before the failures it causes downstream.
pub fn run_task(d: TaskDeployment) {
    // Every log line of the task carries its coordinates (JSON logs show
    // them). At the error level, so that no log filter drops the span while
    // it lets the task's warnings through.
    let span = tracing::error_span!(
        "task",
        job = %d.job_graph.stream_graph.job_name,
        vertex = %d.job_graph.vertices[d.vertex].name,
        subtask = d.subtask_index,
        attempt = d.attempt,
    );
    let _entered = span.enter();
    let events = d.events.clone();
    let (vertex, subtask_index) = (d.vertex, d.subtask_index);
    let mut head = None;
    let result = run_task_inner(d, &mut head);
    let mut final_commits = Vec::new();
    let mut accumulators = Vec::new();
    // Accumulators go with every end: the JobMaster keeps those of an
    // attempt that finished or was cancelled (a stop with a savepoint), and
    // drops a failed one's. Only a finished subtask commits.
    match head.as_mut() {
        Some(Head::Source { output, .. }) => {
            if result.is_ok() {
                output.take_final_commits(&mut final_commits);
            }
            output.take_accumulators(&mut accumulators);
        }
        Some(Head::Operator { chain, .. }) => {
            if result.is_ok() {
                chain.take_final_commits(&mut final_commits);
            }
            chain.take_accumulators(&mut accumulators);
        }
        None => {}
    }
    let _ = events.send(TaskEvent::Finished {
        vertex,
        subtask_index,
        result,
        final_commits,
        accumulators,
    });
    drop(head);
}

/// A task's snapshot: per operator (by state key), ready or still to serialize.
type TaskSnapshot = Vec<(String, PendingSnapshot)>;

/// What the loops need to report checkpoints.
struct Checkpoints<'a> {
    control: &'a Receiver<TaskControl>,
    events: &'a Sender<TaskEvent>,
    vertex: usize,
    subtask_index: usize,
    aligning_since: Option<Instant>,
    /// Unaligned: the snapshot of a checkpoint whose in-flight data is still being recorded.
    held: Option<(u64, TaskSnapshot, Duration)>,
    in_flight_key: String,
    /// The thread serializing the latest deferred snapshot.
    snapshotting: Cell<Option<JoinHandle<()>>>,
}

/// Serializes deferred snapshots; drops those that hold nothing.
fn complete_snapshots(states: TaskSnapshot) -> Result<Vec<(String, OperatorSnapshot)>> {
    let mut done = Vec::with_capacity(states.len());
    for (key, pending) in states {
        let snapshot = pending.complete()?;
        if !snapshot.is_empty() {
            done.push((key, snapshot));
        }
    }
    Ok(done)
}

/// Feeds the head operator the batches a restored unaligned checkpoint
/// recorded in flight, before anything else arrives.
fn replay_in_flight(
    gate: &InputGate,
    chain: &mut ChainedOperator,
    state: Option<OperatorSnapshot>,
) -> Result<()> {
    for entry in state.map(|s| s.operator).unwrap_or_default() {
        let (input, bytes): (u32, Vec<u8>) = postcard::from_bytes(&entry)?;
        let codec = gate.codec(input as usize).ok_or_else(|| {
            SluiceError::InvalidJob(format!(
                "the checkpoint holds in-flight data for input {input}, which this task lacks"
            ))
        })?;
        chain.process_batch(input as usize, (codec.decode)(&bytes)?)?;
    }
    Ok(())
}

impl Checkpoints<'_> {
    /// Acknowledges a checkpoint. State views taken at the barrier are
    /// serialized on a snapshot thread so the task goes on processing;
    /// acknowledgements still leave in checkpoint order.
    fn acknowledge(&self, checkpoint_id: u64, states: TaskSnapshot, sync: Duration) {
        // A fault point for tests: fail while taking part in a checkpoint.
        fail::fail_point!("sluice::task::snapshot");
        let durations = SnapshotDurations {
            alignment_ms: self.aligning_since.map_or(0, |t| t.elapsed().as_millis() as i64),
            sync_ms: sync.as_millis() as i64,
        };
        let (events, vertex, subtask_index) =
            (self.events.clone(), self.vertex, self.subtask_index);
        let previous = self.snapshotting.take();
        let inline = previous.is_none() && !states.iter().any(|(_, s)| s.is_deferred());
        let complete = move || {
            if let Some(previous) = previous {
                let _ = previous.join();
            }
            let event = match complete_snapshots(states) {
                Ok(states) => TaskEvent::Acknowledged {
                    vertex,
                    subtask_index,
                    checkpoint_id,
                    states,
                    durations,
                },
                Err(e) => TaskEvent::Declined {
                    vertex,
                    subtask_index,
                    checkpoint_id,
                    reason: format!("serializing the snapshot failed: {}", e.report()),
                },
            };
            let _ = events.send(event);
        };
        if inline {
            return complete();
        }
        let spawned = std::thread::Builder::new()
            .name(format!("snapshot-{vertex}-{subtask_index}"))
            .spawn(complete);
        match spawned {
            Ok(handle) => self.snapshotting.set(Some(handle)),
            Err(e) => self.decline(checkpoint_id, format!("cannot start a snapshot thread: {e}")),
        }
    }

    /// Waits for snapshots still being serialized, so their acknowledgements
    /// precede the task's end.
    fn finish(&self) {
        if let Some(handle) = self.snapshotting.take() {
            let _ = handle.join();
        }
    }

    fn decline(&self, checkpoint_id: u64, reason: String) {
        let _ = self.events.send(TaskEvent::Declined {
            vertex: self.vertex,
            subtask_index: self.subtask_index,
            checkpoint_id,
            reason,
        });
    }

    fn next_control(&self) -> Option<TaskControl> {
        self.control.try_recv().ok()
    }

    /// Waits up to `timeout` for a message from the JobManager.
    fn wait_control(&self, timeout: Duration) -> Option<TaskControl> {
        self.control.recv_timeout(timeout).ok()
    }

    fn request_splits(&self, finished: Vec<String>) {
        let _ = self.events.send(TaskEvent::SplitRequest {
            vertex: self.vertex,
            subtask_index: self.subtask_index,
            finished,
        });
    }
}

fn run_task_inner(mut d: TaskDeployment, head_slot: &mut Option<Head>) -> Result<()> {
    let task_name = d.task_name();
    let inputs = std::mem::take(&mut d.inputs);
    let outputs = std::mem::take(&mut d.outputs);
    let mut restore = std::mem::take(&mut d.restore);
    let jg = d.job_graph.clone();
    let sg = &jg.stream_graph;
    let vertex = &jg.vertices[d.vertex];
    let subtask = format!("{}/{}", d.subtask_index + 1, vertex.parallelism);
    let params = Arc::new(sg.config.job_parameters.clone());
    let make_ctx = |name: &str| RuntimeContext {
        operator_name: name.to_string(),
        task_name: task_name.clone(),
        subtask_index: d.subtask_index,
        parallelism: vertex.parallelism,
        max_parallelism: vertex.max_parallelism,
        attempt: d.attempt,
        batch_size: sg.config.batch_size,
        job_parameters: params.clone(),
        clock: sg.clock.clone(),
        auto_watermark_interval: sg.config.auto_watermark_interval.as_millis() as i64,
        restored_checkpoint_id: d.restored_checkpoint_id,
    };
    let mut builder = ChainBuilder { d: &d, outputs };
    let head_node = &sg.nodes[vertex.head];
    let head = match &head_node.body {
        NodeBody::Source { source, watermarks } => {
            let ctx = make_ctx(&head_node.name);
            let reader =
                source.create_reader(&ctx).map_err(|e| task_error(&head_node.name, &subtask, e))?;
            Head::Source {
                reader,
                watermarks: watermarks.as_ref().map(|make| make(&ctx)),
                output: builder.output(vertex.head)?,
                name: head_node.name.clone(),
                state_key: head_node.state_key(),
            }
        }
        NodeBody::Operator { inputs: inputs_count, .. } => {
            let mode = d.checkpointing.as_ref().map(|c| c.mode);
            let timeout = d.checkpointing.as_ref().and_then(|c| c.alignment_timeout);
            let gate =
                Box::new(InputGate::with_alignment_timeout(inputs, *inputs_count, mode, timeout));
            Head::Operator { gate, chain: builder.operator(vertex.head, *inputs_count)? }
        }
    };

    let head = head_slot.insert(head);
    let mut ctx_for = |name: &str| make_ctx(name);
    let head_key = head_node.state_key();
    let mut checkpoints = Checkpoints {
        control: &d.control,
        events: &d.events,
        vertex: d.vertex,
        subtask_index: d.subtask_index,
        aligning_since: None,
        held: None,
        in_flight_key: in_flight_key(&head_key),
        snapshotting: Cell::new(None),
    };
    let result = match head {
        Head::Source { reader, watermarks, output, name, state_key } => output
            .open(&mut ctx_for)
            .and_then(|_| output.restore_chain(&mut restore))
            .and_then(|_| {
                let watermarks =
                    watermarks.as_mut().map(|w| &mut **w as &mut dyn SourceWatermarker);
                let source = SourceHead { reader: reader.as_mut(), watermarks, output, state_key };
                run_source(
                    source,
                    &mut checkpoints,
                    &d.cancel,
                    &d.metrics,
                    &*sg.clock,
                    sg.config.buffer_timeout,
                )
            })
            .map_err(|e| match e {
                SluiceError::Task { .. } => e,
                e => task_error(name, &subtask, e),
            }),
        Head::Operator { gate, chain } => chain
            .open(&mut ctx_for)
            .and_then(|_| {
                // A fault point for tests: fail during recovery.
                fail::fail_point!("sluice::task::restore", !restore.is_empty(), |_| Err(
                    SluiceError::Internal("injected failure during restore".into())
                ));
                chain.restore_chain(&mut restore)?;
                replay_in_flight(gate, chain, restore.remove(&checkpoints.in_flight_key))
            })
            .and_then(|_| {
                run_operator(
                    gate,
                    chain,
                    &mut checkpoints,
                    &d.cancel,
                    &d.metrics,
                    &*sg.clock,
                    sg.config.buffer_timeout,
                )
            }),
    };
    let closed = match head {
        Head::Source { reader, output, .. } => reader.close().and(output.close()),
        Head::Operator { chain, .. } => chain.close(),
    };
    checkpoints.finish();
    result.and(closed)
}

/// A source task's head: its reader, the watermarks generated at the
/// source (if it has a strategy), and the chain after it.
struct SourceHead<'a> {
    reader: &'a mut dyn ErasedSourceReader,
    watermarks: Option<&'a mut dyn SourceWatermarker>,
    output: &'a mut Output,
    state_key: &'a str,
}

impl SourceHead<'_> {
    /// Acts on a message from the JobManager, in the order they were sent.
    fn on_control(&mut self, msg: TaskControl, checkpoints: &Checkpoints<'_>) -> Result<()> {
        match msg {
            TaskControl::TriggerCheckpoint(barrier) => self.checkpoint(barrier, checkpoints),
            TaskControl::NotifyCheckpointComplete(id) => {
                self.reader.notify_checkpoint_complete(id)?;
                self.output.notify_checkpoint_complete(id)
            }
            TaskControl::AddSplits(splits) => self.reader.add_splits(splits),
            TaskControl::RemoveSplits(ids) => self.reader.remove_splits(&ids),
            TaskControl::NoMoreSplits => {
                self.reader.no_more_splits();
                Ok(())
            }
        }
    }

    /// Snapshots the reader's splits and the chain, acknowledges, emits the barrier.
    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        checkpoints: &Checkpoints<'_>,
    ) -> Result<()> {
        let started = Instant::now();
        let splits = match self.reader.snapshot_splits(barrier.id) {
            Ok(s) => s,
            Err(e) => {
                checkpoints.decline(barrier.id, e.report().to_string());
                return Ok(());
            }
        };
        let operator =
            splits.iter().map(postcard::to_allocvec).collect::<std::result::Result<_, _>>()?;
        let splits = OperatorSnapshot { keyed: Vec::new(), operator };
        let mut states = vec![(self.state_key.to_string(), PendingSnapshot::Ready(splits))];
        self.output.snapshot_chain(barrier.id, &mut states)?;
        checkpoints.acknowledge(barrier.id, states, started.elapsed());
        self.output.emit_barrier(barrier)
    }
}

fn run_source(
    mut s: SourceHead<'_>,
    checkpoints: &mut Checkpoints<'_>,
    cancel: &AtomicBool,
    metrics: &TaskMetrics,
    clock: &dyn Clock,
    buffer_timeout: Duration,
) -> Result<()> {
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(SluiceError::Cancelled);
        }
        while let Some(msg) = checkpoints.next_control() {
            s.on_control(msg, checkpoints)?;
        }
        let (mut batch, splits, status) = s.reader.poll_batch()?;
        if let Some(finished) = s.reader.take_split_request() {
            checkpoints.request_splits(finished);
        }
        metrics.add_source_records(batch.len());
        if let Some(lag) = s.reader.lag() {
            metrics.set_source_lag(lag);
        }
        let waited = s.reader.take_idle();
        if !waited.is_zero() {
            metrics.add_idle(waited);
        }
        let (failures, dead_letters) = s.reader.take_decode_failures();
        if failures > 0 {
            metrics.add_records_in_errors(failures);
        }
        if let Some(dead_letters) = dead_letters {
            s.output.emit_side(DECODE_FAILURES, dead_letters)?;
        }
        let mut now = clock.now();
        let update = match s.watermarks.as_deref_mut() {
            Some(w) => Some(w.on_batch(&mut batch, &splits, now)?),
            None => None,
        };
        s.output.emit(batch)?;
        if let Some(update) = update {
            if let Some(w) = update.watermark {
                metrics.set_watermark(w.0);
            }
            emit_update(update, s.output)?;
        }
        now = now.max(clock.now());
        if let Some(w) = s.watermarks.as_deref_mut().filter(|w| w.next_periodic() <= now) {
            let update = w.on_periodic(now);
            if let Some(w) = update.watermark {
                metrics.set_watermark(w.0);
            }
            emit_update(update, s.output)?;
        }
        if s.output.next_processing_time().is_some_and(|t| t <= now) {
            s.output.on_processing_time(now)?;
        }
        s.output.flush_if_due(Instant::now())?;
        match status {
            InputStatus::MoreAvailable => {}
            InputStatus::NothingAvailable => {
                let next = [
                    s.output.next_processing_time(),
                    s.watermarks.as_ref().map(|w| w.next_periodic()),
                ];
                let wait = wait_time(next.into_iter().flatten().min(), now, buffer_timeout);
                let started = Instant::now();
                if s.reader.is_waiting_for_splits() {
                    // An assignment wakes the reader at once.
                    let msg = checkpoints.wait_control(wait.min(Duration::from_millis(10)));
                    metrics.add_idle(started.elapsed());
                    if let Some(msg) = msg {
                        s.on_control(msg, checkpoints)?;
                    }
                } else {
                    std::thread::sleep(wait.min(Duration::from_millis(1)));
                    metrics.add_idle(started.elapsed());
                }
            }
            InputStatus::EndOfInput => {
                // A bounded source ends event time: every timer and window fires.
                s.output.emit_watermark(Watermark::MAX)?;
                return s.output.end_input();
            }
        }
    }
}

fn run_operator(
    gate: &mut InputGate,
    chain: &mut ChainedOperator,
    checkpoints: &mut Checkpoints<'_>,
    cancel: &AtomicBool,
    metrics: &TaskMetrics,
    clock: &dyn Clock,
    buffer_timeout: Duration,
) -> Result<()> {
    for input in gate.inputs_without_channels() {
        chain.end_input(input)?;
    }
    let mut now = clock.now();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(SluiceError::Cancelled);
        }
        while let Some(msg) = checkpoints.next_control() {
            if let TaskControl::NotifyCheckpointComplete(id) = msg {
                chain.notify_checkpoint_complete(id)?;
            }
        }
        let event = gate.next(wait_time(chain.next_processing_time(), now, buffer_timeout))?;
        let idle = gate.take_idle();
        if !idle.is_zero() {
            metrics.add_idle(idle);
        }
        match event {
            GateEvent::Records { input, batch } => {
                metrics.add_records_in(batch.len());
                chain.process_batch(input, batch)?;
            }
            GateEvent::Watermark(w) => {
                metrics.set_watermark(w.0);
                chain.process_watermark(w)?
            }
            GateEvent::IdleStatus(idle) => chain.process_idle_status(idle)?,
            GateEvent::AlignmentStarted => checkpoints.aligning_since = Some(Instant::now()),
            GateEvent::Barrier { barrier, complete } => {
                let started = Instant::now();
                let mut states = Vec::new();
                chain.snapshot_chain(barrier.id, &mut states)?;
                if complete {
                    checkpoints.acknowledge(barrier.id, states, started.elapsed());
                    checkpoints.aligning_since = None;
                } else {
                    checkpoints.held = Some((barrier.id, states, started.elapsed()));
                }
                chain.emit_barrier(barrier)?;
            }
            GateEvent::InFlightComplete { id, data } => {
                if let Some((_, mut states, sync)) =
                    checkpoints.held.take().filter(|(held, ..)| *held == id)
                {
                    // Only data actually overtaken is stored: without it the checkpoint can be rescaled.
                    if !data.is_empty() {
                        let operator = data
                            .iter()
                            .map(postcard::to_allocvec)
                            .collect::<std::result::Result<_, _>>()?;
                        states.push((
                            checkpoints.in_flight_key.clone(),
                            PendingSnapshot::Ready(OperatorSnapshot {
                                keyed: Vec::new(),
                                operator,
                            }),
                        ));
                    }
                    checkpoints.acknowledge(id, states, sync);
                    checkpoints.aligning_since = None;
                }
            }
            GateEvent::CheckpointAborted(id) => {
                checkpoints.held = checkpoints.held.take().filter(|(held, ..)| *held != id);
                checkpoints.decline(id, "overtaken by a newer checkpoint during alignment".into());
            }
            GateEvent::EndOfInput(input) => chain.end_input(input)?,
            GateEvent::Finished => return Ok(()),
            GateEvent::Timeout => {}
        }
        now = clock.now();
        if chain.next_processing_time().is_some_and(|t| t <= now) {
            chain.on_processing_time(now)?;
        }
        chain.flush_if_due(Instant::now())?;
    }
}

/// How long to wait for input: until the next processing-time callback, at
/// most the buffer timeout (so partial batches go out), at least 1 ms.
fn wait_time(next_timer: Option<i64>, now: i64, buffer_timeout: Duration) -> Duration {
    let longest = buffer_timeout.max(Duration::from_millis(1));
    match next_timer {
        Some(t) => longest.min(Duration::from_millis(t.saturating_sub(now).max(1) as u64)),
        None => longest,
    }
}

/// Builds the operator tree of a task from the StreamGraph.
struct ChainBuilder<'a> {
    d: &'a TaskDeployment,
    outputs: OutputChannels,
}

impl ChainBuilder<'_> {
    fn operator(&mut self, node: usize, inputs: usize) -> Result<ChainedOperator> {
        let sg = &self.d.job_graph.stream_graph;
        let n = &sg.nodes[node];
        let NodeBody::Operator { factory, .. } = &n.body else {
            return Err(SluiceError::Internal(format!(
                "source '{}' chained after another operator",
                n.name
            )));
        };
        let output = if n.kind == NodeKind::Sink { Output::none() } else { self.output(node)? };
        Ok(ChainedOperator::new(n.name.clone(), n.state_key(), factory(), inputs, output))
    }

    fn output(&mut self, node: usize) -> Result<Output> {
        let jg = self.d.job_graph.clone();
        let sg = &jg.stream_graph;
        let mut main = Vec::new();
        let mut side: Vec<(String, Vec<OutputTarget>, crate::operator::BatchCloner)> = Vec::new();
        for (edge_index, edge) in sg.out_edges(node) {
            let target = self.target(edge_index)?;
            match &edge.side_output {
                None => main.push(target),
                Some((tag, ty)) => match side.iter_mut().find(|(t, _, _)| t == tag) {
                    Some((_, targets, _)) => targets.push(target),
                    None => side.push((tag.clone(), vec![target], ty.clone_batch)),
                },
            }
        }
        let mut output = Output::new(main, sg.nodes[node].output.clone_batch);
        for (tag, targets, clone_batch) in side {
            output = output.with_side_output(tag, Targets::new(targets, clone_batch));
        }
        Ok(output)
    }

    /// The consumer at the end of one stream edge: a chained operator, or a
    /// record writer over the deployed channels.
    fn target(&mut self, edge_index: usize) -> Result<OutputTarget> {
        let jg = self.d.job_graph.clone();
        let sg = &jg.stream_graph;
        let edge = &sg.edges[edge_index];
        let Some(job_edge) = jg.edge_for_stream_edge(edge_index) else {
            return Ok(OutputTarget::Chained(Box::new(self.operator(edge.target, 1)?)));
        };
        let channels = self.outputs.remove(&job_edge.id).ok_or_else(|| {
            SluiceError::Internal(format!("no channels deployed for edge {}", job_edge.id))
        })?;
        let setup = WriterSetup {
            channels,
            batch_size: sg.config.batch_size,
            buffer_timeout: sg.config.buffer_timeout,
            subtask_index: self.d.subtask_index,
            max_parallelism: sg.config.max_parallelism,
            metrics: self.d.metrics.clone(),
            edge_name: format!("{} -> {}", sg.nodes[edge.source].name, sg.nodes[edge.target].name),
        };
        let writer = match &edge.keyed_writer {
            Some(make) => make(setup),
            None => (edge.output_type(sg).make_writer)(job_edge.partitioner, setup),
        };
        Ok(OutputTarget::Network(writer))
    }
}
