//! The HTTP API: JSON under `/api/v1`, on axum, over a [`Scheduler`] handle.
//!
//! This module owns the router ([`app`]), the server loop ([`serve`]) and the API's
//! settings ([`ApiSettings`], [`check_listen`]). It touches the scheduler only through
//! its public handle, so everything the API can do a library user can do too; the
//! daemon builds the scheduler, calls [`check_listen`], [`app`] and [`serve`].
//!
//! Routes are grouped per resource: `jobs.rs` (jobs and their actions), `runs.rs` (run
//! history), `scheduler.rs` (scheduler pause/resume, health), `cluster.rs` (the nodes
//! sharing the stores), `events.rs` (server-sent
//! events), `openapi.rs` (the OpenAPI document). Each registers its routes in one
//! [`Routes`] table, which the OpenAPI test reads, so a route cannot be served without
//! being documented.
//!
//! # Ground rules
//! - Every error, including axum's own rejections (bad JSON, body too large, unknown
//!   route), is an [`error::ApiError`] with the body `{"error": {"code", "message"}}`.
//!   Internal details (store errors, panics) are logged with tracing, never sent.
//! - No handler may panic on any input; a panic that slips through anyway becomes a 500
//!   (see [`guard`]), not a dropped connection.
//! - Every request but `GET /events` is bounded by [`ApiSettings::request_timeout`];
//!   the event stream ends when [`serve`]'s shutdown signal fires, so a connected
//!   dashboard cannot hold shutdown up.

mod access_log;
mod auth;
mod cluster;
mod compute;
mod cursor;
mod error;
mod events;
mod extract;
mod idempotency;
mod jobs;
mod metrics;
mod openapi;
mod origin;
mod overview;
mod preview;
mod rate_limit;
mod reload;
mod runs;
mod scheduler;
mod server;
mod ui;
mod view;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodFilter;
use axum::{Extension, Router};
use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};

use self::auth::Access;
use self::error::ApiError;
use self::idempotency::IdempotencyCache;
pub use self::rate_limit::RateLimit;
use self::rate_limit::RateLimiter;
pub use self::reload::{FailedJob, ReloadOutcome, ReloadRequest, ReloadView};
pub use self::server::ServerLimits;
use crate::scheduler::Scheduler;

/// The prefix of every API route.
pub const PREFIX: &str = "/api/v1";

/// A named token (`[api.tokens.NAME]`): what it may do and how fast.
#[derive(Clone)]
pub struct NamedToken {
    /// Its name, in the audit log and in errors; never the secret.
    pub name: String,
    /// The secret a client presents as `Authorization: Bearer <token>`.
    pub token: String,
    /// Whether it may change things (`access = "write"`) or only read.
    pub write: bool,
    /// For a write token: the only tasks whose jobs it may add and change, and then
    /// nothing scheduler-wide. `None`: the API's task policy, and everything else.
    pub tasks: Option<Vec<String>>,
    /// Its own request rate; `None`: [`ApiSettings::rate_limit`].
    pub rate_limit: Option<RateLimit>,
}

