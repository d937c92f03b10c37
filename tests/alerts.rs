//! Alerts (docs/alerts.md): a webhook receiver in the test gets exactly one alert per
//! exhausted job, from one scheduler or three sharing a store; a webhook that fails at
//! first gets the alert on a retry; the dead-man's switch raises `overdue` for a
//! nightly job after the scheduler was down past its window. On simulated time.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use common::shared_store::{Db, Place};
use common::{date_at, secs, step_to, t0};
use kairos::alert::{AlertKind, AlertSettings, WebhookSettings};
use kairos::clock::ManualClock;
use kairos::job::{JobSpec, RetryPolicy};
use kairos::scheduler::{Event, Scheduler};
use kairos::store::memory::MemoryStore;
use kairos::store::prelude::*;
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::TriggerSpec;
use serde_json::{json, Value};

/// A webhook receiver on a local port: every body it was POSTed, and how many POSTs it
/// answers 500 before it answers 200.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    posts: Arc<AtomicU32>,
    fail_first: Arc<AtomicU32>,
}

impl Receiver {
    /// Starts one; returns it and its URL.
    async fn start(fail_first: u32) -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver.fail_first.store(fail_first, Ordering::SeqCst);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// The alerts received of `kind`.
    fn of(&self, kind: &str) -> Vec<Value> {
        self.bodies()
            .into_iter()
            .filter(|body| body["event"] == kind)
            .collect()
    }

    /// Waits (real time) until `count` alerts of `kind` came, then a little longer so
    /// that any extra one would have come too.
    async fn wait_for(&self, kind: &str, count: usize) -> Vec<Value> {
        for _ in 0..500 {
            if self.of(kind).len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.of(kind)
    }
}

async fn receive(State(receiver): State<Receiver>, body: String) -> StatusCode {
    receiver.posts.fetch_add(1, Ordering::SeqCst);
    let failing = receiver
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    receiver
        .bodies
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap());
    StatusCode::OK
}

/// Alerts to `url`, with short waits between POSTs (real time).
fn alerts_to(url: &str) -> AlertSettings {
    let mut webhook = WebhookSettings::new(url);
    webhook.initial_backoff = Duration::from_millis(50);
    webhook.max_backoff = Duration::from_millis(200);
    webhook.timeout = Duration::from_secs(5);
    AlertSettings {
        webhooks: vec![webhook],
        check_every: Duration::from_secs(60),
        ..AlertSettings::default()
    }
}

/// Tasks: `broken` always fails, `fine` always succeeds, `nightly` succeeds while
/// `healthy` is set.
fn tasks(healthy: Arc<std::sync::atomic::AtomicBool>) -> TaskRegistry {
    let mut tasks = TaskRegistry::new();
    tasks.register_fn("broken", |_run: TaskRun| async {
        Err(TaskFailure::new("connection refused"))
    });
    tasks.register_fn("fine", |_run: TaskRun| async { Ok(String::new()) });
    tasks.register_fn("nightly", move |_run: TaskRun| {
        let healthy = healthy.load(Ordering::SeqCst);
        async move {
            if healthy {
                Ok("recounted".to_owned())
            } else {
                Err(TaskFailure::new("the database is down"))
            }
        }
    });
    tasks
}

fn scheduler(
    id: &str,
    clock: &ManualClock,
    store: Arc<dyn JobStore>,
    alerts: AlertSettings,
) -> Scheduler {
    Scheduler::builder()
        .id(id)
        .clock(clock.clone())
        .store_shared("default", store)
        .tasks(tasks(Arc::new(std::sync::atomic::AtomicBool::new(true))))
        .alerts(alerts)
        .build()
}

fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_delay: Some(Duration::from_secs(1)),
        multiplier: Some(2.0),
        max_delay: Some(Duration::from_secs(4)),
    }
}

/// A failing one-off job with `attempts` attempts, due `second` s after t0.
fn failing(id: &str, second: i64, attempts: u32) -> JobSpec {
    let mut spec = JobSpec::new("broken", date_at(second)).with_id(id);
    spec.options.retry = Some(retry(attempts));
    spec
}

