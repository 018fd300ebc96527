//! Window operators driven through the harness. Aligned windows run through
//! both the slicing operator and the general window operator, which must agree.

use std::time::Duration;

use sluice_core::FunctionResult;
use sluice_runtime::functions::Collector;
use sluice_runtime::harness::OperatorHarness;
use sluice_runtime::operator::StreamOperator;
use sluice_runtime::windowing::evictors::{CountEvictor, NoEvictor};
use sluice_runtime::windowing::functions::{ProcessAllWindow, ReduceWindow, WindowContext};
use sluice_runtime::windowing::slicing_window_operator::SlicingWindowOperator;
use sluice_runtime::windowing::triggers::{
    CountTrigger, EventTimeTrigger, PurgingTrigger, Trigger,
};
use sluice_runtime::windowing::window_operator::{WindowOperator, WindowSpec};
use sluice_runtime::windowing::{
    EventTimeSessionWindows, GlobalWindows, SlidingEventTimeWindows, TumblingEventTimeWindows,
    TumblingProcessingTimeWindows, WindowAssigner,
};

/// (key, count) records; windows sum the counts.
type Rec = (String, u64);
type KeyOf = fn(&Rec) -> String;

fn key(r: &Rec) -> String {
    r.0.clone()
}

fn sum(a: Rec, b: Rec) -> Rec {
    (a.0, a.1 + b.1)
}

type SumFn = fn(Rec, Rec) -> Rec;

