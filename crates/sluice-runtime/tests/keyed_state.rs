//! Keyed state, TTL and timers of a KeyedProcessFunction, driven through the operator harness.

use std::time::Duration;

use sluice_core::{FunctionResult, KeyGroupRange};
use sluice_runtime::functions::{Collector, KeyedContext, KeyedOpenContext, KeyedProcessFunction};
use sluice_runtime::harness::OperatorHarness;
use sluice_runtime::operators::keyed_process::KeyedProcessOperator;
use sluice_state::{
    AggregateFunction, AggregatingState, ListState, MapState, ReducingState, StateDescriptor,
    StateTtlConfig, ValueState,
};

type Event = (String, i64);

fn key(e: &Event) -> String {
    e.0.clone()
}

type KeyOf = fn(&Event) -> String;
type Max = fn(i64, i64) -> i64;

fn ev(k: &str, v: i64) -> (Event, i64) {
    ((k.to_string(), v), 0)
}

/// Average of i64 values.
#[derive(Clone)]
struct Average;

impl AggregateFunction<i64> for Average {
    type Acc = (i64, i64);
    type Out = f64;
    fn create_accumulator(&self) -> (i64, i64) {
        (0, 0)
    }
    fn add(&self, value: i64, acc: &mut (i64, i64)) {
        acc.0 += value;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(i64, i64)) -> f64 {
        acc.0 as f64 / acc.1 as f64
    }
    fn merge(&self, a: (i64, i64), b: &(i64, i64)) -> (i64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

/// Keeps every kind of state per key and reports it for each record.
#[derive(Clone, Default)]
struct AllStates {
    count: Option<ValueState<u64>>,
    seen: Option<ListState<i64>>,
    by_value: Option<MapState<i64, u32>>,
    max: Option<ReducingState<i64, Max>>,
    average: Option<AggregatingState<i64, Average>>,
}

impl KeyedProcessFunction<String, Event, String> for AllStates {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, String>) -> FunctionResult {
        self.count = Some(ctx.state.value_state(&StateDescriptor::value("count"))?);
        self.seen = Some(ctx.state.list_state(&StateDescriptor::list("seen"))?);
        self.by_value = Some(ctx.state.map_state(&StateDescriptor::map("by-value"))?);
        let max: Max = i64::max;
        self.max = Some(ctx.state.reducing_state(&StateDescriptor::reducing("max", max))?);
        self.average =
            Some(ctx.state.aggregating_state(&StateDescriptor::aggregating("avg", Average))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult {
        let count = ctx.value(self.count.as_ref().unwrap()).get().copied().unwrap_or(0) + 1;
        ctx.value(self.count.as_ref().unwrap()).update(count);
        ctx.list(self.seen.as_ref().unwrap()).add(e.1);
        let times = ctx.map(self.by_value.as_ref().unwrap()).get(&e.1).copied().unwrap_or(0) + 1;
        ctx.map(self.by_value.as_ref().unwrap()).put(e.1, times);
        ctx.reduce_add(self.max.as_ref().unwrap(), e.1);
        ctx.aggregate_add(self.average.as_ref().unwrap(), e.1);
        let seen: Vec<i64> = ctx.list(self.seen.as_ref().unwrap()).get().copied().collect();
        let max = *ctx.reduce_get(self.max.as_ref().unwrap()).unwrap();
        let avg = ctx.aggregate_get(self.average.as_ref().unwrap()).unwrap();
        out.collect(format!(
            "{} count={count} seen={seen:?} x{times} max={max} avg={avg}",
            ctx.current_key()
        ));
        Ok(())
    }
}

#[test]
fn every_kind_of_keyed_state_is_kept_per_key() {
    let op = KeyedProcessOperator::new(key as KeyOf, AllStates::default());
    let mut h = OperatorHarness::<_, String>::new(op).open().unwrap();
    h.process_elements([ev("a", 5), ev("b", 1), ev("a", 3), ev("a", 5)]).unwrap();
    let out: Vec<String> = h.take_output().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        out,
        vec![
            "a count=1 seen=[5] x1 max=5 avg=5",
            "b count=1 seen=[1] x1 max=1 avg=1",
            "a count=2 seen=[5, 3] x1 max=5 avg=4",
            "a count=3 seen=[5, 3, 5] x2 max=5 avg=4.333333333333333",
        ]
    );
}

/// Counts per key in a value state with a TTL; emits the count it saw.
#[derive(Clone)]
struct TtlCounter {
    ttl: StateTtlConfig,
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction<String, Event, u64> for TtlCounter {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, String>) -> FunctionResult {
        self.count = Some(
            ctx.state
                .value_state(&StateDescriptor::value("count").enable_time_to_live(self.ttl))?,
        );
        Ok(())
    }

    fn process_element(
        &mut self,
        _e: Event,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, u64>,
    ) -> FunctionResult {
        let state = self.count.as_ref().unwrap();
        let count = ctx.value(state).get().copied().unwrap_or(0) + 1;
        ctx.value(state).update(count);
        out.collect(count);
        Ok(())
    }
}

fn ttl_harness(
    ttl: StateTtlConfig,
) -> OperatorHarness<KeyedProcessOperator<String, Event, u64, KeyOf, TtlCounter>, u64> {
    let op = KeyedProcessOperator::new(key as KeyOf, TtlCounter { ttl, count: None });
    OperatorHarness::new(op).open().unwrap()
}

#[test]
fn an_expired_value_is_never_returned() {
    let mut h = ttl_harness(StateTtlConfig::new(Duration::from_millis(100)));
    h.process_elements([ev("a", 0)]).unwrap();
    h.set_processing_time(99).unwrap();
    h.process_elements([ev("a", 0)]).unwrap();
    // Written at 99: alive until 199, expired from 199 on.
    h.set_processing_time(199).unwrap();
    h.process_elements([ev("a", 0)]).unwrap();
    let counts: Vec<u64> = h.take_output().into_iter().map(|(c, _)| c).collect();
    assert_eq!(counts, vec![1, 2, 1]);
}

/// Writes on value 1, only reads on value 0 and says whether it found a value.
#[derive(Clone)]
struct Peek {
    ttl: StateTtlConfig,
    state: Option<ValueState<u8>>,
}

impl KeyedProcessFunction<String, Event, bool> for Peek {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, String>) -> FunctionResult {
        self.state = Some(
            ctx.state.value_state(&StateDescriptor::value("v").enable_time_to_live(self.ttl))?,
        );
        Ok(())
    }

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, bool>,
    ) -> FunctionResult {
        let state = self.state.as_ref().unwrap();
        if e.1 == 1 {
            ctx.value(state).update(1);
        } else {
            out.collect(ctx.value(state).get().is_some());
        }
        Ok(())
    }
}

