//! A standalone cluster as a user starts it: a `sluice jobmanager` process
//! and `sluice taskmanager` processes on free ports, each killed by its own
//! pid when the test ends. TaskManagers register; a killed one is lost at
//! once, a paused one after the heartbeat timeout; wrong secrets are refused.
//! Jobs submitted to it run on its TaskManagers, recover from a lost one,
//! and commit their output exactly once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::Process;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// A JobManager on a free loopback port, and its address.
fn job_manager(dir: &Path, extra: &[&str]) -> (Process, String) {
    let mut args = vec!["jobmanager", "--rpc-address", "127.0.0.1:0", "--heartbeat-timeout", "2s"];
    args.extend_from_slice(extra);
    let jm = Process::start(SLUICE, dir, "jobmanager", &args);
    let log = jm.wait_for("JobManager listening", 1);
    let address =
        log.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    (jm, address)
}

fn task_manager(dir: &Path, jm: &str, id: &str, slots: &str, extra: &[&str]) -> Process {
    let mut args = vec!["taskmanager", "--jobmanager", jm, "--id", id, "--slots", slots];
    args.extend_from_slice(extra);
    Process::start(SLUICE, dir, id, &args)
}

fn list(jm: &str, extra: &[&str]) -> std::process::Output {
    Command::new(SLUICE).args(["task-managers", "--jobmanager", jm]).args(extra).output().unwrap()
}

#[test]
fn task_managers_register_their_slots_and_a_killed_one_is_lost_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address) = job_manager(dir.path(), &[]);
    assert!(jm
        .log()
        .contains("no cluster secret and no TLS: the JobManager listens on loopback only"));
    let a = task_manager(dir.path(), &address, "tm-a", "2", &[]);
    let b = task_manager(dir.path(), &address, "tm-b", "3", &[]);
    jm.wait_for("TaskManager registered", 2);
    let listing = String::from_utf8(list(&address, &[]).stdout).unwrap();
    assert!(listing.contains("tm-a") && listing.contains("tm-b"), "{listing}");
    assert!(listing.contains("2 TaskManagers, 5 slots"), "{listing}");
    a.signal("-KILL");
    // A broken connection is a loss at once, long before the 2 s heartbeat timeout.
    let log = jm.wait_for("TaskManager lost: its connection closed", 1);
    assert!(log.contains("task_manager=\"tm-a\" remaining=1"), "{log}");
    let listing = String::from_utf8(list(&address, &[]).stdout).unwrap();
    assert!(!listing.contains("tm-a") && listing.contains("1 TaskManagers, 3 slots"), "{listing}");
    // A TaskManager stopped on purpose is gone, not lost.
    b.signal("-TERM");
    let log = jm.wait_for("TaskManager stopped", 1);
    assert_eq!(log.matches("TaskManager lost").count(), 1, "{log}");
}

#[test]
fn a_job_manager_stopped_on_purpose_reports_no_task_manager_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address) = job_manager(dir.path(), &[]);
    let tm = task_manager(dir.path(), &address, "tm-a", "1", &[]);
    jm.wait_for("TaskManager registered", 1);
    jm.signal("-TERM");
    let log = jm.wait_for("JobManager stopped", 1);
    assert!(!log.contains("TaskManager lost"), "{log}");
    tm.wait_for("registering again", 1);
}

#[test]
fn a_paused_task_manager_is_lost_after_the_heartbeat_timeout_and_registers_again_when_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address) = job_manager(dir.path(), &[]);
    let tm = task_manager(dir.path(), &address, "tm-z", "1", &[]);
    jm.wait_for("TaskManager registered", 1);
    tm.signal("-STOP");
    let log = jm.wait_for("TaskManager lost: no heartbeat for", 1);
    assert!(log.contains("task_manager=\"tm-z\""), "{log}");
    tm.signal("-CONT");
    // It learns of its loss from its ended registration or its next heartbeat.
    tm.wait_for("registering again", 1);
    jm.wait_for("TaskManager registered", 2);
}

#[test]
fn a_wrong_cluster_secret_is_refused_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address) = job_manager(dir.path(), &["--cluster-secret", "right"]);
    let mut intruder = Command::new(SLUICE)
        .args([
            "taskmanager",
            "--jobmanager",
            &address,
            "--id",
            "intruder",
            "--cluster-secret",
            "wrong",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = intruder.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut intruder.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("refused this TaskManager: wrong or missing cluster secret"), "{err}");
    jm.wait_for("refused an RPC: wrong or missing cluster secret", 1);
    let out = list(&address, &[]);
    assert!(!out.status.success(), "no secret, no answer");
    let _ok = task_manager(dir.path(), &address, "tm-1", "1", &["--cluster-secret", "right"]);
    jm.wait_for("TaskManager registered", 1);
    assert!(!jm.log().contains("intruder"), "the intruder never registered");
}

