//! Event time end to end: watermark strategies, windows, late data, timers
//! and idle splits in real jobs on the mini-cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::connectors::DataGeneratorSource;
use sluice::{
    Collector, KeyedContext, KeyedOpenContext, KeyedProcessFunction, ManualClock, OutputTag,
    SlidingEventTimeWindows, StreamExecutionEnvironment, TumblingEventTimeWindows,
    TumblingProcessingTimeWindows, ValueState, Watermark, WatermarkGenerator, WatermarkOutput,
    WatermarkStrategy,
};
use sluice_core::FunctionResult;

/// (key, event time ms): 3,000 events over 5 keys, timestamps out of order by up to 500 ms.
fn events() -> Vec<(u32, i64)> {
    (0..3_000i64).map(|i| ((i * 7 % 5) as u32, i * 10 + (i * 7919 % 500))).collect()
}

fn count_per_window(events: &[(u32, i64)], size: i64, slide: i64) -> BTreeMap<(u32, i64), u64> {
    let mut counts = BTreeMap::new();
    for (k, ts) in events {
        let mut start = ts - ts.rem_euclid(slide);
        while start > ts - size {
            *counts.entry((*k, start + size)).or_default() += 1;
            start -= slide;
        }
    }
    counts
}

fn run_window_count(size: u64, slide: u64) -> BTreeMap<(u32, i64), u64> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(500))
        .with_timestamp_assigner(|e: &(u32, i64), _| e.1);
    let keyed = env
        .from_collection(events())
        .assign_timestamps_and_watermarks(strategy)
        .map(|(k, _)| (k, 1u64))
        .key_by(|(k, _): &(u32, u64)| *k);
    let assigner =
        SlidingEventTimeWindows::of(Duration::from_millis(size), Duration::from_millis(slide));
    let out = keyed
        .window(assigner)
        .process(
            |k: &u32,
             ctx: &sluice::WindowContext,
             elements: &[(u32, u64)],
             out: &mut Collector<'_, (u32, i64, u64)>| {
                out.collect((*k, ctx.window.end, elements.len() as u64));
                Ok(())
            },
        )
        .collect();
    env.execute("window count").unwrap();
    out.take().into_iter().map(|(k, end, n)| ((k, end), n)).collect()
}

#[test]
fn sliding_and_tumbling_event_time_windows_count_out_of_order_events_exactly() {
    for (size, slide) in [(1_000, 1_000), (1_000, 250), (700, 300)] {
        let expected = count_per_window(&events(), size as i64, slide as i64);
        assert_eq!(run_window_count(size, slide), expected, "{size}/{slide}");
    }
}

/// A watermark right behind every event (deterministic lateness at batch size 1).
#[derive(Clone)]
struct EveryEvent;

impl WatermarkGenerator<(u32, i64)> for EveryEvent {
    fn on_event(&mut self, _e: &(u32, i64), timestamp: i64, output: &mut WatermarkOutput) {
        output.emit_watermark(Watermark(timestamp - 1));
    }
    fn on_periodic_emit(&mut self, _output: &mut WatermarkOutput) {}
}

#[test]
fn late_records_reach_the_side_output_through_get_side_output() {
    let env = StreamExecutionEnvironment::new();
    env.set_batch_size(1);
    let late_tag = OutputTag::<(u32, i64)>::new("late");
    let input = vec![(1, 100), (1, 1_500), (1, 200), (1, 1_100), (1, 2_500), (1, 1_900)];
    let strategy = WatermarkStrategy::for_generator(|| EveryEvent)
        .with_timestamp_assigner(|e: &(u32, i64), _| e.1);
    let sums = env
        .from_collection(input)
        .assign_timestamps_and_watermarks(strategy)
        .key_by(|e: &(u32, i64)| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .allowed_lateness(Duration::from_millis(200))
        .side_output_late_data(&late_tag)
        .reduce(|a, b| (a.0, a.1 + b.1));
    let late = sums.get_side_output(&late_tag).collect();
    let on_time = sums.collect();
    env.execute("late data").unwrap();
    // Each record moves the watermark to its timestamp - 1. 200 arrives at
    // watermark 1499: [0,1000) is past 999 + 200, too late. 1900 arrives at
    // watermark 2499: [1000,2000) is past 1999 + 200, too late.
    assert_eq!(late.take(), vec![(1, 200), (1, 1_900)]);
    // [0,1000) = 100; [1000,2000) = 1500 + 1100, fired at watermark 2499; [2000,3000) = 2500 at the end.
    let mut windows = on_time.take();
    windows.sort();
    assert_eq!(windows, vec![(1, 100), (1, 2_500), (1, 2_600)]);
}

#[test]
fn window_all_evaluates_the_whole_stream_in_one_subtask() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(3);
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|v: &u64, _| *v as i64);
    let out = env
        .from_sequence(1_000)
        .assign_timestamps_and_watermarks(strategy)
        .window_all(TumblingEventTimeWindows::of(Duration::from_millis(100)))
        .reduce(|a, b| a + b)
        .collect();
    let plan = env.explain().unwrap();
    let window = plan.job_graph.iter().find(|v| v.name.starts_with("Window(")).unwrap();
    assert_eq!(window.parallelism, 1);
    env.execute("window all").unwrap();
    let mut sums = out.take();
    sums.sort();
    let expected: Vec<u64> = (0..10).map(|w| (w * 100..w * 100 + 100).sum()).collect();
    assert_eq!(sums, expected);
}

