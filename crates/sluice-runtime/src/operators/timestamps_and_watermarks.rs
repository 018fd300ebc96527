//! `assign_timestamps_and_watermarks`: gives each record its event time and
//! generates watermarks for the stream from here on. Watermarks from
//! upstream are replaced, except the final one at end of input.

use std::sync::Arc;

use sluice_core::{Clock, Data, RecordBatch, Result, Watermark};

use crate::operator::{Output, StreamOperator};
use crate::runtime_context::RuntimeContext;
use crate::watermark_strategy::{
    SplitWatermarks, WatermarkGenerator, WatermarkStrategy, WatermarkUpdate,
};

/// Flink's TimestampsAndWatermarksOperator.
pub struct TimestampsAndWatermarksOperator<T, G, Gen, A> {
    strategy: WatermarkStrategy<T, G, A>,
    state: Option<SplitWatermarks<T, G, Gen, A>>,
    clock: Option<Arc<dyn Clock>>,
}

impl<T, G, Gen, A> TimestampsAndWatermarksOperator<T, G, Gen, A> {
    /// An operator applying `strategy`.
    pub fn new(strategy: WatermarkStrategy<T, G, A>) -> Self {
        Self { strategy, state: None, clock: None }
    }
}

/// Sends a watermark update downstream.
pub(crate) fn emit_update(update: WatermarkUpdate, out: &mut Output) -> Result<()> {
    if let Some(w) = update.watermark {
        out.emit_watermark(w)?;
    }
    if let Some(idle) = update.idle {
        out.emit_idle_status(idle)?;
    }
    Ok(())
}

impl<T, G, Gen, A> StreamOperator for TimestampsAndWatermarksOperator<T, G, Gen, A>
where
    T: Data,
    G: Fn() -> Gen + Clone + Send,
    Gen: WatermarkGenerator<T>,
    A: Fn(&T, i64) -> i64 + Clone + Send,
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.state = Some(self.strategy.create(ctx.auto_watermark_interval, ctx.clock.now()));
        self.clock = Some(ctx.clock.clone());
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mut records = batch.into_records::<T>()?;
        let now = self.clock.as_ref().expect("opened").now();
        let state = self.state.as_mut().expect("opened");
        state.on_records(0, &mut records, now);
        out.emit_records(records)?;
        emit_update(state.update(), out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if watermark == Watermark::MAX {
            out.emit_watermark(watermark)?;
        }
        Ok(())
    }

    fn process_idle_status(&mut self, _idle: bool, _out: &mut Output) -> Result<()> {
        // This operator decides idleness itself, from its own input.
        Ok(())
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.state.as_ref().map(|s| s.next_periodic())
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<()> {
        let state = self.state.as_mut().expect("opened");
        state.on_periodic(now);
        emit_update(state.update(), out)
    }
}
