//! Two-input operators over connected streams: input 0 carries the first
//! stream's type, input 1 the second's.

use std::marker::PhantomData;

use sluice_core::{Data, RecordBatch, Result, Watermark};

use crate::functions::{CoProcessFunction, Context};
use crate::operator::{Output, StreamOperator};
use crate::operators::{emit_end_of_input, process_records, user_error};
use crate::runtime_context::RuntimeContext;

/// Maps each input with its own function into one output type (Flink's CoMap).
pub struct CoMapOperator<I1, I2, O, F1, F2> {
    f1: F1,
    f2: F2,
    _types: PhantomData<fn(I1, I2) -> O>,
}

impl<I1, I2, O, F1, F2> CoMapOperator<I1, I2, O, F1, F2> {
    /// A co-map with one function per input.
    pub fn new(f1: F1, f2: F2) -> Self {
        Self { f1, f2, _types: PhantomData }
    }
}

impl<I1, I2, O, F1, F2> StreamOperator for CoMapOperator<I1, I2, O, F1, F2>
where
    I1: Data,
    I2: Data,
    O: Data,
    F1: FnMut(I1) -> O + Send,
    F2: FnMut(I2) -> O + Send,
{
    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mapped: Vec<_> = if input == 0 {
            batch.into_records::<I1>()?.into_iter().map(|r| r.replace_with(&mut self.f1)).collect()
        } else {
            batch.into_records::<I2>()?.into_iter().map(|r| r.replace_with(&mut self.f2)).collect()
        };
        out.emit_records::<O>(mapped)
    }
}

/// Runs a [`CoProcessFunction`].
pub struct CoProcessOperator<I1, I2, O, F> {
    function: F,
    watermark: Watermark,
    ended: usize,
    _types: PhantomData<fn(I1, I2) -> O>,
}

impl<I1, I2, O, F> CoProcessOperator<I1, I2, O, F> {
    /// Runs `function`.
    pub fn new(function: F) -> Self {
        Self { function, watermark: Watermark::MIN, ended: 0, _types: PhantomData }
    }
}

impl<I1: Data, I2: Data, O: Data, F: CoProcessFunction<I1, I2, O>> StreamOperator
    for CoProcessOperator<I1, I2, O, F>
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.function.open(ctx).map_err(user_error)
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let (function, current_watermark) = (&mut self.function, self.watermark);
        if input == 0 {
            process_records(batch.into_records::<I1>()?, out, |value, timestamp, c| {
                function.process_element1(value, &Context { timestamp, current_watermark }, c)
            })
        } else {
            process_records(batch.into_records::<I2>()?, out, |value, timestamp, c| {
                function.process_element2(value, &Context { timestamp, current_watermark }, c)
            })
        }
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.watermark = watermark;
        out.emit_watermark(watermark)
    }

    fn end_input(&mut self, _input: usize, out: &mut Output) -> Result<()> {
        self.ended += 1;
        if self.ended < 2 {
            return Ok(());
        }
        emit_end_of_input(out, |c| self.function.end_input(c))
    }
}
