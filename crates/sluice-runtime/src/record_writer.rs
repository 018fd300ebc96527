//! Record writers: the end of a chain where records leave the task. A writer
//! keeps one pending batch per channel and sends it when full or when the
//! buffer timeout passes; sending blocks while the channel is full, which is
//! how a slow consumer slows its producers (the bounded channel is the credit).

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use sluice_core::{Data, RecordBatch, Result, SluiceError, StreamElement, StreamRecord, Watermark};

use crate::metrics::TaskMetrics;
use crate::partitioner::{ChannelSelector, PartitionerKind, RoundRobin, Shuffle};
use std::sync::Arc;

/// Sends the records of one network edge out of one subtask.
pub trait RecordWriter: Send {
    /// Routes a batch's records to the channels.
    fn emit(&mut self, batch: RecordBatch) -> Result<()>;
    /// Sends pending records, then a watermark on every channel.
    fn broadcast_watermark(&mut self, watermark: Watermark) -> Result<()>;
    /// Sends partly filled batches whose first record is older than the buffer timeout.
    fn flush_if_due(&mut self, now: Instant) -> Result<()>;
    /// Sends pending records, then end of input on every channel.
    fn end_input(&mut self) -> Result<()>;
}

/// What a writer is built from.
pub struct WriterSetup {
    /// The channels of this subtask on the edge, in downstream subtask order.
    pub channels: Vec<Sender<StreamElement>>,
    /// Records per batch.
    pub batch_size: usize,
    /// Longest wait before a partial batch is sent.
    pub buffer_timeout: Duration,
    /// Index of the sending subtask (seeds round robin and shuffle).
    pub subtask_index: usize,
    /// Number of key groups.
    pub max_parallelism: usize,
    /// Counters of the sending task.
    pub metrics: Arc<TaskMetrics>,
    /// Names the edge in errors, e.g. "Map -> Reduce".
    pub edge_name: String,
}

/// Builds the writer of an edge for a partitioner that needs no key.
pub fn make_writer<T: Data>(kind: PartitionerKind, setup: WriterSetup) -> Box<dyn RecordWriter> {
    let start = setup.subtask_index;
    match kind {
        PartitionerKind::Forward | PartitionerKind::Rebalance | PartitionerKind::Rescale => {
            Box::new(RoutingWriter::<T, _>::new(setup, RoundRobin::new(start)))
        }
        PartitionerKind::Shuffle => Box::new(RoutingWriter::<T, _>::new(
            setup,
            Shuffle::new(start as u64),
        )),
        PartitionerKind::Broadcast => Box::new(BroadcastWriter::<T>::new(setup)),
        PartitionerKind::Hash => unreachable!("hash writers are built with their key selector"),
    }
}

/// Channels plus per-channel pending batches; shared by all writers.
struct Channels<T> {
    senders: Vec<Sender<StreamElement>>,
    pending: Vec<Vec<StreamRecord<T>>>,
    batch_size: usize,
    buffer_timeout: Duration,
    oldest: Option<Instant>,
    metrics: Arc<TaskMetrics>,
    edge_name: String,
}

