//! The StreamExecutionEnvironment: job settings, sources, and `execute`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_checkpoint::CheckpointConfig;
use sluice_cluster::{
    DataPlane, JobClient, JobExecutionResult, JobOptions, MiniCluster, MiniClusterConfig,
    RestartStrategy, RestoreSource,
};
use sluice_connectors::{CollectionSource, DataGeneratorSource, FileSource, SocketTextSource};
use sluice_core::{Clock, Data, ExecutionConfig, Result, SluiceError, SystemClock};
use sluice_runtime::execution_graph::ExecutionGraph;
use sluice_runtime::job_graph::JobGraph;
use sluice_runtime::plan::Plan;
use sluice_runtime::source::{ErasedSource, Source, SourceAdapter};
use sluice_runtime::stream_graph::{
    AccumulatorMerge, ChainingStrategy, NodeBody, NodeKind, OutputType, SinkCheck, StreamEdge,
    StreamGraph, StreamNode, WatermarkerFactory,
};
use sluice_runtime::watermark_strategy::{
    SourceWatermarker, WatermarkGenerator, WatermarkStrategy,
};
use sluice_runtime::RuntimeContext;

use crate::data_stream::{DataStream, Port};

/// The graph being built, shared by the environment and every stream of it.
pub(crate) struct EnvState {
    pub(crate) config: ExecutionConfig,
    pub(crate) cluster: Option<MiniClusterConfig>,
    pub(crate) nodes: Vec<StreamNode>,
    pub(crate) edges: Vec<StreamEdge>,
    pub(crate) executed: Option<String>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) checkpoint_config: Option<CheckpointConfig>,
    pub(crate) checkpoint_storage: Option<String>,
    pub(crate) options: JobOptions,
    pub(crate) sink_checks: Vec<SinkCheck>,
    pub(crate) accumulators: Vec<(usize, AccumulatorMerge)>,
}

pub(crate) type Env = Rc<RefCell<EnvState>>;

impl EnvState {
    pub(crate) fn add_node(
        &mut self,
        name: String,
        kind: NodeKind,
        body: NodeBody,
        output: OutputType,
    ) -> usize {
        let id = self.nodes.len();
        self.nodes.push(StreamNode {
            id,
            name,
            uid: None,
            parallelism: None,
            kind,
            body,
            output,
            chaining: ChainingStrategy::Always,
            slot_sharing_group: None,
        });
        id
    }

    pub(crate) fn connect(&mut self, ports: &[Port], target: usize, type_number: usize) {
        for p in ports {
            self.edges.push(StreamEdge {
                source: p.node,
                target,
                type_number,
                partitioner: p.partitioner,
                keyed_writer: p.keyed_writer.clone(),
                side_output: p.side_output.clone(),
            });
        }
    }
}

/// The context a job is built and run in (Flink's StreamExecutionEnvironment).
/// By default it runs jobs on an embedded mini-cluster.
pub struct StreamExecutionEnvironment {
    env: Env,
}

impl Default for StreamExecutionEnvironment {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamExecutionEnvironment {
    pub(crate) fn from_env(env: Env) -> Self {
        Self { env }
    }

    /// An environment with default settings, running on an embedded mini-cluster.
    pub fn new() -> Self {
        Self::with_config(ExecutionConfig::default())
    }

    /// An environment with the given settings.
    pub fn with_config(config: ExecutionConfig) -> Self {
        let state = EnvState {
            config,
            cluster: None,
            nodes: Vec::new(),
            edges: Vec::new(),
            executed: None,
            clock: Arc::new(SystemClock),
            checkpoint_config: None,
            checkpoint_storage: None,
            options: JobOptions::default(),
            sink_checks: Vec::new(),
            accumulators: Vec::new(),
        };
        Self { env: Rc::new(RefCell::new(state)) }
    }

    /// The job settings.
    pub fn config(&self) -> ExecutionConfig {
        self.env.borrow().config.clone()
    }

    /// Default parallelism of operators that set none.
    pub fn set_parallelism(&self, parallelism: usize) -> &Self {
        self.env.borrow_mut().config.parallelism = parallelism;
        self
    }

    /// Number of key groups (default 128): the upper bound of any parallelism.
    pub fn set_max_parallelism(&self, max_parallelism: usize) -> &Self {
        self.env.borrow_mut().config.max_parallelism = max_parallelism;
        self
    }

    /// Longest time a partly filled batch waits before it is sent.
    pub fn set_buffer_timeout(&self, timeout: Duration) -> &Self {
        self.env.borrow_mut().config.buffer_timeout = timeout;
        self
    }

    /// Records per batch.
    pub fn set_batch_size(&self, records: usize) -> &Self {
        self.env.borrow_mut().config.batch_size = records;
        self
    }

