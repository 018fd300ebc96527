//! Nexmark queries as hand-written, single-threaded Rust over the NDJSON file that
//! `sluice nexmark gen` writes: the no-framework baseline Sluice's overhead is measured against.

mod event;
mod queries;

use std::fmt::Debug;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use sluice_nexmark::answer::{flatten_row, Answer};

use crate::event::{parse_line, Event, Events};
use crate::queries::{Count, Sink, QUERIES};

// The engine runs with mimalloc; the baseline uses the same allocator so that the comparison
// measures the engine, not the allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command-line arguments.
#[derive(Parser)]
#[command(name = "nexmark-handwritten", about = "Nexmark queries as hand-written Rust")]
struct Cli {
    /// Query to run (q0–q5, q7–q9, q11–q22), or `all`.
    #[arg(long)]
    query: String,
    /// NDJSON event file, as written by `sluice nexmark gen`.
    #[arg(long)]
    input: PathBuf,
    /// Runs per query.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Write the query's answer to stdout in the format of `sluice nexmark run --output`
    /// (one JSON array per row, changelog applied, sorted), so that the two can be compared;
    /// the per-run summary goes to stderr then.
    #[arg(long)]
    print: bool,
}

/// The events of an NDJSON stream, parsed straight out of a large read buffer.
struct Ndjson<R> {
    reader: R,
    /// Initial buffer size; it doubles for a line that does not fit.
    buffer: usize,
}

impl<R: Read> Events for Ndjson<R> {
    fn for_each_event(mut self, mut f: impl FnMut(Event<'_>)) -> Result<u64> {
        // Lines are parsed where they lie in the buffer (only a line cut by the buffer's end is
        // moved), and a chunk is checked for UTF-8 once, so serde_json need not check every
        // string it borrows.
        let mut buf = vec![0u8; self.buffer.max(1)];
        let (mut filled, mut line_no, mut events) = (0, 0u64, 0u64);
        loop {
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0); // a line longer than the buffer
            }
            let read = match self.reader.read(&mut buf[filled..]) {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            filled += read;
            let complete = if read == 0 {
                filled
            } else {
                buf[..filled].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
            };
            let chunk = std::str::from_utf8(&buf[..complete])
                .with_context(|| format!("invalid UTF-8 after line {line_no}"))?;
            for line in chunk.lines() {
                line_no += 1;
                let line = line.trim_ascii_end();
                if line.is_empty() {
                    continue;
                }
                f(parse_line(line).with_context(|| format!("line {line_no}"))?);
                events += 1;
            }
            buf.copy_within(complete..filled, 0);
            filled -= complete;
            if read == 0 {
                return Ok(events);
            }
        }
    }
}

/// Gathers the rows into the query's answer; keeps the first error for the end.
struct Print {
    answer: Answer,
    rows: u64,
    error: Option<anyhow::Error>,
}

impl Sink for Print {
    fn emit<R: Serialize + Debug>(&mut self, row: R) {
        self.rows += 1;
        if self.error.is_none() {
            let applied = flatten_row(&row).and_then(|row| self.answer.apply(row));
            self.error = applied.err().map(anyhow::Error::from);
        }
    }
}

/// Runs `query` once over the file; returns `(events, output rows)`.
fn run_once(query: &str, input: &Path, print: bool) -> Result<(u64, u64)> {
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let events = Ndjson { reader: file, buffer: 4 << 20 };
    if print {
        let rows = query.parse::<sluice_nexmark::Query>()?.rows();
        let mut sink = Print { answer: Answer::new(rows), rows: 0, error: None };
        let n = queries::run(query, events, &mut sink)?;
        if let Some(e) = sink.error {
            return Err(e.context("building the answer"));
        }
        let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
        let written = sink.answer.write_to(&mut out).and_then(|()| out.flush());
        if written.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::BrokenPipe) {
            // The reader (`| head`, say) has all it wants: stop as quietly as `head` itself.
            std::process::exit(0);
        }
        written.context("writing rows to stdout")?;
        Ok((n, sink.rows))
    } else {
        let mut sink = Count::default();
        let n = queries::run(query, events, &mut sink)?;
        Ok((n, sink.0))
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let selected: Vec<&str> = match cli.query.as_str() {
        "all" => QUERIES.to_vec(),
        q if QUERIES.contains(&q) => vec![q],
        q => bail!("unknown query {q:?}; expected `all` or one of {}", QUERIES.join(", ")),
    };
    for query in selected {
        for run in 1..=cli.runs {
            // Timed from opening the file: reading, parsing and computing are the work.
            let started = Instant::now();
            let (events, outputs) = run_once(query, &cli.input, cli.print)
                .with_context(|| format!("query {query}, run {run}"))?;
            let seconds = started.elapsed().as_secs_f64();
            let rate = (events as f64 / seconds).round() as u64;
            let summary = format!(
                "handwritten query={query} run={run} events={events} seconds={seconds:.3} \
                 events_per_second={rate} outputs={outputs}"
            );
            if cli.print {
                eprintln!("{summary}");
            } else {
                println!("{summary}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most `step` bytes per read, as a pipe might.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_lines_across_buffer_ends_and_longer_than_the_buffer() {
        let bid = |price: u32| {
            format!(
                r#"{{"event_type":2,"bid":{{"auction":1,"bidder":2,"price":{price},"channel":"c","url":"u","dateTime":"2015-07-15 00:00:00.000","extra":""}}}}"#
            )
        };
        // CRLF, a blank line and a last line without a newline.
        let text = format!("{}\n{}\r\n\n{}", bid(1), bid(22), bid(333));
        for (buffer, step) in [(1, 1), (16, 7), (64, 1000), (4096, 5), (4096, 4096)] {
            let mut prices = Vec::new();
            let events = Ndjson { reader: Trickle(text.as_bytes(), step), buffer };
            let n = events
                .for_each_event(|e| {
                    if let Event::Bid(b) = e {
                        prices.push(b.price);
                    }
                })
                .unwrap();
            assert_eq!((n, prices), (3, vec![1, 22, 333]), "buffer {buffer}, step {step}");
        }
    }

    #[test]
    fn names_the_line_that_does_not_parse() {
        let events = Ndjson { reader: Trickle(b"\n{\"event_type\":9}\n", 3), buffer: 8 };
        let err = events.for_each_event(|_| {}).unwrap_err();
        assert_eq!(err.to_string(), "line 2");
    }
}
