//! Per-task counters, updated once per batch and read by the JobManager and CLI.
//! Flink's numRecordsIn / numRecordsOut count network input and output; a
//! source's own production is counted apart, so chaining changes no figure.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one subtask.
#[derive(Debug, Default)]
pub struct TaskMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    source_records: AtomicU64,
    records_in_errors: AtomicU64,
}

impl TaskMetrics {
    /// Adds to the records received from input channels.
    #[inline]
    pub fn add_records_in(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Adds to the records a source reader produced.
    #[inline]
    pub fn add_source_records(&self, n: usize) {
        self.source_records.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Adds to the records a source could not decode and dropped or sent to
    /// its side output (Flink's `numRecordsInErrors`).
    #[inline]
    pub fn add_records_in_errors(&self, n: usize) {
        self.records_in_errors.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records a source could not decode so far.
    pub fn records_in_errors(&self) -> u64 {
        self.records_in_errors.load(Ordering::Relaxed)
    }

    /// Records a source reader produced so far.
    pub fn source_records(&self) -> u64 {
        self.source_records.load(Ordering::Relaxed)
    }

    /// Adds to the records a task sent to its output channels.
    #[inline]
    pub fn add_records_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records received so far.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Records sent to output channels so far.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }
}
