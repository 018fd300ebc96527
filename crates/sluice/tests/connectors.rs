//! Sources and sinks read and write exactly what they should.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sluice::connectors::{DataGeneratorSource, FileSource};
use sluice::StreamExecutionEnvironment;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Bid {
    auction: u64,
    price: u64,
}

#[test]
fn ndjson_directories_are_read_recursively_skipping_hidden_files_and_written_back() {
    let input = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = input.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    };
    write("a.json", "{\"auction\":1,\"price\":10}\n\n{\"auction\":2,\"price\":20}\n");
    write("nested/b.json", "{\"auction\":3,\"price\":30}");
    write(".hidden.json", "not json");
    write("_SUCCESS", "not json either");
    let output = tempfile::tempdir().unwrap();

    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    env.from_source(FileSource::<Bid>::ndjson(input.path()), "bids")
        .map(|b: Bid| Bid { price: b.price * 2, ..b })
        .write_as_ndjson(output.path());
    env.execute("ndjson round trip").unwrap();

    let mut written = Vec::new();
    for entry in std::fs::read_dir(output.path()).unwrap() {
        let path = entry.unwrap().path();
        assert!(path.file_name().unwrap().to_str().unwrap().starts_with("part-"));
        for line in std::fs::read_to_string(path).unwrap().lines() {
            written.push(serde_json::from_str::<Bid>(line).unwrap());
        }
    }
    written.sort();
    let expected: Vec<Bid> =
        [(1, 20), (2, 40), (3, 60)].map(|(auction, price)| Bid { auction, price }).to_vec();
    assert_eq!(written, expected);
}

#[test]
fn the_text_sink_writes_one_line_per_record_into_part_files() {
    let output = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(3);
    env.from_sequence(100).write_as_text(output.path());
    env.execute("text sink").unwrap();
    let mut files: Vec<String> = std::fs::read_dir(output.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, vec!["part-0.txt", "part-1.txt", "part-2.txt"]);
    let mut numbers: Vec<u64> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(output.path().join(f))
                .unwrap()
                .lines()
                .map(|l| l.parse().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, (0..100).collect::<Vec<_>>());
}

#[test]
fn a_socket_source_reads_every_line_until_the_server_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for i in 0..500 {
            writeln!(conn, "to be or not to be {i}").unwrap();
        }
        write!(conn, "last line without newline").unwrap();
    });
    let env = StreamExecutionEnvironment::new();
    let words = env
        .socket_text_stream("127.0.0.1", port)
        .flat_map(|l: String| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .key_by(|(w, _): &(String, u64)| w.clone())
        .sum(|(_, c)| c)
        .set_parallelism(2)
        .collect();
    env.execute("socket word count").unwrap();
    server.join().unwrap();
    let mut finals = BTreeMap::new();
    for (w, c) in words.take() {
        let e = finals.entry(w).or_insert(0);
        *e = c.max(*e);
    }
    assert_eq!(finals["to"], 1000);
    assert_eq!(finals["be"], 1000);
    assert_eq!(finals["or"], 500);
    assert_eq!(finals["499"], 1);
    assert_eq!(finals["newline"], 1);
}

#[test]
fn a_collection_is_read_exactly_once_at_any_parallelism() {
    for p in [1, 3, 7] {
        let env = StreamExecutionEnvironment::new();
        env.set_parallelism(p);
        let out = env.from_collection((0..10u32).collect()).collect();
        env.execute("collection").unwrap();
        let mut got = out.take();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>(), "parallelism {p}");
    }
}

#[test]
fn a_rate_limited_generator_emits_no_faster_than_its_rate() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let source = DataGeneratorSource::new(|i| i * 10, Some(300)).with_rate(1000.0).unwrap();
    let out = env.from_source(source, "paced").collect();
    let started = Instant::now();
    env.execute("paced").unwrap();
    // 300 records at 1000/s cannot be done in less than about 0.3 s.
    assert!(started.elapsed().as_millis() >= 250, "took {:?}", started.elapsed());
    let mut got = out.take();
    got.sort();
    assert_eq!(got, (0..300).map(|i| i * 10).collect::<Vec<u64>>());
}

#[test]
fn lines_longer_than_the_read_buffer_and_lines_across_its_end_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    // Lengths vary so that lines straddle every read-buffer boundary; one
    // line is longer than the whole buffer.
    let mut expected: Vec<String> =
        (0..60_000).map(|i| format!("{i}:{}", "x".repeat(i % 97))).collect();
    expected.insert(30_000, "y".repeat(3 << 20));
    std::fs::write(&path, expected.join("\r\n") + "\n").unwrap();
    let env = StreamExecutionEnvironment::new();
    let lines = env.read_text_file(&path).execute_and_collect("long lines").unwrap();
    assert_eq!(lines.len(), expected.len());
    assert!(lines == expected, "lines differ");
}
