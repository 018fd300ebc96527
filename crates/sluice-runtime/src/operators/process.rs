//! Operators that run a user's process function, keyed or not.

use std::marker::PhantomData;

use serde::Serialize;
use sluice_core::{Data, RecordBatch, Result, Watermark};

use crate::functions::{Context, KeyedContext, KeyedProcessFunction, ProcessFunction};
use crate::operator::{Output, StreamOperator};
use crate::operators::{emit_end_of_input, process_records, user_error};
use crate::runtime_context::RuntimeContext;

/// Runs a [`ProcessFunction`].
pub struct ProcessOperator<I, O, F> {
    function: F,
    watermark: Watermark,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O, F> ProcessOperator<I, O, F> {
    /// Runs `function`.
    pub fn new(function: F) -> Self {
        Self { function, watermark: Watermark::MIN, _types: PhantomData }
    }
}

impl<I: Data, O: Data, F: ProcessFunction<I, O>> StreamOperator for ProcessOperator<I, O, F> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.function.open(ctx).map_err(user_error)
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let (function, current_watermark) = (&mut self.function, self.watermark);
        process_records(batch.into_records::<I>()?, out, |value, timestamp, c| {
            function.process_element(value, &Context { timestamp, current_watermark }, c)
        })
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.watermark = watermark;
        out.emit_watermark(watermark)
    }

    fn end_input(&mut self, _input: usize, out: &mut Output) -> Result<()> {
        emit_end_of_input(out, |c| self.function.end_input(c))
    }
}

/// Runs a [`KeyedProcessFunction`], computing each record's key.
pub struct KeyedProcessOperator<K, I, O, KS, F> {
    key_selector: KS,
    function: F,
    watermark: Watermark,
    _types: PhantomData<fn(I) -> (K, O)>,
}

impl<K, I, O, KS, F> KeyedProcessOperator<K, I, O, KS, F> {
    /// Runs `function` on records keyed by `key_selector`.
    pub fn new(key_selector: KS, function: F) -> Self {
        Self { key_selector, function, watermark: Watermark::MIN, _types: PhantomData }
    }
}

impl<K, I, O, KS, F> StreamOperator for KeyedProcessOperator<K, I, O, KS, F>
where
    K: Serialize + Send + 'static,
    I: Data,
    O: Data,
    KS: Fn(&I) -> K + Send,
    F: KeyedProcessFunction<K, I, O>,
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.function.open(ctx).map_err(user_error)
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let (function, key_selector, current_watermark) =
            (&mut self.function, &self.key_selector, self.watermark);
        process_records(batch.into_records::<I>()?, out, |value, timestamp, c| {
            let key = key_selector(&value);
            function.process_element(
                value,
                &KeyedContext { key: &key, timestamp, current_watermark },
                c,
            )
        })
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.watermark = watermark;
        out.emit_watermark(watermark)
    }

    fn end_input(&mut self, _input: usize, out: &mut Output) -> Result<()> {
        emit_end_of_input(out, |c| self.function.end_input(c))
    }
}
