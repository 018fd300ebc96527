//! DataStream: a typed handle on the records an operator (or a union of
//! operators) emits. Every method adds to the StreamGraph and returns a new
//! handle; nothing runs until the environment executes.

use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use sluice_connectors::{CollectHandle, CollectSink, DiscardingSink, FileSink, PrintSink};
use sluice_core::Data;
use sluice_runtime::functions::ProcessFunction;
use sluice_runtime::operator::StreamOperator;
use sluice_runtime::operators::process::ProcessOperator;
use sluice_runtime::operators::stateless::{FilterOperator, FlatMapOperator, MapOperator};
use sluice_runtime::operators::timestamps_and_watermarks::TimestampsAndWatermarksOperator;
use sluice_runtime::partitioner::{KeyGroupSelector, PartitionerKind};
use sluice_runtime::record_writer::{BySelector, ChannelWriter, WriterSetup};
use sluice_runtime::sink::SinkOperator;
use sluice_runtime::stream_graph::{
    ChainingStrategy, KeyedWriterFactory, NodeBody, NodeKind, OperatorFactory, OutputType,
    StreamNode,
};
use sluice_runtime::two_phase_commit::{TwoPhaseCommitSink, TwoPhaseCommitSinkOperator};
use sluice_runtime::watermark_strategy::{WatermarkGenerator, WatermarkStrategy};
use sluice_runtime::Sink;

use crate::connected_streams::ConnectedStreams;
use crate::environment::Env;
use crate::keyed_stream::KeyedStream;
use crate::output_tag::OutputTag;
use crate::windowed_stream::WindowedStream;
use sluice_runtime::windowing::evictors::NoEvictor;
use sluice_runtime::windowing::WindowAssigner;

/// Windows over a whole (non-keyed) stream, evaluated by one subtask.
pub type AllWindowedStream<T, A> =
    WindowedStream<T, (), fn(&T), A, <A as WindowAssigner>::DefaultTrigger, NoEvictor>;

/// One upstream of a stream: a node and how its records reach the next operator.
#[derive(Clone)]
pub(crate) struct Port {
    pub(crate) node: usize,
    pub(crate) partitioner: Option<PartitionerKind>,
    pub(crate) keyed_writer: Option<KeyedWriterFactory>,
    pub(crate) side_output: Option<(String, OutputType)>,
}

/// A stream of records of type `T`.
pub struct DataStream<T> {
    pub(crate) env: Env,
    pub(crate) ports: Vec<Port>,
    _records: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        Self { env: self.env.clone(), ports: self.ports.clone(), _records: PhantomData }
    }
}

/// Makes a factory of fresh operator instances from a function every subtask clones.
pub(crate) fn factory<F, Op>(f: F, make: fn(F) -> Op) -> OperatorFactory
where
    F: Clone + Send + Sync + 'static,
    Op: StreamOperator + 'static,
{
    Arc::new(move || Box::new(make(f.clone())) as Box<dyn StreamOperator>)
}

impl<T: Data> DataStream<T> {
    pub(crate) fn new(env: Env, node: usize) -> Self {
        Self {
            env,
            ports: vec![Port { node, partitioner: None, keyed_writer: None, side_output: None }],
            _records: PhantomData,
        }
    }

    /// Adds a one-input operator fed by this stream.
    pub(crate) fn add_operator<O: Data>(
        &self,
        name: &str,
        factory: OperatorFactory,
    ) -> DataStream<O> {
        self.add_fed_node(name, NodeKind::Operator, factory)
    }

    /// Adds a one-input node of `kind` fed by every port of this stream.
    fn add_fed_node<O: Data>(
        &self,
        name: &str,
        kind: NodeKind,
        factory: OperatorFactory,
    ) -> DataStream<O> {
        let mut env = self.env.borrow_mut();
        let body = NodeBody::Operator { factory, inputs: 1 };
        let id = env.add_node(name.to_string(), kind, body, OutputType::of::<O>());
        env.connect(&self.ports, id, 0);
        drop(env);
        DataStream::new(self.env.clone(), id)
    }

    fn with_node(self, f: impl Fn(&mut StreamNode)) -> Self {
        {
            let mut env = self.env.borrow_mut();
            // On a union there is no single operator: the setting applies to each upstream.
            for p in &self.ports {
                f(&mut env.nodes[p.node]);
            }
        }
        self
    }

    fn with_partitioner(mut self, kind: PartitionerKind) -> Self {
        for p in &mut self.ports {
            p.partitioner = Some(kind);
            p.keyed_writer = None;
        }
        self
    }