/// One scheduler: each exhausted job gets exactly one `failed` alert, with the last
/// attempt's number and the payload's documented fields; a job that succeeds and the
/// attempts before the last get none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receives_exactly_one_alert_per_exhausted_job() {
    let (receiver, url) = Receiver::start(0).await;
    let clock = ManualClock::new(t0());
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler("node-a", &clock, store, alerts_to(&url));
    let mut events = scheduler.subscribe();
    scheduler.add_job(failing("cancel-1", 5, 3)).await.unwrap();
    scheduler.add_job(failing("cancel-2", 6, 1)).await.unwrap();
    scheduler
        .add_job(JobSpec::new("fine", date_at(7)).with_id("fine-1"))
        .await
        .unwrap();
    scheduler.start();
    step_to(&clock, t0() + secs(60), Duration::from_millis(100)).await;
    let failed = receiver.wait_for("failed", 2).await;
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert_eq!(receiver.bodies().len(), 2, "only the failed alerts");
    let of = |id: &str| {
        failed
            .iter()
            .find(|body| body["job_id"] == id)
            .unwrap()
            .clone()
    };
    let first = of("cancel-1");
    assert_eq!(first["attempt"], 3);
    assert_eq!(first["node_id"], "node-a");
    assert_eq!(
        first["scheduled_time"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        t0() + secs(5)
    );
    assert!(first["message"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert!(first["at"].as_str().is_some());
    assert_eq!(of("cancel-2")["attempt"], 1);
    // The alerts are events too (the SSE stream and the metrics read them).
    let mut raised = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Alert { alert } = event {
            raised.push((alert.event, alert.job_id));
        }
    }
    raised.sort();
    assert_eq!(
        raised,
        [
            (AlertKind::Failed, "cancel-1".to_owned()),
            (AlertKind::Failed, "cancel-2".to_owned())
        ]
    );
    scheduler.shutdown(None).await;
}

/// The receiver answers 500 twice, then 200: the alert arrives once, on the third POST,
/// and the delivery says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_fails_at_first_gets_the_alert_on_a_retry() {
    let (receiver, url) = Receiver::start(2).await;
    let clock = ManualClock::new(t0());
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler("node-a", &clock, store, alerts_to(&url));
    let mut events = scheduler.subscribe();
    scheduler.add_job(failing("cancel-1", 5, 1)).await.unwrap();
    scheduler.start();
    step_to(&clock, t0() + secs(10), Duration::from_millis(100)).await;
    let failed = receiver.wait_for("failed", 1).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(receiver.posts.load(Ordering::SeqCst), 3);
    let delivered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::AlertDelivered { attempts, .. }) = events.recv().await {
                return attempts;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(delivered, 3);
    scheduler.shutdown(None).await;
}

