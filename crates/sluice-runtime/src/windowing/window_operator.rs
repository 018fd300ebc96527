//! The window operator (Flink's WindowOperator and EvictingWindowOperator).
//!
//! Invariants: a window's state exists from its first record until its
//! cleanup time (end + allowed lateness in event time, end in processing
//! time), when a timer removes it; a record whose every window is past its
//! cleanup time is late and goes to the late side output (or is dropped);
//! the session windows of a key never overlap.

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
use crate::windowing::assigners::WindowAssigner;
use crate::windowing::evictors::Evictor;
use crate::windowing::functions::{WindowAggregation, WindowContext};
use crate::windowing::triggers::{TimerRequest, Trigger, TriggerContext};
use crate::windowing::window::TimeWindow;

/// How windows are formed, evaluated and cleaned up.
#[derive(Clone, Debug)]
pub struct WindowSpec<A, Tr, E> {
    /// Which windows a record belongs to.
    pub assigner: A,
    /// When a window fires.
    pub trigger: Tr,
    /// Removes elements before/after evaluation; with one, windows keep all elements.
    pub evictor: Option<E>,
    /// How long (ms) after its end an event-time window still accepts records.
    pub allowed_lateness: i64,
    /// Side output tag for records too late for every window.
    pub late_tag: Option<String>,
}

/// One window's contents and trigger state.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct WindowState<Acc, T, TS> {
    acc: Option<Acc>,
    elements: Vec<StreamRecord<T>>,
    trigger: TS,
}

impl<Acc, T, TS: Default> Default for WindowState<Acc, T, TS> {
    fn default() -> Self {
        Self { acc: None, elements: Vec::new(), trigger: TS::default() }
    }
}

type Windows<K, W, T, Tr> = HeapValueState<
    (K, TimeWindow),
    WindowState<<W as WindowAggregation<K, T>>::Acc, T, <Tr as Trigger>::State>,
>;

/// Windows of a keyed stream.
pub struct WindowOperator<K, T, KS, A, Tr: Trigger, E, W: WindowAggregation<K, T>> {
    key_selector: KS,
    spec: WindowSpec<A, Tr, E>,
    aggregation: W,
    hasher: KeyHasher,
    max_parallelism: usize,
    clock: Option<Arc<dyn Clock>>,
    watermark: i64,
    windows: Option<Windows<K, W, T, Tr>>,
    sessions: Option<HeapValueState<K, Vec<TimeWindow>>>,
    timers: InternalTimerService<(K, TimeWindow)>,
    scratch: Vec<TimeWindow>,
    requests: Vec<TimerRequest>,
    late_dropped: u64,
    _types: PhantomData<fn(T)>,
}

