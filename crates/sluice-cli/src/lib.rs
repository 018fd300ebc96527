//! The `sluice` command's library part: the built-in jobs it runs and what
//! its benchmarks measure about their own process. Job programs depend on
//! the `sluice` crate, not on this one.
#![deny(missing_docs)]

pub mod jobs;
pub mod process_stats;
