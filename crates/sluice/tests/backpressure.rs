//! A slow sink slows its source: records in flight stay bounded by the
//! channel capacity, whatever the speed difference.

use std::time::Duration;

use sluice::connectors::DataGeneratorSource;
use sluice::{JobStatus, Sink, SinkWriter, SluiceError, StreamExecutionEnvironment, StreamRecord};

/// Sleeps for every batch it receives.
#[derive(Clone)]
struct SlowSink(Duration);

impl<T: sluice_core::Data> Sink<T> for SlowSink {
    fn create_writer(
        &self,
        _ctx: &sluice::RuntimeContext,
    ) -> sluice::Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(self.clone()))
    }
}

impl<T> SinkWriter<T> for SlowSink {
    fn write_batch(&mut self, _records: Vec<StreamRecord<T>>) -> sluice::Result<()> {
        std::thread::sleep(self.0);
        Ok(())
    }
}

#[test]
fn a_slow_sink_bounds_the_records_in_flight_from_an_unbounded_source() {
    const BATCH: usize = 64;
    const CAPACITY: usize = 2;
    let env = StreamExecutionEnvironment::new();
    env.set_batch_size(BATCH).set_channel_capacity(CAPACITY);
    env.from_source(DataGeneratorSource::new(|i| i, None), "unbounded")
        .map(|i| i * 2)
        .rebalance()
        .sink_to(SlowSink(Duration::from_millis(10)))
        .disable_chaining();
    let client = env.execute_async("backpressure").unwrap();

    let mut max_in_flight = 0;
    let mut sink_received = 0;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(25));
        let vertices = client.vertex_metrics();
        let produced = client.source_records();
        sink_received = vertices.last().unwrap().records_in;
        max_in_flight = max_in_flight.max(produced.saturating_sub(sink_received));
    }
    assert_eq!(client.status(), JobStatus::Running);
    assert!(sink_received > 0, "the sink made progress");
    // One channel of CAPACITY batches, the writer's pending batch, and the
    // batch the source holds while it waits to send.
    let bound = ((CAPACITY + 2) * BATCH) as u64;
    assert!(max_in_flight <= bound, "{max_in_flight} records in flight, bound {bound}");

    client.cancel();
    assert!(matches!(client.wait(), Err(SluiceError::Cancelled)));
}
