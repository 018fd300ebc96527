//! In-memory channels between subtasks and the input gate that reads them.
//!
//! Credit-based flow control, as in Flink: a channel starts with
//! `capacity` credits; sending a batch of records takes one, and the
//! receiver returns it when it takes the batch. A sender without credit
//! waits, so memory is bounded whatever the speed difference between tasks.
//! Control elements (watermarks, barriers, end of input) need no credit, so
//! a barrier never waits behind a full channel and alignment cannot
//! deadlock. Each channel has a single sender, so the gate can tell
//! channels apart (watermark minimum, barrier alignment).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Select, Sender, TryRecvError};
use std::collections::VecDeque;

use sluice_checkpoint::{AlignerEvent, AlignmentMode, BarrierAligner};
use sluice_core::{CheckpointBarrier, RecordBatch, Result, SluiceError, StreamElement, Watermark};

use crate::network::credit::Credit;
use crate::network::frame::{ChannelId, Header, OutFrame};
use crate::watermark_valve::StatusWatermarkValve;

/// The sending end of a channel.
#[derive(Debug)]
pub struct ChannelSender {
    route: SenderRoute,
}

#[derive(Debug)]
enum SenderRoute {
    /// To a subtask in this process.
    Local { data: Sender<StreamElement>, credits: Receiver<()> },
    /// Over the data connection to another TaskManager: batches are encoded
    /// here, on the sending task's thread, and queued for the connection's writer.
    Remote {
        channel: ChannelId,
        credit: Arc<Credit>,
        out: Sender<OutFrame>,
        encode: fn(&RecordBatch) -> Result<Vec<u8>>,
    },
}

/// The receiving end of a channel.
#[derive(Debug)]
pub struct ChannelReceiver {
    data: Receiver<StreamElement>,
    credits: CreditReturn,
}

#[derive(Debug)]
enum CreditReturn {
    Local(Sender<()>),
    /// The receiver's count of announced credit goes up before the
    /// announcement is queued, so the sender can never use a credit the
    /// connection's reader does not yet know of.
    Remote {
        channel: ChannelId,
        credit: Arc<Credit>,
        out: Sender<OutFrame>,
    },
}

/// A new channel with `capacity` credits (batches of records in flight).
pub fn channel(capacity: usize) -> (ChannelSender, ChannelReceiver) {
    let (data_tx, data_rx) = unbounded();
    let (credit_tx, credit_rx) = bounded(capacity);
    for _ in 0..capacity {
        credit_tx.send(()).expect("room for the initial credits");
    }
    (
        ChannelSender { route: SenderRoute::Local { data: data_tx, credits: credit_rx } },
        ChannelReceiver { data: data_rx, credits: CreditReturn::Local(credit_tx) },
    )
}

/// The sending end of a remote channel (see [`crate::network`]).
pub(crate) fn remote_sender(
    channel: ChannelId,
    credit: Arc<Credit>,
    out: Sender<OutFrame>,
    encode: fn(&RecordBatch) -> Result<Vec<u8>>,
) -> ChannelSender {
    ChannelSender { route: SenderRoute::Remote { channel, credit, out, encode } }
}

/// The receiving end of a remote channel (see [`crate::network`]).
pub(crate) fn remote_receiver(
    data: Receiver<StreamElement>,
    channel: ChannelId,
    credit: Arc<Credit>,
    out: Sender<OutFrame>,
) -> ChannelReceiver {
    ChannelReceiver { data, credits: CreditReturn::Remote { channel, credit, out } }
}

