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

/// Processing time, injectable: operators read the wall clock only through
/// this, so a test can drive processing time by hand.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The machine's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    /// A clock standing at `millis`.
    pub fn new(millis: i64) -> Self {
        Self(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(millis)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sets the clock (it may not go backwards; earlier values are ignored).
    pub fn set(&self, millis: i64) {
        self.0.fetch_max(millis, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_forward_and_only_when_told() {
        let clock = ManualClock::new(1000);
        let shared = clock.clone();
        assert_eq!(clock.now(), 1000);
        shared.advance(std::time::Duration::from_millis(250));
        assert_eq!(clock.now(), 1250);
        clock.set(10);
        assert_eq!(clock.now(), 1250);
    }
}
