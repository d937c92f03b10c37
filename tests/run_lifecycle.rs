//! The run lifecycle where features meet (docs/lifecycle.md): a run handed over ahead
//! of its time is judged at its time — by the instance limit as it stands then, and
//! against changes made to its job meanwhile, through any node.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{date_at, secs, step_to, t0};
use kairos::clock::ManualClock;
use kairos::history::{RunOutcome, RunRecord};
use kairos::job::JobSpec;
use kairos::scheduler::{Scheduler, SchedulerError};
use kairos::store::memory::MemoryStore;
use kairos::store::prelude::*;
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::TriggerSpec;
use serde_json::json;

use common::slow_task;

fn every(seconds: u64) -> TriggerSpec {
    serde_json::from_value(json!({
        "type": "interval", "seconds": seconds, "start_date": t0().to_rfc3339(),
    }))
    .unwrap()
}

/// Every run record of `job_id`, oldest scheduled time first.
async fn records(scheduler: &Scheduler, job_id: &str) -> Vec<RunRecord> {
    let mut runs = scheduler.runs(Some(job_id), 1000).await.unwrap();
    runs.sort_by_key(|run| run.scheduled_time);
    runs
}

/// Waits in real time, for 10 s at most, until `done` holds or every time in `times`
/// has a record of the `slow` job.
async fn wait_for(scheduler: &Scheduler, mut done: impl FnMut() -> bool, times: &[DateTime<Utc>]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if done() {
            return;
        }
        let runs = records(scheduler, "slow").await;
        let recorded = times
            .iter()
            .all(|time| runs.iter().any(|run| run.scheduled_time == *time));
        if recorded || std::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn every_two_seconds_with_runs_of(
    store: Arc<dyn JobStore>,
    took_ms: u64,
    fire_ahead: u64,
) -> Vec<RunRecord> {
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_millis(took_ms));
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .store_shared("default", store)
        .tasks(tasks)
        .fire_ahead(Duration::from_secs(fire_ahead))
        .build();
    scheduler
        .add_job(JobSpec::new("slow", every(2)).with_id("slow"))
        .await
        .unwrap();
    scheduler.start();
    // Simulated time moves 50 ms every 3 ms, faster than a loaded machine may follow:
    // a run started late in simulated time ends late, and one whose end the scheduler
    // has not seen yet still executes. So the clock stops at each due time until the
    // run of that time has started or been recorded, and 10 ms before the next until
    // every run that has ended by then is recorded (waits in real time, 10 s at most).
    let took = TimeDelta::milliseconds(i64::try_from(took_ms).unwrap());
    let mut due = t0();
    while due <= t0() + secs(11) {
        step_to(&clock, due, Duration::from_millis(50)).await;
        wait_for(
            &scheduler,
            || {
                started
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(_, time, _)| *time == due)
            },
            &[due],
        )
        .await;
        let before = (due + secs(2) - TimeDelta::milliseconds(10)).min(t0() + secs(11));
        step_to(&clock, before, Duration::from_millis(50)).await;
        let ended: Vec<DateTime<Utc>> = (0..)
            .map(|n| t0() + secs(2 * n))
            .take_while(|time| *time + took <= before)
            .collect();
        wait_for(&scheduler, || false, &ended).await;
        due += secs(2);
    }
    step_to(&clock, t0() + secs(11), Duration::from_millis(50)).await;
    let runs = records(&scheduler, "slow").await;
    scheduler.shutdown(None).await;
    runs
}

/// A job every 2 s whose run takes 1.5 s, its next run handed over a second early
/// while the previous one still runs: it runs every 2 s, none skipped, none early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hand_over_does_not_skip_a_run_whose_predecessor_ends_before_its_time() {
    let runs = every_two_seconds_with_runs_of(Arc::new(MemoryStore::new()), 1500, 1).await;
    let started: Vec<DateTime<Utc>> = runs
        .iter()
        .filter(|run| run.outcome == RunOutcome::Success)
        .map(|run| run.scheduled_time)
        .collect();
    // Every 2 s from 0 s; the run at 10 s is still going when the test looks at 11 s.
    let want: Vec<DateTime<Utc>> = (0..5).map(|n| t0() + secs(2 * n)).collect();
    assert_eq!(started, want, "{runs:#?}");
    for run in &runs {
        assert!(
            run.started_at.is_some_and(|at| at >= run.scheduled_time),
            "{run:?}"
        );
    }
}

