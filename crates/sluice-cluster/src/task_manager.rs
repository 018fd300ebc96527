//! A TaskManager: a fixed number of slots, each running the subtasks the
//! JobManager deployed to it, one thread per subtask.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use sluice_core::{Result, SluiceError};
use sluice_runtime::execution_graph::SlotId;
use sluice_runtime::operator::panic_message;
use sluice_runtime::task::{run_task, TaskDeployment};

/// How a subtask ended, as reported to the JobManager.
#[derive(Debug)]
pub struct TaskExecutionState {
    /// The job vertex.
    pub vertex: usize,
    /// The subtask index.
    pub subtask_index: usize,
    /// `Ok` if it finished; the error if it failed or was cancelled.
    pub result: Result<()>,
}

/// One TaskManager of a cluster.
#[derive(Debug)]
pub struct TaskManager {
    index: usize,
    free: Mutex<Vec<bool>>,
}

impl TaskManager {
    /// TaskManager number `index` with `slots` slots.
    pub fn new(index: usize, slots: usize) -> Self {
        Self { index, free: Mutex::new(vec![true; slots]) }
    }

    /// This TaskManager's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The slots that are free now.
    pub fn free_slots(&self) -> Vec<SlotId> {
        let free = self.free.lock().expect("slot table lock");
        (0..free.len())
            .filter(|&s| free[s])
            .map(|slot| SlotId { task_manager: self.index, slot })
            .collect()
    }

    /// Marks slots as taken by a job.
    pub fn allocate(&self, slots: &[SlotId]) {
        let mut free = self.free.lock().expect("slot table lock");
        for s in slots.iter().filter(|s| s.task_manager == self.index) {
            free[s.slot] = false;
        }
    }

    /// Returns slots after a job ended.
    pub fn release(&self, slots: &[SlotId]) {
        let mut free = self.free.lock().expect("slot table lock");
        for s in slots.iter().filter(|s| s.task_manager == self.index) {
            free[s.slot] = true;
        }
    }

    /// Starts a subtask on its own thread; its end is reported on `report`.
    pub fn submit_task(
        &self,
        deployment: TaskDeployment,
        report: Sender<TaskExecutionState>,
    ) -> Result<JoinHandle<()>> {
        let name = deployment.task_name();
        let (vertex, subtask_index) = (deployment.vertex, deployment.subtask_index);
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let reported = report.clone();
                let send = move |result| {
                    let _ = reported.send(TaskExecutionState { vertex, subtask_index, result });
                };
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| run_task(deployment, send))) {
                    let message = format!("task {name} panicked: {}", panic_message(&p));
                    let _ = report.send(TaskExecutionState {
                        vertex,
                        subtask_index,
                        result: Err(SluiceError::Internal(message)),
                    });
                }
            })
            .map_err(|e| SluiceError::Internal(format!("cannot start a task thread: {e}")))
    }
}