/// Both implementations of aligned windows summing counts, with lateness and a late tag.
fn aligned_operators<A: WindowAssigner + Copy>(
    assigner: A,
    lateness: i64,
) -> Vec<(&'static str, Box<dyn StreamOperator>)>
where
    A::DefaultTrigger: Trigger,
{
    let reduce = ReduceWindow(sum as SumFn);
    let slicing = SlicingWindowOperator::new(
        key as KeyOf,
        assigner.aligned().unwrap(),
        assigner.is_event_time(),
        lateness,
        Some("late".into()),
        reduce.clone(),
    );
    let spec = WindowSpec {
        assigner,
        trigger: assigner.default_trigger(),
        evictor: None::<NoEvictor>,
        allowed_lateness: lateness,
        late_tag: Some("late".into()),
    };
    let general = WindowOperator::new(key as KeyOf, spec, reduce);
    vec![("slicing", Box::new(slicing)), ("general", Box::new(general))]
}

fn harness(op: Box<dyn StreamOperator>) -> OperatorHarness<Box<dyn StreamOperator>, Rec> {
    OperatorHarness::new(op).with_side_output::<Rec>("late").open().unwrap()
}

fn r(k: &str, ts: i64) -> (Rec, i64) {
    ((k.to_string(), 1), ts)
}

fn sorted(mut v: Vec<(Rec, i64)>) -> Vec<(Rec, i64)> {
    v.sort();
    v
}

#[test]
fn a_tumbling_window_fires_exactly_when_the_watermark_reaches_its_end_with_out_of_order_records() {
    for (name, op) in aligned_operators(TumblingEventTimeWindows::of(Duration::from_millis(10)), 0)
    {
        let mut h = harness(op);
        h.process_elements([r("a", 7), r("a", 2), r("b", 11), r("a", 9), r("a", 10)]).unwrap();
        h.process_watermark(8).unwrap();
        assert!(h.take_output().is_empty(), "{name}: window [0,10) is open until watermark 9");
        h.process_watermark(9).unwrap();
        assert_eq!(
            h.take_output(),
            vec![(("a".into(), 3), 9)],
            "{name}: fires once, stamped with its max timestamp"
        );
        h.process_watermark(9).unwrap();
        assert!(h.take_output().is_empty(), "{name}: fires once");
        h.process_watermark(100).unwrap();
        assert_eq!(
            sorted(h.take_output()),
            vec![(("a".into(), 1), 19), (("b".into(), 1), 19)],
            "{name}"
        );
    }
}

#[test]
fn late_records_within_allowed_lateness_fire_the_window_again_and_later_ones_go_to_the_side_output()
{
    for (name, op) in aligned_operators(TumblingEventTimeWindows::of(Duration::from_millis(10)), 5)
    {
        let mut h = harness(op);
        h.process_elements([r("a", 1), r("a", 2)]).unwrap();
        h.process_watermark(9).unwrap();
        assert_eq!(h.take_output(), vec![(("a".into(), 2), 9)], "{name}: on time");
        h.process_elements([r("a", 3)]).unwrap();
        assert_eq!(
            h.take_output(),
            vec![(("a".into(), 3), 9)],
            "{name}: late but allowed: fires again at once"
        );
        h.process_watermark(13).unwrap();
        h.process_elements([r("a", 4)]).unwrap();
        assert_eq!(
            h.take_output(),
            vec![(("a".into(), 4), 9)],
            "{name}: 9 + 5 > 13: still allowed"
        );
        h.process_watermark(14).unwrap();
        h.process_elements([r("a", 5)]).unwrap();
        assert!(h.take_output().is_empty(), "{name}: 9 + 5 <= 14: too late");
        assert_eq!(h.take_side_output::<Rec>("late"), vec![(("a".into(), 1), 5)], "{name}");
    }
}

#[test]
fn records_later_than_every_window_without_lateness_go_to_the_side_output() {
    for (name, op) in aligned_operators(TumblingEventTimeWindows::of(Duration::from_millis(10)), 0)
    {
        let mut h = harness(op);
        h.process_watermark(20).unwrap();
        h.process_elements([r("a", 5), r("a", 25)]).unwrap();
        assert_eq!(h.take_side_output::<Rec>("late"), vec![(("a".into(), 1), 5)], "{name}");
        h.process_watermark(29).unwrap();
        assert_eq!(h.take_output(), vec![(("a".into(), 1), 29)], "{name}");
    }
}

#[test]
fn a_sliding_window_gives_each_record_to_size_over_slide_windows() {
    for (name, op) in aligned_operators(
        SlidingEventTimeWindows::of(Duration::from_millis(10), Duration::from_millis(2)),
        0,
    ) {
        let mut h = harness(op);
        h.process_elements([r("a", 5)]).unwrap();
        h.process_watermark(100).unwrap();
        let ends: Vec<i64> = h
            .take_output()
            .into_iter()
            .map(|((_, c), ts)| {
                assert_eq!(c, 1);
                ts
            })
            .collect();
        // Windows [-4,6), [-2,8), [0,10), [2,12), [4,14) contain 5.
        assert_eq!(ends, vec![5, 7, 9, 11, 13], "{name}");
    }
}

/// A naive reference: per key and window, the count of records, for windows
/// of `size` every `slide` — computed with no engine.
fn reference(records: &[(Rec, i64)], size: i64, slide: i64) -> Vec<(Rec, i64)> {
    let mut counts = std::collections::BTreeMap::new();
    for ((k, c), ts) in records {
        let mut start = ts - ts.rem_euclid(slide);
        while start > ts - size {
            *counts.entry((k.clone(), start + size - 1)).or_insert(0u64) += c;
            start -= slide;
        }
    }
    sorted(counts.into_iter().map(|((k, end), c)| ((k, c), end)).collect())
}

#[test]
fn both_operators_match_a_reference_on_shuffled_input_for_tumbling_and_sliding_windows() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    for seed in 0..5 {
        let mut rng = SmallRng::seed_from_u64(seed);
        // Timestamps advance with bounded disorder; the watermark trails by the bound.
        let records: Vec<(Rec, i64)> = (0..2_000)
            .map(|i| {
                (
                    ((format!("k{}", rng.random_range(0..7))), rng.random_range(1..4)),
                    i * 3 + rng.random_range(0..40),
                )
            })
            .collect();
        for (size, slide) in [(50, 50), (60, 20), (100, 30)] {
            let ops = if size == slide {
                aligned_operators(
                    TumblingEventTimeWindows::of(Duration::from_millis(size as u64)),
                    0,
                )
            } else {
                aligned_operators(
                    SlidingEventTimeWindows::of(
                        Duration::from_millis(size as u64),
                        Duration::from_millis(slide as u64),
                    ),
                    0,
                )
            };
            for (name, op) in ops {
                let mut h = harness(op);
                let mut max_ts = i64::MIN;
                for chunk in records.chunks(37) {
                    h.process_elements(chunk.to_vec()).unwrap();
                    max_ts = max_ts.max(chunk.iter().map(|(_, ts)| *ts).max().unwrap());
                    h.process_watermark(max_ts - 41).unwrap();
                }
                h.process_watermark(i64::MAX).unwrap();
                assert!(h.take_side_output::<Rec>("late").is_empty());
                assert_eq!(
                    sorted(h.take_output()),
                    reference(&records, size, slide),
                    "{name} seed {seed} {size}/{slide}"
                );
            }
        }
    }
}

