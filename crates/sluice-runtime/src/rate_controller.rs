//! Rate control for sources, as Spark Streaming does it: a hard maximum per
//! partition, and an optional feedback controller that aims the reading
//! rate at what the job can process, with the backlog as the integral term
//! (Spark's `PIDRateEstimator`). Plain types: the caller supplies the time.
//! Memory safety never depends on them — bounded channels already slow a
//! source down — they smooth the rate and share it fairly.

/// Settings of the PID rate controller; the defaults are Spark's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pid {
    /// Weight of the difference between the current rate and the processing rate.
    pub proportional: f64,
    /// Weight of the backlog (records waiting) per second of the update interval.
    pub integral: f64,
    /// Weight of the error's change per second.
    pub derivative: f64,
    /// The rate never drops below this, in records per second.
    pub min_rate: f64,
}

impl Default for Pid {
    fn default() -> Self {
        Self { proportional: 1.0, integral: 0.2, derivative: 0.0, min_rate: 100.0 }
    }
}

/// Computes a new reading rate from each interval's measurements.
#[derive(Clone, Debug)]
pub struct PidRateEstimator {
    pid: Pid,
    /// The length of one update interval, in ms (Spark's batch interval).
    interval_ms: f64,
    first: bool,
    latest_time: i64,
    latest_rate: f64,
    latest_error: f64,
}

impl PidRateEstimator {
    /// An estimator updated every `interval_ms`.
    pub fn new(pid: Pid, interval_ms: i64) -> Self {
        Self {
            pid,
            interval_ms: interval_ms.max(1) as f64,
            first: true,
            latest_time: -1,
            latest_rate: -1.0,
            latest_error: -1.0,
        }
    }

    /// At `time` (ms): `elements` records were processed in
    /// `processing_delay` ms, and `scheduling_delay` ms is how long the
    /// backlog waits (backlog / processing rate). Returns the new rate in
    /// records per second; `None` on the first measurement (it only learns
    /// the processing rate) and when there is nothing to learn from.
    pub fn compute(
        &mut self,
        time: i64,
        elements: u64,
        processing_delay: i64,
        scheduling_delay: i64,
    ) -> Option<f64> {
        if time <= self.latest_time || elements == 0 || processing_delay <= 0 {
            return None;
        }
        let since_update = (time - self.latest_time) as f64 / 1000.0;
        let processing_rate = elements as f64 / processing_delay as f64 * 1000.0;
        let error = self.latest_rate - processing_rate;
        let historical_error = scheduling_delay as f64 * processing_rate / self.interval_ms;
        let d_error = (error - self.latest_error) / since_update;
        let rate = (self.latest_rate
            - self.pid.proportional * error
            - self.pid.integral * historical_error
            - self.pid.derivative * d_error)
            .max(self.pid.min_rate);
        self.latest_time = time;
        if self.first {
            self.latest_rate = processing_rate;
            self.latest_error = 0.0;
            self.first = false;
            return None;
        }
        self.latest_rate = rate;
        self.latest_error = error;
        Some(rate)
    }
}

/// Lets through at most `rate` records per second. It starts with one
/// token, so a busy reader never runs ahead of the rate; an idle one saves
/// up to one second's worth for a burst.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: i64,
}

impl TokenBucket {
    /// A bucket holding one token for `rate` records per second at time `now` (ms).
    pub fn new(rate: f64, now: i64) -> Self {
        Self { rate, tokens: 1.0, last: now }
    }

    /// Records per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Changes the rate.
    pub fn set_rate(&mut self, rate: f64) {
        self.rate = rate;
        self.tokens = self.tokens.min(rate.max(1.0));
    }