impl<T: Send + 'static> Channels<T> {
    fn new(setup: WriterSetup) -> Self {
        let n = setup.channels.len();
        Self {
            pending: (0..n).map(|_| Vec::new()).collect(),
            senders: setup.channels,
            batch_size: setup.batch_size,
            buffer_timeout: setup.buffer_timeout,
            oldest: None,
            metrics: setup.metrics,
            edge_name: setup.edge_name,
        }
    }

    #[inline]
    fn push(&mut self, channel: usize, record: StreamRecord<T>) -> Result<()> {
        let buf = &mut self.pending[channel];
        if buf.capacity() == 0 {
            buf.reserve_exact(self.batch_size);
        }
        buf.push(record);
        if buf.len() >= self.batch_size {
            self.send_pending(channel)?;
        } else if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        Ok(())
    }

    fn send_pending(&mut self, channel: usize) -> Result<()> {
        let records = std::mem::take(&mut self.pending[channel]);
        if records.is_empty() {
            return Ok(());
        }
        self.metrics.add_records_out(records.len());
        self.send(channel, StreamElement::Records(RecordBatch::new(records)))
    }

    fn send(&self, channel: usize, element: StreamElement) -> Result<()> {
        self.senders[channel].send(element).map_err(|e| {
            SluiceError::Internal(format!(
                "edge {}: downstream subtask {} is gone (it failed or was cancelled) while sending {}",
                self.edge_name,
                channel,
                e.0.kind()
            ))
        })
    }

    fn flush(&mut self) -> Result<()> {
        for c in 0..self.senders.len() {
            self.send_pending(c)?;
        }
        self.oldest = None;
        Ok(())
    }

    fn flush_if_due(&mut self, now: Instant) -> Result<()> {
        match self.oldest {
            Some(t) if now.duration_since(t) >= self.buffer_timeout => self.flush(),
            _ => Ok(()),
        }
    }

    fn broadcast(&mut self, make: impl Fn() -> StreamElement) -> Result<()> {
        self.flush()?;
        for c in 0..self.senders.len() {
            self.send(c, make())?;
        }
        Ok(())
    }
}

/// Sends each record to the one channel its selector picks.
pub struct RoutingWriter<T, S> {
    channels: Channels<T>,
    selector: S,
}

impl<T: Data, S: ChannelSelector<T>> RoutingWriter<T, S> {
    /// A writer over `setup`'s channels routing with `selector`.
    pub fn new(setup: WriterSetup, selector: S) -> Self {
        Self {
            channels: Channels::new(setup),
            selector,
        }
    }
}

impl<T: Data, S: ChannelSelector<T>> RecordWriter for RoutingWriter<T, S> {
    fn emit(&mut self, batch: RecordBatch) -> Result<()> {
        let records = batch.into_records::<T>()?;
        let n = self.channels.senders.len();
        if n == 1 {
            // One channel (forward, or a pointwise edge): keep whole batches.
            let ch = &mut self.channels;
            if ch.pending[0].is_empty() && records.len() >= ch.batch_size {
                ch.metrics.add_records_out(records.len());
                return ch.send(0, StreamElement::Records(RecordBatch::new(records)));
            }
            for r in records {
                ch.push(0, r)?;
            }
            return Ok(());
        }
        for r in records {
            let c = self.selector.select(&r, n);
            self.channels.push(c, r)?;
        }
        Ok(())
    }

    fn broadcast_watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.channels
            .broadcast(|| StreamElement::Watermark(watermark))
    }

    fn flush_if_due(&mut self, now: Instant) -> Result<()> {
        self.channels.flush_if_due(now)
    }

    fn end_input(&mut self) -> Result<()> {
        self.channels.broadcast(|| StreamElement::EndOfInput)
    }
}

/// Sends every record to every channel.
pub struct BroadcastWriter<T> {
    channels: Channels<T>,
}

impl<T: Data> BroadcastWriter<T> {
    /// A broadcast writer over `setup`'s channels.
    pub fn new(setup: WriterSetup) -> Self {
        Self {
            channels: Channels::new(setup),
        }
    }
}

impl<T: Data> RecordWriter for BroadcastWriter<T> {
    fn emit(&mut self, batch: RecordBatch) -> Result<()> {
        let records = batch.into_records::<T>()?;
        let n = self.channels.senders.len();
        for r in records {
            for c in 1..n {
                self.channels.push(c, r.clone())?;
            }
            self.channels.push(0, r)?;
        }
        Ok(())
    }

    fn broadcast_watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.channels
            .broadcast(|| StreamElement::Watermark(watermark))
    }

    fn flush_if_due(&mut self, now: Instant) -> Result<()> {
        self.channels.flush_if_due(now)
    }

    fn end_input(&mut self) -> Result<()> {
        self.channels.broadcast(|| StreamElement::EndOfInput)
    }
}
