//! How a job checkpoints (Flink's CheckpointConfig).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::{Result, SluiceError};

/// What a checkpoint guarantees after a restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointingMode {
    /// Barriers are aligned: every record is reflected in the state exactly once.
    ExactlyOnce,
    /// Barriers are not aligned: after a restore some records may be reflected twice.
    AtLeastOnce,
}

/// Checkpoint settings of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointConfig {
    /// Time between the starts of two checkpoints.
    pub interval: Duration,
    /// Exactly-once (aligned) or at-least-once.
    pub mode: CheckpointingMode,
    /// A checkpoint not complete after this is declined.
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the start of the next.
    pub min_pause_between_checkpoints: Duration,
    /// Failed checkpoints in a row the job tolerates before it fails.
    pub tolerable_failed_checkpoints: u32,
    /// Barriers overtake buffered records; the records are stored with the checkpoint.
    pub unaligned: bool,
    /// With `unaligned`: align first, and switch to unaligned after this long.
    pub aligned_checkpoint_timeout: Duration,
    /// Keep the latest checkpoint when the job is cancelled.
    pub retain_on_cancellation: bool,
}

impl CheckpointConfig {
    /// Exactly-once checkpoints every `interval`, Flink's defaults otherwise.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            mode: CheckpointingMode::ExactlyOnce,
            timeout: Duration::from_secs(600),
            min_pause_between_checkpoints: Duration::ZERO,
            tolerable_failed_checkpoints: 0,
            unaligned: false,
            aligned_checkpoint_timeout: Duration::ZERO,
            retain_on_cancellation: false,
        }
    }

    /// Checks the values; the error names the setting.
    pub fn validate(&self) -> Result<()> {
        if self.interval < Duration::from_millis(10) {
            return Err(SluiceError::Config(format!(
                "checkpoint interval {:?} is below the minimum of 10ms",
                self.interval
            )));
        }
        if self.timeout.is_zero() {
            return Err(SluiceError::Config("checkpoint timeout must be above zero".into()));
        }
        if self.unaligned && self.mode == CheckpointingMode::AtLeastOnce {
            return Err(SluiceError::Config(
                "unaligned checkpoints need exactly-once mode (at-least-once never aligns)".into(),
            ));
        }
        Ok(())
    }
}