impl<K, T, KS, A, Tr, E, W> WindowOperator<K, T, KS, A, Tr, E, W>
where
    K: Key,
    T: Data,
    KS: Fn(&T) -> K + Send,
    A: WindowAssigner,
    Tr: Trigger,
    E: Evictor<T>,
    W: WindowAggregation<K, T>,
{
    /// A window operator keyed by `key_selector`.
    pub fn new(key_selector: KS, spec: WindowSpec<A, Tr, E>, aggregation: W) -> Self {
        Self {
            key_selector,
            spec,
            aggregation,
            hasher: KeyHasher::new(),
            max_parallelism: 0,
            clock: None,
            watermark: i64::MIN,
            windows: None,
            sessions: None,
            timers: InternalTimerService::new(),
            scratch: Vec::new(),
            requests: Vec::new(),
            late_dropped: 0,
            _types: PhantomData,
        }
    }

    /// Number of windows with state (all keys).
    pub fn window_count(&self) -> usize {
        self.windows.as_ref().map_or(0, |w| w.len())
    }

    /// Records dropped because they were late and no side output was set.
    pub fn late_records_dropped(&self) -> u64 {
        self.late_dropped
    }

    fn event_time(&self) -> bool {
        self.spec.assigner.is_event_time()
    }

    fn domain(&self) -> TimeDomain {
        if self.event_time() {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        }
    }

    fn cleanup_time(&self, w: &TimeWindow) -> i64 {
        if self.event_time() {
            w.max_timestamp().saturating_add(self.spec.allowed_lateness)
        } else {
            w.max_timestamp()
        }
    }

    fn is_window_late(&self, w: &TimeWindow) -> bool {
        self.event_time() && self.cleanup_time(w) <= self.watermark
    }

    fn apply_requests(&mut self, key: &K, window: TimeWindow, key_group: usize) {
        for r in self.requests.drain(..) {
            match r {
                TimerRequest::RegisterEventTime(t) => {
                    self.timers.register(TimeDomain::EventTime, t, (key.clone(), window), key_group)
                }
                TimerRequest::RegisterProcessingTime(t) => self.timers.register(
                    TimeDomain::ProcessingTime,
                    t,
                    (key.clone(), window),
                    key_group,
                ),
                TimerRequest::DeleteEventTime(t) => {
                    self.timers.delete(TimeDomain::EventTime, t, &(key.clone(), window))
                }
                TimerRequest::DeleteProcessingTime(t) => {
                    self.timers.delete(TimeDomain::ProcessingTime, t, &(key.clone(), window))
                }
            }
        }
    }

    /// Evaluates a window, appending its results (stamped with the window's max timestamp).
    fn emit_window(
        &mut self,
        key: &K,
        window: TimeWindow,
        state: &mut WindowState<W::Acc, T, Tr::State>,
        now: i64,
        results: &mut Vec<StreamRecord<W::Out>>,
    ) -> Result<()> {
        let ctx = WindowContext {
            window,
            current_watermark: self.watermark,
            current_processing_time: now,
        };
        let mut out = Collector::new(results, Timestamp(window.max_timestamp()));
        match &self.spec.evictor {
            Some(evictor) => {
                evictor.evict_before(&mut state.elements, &window);
                let mut acc = None;
                for r in &state.elements {
                    acc = Some(self.aggregation.add(acc, r.value.clone()));
                }
                if let Some(acc) = acc {
                    self.aggregation.emit(key, &ctx, &acc, &mut out).map_err(user_error)?;
                }
                evictor.evict_after(&mut state.elements, &window);
            }
            None => {
                if let Some(acc) = &state.acc {
                    self.aggregation.emit(key, &ctx, acc, &mut out).map_err(user_error)?;
                }
            }
        }
        Ok(())
    }

    /// For session windows: merges `new` with the key's overlapping sessions,
    /// moving their state into the merged window. `None` if it would be late.
    fn merge_session(
        &mut self,
        key: &K,
        key_group: usize,
        new: TimeWindow,
        now: i64,
    ) -> Option<TimeWindow> {
        let existing = self
            .sessions
            .as_ref()
            .expect("opened")
            .get(key_group, key)
            .cloned()
            .unwrap_or_default();
        let mut merged = new;
        let mut absorbed: Vec<TimeWindow> = Vec::new();
        loop {
            let before = absorbed.len();
            for w in &existing {
                if !absorbed.contains(w) && w.intersects(&merged) {
                    merged = merged.cover(w);
                    absorbed.push(*w);
                }
            }
            if absorbed.len() == before {
                break;
            }
        }
        if self.is_window_late(&merged) {
            return None;
        }
        let mut list: Vec<TimeWindow> =
            existing.into_iter().filter(|w| !absorbed.contains(w)).collect();
        list.push(merged);
        self.sessions.as_mut().expect("opened").put(key_group, key.clone(), list);
        if absorbed.iter().all(|w| *w == merged) {
            return Some(merged);
        }
        // Move the absorbed windows' contents into the merged window.
        let mut acc: Option<W::Acc> = None;
        let mut elements = Vec::new();
        let mut trigger_states = Vec::new();
        for w in absorbed.iter().filter(|w| **w != merged) {
            let windows = self.windows.as_mut().expect("opened");
            if let Some(mut s) = windows.remove(key_group, &(key.clone(), *w)) {
                acc = match (acc, s.acc.take()) {
                    (Some(a), Some(b)) => Some(self.aggregation.merge(a, b)),
                    (a, b) => a.or(b),
                };
                elements.append(&mut s.elements);
                let mut ctx = TriggerContext {
                    current_watermark: self.watermark,
                    current_processing_time: now,
                    requests: &mut self.requests,
                };
                self.spec.trigger.clear(w, &mut s.trigger, &mut ctx);
                trigger_states.push(s.trigger);
            }
            self.apply_requests(key, *w, key_group);
            let cleanup = self.cleanup_time(w);
            self.timers.delete(self.domain(), cleanup, &(key.clone(), *w));
        }
        let windows = self.windows.as_mut().expect("opened");
        if let Some(mut s) = windows.remove(key_group, &(key.clone(), merged)) {
            acc = match (acc, s.acc.take()) {
                (Some(a), Some(b)) => Some(self.aggregation.merge(a, b)),
                (a, b) => a.or(b),
            };
            elements.append(&mut s.elements);
            trigger_states.push(s.trigger);
        }
        elements.sort_by_key(|r| r.timestamp);
        let mut ctx = TriggerContext {
            current_watermark: self.watermark,
            current_processing_time: now,
            requests: &mut self.requests,
        };
        let trigger = self.spec.trigger.on_merge(&merged, trigger_states, &mut ctx);
        self.apply_requests(key, merged, key_group);
        let windows = self.windows.as_mut().expect("opened");
        windows.put(key_group, (key.clone(), merged), WindowState { acc, elements, trigger });
        Some(merged)
    }

    /// Adds a record to one window and runs the trigger on it.
    fn add_to_window(
        &mut self,
        key: &K,
        key_group: usize,
        window: TimeWindow,
        record: StreamRecord<T>,
        now: i64,
        results: &mut Vec<StreamRecord<W::Out>>,
    ) -> Result<()> {
        let windows = self.windows.as_mut().expect("opened");
        let mut state = windows.remove(key_group, &(key.clone(), window)).unwrap_or_default();
        let ts = record.timestamp.0;
        if self.spec.evictor.is_some() {
            state.elements.push(record);
        } else {
            state.acc = Some(self.aggregation.add(state.acc.take(), record.value));
        }
        let mut ctx = TriggerContext {
            current_watermark: self.watermark,
            current_processing_time: now,
            requests: &mut self.requests,
        };
        let result = self.spec.trigger.on_element(ts, &window, &mut state.trigger, &mut ctx);
        self.apply_requests(key, window, key_group);
        if result.is_fire() {
            self.emit_window(key, window, &mut state, now, results)?;
        }
        if result.is_purge() {
            state.acc = None;
            state.elements.clear();
        }
        let cleanup = self.cleanup_time(&window);
        if cleanup != i64::MAX {
            self.timers.register(self.domain(), cleanup, (key.clone(), window), key_group);
        }
        self.windows.as_mut().expect("opened").put(key_group, (key.clone(), window), state);
        Ok(())
    }

    /// Fires the timers of `domain` due at `up_to`.
    fn fire_timers(
        &mut self,
        domain: TimeDomain,
        up_to: i64,
        now: i64,
        out: &mut Output,
    ) -> Result<()> {
        let mut results = Vec::new();
        while let Some((time, (key, window), key_group)) = self.timers.pop_due(domain, up_to) {
            let windows = self.windows.as_mut().expect("opened");
            let Some(mut state) = windows.remove(key_group, &(key.clone(), window)) else {
                continue;
            };
            let mut ctx = TriggerContext {
                current_watermark: self.watermark,
                current_processing_time: now,
                requests: &mut self.requests,
            };
            let result = match domain {
                TimeDomain::EventTime => {
                    self.spec.trigger.on_event_time(time, &window, &mut state.trigger, &mut ctx)
                }
                TimeDomain::ProcessingTime => self.spec.trigger.on_processing_time(
                    time,
                    &window,
                    &mut state.trigger,
                    &mut ctx,
                ),
            };
            self.apply_requests(&key, window, key_group);
            if result.is_fire() {
                self.emit_window(&key, window, &mut state, now, &mut results)?;
            }
            if result.is_purge() {
                state.acc = None;
                state.elements.clear();
            }
            if domain == self.domain() && time == self.cleanup_time(&window) {
                // The window is past its allowed lateness: remove it for good.
                let mut ctx = TriggerContext {
                    current_watermark: self.watermark,
                    current_processing_time: now,
                    requests: &mut self.requests,
                };
                self.spec.trigger.clear(&window, &mut state.trigger, &mut ctx);
                self.apply_requests(&key, window, key_group);
                if let Some(sessions) = self.sessions.as_mut() {
                    if let Some(list) = sessions.get_mut(key_group, &key) {
                        list.retain(|w| *w != window);
                        if list.is_empty() {
                            sessions.remove(key_group, &key);
                        }
                    }
                }
            } else {
                self.windows.as_mut().expect("opened").put(key_group, (key, window), state);
            }
        }
        out.emit_records(results)
    }
}

