//! End-to-end latency for the benchmark: the source readers stamp the wall
//! clock as their event time advances (once per batch), and the sink
//! measures, once per batch, how long ago the sources had emitted the event
//! time of the batch's latest result. For a window's result (timestamp
//! `end − 1`) that is the time since its last input left the source; for a
//! record-at-a-time result, since its input did. Processing-time results
//! (q12) carry no event time and are not measured.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_connectors::nexmark::Event;
use sluice_core::{Data, Result, StreamRecord};
use sluice_runtime::source::{Boundedness, InputStatus, Source, SourceOutput, SourceReader};
use sluice_runtime::{RuntimeContext, Sink, SinkWriter, SplitEnumerator};

/// One source subtask's progress: (largest event time emitted, when).
#[derive(Debug, Default)]
struct Progress {
    stamps: Vec<(i64, Instant)>,
    finished: bool,
}

/// Source progress and sink samples of one benchmark run.
#[derive(Debug, Default)]
pub struct LatencyTracker {
    progress: Mutex<Vec<Arc<Mutex<Progress>>>>,
    samples: Mutex<Vec<Duration>>,
    results: AtomicU64,
}

impl LatencyTracker {
    /// A tracker for one run.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// When every source subtask had emitted event time `t` or finished,
    /// if they all have.
    fn emitted_at(&self, t: i64) -> Option<Instant> {
        // Readers only ever take their own lock, never this one: no lock-order cycle.
        let subtasks = self.progress.lock().unwrap();
        let mut latest = None;
        for progress in subtasks.iter() {
            let progress = progress.lock().unwrap();
            let i = progress.stamps.partition_point(|(time, _)| *time < t);
            let at = match progress.stamps.get(i) {
                Some((_, at)) => *at,
                None if progress.finished => progress.stamps.last()?.1,
                None => return None,
            };
            latest = latest.max(Some(at));
        }
        latest
    }

    /// The (p50, p99) latency of the samples, if any were taken.
    pub fn percentiles(&self) -> Option<(Duration, Duration)> {
        let mut samples = self.samples.lock().unwrap().clone();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some((at(0.50), at(0.99)))
    }

    /// Results the sink received.
    pub fn results(&self) -> u64 {
        self.results.load(Ordering::Relaxed)
    }
}

/// A source whose readers stamp their progress into a [`LatencyTracker`].
pub struct TrackedSource<S> {
    inner: S,
    tracker: Arc<LatencyTracker>,
}

impl<S> TrackedSource<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, tracker: Arc<LatencyTracker>) -> Self {
        Self { inner, tracker }
    }
}

impl<S: Source<Event>> Source<Event> for TrackedSource<S> {
    type Split = S::Split;

    fn boundedness(&self) -> Boundedness {
        self.inner.boundedness()
    }

    fn max_parallelism(&self) -> Option<usize> {
        self.inner.max_parallelism()
    }

    fn create_splits(&self, parallelism: usize) -> Result<Vec<S::Split>> {
        self.inner.create_splits(parallelism)
    }

    fn create_enumerator(&self, parallelism: usize) -> Result<Box<dyn SplitEnumerator<S::Split>>> {
        self.inner.create_enumerator(parallelism)
    }

    fn restore_enumerator(
        &self,
        parallelism: usize,
        state: &[u8],
    ) -> Result<Box<dyn SplitEnumerator<S::Split>>> {
        self.inner.restore_enumerator(parallelism, state)
    }

    fn create_reader(
        &self,
        ctx: &RuntimeContext,
    ) -> Result<Box<dyn SourceReader<Event, S::Split>>> {
        let progress = Arc::new(Mutex::new(Progress::default()));
        self.tracker.progress.lock().unwrap().push(progress.clone());
        Ok(Box::new(TrackedReader {
            inner: self.inner.create_reader(ctx)?,
            progress,
            max: i64::MIN,
        }))
    }
}

struct TrackedReader<Split> {
    inner: Box<dyn SourceReader<Event, Split>>,
    progress: Arc<Mutex<Progress>>,
    max: i64,
}