    /// Applies `f` to every record.
    ///
    /// ```
    /// # use sluice_api::StreamExecutionEnvironment;
    /// let env = StreamExecutionEnvironment::new();
    /// let out = env.from_sequence(3).map(|i| i * 10).execute_and_collect("map")?;
    /// assert_eq!(out, vec![0, 10, 20]);
    /// # Ok::<(), sluice_api::SluiceError>(())
    /// ```
    pub fn map<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: FnMut(T) -> O + Clone + Send + Sync + 'static,
    {
        self.add_operator("Map", factory(f, MapOperator::new))
    }

    /// Keeps the records for which `f` is true.
    ///
    /// ```
    /// # use sluice_api::StreamExecutionEnvironment;
    /// let env = StreamExecutionEnvironment::new();
    /// let out = env.from_sequence(10).filter(|i| i % 4 == 0).execute_and_collect("filter")?;
    /// assert_eq!(out, vec![0, 4, 8]);
    /// # Ok::<(), sluice_api::SluiceError>(())
    /// ```
    pub fn filter<F>(&self, f: F) -> DataStream<T>
    where
        F: FnMut(&T) -> bool + Clone + Send + Sync + 'static,
    {
        self.add_operator("Filter", factory(f, FilterOperator::new))
    }

    /// Replaces every record by the records `f` returns.
    ///
    /// ```
    /// # use sluice_api::StreamExecutionEnvironment;
    /// let env = StreamExecutionEnvironment::new();
    /// let lines = env.from_collection(vec!["a b".to_string(), "c".to_string()]);
    /// let words = lines.flat_map(|l: String| l.split(' ').map(str::to_owned).collect::<Vec<_>>());
    /// assert_eq!(words.execute_and_collect("split")?, vec!["a", "b", "c"]);
    /// # Ok::<(), sluice_api::SluiceError>(())
    /// ```
    pub fn flat_map<O: Data, I, F>(&self, f: F) -> DataStream<O>
    where
        I: IntoIterator<Item = O>,
        F: FnMut(T) -> I + Clone + Send + Sync + 'static,
    {
        self.add_operator("Flat Map", factory(f, FlatMapOperator::new))
    }

    /// Runs a [`ProcessFunction`] on every record; each subtask gets a clone.
    pub fn process<O: Data, F>(&self, function: F) -> DataStream<O>
    where
        F: ProcessFunction<T, O> + Clone + Sync + 'static,
    {
        self.add_operator("Process", factory(function, ProcessOperator::new))
    }

    /// Gives each record its event timestamp and generates watermarks for
    /// the stream from here on (upstream watermarks are replaced).
    ///
    /// ```
    /// # use sluice_api::{StreamExecutionEnvironment, WatermarkStrategy};
    /// # use std::time::Duration;
    /// let env = StreamExecutionEnvironment::new();
    /// let events = env.from_collection(vec![(1_000i64, 'a'), (500, 'b')]).assign_timestamps_and_watermarks(
    ///     WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(1))
    ///         .with_timestamp_assigner(|e: &(i64, char), _| e.0),
    /// );
    /// # events.discard();
    /// ```
    pub fn assign_timestamps_and_watermarks<G, Gen, A>(
        &self,
        strategy: WatermarkStrategy<T, G, A>,
    ) -> DataStream<T>
    where
        G: Fn() -> Gen + Clone + Send + Sync + 'static,
        Gen: WatermarkGenerator<T> + 'static,
        A: Fn(&T, i64) -> i64 + Clone + Send + Sync + 'static,
    {
        let factory: OperatorFactory =
            Arc::new(move || Box::new(TimestampsAndWatermarksOperator::new(strategy.clone())));
        self.add_operator("Timestamps/Watermarks", factory)
    }

