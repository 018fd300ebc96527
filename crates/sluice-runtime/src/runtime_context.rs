//! What a function or operator knows about where it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_core::{Clock, KeyGroupRange, SystemClock};

/// The subtask an operator instance runs in, and the job's parameters.
#[derive(Clone, Debug)]
pub struct RuntimeContext {
    /// Name of the operator.
    pub operator_name: String,
    /// Name of the task (the chain) the operator runs in, with its subtask, e.g. "Map -> Sink (2/4)".
    pub task_name: String,
    /// Index of this subtask, from 0.
    pub subtask_index: usize,
    /// Number of parallel subtasks of the operator.
    pub parallelism: usize,
    /// Number of key groups.
    pub max_parallelism: usize,
    /// Execution attempt (0 for the first run).
    pub attempt: usize,
    /// Records per batch.
    pub batch_size: usize,
    /// Global job parameters.
    pub job_parameters: Arc<BTreeMap<String, String>>,
    /// Processing time.
    pub clock: Arc<dyn Clock>,
    /// How often periodic watermark generators emit, in ms.
    pub auto_watermark_interval: i64,
    /// The checkpoint this attempt restored from (Flink's `getRestoredCheckpointId`).
    pub restored_checkpoint_id: Option<u64>,
}

impl RuntimeContext {
    /// The key groups this subtask owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        KeyGroupRange::for_operator(self.max_parallelism, self.parallelism, self.subtask_index)
    }

    /// A global job parameter.
    pub fn job_parameter(&self, name: &str) -> Option<&str> {
        self.job_parameters.get(name).map(String::as_str)
    }

    /// "index/parallelism" counted from 1, as Flink prints subtasks.
    pub fn subtask_label(&self) -> String {
        format!("{}/{}", self.subtask_index + 1, self.parallelism)
    }

    /// A context for tests and examples: subtask `index` of `parallelism`.
    pub fn for_test(index: usize, parallelism: usize) -> Self {
        Self {
            operator_name: "test".into(),
            task_name: "test".into(),
            subtask_index: index,
            parallelism,
            max_parallelism: sluice_core::key_group::DEFAULT_MAX_PARALLELISM,
            attempt: 0,
            batch_size: 1024,
            job_parameters: Arc::default(),
            clock: Arc::new(SystemClock),
            restored_checkpoint_id: None,
            auto_watermark_interval: 200,
        }
    }
}