impl fmt::Debug for NamedToken {
    /// The secret is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedToken")
            .field("name", &self.name)
            .field("write", &self.write)
            .field("tasks", &self.tasks)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

/// The API's settings (`[api]` in the daemon's config).
#[derive(Clone)]
pub struct ApiSettings {
    /// Bearer tokens that may read and write. With no token here and none in
    /// `read_tokens`, no token is required (allowed on loopback only, see
    /// [`check_listen`]).
    pub tokens: Vec<String>,
    /// Bearer tokens that may only read (`GET`): dashboards and monitoring.
    pub read_tokens: Vec<String>,
    /// Named tokens, with their access, tasks and rate (`[api.tokens.NAME]`).
    pub named_tokens: Vec<NamedToken>,
    /// The tasks that jobs added through the API may name. `None`: every registered
    /// task except `command`, which runs programs on the host and so must be allowed by
    /// name.
    pub allowed_tasks: Option<Vec<String>>,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// How long a request may take before it gets 503 (the event stream excepted).
    pub request_timeout: Duration,
    /// How long a `POST /jobs` response is kept for retries with the same
    /// `Idempotency-Key`.
    pub idempotency_ttl: Duration,
    /// How many `Idempotency-Key`s are remembered at most; the oldest go first.
    pub idempotency_capacity: usize,
    /// How many requests each client may make: per configured token (unless it has
    /// a limit of its own), or per client address for requests without one. `None`
    /// (the default): no limit.
    pub rate_limit: Option<RateLimit>,
    /// How many failed authentications (401) each address may have; past it, 429.
    pub auth_failure_limit: RateLimit,
    /// Where `POST /scheduler/reload` sends its request: the daemon's reload path.
    /// `None` (a scheduler embedded without config files): the route answers 409.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Whether the web page is served at `/`.
    pub ui: bool,
    /// Host names and addresses the API answers to besides loopback ones (`Host`),
    /// and whose pages may change things (`Origin`); see docs/threat-model.md. The
    /// daemon adds its listen address.
    pub allowed_hosts: Vec<String>,
    /// How many `GET /events` streams may be open at once; past it, 503.
    pub max_event_streams: usize,
    /// The scheduler's executor names, which the OpenAPI document lists as the values
    /// a job's `executor` may take (the daemon sets them from `[executors.NAME]`).
    /// `None`: the document does not list them.
    pub executors: Option<Vec<String>>,
}

impl Default for ApiSettings {
    /// No tokens, the default task policy, 64 KiB bodies, 30 s requests, no request
    /// rate limit but 20 failed authentications per address (then one a second), and
    /// idempotency keys kept 24 h, 10,000 at most; the web page on.
    fn default() -> ApiSettings {
        ApiSettings {
            tokens: Vec::new(),
            read_tokens: Vec::new(),
            named_tokens: Vec::new(),
            allowed_tasks: None,
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            idempotency_capacity: 10_000,
            rate_limit: None,
            auth_failure_limit: RateLimit {
                per_second: 1.0,
                burst: 20,
            },
            reload: None,
            ui: true,
            allowed_hosts: Vec::new(),
            max_event_streams: 64,
            executors: None,
        }
    }
}

impl fmt::Debug for ApiSettings {
    /// Tokens are secrets: only how many there are is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiSettings")
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field(
                "read_tokens",
                &format_args!("[{} redacted]", self.read_tokens.len()),
            )
            .field("named_tokens", &self.named_tokens)
            .field("allowed_tasks", &self.allowed_tasks)
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("idempotency_ttl", &self.idempotency_ttl)
            .field("idempotency_capacity", &self.idempotency_capacity)
            .field("rate_limit", &self.rate_limit)
            .field("auth_failure_limit", &self.auth_failure_limit)
            .field("reload", &self.reload.is_some())
            .field("ui", &self.ui)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_event_streams", &self.max_event_streams)
            .field("executors", &self.executors)
            .finish()
    }
}

impl ApiSettings {
    /// Whether jobs added through the API may name `task`.
    pub fn task_allowed(&self, task: &str) -> bool {
        match &self.allowed_tasks {
            Some(allowed) => allowed.iter().any(|name| name == task),
            None => task != "command",
        }
    }
}

/// Why the API may not listen as configured.
#[derive(Debug, thiserror::Error)]
pub enum ApiConfigError {
    /// No token is configured and the address is reachable from other machines.
    #[error(
        "api.listen: {addr} is not a loopback address, so api.token must be set \
         (without a token anyone who can reach the port controls the scheduler)"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A configured token is empty, which would let an empty `Authorization` through.
    #[error("api.token: a token must not be empty")]
    EmptyToken,
}

/// Refuses settings that would expose the API without authentication: a non-loopback
/// `addr` needs at least one token, and no token may be empty.
pub fn check_listen(addr: &SocketAddr, settings: &ApiSettings) -> Result<(), ApiConfigError> {
    let tokens = settings
        .tokens
        .iter()
        .chain(&settings.read_tokens)
        .chain(settings.named_tokens.iter().map(|named| &named.token));
    if tokens.clone().any(|token| token.is_empty()) {
        return Err(ApiConfigError::EmptyToken);
    }
    if !addr.ip().is_loopback() && tokens.count() == 0 {
        return Err(ApiConfigError::TokenRequired { addr: *addr });
    }
    Ok(())
}

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) scheduler: Scheduler,
    pub(crate) settings: Arc<ApiSettings>,
    pub(crate) idempotency: Arc<IdempotencyCache>,
    /// How many event streams are open.
    pub(crate) event_streams: Arc<std::sync::atomic::AtomicUsize>,
}

