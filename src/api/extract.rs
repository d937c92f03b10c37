//! Our own extractors, wrapping axum's so that every rejection is an [`ApiError`] with
//! the API's error body (axum's own rejections answer in plain text).
//!
//! - [`JsonBody`]: the raw body of a JSON request, within the body limit (413 past it).
//! - [`Json`]: that body parsed; malformed JSON is 400, JSON of the wrong shape is 422
//!   naming the field (`trigger.hours`), found with `serde_path_to_error`.
//! - [`NoFields`]: the body of an action that takes no input (pause, resume, run):
//!   empty or `{}`, as `openapi.json` declares it; anything else is 422 (400 when it
//!   is not JSON at all).
//! - [`Query`] and [`Path`]: 400 on what cannot be read.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The body of a JSON request, not parsed yet (`POST /jobs` hashes it for
/// idempotency before parsing).
pub(crate) struct JsonBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        // `origin::check` refuses a POST without it; other methods with a body that
        // got this far and name no type are refused here too, rather than guessed at.
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        if !content_type.is_some_and(super::origin::is_json) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body is larger than the API accepts",
                    )
                } else {
                    ApiError::bad_request("unreadable_body", rejection.body_text())
                }
            })?;
        Ok(JsonBody(body))
    }
}

/// A JSON request body parsed as `T`.
pub(crate) struct Json<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBody(body) = JsonBody::from_request(request, state).await?;
        parse_json(&body).map(Json)
    }
}

/// The body of an operation that takes no input: nothing, or the empty object `{}`
/// (whitespace around either is fine), always with `Content-Type: application/json`
/// (`origin.rs` refuses a POST without it: docs/threat-model.md). The document
/// declares exactly this (an optional body, `{}` with no properties), so what a client
/// generated from it sends is taken, and a body with fields the action would silently
/// ignore is refused instead (422, naming the field).
pub(crate) struct NoFields;

impl<S: Send + Sync> FromRequest<S> for NoFields {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBody(body) = JsonBody::from_request(request, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoFields);
        }
        // An object, and an empty one: serde would take `[]` for an empty struct too.
        let fields: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
        match fields.keys().next() {
            None => Ok(NoFields),
            Some(name) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                format!("unknown field `{name}`: this action takes no input, only {{}}"),
            )
            .with_field(name.clone())),
        }
    }
}

/// Parses `body` as `T`: 400 if it is not JSON, 422 naming the field if it does not fit.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let at_root = path == ".";
                let message = if at_root {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                };
                // serde names a missing or unknown field only in its message; lifted
                // out, `field` points at it (`trigger.hourz`) rather than its parent.
                let text = inner.to_string();
                let named = ["missing field `", "unknown field `"]
                    .iter()
                    .find_map(|prefix| text.strip_prefix(prefix))
                    .and_then(|rest| rest.split('`').next());
                let field = match (at_root, named) {
                    (true, None) => None,
                    (true, Some(name)) => Some(name.to_owned()),
                    (false, None) => Some(path),
                    // An unknown key is in the path already, except inside a tagged
                    // enum (the trigger), which serde reads from a buffer.
                    (false, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
                        Some(path)
                    }
                    (false, Some(name)) => Some(format!("{path}.{name}")),
                };
                let invalid =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message);
                match field {
                    Some(field) => invalid.with_field(field),
                    None => invalid,
                }
            }
            _ => malformed(&inner),
        }
    })?;
    // Trailing text after the value is malformed too, not silently ignored.
    deserializer.end().map_err(|error| malformed(&error))?;
    Ok(parsed)
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::bad_request(
        "malformed_json",
        format!("the body is not valid JSON: {error}"),
    )
}

/// A numeric query parameter that must be 1 to `max`: `default` when absent, and
/// refused rather than clamped (400 naming it), so a script asking for more learns it
/// gets less.
pub(crate) fn bounded(
    name: &str,
    value: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(value) if (1..=max).contains(&value) => Ok(value),
        Some(value) => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name}: {value} is out of range 1-{max}"),
        )),
    }
}

/// A query string parsed as `T`.
pub(crate) struct Query<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))
    }
}

/// Path parameters parsed as `T`.
pub(crate) struct Path<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| ApiError::bad_request("invalid_path", rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // Only parsed.
    struct Sample {
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422_with_the_field() {
        let syntax = parse_json::<Sample>(b"{\"inner\": ").err();
        assert_eq!(
            syntax.map(|error| error.status()),
            Some(StatusCode::BAD_REQUEST)
        );
        let trailing = parse_json::<Sample>(b"{\"inner\": {\"count\": 1}} x").err();
        assert_eq!(
            trailing.map(|error| error.status()),
            Some(StatusCode::BAD_REQUEST)
        );
        let shape = parse_json::<Sample>(b"{\"inner\": {\"count\": -1}}").err();
        let shape = shape.map(|error| (error.status(), format!("{error:?}")));
        assert!(
            shape
                .as_ref()
                .is_some_and(|(status, text)| *status == StatusCode::UNPROCESSABLE_ENTITY
                    && text.contains("inner.count")),
            "{shape:?}"
        );
    }
}
