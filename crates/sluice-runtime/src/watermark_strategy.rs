//! Watermark strategies, as in Flink: a timestamp assigner that gives each
//! record its event time, and a watermark generator that turns event times
//! (and the passing of processing time) into watermarks. Generators run
//! per split when a source has splits, so one slow split holds the
//! watermark back and an idle one (with `with_idleness`) does not.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use sluice_core::{RecordBatch, StreamRecord, Timestamp, Watermark};

/// Where a generator reports watermarks and idleness.
#[derive(Debug, Default)]
pub struct WatermarkOutput {
    watermark: Option<i64>,
    idle: bool,
}

impl WatermarkOutput {
    /// Emits a watermark; one lower than an earlier one is ignored.
    pub fn emit_watermark(&mut self, watermark: Watermark) {
        self.watermark = Some(self.watermark.map_or(watermark.0, |w| w.max(watermark.0)));
        self.idle = false;
    }

    /// Marks this output idle: it no longer holds the combined watermark back.
    pub fn mark_idle(&mut self) {
        self.idle = true;
    }

    /// Marks this output active again.
    pub fn mark_active(&mut self) {
        self.idle = false;
    }
}

/// Generates watermarks from the events it sees (Flink's WatermarkGenerator).
pub trait WatermarkGenerator<T>: Send {
    /// Called for every event with its assigned timestamp; a punctuated generator emits here.
    fn on_event(&mut self, event: &T, timestamp: i64, output: &mut WatermarkOutput);

    /// Called every auto-watermark interval; a periodic generator emits here.
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput);
}

/// Watermarks that trail the largest timestamp seen by a fixed bound.
#[derive(Clone, Debug)]
pub struct BoundedOutOfOrderness {
    max_timestamp: i64,
    out_of_orderness: i64,
}

impl BoundedOutOfOrderness {
    /// Records may arrive up to `bound` late.
    pub fn new(bound: Duration) -> Self {
        let out_of_orderness = bound.as_millis() as i64;
        // Start so that the first periodic watermark is Watermark::MIN.
        Self { max_timestamp: i64::MIN + out_of_orderness + 1, out_of_orderness }
    }
}

impl<T> WatermarkGenerator<T> for BoundedOutOfOrderness {
    fn on_event(&mut self, _event: &T, timestamp: i64, _output: &mut WatermarkOutput) {
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        // Flink's convention: everything at or below the watermark has been seen.
        output.emit_watermark(Watermark(self.max_timestamp - self.out_of_orderness - 1));
    }
}

/// Keeps a record's existing timestamp.
pub type KeepTimestamp<T> = fn(&T, i64) -> i64;

fn keep_timestamp<T>(_: &T, timestamp: i64) -> i64 {
    timestamp
}

/// How a stream gets timestamps and watermarks.
pub struct WatermarkStrategy<T, G, A> {
    generator: G,
    assigner: A,
    idleness: Option<Duration>,
    ingestion_time: bool,
    _records: PhantomData<fn(&T)>,
}

impl<T, G: Clone, A: Clone> Clone for WatermarkStrategy<T, G, A> {
    fn clone(&self) -> Self {
        Self {
            generator: self.generator.clone(),
            assigner: self.assigner.clone(),
            idleness: self.idleness,
            ingestion_time: self.ingestion_time,
            _records: PhantomData,
        }
    }
}

impl<T> WatermarkStrategy<T, (), KeepTimestamp<T>> {
    /// Watermarks trail the largest timestamp by `bound`: records up to
    /// `bound` out of order are on time.
    pub fn for_bounded_out_of_orderness(
        bound: Duration,
    ) -> WatermarkStrategy<
        T,
        impl Fn() -> BoundedOutOfOrderness + Clone + Send + Sync,
        KeepTimestamp<T>,
    > {
        Self::for_generator(move || BoundedOutOfOrderness::new(bound))
    }

