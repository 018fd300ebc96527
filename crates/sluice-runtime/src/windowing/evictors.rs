//! Evictors: remove elements from a window before or after its function
//! runs. A window with an evictor keeps all its elements.

use sluice_core::StreamRecord;

use crate::windowing::window::TimeWindow;

/// Removes elements from a window's contents (Flink's Evictor).
pub trait Evictor<T>: Clone + Send + Sync + 'static {
    /// Called before the window function.
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, window: &TimeWindow);
    /// Called after the window function.
    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, window: &TimeWindow);
}

/// No evictor: windows keep only their aggregate, not their elements.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvictor;

impl<T> Evictor<T> for NoEvictor {
    fn evict_before(&self, _elements: &mut Vec<StreamRecord<T>>, _window: &TimeWindow) {}
    fn evict_after(&self, _elements: &mut Vec<StreamRecord<T>>, _window: &TimeWindow) {}
}

/// Keeps the last `max` elements.
#[derive(Clone, Copy, Debug)]
pub struct CountEvictor {
    max: usize,
    after: bool,
}

impl CountEvictor {
    /// Keeps the last `max` elements, evicting before the window function.
    pub fn of(max: usize) -> Self {
        Self { max, after: false }
    }

    /// Evicts after the window function instead.
    pub fn after(mut self) -> Self {
        self.after = true;
        self
    }
}

fn keep_last<T>(elements: &mut Vec<StreamRecord<T>>, max: usize) {
    if elements.len() > max {
        elements.drain(..elements.len() - max);
    }
}

impl<T> Evictor<T> for CountEvictor {
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, _window: &TimeWindow) {
        if !self.after {
            keep_last(elements, self.max);
        }
    }

    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, _window: &TimeWindow) {
        if self.after {
            keep_last(elements, self.max);
        }
    }
}

/// Keeps elements within `size` of the newest element's timestamp.
#[derive(Clone, Copy, Debug)]
pub struct TimeEvictor {
    size: i64,
}

impl TimeEvictor {
    /// Evicts (before the window function) elements older than `size` before the newest.
    pub fn of(size: std::time::Duration) -> Self {
        Self { size: size.as_millis() as i64 }
    }
}

impl<T> Evictor<T> for TimeEvictor {
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, _window: &TimeWindow) {
        if let Some(newest) = elements.iter().map(|r| r.timestamp.0).max() {
            elements.retain(|r| r.timestamp.0 > newest - self.size);
        }
    }

    fn evict_after(&self, _elements: &mut Vec<StreamRecord<T>>, _window: &TimeWindow) {}
}