    /// Takes one token at `now` if there is one.
    pub fn try_take(&mut self, now: i64) -> bool {
        if now > self.last {
            let refill = (now - self.last) as f64 / 1000.0 * self.rate;
            self.tokens = (self.tokens + refill).min(self.rate.max(1.0));
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When (ms) the next token is due, if none is available now.
    pub fn next_token_at(&self) -> i64 {
        self.tokens_at(1.0)
    }

    /// When (ms) `tokens` tokens (at most a second's worth) will be there.
    pub fn tokens_at(&self, tokens: f64) -> i64 {
        let tokens = tokens.min(self.rate.max(1.0));
        if self.tokens >= tokens || self.rate <= 0.0 {
            return self.last;
        }
        self.last + ((tokens - self.tokens) / self.rate * 1000.0).ceil() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_measurement_only_learns_the_processing_rate() {
        let mut e = PidRateEstimator::new(Pid::default(), 1000);
        assert_eq!(e.compute(1000, 1000, 500, 0), None, "2,000 records/s learned");
        // error = 2000 - 1000 = 1000; historical = 0; rate = 2000 - 1000 = 1000.
        assert_eq!(e.compute(2000, 1000, 1000, 0), Some(1000.0));
    }

    #[test]
    fn a_backlog_pulls_the_rate_below_the_processing_rate() {
        let mut e = PidRateEstimator::new(Pid::default(), 1000);
        e.compute(1000, 1000, 1000, 0);
        // processing rate 1000/s, no error; 500 ms of backlog:
        // historical = 500 * 1000 / 1000 = 500; rate = 1000 - 0.2 * 500 = 900.
        assert_eq!(e.compute(2000, 1000, 1000, 500), Some(900.0));
        // Now 900 → processing 1000 again: error = 900 - 1000 = -100, no backlog:
        // rate = 900 + 100 = 1000.
        assert_eq!(e.compute(3000, 1000, 1000, 0), Some(1000.0));
    }

    #[test]
    fn the_derivative_term_uses_the_change_of_the_error_per_second() {
        let pid = Pid { proportional: 0.0, integral: 0.0, derivative: 0.5, min_rate: 0.0 };
        let mut e = PidRateEstimator::new(pid, 1000);
        e.compute(1000, 2000, 1000, 0); // learns 2000/s, error 0
                                        // processing 1000/s: error = 2000 - 1000 = 1000, d = (1000 - 0) / 2 s = 500;
                                        // rate = 2000 - 0.5 * 500 = 1750.
        assert_eq!(e.compute(3000, 1000, 1000, 0), Some(1750.0));
    }

    #[test]
    fn the_rate_never_drops_below_the_minimum() {
        let mut e = PidRateEstimator::new(Pid::default(), 1000);
        e.compute(1000, 10, 1000, 0);
        assert_eq!(e.compute(2000, 10, 1000, 1_000_000), Some(100.0));
    }

    #[test]
    fn nothing_processed_or_time_not_moving_teaches_nothing() {
        let mut e = PidRateEstimator::new(Pid::default(), 1000);
        assert_eq!(e.compute(1000, 0, 1000, 0), None);
        e.compute(1000, 100, 100, 0);
        assert_eq!(e.compute(1000, 100, 100, 0), None, "same time");
        assert_eq!(e.compute(2000, 100, 0, 0), None, "no processing time");
    }

    #[test]
    fn a_token_bucket_starts_with_one_token_and_saves_at_most_one_second() {
        let mut b = TokenBucket::new(10.0, 0);
        assert!(b.try_take(0), "the first record goes at once");
        assert!(!b.try_take(0), "no burst at the start");
        assert_eq!(b.next_token_at(), 100);
        assert!(!b.try_take(50));
        assert!(b.try_take(100), "one token per 100 ms");
        assert!(!b.try_take(100));
        assert_eq!((0..100).filter(|_| b.try_take(10_000)).count(), 10, "an idle second's burst");
        assert_eq!(b.tokens_at(5.0), 10_500, "five tokens take 500 ms");
        assert_eq!(b.tokens_at(50.0), 11_000, "never more than a second's worth");
    }
}