    /// Timestamps only grow: the watermark is the largest timestamp seen.
    pub fn for_monotonous_timestamps() -> WatermarkStrategy<
        T,
        impl Fn() -> BoundedOutOfOrderness + Clone + Send + Sync,
        KeepTimestamp<T>,
    > {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// Ingestion time: each record is stamped with the processing time at
    /// which it entered, and watermarks follow it.
    pub fn for_ingestion_time() -> WatermarkStrategy<
        T,
        impl Fn() -> BoundedOutOfOrderness + Clone + Send + Sync,
        KeepTimestamp<T>,
    > {
        let mut s = Self::for_monotonous_timestamps();
        s.ingestion_time = true;
        s
    }

    /// A custom generator (periodic, punctuated, or both), one per split.
    pub fn for_generator<G, Gen>(generator: G) -> WatermarkStrategy<T, G, KeepTimestamp<T>>
    where
        G: Fn() -> Gen + Clone + Send + Sync,
        Gen: WatermarkGenerator<T>,
    {
        WatermarkStrategy {
            generator,
            assigner: keep_timestamp::<T>,
            idleness: None,
            ingestion_time: false,
            _records: PhantomData,
        }
    }
}

impl<T, G, A> WatermarkStrategy<T, G, A> {
    /// Takes each record's event time from `assigner(record, previous_timestamp)`.
    pub fn with_timestamp_assigner<A2>(self, assigner: A2) -> WatermarkStrategy<T, G, A2>
    where
        A2: Fn(&T, i64) -> i64 + Clone + Send + Sync,
    {
        WatermarkStrategy {
            generator: self.generator,
            assigner,
            idleness: self.idleness,
            ingestion_time: false,
            _records: PhantomData,
        }
    }

    /// A split (or stream) that sends nothing for `timeout` becomes idle and
    /// stops holding the watermark back until it sends again.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }

    /// Builds the per-split watermark state of one subtask.
    pub fn create<Gen>(
        &self,
        auto_watermark_interval: i64,
        now: i64,
    ) -> SplitWatermarks<T, G, Gen, A>
    where
        G: Fn() -> Gen + Clone,
        A: Clone,
    {
        SplitWatermarks {
            factory: self.generator.clone(),
            assigner: self.assigner.clone(),
            ingestion_time: self.ingestion_time,
            idle_timeout: self.idleness.map(|d| d.as_millis() as i64),
            interval: auto_watermark_interval.max(1),
            next_periodic: now,
            splits: HashMap::new(),
            last_event: now,
            idle_without_splits: false,
            emitted: Watermark::MIN,
            idle: false,
            _records: PhantomData,
        }
    }
}

struct SplitState<Gen> {
    generator: Gen,
    output: WatermarkOutput,
    last_event: i64,
    /// Records arrived since the last periodic tick: the split is not idle
    /// before a tick without records, so its watermark is emitted first.
    since_tick: bool,
}

/// Timestamps and watermarks generated inside a source task, with the
/// record type erased: the source reader says which split each run of
/// records came from.
pub trait SourceWatermarker: Send {
    /// Assigns timestamps to a batch from the reader and feeds the generators.
    fn on_batch(
        &mut self,
        batch: &mut RecordBatch,
        splits: &SplitRuns,
        now: i64,
    ) -> sluice_core::Result<WatermarkUpdate>;
    /// When periodic emission is next due.
    fn next_periodic(&self) -> i64;
    /// Periodic emission and idleness detection.
    fn on_periodic(&mut self, now: i64) -> WatermarkUpdate;
}

/// Which split the records of a batch came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitRuns {
    /// `(first record index, split)`: records from that index on, up to the
    /// next run, belong to the split.
    pub runs: Vec<(usize, u32)>,
    /// Splits that ended in this batch.
    pub finished: Vec<u32>,
    /// Splits assigned to the reader since the last batch: they hold the
    /// watermark back from now on, before their first record (Flink's
    /// per-split outputs are registered at assignment).
    pub registered: Vec<u32>,
}

