//! After a failed attempt, decides whether the job restarts and after how
//! long, or fails for good (Flink's `ExecutionFailureHandler`), as a plain
//! type. The restart strategy sees every failure; two rules stop restarts
//! that cannot help, whatever the strategy allows:
//! - an invalid job or configuration fails the job at once (Flink's
//!   `SuppressRestartsException`);
//! - a failure that is not an external system's (a user function's error or
//!   panic, a malformed record under the `fail` policy, a bug in Sluice)
//!   fails the job once the same failure — the same message — happened
//!   `max_identical_failures` times since the job last made progress (a
//!   checkpoint completed): each restart replays the same input from the
//!   same checkpoint through the same code, so it fails the same way.
//!
//! External failures (storage, network, a broker) follow the strategy alone:
//! they may heal.

use std::collections::HashMap;
use std::time::Duration;

use sluice_core::{ErrorOrigin, SluiceError};

use crate::restart_strategy::{RestartBackoff, RestartStrategy};

/// How many identical deterministic failures end a job unless set otherwise.
pub const DEFAULT_MAX_IDENTICAL_FAILURES: u32 = 3;

/// What to do after a failure.
#[derive(Clone, Debug, PartialEq)]
pub enum FailureDecision {
    /// Restart after `delay`; this is restart number `restart` of the job.
    Restart {
        /// Wait before deploying again.
        delay: Duration,
        /// Restarts so far, this one included.
        restart: u32,
    },
    /// Fail the job; `reason` says why restarting stops here.
    Fail {
        /// Why the job is not restarted again.
        reason: String,
    },
}

/// Applies the restart strategy and the deterministic-failure rules to a job's failures.
#[derive(Debug)]
pub struct FailureHandler {
    strategy: RestartStrategy,
    backoff: RestartBackoff,
    max_identical_failures: u32,
    /// The checkpoint the counted failures would restart from.
    progress: Option<u64>,
    /// Failures since `progress`, by message.
    identical: HashMap<String, u32>,
}

impl FailureHandler {
    /// A handler for `strategy`, ending a job after `max_identical_failures`
    /// identical deterministic failures (at least 1).
    pub fn new(strategy: RestartStrategy, max_identical_failures: u32) -> Self {
        Self {
            backoff: RestartBackoff::new(strategy.clone()),
            strategy,
            max_identical_failures: max_identical_failures.max(1),
            progress: None,
            identical: HashMap::new(),
        }
    }

