//! The Source API, as in Flink's FLIP-27: a source is split into splits (a
//! file, a partition, a range of a sequence); the split enumerator runs in the
//! JobManager and assigns splits to subtasks; each subtask's `SourceReader`
//! reads the splits it was given into batches.

use std::fmt::Debug;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_core::{Data, RecordBatch, Result, SluiceError, StreamRecord, Timestamp};

use crate::decode_error::{DecodeErrorPolicy, DecodeErrors, DecodeFailure, RecordLocation};
use crate::runtime_context::RuntimeContext;
use crate::split_enumerator::{
    EnumeratorAdapter, ErasedSplitEnumerator, SplitEnumerator, StaticSplitEnumerator,
};
use crate::watermark_strategy::SplitRuns;

/// Whether a source ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Boundedness {
    /// The source ends after a finite number of records.
    Bounded,
    /// The source runs until the job is cancelled.
    ContinuousUnbounded,
}

/// What a reader reports after a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputStatus {
    /// More records are available now: poll again at once.
    MoreAvailable,
    /// Nothing is available now; poll again after a short wait.
    NothingAvailable,
    /// Every split this reader has is finished. More may still be added
    /// ([`SourceReader::add_splits`]); the reader's task ends only when the
    /// enumerator has also said that no more splits will come.
    EndOfInput,
}

/// A unit of source work, sent from the enumerator to a reader.
pub trait SourceSplit: Serialize + DeserializeOwned + Clone + Debug + Send + 'static {
    /// A stable id, for logs and (later) checkpointed split state.
    fn split_id(&self) -> String;
}

/// A source of records of type `T`. One instance is shared by the
/// enumerator and every reader, so it holds configuration, not state.
///
/// A source whose splits are fixed when the job starts implements
/// [`Source::create_splits`]; one that discovers splits while it runs (or
/// hands them out on request) implements [`Source::create_enumerator`].
pub trait Source<T: Data>: Send + Sync + 'static {
    /// The split type.
    type Split: SourceSplit;

    /// Whether the source ends.
    fn boundedness(&self) -> Boundedness;

    /// The largest parallelism the source supports (a socket: 1).
    fn max_parallelism(&self) -> Option<usize> {
        None
    }

    /// The splits to read when running at `parallelism`, for the default
    /// enumerator (round robin, then no more splits); errors here (a missing
    /// file) fail the job before any task starts.
    fn create_splits(&self, parallelism: usize) -> Result<Vec<Self::Split>> {
        let _ = parallelism;
        Err(SluiceError::InvalidJob(
            "the source defines neither create_splits nor create_enumerator".into(),
        ))
    }

    /// The enumerator of a job starting afresh at `parallelism`.
    fn create_enumerator(
        &self,
        parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<Self::Split>>> {
        Ok(Box::new(StaticSplitEnumerator::new(self.create_splits(parallelism)?)))
    }

    /// The enumerator of a job restoring from a checkpoint, from the state
    /// its [`SplitEnumerator::snapshot_state`] wrote.
    fn restore_enumerator(
        &self,
        parallelism: usize,
        state: &[u8],
    ) -> Result<Box<dyn SplitEnumerator<Self::Split>>> {
        let _ = parallelism;
        Ok(Box::new(StaticSplitEnumerator::<Self::Split>::restore(state)?))
    }

    /// Creates the reader of one subtask; its splits arrive through
    /// [`SourceReader::add_splits`].
    fn create_reader(&self, ctx: &RuntimeContext) -> Result<Box<dyn SourceReader<T, Self::Split>>>;
}

/// Reads the splits of one subtask.
pub trait SourceReader<T, S>: Send {
    /// Adds splits to read, after those it has; may come at any time,
    /// also after the reader returned [`InputStatus::EndOfInput`].
    fn add_splits(&mut self, splits: Vec<S>) -> Result<()>;

    /// Fills `output` (until it is full, or nothing more is available now)
    /// and says what comes next. Must not block for long: a reader waiting on
    /// I/O returns [`InputStatus::NothingAvailable`] after a few milliseconds.
    fn poll_next(&mut self, output: &mut SourceOutput<T>) -> Result<InputStatus>;