    /// Batches a channel holds before its sender blocks.
    pub fn set_channel_capacity(&self, batches: usize) -> &Self {
        self.env.borrow_mut().config.channel_capacity = batches;
        self
    }

    /// How often periodic watermark generators emit (default 200 ms).
    pub fn set_auto_watermark_interval(&self, interval: Duration) -> &Self {
        self.env.borrow_mut().config.auto_watermark_interval = interval;
        self
    }

    /// The processing-time clock every operator reads (default: the wall
    /// clock); tests pass a [`sluice_core::ManualClock`] to drive it.
    pub fn set_clock(&self, clock: Arc<dyn Clock>) -> &Self {
        self.env.borrow_mut().clock = clock;
        self
    }

    /// Takes an exactly-once checkpoint every `interval` (Flink's defaults otherwise).
    pub fn enable_checkpointing(&self, interval: Duration) -> &Self {
        self.env.borrow_mut().checkpoint_config = Some(CheckpointConfig::new(interval));
        self
    }

    /// Sets every checkpoint setting (mode, timeout, pauses, tolerated failures, ...).
    pub fn set_checkpoint_config(&self, config: CheckpointConfig) -> &Self {
        self.env.borrow_mut().checkpoint_config = Some(config);
        self
    }

    /// Where checkpoints are written: a directory, `file:///dir` or `memory://`.
    pub fn set_checkpoint_storage(&self, url: impl Into<String>) -> &Self {
        self.env.borrow_mut().checkpoint_storage = Some(url.into());
        self
    }

    /// How the job restarts after a failure (default: exponential delay with
    /// checkpointing, no restart without).
    pub fn set_restart_strategy(&self, strategy: RestartStrategy) -> &Self {
        self.env.borrow_mut().options.restart_strategy = Some(strategy);
        self
    }

    /// Fails the job once the same failure that restarting cannot heal (a user
    /// function's error or panic, a malformed record, a bug) happened `n`
    /// times since the last completed checkpoint, whatever the restart
    /// strategy allows (default 3; at least 1). Failures of external systems
    /// follow the restart strategy alone.
    pub fn set_max_identical_failures(&self, n: u32) -> &Self {
        self.env.borrow_mut().options.max_identical_failures = Some(n);
        self
    }

    /// Starts the job from a checkpoint or savepoint.
    pub fn restore_from(&self, source: RestoreSource) -> &Self {
        self.env.borrow_mut().options.restore = Some(source);
        self
    }

    /// Skips state in the restored checkpoint for operators the job no longer has.
    pub fn allow_non_restored_state(&self) -> &Self {
        self.env.borrow_mut().options.allow_non_restored_state = true;
        self
    }

    /// Runs every operator in its own task.
    pub fn disable_operator_chaining(&self) -> &Self {
        self.env.borrow_mut().config.chaining_enabled = false;
        self
    }

    /// Sets a global job parameter, readable by every function through its `RuntimeContext`.
    pub fn set_job_parameter(&self, name: impl Into<String>, value: impl Into<String>) -> &Self {
        self.env.borrow_mut().config.job_parameters.insert(name.into(), value.into());
        self
    }

    /// The global job parameters.
    pub fn job_parameters(&self) -> BTreeMap<String, String> {
        self.env.borrow().config.job_parameters.clone()
    }

    /// Runs jobs on a mini-cluster of `task_managers` × `slots_per_task_manager`
    /// (default: one TaskManager with as many slots as the job needs).
    pub fn set_mini_cluster(&self, task_managers: usize, slots_per_task_manager: usize) -> &Self {
        self.set_mini_cluster_with(task_managers, slots_per_task_manager, DataPlane::InMemory)
    }

    /// Like [`Self::set_mini_cluster`], with the TaskManagers exchanging
    /// records through `data_plane` (TCP on loopback, as between processes).
    pub fn set_mini_cluster_with(
        &self,
        task_managers: usize,
        slots_per_task_manager: usize,
        data_plane: DataPlane,
    ) -> &Self {
        self.env.borrow_mut().cluster =
            Some(MiniClusterConfig { task_managers, slots_per_task_manager, data_plane });
        self
    }

    /// Adds a source.
    pub fn from_source<T: Data, S: Source<T>>(&self, source: S, name: &str) -> DataStream<T> {
        self.add_source(source, None, name)
    }

    /// Adds a source whose subtasks assign timestamps and generate
    /// watermarks per split (per file, per partition): a slow split holds
    /// the watermark back; an idle split (with `with_idleness`) does not.
    pub fn from_source_with_watermarks<T, S, G, Gen, A>(
        &self,
        source: S,
        strategy: WatermarkStrategy<T, G, A>,
        name: &str,
    ) -> DataStream<T>
    where
        T: Data,
        S: Source<T>,
        G: Fn() -> Gen + Clone + Send + Sync + 'static,
        Gen: WatermarkGenerator<T> + 'static,
        A: Fn(&T, i64) -> i64 + Clone + Send + Sync + 'static,
    {
        let factory: WatermarkerFactory = Arc::new(move |ctx: &RuntimeContext| {
            Box::new(strategy.create(ctx.auto_watermark_interval, ctx.clock.now()))
                as Box<dyn SourceWatermarker>
        });
        self.add_source(source, Some(factory), name)
    }