/// The same on the shipped store, SQLite, with its one-second window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hand_over_does_not_skip_runs_on_sqlite() {
    let path = std::env::temp_dir().join(format!("kairos-lifecycle-{:08x}.db", fastrand::u32(..)));
    let url = format!("sqlite://{}", path.display());
    let store = kairos::store::sql::connect(&url, Default::default())
        .await
        .unwrap();
    let runs = every_two_seconds_with_runs_of(store, 1500, 1).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let outcomes: Vec<(DateTime<Utc>, RunOutcome)> = runs
        .iter()
        .map(|run| (run.scheduled_time, run.outcome))
        .collect();
    let want: Vec<(DateTime<Utc>, RunOutcome)> = (0..5)
        .map(|n| (t0() + secs(2 * n), RunOutcome::Success))
        .collect();
    assert_eq!(outcomes, want, "{runs:#?}");
}

/// A run whose predecessor is still executing at its time is skipped, once, and
/// recorded as such; the one after it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_due_while_its_predecessor_executes_is_skipped_once() {
    let runs = every_two_seconds_with_runs_of(Arc::new(MemoryStore::new()), 2500, 1).await;
    let outcomes: Vec<(i64, RunOutcome)> = runs
        .iter()
        .map(|run| ((run.scheduled_time - t0()).num_seconds(), run.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (0, RunOutcome::Success),
            (2, RunOutcome::Skipped),
            (4, RunOutcome::Success),
            (6, RunOutcome::Skipped),
            (8, RunOutcome::Success),
            (10, RunOutcome::Skipped),
        ],
        "{runs:#?}"
    );
    let skipped = runs
        .iter()
        .find(|run| run.outcome == RunOutcome::Skipped)
        .unwrap();
    assert!(
        skipped
            .error
            .as_deref()
            .unwrap_or("")
            .contains("max_instances"),
        "{skipped:?}"
    );
}

/// What became of a job's early run after `change` was made through another
/// scheduler sharing the store, 400 ms before the run was due.
async fn early_run_after_a_change_elsewhere<F, Fut>(
    change: F,
) -> (Vec<RunRecord>, Vec<DateTime<Utc>>)
where
    F: FnOnce(Scheduler) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_millis(10));
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let holder = Scheduler::builder()
        .id("holder")
        .clock(clock.clone())
        .store_shared("default", Arc::clone(&store))
        .tasks(tasks.clone())
        .fire_ahead(Duration::from_secs(2))
        .build();
    // Another node: its handle writes to the same store; its loop never takes jobs.
    let other = Scheduler::builder()
        .id("other")
        .clock(clock.clone())
        .store_shared("default", Arc::clone(&store))
        .tasks(tasks)
        .build();
    holder
        .add_job(JobSpec::new("slow", date_at(10)).with_id("cancel-order"))
        .await
        .unwrap();
    holder.start();
    step_to(&clock, t0() + secs(9), Duration::from_millis(200)).await;
    // Handed over to the holder by now, and held for its time.
    assert!(started.lock().unwrap().is_empty());
    clock.set(t0() + secs(9) + TimeDelta::milliseconds(600));
    change(other).await;
    step_to(&clock, t0() + secs(12), Duration::from_millis(100)).await;
    let runs = records(&holder, "cancel-order").await;
    let starts = started
        .lock()
        .unwrap()
        .iter()
        .map(|(_, at, _)| *at)
        .collect();
    holder.shutdown(None).await;
    (runs, starts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_through_another_node_stops_a_run_held_early() {
    let (runs, starts) = early_run_after_a_change_elsewhere(|other| async move {
        other.pause_job("cancel-order").await.unwrap();
    })
    .await;
    assert!(starts.is_empty(), "it started: {runs:#?}");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].outcome, RunOutcome::Skipped);
    assert!(
        runs[0].error.as_deref().unwrap_or("").contains("paused"),
        "{runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_through_another_node_stops_a_run_held_early() {
    let (runs, starts) = early_run_after_a_change_elsewhere(|other| async move {
        other.remove_job("cancel-order").await.unwrap();
    })
    .await;
    assert!(starts.is_empty(), "it started: {runs:#?}");
    assert!(
        runs.iter().all(|run| run.outcome == RunOutcome::Skipped),
        "{runs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reschedule_through_another_node_moves_a_run_held_early() {
    let (runs, starts) = early_run_after_a_change_elsewhere(|other| async move {
        other
            .reschedule_job("cancel-order", date_at(11))
            .await
            .unwrap();
    })
    .await;
    // Not at its old time; at its new one.
    assert_eq!(starts, [t0() + secs(11)], "{runs:#?}");
    let old = runs
        .iter()
        .find(|run| run.scheduled_time == t0() + secs(10))
        .unwrap();
    assert_eq!(old.outcome, RunOutcome::Skipped, "{runs:#?}");
}

/// A shared store on a real server under a fresh prefix, or `None` (SKIP) when the
/// server is unreachable and `KAIROS_REQUIRE_SERVICES` is not set.
async fn shared_store(kind: &str, instance_ttl: Duration) -> Option<Arc<dyn JobStore>> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_owned());
    let url = match kind {
        "postgres" => env(
            "KAIROS_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
        _ => env("KAIROS_TEST_REDIS_URL", "redis://127.0.0.1:6379/"),
    };
    let options = kairos::store::OpenOptions {
        prefix: format!("lc{:08x}_", fastrand::u32(..)),
        instance_ttl,
    };
    match kairos::store::open(&url, &options).await {
        Ok(store) => Some(store),
        Err(error) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(!required, "{kind}: {error} (KAIROS_REQUIRE_SERVICES=1)");
            println!("SKIP {kind}: {error}");
            None
        }
    }
}

