//! The scheduler as a whole: `POST /scheduler/pause|resume|reload` and `GET /health`.
//!
//! Health is the one route without authentication, so load balancers and service
//! managers can call it; it tells only the scheduler's state, how many jobs there
//! are and which config generation the store holds against this node's config (so
//! "why didn't my edit apply?" has an answer), and answers 503 when the job store
//! cannot be read.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use tokio::sync::oneshot;

use super::error::ApiError;
use super::extract::{parse_json, JsonBody, NoFields};
use super::reload::{ReloadOutcome, ReloadRequest, ReloadView};
use super::{AppState, Routes, Verb};
use crate::scheduler::{ConfigState, SchedulerState, Standing};

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

async fn pause_scheduler(
    State(state): State<AppState>,
    NoFields: NoFields,
) -> axum::Json<StateView> {
    state.scheduler.pause();
    axum::Json(StateView {
        state: state_name(state.scheduler.state()),
    })
}

async fn resume_scheduler(
    State(state): State<AppState>,
    NoFields: NoFields,
) -> axum::Json<StateView> {
    state.scheduler.resume();
    axum::Json(StateView {
        state: state_name(state.scheduler.state()),
    })
}

/// The optional body of `POST /scheduler/reload`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    /// Apply the files even if the store's generations say they were superseded.
    #[serde(default)]
    force: bool,
}

/// `kairos jobs reload`: the daemon's one reload path, as SIGHUP takes it; answers
/// with what changed, or 422 with every problem of a rejected config. The body is
/// optional; `{"force": true}` applies files whose content was superseded (a rollback).
async fn reload_config(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<axum::Json<ReloadView>, ApiError> {
    // No body and `{}` are both a plain reload, as before `force` existed; anything
    // else must be the object openapi.json declares.
    let body: ReloadBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadBody::default()
    } else {
        parse_json::<ReloadBody>(&body)?
    };
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
        .send(ReloadRequest::Api {
            reply,
            force: body.force,
        })
        .await
        .map_err(|_| unavailable())?;
    match outcome.await.map_err(|_| unavailable())? {
        ReloadOutcome::Applied(view) => Ok(axum::Json(*view)),
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
    /// The zone rules in use: where from and which tz database release.
    tzdata: HealthTzData,
    /// The config generation the store holds and this node's config.
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<HealthConfig>,
}

/// What `/health` says of the zone rules: not the directory (the route is public).
#[derive(Serialize)]
struct HealthTzData {
    /// `system` or `compiled-in`.
    source: &'static str,
    /// The tz database release, `2025b`.
    version: String,
}

impl HealthTzData {
    fn now() -> HealthTzData {
        let info = crate::trigger::tzdata::info();
        HealthTzData {
            source: info.source,
            version: info.version,
        }
    }
}

/// What `/health` says of the config: generations and hashes only (the route is
/// public; which node applied what is on the authenticated overview).
#[derive(Serialize)]
struct HealthConfig {
    /// The store's newest config generation; `None` before any was applied.
    store_generation: Option<u64>,
    /// Its content hash.
    store_hash: Option<String>,
    /// The content hash of this node's config files (`None`: not started from files).
    node_hash: Option<String>,
    /// The generation that holds this node's config, as its last start or reload
    /// found it (`None`: not started from files).
    node_generation: Option<u64>,
    /// Whether the store holds this node's config.
    current: bool,
    /// `current`, or `superseded` when this node's config was not applied because a
    /// newer one replaced it; `none` when the node has no config files.
    node_state: &'static str,
}

impl From<ConfigState> for HealthConfig {
    fn from(state: ConfigState) -> HealthConfig {
        let node_state = match (&state.node_hash, state.current) {
            (None, _) => "none",
            (Some(_), true) => "current",
            (Some(_), false) => "superseded",
        };
        let node_generation = state.node.as_ref().map(|standing| match standing {
            Standing::Current { generation, .. } => generation.generation,
            Standing::Superseded { was, .. } => *was,
        });
        HealthConfig {
            node_generation,
            store_generation: state.store.as_ref().map(|store| store.generation),
            store_hash: state.store.map(|store| store.hash),
            node_hash: state.node_hash,
            current: state.current,
            node_state,
        }
    }
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
                tzdata: HealthTzData::now(),
                config: match state.scheduler.config_state().await {
                    Ok(config) => Some(config.into()),
                    Err(error) => {
                        tracing::warn!(%error, "health check: the config generation cannot be read");
                        None
                    }
                },
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
                    tzdata: HealthTzData::now(),
                    config: None,
                }),
            )
        }
    }
}
