//! The StreamGraph: the job as the user wrote it, one node per operator,
//! one edge per connection with its partitioner. The DataStream API builds
//! it lazily; nothing runs until it is translated and submitted.

use std::sync::Arc;

use serde::Serialize;
use sluice_checkpoint::CheckpointConfig;
use sluice_core::key_group::check_parallelism;
use sluice_core::{Clock, Data, ExecutionConfig, RecordBatch, Result, SluiceError};

use crate::operator::{clone_batch, BatchCloner, StreamOperator};
use crate::partitioner::PartitionerKind;
use crate::record_writer::{make_writer, RecordWriter, WriterSetup};
use crate::runtime_context::RuntimeContext;
use crate::source::ErasedSource;
use crate::watermark_strategy::SourceWatermarker;

/// Creates one operator instance per subtask.
pub type OperatorFactory = Arc<dyn Fn() -> Box<dyn StreamOperator> + Send + Sync>;
/// Creates the per-split watermark generation of one source subtask.
pub type WatermarkerFactory =
    Arc<dyn Fn(&RuntimeContext) -> Box<dyn SourceWatermarker> + Send + Sync>;
/// Merges a subtask's accumulator into a sink's result where the job was submitted.
pub type AccumulatorMerge = Arc<dyn Fn(&[u8]) -> Result<()> + Send + Sync>;
/// Checks a sink against the job's checkpointing before the job starts.
pub type SinkCheck = Arc<dyn Fn(Option<&CheckpointConfig>) -> Result<()> + Send + Sync>;
/// Creates the record writer of a keyed edge (it holds the key selector).
pub type KeyedWriterFactory = Arc<dyn Fn(WriterSetup) -> Box<dyn RecordWriter> + Send + Sync>;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NodeKind {
    /// Reads from outside; has no inputs.
    Source,
    /// Transforms records.
    Operator,
    /// Writes to outside; has no outputs.
    Sink,
}

/// Whether a node may share a task with its neighbours (Flink's ChainingStrategy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ChainingStrategy {
    /// Chain with the upstream and downstream whenever possible.
    Always,
    /// Never chain (`disable_chaining`).
    Never,
    /// Start a new chain here, but let downstream chain to it (`start_new_chain`).
    Head,
}

/// The runtime part of a node.
#[derive(Clone)]
pub enum NodeBody {
    /// A source, with the watermark generation that runs inside its task, if any.
    Source {
        /// The source.
        source: Arc<dyn ErasedSource>,
        /// Creates the per-split timestamps and watermarks of one subtask.
        watermarks: Option<WatermarkerFactory>,
    },
    /// An operator with `inputs` logical inputs (1 or 2).
    Operator {
        /// Creates the operator of each subtask.
        factory: OperatorFactory,
        /// Number of logical inputs.
        inputs: usize,
    },
}

/// The record type a node emits, with what the runtime needs to move it.
#[derive(Clone, Copy)]
pub struct OutputType {
    /// Rust type name.
    pub name: &'static str,
    /// Clones a batch of this type.
    pub clone_batch: BatchCloner,
    /// Builds writers of this type for unkeyed partitioners.
    pub make_writer: fn(PartitionerKind, WriterSetup) -> Box<dyn RecordWriter>,
    /// Serializes a batch of this type (in-flight data of unaligned checkpoints).
    pub encode_batch: fn(&RecordBatch) -> Result<Vec<u8>>,
    /// Deserializes a batch written by `encode_batch`.
    pub decode_batch: fn(&[u8]) -> Result<RecordBatch>,
}

fn encode_batch<T: Data>(batch: &RecordBatch) -> Result<Vec<u8>> {
    Ok(postcard::to_allocvec(batch.records::<T>()?)?)
}

fn decode_batch<T: Data>(bytes: &[u8]) -> Result<RecordBatch> {
    Ok(RecordBatch::new(postcard::from_bytes::<Vec<sluice_core::StreamRecord<T>>>(bytes)?))
}

impl OutputType {
    /// The output type for records of type `T`.
    pub fn of<T: Data>() -> Self {
        Self {
            name: std::any::type_name::<T>(),
            clone_batch: clone_batch::<T>,
            make_writer: make_writer::<T>,
            encode_batch: encode_batch::<T>,
            decode_batch: decode_batch::<T>,
        }
    }
}

/// One operator of the job.
#[derive(Clone)]
pub struct StreamNode {
    /// Position in [`StreamGraph::nodes`]; upstream nodes have smaller ids.
    pub id: usize,
    /// Display name, e.g. "Source: words" or "Map".
    pub name: String,
    /// Stable id for mapping state across job versions.
    pub uid: Option<String>,
    /// Parallelism set on the operator (`None`: the job default).
    pub parallelism: Option<usize>,
    /// Source, operator or sink.
    pub kind: NodeKind,
    /// What runs.
    pub body: NodeBody,
    /// The record type it emits.
    pub output: OutputType,
    /// Chaining behaviour.
    pub chaining: ChainingStrategy,
    /// Slot sharing group set on the operator (`None`: inherit from inputs).
    pub slot_sharing_group: Option<String>,
}

impl StreamNode {
    /// The key its state is stored under in checkpoints: its uid, else its
    /// position in the graph (stable only while the job's code is).
    pub fn state_key(&self) -> String {
        self.uid.clone().unwrap_or_else(|| format!("node-{}", self.id))
    }
}