    /// The splits this reader still has, at their current positions, for
    /// checkpoint `checkpoint_id`: what a restored reader must continue from.
    /// A source that cannot rewind (a socket) keeps this default and
    /// declines checkpoints.
    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<S>> {
        let _ = checkpoint_id;
        Err(SluiceError::InvalidJob(
            "this source cannot take part in checkpoints: it cannot rewind".into(),
        ))
    }

    /// Checkpoint `checkpoint_id` completed everywhere: the positions this
    /// reader snapshotted for it are durable (a Kafka reader commits them to
    /// its consumer group).
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let _ = checkpoint_id;
        Ok(())
    }

    /// The enumerator withdrew these splits (their partitions were deleted):
    /// stop reading them and leave them out of snapshots.
    fn remove_splits(&mut self, split_ids: &[String]) -> Result<()> {
        let _ = split_ids;
        Ok(())
    }

    /// How many records the reader is behind the end of its splits, if it
    /// knows (Kafka: the partitions' ends minus the positions).
    fn lag(&self) -> Option<u64> {
        None
    }

    /// Time spent blocked waiting for input inside [`Self::poll_next`] since
    /// the last call (a reader that waits in its client, as Kafka's does),
    /// counted as idle time rather than busy.
    fn take_idle(&mut self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Releases resources.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The batch a reader fills, and which split each run of records came from.
#[derive(Debug)]
pub struct SourceOutput<T> {
    records: Vec<StreamRecord<T>>,
    capacity: usize,
    splits: SplitRuns,
    current_split: u32,
    decode_errors: DecodeErrors,
}

impl<T> SourceOutput<T> {
    /// An empty output holding up to `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            records: Vec::with_capacity(capacity),
            capacity,
            splits: SplitRuns::default(),
            current_split: 0,
            decode_errors: DecodeErrors::new(),
        }
    }

    /// A record at `location` could not be decoded (`bytes` as read, `reason`
    /// why): applies the source's `policy` — an error to return under
    /// [`DecodeErrorPolicy::Fail`], else the record is counted and dropped
    /// or sent to the decode-failures side output. Call it after the
    /// reader's position moved past the record.
    pub fn decode_error(
        &mut self,
        policy: DecodeErrorPolicy,
        location: RecordLocation,
        reason: String,
        bytes: &[u8],
    ) -> Result<()> {
        self.decode_errors.on_failure(policy, location, reason, bytes)
    }

    /// The records collected from now on come from split `split` (a number
    /// the reader chooses, stable for the split). Watermarks are generated
    /// per split when the source has a watermark strategy.
    pub fn set_split(&mut self, split: u32) {
        if split != self.current_split || self.splits.runs.is_empty() {
            self.current_split = split;
            if self.splits.runs.last().is_some_and(|(start, _)| *start == self.records.len()) {
                self.splits.runs.pop();
            }
            self.splits.runs.push((self.records.len(), split));
        }
    }

    /// Split `split` is exhausted: it no longer holds the watermark back.
    pub fn finish_split(&mut self, split: u32) {
        self.splits.finished.push(split);
    }

    /// Split `split` was assigned and is read alongside others: it holds
    /// the watermark back before its first record (a Kafka partition).
    pub fn register_split(&mut self, split: u32) {
        self.splits.registered.push(split);
    }

    /// Adds a record without event time.
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.records.push(StreamRecord::new(value));
    }

    /// Adds a record with its event timestamp.
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, timestamp: Timestamp) {
        self.records.push(StreamRecord::with_timestamp(value, timestamp));
    }

    /// How many more records fit in this batch.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.capacity.saturating_sub(self.records.len())
    }

    /// Whether the batch is full.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.records.len() >= self.capacity
    }

    /// The record collected last.
    pub fn last(&self) -> Option<&StreamRecord<T>> {
        self.records.last()
    }

    /// Number of records collected.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Takes the collected records and their split runs, leaving a fresh
    /// batch that continues the current split.
    pub fn take(&mut self) -> (Vec<StreamRecord<T>>, SplitRuns) {
        let mut splits = std::mem::take(&mut self.splits);
        if splits.runs.first().is_none_or(|(start, _)| *start > 0) {
            splits.runs.insert(0, (0, self.current_split));
        }
        self.splits.runs.push((0, self.current_split));
        (std::mem::replace(&mut self.records, Vec::with_capacity(self.capacity)), splits)
    }
}

