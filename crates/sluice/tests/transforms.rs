//! Every transformation of the DataStream API produces exactly the expected records.

use sluice::{
    CoProcessFunction, Collector, Context, KeyedContext, KeyedProcessFunction, ProcessFunction,
    RuntimeContext, StreamExecutionEnvironment,
};
use sluice_core::FunctionResult;

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Runs a job built by `build` at parallelism `p` and returns what it collected.
fn run<T: sluice_core::Data>(
    p: usize,
    build: impl FnOnce(&StreamExecutionEnvironment) -> sluice::connectors::CollectHandle<T>,
) -> Vec<T> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(p);
    let out = build(&env);
    env.execute("test").unwrap();
    out.take()
}

#[test]
fn map_applies_the_function_to_every_record() {
    let out = run(2, |env| env.from_sequence(100).map(|i| i * 3).collect());
    assert_eq!(sorted(out), (0..100).map(|i| i * 3).collect::<Vec<u64>>());
}

#[test]
fn filter_keeps_exactly_the_records_that_match() {
    let out = run(3, |env| env.from_sequence(100).filter(|i| i % 7 == 0).collect());
    assert_eq!(sorted(out), (0..100).filter(|i| i % 7 == 0).collect::<Vec<u64>>());
}

#[test]
fn flat_map_emits_every_returned_record_in_order() {
    let out = run(1, |env| {
        env.from_collection(vec![1u32, 0, 3]).flat_map(|n| (0..n).map(move |i| (n, i))).collect()
    });
    assert_eq!(out, vec![(1, 0), (3, 0), (3, 1), (3, 2)]);
}

