//! A slow sink slows its source: records in flight stay bounded by the
//! channel capacity, whatever the speed difference.

use std::time::Duration;

use sluice::connectors::DataGeneratorSource;
use sluice::{
    DataPlane, JobStatus, Sink, SinkWriter, SluiceError, StreamExecutionEnvironment, StreamRecord,
};

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

const BATCH: usize = 64;
const CAPACITY: usize = 2;

/// Runs an unbounded source into a slow sink at `parallelism`, on one
/// TaskManager per subtask over `data_plane` when given, and returns the
/// most records seen in flight (produced, not yet received by the sink).
fn max_in_flight(parallelism: usize, data_plane: Option<DataPlane>) -> u64 {
    let env = StreamExecutionEnvironment::new();
    env.set_batch_size(BATCH).set_channel_capacity(CAPACITY).set_parallelism(parallelism);
    if let Some(plane) = data_plane {
        env.set_mini_cluster_with(parallelism, 1, plane);
    }
    env.from_source(DataGeneratorSource::new(|i| i, None), "unbounded")
        .map(|i: u64| i.wrapping_mul(2))
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
    client.cancel();
    assert!(matches!(client.wait(), Err(SluiceError::Cancelled)));
    max_in_flight
}

#[test]
fn a_slow_sink_bounds_the_records_in_flight_from_an_unbounded_source() {
    // One channel of CAPACITY batches, the writer's pending batch, and the
    // batch the source holds while it waits to send.
    let bound = ((CAPACITY + 2) * BATCH) as u64;
    let in_flight = max_in_flight(1, None);
    assert!(in_flight <= bound, "{in_flight} records in flight, bound {bound}");
}

#[test]
fn a_slow_sink_on_another_task_manager_bounds_the_records_in_flight_over_tcp() {
    // Each of 2 sources feeds 2 channels (one to its own TaskManager, one
    // over TCP): per channel CAPACITY batches (credits) and a pending batch,
    // plus the batch each source holds while it waits.
    let bound = (2 * (2 * (CAPACITY + 1) + 1) * BATCH) as u64;
    let in_flight = max_in_flight(2, Some(DataPlane::Tcp));
    assert!(in_flight <= bound, "{in_flight} records in flight, bound {bound}");
}
