//! When runs fail (docs/lifecycle.md): retries with backoff, failed one-off jobs kept,
//! re-run on request; on simulated time.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{date_at, secs, step_to, t0};
use kairos::clock::{Clock, ManualClock};
use kairos::history::RunOutcome;
use kairos::job::{JobSpec, RetryPolicy};
use kairos::scheduler::{Event, Scheduler};
use kairos::store::memory::MemoryStore;
use kairos::store::prelude::*;
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::TriggerSpec;
use serde_json::json;

/// A task `flaky` that fails its first `failures` calls, then succeeds; the scheduled
/// time and clock time of every call.
type Calls = Arc<Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>>;

fn flaky(clock: &ManualClock, failures: u32) -> (TaskRegistry, Calls) {
    let calls: Calls = Arc::default();
    let seen = Arc::clone(&calls);
    let count = Arc::new(AtomicU32::new(0));
    let clock = clock.clone();
    let mut tasks = TaskRegistry::new();
    tasks.register_fn("flaky", move |run: TaskRun| {
        seen.lock().unwrap().push((run.scheduled_time, clock.now()));
        let n = count.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < failures {
                Err(TaskFailure::new(format!("failure {}", n + 1)))
            } else {
                Ok(String::new())
            }
        }
    });
    (tasks, calls)
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_delay: Some(Duration::from_secs(2)),
        multiplier: Some(2.0),
        max_delay: Some(Duration::from_secs(10)),
    }
}

fn scheduler(clock: &ManualClock, tasks: TaskRegistry, store: Arc<dyn JobStore>) -> Scheduler {
    Scheduler::builder()
        .clock(clock.clone())
        .store_shared("default", store)
        .tasks(tasks)
        .build()
}

/// Fails twice, then succeeds: three calls, the last a success, each attempt after the
/// one before within its backoff, and the one-off job gone at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_fails_twice_then_succeeds_makes_three_calls() {
    let clock = ManualClock::new(t0());
    let (tasks, calls) = flaky(&clock, 2);
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler(&clock, tasks, Arc::clone(&store));
    let mut spec = JobSpec::new("flaky", date_at(5)).with_id("cancel-7");
    spec.options.retry = Some(policy(5));
    scheduler.add_job(spec).await.unwrap();
    scheduler.start();
    step_to(&clock, t0() + secs(60), Duration::from_millis(100)).await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls
        .iter()
        .all(|(scheduled, _)| *scheduled == t0() + secs(5)));
    // Full jitter: attempt 2 within 2 s of the first, attempt 3 within 4 s of that.
    assert!(calls[1].1 - calls[0].1 <= TimeDelta::seconds(2) + TimeDelta::milliseconds(200));
    assert!(calls[2].1 - calls[1].1 <= TimeDelta::seconds(4) + TimeDelta::milliseconds(200));
    let mut runs = scheduler.runs(Some("cancel-7"), 10).await.unwrap();
    runs.sort_by_key(|run| run.attempt);
    let attempts: Vec<(u32, RunOutcome)> =
        runs.iter().map(|run| (run.attempt, run.outcome)).collect();
    assert_eq!(
        attempts,
        [
            (1, RunOutcome::Error),
            (2, RunOutcome::Error),
            (3, RunOutcome::Success)
        ]
    );
    assert!(
        store.get_job("cancel-7").await.unwrap().is_none(),
        "done, gone"
    );
    scheduler.shutdown(None).await;
}

/// Always fails: exactly max_attempts calls; the one-off job stays, failed; a re-run
/// starts a fresh set of attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_off_job_that_always_fails_is_kept_as_failed_and_reruns_on_request() {
    let clock = ManualClock::new(t0());
    let (tasks, calls) = flaky(&clock, u32::MAX);
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler(&clock, tasks, Arc::clone(&store));
    let mut spec = JobSpec::new("flaky", date_at(5)).with_id("cancel-8");
    spec.options.retry = Some(policy(3));
    scheduler.add_job(spec).await.unwrap();
    scheduler.start();
    step_to(&clock, t0() + secs(60), Duration::from_millis(100)).await;
    assert_eq!(calls.lock().unwrap().len(), 3);
    let job = store.get_job("cancel-8").await.unwrap().expect("kept");
    assert_eq!(job.state(), "failed");
    assert_eq!(job.next_run_time, None);
    let failure = job.retry.failed.clone().unwrap();
    assert_eq!(
        (failure.attempts, failure.scheduled_time),
        (3, t0() + secs(5))
    );
    // Nothing more happens to it.
    step_to(&clock, t0() + secs(120), Duration::from_secs(1)).await;
    assert_eq!(calls.lock().unwrap().len(), 3);
    // Run it again: three fresh attempts.
    scheduler.run_job_now("cancel-8").await.unwrap();
    step_to(&clock, t0() + secs(180), Duration::from_millis(100)).await;
    assert_eq!(calls.lock().unwrap().len(), 6);
    assert_eq!(
        store.get_job("cancel-8").await.unwrap().unwrap().state(),
        "failed"
    );
    scheduler.shutdown(None).await;
}

