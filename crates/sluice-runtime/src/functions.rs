//! The user-function traits of the DataStream API that carry more than a
//! closure: process functions with lifecycle and context.

use sluice_core::{FunctionResult, Key, StreamRecord, Timestamp, Watermark};
use sluice_state::keyed_state_backend::{ListRef, MapRef, ValueRef};
use sluice_state::{
    AggregateFunction, AggregatingState, CurrentKey, HeapKeyedStateBackend, InternalTimerService,
    ListState, MapState, ReducingState, TimeDomain, ValueState,
};

use crate::runtime_context::RuntimeContext;

/// Where a function emits its results; each result gets the timestamp of
/// the input record unless one is given.
#[derive(Debug)]
pub struct Collector<'a, O> {
    out: &'a mut Vec<StreamRecord<O>>,
    timestamp: Timestamp,
}

impl<'a, O> Collector<'a, O> {
    /// A collector appending to `out` with `timestamp`.
    pub fn new(out: &'a mut Vec<StreamRecord<O>>, timestamp: Timestamp) -> Self {
        Self { out, timestamp }
    }

    /// Emits a value with the current record's timestamp.
    #[inline]
    pub fn collect(&mut self, value: O) {
        self.out.push(StreamRecord::with_timestamp(value, self.timestamp));
    }

    /// Emits a value with an explicit timestamp.
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: O, timestamp: Timestamp) {
        self.out.push(StreamRecord::with_timestamp(value, timestamp));
    }
}

/// What a [`ProcessFunction`] can see about the current record.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// The record's event timestamp.
    pub timestamp: Timestamp,
    /// The operator's current watermark.
    pub current_watermark: Watermark,
}

/// What a keyed function can reach while it runs: the current key, its
/// keyed state and its timers.
pub struct KeyedContext<'a, K> {
    pub(crate) key: CurrentKey<'a, K>,
    pub(crate) timestamp: Timestamp,
    pub(crate) current_watermark: Watermark,
    pub(crate) time_domain: Option<TimeDomain>,
    pub(crate) state: &'a mut HeapKeyedStateBackend<K>,
    pub(crate) timers: &'a mut InternalTimerService<K>,
}

impl<'a, K: Key> KeyedContext<'a, K> {
    /// The key of the record (or timer) being processed.
    pub fn current_key(&self) -> &K {
        self.key.key
    }

    /// The record's event timestamp (in `on_timer`: the timer's time).
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> Watermark {
        self.current_watermark
    }

    /// The processing time, from the job's clock.
    pub fn current_processing_time(&self) -> i64 {
        self.key.now
    }

    /// In `on_timer`: which kind of timer fired.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.time_domain
    }

    /// The current key's value state.
    pub fn value<V: Clone + 'static>(&mut self, state: &ValueState<V>) -> ValueRef<'_, K, V> {
        self.state.value(state, &self.key)
    }

    /// The current key's list state.
    pub fn list<V: Clone + 'static>(&mut self, state: &ListState<V>) -> ListRef<'_, K, V> {
        self.state.list(state, &self.key)
    }

    /// The current key's map state.
    pub fn map<UK: Clone + 'static, UV: Clone + 'static>(
        &mut self,
        state: &MapState<UK, UV>,
    ) -> MapRef<'_, K, UK, UV> {
        self.state.map(state, &self.key)
    }

    /// Adds to the current key's reducing state.
    pub fn reduce_add<V: Clone + Send + 'static, F: Fn(V, V) -> V>(
        &mut self,
        state: &ReducingState<V, F>,
        value: V,
    ) {
        self.state.reduce_add(state, &self.key, value)
    }

    /// The current key's reduced value.
    pub fn reduce_get<V: Clone + 'static, F>(&mut self, state: &ReducingState<V, F>) -> Option<&V> {
        self.state.reduce_get(state, &self.key)
    }

    /// Adds to the current key's aggregating state.
    pub fn aggregate_add<In, A: AggregateFunction<In>>(
        &mut self,
        state: &AggregatingState<In, A>,
        value: In,
    ) {
        self.state.aggregate_add(state, &self.key, value)
    }

    /// The current key's aggregate.
    pub fn aggregate_get<In, A: AggregateFunction<In>>(
        &mut self,
        state: &AggregatingState<In, A>,
    ) -> Option<A::Out> {
        self.state.aggregate_get(state, &self.key)
    }

    /// Calls `on_timer` for the current key once the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: i64) {
        self.timers.register(TimeDomain::EventTime, time, self.key.key.clone(), self.key.key_group);
    }

    /// Calls `on_timer` for the current key once processing time reaches `time`.
    pub fn register_processing_time_timer(&mut self, time: i64) {
        self.timers.register(
            TimeDomain::ProcessingTime,
            time,
            self.key.key.clone(),
            self.key.key_group,
        );
    }

    /// Deletes the current key's event-time timer at `time`.
    pub fn delete_event_time_timer(&mut self, time: i64) {
        self.timers.delete(TimeDomain::EventTime, time, self.key.key);
    }

    /// Deletes the current key's processing-time timer at `time`.
    pub fn delete_processing_time_timer(&mut self, time: i64) {
        self.timers.delete(TimeDomain::ProcessingTime, time, self.key.key);
    }
}

/// What a keyed function sees in `open`: where it runs, and its keyed state to declare.
pub struct KeyedOpenContext<'a, K> {
    /// Where the function runs.
    pub runtime: &'a RuntimeContext,
    /// Declare keyed state here (`value_state`, `list_state`, ...), keeping the handles.
    pub state: &'a mut HeapKeyedStateBackend<K>,
}

/// A function over each record with lifecycle hooks (Flink's ProcessFunction).
/// Every subtask gets its own clone.
pub trait ProcessFunction<I, O>: Send {
    /// Called once per subtask before the first record.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult {
        Ok(())
    }

    /// Called for every record; emit any number of results to `out`.
    fn process_element(
        &mut self,
        value: I,
        ctx: &Context,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult;

    /// Called once when the input ended (bounded input); may emit final results.
    fn end_input(&mut self, _out: &mut Collector<'_, O>) -> FunctionResult {
        Ok(())
    }
}

/// A [`ProcessFunction`] on a keyed stream: each record comes with its
/// key, keyed state and timers (Flink's KeyedProcessFunction).
pub trait KeyedProcessFunction<K, I, O>: Send {
    /// Called once per subtask before the first record; declares keyed state.
    fn open(&mut self, _ctx: &mut KeyedOpenContext<'_, K>) -> FunctionResult {
        Ok(())
    }

    /// Called for every record.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult;

    /// Called when a timer of the current key fires; `timestamp` is the timer's time.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, K>,
        _out: &mut Collector<'_, O>,
    ) -> FunctionResult {
        Ok(())
    }

    /// Called once when the input ended.
    fn end_input(&mut self, _out: &mut Collector<'_, O>) -> FunctionResult {
        Ok(())
    }
}

/// A function over two connected streams of different types (Flink's CoProcessFunction).
pub trait CoProcessFunction<I1, I2, O>: Send {
    /// Called once per subtask before the first record.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult {
        Ok(())
    }

    /// Called for every record of the first input.
    fn process_element1(
        &mut self,
        value: I1,
        ctx: &Context,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult;

    /// Called for every record of the second input.
    fn process_element2(
        &mut self,
        value: I2,
        ctx: &Context,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult;

    /// Called once when both inputs ended.
    fn end_input(&mut self, _out: &mut Collector<'_, O>) -> FunctionResult {
        Ok(())
    }
}
