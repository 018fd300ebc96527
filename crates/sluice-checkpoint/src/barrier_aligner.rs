//! Barrier handling at a task with several input channels (Flink's
//! CheckpointBarrierHandler), as a plain type.
//!
//! Invariants: a snapshot for checkpoint `n` is taken once, after every
//! record that precedes barrier `n` on every channel (aligned), or at the
//! first barrier with the records still ahead of the others recorded as
//! in-flight data (unaligned), or when the last barrier arrives without
//! blocking anything (at-least-once). A newer barrier abandons an older
//! checkpoint still aligning; an older barrier than one seen is ignored.

use sluice_core::CheckpointBarrier;

/// How barriers are aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignmentMode {
    /// Block each channel after its barrier until all arrived (exactly-once).
    Aligned,
    /// Snapshot at the first barrier; records overtaken are stored with the checkpoint.
    Unaligned,
    /// Never block; snapshot when the last barrier arrived (at-least-once).
    AtLeastOnce,
}

/// What the task must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlignerEvent {
    /// Snapshot the state now and forward the barrier downstream.
    Snapshot(CheckpointBarrier),
    /// Unaligned: every channel delivered barrier `id`; its in-flight data is complete.
    InFlightComplete(u64),
    /// The checkpoint was abandoned here (a newer barrier overtook it).
    Aborted(u64),
}

#[derive(Debug)]
struct Pending {
    barrier: CheckpointBarrier,
    received: Vec<bool>,
    snapshotted: bool,
}

/// Tracks barriers across the input channels of one task.
#[derive(Debug)]
pub struct BarrierAligner {
    mode: AlignmentMode,
    ended: Vec<bool>,
    pending: Option<Pending>,
    latest: Option<u64>,
}

impl BarrierAligner {
    /// An aligner over `channels` input channels.
    pub fn new(mode: AlignmentMode, channels: usize) -> Self {
        Self { mode, ended: vec![false; channels], pending: None, latest: None }
    }

    /// Whether the task must not read `channel` now (it delivered the
    /// barrier of a checkpoint that is still aligning).
    pub fn is_blocked(&self, channel: usize) -> bool {
        match &self.pending {
            Some(p) if self.aligns(&p.barrier) && !p.snapshotted => p.received[channel],
            _ => false,
        }
    }

    /// Whether this checkpoint's barriers are aligned (always for savepoints).
    fn aligns(&self, barrier: &CheckpointBarrier) -> bool {
        self.mode == AlignmentMode::Aligned
            || (barrier.savepoint && self.mode == AlignmentMode::Unaligned)
    }

    /// For unaligned checkpoints: the checkpoint that records read now from
    /// `channel` belong to as in-flight data (they precede its barrier).
    pub fn in_flight_checkpoint(&self, channel: usize) -> Option<u64> {
        match &self.pending {
            Some(p)
                if p.snapshotted
                    && !p.received[channel]
                    && self.mode != AlignmentMode::AtLeastOnce =>
            {
                Some(p.barrier.id)
            }
            _ => None,
        }
    }