impl<T, G, Gen, A> SourceWatermarker for SplitWatermarks<T, G, Gen, A>
where
    T: Send + 'static,
    G: Fn() -> Gen + Send,
    Gen: WatermarkGenerator<T>,
    A: Fn(&T, i64) -> i64 + Send,
{
    fn on_batch(
        &mut self,
        batch: &mut RecordBatch,
        splits: &SplitRuns,
        now: i64,
    ) -> sluice_core::Result<WatermarkUpdate> {
        for split in &splits.registered {
            self.register_split(*split, now);
        }
        let records = batch.records_mut::<T>()?;
        for (i, (start, split)) in splits.runs.iter().enumerate() {
            let end = splits.runs.get(i + 1).map_or(records.len(), |(next, _)| *next);
            self.on_records(*split, &mut records[*start..end], now);
        }
        for split in &splits.finished {
            self.finish_split(*split);
        }
        Ok(self.update())
    }

    fn next_periodic(&self) -> i64 {
        self.next_periodic
    }

    fn on_periodic(&mut self, now: i64) -> WatermarkUpdate {
        SplitWatermarks::on_periodic(self, now);
        self.update()
    }
}

/// What changed after records or a periodic tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WatermarkUpdate {
    /// The combined watermark advanced to this.
    pub watermark: Option<Watermark>,
    /// The combined idle status changed to this.
    pub idle: Option<bool>,
}

/// Timestamps and watermarks of one subtask: one generator per split, the
/// combined watermark the minimum over active splits, never going back.
pub struct SplitWatermarks<T, G, Gen, A> {
    factory: G,
    assigner: A,
    ingestion_time: bool,
    idle_timeout: Option<i64>,
    interval: i64,
    next_periodic: i64,
    splits: HashMap<u32, SplitState<Gen>>,
    /// When a record of any split came last.
    last_event: i64,
    /// No split to read, and none for the idleness timeout (a reader waiting for splits).
    idle_without_splits: bool,
    emitted: Watermark,
    idle: bool,
    _records: PhantomData<fn(&T)>,
}

