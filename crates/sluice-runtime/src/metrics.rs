//! Per-task counters, updated once per batch and read by the JobManager and CLI.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one subtask (Flink's numRecordsIn / numRecordsOut).
#[derive(Debug, Default)]
pub struct TaskMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
}

impl TaskMetrics {
    /// Adds to the records received from input channels.
    #[inline]
    pub fn add_records_in(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Adds to the records a source produced or a task sent to its output channels.
    #[inline]
    pub fn add_records_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records received so far.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Records produced or sent so far.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }
}