/// A one-off job that fails stays (retried, then kept as failed), and is announced
/// removed only when it is: each failed attempt's release leaves it where it is, and a
/// "job removed" event then told listeners and the log of a removal that never was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_one_off_job_that_stays_is_not_announced_removed() {
    let clock = ManualClock::new(t0());
    let (tasks, calls) = flaky(&clock, u32::MAX);
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler(&clock, tasks, Arc::clone(&store));
    let mut events = scheduler.subscribe();
    let mut spec = JobSpec::new("flaky", date_at(5)).with_id("cancel-9");
    spec.options.retry = Some(policy(2));
    scheduler.add_job(spec).await.unwrap();
    scheduler.start();
    step_to(&clock, t0() + secs(60), Duration::from_millis(100)).await;
    assert_eq!(calls.lock().unwrap().len(), 2);
    let job = store.get_job("cancel-9").await.unwrap().expect("kept");
    assert_eq!(job.state(), "failed");
    // The last attempt's release follows its record, in real time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    scheduler.remove_job("cancel-9").await.unwrap();
    let mut removed = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(&event, Event::JobRemoved { job_id, .. } if job_id == "cancel-9") {
            removed += 1;
        }
    }
    assert_eq!(removed, 1, "announced removed once, when it was removed");
    scheduler.shutdown(None).await;
}

/// Without a retry policy a failed one-off job is kept too: a failure is never the end
/// of a one-off job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_one_off_job_without_retries_is_kept_as_failed() {
    let clock = ManualClock::new(t0());
    let (tasks, calls) = flaky(&clock, u32::MAX);
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler(&clock, tasks, Arc::clone(&store));
    scheduler
        .add_job(JobSpec::new("flaky", date_at(5)).with_id("once"))
        .await
        .unwrap();
    scheduler.start();
    step_to(&clock, t0() + secs(20), Duration::from_millis(100)).await;
    assert_eq!(calls.lock().unwrap().len(), 1);
    let job = store.get_job("once").await.unwrap().expect("kept");
    assert_eq!(job.state(), "failed");
    scheduler.shutdown(None).await;
}

