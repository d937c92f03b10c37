//! [`ApiError`]: the one error type of every handler, extractor and middleware, and
//! the one place that decides which status and code a failure gets.
//!
//! The body is always `{"error": {"code": "...", "message": "..."}}`, plus `"field"`
//! when one input field is at fault (`"trigger.hour"`, `"args"`), so scripts can match
//! on `code` and people can read `message`. Internal failures (a store that is down or
//! returned unreadable data, a panic) are logged with their details and answered with
//! a generic message: their text may hold connection strings or stored data.

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::scheduler::SchedulerError;
use crate::store::StoreError;

/// A failed request: status, a stable code, a message for people, maybe the field.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// The same error, naming the input field at fault.
    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 422: the request is well-formed JSON but `field` is not acceptable.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message).with_field(field)
    }

    /// 400: the request cannot be read at all.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 409: the config file owns the job, so the API may not change or remove it.
    pub(crate) fn config_owned(id: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "config_owned",
            format!(
                "job {id:?} is defined in the daemon's config files, which own it: edit the \
                 file and reload instead (pause, resume and run are allowed)"
            ),
        )
    }

    /// 500, with nothing of the cause in the body; the caller logs it.
    pub(crate) fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server's log has the details",
        )
    }

    /// 503: the request ran past the timeout while `doing` ("listing jobs").
    pub(crate) fn timeout(timeout: std::time::Duration, doing: &str, request_id: &str) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the scheduler or its job store did not answer within {} while {doing}; \
                 retry later (request id {request_id} in the server's log)",
                humantime::format_duration(timeout)
            ),
        )
    }

    pub(crate) fn route_not_found(method: &Method, path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            format!("no route for {method} {path}; GET /api/v1/openapi.json lists them"),
        )
    }

    pub(crate) fn method_not_allowed(method: &Method, path: &str) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{path} does not take {method}; GET /api/v1/openapi.json lists its methods"),
        )
    }

    pub(crate) fn job_not_found(id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!("no job with id {id:?}"),
        )
    }

    /// The same error with a job option's field named as `POST /jobs` takes it, under
    /// `options` (the scheduler names options without it, as `PATCH` takes them).
    pub(crate) fn in_options(mut self) -> Self {
        if let Some(field) = &self.field {
            // An option (`max_instances`) or a field of one (`retry.max_attempts`).
            let option = field.split('.').next().unwrap_or_default();
            if crate::job::OPTION_KEYS.contains(&option) {
                self.field = Some(format!("options.{field}"));
            }
        }
        self
    }

    /// The status this error answers with.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<SchedulerError> for ApiError {
    fn from(error: SchedulerError) -> Self {
        match error {
            SchedulerError::JobNotFound(id) => ApiError::job_not_found(&id),
            SchedulerError::JobExists(id) => ApiError::new(
                StatusCode::CONFLICT,
                "job_exists",
                format!(
                    "a job with id {id:?} already exists (set replace_existing to overwrite it)"
                ),
            ),
            SchedulerError::RevisionChanged { ref id, revision } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                format!(
                    "job {id:?} was changed since the ETag in If-Match: its ETag is now {}; \
                     read it again and retry",
                    super::jobs::etag(revision)
                ),
            ),
            SchedulerError::UnknownTask { .. } => ApiError::invalid("task", error.to_string()),
            SchedulerError::InvalidArgs(_) => ApiError::invalid("args", error.to_string()),
            SchedulerError::InvalidTrigger(ref trigger) => {
                let field = format!("trigger.{}", trigger.field());
                ApiError::invalid(field, error.to_string())
            }
            SchedulerError::TriggerNeverFires => ApiError::invalid("trigger", error.to_string()),
            SchedulerError::UnknownExecutor(_) => ApiError::invalid("executor", error.to_string()),
            SchedulerError::UnknownStore(_) => ApiError::invalid("jobstore", error.to_string()),
            SchedulerError::InvalidOption { field, .. } => {
                ApiError::invalid(field, error.to_string())
            }
            SchedulerError::NothingToBackfill(_) => {
                ApiError::new(StatusCode::CONFLICT, "one_off_job", error.to_string())
            }
            SchedulerError::Store(store) => ApiError::from(store),
            // Only ever answered at start, never to a request.
            SchedulerError::NodeIdInUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, "node_id_in_use", error.to_string())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(id) => SchedulerError::JobExists(id).into(),
            StoreError::NotFound(id) => ApiError::job_not_found(&id),
            StoreError::Unavailable {
                message: ref detail,
                ..
            } => {
                tracing::error!(
                    error = detail.as_str(),
                    "API request failed: job store unavailable"
                );
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the job store is unavailable; retry later",
                )
            }
            StoreError::Corrupt {
                message: ref detail,
                ..
            } => {
                tracing::error!(
                    error = detail.as_str(),
                    "API request failed: unreadable stored data"
                );
                ApiError::internal()
            }
            // A store opened with a bad URL or prefix never serves a request; if one
            // did, the operator has to fix the config: not a client's error.
            StoreError::Config {
                message: ref detail,
                ..
            } => {
                tracing::error!(
                    error = detail.as_str(),
                    "API request failed: job store misconfigured"
                );
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: a 401 says which scheme the client should use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kairos\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_errors_name_the_field() {
        let error = ApiError::from(SchedulerError::InvalidOption {
            field: "max_instances",
            reason: "must be at least 1".to_owned(),
        });
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.field.as_deref(), Some("max_instances"));
        let missing = ApiError::from(SchedulerError::JobNotFound("x".to_owned()));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn store_details_are_not_sent() {
        let error = ApiError::from(StoreError::unavailable(
            "postgres://user:secret@db".to_owned(),
        ));
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!error.message.contains("secret"));
    }
}
