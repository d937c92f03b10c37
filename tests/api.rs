//! The HTTP API end to end: requests go through the router with `oneshot` (no socket),
//! to a running scheduler on a [`ManualClock`] with a memory store and tasks that
//! record their runs; one test serves on a real loopback socket to check graceful
//! shutdown with an event stream open.
//!
//! docs/semantics.md, "Outside contracts" (HTTP): routes, the error body, statuses.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use futures_util::StreamExt;
use kairos::api::{app, serve, ApiSettings, RateLimit};
use kairos::clock::ManualClock;
use kairos::executor::pool::ThreadPoolExecutor;
use kairos::job::JobSpec;
use kairos::scheduler::{Scheduler, SchedulerState};
use kairos::store::memory::MemoryStore;
use kairos::task::{TaskFailure, TaskRun};
use kairos::trigger::TriggerSpec;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use common::{t0, wait_for_runs, Runs};

/// How long any wait may take in real time before the test fails.
const PATIENCE: Duration = Duration::from_secs(5);

const WRITE_TOKEN: &str = "write-secret";
const READ_TOKEN: &str = "read-secret";

struct Api {
    scheduler: Scheduler,
    clock: ManualClock,
    router: Router,
    /// Runs of the `record` and `orders.cancel` tasks.
    fired: Runs,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    fn field(&self) -> &str {
        self.json["error"]["field"].as_str().unwrap_or("")
    }
}

impl Api {
    /// A running scheduler at [`t0`] and its API with `settings`.
    fn new(settings: ApiSettings) -> Api {
        let clock = ManualClock::new(t0());
        let (mut tasks, fired) = common::recording_tasks();
        let seen = fired.clone();
        tasks.register_fn("orders.cancel", move |run: TaskRun| {
            seen.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push((run.job_id.clone(), run.scheduled_time));
            async { Ok::<String, TaskFailure>(String::new()) }
        });
        // A stand-in under the name the default task policy refuses, so the policy is
        // what a request for it meets (an unregistered name is refused as unknown).
        tasks.register_fn("command", |_run: TaskRun| async {
            Ok::<String, TaskFailure>(String::new())
        });
        tasks.register_fn("fail", |_run: TaskRun| async {
            Err::<String, TaskFailure>(TaskFailure::new("the task failed on purpose"))
        });
        let scheduler = Scheduler::builder()
            .clock(clock.clone())
            .tasks(tasks)
            .store("default", MemoryStore::new())
            .executor("default", ThreadPoolExecutor::new(2))
            .build();
        scheduler.start();
        let router = app(scheduler.clone(), settings);
        Api {
            scheduler,
            clock,
            router,
            fired,
        }
    }

    /// No tokens: every request allowed.
    fn open() -> Api {
        Api::new(ApiSettings::default())
    }

    /// A read-write and a read-only token.
    fn guarded() -> Api {
        Api::new(ApiSettings {
            tokens: vec![WRITE_TOKEN.to_owned()],
            read_tokens: vec![READ_TOKEN.to_owned()],
            ..ApiSettings::default()
        })
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.send(request(method, uri, Some(WRITE_TOKEN), body))
            .await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call("GET", uri, None).await
    }

    async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call("POST", uri, Some(body)).await
    }

    fn fired(&self) -> Vec<String> {
        self.fired
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(job_id, _)| job_id.clone())
            .collect()
    }
}

fn request(method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        // The API refuses a POST without a JSON content type, body or not.
        None if method == "POST" => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::empty())
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