/// A one-off run three times longer than the lease (and than the instance slots'
/// time-to-live), with three nodes on one store: its node renews both while it runs,
/// so no other node takes the job over, and it starts once.
async fn a_run_three_leases_long_starts_once_on_three_nodes(kind: &str) {
    let Some(store) = shared_store(kind, Duration::from_secs(1)).await else {
        return;
    };
    let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = TaskRegistry::new();
    let counted = Arc::clone(&starts);
    tasks.register_fn("long", move |_run: TaskRun| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            Ok::<String, TaskFailure>(String::new())
        }
    });
    let nodes: Vec<Scheduler> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|id| {
            Scheduler::builder()
                .id(id)
                .store_shared("default", Arc::clone(&store))
                .tasks(tasks.clone())
                .lease(Duration::from_secs(1))
                .poll_interval(Duration::from_millis(100))
                .build()
        })
        .collect();
    let run_date = (Utc::now() + TimeDelta::milliseconds(1500)).to_rfc3339();
    let spec: TriggerSpec =
        serde_json::from_value(json!({"type": "date", "run_date": run_date})).unwrap();
    nodes[0]
        .add_job(JobSpec::new("long", spec).with_id("long"))
        .await
        .unwrap();
    for node in &nodes {
        node.start();
    }
    tokio::time::sleep(Duration::from_millis(6500)).await;
    assert_eq!(
        starts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{kind}"
    );
    assert!(
        store.get_job("long").await.unwrap().is_none(),
        "{kind}: the one-off job is gone after its run"
    );
    let runs = store.runs(Some("long"), 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{kind}: {runs:#?}");
    for node in &nodes {
        node.shutdown(None).await;
    }
    let _ = store.remove_all_jobs().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_three_leases_long_starts_once_on_three_postgres_nodes() {
    a_run_three_leases_long_starts_once_on_three_nodes("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_three_leases_long_starts_once_on_three_redis_nodes() {
    a_run_three_leases_long_starts_once_on_three_nodes("redis").await;
}

/// A run of two hours, in simulated time, with a five-minute lease: its node renews
/// the lease while it runs, so another node sharing the store never takes the job
/// over, and the job moves on to its next time only when the run ends.
///
/// The simulated clock moves 10 s a step, a few milliseconds of real time apart; the
/// renewal runs on the node's tasks in real time. A lease of many steps leaves a
/// loaded machine time to run the renewal: a node that stalls for a whole lease loses
/// its job to the other, as a real one would (docs/lifecycle.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_hour_run_keeps_its_job_the_whole_time() {
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_secs(2 * 3600));
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let build = |id: &str| {
        Scheduler::builder()
            .id(id)
            .clock(clock.clone())
            .store_shared("default", Arc::clone(&store))
            .tasks(tasks.clone())
            .lease(Duration::from_secs(300))
            .poll_interval(Duration::from_secs(10))
            .build()
    };
    let (holder, other) = (build("holder"), build("other"));
    let every_three_hours: TriggerSpec = serde_json::from_value(json!({
        "type": "interval", "hours": 3, "start_date": (t0() + secs(60)).to_rfc3339(),
    }))
    .unwrap();
    holder
        .add_job(JobSpec::new("slow", every_three_hours).with_id("nightly"))
        .await
        .unwrap();
    holder.start();
    step_to(&clock, t0() + secs(61), Duration::from_secs(1)).await;
    assert_eq!(started.lock().unwrap().len(), 1, "it started at 00:01");
    other.start();
    step_to(&clock, t0() + secs(2 * 3600 + 30), Duration::from_secs(10)).await;
    let starts = started.lock().unwrap().clone();
    assert_eq!(starts.len(), 1, "started again while running: {starts:?}");
    // Ended at 02:01; written back at its next time, 03:01.
    step_to(&clock, t0() + secs(2 * 3600 + 90), Duration::from_secs(10)).await;
    let job = store.get_job("nightly").await.unwrap().unwrap();
    assert_eq!(job.next_run_time, Some(t0() + secs(3 * 3600 + 60)));
    let runs = records(&holder, "nightly").await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].outcome, RunOutcome::Success);
    holder.shutdown(None).await;
    other.shutdown(None).await;
}