/// Builds the API's router: every route under [`PREFIX`], with authentication, the
/// body limit, the request timeout and JSON errors for unknown routes.
pub fn app(scheduler: Scheduler, settings: ApiSettings) -> Router {
    let access = Arc::new(Access::new(
        &settings.tokens,
        &settings.read_tokens,
        &settings.named_tokens,
    ));
    let body_limit = settings.body_limit;
    let ui_enabled = settings.ui;
    let request_timeout = settings.request_timeout;
    let allowed_hosts = Arc::new(origin::AllowedHosts::new(&settings.allowed_hosts));
    // Per-token limits by the tokens' index in `Access`: `token`, `read_tokens`, then
    // the named ones, as `Access::new` orders them (empty ones are dropped there too).
    let per_token = settings
        .tokens
        .iter()
        .chain(&settings.read_tokens)
        .filter(|token| !token.is_empty())
        .map(|_| None)
        .chain(
            settings
                .named_tokens
                .iter()
                .filter(|named| !named.token.is_empty())
                .map(|named| named.rate_limit),
        )
        .collect();
    let limiter = Arc::new(RateLimiter::new(
        settings.rate_limit,
        per_token,
        settings.auth_failure_limit,
        access.clone(),
    ));
    let state = AppState {
        idempotency: Arc::new(IdempotencyCache::new(
            settings.idempotency_ttl,
            settings.idempotency_capacity,
        )),
        scheduler,
        settings: Arc::new(settings),
        event_streams: Arc::default(),
    };
    let Routes {
        public,
        protected,
        table,
    } = routes();
    let route_table = Arc::new(access_log::RouteTable::new(table));
    // The audit log runs inside authentication, so it knows the caller.
    let protected = protected
        .route_layer(middleware::from_fn(auth::audit))
        .route_layer(middleware::from_fn_with_state(access, auth::require_token));
    let api = public
        .merge(protected)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let router = Router::new().nest(PREFIX, api);
    let router = if ui_enabled {
        router.merge(ui::router())
    } else {
        router
    };
    let router = router.fallback(route_not_found);
    // Outside authentication, so that guessing tokens is limited too.
    let router = router.layer(middleware::from_fn_with_state(limiter, rate_limit::limit));
    // Outside the rate limit too: a page in the operator's browser must not use up
    // the operator's own allowance.
    let router = router.layer(middleware::from_fn_with_state(allowed_hosts, origin::check));
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            (request_timeout, route_table.clone()),
            guard,
        ))
        // Outermost: every request is logged, whatever refused it, with its time.
        .layer(middleware::from_fn_with_state(route_table, access_log::log))
}

/// Serves `router` on `listener` until `shutdown` completes, with the default
/// [`ServerLimits`]; see [`serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServerLimits::default(), shutdown).await
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then stops
/// accepting, ends event streams and lets requests in flight finish (for at most
/// [`SHUTDOWN_GRACE`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing_sender, closing) = watch::channel(false);
    let router = router.layer(Extension(events::Closing(closing)));
    let signal = async move {
        shutdown.await;
        closing_sender.send_replace(true);
    };
    server::run(listener, router, limits, signal).await
}

/// How long [`serve`] waits for requests in flight after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Bounds each request by the timeout and turns a handler panic into a 500.
async fn guard(
    State((timeout, routes)): State<(Duration, Arc<access_log::RouteTable>)>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request
        .extensions()
        .get::<access_log::RequestId>()
        .map_or_else(|| Arc::from("-"), |id| id.0.clone());
    // The future only covers producing the response head: a streamed body (the event
    // stream) goes on after it, so the timeout never cuts a stream.
    let handled = AssertUnwindSafe(next.run(request)).catch_unwind();
    match tokio::time::timeout(timeout, handled).await {
        Ok(Ok(response)) => response,
        Ok(Err(_panic)) => {
            tracing::error!(%method, path, "an API handler panicked");
            ApiError::internal().into_response()
        }
        Err(_elapsed) => {
            let route = routes
                .route(&method, &path)
                .map(|route| format!("{PREFIX}{route}"));
            let doing = access_log::activity(&method, route.as_deref());
            tracing::warn!(%method, path, ?timeout, doing, "API request timed out");
            ApiError::timeout(timeout, doing, &request_id).into_response()
        }
    }
}

