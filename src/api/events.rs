//! `GET /events`: the scheduler's events as server-sent events.
//!
//! Each [`crate::scheduler::Event`] is one SSE event named after its kind
//! (`job_added`, `job_executed`, …) with the event's JSON as data. A client that reads
//! too slowly for the scheduler's event buffer gets a `lagged` event saying how many
//! it missed, and the stream goes on; the scheduler never waits for a client.
//!
//! The stream ends when the scheduler is dropped or when [`super::serve`] begins to
//! shut down ([`Closing`]), so open dashboards do not hold up a graceful shutdown.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Extension;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::{AppState, Routes, Verb};
use crate::scheduler::Event;

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Verb::Get, "/events", stream_events)
}

/// Set to `true` when the server begins to shut down.
#[derive(Clone)]
pub(crate) struct Closing(pub(crate) watch::Receiver<bool>);

async fn stream_events(
    State(state): State<AppState>,
    closing: Option<Extension<Closing>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribed before the response is sent, so nothing after it is missed.
    let events = state.scheduler.subscribe();
    let closing = closing.map(|Extension(Closing(closing))| closing);
    let stream = stream::unfold((events, closing), |(mut events, mut closing)| async move {
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
        Some((Ok(sse), (events, closing)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
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
