//! A process of a cluster test (a JobManager, a TaskManager, a job's
//! client), its stderr in a log file, killed by its own pid when dropped
//! (also when the test fails).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process started by a test.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    /// Starts `command`, its stderr going to `dir/NAME.log`.
    pub fn spawn(mut command: Command, dir: &Path, name: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the program starts");
        Self { child, log }
    }

    /// Starts `program ARGS`.
    pub fn start(program: &str, dir: &Path, name: &str, args: &[&str]) -> Self {
        let mut command = Command::new(program);
        command.args(args);
        Self::spawn(command, dir, name)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `count` lines containing `needle`.
    pub fn wait_for(&self, needle: &str, count: usize) -> String {
        let started = Instant::now();
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no '{needle}' in:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end; whether it succeeded, and its log.
    pub fn wait(&mut self) -> (bool, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            assert!(started.elapsed() < Duration::from_secs(90), "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends it `signal` (`-KILL`, `-STOP`, …) by its own pid.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
