//! Window assigners: which windows a record belongs to.

use std::time::Duration;

use crate::windowing::triggers::{EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, Trigger};
use crate::windowing::window::TimeWindow;

fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Assigns records to windows (Flink's WindowAssigner).
pub trait WindowAssigner: Clone + Send + Sync + 'static {
    /// The trigger used unless the job sets another.
    type DefaultTrigger: Trigger;

    /// Adds the windows of a record at `timestamp` (its event time, or the
    /// processing time for processing-time assigners) to `windows`.
    fn assign_windows(&self, timestamp: i64, windows: &mut Vec<TimeWindow>);

    /// Whether windows follow event time (else processing time).
    fn is_event_time(&self) -> bool;

    /// The trigger used unless the job sets another.
    fn default_trigger(&self) -> Self::DefaultTrigger;

    /// Session windows: the gap; overlapping windows of a key are merged.
    fn session_gap(&self) -> Option<i64> {
        None
    }

    /// Windows aligned to the epoch (tumbling, sliding): `(size, slide,
    /// offset)`, so that they can be computed from slices.
    fn aligned(&self) -> Option<(i64, i64, i64)> {
        None
    }

    /// Name shown in the plan.
    fn describe(&self) -> String;
}

macro_rules! tumbling {
    ($name:ident, $event:expr, $trigger:ty, $make:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            size: i64,
            offset: i64,
        }

        impl $name {
            /// Windows of `size`, aligned to the epoch.
            pub fn of(size: Duration) -> Self {
                Self { size: millis(size).max(1), offset: 0 }
            }

            /// Windows of `size`, aligned to the epoch plus `offset` (time zones, for example).
            pub fn with_offset(size: Duration, offset: Duration) -> Self {
                let size = millis(size).max(1);
                Self { size, offset: millis(offset).rem_euclid(size) }
            }
        }

        impl WindowAssigner for $name {
            type DefaultTrigger = $trigger;

            fn assign_windows(&self, timestamp: i64, windows: &mut Vec<TimeWindow>) {
                let start = TimeWindow::start_with_offset(timestamp, self.offset, self.size);
                windows.push(TimeWindow::new(start, start + self.size));
            }

            fn is_event_time(&self) -> bool {
                $event
            }

            fn default_trigger(&self) -> $trigger {
                $make
            }

            fn aligned(&self) -> Option<(i64, i64, i64)> {
                Some((self.size, self.size, self.offset))
            }

            fn describe(&self) -> String {
                format!("{}({}ms)", stringify!($name), self.size)
            }
        }
    };
}

tumbling!(
    TumblingEventTimeWindows,
    true,
    EventTimeTrigger,
    EventTimeTrigger,
    "Fixed-size, non-overlapping event-time windows."
);
tumbling!(
    TumblingProcessingTimeWindows,
    false,
    ProcessingTimeTrigger,
    ProcessingTimeTrigger,
    "Fixed-size, non-overlapping processing-time windows."
);

macro_rules! sliding {
    ($name:ident, $event:expr, $trigger:ty, $make:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            size: i64,
            slide: i64,
            offset: i64,
        }

        impl $name {
            /// Windows of `size` starting every `slide`: each record is in `size / slide` of them.
            pub fn of(size: Duration, slide: Duration) -> Self {
                Self { size: millis(size).max(1), slide: millis(slide).max(1), offset: 0 }
            }

            /// Windows of `size` starting every `slide`, aligned to the epoch plus `offset`.
            pub fn with_offset(size: Duration, slide: Duration, offset: Duration) -> Self {
                let slide = millis(slide).max(1);
                Self { size: millis(size).max(1), slide, offset: millis(offset).rem_euclid(slide) }
            }
        }

        impl WindowAssigner for $name {
            type DefaultTrigger = $trigger;

            fn assign_windows(&self, timestamp: i64, windows: &mut Vec<TimeWindow>) {
                let last_start = TimeWindow::start_with_offset(timestamp, self.offset, self.slide);
                let mut start = last_start;
                while start > timestamp - self.size {
                    windows.push(TimeWindow::new(start, start + self.size));
                    start -= self.slide;
                }
            }

            fn is_event_time(&self) -> bool {
                $event
            }

            fn default_trigger(&self) -> $trigger {
                $make
            }

            fn aligned(&self) -> Option<(i64, i64, i64)> {
                Some((self.size, self.slide, self.offset))
            }

            fn describe(&self) -> String {
                format!("{}({}ms, {}ms)", stringify!($name), self.size, self.slide)
            }
        }
    };
}

