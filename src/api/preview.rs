//! `POST /preview`: the fire times a trigger would have, before any job uses it — the
//! web page's live preview while rescheduling.
//!
//! The trigger is built and iterated exactly as `kairos next` does it
//! ([`Trigger::new`], [`Trigger::fire_times`]), with the daemon's time zone as the
//! default, so the preview, the CLI and the running job cannot disagree. It is given as
//! JSON (`trigger`, what `POST /jobs` takes) or as one line of `kairos next` words
//! (`words`).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::compute::{off_workers, too_costly};
use super::error::ApiError;
use super::extract::{bounded, Json};
use super::view::describe_trigger;
use super::{AppState, Routes, Verb};
use crate::trigger::datetime::format_instant;
use crate::trigger::words::{spec_from_line, spec_to_words};
use crate::trigger::{Trigger, TriggerContext, TriggerError, TriggerSpec};

/// Fire times shown when the request names no `count`.
pub(super) const DEFAULT_COUNT: usize = 10;
/// The most fire times one request may ask for.
pub(super) const MAX_COUNT: usize = 100;

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Verb::Post, "/preview", preview)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    #[serde(default)]
    trigger: Option<TriggerSpec>,
    #[serde(default)]
    words: Option<String>,
    #[serde(default)]
    count: Option<usize>,
    /// RFC 3339; now when absent.
    #[serde(default)]
    from: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct PreviewAnswer {
    /// The trigger as given (from words: as parsed), ready for `POST /jobs` or
    /// `POST /jobs/{id}/reschedule`.
    trigger: TriggerSpec,
    trigger_text: String,
    trigger_words: String,
    timezone: String,
    /// In the trigger's time zone, RFC 3339; fewer than asked when the schedule ends.
    fire_times: Vec<String>,
}

async fn preview(
    State(state): State<AppState>,
    Json(request): Json<PreviewRequest>,
) -> Result<axum::Json<PreviewAnswer>, ApiError> {
    let count = bounded("count", request.count, DEFAULT_COUNT, MAX_COUNT)?;
    // Errors name the field as the request gave the trigger.
    let given_as = if request.words.is_some() {
        "words"
    } else {
        "trigger"
    };
    let spec = match (request.trigger, request.words) {
        (Some(spec), None) => spec,
        (None, Some(words)) => spec_from_line(&words).map_err(|error| invalid(given_as, &error))?,
        _ => {
            return Err(ApiError::invalid(
                "trigger",
                "give either trigger (JSON) or words (`kairos next` words), not both",
            ))
        }
    };
    let now = state.scheduler.clock().now();
    let from = request.from.unwrap_or(now);
    let context = TriggerContext::new(now).with_timezone(state.scheduler.timezone());
    let trigger =
        Trigger::new(spec.clone(), &context).map_err(|error| invalid(given_as, &error))?;
    let zone = trigger.timezone();
    // Off the async workers and bounded: see `compute.rs`.
    let fire_times =
        off_workers(move |deadline| trigger.try_fire_times(from, count, Some(deadline)))
            .await?
            .map_err(|error| too_costly(given_as, error))?
            .into_iter()
            .map(|instant| format_instant(instant, &zone))
            .collect();
    Ok(axum::Json(PreviewAnswer {
        trigger_text: describe_trigger(&spec),
        trigger_words: spec_to_words(&spec),
        trigger: spec,
        timezone: zone.name(),
        fire_times,
    }))
}

/// A trigger error as a 422 naming the field (`trigger.hour`, `words.hour`).
fn invalid(prefix: &str, error: &TriggerError) -> ApiError {
    ApiError::invalid(format!("{prefix}.{}", error.field()), error.to_string())
}
