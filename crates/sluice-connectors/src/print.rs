//! Print and discard sinks.

use std::fmt::Display;
use std::io::Write;

use sluice_core::{Data, Result, SluiceError, StreamRecord};
use sluice_runtime::{RuntimeContext, Sink, SinkWriter};

/// Prints each record on standard output, one per line; with parallelism
/// above 1 each line starts with the subtask number ("2> record"), as in Flink.
#[derive(Clone, Debug, Default)]
pub struct PrintSink {
    prefix: Option<String>,
}

impl PrintSink {
    /// A print sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A print sink whose lines start with `prefix`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: Some(prefix.into()),
        }
    }
}

impl<T: Data + Display> Sink<T> for PrintSink {
    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<T>>> {
        let subtask = (ctx.parallelism > 1).then(|| format!("{}> ", ctx.subtask_index + 1));
        let prefix = match (&self.prefix, subtask) {
            (Some(p), Some(s)) => format!("{p}:{s}"),
            (Some(p), None) => format!("{p}> "),
            (None, Some(s)) => s,
            (None, None) => String::new(),
        };
        Ok(Box::new(PrintWriter {
            prefix,
            buf: Vec::new(),
        }))
    }
}

struct PrintWriter {
    prefix: String,
    buf: Vec<u8>,
}

impl<T: Display> SinkWriter<T> for PrintWriter {
    fn write_batch(&mut self, records: Vec<StreamRecord<T>>) -> Result<()> {
        self.buf.clear();
        for r in records {
            let _ = writeln!(self.buf, "{}{}", self.prefix, r.value);
        }
        // One write per batch keeps lines of parallel subtasks whole.
        std::io::stdout()
            .lock()
            .write_all(&self.buf)
            .map_err(|e| SluiceError::external("print sink (stdout)", e.to_string()))
    }
}

/// Drops every record (for benchmarks).
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardingSink;

impl<T: Data> Sink<T> for DiscardingSink {
    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(DiscardingSink))
    }
}

impl<T> SinkWriter<T> for DiscardingSink {
    fn write_batch(&mut self, records: Vec<StreamRecord<T>>) -> Result<()> {
        drop(records);
        Ok(())
    }
}
