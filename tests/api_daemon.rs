//! The HTTP API of the real `kairos run` binary, over a socket: every route, every error
//! status, authentication (missing, wrong and read-only tokens), `allowed_tasks`,
//! idempotent retries, the rate limit, and the order-cancel round trip on the real
//! clock.
//!
//! tests/api.rs covers the same ground in process, on a manual clock; this file checks
//! that the daemon wires it up as configured: its `[api]` settings, its SQLite store,
//! its `command` task writing real files.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::daemon::{lines, sqlite_config, temp_dir, wait_until, write, Daemon};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const WRITE_TOKEN: &str = "write-secret";
const READ_TOKEN: &str = "read-secret";

/// A daemon with an SQLite store, a token and a read token, `command` allowed, and the
/// API on a free loopback port; `extra_api` is appended to its `[api]` table.
fn start_daemon(name: &str, extra_api: &str) -> Daemon {
    let dir = temp_dir(name);
    write(
        &dir,
        "config.toml",
        &sqlite_config(&format!(
            r#"token = "{WRITE_TOKEN}"
read_tokens = ["{READ_TOKEN}"]
allowed_tasks = ["command", "orders.cancel"]
{extra_api}"#
        )),
    );
    // One config-owned job, so that reload has something to report and 409 something
    // to refuse.
    write(
        &dir,
        "jobs/nightly.toml",
        r#"[[jobs]]
id = "nightly"
task = "command"
args = { argv = ["true"] }
trigger = { type = "cron", hour = 3 }
"#,
    );
    Daemon::start(&dir)
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

    /// Every error answers with the common body.
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.json);
        assert_eq!(self.code(), code, "{}", self.json);
        assert!(self.json["error"]["message"].is_string(), "{}", self.json);
    }
}

/// A client of one daemon's API.
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(daemon: &Daemon) -> Api {
        // reqwest is built without a default TLS provider (plain HTTP here anyway).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            client: reqwest::Client::new(),
            base: daemon.api_url(),
        }
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Reply {
        let response = builder.send().await.expect("the daemon answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    /// `method path` with the write token and, if given, a JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(WRITE_TOKEN, method, path, body).await
    }

    async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        let builder = self.request(method.clone(), path, Some(token));
        let builder = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(body.to_string()),
            // The API refuses a POST without a JSON content type, body or not.
            None if method == Method::POST => builder.header("content-type", "application/json"),
            None => builder,
        };
        self.send(builder).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A raw body with a content type, as a broken client would send it.
    async fn raw(&self, method: Method, path: &str, content_type: &str, body: String) -> Reply {
        let builder = self
            .request(method, path, Some(WRITE_TOKEN))
            .header("content-type", content_type)
            .body(body);
        self.send(builder).await
    }
}

/// A job that runs `true` every day at 03:00: never due during a test.
fn daily(id: &str) -> Value {
    json!({"id": id, "task": "command", "args": {"argv": ["true"]},
           "trigger": {"type": "cron", "hour": 3}})
}