    /// The checkpoint being aligned, if any.
    pub fn pending_checkpoint(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.barrier.id)
    }

    /// Barrier `barrier` arrived on `channel`.
    pub fn on_barrier(&mut self, channel: usize, barrier: CheckpointBarrier) -> Vec<AlignerEvent> {
        let mut events = Vec::new();
        if self.latest.is_some_and(|l| barrier.id < l) {
            return events;
        }
        if let Some(p) = &self.pending {
            if barrier.id > p.barrier.id {
                let old = self.pending.take().expect("checked");
                if !old.snapshotted {
                    events.push(AlignerEvent::Aborted(old.barrier.id));
                } else {
                    events.push(AlignerEvent::InFlightComplete(old.barrier.id));
                }
            }
        }
        if self.pending.is_none() {
            if self.latest == Some(barrier.id) {
                // This checkpoint completed or was abandoned here already.
                return events;
            }
            self.latest = Some(barrier.id);
            self.pending =
                Some(Pending { barrier, received: self.ended.clone(), snapshotted: false });
            if self.mode == AlignmentMode::Unaligned && !barrier.savepoint {
                self.pending.as_mut().expect("set").snapshotted = true;
                events.push(AlignerEvent::Snapshot(barrier));
            }
        }
        let p = self.pending.as_mut().expect("set");
        p.received[channel] = true;
        self.complete_if_all(&mut events);
        events
    }

    /// `channel` ended: it will deliver no barrier and holds nothing back.
    pub fn on_end_of_input(&mut self, channel: usize) -> Vec<AlignerEvent> {
        self.ended[channel] = true;
        let mut events = Vec::new();
        if let Some(p) = &mut self.pending {
            p.received[channel] = true;
            self.complete_if_all(&mut events);
        }
        events
    }

    /// Aligned checkpoints with an aligned-checkpoint timeout: alignment took
    /// too long, switch this checkpoint to unaligned.
    pub fn on_alignment_timeout(&mut self) -> Vec<AlignerEvent> {
        match &mut self.pending {
            Some(p)
                if self.mode == AlignmentMode::Aligned
                    && !p.snapshotted
                    && !p.barrier.savepoint =>
            {
                p.snapshotted = true;
                vec![AlignerEvent::Snapshot(p.barrier)]
            }
            _ => Vec::new(),
        }
    }

    fn complete_if_all(&mut self, events: &mut Vec<AlignerEvent>) {
        let Some(p) = &self.pending else { return };
        if !p.received.iter().all(|r| *r) {
            return;
        }
        let p = self.pending.take().expect("checked");
        if p.snapshotted {
            events.push(AlignerEvent::InFlightComplete(p.barrier.id));
        } else {
            events.push(AlignerEvent::Snapshot(p.barrier));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AlignerEvent::*;
    use super::*;

    fn b(id: u64) -> CheckpointBarrier {
        CheckpointBarrier { id, timestamp: 0, savepoint: false }
    }

    #[test]
    fn a_savepoint_barrier_is_aligned_even_when_checkpoints_are_unaligned() {
        let mut a = BarrierAligner::new(AlignmentMode::Unaligned, 2);
        let sp = CheckpointBarrier { id: 3, timestamp: 0, savepoint: true };
        assert!(a.on_barrier(0, sp).is_empty());
        assert!(a.is_blocked(0));
        assert_eq!(a.in_flight_checkpoint(1), None);
        assert_eq!(a.on_barrier(1, sp), vec![Snapshot(sp)]);
    }

    #[test]
    fn aligned_blocks_each_channel_after_its_barrier_and_snapshots_when_all_arrived() {
        let mut a = BarrierAligner::new(AlignmentMode::Aligned, 3);
        assert!(a.on_barrier(1, b(1)).is_empty());
        assert!(a.is_blocked(1) && !a.is_blocked(0) && !a.is_blocked(2));
        assert!(a.on_barrier(0, b(1)).is_empty());
        assert!(a.is_blocked(0));
        assert_eq!(a.on_barrier(2, b(1)), vec![Snapshot(b(1))]);
        assert!((0..3).all(|c| !a.is_blocked(c)), "alignment done: all channels flow again");
        assert_eq!(a.pending_checkpoint(), None);
    }

    #[test]
    fn a_single_channel_snapshots_at_its_barrier() {
        let mut a = BarrierAligner::new(AlignmentMode::Aligned, 1);
        assert_eq!(a.on_barrier(0, b(7)), vec![Snapshot(b(7))]);
    }

    #[test]
    fn a_newer_barrier_abandons_the_checkpoint_still_aligning() {
        let mut a = BarrierAligner::new(AlignmentMode::Aligned, 2);
        a.on_barrier(0, b(1));
        assert_eq!(a.on_barrier(0, b(2)), vec![Aborted(1)]);
        assert_eq!(a.pending_checkpoint(), Some(2));
        assert!(a.on_barrier(1, b(1)).is_empty(), "a stale barrier is ignored");
        assert_eq!(a.on_barrier(1, b(2)), vec![Snapshot(b(2))]);
    }

    #[test]
    fn ended_channels_count_as_aligned() {
        let mut a = BarrierAligner::new(AlignmentMode::Aligned, 3);
        a.on_end_of_input(2);
        a.on_barrier(0, b(1));
        assert_eq!(a.on_end_of_input(1), vec![Snapshot(b(1))]);
    }

    #[test]
    fn at_least_once_never_blocks_and_snapshots_at_the_last_barrier() {
        let mut a = BarrierAligner::new(AlignmentMode::AtLeastOnce, 2);
        assert!(a.on_barrier(0, b(1)).is_empty());
        assert!(!a.is_blocked(0));
        assert_eq!(a.in_flight_checkpoint(1), None);
        assert_eq!(a.on_barrier(1, b(1)), vec![Snapshot(b(1))]);
    }

    #[test]
    fn unaligned_snapshots_at_the_first_barrier_and_tracks_in_flight_channels() {
        let mut a = BarrierAligner::new(AlignmentMode::Unaligned, 3);
        assert_eq!(a.on_barrier(1, b(4)), vec![Snapshot(b(4))]);
        assert!(!a.is_blocked(1));
        assert_eq!(a.in_flight_checkpoint(0), Some(4));
        assert_eq!(
            a.in_flight_checkpoint(1),
            None,
            "its barrier arrived: later records are after the checkpoint"
        );
        assert!(a.on_barrier(0, b(4)).is_empty());
        assert_eq!(a.on_barrier(2, b(4)), vec![InFlightComplete(4)]);
        assert_eq!(a.in_flight_checkpoint(2), None);
    }

    #[test]
    fn an_alignment_timeout_turns_an_aligned_checkpoint_unaligned() {
        let mut a = BarrierAligner::new(AlignmentMode::Aligned, 2);
        a.on_barrier(0, b(1));
        assert!(a.is_blocked(0));
        assert_eq!(a.on_alignment_timeout(), vec![Snapshot(b(1))]);
        assert!(!a.is_blocked(0));
        assert_eq!(a.in_flight_checkpoint(1), Some(1));
        assert_eq!(a.on_barrier(1, b(1)), vec![InFlightComplete(1)]);
        assert!(a.on_alignment_timeout().is_empty());
    }

    #[test]
    fn the_same_barrier_twice_after_completion_does_nothing() {
        let mut a = BarrierAligner::new(AlignmentMode::Aligned, 1);
        a.on_barrier(0, b(1));
        assert!(a.on_barrier(0, b(1)).is_empty());
    }
}
