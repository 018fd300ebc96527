//! Keyed state, stored per key group so that a snapshot or a rescale touches
//! one key-group range at a time and never scans unrelated keys.
#![deny(missing_docs)]

pub mod heap_value_state;

pub use heap_value_state::HeapValueState;