/// What a change does to jobs held early by a cluster: `nodes` schedulers on one
/// store, forty one-off jobs a second apart, each changed 400 ms before its time
/// through the nodes in turn. Returns the jobs that started anyway.
async fn changes_through_any_node_stop_early_runs(
    store: Arc<dyn JobStore>,
    nodes: usize,
    remove: bool,
) -> Vec<String> {
    const JOBS: i64 = 40;
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_millis(10));
    let schedulers: Vec<Scheduler> = (0..nodes)
        .map(|node| {
            Scheduler::builder()
                .id(format!("node-{node}"))
                .clock(clock.clone())
                .store_shared("default", Arc::clone(&store))
                .tasks(tasks.clone())
                .fire_ahead(Duration::from_secs(1))
                .poll_interval(Duration::from_millis(200))
                .build()
        })
        .collect();
    for job in 0..JOBS {
        schedulers[0]
            .add_job(JobSpec::new("slow", date_at(10 + job)).with_id(format!("cancel-{job}")))
            .await
            .unwrap();
    }
    for scheduler in &schedulers {
        scheduler.start();
    }
    step_to(&clock, t0() + secs(9), Duration::from_millis(500)).await;
    for job in 0..JOBS {
        let change_at = t0() + secs(10 + job) - TimeDelta::milliseconds(400);
        step_to(&clock, change_at, Duration::from_millis(100)).await;
        let through = &schedulers[usize::try_from(job).unwrap() % nodes];
        let id = format!("cancel-{job}");
        if remove {
            through.remove_job(&id).await.unwrap();
        } else {
            through.pause_job(&id).await.unwrap();
        }
    }
    step_to(
        &clock,
        t0() + secs(10 + JOBS + 2),
        Duration::from_millis(100),
    )
    .await;
    let ran: Vec<String> = started
        .lock()
        .unwrap()
        .iter()
        .map(|(job, _, _)| job.clone())
        .collect();
    for scheduler in &schedulers {
        scheduler.shutdown(None).await;
    }
    let _ = store.remove_all_jobs().await;
    ran
}

