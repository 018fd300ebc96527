//! The built-in operators behind the DataStream API's transformations.

pub mod co_process;
pub mod interval_join;
pub mod keyed_process;
pub mod keyed_reduce;
pub mod process;
pub mod stateless;
pub mod timestamps_and_watermarks;

use sluice_core::{FunctionResult, Result, SluiceError, StreamRecord, Timestamp};

use crate::functions::Collector;
use crate::operator::Output;

/// Turns a user function's error into a Sluice error.
pub(crate) fn user_error(e: Box<dyn std::error::Error + Send + Sync>) -> SluiceError {
    SluiceError::UserFunction { cause: e }
}

/// Runs a process function's per-record hook over a batch and emits what it
/// collected; each result carries its input record's timestamp.
pub(crate) fn process_records<I, O: Send + 'static>(
    records: Vec<StreamRecord<I>>,
    out: &mut Output,
    mut f: impl FnMut(I, Timestamp, &mut Collector<'_, O>) -> FunctionResult,
) -> Result<()> {
    let mut result = Vec::with_capacity(records.len());
    for r in records {
        let mut collector = Collector::new(&mut result, r.timestamp);
        f(r.value, r.timestamp, &mut collector).map_err(user_error)?;
    }
    out.emit_records(result)
}

/// Runs a process function's end-of-input hook and emits what it collected.
pub(crate) fn emit_end_of_input<O: Send + 'static>(
    out: &mut Output,
    f: impl FnOnce(&mut Collector<'_, O>) -> FunctionResult,
) -> Result<()> {
    let mut result = Vec::new();
    f(&mut Collector::new(&mut result, Timestamp::NONE)).map_err(user_error)?;
    out.emit_records(result)
}
