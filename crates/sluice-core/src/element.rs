//! What flows through a channel: batches of records with control elements
//! (watermarks, checkpoint barriers, idle status, end of input) in order
//! between them. Control never travels on a side channel, so its position
//! relative to the records is never in doubt.

use std::any::{type_name, Any};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SluiceError};
use crate::time::{Timestamp, Watermark};

/// One record with its event timestamp ([`Timestamp::NONE`] if it has none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord<T> {
    /// Event time of the record.
    pub timestamp: Timestamp,
    /// The user value.
    pub value: T,
}

impl<T> StreamRecord<T> {
    /// A record without an event timestamp.
    pub fn new(value: T) -> Self {
        Self { timestamp: Timestamp::NONE, value }
    }

    /// A record with an event timestamp.
    pub fn with_timestamp(value: T, timestamp: Timestamp) -> Self {
        Self { timestamp, value }
    }

    /// The same timestamp on a new value: what every one-to-one operator emits.
    #[inline]
    pub fn replace<U>(&self, value: U) -> StreamRecord<U> {
        StreamRecord { timestamp: self.timestamp, value }
    }

    /// Applies `f` to the value, keeping the timestamp.
    #[inline]
    pub fn replace_with<U>(self, f: impl FnOnce(T) -> U) -> StreamRecord<U> {
        StreamRecord { timestamp: self.timestamp, value: f(self.value) }
    }
}

/// A batch of `StreamRecord<T>` whose `T` is known to the operators at both
/// ends but not to the task loop, the channels or the scheduler between them.
///
/// The type is checked once per batch (a downcast), never per record.
pub struct RecordBatch {
    records: Box<dyn Any + Send>,
    len: usize,
    type_name: &'static str,
}

impl RecordBatch {
    /// Wraps a vector of records.
    pub fn new<T: Send + 'static>(records: Vec<StreamRecord<T>>) -> Self {
        Self { len: records.len(), records: Box::new(records), type_name: type_name::<T>() }
    }

    /// Borrows the records mutably (to assign timestamps in place).
    pub fn records_mut<T: 'static>(&mut self) -> Result<&mut Vec<StreamRecord<T>>> {
        let type_name = self.type_name;
        self.records.downcast_mut::<Vec<StreamRecord<T>>>().ok_or_else(|| {
            SluiceError::Internal(format!(
                "record batch of type {type_name} where {} was expected",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Number of records in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Unwraps the records; fails if the batch holds another record type,
    /// which means the job graph connected operators of different types.
    pub fn into_records<T: 'static>(self) -> Result<Vec<StreamRecord<T>>> {
        match self.records.downcast::<Vec<StreamRecord<T>>>() {
            Ok(v) => Ok(*v),
            Err(_) => Err(SluiceError::Internal(format!(
                "record batch of type {} where {} was expected",
                self.type_name,
                type_name::<T>()
            ))),
        }
    }

    /// Borrows the records; fails on a type mismatch like [`Self::into_records`].
    pub fn records<T: 'static>(&self) -> Result<&Vec<StreamRecord<T>>> {
        self.records.downcast_ref::<Vec<StreamRecord<T>>>().ok_or_else(|| {
            SluiceError::Internal(format!(
                "record batch of type {} where {} was expected",
                self.type_name,
                type_name::<T>()
            ))
        })
    }

    /// Name of the record type, for messages.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordBatch<{}>[{}]", self.type_name, self.len)
    }
}

/// A checkpoint barrier: everything before it belongs to checkpoint `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBarrier {
    /// The checkpoint this barrier separates.
    pub id: u64,
    /// When the coordinator triggered it, ms since the epoch.
    pub timestamp: i64,
    /// A savepoint's barrier: always aligned, so the savepoint holds no in-flight data.
    pub savepoint: bool,
}

/// One element of a channel: records or control, in the order they were sent.
#[derive(Debug)]
pub enum StreamElement {
    /// A batch of records.
    Records(RecordBatch),
    /// Event-time progress of the sending subtask.
    Watermark(Watermark),
    /// A checkpoint barrier.
    Barrier(CheckpointBarrier),
    /// The sender became idle (`true`) or active again (`false`); idle
    /// channels are excluded from the watermark minimum.
    IdleStatus(bool),
    /// The sender will send nothing more on this channel.
    EndOfInput,
}

impl StreamElement {
    /// Short name of the element kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamElement::Records(_) => "records",
            StreamElement::Watermark(_) => "watermark",
            StreamElement::Barrier(_) => "barrier",
            StreamElement::IdleStatus(_) => "idle status",
            StreamElement::EndOfInput => "end of input",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_unwraps_to_the_type_it_was_made_of() {
        let batch = RecordBatch::new(vec![StreamRecord::new(1u32), StreamRecord::new(2)]);
        assert_eq!(batch.len(), 2);
        let records = batch.into_records::<u32>().unwrap();
        assert_eq!(records.iter().map(|r| r.value).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_batch_of_another_type_is_an_error_naming_both_types() {
        let batch = RecordBatch::new(vec![StreamRecord::new(1u32)]);
        let err = batch.into_records::<String>().unwrap_err().to_string();
        assert!(err.contains("u32") && err.contains("String"), "{err}");
    }
}
