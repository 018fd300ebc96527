//! Runs a [`KeyedProcessFunction`]: computes each record's key and key
//! group, gives the function the key's state and timers, fires event-time
//! timers as the watermark passes them and processing-time timers as the
//! clock does, and sweeps expired state.

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use sluice_core::{
    Clock, Data, Key, KeyHasher, RecordBatch, Result, SluiceError, StreamRecord, Timestamp,
    Watermark,
};
use sluice_state::{
    CurrentKey, HeapKeyedStateBackend, InternalTimerService, KeyedStateSnapshot, TimeDomain,
    TimersSnapshot,
};

use crate::functions::{Collector, KeyedContext, KeyedOpenContext, KeyedProcessFunction};
use crate::operator::{KeyGroupsState, Output, StreamOperator};
use crate::operators::user_error;
use crate::runtime_context::RuntimeContext;
use crate::snapshot::{OperatorSnapshot, PendingSnapshot};

/// The operator behind `KeyedStream::process`.
pub struct KeyedProcessOperator<K, I, O, KS, F> {
    key_selector: KS,
    function: F,
    hasher: KeyHasher,
    max_parallelism: usize,
    watermark: Watermark,
    clock: Option<Arc<dyn Clock>>,
    state: Option<HeapKeyedStateBackend<K>>,
    timers: InternalTimerService<K>,
    _types: PhantomData<fn(I) -> O>,
}

impl<K: Eq + Hash + Clone, I, O, KS, F> KeyedProcessOperator<K, I, O, KS, F> {
    /// Runs `function` on records keyed by `key_selector`.
    pub fn new(key_selector: KS, function: F) -> Self {
        Self {
            key_selector,
            function,
            hasher: KeyHasher::new(),
            max_parallelism: 0,
            watermark: Watermark::MIN,
            clock: None,
            state: None,
            timers: InternalTimerService::new(),
            _types: PhantomData,
        }
    }

    /// The keyed state (for tests and the operator harness).
    pub fn keyed_state(&self) -> &HeapKeyedStateBackend<K> {
        self.state.as_ref().expect("opened")
    }

    /// The timers (for tests and the operator harness).
    pub fn timers(&self) -> &InternalTimerService<K> {
        &self.timers
    }
}

impl<K, I, O, KS, F> KeyedProcessOperator<K, I, O, KS, F>
where
    K: Key,
    I: Data,
    O: Data,
    KS: Fn(&I) -> K + Send,
    F: KeyedProcessFunction<K, I, O>,
{
    /// Fires the timers of `domain` due at `up_to`, emitting what they produce.
    fn fire(&mut self, domain: TimeDomain, up_to: i64, now: i64, out: &mut Output) -> Result<()> {
        let mut result = Vec::new();
        let state = self.state.as_mut().expect("opened");
        while let Some((time, key, key_group)) = self.timers.pop_due(domain, up_to) {
            let mut ctx = KeyedContext {
                key: CurrentKey { key: &key, key_group, now },
                timestamp: Timestamp(time),
                current_watermark: self.watermark,
                time_domain: Some(domain),
                state,
                timers: &mut self.timers,
            };
            let mut c = Collector::new(&mut result, Timestamp(time));
            self.function.on_timer(time, &mut ctx, &mut c).map_err(user_error)?;
        }
        out.emit_records(result)
    }
}

impl<K, I, O, KS, F> StreamOperator for KeyedProcessOperator<K, I, O, KS, F>
where
    K: Key,
    I: Data,
    O: Data,
    KS: Fn(&I) -> K + Send,
    F: KeyedProcessFunction<K, I, O>,
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        self.clock = Some(ctx.clock.clone());
        let state = self.state.insert(HeapKeyedStateBackend::new(ctx.key_group_range()));
        self.function.open(&mut KeyedOpenContext { runtime: ctx, state }).map_err(user_error)
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let records = batch.into_records::<I>()?;
        let now = self.clock.as_ref().expect("opened").now();
        let state = self.state.as_mut().expect("opened");
        let mut result = Vec::with_capacity(records.len());
        for StreamRecord { timestamp, value } in records {
            let key = (self.key_selector)(&value);
            let key_group = self.hasher.key_group(&key, self.max_parallelism);
            let mut ctx = KeyedContext {
                key: CurrentKey { key: &key, key_group, now },
                timestamp,
                current_watermark: self.watermark,
                time_domain: None,
                state,
                timers: &mut self.timers,
            };
            let mut c = Collector::new(&mut result, timestamp);
            self.function.process_element(value, &mut ctx, &mut c).map_err(user_error)?;
        }
        state.schedule_cleanup(now);
        out.emit_records(result)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.watermark = watermark;
        let now = self.clock.as_ref().expect("opened").now();
        self.fire(TimeDomain::EventTime, watermark.0, now, out)?;
        out.emit_watermark(watermark)
    }

    fn next_processing_time(&self) -> Option<i64> {
        let cleanup = self.state.as_ref().and_then(|s| s.next_cleanup());
        [self.timers.next_processing_time(), cleanup].into_iter().flatten().min()
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, now, now, out)?;
        let state = self.state.as_mut().expect("opened");
        if state.next_cleanup().is_some_and(|t| t <= now) {
            state.remove_expired(now);
            if !state.is_empty() {
                state.schedule_cleanup(now);
            }
        }
        Ok(())
    }

    fn end_input(&mut self, _input: usize, out: &mut Output) -> Result<()> {
        let mut result = Vec::new();
        self.function
            .end_input(&mut Collector::new(&mut result, Timestamp::NONE))
            .map_err(user_error)?;
        out.emit_records(result)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<PendingSnapshot> {
        Ok(OperatorSnapshot::deferred_keyed(&mut [
            self.state.as_mut().expect("opened"),
            &mut self.timers,
        ]))
    }

    fn restore_state(&mut self, state: OperatorSnapshot) -> Result<()> {
        state.restore_keyed(&mut [self.state.as_mut().expect("opened"), &mut self.timers])
    }

    fn extract_key_groups(
        &mut self,
        range: sluice_core::KeyGroupRange,
    ) -> Result<Option<KeyGroupsState>> {
        let state = self.state.as_mut().expect("opened").extract_key_groups(range)?;
        let timers = self.timers.extract_key_groups(range);
        Ok(Some(Box::new((state, timers))))
    }

    fn insert_key_groups(&mut self, moved: KeyGroupsState) -> Result<()> {
        let (state, timers) = *moved
            .downcast::<(KeyedStateSnapshot, TimersSnapshot<K>)>()
            .map_err(|_| SluiceError::Internal("key groups of another operator type".into()))?;
        self.state.as_mut().expect("opened").insert_key_groups(state)?;
        self.timers.insert_key_groups(timers);
        Ok(())
    }
}
