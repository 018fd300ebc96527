//! Job-level settings: default parallelism, key groups, batching and the
//! global job parameters every function can read.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SluiceError};
use crate::key_group::{DEFAULT_MAX_PARALLELISM, UPPER_BOUND_MAX_PARALLELISM};

/// Settings that apply to a whole job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecutionConfig {
    /// Parallelism of operators that do not set their own.
    pub parallelism: usize,
    /// Number of key groups; the upper bound of any operator's parallelism.
    pub max_parallelism: usize,
    /// Records per batch: a batch is sent when it holds this many records.
    pub batch_size: usize,
    /// A partly filled batch is sent at the latest this long after its first record.
    pub buffer_timeout: Duration,
    /// Batches a channel holds before its sender blocks (the credit per channel).
    pub channel_capacity: usize,
    /// Whether operators may be chained into one task.
    pub chaining_enabled: bool,
    /// How often periodic watermark generators emit (Flink's auto-watermark interval).
    pub auto_watermark_interval: Duration,
    /// Global job parameters, visible to every function and in the plan.
    pub job_parameters: BTreeMap<String, String>,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            batch_size: 1024,
            buffer_timeout: Duration::from_millis(5),
            channel_capacity: 8,
            chaining_enabled: true,
            auto_watermark_interval: Duration::from_millis(200),
            job_parameters: BTreeMap::new(),
        }
    }
}

impl ExecutionConfig {
    /// Checks every value; the error names the setting and the allowed range.
    pub fn validate(&self) -> Result<()> {
        if self.max_parallelism == 0 || self.max_parallelism > UPPER_BOUND_MAX_PARALLELISM {
            return Err(SluiceError::Config(format!(
                "max_parallelism {} is out of range 1..={UPPER_BOUND_MAX_PARALLELISM}",
                self.max_parallelism
            )));
        }
        if self.parallelism == 0 || self.parallelism > self.max_parallelism {
            return Err(SluiceError::Config(format!(
                "default parallelism {} is out of range 1..={} (max_parallelism)",
                self.parallelism, self.max_parallelism
            )));
        }
        if self.batch_size == 0 {
            return Err(SluiceError::Config("batch_size must be at least 1".into()));
        }
        if self.channel_capacity == 0 {
            return Err(SluiceError::Config("channel_capacity must be at least 1".into()));
        }
        Ok(())
    }
}