fn raw(method: &str, uri: &str, body: &'static str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// A job every hour at half past, running `record` (not due at [`t0`], on the hour).
fn hourly(id: &str) -> Value {
    json!({"id": id, "task": "record", "trigger": {"type": "cron", "minute": 30}})
}

// ---------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_goes_through_every_job_route() {
    let api = Api::open();
    let added = api
        .post(
            "/api/v1/jobs",
            json!({"id": "report", "name": "nightly report", "task": "record",
                   "args": {"to": "ops"}, "trigger": {"type": "cron", "hour": 3},
                   "options": {"misfire_grace_time": "5m", "max_instances": 2}}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    assert_eq!(added.headers[header::LOCATION], "/api/v1/jobs/report");
    let job = &added.json;
    assert_eq!(job["id"], "report");
    assert_eq!(job["name"], "nightly report");
    assert_eq!(job["args"], json!({"to": "ops"}));
    assert_eq!(job["trigger"]["type"], "cron");
    assert_eq!(job["trigger_text"], "cron[hour='3']");
    assert_eq!(job["executor"], "default");
    assert_eq!(job["options"]["misfire_grace_time"], "5m");
    assert_eq!(job["options"]["max_instances"], 2);
    assert_eq!(job["options"]["coalesce"], true);
    assert_eq!(job["options"]["jitter"], Value::Null);
    assert_eq!(job["paused"], false);
    assert_eq!(job["next_run_time"], "2030-01-01T03:00:00Z");
    assert_eq!(job["from_config"], false);

    let listed = api.get("/api/v1/jobs").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json["jobs"].as_array().map(Vec::len), Some(1));
    let shown = api.get("/api/v1/jobs/report").await;
    assert_eq!(shown.json, added.json);
    assert_eq!(shown.json["jobstore"], "default");

    let changed = api
        .call(
            "PATCH",
            "/api/v1/jobs/report",
            Some(json!({"name": "report", "clear_misfire_grace_time": true, "jitter": "10s"})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json);
    assert_eq!(changed.json["name"], "report");
    assert_eq!(changed.json["options"]["misfire_grace_time"], Value::Null);
    assert_eq!(changed.json["options"]["jitter"], "10s");

    let paused = api.post("/api/v1/jobs/report/pause", json!({})).await;
    assert_eq!(paused.status, StatusCode::OK);
    assert_eq!(paused.json["paused"], true);
    assert_eq!(paused.json["next_run_time"], Value::Null);
    let resumed = api.post("/api/v1/jobs/report/resume", json!({})).await;
    assert_eq!(resumed.json["paused"], false);
    assert_eq!(resumed.json["next_run_time"], "2030-01-01T03:00:00Z");

    let rescheduled = api
        .post(
            "/api/v1/jobs/report/reschedule",
            json!({"trigger": {"type": "interval", "minutes": 30}}),
        )
        .await;
    assert_eq!(rescheduled.status, StatusCode::OK, "{}", rescheduled.json);
    assert_eq!(rescheduled.json["trigger_text"], "interval[30m]");
    assert_eq!(rescheduled.json["next_run_time"], "2030-01-01T00:30:00Z");

    let run = api.post("/api/v1/jobs/report/run", json!({})).await;
    assert_eq!(run.status, StatusCode::ACCEPTED, "{}", run.json);
    assert_eq!(run.json["job_id"], "report");
    let run_id = run.json["run_id"].as_str().unwrap().to_owned();
    assert_eq!(wait_for_runs(&api.fired, 1).await.len(), 1);
    let runs = wait_for_history(&api, "/api/v1/jobs/report/runs?limit=10").await;
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["outcome"], "success");
    let all = api.get("/api/v1/runs?limit=5&job_id=report").await;
    assert_eq!(all.json["runs"][0]["run_id"], run_id.as_str());
    let none = api.get("/api/v1/runs?job_id=nobody").await;
    assert_eq!(none.json["runs"], json!([]));

    let removed = api.call("DELETE", "/api/v1/jobs/report", None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let gone = api.get("/api/v1/jobs/report").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "job_not_found");
}

/// Waits until the run history at `uri` is not empty (a run's record is written just
/// after the task returns).
async fn wait_for_history(api: &Api, uri: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = api.get(uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
        if let Some(runs) = reply.json["runs"]
            .as_array()
            .filter(|runs| !runs.is_empty())
        {
            return runs.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run recorded at {uri}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The news-app flow: an order is cancelled 30 minutes after it is placed unless it is
/// paid first, which deletes the pending job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_order_cancel_deleted_in_time_never_fires_and_one_kept_fires_once() {
    let api = Api::open();
    let cancel = |id: &str| {
        json!({"id": id, "task": "orders.cancel", "args": {"order": id},
               "trigger": {"type": "date", "delay": "30m"}})
    };
    let paid = api.post("/api/v1/jobs", cancel("order-1")).await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.json);
    // The delay is resolved on the scheduler's clock, not the machine's.
    assert_eq!(paid.json["next_run_time"], "2030-01-01T00:30:00Z");
    assert_eq!(
        api.call("DELETE", "/api/v1/jobs/order-1", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    let unpaid = api.post("/api/v1/jobs", cancel("order-2")).await;
    assert_eq!(unpaid.status, StatusCode::CREATED);
    api.clock.advance(Duration::from_secs(29 * 60));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(api.fired().is_empty(), "fired early: {:?}", api.fired());

    api.clock.advance(Duration::from_secs(60));
    assert_eq!(wait_for_runs(&api.fired, 1).await.len(), 1);
    // Time enough for a second or a deleted job's run to show up, if there were one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.fired(), ["order-2"]);
    // A fired one-off job is gone.
    assert_eq!(
        api.get("/api/v1/jobs/order-2").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_owned_jobs_may_be_paused_and_run_but_not_changed_or_removed() {
    let api = Api::open();
    let trigger: TriggerSpec = serde_json::from_value(json!({"type": "cron", "hour": 3})).unwrap();
    let mut spec = JobSpec::new("record", trigger).with_id("from-file");
    spec.from_config = true;
    api.scheduler.add_job(spec).await.unwrap();

    let shown = api.get("/api/v1/jobs/from-file").await;
    assert_eq!(shown.json["from_config"], true);

    let patched = api
        .call(
            "PATCH",
            "/api/v1/jobs/from-file",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::CONFLICT);
    assert_eq!(patched.code(), "config_owned");
    assert!(patched.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("config files"));
    let deleted = api.call("DELETE", "/api/v1/jobs/from-file", None).await;
    assert_eq!(deleted.status, StatusCode::CONFLICT);
    let rescheduled = api
        .post(
            "/api/v1/jobs/from-file/reschedule",
            json!({"trigger": {"type": "cron", "hour": 4}}),
        )
        .await;
    assert_eq!(rescheduled.status, StatusCode::CONFLICT);
    let mut replacement = hourly("from-file");
    replacement["replace_existing"] = json!(true);
    let replaced = api.post("/api/v1/jobs", replacement).await;
    assert_eq!(replaced.status, StatusCode::CONFLICT);
    assert_eq!(replaced.code(), "config_owned");

    let paused = api.post("/api/v1/jobs/from-file/pause", json!({})).await;
    assert_eq!(paused.status, StatusCode::OK);
    let resumed = api.post("/api/v1/jobs/from-file/resume", json!({})).await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(resumed.json["from_config"], true);
    let run = api.post("/api/v1/jobs/from-file/run", json!({})).await;
    assert_eq!(run.status, StatusCode::ACCEPTED);
    // An API caller cannot claim config ownership for a job of its own.
    let mut claimed = hourly("mine");
    claimed["from_config"] = json!(true);
    assert_eq!(
        api.post("/api/v1/jobs", claimed).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

// ---------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------

fn with_key(key: &str, body: &Value) -> Request<Body> {
    let mut request = request("POST", "/api/v1/jobs", None, Some(body.clone()));
    request
        .headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_with_the_same_key_returns_the_first_job_and_adds_no_second() {
    let api = Api::open();
    // No id: without the key, each POST would make a new job.
    let body = json!({"task": "record", "trigger": {"type": "date", "delay": "1h"}});
    let first = api.send(with_key("k-1", &body)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    let retry = api.send(with_key("k-1", &body)).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.json, first.json);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(
        retry.headers[header::LOCATION],
        first.headers[header::LOCATION]
    );
    let jobs = api.get("/api/v1/jobs").await;
    assert_eq!(jobs.json["jobs"].as_array().map(Vec::len), Some(1));

    let other_body = json!({"task": "record", "trigger": {"type": "date", "delay": "2h"}});
    let reused = api.send(with_key("k-1", &other_body)).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "idempotency_key_reused");

    // A failed create keeps nothing: the corrected retry with the same key goes through.
    let broken = json!({"task": "record", "trigger": {"type": "cron", "hour": 25}});
    assert_eq!(
        api.send(with_key("k-2", &broken)).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let fresh = api.send(with_key("k-3", &body)).await;
    assert_eq!(fresh.status, StatusCode::CREATED);
    assert_ne!(fresh.json["id"], first.json["id"]);
    let jobs = api.get("/api/v1/jobs").await;
    assert_eq!(jobs.json["jobs"].as_array().map(Vec::len), Some(2));
}

/// Regression: the 255-character limit was checked on the key with the caller's name
/// in front, so a key of 255 characters (what openapi.json allows) was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_of_255_characters_is_taken_and_its_limit_is_on_the_key_sent() {
    let api = Api::open();
    let body = json!({"task": "record", "trigger": {"type": "date", "delay": "1h"}});
    let longest = "k".repeat(255);
    let first = api.send(with_key(&longest, &body)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    let retry = api.send(with_key(&longest, &body)).await;
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let too_long = api.send(with_key(&"k".repeat(256), &body)).await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_long.code(), "invalid_idempotency_key");
    let empty = api.send(with_key("", &body)).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(empty.code(), "invalid_idempotency_key");
}

/// Pause, resume and run (of a job and of the scheduler) take what openapi.json
/// declares for them: no body or `{}`, with the JSON content type; a body with fields
/// they would ignore is refused, naming the field, and one that is not JSON is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_without_input_take_no_body_or_an_empty_object_and_refuse_anything_else() {
    let api = Api::open();
    assert_eq!(
        api.post("/api/v1/jobs", hourly("report")).await.status,
        StatusCode::CREATED
    );
    for path in [
        "/api/v1/jobs/report/pause",
        "/api/v1/jobs/report/resume",
        "/api/v1/jobs/report/run",
        "/api/v1/scheduler/pause",
        "/api/v1/scheduler/resume",
    ] {
        for taken in ["", " \n", "{}", " { } "] {
            let reply = api.send(raw("POST", path, taken)).await;
            assert!(
                reply.status.is_success(),
                "{path} {taken:?}: {} {}",
                reply.status,
                reply.json
            );
        }
        // (Run now takes one field, `force`; none of these takes this one.)
        let field = api.send(raw("POST", path, r#"{"nope": true}"#)).await;
        assert_eq!(field.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(field.code(), "invalid_input", "{path}");
        assert_eq!(field.field(), "nope", "{path}");
        for wrong_shape in ["null", "[]", "0", "\"{}\""] {
            let reply = api.send(raw("POST", path, wrong_shape)).await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {wrong_shape}"
            );
        }
        let broken = api.send(raw("POST", path, "{")).await;
        assert_eq!(broken.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(broken.code(), "malformed_json", "{path}");
        // The content type stays required with or without a body (docs/threat-model.md).
        let untyped = Request::builder()
            .method("POST")
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let untyped = api.send(untyped).await;
        assert_eq!(untyped.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
    }
    // Reload takes {"force": bool} and nothing else (this scheduler has no config
    // files, which it says only once the body was read).
    let unknown = api
        .send(raw(
            "POST",
            "/api/v1/scheduler/reload",
            r#"{"forse": true}"#,
        ))
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.field(), "forse");
    let null = api
        .send(raw("POST", "/api/v1/scheduler/reload", "null"))
        .await;
    assert_eq!(null.status, StatusCode::UNPROCESSABLE_ENTITY);
    for taken in ["", "{}", r#"{"force": true}"#] {
        let reply = api
            .send(raw("POST", "/api/v1/scheduler/reload", taken))
            .await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{taken:?}");
        assert_eq!(reply.code(), "no_config", "{taken:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_with_the_error_body() {
    let api = Api::open();
    let reply = api.send(raw("POST", "/api/v1/jobs", "{\"task\": ")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "malformed_json");
    assert!(reply.json["error"]["message"].is_string());
    let patch = api.send(raw("PATCH", "/api/v1/jobs/x", "not json")).await;
    assert_eq!(patch.status, StatusCode::BAD_REQUEST);
    let empty = api.send(raw("POST", "/api/v1/jobs/x/reschedule", "")).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let form = Request::builder()
        .method("POST")
        .uri("/api/v1/jobs")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("task=record"))
        .unwrap();
    let form = api.send(form).await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(form.code(), "unsupported_media_type");
    let limit = api.get("/api/v1/runs?limit=0").await;
    assert_eq!(limit.status, StatusCode::BAD_REQUEST);
    let limit = api.get("/api/v1/runs?limit=many").await;
    assert_eq!(limit.status, StatusCode::BAD_REQUEST);
    assert_eq!(limit.code(), "invalid_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_422_naming_the_field() {
    let api = Api::open();
    let cases = [
        (
            json!({"task": "record", "trigger": {"type": "cron", "hour": 25}}),
            "trigger.hour",
        ),
        (
            json!({"task": "record", "trigger": {"type": "cron", "hourz": 3}}),
            "trigger.hourz",
        ),
        (
            json!({"task": "record", "trigger": {"type": "date", "delay": "soon"}}),
            "trigger",
        ),
        // A date is not evaluated by the API (it needs no bounded search); the
        // scheduler's refusal still names the field.
        (
            json!({"task": "record", "trigger": {"type": "date", "run_date": "next tuesday"}}),
            "trigger.run_date",
        ),
        (
            json!({"task": "record", "trigger": {"type": "cron"}, "options": {"max_instances": 0}}),
            "options.max_instances",
        ),
        (
            json!({"task": "record", "trigger": {"type": "cron"}, "options": {"executor": "gpu"}}),
            "options.executor",
        ),
        (
            json!({"task": "record", "trigger": {"type": "cron"}, "options": {"retry": {"max_attempts": 0}}}),
            "options.retry.max_attempts",
        ),
        (
            json!({"task": "record", "trigger": {"type": "cron"}, "options": {"expect_success_within": "1s"}}),
            "options.expect_success_within",
        ),
        (json!({"task": "nope", "trigger": {"type": "cron"}}), "task"),
        (
            json!({"task": "record", "trigger": {"type": "date", "run_date": "2020-01-01T00:00:00Z"}, "paused": "yes"}),
            "paused",
        ),
        (
            json!({"task": "record", "trigger": {"type": "cron"}, "id": ""}),
            "id",
        ),
        (json!({"task": "record"}), "trigger"),
        (
            json!({"task": "record", "trigger": {"type": "cron"}, "retries": 3}),
            "retries",
        ),
    ];
    for (body, field) in cases {
        let reply = api.post("/api/v1/jobs", body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.json
        );
        assert_eq!(reply.code(), "invalid_input", "{body}");
        assert_eq!(reply.field(), field, "{body}: {}", reply.json);
    }
    api.post("/api/v1/jobs", hourly("j")).await;
    let patch = api
        .call(
            "PATCH",
            "/api/v1/jobs/j",
            Some(json!({"trigger": {"type": "interval", "minutes": "x"}})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::UNPROCESSABLE_ENTITY);
    let patch = api
        .call("PATCH", "/api/v1/jobs/j", Some(json!({"max_instances": 0})))
        .await;
    assert_eq!(patch.field(), "max_instances");
    let reschedule = api
        .post(
            "/api/v1/jobs/j/reschedule",
            json!({"trigger": {"type": "cron", "day_of_week": "funday"}}),
        )
        .await;
    assert_eq!(reschedule.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reschedule.field(), "trigger.day_of_week");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_jobs_and_routes_are_404_and_taken_ids_409() {
    let api = Api::open();
    for (method, uri) in [
        ("GET", "/api/v1/jobs/ghost"),
        ("DELETE", "/api/v1/jobs/ghost"),
        ("POST", "/api/v1/jobs/ghost/pause"),
        ("POST", "/api/v1/jobs/ghost/resume"),
        ("POST", "/api/v1/jobs/ghost/run"),
    ] {
        let reply = api.call(method, uri, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(reply.code(), "job_not_found", "{method} {uri}");
    }
    let patch = api
        .call("PATCH", "/api/v1/jobs/ghost", Some(json!({"name": "x"})))
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    for uri in ["/api/v1/nothing", "/api/v2/jobs", "/index.php"] {
        let reply = api.get(uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(reply.code(), "route_not_found", "{uri}");
    }
    let wrong_method = api.call("PUT", "/api/v1/jobs", None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.code(), "method_not_allowed");

    assert_eq!(
        api.post("/api/v1/jobs", hourly("taken")).await.status,
        StatusCode::CREATED
    );
    let again = api.post("/api/v1/jobs", hourly("taken")).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "job_exists");
    let mut replace = hourly("taken");
    replace["replace_existing"] = json!(true);
    replace["name"] = json!("replaced");
    let replaced = api.post("/api/v1/jobs", replace).await;
    assert_eq!(replaced.status, StatusCode::CREATED);
    assert_eq!(replaced.json["name"], "replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let api = Api::new(ApiSettings {
        body_limit: 1024,
        ..ApiSettings::default()
    });
    let mut big = hourly("big");
    big["args"] = json!({"padding": "x".repeat(2048)});
    let reply = api.post("/api/v1/jobs", big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "body_too_large");
    assert_eq!(
        api.post("/api/v1/jobs", hourly("small")).await.status,
        StatusCode::CREATED
    );
}

// ---------------------------------------------------------------------------------------
// Authentication and the task policy
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_and_read_tokens_only_read() {
    let api = Api::guarded();
    let missing = api.send(request("GET", "/api/v1/jobs", None, None)).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.code(), "unauthorized");
    assert!(missing.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let wrong = api
        .send(request("GET", "/api/v1/jobs", Some("write-secreT"), None))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let basic = Request::builder()
        .uri("/api/v1/jobs")
        .header(header::AUTHORIZATION, "Basic d3JpdGUtc2VjcmV0")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(basic).await.status, StatusCode::UNAUTHORIZED);

    let read = api
        .send(request("GET", "/api/v1/jobs", Some(READ_TOKEN), None))
        .await;
    assert_eq!(read.status, StatusCode::OK);
    let write = api
        .send(request(
            "POST",
            "/api/v1/jobs",
            Some(READ_TOKEN),
            Some(hourly("x")),
        ))
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert_eq!(write.code(), "read_only_token");
    let pause = api
        .send(request(
            "POST",
            "/api/v1/scheduler/pause",
            Some(READ_TOKEN),
            None,
        ))
        .await;
    assert_eq!(pause.status, StatusCode::FORBIDDEN);
    assert_eq!(api.scheduler.state(), SchedulerState::Running);
    let written = api.post("/api/v1/jobs", hourly("x")).await;
    assert_eq!(written.status, StatusCode::CREATED);

    // Health answers without a token, for load balancers and service managers.
    let health = api.send(request("GET", "/api/v1/health", None, None)).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json["status"], "ok");
    assert_eq!(health.json["scheduler"], "running");
    assert_eq!(health.json["jobs"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_rate_limit_requests_get_429_with_retry_after_per_client() {
    // A slow refill, so the test's own pace cannot top the bucket up.
    let api = Api::new(ApiSettings {
        tokens: vec![WRITE_TOKEN.to_owned()],
        read_tokens: vec![READ_TOKEN.to_owned()],
        rate_limit: Some(RateLimit {
            per_second: 0.1,
            burst: 3,
        }),
        ..ApiSettings::default()
    });
    for _ in 0..3 {
        assert_eq!(api.get("/api/v1/jobs").await.status, StatusCode::OK);
    }
    let limited = api.get("/api/v1/jobs").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    // Writes count against the same token, and are refused before they happen.
    let write = api.post("/api/v1/jobs", hourly("x")).await;
    assert_eq!(write.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(api.scheduler.get_job("x").await.unwrap().is_none());

    // Another token has a bucket of its own.
    let read = api
        .send(request("GET", "/api/v1/jobs", Some(READ_TOKEN), None))
        .await;
    assert_eq!(read.status, StatusCode::OK);
    // Requests without a valid token share their address's bucket (here: no address,
    // one shared bucket), so made-up tokens do not buy fresh buckets.
    for attempt in 0..3 {
        let token = format!("guess-{attempt}");
        let guess = api
            .send(request("GET", "/api/v1/jobs", Some(&token), None))
            .await;
        assert_eq!(guess.status, StatusCode::UNAUTHORIZED);
    }
    let guess = api
        .send(request("GET", "/api/v1/jobs", Some("guess-3"), None))
        .await;
    assert_eq!(guess.status, StatusCode::TOO_MANY_REQUESTS);
    let health = api.send(request("GET", "/api/v1/health", None, None)).await;
    assert_eq!(health.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_task_is_named_as_unknown_with_the_closest_one() {
    // Even under a policy that would refuse it: the mistake is the name, not the policy.
    let api = Api::new(ApiSettings {
        allowed_tasks: Some(vec!["record".to_owned()]),
        ..ApiSettings::default()
    });
    let typo = json!({"task": "ordres.cancel", "trigger": {"type": "date", "delay": "1h"}});
    let reply = api.post("/api/v1/jobs", typo).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.json
    );
    assert_eq!(reply.field(), "task");
    let message = reply.json["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("unknown task \"ordres.cancel\""),
        "{message}"
    );
    assert!(
        message.contains("did you mean \"orders.cancel\"?"),
        "{message}"
    );
    assert!(!message.contains("may not be used"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_outside_the_policy_are_403() {
    let api = Api::open();
    let command = json!({"task": "command", "args": {"argv": ["rm", "-rf", "/"]},
                         "trigger": {"type": "date", "delay": "1h"}});
    let reply = api.post("/api/v1/jobs", command).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), "task_not_allowed");
    assert_eq!(reply.field(), "task");

    let listed = Api::new(ApiSettings {
        allowed_tasks: Some(vec!["record".to_owned()]),
        ..ApiSettings::default()
    });
    let order = json!({"task": "orders.cancel", "trigger": {"type": "date", "delay": "1h"}});
    assert_eq!(
        listed.post("/api/v1/jobs", order).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        listed.post("/api/v1/jobs", hourly("ok")).await.status,
        StatusCode::CREATED
    );
    // A job of a task outside the policy (added by the library) keeps its args.
    let trigger: TriggerSpec = serde_json::from_value(json!({"type": "cron", "hour": 3})).unwrap();
    listed
        .scheduler
        .add_job(JobSpec::new("orders.cancel", trigger).with_id("library"))
        .await
        .unwrap();
    let patch = listed
        .call(
            "PATCH",
            "/api/v1/jobs/library",
            Some(json!({"args": {"order": 1}})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::FORBIDDEN);
    assert_eq!(patch.field(), "args");
}

// ---------------------------------------------------------------------------------------
// The scheduler, events, metrics, the document
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_pauses_and_resumes() {
    let api = Api::open();
    let paused = api.post("/api/v1/scheduler/pause", json!({})).await;
    assert_eq!(paused.status, StatusCode::OK);
    assert_eq!(paused.json["state"], "paused");
    assert_eq!(api.scheduler.state(), SchedulerState::Paused);
    let health = api.get("/api/v1/health").await;
    assert_eq!(health.json["scheduler"], "paused");
    let resumed = api.post("/api/v1/scheduler/resume", json!({})).await;
    assert_eq!(resumed.json["state"], "running");
}

/// Reads the event stream until an event named `name` arrives; returns its data.
async fn next_event_named(
    stream: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    name: &str,
) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no {name} event; the stream so far: {text}"))
            .unwrap_or_else(|| panic!("the stream ended before a {name} event: {text}"))
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        let marker = format!("event: {name}\ndata: ");
        if let Some(start) = text.find(&marker) {
            let data = &text[start + marker.len()..];
            if let Some(end) = data.find('\n') {
                return data[..end].to_owned();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_as_server_sent_events() {
    let api = Api::open();
    let response = api
        .router
        .clone()
        .oneshot(request("GET", "/api/v1/events", Some(WRITE_TOKEN), None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut stream = response.into_body().into_data_stream();
    api.post("/api/v1/jobs", hourly("watched")).await;
    let data = next_event_named(&mut stream, "job_added").await;
    let event: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(event["job_id"], "watched");
    assert_eq!(event["jobstore"], "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_event_client_is_told_how_much_it_missed() {
    let api = Api::open();
    let response = api
        .router
        .clone()
        .oneshot(request("GET", "/api/v1/events", Some(WRITE_TOKEN), None))
        .await
        .unwrap();
    let mut stream = response.into_body().into_data_stream();
    // More events than the scheduler buffers (4096), while the client reads none.
    for _ in 0..2100 {
        api.scheduler.pause();
        api.scheduler.resume();
    }
    let data = next_event_named(&mut stream, "lagged").await;
    let lagged: Value = serde_json::from_str(&data).unwrap();
    assert!(lagged["missed"].as_u64().unwrap() > 0, "{data}");
    // The stream goes on after it.
    next_event_named(&mut stream, "scheduler_resumed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_jobs_and_runs() {
    let api = Api::open();
    api.post("/api/v1/jobs", hourly("a")).await;
    api.post("/api/v1/jobs", hourly("b")).await;
    api.post("/api/v1/jobs/b/pause", json!({})).await;
    api.post("/api/v1/jobs/a/run", json!({})).await;
    wait_for_history(&api, "/api/v1/runs").await;
    let expected = [
        "kairos_jobs{state=\"pending\"} 1",
        "kairos_jobs{state=\"paused\"} 1",
        "kairos_scheduler_state{state=\"running\"} 1",
        "kairos_runs_total{outcome=\"success\"} 1",
        "kairos_runs_total{outcome=\"error\"} 0",
        "# TYPE kairos_runs_total counter",
        "# TYPE kairos_unwritten_runs gauge",
        "kairos_unwritten_runs 0",
        "kairos_metrics_events_lost_total 0",
        "kairos_records_backlogged_total 0",
    ];
    // Run counters follow the scheduler's events, a moment after the run's record.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = api
            .router
            .clone()
            .oneshot(request("GET", "/api/v1/metrics", Some(WRITE_TOKEN), None))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|line| !text.lines().any(|got| got == *line))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {missing:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_documents_every_route() {
    let api = Api::guarded();
    let document = api.get("/api/v1/openapi.json").await;
    assert_eq!(document.status, StatusCode::OK);
    assert!(document.json["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in [
        ("get", "/jobs"),
        ("post", "/jobs"),
        ("get", "/jobs/{id}"),
        ("patch", "/jobs/{id}"),
        ("delete", "/jobs/{id}"),
        ("post", "/jobs/{id}/pause"),
        ("post", "/jobs/{id}/resume"),
        ("post", "/jobs/{id}/run"),
        ("post", "/jobs/{id}/reschedule"),
        ("get", "/jobs/{id}/runs"),
        ("get", "/runs"),
        ("post", "/scheduler/pause"),
        ("post", "/scheduler/resume"),
        ("get", "/health"),
        ("get", "/events"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/jobs/{id}/fire_times"),
        ("post", "/jobs/{id}/backfill"),
        ("get", "/jobs/{id}/explain"),
        ("post", "/preview"),
        ("get", "/overview"),
        ("get", "/access"),
    ] {
        assert!(
            document.json["paths"][path][method].is_object(),
            "{method} {path} missing from openapi.json"
        );
    }
}

// ---------------------------------------------------------------------------------------
// What the web page asks for
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_a_filtered_page_at_a_time() {
    let api = Api::open();
    for id in [
        "job-a", "job-b", "job-c", "job-d", "job-e", "job-f", "other",
    ] {
        assert_eq!(
            api.post("/api/v1/jobs", hourly(id)).await.status,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        api.post("/api/v1/jobs/job-c/pause", json!({})).await.status,
        StatusCode::OK
    );

    // Without parameters: every job, as before (scripts and `kairos jobs` rely on it).
    let everything = api.get("/api/v1/jobs").await;
    assert_eq!(everything.json["jobs"].as_array().unwrap().len(), 7);
    assert!(everything.json.get("total").is_none());

    let page = api.get("/api/v1/jobs?limit=3").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.json);
    assert_eq!(page.json["total"], 7);
    let jobs = page.json["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[0]["jobstore"], "default");
    assert_eq!(jobs[0]["trigger_words"], "cron minute=30 timezone=UTC");
    assert_eq!(page.json["facets"]["jobstores"], json!(["default"]));
    assert!(page.json["facets"]["tasks"]
        .as_array()
        .unwrap()
        .contains(&json!("record")));
    let last = api.get("/api/v1/jobs?limit=3&offset=6").await;
    assert_eq!(last.json["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(last.json["jobs"][0]["id"], "job-c", "paused jobs come last");

    let paused = api.get("/api/v1/jobs?state=paused").await;
    assert_eq!(paused.json["total"], 1);
    let scheduled = api.get("/api/v1/jobs?state=scheduled").await;
    assert_eq!(scheduled.json["total"], 6);
    let found = api.get("/api/v1/jobs?q=JOB-E").await;
    assert_eq!(found.json["total"], 1);
    assert_eq!(found.json["jobs"][0]["id"], "job-e");
    let by_task = api.get("/api/v1/jobs?task=orders.cancel").await;
    assert_eq!(by_task.json["total"], 0);
    let other_store = api.get("/api/v1/jobs?jobstore=elsewhere").await;
    assert_eq!(other_store.json["total"], 0);

    // The latest run, for the table's "last run" column.
    let before = api.get("/api/v1/jobs?q=job-a&last_run=true").await;
    assert_eq!(before.json["jobs"][0]["last_run"], Value::Null);
    assert_eq!(
        api.post("/api/v1/jobs/job-a/run", json!({})).await.status,
        StatusCode::ACCEPTED
    );
    wait_for_history(&api, "/api/v1/jobs/job-a/runs").await;
    let after = api.get("/api/v1/jobs?q=job-a&last_run=true").await;
    assert_eq!(after.json["jobs"][0]["last_run"]["outcome"], "success");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("state=sleeping", "state"),
    ] {
        let refused = api.get(&format!("/api/v1/jobs?{query}")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            refused.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{query}: {}",
            refused.json
        );
    }
    let unknown = api.get("/api/v1/jobs?colour=red").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_and_fire_times_come_from_the_trigger_code() {
    let api = Api::open();
    let from = "2030-01-01T00:00:00Z";
    let by_words = api
        .post(
            "/api/v1/preview",
            json!({"words": "cron hour=3 minute=30", "count": 3, "from": from}),
        )
        .await;
    assert_eq!(by_words.status, StatusCode::OK, "{}", by_words.json);
    assert_eq!(
        by_words.json["fire_times"],
        json!([
            "2030-01-01T03:30:00+00:00",
            "2030-01-02T03:30:00+00:00",
            "2030-01-03T03:30:00+00:00"
        ])
    );
    assert_eq!(
        by_words.json["trigger"],
        json!({"type": "cron", "hour": "3", "minute": "30"})
    );
    assert_eq!(by_words.json["trigger_words"], "cron hour=3 minute=30");
    let by_json = api
        .post(
            "/api/v1/preview",
            json!({"trigger": by_words.json["trigger"], "count": 3, "from": from}),
        )
        .await;
    assert_eq!(by_json.json["fire_times"], by_words.json["fire_times"]);
    // The default is ten times from the scheduler's clock (t0).
    let crontab = api
        .post(
            "/api/v1/preview",
            json!({"words": "crontab \"0 12 * * 1-5\""}),
        )
        .await;
    let times = crontab.json["fire_times"].as_array().unwrap();
    assert_eq!(times.len(), 10);
    assert_eq!(times[0], "2030-01-01T12:00:00+00:00", "{}", crontab.json);

    let out_of_range = api
        .post("/api/v1/preview", json!({"words": "cron hour=25"}))
        .await;
    assert_eq!(out_of_range.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(out_of_range.field(), "words.hour", "{}", out_of_range.json);
    let both = api
        .post(
            "/api/v1/preview",
            json!({"words": "cron hour=3", "trigger": by_words.json["trigger"]}),
        )
        .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unbalanced = api
        .post("/api/v1/preview", json!({"words": "crontab \"0 3 * *"}))
        .await;
    assert_eq!(
        unbalanced.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unbalanced.json
    );
    let too_many = api
        .post(
            "/api/v1/preview",
            json!({"words": "cron hour=3", "count": 101}),
        )
        .await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        api.post("/api/v1/jobs", hourly("hourly")).await.status,
        StatusCode::CREATED
    );
    let fire_times = api.get("/api/v1/jobs/hourly/fire_times?count=3").await;
    assert_eq!(
        fire_times.json["fire_times"],
        json!([
            "2030-01-01T00:30:00+00:00",
            "2030-01-01T01:30:00+00:00",
            "2030-01-01T02:30:00+00:00"
        ])
    );
    api.post("/api/v1/jobs/hourly/pause", json!({})).await;
    let paused = api.get("/api/v1/jobs/hourly/fire_times").await;
    assert_eq!(paused.json["fire_times"], json!([]));
    let missing = api.get("/api/v1/jobs/nope/fire_times").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_says_what_the_presented_token_may_do() {
    let guarded = Api::guarded();
    let write = guarded
        .send(request("GET", "/api/v1/access", Some(WRITE_TOKEN), None))
        .await;
    assert_eq!(
        write.json,
        json!({"access": "read_write", "token_required": true})
    );
    let read = guarded
        .send(request("GET", "/api/v1/access", Some(READ_TOKEN), None))
        .await;
    assert_eq!(
        read.json,
        json!({"access": "read_only", "token_required": true})
    );
    let none = guarded
        .send(request("GET", "/api/v1/access", None, None))
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let open = Api::open()
        .send(request("GET", "/api/v1/access", None, None))
        .await;
    assert_eq!(
        open.json,
        json!({"access": "read_write", "token_required": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_coming_fires_and_recent_runs() {
    let api = Api::open();
    assert_eq!(
        api.post("/api/v1/jobs", hourly("hourly")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.post("/api/v1/jobs/hourly/run", json!({})).await.status,
        StatusCode::ACCEPTED
    );
    wait_for_history(&api, "/api/v1/jobs/hourly/runs").await;
    let overview = api.get("/api/v1/overview").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.json);
    let hourly: Vec<u64> = overview.json["upcoming"]["hourly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|count| count.as_u64().unwrap())
        .collect();
    assert_eq!(hourly, vec![1; 24], "one fire at half past every hour");
    assert_eq!(overview.json["upcoming"]["truncated"], false);
    let minutes = overview.json["runs"]["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let successes: u64 = minutes
        .iter()
        .map(|minute| minute["success"].as_u64().unwrap())
        .sum();
    assert_eq!(successes, 1);
    assert_eq!(overview.json["jobs"], 1);
    // The history's size: the one run recorded.
    assert_eq!(overview.json["history_runs"], 1);
    assert_eq!(overview.json["scheduler_state"], "running");
    assert_eq!(overview.json["problems"], json!([]));
}

/// The overview counts jobs by state from the stores' counts, as the web page's header
/// shows failed jobs: a failed one-off job counts as `failed`, as `?state=failed`
/// lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_jobs_by_state() {
    let api = Api::open();
    assert_eq!(
        api.post("/api/v1/jobs", hourly("hourly")).await.status,
        StatusCode::CREATED
    );
    let paused = json!({"id": "held", "task": "record", "paused": true,
                        "trigger": {"type": "cron", "minute": 30}});
    assert_eq!(
        api.post("/api/v1/jobs", paused).await.status,
        StatusCode::CREATED
    );
    // Due at once on the scheduler's clock, with no retry: one failed attempt and the
    // job is kept as failed (docs/lifecycle.md, "Failed runs").
    let failing = json!({"id": "broken-once", "task": "fail",
                         "trigger": {"type": "date", "run_date": "2030-01-01T00:00:00Z"}});
    assert_eq!(
        api.post("/api/v1/jobs", failing).await.status,
        StatusCode::CREATED
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let job = api.get("/api/v1/jobs/broken-once").await;
        if job.json["state"] == "failed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", job.json);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let overview = api.get("/api/v1/overview").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.json);
    assert_eq!(
        overview.json["job_states"],
        json!({"scheduled": 1, "paused": 1, "failed": 1})
    );
    assert_eq!(overview.json["jobs"], 3);
    let listed = api.get("/api/v1/jobs?state=failed&limit=1").await;
    assert_eq!(listed.json["total"], 1, "{}", listed.json);
}

/// A job with `expect_success_within` shows where it stands against its dead-man's
/// switch (docs/alerts.md): not overdue inside its window, overdue once the window
/// passes without a success, and back in time after a successful run — on its own
/// page and in a page of the list. A job without the option shows nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_job_shows_overdue_once_its_window_passes_without_a_success() {
    let api = Api::open();
    let watched = json!({"id": "watched", "task": "record",
                         "trigger": {"type": "cron", "minute": 30},
                         "options": {"expect_success_within": "1m"}});
    assert_eq!(
        api.post("/api/v1/jobs", watched).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.post("/api/v1/jobs", hourly("unwatched")).await.status,
        StatusCode::CREATED
    );
    let job = api.get("/api/v1/jobs/watched").await;
    assert_eq!(
        job.json["success_watch"],
        json!({"last_success": null, "deadline": "2030-01-01T00:01:00Z", "overdue": false})
    );
    assert!(api
        .get("/api/v1/jobs/unwatched")
        .await
        .json
        .get("success_watch")
        .is_none());

    api.clock.advance(Duration::from_secs(90));
    let job = api.get("/api/v1/jobs/watched").await;
    assert_eq!(job.json["success_watch"]["overdue"], true, "{}", job.json);
    let page = api.get("/api/v1/jobs?limit=10").await;
    let shown: Vec<(Value, Value)> = page.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| (job["id"].clone(), job["success_watch"]["overdue"].clone()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (json!("unwatched"), Value::Null),
            (json!("watched"), json!(true))
        ]
    );

    assert_eq!(
        api.post("/api/v1/jobs/watched/run", json!({})).await.status,
        StatusCode::ACCEPTED
    );
    wait_for_history(&api, "/api/v1/jobs/watched/runs").await;
    let job = api.get("/api/v1/jobs/watched").await;
    assert_eq!(
        job.json["success_watch"],
        json!({"last_success": "2030-01-01T00:01:30Z", "deadline": "2030-01-01T00:02:30Z",
               "overdue": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_is_served_under_a_strict_policy_and_can_be_turned_off() {
    // The page holds no data, so it is served without a token; what it shows comes
    // from the API with the token the operator types in.
    let api = Api::guarded();
    let response = api
        .router
        .clone()
        .oneshot(request("GET", "/", None, None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"));
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("<title>kairos</title>"));
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let asset = api
            .router
            .clone()
            .oneshot(request("GET", path, None, None))
            .await
            .unwrap();
        assert_eq!(asset.status(), StatusCode::OK, "{path}");
        assert!(asset.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    let missing = api
        .send(request("GET", "/ui/secrets.txt", None, None))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");

    let off = Api::new(ApiSettings {
        ui: false,
        ..ApiSettings::default()
    });
    let gone = off.send(request("GET", "/", None, None)).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        off.send(request("GET", "/ui/app.js", None, None))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

// ---------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------

/// Sends one HTTP/1.1 request over `stream` and reads the response head.
async fn http_get(stream: &mut tokio::net::TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_shuts_down_gracefully_with_an_event_stream_open() {
    let api = Api::open();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, api.router.clone(), async move {
        let _ = stopped.await;
    }));

    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    let health = http_get(&mut plain, "/api/v1/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let mut watcher = tokio::net::TcpStream::connect(address).await.unwrap();
    let events = http_get(&mut watcher, "/api/v1/events").await;
    assert!(events.contains("text/event-stream"), "{events}");

    let _ = stop.send(());
    let served = tokio::time::timeout(PATIENCE, server)
        .await
        .expect("serve to return with an event stream open")
        .unwrap();
    assert!(served.is_ok());
    // The stream was ended, not left hanging: reading reaches the end.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, watcher.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the event stream was not closed");
}

/// `GET /cluster` lists the registered nodes, this one marked, and tells a
/// node whose heartbeat stopped from a live one.
#[tokio::test]
async fn the_cluster_lists_this_node_and_the_others() {
    use kairos::scheduler::Membership;
    use kairos::store::prelude::*;
    use kairos::store::NodeInfo;
    use std::sync::Arc;

    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    store
        .register_node(NodeInfo {
            id: "gone".to_owned(),
            host: "elsewhere".to_owned(),
            pid: 7,
            version: "0.1.0".to_owned(),
            started: t0() - chrono::TimeDelta::hours(1),
            last_heartbeat: t0() - chrono::TimeDelta::minutes(2),
            stats: None,
        })
        .await
        .unwrap();
    let scheduler = Scheduler::builder()
        .id("here")
        .clock(ManualClock::new(t0()))
        .store_shared("default", Arc::clone(&store))
        .membership(Membership {
            heartbeat: Duration::from_secs(10),
            node_timeout: Duration::from_secs(60),
            host: "this-host".to_owned(),
        })
        .build();
    scheduler.start();
    // The membership task registers the node as it starts.
    for _ in 0..200 {
        if store.list_nodes().await.unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let router = app(scheduler.clone(), ApiSettings::default());
    let response = router
        .oneshot(request("GET", "/api/v1/cluster", None, None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let nodes = body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{body}");
    assert_eq!(nodes[0]["id"], "gone");
    assert_eq!(nodes[0]["alive"], false);
    assert_eq!(nodes[0]["this_node"], false);
    assert_eq!(nodes[1]["id"], "here");
    assert_eq!(nodes[1]["alive"], true);
    assert_eq!(nodes[1]["this_node"], true);
    assert_eq!(nodes[1]["host"], "this-host");
    assert_eq!(nodes[1]["pid"], std::process::id());
    assert_eq!(nodes[1]["jobstores"], json!(["default"]));
    // This node's load, live: the default pool of 10 workers, idle.
    assert_eq!(nodes[1]["stats"]["capacity"], 10, "{body}");
    assert_eq!(nodes[1]["stats"]["running"], 0);
    assert_eq!(nodes[1]["stats"]["running_jobs"], json!([]));
    assert!(
        nodes[0].get("stats").is_none(),
        "the dead node never reported: {body}"
    );
    scheduler.shutdown(None).await;
    // A clean shutdown deregisters.
    let left: Vec<String> = store
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|node| node.id)
        .collect();
    assert_eq!(left, ["gone"]);
}

/// `/health` and the overview name the config generation the store holds and this
/// node's config, so "why didn't my edit apply?" has an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_the_overview_name_the_config_generation() {
    let api = Api::open();
    let health = api.get("/api/v1/health").await;
    assert_eq!(
        health.json["config"]["node_state"], "none",
        "{}",
        health.json
    );
    assert_eq!(health.json["config"]["store_generation"], Value::Null);

    let trigger: TriggerSpec =
        serde_json::from_value(json!({"type": "interval", "hours": 1})).unwrap();
    let mut spec = JobSpec::new("record", trigger).with_id("from-config");
    spec.from_config = true;
    let report = kairos::daemon::sync::sync_config_jobs(&api.scheduler, vec![spec], false)
        .await
        .unwrap();
    let health = api.get("/api/v1/health").await;
    let config = &health.json["config"];
    assert_eq!(config["node_state"], "current", "{}", health.json);
    assert_eq!(config["store_generation"], 1);
    assert_eq!(config["store_hash"], json!(report.hash));
    assert_eq!(config["node_hash"], json!(report.hash));
    assert_eq!(config["node_generation"], 1);

    // Another node applies other content: this node's config is superseded now.
    api.scheduler
        .claim_config_generation("00000000000000ff", false)
        .await
        .unwrap();
    let health = api.get("/api/v1/health").await;
    assert_eq!(health.json["config"]["node_state"], "superseded");
    assert_eq!(health.json["config"]["current"], false);
    let overview = api.get("/api/v1/overview").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.json);
    assert_eq!(overview.json["config"]["store"]["generation"], 2);
    let message = overview.json["config"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("generation 2") && message.contains("newer files"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------
// ETags and cursors
// ---------------------------------------------------------------------------------------

fn if_match(method: &str, uri: &str, etag: &str, body: Option<Value>) -> Request<Body> {
    let mut request = request(method, uri, None, body);
    request
        .headers_mut()
        .insert(header::IF_MATCH, etag.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_with_a_stale_etag_is_412_and_with_the_fresh_one_200() {
    let api = Api::open();
    assert_eq!(
        api.post("/api/v1/jobs", hourly("tagged")).await.status,
        StatusCode::CREATED
    );
    let read = api.get("/api/v1/jobs/tagged").await;
    let first = read.headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(first.starts_with('"') && first.ends_with('"'), "{first}");
    let other_job = api.post("/api/v1/jobs", hourly("tagged-2")).await;
    let created = other_job.headers[header::ETAG].to_str().unwrap();
    assert_eq!(
        api.get("/api/v1/jobs/tagged-2").await.headers[header::ETAG],
        created,
        "the answer to an add carries the job's ETag"
    );

    // Someone else changes the job: the first ETag is now stale.
    let other = api
        .call(
            "PATCH",
            "/api/v1/jobs/tagged",
            Some(json!({"name": "theirs"})),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    let second = other.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_ne!(first, second);

    let stale = api
        .send(if_match(
            "PATCH",
            "/api/v1/jobs/tagged",
            &first,
            Some(json!({"name": "mine"})),
        ))
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.json
    );
    assert_eq!(stale.code(), "precondition_failed");
    assert!(stale.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&second));
    assert_eq!(api.get("/api/v1/jobs/tagged").await.json["name"], "theirs");
    for (method, uri, body) in [
        ("DELETE", "/api/v1/jobs/tagged", None),
        (
            "POST",
            "/api/v1/jobs/tagged/reschedule",
            Some(json!({"trigger": {"type": "cron", "minute": 45}})),
        ),
    ] {
        let refused = api.send(if_match(method, uri, &first, body)).await;
        assert_eq!(
            refused.status,
            StatusCode::PRECONDITION_FAILED,
            "{method} {uri}"
        );
    }
    let weak = api
        .send(if_match(
            "PATCH",
            "/api/v1/jobs/tagged",
            &format!("W/{second}"),
            Some(json!({"name": "weak"})),
        ))
        .await;
    assert_eq!(
        weak.status,
        StatusCode::PRECONDITION_FAILED,
        "weak tags never match"
    );

    let fresh = api
        .send(if_match(
            "PATCH",
            "/api/v1/jobs/tagged",
            &second,
            Some(json!({"name": "mine"})),
        ))
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.json);
    assert_eq!(fresh.json["name"], "mine");
    let third = fresh.headers[header::ETAG].to_str().unwrap().to_owned();
    let listed = format!("\"0\", {third}");
    let rescheduled = api
        .send(if_match(
            "POST",
            "/api/v1/jobs/tagged/reschedule",
            &listed,
            Some(json!({"trigger": {"type": "cron", "minute": 45}})),
        ))
        .await;
    assert_eq!(rescheduled.status, StatusCode::OK, "{}", rescheduled.json);
    let fourth = rescheduled.headers[header::ETAG]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.get("/api/v1/jobs/tagged").await.headers[header::ETAG],
        fourth.as_str()
    );
    let removed = api
        .send(if_match("DELETE", "/api/v1/jobs/tagged", "*", None))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_page_by_cursor_and_offset_alike() {
    let api = Api::open();
    for index in 0..7 {
        let created = api
            .post("/api/v1/jobs", hourly(&format!("job-{index}")))
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut uri = "/api/v1/jobs?limit=3".to_owned();
    loop {
        let page = api.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.json);
        for job in page.json["jobs"].as_array().unwrap() {
            seen.push(job["id"].as_str().unwrap().to_owned());
        }
        match page.json["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/jobs?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let by_offset: Vec<String> = api.get("/api/v1/jobs?limit=7&offset=0").await.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, by_offset);
    assert_eq!(seen.len(), 7);

    let first = api.get("/api/v1/jobs?limit=3").await;
    let cursor = first.json["next_cursor"].as_str().unwrap();
    for wrong in [
        format!("/api/v1/jobs?limit=3&cursor={cursor}&task=record"),
        format!("/api/v1/jobs?cursor={cursor}&offset=3"),
        format!("/api/v1/runs?cursor={cursor}"),
        "/api/v1/jobs?cursor=not-a-cursor".to_owned(),
    ] {
        let refused = api.get(&wrong).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{wrong}: {}",
            refused.json
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_past_the_first_thousand_are_reached_by_cursor() {
    use kairos::history::{RunOutcome, RunRecord};
    use kairos::store::prelude::*;

    let store = MemoryStore::with_history_limit(5_000);
    for index in 0..2_500_i64 {
        let at = t0() + chrono::TimeDelta::seconds(index);
        store
            .record_run(RunRecord {
                run_id: format!("run-{index:05}"),
                job_id: if index % 2 == 0 { "even" } else { "odd" }.to_owned(),
                scheduled_time: at,
                started_at: Some(at),
                finished_at: at,
                outcome: RunOutcome::Success,
                error: None,
                output: None,
                attempt: 1,
            })
            .await
            .unwrap();
    }
    let scheduler = Scheduler::builder()
        .clock(ManualClock::new(t0()))
        .store("default", store)
        .executor("default", ThreadPoolExecutor::new(1))
        .build();
    let router = app(scheduler, ApiSettings::default());
    let get = |uri: String| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(request("GET", &uri, None, None))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    let mut ids = Vec::new();
    let mut uri = "/api/v1/runs?limit=1000".to_owned();
    loop {
        let page = get(uri.clone()).await;
        ids.extend(
            page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|run| run["run_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/runs?limit=1000&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 2_500);
    assert_eq!(ids.first().unwrap(), "run-02499", "newest first");
    assert_eq!(ids.last().unwrap(), "run-00000");
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 2_500, "no run twice");

    // One job's runs, and offset paging as before.
    let odd = get("/api/v1/jobs/odd/runs?limit=1000&offset=1000".to_owned()).await;
    assert_eq!(odd["runs"].as_array().unwrap().len(), 250);
    assert_eq!(odd["runs"][0]["run_id"], "run-00499");
    assert!(odd.get("next_cursor").is_none());
}

// ---------------------------------------------------------------------------------------
// Timeouts (the access log has its own binary: tests/api_access_log.rs)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_says_what_timed_out() {
    let (store, faults) = common::FaultyStore::new();
    let scheduler = Scheduler::builder()
        .clock(ManualClock::new(t0()))
        .store("default", store)
        .executor("default", ThreadPoolExecutor::new(1))
        .build();
    let router = app(
        scheduler,
        ApiSettings {
            request_timeout: Duration::from_millis(200),
            ..ApiSettings::default()
        },
    );
    faults
        .hang_reads
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let response = router
        .oneshot(request("GET", "/api/v1/jobs/stuck", None, None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "timeout");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("did not answer within 200ms while reading the job"),
        "{message}"
    );
    assert!(message.contains(&id), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_with_one_etag_write_once() {
    let api = Api::open();
    assert_eq!(
        api.post("/api/v1/jobs", hourly("contended")).await.status,
        StatusCode::CREATED
    );
    let etag = api.get("/api/v1/jobs/contended").await.headers[header::ETAG]
        .to_str()
        .unwrap()
        .to_owned();
    let patches = (0..8).map(|index| {
        let router = api.router.clone();
        let request = if_match(
            "PATCH",
            "/api/v1/jobs/contended",
            &etag,
            Some(json!({"name": format!("client-{index}")})),
        );
        tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
    });
    let mut statuses = Vec::new();
    for patch in patches.collect::<Vec<_>>() {
        statuses.push(patch.await.unwrap());
    }
    let ok = statuses
        .iter()
        .filter(|status| **status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|status| *status == StatusCode::OK || *status == StatusCode::PRECONDITION_FAILED));
}

/// `overlap` through the API: set under `options` on `POST /jobs`, shown in the job,
/// changed by `PATCH`; a bad value is 422 naming the field and the values it takes;
/// run now takes `{"force": true}` (and nothing, or `null`, as before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_round_trips_and_a_bad_one_names_the_field() {
    let api = Api::open();
    let added = api
        .post(
            "/api/v1/jobs",
            json!({"id": "q", "task": "record", "trigger": {"type": "cron", "hour": 3},
                   "options": {"max_instances": 1, "overlap": "queue"}}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    assert_eq!(added.json["options"]["overlap"], "queue");
    let default = api
        .post(
            "/api/v1/jobs",
            json!({"id": "d", "task": "record", "trigger": {"type": "cron", "hour": 3}}),
        )
        .await;
    assert_eq!(default.json["options"]["overlap"], "skip");
    let patched = api
        .call(
            "PATCH",
            "/api/v1/jobs/q",
            Some(json!({"overlap": "replace"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    assert_eq!(
        api.get("/api/v1/jobs/q").await.json["options"]["overlap"],
        "replace"
    );

    let bad = api
        .post(
            "/api/v1/jobs",
            json!({"task": "record", "trigger": {"type": "cron"}, "options": {"overlap": "sometimes"}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.json);
    assert_eq!(bad.field(), "options.overlap", "{}", bad.json);
    let message = bad.json["error"]["message"].as_str().unwrap_or("");
    for name in ["skip", "queue", "replace"] {
        assert!(message.contains(name), "{message}");
    }
    let bad = api
        .call("PATCH", "/api/v1/jobs/q", Some(json!({"overlap": 1})))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.json);
    assert_eq!(bad.field(), "overlap", "{}", bad.json);

    for body in [json!({}), json!({"force": true})] {
        let run = api.post("/api/v1/jobs/q/run", body.clone()).await;
        assert_eq!(run.status, StatusCode::ACCEPTED, "{body}: {}", run.json);
    }
    let run = api.call("POST", "/api/v1/jobs/q/run", None).await;
    assert_eq!(run.status, StatusCode::ACCEPTED, "{}", run.json);
    let bad = api
        .post("/api/v1/jobs/q/run", json!({"force": "yes"}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.json);
    assert_eq!(bad.field(), "force", "{}", bad.json);
    api.scheduler.shutdown(None).await;
}

/// `?state=failed` lists the one-off jobs whose attempts were used up and
/// `?state=broken` the jobs whose trigger could not be evaluated (docs/lifecycle.md):
/// both are set aside (no next run time, not paused), yet each lists only its own, with
/// its own total, a page at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_and_broken_filters_list_only_their_own() {
    let store: std::sync::Arc<dyn kairos::store::JobStore> =
        std::sync::Arc::new(MemoryStore::new());
    // Not started: the jobs stay as written.
    let scheduler = Scheduler::builder()
        .clock(ManualClock::new(t0()))
        .tasks(common::recording_tasks().0)
        .store_shared("default", std::sync::Arc::clone(&store))
        .build();
    let router = app(scheduler, ApiSettings::default());
    let set_aside = |id: &str| {
        let mut job = common::job(id, None);
        job.paused = false;
        job
    };
    store
        .add_job(common::job(
            "scheduled",
            Some(t0() + chrono::TimeDelta::seconds(10)),
        ))
        .await
        .unwrap();
    store.add_job(common::job("paused", None)).await.unwrap();
    for id in ["failed-1", "failed-2"] {
        let mut failed = set_aside(id);
        failed.retry.failed = Some(kairos::job::JobFailure {
            scheduled_time: t0(),
            attempts: 3,
            at: t0(),
            error: Some("the task failed on purpose".to_owned()),
        });
        store.add_job(failed).await.unwrap();
    }
    let mut broken = set_aside("broken");
    broken.retry.broken = Some("its trigger took too long to evaluate".to_owned());
    store.add_job(broken).await.unwrap();
    let list = |uri: &'static str| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(request("GET", uri, None, None))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let json: Value = serde_json::from_slice(&bytes).unwrap();
            let ids: Vec<String> = json["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|job| {
                    assert_eq!(json!(job["state"]), json!(uri.rsplit('=').next()), "{json}");
                    job["id"].as_str().unwrap().to_owned()
                })
                .collect();
            (ids, json["total"].clone())
        }
    };
    let (failed, total) = list("/api/v1/jobs?state=failed").await;
    assert_eq!(failed, ["failed-1", "failed-2"]);
    assert_eq!(total, 2);
    let (broken, total) = list("/api/v1/jobs?state=broken").await;
    assert_eq!(broken, ["broken"]);
    assert_eq!(total, 1);
    let (scheduled, _) = list("/api/v1/jobs?state=scheduled").await;
    assert_eq!(scheduled, ["scheduled"]);
    let (paused, _) = list("/api/v1/jobs?state=paused").await;
    assert_eq!(paused, ["paused"]);
    // A page of one failed job, and the next, with the filter's own total.
    let (first, total) = list("/api/v1/jobs?limit=1&state=failed").await;
    assert_eq!((first, total), (vec!["failed-1".to_owned()], json!(2)));
    let (second, _) = list("/api/v1/jobs?limit=1&offset=1&state=failed").await;
    assert_eq!(second, ["failed-2"]);
}

/// An `expect_success_within` so long that its deadline could not be written as a date
/// (past the year 9999) is refused, naming the field and the longest allowed, and
/// nothing is stored; 100 years is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expect_success_within_past_the_last_writable_date_is_refused() {
    let api = Api::open();
    let job = |id: &str, within: &str| {
        json!({"id": id, "task": "record",
               "trigger": {"type": "cron", "minute": 30},
               "options": {"expect_success_within": within}})
    };
    let refused = api.post("/api/v1/jobs", job("forever", "9000years")).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.json
    );
    let message = refused.json.to_string();
    assert!(
        message.contains("expect_success_within") && message.contains("100years"),
        "{message}"
    );
    assert_eq!(
        api.get("/api/v1/jobs/forever").await.status,
        StatusCode::NOT_FOUND
    );
    let taken = api.post("/api/v1/jobs", job("century", "100years")).await;
    assert_eq!(taken.status, StatusCode::CREATED, "{}", taken.json);
}
