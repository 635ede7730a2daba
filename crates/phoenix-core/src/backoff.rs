//! The one retry-timing type of the workspace: [`Backoff`], an endless iterator of
//! exponential delays with [`Backoff::reset`], optionally jittered into the upper half of
//! each delay ("equal jitter"), and [`spread`], which spreads a delay by a fraction either
//! way. Nothing here sleeps or reads the clock, and randomness comes from a seed the
//! caller passes in (or, for the stateless [`Backoff::delay`], a random unit in `[0, 1)`),
//! so every delay is tested with plain values.
//!
//! Users: the source's poll schedule (no jitter, then spread ±10 %), the cloud's retry of
//! transient provider errors (equal jitter), alert delivery (equal jitter, by the stored
//! failure count) and the executor's step retries (no jitter, by attempt number).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How a delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// The delay is exactly `min(max, initial * 2^n)`.
    None,
    /// The delay is drawn from `[d/2, d]` with `d = min(max, initial * 2^n)`, so clients
    /// coming back after an outage do not all retry at once.
    Equal,
}

/// Exponential backoff: the n-th delay (0-based) is `min(max, initial * 2^n)`, jittered
/// as [`Jitter`] says. As an iterator it never ends; the caller bounds attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: Jitter,
    attempt: u32,
    rng: StdRng,
}

/// Exponents above this change nothing (`2^31` times any non-zero delay saturates long
/// before any cap a person would configure).
const MAX_EXPONENT: u32 = 31;

impl Backoff {
    /// Delays start at `initial` (capped at `max`) and double up to `max`; no jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial: initial.min(max),
            max,
            jitter: Jitter::None,
            attempt: 0,
            rng: StdRng::seed_from_u64(0),
        }
    }

    /// The same delays with [`Jitter::Equal`], drawn from a generator seeded with `seed`
    /// (the caller passes `rand::random()` in production, a constant in tests).
    pub fn with_equal_jitter(mut self, seed: u64) -> Self {
        self.jitter = Jitter::Equal;
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// The first delay (before jitter).
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The cap.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Start again from the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before jitter after `attempt` earlier delays: `min(max, initial * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(MAX_EXPONENT);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The `attempt`-th delay (0-based) without advancing the iterator, jittered with
    /// `unit`, a random number in `[0, 1)` supplied by the caller (ignored without jitter).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Equal => {
                let half = ceiling / 2;
                half + (ceiling - half).mul_f64(unit.clamp(0.0, 1.0))
            }
        }
    }
}

impl Default for Backoff {
    /// 1 s doubling to 5 min, no jitter.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let unit = match self.jitter {
            Jitter::None => 0.0,
            Jitter::Equal => self.rng.random::<f64>(),
        };
        let delay = self.delay(self.attempt, unit);
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }
}

/// Spread `delay` by up to `fraction` either way. `unit` is a random number in `[0, 1)`
/// supplied by the caller (`rand::random()`), which keeps this function pure.
pub fn spread(delay: Duration, fraction: f64, unit: f64) -> Duration {
    let fraction = fraction.clamp(0.0, 1.0);
    let unit = unit.clamp(0.0, 1.0);
    let factor = 1.0 - fraction + 2.0 * fraction * unit;
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn doubles_caps_and_resets() {
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
    fn initial_above_max_is_capped() {
        let mut backoff = Backoff::new(secs(60), secs(5));
        assert_eq!(backoff.next(), Some(secs(5)));
        assert_eq!(backoff.next(), Some(secs(5)));
        assert_eq!(backoff.initial(), secs(5));
    }

    #[test]
    fn huge_attempts_saturate_at_the_cap() {
        let backoff = Backoff::new(millis(1), secs(3600));
        assert_eq!(backoff.ceiling(u32::MAX), secs(3600));
        assert_eq!(backoff.delay(u32::MAX, 0.0), secs(3600));
        let mut endless = Backoff::new(millis(1), secs(1));
        assert_eq!(endless.nth(10_000), Some(secs(1)));
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half_and_caps() {
        let delays: Vec<Duration> = Backoff::new(millis(100), secs(1))
            .with_equal_jitter(7)
            .take(8)
            .collect();
        let ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (delay, ceiling) in delays.iter().zip(ceilings) {
            let ceiling = millis(ceiling);
            assert!(
                *delay <= ceiling && *delay >= ceiling / 2,
                "{delay:?} vs {ceiling:?}"
            );
        }
    }

    #[test]
    fn equal_jitter_is_reproducible_per_seed_and_differs_between_seeds() {
        let run = |seed| -> Vec<Duration> {
            Backoff::new(secs(1), secs(60))
                .with_equal_jitter(seed)
                .take(5)
                .collect()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn reset_starts_a_jittered_backoff_over() {
        let mut backoff = Backoff::new(millis(100), secs(10)).with_equal_jitter(1);
        for _ in 0..5 {
            backoff.next();
        }
        backoff.reset();
        let first = backoff.next().expect("endless");
        assert!(first <= millis(100) && first >= millis(50), "{first:?}");
    }

    #[test]
    fn stateless_delay_follows_the_unit() {
        let backoff = Backoff::new(secs(1), secs(60)).with_equal_jitter(0);
        assert_eq!(backoff.delay(0, 0.0), millis(500));
        assert_eq!(backoff.delay(0, 1.0), secs(1));
        assert_eq!(backoff.delay(1, 1.0), secs(2));
        assert_eq!(backoff.delay(3, 1.0), secs(8));
        assert_eq!(backoff.delay(6, 1.0), secs(60));
        assert_eq!(backoff.delay(2, 0.5), secs(3));
        // Without jitter the unit is ignored.
        assert_eq!(Backoff::new(secs(1), secs(60)).delay(2, 0.9), secs(4));
    }

    #[test]
    fn spread_spans_the_fraction_both_ways() {
        assert_eq!(spread(secs(100), 0.1, 0.0), secs(90));
        assert_eq!(spread(secs(100), 0.1, 0.5), secs(100));
        assert_eq!(spread(secs(100), 0.1, 1.0), secs(110));
        // Out-of-range inputs are clamped rather than producing nonsense.
        assert_eq!(spread(secs(100), 3.0, 0.0), secs(0));
        assert_eq!(spread(secs(100), 0.1, 7.0), secs(110));
    }
}
