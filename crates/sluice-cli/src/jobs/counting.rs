//! The counting job: a paced sequence, keyed rolling counts, written
//! exactly-once to NDJSON part files (or discarded). It exists to show
//! checkpoints, crashes and resumes from the command line.

use std::path::PathBuf;

use sluice::connectors::{DataGeneratorSource, ExactlyOnceFileSink};
use sluice::Result;
use sluice::{DataStreamSink, StreamExecutionEnvironment};

/// Adds `events` numbers at `rate` per second (unpaced if `None`), counted
/// per key (`i % keys`) and written as `[key, count]` lines to `output`.
pub fn counting(
    env: &StreamExecutionEnvironment,
    events: u64,
    keys: u64,
    rate: Option<f64>,
    output: Option<PathBuf>,
) -> Result<DataStreamSink<(u64, u64)>> {
    let keys = keys.max(1);
    let mut source = DataGeneratorSource::new(|i| i, Some(events));
    if let Some(rate) = rate {
        source = source.with_rate(rate)?;
    }
    let counts = env
        .from_source(source, "numbers")
        .uid("numbers")
        .map(move |i: u64| (i % keys, 1u64))
        .key_by(|(k, _): &(u64, u64)| *k)
        .sum(|(_, c)| c)
        .uid("count");
    Ok(match output {
        Some(dir) => counts.sink_to_exactly_once(ExactlyOnceFileSink::ndjson(dir)).uid("files"),
        None => counts.discard(),
    })
}