#[test]
fn a_stateful_map_closure_is_cloned_per_subtask() {
    // Each subtask numbers its own records from 0.
    let out = run(1, |env| {
        let mut seen = 0u64;
        env.from_sequence(5)
            .map(move |i| {
                seen += 1;
                (i, seen)
            })
            .collect()
    });
    assert_eq!(out, vec![(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]);
}

#[test]
fn reduce_emits_the_rolling_result_per_key_in_arrival_order() {
    let input = vec![("a", 1), ("b", 10), ("a", 2), ("a", 3), ("b", 20)];
    let out = run(2, |env| {
        env.from_collection(
            input.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Vec<(String, i64)>>(),
        )
        .set_parallelism(1)
        .key_by(|(k, _): &(String, i64)| k.clone())
        .reduce(|(k, a), (_, b)| (k, a + b))
        .collect()
    });
    let of = |key: &str| out.iter().filter(|(k, _)| k == key).map(|(_, v)| *v).collect::<Vec<_>>();
    assert_eq!(of("a"), vec![1, 3, 6]);
    assert_eq!(of("b"), vec![10, 30]);
}

#[test]
fn sum_min_max_aggregate_one_field_and_keep_the_first_records_other_fields() {
    type R = (u8, i32, &'static str);
    let input: Vec<(u8, i32, String)> = [(1, 5, "x"), (1, 3, "y"), (1, 9, "z")]
        .iter()
        .map(|&(k, v, s): &R| (k, v, s.to_string()))
        .collect();
    let key = |r: &(u8, i32, String)| r.0;
    let sum =
        run(1, |env| env.from_collection(input.clone()).key_by(key).sum(|r| &mut r.1).collect());
    assert_eq!(
        sum.iter().map(|r| (r.1, r.2.as_str())).collect::<Vec<_>>(),
        vec![(5, "x"), (8, "x"), (17, "x")]
    );
    let min =
        run(1, |env| env.from_collection(input.clone()).key_by(key).min(|r| &mut r.1).collect());
    assert_eq!(
        min.iter().map(|r| (r.1, r.2.as_str())).collect::<Vec<_>>(),
        vec![(5, "x"), (3, "x"), (3, "x")]
    );
    let max =
        run(1, |env| env.from_collection(input.clone()).key_by(key).max(|r| &mut r.1).collect());
    assert_eq!(
        max.iter().map(|r| (r.1, r.2.as_str())).collect::<Vec<_>>(),
        vec![(5, "x"), (5, "x"), (9, "x")]
    );
}

#[test]
fn min_by_and_max_by_keep_the_whole_winning_record() {
    let input: Vec<(u8, i32, String)> =
        vec![(1, 5, "x".into()), (1, 3, "y".into()), (1, 9, "z".into()), (1, 3, "w".into())];
    let min_by =
        run(1, |env| env.from_collection(input.clone()).key_by(|r| r.0).min_by(|r| r.1).collect());
    assert_eq!(min_by.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(), vec!["x", "y", "y", "y"]);
    let max_by =
        run(1, |env| env.from_collection(input.clone()).key_by(|r| r.0).max_by(|r| r.1).collect());
    assert_eq!(max_by.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(), vec!["x", "x", "z", "z"]);
}

/// Emits each record twice, and at end of input the number it saw and the job parameter "tag".
#[derive(Clone, Default)]
struct Twice {
    seen: u64,
    tag: String,
}

impl ProcessFunction<u64, String> for Twice {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult {
        self.tag = ctx.job_parameter("tag").ok_or("job parameter 'tag' is missing")?.to_string();
        Ok(())
    }

    fn process_element(
        &mut self,
        value: u64,
        _ctx: &Context,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult {
        self.seen += 1;
        out.collect(value.to_string());
        out.collect(value.to_string());
        Ok(())
    }

    fn end_input(&mut self, out: &mut Collector<'_, String>) -> FunctionResult {
        out.collect(format!("{}:{}", self.tag, self.seen));
        Ok(())
    }
}

#[test]
fn process_function_reads_job_parameters_emits_freely_and_finishes_at_end_of_input() {
    let out = run(1, |env| {
        env.set_job_parameter("tag", "done");
        env.from_sequence(3).process(Twice::default()).collect()
    });
    assert_eq!(out, vec!["0", "0", "1", "1", "2", "2", "done:3"]);
}

/// Counts records per key and emits "key=count" for each.
#[derive(Clone, Default)]
struct KeyEcho;

impl KeyedProcessFunction<u64, u64, String> for KeyEcho {
    fn process_element(
        &mut self,
        value: u64,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult {
        out.collect(format!("{}:{}", ctx.current_key(), value));
        Ok(())
    }
}

#[test]
fn keyed_process_function_sees_the_key_of_each_record() {
    let out = run(2, |env| env.from_sequence(6).key_by(|i| i % 3).process(KeyEcho).collect());
    assert_eq!(sorted(out), vec!["0:0", "0:3", "1:1", "1:4", "2:2", "2:5"]);
}

#[test]
fn union_merges_streams_of_the_same_type() {
    let out = run(2, |env| {
        let a = env.from_collection(vec![1u32, 2]);
        let b = env.from_collection(vec![10u32]);
        let c = env.from_collection(vec![100u32, 200]);
        a.union(&[b, c]).map(|x| x + 1).collect()
    });
    assert_eq!(sorted(out), vec![2, 3, 11, 101, 201]);
}

#[test]
fn connect_with_co_map_maps_each_input_with_its_own_function() {
    let out = run(2, |env| {
        let numbers = env.from_collection(vec![1u32, 2]);
        let words = env.from_collection(vec!["x".to_string()]);
        numbers.connect(&words).map(|n| format!("n{n}"), |w| format!("w{w}")).collect()
    });
    assert_eq!(sorted(out), vec!["n1", "n2", "wx"]);
}

/// Sums input 1 and counts input 2, and reports both when both inputs ended.
#[derive(Clone, Default)]
struct SumAndCount {
    sum: u64,
    count: u64,
}

impl CoProcessFunction<u64, String, String> for SumAndCount {
    fn process_element1(
        &mut self,
        value: u64,
        _ctx: &Context,
        _out: &mut Collector<'_, String>,
    ) -> FunctionResult {
        self.sum += value;
        Ok(())
    }

    fn process_element2(
        &mut self,
        value: String,
        _ctx: &Context,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult {
        self.count += 1;
        out.collect(value);
        Ok(())
    }

    fn end_input(&mut self, out: &mut Collector<'_, String>) -> FunctionResult {
        out.collect(format!("sum={} count={}", self.sum, self.count));
        Ok(())
    }
}

#[test]
fn co_process_function_sees_both_inputs_and_ends_after_both() {
    let out = run(1, |env| {
        let numbers = env.from_sequence(5);
        let words = env.from_collection(vec!["p".to_string(), "q".to_string()]);
        numbers.connect(&words).process(SumAndCount::default()).collect()
    });
    assert_eq!(out.last().unwrap(), "sum=10 count=2");
    assert_eq!(sorted(out[..2].to_vec()), vec!["p", "q"]);
}

#[test]
fn one_stream_feeding_two_operators_gives_each_every_record() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let numbers = env.from_sequence(50);
    let doubled = numbers.map(|i| i * 2).collect();
    let negated = numbers.map(|i| -(i as i64)).collect();
    env.execute("fan-out").unwrap();
    assert_eq!(sorted(doubled.take()), (0..50).map(|i| i * 2).collect::<Vec<u64>>());
    assert_eq!(sorted(negated.take()), (-49..=0).collect::<Vec<i64>>());
}
