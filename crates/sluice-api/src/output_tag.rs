//! OutputTag: names a side output and its record type.

use std::marker::PhantomData;

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
