//! The scheduler as a whole: `POST /scheduler/pause|resume` and `GET /health`.
//!
//! Health is the one route without authentication, so load balancers and service
//! managers can call it; it tells only the scheduler's state and how many jobs there
//! are, and answers 503 when the job store cannot be read.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::{AppState, Routes, Verb};
use crate::scheduler::SchedulerState;

pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Verb::Post, "/scheduler/pause", pause_scheduler)
        .add(Verb::Post, "/scheduler/resume", resume_scheduler)
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
struct Health {
    /// `ok`, or `unavailable` when the job store cannot be read.
    status: &'static str,
    scheduler: &'static str,
    jobs: Option<usize>,
}

async fn health(State(state): State<AppState>) -> (StatusCode, axum::Json<Health>) {
    let scheduler = state_name(state.scheduler.state());
    match state.scheduler.get_jobs().await {
        Ok(jobs) => (
            StatusCode::OK,
            axum::Json(Health {
                status: "ok",
                scheduler,
                jobs: Some(jobs.len()),
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
