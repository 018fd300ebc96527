//! The Sink API: a sink creates one writer per subtask; the writer receives
//! batches and flushes at end of input.

use std::sync::Arc;

use sluice_checkpoint::CheckpointConfig;
use sluice_core::{Data, RecordBatch, Result, StreamRecord};

use crate::operator::{Output, StreamOperator};
use crate::runtime_context::RuntimeContext;

/// A sink for records of type `T`, shared by all its subtasks.
pub trait Sink<T: Data>: Send + Sync + 'static {
    /// Creates the writer of one subtask.
    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<T>>>;

    /// Checks the sink against the job's checkpointing before the job
    /// starts; the error says which setting to change.
    fn validate(&self, checkpointing: Option<&CheckpointConfig>) -> Result<()> {
        let _ = checkpointing;
        Ok(())
    }

    /// Merges what one subtask's writer accumulated (its
    /// [`SinkWriter::accumulator`]) into the job's result, where the job was
    /// submitted: after the job finished, once per subtask.
    fn merge_accumulator(&self, accumulated: &[u8]) -> Result<()> {
        let _ = accumulated;
        Ok(())
    }

    /// An operator of the sink's own for each subtask, for a sink that runs
    /// transactions (a [`TwoPhaseCommitSinkOperator`](crate::two_phase_commit::TwoPhaseCommitSinkOperator));
    /// `None` runs the writer of [`Self::create_writer`].
    fn create_operator(self: Arc<Self>) -> Option<Box<dyn StreamOperator>> {
        None
    }
}

/// Writes the records of one subtask.
pub trait SinkWriter<T>: Send {
    /// Writes a batch of records.
    fn write_batch(&mut self, records: Vec<StreamRecord<T>>) -> Result<()>;

    /// Makes everything written so far durable or visible; `end_of_input`
    /// says no record follows.
    fn flush(&mut self, _end_of_input: bool) -> Result<()> {
        Ok(())
    }

    /// Releases resources (also called after a failure).
    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// After the end of input: what this subtask accumulated for the job's
    /// result (Flink's accumulators), serialized. It travels with the
    /// subtask's end to where the job was submitted, also from another
    /// process, and reaches [`Sink::merge_accumulator`] there.
    fn accumulator(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

/// Runs a [`SinkWriter`] as the last operator of a chain.
pub struct SinkOperator<T: Data> {
    sink: Arc<dyn Sink<T>>,
    writer: Option<Box<dyn SinkWriter<T>>>,
    accumulator: Option<Vec<u8>>,
}

impl<T: Data> SinkOperator<T> {
    /// A sink operator for `sink`; the writer is created in `open`.
    pub fn new(sink: Arc<dyn Sink<T>>) -> Self {
        Self { sink, writer: None, accumulator: None }
    }

    fn writer(&mut self) -> &mut dyn SinkWriter<T> {
        self.writer.as_deref_mut().expect("sink writer used before open")
    }
}

impl<T: Data> StreamOperator for SinkOperator<T> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.writer = Some(self.sink.create_writer(ctx)?);
        Ok(())
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _out: &mut Output,
    ) -> Result<()> {
        let records = batch.into_records::<T>()?;
        self.writer().write_batch(records)
    }

    fn process_watermark(
        &mut self,
        _watermark: sluice_core::Watermark,
        _out: &mut Output,
    ) -> Result<()> {
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<crate::snapshot::PendingSnapshot> {
        // At least once: what came before the barrier is durable before the checkpoint is.
        self.writer().flush(false)?;
        Ok(crate::snapshot::PendingSnapshot::Ready(crate::snapshot::OperatorSnapshot::default()))
    }

    fn end_input(&mut self, _input: usize, _out: &mut Output) -> Result<()> {
        self.writer().flush(true)?;
        self.accumulator = self.writer().accumulator()?;
        Ok(())
    }

    fn take_accumulator(&mut self) -> Option<Vec<u8>> {
        // A cancelled subtask's input never ended: what it wrote until then.
        self.accumulator.take().or_else(|| self.writer.as_mut()?.accumulator().ok().flatten())
    }

    fn close(&mut self) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.close(),
            None => Ok(()),
        }
    }
}
