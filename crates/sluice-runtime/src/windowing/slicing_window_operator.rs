//! Tumbling and sliding windows computed from slices (panes).
//!
//! Every window of size `size` starting every `slide` is a union of slices
//! of length `gcd(size, slide)`. A record updates exactly one slice
//! accumulator, so a sliding window costs per record what a tumbling one
//! does; a firing merges the `size / gcd` slices of its window. Each key
//! keeps one pending timer: the end of its next window with data.
//!
//! Used when the trigger is the assigner's default and there is no evictor;
//! the results equal the general window operator's.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use sluice_core::{
    Clock, Data, Key, KeyGroupRange, KeyHasher, RecordBatch, Result, SluiceError, StreamRecord,
    Timestamp, Watermark,
};
use sluice_state::heap_value_state::KeyGroupEntries;
use sluice_state::{HeapValueState, InternalTimerService, TimeDomain, TimersSnapshot};

use crate::functions::Collector;
use crate::operator::{KeyGroupsState, Output, StreamOperator};
use crate::operators::user_error;
use crate::runtime_context::RuntimeContext;
use crate::snapshot::{OperatorSnapshot, PendingSnapshot};
use crate::windowing::functions::{WindowAggregation, WindowContext};
use crate::windowing::window::TimeWindow;

/// The slices of one key and the time of its pending timer.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct KeySlices<Acc> {
    /// Slice start → accumulator (an `Option` so it can be updated in place).
    slices: BTreeMap<i64, Option<Acc>>,
    pending_timer: Option<i64>,
}

/// Tumbling or sliding windows of a keyed stream, from slices.
pub struct SlicingWindowOperator<K, T, KS, W: WindowAggregation<K, T>> {
    key_selector: KS,
    aggregation: W,
    size: i64,
    slide: i64,
    offset: i64,
    slice: i64,
    event_time: bool,
    allowed_lateness: i64,
    late_tag: Option<String>,
    hasher: KeyHasher,
    max_parallelism: usize,
    clock: Option<Arc<dyn Clock>>,
    watermark: i64,
    state: Option<HeapValueState<K, KeySlices<W::Acc>>>,
    timers: InternalTimerService<K>,
    /// With allowed lateness: when a key's fired slices may be dropped.
    cleanup_timers: InternalTimerService<K>,
    late_dropped: u64,
    _types: PhantomData<fn(T)>,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl<K, T, KS, W> SlicingWindowOperator<K, T, KS, W>
where
    K: Key,
    T: Data,
    KS: Fn(&T) -> K + Send,
    W: WindowAggregation<K, T>,
{
    /// Windows of `(size, slide, offset)` in event time (or processing time).
    pub fn new(
        key_selector: KS,
        (size, slide, offset): (i64, i64, i64),
        event_time: bool,
        allowed_lateness: i64,
        late_tag: Option<String>,
        aggregation: W,
    ) -> Self {
        Self {
            key_selector,
            aggregation,
            size,
            slide,
            offset,
            slice: gcd(size, slide),
            event_time,
            allowed_lateness: if event_time { allowed_lateness } else { 0 },
            late_tag,
            hasher: KeyHasher::new(),
            max_parallelism: 0,
            clock: None,
            watermark: i64::MIN,
            state: None,
            timers: InternalTimerService::new(),
            cleanup_timers: InternalTimerService::new(),
            late_dropped: 0,
            _types: PhantomData,
        }
    }

    /// Number of slices held (all keys).
    pub fn slice_count(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.iter().map(|(_, k)| k.slices.len()).sum())
    }

    /// Records dropped because they were late and no side output was set.
    pub fn late_records_dropped(&self) -> u64 {
        self.late_dropped
    }

    fn domain(&self) -> TimeDomain {
        if self.event_time {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        }
    }

    /// The end of the first window that contains the slice starting at `s`:
    /// the earliest window start at or after `s + slice - size`, plus `size`.
    fn first_end(&self, s: i64) -> i64 {
        let earliest = s + self.slice - self.size;
        earliest + (self.offset - earliest).rem_euclid(self.slide) + self.size
    }

    /// The end of the last window that contains the slice starting at `s`.
    fn last_end(&self, s: i64) -> i64 {
        TimeWindow::start_with_offset(s, self.offset, self.slide) + self.size
    }

    /// Whether a window ending at `end` is past its allowed lateness.
    fn expired(&self, end: i64) -> bool {
        self.event_time && end - 1 + self.allowed_lateness <= self.watermark
    }

