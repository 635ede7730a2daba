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
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = state.inner.events.subscribe();
    let snapshots = state.inner.snapshots.clone();
    let closing = state.inner.closing.subscribe();
    let keep_alive = state.inner.config.sse_keep_alive;
    let stream = futures::stream::unfold(
        (events, snapshots, closing),
        |(mut events, mut snapshots, mut closing)| async move {
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
                            .map(|e| (Ok(e), (events, snapshots, closing)));
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive))
}