impl<T, G, Gen, A> SplitWatermarks<T, G, Gen, A>
where
    G: Fn() -> Gen,
    Gen: WatermarkGenerator<T>,
    A: Fn(&T, i64) -> i64,
{
    /// Assigns timestamps to records of split `split` (in place) and feeds
    /// them to its generator.
    pub fn on_records(&mut self, split: u32, records: &mut [StreamRecord<T>], now: i64) {
        if records.is_empty() {
            // An empty poll says nothing about a split: it must not keep it active.
            return;
        }
        let (assigner, ingestion, factory) = (&self.assigner, self.ingestion_time, &self.factory);
        let state = self.splits.entry(split).or_insert_with(|| SplitState {
            generator: factory(),
            output: WatermarkOutput::default(),
            last_event: now,
            since_tick: true,
        });
        state.last_event = now;
        state.since_tick = true;
        state.output.mark_active();
        self.last_event = now;
        self.idle_without_splits = false;
        for r in records.iter_mut() {
            let ts = if ingestion { now } else { assigner(&r.value, r.timestamp.0) };
            r.timestamp = Timestamp(ts);
            state.generator.on_event(&r.value, ts, &mut state.output);
        }
    }

    /// Split `split` was assigned: it holds the watermark back until it has
    /// records, ends, or (with idleness) stays silent for the timeout.
    pub fn register_split(&mut self, split: u32, now: i64) {
        let factory = &self.factory;
        self.splits.entry(split).or_insert_with(|| SplitState {
            generator: factory(),
            output: WatermarkOutput::default(),
            last_event: now,
            since_tick: true,
        });
    }

    /// Split `split` is exhausted: it no longer holds the watermark back.
    pub fn finish_split(&mut self, split: u32) {
        self.splits.remove(&split);
    }

    /// When [`Self::on_periodic`] is next due.
    pub fn next_periodic(&self) -> i64 {
        self.next_periodic
    }

    /// Periodic emission and idleness detection; call when `next_periodic` is due.
    pub fn on_periodic(&mut self, now: i64) {
        for state in self.splits.values_mut() {
            state.generator.on_periodic_emit(&mut state.output);
            let quiet = !std::mem::take(&mut state.since_tick);
            if quiet && self.idle_timeout.is_some_and(|t| now - state.last_event >= t) {
                state.output.mark_idle();
            }
        }
        self.idle_without_splits =
            self.splits.is_empty() && self.idle_timeout.is_some_and(|t| now - self.last_event >= t);
        self.next_periodic = now + self.interval;
    }

    /// The combined watermark and idle status, if they changed since the last call.
    pub fn update(&mut self) -> WatermarkUpdate {
        let mut update = WatermarkUpdate::default();
        let active = self.splits.values().filter(|s| !s.output.idle);
        let min = active.clone().map(|s| s.output.watermark.unwrap_or(i64::MIN)).min();
        let all_idle =
            if self.splits.is_empty() { self.idle_without_splits } else { active.count() == 0 };
        if let Some(w) = min.filter(|w| *w > self.emitted.0) {
            self.emitted = Watermark(w);
            update.watermark = Some(self.emitted);
        }
        if all_idle != self.idle {
            self.idle = all_idle;
            update.idle = Some(all_idle);
        }
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(ts: &[i64]) -> Vec<StreamRecord<i64>> {
        ts.iter().map(|t| StreamRecord::new(*t)).collect()
    }

    #[test]
    fn bounded_out_of_orderness_trails_the_largest_timestamp_by_the_bound_minus_one() {
        let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(10))
            .with_timestamp_assigner(|v: &i64, _| *v);
        let mut w = strategy.create(100, 0);
        w.on_records(0, &mut records(&[100, 130, 120]), 0);
        w.on_periodic(0);
        assert_eq!(w.update().watermark, Some(Watermark(119)));
        w.on_records(0, &mut records(&[125]), 10);
        w.on_periodic(100);
        assert_eq!(w.update().watermark, None, "no new maximum, no new watermark");
    }

    #[test]
    fn the_slowest_split_holds_the_watermark_and_a_finished_split_releases_it() {
        let strategy =
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|v: &i64, _| *v);
        let mut w = strategy.create(100, 0);
        w.on_records(0, &mut records(&[1000]), 0);
        w.on_records(1, &mut records(&[50]), 0);
        w.on_periodic(0);
        assert_eq!(w.update().watermark, Some(Watermark(49)));
        w.finish_split(1);
        assert_eq!(w.update().watermark, Some(Watermark(999)));
    }

    #[test]
    fn an_idle_split_stops_holding_the_watermark_until_it_sends_again() {
        let strategy = WatermarkStrategy::for_monotonous_timestamps()
            .with_timestamp_assigner(|v: &i64, _| *v)
            .with_idleness(Duration::from_millis(500));
        let mut w = strategy.create(100, 0);
        w.on_records(0, &mut records(&[10]), 0);
        w.on_records(1, &mut records(&[5]), 0);
        w.on_periodic(0);
        assert_eq!(w.update().watermark, Some(Watermark(4)));
        for now in (100..=600).step_by(100) {
            w.on_records(0, &mut records(&[10 + now]), now);
            w.on_periodic(now);
        }
        // Split 1 sent nothing for 600 ms >= 500 ms: it is idle.
        assert_eq!(w.update(), WatermarkUpdate { watermark: Some(Watermark(609)), idle: None });
        w.on_records(1, &mut records(&[700]), 700);
        w.on_periodic(700);
        assert_eq!(w.update().watermark, None, "split 0, still at 609, holds the watermark again");
    }

    #[test]
    fn every_split_idle_makes_the_subtask_idle() {
        let strategy = WatermarkStrategy::for_monotonous_timestamps()
            .with_timestamp_assigner(|v: &i64, _| *v)
            .with_idleness(Duration::from_millis(100));
        let mut w = strategy.create(50, 0);
        w.on_records(0, &mut records(&[1]), 0);
        w.on_periodic(0);
        assert_eq!(w.update().idle, None);
        w.on_periodic(150);
        assert_eq!(w.update().idle, Some(true));
        w.on_records(0, &mut records(&[2]), 160);
        assert_eq!(w.update().idle, Some(false));
    }

    #[test]
    fn ingestion_time_stamps_records_with_the_processing_time() {
        let mut w = WatermarkStrategy::<i64, _, _>::for_ingestion_time().create(100, 0);
        let mut rs = records(&[1, 2]);
        w.on_records(0, &mut rs, 5000);
        assert!(rs.iter().all(|r| r.timestamp == Timestamp(5000)));
        w.on_periodic(5000);
        assert_eq!(w.update().watermark, Some(Watermark(4999)));
    }

    /// Emits a watermark whenever an event says so.
    struct Punctuated;

    impl WatermarkGenerator<(i64, bool)> for Punctuated {
        fn on_event(&mut self, event: &(i64, bool), timestamp: i64, output: &mut WatermarkOutput) {
            if event.1 {
                output.emit_watermark(Watermark(timestamp));
            }
        }

        fn on_periodic_emit(&mut self, _output: &mut WatermarkOutput) {}
    }

    #[test]
    fn a_punctuated_generator_emits_on_marked_events_only() {
        let strategy = WatermarkStrategy::for_generator(|| Punctuated)
            .with_timestamp_assigner(|e: &(i64, bool), _| e.0);
        let mut w = strategy.create(100, 0);
        let mut rs = vec![
            StreamRecord::new((10, false)),
            StreamRecord::new((20, true)),
            StreamRecord::new((30, false)),
        ];
        w.on_records(0, &mut rs, 0);
        assert_eq!(w.update().watermark, Some(Watermark(20)));
    }

    #[test]
    fn a_registered_split_holds_the_watermark_back_until_its_first_record() {
        let strategy =
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|v: &i64, _| *v);
        let mut w = strategy.create(10, 0);
        w.register_split(1, 0);
        w.on_records(0, &mut records(&[1000]), 0);
        w.on_periodic(10);
        assert_eq!(w.update().watermark, None, "split 1 has not read anything yet");
        w.on_records(1, &mut records(&[400]), 20);
        w.on_periodic(30);
        assert_eq!(w.update().watermark, Some(Watermark(399)));
    }

    #[test]
    fn an_empty_poll_does_not_keep_a_split_active_and_an_idle_reader_goes_idle() {
        let strategy = WatermarkStrategy::for_monotonous_timestamps()
            .with_timestamp_assigner(|v: &i64, _| *v)
            .with_idleness(Duration::from_millis(100));
        let mut w = strategy.create(10, 0);
        for now in (0..200).step_by(10) {
            w.on_records(0, &mut records(&[]), now);
            w.on_periodic(now);
        }
        assert_eq!(w.update().idle, Some(true), "no record for the timeout: idle");
    }

    #[test]
    fn a_split_emits_its_watermark_at_a_tick_before_it_goes_idle() {
        let strategy = WatermarkStrategy::for_monotonous_timestamps()
            .with_timestamp_assigner(|v: &i64, _| *v)
            .with_idleness(Duration::from_millis(100));
        let mut w = strategy.create(1000, 0);
        w.on_records(0, &mut records(&[500]), 0);
        // The first tick comes late, past the idleness timeout: the watermark still goes out.
        w.on_periodic(1000);
        assert_eq!(w.update(), WatermarkUpdate { watermark: Some(Watermark(499)), idle: None });
        w.on_periodic(2000);
        assert_eq!(w.update().idle, Some(true), "a tick without records after the timeout");
    }
}
