//! Every partitioner sends each record exactly where Flink's would.

use sluice::{Collector, Context, ProcessFunction, RuntimeContext, StreamExecutionEnvironment};
use sluice_core::key_group::{
    key_group_for_bytes, operator_index_for_key_group, DEFAULT_MAX_PARALLELISM,
};
use sluice_core::FunctionResult;

/// Tags each record with the subtask index it passed through.
#[derive(Clone, Default)]
struct TagSubtask {
    subtask: usize,
}

impl<T: sluice_core::Data> ProcessFunction<T, (T, usize)> for TagSubtask {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult {
        self.subtask = ctx.subtask_index;
        Ok(())
    }

    fn process_element(
        &mut self,
        value: T,
        _ctx: &Context,
        out: &mut Collector<'_, (T, usize)>,
    ) -> FunctionResult {
        out.collect((value, self.subtask));
        Ok(())
    }
}

impl<K, T: sluice_core::Data> sluice::KeyedProcessFunction<K, T, (T, usize)> for TagSubtask {
    fn open(&mut self, ctx: &mut sluice::KeyedOpenContext<'_, K>) -> FunctionResult {
        self.subtask = ctx.runtime.subtask_index;
        Ok(())
    }

    fn process_element(
        &mut self,
        value: T,
        _ctx: &mut sluice::KeyedContext<'_, K>,
        out: &mut Collector<'_, (T, usize)>,
    ) -> FunctionResult {
        out.collect((value, self.subtask));
        Ok(())
    }
}

type Routed = ((u64, usize), usize);

/// Runs `from_sequence(n)` tagged by upstream subtask (parallelism `up`),
/// through `partition`, into a tagging operator at parallelism `down`.
/// Returns ((value, upstream subtask), downstream subtask) for every record.
fn route(
    n: u64,
    up: usize,
    down: usize,
    partition: impl FnOnce(sluice::DataStream<(u64, usize)>) -> sluice::DataStream<(u64, usize)>,
) -> Vec<Routed> {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(up);
    let tagged = env.from_sequence(n).process(TagSubtask::default());
    let out = partition(tagged).process(TagSubtask::default()).set_parallelism(down).collect();
    env.execute("partitioning").unwrap();
    let mut v = out.take();
    v.sort();
    v
}

#[test]
fn forward_sends_subtask_i_to_subtask_i() {
    let out = route(300, 3, 3, |s| s.forward());
    assert_eq!(out.len(), 300);
    assert!(out.iter().all(|((_, up), down)| up == down));
}

#[test]
fn rebalance_sends_round_robin_to_every_downstream_subtask() {
    let out = route(30, 1, 3, |s| s.rebalance());
    // One upstream subtask; record i goes to (i + 1) mod 3.
    for ((value, _), down) in &out {
        assert_eq!(*down, ((*value + 1) % 3) as usize, "record {value}");
    }
    assert_eq!(out.len(), 30);
}

#[test]
fn rescale_sends_each_upstream_only_to_its_local_subset_round_robin() {
    let out = route(400, 2, 4, |s| s.rescale());
    assert_eq!(out.len(), 400);
    for ((_, up), down) in &out {
        let local = if *up == 0 { [0, 1] } else { [2, 3] };
        assert!(local.contains(down), "upstream {up} sent to {down}");
    }
    for target in 0..4 {
        assert_eq!(
            out.iter().filter(|(_, d)| *d == target).count(),
            100,
            "round robin fills subtask {target} evenly"
        );
    }
}

#[test]
fn shuffle_delivers_every_record_once_randomly_and_reproducibly() {
    let first = route(3000, 1, 3, |s| s.shuffle());
    let second = route(3000, 1, 3, |s| s.shuffle());
    assert_eq!(first, second, "the shuffle is seeded by the subtask, so a run can be replayed");
    assert_eq!(
        first.iter().map(|((v, _), _)| *v).collect::<Vec<_>>(),
        (0..3000).collect::<Vec<_>>()
    );
    for target in 0..3 {
        let n = first.iter().filter(|(_, d)| *d == target).count();
        assert!((800..1200).contains(&n), "subtask {target} got {n} of 3000");
    }
    let in_order = first.windows(2).filter(|w| (w[1].1 + 3 - w[0].1) % 3 == 1).count();
    assert!(in_order < 2000, "not round robin");
}

#[test]
fn broadcast_sends_every_record_to_every_downstream_subtask() {
    let out = route(50, 2, 3, |s| s.broadcast());
    assert_eq!(out.len(), 150);
    for v in 0..50 {
        let mut targets: Vec<usize> =
            out.iter().filter(|((x, _), _)| *x == v).map(|(_, d)| *d).collect();
        targets.sort();
        assert_eq!(targets, vec![0, 1, 2], "record {v}");
    }
}

#[test]
fn key_by_sends_each_key_to_the_subtask_owning_its_key_group() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let out = env
        .from_sequence(1000)
        .map(|i| format!("key-{}", i % 37))
        .key_by(|k: &String| k.clone())
        .process(TagSubtask::default())
        .set_parallelism(3)
        .collect();
    env.execute("key_by").unwrap();
    let out = out.take();
    assert_eq!(out.len(), 1000);
    for (key, subtask) in out {
        // Computed here from first principles: postcard bytes of a string are
        // its varint length and its UTF-8 bytes.
        let mut bytes = vec![key.len() as u8];
        bytes.extend_from_slice(key.as_bytes());
        let group = key_group_for_bytes(&bytes, DEFAULT_MAX_PARALLELISM);
        assert_eq!(
            subtask,
            operator_index_for_key_group(DEFAULT_MAX_PARALLELISM, 3, group),
            "key {key}"
        );
    }
}

#[test]
fn the_default_partitioner_is_forward_at_equal_and_rebalance_at_different_parallelism() {
    let same = route(90, 3, 3, |s| s);
    assert!(same.iter().all(|((_, up), down)| up == down));
    let different = route(90, 1, 3, |s| s);
    for target in 0..3 {
        assert_eq!(different.iter().filter(|(_, d)| *d == target).count(), 30);
    }
}