/// A split in transit from the enumerator to a reader: postcard bytes, so it
/// can cross processes and go into checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SerializedSplit {
    /// The split's id.
    pub id: String,
    /// The split, postcard-encoded.
    pub bytes: Vec<u8>,
}

impl SerializedSplit {
    /// Encodes `split`.
    pub fn of<S: SourceSplit>(split: &S) -> Result<Self> {
        Ok(Self { id: split.split_id(), bytes: postcard::to_stdvec(split)? })
    }

    /// Decodes the split.
    pub fn decode<S: SourceSplit>(&self) -> Result<S> {
        Ok(postcard::from_bytes(&self.bytes)?)
    }
}

/// A source with its record and split types erased, as the StreamGraph holds it.
pub trait ErasedSource: Send + Sync {
    /// Whether the source ends.
    fn boundedness(&self) -> Boundedness;
    /// The largest parallelism the source supports.
    fn max_parallelism(&self) -> Option<usize>;
    /// The enumerator for `parallelism` readers: fresh, or from its checkpointed `state`.
    fn create_enumerator(
        &self,
        parallelism: usize,
        state: Option<&[u8]>,
    ) -> Result<Box<dyn ErasedSplitEnumerator>>;
    /// Creates one subtask's reader, without splits yet.
    fn create_reader(&self, ctx: &RuntimeContext) -> Result<Box<dyn ErasedSourceReader>>;
}

/// A reader with its record type erased: it yields whole batches.
pub trait ErasedSourceReader: Send {
    /// Adds splits the enumerator assigned.
    fn add_splits(&mut self, splits: Vec<SerializedSplit>) -> Result<()>;
    /// The enumerator will assign no more splits: the reader ends after those it has.
    fn no_more_splits(&mut self);
    /// Polls one batch (possibly empty), which split its records came from,
    /// and the status after it. [`InputStatus::EndOfInput`] only once no
    /// more splits will come and every split is finished; a reader that ran
    /// out of splits before reports [`InputStatus::NothingAvailable`] and
    /// asks for more ([`Self::take_split_request`]).
    fn poll_batch(&mut self) -> Result<(RecordBatch, SplitRuns, InputStatus)>;
    /// Whether the reader ran out of splits and has not asked for more yet:
    /// the ids of the splits it finished since it last asked.
    fn take_split_request(&mut self) -> Option<Vec<String>>;
    /// Whether the reader has no split to read and waits for an assignment.
    fn is_waiting_for_splits(&self) -> bool;
    /// Records that failed to decode since the last call and were dropped or
    /// sent to the side output, and the side output's batch of them (if any).
    fn take_decode_failures(&mut self) -> (usize, Option<RecordBatch>);
    /// The reader's splits at their current positions, for checkpoint `checkpoint_id`.
    fn snapshot_splits(&mut self, checkpoint_id: u64) -> Result<Vec<SerializedSplit>>;
    /// See [`SourceReader::notify_checkpoint_complete`].
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()>;
    /// See [`SourceReader::remove_splits`].
    fn remove_splits(&mut self, split_ids: &[String]) -> Result<()>;
    /// See [`SourceReader::lag`].
    fn lag(&self) -> Option<u64>;
    /// See [`SourceReader::take_idle`].
    fn take_idle(&mut self) -> std::time::Duration;
    /// Releases resources.
    fn close(&mut self) -> Result<()>;
}

/// Erases the types of a [`Source`].
pub struct SourceAdapter<T, S> {
    source: S,
    _records: PhantomData<fn() -> T>,
}

impl<T, S> SourceAdapter<T, S> {
    /// Wraps `source`.
    pub fn new(source: S) -> Self {
        Self { source, _records: PhantomData }
    }
}

