//! Bearer-token authentication: who may read, who may also write, and what.
//!
//! Tokens are named ([`super::NamedToken`], `[api.tokens.NAME]`); `[api] token` and
//! `read_tokens` are shorthands named `token` and `read_tokens[N]`. A request's
//! access is decided by its method: `GET` reads, anything else writes. A read-write
//! token may do both, a read token only reads (403 on a write). A write token with
//! its own `tasks` is *scoped*: it may change only jobs of those tasks (checked in
//! `jobs.rs`) and nothing scheduler-wide (403 here). With no token configured at
//! all, every request is allowed: [`super::check_listen`] only permits that on
//! loopback.
//!
//! Every request that passes carries a [`Caller`] (its token's name, for the audit
//! log and per-token idempotency keys) and a [`Grant`].
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
use super::{NamedToken, Routes, Verb, PREFIX};

/// One configured token.
struct Entry {
    name: Arc<str>,
    secret: Vec<u8>,
    grant: Grant,
    /// A scoped write token's tasks.
    tasks: Option<Arc<[String]>>,
}

/// The configured tokens.
pub(crate) struct Access {
    entries: Vec<Entry>,
}

/// What a presented token may do; handlers find it in the request's extensions
/// (absent when no token is configured, which grants everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    ReadWrite,
    ReadOnly,
}

/// Who made a request: its token's name (`anonymous` without tokens), and for a
/// scoped token the tasks it may touch.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) name: Arc<str>,
    pub(crate) tasks: Option<Arc<[String]>>,
}

impl Caller {
    /// Whether this caller may add or change a job of `task`, given the API's own
    /// task policy for unscoped callers.
    pub(crate) fn may_use_task(&self, task: &str, settings: &super::ApiSettings) -> bool {
        match &self.tasks {
            Some(tasks) => tasks.iter().any(|allowed| allowed == task),
            None => settings.task_allowed(task),
        }
    }
}

impl Access {
    /// Empty tokens are dropped: they would match an empty `Authorization: Bearer `.
    /// ([`super::check_listen`] refuses them; a library user who skips it still gets
    /// no hole.)
    pub(crate) fn new(read_write: &[String], read_only: &[String], named: &[NamedToken]) -> Access {
        let mut entries = Vec::new();
        let mut dropped = 0;
        let mut push = |name: String, secret: &str, grant: Grant, tasks: Option<Vec<String>>| {
            if secret.is_empty() {
                dropped += 1;
                return;
            }
            entries.push(Entry {
                name: Arc::from(name),
                secret: secret.as_bytes().to_vec(),
                grant,
                tasks: tasks.map(Arc::from),
            });
        };
        for (index, token) in read_write.iter().enumerate() {
            let name = if index == 0 {
                "token".to_owned()
            } else {
                format!("token[{index}]")
            };
            push(name, token, Grant::ReadWrite, None);
        }
        for (index, token) in read_only.iter().enumerate() {
            push(
                format!("read_tokens[{index}]"),
                token,
                Grant::ReadOnly,
                None,
            );
        }
        for token in named {
            let grant = if token.write {
                Grant::ReadWrite
            } else {
                Grant::ReadOnly
            };
            push(token.name.clone(), &token.token, grant, token.tasks.clone());
        }
        if dropped > 0 {
            tracing::warn!(dropped, "empty API tokens ignored");
        }
        Access { entries }
    }

    fn open(&self) -> bool {
        self.entries.is_empty()
    }

    /// What `presented` may do, if it is a configured token.
    #[cfg(test)]
    fn grant(&self, presented: &[u8]) -> Option<Grant> {
        self.index_of(presented)
            .map(|index| self.entries[index].grant)
    }

    /// Which configured token `presented` is, compared in constant time against every
    /// one, so the time taken does not depend on which one matched; the rate
    /// limiter's key. When one secret is configured twice, the read-write one wins.
    pub(crate) fn index_of(&self, presented: &[u8]) -> Option<usize> {
        let mut first = None;
        let mut first_read_write = None;
        for (index, entry) in self.entries.iter().enumerate() {
            if constant_time_eq(&entry.secret, presented) {
                first.get_or_insert(index);
                if entry.grant == Grant::ReadWrite {
                    first_read_write.get_or_insert(index);
                }
            }
        }
        first_read_write.or(first)
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
        request.extensions_mut().insert(Caller {
            name: Arc::from("anonymous"),
            tasks: None,
        });
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
    let Some(index) = access.index_of(presented.as_bytes()) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        )
        .into_response();
    };
    let entry = &access.entries[index];
    if entry.grant == Grant::ReadOnly && writes {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only_token",
            "this token may only read; changes need a read-write token",
        )
        .into_response();
    }
    let path = request.uri().path();
    let path = path.strip_prefix(PREFIX).unwrap_or(path);
    let job_route = path == "/jobs" || path.starts_with("/jobs/") || path == "/preview";
    if writes && entry.tasks.is_some() && !job_route {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "token_scope",
            format!(
                "token {:?} may only add and change jobs of its tasks, not {} {path}",
                &*entry.name,
                request.method()
            ),
        )
        .into_response();
    }
    if let Some(slot) = request.extensions().get::<super::access_log::TokenName>() {
        slot.set(entry.name.clone());
    }
    request.extensions_mut().insert(entry.grant);
    request.extensions_mut().insert(Caller {
        name: entry.name.clone(),
        tasks: entry.tasks.clone(),
    });
    next.run(request).await
}

/// The audit log: one line per change made through the API (any method but `GET`,
/// `HEAD`), with the token's name, after the answer is known. Logged under the
/// `kairos::audit` target, so it can be routed or kept apart.
pub(crate) async fn audit(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let token = request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| Arc::from("anonymous"), |caller| caller.name.clone());
    let response = next.run(request).await;
    tracing::info!(
        target: "kairos::audit",
        token = &*token,
        %method,
        path,
        status = response.status().as_u16(),
        "API change"
    );
    response
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
            &[],
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