/// Why an element could not be sent.
#[derive(Debug)]
pub enum SendError {
    /// The receiver (or the connection to it) is gone; names the element's kind.
    Disconnected(&'static str),
    /// The batch could not be encoded for the network.
    Encode(SluiceError),
}

impl ChannelSender {
    /// Sends an element; a batch of records first waits for a credit.
    /// Returns how long it waited (zero when a credit was there).
    pub fn send(&self, element: StreamElement) -> std::result::Result<Duration, SendError> {
        match &self.route {
            SenderRoute::Local { data, credits } => {
                let mut waited = Duration::ZERO;
                if matches!(element, StreamElement::Records(_)) {
                    match credits.try_recv() {
                        Ok(()) => {}
                        Err(TryRecvError::Empty) => {
                            let started = Instant::now();
                            if credits.recv().is_err() {
                                return Err(SendError::Disconnected(element.kind()));
                            }
                            waited = started.elapsed();
                        }
                        Err(TryRecvError::Disconnected) => {
                            return Err(SendError::Disconnected(element.kind()))
                        }
                    }
                }
                data.send(element).map_err(|e| SendError::Disconnected(e.0.kind()))?;
                Ok(waited)
            }
            SenderRoute::Remote { channel, credit, out, encode } => {
                let kind = element.kind();
                let gone = |_| SendError::Disconnected(kind);
                let c = *channel;
                let (waited, frame) = match element {
                    StreamElement::Records(batch) => {
                        let waited = credit.take().map_err(gone)?;
                        let payload = encode(&batch).map_err(SendError::Encode)?;
                        (waited, OutFrame::new(&Header::Records(c), payload))
                    }
                    control => {
                        let header = match control {
                            StreamElement::Watermark(w) => Header::Watermark(c, w),
                            StreamElement::Barrier(b) => Header::Barrier(c, b),
                            StreamElement::IdleStatus(idle) => Header::IdleStatus(c, idle),
                            StreamElement::EndOfInput => Header::EndOfInput(c),
                            StreamElement::Records(_) => unreachable!("records are matched above"),
                        };
                        (credit.wait_open().map_err(gone)?, OutFrame::new(&header, Vec::new()))
                    }
                };
                out.send(frame).map_err(|_| SendError::Disconnected(kind))?;
                Ok(waited)
            }
        }
    }
}

impl Drop for ChannelSender {
    fn drop(&mut self) {
        if let SenderRoute::Remote { channel, out, .. } = &self.route {
            let _ = out.send(OutFrame::new(&Header::Close(*channel), Vec::new()));
        }
    }
}

impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        // A sender waiting for credit learns that none will come.
        if let CreditReturn::Remote { channel, out, .. } = &self.credits {
            let _ = out.send(OutFrame::new(&Header::Close(*channel), Vec::new()));
        }
    }
}

impl ChannelReceiver {
    /// Returns the credit of a batch the task has taken.
    fn taken(&self, element: &StreamElement) {
        if !matches!(element, StreamElement::Records(_)) {
            return;
        }
        match &self.credits {
            // The sender may be gone already; then nobody needs the credit.
            CreditReturn::Local(credits) => {
                let _ = credits.try_send(());
            }
            CreditReturn::Remote { channel, credit, out } => {
                credit.grant(1);
                let _ = out.send(OutFrame::new(&Header::Credit(*channel, 1), Vec::new()));
            }
        }
    }

    /// Waits for an element (tests and tools; tasks read through the gate).
    pub fn recv(&self) -> Option<StreamElement> {
        let e = self.data.recv().ok()?;
        self.taken(&e);
        Some(e)
    }

    /// Elements received and not yet taken (Flink's input queue length).
    pub fn queued(&self) -> usize {
        self.data.len()
    }

    /// Waits at most `timeout` for an element (tests and tools).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<StreamElement> {
        let e = self.data.recv_timeout(timeout).ok()?;
        self.taken(&e);
        Some(e)
    }
}

/// Serializes and deserializes batches of a channel's record type.
#[derive(Clone, Copy, Debug)]
pub struct BatchCodec {
    /// Batch to bytes.
    pub encode: fn(&RecordBatch) -> Result<Vec<u8>>,
    /// Bytes to batch.
    pub decode: fn(&[u8]) -> Result<RecordBatch>,
}

/// One input channel of a task.
#[derive(Debug)]
pub struct InputChannel {
    /// The receiving end.
    pub receiver: ChannelReceiver,
    /// The logical input (0, or 1 for the second input of a two-input operator).
    pub input: usize,
    /// Names the upstream, for errors.
    pub description: String,
    /// For the in-flight data of unaligned checkpoints.
    pub codec: BatchCodec,
}

