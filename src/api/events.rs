//! `GET /events`: the scheduler's events as server-sent events.
//!
//! Each [`crate::scheduler::Event`] is one SSE event named after its kind
//! (`job_added`, `job_executed`, …) with the event's JSON as data. A client that reads
//! too slowly for the scheduler's event buffer gets a `lagged` event saying how many
//! it missed, and the stream goes on; the scheduler never waits for a client.
//!
//! At most [`super::ApiSettings::max_event_streams`] streams are open at once; past
//! that a new one gets 503, so dashboards left open cannot pile up without bound.
//!
//! The stream ends when the scheduler is dropped or when [`super::serve`] begins to
//! shut down ([`Closing`]), so open dashboards do not hold up a graceful shutdown.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Extension;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::error::ApiError;
use super::{AppState, Routes, Verb};
use crate::scheduler::Event;

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Verb::Get, "/events", stream_events)
}

/// Set to `true` when the server begins to shut down.
#[derive(Clone)]
pub(crate) struct Closing(pub(crate) watch::Receiver<bool>);

/// One open stream, counted in [`AppState::event_streams`] until it is dropped.
struct Subscriber(Arc<AtomicUsize>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn stream_events(
    State(state): State<AppState>,
    closing: Option<Extension<Closing>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let open = state.event_streams.fetch_add(1, Ordering::Relaxed);
    let subscriber = Subscriber(state.event_streams.clone());
    if open >= state.settings.max_event_streams {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "{} event streams are open, the most this server keeps; retry later",
                state.settings.max_event_streams
            ),
        ));
    }
    // Subscribed before the response is sent, so nothing after it is missed.
    let events = state.scheduler.subscribe();
    let closing = closing.map(|Extension(Closing(closing))| closing);
    let stream = stream::unfold(
        (events, closing, subscriber),
        |(mut events, mut closing, subscriber)| async move {
            let received = match &mut closing {
                Some(closing) => tokio::select! {
                    received = events.recv() => received,
                    _ = closing.wait_for(|closed| *closed) => return None,
                },
                None => events.recv().await,
            };
            let sse = match received {
                Ok(event) => to_sse(&event),
                Err(RecvError::Lagged(missed)) => SseEvent::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{missed}}}")),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(sse), (events, closing, subscriber)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The SSE form of `event`: named by its `event` tag, its JSON as data.
fn to_sse(event: &Event) -> SseEvent {
    let json = match serde_json::to_value(event) {
        Ok(json) => json,
        Err(error) => {
            tracing::error!(%error, "a scheduler event could not be written as JSON");
            return SseEvent::default().comment("an event could not be written as JSON");
        }
    };
    let name = json
        .get("event")
        .and_then(|name| name.as_str())
        .unwrap_or("event")
        .to_owned();
    SseEvent::default().event(name).data(json.to_string())
}
