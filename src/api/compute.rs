//! Fire-time computations for request input, off the async workers and with a deadline.
//!
//! A trigger's fire time is pure CPU work that never yields: a combined trigger whose
//! parts rarely agree may spend its whole evaluation budget
//! ([`crate::trigger::EVALUATION_BUDGET`]) on one request. Run on an async worker, that
//! would stall every other request on it (`/health` included), and the request timeout
//! could not interrupt it. So the API computes on tokio's blocking pool
//! ([`off_workers`]) and within [`DEADLINE`]; past either bound the request is a 422
//! naming the trigger, while the server answers everyone else.

use std::time::{Duration, Instant};

use super::error::ApiError;
use crate::trigger::{Budget, EvaluationError, Trigger, TriggerContext, TriggerSpec};

/// How long one request's fire-time computation may take.
pub(crate) const DEADLINE: Duration = Duration::from_millis(500);

/// Runs `work` on the blocking pool with the deadline it should keep; waits a little
/// past it for the answer, then gives up on it (the computation itself stops at its
/// budget or deadline soon after).
pub(crate) async fn off_workers<T, F>(work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(Instant) -> T + Send + 'static,
{
    let deadline = Instant::now() + DEADLINE;
    let handle = tokio::task::spawn_blocking(move || work(deadline));
    match tokio::time::timeout(DEADLINE + Duration::from_millis(250), handle).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(join_error)) => {
            tracing::error!(error = %join_error, "a fire-time computation failed");
            Err(ApiError::internal())
        }
        Err(_elapsed) => Err(too_costly("trigger", EvaluationError::Deadline)),
    }
}

/// 422: the trigger in `field` cannot be evaluated within the API's bounds.
pub(crate) fn too_costly(field: &str, error: EvaluationError) -> ApiError {
    ApiError::invalid(field, format!("{field}: {error}"))
}

/// Checks that `spec` builds and that its first fire time can be computed within the
/// bounds, before the scheduler (which computes it on the caller's task) sees it.
/// Errors in building are left to the scheduler, which names the field.
pub(crate) async fn check_trigger(
    spec: &TriggerSpec,
    context: TriggerContext,
    field: &'static str,
) -> Result<(), ApiError> {
    // Nothing to bound without a search (a date): every one-off add an order service
    // makes would pay the hop to the blocking pool and back (BENCHMARKS.md, "HTTP
    // adds").
    if !spec.searches_for_fire_times() {
        return Ok(());
    }
    let spec = spec.clone();
    let evaluated = off_workers(move |deadline| {
        let Ok(trigger) = Trigger::new(spec, &context) else {
            return Ok(());
        };
        trigger
            .try_next_fire_time(None, context.now, &mut Budget::new(Some(deadline)))
            .map(|_| ())
    })
    .await?;
    evaluated.map_err(|error| too_costly(field, error))
}
