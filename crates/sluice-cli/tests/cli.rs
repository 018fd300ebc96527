//! The `sluice` command as a user runs it.

use std::io::Write;
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).output().expect("the sluice binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_command() {
    let out = sluice(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in ["run", "plan", "bench"] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn an_unknown_flag_exits_with_code_2_and_usage() {
    let out = sluice(&["run", "wordcount", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--no-such-flag") && err.contains("Usage"), "{err}");
}

#[test]
fn run_wordcount_prints_the_final_counts_and_no_progress_when_not_a_terminal() {
    let mut input = tempfile::NamedTempFile::new().unwrap();
    writeln!(input, "the cat and the hat\nThe end").unwrap();
    let out = sluice(&[
        "run",
        "wordcount",
        "--input",
        input.path().to_str().unwrap(),
        "--parallelism",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "the\t3\nand\t1\ncat\t1\nend\t1\nhat\t1\n");
    assert!(!text(&out.stderr).contains("records/s"), "no progress display off a terminal");
}

#[test]
fn run_wordcount_on_a_missing_file_exits_1_naming_the_file() {
    let out = sluice(&["run", "wordcount", "--input", "/no/such/words.txt"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("/no/such/words.txt") && err.contains("No such file"), "{err}");
}

#[test]
fn run_wordcount_without_input_says_what_is_missing() {
    let out = sluice(&["run", "wordcount"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--input"), "{}", text(&out.stderr));
}

#[test]
fn run_with_parallelism_zero_is_refused() {
    let out = sluice(&["run", "pipeline", "--events", "10", "--parallelism", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("parallelism 0"), "{}", text(&out.stderr));
}

#[test]
fn plan_prints_the_classic_placement_as_json() {
    let input = tempfile::NamedTempFile::new().unwrap();
    let out = sluice(&[
        "plan",
        "wordcount",
        "--input",
        input.path().to_str().unwrap(),
        "--parallelism",
        "4",
        "--reduce-parallelism",
        "3",
        "--task-managers",
        "2",
        "--slots",
        "3",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["execution_graph"]["slots_used"].as_array().unwrap().len(), 4);
    assert_eq!(plan["job_graph"][0]["name"], "Source: words -> Flat Map -> Map");
    assert_eq!(plan["job_graph"][0]["parallelism"], 4);
    assert_eq!(plan["job_graph"][1]["name"], "count -> Sink: final counts");
    assert_eq!(plan["job_graph"][1]["parallelism"], 3);
}

#[test]
fn plan_needs_both_cluster_dimensions() {
    let out = sluice(&["plan", "pipeline", "--task-managers", "2"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_pipeline_runs_on_tiny_input_and_prints_its_figures() {
    let out =
        sluice(&["bench", "pipeline", "--events", "20000", "--runs", "1", "--parallelism", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("events/s:") && report.contains("events/CPU-second:"), "{report}");
}

#[test]
fn bench_network_moves_every_record_over_one_loopback_connection_and_prints_bytes_per_second() {
    let out =
        sluice(&["bench", "network", "--events", "20000", "--runs", "2", "--record-bytes", "64"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("GB/s on the wire") && report.contains("bytes/s:"), "{report}");
    assert!(
        !text(&out.stderr).contains("WARN"),
        "an orderly shutdown is no loss: {}",
        text(&out.stderr)
    );
}

#[test]
fn run_wordcount_across_task_managers_over_tcp_prints_the_same_counts() {
    let mut input = tempfile::NamedTempFile::new().unwrap();
    for i in 0..20_000 {
        writeln!(input, "w{} x{}", i % 97, i % 7).unwrap();
    }
    let path = input.path().to_str().unwrap();
    let in_memory = sluice(&["run", "wordcount", "--input", path, "--parallelism", "2"]);
    let over_tcp = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "wordcount", "--input", path, "--parallelism", "2"])
        .args(["--task-managers", "2", "--slots", "1", "--data-plane", "tcp"])
        .env("RUST_LOG", "sluice_runtime::network=info,sluice_cluster::scheduler=info")
        .output()
        .unwrap();
    assert!(over_tcp.status.success(), "{}", text(&over_tcp.stderr));
    let lines = |o: &Output| {
        let mut l: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(lines(&over_tcp), lines(&in_memory));
    let log = text(&over_tcp.stderr);
    assert!(log.contains("data connection up task_manager=tm-0 peer=tm-1"), "{log}");
    // Slot sharing: subtask i of every vertex shares TaskManager i's slot.
    for (subtask, tm) in [("1/2", "tm-0"), ("2/2", "tm-1")] {
        for vertex in ["Source: words -> Flat Map -> Map", "count -> Sink: final counts"] {
            let placed = format!("subtask={vertex} ({subtask}) task_manager={tm} slot=0");
            assert!(log.contains(&placed), "{placed} in {log}");
        }
    }
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn run_wordcount_into_a_closed_pipe_stops_quietly() {
    use std::process::Stdio;
    let mut input = tempfile::NamedTempFile::new().unwrap();
    for i in 0..20_000 {
        writeln!(input, "word{i}").unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "wordcount", "--input", input.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, as `| head -0` would
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("Broken pipe"), "{}", text(&out.stderr));
}

#[test]
fn nexmark_gen_writes_ndjson_that_bench_nexmark_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let file = file.to_str().unwrap();
    let out = sluice(&["nexmark", "gen", "--events", "2000", "--out", file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = std::fs::read_to_string(file).unwrap();
    assert_eq!(lines.lines().count(), 2000);
    assert!(lines.starts_with("{\"event_type\":0,\"person\":{\"id\":1000,"), "{}", &lines[..80]);
    assert!(lines.contains("\"dateTime\":\"2015-07-15 00:00:00.000\""));

    let out = sluice(&["bench", "nexmark", "--query", "q5", "--source", file, "--runs", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("sluice query=q5 parallelism=1 run=1 events=2000 "), "{report}");
    assert!(report.contains("p50_ms=") && report.contains("peak_rss_mib="), "{report}");
}

#[test]
fn bench_nexmark_runs_a_list_of_queries_each_in_its_own_process_and_prints_a_table() {
    let out = sluice(&[
        "bench",
        "nexmark",
        "--query",
        "q0,q7",
        "--events",
        "5000",
        "--runs",
        "1",
        "--parallelism",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for line in ["sluice summary query=q0 parallelism=2", "sluice summary query=q7 parallelism=2"] {
        assert!(report.contains(line), "{report}");
    }
    assert!(report.contains("per core median"), "{report}");
}

#[test]
fn bench_nexmark_refuses_an_unknown_query_and_a_missing_source_by_name() {
    let out = sluice(&["bench", "nexmark", "--query", "q10", "--events", "10"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("unknown Nexmark query 'q10'") && err.contains("q22"), "{err}");

    let out = sluice(&["bench", "nexmark", "--query", "q0", "--source", "/no/such/file"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("/no/such/file"), "{err}");
}

#[test]
fn nexmark_run_writes_the_answer_sorted_and_the_same_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let answer = |parallelism: &str| {
        let file = dir.path().join(format!("q7-p{parallelism}.ndjson"));
        let path = file.to_str().unwrap();
        let args = ["--events", "30000", "--event-rate", "1000", "--parallelism", parallelism];
        let out =
            sluice(&[&["nexmark", "run", "--query", "q7", "--output", path][..], &args].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("rows in the answer"), "{}", text(&out.stderr));
        std::fs::read_to_string(file).unwrap()
    };
    let one = answer("1");
    let rows: Vec<serde_json::Value> =
        one.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // q7: the highest bid of each 10 s window of 30 s: auction, price, bidder, time, extra.
    assert!(rows.len() >= 3, "{one}");
    assert!(rows.iter().all(|r| r.as_array().is_some_and(|r| r.len() == 5)), "{one}");
    let mut sorted: Vec<&str> = one.lines().collect();
    sorted.sort_unstable();
    assert_eq!(sorted, one.lines().collect::<Vec<_>>());
    assert_eq!(answer("2"), one);
}

#[test]
fn nexmark_run_refuses_a_processing_time_query_and_a_missing_source_by_name() {
    let out = sluice(&["nexmark", "run", "--query", "q12", "--output", "/tmp/unused"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("q12 follows processing time"), "{err}");

    let args = ["nexmark", "run", "--query", "q0", "--source", "/no/such/file", "--output", "x"];
    let out = sluice(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--source '/no/such/file'"), "{}", text(&out.stderr));
}

#[test]
fn nexmark_gen_refuses_a_zero_event_rate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let out = sluice(&[
        "nexmark",
        "gen",
        "--events",
        "10",
        "--event-rate",
        "0",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("event_rate"), "{}", text(&out.stderr));
}

/// A directory holding one binary file (not UTF-8 from its first line).
fn binary_input() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8 | 0x80).collect();
    std::fs::write(dir.path().join("data.bin"), bytes).unwrap();
    dir
}

#[test]
fn a_binary_input_with_checkpointing_shows_each_restart_then_exits_1_with_the_cause() {
    let input = binary_input();
    let checkpoints = tempfile::tempdir().unwrap();
    let out = sluice(&[
        "run",
        "wordcount",
        "--input",
        input.path().to_str().unwrap(),
        "--checkpoint-interval",
        "1s",
        "--checkpoint-dir",
        checkpoints.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let restarts: Vec<&str> = err.lines().filter(|l| l.contains("starts in")).collect();
    assert_eq!(restarts.len(), 2, "one line per restart at the default log level:\n{err}");
    assert!(restarts[0].contains("attempt 2 (restart 1) starts in 1s"), "{}", restarts[0]);
    assert!(restarts[1].contains("attempt 3 (restart 2) starts in 2s"), "{}", restarts[1]);
    for line in restarts {
        assert!(line.contains("operator 'Source: words' in subtask 1/1"), "{line}");
        assert!(line.contains("data.bin line 1: not UTF-8"), "{line}");
    }
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("error: job 'word count' failed: the same failure"), "{last}");
    assert!(last.contains("3 times") && last.contains("data.bin line 1: not UTF-8"), "{last}");
}

#[test]
fn on_decode_error_skip_counts_the_bad_lines_and_keeps_the_good_ones() {
    let input = binary_input();
    std::fs::write(input.path().join("words.txt"), b"the cat\n\xff\xfe\nthe hat\n").unwrap();
    let out = sluice(&[
        "run",
        "wordcount",
        "--input",
        input.path().to_str().unwrap(),
        "--on-decode-error",
        "skip",
    ]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text(&out.stdout), "the\t2\ncat\t1\nhat\t1\n");
    // The binary file has no newline: it is one bad line; words.txt has one more.
    assert!(err.contains("2 input records could not be decoded and were skipped"), "{err}");
    assert!(
        err.contains("data.bin line 1: not UTF-8"),
        "the first is logged with its place: {err}"
    );
}

#[test]
fn on_decode_error_takes_only_fail_or_skip() {
    let out = sluice(&["run", "wordcount", "--input", "x", "--on-decode-error", "ignore"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("[possible values: fail, skip]"));
}

/// Waits until the child's stderr has a line containing every one of
/// `needles`; returns everything read so far.
fn wait_for_line(stderr: &mut impl std::io::BufRead, seen: &mut String, needles: &[&str]) {
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "stderr ended before {needles:?}:\n{seen}"
        );
        seen.push_str(&line);
        if needles.iter().all(|n| line.contains(n)) {
            return;
        }
    }
}

/// A child process killed when the test ends, also when it fails.
struct Running(Option<std::process::Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_monitored_wordcount_reads_new_files_and_ctrl_c_stops_it_with_the_counts_so_far() {
    let input = tempfile::tempdir().unwrap();
    let checkpoints = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "wordcount", "--input", input.path().to_str().unwrap()])
        .args(["--monitor-interval", "50ms", "--checkpoint-interval", "100ms"])
        .args(["--checkpoint-dir", checkpoints.path().to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let pid = child.id();
    let mut child = Running(Some(child));
    let mut seen = String::new();
    wait_for_line(&mut stderr, &mut seen, &["job status", "Running"]);
    std::fs::write(input.path().join("a.txt"), "to be or not to be\n").unwrap();
    wait_for_line(&mut stderr, &mut seen, &["reader finished splits", "a.txt"]);
    std::fs::create_dir(input.path().join("later")).unwrap();
    std::fs::write(input.path().join("later").join("b.txt"), "be quick\n").unwrap();
    wait_for_line(&mut stderr, &mut seen, &["reader finished splits", "b.txt"]);
    let status = Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);
    assert!(out.status.success(), "{seen}");
    assert_eq!(text(&out.stdout), "be\t3\nto\t2\nnot\t1\nor\t1\nquick\t1\n");
    assert!(seen.contains("savepoint written to"), "{seen}");
    assert!(seen.contains("job 'word count' stopped"), "{seen}");
}
