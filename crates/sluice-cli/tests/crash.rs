//! `kill -9` of a checkpointing `sluice run`, then a restart with
//! `--from-checkpoint latest`: the committed output equals a run without a crash.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// Every committed line of the part files in `dir`, sorted.
fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
            lines.extend(std::fs::read_to_string(&path).unwrap().lines().map(str::to_owned));
        }
    }
    lines.sort();
    lines
}

/// Checkpoints with a `_metadata` under `dir`.
fn completed_checkpoints(dir: &Path) -> usize {
    let Ok(jobs) = std::fs::read_dir(dir) else { return 0 };
    jobs.flatten()
        .flat_map(|job| std::fs::read_dir(job.path()).into_iter().flatten().flatten())
        .filter(|chk| chk.path().join("_metadata").exists())
        .count()
}

const JOB: [&str; 8] = ["run", "counting", "--events", "40000", "--keys", "10", "--rate", "20000"];

#[test]
fn a_kill_9_and_a_resume_from_the_latest_checkpoint_give_exactly_the_output_of_a_run_without_crash()
{
    let dir = tempfile::tempdir().unwrap();
    let (clean, crashed, checkpoints) =
        (dir.path().join("clean"), dir.path().join("crashed"), dir.path().join("ckpt"));

    let status = sluice().args(JOB).arg("--output").arg(&clean).status().unwrap();
    assert!(status.success());
    let expected = committed_lines(&clean);
    assert_eq!(expected.len(), 40_000, "one rolling count per event");

    let ckpt_args =
        ["--checkpoint-interval", "100ms", "--checkpoint-dir", checkpoints.to_str().unwrap()];
    let mut child = sluice()
        .args(JOB)
        .arg("--output")
        .arg(&crashed)
        .args(ckpt_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while completed_checkpoints(&checkpoints) < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "no checkpoint completed");
        assert!(child.try_wait().unwrap().is_none(), "the job ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup, no final commit
    child.wait().unwrap();
    let before_resume = committed_lines(&crashed).len();
    assert!(
        before_resume < 40_000,
        "the crash cut the run short ({before_resume} lines committed)"
    );

    let output = sluice()
        .args(JOB)
        .arg("--output")
        .arg(&crashed)
        .args(ckpt_args)
        .args(["--from-checkpoint", "latest"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(committed_lines(&crashed), expected, "exactly once: nothing lost, nothing doubled");
}

#[test]
fn resuming_without_any_checkpoint_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice()
        .args([
            "run",
            "counting",
            "--events",
            "10",
            "--checkpoint-dir",
            dir.path().to_str().unwrap(),
            "--from-checkpoint",
            "latest",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("no completed checkpoint") && err.contains(dir.path().to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn a_bad_checkpoint_interval_is_a_usage_error() {
    let output =
        sluice().args(["run", "counting", "--checkpoint-interval", "ten"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a duration"));
}