    /// The job's attempt failed with `error` at `now` (ms of the job's clock);
    /// `latest_checkpoint` is the completed checkpoint a restart would start from.
    pub fn on_failure(
        &mut self,
        error: &SluiceError,
        latest_checkpoint: Option<u64>,
        now: i64,
    ) -> FailureDecision {
        if error.suppresses_restarts() {
            return FailureDecision::Fail {
                reason: "the job or its configuration is invalid; restarting cannot help".into(),
            };
        }
        if latest_checkpoint != self.progress {
            // The job got further since the failures counted so far.
            self.progress = latest_checkpoint;
            self.identical.clear();
        }
        if !error.is_retriable() {
            let seen = self.identical.entry(error.report().to_string()).or_insert(0);
            *seen += 1;
            if *seen >= self.max_identical_failures {
                let since = match latest_checkpoint {
                    Some(id) => format!("from checkpoint {id}"),
                    None => "from the start, before any checkpoint completed".into(),
                };
                return FailureDecision::Fail {
                    reason: format!(
                        "the same failure ({}) happened {} times, each time {since}; restarting \
                         cannot help (the limit is set with max_identical_failures)",
                        match error.origin() {
                            ErrorOrigin::Internal => "internal",
                            _ => "user code or input",
                        },
                        *seen,
                    ),
                };
            }
        }
        match self.backoff.on_failure(now) {
            Some(delay) => FailureDecision::Restart { delay, restart: self.backoff.restarts() },
            None => FailureDecision::Fail {
                reason: match self.strategy {
                    RestartStrategy::None => "the restart strategy is none".into(),
                    _ => format!(
                        "the restart strategy ({}) allows no more restarts after {}",
                        self.strategy,
                        self.backoff.restarts()
                    ),
                },
            },
        }
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.backoff.restarts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn malformed_line() -> SluiceError {
        SluiceError::Task {
            operator: "Source: words".into(),
            subtask: "1/1".into(),
            cause: Box::new(SluiceError::MalformedRecord {
                input: "in/data.bin line 1".into(),
                message: "not UTF-8".into(),
            }),
        }
    }

    fn unreachable_broker() -> SluiceError {
        SluiceError::external("kafka localhost:9092", "connection refused")
    }

    fn endless() -> RestartStrategy {
        RestartStrategy::FixedDelay { attempts: u32::MAX, delay: S }
    }

    fn is_restart(d: &FailureDecision) -> bool {
        matches!(d, FailureDecision::Restart { .. })
    }

    #[test]
    fn a_deterministic_failure_ends_the_job_at_the_third_identical_occurrence() {
        let mut h = FailureHandler::new(endless(), DEFAULT_MAX_IDENTICAL_FAILURES);
        assert_eq!(
            h.on_failure(&malformed_line(), Some(4), 0),
            FailureDecision::Restart { delay: S, restart: 1 }
        );
        assert_eq!(
            h.on_failure(&malformed_line(), Some(4), 10),
            FailureDecision::Restart { delay: S, restart: 2 }
        );
        let FailureDecision::Fail { reason } = h.on_failure(&malformed_line(), Some(4), 20) else {
            panic!("the third identical failure must end the job");
        };
        assert!(reason.contains("3 times") && reason.contains("checkpoint 4"), "{reason}");
        assert_eq!(h.restarts(), 2);
    }

    #[test]
    fn external_failures_follow_the_strategy_however_often_they_repeat() {
        let mut h = FailureHandler::new(endless(), DEFAULT_MAX_IDENTICAL_FAILURES);
        for i in 0..20 {
            assert!(is_restart(&h.on_failure(&unreachable_broker(), Some(1), i)));
        }
        assert_eq!(h.restarts(), 20);
    }

    #[test]
    fn a_completed_checkpoint_between_failures_starts_the_count_again() {
        let mut h = FailureHandler::new(endless(), 2);
        assert!(is_restart(&h.on_failure(&malformed_line(), Some(1), 0)));
        assert!(is_restart(&h.on_failure(&malformed_line(), Some(2), 1)), "progress was made");
        assert!(!is_restart(&h.on_failure(&malformed_line(), Some(2), 2)));
    }

    #[test]
    fn different_failures_are_counted_apart() {
        let mut h = FailureHandler::new(endless(), 2);
        let other = SluiceError::user("division by zero");
        assert!(is_restart(&h.on_failure(&malformed_line(), None, 0)));
        assert!(is_restart(&h.on_failure(&other, None, 1)));
        assert!(!is_restart(&h.on_failure(&other, None, 2)), "the second identical one ends it");
    }

    #[test]
    fn an_invalid_configuration_never_restarts() {
        let mut h = FailureHandler::new(endless(), DEFAULT_MAX_IDENTICAL_FAILURES);
        let err = SluiceError::Config("transaction.timeout.ms too small".into());
        assert!(matches!(h.on_failure(&err, None, 0), FailureDecision::Fail { .. }));
        assert_eq!(h.restarts(), 0);
    }

    #[test]
    fn the_strategy_still_limits_deterministic_failures_below_the_identical_limit() {
        let mut h = FailureHandler::new(RestartStrategy::FixedDelay { attempts: 1, delay: S }, 5);
        assert!(is_restart(&h.on_failure(&malformed_line(), None, 0)));
        let FailureDecision::Fail { reason } = h.on_failure(&malformed_line(), None, 1) else {
            panic!("the strategy allows one restart");
        };
        assert!(reason.contains("fixed delay") && reason.contains("after 1"), "{reason}");
    }

    #[test]
    fn without_a_restart_strategy_the_first_failure_ends_the_job() {
        let mut h = FailureHandler::new(RestartStrategy::None, DEFAULT_MAX_IDENTICAL_FAILURES);
        assert_eq!(
            h.on_failure(&unreachable_broker(), None, 0),
            FailureDecision::Fail { reason: "the restart strategy is none".into() }
        );
    }
}