/// Three schedulers on one store: every exhausted job is alerted once in all, and the
/// overdue job, which all three watch, once too.
async fn three_schedulers_send_each_alert_once(store: Arc<dyn JobStore>) {
    let (receiver, url) = Receiver::start(0).await;
    let clock = ManualClock::new(t0());
    let nodes: Vec<Scheduler> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| scheduler(id, &clock, Arc::clone(&store), alerts_to(&url)))
        .collect();
    let ids: Vec<String> = (0..6).map(|index| format!("cancel-{index}")).collect();
    for (index, id) in ids.iter().enumerate() {
        let node = &nodes[index % nodes.len()];
        node.add_job(failing(id, 5 + index as i64, 2))
            .await
            .unwrap();
    }
    // Watched by all three; paused, so it never succeeds.
    let mut watched = JobSpec::new(
        "fine",
        serde_json::from_value::<TriggerSpec>(json!({"type": "interval", "hours": 1})).unwrap(),
    )
    .with_id("hourly-report");
    watched.paused = true;
    watched.options.expect_success_within = Some(Duration::from_secs(120));
    nodes[0].add_job(watched).await.unwrap();
    for node in &nodes {
        node.start();
    }
    step_to(&clock, t0() + secs(400), Duration::from_millis(200)).await;
    let failed = receiver.wait_for("failed", ids.len()).await;
    let mut alerted: Vec<String> = failed
        .iter()
        .map(|body| body["job_id"].as_str().unwrap().to_owned())
        .collect();
    alerted.sort();
    assert_eq!(alerted, ids, "one failed alert per job");
    assert!(failed.iter().all(|body| body["attempt"] == 2));
    let overdue = receiver.wait_for("overdue", 1).await;
    assert_eq!(overdue.len(), 1, "{overdue:#?}");
    assert_eq!(overdue[0]["job_id"], "hourly-report");
    assert_eq!(
        overdue[0]["scheduled_time"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        t0() + secs(120)
    );
    assert!(overdue[0]["message"].as_str().unwrap().contains("paused"));
    for node in &nodes {
        node.shutdown(None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_sharing_a_memory_store_send_each_alert_once() {
    three_schedulers_send_each_alert_once(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_sharing_postgres_send_each_alert_once() {
    let place = Place::new(Db::Postgres, "al");
    let store = match place.open().await {
        Ok(store) => store,
        Err(error) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(!required, "PostgreSQL: {error} (KAIROS_REQUIRE_SERVICES=1)");
            println!("SKIP PostgreSQL: {error}");
            return;
        }
    };
    three_schedulers_send_each_alert_once(store).await;
    place.clean().await;
}

/// When the latest successful run of `stats.correct` scheduled at `since` or later
/// ended. Its record is written by the record task after the run, in real time, which
/// a loaded machine may take a while to get to: asked again for up to 20 s.
async fn success_since(scheduler: &Scheduler, since: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let success = scheduler
            .runs(Some("stats.correct"), 10)
            .await
            .unwrap()
            .into_iter()
            .filter(|run| run.outcome == kairos::history::RunOutcome::Success)
            .filter(|run| run.scheduled_time >= since)
            .map(|run| run.finished_at)
            .max();
        if success.is_some() || std::time::Instant::now() >= deadline {
            return success;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The nightly statistics job (cron hour=3, expect_success_within = 25h) succeeds on
/// day 1; the scheduler is then stopped and started again on day 2 at 10:00, past
/// the window: the first check after the start raises `overdue`, once, however long
/// it stays overdue; a success ends it, and the next stretch without one raises it
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nightly_jobs_overdue_alert_fires_after_the_scheduler_was_down() {
    let (receiver, url) = Receiver::start(0).await;
    let path = std::env::temp_dir().join(format!("kairos-alerts-{:08x}.db", fastrand::u32(..)));
    let store_url = format!("sqlite://{}", path.display());
    let open = || async {
        kairos::store::sql::connect(&store_url, kairos::store::sql::SqlOptions::default())
            .await
            .unwrap()
    };
    let day1 = t0() + secs(2 * 3600);
    let clock = ManualClock::new(day1);
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let build = |store: Arc<dyn JobStore>| {
        Scheduler::builder()
            .id("node-a")
            .clock(clock.clone())
            .store_shared("default", store)
            .tasks(tasks(Arc::clone(&healthy)))
            .alerts(alerts_to(&url))
            .build()
    };
    let first = build(open().await);
    let mut nightly = JobSpec::new(
        "nightly",
        serde_json::from_value::<TriggerSpec>(json!({"type": "cron", "hour": 3})).unwrap(),
    )
    .with_id("stats.correct");
    nightly.options.expect_success_within = Some(Duration::from_secs(25 * 3600));
    // A run more than an hour late is missed, not run: the restart below finds the
    // job as it was, with no success since day 1.
    nightly.options.misfire_grace_time = Some(Duration::from_secs(3600));
    first.add_job(nightly).await.unwrap();
    first.start();
    step_to(&clock, day1 + secs(3600 + 30), Duration::from_secs(5)).await;
    let success = success_since(&first, day1)
        .await
        .expect("the day-1 run succeeded");
    first.shutdown(None).await;
    assert!(receiver.bodies().is_empty());

    // Down until day 2, 10:00: 31 hours after the success.
    let restart = t0() + TimeDelta::hours(24 + 10);
    clock.set(restart);
    let second = build(open().await);
    second.start();
    step_to(&clock, restart + secs(5 * 60), Duration::from_secs(10)).await;
    let overdue = receiver.wait_for("overdue", 1).await;
    assert_eq!(overdue.len(), 1, "{overdue:#?}");
    assert_eq!(overdue[0]["job_id"], "stats.correct");
    let deadline = success + TimeDelta::hours(25);
    assert_eq!(
        overdue[0]["scheduled_time"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        deadline
    );
    assert!(overdue[0]["attempt"].is_null());
    assert!(overdue[0]["message"]
        .as_str()
        .unwrap()
        .contains("within 1day 1h (expect_success_within)"));
    // The missed day-2 run is an alert of its own.
    assert_eq!(receiver.wait_for("missed", 1).await.len(), 1);
    // Still overdue an hour later: no second alert for the same stretch.
    step_to(&clock, restart + secs(3600), Duration::from_secs(30)).await;
    assert_eq!(receiver.wait_for("overdue", 2).await.len(), 1);

    // Day 3, 03:00: it succeeds, which ends the stretch; then the database goes down
    // and the next stretch raises `overdue` again, 25 h after that success.
    let day3 = t0() + TimeDelta::hours(48 + 3);
    step_to(&clock, day3 + secs(60), Duration::from_secs(60)).await;
    // The day-3 run has succeeded before the database goes down.
    assert!(success_since(&second, day3).await.is_some());
    healthy.store(false, Ordering::SeqCst);
    let next_deadline = day3 + TimeDelta::hours(25);
    step_to(
        &clock,
        next_deadline + secs(5 * 60),
        Duration::from_secs(60),
    )
    .await;
    let overdue = receiver.wait_for("overdue", 2).await;
    assert_eq!(overdue.len(), 2, "{overdue:#?}");
    let second_deadline = overdue[1]["scheduled_time"]
        .as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .unwrap();
    let day3_success = second
        .runs(Some("stats.correct"), 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|run| run.outcome == kairos::history::RunOutcome::Success)
        .map(|run| run.finished_at)
        .max()
        .unwrap();
    assert!(day3_success >= day3, "{day3_success}");
    assert_eq!(second_deadline, day3_success + TimeDelta::hours(25));
    // The day-4 run failed: a `failed` alert.
    assert_eq!(receiver.wait_for("failed", 1).await.len(), 1);
    second.shutdown(None).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Without webhooks an alert is still an `alert` server-sent event (its data the
/// webhook payload under `alert`) and a count in `kairos_alerts_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_server_sent_events_and_metrics() {
    use axum::body::Body;
    use axum::http::Request;
    use futures_util::StreamExt;
    use tower::ServiceExt;

    let clock = ManualClock::new(t0());
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler("node-a", &clock, store, AlertSettings::default());
    let router = kairos::api::app(scheduler.clone(), kairos::api::ApiSettings::default());
    let get = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(get("/api/v1/events")).await.unwrap();
    let mut stream = response.into_body().into_data_stream();
    scheduler.add_job(failing("cancel-1", 5, 1)).await.unwrap();
    scheduler.start();
    step_to(&clock, t0() + secs(10), Duration::from_millis(100)).await;
    let mut text = String::new();
    let marker = "event: alert\ndata: ";
    let data = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = stream.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(start) = text.find(marker) {
                let data = &text[start + marker.len()..];
                if let Some(end) = data.find('\n') {
                    return data[..end].to_owned();
                }
            }
        }
    })
    .await
    .unwrap();
    let event: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(event["event"], "alert");
    assert_eq!(event["alert"]["event"], "failed");
    assert_eq!(event["alert"]["job_id"], "cancel-1");
    let metrics = router.oneshot(get("/api/v1/metrics")).await.unwrap();
    let body = axum::body::to_bytes(metrics.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("kairos_alerts_total{event=\"failed\"} 1\n"),
        "{body}"
    );
    assert!(body.contains("kairos_alerts_total{event=\"overdue\"} 0\n"));
    scheduler.shutdown(None).await;
}

/// A webhook that never answers gets `max_attempts` POSTs, then the alert is reported
/// undelivered (an event, a log line, a count); the scheduler goes on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_a_webhook_never_takes_is_reported_undelivered() {
    // A port nothing listens on: bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let mut alerts = alerts_to(&url);
    alerts.webhooks[0].max_attempts = 2;
    let clock = ManualClock::new(t0());
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler("node-a", &clock, store, alerts);
    let mut events = scheduler.subscribe();
    scheduler.add_job(failing("cancel-1", 5, 1)).await.unwrap();
    scheduler
        .add_job(JobSpec::new("fine", date_at(8)).with_id("fine-1"))
        .await
        .unwrap();
    scheduler.start();
    step_to(&clock, t0() + secs(10), Duration::from_millis(100)).await;
    let (attempts, reason) = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::AlertUndelivered {
                attempts, reason, ..
            }) = events.recv().await
            {
                return (attempts, reason);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(attempts, 2);
    assert!(reason.contains("POST failed"), "{reason}");
    let ran = scheduler.runs(Some("fine-1"), 1).await.unwrap();
    assert_eq!(ran.len(), 1, "the scheduler went on");
    scheduler.shutdown(None).await;
}