/// Waits until `path`'s run history is not empty.
async fn wait_for_runs(api: &Api, path: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = api.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
        if let Some(runs) = reply.json["runs"]
            .as_array()
            .filter(|runs| !runs.is_empty())
        {
            return runs.clone();
        }
        assert!(Instant::now() < deadline, "no run recorded at {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_over_http() {
    let daemon = start_daemon("api-routes", "");
    let api = Api::new(&daemon);

    let health = api.send(api.request(Method::GET, "/health", None)).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.json);
    assert_eq!(health.json["status"], "ok");
    assert_eq!(health.json["jobs"], 1);

    // The event stream, opened first so it sees the job being added.
    let mut events = api
        .request(Method::GET, "/events", Some(READ_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["content-type"], "text/event-stream");

    let added = api.post("/jobs", daily("report")).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    assert_eq!(added.headers["location"], "/api/v1/jobs/report");
    assert_eq!(added.json["trigger_text"], "cron[hour='3']");
    assert_eq!(added.json["from_config"], false);
    let mut stream = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stream.contains("event: job_added") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, events.chunk())
            .await
            .unwrap_or_else(|_| panic!("no job_added event; the stream so far: {stream}"))
            .unwrap()
            .expect("the stream goes on");
        stream.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(stream.contains("\"job_id\":\"report\""), "{stream}");
    drop(events);

    let listed = api.get("/jobs").await;
    assert_eq!(listed.status, StatusCode::OK);
    let ids: Vec<&str> = listed.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|job| job["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids.contains(&"report") && ids.contains(&"nightly"),
        "{ids:?}"
    );
    let shown = api.get("/jobs/report").await;
    assert_eq!(shown.json, added.json);

    let changed = api
        .call(
            Method::PATCH,
            "/jobs/report",
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json);
    assert_eq!(changed.json["name"], "renamed");
    let paused = api.post("/jobs/report/pause", json!({})).await;
    assert_eq!(paused.json["paused"], true);
    assert_eq!(paused.json["next_run_time"], Value::Null);
    let resumed = api.post("/jobs/report/resume", json!({})).await;
    assert_eq!(resumed.json["paused"], false);
    assert!(resumed.json["next_run_time"].is_string());
    let rescheduled = api
        .post(
            "/jobs/report/reschedule",
            json!({"trigger": {"type": "interval", "hours": 6}}),
        )
        .await;
    assert_eq!(rescheduled.status, StatusCode::OK, "{}", rescheduled.json);
    assert_eq!(rescheduled.json["trigger_text"], "interval[6h]");

    let run = api.post("/jobs/report/run", json!({})).await;
    assert_eq!(run.status, StatusCode::ACCEPTED, "{}", run.json);
    let run_id = run.json["run_id"].as_str().unwrap().to_owned();
    let runs = wait_for_runs(&api, "/jobs/report/runs?limit=5").await;
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["outcome"], "success");
    let all = api.get("/runs?job_id=report&limit=5").await;
    assert_eq!(all.json["runs"][0]["run_id"], run_id.as_str());

    let metrics = api
        .send(api.request(Method::GET, "/metrics", Some(READ_TOKEN)))
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.json.as_str().unwrap_or_default();
    assert!(text.contains("kairos_jobs{state=\"pending\"} 2"), "{text}");
    assert!(text.contains("kairos_runs_total"), "{text}");

    let openapi = api.get("/openapi.json").await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(openapi.json["openapi"].as_str().unwrap().starts_with("3."));
    assert!(openapi.json["paths"]["/jobs/{id}/reschedule"].is_object());

    let paused = api.post("/scheduler/pause", json!({})).await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.json);
    let health = api.send(api.request(Method::GET, "/health", None)).await;
    assert_eq!(health.json["scheduler"], "paused");
    let resumed = api.post("/scheduler/resume", json!({})).await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.json);

    // The config is unchanged: reload keeps its job, and the API's job is not its own.
    let reload = api.post("/scheduler/reload", json!({})).await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.json);
    assert_eq!(reload.json["unchanged"], 1, "{}", reload.json);
    assert_eq!(reload.json["removed"], json!([]), "{}", reload.json);
    assert_eq!(api.get("/jobs/report").await.status, StatusCode::OK);

    let removed = api.call(Method::DELETE, "/jobs/report", None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    api.get("/jobs/report")
        .await
        .assert_error(StatusCode::NOT_FOUND, "job_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status_has_the_error_body() {
    let daemon = start_daemon("api-errors", "");
    let api = Api::new(&daemon);

    // 400: unreadable JSON, a bad query.
    api.raw(
        Method::POST,
        "/jobs",
        "application/json",
        "{\"task\": ".to_owned(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "malformed_json");
    api.get("/runs?limit=0")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    // 401: no token, a wrong one.
    api.send(api.request(Method::GET, "/jobs", None))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong = api
        .send(api.request(Method::GET, "/jobs", Some("write-secreT")))
        .await;
    wrong.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(wrong.headers.contains_key("www-authenticate"));
    // 403: a read token writing; a task outside allowed_tasks.
    let read = api.call_as(READ_TOKEN, Method::GET, "/jobs", None).await;
    assert_eq!(read.status, StatusCode::OK);
    api.call_as(READ_TOKEN, Method::POST, "/jobs", Some(daily("x")))
        .await
        .assert_error(StatusCode::FORBIDDEN, "read_only_token");
    api.call_as(READ_TOKEN, Method::DELETE, "/jobs/nightly", None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "read_only_token");
    let stats = json!({"task": "stats.correct", "trigger": {"type": "date", "delay": "1h"}});
    let refused = api.post("/jobs", stats).await;
    refused.assert_error(StatusCode::FORBIDDEN, "task_not_allowed");
    assert_eq!(refused.json["error"]["field"], "task");
    // 404: an unknown job, an unknown route.
    api.get("/jobs/nobody")
        .await
        .assert_error(StatusCode::NOT_FOUND, "job_not_found");
    api.post("/jobs/nobody/pause", json!({}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "job_not_found");
    api.get("/nowhere")
        .await
        .assert_error(StatusCode::NOT_FOUND, "route_not_found");
    // 405.
    api.call(Method::PUT, "/jobs", None)
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    // 409: a taken id; a job the config owns.
    assert_eq!(
        api.post("/jobs", daily("taken")).await.status,
        StatusCode::CREATED
    );
    api.post("/jobs", daily("taken"))
        .await
        .assert_error(StatusCode::CONFLICT, "job_exists");
    let mut replace = daily("taken");
    replace["replace_existing"] = json!(true);
    assert_eq!(api.post("/jobs", replace).await.status, StatusCode::CREATED);
    api.call(Method::DELETE, "/jobs/nightly", None)
        .await
        .assert_error(StatusCode::CONFLICT, "config_owned");
    // 413: a body over 64 KiB.
    let big = json!({"task": "command", "args": {"pad": "x".repeat(100_000)},
                     "trigger": {"type": "date", "delay": "1h"}});
    api.raw(Method::POST, "/jobs", "application/json", big.to_string())
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    // 415: not JSON.
    api.raw(
        Method::POST,
        "/jobs",
        "text/plain",
        "task=command".to_owned(),
    )
    .await
    .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // 422: invalid trigger, options or args, naming the field.
    let cases = [
        (
            json!({"task": "command", "args": {"argv": ["true"]}, "trigger": {"type": "cron", "hour": 25}}),
            "trigger.hour",
        ),
        (
            json!({"task": "command", "args": {"argv": ["true"]}, "trigger": {"type": "date", "delay": "1h"},
                   "options": {"max_instances": 0}}),
            "options.max_instances",
        ),
        (
            json!({"task": "orders.cancel", "args": "not an object", "trigger": {"type": "date", "delay": "1h"}}),
            "args",
        ),
    ];
    for (body, field) in cases {
        let reply = api.post("/jobs", body).await;
        reply.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert_eq!(reply.json["error"]["field"], field, "{}", reply.json);
    }
    // Nothing half-made: only the one job added above and the config's.
    let listed = api.get("/jobs").await;
    assert_eq!(listed.json["jobs"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_with_an_idempotency_key_makes_one_job() {
    let daemon = start_daemon("api-idempotent", "");
    let api = Api::new(&daemon);
    // No id: without the key every POST would make a new job.
    let body = json!({"task": "command", "args": {"argv": ["true"]},
                      "trigger": {"type": "date", "delay": "1h"}});
    let post = |key: &'static str, body: &Value| {
        api.request(Method::POST, "/jobs", Some(WRITE_TOKEN))
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let first = api.send(post("order-7", &body)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    let retry = api.send(post("order-7", &body)).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.json, first.json);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let other = json!({"task": "command", "args": {"argv": ["false"]},
                       "trigger": {"type": "date", "delay": "1h"}});
    api.send(post("order-7", &other))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    let listed = api.get("/jobs").await;
    let api_jobs = listed.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["from_config"] == false)
        .count();
    assert_eq!(api_jobs, 1, "{}", listed.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_rate_limit_the_daemon_answers_429_with_retry_after() {
    let daemon = start_daemon("api-rate", "rate_limit = 1\nrate_limit_burst = 3\n");
    let api = Api::new(&daemon);
    for _ in 0..3 {
        assert_eq!(api.get("/jobs").await.status, StatusCode::OK);
    }
    let limited = api.get("/jobs").await;
    limited.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(limited.headers["retry-after"], "1");
    // The read token has its own bucket.
    let read = api.call_as(READ_TOKEN, Method::GET, "/jobs", None).await;
    assert_eq!(read.status, StatusCode::OK);
    // Waiting as told lets the next request through.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api.get("/jobs").await.status, StatusCode::OK);
}

/// The order service's flow on the real clock: a cancel job per order, deleted when the
/// order is paid; an unpaid order's job fires once, at its time, and is gone after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_cancel_deleted_in_time_never_fires_and_one_kept_fires_once_at_its_time() {
    let daemon = start_daemon("api-orders", "");
    let api = Api::new(&daemon);
    let marker = daemon.dir.join("cancelled.log");
    let cancel = |order: &str, marker: &Path| {
        json!({"id": format!("order-cancel-{order}"), "task": "command",
               "args": {"argv": ["sh", "-c", format!("echo {order} >> {}", marker.display())]},
               "trigger": {"type": "date", "delay": "2s"}})
    };

    let paid = api.post("/jobs", cancel("1", &marker)).await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.json);
    let removed = api.call(Method::DELETE, "/jobs/order-cancel-1", None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);

    let before = Utc::now();
    let unpaid = api.post("/jobs", cancel("2", &marker)).await;
    assert_eq!(unpaid.status, StatusCode::CREATED, "{}", unpaid.json);
    // The delay is resolved on the daemon's clock when the job is added.
    let due: DateTime<Utc> = unpaid.json["next_run_time"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let offset = (due - before).num_milliseconds();
    assert!(
        (1_900..=3_000).contains(&offset),
        "due {offset} ms after adding"
    );

    assert!(
        wait_until(Duration::from_secs(10), || !lines(
            &daemon.dir,
            "cancelled.log"
        )
        .is_empty()),
        "the unpaid order was not cancelled:\n{}",
        daemon.log()
    );
    let runs = wait_for_runs(&api, "/jobs/order-cancel-2/runs").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["outcome"], "success");
    let scheduled: DateTime<Utc> = runs[0]["scheduled_time"].as_str().unwrap().parse().unwrap();
    assert_eq!(scheduled, due);
    let started: DateTime<Utc> = runs[0]["started_at"].as_str().unwrap().parse().unwrap();
    assert!(started >= due, "started {started} before its time {due}");
    assert!(
        (started - due).num_milliseconds() < 1_000,
        "started {started}, due {due}"
    );
    // Time for a second run or the paid order's run to show up, if there were one.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(lines(&daemon.dir, "cancelled.log"), ["2"]);
    let paid_runs = api.get("/jobs/order-cancel-1/runs").await;
    assert_eq!(paid_runs.json["runs"], json!([]));
    // A fired one-off job is gone.
    api.get("/jobs/order-cancel-2")
        .await
        .assert_error(StatusCode::NOT_FOUND, "job_not_found");
}

/// A daemon as shipped: loopback, no token at all.
fn start_open_daemon(name: &str) -> Daemon {
    let dir = temp_dir(name);
    write(
        &dir,
        "config.toml",
        r#"[scheduler]
shutdown_timeout = "2s"

[jobstores.default]
url = "sqlite://state/kairos.db"

[executors.default]
type = "threadpool"

[api]
listen = "127.0.0.1:0"
"#,
    );
    Daemon::start(&dir)
}

/// docs/threat-model.md, "Web pages in the operator's browser": the issue's `curl`,
/// a page's cross-site pause, against the tokenless daemon, and a rebound `Host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_pause_and_a_foreign_host_are_refused_by_the_daemon() {
    let daemon = start_open_daemon("api-browser-origin");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = daemon.api_url();
    let pause = client
        .post(format!("{base}/scheduler/pause"))
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(pause.status(), StatusCode::FORBIDDEN);
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["scheduler"], "running", "{health}");
    // A body with no content type (`fetch` in `no-cors` mode with a Blob).
    let blob = client
        .post(format!("{base}/jobs"))
        .body(r#"{"task": "http", "args": {"url": "http://127.0.0.1:1/"}, "trigger": {"type": "date", "delay": "1h"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(blob.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // DNS rebinding: the page's own name as Host.
    let rebound = client
        .get(format!("{base}/jobs"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::MISDIRECTED_REQUEST);
    // The CLI's and the page's way still works.
    let own = client
        .post(format!("{base}/scheduler/pause"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
}

/// docs/threat-model.md, "Job authors": a `command` job that runs `env` sees none of
/// the daemon's secrets (the API token, a database password from an
/// `EnvironmentFile`), only PATH, HOME, LANG, TZ and its own `env`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_job_running_env_sees_none_of_the_daemons_secrets() {
    let dir = temp_dir("api-clean-env");
    write(
        &dir,
        "config.toml",
        r#"[scheduler]
shutdown_timeout = "2s"

[jobstores.default]
url = "sqlite://state/kairos.db"

[executors.default]
type = "threadpool"

[api]
listen = "127.0.0.1:0"
token = "${KAIROS_TEST_API_TOKEN}"
allowed_tasks = ["command"]
"#,
    );
    let daemon = Daemon::start_with_env(
        &dir,
        &[
            ("KAIROS_TEST_API_TOKEN", WRITE_TOKEN),
            ("SHOP_DB_PASSWORD", "hunter2-db"),
        ],
    );
    let api = Api::new(&daemon);
    let out = dir.join("env.txt");
    let added = api
        .post(
            "/jobs",
            json!({"id": "env", "task": "command",
                   "args": {"argv": ["sh", "-c", format!("env > {}", out.display())],
                            "env": {"JOB_SETTING": "mine"}},
                   "trigger": {"type": "date", "delay": "0s"}}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&out)
            .is_ok_and(|text| text.contains("JOB_SETTING"))),
        "the job did not run:\n{}",
        daemon.log()
    );
    let seen = std::fs::read_to_string(&out).unwrap();
    assert!(!seen.contains("hunter2-db"), "{seen}");
    assert!(!seen.contains(WRITE_TOKEN), "{seen}");
    assert!(seen.contains("JOB_SETTING=mine"), "{seen}");
    assert!(seen.contains("PATH="), "{seen}");
    assert!(seen.contains("KAIROS_JOB_ID=env"), "{seen}");
}

/// `${NAME}` in job args is resolved when the run starts, from `[tasks] env_allow`:
/// the command sees the value, while the stored job, the API's answer and the run
/// history keep `${NAME}`; a variable the config does not allow fails the run, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_variables_in_args_reach_the_run_and_nothing_else() {
    let dir = temp_dir("api-env-args");
    write(
        &dir,
        "config.toml",
        r#"[scheduler]
shutdown_timeout = "2s"

[jobstores.default]
url = "sqlite://state/kairos.db"

[executors.default]
type = "threadpool"

[api]
listen = "127.0.0.1:0"
token = "${KAIROS_TEST_API_TOKEN}"
allowed_tasks = ["command"]

[tasks]
env_allow = ["KAIROS_TEST_SECRET"]
"#,
    );
    let secret = "hunter2-in-args";
    let daemon = Daemon::start_with_env(
        &dir,
        &[
            ("KAIROS_TEST_API_TOKEN", WRITE_TOKEN),
            ("KAIROS_TEST_SECRET", secret),
            ("KAIROS_TEST_NOT_ALLOWED", "nope"),
        ],
    );
    let api = Api::new(&daemon);
    let out = dir.join("secret.txt");
    // `$${` is kairos's escape: the shell gets `'${LITERAL}'`, quoted, and prints it.
    let script = format!(
        "echo ${{KAIROS_TEST_SECRET}} '$${{LITERAL}}' > {}",
        out.display()
    );
    let added = api
        .post(
            "/jobs",
            json!({"id": "secret", "task": "command",
                   "args": {"argv": ["sh", "-c", script]},
                   "trigger": {"type": "interval", "hours": 1}}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    let run = api.post("/jobs/secret/run", json!({})).await;
    assert_eq!(run.status, StatusCode::ACCEPTED, "{}", run.json);
    let runs = wait_for_runs(&api, "/jobs/secret/runs?limit=5").await;
    assert_eq!(runs[0]["outcome"], "success", "{}", runs[0]);
    let seen = std::fs::read_to_string(&out).unwrap();
    assert_eq!(seen.trim(), format!("{secret} ${{LITERAL}}"));

    let job = api.get("/jobs/secret").await;
    assert_eq!(job.status, StatusCode::OK);
    assert_eq!(job.json["args"]["argv"][2], script.as_str());
    assert!(!job.json.to_string().contains(secret), "{}", job.json);
    let history = api.get("/runs?job_id=secret&limit=5").await;
    assert!(
        !history.json.to_string().contains(secret),
        "{}",
        history.json
    );

    // Set in the daemon's environment, but not allowed: the run fails and says which.
    let added = api
        .post(
            "/jobs",
            json!({"id": "not-allowed", "task": "command",
                   "args": {"argv": ["echo", "${KAIROS_TEST_NOT_ALLOWED}"]},
                   "trigger": {"type": "interval", "hours": 1}}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    api.post("/jobs/not-allowed/run", json!({})).await;
    let runs = wait_for_runs(&api, "/jobs/not-allowed/runs?limit=5").await;
    assert_eq!(runs[0]["outcome"], "error", "{}", runs[0]);
    let error = runs[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("${KAIROS_TEST_NOT_ALLOWED} is not allowed"),
        "{error}"
    );
    assert!(!runs[0].to_string().contains("nope"), "{}", runs[0]);
}

/// `[api.tokens.NAME]` from the config file: the order service's token adds its
/// jobs, may not pause the scheduler, and each change is an audit line with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_token_is_scoped_and_audited() {
    let daemon = start_daemon(
        "api-named-token",
        "\n[api.tokens.orders]\ntoken = \"orders-secret\"\naccess = \"write\"\ntasks = [\"orders.cancel\"]\n",
    );
    let api = Api::new(&daemon);
    let added = api
        .call_as(
            "orders-secret",
            Method::POST,
            "/jobs",
            Some(
                json!({"id": "order-cancel-9", "task": "orders.cancel", "args": {"order_id": 9},
                        "trigger": {"type": "date", "delay": "30m"}}),
            ),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    api.call_as("orders-secret", Method::POST, "/scheduler/pause", None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "token_scope");
    api.call_as(
        "orders-secret",
        Method::POST,
        "/jobs",
        Some(json!({"task": "command", "args": {"argv": ["true"]},
                    "trigger": {"type": "date", "delay": "30m"}})),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "task_not_allowed");
    assert!(
        wait_until(Duration::from_secs(5), || daemon.log().lines().any(
            |line| line.contains("API change") && line.contains("orders") && line.contains("201")
        )),
        "no audit line:\n{}",
        daemon.log()
    );
}

/// A one-off job whose command fails is retried as its `retry` option says, each
/// attempt recorded with its number; once the attempts are used up the job stays, as
/// `failed`, listed by `?state=failed`; `POST /jobs/{id}/run` gives it fresh attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_one_off_job_is_retried_then_kept_as_failed_and_runs_again_on_request() {
    let daemon = start_daemon("api-retries", "");
    let api = Api::new(&daemon);
    let body = json!({
        "id": "flaky", "task": "command", "args": {"argv": ["false"]},
        "trigger": {"type": "date", "delay": "1s"},
        "options": {"retry": {"max_attempts": 3, "initial_delay": "100ms", "max_delay": "200ms"}},
    });
    let added = api.post("/jobs", body).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    assert_eq!(added.json["options"]["retry"]["max_attempts"], 3);
    let failed = || async {
        let reply = api.get("/jobs?state=failed").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
        reply.json["jobs"].as_array().cloned().unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while failed().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "never listed as failed:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = api.get("/jobs/flaky").await;
    assert_eq!(job.json["state"], "failed", "{}", job.json);
    assert_eq!(job.json["failure"]["attempts"], 3, "{}", job.json);
    let runs = api.get("/jobs/flaky/runs").await;
    let mut attempts: Vec<i64> = runs.json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["attempt"].as_i64().unwrap())
        .collect();
    attempts.sort_unstable();
    assert_eq!(attempts, [1, 2, 3], "{}", runs.json);
    // Once more, on request: three fresh attempts.
    let rerun = api.post("/jobs/flaky/run", json!({})).await;
    assert_eq!(rerun.status, StatusCode::ACCEPTED, "{}", rerun.json);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let runs = api.get("/jobs/flaky/runs").await;
        if runs.json["runs"].as_array().map_or(0, Vec::len) == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "{}\n{}", runs.json, daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(failed().await.len(), 1);
}

/// Runs `kairos ARGS` in `dir`, with no `KAIROS_*` from the environment, so that the
/// client finds the daemon through `dir/config.toml`.
fn kairos_in(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(args)
        .current_dir(dir)
        .env_remove("KAIROS_URL")
        .env_remove("KAIROS_TOKEN")
        .env("TZ", "UTC")
        .output()
        .unwrap()
}

/// The client reads only `[api]` of config.toml: a job file broken on disk, which the
/// daemon would refuse at its next reload, does not keep `kairos jobs list` from the
/// daemon that runs, nor does a section the client knows nothing of.
#[test]
fn jobs_list_reaches_a_running_daemon_while_a_job_file_is_broken() {
    let daemon = start_daemon("api-client-broken-job", "");
    let dir = daemon.dir.clone();
    // The daemon listens on port 0; the file says where it ended up, as an operator's
    // would.
    let api_url = daemon.api_url();
    let address = api_url
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1");
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let config = config.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{address}\""),
    );
    write(
        &dir,
        "config.toml",
        &format!("{config}\n[not_a_section]\nx = 1\n"),
    );
    write(
        &dir,
        "jobs/broken.toml",
        "[[jobs]]\nid = \"broken\"\ntask = \"no.such.task\"\ntrigger = { type = \"cron\", hour = 99 }\n",
    );
    // The files are broken as the daemon reads them.
    let check = kairos_in(&dir, &["check"]);
    assert!(
        !check.status.success(),
        "kairos check accepted the broken files"
    );
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("broken.toml"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let listed = kairos_in(&dir, &["jobs", "list"]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(listed.status.success(), "{stderr}");
    assert!(stdout.starts_with("ID "), "{stdout}");
    assert!(
        stdout.lines().any(|line| line.starts_with("nightly ")),
        "{stdout}"
    );
    // `[api]` itself is still checked: a mistake there is the client's to report.
    write(&dir, "config.toml", "[api]\nlisten = \"nowhere\"\n");
    let refused = kairos_in(&dir, &["jobs", "list"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("api.listen"));
}
