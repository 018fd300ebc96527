//! Triggers: when a window is evaluated (fired) and when its contents are
//! dropped (purged). A trigger keeps typed state per key and window.

use crate::windowing::window::TimeWindow;

/// What a trigger decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerResult {
    /// Do nothing.
    Continue,
    /// Evaluate the window and emit the result.
    Fire,
    /// Drop the window's contents.
    Purge,
    /// Evaluate, emit, then drop the contents.
    FireAndPurge,
}

impl TriggerResult {
    /// Whether the window is evaluated.
    pub fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }

    /// Whether the contents are dropped.
    pub fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// A timer a trigger asks for (or cancels) on its key and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerRequest {
    /// Register an event-time timer.
    RegisterEventTime(i64),
    /// Register a processing-time timer.
    RegisterProcessingTime(i64),
    /// Delete an event-time timer.
    DeleteEventTime(i64),
    /// Delete a processing-time timer.
    DeleteProcessingTime(i64),
}

/// What a trigger can see and ask for.
#[derive(Debug)]
pub struct TriggerContext<'a> {
    /// The operator's current watermark.
    pub current_watermark: i64,
    /// The current processing time.
    pub current_processing_time: i64,
    pub(crate) requests: &'a mut Vec<TimerRequest>,
}

impl TriggerContext<'_> {
    /// Calls `on_event_time` once the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: i64) {
        self.requests.push(TimerRequest::RegisterEventTime(time));
    }

    /// Calls `on_processing_time` once processing time reaches `time`.
    pub fn register_processing_time_timer(&mut self, time: i64) {
        self.requests.push(TimerRequest::RegisterProcessingTime(time));
    }

    /// Deletes an event-time timer.
    pub fn delete_event_time_timer(&mut self, time: i64) {
        self.requests.push(TimerRequest::DeleteEventTime(time));
    }

    /// Deletes a processing-time timer.
    pub fn delete_processing_time_timer(&mut self, time: i64) {
        self.requests.push(TimerRequest::DeleteProcessingTime(time));
    }
}

