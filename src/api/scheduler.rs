//! The scheduler as a whole: `POST /scheduler/pause|resume|reload` and `GET /health`.
//!
//! Health is the one route without authentication, so load balancers and service
//! managers can call it; it tells only the scheduler's state and how many jobs there
//! are, and answers 503 when the job store cannot be read.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use tokio::sync::oneshot;

use super::error::ApiError;
use super::{AppState, Routes, Verb};
use crate::daemon::{ReloadOutcome, ReloadRequest};
use crate::scheduler::SchedulerState;

pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Verb::Post, "/scheduler/pause", pause_scheduler)
        .add(Verb::Post, "/scheduler/resume", resume_scheduler)
        .add(Verb::Post, "/scheduler/reload", reload_config)
        .add_public(Verb::Get, "/health", health)
}

/// The scheduler state's name in JSON.
pub(crate) fn state_name(state: SchedulerState) -> &'static str {
    match state {
        SchedulerState::Stopped => "stopped",
        SchedulerState::Running => "running",
        SchedulerState::Paused => "paused",
    }
}

#[derive(Serialize)]
struct StateView {
    state: &'static str,
}

async fn pause_scheduler(State(state): State<AppState>) -> axum::Json<StateView> {
    state.scheduler.pause();
    axum::Json(StateView {
        state: state_name(state.scheduler.state()),
    })
}

async fn resume_scheduler(State(state): State<AppState>) -> axum::Json<StateView> {
    state.scheduler.resume();
    axum::Json(StateView {
        state: state_name(state.scheduler.state()),
    })
}

#[derive(Serialize)]
struct ReloadView {
    added: Vec<String>,
    changed: Vec<String>,
    removed: Vec<String>,
    unchanged: usize,
    failed: Vec<FailedJob>,
}

#[derive(Serialize)]
struct FailedJob {
    id: String,
    error: String,
}

/// `kairos jobs reload`: the daemon's one reload path, as SIGHUP takes it; answers
/// with what changed, or 422 with every problem of a rejected config.
async fn reload_config(State(state): State<AppState>) -> Result<axum::Json<ReloadView>, ApiError> {
    let Some(reload) = &state.settings.reload else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_config",
            "this scheduler was not started from config files (kairos run), so there is nothing to reload",
        ));
    };
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the daemon is shutting down",
        )
    };
    let (reply, outcome) = oneshot::channel();
    reload
        .send(ReloadRequest::Api(reply))
        .await
        .map_err(|_| unavailable())?;
    match outcome.await.map_err(|_| unavailable())? {
        ReloadOutcome::Applied(report) => Ok(axum::Json(ReloadView {
            added: report.added,
            changed: report.changed,
            removed: report.removed,
            unchanged: report.unchanged,
            failed: report
                .failed
                .into_iter()
                .map(|(id, error)| FailedJob {
                    id,
                    error: error.to_string(),
                })
                .collect(),
        })),
        ReloadOutcome::Rejected(problems) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!(
                "config rejected; the running config stays:\n{}",
                problems.join("\n")
            ),
        )),
    }
}

#[derive(Serialize)]
struct Health {
    /// `ok`, or `unavailable` when the job store cannot be read.
    status: &'static str,
    scheduler: &'static str,
    jobs: Option<u64>,
}

async fn health(State(state): State<AppState>) -> (StatusCode, axum::Json<Health>) {
    let scheduler = state_name(state.scheduler.state());
    match state.scheduler.count_jobs().await {
        Ok(jobs) => (
            StatusCode::OK,
            axum::Json(Health {
                status: "ok",
                scheduler,
                jobs: Some(jobs),
            }),
        ),
        Err(error) => {
            // Logged, not sent: health is public.
            tracing::error!(%error, "health check: the jobs cannot be read");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(Health {
                    status: "unavailable",
                    scheduler,
                    jobs: None,
                }),
            )
        }
    }
}
