//! [`supervise`]: keep a background task of the daemon running. A task that panics is
//! logged with its panic message and started again after a growing pause, instead of
//! vanishing unnoticed (issue 17, defect 9: alert delivery is such a task; a panic in
//! it used to end delivery for good while the loop kept queueing alerts).

use std::future::Future;
use std::time::Duration;

use phoenix_core::backoff::Backoff;
use tokio::sync::watch;

/// First pause before a restart; doubled per panic in a row, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// Longest pause before a restart.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// A task that ran this long before it panicked starts over with [`FIRST_PAUSE`].
const STABLE: Duration = Duration::from_secs(300);

/// Run `start()`'s task until it returns or `stop` turns true; when it panics, log it
/// and start a new one. Returns how many times it panicked.
///
/// `start` gets the stop signal to hand to the task; it returns `None` when the task
/// cannot be built right now (logged by `start`), which is retried like a panic.
pub async fn supervise<F, Fut>(
    what: &'static str,
    mut start: F,
    mut stop: watch::Receiver<bool>,
) -> u32
where
    F: FnMut(watch::Receiver<bool>) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    let backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
    let mut in_a_row = 0u32;
    let mut panics = 0u32;
    loop {
        if *stop.borrow() {
            return panics;
        }
        let started = tokio::time::Instant::now();
        if let Some(task) = start(stop.clone()) {
            match tokio::spawn(task).await {
                Ok(()) => return panics,
                Err(err) if err.is_panic() => {
                    panics += 1;
                    let message = panic_message(err.into_panic());
                    tracing::error!(task = what, panic = %message, "background task panicked; starting it again");
                }
                Err(_) => return panics,
            }
        }
        if started.elapsed() >= STABLE {
            in_a_row = 0;
        }
        let pause = backoff.ceiling(in_a_row);
        in_a_row = in_a_row.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stop| *stop) => return panics,
        }
    }
}

/// The text a panic was raised with, if it was a string.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&'static str>()
            .map_or_else(|| "(not a string)".to_owned(), |text| (*text).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A task that panics is started again; one that returns (stopped) is not.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_until_stopped() {
        let (stop_tx, stop) = watch::channel(false);
        let starts = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&starts);
        let supervisor = supervise(
            "test",
            move |mut stop: watch::Receiver<bool>| {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                Some(async move {
                    assert!(n >= 2, "task start {n} fails");
                    let _ = stop.wait_for(|stop| *stop).await;
                })
            },
            stop,
        );
        let stopper = async {
            while starts.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stop_tx.send(true).expect("supervisor listening");
        };
        let (panics, ()) = tokio::join!(supervisor, stopper);
        assert_eq!(panics, 2);
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn panic_messages_are_read_from_both_string_kinds() {
        assert_eq!(panic_message(Box::new("static")), "static");
        assert_eq!(panic_message(Box::new(String::from("owned"))), "owned");
        assert_eq!(panic_message(Box::new(7u8)), "(not a string)");
    }
}
