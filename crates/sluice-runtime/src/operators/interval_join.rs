//! The interval join of two keyed streams: a record `a` of the first joins
//! every record `b` of the second with the same key and
//! `b.ts ∈ [a.ts + lower, a.ts + upper]`. Both sides are buffered per key
//! by timestamp; a buffered record is dropped once the watermark shows
//! that no future record of the other side can match it.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::marker::PhantomData;

use serde::Serialize;
use sluice_core::{
    Data, FunctionResult, Key, KeyHasher, RecordBatch, Result, StreamRecord, Timestamp, Watermark,
};
use sluice_state::{HeapValueState, InternalTimerService, TimeDomain};

use crate::functions::Collector;
use crate::operator::{Output, StreamOperator};
use crate::operators::user_error;
use crate::runtime_context::RuntimeContext;
use crate::snapshot::{OperatorSnapshot, PendingSnapshot};

/// Timestamps of a joined pair.
#[derive(Clone, Copy, Debug)]
pub struct IntervalJoinContext {
    /// Timestamp of the first stream's record.
    pub left_timestamp: i64,
    /// Timestamp of the second stream's record.
    pub right_timestamp: i64,
}

/// Processes one joined pair (Flink's ProcessJoinFunction).
pub trait ProcessJoinFunction<A, B, O>: Clone + Send + Sync + 'static {
    /// Emits results for `left` and `right`, which matched.
    fn process_element(
        &mut self,
        left: &A,
        right: &B,
        ctx: &IntervalJoinContext,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult;
}

