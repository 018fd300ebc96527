//! Record writers: the end of a chain where records leave the task. A writer
//! keeps one pending batch per channel and sends it when full or when the
//! buffer timeout passes; sending blocks while the channel is full, which is
//! how a slow consumer slows its producers (the bounded channel is the credit).

use std::time::{Duration, Instant};

use sluice_core::{
    CheckpointBarrier, Data, RecordBatch, Result, SluiceError, StreamElement, StreamRecord,
    Watermark,
};

use crate::channel::{ChannelSender, SendError};
use crate::metrics::TaskMetrics;
use crate::partitioner::{ChannelSelector, PartitionerKind, RoundRobin, Shuffle};
use std::sync::Arc;

/// Sends the records of one network edge out of one subtask.
pub trait RecordWriter: Send {
    /// Routes a batch's records to the channels.
    fn emit(&mut self, batch: RecordBatch) -> Result<()>;
    /// Sends pending records, then a watermark on every channel.
    fn broadcast_watermark(&mut self, watermark: Watermark) -> Result<()>;
    /// Sends pending records, then an idle status change on every channel.
    fn broadcast_idle_status(&mut self, idle: bool) -> Result<()>;
    /// Sends pending records, then a checkpoint barrier on every channel.
    fn broadcast_barrier(&mut self, barrier: CheckpointBarrier) -> Result<()>;
    /// Sends partly filled batches whose first record is older than the buffer timeout.
    fn flush_if_due(&mut self, now: Instant) -> Result<()>;
    /// Sends pending records, then end of input on every channel.
    fn end_input(&mut self) -> Result<()>;
}

/// What a writer is built from.
pub struct WriterSetup {
    /// The channels of this subtask on the edge, in downstream subtask order.
    pub channels: Vec<ChannelSender>,
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
            Box::new(ChannelWriter::<T, _>::new(setup, BySelector(RoundRobin::new(start))))
        }
        PartitionerKind::Shuffle => {
            Box::new(ChannelWriter::<T, _>::new(setup, BySelector(Shuffle::new(start as u64))))
        }
        PartitionerKind::Broadcast => Box::new(ChannelWriter::<T, _>::new(setup, Broadcast)),
        PartitionerKind::Hash => unreachable!("hash writers are built with their key selector"),
    }
}

/// The channels of one writer with one pending batch each.
pub struct ChannelBuffers<T> {
    senders: Vec<ChannelSender>,
    pending: Vec<Vec<StreamRecord<T>>>,
    batch_size: usize,
    buffer_timeout: Duration,
    oldest: Option<Instant>,
    metrics: Arc<TaskMetrics>,
    edge_name: String,
}

impl<T: Send + 'static> ChannelBuffers<T> {
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
        let waited = self.senders[channel].send(element).map_err(|e| match e {
            SendError::Disconnected(kind) => SluiceError::Internal(format!(
                "edge {}: downstream subtask {} is gone (it failed or was cancelled) while sending {kind}",
                self.edge_name, channel,
            )),
            SendError::Encode(e) => SluiceError::Internal(format!(
                "edge {}: a batch for downstream subtask {channel} cannot be encoded for the network: {e}",
                self.edge_name
            )),
        })?;
        if !waited.is_zero() {
            self.metrics.add_back_pressured(waited);
        }
        Ok(())
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

/// How a writer spreads a batch over its channels.
pub trait Routing<T>: Send {
    /// Appends every record to the pending batch of its channel(s).
    fn route(
        &mut self,
        records: Vec<StreamRecord<T>>,
        channels: &mut ChannelBuffers<T>,
    ) -> Result<()>;
}

/// Each record to the one channel a [`ChannelSelector`] picks; with a single
/// channel (forward, pointwise) whole batches pass through without re-bucketing.
#[derive(Debug)]
pub struct BySelector<S>(pub S);

impl<T: Send + 'static, S: ChannelSelector<T>> Routing<T> for BySelector<S> {
    fn route(
        &mut self,
        records: Vec<StreamRecord<T>>,
        channels: &mut ChannelBuffers<T>,
    ) -> Result<()> {
        let n = channels.senders.len();
        if n == 1 {
            if channels.pending[0].is_empty() && records.len() >= channels.batch_size {
                channels.metrics.add_records_out(records.len());
                return channels.send(0, StreamElement::Records(RecordBatch::new(records)));
            }
            for r in records {
                channels.push(0, r)?;
            }
            return Ok(());
        }
        for r in records {
            let c = self.0.select(&r, n);
            channels.push(c, r)?;
        }
        Ok(())
    }
}

/// Every record to every channel.
#[derive(Debug)]
pub struct Broadcast;

impl<T: Clone + Send + 'static> Routing<T> for Broadcast {
    fn route(
        &mut self,
        records: Vec<StreamRecord<T>>,
        channels: &mut ChannelBuffers<T>,
    ) -> Result<()> {
        let n = channels.senders.len();
        for r in records {
            for c in 1..n {
                channels.push(c, r.clone())?;
            }
            channels.push(0, r)?;
        }
        Ok(())
    }
}

/// The record writer of every partitioner: channel buffers plus a routing.
pub struct ChannelWriter<T, R> {
    channels: ChannelBuffers<T>,
    routing: R,
}

impl<T: Data, R: Routing<T>> ChannelWriter<T, R> {
    /// A writer over `setup`'s channels spreading records by `routing`.
    pub fn new(setup: WriterSetup, routing: R) -> Self {
        Self { channels: ChannelBuffers::new(setup), routing }
    }
}

impl<T: Data, R: Routing<T>> RecordWriter for ChannelWriter<T, R> {
    fn emit(&mut self, batch: RecordBatch) -> Result<()> {
        let records = batch.into_records::<T>()?;
        self.routing.route(records, &mut self.channels)
    }

    fn broadcast_watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.channels.broadcast(|| StreamElement::Watermark(watermark))
    }

    fn broadcast_idle_status(&mut self, idle: bool) -> Result<()> {
        self.channels.broadcast(|| StreamElement::IdleStatus(idle))
    }

    fn broadcast_barrier(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        self.channels.broadcast(|| StreamElement::Barrier(barrier))
    }

    fn flush_if_due(&mut self, now: Instant) -> Result<()> {
        self.channels.flush_if_due(now)
    }

    fn end_input(&mut self) -> Result<()> {
        self.channels.broadcast(|| StreamElement::EndOfInput)
    }
}
