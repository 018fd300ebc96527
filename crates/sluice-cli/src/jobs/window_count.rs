//! The window benchmark: generated (key, 1) events with event time from
//! their index, counted per key in tumbling or sliding event-time windows.

use std::time::Duration;

use sluice::connectors::DataGeneratorSource;
use sluice::{
    DataStreamSink, SlidingEventTimeWindows, StreamExecutionEnvironment, TumblingEventTimeWindows,
    WatermarkStrategy,
};

/// Which windows to count in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// 10 s tumbling windows.
    Tumbling,
    /// 10 s windows every 2 s.
    Sliding,
}

/// Events per millisecond of event time: 50M events span 500 s.
pub const EVENTS_PER_MS: u64 = 100;

/// Adds `events` events over `keys` keys, counted per key and window, into a discarding sink.
pub fn window_count(
    env: &StreamExecutionEnvironment,
    events: u64,
    keys: u64,
    kind: WindowKind,
) -> DataStreamSink<(u64, u64)> {
    let keys = keys.max(1);
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|e: &(u64, u64), _| (e.1 / EVENTS_PER_MS) as i64);
    // The index rides along as the second field until the timestamp is assigned.
    let source = DataGeneratorSource::new(
        move |i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % keys, i),
        Some(events),
    );
    let keyed = env
        .from_source_with_watermarks(source, strategy, "generator")
        .map(|(k, _)| (k, 1u64))
        .key_by(|e: &(u64, u64)| e.0);
    let count = |a: (u64, u64), b: (u64, u64)| (a.0, a.1 + b.1);
    let counts = match kind {
        WindowKind::Tumbling => {
            keyed.window(TumblingEventTimeWindows::of(Duration::from_secs(10))).reduce(count)
        }
        WindowKind::Sliding => keyed
            .window(SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(2)))
            .reduce(count),
    };
    counts.discard()
}