impl<A, B, O, F> ProcessJoinFunction<A, B, O> for F
where
    F: FnMut(&A, &B, &IntervalJoinContext, &mut Collector<'_, O>) -> FunctionResult
        + Clone
        + Send
        + Sync
        + 'static,
{
    fn process_element(
        &mut self,
        left: &A,
        right: &B,
        ctx: &IntervalJoinContext,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult {
        self(left, right, ctx, out)
    }
}

type Buffer<K, V> = HeapValueState<K, BTreeMap<i64, Vec<V>>>;

/// What both inputs share when a batch arrives.
struct Side<'a> {
    hasher: &'a mut KeyHasher,
    max_parallelism: usize,
    watermark: i64,
    late: u64,
}

impl Side<'_> {
    /// Joins each record with the other side's buffered records whose time
    /// is within `offsets` of its own, then buffers it until the watermark
    /// passes its time + `expires_after`.
    #[allow(clippy::too_many_arguments)]
    fn join<K, V, W, O>(
        &mut self,
        records: Vec<StreamRecord<V>>,
        key_of: &impl Fn(&V) -> K,
        own: &mut Buffer<K, V>,
        other: &Buffer<K, W>,
        (from, to): (i64, i64),
        expires_after: i64,
        cleanup: &mut InternalTimerService<K>,
        mut call: impl FnMut(&V, i64, &W, i64, &mut Collector<'_, O>) -> FunctionResult,
        results: &mut Vec<StreamRecord<O>>,
    ) -> Result<()>
    where
        K: Serialize + Eq + Hash + Clone,
        V: Clone,
        W: Clone,
    {
        for StreamRecord { timestamp, value } in records {
            let ts = timestamp.0;
            if ts < self.watermark {
                self.late += 1;
                continue;
            }
            let key = key_of(&value);
            let group = self.hasher.key_group(&key, self.max_parallelism);
            if let Some(candidates) = other.get(group, &key) {
                for (&t, matches) in
                    candidates.range(ts.saturating_add(from)..=ts.saturating_add(to))
                {
                    let mut c = Collector::new(results, Timestamp(ts.max(t)));
                    for m in matches {
                        call(&value, ts, m, t, &mut c).map_err(user_error)?;
                    }
                }
            }
            cleanup.register(
                TimeDomain::EventTime,
                ts.saturating_add(expires_after),
                key.clone(),
                group,
            );
            buffer(own, &key, group, ts, value);
        }
        Ok(())
    }
}

/// The two-input operator behind `interval_join`.
pub struct IntervalJoinOperator<K, A, B, O, KA, KB, F> {
    left_key: KA,
    right_key: KB,
    function: F,
    lower: i64,
    upper: i64,
    hasher: KeyHasher,
    max_parallelism: usize,
    watermark: i64,
    left: Option<Buffer<K, A>>,
    right: Option<Buffer<K, B>>,
    cleanup: InternalTimerService<K>,
    late_dropped: u64,
    _out: PhantomData<fn() -> O>,
}

impl<K, A, B, O, KA, KB, F> IntervalJoinOperator<K, A, B, O, KA, KB, F>
where
    K: Key,
    A: Data,
    B: Data,
    O: Data,
    KA: Fn(&A) -> K + Send,
    KB: Fn(&B) -> K + Send,
    F: ProcessJoinFunction<A, B, O>,
{
    /// Joins `b` to `a` when `b.ts - a.ts ∈ [lower, upper]` (ms).
    pub fn new(left_key: KA, right_key: KB, lower: i64, upper: i64, function: F) -> Self {
        Self {
            left_key,
            right_key,
            function,
            lower,
            upper,
            hasher: KeyHasher::new(),
            max_parallelism: 0,
            watermark: i64::MIN,
            left: None,
            right: None,
            cleanup: InternalTimerService::new(),
            late_dropped: 0,
            _out: PhantomData,
        }
    }

    /// Records dropped because they were behind the watermark.
    pub fn late_records_dropped(&self) -> u64 {
        self.late_dropped
    }

    /// Records buffered on each side.
    pub fn buffered(&self) -> (usize, usize) {
        fn count<K: Eq + Hash + Clone, V: Clone>(b: &Option<Buffer<K, V>>) -> usize {
            b.as_ref()
                .map_or(0, |b| b.iter().map(|(_, m)| m.values().map(Vec::len).sum::<usize>()).sum())
        }
        (count(&self.left), count(&self.right))
    }
}

fn buffer<K: Eq + Hash + Clone, V: Clone>(
    buf: &mut Buffer<K, V>,
    key: &K,
    group: usize,
    ts: i64,
    value: V,
) {
    match buf.get_mut(group, key) {
        Some(m) => m.entry(ts).or_default().push(value),
        None => {
            buf.put(group, key.clone(), BTreeMap::from([(ts, vec![value])]));
        }
    }
}

impl<K, A, B, O, KA, KB, F> StreamOperator for IntervalJoinOperator<K, A, B, O, KA, KB, F>
where
    K: Key,
    A: Data,
    B: Data,
    O: Data,
    KA: Fn(&A) -> K + Send,
    KB: Fn(&B) -> K + Send,
    F: ProcessJoinFunction<A, B, O>,
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        self.left = Some(HeapValueState::new(ctx.key_group_range()));
        self.right = Some(HeapValueState::new(ctx.key_group_range()));
        Ok(())
    }

    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mut results = Vec::new();
        let (lower, upper, watermark) = (self.lower, self.upper, self.watermark);
        let left = self.left.as_mut().expect("opened");
        let right = self.right.as_mut().expect("opened");
        let f = &mut self.function;
        let mut side = Side {
            hasher: &mut self.hasher,
            max_parallelism: self.max_parallelism,
            watermark,
            late: 0,
        };
        if input == 0 {
            // a matches b when b.ts ∈ [a.ts + lower, a.ts + upper]; a is useless once the watermark passes a.ts + upper.
            side.join(
                batch.into_records::<A>()?,
                &self.left_key,
                left,
                right,
                (lower, upper),
                upper,
                &mut self.cleanup,
                |a, ta, b, tb, c| {
                    f.process_element(
                        a,
                        b,
                        &IntervalJoinContext { left_timestamp: ta, right_timestamp: tb },
                        c,
                    )
                },
                &mut results,
            )?;
        } else {
            // b matches a when a.ts ∈ [b.ts - upper, b.ts - lower]; b is useless once the watermark passes b.ts - lower.
            side.join(
                batch.into_records::<B>()?,
                &self.right_key,
                right,
                left,
                (-upper, -lower),
                -lower,
                &mut self.cleanup,
                |b, tb, a, ta, c| {
                    f.process_element(
                        a,
                        b,
                        &IntervalJoinContext { left_timestamp: ta, right_timestamp: tb },
                        c,
                    )
                },
                &mut results,
            )?;
        }
        self.late_dropped += side.late;
        out.emit_records(results)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<PendingSnapshot> {
        let (left, right) =
            (self.left.as_mut().expect("opened"), self.right.as_mut().expect("opened"));
        Ok(OperatorSnapshot::deferred_keyed(&mut [left, right, &mut self.cleanup]))
    }

    fn restore_state(&mut self, state: OperatorSnapshot) -> Result<()> {
        let (left, right) =
            (self.left.as_mut().expect("opened"), self.right.as_mut().expect("opened"));
        state.restore_keyed(&mut [left, right, &mut self.cleanup])
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.watermark = watermark.0;
        let (lower, upper, wm) = (self.lower, self.upper, watermark.0);
        let left = self.left.as_mut().expect("opened");
        let right = self.right.as_mut().expect("opened");
        while let Some((_, key, group)) = self.cleanup.pop_due(TimeDomain::EventTime, wm) {
            // No future right record (ts >= wm) can reach a left record with ts + upper < wm.
            if let Some(m) = left.get_mut(group, &key) {
                m.retain(|ta, _| ta.saturating_add(upper) >= wm);
                if m.is_empty() {
                    left.remove(group, &key);
                }
            }
            if let Some(m) = right.get_mut(group, &key) {
                m.retain(|tb, _| tb.saturating_sub(lower) >= wm);
                if m.is_empty() {
                    right.remove(group, &key);
                }
            }
        }
        out.emit_watermark(watermark)
    }
}
