//! `GET /api/v1/events`: the broadcast of [`ApiEvent`]s as server-sent events.
//!
//! Each subscriber has its own broadcast receiver, so a slow client never blocks the loop
//! (`broadcast::Sender::send` never waits). A subscriber that falls behind gets a
//! `lagged` event with the number of missed events and continues from the oldest kept.
//! The stream ends when `ApiState::close_streams` is called or the loop drops its snapshot
//! sender (daemon shutdown), so graceful shutdown is not held up by open streams.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::state::ApiState;

/// Turns one broadcast result into an SSE event; `None` ends the stream.
fn to_event(result: Result<crate::ApiEvent, RecvError>) -> Option<Event> {
    match result {
        Ok(event) => {
            let data = serde_json::to_string(&event).expect("ApiEvent always serialises");
            Some(Event::default().event(event.name()).data(data))
        }
        Err(RecvError::Lagged(skipped)) => Some(
            Event::default()
                .event("lagged")
                .data(format!("{{\"type\":\"lagged\",\"skipped\":{skipped}}}")),
        ),
        Err(RecvError::Closed) => None,
    }
}

/// Server-sent events stream.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events",
    responses((status = 200, description = "text/event-stream of ApiEvent (event name = `type`), plus `lagged`", content_type = "text/event-stream", body = crate::ApiEvent))
)]
pub async fn events(
    State(state): State<ApiState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, crate::ApiError> {
    let subscriber = Subscriber::join(&state)?;
    let events = state.inner.events.subscribe();
    let snapshots = state.inner.snapshots.clone();
    let closing = state.inner.closing.subscribe();
    let keep_alive = state.inner.config.sse_keep_alive;
    let stream = futures::stream::unfold(
        (events, snapshots, closing, subscriber),
        |(mut events, mut snapshots, mut closing, subscriber)| async move {
            loop {
                if *closing.borrow_and_update() {
                    return None;
                }
                tokio::select! {
                    biased;
                    closed = closing.changed() => {
                        if closed.is_err() {
                            return None;
                        }
                    }
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                    received = events.recv() => {
                        return to_event(received)
                            .map(|e| (Ok(e), (events, snapshots, closing, subscriber)));
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)))
}

/// One open event stream, counted against `max_sse_subscribers` until dropped (issue
/// 17: without a cap, clients could hold any number of streams open).
struct Subscriber(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Subscriber {
    fn join(state: &ApiState) -> Result<Subscriber, crate::ApiError> {
        use std::sync::atomic::Ordering;
        let count = &state.inner.sse_subscribers;
        let cap = state.inner.config.max_sse_subscribers;
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .map_err(|_| crate::ApiError::Overloaded {
                what: "event streams",
            })?;
        Ok(Subscriber(std::sync::Arc::clone(count)))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
