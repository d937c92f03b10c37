//! Bearer-token authentication: who may read and who may also write.
//!
//! A request's access is decided by its method: `GET` reads, anything else writes. A
//! read-write token may do both, a read token only reads (403 on a write). With no
//! token configured at all, every request is allowed: [`super::check_listen`] only
//! permits that on loopback.
//!
//! Tokens are compared in constant time ([`constant_time_eq`]) so that response timing
//! does not reveal how much of a guessed token was right.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use super::error::ApiError;
use super::{Routes, Verb};

/// The configured tokens.
pub(crate) struct Access {
    read_write: Vec<Vec<u8>>,
    read_only: Vec<Vec<u8>>,
}

/// What a presented token may do; handlers find it in the request's extensions
/// (absent when no token is configured, which grants everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    ReadWrite,
    ReadOnly,
}

impl Access {
    /// Empty tokens are dropped: they would match an empty `Authorization: Bearer `.
    /// ([`super::check_listen`] refuses them; a library user who skips it still gets
    /// no hole.)
    pub(crate) fn new(read_write: &[String], read_only: &[String]) -> Access {
        let keep = |tokens: &[String]| {
            tokens
                .iter()
                .filter(|token| !token.is_empty())
                .map(|token| token.as_bytes().to_vec())
                .collect::<Vec<_>>()
        };
        let dropped = read_write
            .iter()
            .chain(read_only)
            .filter(|token| token.is_empty())
            .count();
        if dropped > 0 {
            tracing::warn!(dropped, "empty API tokens ignored");
        }
        Access {
            read_write: keep(read_write),
            read_only: keep(read_only),
        }
    }

    fn open(&self) -> bool {
        self.read_write.is_empty() && self.read_only.is_empty()
    }

    /// What `presented` may do, if it is a configured token. Every configured token is
    /// compared, so the time taken does not depend on which one matched.
    fn grant(&self, presented: &[u8]) -> Option<Grant> {
        let matches = |tokens: &[Vec<u8>]| {
            tokens.iter().fold(false, |found, token| {
                found | constant_time_eq(token, presented)
            })
        };
        let read_write = matches(&self.read_write);
        let read_only = matches(&self.read_only);
        if read_write {
            Some(Grant::ReadWrite)
        } else if read_only {
            Some(Grant::ReadOnly)
        } else {
            None
        }
    }

    /// Which configured token `presented` is (read-write ones first, then read-only
    /// ones), compared in constant time like [`Access::grant`]; the rate limiter's key.
    pub(crate) fn index_of(&self, presented: &[u8]) -> Option<usize> {
        self.read_write
            .iter()
            .chain(&self.read_only)
            .enumerate()
            .fold(None, |found, (index, token)| {
                let matched = constant_time_eq(token, presented);
                found.or(matched.then_some(index))
            })
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        // Token lengths are not secret enough to hide; their bytes are.
        return false;
    }
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

/// The middleware in front of every route but `GET /health`.
pub(crate) async fn require_token(
    State(access): State<Arc<Access>>,
    mut request: Request,
    next: Next,
) -> Response {
    if access.open() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    let Some(presented) = presented else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this API needs a bearer token: Authorization: Bearer <token>",
        )
        .into_response();
    };
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD);
    match access.grant(presented.as_bytes()) {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        )
        .into_response(),
        Some(Grant::ReadOnly) if writes => ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only_token",
            "this token may only read; changes need a read-write token",
        )
        .into_response(),
        Some(grant) => {
            request.extensions_mut().insert(grant);
            next.run(request).await
        }
    }
}

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Verb::Get, "/access", show_access)
}

#[derive(Serialize)]
struct AccessView {
    /// `read_write` or `read_only`.
    access: &'static str,
    /// Whether the API asks for a token at all.
    token_required: bool,
}

/// `GET /access`: what the presented token may do, so a page can disable the actions
/// a read-only token would be refused.
async fn show_access(grant: Option<Extension<Grant>>) -> Json<AccessView> {
    let (access, token_required) = match grant {
        None => ("read_write", false),
        Some(Extension(Grant::ReadWrite)) => ("read_write", true),
        Some(Extension(Grant::ReadOnly)) => ("read_only", true),
    };
    Json(AccessView {
        access,
        token_required,
    })
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, RFC 7235 §2.1); `None` for other schemes or an empty token.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_is() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_token_not_empty() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn read_write_wins_and_empty_tokens_are_dropped() {
        let access = Access::new(
            &["rw".to_owned(), String::new()],
            &["ro".to_owned(), "rw".to_owned()],
        );
        assert_eq!(access.grant(b"rw"), Some(Grant::ReadWrite));
        assert_eq!(access.grant(b"ro"), Some(Grant::ReadOnly));
        assert_eq!(access.grant(b""), None);
        assert_eq!(access.grant(b"nope"), None);
        assert_eq!(access.index_of(b"rw"), Some(0));
        assert_eq!(access.index_of(b"ro"), Some(1));
        assert_eq!(access.index_of(b"nope"), None);
    }
}
