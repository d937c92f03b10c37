//! `GET /metrics`: the scheduler's metrics in the Prometheus text exposition (format
//! 0.0.4), encoded by prometheus-client (docs/metrics.md lists them).
//!
//! Counters and histograms are fed where things happen (`src/metrics/`); a scrape sets
//! the gauges of state from counts the stores make and encodes the registry, so it
//! costs the same with ten jobs or a million (docs/threat-model.md, "Bounded work").

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{AppState, Routes, Verb};

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Verb::Get, "/metrics", metrics)
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.scheduler.refresh_metrics().await?;
    let mut text = String::with_capacity(16 * 1024);
    if let Err(error) = state.scheduler.metrics().encode(&mut text) {
        // Writing into a String fails only if a metric's own encoding does.
        tracing::error!(%error, "could not encode the metrics");
        return Err(ApiError::internal());
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}