async fn cluster_changes(kind: &str) {
    for nodes in [2, 3] {
        for remove in [false, true] {
            let Some(store) = shared_store(kind, Duration::from_secs(3600)).await else {
                return;
            };
            let ran = changes_through_any_node_stop_early_runs(store, nodes, remove).await;
            let change = if remove { "removed" } else { "paused" };
            assert!(
                ran.is_empty(),
                "{kind}, {nodes} nodes: {} jobs {change} 400 ms before their time ran anyway: {ran:?}",
                ran.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_and_removals_through_any_postgres_node_stop_early_runs() {
    cluster_changes("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_and_removals_through_any_redis_node_stop_early_runs() {
    cluster_changes("redis").await;
}

/// Backfill: an hourly cron job's fire times over one day run once each, in order, as
/// one submission; the job's own schedule is untouched; a one-off job is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_of_a_day_runs_its_24_hourly_times_once_each() {
    // Half past the hour: the job's own next run is half an hour away.
    let clock = ManualClock::new(t0() + secs(30 * 24 * 3600 + 1800));
    let (tasks, started) = slow_task(&clock, Duration::from_millis(0));
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .tasks(tasks)
        .build();
    let hourly: TriggerSpec =
        serde_json::from_value(json!({"type": "cron", "minute": 0, "timezone": "UTC"})).unwrap();
    let job = scheduler
        .add_job(JobSpec::new("slow", hourly).with_id("hourly"))
        .await
        .unwrap();
    scheduler
        .add_job(JobSpec::new("slow", date_at(40 * 24 * 3600)).with_id("once"))
        .await
        .unwrap();
    scheduler.start();
    let (runs, _) = scheduler
        .backfill_job("hourly", t0(), t0() + secs(24 * 3600 - 1))
        .await
        .unwrap();
    assert_eq!(runs, 24);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while started.lock().unwrap().len() < 24 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let times: Vec<DateTime<Utc>> = started
        .lock()
        .unwrap()
        .iter()
        .map(|(_, at, _)| *at)
        .collect();
    let want: Vec<DateTime<Utc>> = (0..24).map(|hour| t0() + secs(hour * 3600)).collect();
    assert_eq!(times, want);
    let after = scheduler.get_job("hourly").await.unwrap().unwrap();
    assert_eq!(
        after.next_run_time, job.next_run_time,
        "its schedule is untouched"
    );
    let refused = scheduler
        .backfill_job("once", t0(), t0() + secs(3600))
        .await;
    assert!(
        matches!(refused, Err(SchedulerError::NothingToBackfill(ref id)) if id == "once"),
        "{refused:?}"
    );
    let too_many = scheduler
        .backfill_job("hourly", t0(), t0() + secs(60 * 24 * 3600))
        .await;
    assert!(too_many.is_err(), "more than 1,000 times: {too_many:?}");
    scheduler.shutdown(None).await;
}

/// A stored job whose trigger cannot be evaluated within its budget (written by an older
/// kairos, or straight to the store) is set aside as `broken`, with the reason, instead
/// of being taken as finished and deleted, and is not evaluated again on every pass; a
/// new trigger brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_trigger_is_too_costly_is_set_aside_as_broken_not_deleted() {
    use kairos::trigger::{Trigger, TriggerContext};
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_millis(0));
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .store_shared("default", Arc::clone(&store))
        .tasks(tasks)
        .build();
    // Parts that never agree (whole and half seconds) inside nested `and`s.
    let interval = |seconds: u64, start: &str| json!({"type": "interval", "seconds": seconds, "start_date": start});
    let costly: TriggerSpec = serde_json::from_value(json!({"type": "and", "triggers": [
        {"type": "and", "triggers": [
            interval(1000, "2030-01-01T00:00:00Z"),
            interval(1001, "2030-01-01T00:00:01Z"),
        ]},
        interval(1, "2030-01-01T00:00:00.5Z"),
    ]}))
    .unwrap();
    let mut job = common::job("costly", Some(t0() + secs(1)));
    job.task = "slow".to_owned();
    job.trigger = Trigger::new(costly, &TriggerContext::new(t0())).unwrap();
    store.add_job(job).await.unwrap();
    scheduler.start();
    step_to(&clock, t0() + secs(5), Duration::from_millis(100)).await;
    // Evaluating the trigger takes real time (its budget): on a loaded machine the
    // pass may end after the clock stopped moving.
    assert!(
        common::eventually(|| started.lock().unwrap().len() == 1).await,
        "its due time ran"
    );
    let mut kept = None;
    for _ in 0..1000 {
        let job = store.get_job("costly").await.unwrap();
        if job.as_ref().is_none_or(|job| job.state() == "broken") {
            kept = job;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kept = kept.expect("kept, not deleted");
    assert_eq!(kept.state(), "broken", "{kept:?}");
    assert_eq!(kept.next_run_time, None);
    assert!(
        kept.retry
            .broken
            .as_deref()
            .unwrap_or("")
            .contains("could not be computed"),
        "{kept:?}"
    );
    // Its due time still ran; nothing more.
    assert_eq!(started.lock().unwrap().len(), 1);
    // A new trigger brings it back.
    let fixed = scheduler
        .reschedule_job("costly", date_at(10))
        .await
        .unwrap();
    assert_eq!(fixed.state(), "scheduled");
    step_to(&clock, t0() + secs(11), Duration::from_millis(100)).await;
    assert!(
        common::eventually(|| started.lock().unwrap().len() == 2).await,
        "the new trigger's time ran"
    );
    scheduler.shutdown(None).await;
}