impl<K, T, KS, A, Tr, E, W> StreamOperator for WindowOperator<K, T, KS, A, Tr, E, W>
where
    K: Key,
    T: Data,
    KS: Fn(&T) -> K + Send,
    A: WindowAssigner,
    Tr: Trigger,
    E: Evictor<T>,
    W: WindowAggregation<K, T>,
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        self.clock = Some(ctx.clock.clone());
        self.windows = Some(HeapValueState::new(ctx.key_group_range()));
        if self.spec.assigner.session_gap().is_some() {
            self.sessions = Some(HeapValueState::new(ctx.key_group_range()));
        }
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let records = batch.into_records::<T>()?;
        let now = self.clock.as_ref().expect("opened").now();
        let event_time = self.event_time();
        let merging = self.sessions.is_some();
        let mut results = Vec::new();
        let mut late = Vec::new();
        let mut windows = std::mem::take(&mut self.scratch);
        for record in records {
            let key = (self.key_selector)(&record.value);
            let key_group = self.hasher.key_group(&key, self.max_parallelism);
            let ts = if event_time { record.timestamp.0 } else { now };
            windows.clear();
            self.spec.assigner.assign_windows(ts, &mut windows);
            if merging {
                let session =
                    windows.pop().and_then(|w| self.merge_session(&key, key_group, w, now));
                windows.clear();
                windows.extend(session);
            } else {
                windows.retain(|w| !self.is_window_late(w));
            }
            let Some((last, rest)) = windows.split_last() else {
                // Too late for every window.
                if event_time {
                    late.push(record);
                }
                continue;
            };
            let stamped = |value| StreamRecord::with_timestamp(value, Timestamp(ts));
            for w in rest {
                self.add_to_window(
                    &key,
                    key_group,
                    *w,
                    stamped(record.value.clone()),
                    now,
                    &mut results,
                )?;
            }
            self.add_to_window(&key, key_group, *last, stamped(record.value), now, &mut results)?;
        }
        self.scratch = windows;
        out.emit_records(results)?;
        if !late.is_empty() {
            match &self.spec.late_tag {
                Some(tag) => out.emit_side(tag, RecordBatch::new(late))?,
                None => self.late_dropped += late.len() as u64,
            }
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.watermark = watermark.0;
        let now = self.clock.as_ref().expect("opened").now();
        self.fire_timers(TimeDomain::EventTime, watermark.0, now, out)?;
        out.emit_watermark(watermark)
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.timers.next_processing_time()
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Output) -> Result<()> {
        self.fire_timers(TimeDomain::ProcessingTime, now, now, out)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<PendingSnapshot> {
        let windows = self.windows.as_mut().expect("opened");
        Ok(match &mut self.sessions {
            Some(sessions) => {
                OperatorSnapshot::deferred_keyed(&mut [windows, sessions, &mut self.timers])
            }
            None => OperatorSnapshot::deferred_keyed(&mut [windows, &mut self.timers]),
        })
    }

    fn restore_state(&mut self, state: OperatorSnapshot) -> Result<()> {
        let windows = self.windows.as_mut().expect("opened");
        match &mut self.sessions {
            Some(sessions) => state.restore_keyed(&mut [windows, sessions, &mut self.timers]),
            None => state.restore_keyed(&mut [windows, &mut self.timers]),
        }
    }

    fn extract_key_groups(&mut self, range: KeyGroupRange) -> Result<Option<KeyGroupsState>> {
        let windows = self.windows.as_mut().expect("opened").extract_key_groups(range)?;
        let sessions = match self.sessions.as_mut() {
            Some(s) => Some(s.extract_key_groups(range)?),
            None => None,
        };
        let timers = self.timers.extract_key_groups(range);
        Ok(Some(Box::new((windows, sessions, timers))))
    }

    fn insert_key_groups(&mut self, moved: KeyGroupsState) -> Result<()> {
        type Moved<K, S> = (
            Vec<KeyGroupEntries<(K, TimeWindow), S>>,
            Option<Vec<KeyGroupEntries<K, Vec<TimeWindow>>>>,
            TimersSnapshot<(K, TimeWindow)>,
        );
        let (windows, sessions, timers) = *moved
            .downcast::<Moved<K, WindowState<W::Acc, T, Tr::State>>>()
            .map_err(|_| SluiceError::Internal("key groups of another operator type".into()))?;
        for (group, entries) in windows {
            self.windows.as_mut().expect("opened").insert_key_group(group, entries)?;
        }
        if let (Some(target), Some(moved)) = (self.sessions.as_mut(), sessions) {
            for (group, entries) in moved {
                target.insert_key_group(group, entries)?;
            }
        }
        self.timers.insert_key_groups(timers);
        Ok(())
    }

    fn end_input(&mut self, _input: usize, out: &mut Output) -> Result<()> {
        // Processing-time windows still open at the end of a bounded input
        // fire now, as Flink does at end of input.
        if !self.event_time() {
            self.fire_timers(TimeDomain::ProcessingTime, i64::MAX, i64::MAX, out)?;
        }
        Ok(())
    }
}
