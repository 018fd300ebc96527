//! Per-second rates of every subtask, from two samples of its counters a
//! second apart: records in/out per second and Flink's busy /
//! back-pressured / idle milliseconds per second, which add up to 1000.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use sluice_runtime::metrics::TaskMetrics;

/// Flink's back-pressure level of a subtask or vertex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackPressureLevel {
    /// Back-pressured at most 10% of the time.
    Ok,
    /// Back-pressured at most 50% of the time.
    Low,
    /// Back-pressured more than 50% of the time.
    High,
}

impl BackPressureLevel {
    /// The level of a back-pressured ratio (0..=1), with Flink's thresholds.
    pub fn of(ratio: f64) -> Self {
        if ratio <= 0.10 {
            BackPressureLevel::Ok
        } else if ratio <= 0.50 {
            BackPressureLevel::Low
        } else {
            BackPressureLevel::High
        }
    }

    /// As the UI shows it.
    pub fn label(self) -> &'static str {
        match self {
            BackPressureLevel::Ok => "OK",
            BackPressureLevel::Low => "LOW",
            BackPressureLevel::High => "HIGH",
        }
    }
}

/// The rates of one subtask over the last sampling interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SubtaskRates {
    /// Milliseconds per second spent processing.
    pub busy_ms_per_second: f64,
    /// Milliseconds per second spent waiting for output credit.
    pub back_pressured_ms_per_second: f64,
    /// Milliseconds per second spent waiting for input.
    pub idle_ms_per_second: f64,
    /// Records received per second.
    pub records_in_per_second: f64,
    /// Records sent (or, for a source, produced) per second.
    pub records_out_per_second: f64,
}

impl SubtaskRates {
    /// The back-pressured share of the time, 0..=1.
    pub fn back_pressured_ratio(&self) -> f64 {
        self.back_pressured_ms_per_second / 1000.0
    }

    /// Flink's level of this subtask.
    pub fn level(&self) -> BackPressureLevel {
        BackPressureLevel::of(self.back_pressured_ratio())
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    idle_nanos: u64,
    back_pressured_nanos: u64,
    records_in: u64,
    records_out: u64,
}

impl Sample {
    fn of(m: &TaskMetrics, at: Instant) -> Self {
        Self {
            at,
            idle_nanos: m.idle_nanos(),
            back_pressured_nanos: m.back_pressured_nanos(),
            records_in: m.records_in(),
            records_out: m.records_out().max(m.source_records()),
        }
    }
}

/// The rates between two samples.
fn rates(old: &Sample, new: &Sample) -> SubtaskRates {
    let window = new.at.duration_since(old.at).as_nanos().max(1) as f64;
    let per_second = |d: u64| d as f64 / window * 1e9;
    let share = |d: u64| (d as f64 / window * 1000.0).clamp(0.0, 1000.0);
    let idle = share(new.idle_nanos.saturating_sub(old.idle_nanos));
    let back_pressured =
        share(new.back_pressured_nanos.saturating_sub(old.back_pressured_nanos)).min(1000.0 - idle);
    SubtaskRates {
        busy_ms_per_second: 1000.0 - idle - back_pressured,
        back_pressured_ms_per_second: back_pressured,
        idle_ms_per_second: idle,
        records_in_per_second: per_second(new.records_in.saturating_sub(old.records_in)),
        records_out_per_second: per_second(new.records_out.saturating_sub(old.records_out)),
    }
}

/// Keeps the last sample of every subtask of every job and the rates since
/// the one before.
#[derive(Debug, Default)]
pub struct RateSampler {
    last: HashMap<(String, usize, usize), Sample>,
    rates: HashMap<(String, usize, usize), SubtaskRates>,
}

impl RateSampler {
    /// Samples the subtasks of job `job_id` at `at`.
    pub fn sample(&mut self, job_id: &str, subtasks: &[(usize, usize, &TaskMetrics)], at: Instant) {
        for (vertex, subtask, metrics) in subtasks {
            let key = (job_id.to_string(), *vertex, *subtask);
            let new = Sample::of(metrics, at);
            if let Some(old) = self.last.insert(key.clone(), new) {
                self.rates.insert(key, rates(&old, &new));
            }
        }
    }

    /// The rates of one subtask, once it was sampled twice.
    pub fn rates(&self, job_id: &str, vertex: usize, subtask: usize) -> Option<SubtaskRates> {
        self.rates.get(&(job_id.to_string(), vertex, subtask)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn busy_back_pressured_and_idle_add_up_to_1000_ms_per_second() {
        let m = TaskMetrics::default();
        let mut sampler = RateSampler::default();
        let t0 = Instant::now();
        sampler.sample("j", &[(0, 0, &m)], t0);
        assert_eq!(sampler.rates("j", 0, 0), None, "one sample has no rate");
        m.add_idle(Duration::from_millis(250));
        m.add_back_pressured(Duration::from_millis(600));
        m.add_records_out(5_000);
        sampler.sample("j", &[(0, 0, &m)], t0 + Duration::from_secs(1));
        let r = sampler.rates("j", 0, 0).unwrap();
        assert!((r.idle_ms_per_second - 250.0).abs() < 1e-6);
        assert!((r.back_pressured_ms_per_second - 600.0).abs() < 1e-6);
        assert!((r.busy_ms_per_second - 150.0).abs() < 1e-6);
        assert!((r.records_out_per_second - 5_000.0).abs() < 1e-6);
        assert_eq!(r.level(), BackPressureLevel::High);
    }

    #[test]
    fn levels_follow_flinks_thresholds() {
        assert_eq!(BackPressureLevel::of(0.0), BackPressureLevel::Ok);
        assert_eq!(BackPressureLevel::of(0.10), BackPressureLevel::Ok);
        assert_eq!(BackPressureLevel::of(0.11), BackPressureLevel::Low);
        assert_eq!(BackPressureLevel::of(0.50), BackPressureLevel::Low);
        assert_eq!(BackPressureLevel::of(0.51), BackPressureLevel::High);
    }

    #[test]
    fn waits_longer_than_the_window_are_capped_at_1000() {
        let m = TaskMetrics::default();
        let mut sampler = RateSampler::default();
        let t0 = Instant::now();
        sampler.sample("j", &[(0, 0, &m)], t0);
        // A wait that started before the window ends inside it.
        m.add_idle(Duration::from_millis(700));
        m.add_back_pressured(Duration::from_millis(900));
        sampler.sample("j", &[(0, 0, &m)], t0 + Duration::from_millis(500));
        let r = sampler.rates("j", 0, 0).unwrap();
        assert_eq!(
            r.idle_ms_per_second + r.back_pressured_ms_per_second + r.busy_ms_per_second,
            1000.0
        );
        assert!(r.busy_ms_per_second >= 0.0);
    }
}
