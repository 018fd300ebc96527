//! The web UI in a real headless browser (Debian's chromium, driven by
//! `scripts/ui-browser`, which `scripts/test` installs): `sluice run
//! pipeline --sink-rate` as its own process, its job graph with every
//! vertex and the throttled sink's upstream vertex HIGH, the checkpoint
//! table filling up, no console errors. Screenshots of the job page and the
//! checkpoint page go to `target/ui-screenshots/`. Also the JSON log format.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A `sluice` process, killed when the test ends, also when it fails.
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn the_web_ui_shows_the_job_graph_backpressure_and_checkpoints_in_a_real_browser() {
    let checkpoints = tempfile::tempdir().unwrap();
    let mut job = Job(Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "pipeline", "--events", "1000000000", "--sink-rate", "3000"])
        .args(["--checkpoint-interval", "300ms", "--checkpoint-dir"])
        .arg(checkpoints.path())
        .args(["--rest-address", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    // The address is printed at start.
    let stderr = BufReader::new(job.0.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Web UI and REST API: ").map(str::to_string))
        .expect("the address line");
    std::thread::spawn(move || lines.for_each(drop)); // keep the pipe drained
    let base = url.trim_end_matches('/').to_string();
    // The server is up before the job is submitted: wait for the job.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let job_id = loop {
        let jobs: serde_json::Value =
            ureq::get(&format!("{base}/jobs")).call().unwrap().body_mut().read_json().unwrap();
        if let Some(id) = jobs["jobs"][0]["id"].as_str() {
            break id.to_string();
        }
        assert!(std::time::Instant::now() < until, "no job listed at {base}/jobs");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };

    let shots = workspace().join("target/ui-screenshots");
    let check = Command::new(workspace().join("scripts/ui-browser"))
        .args(["check", "--base", &base, "--job", &job_id, "--vertices", "2", "--expect-high"])
        .arg("--out")
        .arg(&shots)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        check.status.success(),
        "the browser check failed (is the browser installed? scripts/ui-browser install):\n{report}"
    );
    for shot in ["job.png", "checkpoints.png"] {
        let size = std::fs::metadata(shots.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{shot} written: {size} bytes\n{report}");
    }
}

#[test]
fn json_logs_carry_the_job_vertex_subtask_and_attempt_of_the_task() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"good line\n\xff\xfe bad\nanother good line\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log-format", "json", "run", "wordcount", "--on-decode-error", "skip"])
        .arg("--input")
        .arg(dir.path())
        .args(["--rest-address", "none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let skipped: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("a.txt")))
        .unwrap_or_else(|| panic!("a JSON line about the skipped record:\n{stderr}"));
    let span = &skipped["span"];
    assert_eq!(span["job"], "word count", "{skipped}");
    assert!(span["vertex"].as_str().unwrap().starts_with("Source"), "{skipped}");
    assert_eq!(span["subtask"], 0, "{skipped}");
    assert_eq!(span["attempt"], 0, "{skipped}");
}

#[test]
fn a_bad_rest_address_or_a_public_one_without_a_token_is_refused_before_the_job_starts() {
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "pipeline", "--events", "10"])
            .args(extra)
            .env_remove("SLUICE_REST_TOKEN")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, stderr) = run(&["--rest-address", "localhost-ish"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--rest-address 'localhost-ish'"), "{stderr}");
    let (code, stderr) = run(&["--rest-address", "0.0.0.0:0"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not loopback") && stderr.contains("--rest-token"), "{stderr}");
    let (code, stderr) = run(&["--rest-address", "0.0.0.0:0", "--rest-token", "t0ken"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Web UI and REST API: http://0.0.0.0:"), "{stderr}");
}
