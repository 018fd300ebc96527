//! The operator that runs a user's [`ProcessFunction`].

use std::marker::PhantomData;

use sluice_core::{Data, RecordBatch, Result, Watermark};

use crate::functions::{Context, ProcessFunction};
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
