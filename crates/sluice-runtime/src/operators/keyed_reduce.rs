//! Rolling reduce on a keyed stream: for each record, the key's accumulated
//! value becomes `reduce(accumulated, record)` and is emitted. The
//! accumulator lives in keyed state (per key group), not in the operator.

use std::marker::PhantomData;

use serde::Serialize;
use sluice_core::{Data, KeyHasher, RecordBatch, Result};
use sluice_state::HeapValueState;

use crate::operator::{Output, StreamOperator};
use crate::runtime_context::RuntimeContext;
use crate::snapshot::{OperatorSnapshot, PendingSnapshot};

/// The operator behind `KeyedStream::reduce` (and `sum`, `min`, `max`, ...).
pub struct KeyedReduceOperator<T, K, KS, F> {
    key_selector: KS,
    reduce: F,
    hasher: KeyHasher,
    max_parallelism: usize,
    state: Option<HeapValueState<K, T>>,
    _types: PhantomData<fn(T)>,
}

impl<T, K, KS, F> KeyedReduceOperator<T, K, KS, F> {
    /// A rolling reduce keyed by `key_selector`.
    pub fn new(key_selector: KS, reduce: F) -> Self {
        Self {
            key_selector,
            reduce,
            hasher: KeyHasher::new(),
            max_parallelism: 0,
            state: None,
            _types: PhantomData,
        }
    }
}

impl<T, K, KS, F> StreamOperator for KeyedReduceOperator<T, K, KS, F>
where
    T: Data,
    K: Serialize
        + serde::de::DeserializeOwned
        + Eq
        + std::hash::Hash
        + Clone
        + Send
        + Sync
        + 'static,
    KS: Fn(&T) -> K + Send,
    F: FnMut(T, T) -> T + Send,
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        self.state = Some(HeapValueState::new(ctx.key_group_range()));
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<PendingSnapshot> {
        Ok(OperatorSnapshot::deferred_keyed(&mut [self.state.as_mut().expect("opened")]))
    }

    fn restore_state(&mut self, state: OperatorSnapshot) -> Result<()> {
        state.restore_keyed(&mut [self.state.as_mut().expect("opened")])
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let records = batch.into_records::<T>()?;
        let state = self.state.as_mut().expect("open() creates the state");
        let mut result = Vec::with_capacity(records.len());
        for r in records {
            let key = (self.key_selector)(&r.value);
            let group = self.hasher.key_group(&key, self.max_parallelism);
            let reduce = &mut self.reduce;
            let acc = state.update(group, key, |prev| match prev {
                Some(acc) => reduce(acc, r.value),
                None => r.value,
            });
            result.push(sluice_core::StreamRecord::with_timestamp(acc.clone(), r.timestamp));
        }
        out.emit_records(result)
    }
}
