//! The benchmark pipeline: generator → map → key_by → sum → discard.

use sluice::connectors::DataGeneratorSource;
use sluice::{DataStreamSink, StreamExecutionEnvironment};

/// Adds `events` generated (key, 1) records over `keys` keys, summed per key
/// and discarded; `reduce_parallelism` sets the sum's and the sink's parallelism.
pub fn pipeline(
    env: &StreamExecutionEnvironment,
    events: u64,
    keys: u64,
    reduce_parallelism: Option<usize>,
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
    let sink = sums.discard();
    match reduce_parallelism {
        Some(p) => sink.set_parallelism(p),
        None => sink,
    }
}
