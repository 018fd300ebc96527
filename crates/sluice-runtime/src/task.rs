//! A task: one subtask of a job vertex, running its operator chain on its
//! own thread. The loop takes input (a source reader's batches, or the input
//! gate's events), pushes it through the chain, and sends partly filled
//! batches when the buffer timeout passes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::{Clock, Result, SluiceError, Watermark};

use crate::channel::{ChannelSender, GateEvent, InputChannel, InputGate};
use crate::job_graph::JobGraph;
use crate::metrics::TaskMetrics;
use crate::operator::{task_error, ChainedOperator, Output, OutputTarget, Targets};
use crate::operators::timestamps_and_watermarks::emit_update;
use crate::record_writer::WriterSetup;
use crate::runtime_context::RuntimeContext;
use crate::source::{ErasedSourceReader, InputStatus, SerializedSplit};
use crate::stream_graph::{NodeBody, NodeKind};
use crate::watermark_strategy::SourceWatermarker;

/// A subtask's output channels: per outgoing job edge id, one channel per
/// connected downstream subtask, in subtask order.
pub type OutputChannels = HashMap<usize, Vec<ChannelSender>>;

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
    /// Splits for a source task.
    pub splits: Vec<SerializedSplit>,
    /// Set when the job is cancelled or failing.
    pub cancel: Arc<AtomicBool>,
    /// The task's counters.
    pub metrics: Arc<TaskMetrics>,
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
    },
    Operator {
        gate: Box<InputGate>,
        chain: ChainedOperator,
    },
}

/// Runs a task to completion and passes its outcome (the first error, naming
/// the operator and subtask) to `report` while the task's channel ends are
/// still open: a root cause is reported before the failures it causes downstream.
pub fn run_task(d: TaskDeployment, report: impl FnOnce(Result<()>)) {
    let mut head = None;
    let result = run_task_inner(d, &mut head);
    report(result);
    drop(head);
}

fn run_task_inner(mut d: TaskDeployment, head_slot: &mut Option<Head>) -> Result<()> {
    let task_name = d.task_name();
    let inputs = std::mem::take(&mut d.inputs);
    let outputs = std::mem::take(&mut d.outputs);
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
    };
    let mut builder = ChainBuilder { d: &d, outputs };
    let head_node = &sg.nodes[vertex.head];
    let head = match &head_node.body {
        NodeBody::Source { source, watermarks } => {
            let ctx = make_ctx(&head_node.name);
            let reader = source
                .create_reader(&ctx, &d.splits)
                .map_err(|e| task_error(&head_node.name, &subtask, e))?;
            Head::Source {
                reader,
                watermarks: watermarks.as_ref().map(|make| make(&ctx)),
                output: builder.output(vertex.head)?,
                name: head_node.name.clone(),
            }
        }
        NodeBody::Operator { inputs: inputs_count, .. } => {
            let gate = Box::new(InputGate::new(inputs, *inputs_count));
            Head::Operator { gate, chain: builder.operator(vertex.head, *inputs_count)? }
        }
    };

    let head = head_slot.insert(head);
    let mut ctx_for = |name: &str| make_ctx(name);
    let result = match head {
        Head::Source { reader, watermarks, output, name } => output
            .open(&mut ctx_for)
            .and_then(|_| {
                let watermarks =
                    watermarks.as_mut().map(|w| &mut **w as &mut dyn SourceWatermarker);
                let source = SourceHead { reader: reader.as_mut(), watermarks, output };
                run_source(source, &d.cancel, &d.metrics, &*sg.clock, sg.config.buffer_timeout)
            })
            .map_err(|e| match e {
                SluiceError::Task { .. } => e,
                e => task_error(name, &subtask, e),
            }),
        Head::Operator { gate, chain } => chain.open(&mut ctx_for).and_then(|_| {
            run_operator(gate, chain, &d.cancel, &d.metrics, &*sg.clock, sg.config.buffer_timeout)
        }),
    };
    let closed = match head {
        Head::Source { reader, output, .. } => reader.close().and(output.close()),
        Head::Operator { chain, .. } => chain.close(),
    };
    result.and(closed)
}

/// A source task's head: its reader, the watermarks generated at the
/// source (if it has a strategy), and the chain after it.
struct SourceHead<'a> {
    reader: &'a mut dyn ErasedSourceReader,
    watermarks: Option<&'a mut dyn SourceWatermarker>,
    output: &'a mut Output,
}

fn run_source(
    mut s: SourceHead<'_>,
    cancel: &AtomicBool,
    metrics: &TaskMetrics,
    clock: &dyn Clock,
    buffer_timeout: Duration,
) -> Result<()> {
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(SluiceError::Cancelled);
        }
        let (mut batch, splits, status) = s.reader.poll_batch()?;
        metrics.add_source_records(batch.len());
        let mut now = clock.now();
        let update = match s.watermarks.as_deref_mut() {
            Some(w) => Some(w.on_batch(&mut batch, &splits, now)?),
            None => None,
        };
        s.output.emit(batch)?;
        if let Some(update) = update {
            emit_update(update, s.output)?;
        }
        now = now.max(clock.now());
        if let Some(w) = s.watermarks.as_deref_mut().filter(|w| w.next_periodic() <= now) {
            emit_update(w.on_periodic(now), s.output)?;
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
                let next = next.into_iter().flatten().min();
                std::thread::sleep(
                    wait_time(next, now, buffer_timeout).min(Duration::from_millis(1)),
                );
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
        match gate.next(wait_time(chain.next_processing_time(), now, buffer_timeout))? {
            GateEvent::Records { input, batch } => {
                metrics.add_records_in(batch.len());
                chain.process_batch(input, batch)?;
            }
            GateEvent::Watermark(w) => chain.process_watermark(w)?,
            GateEvent::IdleStatus(idle) => chain.process_idle_status(idle)?,
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
        Ok(ChainedOperator::new(n.name.clone(), factory(), inputs, output))
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
