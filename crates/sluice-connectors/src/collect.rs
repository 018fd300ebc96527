//! Hands a job's results back to the program that ran it (for tests and examples).

use std::sync::{Arc, Mutex};

use sluice_core::{Data, Result, StreamRecord};
use sluice_runtime::{RuntimeContext, Sink, SinkWriter};

/// Collects every record into memory shared with a [`CollectHandle`].
#[derive(Debug)]
pub struct CollectSink<T> {
    results: Arc<Mutex<Vec<T>>>,
}

/// The caller's end of a [`CollectSink`].
#[derive(Clone, Debug)]
pub struct CollectHandle<T> {
    results: Arc<Mutex<Vec<T>>>,
}

impl<T> CollectSink<T> {
    /// A sink and the handle that reads what it collected.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (Self, CollectHandle<T>) {
        let results = Arc::new(Mutex::new(Vec::new()));
        (Self { results: results.clone() }, CollectHandle { results })
    }
}

impl<T> CollectHandle<T> {
    /// Takes everything collected so far (records of one subtask stay in their order).
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.results.lock().expect("collect sink lock"))
    }

    /// Number of records collected so far.
    pub fn len(&self) -> usize {
        self.results.lock().expect("collect sink lock").len()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Data> Sink<T> for CollectSink<T> {
    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(CollectWriter { results: self.results.clone() }))
    }
}

struct CollectWriter<T> {
    results: Arc<Mutex<Vec<T>>>,
}

impl<T: Send> SinkWriter<T> for CollectWriter<T> {
    fn write_batch(&mut self, records: Vec<StreamRecord<T>>) -> Result<()> {
        // One lock per batch, not per record.
        self.results
            .lock()
            .expect("collect sink lock")
            .extend(records.into_iter().map(|r| r.value));
        Ok(())
    }
}
