//! What can go wrong with a request that was sent ([`ClientError`]): the API's own
//! error body, or a transport failure worded in a few words rather than reqwest's
//! chain of wrappers.

use reqwest::Url;
use serde::Deserialize;

use super::api_client::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use super::endpoint::URL_VAR;
use crate::task::http::{chain, innermost, io_error};

/// How much of an unexpected (non-API) response body goes into an error message.
const EXCERPT_CHARS: usize = 200;

/// What went wrong with a request that was (or was being) sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request with its error body.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's stable error code (`job_not_found`, `unauthorized`).
        code: String,
        /// The API's message for people.
        message: String,
        /// The input field at fault, when the API named one (`trigger.hour`).
        field: Option<String>,
    },
    /// No connection could be made.
    #[error(
        "cannot connect to {url}: {reason}; is `kairos run` running? \
         set {URL_VAR} to the API's address"
    )]
    Unreachable {
        /// The URL tried.
        url: String,
        /// Why the connection failed, in a few words.
        reason: String,
    },
    /// The connection failed mid-request, or the request timed out.
    #[error("{0}")]
    Transport(String),
    /// Something answered that is not the kairos API (a proxy's error page, another
    /// service on the port).
    #[error("{url} answered HTTP {status}, not as the kairos API does: {excerpt}")]
    Unexpected {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        excerpt: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

/// The API's error body.
#[derive(Deserialize)]
pub(super) struct ErrorBody {
    pub(super) error: ErrorDetail,
}

#[derive(Deserialize)]
pub(super) struct ErrorDetail {
    pub(super) code: String,
    pub(super) message: String,
    #[serde(default)]
    pub(super) field: Option<String>,
}

/// The start of `body` on one line, for messages about answers that are not the API's.
pub(super) fn excerpt(body: &str) -> String {
    let one_line: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(EXCERPT_CHARS)
        .collect();
    if one_line.is_empty() {
        "(empty body)".to_owned()
    } else {
        one_line
    }
}

/// Why a request failed, in a few words rather than reqwest's chain of wrappers.
pub(super) fn describe_error(error: &reqwest::Error, url: &Url) -> ClientError {
    if error.is_connect() {
        let reason = match io_error(error) {
            Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_owned()
            }
            _ if error.is_timeout() => format!(
                "no connection within {}",
                humantime::format_duration(CONNECT_TIMEOUT)
            ),
            _ => innermost(error),
        };
        let mut base = url.clone();
        base.set_path("/");
        base.set_query(None);
        return ClientError::Unreachable {
            url: base.to_string(),
            reason,
        };
    }
    if error.is_timeout() {
        return ClientError::Transport(format!(
            "{url}: no answer within {}",
            humantime::format_duration(REQUEST_TIMEOUT)
        ));
    }
    let reason = match std::error::Error::source(error) {
        Some(source) => chain(source),
        None => error.to_string(),
    };
    ClientError::Transport(format!("{url}: {reason}"))
}