#[test]
fn reads_restart_the_ttl_only_when_configured() {
    let on_write = StateTtlConfig::new(Duration::from_millis(100));
    for (config, found_at_120) in [(on_write, false), (on_write.update_on_read_and_write(), true)] {
        let op = KeyedProcessOperator::new(key as KeyOf, Peek { ttl: config, state: None });
        let mut h = OperatorHarness::<_, bool>::new(op).open().unwrap();
        h.process_elements([ev("a", 1)]).unwrap(); // written at 0
        h.set_processing_time(60).unwrap();
        h.process_elements([ev("a", 0)]).unwrap(); // read at 60
        h.set_processing_time(120).unwrap();
        h.process_elements([ev("a", 0)]).unwrap(); // read at 120
        let found: Vec<bool> = h.take_output().into_iter().map(|(f, _)| f).collect();
        assert_eq!(found, vec![true, found_at_120], "{config:?}");
    }
}

#[test]
fn expired_state_is_removed_after_input_stops_and_memory_falls_back() {
    let mut h = ttl_harness(StateTtlConfig::new(Duration::from_millis(1000)));
    let input: Vec<_> = (0..10_000).map(|i| ev(&format!("key-{i}"), 0)).collect();
    h.process_elements(input).unwrap();
    assert_eq!(h.operator().keyed_state().len(), 10_000);
    h.set_processing_time(500).unwrap();
    assert_eq!(h.operator().keyed_state().len(), 10_000, "not expired yet");
    // No more input: the periodic sweep alone must remove everything.
    h.set_processing_time(1000).unwrap();
    h.set_processing_time(1250).unwrap();
    assert_eq!(h.operator().keyed_state().len(), 0);
}

