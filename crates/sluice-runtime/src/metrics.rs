//! Per-task counters, updated once per batch and read by the JobManager and CLI.
//! Flink's numRecordsIn / numRecordsOut count network input and output; a
//! source's own production is counted apart, so chaining changes no figure.
//!
//! Time is accounted as Flink's busy / back-pressured / idle time: a task
//! adds the time it waited for input (idle) and for output credit
//! (back-pressured) when it waited; busy is the rest of the wall clock. The
//! waits are measured, not sampled, and cost nothing while a task does not wait.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one subtask.
#[derive(Debug)]
pub struct TaskMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    source_records: AtomicU64,
    records_in_errors: AtomicU64,
    idle_nanos: AtomicU64,
    back_pressured_nanos: AtomicU64,
    watermark: AtomicI64,
    source_lag: AtomicI64,
}

impl Default for TaskMetrics {
    fn default() -> Self {
        Self {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            source_records: AtomicU64::new(0),
            records_in_errors: AtomicU64::new(0),
            idle_nanos: AtomicU64::new(0),
            back_pressured_nanos: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            source_lag: AtomicI64::new(-1),
        }
    }
}

impl TaskMetrics {
    /// Every counter, to report them to another process.
    pub fn values(&self) -> [i64; 8] {
        let u = |c: &AtomicU64| c.load(Ordering::Relaxed) as i64;
        [
            u(&self.records_in),
            u(&self.records_out),
            u(&self.source_records),
            u(&self.records_in_errors),
            u(&self.idle_nanos),
            u(&self.back_pressured_nanos),
            self.watermark.load(Ordering::Relaxed),
            self.source_lag.load(Ordering::Relaxed),
        ]
    }

    /// Sets every counter to what [`Self::values`] read in another process.
    pub fn set_values(&self, values: [i64; 8]) {
        let counters = [
            &self.records_in,
            &self.records_out,
            &self.source_records,
            &self.records_in_errors,
            &self.idle_nanos,
            &self.back_pressured_nanos,
        ];
        for (c, v) in counters.into_iter().zip(values) {
            c.store(v as u64, Ordering::Relaxed);
        }
        self.watermark.store(values[6], Ordering::Relaxed);
        self.source_lag.store(values[7], Ordering::Relaxed);
    }

    /// Adds time spent waiting for input.
    #[inline]
    pub fn add_idle(&self, waited: Duration) {
        self.idle_nanos.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Adds time spent waiting for output credit (downstream is slower).
    #[inline]
    pub fn add_back_pressured(&self, waited: Duration) {
        self.back_pressured_nanos.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Time spent waiting for input so far, in nanoseconds.
    pub fn idle_nanos(&self) -> u64 {
        self.idle_nanos.load(Ordering::Relaxed)
    }

    /// Time spent waiting for output credit so far, in nanoseconds.
    pub fn back_pressured_nanos(&self) -> u64 {
        self.back_pressured_nanos.load(Ordering::Relaxed)
    }

    /// Sets the task's current watermark: its input watermark, or for a
    /// source the watermark it emitted.
    #[inline]
    pub fn set_watermark(&self, watermark: i64) {
        self.watermark.store(watermark, Ordering::Relaxed);
    }

    /// The current watermark, if any arrived yet.
    pub fn watermark(&self) -> Option<i64> {
        Some(self.watermark.load(Ordering::Relaxed)).filter(|w| *w != i64::MIN)
    }

    /// Sets how many records the source is behind the end of its input.
    #[inline]
    pub fn set_source_lag(&self, records: u64) {
        self.source_lag.store(records as i64, Ordering::Relaxed);
    }

    /// Records the source is behind, where the source knows it (Kafka: records behind the partitions' ends).
    pub fn source_lag(&self) -> Option<u64> {
        u64::try_from(self.source_lag.load(Ordering::Relaxed)).ok()
    }

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