#[test]
fn ingestion_time_stamps_records_with_the_processing_time_at_the_source() {
    let clock = ManualClock::new(12_345);
    let env = StreamExecutionEnvironment::new();
    env.set_clock(Arc::new(clock.clone()));
    let out = env
        .from_source_with_watermarks(
            DataGeneratorSource::sequence(10),
            WatermarkStrategy::for_ingestion_time(),
            "numbers",
        )
        .key_by(|_: &u64| 0u8)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .process(
            |_k: &u8,
             ctx: &sluice::WindowContext,
             e: &[u64],
             out: &mut Collector<'_, (i64, usize)>| {
                out.collect((ctx.window.start, e.len()));
                Ok(())
            },
        )
        .collect();
    env.execute("ingestion time").unwrap();
    assert_eq!(out.take(), vec![(10_000, 10)]);
}

#[test]
fn processing_time_windows_use_the_jobs_clock() {
    let env = StreamExecutionEnvironment::new();
    env.set_clock(Arc::new(ManualClock::new(5_500)));
    let out = env
        .from_sequence(20)
        .key_by(|i: &u64| i % 2)
        .window(TumblingProcessingTimeWindows::of(Duration::from_secs(1)))
        .reduce(|a, b| a + b)
        .collect();
    env.execute("processing time").unwrap();
    let mut sums = out.take();
    sums.sort();
    assert_eq!(sums, vec![90, 100], "all records fall in [5000, 6000), fired at end of input");
}

/// Emits each key's count when the watermark passes 1 s after its first record.
#[derive(Clone, Default)]
struct CountAfterOneSecond {
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction<u32, (u32, i64), (u32, u64)> for CountAfterOneSecond {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u32>) -> FunctionResult {
        self.count = Some(ctx.state.value_state(&sluice::StateDescriptor::value("count"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        _e: (u32, i64),
        ctx: &mut KeyedContext<'_, u32>,
        _out: &mut Collector<'_, (u32, u64)>,
    ) -> FunctionResult {
        let state = self.count.as_ref().unwrap();
        let count = ctx.value(state).get().copied().unwrap_or(0);
        if count == 0 {
            let at = ctx.timestamp().0 + 1_000;
            ctx.register_event_time_timer(at);
        }
        ctx.value(state).update(count + 1);
        Ok(())
    }

    fn on_timer(
        &mut self,
        _t: i64,
        ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, (u32, u64)>,
    ) -> FunctionResult {
        let count = ctx.value(self.count.as_ref().unwrap()).get().copied().unwrap_or(0);
        out.collect((*ctx.current_key(), count));
        ctx.value(self.count.as_ref().unwrap()).clear();
        Ok(())
    }
}

#[test]
fn keyed_event_time_timers_fire_in_a_job() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(500))
        .with_timestamp_assigner(|e: &(u32, i64), _| e.1);
    let out = env
        .from_collection(events())
        .assign_timestamps_and_watermarks(strategy)
        .key_by(|e: &(u32, i64)| e.0)
        .process(CountAfterOneSecond::default())
        .collect();
    env.execute("timers").unwrap();
    let total: u64 = out.take().iter().map(|(_, c)| c).sum();
    assert_eq!(total, 3_000, "every event is counted in exactly one firing");
}

/// A source of two splits: split 0 emits an event every millisecond of its
/// own time; split 1 emits one early event and then nothing, without ending.
#[derive(Clone)]
struct OneSilentSplit;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Half(u32);

impl sluice::SourceSplit for Half {
    fn split_id(&self) -> String {
        format!("half-{}", self.0)
    }
}

impl sluice::Source<(u32, i64)> for OneSilentSplit {
    type Split = Half;

    fn boundedness(&self) -> sluice::Boundedness {
        sluice::Boundedness::ContinuousUnbounded
    }

    fn create_splits(&self, _parallelism: usize) -> sluice::Result<Vec<Half>> {
        Ok(vec![Half(0), Half(1)])
    }

    fn create_reader(
        &self,
        _ctx: &sluice::RuntimeContext,
    ) -> sluice::Result<Box<dyn sluice::SourceReader<(u32, i64), Half>>> {
        Ok(Box::new(SilentReader { next: 0, early_sent: false }))
    }
}

struct SilentReader {
    next: i64,
    early_sent: bool,
}

impl sluice::SourceReader<(u32, i64), Half> for SilentReader {
    fn add_splits(&mut self, _splits: Vec<Half>) -> sluice::Result<()> {
        Ok(())
    }

    fn poll_next(
        &mut self,
        output: &mut sluice::SourceOutput<(u32, i64)>,
    ) -> sluice::Result<sluice::InputStatus> {
        if !self.early_sent {
            output.set_split(1);
            output.collect((1, 0));
            self.early_sent = true;
        }
        output.set_split(0);
        for _ in 0..100 {
            output.collect((0, self.next));
            self.next += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
        Ok(sluice::InputStatus::MoreAvailable)
    }
}

#[test]
fn an_idle_split_does_not_stall_the_watermark() {
    let env = StreamExecutionEnvironment::new();
    env.set_auto_watermark_interval(Duration::from_millis(20));
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|e: &(u32, i64), _| e.1)
        .with_idleness(Duration::from_millis(100));
    let windows = env
        .from_source_with_watermarks(OneSilentSplit, strategy, "two splits")
        .key_by(|e: &(u32, i64)| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(1_000)))
        .reduce(|a, _b| a)
        .collect();
    let client = env.execute_async("idle split").unwrap();
    let started = Instant::now();
    // Split 1 stopped at event time 0; without idleness no window could ever fire.
    while windows.len() < 2 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    client.cancel();
    let _ = client.wait();
    assert!(windows.len() >= 2, "windows fired while split 1 was idle: {}", windows.len());
}
