//! Retry timing without sleeping: [`Backoff`] is an endless iterator of delays with
//! [`Backoff::reset`], [`jitter`] spreads a delay with a caller-supplied random unit, and
//! [`PollSchedule`] combines them into "when to poll next" after each outcome. Nothing
//! here reads the clock or sleeps, so it is tested with plain values.

use std::time::Duration;

/// Exponential backoff: `initial`, doubling each step, capped at `max`. Never ends.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays start at `initial` and double up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// Start again from `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl Default for Backoff {
    /// 1 s doubling to 5 min.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = current.saturating_mul(2).min(self.max);
        Some(current)
    }
}

/// Spread `delay` by up to `fraction` either way. `unit` is a random number in `[0, 1)`
/// supplied by the caller (`rand::random()`), which keeps this function pure.
pub fn jitter(delay: Duration, fraction: f64, unit: f64) -> Duration {
    let fraction = fraction.clamp(0.0, 1.0);
    let unit = unit.clamp(0.0, 1.0);
    let factor = 1.0 - fraction + 2.0 * fraction * unit;
    delay.mul_f64(factor)
}

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
    fn backoff_doubles_caps_and_resets() {
        let mut backoff = Backoff::new(secs(1), secs(10));
        let first: Vec<_> = backoff.by_ref().take(6).collect();
        assert_eq!(
            first,
            [secs(1), secs(2), secs(4), secs(8), secs(10), secs(10)]
        );
        backoff.reset();
        assert_eq!(backoff.next(), Some(secs(1)));
        assert_eq!(backoff.next(), Some(secs(2)));
    }

    #[test]
    fn backoff_initial_above_max_is_capped() {
        let mut backoff = Backoff::new(secs(60), secs(5));
        assert_eq!(backoff.next(), Some(secs(5)));
        assert_eq!(backoff.next(), Some(secs(5)));
    }

    #[test]
    fn jitter_spans_the_fraction_both_ways() {
        assert_eq!(jitter(secs(100), 0.1, 0.0), secs(90));
        assert_eq!(jitter(secs(100), 0.1, 0.5), secs(100));
        assert_eq!(jitter(secs(100), 0.1, 1.0), secs(110));
        // Out-of-range inputs are clamped rather than producing nonsense.
        assert_eq!(jitter(secs(100), 3.0, 0.0), secs(0));
        assert_eq!(jitter(secs(100), 0.1, 7.0), secs(110));
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
