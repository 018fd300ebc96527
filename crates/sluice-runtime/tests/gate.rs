//! The input gate with unaligned checkpoints: records overtaken by a
//! barrier are delivered and also recorded as the checkpoint's in-flight data.

use std::time::Duration;

use sluice_checkpoint::AlignmentMode;
use sluice_core::{CheckpointBarrier, RecordBatch, StreamElement, StreamRecord};
use sluice_runtime::channel::{channel, BatchCodec, GateEvent, InputChannel, InputGate};
use sluice_runtime::stream_graph::OutputType;

fn batch(values: &[u64]) -> StreamElement {
    StreamElement::Records(RecordBatch::new(values.iter().map(|v| StreamRecord::new(*v)).collect()))
}

fn values(b: RecordBatch) -> Vec<u64> {
    b.into_records::<u64>().unwrap().into_iter().map(|r| r.value).collect()
}

#[test]
fn unaligned_records_overtaken_by_the_barrier_are_delivered_and_recorded_as_in_flight_data() {
    let t = OutputType::of::<u64>();
    let codec = BatchCodec { encode: t.encode_batch, decode: t.decode_batch };
    let (tx0, rx0) = channel(8);
    let (tx1, rx1) = channel(8);
    let inputs = vec![
        InputChannel { receiver: rx0, input: 0, description: "a".into(), codec },
        InputChannel { receiver: rx1, input: 0, description: "b".into(), codec },
    ];
    let mut gate = InputGate::new(inputs, 1, Some(AlignmentMode::Unaligned));
    let barrier = CheckpointBarrier { id: 1, timestamp: 0, savepoint: false };
    tx0.send(StreamElement::Barrier(barrier)).unwrap();
    let wait = Duration::from_millis(50);
    assert!(matches!(gate.next(wait).unwrap(), GateEvent::AlignmentStarted));
    assert!(
        matches!(gate.next(wait).unwrap(), GateEvent::Barrier { complete: false, .. }),
        "snapshot at the first barrier"
    );
    tx1.send(batch(&[7, 8])).unwrap();
    match gate.next(wait).unwrap() {
        GateEvent::Records { batch, .. } => {
            assert_eq!(values(batch), vec![7, 8], "still processed")
        }
        other => panic!("{other:?}"),
    }
    tx1.send(StreamElement::Barrier(barrier)).unwrap();
    tx0.send(batch(&[9])).unwrap();
    let mut in_flight = None;
    for _ in 0..3 {
        match gate.next(wait).unwrap() {
            GateEvent::InFlightComplete { id, data } => in_flight = Some((id, data)),
            GateEvent::Records { batch, .. } => {
                assert_eq!(values(batch), vec![9], "after its barrier: not in flight")
            }
            GateEvent::Timeout => {}
            other => panic!("{other:?}"),
        }
    }
    let (id, data) = in_flight.expect("in-flight data completed");
    assert_eq!(id, 1);
    assert_eq!(data.len(), 1);
    let (input, bytes) = &data[0];
    assert_eq!(*input, 0);
    assert_eq!(values((codec.decode)(bytes).unwrap()), vec![7, 8]);
}
