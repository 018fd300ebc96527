//! Application mode: a job program built on the `sluice` crate runs as the
//! client that submits its job to a standalone cluster and as that
//! cluster's TaskManagers. This test binary is such a program (it has no
//! test harness): started with `taskmanager`, or with `APPLICATION=client`,
//! it plays that role; started without, it runs the scenario.

use std::path::Path;
use std::process::Command;

use sluice::{Result, StreamExecutionEnvironment};

mod common;
use common::Process;

/// The job: rolling sums of 0..n by the number's last digit, at parallelism
/// 2, written as text part files under the directory in the arguments.
fn build(args: &[String]) -> Result<StreamExecutionEnvironment> {
    let value = |name: &str| {
        let i = args.iter().position(|a| a == name).expect("the flag is given");
        args[i + 1].clone()
    };
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    env.from_sequence(value("--numbers").parse().unwrap())
        .map(|x| (x % 10, x))
        .key_by(|(digit, _): &(u64, u64)| *digit)
        .reduce(|(digit, a), (_, b)| (digit, a + b))
        .map(|(digit, sum)| format!("{digit} {sum}"))
        .write_as_text(value("--output"));
    Ok(env)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The test runner lists the tests first (`--list --format terse`).
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("application_mode: test");
        }
        return;
    }
    if args.first().is_some_and(|a| a == "taskmanager")
        || std::env::var("APPLICATION").is_ok_and(|r| r == "client")
    {
        if let Err(e) = sluice::application::run("digit sums", build) {
            eprintln!("error: {}", e.report());
            std::process::exit(1);
        }
        return;
    }
    a_job_program_runs_as_the_client_and_the_task_managers_of_its_job();
    a_task_manager_of_another_program_refuses_the_job();
    println!("application mode: 2 tests passed");
}

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn this_program() -> String {
    std::env::current_exe().unwrap().display().to_string()
}

/// This program as the client of its job on the cluster at `address`.
fn client(program: &str, args: &[&str], address: &str) -> Command {
    let mut command = Command::new(program);
    command.args(args).env("APPLICATION", "client").env("SLUICE_JOBMANAGER", address);
    command
}

fn job_manager(dir: &Path) -> (Process, String) {
    let jm =
        Process::start(SLUICE, dir, "jobmanager", &["jobmanager", "--rpc-address", "127.0.0.1:0"]);
    let log = jm.wait_for("JobManager listening", 1);
    let address = log.split("address=").nth(1).unwrap().split_whitespace().next().unwrap();
    let address = address.to_string();
    (jm, address)
}

fn a_job_program_runs_as_the_client_and_the_task_managers_of_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address) = job_manager(dir.path());
    let program = this_program();
    let _tms: Vec<Process> = ["tm-a", "tm-b"]
        .iter()
        .map(|id| {
            let args = ["taskmanager", "--jobmanager", &address, "--slots", "1", "--id", id];
            Process::start(&program, dir.path(), id, &args)
        })
        .collect();
    jm.wait_for("TaskManager registered", 2);
    let output = dir.path().join("out");
    let args = ["--numbers", "100000", "--output", output.to_str().unwrap()];
    let mut client = Process::spawn(client(&program, &args, &address), dir.path(), "client");
    let (ok, log) = client.wait();
    assert!(ok, "{log}");
    // The last rolling sum of each digit d is the sum of the numbers ending in d.
    let mut last = [0u64; 10];
    for part in std::fs::read_dir(&output).unwrap() {
        for line in std::fs::read_to_string(part.unwrap().path()).unwrap().lines() {
            let (digit, sum) = line.split_once(' ').unwrap();
            let digit: usize = digit.parse().unwrap();
            last[digit] = last[digit].max(sum.parse().unwrap());
        }
    }
    for (digit, sum) in last.iter().enumerate() {
        let expected: u64 = (0..100_000u64).filter(|x| x % 10 == digit as u64).sum();
        assert_eq!(*sum, expected, "digit {digit}");
    }
    let deployed = jm.wait_for("job status", 1);
    assert!(deployed.contains("digit sums"), "{deployed}");
}

fn a_task_manager_of_another_program_refuses_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (jm, address) = job_manager(dir.path());
    // The `sluice` command's TaskManager builds only `sluice run` jobs.
    let args = ["taskmanager", "--jobmanager", &address, "--slots", "2", "--id", "tm-sluice"];
    let _tm = Process::start(SLUICE, dir.path(), "tm-sluice", &args);
    jm.wait_for("TaskManager registered", 1);
    let output = dir.path().join("out");
    let args = ["--numbers", "10", "--output", output.to_str().unwrap()];
    let client = client(&this_program(), &args, &address);
    let mut client = Process::spawn(client, dir.path(), "client");
    let (ok, log) = client.wait();
    assert!(!ok, "{log}");
    assert!(log.contains("TaskManager tm-sluice: cannot build job 'digit sums'"), "{log}");
}