    /// Evaluates the window ending at `end` from the key's slices.
    fn emit(
        &mut self,
        key: &K,
        slices: &BTreeMap<i64, Option<W::Acc>>,
        end: i64,
        now: i64,
        results: &mut Vec<StreamRecord<W::Out>>,
    ) -> Result<()> {
        let mut acc: Option<W::Acc> = None;
        for a in slices.range(end - self.size..end).filter_map(|(_, a)| a.as_ref()) {
            acc = Some(match acc {
                Some(x) => self.aggregation.merge(x, a.clone()),
                None => a.clone(),
            });
        }
        if let Some(acc) = acc {
            let window = TimeWindow::new(end - self.size, end);
            let ctx = WindowContext {
                window,
                current_watermark: self.watermark,
                current_processing_time: now,
            };
            let mut out = Collector::new(results, Timestamp(window.max_timestamp()));
            self.aggregation.emit(key, &ctx, &acc, &mut out).map_err(user_error)?;
        }
        Ok(())
    }

    /// Makes sure the key has a timer at or before the end of window `end`.
    fn schedule(&mut self, key: &K, key_group: usize, slices: &mut KeySlices<W::Acc>, end: i64) {
        let time = end - 1;
        if slices.pending_timer.is_none_or(|t| time < t) {
            self.timers.register(self.domain(), time, key.clone(), key_group);
            slices.pending_timer = Some(time);
        }
    }

    /// A record for a slice whose first window already fired (event time,
    /// within allowed lateness): fires those windows again with it.
    #[allow(clippy::too_many_arguments)]
    fn add_late(
        &mut self,
        key: K,
        key_group: usize,
        slice: i64,
        last_end: i64,
        value: T,
        now: i64,
        results: &mut Vec<StreamRecord<W::Out>>,
    ) -> Result<()> {
        let state = self.state.as_mut().expect("opened");
        let mut slices = state
            .remove(key_group, &key)
            .unwrap_or_else(|| KeySlices { slices: BTreeMap::new(), pending_timer: None });
        let acc = slices.slices.remove(&slice).flatten();
        slices.slices.insert(slice, Some(self.aggregation.add(acc, value)));
        let mut next = self.first_end(slice);
        while next <= last_end && next - 1 <= self.watermark {
            if !self.expired(next) {
                let key_slices = std::mem::take(&mut slices.slices);
                self.emit(&key, &key_slices, next, now, results)?;
                slices.slices = key_slices;
            }
            next += self.slide;
        }
        if next <= last_end {
            self.schedule(&key, key_group, &mut slices, next);
        }
        if self.allowed_lateness > 0 {
            let cleanup = (last_end - 1).saturating_add(self.allowed_lateness);
            self.cleanup_timers.register(TimeDomain::EventTime, cleanup, key.clone(), key_group);
        }
        self.state.as_mut().expect("opened").put(key_group, key, slices);
        Ok(())
    }

    fn fire_timers(&mut self, up_to: i64, now: i64, out: &mut Output) -> Result<()> {
        let mut results = Vec::new();
        let domain = self.domain();
        while let Some((time, key, key_group)) = self.timers.pop_due(domain, up_to) {
            let state = self.state.as_mut().expect("opened");
            let Some(mut slices) = state.remove(key_group, &key) else { continue };
            if slices.pending_timer == Some(time) {
                slices.pending_timer = None;
            }
            let end = time + 1;
            self.emit(&key, &slices.slices, end, now, &mut results)?;
            // Keep the slices a later window needs, or that a late record may still need.
            let (offset, slide, size) = (self.offset, self.slide, self.size);
            let keep_for_lateness =
                |last_end: i64| self.allowed_lateness > 0 && !self.expired(last_end);
            slices.slices.retain(|s, _| {
                let last_end = TimeWindow::start_with_offset(*s, offset, slide) + size;
                last_end > end || keep_for_lateness(last_end)
            });
            // The next window (after this one) that holds one of the slices.
            let next = slices
                .slices
                .keys()
                .filter(|s| self.last_end(**s) > end)
                .map(|s| self.first_end(*s).max(end + self.slide))
                .min();
            if let Some(next) = next {
                self.schedule(&key, key_group, &mut slices, next);
            }
            if !slices.slices.is_empty() {
                self.state.as_mut().expect("opened").put(key_group, key, slices);
            }
        }
        out.emit_records(results)
    }

    /// Drops slices past their allowed lateness (event time only).
    fn clean_up(&mut self, watermark: i64) {
        while let Some((_, key, key_group)) =
            self.cleanup_timers.pop_due(TimeDomain::EventTime, watermark)
        {
            let (offset, slide, size, lateness) =
                (self.offset, self.slide, self.size, self.allowed_lateness);
            let state = self.state.as_mut().expect("opened");
            if let Some(slices) = state.get_mut(key_group, &key) {
                slices.slices.retain(|s, _| {
                    let last_end = TimeWindow::start_with_offset(*s, offset, slide) + size;
                    last_end - 1 + lateness > watermark
                });
                if slices.slices.is_empty() {
                    state.remove(key_group, &key);
                }
            }
        }
    }
}

