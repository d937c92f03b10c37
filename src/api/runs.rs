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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRunsQuery {
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Serialize)]
struct RunList {
    runs: Vec<RunRecord>,
}

async fn list_runs(
    State(state): State<AppState>,
    Query(query): Query<RunsQuery>,
) -> Result<axum::Json<RunList>, ApiError> {
    let limit = bounded("limit", query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let runs = state.scheduler.runs(query.job_id.as_deref(), limit).await?;
    Ok(axum::Json(RunList { runs }))
}

async fn list_job_runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<JobRunsQuery>,
) -> Result<axum::Json<RunList>, ApiError> {
    let limit = bounded("limit", query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let runs = state.scheduler.runs(Some(&id), limit).await?;
    Ok(axum::Json(RunList { runs }))
}