/// A CA, and a certificate it signed for 127.0.0.1 with its key, as PEM files in `dir`.
fn certificates(dir: &Path, name: &str) -> [String; 3] {
    sluice_runtime::network::tls::testing::certificates(dir, name)
        .map(|p| p.to_str().unwrap().to_string())
}

#[test]
fn over_mutual_tls_task_managers_register_and_a_peer_without_the_clusters_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let [cert, key, ca] = certificates(dir.path(), "cluster");
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str(), "--tls-ca", ca.as_str()];
    let (jm, address) = job_manager(dir.path(), &tls);
    assert!(jm.log().contains("tls=true"), "{}", jm.log());
    let _tm = task_manager(dir.path(), &address, "tm-tls", "2", &tls);
    jm.wait_for("TaskManager registered", 1);
    let listing = list(&address, &tls);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("tm-tls"), "{listing:?}");
    // Plain text, and a certificate from another CA, are both refused.
    assert!(!list(&address, &[]).status.success());
    let [other_cert, other_key, other_ca] = certificates(dir.path(), "other");
    let other = ["--tls-cert", &other_cert, "--tls-key", &other_key, "--tls-ca", &other_ca];
    assert!(!list(&address, &other).status.success());
    let stranger = ["--tls-cert", &other_cert, "--tls-key", &other_key, "--tls-ca", ca.as_str()];
    assert!(!list(&address, &stranger).status.success(), "its certificate is not the cluster CA's");
}

#[test]
fn without_a_secret_the_job_manager_refuses_an_address_off_loopback() {
    let out = Command::new(SLUICE)
        .args(["jobmanager", "--rpc-address", "0.0.0.0:0"])
        .env_remove("SLUICE_CLUSTER_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not on loopback, so the cluster needs a secret"), "{err}");
}

/// A free loopback port (for a JobManager that must come back on the same one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_task_manager_started_before_its_job_manager_registers_once_the_job_manager_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let tm = task_manager(dir.path(), &address, "tm-early", "1", &[]);
    let jm = Process::start(
        SLUICE,
        dir.path(),
        "jobmanager",
        &["jobmanager", "--rpc-address", &address],
    );
    jm.wait_for("TaskManager registered", 1);
    tm.wait_for("registered with the JobManager", 1);
}

#[test]
fn task_managers_register_again_with_a_restarted_job_manager() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let args = ["jobmanager", "--rpc-address", address.as_str()];
    let first = Process::start(SLUICE, dir.path(), "jobmanager-1", &args);
    first.wait_for("JobManager listening", 1);
    let tm = task_manager(dir.path(), &address, "tm-1", "2", &[]);
    first.wait_for("TaskManager registered", 1);
    first.signal("-KILL");
    tm.wait_for("registering again", 1);
    let second = Process::start(SLUICE, dir.path(), "jobmanager-2", &args);
    second.wait_for("TaskManager registered task_manager=tm-1 slots=2", 1);
}

/// `sluice ARGS` run to its end.
fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(SLUICE).args(args).output().unwrap()
}

/// Checks the counting job's committed (visible) output: each key's rolling counts
/// are 1, 2, … n with none missing and none twice, `events` in all.
/// Returns the number of part files.
fn assert_exactly_once(output: &Path, events: usize) -> usize {
    let mut counts: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    let mut parts = 0;
    for file in std::fs::read_dir(output).unwrap() {
        let file = file.unwrap();
        // Hidden files are transactions not committed (in progress, or
        // pending a checkpoint that never completed, as a zombie's are).
        if file.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        parts += 1;
        for line in std::fs::read_to_string(file.path()).unwrap().lines() {
            let [key, count]: [u64; 2] = serde_json::from_str(line).unwrap();
            counts.entry(key).or_default().push(count);
        }
    }
    let total: usize = counts.values().map(Vec::len).sum();
    assert_eq!(total, events, "lost or duplicated records");
    for (key, mut seen) in counts {
        seen.sort_unstable();
        assert!(seen.iter().enumerate().all(|(i, c)| *c == i as u64 + 1), "key {key}: {seen:?}");
    }
    parts
}

