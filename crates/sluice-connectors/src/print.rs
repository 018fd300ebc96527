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
        Self { prefix: Some(prefix.into()) }
    }
}

impl<T: Data + Display> Sink<T> for PrintSink {
    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(PrintWriter { prefix: self.line_prefix(ctx), buf: Vec::new() }))
    }
}

impl PrintSink {
    /// What each line starts with, as Flink prints it: "prefix:2> ", "2> ", "prefix> " or nothing.
    fn line_prefix(&self, ctx: &RuntimeContext) -> String {
        let subtask = (ctx.parallelism > 1).then(|| format!("{}> ", ctx.subtask_index + 1));
        match (&self.prefix, subtask) {
            (Some(p), Some(s)) => format!("{p}:{s}"),
            (Some(p), None) => format!("{p}> "),
            (None, Some(s)) => s,
            (None, None) => String::new(),
        }
    }
}

struct PrintWriter {
    prefix: String,
    buf: Vec<u8>,
}

impl PrintWriter {
    /// The text of a batch: one prefixed line per record.
    fn format<T: Display>(&mut self, records: Vec<StreamRecord<T>>) -> &[u8] {
        self.buf.clear();
        for r in records {
            let _ = writeln!(self.buf, "{}{}", self.prefix, r.value);
        }
        &self.buf
    }
}

impl<T: Display> SinkWriter<T> for PrintWriter {
    fn write_batch(&mut self, records: Vec<StreamRecord<T>>) -> Result<()> {
        let text = self.format(records);
        // One write per batch keeps lines of parallel subtasks whole.
        std::io::stdout()
            .lock()
            .write_all(text)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_subtask_number_only_when_parallel_as_in_flink() {
        let sink = PrintSink::new();
        assert_eq!(sink.line_prefix(&RuntimeContext::for_test(0, 1)), "");
        assert_eq!(sink.line_prefix(&RuntimeContext::for_test(1, 3)), "2> ");
        let named = PrintSink::with_prefix("counts");
        assert_eq!(named.line_prefix(&RuntimeContext::for_test(0, 1)), "counts> ");
        assert_eq!(named.line_prefix(&RuntimeContext::for_test(2, 3)), "counts:3> ");
    }

    #[test]
    fn a_batch_prints_one_prefixed_line_per_record() {
        let mut w = PrintWriter { prefix: "2> ".into(), buf: Vec::new() };
        let text = w.format(vec![StreamRecord::new("a"), StreamRecord::new("b")]).to_vec();
        assert_eq!(String::from_utf8(text).unwrap(), "2> a\n2> b\n");
    }
}
