//! The attacks of docs/threat-model.md against the API's router, in process (`oneshot`,
//! no socket): each test is one attack, named after what it tries, and checks that it
//! fails while the legitimate request next to it still works.
//!
//! tests/api_daemon.rs repeats the browser ones against a real daemon over TCP.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use kairos::api::{app, serve_with, ApiSettings, NamedToken, ServerLimits};
use kairos::clock::ManualClock;
use kairos::executor::pool::ThreadPoolExecutor;
use kairos::scheduler::{Scheduler, SchedulerState};
use kairos::store::memory::MemoryStore;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use common::t0;

struct Api {
    scheduler: Scheduler,
    router: Router,
}

impl Api {
    fn new(settings: ApiSettings) -> Api {
        let (tasks, _fired) = common::recording_tasks();
        Api::with_tasks(tasks, settings)
    }

    /// A started scheduler on simulated time with `tasks`, behind `settings`.
    fn with_tasks(tasks: kairos::task::TaskRegistry, settings: ApiSettings) -> Api {
        let scheduler = Scheduler::builder()
            .clock(ManualClock::new(t0()))
            .tasks(tasks)
            .store("default", MemoryStore::new())
            .executor("default", ThreadPoolExecutor::new(2))
            .build();
        scheduler.start();
        let router = app(scheduler.clone(), settings);
        Api { scheduler, router }
    }

    /// The shipped config: loopback, no token.
    fn open() -> Api {
        Api::new(ApiSettings::default())
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }
}

fn code(json: &Value) -> &str {
    json["error"]["code"].as_str().unwrap_or("")
}

/// A request as a browser sends it to the API on 127.0.0.1:8080.
fn browser(method: &str, uri: &str, pairs: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:8080");
    for (name, value) in pairs {
        builder = builder.header(*name, *value);
    }
    if !body.is_empty() {
        builder = builder.header(header::CONTENT_LENGTH, body.len());
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

fn order_job(id: &str) -> String {
    json!({"id": id, "task": "record", "trigger": {"type": "date", "delay": "30m"}}).to_string()
}

// ---------------------------------------------------------------------------------------
// Web pages in the operator's browser
// ---------------------------------------------------------------------------------------

/// The first attack: any page the operator visits posts a "simple" request
/// (text/plain, so no CORS preflight) to pause the scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_pause_is_403_and_the_scheduler_keeps_running() {
    let api = Api::open();
    let attack = browser(
        "POST",
        "/api/v1/scheduler/pause",
        &[
            ("origin", "https://evil.example"),
            ("content-type", "text/plain"),
        ],
        "",
    );
    let (status, body) = api.send(attack).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "cross_origin");
    assert_eq!(api.scheduler.state(), SchedulerState::Running);
    // Even with a JSON content type (a preflight the browser would not get through).
    let json_attack = browser(
        "POST",
        "/api/v1/scheduler/pause",
        &[
            ("origin", "https://evil.example"),
            ("content-type", "application/json"),
        ],
        "",
    );
    assert_eq!(api.send(json_attack).await.0, StatusCode::FORBIDDEN);
    // A browser that sends no Origin but says where the request comes from.
    let fetch_site = browser(
        "POST",
        "/api/v1/scheduler/pause",
        &[
            ("sec-fetch-site", "cross-site"),
            ("content-type", "application/json"),
        ],
        "",
    );
    assert_eq!(api.send(fetch_site).await.0, StatusCode::FORBIDDEN);
    assert_eq!(api.scheduler.state(), SchedulerState::Running);
    // The web page itself, same origin, still may.
    let own = browser(
        "POST",
        "/api/v1/scheduler/pause",
        &[
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
            ("content-type", "application/json"),
        ],
        "",
    );
    assert_eq!(api.send(own).await.0, StatusCode::OK);
    assert_eq!(api.scheduler.state(), SchedulerState::Paused);
}