#[test]
fn session_windows_merge_when_records_bridge_the_gap() {
    let spec = WindowSpec {
        assigner: EventTimeSessionWindows::with_gap(Duration::from_millis(10)),
        trigger: EventTimeTrigger,
        evictor: None::<NoEvictor>,
        allowed_lateness: 0,
        late_tag: None,
    };
    let op = WindowOperator::new(key as KeyOf, spec, ReduceWindow(sum as SumFn));
    let mut h = OperatorHarness::<_, Rec>::new(op).open().unwrap();
    // 1 -> [1,11), 5 -> [5,15): merged [1,15). 30 -> [30,40). 50 -> [50,60).
    h.process_elements([r("a", 1), r("a", 5), r("a", 30), r("b", 50), r("a", 50)]).unwrap();
    // 20 -> [20,30) touches [30,40): [20,40). 12 -> [12,22) bridges [1,15) and [20,40): [1,40).
    h.process_elements([r("a", 20), r("a", 12)]).unwrap();
    assert_eq!(h.operator().window_count(), 3, "a: [1,40) and [50,60); b: [50,60)");
    h.process_watermark(100).unwrap();
    assert_eq!(
        sorted(h.take_output()),
        vec![(("a".into(), 1), 59), (("a".into(), 5), 39), (("b".into(), 1), 59)]
    );
    assert_eq!(h.operator().window_count(), 0, "fired sessions are cleaned up");
}

#[test]
fn a_count_window_fires_and_purges_every_n_records_per_key() {
    let spec = WindowSpec {
        assigner: GlobalWindows::create(),
        trigger: PurgingTrigger::of(CountTrigger::of(3)),
        evictor: None::<NoEvictor>,
        allowed_lateness: 0,
        late_tag: None,
    };
    let op = WindowOperator::new(key as KeyOf, spec, ReduceWindow(sum as SumFn));
    let mut h = OperatorHarness::<_, Rec>::new(op).open().unwrap();
    h.process_elements((0..7).map(|i| r(if i % 2 == 0 { "a" } else { "b" }, i))).unwrap();
    // a gets 0,2,4,6 (fires at the 3rd); b gets 1,3,5 (fires at the 3rd).
    let out: Vec<Rec> = h.take_output().into_iter().map(|(v, _)| v).collect();
    assert_eq!(out, vec![("a".into(), 3), ("b".into(), 3)]);
}

/// Lists the window's elements.
fn list(
    key: &String,
    ctx: &WindowContext,
    elements: &[Rec],
    out: &mut Collector<'_, String>,
) -> FunctionResult {
    let counts: Vec<u64> = elements.iter().map(|e| e.1).collect();
    out.collect(format!("{key} [{}, {}) {counts:?}", ctx.window.start, ctx.window.end));
    Ok(())
}