/// Decides when a window fires (Flink's Trigger).
pub trait Trigger: Clone + Send + Sync + 'static {
    /// State the trigger keeps per key and window (serializable: it is checkpointed).
    type State: Default
        + Clone
        + Send
        + Sync
        + serde::Serialize
        + serde::de::DeserializeOwned
        + 'static;

    /// A record at `timestamp` was added to `window`.
    fn on_element(
        &self,
        timestamp: i64,
        window: &TimeWindow,
        state: &mut Self::State,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult;

    /// An event-time timer of this window fired.
    fn on_event_time(
        &self,
        time: i64,
        window: &TimeWindow,
        state: &mut Self::State,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult;

    /// A processing-time timer of this window fired.
    fn on_processing_time(
        &self,
        time: i64,
        window: &TimeWindow,
        state: &mut Self::State,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult;

    /// Session windows were merged into `window`; returns the merged state.
    fn on_merge(
        &self,
        window: &TimeWindow,
        merged: Vec<Self::State>,
        ctx: &mut TriggerContext<'_>,
    ) -> Self::State;

    /// The window is being removed: delete its timers.
    fn clear(&self, window: &TimeWindow, state: &mut Self::State, ctx: &mut TriggerContext<'_>);
}

/// Fires when the watermark passes the end of the window; a record arriving
/// later (within allowed lateness) fires the window again at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventTimeTrigger;

impl Trigger for EventTimeTrigger {
    type State = ();

    fn on_element(
        &self,
        _ts: i64,
        window: &TimeWindow,
        _s: &mut (),
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        if window.max_timestamp() <= ctx.current_watermark {
            return TriggerResult::Fire;
        }
        ctx.register_event_time_timer(window.max_timestamp());
        TriggerResult::Continue
    }

    fn on_event_time(
        &self,
        time: i64,
        window: &TimeWindow,
        _s: &mut (),
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        if time == window.max_timestamp() {
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        }
    }

    fn on_processing_time(
        &self,
        _t: i64,
        _w: &TimeWindow,
        _s: &mut (),
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_merge(&self, window: &TimeWindow, _merged: Vec<()>, ctx: &mut TriggerContext<'_>) {
        if window.max_timestamp() > ctx.current_watermark {
            ctx.register_event_time_timer(window.max_timestamp());
        }
    }

    fn clear(&self, window: &TimeWindow, _s: &mut (), ctx: &mut TriggerContext<'_>) {
        ctx.delete_event_time_timer(window.max_timestamp());
    }
}

/// Fires when processing time passes the end of the window.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessingTimeTrigger;

impl Trigger for ProcessingTimeTrigger {
    type State = ();

    fn on_element(
        &self,
        _ts: i64,
        window: &TimeWindow,
        _s: &mut (),
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        ctx.register_processing_time_timer(window.max_timestamp());
        TriggerResult::Continue
    }

    fn on_event_time(
        &self,
        _t: i64,
        _w: &TimeWindow,
        _s: &mut (),
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(
        &self,
        _t: i64,
        _w: &TimeWindow,
        _s: &mut (),
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        TriggerResult::Fire
    }

    fn on_merge(&self, window: &TimeWindow, _merged: Vec<()>, ctx: &mut TriggerContext<'_>) {
        ctx.register_processing_time_timer(window.max_timestamp());
    }

    fn clear(&self, window: &TimeWindow, _s: &mut (), ctx: &mut TriggerContext<'_>) {
        ctx.delete_processing_time_timer(window.max_timestamp());
    }
}

/// Fires every `count` records.
#[derive(Clone, Copy, Debug)]
pub struct CountTrigger {
    count: u64,
}

impl CountTrigger {
    /// Fires once `count` records arrived since the last firing.
    pub fn of(count: u64) -> Self {
        Self { count: count.max(1) }
    }
}

impl Trigger for CountTrigger {
    type State = u64;

    fn on_element(
        &self,
        _ts: i64,
        _w: &TimeWindow,
        seen: &mut u64,
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        *seen += 1;
        if *seen >= self.count {
            *seen = 0;
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        }
    }

    fn on_event_time(
        &self,
        _t: i64,
        _w: &TimeWindow,
        _s: &mut u64,
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(
        &self,
        _t: i64,
        _w: &TimeWindow,
        _s: &mut u64,
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_merge(&self, _w: &TimeWindow, merged: Vec<u64>, _ctx: &mut TriggerContext<'_>) -> u64 {
        merged.into_iter().sum()
    }

    fn clear(&self, _w: &TimeWindow, seen: &mut u64, _ctx: &mut TriggerContext<'_>) {
        *seen = 0;
    }
}

/// Turns every firing of the wrapped trigger into fire-and-purge.
#[derive(Clone, Copy, Debug)]
pub struct PurgingTrigger<T> {
    inner: T,
}

impl<T: Trigger> PurgingTrigger<T> {
    /// Purges whenever `inner` fires.
    pub fn of(inner: T) -> Self {
        Self { inner }
    }
}

fn purging(r: TriggerResult) -> TriggerResult {
    if r.is_fire() {
        TriggerResult::FireAndPurge
    } else {
        r
    }
}

impl<T: Trigger> Trigger for PurgingTrigger<T> {
    type State = T::State;

    fn on_element(
        &self,
        ts: i64,
        w: &TimeWindow,
        s: &mut T::State,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        purging(self.inner.on_element(ts, w, s, ctx))
    }

    fn on_event_time(
        &self,
        t: i64,
        w: &TimeWindow,
        s: &mut T::State,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        purging(self.inner.on_event_time(t, w, s, ctx))
    }

    fn on_processing_time(
        &self,
        t: i64,
        w: &TimeWindow,
        s: &mut T::State,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        purging(self.inner.on_processing_time(t, w, s, ctx))
    }

    fn on_merge(
        &self,
        w: &TimeWindow,
        merged: Vec<T::State>,
        ctx: &mut TriggerContext<'_>,
    ) -> T::State {
        self.inner.on_merge(w, merged, ctx)
    }

    fn clear(&self, w: &TimeWindow, s: &mut T::State, ctx: &mut TriggerContext<'_>) {
        self.inner.clear(w, s, ctx)
    }
}

/// Never fires (the default of `GlobalWindows`: set a trigger).
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverTrigger;

impl Trigger for NeverTrigger {
    type State = ();

    fn on_element(
        &self,
        _ts: i64,
        _w: &TimeWindow,
        _s: &mut (),
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_event_time(
        &self,
        _t: i64,
        _w: &TimeWindow,
        _s: &mut (),
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(
        &self,
        _t: i64,
        _w: &TimeWindow,
        _s: &mut (),
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_merge(&self, _w: &TimeWindow, _merged: Vec<()>, _ctx: &mut TriggerContext<'_>) {}

    fn clear(&self, _w: &TimeWindow, _s: &mut (), _ctx: &mut TriggerContext<'_>) {}
}