/// `fetch(url, {mode: "no-cors", body: new Blob([json])})`: a body without a content
/// type, and a browser old enough to send no `Origin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_a_json_content_type_is_415_and_adds_nothing() {
    let api = Api::open();
    let body = order_job("blob");
    let (status, reply) = api.send(browser("POST", "/api/v1/jobs", &[], &body)).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{reply}");
    assert_eq!(code(&reply), "unsupported_media_type");
    let form = browser(
        "POST",
        "/api/v1/jobs",
        &[("content-type", "application/x-www-form-urlencoded")],
        &body,
    );
    assert_eq!(api.send(form).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Bodiless too: pausing needs the header.
    let bare = browser("POST", "/api/v1/scheduler/pause", &[], "");
    assert_eq!(api.send(bare).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(api.scheduler.state(), SchedulerState::Running);
    assert!(api.scheduler.get_job("blob").await.unwrap().is_none());
    // With the header, the same body is a job.
    let json = browser(
        "POST",
        "/api/v1/jobs",
        &[("content-type", "application/json")],
        &body,
    );
    assert_eq!(api.send(json).await.0, StatusCode::CREATED);
}

/// DNS rebinding: a page at evil.example rebinds its name to 127.0.0.1, so the
/// browser sends it to the API as same-origin, with `Host: evil.example`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_421_for_reads_and_writes() {
    let api = Api::open();
    for (method, uri) in [
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/events"),
        ("GET", "/"),
        ("POST", "/api/v1/scheduler/pause"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "evil.example:8080")
            .header(header::ORIGIN, "http://evil.example:8080")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())
            .unwrap();
        let (status, body) = api.send(request).await;
        assert_eq!(
            status,
            StatusCode::MISDIRECTED_REQUEST,
            "{method} {uri}: {body}"
        );
        assert_eq!(code(&body), "foreign_host");
    }
    assert_eq!(api.scheduler.state(), SchedulerState::Running);
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"] {
        let request = Request::builder()
            .uri("/api/v1/health")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(api.send(request).await.0, StatusCode::OK, "{host}");
    }
}

/// `[api] allowed_hosts` names the hosts a proxied or remote API answers to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_let_a_named_host_in() {
    let api = Api::new(ApiSettings {
        allowed_hosts: vec!["kairos.internal".to_owned()],
        ..ApiSettings::default()
    });
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/scheduler/pause")
        .header(header::HOST, "kairos.internal")
        .header(header::ORIGIN, "https://kairos.internal")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(request).await.0, StatusCode::OK);
    let other = Request::builder()
        .uri("/api/v1/jobs")
        .header(header::HOST, "kairos.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(other).await.0, StatusCode::MISDIRECTED_REQUEST);
}

// ---------------------------------------------------------------------------------------
// Bounded work
// ---------------------------------------------------------------------------------------

/// An `and` whose inner `and` agrees only after ~1000 jumps, with a part (half
/// seconds) the inner one never agrees with: unbounded, every outer jump reruns the
/// inner search, 10^8 evaluations in all. 300-odd bytes of JSON.
fn nested_trigger() -> Value {
    let interval = |seconds: u32, start: &str| json!({"type": "interval", "seconds": seconds, "start_date": start});
    json!({"type": "and", "triggers": [
        {"type": "and", "triggers": [
            interval(1000, "2024-01-01T00:00:00Z"),
            interval(1001, "2024-01-01T00:00:01Z"),
        ]},
        interval(1, "2024-01-01T00:00:00.5Z"),
    ]})
}

