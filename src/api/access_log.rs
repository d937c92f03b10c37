//! The access log and request ids: one line per request, and an `X-Request-Id` on
//! every answer.
//!
//! The line (target `kairos::access`, level info) names the request id, the method,
//! the route as registered (`/api/v1/jobs/{id}`, so lines group by route and ids do
//! not multiply its values), the status, the latency and the name of the token that
//! was presented (`[api.tokens.NAME]`; absent when none was, or none is configured).
//! Every line a handler logs runs inside a `request` span carrying the same id, so an
//! error in the log leads back to its request, and the client quoting the header it
//! got leads to both.
//!
//! A client's own `X-Request-Id` is kept when it is sane (1 to 64 visible characters
//! from `A-Z a-z 0-9 - _ . : / + =`), so ids can follow a request across services;
//! anything else is replaced with a new random id rather than written into the log.
//!
//! A small middleware rather than tower-http's `TraceLayer` and `SetRequestIdLayer`:
//! those keep whatever id a client sends, and see the request only from outside the
//! router, where neither the token's name (known inside authentication) nor the route
//! template (axum's `matched-path` is not enabled) can be had.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::{Verb, PREFIX};

/// The request id header, as sent and as answered.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client request id kept.
const MAX_ID_LENGTH: usize = 64;

/// The request's id, in its extensions for whoever wants to name it.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub(crate) Arc<str>);

/// Where authentication leaves the presented token's name for the access log, which
/// runs outside it.
#[derive(Clone, Debug, Default)]
pub(crate) struct TokenName(Arc<OnceLock<Arc<str>>>);

impl TokenName {
    /// Records the token's name (the first one set stays).
    pub(crate) fn set(&self, name: Arc<str>) {
        let _ = self.0.set(name);
    }
}

/// The API's routes as registered, to name each request's route.
#[derive(Debug)]
pub(crate) struct RouteTable {
    routes: Vec<(Verb, &'static str)>,
}

impl RouteTable {
    pub(crate) fn new(routes: Vec<(Verb, &'static str)>) -> RouteTable {
        RouteTable { routes }
    }

    /// The route template `path` matches (`/api/v1/jobs/{id}`), if it is an API route;
    /// a `{name}` segment matches any one segment.
    pub(crate) fn route(&self, method: &Method, path: &str) -> Option<&'static str> {
        let relative = path.strip_prefix(PREFIX)?;
        let segments: Vec<&str> = relative.split('/').collect();
        let matches = |template: &str| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(part, segment)| {
                    (part.starts_with('{') && part.ends_with('}') && !segment.is_empty())
                        || part == segment
                })
        };
        // Prefer the route of this method; a path served for another method is still
        // named (its answer is 405).
        let same_method = self
            .routes
            .iter()
            .find(|(verb, template)| verb.matches(method) && matches(template));
        same_method
            .or_else(|| self.routes.iter().find(|(_, template)| matches(template)))
            .map(|(_, template)| *template)
    }
}

/// The middleware: sets the request id, logs the request when its answer is known.
pub(crate) async fn log(
    State(routes): State<Arc<RouteTable>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id: Arc<str> = match request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| sane(id))
    {
        Some(id) => Arc::from(id),
        None => Arc::from(format!("{:032x}", fastrand::u128(..))),
    };
    let method = request.method().clone();
    let route = routes
        .route(&method, request.uri().path())
        .map(|route| format!("{PREFIX}{route}"));
    let token = TokenName::default();
    request.extensions_mut().insert(RequestId(id.clone()));
    request.extensions_mut().insert(token.clone());
    let span = tracing::info_span!("request", id = &*id);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let latency = started.elapsed();
    tracing::info!(
        target: "kairos::access",
        request_id = &*id,
        %method,
        // Not an API route (the web page, an unknown path): no template to name.
        route = route.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        token = token.0.get().map(|name| &**name),
        "API request"
    );
    response
}

/// Whether a client's request id may be kept as it is.
fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LENGTH
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:/+=".contains(&byte))
}

/// What a request to `route` was doing, for the message of a 503 that says what timed
/// out.
pub(crate) fn activity(method: &Method, route: Option<&str>) -> &'static str {
    let route = route.and_then(|route| route.strip_prefix(PREFIX));
    match (method.as_str(), route.unwrap_or_default()) {
        ("GET", "/jobs") => "listing jobs",
        ("POST", "/jobs") => "adding a job",
        ("GET", "/jobs/{id}") => "reading the job",
        ("PATCH", "/jobs/{id}") => "changing the job",
        ("DELETE", "/jobs/{id}") => "removing the job",
        ("POST", "/jobs/{id}/pause") => "pausing the job",
        ("POST", "/jobs/{id}/resume") => "resuming the job",
        ("POST", "/jobs/{id}/run") => "starting a run of the job",
        ("POST", "/jobs/{id}/reschedule") => "rescheduling the job",
        ("GET", "/jobs/{id}/explain") => "explaining the job's schedule",
        ("POST", "/jobs/{id}/backfill") => "backfilling the job",
        ("GET", "/jobs/{id}/fire_times") => "computing the job's fire times",
        ("GET", "/jobs/{id}/runs" | "/runs") => "reading the run history",
        ("POST", "/preview") => "previewing the trigger",
        ("POST", "/scheduler/pause") => "pausing the scheduler",
        ("POST", "/scheduler/resume") => "resuming the scheduler",
        ("POST", "/scheduler/reload") => "reloading the config files",
        ("GET", "/cluster") => "listing the cluster's nodes",
        ("GET", "/health") => "checking health",
        ("GET", "/overview") => "building the overview",
        ("GET", "/metrics") => "collecting metrics",
        _ => "answering the request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_sane() {
        assert!(sane("req-42"));
        assert!(sane("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(sane("svc/orders:7=+_."));
        assert!(!sane(""));
        assert!(!sane("has space"));
        assert!(!sane("new\nline"));
        assert!(!sane("é"));
        assert!(!sane(&"a".repeat(65)));
    }

    #[test]
    fn every_served_route_is_named_and_has_an_activity() {
        let table = RouteTable::new(super::super::routes().table);
        let job = table.route(&Method::PATCH, "/api/v1/jobs/order-42");
        assert_eq!(job, Some("/jobs/{id}"));
        assert_eq!(
            table.route(&Method::GET, "/api/v1/jobs/a/runs"),
            Some("/jobs/{id}/runs")
        );
        assert_eq!(table.route(&Method::GET, "/api/v1/nope"), None);
        assert_eq!(table.route(&Method::GET, "/"), None);
        assert_eq!(table.route(&Method::GET, "/api/v1/jobs//runs"), None);
        for (verb, path) in &table.routes {
            let method = verb.method();
            let named = table.route(&method, &format!("{PREFIX}{}", path.replace("{id}", "x")));
            assert_eq!(named, Some(*path));
            if !matches!(*path, "/events" | "/access" | "/openapi.json") {
                assert_ne!(
                    activity(&method, Some(&format!("{PREFIX}{path}"))),
                    "answering the request",
                    "{path}"
                );
            }
        }
    }
}
