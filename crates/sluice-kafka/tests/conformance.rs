//! The broker conformance suite: what each test broker does, checked with a
//! real client (librdkafka). A test that needs a feature runs on a broker
//! that passes it; `docs/KAFKA.md` records the table this suite asserts.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_kafka::testing::{Broker, BrokerKind};

type Check = fn(&Broker) -> Result<(), String>;

fn produce_and_fetch(b: &Broker) -> Result<(), String> {
    let topic = Broker::unique_topic("conf-fetch");
    b.create_topic(&topic, 1);
    b.produce(&topic, 0, (0..50).map(|i| format!("v{i}").into_bytes()));
    let values = visible(b, &topic, false, Duration::from_secs(2));
    let expected: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
    if values != expected {
        return Err(format!("fetched {values:?}"));
    }
    Ok(())
}

fn latest_offsets_count_the_records(b: &Broker) -> Result<(), String> {
    let topic = Broker::unique_topic("conf-offsets");
    b.create_topic(&topic, 1);
    b.produce(&topic, 0, (0..50).map(|i| format!("v{i}").into_bytes()));
    let consumer = b.consumer("conf-offsets", false);
    match consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10)) {
        Ok((0, 50)) => Ok(()),
        other => Err(format!("watermarks after 50 records: {other:?}")),
    }
}

fn group_offsets(b: &Broker) -> Result<(), String> {
    let topic = Broker::unique_topic("conf-group");
    b.create_topic(&topic, 2);
    let group = Broker::unique_topic("group");
    let consumer = b.consumer(&group, false);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(7)).unwrap();
    tpl.add_partition_offset(&topic, 1, Offset::Offset(3)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).map_err(|e| e.to_string())?;
    let committed = b.committed(&group, &topic, 2);
    if committed != vec![Some(7), Some(3)] {
        return Err(format!("committed {committed:?}"));
    }
    Ok(())
}

fn create_partitions(b: &Broker) -> Result<(), String> {
    let topic = Broker::unique_topic("conf-grow");
    b.create_topic(&topic, 2);
    b.add_partitions(&topic, 4)
}

fn transactional(b: &Broker, id: &str) -> Result<BaseProducer, String> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &b.bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .create()
        .map_err(|e| e.to_string())?;
    producer.init_transactions(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    Ok(producer)
}

fn send(producer: &BaseProducer, topic: &str, value: &str) -> Result<(), String> {
    producer
        .send(BaseRecord::<(), str>::to(topic).partition(0).payload(value))
        .map_err(|(e, _)| e.to_string())?;
    producer.flush(Duration::from_secs(10)).map_err(|e| e.to_string())
}

/// Values a read_committed (or uncommitted) consumer sees within `wait`.
fn visible(b: &Broker, topic: &str, committed_only: bool, wait: Duration) -> Vec<String> {
    let consumer = b.consumer(&Broker::unique_topic("conf-read"), committed_only);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let until = Instant::now() + wait;
    let mut seen = Vec::new();
    while Instant::now() < until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    seen
}

fn read_committed_hides_aborted_and_open_transactions(b: &Broker) -> Result<(), String> {
    let topic = Broker::unique_topic("conf-txn");
    b.create_topic(&topic, 1);
    let producer = transactional(b, &Broker::unique_topic("txn"))?;
    let txn = |value: &str, commit: bool| -> Result<(), String> {
        producer.begin_transaction().map_err(|e| e.to_string())?;
        send(&producer, &topic, value)?;
        if commit {
            producer.commit_transaction(Duration::from_secs(10)).map_err(|e| e.to_string())
        } else {
            producer.abort_transaction(Duration::from_secs(10)).map_err(|e| e.to_string())
        }
    };
    txn("committed", true)?;
    txn("aborted", false)?;
    producer.begin_transaction().map_err(|e| e.to_string())?;
    send(&producer, &topic, "open")?;
    let committed = visible(b, &topic, true, Duration::from_secs(2));
    let all = visible(b, &topic, false, Duration::from_secs(1));
    // Noida never times an open transaction out: end it here.
    let _ = producer.abort_transaction(Duration::from_secs(10));
    if committed != ["committed"] {
        return Err(format!("read_committed saw {committed:?}"));
    }
    if all != ["committed", "aborted", "open"] {
        return Err(format!("read_uncommitted saw {all:?}"));
    }
    Ok(())
}

fn a_second_producer_fences_the_first(b: &Broker) -> Result<(), String> {
    let topic = Broker::unique_topic("conf-fence");
    b.create_topic(&topic, 1);
    let id = Broker::unique_topic("fence");
    let first = transactional(b, &id)?;
    first.begin_transaction().map_err(|e| e.to_string())?;
    send(&first, &topic, "zombie")?;
    let second = transactional(b, &id)?;
    let zombie = first.commit_transaction(Duration::from_secs(10));
    drop(second);
    match zombie {
        Err(e) if e.to_string().to_lowercase().contains("fenc") => Ok(()),
        Err(e) => Err(format!("the first producer failed, but not as fenced: {e}")),
        Ok(()) => Err("the first producer committed after a second one took its id".into()),
    }
}

const CHECKS: [(&str, Check); 6] = [
    ("produce and fetch", produce_and_fetch),
    ("ListOffsets: the latest offset counts the records", latest_offsets_count_the_records),
    ("consumer group offsets", group_offsets),
    ("CreatePartitions", create_partitions),
    (
        "read_committed hides aborted and open transactions",
        read_committed_hides_aborted_and_open_transactions,
    ),
    (
        "a second producer with the same transactional id fences the first",
        a_second_producer_fences_the_first,
    ),
];

/// Runs every check; what passed and what failed, with why.
fn conformance(kind: BrokerKind) -> Vec<(&'static str, Result<(), String>)> {
    let broker = Broker::get(kind);
    CHECKS.iter().map(|(name, check)| (*name, check(&broker))).collect()
}

fn assert_matrix(kind: BrokerKind, expected: [bool; 6]) {
    let results = conformance(kind);
    for ((name, result), expect) in results.iter().zip(expected) {
        eprintln!(
            "{kind:?}: {name}: {}",
            match result {
                Ok(()) => "pass".to_string(),
                Err(e) => format!("FAIL ({e})"),
            }
        );
        assert_eq!(
            result.is_ok(),
            expect,
            "{kind:?} {name}: {result:?} (docs/KAFKA.md says {expect})"
        );
    }
}

#[test]
fn noida_db_passes_every_check() {
    assert_matrix(BrokerKind::Noida, [true; 6]);
}

#[test]
fn tansu_fetches_and_keeps_group_offsets_but_fails_list_offsets_create_partitions_and_transactions()
{
    assert_matrix(BrokerKind::Tansu, [true, false, true, false, false, false]);
}