    fn add_source<T: Data, S: Source<T>>(
        &self,
        source: S,
        watermarks: Option<WatermarkerFactory>,
        name: &str,
    ) -> DataStream<T> {
        let source: Arc<dyn ErasedSource> = Arc::new(SourceAdapter::new(source));
        let id = self.env.borrow_mut().add_node(
            format!("Source: {name}"),
            NodeKind::Source,
            NodeBody::Source { source, watermarks },
            OutputType::of::<T>(),
        );
        DataStream::new(self.env.clone(), id)
    }

    /// The elements of a vector.
    pub fn from_collection<T: Data + Sync>(&self, elements: Vec<T>) -> DataStream<T> {
        self.from_source(CollectionSource::new(elements), "Collection")
    }

    /// The numbers `0..count`.
    pub fn from_sequence(&self, count: u64) -> DataStream<u64> {
        self.from_source(DataGeneratorSource::sequence(count), "Sequence")
    }

    /// The lines of a text file or of the files in a directory.
    pub fn read_text_file(&self, path: impl Into<std::path::PathBuf>) -> DataStream<String> {
        self.from_source(FileSource::lines(path), "Text File")
    }

    /// The lines a TCP server sends (parallelism 1).
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DataStream<String> {
        self.from_source(SocketTextSource::new(host, port), &format!("Socket {host}:{port}"))
            .set_parallelism(1)
    }

    /// The StreamGraph built so far.
    pub fn stream_graph(&self, job_name: &str) -> Result<StreamGraph> {
        let s = self.env.borrow();
        if let Some(previous) = &s.executed {
            return Err(SluiceError::InvalidJob(format!(
                "this environment already executed job '{previous}'; create a new StreamExecutionEnvironment for another job"
            )));
        }
        let graph = StreamGraph {
            job_name: job_name.to_string(),
            config: s.config.clone(),
            nodes: s.nodes.clone(),
            edges: s.edges.clone(),
            clock: s.clock.clone(),
            checkpoint_config: s.checkpoint_config.clone(),
            checkpoint_storage: s.checkpoint_storage.clone(),
            sink_checks: s.sink_checks.clone(),
            accumulators: s.accumulators.clone(),
        };
        graph.validate()?;
        Ok(graph)
    }

    fn cluster_for(&self, job_graph: &JobGraph) -> MiniClusterConfig {
        self.env.borrow().cluster.unwrap_or_else(|| {
            // Flink's local environment: one TaskManager with the slots the job needs.
            MiniClusterConfig {
                task_managers: 1,
                slots_per_task_manager: ExecutionGraph::slots_needed(job_graph).max(1),
                data_plane: DataPlane::InMemory,
            }
        })
    }

    /// The StreamGraph, JobGraph and ExecutionGraph this job would run as, without running it.
    pub fn explain(&self) -> Result<Plan> {
        let job_graph = JobGraph::from_stream_graph(Arc::new(self.stream_graph("explain")?))?;
        let placed = self.cluster_for(&job_graph).place(&job_graph)?;
        Ok(Plan::new(&job_graph, placed))
    }

    /// Builds the job, runs it on the mini-cluster, and waits for it to end.
    /// The error of a failed job names the operator, the subtask and the cause.
    pub fn execute(&self, job_name: &str) -> Result<JobExecutionResult> {
        let (client, _cluster) = self.start(job_name)?;
        client.wait()
    }

    /// Builds the job and starts it; the returned client follows and cancels it.
    pub fn execute_async(&self, job_name: &str) -> Result<JobClient> {
        Ok(self.start(job_name)?.0)
    }

    /// Builds the job without running it: its JobGraph and how it runs, to
    /// submit to a cluster elsewhere.
    pub fn job(&self, job_name: &str) -> Result<(JobGraph, JobOptions)> {
        let graph = self.stream_graph(job_name)?;
        self.env.borrow_mut().executed = Some(job_name.to_string());
        let job_graph = JobGraph::from_stream_graph(Arc::new(graph))?;
        Ok((job_graph, self.env.borrow().options.clone()))
    }

    fn start(&self, job_name: &str) -> Result<(JobClient, MiniCluster)> {
        let (job_graph, options) = self.job(job_name)?;
        let cluster = MiniCluster::start(self.cluster_for(&job_graph))?;
        Ok((cluster.submit_job(job_graph, options)?, cluster))
    }
}
