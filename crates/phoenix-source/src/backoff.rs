//! "When to poll next" without sleeping: [`PollSchedule`] combines the workspace's one
//! [`Backoff`] (from `phoenix_core::backoff`) with a ±10 % [`jitter`] into the delay after
//! each poll outcome. Nothing here reads the clock or sleeps, so it is tested with plain
//! values.

use std::time::Duration;

pub use phoenix_core::backoff::{Backoff, spread as jitter};

/// When to poll next: the interval after a success, the next backoff delay after an
/// error; both jittered by ±[`JITTER_FRACTION`].
#[derive(Debug, Clone)]
pub struct PollSchedule {
    interval: Duration,
    backoff: Backoff,
}

/// How far delays are spread either way.
pub const JITTER_FRACTION: f64 = 0.1;

impl PollSchedule {
    /// The configured interval between successful polls.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Poll every `interval`; back off from 1 s up to `max(interval, 5 min)` on errors.
    pub fn new(interval: Duration) -> Self {
        Self::with_backoff(
            interval,
            Backoff::new(
                Duration::from_secs(1),
                interval.max(Duration::from_secs(300)),
            ),
        )
    }

    /// Poll every `interval`, backing off with `backoff` on errors.
    pub fn with_backoff(interval: Duration, backoff: Backoff) -> Self {
        Self { interval, backoff }
    }

    /// The delay before the next poll, given whether this one succeeded, and a random
    /// `unit` in `[0, 1)` for jitter.
    pub fn next_delay(&mut self, succeeded: bool, unit: f64) -> Duration {
        let base = if succeeded {
            self.backoff.reset();
            self.interval
        } else {
            self.backoff.next().expect("backoff is an endless iterator")
        };
        jitter(base, JITTER_FRACTION, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn schedule_backs_off_on_errors_and_resets_on_success() {
        let mut schedule = PollSchedule::with_backoff(secs(30), Backoff::new(secs(1), secs(8)));
        assert_eq!(schedule.next_delay(true, 0.5), secs(30));
        let errors: Vec<_> = (0..5).map(|_| schedule.next_delay(false, 0.5)).collect();
        assert_eq!(errors, [secs(1), secs(2), secs(4), secs(8), secs(8)]);
        assert_eq!(schedule.next_delay(true, 0.5), secs(30));
        assert_eq!(
            schedule.next_delay(false, 0.5),
            secs(1),
            "success resets the backoff"
        );
    }
}