sliding!(
    SlidingEventTimeWindows,
    true,
    EventTimeTrigger,
    EventTimeTrigger,
    "Overlapping event-time windows of a fixed size."
);
sliding!(
    SlidingProcessingTimeWindows,
    false,
    ProcessingTimeTrigger,
    ProcessingTimeTrigger,
    "Overlapping processing-time windows of a fixed size."
);

macro_rules! session {
    ($name:ident, $event:expr, $trigger:ty, $make:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            gap: i64,
        }

        impl $name {
            /// A session of a key closes after `gap` without records.
            pub fn with_gap(gap: Duration) -> Self {
                Self { gap: millis(gap).max(1) }
            }
        }

        impl WindowAssigner for $name {
            type DefaultTrigger = $trigger;

            fn assign_windows(&self, timestamp: i64, windows: &mut Vec<TimeWindow>) {
                windows.push(TimeWindow::new(timestamp, timestamp + self.gap));
            }

            fn is_event_time(&self) -> bool {
                $event
            }

            fn default_trigger(&self) -> $trigger {
                $make
            }

            fn session_gap(&self) -> Option<i64> {
                Some(self.gap)
            }

            fn describe(&self) -> String {
                format!("{}({}ms)", stringify!($name), self.gap)
            }
        }
    };
}

session!(
    EventTimeSessionWindows,
    true,
    EventTimeTrigger,
    EventTimeTrigger,
    "Event-time sessions separated by a gap of inactivity."
);
session!(
    ProcessingTimeSessionWindows,
    false,
    ProcessingTimeTrigger,
    ProcessingTimeTrigger,
    "Processing-time sessions separated by a gap of inactivity."
);

/// One window for all time per key; give it a trigger (for example `CountTrigger`).
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalWindows;

impl GlobalWindows {
    /// The global window assigner.
    pub fn create() -> Self {
        Self
    }
}

impl WindowAssigner for GlobalWindows {
    type DefaultTrigger = NeverTrigger;

    fn assign_windows(&self, _timestamp: i64, windows: &mut Vec<TimeWindow>) {
        windows.push(TimeWindow::global());
    }

    fn is_event_time(&self) -> bool {
        false
    }

    fn default_trigger(&self) -> NeverTrigger {
        NeverTrigger
    }

    fn describe(&self) -> String {
        "GlobalWindows".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(a: &impl WindowAssigner, ts: i64) -> Vec<(i64, i64)> {
        let mut w = Vec::new();
        a.assign_windows(ts, &mut w);
        let mut v: Vec<_> = w.into_iter().map(|w| (w.start, w.end)).collect();
        v.sort();
        v
    }

    #[test]
    fn a_tumbling_window_holds_each_record_once() {
        let a = TumblingEventTimeWindows::of(Duration::from_secs(10));
        assert_eq!(windows(&a, 0), vec![(0, 10_000)]);
        assert_eq!(windows(&a, 9_999), vec![(0, 10_000)]);
        assert_eq!(windows(&a, 10_000), vec![(10_000, 20_000)]);
    }

    #[test]
    fn a_sliding_assigner_gives_each_record_size_over_slide_windows() {
        let a = SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(2));
        let w = windows(&a, 12_345);
        assert_eq!(w.len(), 5);
        assert_eq!(
            w,
            vec![
                (4_000, 14_000),
                (6_000, 16_000),
                (8_000, 18_000),
                (10_000, 20_000),
                (12_000, 22_000)
            ]
        );
        for ts in [0, 1, 1_999, 2_000, 99_999] {
            let w = windows(&a, ts);
            assert_eq!(w.len(), 5, "ts {ts}");
            assert!(w.iter().all(|(s, e)| *s <= ts && ts < *e), "ts {ts}: {w:?}");
        }
    }

    #[test]
    fn a_session_assigner_gives_a_window_of_the_gap_from_the_record() {
        assert_eq!(
            windows(&EventTimeSessionWindows::with_gap(Duration::from_millis(500)), 100),
            vec![(100, 600)]
        );
    }
}