/// A JobManager and two TaskManagers with one slot each, registered.
fn cluster(dir: &Path) -> (Process, String, [Process; 2]) {
    let (jm, address) = job_manager(dir, &[]);
    let a = task_manager(dir, &address, "tm-a", "1", &[]);
    let b = task_manager(dir, &address, "tm-b", "1", &[]);
    jm.wait_for("TaskManager registered", 2);
    (jm, address, [a, b])
}

#[test]
fn a_word_count_submitted_to_a_standalone_cluster_prints_the_mini_clusters_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address, tms) = cluster(dir.path());
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let job =
        ["run", "wordcount", "--input", input, "--parallelism", "2", "--rest-address", "none"];
    let local = sluice(&job);
    let mut on_cluster = job.to_vec();
    on_cluster.extend(["--jobmanager", &address]);
    let remote = sluice(&on_cluster);
    let stderr = String::from_utf8_lossy(&remote.stderr);
    assert!(remote.status.success(), "{stderr}");
    assert!(local.stdout.len() > 1000);
    assert_eq!(remote.stdout, local.stdout, "{stderr}");
    // Each TaskManager ran its share: a source and a counter subtask.
    for tm in &tms {
        let log = tm.wait_for("deploying subtasks", 1);
        assert!(log.contains("job=word count attempt=0 subtasks=2"), "{log}");
    }
    // The JobManager's log says where each subtask ran.
    let log = jm.wait_for("job's slots released", 1);
    let placed =
        log.lines().filter(|l| l.contains("subtask placed")).collect::<Vec<_>>().join("\n");
    assert_eq!(placed.lines().count(), 4, "{placed}");
    assert!(
        placed.contains("task_manager=tm-a") && placed.contains("task_manager=tm-b"),
        "{placed}"
    );
    let jobs = String::from_utf8(sluice(&["list", "--jobmanager", &address]).stdout).unwrap();
    assert!(jobs.contains("word count") && jobs.contains("FINISHED"), "{jobs}");
    // `sluice plan` places the job on the cluster's free slots as they are.
    let mut plan = job[1..6].to_vec();
    plan.insert(0, "plan");
    plan.extend(["--jobmanager", &address]);
    let plan = String::from_utf8(sluice(&plan).stdout).unwrap();
    assert!(plan.contains("(1/2) -> TaskManager tm-a slot 1"), "{plan}");
    assert!(plan.contains("(2/2) -> TaskManager tm-b slot 1"), "{plan}");
}

#[test]
fn a_checkpointed_job_on_a_standalone_cluster_commits_every_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_jm, address, _tms) = cluster(dir.path());
    let output = dir.path().join("out");
    let run = counting(dir.path(), &address, "20000", "2", "10000").output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let parts = assert_exactly_once(&output, 20000);
    // Transactions were committed at checkpoints, not only at the end.
    assert!(parts > 2, "{parts} part files");
}

#[test]
fn sluice_cancel_stops_a_job_running_on_a_standalone_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address, _tms) = cluster(dir.path());
    let mut command = Command::new(SLUICE);
    command
        .args(["run", "counting", "--events", "100000000", "--rate", "1000", "--parallelism", "2"])
        .args(["--rest-address", "none", "--jobmanager", &address]);
    let mut client = Process::spawn(command, dir.path(), "client");
    let jm_log = jm.wait_for("status=RUNNING", 1);
    let job_id = jm_log.split("job_id=").nth(1).unwrap().split_whitespace().next().unwrap();
    let jobs = String::from_utf8(sluice(&["list", "--jobmanager", &address]).stdout).unwrap();
    assert!(jobs.contains(job_id) && jobs.contains("RUNNING"), "{jobs}");
    let cancelled = sluice(&["cancel", job_id, "--jobmanager", &address]);
    assert!(cancelled.status.success(), "{}", String::from_utf8_lossy(&cancelled.stderr));
    let (_, log) = client.wait();
    assert!(log.contains("job 'counting' stopped"), "{log}");
    jm.wait_for("status=CANCELED", 1);
    jm.wait_for("job's slots released", 1);
    let again = sluice(&["cancel", job_id, "--jobmanager", &address]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already ended"));
}

#[test]
fn a_job_needing_more_slots_than_the_cluster_has_free_is_refused_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (_jm, address, _tms) = cluster(dir.path());
    let run = sluice(&["run", "pipeline", "--parallelism", "3", "--jobmanager", &address]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("needs 3 slots, but the cluster's 2 TaskManagers have 2 free"),
        "{stderr}"
    );
}

