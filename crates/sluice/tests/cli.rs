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
