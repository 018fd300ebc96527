//! Event time: record timestamps and watermarks, both milliseconds since the
//! Unix epoch. A watermark `t` promises that no record with a timestamp
//! `<= t` follows; watermarks on one channel never go backwards.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch; [`Timestamp::NONE`] for records without event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// A record that carries no timestamp (no event time assigned yet).
    pub const NONE: Timestamp = Timestamp(i64::MIN);

    /// Whether this is a real timestamp rather than [`Timestamp::NONE`].
    pub fn is_set(self) -> bool {
        self != Self::NONE
    }
}

/// Event-time progress: no record with a timestamp at or below this follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watermark(pub i64);

impl Watermark {
    /// The watermark before any event-time progress was made.
    pub const MIN: Watermark = Watermark(i64::MIN);
    /// Emitted at end of input: every event-time timer and window fires.
    pub const MAX: Watermark = Watermark(i64::MAX);
}