#[test]
fn a_task_manager_refuses_a_job_it_would_build_with_another_fingerprint() {
    use sluice::StreamExecutionEnvironment;
    let dir = tempfile::tempdir().unwrap();
    let (jm, address) = job_manager(dir.path(), &[]);
    // A TaskManager in this process whose program builds the job differently.
    let config = sluice_rpc::task_manager::TaskManagerConfig {
        job_manager: address.clone(),
        id: "tm-other-build".into(),
        slots: 1,
        data_address: "127.0.0.1:0".parse().unwrap(),
        rpc_address: "127.0.0.1:0".parse().unwrap(),
        security: sluice_rpc::Security::default(),
    };
    let other_build = |_: &sluice_rpc::proto::JobSpec| {
        let env = StreamExecutionEnvironment::new();
        env.from_sequence(10).map(|x| x + 1).name("a renamed map").discard();
        env.job("numbers")
    };
    let builder = Arc::new(move |spec: &_| other_build(spec).map(|(graph, _)| graph));
    std::thread::spawn(move || sluice_rpc::task_manager::run(config, builder));
    jm.wait_for("TaskManager registered", 1);
    let env = StreamExecutionEnvironment::new();
    env.from_sequence(10).map(|x| x + 2).discard();
    let (graph, options) = env.job("numbers").unwrap();
    let submitted =
        sluice_rpc::client::submit(&address, &Default::default(), graph, options, Vec::new());
    let error = submitted.err().expect("the deployment is refused").report().to_string();
    assert!(error.contains("TaskManager tm-other-build: it builds job 'numbers'"), "{error}");
    assert!(error.contains("fingerprint"), "{error}");
}

/// `sluice run counting` on the cluster at `address`: `events` events over
/// 50 keys at `rate` per second, exactly-once part files under `dir/out`,
/// a checkpoint every 200 ms under `dir/checkpoints`.
fn counting(dir: &Path, address: &str, events: &str, parallelism: &str, rate: &str) -> Command {
    let output = dir.join("out");
    let checkpoints = dir.join("checkpoints");
    let mut command = Command::new(SLUICE);
    command
        .args(["run", "counting", "--events", events, "--keys", "50", "--rate", rate])
        .args(["--parallelism", parallelism, "--checkpoint-interval", "200ms"])
        .args(["--checkpoint-dir", checkpoints.to_str().unwrap()])
        .args(["--output", output.to_str().unwrap(), "--rest-address", "none"])
        .args(["--jobmanager", address]);
    command
}

/// The counting job started in the background, logging to `dir/client.log`.
fn counting_on_cluster(dir: &Path, address: &str, events: &str, parallelism: &str) -> Process {
    let mut command = counting(dir, address, events, parallelism, "10000");
    command.env("RUST_LOG", "info");
    Process::spawn(command, dir, "client")
}

/// Waits for the client to end successfully; its log.
fn wait_for_end(client: &mut Process) -> String {
    let (ok, log) = client.wait();
    assert!(ok, "{log}");
    log
}

/// `kill -9` of a TaskManager during a checkpointed job, then a new
/// TaskManager: the job restarts from its latest checkpoint on the new one
/// and its committed output holds every record exactly once.
fn recovers_from_a_killed_task_manager(task_managers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address) = job_manager(dir.path(), &[]);
    let mut tms: Vec<Process> = (0..task_managers)
        .map(|i| task_manager(dir.path(), &address, &format!("tm-{i}"), "1", &[]))
        .collect();
    jm.wait_for("TaskManager registered", task_managers);
    let events = "40000";
    let mut client = counting_on_cluster(dir.path(), &address, events, &task_managers.to_string());
    client.wait_for("checkpoint completed", 2);
    let victim = tms.pop().unwrap();
    victim.signal("-KILL");
    jm.wait_for("TaskManager lost", 1);
    let _new = task_manager(dir.path(), &address, "tm-new", "1", &[]);
    let log = wait_for_end(&mut client);
    assert!(log.contains("(restart 1) starts in"), "{log}");
    assert!(log.contains("task_manager=tm-new"), "{log}");
    assert_exactly_once(&dir.path().join("out"), 40000);
}

#[test]
fn a_job_on_two_task_managers_recovers_from_a_killed_one_on_a_new_one_exactly_once() {
    recovers_from_a_killed_task_manager(2);
}

#[test]
fn a_job_on_three_task_managers_recovers_from_a_killed_one_on_a_new_one_exactly_once() {
    recovers_from_a_killed_task_manager(3);
}

