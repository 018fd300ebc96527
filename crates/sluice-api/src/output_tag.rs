//! OutputTag: names a side output and its record type.

use std::marker::PhantomData;

use sluice_runtime::decode_error::{DecodeFailure, DECODE_FAILURES};

/// A side output of records of type `T` (Flink's OutputTag).
#[derive(Debug)]
pub struct OutputTag<T> {
    id: String,
    _records: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        Self { id: self.id.clone(), _records: PhantomData }
    }
}

impl<T> OutputTag<T> {
    /// A side output named `id`.
    pub fn new(id: &str) -> Self {
        Self { id: id.to_string(), _records: PhantomData }
    }

    /// The side output's name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl OutputTag<DecodeFailure> {
    /// The side output where a source with
    /// [`DecodeErrorPolicy::SideOutput`](sluice_runtime::DecodeErrorPolicy::SideOutput)
    /// sends the records it cannot decode, with their location and raw bytes.
    pub fn decode_failures() -> Self {
        Self::new(DECODE_FAILURES)
    }
}