impl<Split> SourceReader<Event, Split> for TrackedReader<Split> {
    fn add_splits(&mut self, splits: Vec<Split>) -> Result<()> {
        self.inner.add_splits(splits)
    }

    fn poll_next(&mut self, output: &mut SourceOutput<Event>) -> Result<InputStatus> {
        let status = self.inner.poll_next(output)?;
        let time = output.last().map_or(i64::MIN, |r| r.value.date_time());
        if time > self.max || status == InputStatus::EndOfInput {
            self.max = self.max.max(time);
            let mut progress = self.progress.lock().unwrap();
            progress.stamps.push((self.max, Instant::now()));
            progress.finished = status == InputStatus::EndOfInput;
        }
        Ok(status)
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<Split>> {
        self.inner.snapshot_state(checkpoint_id)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.inner.notify_checkpoint_complete(checkpoint_id)
    }

    fn remove_splits(&mut self, split_ids: &[String]) -> Result<()> {
        self.inner.remove_splits(split_ids)
    }

    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
}

/// Discards results, counting them and sampling their latency.
#[derive(Clone, Debug)]
pub struct LatencySink {
    tracker: Arc<LatencyTracker>,
    measure: bool,
}

impl LatencySink {
    /// A sink reporting to `tracker`; `measure` is false for processing-time results.
    pub fn new(tracker: Arc<LatencyTracker>, measure: bool) -> Self {
        Self { tracker, measure }
    }
}

impl<T: Data> Sink<T> for LatencySink {
    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(LatencyWriter { sink: self.clone(), samples: Vec::new(), results: 0 }))
    }
}

struct LatencyWriter {
    sink: LatencySink,
    samples: Vec<Duration>,
    results: u64,
}

impl LatencyWriter {
    fn publish(&mut self) {
        let tracker = &self.sink.tracker;
        tracker.results.fetch_add(std::mem::take(&mut self.results), Ordering::Relaxed);
        tracker.samples.lock().unwrap().append(&mut self.samples);
    }
}

impl<T> SinkWriter<T> for LatencyWriter {
    fn write_batch(&mut self, records: Vec<StreamRecord<T>>) -> Result<()> {
        self.results += records.len() as u64;
        if self.sink.measure {
            if let Some(t) = records.iter().map(|r| r.timestamp.0).max() {
                if let Some(at) = self.sink.tracker.emitted_at(t) {
                    self.samples.push(at.elapsed());
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, end_of_input: bool) -> Result<()> {
        if end_of_input {
            self.publish();
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.publish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subtask(tracker: &LatencyTracker, stamps: Vec<(i64, Instant)>, finished: bool) {
        let progress = Arc::new(Mutex::new(Progress { stamps, finished }));
        tracker.progress.lock().unwrap().push(progress);
    }

    #[test]
    fn an_event_time_was_emitted_when_the_last_source_subtask_reached_it() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let tracker = LatencyTracker::default();
        subtask(&tracker, vec![(100, at(1)), (200, at(2))], false);
        subtask(&tracker, vec![(150, at(5)), (300, at(9))], false);
        assert_eq!(tracker.emitted_at(120), Some(at(5)));
        assert_eq!(tracker.emitted_at(200), Some(at(9)));
        // A live subtask that has not reached 250 yet: not known.
        assert_eq!(tracker.emitted_at(250), None);
    }

    #[test]
    fn a_finished_subtask_counts_as_having_emitted_everything_at_its_end() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let tracker = LatencyTracker::default();
        subtask(&tracker, vec![(100, at(1))], true);
        subtask(&tracker, vec![(500, at(3))], false);
        assert_eq!(tracker.emitted_at(400), Some(at(3)));
    }

    #[test]
    fn percentiles_come_from_the_sorted_samples() {
        let tracker = LatencyTracker::default();
        assert_eq!(tracker.percentiles(), None);
        tracker.samples.lock().unwrap().extend((1..=100).rev().map(Duration::from_millis));
        let (p50, p99) = tracker.percentiles().unwrap();
        assert_eq!((p50, p99), (Duration::from_millis(51), Duration::from_millis(99)));
    }
}