type ListFn = fn(&String, &WindowContext, &[Rec], &mut Collector<'_, String>) -> FunctionResult;

#[test]
fn a_count_evictor_keeps_the_last_elements_for_the_process_function() {
    let spec = WindowSpec {
        assigner: TumblingEventTimeWindows::of(Duration::from_millis(100)),
        trigger: EventTimeTrigger,
        evictor: Some(CountEvictor::of(2)),
        allowed_lateness: 0,
        late_tag: None,
    };
    let op = WindowOperator::new(
        key as KeyOf,
        spec,
        ProcessAllWindow(list as ListFn, std::marker::PhantomData),
    );
    let mut h = OperatorHarness::<_, String>::new(op).open().unwrap();
    h.process_elements([1u64, 2, 3, 4].map(|c| (("a".to_string(), c), c as i64))).unwrap();
    h.process_watermark(99).unwrap();
    assert_eq!(h.take_output(), vec![("a [0, 100) [3, 4]".to_string(), 99)]);
}

#[test]
fn processing_time_windows_fire_by_the_clock() {
    for (name, op) in
        aligned_operators(TumblingProcessingTimeWindows::of(Duration::from_millis(1000)), 0)
    {
        let mut h = harness(op);
        h.set_processing_time(1_500).unwrap();
        h.process_elements([r("a", 0), r("a", 999_999)]).unwrap();
        h.set_processing_time(1_998).unwrap();
        assert!(h.take_output().is_empty(), "{name}");
        h.set_processing_time(1_999).unwrap();
        assert_eq!(
            h.take_output(),
            vec![(("a".into(), 2), 1999)],
            "{name}: event timestamps are ignored"
        );
    }
}

#[test]
fn window_state_and_timers_move_to_other_subtasks_by_key_group_range_mid_stream() {
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let assigner = SlidingEventTimeWindows::of(Duration::from_millis(10), Duration::from_millis(5));
    for (name, _) in aligned_operators(assigner, 0) {
        let pick = |ops: Vec<(&'static str, Box<dyn StreamOperator>)>| {
            ops.into_iter().find(|(n, _)| *n == name).unwrap().1
        };
        // Reference: everything on one subtask.
        let mut whole = harness(pick(aligned_operators(assigner, 0)));
        let first: Vec<_> = keys.iter().map(|k| r(k, 3)).collect();
        let second: Vec<_> = keys.iter().map(|k| r(k, 7)).collect();
        whole.process_elements(first.clone()).unwrap();
        whole.process_elements(second.clone()).unwrap();
        whole.process_watermark(100).unwrap();
        let expected = sorted(whole.take_output());

        // The same, with a rescale from 1 to 2 subtasks between the two batches.
        let mut before = harness(pick(aligned_operators(assigner, 0)));
        before.process_elements(first).unwrap();
        let mut got = Vec::new();
        for i in 0..2 {
            let op = pick(aligned_operators(assigner, 0));
            let mut after = OperatorHarness::<_, Rec>::for_subtask(op, i, 2)
                .with_side_output::<Rec>("late")
                .open()
                .unwrap();
            let moved = before.extract_key_groups(after.key_group_range()).unwrap();
            after.insert_key_groups(moved).unwrap();
            let owned: Vec<_> = second
                .iter()
                .filter(|((k, _), _)| {
                    after
                        .key_group_range()
                        .contains(sluice_core::KeyHasher::new().key_group(k, 128))
                })
                .cloned()
                .collect();
            after.process_elements(owned).unwrap();
            after.process_watermark(100).unwrap();
            got.extend(after.take_output());
        }
        assert_eq!(sorted(got), expected, "{name}");
    }
}

#[test]
fn a_window_snapshot_restored_at_another_parallelism_continues_with_the_same_results() {
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let assigner = SlidingEventTimeWindows::of(Duration::from_millis(10), Duration::from_millis(5));
    for (name, _) in aligned_operators(assigner, 0) {
        let pick = |ops: Vec<(&'static str, Box<dyn StreamOperator>)>| {
            ops.into_iter().find(|(n, _)| *n == name).unwrap().1
        };
        let first: Vec<_> = keys.iter().map(|k| r(k, 3)).collect();
        let second: Vec<_> = keys.iter().map(|k| r(k, 7)).collect();
        let mut whole = harness(pick(aligned_operators(assigner, 0)));
        whole.process_elements(first.clone()).unwrap();
        whole.process_elements(second.clone()).unwrap();
        whole.process_watermark(100).unwrap();
        let expected = sorted(whole.take_output());

        // Two subtasks checkpoint; three restore from the bytes and finish.
        let mut snapshots = Vec::new();
        for i in 0..2 {
            let mut h =
                OperatorHarness::<_, Rec>::for_subtask(pick(aligned_operators(assigner, 0)), i, 2)
                    .with_side_output::<Rec>("late")
                    .open()
                    .unwrap();
            let owned: Vec<_> = first
                .iter()
                .filter(|((k, _), _)| {
                    h.key_group_range().contains(sluice_core::KeyHasher::new().key_group(k, 128))
                })
                .cloned()
                .collect();
            h.process_elements(owned).unwrap();
            let snapshot = h.snapshot(1).unwrap();
            let bytes = postcard::to_allocvec(&snapshot).unwrap();
            snapshots.push(postcard::from_bytes(&bytes).unwrap());
        }
        let mut got = Vec::new();
        for i in 0..3 {
            let mut h =
                OperatorHarness::<_, Rec>::for_subtask(pick(aligned_operators(assigner, 0)), i, 3)
                    .with_side_output::<Rec>("late")
                    .open()
                    .unwrap();
            h.restore(&snapshots).unwrap();
            let owned: Vec<_> = second
                .iter()
                .filter(|((k, _), _)| {
                    h.key_group_range().contains(sluice_core::KeyHasher::new().key_group(k, 128))
                })
                .cloned()
                .collect();
            h.process_elements(owned).unwrap();
            h.process_watermark(100).unwrap();
            got.extend(h.take_output());
        }
        assert_eq!(sorted(got), expected, "{name}");
    }
}
