//! The web page for operators: `/` and its assets under `/ui/`, embedded in
//! the binary.
//!
//! The page is plain HTML, CSS and JavaScript in `src/api/ui/`, with no build step: it
//! needs nothing at build time and nothing from the network at run time. It holds no
//! data itself; everything it shows comes from the API with the token the operator
//! types in, so the assets are served without a token. A strict Content Security
//! Policy allows only these assets and requests to this origin.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;

/// The page's files: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("ui/app.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("ui/icon.svg")),
];

const INDEX: &str = include_str!("ui/index.html");

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page's routes, outside the API prefix.
pub(super) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(asset))
}

async fn index() -> Response {
    page_response("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, content)) => page_response(content_type, content),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the page has no file {file:?}"),
        )
        .into_response(),
    }
}

fn page_response(content_type: &'static str, content: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Small files, and a new binary must never run an old script.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        content,
    )
        .into_response()
}