/// What the gate delivers to the task.
#[derive(Debug)]
pub enum GateEvent {
    /// Records on a logical input.
    Records {
        /// The logical input.
        input: usize,
        /// The records.
        batch: RecordBatch,
    },
    /// The combined watermark advanced.
    Watermark(Watermark),
    /// The combined idle status changed.
    IdleStatus(bool),
    /// The first barrier of a checkpoint arrived; alignment started.
    AlignmentStarted,
    /// Snapshot now and forward this barrier. `complete`: every channel
    /// delivered it, so the snapshot can be acknowledged at once; else
    /// (unaligned) in-flight data is still being recorded.
    Barrier {
        /// The barrier.
        barrier: CheckpointBarrier,
        /// Whether every channel delivered it.
        complete: bool,
    },
    /// Unaligned: every channel delivered barrier `id`; the data that was in
    /// flight ahead of it, as (logical input, encoded batch).
    InFlightComplete {
        /// The checkpoint.
        id: u64,
        /// Batches overtaken by the barrier.
        data: Vec<(u32, Vec<u8>)>,
    },
    /// The checkpoint was abandoned at this task (overtaken by a newer one).
    CheckpointAborted(u64),
    /// Every channel of a logical input ended.
    EndOfInput(usize),
    /// Every channel ended.
    Finished,
    /// Nothing arrived within the timeout.
    Timeout,
}

/// Reads all input channels of a task, combining their watermarks and aligning barriers.
#[derive(Debug)]
pub struct InputGate {
    channels: Vec<InputChannel>,
    ended: Vec<bool>,
    open_per_input: Vec<usize>,
    open: usize,
    next: usize,
    valve: StatusWatermarkValve,
    aligner: BarrierAligner,
    pending: VecDeque<GateEvent>,
    in_flight: Vec<(u32, Vec<u8>)>,
    alignment_timeout: Option<Duration>,
    alignment_started: Option<std::time::Instant>,
    idle: Duration,
}

impl InputGate {
    /// A gate over `channels`; `inputs` is the number of logical inputs;
    /// `alignment` how checkpoint barriers are aligned (exactly-once if `None`).
    pub fn new(
        channels: Vec<InputChannel>,
        inputs: usize,
        alignment: Option<AlignmentMode>,
    ) -> Self {
        Self::with_alignment_timeout(channels, inputs, alignment, None)
    }

    /// Like [`Self::new`]; an aligned checkpoint still aligning after
    /// `alignment_timeout` continues unaligned.
    pub fn with_alignment_timeout(
        channels: Vec<InputChannel>,
        inputs: usize,
        alignment: Option<AlignmentMode>,
        alignment_timeout: Option<Duration>,
    ) -> Self {
        let mut open_per_input = vec![0; inputs];
        for c in &channels {
            open_per_input[c.input] += 1;
        }
        Self {
            ended: vec![false; channels.len()],
            open: channels.len(),
            valve: StatusWatermarkValve::new(channels.len()),
            aligner: BarrierAligner::new(
                alignment.unwrap_or(AlignmentMode::Aligned),
                channels.len(),
            ),
            channels,
            open_per_input,
            next: 0,
            pending: VecDeque::new(),
            in_flight: Vec::new(),
            alignment_timeout,
            alignment_started: None,
            idle: Duration::ZERO,
        }
    }

    /// The time spent waiting for input since the last call.
    pub fn take_idle(&mut self) -> Duration {
        std::mem::take(&mut self.idle)
    }

    /// The codec of logical input `input`'s record type.
    pub fn codec(&self, input: usize) -> Option<BatchCodec> {
        self.channels.iter().find(|c| c.input == input).map(|c| c.codec)
    }

    /// Number of logical inputs that have no channel at all (already ended).
    pub fn inputs_without_channels(&self) -> Vec<usize> {
        (0..self.open_per_input.len()).filter(|&i| self.open_per_input[i] == 0).collect()
    }

