//! The access log and request ids, through the router with `oneshot`: one
//! `kairos::access` line per request with its id, route, status, latency and token,
//! and `X-Request-Id` on every answer. A binary of its own, because the test installs
//! the process-wide log subscriber.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use kairos::api::{app, ApiSettings};
use kairos::clock::ManualClock;
use kairos::executor::pool::ThreadPoolExecutor;
use kairos::scheduler::Scheduler;
use kairos::store::memory::MemoryStore;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::t0;

struct Api {
    router: Router,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
}

impl Api {
    fn new(settings: ApiSettings) -> Api {
        let (tasks, _runs) = common::recording_tasks();
        let scheduler = Scheduler::builder()
            .clock(ManualClock::new(t0()))
            .tasks(tasks)
            .store("default", MemoryStore::new())
            .executor("default", ThreadPoolExecutor::new(1))
            .build();
        scheduler.start();
        Api {
            router: app(scheduler, settings),
        }
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
        }
    }
}

fn request(method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    builder.body(body).unwrap()
}

/// A job every hour at half past, running `record`.
fn hourly(id: &str) -> Value {
    json!({"id": id, "task": "record", "trigger": {"type": "cron", "minute": 30}})
}

/// Log lines written while a test holds the subscriber.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The access log line of the request with this id.
    fn access(&self, request_id: &str) -> String {
        let lines = self.lines();
        lines
            .iter()
            .find(|line| line.contains("API request") && line.contains(request_id))
            .cloned()
            .unwrap_or_else(|| panic!("no access line for {request_id} in {lines:#?}"))
    }
}

#[tokio::test]
async fn every_request_gets_an_access_line_and_a_request_id() {
    // The only test in this binary, so the process-wide subscriber sees every line
    // (a thread's own subscriber can miss lines while other tests register callsites).
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let api = Api::new(ApiSettings {
        named_tokens: vec![kairos::api::NamedToken {
            name: "orders".to_owned(),
            token: "orders-secret".to_owned(),
            write: true,
            tasks: None,
            rate_limit: None,
        }],
        ..ApiSettings::default()
    });
    let with_id = |method: &str, uri: &str, id: &str, body: Option<Value>| {
        let mut request = request(method, uri, Some("orders-secret"), body);
        request
            .headers_mut()
            .insert("x-request-id", id.parse().unwrap());
        request
    };

    let created = api
        .send(with_id(
            "POST",
            "/api/v1/jobs",
            "order-svc:41",
            Some(hourly("j1")),
        ))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.headers["x-request-id"], "order-svc:41");
    let line = captured.access("order-svc:41");
    for part in [
        "method=POST",
        "route=\"/api/v1/jobs\"",
        "status=201",
        "token=\"orders\"",
        "latency_ms=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }

    let missing = api
        .send(with_id("GET", "/api/v1/jobs/nobody", "req-42", None))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let line = captured.access("req-42");
    assert!(line.contains("route=\"/api/v1/jobs/{id}\""), "{line}");
    assert!(line.contains("status=404"), "{line}");
    assert!(!line.contains("nobody"), "the route, not the path: {line}");

    // An id that is not sane is replaced; none at all gets one made up.
    let replaced = api
        .send(with_id("GET", "/api/v1/jobs", "has space", None))
        .await;
    let made_up = replaced.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made_up.len(), 32, "{made_up}");
    assert!(made_up.bytes().all(|byte| byte.is_ascii_hexdigit()));
    captured.access(&made_up);
    assert!(!captured
        .lines()
        .iter()
        .any(|line| line.contains("has space")));

    // Refused before authentication: still one line, without a token.
    let anonymous = api.send(request("GET", "/api/v1/jobs", None, None)).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let id = anonymous.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let line = captured.access(&id);
    assert!(
        line.contains("status=401") && !line.contains("token="),
        "{line}"
    );
}
