//! Counts clicks per page in 10-second event-time windows, from clicks that
//! arrive up to 2 seconds out of order. A window accepts clicks up to one
//! second after it closed (firing again); later clicks go to a side output.
//!
//! Run: `cargo run --release --example windowed_counts`

use std::time::Duration;

use sluice::{OutputTag, StreamExecutionEnvironment, TumblingEventTimeWindows, WatermarkStrategy};

/// (page, event time in ms, count)
type Clicks = (String, i64, u64);

fn main() -> sluice::Result<()> {
    // A small, fixed click log: times slightly out of order, one click very late.
    let log = [
        ("home", 1_000),
        ("docs", 3_500),
        ("home", 2_000),
        ("home", 13_000),
        ("docs", 9_900),
        ("docs", 24_000),
        ("home", 4_000),
    ];
    let clicks: Vec<Clicks> = log.into_iter().map(|(page, ts)| (page.to_string(), ts, 1)).collect();

    let env = StreamExecutionEnvironment::new();
    // One record per batch, so the watermark moves after every click.
    env.set_batch_size(1);
    let late = OutputTag::<Clicks>::new("late clicks");
    let counts = env
        .from_collection(clicks)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_generator(|| PerEvent(Duration::from_secs(2)))
                .with_timestamp_assigner(|c: &Clicks, _| c.1),
        )
        .key_by(|c: &Clicks| c.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .allowed_lateness(Duration::from_secs(1))
        .side_output_late_data(&late)
        .reduce(|a, b| (a.0, a.1.max(b.1), a.2 + b.2));
    counts.map(|(page, _, n)| format!("{page}: {n} clicks")).print();
    counts
        .get_side_output(&late)
        .map(|(page, ts, _)| format!("late click on {page} at {ts} ms"))
        .print();
    env.execute("windowed counts")?;
    Ok(())
}

/// Bounded out-of-orderness, emitted after every click rather than periodically.
struct PerEvent(Duration);

impl sluice::WatermarkGenerator<Clicks> for PerEvent {
    fn on_event(&mut self, _click: &Clicks, timestamp: i64, output: &mut sluice::WatermarkOutput) {
        output.emit_watermark(sluice::Watermark(timestamp - self.0.as_millis() as i64 - 1));
    }

    fn on_periodic_emit(&mut self, _output: &mut sluice::WatermarkOutput) {}
}
