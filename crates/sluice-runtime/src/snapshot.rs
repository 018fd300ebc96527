//! Operator state in checkpoints (defined with the checkpoint storage that writes it).

pub use sluice_checkpoint::{OperatorSnapshot, PendingSnapshot};