/// A connection between two nodes.
#[derive(Clone)]
pub struct StreamEdge {
    /// Upstream node.
    pub source: usize,
    /// Downstream node.
    pub target: usize,
    /// Logical input of the target (0, or 1 for a two-input operator's second input).
    pub type_number: usize,
    /// Partitioner set by the user (`None`: forward if the parallelism matches, else rebalance).
    pub partitioner: Option<PartitionerKind>,
    /// For [`PartitionerKind::Hash`]: builds writers with the key selector.
    pub keyed_writer: Option<KeyedWriterFactory>,
    /// The side output this edge carries (its tag and record type), if not the main output.
    pub side_output: Option<(String, OutputType)>,
}

impl StreamEdge {
    /// The record type the edge carries.
    pub fn output_type(&self, graph: &StreamGraph) -> OutputType {
        match &self.side_output {
            Some((_, t)) => *t,
            None => graph.nodes[self.source].output,
        }
    }
}

/// The job as written.
#[derive(Clone)]
pub struct StreamGraph {
    /// The job's name.
    pub job_name: String,
    /// Job-level settings.
    pub config: ExecutionConfig,
    /// Nodes, in the order they were added (upstream first).
    pub nodes: Vec<StreamNode>,
    /// Edges.
    pub edges: Vec<StreamEdge>,
    /// Processing time for every operator (the wall clock unless a test sets another).
    pub clock: Arc<dyn Clock>,
    /// Checkpointing, if enabled.
    pub checkpoint_config: Option<CheckpointConfig>,
    /// Where checkpoints go (a directory, `file://`, `memory://`).
    pub checkpoint_storage: Option<String>,
    /// Checks of the job's sinks, run by [`StreamGraph::validate`].
    pub sink_checks: Vec<SinkCheck>,
    /// Per sink node id: where its subtasks' accumulators are merged.
    pub accumulators: Vec<(usize, AccumulatorMerge)>,
}

/// The default slot sharing group.
pub const DEFAULT_SLOT_SHARING_GROUP: &str = "default";

impl StreamGraph {
    /// The effective parallelism of a node.
    pub fn parallelism(&self, node: usize) -> usize {
        self.nodes[node].parallelism.unwrap_or(self.config.parallelism)
    }

    /// Edges leaving `node`, in the order they were added.
    pub fn out_edges(&self, node: usize) -> impl Iterator<Item = (usize, &StreamEdge)> {
        self.edges.iter().enumerate().filter(move |(_, e)| e.source == node)
    }

    /// Edges entering `node`.
    pub fn in_edges(&self, node: usize) -> impl Iterator<Item = (usize, &StreamEdge)> {
        self.edges.iter().enumerate().filter(move |(_, e)| e.target == node)
    }

    /// The partitioner an edge uses: the user's, or forward when the
    /// parallelism matches and rebalance when it does not (Flink's rule).
    pub fn partitioner(&self, edge: &StreamEdge) -> PartitionerKind {
        edge.partitioner.unwrap_or(
            if self.parallelism(edge.source) == self.parallelism(edge.target) {
                PartitionerKind::Forward
            } else {
                PartitionerKind::Rebalance
            },
        )
    }

    /// The slot sharing group of every node: its own, else its inputs' if
    /// they all agree, else the default.
    pub fn slot_sharing_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let g = match &node.slot_sharing_group {
                Some(g) => g.clone(),
                None => {
                    let mut inputs = self.in_edges(node.id).map(|(_, e)| &groups[e.source]);
                    match inputs.next() {
                        Some(first) if inputs.all(|g| g == first) => first.clone(),
                        _ => DEFAULT_SLOT_SHARING_GROUP.to_string(),
                    }
                }
            };
            groups.push(g);
        }
        groups
    }

    /// Checks the graph can run; the error names the operator and what is wrong.
    pub fn validate(&self) -> Result<()> {
        self.config.validate()?;
        if let Some(c) = &self.checkpoint_config {
            c.validate()?;
        }
        for check in &self.sink_checks {
            check(self.checkpoint_config.as_ref())?;
        }
        if !self.nodes.iter().any(|n| n.kind == NodeKind::Sink) {
            return Err(SluiceError::InvalidJob(
                "the job has no sink: add one with sink_to(...) (or print/collect) before execute"
                    .into(),
            ));
        }
        let max = self.config.max_parallelism;
        for node in &self.nodes {
            let p = self.parallelism(node.id);
            check_parallelism(&node.name, p, max)?;
            if let NodeBody::Source { source, .. } = &node.body {
                if let Some(limit) = source.max_parallelism() {
                    if p > limit {
                        return Err(SluiceError::InvalidJob(format!(
                            "operator '{}': parallelism {p} is above this source's maximum of {limit}",
                            node.name
                        )));
                    }
                }
            }
            if let NodeBody::Operator { inputs, .. } = node.body {
                for input in 0..inputs {
                    if !self.in_edges(node.id).any(|(_, e)| e.type_number == input) {
                        return Err(SluiceError::InvalidJob(format!(
                            "operator '{}': input {} is not connected",
                            node.name,
                            input + 1
                        )));
                    }
                }
            }
        }
        for edge in &self.edges {
            let (up, down) = (self.parallelism(edge.source), self.parallelism(edge.target));
            if edge.partitioner == Some(PartitionerKind::Forward) && up != down {
                return Err(SluiceError::InvalidJob(format!(
                    "forward partitioning from '{}' (parallelism {up}) to '{}' (parallelism {down}) \
                     needs equal parallelism: use rebalance() or rescale()",
                    self.nodes[edge.source].name, self.nodes[edge.target].name
                )));
            }
        }
        Ok(())
    }
}