impl<T: Data, S: Source<T>> ErasedSource for SourceAdapter<T, S> {
    fn boundedness(&self) -> Boundedness {
        self.source.boundedness()
    }

    fn max_parallelism(&self) -> Option<usize> {
        self.source.max_parallelism()
    }

    fn create_enumerator(
        &self,
        parallelism: usize,
        state: Option<&[u8]>,
    ) -> Result<Box<dyn ErasedSplitEnumerator>> {
        let enumerator = match state {
            None => self.source.create_enumerator(parallelism)?,
            Some(state) => self.source.restore_enumerator(parallelism, state)?,
        };
        Ok(Box::new(EnumeratorAdapter::new(enumerator, parallelism)))
    }

    fn create_reader(&self, ctx: &RuntimeContext) -> Result<Box<dyn ErasedSourceReader>> {
        Ok(Box::new(ErasedReader {
            reader: self.source.create_reader(ctx)?,
            output: SourceOutput::new(ctx.batch_size),
            has_splits: false,
            no_more_splits: false,
            asked: false,
            since_asked: Vec::new(),
        }))
    }
}

/// A typed reader behind [`ErasedSourceReader`], with the split protocol:
/// which splits it was given, whether it asked for more, whether more come.
struct ErasedReader<T, S> {
    reader: Box<dyn SourceReader<T, S>>,
    output: SourceOutput<T>,
    /// Whether the reader may still hold an unfinished split.
    has_splits: bool,
    no_more_splits: bool,
    /// Asked for splits since it last got any.
    asked: bool,
    /// Ids of the splits given since the reader last asked.
    since_asked: Vec<String>,
}

impl<T: Data, S: SourceSplit> ErasedSourceReader for ErasedReader<T, S> {
    fn add_splits(&mut self, splits: Vec<SerializedSplit>) -> Result<()> {
        if splits.is_empty() {
            return Ok(());
        }
        self.since_asked.extend(splits.iter().map(|s| s.id.clone()));
        let splits = splits.iter().map(SerializedSplit::decode).collect::<Result<Vec<S>>>()?;
        self.has_splits = true;
        self.asked = false;
        self.reader.add_splits(splits)
    }

    fn no_more_splits(&mut self) {
        self.no_more_splits = true;
    }

    fn poll_batch(&mut self) -> Result<(RecordBatch, SplitRuns, InputStatus)> {
        let mut status = if self.has_splits {
            self.reader.poll_next(&mut self.output)?
        } else {
            InputStatus::EndOfInput
        };
        if status == InputStatus::EndOfInput {
            self.has_splits = false;
            if !self.no_more_splits {
                status = InputStatus::NothingAvailable;
            }
        }
        let (records, splits) = self.output.take();
        Ok((RecordBatch::new(records), splits, status))
    }

    fn take_split_request(&mut self) -> Option<Vec<String>> {
        if self.has_splits || self.no_more_splits || self.asked {
            return None;
        }
        self.asked = true;
        Some(std::mem::take(&mut self.since_asked))
    }

    fn is_waiting_for_splits(&self) -> bool {
        !self.has_splits && !self.no_more_splits
    }

    fn take_decode_failures(&mut self) -> (usize, Option<RecordBatch>) {
        let (count, side) = self.output.decode_errors.take();
        let side: Vec<StreamRecord<DecodeFailure>> = side;
        (count, (!side.is_empty()).then(|| RecordBatch::new(side)))
    }

    fn snapshot_splits(&mut self, checkpoint_id: u64) -> Result<Vec<SerializedSplit>> {
        self.reader.snapshot_state(checkpoint_id)?.iter().map(SerializedSplit::of).collect()
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.reader.notify_checkpoint_complete(checkpoint_id)
    }

    fn remove_splits(&mut self, split_ids: &[String]) -> Result<()> {
        self.reader.remove_splits(split_ids)
    }

    fn lag(&self) -> Option<u64> {
        self.reader.lag()
    }

    fn take_idle(&mut self) -> std::time::Duration {
        self.reader.take_idle()
    }

    fn close(&mut self) -> Result<()> {
        self.output.decode_errors.finish();
        self.reader.close()
    }
}
