//! Record-at-a-time operators without state: map, filter, flat_map. Each
//! consumes its input batch and emits one output batch; the closure is
//! called directly (no dynamic dispatch per record).

use std::marker::PhantomData;

use sluice_core::{Data, RecordBatch, Result};

use crate::operator::{Output, StreamOperator};

/// Applies a function to every record.
pub struct MapOperator<I, O, F> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O, F> MapOperator<I, O, F> {
    /// A map with `f`.
    pub fn new(f: F) -> Self {
        Self { f, _types: PhantomData }
    }
}

impl<I: Data, O: Data, F: FnMut(I) -> O + Send> StreamOperator for MapOperator<I, O, F> {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let records = batch.into_records::<I>()?;
        let f = &mut self.f;
        let mapped = records.into_iter().map(|r| r.replace_with(&mut *f)).collect();
        out.emit_records::<O>(mapped)
    }
}

/// Keeps the records for which a predicate holds.
pub struct FilterOperator<T, F> {
    f: F,
    _types: PhantomData<fn(&T)>,
}

impl<T, F> FilterOperator<T, F> {
    /// A filter with predicate `f`.
    pub fn new(f: F) -> Self {
        Self { f, _types: PhantomData }
    }
}

impl<T: Data, F: FnMut(&T) -> bool + Send> StreamOperator for FilterOperator<T, F> {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mut records = batch.into_records::<T>()?;
        records.retain(|r| (self.f)(&r.value));
        out.emit_records(records)
    }
}

/// Replaces every record by zero or more records.
pub struct FlatMapOperator<I, O, F> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O, F> FlatMapOperator<I, O, F> {
    /// A flat map with `f`.
    pub fn new(f: F) -> Self {
        Self { f, _types: PhantomData }
    }
}

impl<I, O, F, It> StreamOperator for FlatMapOperator<I, O, F>
where
    I: Data,
    O: Data,
    F: FnMut(I) -> It + Send,
    It: IntoIterator<Item = O>,
{
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let records = batch.into_records::<I>()?;
        let mut result = Vec::with_capacity(records.len());
        for r in records {
            let ts = r.timestamp;
            result.extend(
                (self.f)(r.value)
                    .into_iter()
                    .map(|v| sluice_core::StreamRecord::with_timestamp(v, ts)),
            );
        }
        out.emit_records(result)
    }
}
