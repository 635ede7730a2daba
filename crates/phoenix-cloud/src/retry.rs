//! Jittered exponential backoff as an iterator with `reset()`, and the retry loop that
//! uses it for transient failures (throttling, 5xx, transport).

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Exponential backoff with "equal jitter": the n-th delay is uniformly drawn from
/// `[d/2, d]` where `d = min(cap, base * 2^n)`. Never ends; the caller bounds attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    /// A backoff seeded from the OS.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self::with_rng(base, cap, StdRng::from_os_rng())
    }

    /// A reproducible backoff (tests).
    pub fn seeded(base: Duration, cap: Duration, seed: u64) -> Self {
        Self::with_rng(base, cap, StdRng::seed_from_u64(seed))
    }

    fn with_rng(base: Duration, cap: Duration, rng: StdRng) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
            rng,
        }
    }

    /// Start again from the base delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before jitter for the current attempt.
    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let jittered = self.rng.random_range(nanos / 2..=nanos);
        Some(Duration::from_nanos(jittered))
    }
}

/// Whether a failed attempt is worth repeating.
pub(crate) trait Retryable {
    fn is_retryable(&self) -> bool;
}

/// Call `attempt_fn(n)` for n = 1.. until it succeeds, fails for good, or `max_attempts`
/// were made. Returns the last error and the number of attempts made.
pub(crate) async fn retry<T, E, F, Fut>(
    max_attempts: u32,
    mut backoff: Backoff,
    mut attempt_fn: F,
) -> Result<T, (E, u32)>
where
    E: Retryable,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let max_attempts = max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match attempt_fn(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) if err.is_retryable() && attempt < max_attempts => {
                let delay = backoff.next().expect("backoff never ends");
                tracing::debug!(attempt, ?delay, "transient provider error, retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(err) => return Err((err, attempt)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_jitter_bounds_and_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        let delays: Vec<Duration> = Backoff::seeded(base, cap, 7).take(8).collect();
        let ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (delay, ceiling) in delays.iter().zip(ceilings) {
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                *delay <= ceiling && *delay >= ceiling / 2,
                "{delay:?} vs {ceiling:?}"
            );
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::seeded(Duration::from_millis(100), Duration::from_secs(10), 1);
        for _ in 0..5 {
            backoff.next();
        }
        backoff.reset();
        let first = backoff.next().expect("infinite");
        assert!(first <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let a: Vec<_> = Backoff::seeded(Duration::from_secs(1), Duration::from_secs(60), 1)
            .take(5)
            .collect();
        let b: Vec<_> = Backoff::seeded(Duration::from_secs(1), Duration::from_secs(60), 2)
            .take(5)
            .collect();
        assert_ne!(a, b);
    }

    #[derive(Debug, PartialEq)]
    struct Flaky(bool);
    impl Retryable for Flaky {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success() {
        let mut calls = 0;
        let result = retry(
            5,
            Backoff::seeded(Duration::from_millis(10), Duration::from_secs(1), 3),
            |n| {
                calls += 1;
                async move { if n < 3 { Err(Flaky(true)) } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_and_at_once_on_permanent_errors() {
        let backoff = Backoff::seeded(Duration::from_millis(10), Duration::from_secs(1), 3);
        let transient: Result<(), _> =
            retry(4, backoff.clone(), |_| async { Err(Flaky(true)) }).await;
        assert_eq!(transient, Err((Flaky(true), 4)));
        let permanent: Result<(), _> = retry(4, backoff, |_| async { Err(Flaky(false)) }).await;
        assert_eq!(permanent, Err((Flaky(false), 1)));
    }
}