/// Counts per key; sets an event-time timer at the record's time + 10 and a
/// processing-time timer 100 ms from now; a timer reports the key's count.
/// A record with value -1 deletes the key's pending event-time timer.
#[derive(Clone, Default)]
struct CountWithTimers {
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction<String, Event, String> for CountWithTimers {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, String>) -> FunctionResult {
        self.count = Some(ctx.state.value_state(&StateDescriptor::value("count"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut KeyedContext<'_, String>,
        _out: &mut Collector<'_, String>,
    ) -> FunctionResult {
        let ts = ctx.timestamp().0;
        if e.1 == -1 {
            ctx.delete_event_time_timer(ts + 10);
            return Ok(());
        }
        let count = ctx.value(self.count.as_ref().unwrap()).get().copied().unwrap_or(0) + 1;
        ctx.value(self.count.as_ref().unwrap()).update(count);
        ctx.register_event_time_timer(ts + 10);
        let now = ctx.current_processing_time();
        ctx.register_processing_time_timer(now + 100);
        Ok(())
    }

    fn on_timer(
        &mut self,
        time: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult {
        let count = ctx.value(self.count.as_ref().unwrap()).get().copied().unwrap_or(0);
        out.collect(format!(
            "{}@{time} {:?} count={count}",
            ctx.current_key(),
            ctx.time_domain().unwrap()
        ));
        Ok(())
    }
}

type TimerHarness = OperatorHarness<
    KeyedProcessOperator<String, Event, String, fn(&Event) -> String, CountWithTimers>,
    String,
>;

fn timer_harness(index: usize, parallelism: usize) -> TimerHarness {
    let op = KeyedProcessOperator::new(key as KeyOf, CountWithTimers::default());
    OperatorHarness::for_subtask(op, index, parallelism).open().unwrap()
}

fn at(k: &str, ts: i64) -> (Event, i64) {
    ((k.to_string(), 0), ts)
}

#[test]
fn event_time_timers_fire_once_per_key_and_time_when_the_watermark_passes() {
    let mut h = timer_harness(0, 1);
    h.process_elements([at("a", 100), at("a", 100), at("b", 105), at("a", 200)]).unwrap();
    h.process_watermark(109).unwrap();
    assert!(h.take_output().is_empty(), "nothing is due before 110");
    h.process_watermark(115).unwrap();
    let fired: Vec<(String, i64)> = h.take_output();
    // "a" registered 110 twice: one timer. Its output carries the timer's time.
    assert_eq!(
        fired,
        vec![("a@110 EventTime count=3".into(), 110), ("b@115 EventTime count=1".into(), 115)]
    );
    assert_eq!(
        h.take_watermarks(),
        vec![109, 115],
        "watermarks pass on after the timers they fire"
    );
    h.process_watermark(1000).unwrap();
    assert_eq!(h.take_output(), vec![("a@210 EventTime count=3".to_string(), 210)]);
}

#[test]
fn a_deleted_timer_does_not_fire() {
    let mut h = timer_harness(0, 1);
    h.process_elements([at("a", 100)]).unwrap();
    h.process_elements([(("a".to_string(), -1i64), 100)]).unwrap();
    h.process_watermark(500).unwrap();
    assert!(h.take_output().is_empty());
}

#[test]
fn processing_time_timers_fire_when_the_clock_reaches_them() {
    let mut h = timer_harness(0, 1);
    h.set_processing_time(1_000).unwrap();
    h.process_elements([at("a", 1)]).unwrap();
    h.set_processing_time(1_099).unwrap();
    assert!(h.take_output().is_empty());
    h.set_processing_time(1_100).unwrap();
    assert_eq!(h.take_output(), vec![("a@1100 ProcessingTime count=1".to_string(), 1100)]);
}

#[test]
fn keyed_state_and_timers_survive_a_move_to_other_key_group_ranges() {
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let mut before = timer_harness(0, 1);
    before.process_elements(keys.iter().map(|k| at(k, 100))).unwrap();
    before.process_elements(keys.iter().map(|k| at(k, 100))).unwrap();

    // Rescale 1 -> 2: each new subtask takes the key groups it owns.
    let mut after: Vec<TimerHarness> = (0..2).map(|i| timer_harness(i, 2)).collect();
    for h in &mut after {
        let range: KeyGroupRange = h.key_group_range();
        let moved = before.extract_key_groups(range).unwrap();
        h.insert_key_groups(moved).unwrap();
    }
    assert_eq!(before.operator().keyed_state().len(), 0);
    assert!(before.operator().timers().is_empty());

    let mut fired = Vec::new();
    for h in &mut after {
        // One more record per key it owns: counts continue from the moved state.
        let owned: Vec<_> = keys
            .iter()
            .filter(|k| {
                let g = sluice_core::KeyHasher::new().key_group(*k, 128);
                h.key_group_range().contains(g)
            })
            .map(|k| at(k, 100))
            .collect();
        assert!(!owned.is_empty());
        h.process_elements(owned).unwrap();
        h.process_watermark(110).unwrap();
        fired.extend(h.take_output().into_iter().map(|(s, _)| s));
    }
    fired.sort();
    let mut expected: Vec<String> =
        keys.iter().map(|k| format!("{k}@110 EventTime count=3")).collect();
    expected.sort();
    assert_eq!(
        fired, expected,
        "each timer fired once, on the subtask that owns its key, with the moved count"
    );
}
