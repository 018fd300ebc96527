//! Built-in jobs, each a function that adds the job to an environment, so
//! that the CLI, the tests, the examples and the benchmarks share one definition.

pub mod counting;
pub mod kafka_wordcount;
pub mod pipeline;
pub mod window_count;
pub mod wordcount;
