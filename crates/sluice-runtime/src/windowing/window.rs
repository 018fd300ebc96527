//! A window: the half-open time interval `[start, end)`.

use serde::{Deserialize, Serialize};

/// A time window `[start, end)`; the global window spans all time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl TimeWindow {
    /// The window `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    /// The single window of `GlobalWindows`.
    pub fn global() -> Self {
        Self { start: i64::MIN, end: i64::MAX }
    }

    /// The largest timestamp in the window: the trigger time of event-time windows.
    pub fn max_timestamp(&self) -> i64 {
        if self.end == i64::MAX {
            i64::MAX
        } else {
            self.end - 1
        }
    }

    /// Whether two windows overlap or touch (session windows merge then).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window containing both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// Start of the window of `size` (shifted by `offset`) containing `timestamp`.
    pub fn start_with_offset(timestamp: i64, offset: i64, size: i64) -> i64 {
        timestamp - (timestamp - offset).rem_euclid(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_align_to_size_and_offset_also_for_negative_timestamps() {
        assert_eq!(TimeWindow::start_with_offset(12_345, 0, 10_000), 10_000);
        assert_eq!(TimeWindow::start_with_offset(12_345, 1_000, 10_000), 11_000);
        assert_eq!(TimeWindow::start_with_offset(-1, 0, 10_000), -10_000);
        assert_eq!(TimeWindow::new(0, 10).max_timestamp(), 9);
        assert_eq!(TimeWindow::global().max_timestamp(), i64::MAX);
    }
}
