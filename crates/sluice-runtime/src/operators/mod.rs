//! The built-in operators behind the DataStream API's transformations.

pub mod co_process;
pub mod keyed_reduce;
pub mod process;
pub mod stateless;

use sluice_core::SluiceError;

/// Turns a user function's error into a Sluice error.
pub(crate) fn user_error(e: Box<dyn std::error::Error + Send + Sync>) -> SluiceError {
    SluiceError::user(e.to_string())
}