    /// Partitions by key: records with the same key go to the same subtask
    /// (by key group of the key's stable hash).
    ///
    /// ```
    /// # use sluice_api::StreamExecutionEnvironment;
    /// let env = StreamExecutionEnvironment::new();
    /// let counts = env
    ///     .from_collection(vec![("a", 1), ("b", 1), ("a", 1)].into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    ///     .key_by(|(k, _): &(String, u32)| k.clone())
    ///     .sum(|(_, v)| v)
    ///     .execute_and_collect("count")?;
    /// assert_eq!(counts, vec![("a".to_string(), 1), ("b".to_string(), 1), ("a".to_string(), 2)]);
    /// # Ok::<(), sluice_api::SluiceError>(())
    /// ```
    pub fn key_by<K, KS>(&self, key_selector: KS) -> KeyedStream<T, K, KS>
    where
        K: Data + Serialize + Eq + std::hash::Hash,
        KS: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        let ks = key_selector.clone();
        let writer: KeyedWriterFactory = Arc::new(move |setup: WriterSetup| {
            let selector = KeyGroupSelector::new(ks.clone(), setup.max_parallelism);
            Box::new(ChannelWriter::<T, _>::new(setup, BySelector(selector)))
        });
        let mut stream = self.clone();
        for p in &mut stream.ports {
            p.partitioner = Some(PartitionerKind::Hash);
            p.keyed_writer = Some(writer.clone());
        }
        KeyedStream::new(stream, key_selector)
    }

    /// Non-keyed windows: one subtask sees the whole stream (Flink's windowAll).
    pub fn window_all<A: WindowAssigner>(&self, assigner: A) -> AllWindowedStream<T, A> {
        let mut windowed = self.key_by((|_: &T| ()) as fn(&T)).window(assigner);
        windowed.all = true;
        windowed
    }

    /// The records the operator of this stream sent to side output `tag`.
    pub fn get_side_output<U: Data>(&self, tag: &OutputTag<U>) -> DataStream<U> {
        let mut side = DataStream::<U>::new(self.env.clone(), self.ports[0].node);
        side.ports = self
            .ports
            .iter()
            .map(|p| Port {
                node: p.node,
                partitioner: None,
                keyed_writer: None,
                side_output: Some((tag.id().to_string(), OutputType::of::<U>())),
            })
            .collect();
        side
    }

    /// This stream and `others` as one stream (no operator of its own).
    ///
    /// ```
    /// # use sluice_api::StreamExecutionEnvironment;
    /// let env = StreamExecutionEnvironment::new();
    /// let a = env.from_collection(vec![1u8]);
    /// let b = env.from_collection(vec![2u8]);
    /// let mut out = a.union(&[b]).execute_and_collect("union")?;
    /// out.sort();
    /// assert_eq!(out, vec![1, 2]);
    /// # Ok::<(), sluice_api::SluiceError>(())
    /// ```
    pub fn union(&self, others: &[DataStream<T>]) -> DataStream<T> {
        let mut stream = self.clone();
        for o in others {
            stream.ports.extend(o.ports.iter().cloned());
        }
        stream
    }

    /// Pairs this stream with a stream of another type for a two-input operator.
    ///
    /// ```
    /// # use sluice_api::StreamExecutionEnvironment;
    /// let env = StreamExecutionEnvironment::new();
    /// let numbers = env.from_collection(vec![7u32]);
    /// let names = env.from_collection(vec!["seven".to_string()]);
    /// let mut out = numbers.connect(&names).map(|n| n.to_string(), |s| s).execute_and_collect("co-map")?;
    /// out.sort();
    /// assert_eq!(out, vec!["7", "seven"]);
    /// # Ok::<(), sluice_api::SluiceError>(())
    /// ```
    pub fn connect<U: Data>(&self, other: &DataStream<U>) -> ConnectedStreams<T, U> {
        ConnectedStreams::new(self.clone(), other.clone())
    }

    /// Subtask i sends to subtask i of the next operator (equal parallelism needed).
    pub fn forward(self) -> Self {
        self.with_partitioner(PartitionerKind::Forward)
    }

    /// Round robin over every subtask of the next operator.
    pub fn rebalance(self) -> Self {
        self.with_partitioner(PartitionerKind::Rebalance)
    }

    /// Round robin over a local subset of the next operator's subtasks.
    pub fn rescale(self) -> Self {
        self.with_partitioner(PartitionerKind::Rescale)
    }

    /// A uniformly random subtask of the next operator.
    pub fn shuffle(self) -> Self {
        self.with_partitioner(PartitionerKind::Shuffle)
    }

    /// Every record to every subtask of the next operator.
    pub fn broadcast(self) -> Self {
        self.with_partitioner(PartitionerKind::Broadcast)
    }

    /// Sets the operator's parallelism.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.with_node(|n| n.parallelism = Some(parallelism))
    }

    /// Sets the operator's name (shown in the plan, logs and errors).
    pub fn name(self, name: &str) -> Self {
        let name = name.to_string();
        self.with_node(move |n| {
            n.name = match n.kind {
                NodeKind::Source => format!("Source: {name}"),
                _ => name.clone(),
            }
        })
    }

    /// Sets the operator's stable id, which maps its state across job versions.
    pub fn uid(self, uid: &str) -> Self {
        let uid = uid.to_string();
        self.with_node(move |n| n.uid = Some(uid.clone()))
    }

    /// Runs this operator in a task of its own, chained to nothing.
    pub fn disable_chaining(self) -> Self {
        self.with_node(|n| n.chaining = ChainingStrategy::Never)
    }

    /// Starts a new chain at this operator; later operators may chain to it.
    pub fn start_new_chain(self) -> Self {
        self.with_node(|n| n.chaining = ChainingStrategy::Head)
    }

    /// Puts the operator in a slot sharing group: groups never share slots.
    pub fn slot_sharing_group(self, group: &str) -> Self {
        let group = group.to_string();
        self.with_node(move |n| n.slot_sharing_group = Some(group.clone()))
    }

    /// Writes the stream to `sink`.
    pub fn sink_to<S: Sink<T>>(&self, sink: S) -> DataStreamSink<T> {
        self.sink_named(sink, "Sink")
    }

    fn sink_named<S: Sink<T>>(&self, sink: S, name: &str) -> DataStreamSink<T> {
        let sink: Arc<dyn Sink<T>> = Arc::new(sink);
        let check = sink.clone();
        self.env.borrow_mut().sink_checks.push(Arc::new(move |c| check.validate(c)));
        let merge = sink.clone();
        let factory: OperatorFactory = Arc::new(move || {
            sink.clone()
                .create_operator()
                .unwrap_or_else(|| Box::new(SinkOperator::new(sink.clone())))
        });
        let stream = self.add_fed_node(name, NodeKind::Sink, factory);
        let node = stream.ports[0].node;
        self.env
            .borrow_mut()
            .accumulators
            .push((node, Arc::new(move |b| merge.merge_accumulator(b))));
        DataStreamSink { stream }
    }

    /// Writes the stream to a two-phase-commit sink: output becomes visible
    /// when the checkpoint after it completes (and at end of input).
    pub fn sink_to_exactly_once<S: TwoPhaseCommitSink<T>>(&self, sink: S) -> DataStreamSink<T> {
        let sink = Arc::new(sink);
        let factory: OperatorFactory =
            Arc::new(move || Box::new(TwoPhaseCommitSinkOperator::new(sink.clone())));
        DataStreamSink { stream: self.add_fed_node("Sink: Exactly-once", NodeKind::Sink, factory) }
    }

    /// Prints every record on standard output.
    pub fn print(&self) -> DataStreamSink<T>
    where
        T: Display,
    {
        self.sink_named(PrintSink::new(), "Sink: Print to Std. Out")
    }

    /// Drops every record.
    pub fn discard(&self) -> DataStreamSink<T> {
        self.sink_named(DiscardingSink, "Sink: Discard")
    }

    /// Writes each record's `Display` form as a line into part files under `dir`.
    pub fn write_as_text(&self, dir: impl Into<std::path::PathBuf>) -> DataStreamSink<T>
    where
        T: Display + Sync,
    {
        self.sink_named(FileSink::text(dir), "Sink: Text File")
    }

    /// Writes each record as a JSON line into part files under `dir`.
    pub fn write_as_ndjson(&self, dir: impl Into<std::path::PathBuf>) -> DataStreamSink<T>
    where
        T: Sync,
    {
        self.sink_named(FileSink::ndjson(dir), "Sink: NDJSON File")
    }

    /// Runs the job this stream belongs to and returns the stream's records
    /// (Flink's `executeAndCollect`); the environment is then used up.
    ///
    /// ```
    /// # use sluice_api::StreamExecutionEnvironment;
    /// let env = StreamExecutionEnvironment::new();
    /// assert_eq!(env.from_sequence(2).execute_and_collect("numbers")?, vec![0, 1]);
    /// # Ok::<(), sluice_api::SluiceError>(())
    /// ```
    pub fn execute_and_collect(&self, job_name: &str) -> sluice_core::Result<Vec<T>> {
        let handle = self.collect();
        crate::StreamExecutionEnvironment::from_env(self.env.clone()).execute(job_name)?;
        Ok(handle.take())
    }

    /// Collects every record; read them from the handle after `execute`.
    pub fn collect(&self) -> CollectHandle<T> {
        let (sink, handle) = CollectSink::new();
        self.sink_named(sink, "Sink: Collect");
        handle
    }
}

/// The sink at the end of a stream, whose settings can still be changed.
pub struct DataStreamSink<T> {
    stream: DataStream<T>,
}

impl<T: Data> DataStreamSink<T> {
    /// Sets the sink's parallelism.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        Self { stream: self.stream.set_parallelism(parallelism) }
    }

    /// Sets the sink's name.
    pub fn name(self, name: &str) -> Self {
        Self { stream: self.stream.name(name) }
    }

    /// Sets the sink's stable id.
    pub fn uid(self, uid: &str) -> Self {
        Self { stream: self.stream.uid(uid) }
    }

    /// Runs the sink in a task of its own.
    pub fn disable_chaining(self) -> Self {
        Self { stream: self.stream.disable_chaining() }
    }

    /// Puts the sink in a slot sharing group.
    pub fn slot_sharing_group(self, group: &str) -> Self {
        Self { stream: self.stream.slot_sharing_group(group) }
    }
}
