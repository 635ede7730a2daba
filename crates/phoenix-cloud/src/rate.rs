//! A client-side token bucket (GCRA form) so that Phoenix stays inside the cloud's own
//! API rate budget instead of finding it by being throttled.
//!
//! Time comes from `tokio::time`, so tests run it with a paused clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `burst` calls at once, then `per_second` calls per second sustained.
/// Callers that exceed it wait (in arrival order of their reservation), never fail.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    /// Theoretical arrival time of the next call: the bucket's state.
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A bucket refilling at `per_second` (must be finite and > 0) holding `burst` (>= 1).
    /// Returns `None` for a rate that is not a positive finite number.
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        if !per_second.is_finite() || per_second <= 0.0 {
            return None;
        }
        let interval = Duration::try_from_secs_f64(1.0 / per_second).ok()?;
        Some(Self {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            next: Mutex::new(None),
        })
    }

    /// Reserve one call and wait until it may go.
    pub async fn acquire(&self) {
        let start = self.reserve(Instant::now());
        tokio::time::sleep_until(start).await;
    }

    /// Reserve one call at `now`; returns when it may start.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self
            .next
            .lock()
            .expect("rate limiter lock is never poisoned");
        let tat = next.map_or(now, |t| t.max(now));
        let start = tat.checked_sub(self.tolerance).map_or(now, |t| t.max(now));
        *next = Some(tat + self.interval);
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_sustained_rate() {
        let limiter = RateLimiter::new(2.0, 2).expect("valid rate");
        let t0 = Instant::now();
        for _ in 0..6 {
            limiter.acquire().await;
        }
        // 2 at once, then 4 more at 2/s: the 6th call starts 2 s after the first.
        assert_eq!(Instant::now() - t0, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_the_bucket_up_to_burst_only() {
        let limiter = RateLimiter::new(10.0, 3).expect("valid rate");
        tokio::time::sleep(Duration::from_secs(60)).await;
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(Instant::now(), t0, "a full bucket serves its burst at once");
        limiter.acquire().await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(100));
    }

    #[test]
    fn refuses_nonsense_rates() {
        assert!(RateLimiter::new(0.0, 1).is_none());
        assert!(RateLimiter::new(-1.0, 1).is_none());
        assert!(RateLimiter::new(f64::NAN, 1).is_none());
        assert!(RateLimiter::new(f64::INFINITY, 1).is_none());
    }
}
