//! Run history: `GET /runs` (all jobs, or one with `?job_id=`) and
//! `GET /jobs/{id}/runs`, newest first.
//!
//! A job's history is answered even after the job is gone (an empty list for an id
//! never seen): what a removed job did is exactly what someone asks about later.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{bounded, Path, Query};
use super::{AppState, Routes, Verb};
use crate::history::RunRecord;

/// Records returned when the request names no `limit`.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// The most records one request may ask for; stores read up to this many per store.
pub(crate) const MAX_LIMIT: usize = 1000;

pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Verb::Get, "/runs", list_runs)
        .add(Verb::Get, "/jobs/{id}/runs", list_job_runs)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    job_id: Option<String>,
    /// Skip this many of the newest runs.
    #[serde(default)]
    offset: Option<usize>,
    /// A `next_cursor` of an earlier page.
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRunsQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Serialize)]
struct RunList {
    runs: Vec<RunRecord>,
    /// Where the next (older) page starts; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

async fn list_runs(
    State(state): State<AppState>,
    Query(query): Query<RunsQuery>,
) -> Result<axum::Json<RunList>, ApiError> {
    let RunsQuery {
        limit,
        job_id,
        offset,
        cursor,
    } = query;
    page(&state, job_id.as_deref(), limit, offset, cursor.as_deref()).await
}

async fn list_job_runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<JobRunsQuery>,
) -> Result<axum::Json<RunList>, ApiError> {
    page(
        &state,
        Some(&id),
        query.limit,
        query.offset,
        query.cursor.as_deref(),
    )
    .await
}

/// One page of runs: `limit` (at most [`MAX_LIMIT`]) from `offset` or `cursor`, and
/// the cursor of the next page when there are more. Any depth of the history is
/// reachable a page at a time.
async fn page(
    state: &AppState,
    job_id: Option<&str>,
    limit: Option<usize>,
    offset: Option<usize>,
    cursor: Option<&str>,
) -> Result<axum::Json<RunList>, ApiError> {
    let limit = bounded("limit", limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let filters = format!("job_id={}", job_id.unwrap_or_default());
    let offset = match (offset, cursor) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "offset and cursor: give one or the other",
            ))
        }
        (_, Some(cursor)) => super::cursor::decode("runs", &filters, cursor)?,
        (offset, None) => offset.unwrap_or(0),
    };
    // One more than asked tells whether there is a next page.
    let mut runs = state
        .scheduler
        .runs_from(job_id, offset, limit.saturating_add(1))
        .await?;
    let next_cursor = (runs.len() > limit)
        .then(|| super::cursor::encode("runs", &filters, offset.saturating_add(limit)));
    runs.truncate(limit);
    Ok(axum::Json(RunList { runs, next_cursor }))
}
