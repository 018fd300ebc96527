//! Sluice and the hand-written loop give the same answer to every Nexmark
//! query, on every shape of data the benchmark uses, at parallelism 1 and 2:
//! `sluice_nexmark::answer::run` against `nexmark-handwritten --print`, in
//! the one answer format both write (docs/NEXMARK.md).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

use sluice_connectors::nexmark::{json, GeneratorConfig};
use sluice_nexmark::{NexmarkInput, Query};

/// Events per file: at 1,000 events per second of event time, 30 s, so the
/// 10 s windows of q5, q7 and q8 fire several times.
const EVENTS: u64 = 20_000;

fn write_events(config: &GeneratorConfig, path: &Path) {
    let mut out = BufWriter::new(File::create(path).unwrap());
    for n in 0..EVENTS {
        json::write_event(&config.event_at(n, Some(EVENTS)), &mut out).unwrap();
    }
    out.flush().unwrap();
}

fn handwritten_answer(query: Query, input: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_nexmark-handwritten"))
        .args(["--query", &query.to_string(), "--runs", "1", "--print", "--input"])
        .arg(input)
        .output()
        .unwrap();
    assert!(output.status.success(), "{query}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn sluice_answer(query: Query, input: &Path, parallelism: usize) -> String {
    let answer = sluice_nexmark::answer::run(query, &NexmarkInput::File(input.into()), parallelism)
        .unwrap_or_else(|e| panic!("{query} at parallelism {parallelism}: {e}"));
    let mut out = Vec::new();
    answer.write_to(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Every query but q12, whose processing-time windows make each run's answer
/// different, and q6 and q10, which the hand-written loop does not have.
fn checked_queries() -> impl Iterator<Item = Query> {
    Query::ALL.into_iter().filter(|q| !matches!(q, Query::Q6 | Query::Q12))
}

fn assert_same_answers(shape: &str, config: GeneratorConfig) {
    config.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(format!("{shape}.ndjson"));
    write_events(&config, &input);
    let mut empty = Vec::new();
    for query in checked_queries() {
        let expected = handwritten_answer(query, &input);
        if expected.is_empty() {
            empty.push(query);
        }
        for parallelism in [1, 2] {
            let actual = sluice_answer(query, &input, parallelism);
            if actual != expected {
                let first = actual.lines().zip(expected.lines()).position(|(a, e)| a != e);
                panic!(
                    "{shape}, {query}, parallelism {parallelism}: Sluice has {} rows, the \
                     hand-written loop {}; first difference at row {first:?}",
                    actual.lines().count(),
                    expected.lines().count()
                );
            }
        }
    }
    // A query with no rows would compare nothing.
    assert!(empty.is_empty(), "{shape}: no rows to compare for {empty:?}");
}

fn config() -> GeneratorConfig {
    GeneratorConfig { event_rate: 1000, ..GeneratorConfig::default() }
}

#[test]
fn same_answers_on_the_generators_default_shape() {
    assert_same_answers("default", config());
}

#[test]
fn same_answers_with_10x_the_keys_in_flight() {
    let config =
        GeneratorConfig { num_in_flight_auctions: 1000, num_active_people: 10_000, ..config() };
    assert_same_answers("keys-10x", config);
}

#[test]
fn same_answers_with_100x_the_keys_in_flight() {
    let config =
        GeneratorConfig { num_in_flight_auctions: 10_000, num_active_people: 100_000, ..config() };
    assert_same_answers("keys-100x", config);
}

#[test]
fn same_answers_with_no_hot_auctions_sellers_or_bidders() {
    let config = GeneratorConfig {
        hot_auction_ratio: 1,
        hot_sellers_ratio: 1,
        hot_bidders_ratio: 1,
        ..config()
    };
    assert_same_answers("uniform", config);
}
