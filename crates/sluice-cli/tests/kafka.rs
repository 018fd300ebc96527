//! `sluice run kafka-wordcount` as real processes against a real broker:
//! killed with `kill -9` several times and resumed from its latest
//! checkpoint (also at another parallelism). Exactly once, a read_committed
//! reader of the output sees, for every word, the counts 1, 2, …, n once
//! each; at least once, nothing is lost.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_kafka::testing::{Broker, BrokerKind};

/// A `sluice` process, killed when the test ends, also when it fails.
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    broker: &Broker,
    input: &str,
    output: &str,
    checkpoints: &Path,
    parallelism: usize,
    guarantee: &str,
    resume: bool,
) -> Job {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["run", "kafka-wordcount", "--bootstrap-servers", &broker.bootstrap])
        .args(["--input-topic", input, "--output-topic", output, "--group-id", output])
        .args(["--parallelism", &parallelism.to_string(), "--delivery-guarantee", guarantee])
        .args(["--checkpoint-interval", "100ms", "--checkpoint-dir", checkpoints.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if resume {
        command.args(["--from-checkpoint", "latest"]);
    }
    Job(command.spawn().expect("sluice runs"))
}

/// The highest id of a completed checkpoint under `dir` (old ones are pruned).
fn latest_checkpoint(dir: &Path) -> u64 {
    let Ok(jobs) = std::fs::read_dir(dir) else { return 0 };
    jobs.flatten()
        .flat_map(|job| std::fs::read_dir(job.path()).into_iter().flatten().flatten())
        .filter(|chk| chk.path().join("_metadata").exists())
        .filter_map(|chk| chk.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .max()
        .unwrap_or(0)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of words: word `w<k>` appears k+1 times per chunk.
fn chunk(n: usize) -> Vec<Vec<u8>> {
    (0..40).map(|line| format!("w{} w{} chunk{n}", line % 5, line % 3).into_bytes()).collect()
}

fn expected(chunks: usize) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for n in 0..chunks {
        for line in chunk(n) {
            for word in String::from_utf8(line).unwrap().split(' ') {
                *counts.entry(word.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Feeds chunks while the job is killed and resumed; returns the output as word → counts seen.
fn run_with_kills(guarantee: &str) -> (BTreeMap<String, u64>, BTreeMap<String, Vec<u64>>) {
    let broker = Broker::get(BrokerKind::Noida);
    let input = Broker::unique_topic("wc-in");
    let output = Broker::unique_topic("wc-out");
    broker.create_topic(&input, 4);
    broker.create_topic(&output, 3);
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let parallelisms = [2, 2, 3, 1];
    let mut job = start(&broker, &input, &output, &checkpoints, parallelisms[0], guarantee, false);
    let chunks = parallelisms.len();
    for (n, next_parallelism) in parallelisms.iter().enumerate().skip(1) {
        broker.produce(&input, (n % 4) as i32, chunk(n - 1));
        let before = latest_checkpoint(&checkpoints);
        wait_until("checkpoints after new input", || latest_checkpoint(&checkpoints) >= before + 3);
        // The real process, by its own pid: no clean-up, no abort.
        let pid = job.0.id();
        assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
        let _ = job.0.wait();
        job = start(&broker, &input, &output, &checkpoints, *next_parallelism, guarantee, true);
    }
    broker.produce(&input, 0, chunk(chunks - 1));
    // Everything read is in a completed checkpoint once the group's offsets reach the end.
    let consumer = broker.consumer("wc-watch", false);
    wait_until("every line in a checkpoint", || {
        let committed = broker.committed(&output, &input, 4);
        (0..4).all(|p| {
            let end = rdkafka::consumer::Consumer::fetch_watermarks(
                &consumer,
                &input,
                p,
                Duration::from_secs(5),
            )
            .unwrap()
            .1;
            end == 0 || committed[p as usize] == Some(end)
        })
    });
    // A graceful stop: a savepoint, so everything committed, then the end.
    let pid = job.0.id();
    assert!(Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap().success());
    let status = job.0.wait().unwrap();
    assert!(status.success(), "the job stops cleanly on Ctrl-C: {status:?}");
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (word, count) in read_counts(&broker, &output) {
        seen.entry(word).or_default().push(count);
    }
    (expected(chunks), seen)
}

/// (word, count) pairs a read_committed reader sees, in order per partition.
fn read_counts(broker: &Broker, topic: &str) -> Vec<(String, u64)> {
    use rdkafka::consumer::Consumer;
    use rdkafka::Message;
    let consumer = broker.consumer(&Broker::unique_topic("wc-read"), true);
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
        ends.insert(p, consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).unwrap().1);
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let positions: BTreeMap<i32, i64> = consumer
            .position()
            .unwrap()
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(0)))
            .collect();
        if ends.iter().all(|(p, end)| positions.get(p).copied().unwrap_or(0) >= *end) {
            return out;
        }
        assert!(Instant::now() < until, "reading the output timed out: an open transaction?");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let word = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let count: u64 = std::str::from_utf8(m.payload().unwrap()).unwrap().parse().unwrap();
            out.push((word, count));
        }
    }
}

#[test]
fn exactly_once_word_counts_survive_kill_9_and_resume_at_other_parallelisms() {
    let (expected, seen) = run_with_kills("exactly-once");
    assert_eq!(seen.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (word, n) in &expected {
        let counts = &seen[word];
        assert_eq!(
            counts,
            &(1..=*n).collect::<Vec<_>>(),
            "{word}: each count 1..={n} once, in order"
        );
    }
}

#[test]
fn at_least_once_word_counts_lose_nothing_across_kill_9() {
    let (expected, seen) = run_with_kills("at-least-once");
    let mut duplicates = 0;
    for (word, n) in &expected {
        let counts = &seen[word];
        for c in 1..=*n {
            let times = counts.iter().filter(|x| **x == c).count();
            assert!(times >= 1, "{word}: count {c} lost");
            duplicates += times - 1;
        }
    }
    eprintln!("at least once across 3 kills: {duplicates} duplicated counts");
}

#[test]
fn kafka_produce_writes_each_line_and_consume_prints_the_topic_to_its_end() {
    let broker = Broker::get(BrokerKind::Noida);
    let topic = Broker::unique_topic("tools");
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    let mut produce = Command::new(sluice)
        .args(["kafka", "produce", "--bootstrap-servers", &broker.bootstrap, "--topic", &topic])
        .args(["--partitions", "3"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = produce.stdin.take().unwrap();
        stdin.write_all((lines.join("\n") + "\n").as_bytes()).unwrap();
    }
    let produced = produce.wait_with_output().unwrap();
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));
    assert!(String::from_utf8_lossy(&produced.stderr).contains("wrote 500 records"));

    let consumed = Command::new(sluice)
        .args(["kafka", "consume", "--bootstrap-servers", &broker.bootstrap, "--topic", &topic])
        .arg("--read-committed")
        .output()
        .unwrap();
    assert!(consumed.status.success(), "{}", String::from_utf8_lossy(&consumed.stderr));
    let mut values: Vec<String> = String::from_utf8(consumed.stdout)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix('\t').expect("no key").to_string())
        .collect();
    values.sort_by_key(|v| v[5..].parse::<u32>().unwrap());
    assert_eq!(values, lines, "every line once");

    let missing = Command::new(sluice)
        .args(["kafka", "consume", "--bootstrap-servers", &broker.bootstrap])
        .args(["--topic", "no-such-topic-here"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(text.contains("topic 'no-such-topic-here' does not exist"), "{text}");
}
