//! The data plane between TaskManagers over real loopback TCP: one
//! connection per pair carries every channel in order, a sender never
//! sends records without the receiver's credit, control elements pass with
//! credits exhausted, and wrong secrets and stale attempts are refused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::{CheckpointBarrier, RecordBatch, StreamElement, StreamRecord, Watermark};
use sluice_runtime::channel::{ChannelReceiver, ChannelSender, SendError};
use sluice_runtime::network::frame::ChannelId;
use sluice_runtime::network::{DataTls, NetworkConfig, NetworkEnvironment};
use sluice_runtime::stream_graph::OutputType;

const LOOPBACK: &str = "127.0.0.1:0";
const WAIT: Duration = Duration::from_secs(10);

fn environment(id: &str, secret: Option<&str>) -> NetworkEnvironment {
    NetworkEnvironment::start(NetworkConfig {
        task_manager: id.into(),
        bind: LOOPBACK.parse().unwrap(),
        secret: secret.map(|s| s.as_bytes().to_vec()),
        tls: None,
    })
    .unwrap()
}

/// Two TaskManagers that know each other.
fn pair(
    secret_a: Option<&str>,
    secret_b: Option<&str>,
) -> (NetworkEnvironment, NetworkEnvironment) {
    let (a, b) = (environment("tm-a", secret_a), environment("tm-b", secret_b));
    a.connect("tm-b", b.address()).unwrap();
    b.connect("tm-a", a.address()).unwrap();
    (a, b)
}

fn id(attempt: u32, index: u32) -> ChannelId {
    ChannelId { job: 42, attempt, index }
}

/// A channel from `from` to `to` of `u64` records with `capacity` credits.
fn channel(
    from: &NetworkEnvironment,
    to: &NetworkEnvironment,
    channel: ChannelId,
    capacity: u32,
) -> (ChannelSender, ChannelReceiver) {
    let t = OutputType::of::<u64>();
    let rx = to.input_channel(from.task_manager(), channel, capacity, t.decode_batch).unwrap();
    let tx = from.output_channel(to.task_manager(), channel, t.encode_batch).unwrap();
    (tx, rx)
}

fn batch(values: impl IntoIterator<Item = u64>) -> StreamElement {
    StreamElement::Records(RecordBatch::new(values.into_iter().map(StreamRecord::new).collect()))
}

fn values(e: StreamElement) -> Vec<u64> {
    match e {
        StreamElement::Records(b) => {
            b.into_records::<u64>().unwrap().into_iter().map(|r| r.value).collect()
        }
        other => panic!("expected records, got {}", other.kind()),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn every_channel_between_two_task_managers_shares_one_connection_and_keeps_its_order() {
    let (a, b) = pair(Some("s"), Some("s"));
    // Four channels a -> b and two b -> a, all on one connection.
    let mut channels: Vec<_> = (0..4).map(|i| channel(&a, &b, id(0, i), 4)).collect();
    channels.extend((4..6).map(|i| channel(&b, &a, id(0, i), 4)));
    let barrier = CheckpointBarrier { id: 1, timestamp: 5, savepoint: false };
    let (senders, receivers): (Vec<_>, Vec<_>) = channels.into_iter().unzip();
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(c, tx)| {
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    tx.send(batch((0..50).map(|k| c as u64 * 1_000_000 + i * 50 + k))).unwrap();
                    if i == 100 {
                        tx.send(StreamElement::Watermark(Watermark(i as i64))).unwrap();
                        tx.send(StreamElement::Barrier(barrier)).unwrap();
                    }
                }
                tx.send(StreamElement::EndOfInput).unwrap();
            })
        })
        .collect();
    for (c, rx) in receivers.iter().enumerate() {
        let mut next = c as u64 * 1_000_000;
        let mut control = Vec::new();
        loop {
            match rx.recv_timeout(WAIT).expect("an element in time") {
                StreamElement::Records(b) => {
                    for v in values(StreamElement::Records(b)) {
                        assert_eq!(v, next, "channel {c} in order, nothing lost");
                        next += 1;
                    }
                }
                StreamElement::EndOfInput => break,
                other => control.push((next, format!("{other:?}"))),
            }
        }
        assert_eq!(next, c as u64 * 1_000_000 + 200 * 50, "channel {c} complete");
        let at = c as u64 * 1_000_000 + 101 * 50;
        assert_eq!(
            control,
            vec![(at, "Watermark(Watermark(100))".into()), (at, format!("Barrier({barrier:?})"))]
        );
    }
    for s in sending {
        s.join().unwrap();
    }
    assert_eq!(a.connected_peers(), vec!["tm-b"]);
    assert_eq!(b.connected_peers(), vec!["tm-a"]);
    assert!(a.bytes_sent() > 4 * 200 * 50);
    // The last credits a returned may still be on their way.
    wait_until("b received every byte a sent", || a.bytes_sent() == b.bytes_received());
}

