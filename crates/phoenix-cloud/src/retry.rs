//! The retry loop for transient provider failures (throttling, 5xx, transport), timed by
//! the workspace's one [`Backoff`] (`phoenix_core::backoff`) with equal jitter.

use std::future::Future;
use std::time::Duration;

pub use phoenix_core::backoff::Backoff;

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
            Backoff::new(Duration::from_millis(10), Duration::from_secs(1)).with_equal_jitter(3),
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
        let backoff =
            Backoff::new(Duration::from_millis(10), Duration::from_secs(1)).with_equal_jitter(3);
        let transient: Result<(), _> =
            retry(4, backoff.clone(), |_| async { Err(Flaky(true)) }).await;
        assert_eq!(transient, Err((Flaky(true), 4)));
        let permanent: Result<(), _> = retry(4, backoff, |_| async { Err(Flaky(false)) }).await;
        assert_eq!(permanent, Err((Flaky(false), 1)));
    }
}
