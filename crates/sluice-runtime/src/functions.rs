//! The user-function traits of the DataStream API that carry more than a
//! closure: process functions with lifecycle and context.

use sluice_core::{FunctionResult, StreamRecord, Timestamp, Watermark};

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

/// What a [`KeyedProcessFunction`] can see: the record and its key.
#[derive(Debug)]
pub struct KeyedContext<'a, K> {
    /// The record's key.
    pub key: &'a K,
    /// The record's event timestamp.
    pub timestamp: Timestamp,
    /// The operator's current watermark.
    pub current_watermark: Watermark,
}

impl<K> KeyedContext<'_, K> {
    /// The key of the record being processed.
    pub fn current_key(&self) -> &K {
        self.key
    }
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

/// A [`ProcessFunction`] on a keyed stream: each record comes with its key.
pub trait KeyedProcessFunction<K, I, O>: Send {
    /// Called once per subtask before the first record.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult {
        Ok(())
    }

    /// Called for every record.
    fn process_element(
        &mut self,
        value: I,
        ctx: &KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult;

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
