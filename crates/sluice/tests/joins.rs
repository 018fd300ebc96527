//! Window joins, co-groups and interval joins against references computed here.

use std::time::Duration;

use sluice::{
    Collector, IntervalJoinContext, StreamExecutionEnvironment, TumblingEventTimeWindows,
    WatermarkStrategy,
};

/// (key, event time ms, tag)
type Ev = (u32, i64, u32);

fn left() -> Vec<Ev> {
    (0..400).map(|i| (i % 7, (i as i64) * 13 % 2_000, i)).collect()
}

fn right() -> Vec<Ev> {
    (0..300).map(|i| (i % 5, (i as i64) * 29 % 2_000, 1_000 + i)).collect()
}

fn strategy() -> WatermarkStrategy<
    Ev,
    impl Fn() -> sluice::BoundedOutOfOrderness + Clone + Send + Sync,
    impl Fn(&Ev, i64) -> i64 + Clone + Send + Sync,
> {
    WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(2_000))
        .with_timestamp_assigner(|e: &Ev, _| e.1)
}

#[test]
fn a_window_join_emits_every_pair_with_the_same_key_in_the_same_window() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let a = env.from_collection(left()).assign_timestamps_and_watermarks(strategy());
    let b = env.from_collection(right()).assign_timestamps_and_watermarks(strategy());
    let out = a
        .join(&b)
        .where_key(|e: &Ev| e.0)
        .equal_to(|e: &Ev| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(500)))
        .apply(|x: &Ev, y: &Ev| (x.2, y.2))
        .collect();
    env.execute("window join").unwrap();
    let mut got = out.take();
    got.sort();
    let mut expected = Vec::new();
    for x in left() {
        for y in right() {
            if x.0 == y.0 && x.1 / 500 == y.1 / 500 {
                expected.push((x.2, y.2));
            }
        }
    }
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn a_co_group_sees_both_sides_of_each_key_and_window_even_when_one_is_empty() {
    let env = StreamExecutionEnvironment::new();
    let a = env.from_collection(left()).assign_timestamps_and_watermarks(strategy());
    let b = env.from_collection(right()).assign_timestamps_and_watermarks(strategy());
    let out = a
        .co_group(&b)
        .where_key(|e: &Ev| e.0)
        .equal_to(|e: &Ev| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(1_000)))
        .apply(|k: &u32, xs: &[Ev], ys: &[Ev], out: &mut Collector<'_, (u32, usize, usize)>| {
            out.collect((*k, xs.len(), ys.len()));
            Ok(())
        })
        .collect();
    env.execute("co-group").unwrap();
    let mut got = out.take();
    got.sort();
    let mut expected = std::collections::BTreeMap::new();
    for x in left() {
        expected.entry((x.0, x.1 / 1_000)).or_insert((0, 0)).0 += 1;
    }
    for y in right() {
        expected.entry((y.0, y.1 / 1_000)).or_insert((0, 0)).1 += 1;
    }
    let mut expected: Vec<(u32, usize, usize)> =
        expected.into_iter().map(|((k, _), (n, m))| (k, n, m)).collect();
    expected.sort();
    assert!(expected.iter().any(|(_, n, m)| *n == 0 || *m == 0), "some groups are one-sided");
    assert_eq!(got, expected);
}

#[test]
fn an_interval_join_matches_records_within_the_bounds_of_each_other() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let a = env
        .from_collection(left())
        .assign_timestamps_and_watermarks(strategy())
        .key_by(|e: &Ev| e.0);
    let b = env
        .from_collection(right())
        .assign_timestamps_and_watermarks(strategy())
        .key_by(|e: &Ev| e.0);
    let out = a
        .interval_join(&b)
        .between(-20, 35)
        .process(
            |x: &Ev,
             y: &Ev,
             ctx: &IntervalJoinContext,
             out: &mut Collector<'_, (u32, u32, i64)>| {
                out.collect((x.2, y.2, ctx.right_timestamp - ctx.left_timestamp));
                Ok(())
            },
        )
        .collect();
    env.execute("interval join").unwrap();
    let mut got = out.take();
    got.sort();
    let mut expected = Vec::new();
    for x in left() {
        for y in right() {
            if x.0 == y.0 && (x.1 - 20..=x.1 + 35).contains(&y.1) {
                expected.push((x.2, y.2, y.1 - x.1));
            }
        }
    }
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}
