//! The benchmark pipeline: generator → map → key_by → sum → discard.

use std::time::{Duration, Instant};

use sluice::connectors::DataGeneratorSource;
use sluice::{DataStreamSink, StreamExecutionEnvironment};

/// Adds `events` generated (key, 1) records over `keys` keys, summed per key
/// and discarded; `reduce_parallelism` sets the sum's and the sink's
/// parallelism. With `sink_rate`, the sink takes at most that many records
/// per second per subtask, a built-in way to see backpressure.
pub fn pipeline(
    env: &StreamExecutionEnvironment,
    events: u64,
    keys: u64,
    reduce_parallelism: Option<usize>,
    sink_rate: Option<f64>,
) -> DataStreamSink<(u64, u64)> {
    let keys = keys.max(1);
    let mut sums = env
        .from_source(DataGeneratorSource::new(|i| i, Some(events)), "generator")
        .uid("generator")
        .map(move |i: u64| (i % keys, 1u64))
        .key_by(|(k, _): &(u64, u64)| *k)
        .sum(|(_, c)| c)
        .uid("sum");
    if let Some(p) = reduce_parallelism {
        sums = sums.set_parallelism(p);
    }
    if let Some(rate) = sink_rate {
        let mut throttle = Throttle::new(rate);
        sums = sums.map(move |r| {
            throttle.admit();
            r
        });
        if let Some(p) = reduce_parallelism {
            sums = sums.set_parallelism(p);
        }
    }
    let sink = sums.discard();
    match reduce_parallelism {
        Some(p) => sink.set_parallelism(p),
        None => sink,
    }
}

/// Paces records to a rate: each waits until its time has come.
#[derive(Clone)]
struct Throttle {
    rate: f64,
    started: Option<Instant>,
    admitted: u64,
}

impl Throttle {
    fn new(rate: f64) -> Self {
        Self { rate: rate.max(1e-3), started: None, admitted: 0 }
    }

    fn admit(&mut self) {
        let started = *self.started.get_or_insert_with(Instant::now);
        self.admitted += 1;
        let due = started + Duration::from_secs_f64(self.admitted as f64 / self.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}