fn post_json(uri: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_trigger_is_422_within_a_second_and_health_answers_meanwhile() {
    let api = Api::open();
    let router = api.router.clone();
    let started = Instant::now();
    let preview = tokio::spawn(async move {
        let request = post_json(
            "/api/v1/preview",
            &json!({"trigger": nested_trigger(), "count": 100}),
        );
        let response = router.oneshot(request).await.unwrap();
        (response.status(), started.elapsed())
    });
    // /health meanwhile, several times.
    for _ in 0..5 {
        let asked = Instant::now();
        let health = Request::builder()
            .uri("/api/v1/health")
            .body(Body::empty())
            .unwrap();
        assert_eq!(api.send(health).await.0, StatusCode::OK);
        assert!(
            asked.elapsed() < Duration::from_millis(200),
            "health took {:?}",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, took) = preview.await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(took < Duration::from_secs(1), "preview took {took:?}");
    // The same trigger as a job: refused the same way, and nothing stored.
    let started = Instant::now();
    let (status, body) = api
        .send(post_json(
            "/api/v1/jobs",
            &json!({"id": "nested", "task": "record", "trigger": nested_trigger()}),
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "trigger", "{body}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(api.scheduler.get_job("nested").await.unwrap().is_none());
    // Deeper than the nesting limit: refused before any evaluation.
    let mut deep = json!({"type": "interval", "seconds": 1});
    for _ in 0..5 {
        deep = json!({"type": "or", "triggers": [deep]});
    }
    let (status, body) = api
        .send(post_json("/api/v1/preview", &json!({"trigger": deep})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

// ---------------------------------------------------------------------------------------
// Outbound requests of API-created http jobs
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_http_job_to_the_metadata_service_is_refused_saying_why() {
    let (mut tasks, _) = common::recording_tasks();
    tasks.register("http", kairos::task::http::HttpTask::default());
    let api = Api::with_tasks(tasks, ApiSettings::default());
    let (status, body) = api
        .send(post_json(
            "/api/v1/jobs",
            &json!({"id": "imds", "task": "http",
                    "args": {"url": "http://169.254.169.254/latest/meta-data/iam/"},
                    "trigger": {"type": "date", "delay": "1m"}}),
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "args.url", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("link-local"), "{message}");
    assert!(api.scheduler.get_job("imds").await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

/// A dashboard's read-only token sees that a job sends an Authorization header, not
/// the header's value, nor the password in its URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_sees_job_args_with_secrets_hidden() {
    let (mut tasks, _) = common::recording_tasks();
    tasks.register("http", kairos::task::http::HttpTask::default());
    let settings = ApiSettings {
        tokens: vec!["rw".to_owned()],
        read_tokens: vec!["ro".to_owned()],
        ..ApiSettings::default()
    };
    let api = Api::with_tasks(tasks, settings);
    let job = json!({"id": "billing", "task": "http",
        "args": {"url": "https://svc:url-pass@billing.example/run",
                 "headers": {"Authorization": "Bearer header-secret"}},
        "trigger": {"type": "interval", "hours": 1}});
    let mut add = post_json("/api/v1/jobs", &job);
    add.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer rw".parse().unwrap());
    assert_eq!(api.send(add).await.0, StatusCode::CREATED);
    let get = |token: &'static str, uri: &'static str| {
        Request::builder()
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    for uri in [
        "/api/v1/jobs/billing",
        "/api/v1/jobs",
        "/api/v1/jobs?limit=10",
    ] {
        let (status, body) = api.send(get("ro", uri)).await;
        assert_eq!(status, StatusCode::OK);
        let shown = body.to_string();
        assert!(!shown.contains("header-secret"), "{uri}: {shown}");
        assert!(!shown.contains("url-pass"), "{uri}: {shown}");
        assert!(shown.contains("Authorization"), "{uri}: {shown}");
    }
    // The writer, who could change them anyway, sees them.
    let (_, body) = api.send(get("rw", "/api/v1/jobs/billing")).await;
    assert_eq!(
        body["args"]["headers"]["Authorization"],
        "Bearer header-secret"
    );
}

// ---------------------------------------------------------------------------------------
// Anyone who can reach the port: connections
// ---------------------------------------------------------------------------------------

/// Serves a tokenless API on a loopback port within `limits`; the address and what
/// stops it.
async fn serve_on_loopback(
    limits: ServerLimits,
    settings: ApiSettings,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let api = Api::new(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(
        listener,
        api.router.clone(),
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    (address, stop)
}

/// Whether the server closes `stream` within `patience` (a read gives 0 or fails).
async fn closed_within(stream: &mut tokio::net::TcpStream, patience: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_and_an_idle_connection_are_closed() {
    let limits = ServerLimits {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        ..ServerLimits::default()
    };
    let (address, _stop) = serve_on_loopback(limits, ApiSettings::default()).await;
    // Slowloris: half a request head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
    // A connection that never says anything.
    let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    // One request, then idle on keep-alive.
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    idle.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_and_the_others_served() {
    let limits = ServerLimits {
        max_connections: 2,
        ..ServerLimits::default()
    };
    let (address, _stop) = serve_on_loopback(limits, ApiSettings::default()).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(address).await.unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);
    // A held one still gets answers.
    let first = &mut held[0];
    first
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(2), first.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_past_the_cap_get_503() {
    let api = Api::new(ApiSettings {
        max_event_streams: 1,
        ..ApiSettings::default()
    });
    let events = || {
        Request::builder()
            .uri("/api/v1/events")
            .body(Body::empty())
            .unwrap()
    };
    let first = api.router.clone().oneshot(events()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = api.router.clone().oneshot(events()).await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Closing the first makes room.
    drop(first);
    let third = api.router.clone().oneshot(events()).await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// API clients by token: names, scopes, rates
// ---------------------------------------------------------------------------------------

/// An admin token, a read token, and the order service's token that may only schedule
/// `orders.cancel`.
fn with_order_service() -> Api {
    let (mut tasks, _) = common::recording_tasks();
    tasks.register_fn("orders.cancel", |_run: kairos::task::TaskRun| async {
        Ok::<String, kairos::task::TaskFailure>(String::new())
    });
    tasks.register("http", kairos::task::http::HttpTask::default());
    // A stand-in under the name: the token's scope, not an unknown name, must refuse it.
    tasks.register_fn("command", |_run: kairos::task::TaskRun| async {
        Ok::<String, kairos::task::TaskFailure>(String::new())
    });
    let settings = ApiSettings {
        tokens: vec!["admin".to_owned()],
        named_tokens: vec![NamedToken {
            name: "orders".to_owned(),
            token: "orders-secret".to_owned(),
            write: true,
            tasks: Some(vec!["orders.cancel".to_owned()]),
            rate_limit: None,
        }],
        allowed_tasks: Some(vec![
            "record".to_owned(),
            "orders.cancel".to_owned(),
            "http".to_owned(),
            "command".to_owned(),
        ]),
        ..ApiSettings::default()
    };
    Api::with_tasks(tasks, settings)
}

fn as_token(token: &str, method: &str, uri: &str, body: Option<&Value>) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None if method == "POST" => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

fn cancel_job(id: &str) -> Value {
    json!({"id": id, "task": "orders.cancel", "args": {"order_id": 1},
           "trigger": {"type": "date", "delay": "30m"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_service_token_schedules_orders_cancel_and_nothing_else() {
    let api = with_order_service();
    let added = api
        .send(as_token(
            "orders-secret",
            "POST",
            "/api/v1/jobs",
            Some(&cancel_job("order-cancel-1")),
        ))
        .await;
    assert_eq!(added.0, StatusCode::CREATED, "{}", added.1);
    for (task, args) in [
        ("http", json!({"url": "https://example.com/"})),
        ("command", json!({"argv": ["true"]})),
    ] {
        let job = json!({"task": task, "args": args, "trigger": {"type": "date", "delay": "1h"}});
        let (status, body) = api
            .send(as_token(
                "orders-secret",
                "POST",
                "/api/v1/jobs",
                Some(&job),
            ))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{task}: {body}");
        assert_eq!(code(&body), "task_not_allowed");
    }
    // Nothing scheduler-wide.
    for uri in ["/api/v1/scheduler/pause", "/api/v1/scheduler/reload"] {
        let (status, body) = api.send(as_token("orders-secret", "POST", uri, None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
        assert_eq!(code(&body), "token_scope");
    }
    assert_eq!(api.scheduler.state(), SchedulerState::Running);
    // Not the admin's jobs of other tasks.
    let admin_job =
        json!({"id": "report", "task": "record", "trigger": {"type": "interval", "hours": 1}});
    let added = api
        .send(as_token("admin", "POST", "/api/v1/jobs", Some(&admin_job)))
        .await;
    assert_eq!(added.0, StatusCode::CREATED);
    for (method, uri) in [
        ("DELETE", "/api/v1/jobs/report"),
        ("POST", "/api/v1/jobs/report/pause"),
        ("POST", "/api/v1/jobs/report/run"),
    ] {
        let (status, body) = api.send(as_token("orders-secret", method, uri, None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {body}");
        assert_eq!(code(&body), "token_scope");
    }
    // Its own: removed when the order is paid.
    let removed = api
        .send(as_token(
            "orders-secret",
            "DELETE",
            "/api/v1/jobs/order-cancel-1",
            None,
        ))
        .await;
    assert_eq!(removed.0, StatusCode::NO_CONTENT);
    // The admin token still pauses.
    let paused = api
        .send(as_token("admin", "POST", "/api/v1/scheduler/pause", None))
        .await;
    assert_eq!(paused.0, StatusCode::OK);
}

/// The order service adds 2,000 cancel jobs one after another: with the defaults, an
/// authenticated client is not throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_authenticated_adds_in_a_burst_get_no_429() {
    let api = with_order_service();
    for order in 0..2000 {
        let (status, body) = api
            .send(as_token(
                "orders-secret",
                "POST",
                "/api/v1/jobs",
                Some(&cancel_job(&format!("order-cancel-{order}"))),
            ))
            .await;
        assert_eq!(status, StatusCode::CREATED, "add {order}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_throttled_and_valid_tokens_are_not() {
    let api = with_order_service();
    let mut limited = 0;
    for attempt in 0..40 {
        let guess = format!("guess-{attempt}");
        let (status, _) = api
            .send(as_token(&guess, "GET", "/api/v1/jobs", None))
            .await;
        match status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("attempt {attempt}: {other}"),
        }
    }
    assert!(limited >= 15, "only {limited} of 40 guesses were held back");
    // The service with a valid token is not held back.
    let (status, _) = api
        .send(as_token("orders-secret", "GET", "/api/v1/jobs", None))
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Two clients that happen to pick the same Idempotency-Key each get their own job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_kept_per_token() {
    let api = with_order_service();
    let with_key = |token: &str, body: &Value| {
        let mut request = as_token(token, "POST", "/api/v1/jobs", Some(body));
        request
            .headers_mut()
            .insert("idempotency-key", "order-7".parse().unwrap());
        request
    };
    let mine = api
        .send(with_key("orders-secret", &cancel_job("order-cancel-7")))
        .await;
    assert_eq!(mine.0, StatusCode::CREATED);
    let theirs = api
        .send(with_key(
            "admin",
            &json!({"id": "admin-7", "task": "record", "trigger": {"type": "date", "delay": "1h"}}),
        ))
        .await;
    assert_eq!(theirs.0, StatusCode::CREATED, "{}", theirs.1);
    assert_eq!(theirs.1["id"], "admin-7");
    assert!(api.scheduler.get_job("admin-7").await.unwrap().is_some());
}

/// A client guessing tokens does not lock out probes that present none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_tokens_never_blocks_health_probes() {
    let api = with_order_service();
    for attempt in 0..40 {
        let guess = format!("guess-{attempt}");
        let _ = api
            .send(as_token(&guess, "GET", "/api/v1/jobs", None))
            .await;
    }
    let health = Request::builder()
        .uri("/api/v1/health")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(health).await.0, StatusCode::OK);
}
