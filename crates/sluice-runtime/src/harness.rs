//! A test harness for one operator, as Flink's operator test harnesses:
//! feed records and watermarks, move a manual processing-time clock, and
//! read what the operator emitted, its main output and side outputs apart.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_core::{
    Data, KeyGroupRange, ManualClock, RecordBatch, Result, StreamRecord, Timestamp, Watermark,
};

use crate::operator::{clone_batch, KeyGroupsState, Output, OutputTarget, StreamOperator, Targets};
use crate::record_writer::RecordWriter;
use crate::runtime_context::RuntimeContext;
use crate::snapshot::OperatorSnapshot;

/// What an operator emitted, in order.
#[derive(Debug)]
pub enum Emitted {
    /// Records.
    Records(RecordBatch),
    /// A watermark.
    Watermark(Watermark),
    /// An idle status change.
    IdleStatus(bool),
}

type Sink = Arc<Mutex<Vec<Emitted>>>;

/// A record writer that keeps everything in memory.
struct Collecting(Sink);

impl RecordWriter for Collecting {
    fn emit(&mut self, batch: RecordBatch) -> Result<()> {
        self.0.lock().expect("harness lock").push(Emitted::Records(batch));
        Ok(())
    }
    fn broadcast_watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.0.lock().expect("harness lock").push(Emitted::Watermark(watermark));
        Ok(())
    }
    fn broadcast_idle_status(&mut self, idle: bool) -> Result<()> {
        self.0.lock().expect("harness lock").push(Emitted::IdleStatus(idle));
        Ok(())
    }
    fn broadcast_barrier(&mut self, _barrier: sluice_core::CheckpointBarrier) -> Result<()> {
        Ok(())
    }
    fn flush_if_due(&mut self, _now: Instant) -> Result<()> {
        Ok(())
    }
    fn end_input(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Drives one operator `Op` whose main output has records of type `Out`.
pub struct OperatorHarness<Op, Out> {
    operator: Op,
    output: Output,
    main: Sink,
    side: Vec<(String, Sink)>,
    clock: ManualClock,
    context: RuntimeContext,
    _out: std::marker::PhantomData<fn() -> Out>,
}

impl<Op: StreamOperator, Out: Data> OperatorHarness<Op, Out> {
    /// A harness for subtask 0 of 1, processing time at 0.
    pub fn new(operator: Op) -> Self {
        Self::for_subtask(operator, 0, 1)
    }

    /// A harness for subtask `index` of `parallelism` (128 key groups).
    pub fn for_subtask(operator: Op, index: usize, parallelism: usize) -> Self {
        let clock = ManualClock::new(0);
        let mut context = RuntimeContext::for_test(index, parallelism);
        context.clock = Arc::new(clock.clone());
        let main: Sink = Arc::default();
        let output = Output::new(
            vec![OutputTarget::Network(Box::new(Collecting(main.clone())))],
            clone_batch::<Out>,
        );
        Self {
            operator,
            output,
            main,
            side: Vec::new(),
            clock,
            context,
            _out: std::marker::PhantomData,
        }
    }

    /// Also collects side output `tag`, of records of type `T`.
    pub fn with_side_output<T: Data>(mut self, tag: &str) -> Self {
        let sink: Sink = Arc::default();
        let targets = Targets::new(
            vec![OutputTarget::Network(Box::new(Collecting(sink.clone())))],
            clone_batch::<T>,
        );
        self.output = self.output.with_side_output(tag.to_string(), targets);
        self.side.push((tag.to_string(), sink));
        self
    }

    /// Sets how often periodic watermark generators emit, in ms.
    pub fn with_auto_watermark_interval(mut self, millis: i64) -> Self {
        self.context.auto_watermark_interval = millis;
        self
    }

    /// Opens the operator.
    pub fn open(mut self) -> Result<Self> {
        self.operator.open(&self.context)?;
        Ok(self)
    }

    /// Processes records, each with its event timestamp, as one batch.
    pub fn process_elements<In: Data>(
        &mut self,
        records: impl IntoIterator<Item = (In, i64)>,
    ) -> Result<()> {
        self.process_elements_on(0, records)
    }

    /// Processes records of logical input `input` (for two-input operators).
    pub fn process_elements_on<In: Data>(
        &mut self,
        input: usize,
        records: impl IntoIterator<Item = (In, i64)>,
    ) -> Result<()> {
        let batch: Vec<_> = records
            .into_iter()
            .map(|(v, ts)| StreamRecord::with_timestamp(v, Timestamp(ts)))
            .collect();
        self.operator.process_batch(input, RecordBatch::new(batch), &mut self.output)
    }

    /// Processes a watermark.
    pub fn process_watermark(&mut self, watermark: i64) -> Result<()> {
        self.operator.process_watermark(Watermark(watermark), &mut self.output)
    }

    /// Moves processing time to `millis` and runs every callback that became due.
    pub fn set_processing_time(&mut self, millis: i64) -> Result<()> {
        self.clock.set(millis);
        while let Some(t) = self.operator.next_processing_time().filter(|t| *t <= millis) {
            self.operator.on_processing_time(millis, &mut self.output)?;
            if self.operator.next_processing_time() == Some(t) {
                break;
            }
        }
        Ok(())
    }

    /// Ends logical input `input`.
    pub fn end_input(&mut self, input: usize) -> Result<()> {
        self.operator.end_input(input, &mut self.output)
    }

    /// The operator, to inspect its state.
    pub fn operator(&mut self) -> &mut Op {
        &mut self.operator
    }

    /// Takes the records emitted on the main output so far, with their timestamps.
    pub fn take_output(&mut self) -> Vec<(Out, i64)> {
        take_records(&self.main)
    }

    /// Takes the records emitted on side output `tag` so far.
    pub fn take_side_output<T: Data>(&mut self, tag: &str) -> Vec<(T, i64)> {
        let sink = &self
            .side
            .iter()
            .find(|(t, _)| t == tag)
            .expect("side output registered with with_side_output")
            .1;
        take_records(sink)
    }

    /// Takes the watermarks emitted so far.
    pub fn take_watermarks(&mut self) -> Vec<i64> {
        let mut emitted = self.main.lock().expect("harness lock");
        let mut marks = Vec::new();
        emitted.retain(|e| match e {
            Emitted::Watermark(w) => {
                marks.push(w.0);
                false
            }
            _ => true,
        });
        marks
    }

    /// Takes everything emitted on the main output, in order.
    pub fn take_emitted(&mut self) -> Vec<Emitted> {
        std::mem::take(&mut *self.main.lock().expect("harness lock"))
    }

    /// Snapshots the operator's state, as a checkpoint would.
    pub fn snapshot(&mut self, checkpoint_id: u64) -> Result<OperatorSnapshot> {
        self.operator.snapshot_state(checkpoint_id)?.complete()
    }

    /// Restores state from snapshots of instances at any parallelism: this
    /// subtask takes its key groups and its share of the operator state.
    pub fn restore(&mut self, snapshots: &[OperatorSnapshot]) -> Result<()> {
        let state = OperatorSnapshot::redistribute(
            snapshots,
            self.context.key_group_range(),
            self.context.subtask_index,
            self.context.parallelism,
        );
        self.operator.restore_state(state)
    }

    /// Takes out the keyed state and timers of `range`.
    pub fn extract_key_groups(&mut self, range: KeyGroupRange) -> Result<KeyGroupsState> {
        self.operator
            .extract_key_groups(range)?
            .ok_or_else(|| sluice_core::SluiceError::Internal("operator has no keyed state".into()))
    }

    /// Puts in keyed state and timers from another instance.
    pub fn insert_key_groups(&mut self, state: KeyGroupsState) -> Result<()> {
        self.operator.insert_key_groups(state)
    }

    /// The key groups this harness's subtask owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.context.key_group_range()
    }
}

fn take_records<T: Data>(sink: &Sink) -> Vec<(T, i64)> {
    let mut emitted = sink.lock().expect("harness lock");
    let mut out = Vec::new();
    emitted.retain_mut(|e| match e {
        Emitted::Records(batch) => {
            let records = std::mem::replace(batch, RecordBatch::new::<T>(Vec::new()));
            out.extend(
                records
                    .into_records::<T>()
                    .expect("records of the output type")
                    .into_iter()
                    .map(|r| (r.value, r.timestamp.0)),
            );
            false
        }
        _ => true,
    });
    out
}