#[test]
fn a_sender_stops_at_the_receivers_credits_and_resumes_as_the_receiver_consumes() {
    let (a, b) = pair(None, None);
    let (tx, rx) = channel(&a, &b, id(0, 0), 3);
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            for i in 0..10u64 {
                tx.send(batch([i])).unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    wait_until("three batches wait at the receiver", || rx.queued() == 3);
    // No credit is left: the fourth batch is not sent, whatever the wait.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sent.load(Ordering::SeqCst), 3);
    assert_eq!(rx.queued(), 3, "the receiver holds no more than its credits");
    for expected in 0..10u64 {
        assert_eq!(values(rx.recv_timeout(WAIT).unwrap()), vec![expected]);
        assert!(rx.queued() <= 3);
    }
    sender.join().unwrap();
}

#[test]
fn control_elements_pass_while_credits_are_exhausted() {
    let (a, b) = pair(None, None);
    let (tx, rx) = channel(&a, &b, id(0, 0), 1);
    tx.send(batch([1])).unwrap();
    // The only credit is spent: a barrier and a watermark still go, behind the batch.
    let barrier = CheckpointBarrier { id: 7, timestamp: 0, savepoint: false };
    assert_eq!(tx.send(StreamElement::Barrier(barrier)).unwrap(), Duration::ZERO);
    tx.send(StreamElement::Watermark(Watermark(3))).unwrap();
    tx.send(StreamElement::EndOfInput).unwrap();
    wait_until("all four elements arrived", || rx.queued() == 4);
    assert_eq!(values(rx.recv().unwrap()), vec![1]);
    assert!(matches!(rx.recv(), Some(StreamElement::Barrier(b)) if b == barrier));
    assert!(matches!(rx.recv(), Some(StreamElement::Watermark(Watermark(3)))));
    assert!(matches!(rx.recv(), Some(StreamElement::EndOfInput)));
}

#[test]
fn a_sender_waits_until_the_receiver_opens_the_channel() {
    let (a, b) = pair(None, None);
    let t = OutputType::of::<u64>();
    let tx = a.output_channel("tm-b", id(0, 0), t.encode_batch).unwrap();
    let sender = std::thread::spawn(move || tx.send(StreamElement::EndOfInput).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert!(!sender.is_finished(), "nowhere to deliver before the receiver registers");
    let rx = b.input_channel("tm-a", id(0, 0), 2, t.decode_batch).unwrap();
    assert!(matches!(rx.recv_timeout(WAIT), Some(StreamElement::EndOfInput)));
    sender.join().unwrap();
}

#[test]
fn a_wrong_cluster_secret_is_refused_and_the_channels_fail() {
    let (a, b) = pair(Some("right"), Some("wrong"));
    let t = OutputType::of::<u64>();
    // Both ends refuse the other's proof and drop the peer with its channels.
    wait_until("both ends dropped the peer", || {
        a.output_channel("tm-b", id(0, 0), t.encode_batch).is_err()
            && b.input_channel("tm-a", id(0, 1), 2, t.decode_batch).is_err()
    });
    assert!(a.connected_peers().is_empty() && b.connected_peers().is_empty());
    assert_eq!(a.bytes_received() + b.bytes_received(), 0, "not one frame crossed");
}

#[test]
fn frames_of_an_earlier_attempt_are_refused_and_the_new_attempt_runs() {
    let (a, b) = pair(None, None);
    let (old_tx, old_rx) = channel(&a, &b, id(0, 0), 4);
    // Attempt 0 ends on the receiving TaskManager; a zombie sender goes on.
    b.release_attempt(42, 0);
    assert!(old_rx.recv_timeout(Duration::from_millis(100)).is_none(), "the old channel is closed");
    old_tx.send(batch([666])).unwrap();
    old_tx.send(StreamElement::EndOfInput).unwrap();
    let err =
        b.input_channel("tm-a", id(0, 1), 4, OutputType::of::<u64>().decode_batch).unwrap_err();
    assert!(err.to_string().contains("older than attempt 1"), "{err}");
    let (tx, rx) = channel(&a, &b, id(1, 0), 4);
    tx.send(batch([1])).unwrap();
    assert_eq!(values(rx.recv_timeout(WAIT).unwrap()), vec![1], "only the new attempt's data");
    assert_eq!(b.connected_peers(), vec!["tm-a"], "the connection outlives the attempt");
}

#[test]
fn a_task_manager_shutting_down_closes_the_channels_on_the_other_side() {
    let (a, b) = pair(None, None);
    let (tx, rx) = channel(&a, &b, id(0, 0), 1);
    let (back_tx, _back_rx) = channel(&b, &a, id(0, 1), 1);
    wait_until("connected", || b.connected_peers() == ["tm-a"]);
    a.shutdown();
    assert!(rx.recv_timeout(WAIT).is_none(), "the receiver sees its channel close");
    back_tx.send(batch([1])).ok();
    wait_until("b's sender fails", || {
        matches!(back_tx.send(batch([2])), Err(SendError::Disconnected(_)))
    });
    drop(tx);
}

#[test]
fn a_data_address_off_loopback_needs_a_secret() {
    let err = NetworkEnvironment::start(NetworkConfig {
        task_manager: "tm".into(),
        bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        secret: None,
        tls: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("needs a cluster secret"), "{err}");
}

#[test]
fn a_dropped_receiver_stops_its_sender_waiting_for_credit() {
    let (a, b) = pair(None, None);
    let (tx, rx) = channel(&a, &b, id(0, 0), 1);
    tx.send(batch([1])).unwrap();
    let sender = std::thread::spawn(move || tx.send(batch([2])));
    // The receiving task ends (it failed or was cancelled) without taking anything.
    drop(rx);
    assert!(matches!(sender.join().unwrap(), Err(SendError::Disconnected("records"))));
}

#[test]
fn a_sender_dropped_before_end_of_input_closes_the_receivers_channel() {
    let (a, b) = pair(None, None);
    let (tx, rx) = channel(&a, &b, id(0, 0), 2);
    tx.send(batch([1])).unwrap();
    drop(tx);
    assert_eq!(values(rx.recv_timeout(WAIT).unwrap()), vec![1]);
    assert!(rx.recv_timeout(WAIT).is_none(), "closed, as an in-memory channel whose sender failed");
}

#[test]
fn a_sender_registering_after_its_receiver_went_fails_at_once() {
    let (a, b) = pair(None, None);
    let t = OutputType::of::<u64>();
    drop(b.input_channel("tm-a", id(0, 0), 2, t.decode_batch).unwrap());
    wait_until("the close reached tm-a", || {
        let tx = a.output_channel("tm-b", id(0, 0), t.encode_batch).unwrap();
        matches!(tx.send(StreamElement::EndOfInput), Err(SendError::Disconnected(_)))
    });
}

/// The TLS settings of a TaskManager whose certificate, for 127.0.0.1, a
/// fresh CA signed; the PEM files are written to `dir`.
fn certificates(dir: &std::path::Path, name: &str) -> DataTls {
    let [cert, key, ca] = sluice_runtime::network::tls::testing::certificates(dir, name);
    DataTls::load(&cert, &key, &ca).unwrap()
}

fn tls_environment(id: &str, tls: DataTls) -> NetworkEnvironment {
    NetworkEnvironment::start(NetworkConfig {
        task_manager: id.into(),
        bind: LOOPBACK.parse().unwrap(),
        secret: None,
        tls: Some(tls),
    })
    .unwrap()
}

#[test]
fn over_mutual_tls_channels_carry_records_and_control_elements_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificates(dir.path(), "cluster");
    let (a, b) = (tls_environment("tm-a", tls.clone()), tls_environment("tm-b", tls));
    a.connect("tm-b", b.address()).unwrap();
    b.connect("tm-a", a.address()).unwrap();
    let (tx, rx) = channel(&a, &b, id(0, 0), 2);
    let (back_tx, back_rx) = channel(&b, &a, id(0, 1), 2);
    let sender = std::thread::spawn(move || {
        for i in 0..500u64 {
            tx.send(batch(i * 100..(i + 1) * 100)).unwrap();
        }
        // Batches far larger than a TLS record (16 KiB) and than rustls's buffers.
        for i in 0..5u64 {
            tx.send(batch(50_000 + i * 100_000..50_000 + (i + 1) * 100_000)).unwrap();
        }
        tx.send(StreamElement::Watermark(Watermark(7))).unwrap();
        tx.send(StreamElement::EndOfInput).unwrap();
    });
    back_tx.send(batch([42])).unwrap();
    let mut next = 0;
    loop {
        match rx.recv_timeout(WAIT).expect("an element in time") {
            StreamElement::Records(b) => {
                for v in values(StreamElement::Records(b)) {
                    assert_eq!(v, next);
                    next += 1;
                }
            }
            StreamElement::Watermark(w) => assert_eq!((w, next), (Watermark(7), 550_000)),
            StreamElement::EndOfInput => break,
            other => panic!("{other:?}"),
        }
    }
    sender.join().unwrap();
    assert_eq!(values(back_rx.recv_timeout(WAIT).unwrap()), vec![42]);
    assert_eq!(a.connected_peers(), vec!["tm-b"]);
}

#[test]
fn a_task_manager_whose_certificate_another_ca_signed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = tls_environment("tm-a", certificates(dir.path(), "cluster"));
    let b = tls_environment("tm-b", certificates(dir.path(), "stranger"));
    a.connect("tm-b", b.address()).unwrap();
    b.connect("tm-a", a.address()).unwrap();
    let t = OutputType::of::<u64>();
    wait_until("both ends dropped the peer", || {
        a.output_channel("tm-b", id(0, 0), t.encode_batch).is_err()
            && b.input_channel("tm-a", id(0, 1), 2, t.decode_batch).is_err()
    });
    assert_eq!(a.bytes_received() + b.bytes_received(), 0, "not one frame crossed");
}