    /// The next event, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<GateEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            if let (Some(limit), Some(started)) = (self.alignment_timeout, self.alignment_started) {
                if started.elapsed() >= limit {
                    self.alignment_started = None;
                    let events = self.aligner.on_alignment_timeout();
                    self.aligner_events(events);
                    continue;
                }
            }
            if self.open == 0 {
                return Ok(GateEvent::Finished);
            }
            let Some((index, element)) = self.receive(timeout)? else {
                return Ok(GateEvent::Timeout);
            };
            self.handle(index, element)?;
        }
    }

    fn readable(&self, i: usize) -> bool {
        !self.ended[i] && !self.aligner.is_blocked(i)
    }

    fn receive(&mut self, timeout: Duration) -> Result<Option<(usize, StreamElement)>> {
        // Fast path: take whatever is ready, round robin, so that no channel starves.
        let n = self.channels.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.readable(i) {
                continue;
            }
            match self.channels[i].receiver.data.try_recv() {
                Ok(e) => {
                    self.channels[i].receiver.taken(&e);
                    self.next = (i + 1) % n;
                    return Ok(Some((i, e)));
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(self.disconnected(i)),
            }
        }
        let mut select = Select::new();
        let mut indices = Vec::with_capacity(self.open);
        for (i, c) in self.channels.iter().enumerate() {
            if self.readable(i) {
                select.recv(&c.receiver.data);
                indices.push(i);
            }
        }
        let started = Instant::now();
        if indices.is_empty() {
            // Every open channel is blocked for alignment: that cannot last, but never spin.
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
            self.idle += started.elapsed();
            return Ok(None);
        }
        let selected = select.select_timeout(timeout);
        self.idle += started.elapsed();
        let Ok(op) = selected else { return Ok(None) };
        let i = indices[op.index()];
        match op.recv(&self.channels[i].receiver.data) {
            Ok(e) => {
                self.channels[i].receiver.taken(&e);
                Ok(Some((i, e)))
            }
            Err(_) => Err(self.disconnected(i)),
        }
    }

    fn disconnected(&self, i: usize) -> SluiceError {
        SluiceError::Internal(format!(
            "input channel from {} closed before end of input (the upstream subtask failed or was cancelled)",
            self.channels[i].description
        ))
    }

    fn aligner_events(&mut self, events: Vec<AlignerEvent>) {
        for e in events {
            match e {
                AlignerEvent::Snapshot(barrier) => {
                    let complete = self.aligner.pending_checkpoint() != Some(barrier.id);
                    if complete {
                        self.alignment_started = None;
                    }
                    self.pending.push_back(GateEvent::Barrier { barrier, complete })
                }
                AlignerEvent::Aborted(id) => {
                    self.in_flight.clear();
                    self.pending.push_back(GateEvent::CheckpointAborted(id))
                }
                AlignerEvent::InFlightComplete(id) => {
                    self.alignment_started = None;
                    let data = std::mem::take(&mut self.in_flight);
                    self.pending.push_back(GateEvent::InFlightComplete { id, data })
                }
            }
        }
    }

    fn handle(&mut self, i: usize, element: StreamElement) -> Result<()> {
        match element {
            StreamElement::Records(batch) => {
                if self.aligner.in_flight_checkpoint(i).is_some() {
                    // Overtaken by the barrier: part of the checkpoint, and processed as usual.
                    let bytes = (self.channels[i].codec.encode)(&batch)?;
                    self.in_flight.push((self.channels[i].input as u32, bytes));
                }
                self.pending.push_back(GateEvent::Records { input: self.channels[i].input, batch })
            }
            StreamElement::Watermark(w) => {
                if let Some(w) = self.valve.input_watermark(i, w) {
                    self.pending.push_back(GateEvent::Watermark(w));
                }
            }
            StreamElement::IdleStatus(idle) => {
                let w = self.valve.input_idle(i, idle);
                match (w, self.valve.idle_changed()) {
                    (Some(w), _) => self.pending.push_back(GateEvent::Watermark(w)),
                    (None, Some(idle)) => self.pending.push_back(GateEvent::IdleStatus(idle)),
                    (None, None) => {}
                }
            }
            StreamElement::Barrier(barrier) => {
                let starting = self.aligner.pending_checkpoint() != Some(barrier.id);
                let events = self.aligner.on_barrier(i, barrier);
                if starting && self.aligner.pending_checkpoint() == Some(barrier.id) {
                    self.alignment_started = Some(std::time::Instant::now());
                    self.pending.push_back(GateEvent::AlignmentStarted);
                }
                self.aligner_events(events);
            }
            StreamElement::EndOfInput => {
                self.ended[i] = true;
                self.open -= 1;
                let input = self.channels[i].input;
                self.open_per_input[input] -= 1;
                // The watermark an ended channel releases goes first.
                if let Some(w) = self.valve.input_ended(i) {
                    self.pending.push_back(GateEvent::Watermark(w));
                }
                let events = self.aligner.on_end_of_input(i);
                self.aligner_events(events);
                if self.open_per_input[input] == 0 {
                    self.pending.push_back(GateEvent::EndOfInput(input));
                }
            }
        }
        Ok(())
    }
}
