//! The interval join operator through the harness: matching, cleanup, lateness.

use sluice_core::FunctionResult;
use sluice_runtime::functions::Collector;
use sluice_runtime::harness::OperatorHarness;
use sluice_runtime::operators::interval_join::{IntervalJoinContext, IntervalJoinOperator};

type Ev = (u8, &'static str);
type KeyOf = fn(&(u8, String)) -> u8;
type Pair = fn(
    &(u8, String),
    &(u8, String),
    &IntervalJoinContext,
    &mut Collector<'_, String>,
) -> FunctionResult;

fn key(e: &(u8, String)) -> u8 {
    e.0
}

fn pair(
    a: &(u8, String),
    b: &(u8, String),
    ctx: &IntervalJoinContext,
    out: &mut Collector<'_, String>,
) -> FunctionResult {
    out.collect(format!("{}+{}@{}", a.1, b.1, ctx.right_timestamp - ctx.left_timestamp));
    Ok(())
}

fn ev(e: Ev, ts: i64) -> ((u8, String), i64) {
    ((e.0, e.1.to_string()), ts)
}

#[test]
fn buffered_records_are_dropped_once_no_future_record_can_match_and_late_ones_are_dropped() {
    let op = IntervalJoinOperator::new(key as KeyOf, key as KeyOf, -5, 10, pair as Pair);
    let mut h = OperatorHarness::<_, String>::new(op).open().unwrap();
    h.process_elements_on(0, [ev((1, "a1"), 100), ev((2, "a2"), 100)]).unwrap();
    h.process_elements_on(1, [ev((1, "b1"), 95), ev((1, "b2"), 111), ev((2, "b3"), 110)]).unwrap();
    let mut out: Vec<String> = h.take_output().into_iter().map(|(s, _)| s).collect();
    out.sort();
    assert_eq!(out, vec!["a1+b1@-5", "a2+b3@10"], "b2 at 111 is 11 after a1: outside [-5, 10]");
    assert_eq!(h.operator().buffered(), (2, 3));
    // Left records at 100 can match right records up to 110; right at 95 can match left up to 100,
    // at 110/111 left up to 115/116.
    h.process_watermark(111).unwrap();
    assert_eq!(h.operator().buffered(), (0, 2));
    h.process_watermark(117).unwrap();
    assert_eq!(h.operator().buffered(), (0, 0));
    h.process_elements_on(0, [ev((1, "late"), 116)]).unwrap();
    assert_eq!(h.operator().late_records_dropped(), 1);
    assert_eq!(h.take_watermarks(), vec![111, 117]);
}
