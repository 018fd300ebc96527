//! What a source does with a record it cannot decode (a line that is not
//! UTF-8, malformed JSON, a Kafka value its deserializer refuses). The
//! policy is the source's; the reader reports each failure to its
//! [`SourceOutput`](crate::SourceOutput), which applies the policy in one
//! place for every source: `Fail` ends the attempt with the record's
//! location, `Skip` drops it, `SideOutput` sends its raw bytes to the
//! [`DECODE_FAILURES`] side output. Skipped and side-output records are
//! counted (`records_in_errors`), the first is logged with its location and
//! later ones in a summary at most every ten seconds. The reader's position
//! is already past the record, so a restore never meets it again.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_core::{Result, SluiceError, StreamRecord};
use tracing::warn;

/// The side output a source's undecodable records go to under [`DecodeErrorPolicy::SideOutput`].
pub const DECODE_FAILURES: &str = "decode-failures";

/// How often skipped records are summarised in the log after the first.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// What a source does with a record it cannot decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecodeErrorPolicy {
    /// Fail the attempt, naming the record's location (the default). The
    /// failure repeats after a restart, so it ends the job after the
    /// identical-failure limit.
    #[default]
    Fail,
    /// Drop the record, count it, and log it.
    Skip,
    /// Send the raw record with its location to the [`DECODE_FAILURES`] side output.
    SideOutput,
}

impl FromStr for DecodeErrorPolicy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fail" => Ok(Self::Fail),
            "skip" => Ok(Self::Skip),
            "side_output" | "side-output" => Ok(Self::SideOutput),
            other => Err(format!(
                "'{other}' is not a decode error policy: use fail, skip or side_output"
            )),
        }
    }
}

/// Where a record sits in its input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordLocation {
    /// A line of a file.
    File {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: u64,
        /// Byte offset of the line's start.
        offset: u64,
    },
    /// A record of a partitioned log (a Kafka topic).
    Partition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
    },
}

impl fmt::Display for RecordLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordLocation::File { path, line, .. } => write!(f, "{} line {line}", path.display()),
            RecordLocation::Partition { topic, partition, offset } => {
                write!(f, "topic '{topic}' partition {partition} offset {offset}")
            }
        }
    }
}

/// A record a source could not decode: where it is, why, and its raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeFailure {
    /// Where the record is.
    pub location: RecordLocation,
    /// Why it could not be decoded.
    pub reason: String,
    /// The record as read, without its line ending.
    pub bytes: Vec<u8>,
}

/// Applies a policy to one reader's decode failures and keeps their count.
#[derive(Debug)]
pub(crate) struct DecodeErrors {
    /// Failures since the task last took them (for the metric).
    uncounted: usize,
    /// Side-output records not yet emitted.
    side: Vec<StreamRecord<DecodeFailure>>,
    /// Every failure so far.
    total: u64,
    /// Failures since the last log line, and when that was.
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl DecodeErrors {
    pub(crate) fn new() -> Self {
        Self { uncounted: 0, side: Vec::new(), total: 0, unlogged: 0, logged_at: None }
    }

    /// Applies `policy` to a record that failed to decode.
    pub(crate) fn on_failure(
        &mut self,
        policy: DecodeErrorPolicy,
        location: RecordLocation,
        reason: String,
        bytes: &[u8],
    ) -> Result<()> {
        if policy == DecodeErrorPolicy::Fail {
            return Err(SluiceError::MalformedRecord {
                input: location.to_string(),
                message: reason,
            });
        }
        self.uncounted += 1;
        self.total += 1;
        self.unlogged += 1;
        let what =
            if policy == DecodeErrorPolicy::Skip { "skipped" } else { "sent to the side output" };
        match self.logged_at {
            None => {
                warn!(
                    "a record that cannot be decoded was {what}: {location}: {reason} \
                     (later ones are summarised every {}s)",
                    SUMMARY_INTERVAL.as_secs()
                );
                self.logged_at = Some(Instant::now());
                self.unlogged = 0;
            }
            Some(at) if at.elapsed() >= SUMMARY_INTERVAL => {
                self.summarise(what, &location, &reason)
            }
            Some(_) => {}
        }
        if policy == DecodeErrorPolicy::SideOutput {
            self.side.push(StreamRecord::new(DecodeFailure {
                location,
                reason,
                bytes: bytes.to_vec(),
            }));
        }
        Ok(())
    }

    fn summarise(&mut self, what: &str, location: &RecordLocation, reason: &str) {
        warn!(
            "{} more records that cannot be decoded were {what} ({} in all); the latest: {location}: {reason}",
            self.unlogged, self.total
        );
        self.logged_at = Some(Instant::now());
        self.unlogged = 0;
    }

    /// The failures since the last call, and the side-output records among them.
    pub(crate) fn take(&mut self) -> (usize, Vec<StreamRecord<DecodeFailure>>) {
        (std::mem::take(&mut self.uncounted), std::mem::take(&mut self.side))
    }

    /// Logs what the summaries have not yet counted, when the reader closes.
    pub(crate) fn finish(&mut self) {
        if self.unlogged > 0 {
            warn!(
                "{} more records that cannot be decoded were dropped or sent to the side output ({} in all)",
                self.unlogged, self.total
            );
            self.unlogged = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64) -> RecordLocation {
        RecordLocation::File { path: "in/a.txt".into(), line, offset: line * 10 }
    }

    #[test]
    fn fail_returns_an_error_naming_the_location_and_reason() {
        let mut e = DecodeErrors::new();
        let err =
            e.on_failure(DecodeErrorPolicy::Fail, at(7), "not UTF-8".into(), b"\xff").unwrap_err();
        assert_eq!(err.to_string(), "malformed record in in/a.txt line 7: not UTF-8");
        assert_eq!(e.take().0, 0, "a failure that fails the job is not counted as dropped");
    }

    #[test]
    fn skip_counts_without_keeping_the_record() {
        let mut e = DecodeErrors::new();
        for line in 1..=5 {
            e.on_failure(DecodeErrorPolicy::Skip, at(line), "bad".into(), b"x").unwrap();
        }
        let (count, side) = e.take();
        assert_eq!((count, side.len()), (5, 0));
        assert_eq!(e.take().0, 0, "taken once");
    }

    #[test]
    fn side_output_keeps_the_raw_bytes_and_location() {
        let mut e = DecodeErrors::new();
        e.on_failure(
            DecodeErrorPolicy::SideOutput,
            at(3),
            "invalid type".into(),
            b"{\"id\":\"one\"}",
        )
        .unwrap();
        let (count, side) = e.take();
        assert_eq!(count, 1);
        assert_eq!(side[0].value.location, at(3));
        assert_eq!(side[0].value.bytes, b"{\"id\":\"one\"}");
    }

    #[test]
    fn policies_parse_from_their_cli_names() {
        assert_eq!("skip".parse(), Ok(DecodeErrorPolicy::Skip));
        assert_eq!("side-output".parse(), Ok(DecodeErrorPolicy::SideOutput));
        assert!("ignore"
            .parse::<DecodeErrorPolicy>()
            .unwrap_err()
            .contains("fail, skip or side_output"));
    }

    #[test]
    fn a_partition_location_names_topic_partition_and_offset() {
        let l = RecordLocation::Partition { topic: "orders".into(), partition: 2, offset: 41 };
        assert_eq!(l.to_string(), "topic 'orders' partition 2 offset 41");
    }
}