impl<K, T, KS, W> StreamOperator for SlicingWindowOperator<K, T, KS, W>
where
    K: Key,
    T: Data,
    KS: Fn(&T) -> K + Send,
    W: WindowAggregation<K, T>,
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        self.clock = Some(ctx.clock.clone());
        self.state = Some(HeapValueState::new(ctx.key_group_range()));
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let records = batch.into_records::<T>()?;
        let now = self.clock.as_ref().expect("opened").now();
        let mut results = Vec::new();
        let mut late = Vec::new();
        for record in records {
            let ts = if self.event_time { record.timestamp.0 } else { now };
            let slice = TimeWindow::start_with_offset(ts, self.offset, self.slice);
            let last_end = self.last_end(slice);
            if self.expired(last_end) {
                late.push(record);
                continue;
            }
            let key = (self.key_selector)(&record.value);
            let key_group = self.hasher.key_group(&key, self.max_parallelism);
            let first_end = self.first_end(slice);
            let fired_already = self.event_time && first_end - 1 <= self.watermark;
            if fired_already {
                self.add_late(key, key_group, slice, last_end, record.value, now, &mut results)?;
                continue;
            }
            // The common case, in place: one lookup for the key, one for the slice.
            let Self { state, aggregation, timers, event_time, allowed_lateness, .. } = self;
            let state = state.as_mut().expect("opened");
            let slices = match state.get_mut(key_group, &key) {
                Some(s) => s,
                None => {
                    state.put(
                        key_group,
                        key.clone(),
                        KeySlices { slices: BTreeMap::new(), pending_timer: None },
                    );
                    state.get_mut(key_group, &key).expect("just put")
                }
            };
            let slot = slices.slices.entry(slice).or_insert(None);
            *slot = Some(aggregation.add(slot.take(), record.value));
            let domain =
                if *event_time { TimeDomain::EventTime } else { TimeDomain::ProcessingTime };
            let time = first_end - 1;
            if slices.pending_timer.is_none_or(|t| time < t) {
                timers.register(domain, time, key.clone(), key_group);
                slices.pending_timer = Some(time);
            }
            if *event_time && *allowed_lateness > 0 {
                let cleanup = (last_end - 1).saturating_add(*allowed_lateness);
                self.cleanup_timers.register(TimeDomain::EventTime, cleanup, key, key_group);
            }
        }
        out.emit_records(results)?;
        if !late.is_empty() {
            match &self.late_tag {
                Some(tag) => out.emit_side(tag, RecordBatch::new(late))?,
                None => self.late_dropped += late.len() as u64,
            }
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.watermark = watermark.0;
        if self.event_time {
            let now = self.clock.as_ref().expect("opened").now();
            self.fire_timers(watermark.0, now, out)?;
            self.clean_up(watermark.0);
        }
        out.emit_watermark(watermark)
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.timers.next_processing_time()
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<()> {
        self.fire_timers(now, now, out)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<PendingSnapshot> {
        Ok(OperatorSnapshot::deferred_keyed(&mut [
            self.state.as_mut().expect("opened"),
            &mut self.timers,
            &mut self.cleanup_timers,
        ]))
    }

    fn restore_state(&mut self, state: OperatorSnapshot) -> Result<()> {
        let slices = self.state.as_mut().expect("opened");
        state.restore_keyed(&mut [slices, &mut self.timers, &mut self.cleanup_timers])
    }

    fn extract_key_groups(&mut self, range: KeyGroupRange) -> Result<Option<KeyGroupsState>> {
        let slices = self.state.as_mut().expect("opened").extract_key_groups(range)?;
        let timers =
            (self.timers.extract_key_groups(range), self.cleanup_timers.extract_key_groups(range));
        Ok(Some(Box::new((slices, timers))))
    }

    fn insert_key_groups(&mut self, moved: KeyGroupsState) -> Result<()> {
        type Moved<K, A> =
            (Vec<KeyGroupEntries<K, KeySlices<A>>>, (TimersSnapshot<K>, TimersSnapshot<K>));
        let (slices, (timers, cleanup)) = *moved
            .downcast::<Moved<K, W::Acc>>()
            .map_err(|_| SluiceError::Internal("key groups of another operator type".into()))?;
        for (group, entries) in slices {
            self.state.as_mut().expect("opened").insert_key_group(group, entries)?;
        }
        self.timers.insert_key_groups(timers);
        self.cleanup_timers.insert_key_groups(cleanup);
        Ok(())
    }

    fn end_input(&mut self, _input: usize, out: &mut Output) -> Result<()> {
        if !self.event_time {
            self.fire_timers(i64::MAX - 1, i64::MAX, out)?;
        }
        Ok(())
    }
}
