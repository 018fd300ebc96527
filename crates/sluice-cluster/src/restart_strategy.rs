//! Restart strategies (Flink's RestartStrategy), as plain types: after a
//! failure, restart after a delay, or give up. Times are ms of the job's clock.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

/// How a job restarts after a task failure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum RestartStrategy {
    /// Never restart: the first failure fails the job.
    None,
    /// Restart up to `attempts` times, waiting `delay` each time.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Wait `initial`, then `multiplier` times longer each time up to `max`;
    /// after `reset_after` without failure the wait starts again at `initial`.
    /// Flink's default when checkpointing is on.
    ExponentialDelay {
        /// First wait.
        initial: Duration,
        /// Longest wait.
        max: Duration,
        /// Growth per failure.
        multiplier: f64,
        /// Quiet time after which the wait resets.
        reset_after: Duration,
    },
    /// Restart unless more than `max_failures` happened within `interval`.
    FailureRate {
        /// Failures allowed within the interval.
        max_failures: u32,
        /// The sliding interval.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl RestartStrategy {
    /// Flink's default with checkpointing: exponential delay from 1 s up to 1 min, doubling, reset after 1 h.
    pub fn exponential_default() -> Self {
        RestartStrategy::ExponentialDelay {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            reset_after: Duration::from_secs(3600),
        }
    }
}

impl std::fmt::Display for RestartStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartStrategy::None => write!(f, "none"),
            RestartStrategy::FixedDelay { attempts, delay } => {
                write!(f, "fixed delay: {attempts} attempts, {delay:?} apart")
            }
            RestartStrategy::ExponentialDelay { initial, max, multiplier, .. } => {
                write!(f, "exponential delay: {initial:?} growing ×{multiplier} up to {max:?}")
            }
            RestartStrategy::FailureRate { max_failures, interval, delay } => write!(
                f,
                "failure rate: at most {max_failures} failures in {interval:?}, {delay:?} apart"
            ),
        }
    }
}

/// Applies a restart strategy to a sequence of failures.
#[derive(Debug)]
pub struct RestartBackoff {
    strategy: RestartStrategy,
    restarts: u32,
    next_delay: Duration,
    last_failure: Option<i64>,
    recent: VecDeque<i64>,
}

impl RestartBackoff {
    /// A back-off following `strategy`.
    pub fn new(strategy: RestartStrategy) -> Self {
        let next_delay = match &strategy {
            RestartStrategy::ExponentialDelay { initial, .. } => *initial,
            _ => Duration::ZERO,
        };
        Self { strategy, restarts: 0, next_delay, last_failure: None, recent: VecDeque::new() }
    }

    /// A failure happened at `now`: how long to wait before restarting, or
    /// `None` to fail the job for good.
    pub fn on_failure(&mut self, now: i64) -> Option<Duration> {
        let previous = self.last_failure.replace(now);
        match &self.strategy {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => {
                if self.restarts >= *attempts {
                    return None;
                }
                self.restarts += 1;
                Some(*delay)
            }
            RestartStrategy::ExponentialDelay { initial, max, multiplier, reset_after } => {
                if previous.is_some_and(|p| now - p >= reset_after.as_millis() as i64) {
                    self.next_delay = *initial;
                }
                let delay = self.next_delay.min(*max);
                self.next_delay = Duration::from_secs_f64(
                    (delay.as_secs_f64() * multiplier).min(max.as_secs_f64()),
                );
                self.restarts += 1;
                Some(delay)
            }
            RestartStrategy::FailureRate { max_failures, interval, delay } => {
                let window = interval.as_millis() as i64;
                self.recent.push_back(now);
                while self.recent.front().is_some_and(|t| now - *t >= window) {
                    self.recent.pop_front();
                }
                if self.recent.len() as u32 > *max_failures {
                    return None;
                }
                self.restarts += 1;
                Some(*delay)
            }
        }
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn no_restart_strategy_gives_up_at_once() {
        assert_eq!(RestartBackoff::new(RestartStrategy::None).on_failure(0), None);
    }

    #[test]
    fn fixed_delay_restarts_a_fixed_number_of_times() {
        let mut b = RestartBackoff::new(RestartStrategy::FixedDelay { attempts: 2, delay: S });
        assert_eq!(b.on_failure(0), Some(S));
        assert_eq!(b.on_failure(10), Some(S));
        assert_eq!(b.on_failure(20), None);
    }

    #[test]
    fn exponential_delay_grows_to_its_maximum_and_resets_after_a_quiet_period() {
        let strategy = RestartStrategy::ExponentialDelay {
            initial: S,
            max: 5 * S,
            multiplier: 2.0,
            reset_after: Duration::from_secs(60),
        };
        let mut b = RestartBackoff::new(strategy);
        let delays: Vec<u64> = (0..5).map(|i| b.on_failure(i * 1000).unwrap().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 5, 5]);
        assert_eq!(
            b.on_failure(4_000 + 60_000),
            Some(S),
            "a minute without failure resets the delay"
        );
    }

    #[test]
    fn failure_rate_gives_up_when_too_many_failures_fall_in_the_interval() {
        let strategy = RestartStrategy::FailureRate {
            max_failures: 2,
            interval: Duration::from_secs(10),
            delay: S,
        };
        let mut b = RestartBackoff::new(strategy);
        assert_eq!(b.on_failure(0), Some(S));
        assert_eq!(b.on_failure(5_000), Some(S));
        assert_eq!(b.on_failure(10_000), Some(S), "the failure at 0 left the 10 s interval");
        assert_eq!(b.on_failure(11_000), None, "3 failures within 10 s");
    }
}
