//! Windows on keyed streams, as in Flink: an assigner puts each record in
//! windows, a trigger decides when a window is evaluated, an optional
//! evictor removes elements, and a window function computes the result.

pub mod assigners;
pub mod evictors;
pub mod functions;
pub mod slicing_window_operator;
pub mod triggers;
pub mod window;
pub mod window_operator;

pub use assigners::{
    EventTimeSessionWindows, GlobalWindows, ProcessingTimeSessionWindows, SlidingEventTimeWindows,
    SlidingProcessingTimeWindows, TumblingEventTimeWindows, TumblingProcessingTimeWindows,
    WindowAssigner,
};
pub use evictors::{CountEvictor, Evictor, NoEvictor, TimeEvictor};
pub use functions::{ProcessWindowFunction, WindowContext};
pub use triggers::{
    CountTrigger, EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, PurgingTrigger, Trigger,
    TriggerContext, TriggerResult,
};
pub use window::TimeWindow;