async fn route_not_found(request: Request) -> ApiError {
    ApiError::route_not_found(request.method(), request.uri().path())
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::method_not_allowed(request.method(), request.uri().path())
}

/// An HTTP method the API uses, with its axum filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Patch,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    /// Whether a request's method is this verb.
    pub(crate) fn matches(self, method: &axum::http::Method) -> bool {
        *method == self.method()
    }

    /// The HTTP method.
    pub(crate) fn method(self) -> axum::http::Method {
        match self {
            Verb::Get => axum::http::Method::GET,
            Verb::Post => axum::http::Method::POST,
            Verb::Patch => axum::http::Method::PATCH,
            Verb::Delete => axum::http::Method::DELETE,
        }
    }

    /// The method's name in lower case, as OpenAPI path items name operations.
    #[cfg(test)]
    pub(crate) fn openapi_name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
}

/// The API's routes as they are registered: the router and the list of (method, path)
/// it serves, built together so the list cannot miss a route.
pub(crate) struct Routes {
    public: Router<AppState>,
    protected: Router<AppState>,
    pub(crate) table: Vec<(Verb, &'static str)>,
}

impl Routes {
    /// A route that needs a token (when tokens are configured).
    pub(crate) fn add<H, T>(mut self, verb: Verb, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.table.push((verb, path));
        self.protected = self
            .protected
            .route(path, axum::routing::on(verb.filter(), handler));
        self
    }

    /// A route anyone may call (`GET /health`, for load balancers and systemd checks).
    pub(crate) fn add_public<H, T>(mut self, verb: Verb, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.table.push((verb, path));
        self.public = self
            .public
            .route(path, axum::routing::on(verb.filter(), handler));
        self
    }
}

/// Every route of the API, relative to [`PREFIX`].
pub(crate) fn routes() -> Routes {
    let routes = Routes {
        public: Router::new(),
        protected: Router::new(),
        table: Vec::new(),
    };
    let routes = auth::routes(routes);
    let routes = jobs::routes(routes);
    let routes = preview::routes(routes);
    let routes = overview::routes(routes);
    let routes = runs::routes(routes);
    let routes = scheduler::routes(routes);
    let routes = cluster::routes(routes);
    let routes = events::routes(routes);
    let routes = metrics::routes(routes);
    openapi::routes(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_address_needs_a_token() {
        let public: SocketAddr = ([0, 0, 0, 0], 8080).into();
        let loopback: SocketAddr = ([127, 0, 0, 1], 8080).into();
        let open = ApiSettings::default();
        assert!(check_listen(&loopback, &open).is_ok());
        assert!(matches!(
            check_listen(&public, &open),
            Err(ApiConfigError::TokenRequired { .. })
        ));
        let guarded = ApiSettings {
            tokens: vec!["secret".to_owned()],
            ..ApiSettings::default()
        };
        assert!(check_listen(&public, &guarded).is_ok());
        let empty = ApiSettings {
            read_tokens: vec![String::new()],
            ..ApiSettings::default()
        };
        assert!(matches!(
            check_listen(&loopback, &empty),
            Err(ApiConfigError::EmptyToken)
        ));
    }

    #[test]
    fn debug_output_hides_tokens() {
        let settings = ApiSettings {
            tokens: vec!["hunter2".to_owned()],
            ..ApiSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("1 redacted"), "{shown}");
    }

    #[test]
    fn command_is_allowed_only_by_name() {
        let default = ApiSettings::default();
        assert!(default.task_allowed("orders.cancel"));
        assert!(!default.task_allowed("command"));
        let listed = ApiSettings {
            allowed_tasks: Some(vec!["command".to_owned()]),
            ..ApiSettings::default()
        };
        assert!(listed.task_allowed("command"));
        assert!(!listed.task_allowed("orders.cancel"));
    }
}