#[test]
fn a_paused_task_manager_declared_lost_writes_and_commits_nothing_after_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address, mut tms) = cluster(dir.path());
    let mut client = counting_on_cluster(dir.path(), &address, "60000", "2");
    client.wait_for("checkpoint completed", 2);
    let zombie = &mut tms[1];
    zombie.signal("-STOP");
    // The JobManager declares it lost after the 2 s heartbeat timeout and
    // tells the job, which restarts on a new TaskManager.
    jm.wait_for("TaskManager lost: no heartbeat", 1);
    let _new = task_manager(dir.path(), &address, "tm-new", "1", &[]);
    client.wait_for("task_manager=tm-new", 1);
    zombie.signal("-CONT");
    // Its attempt is over: the JobMaster ended it there when it resumed.
    zombie.wait_for("the JobMaster ended the attempt here", 1);
    let log = wait_for_end(&mut client);
    assert!(log.contains("lost: the JobManager declared it lost"), "{log}");
    assert_exactly_once(&dir.path().join("out"), 60000);
}

#[test]
fn a_job_stopped_with_a_savepoint_on_a_standalone_cluster_resumes_from_it_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address, _tms) = cluster(dir.path());
    let mut client = counting_on_cluster(dir.path(), &address, "30000", "2");
    client.wait_for("checkpoint completed", 2);
    let jm_log = jm.wait_for("status=RUNNING", 1);
    let job_id = jm_log.split("job_id=").nth(1).unwrap().split_whitespace().next().unwrap();
    let savepoint = dir.path().join("savepoint");
    let taken =
        sluice(&["savepoint", job_id, savepoint.to_str().unwrap(), "--jobmanager", &address]);
    let said = String::from_utf8_lossy(&taken.stdout);
    assert!(taken.status.success(), "{}", String::from_utf8_lossy(&taken.stderr));
    assert!(said.contains("written to"), "{said}");
    assert!(savepoint.join("_metadata").exists());
    let stop_at = dir.path().join("stop-savepoint");
    let stop = ["stop", job_id, "--savepoint", stop_at.to_str().unwrap(), "--jobmanager", &address];
    let stopped = sluice(&stop);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    let log = wait_for_end(&mut client);
    assert!(log.contains("stopped"), "{log}");
    // The job resumes from the savepoint, on the cluster, and completes its 30000 events.
    let output = dir.path().join("out");
    let mut resumed = counting(dir.path(), &address, "30000", "2", "20000");
    let resumed = resumed.args(["--from-savepoint", stop_at.to_str().unwrap()]).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_exactly_once(&output, 30000);
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    kb.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_slow_sink_on_a_standalone_cluster_holds_every_process_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address, tms) = cluster(dir.path());
    // Sources could make millions of records a second; the sinks take 20000.
    let mut command = Command::new(SLUICE);
    command.args(["run", "pipeline", "--events", "1000000000", "--sink-rate", "20000"]).args([
        "--parallelism",
        "2",
        "--rest-address",
        "none",
        "--jobmanager",
        &address,
    ]);
    let client = Process::spawn(command, dir.path(), "client");
    jm.wait_for("status=RUNNING", 1);
    let pids = [client.child.id(), tms[0].child.id(), tms[1].child.id(), jm.child.id()];
    std::thread::sleep(Duration::from_secs(1));
    let before: Vec<u64> = pids.iter().map(|p| rss(*p)).collect();
    // Unbounded buffering would grow by hundreds of megabytes in these 3 s.
    std::thread::sleep(Duration::from_secs(3));
    for (pid, before) in pids.iter().zip(before) {
        let after = rss(*pid);
        let growth = after.saturating_sub(before);
        assert!(growth < 32 << 20, "process {pid} grew from {before} to {after} bytes");
    }
    assert!(client.log().contains("submitted"), "{}", client.log());
}

#[test]
fn a_job_runs_on_a_cluster_with_a_secret_and_a_client_with_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = ["--cluster-secret", "s3cret"];
    let (jm, address) = job_manager(dir.path(), &secret);
    let _tms = [
        task_manager(dir.path(), &address, "tm-a", "1", &secret),
        task_manager(dir.path(), &address, "tm-b", "1", &secret),
    ];
    jm.wait_for("TaskManager registered", 2);
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let job =
        ["run", "wordcount", "--input", input, "--parallelism", "2", "--rest-address", "none"];
    let mut with = job.to_vec();
    with.extend(["--jobmanager", &address, "--cluster-secret", "s3cret"]);
    let run = sluice(&with);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(run.stdout, sluice(&job).stdout);
    let mut wrong = job.to_vec();
    wrong.extend(["--jobmanager", &address, "--cluster-secret", "guess"]);
    let refused = sluice(&wrong);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused the job: wrong or missing cluster secret"), "{stderr}");
    jm.wait_for("refused an RPC: wrong or missing cluster secret", 1);
}