/// A pause cancels a pending retry: nothing runs while paused, and resuming starts
/// from the trigger (a recurring job), not from the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_cancels_the_pending_retry() {
    let clock = ManualClock::new(t0());
    let (tasks, calls) = flaky(&clock, u32::MAX);
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler(&clock, tasks, Arc::clone(&store));
    let hourly: TriggerSpec = serde_json::from_value(json!({
        "type": "interval", "hours": 1, "start_date": (t0() + secs(5)).to_rfc3339(),
    }))
    .unwrap();
    let mut spec = JobSpec::new("flaky", hourly).with_id("hourly");
    spec.options.retry = Some(RetryPolicy {
        initial_delay: Some(Duration::from_secs(30)),
        max_delay: Some(Duration::from_secs(30)),
        ..policy(5)
    });
    scheduler.add_job(spec).await.unwrap();
    scheduler.start();
    // The first attempt fails at 00:05; its retry waits up to 30 s (full jitter, so
    // it may come early: what is pending is read from the store).
    step_to(&clock, t0() + secs(5), Duration::from_millis(100)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let pending = loop {
        let job = store.get_job("hourly").await.unwrap().unwrap();
        if let Some(pending) = job.retry.pending.clone() {
            break pending;
        }
        assert!(std::time::Instant::now() < deadline, "no retry pending");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(pending.attempt, 2);
    assert_eq!(pending.scheduled_time, t0() + secs(5));
    assert_eq!(pending.resume_at, Some(t0() + secs(3605)));
    scheduler.pause_job("hourly").await.unwrap();
    let before = calls.lock().unwrap().len();
    step_to(&clock, t0() + secs(120), Duration::from_secs(1)).await;
    assert_eq!(calls.lock().unwrap().len(), before, "no retry while paused");
    let resumed = scheduler.resume_job("hourly").await.unwrap().unwrap();
    assert_eq!(resumed.next_run_time, Some(t0() + secs(3605)));
    assert!(resumed.retry.pending.is_none());
    scheduler.shutdown(None).await;
}

/// "Why didn't it run?": the answer for each cause, from the job's state and history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_cause() {
    let clock = ManualClock::new(t0());
    let (mut tasks, _) = flaky(&clock, u32::MAX);
    // A task that succeeds, taking 3 s of the scheduler's clock.
    let slow_clock = clock.clone();
    tasks.register_fn("slow", move |run: TaskRun| {
        let clock = slow_clock.clone();
        async move {
            let end = run.scheduled_time.max(clock.now()) + TimeDelta::seconds(3);
            while clock.now() < end {
                clock.sleep_until(end).await;
            }
            Ok::<String, TaskFailure>(String::new())
        }
    });
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = scheduler(&clock, tasks, Arc::clone(&store));
    let every = |seconds: u64, start: i64| -> TriggerSpec {
        serde_json::from_value(json!({
            "type": "interval", "seconds": seconds, "start_date": (t0() + secs(start)).to_rfc3339(),
        }))
        .unwrap()
    };
    // Retrying: fails, waits long. The wait is jittered in [0, 600 s]
    // (`RetryPolicy::delay`), so an attempt may come before the look below (about one
    // run in a hundred); with ten attempts the job is still retrying then.
    let mut retrying = JobSpec::new("flaky", date_at(5)).with_id("retrying");
    retrying.options.retry = Some(RetryPolicy {
        initial_delay: Some(Duration::from_secs(600)),
        max_delay: Some(Duration::from_secs(600)),
        ..policy(10)
    });
    scheduler.add_job(retrying).await.unwrap();
    // Failed for good.
    scheduler
        .add_job(JobSpec::new("flaky", date_at(5)).with_id("failed"))
        .await
        .unwrap();
    // Paused.
    scheduler
        .add_job(JobSpec::new("slow", every(60, 60)).with_id("paused"))
        .await
        .unwrap();
    scheduler.pause_job("paused").await.unwrap();
    // Runs of 3 s every 2 s: every other time skipped by the instance limit.
    scheduler
        .add_job(JobSpec::new("slow", every(2, 2)).with_id("busy"))
        .await
        .unwrap();
    // A time older than its grace time when taken: missed.
    let mut late = JobSpec::new("slow", every(60, 1));
    late.options.misfire_grace_time = Some(Duration::from_millis(1));
    scheduler.add_job(late.with_id("late")).await.unwrap();
    // Taken only after its time, because the scheduler starts late.
    clock.set(t0() + secs(3));
    scheduler.start();
    step_to(&clock, t0() + secs(12), Duration::from_millis(100)).await;

    let retrying = scheduler.explain_job("retrying").await.unwrap();
    assert_eq!(retrying.next_run_reason, "retry_wait", "{retrying:#?}");
    // The attempt it names is the one the job waits for.
    let pending = scheduler
        .get_job("retrying")
        .await
        .unwrap()
        .unwrap()
        .retry
        .pending
        .expect("a pending attempt");
    assert!(pending.attempt >= 2, "{pending:?}");
    assert!(
        retrying
            .summary
            .contains(&format!("attempt {} of 10", pending.attempt)),
        "{}",
        retrying.summary
    );
    assert_eq!(retrying.recent[0].outcome, "failed");

    let failed = scheduler.explain_job("failed").await.unwrap();
    assert_eq!(failed.state, "failed");
    assert_eq!(failed.next_run_reason, "failed");
    assert!(
        failed.summary.starts_with("Failed for good"),
        "{}",
        failed.summary
    );

    let paused = scheduler.explain_job("paused").await.unwrap();
    assert_eq!(paused.next_run_reason, "paused");
    assert!(paused.summary.starts_with("Paused"), "{}", paused.summary);

    let busy = scheduler.explain_job("busy").await.unwrap();
    let outcomes: Vec<&str> = busy.recent.iter().map(|time| time.outcome).collect();
    assert!(
        outcomes.contains(&"ran") && outcomes.contains(&"skipped"),
        "{busy:#?}"
    );
    let skipped = busy
        .recent
        .iter()
        .find(|time| time.outcome == "skipped")
        .unwrap();
    assert!(skipped.detail.contains("max_instances"), "{skipped:?}");
    assert_eq!(busy.next_run_reason, "running", "{busy:#?}");

    let late = scheduler.explain_job("late").await.unwrap();
    assert_eq!(late.recent[0].outcome, "missed", "{late:#?}");
    scheduler.shutdown(None).await;
}
