//! The recurring workload: N interval jobs that all fire every INTERVAL seconds on the
//! same grid, watched for WINDOW seconds.
//!
//! Lateness is measured as everywhere else: the task reads the wall clock when it
//! starts and subtracts the time the run was scheduled for. Runs scheduled inside the
//! window count; a run that has not started ten seconds after the window is lost. The
//! CPU column is this process's CPU time over the window, in % of one core.
//!
//! No policy may drop a run: `coalesce = false`, no misfire limit, and `max_instances`
//! high enough that an overrunning run never blocks the next (the same settings as the
//! APScheduler twin in `benches/compare/apscheduler_peer.py`).
//!
//! Usage: `cargo bench --bench recurring -- [JOBS] [INTERVAL_S] [WINDOW_S] [--lead=S]
//! [--store=memory|sqlite|URL] [--fire-ahead=MS]` (default 10000 1 60, the first fire 5 s after adding
//! starts, rounded up to a whole second). Prints one JSON line.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kairos::executor::pool::ThreadPoolExecutor;
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::{IntervalSpec, TriggerSpec};

fn main() {
    #[cfg(feature = "mimalloc")]
    kairos::allocator::tune();
    let positional = common::positional();
    let number = |index: usize, default: u64| {
        positional
            .get(index)
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let (jobs, interval, window) = (number(0, 10_000) as usize, number(1, 1), number(2, 60));
    let lead: f64 = common::flag("lead")
        .and_then(|lead| lead.parse().ok())
        .unwrap_or(5.0);
    let store = common::flag("store").unwrap_or_else(|| "memory".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(jobs, interval.max(1), window, lead, &store)) {
        Ok(line) => println!("{line}"),
        Err(error) => {
            eprintln!("recurring: {error}");
            std::process::exit(1);
        }
    }
}

async fn run(
    jobs: usize,
    interval: u64,
    window: u64,
    lead: f64,
    store: &str,
) -> Result<serde_json::Value, String> {
    let store = common::BenchStore::open(store).await?;
    let runs_per_job = (window / interval) as usize;
    // The first fire, on a whole second; runs scheduled before `end` count.
    let first: DateTime<Utc> = (Utc::now() + TimeDelta::microseconds((lead * 1e6) as i64))
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|error| error.to_string())?
        + TimeDelta::seconds(1);
    let end = first + TimeDelta::seconds((runs_per_job as u64 * interval) as i64);
    let lateness = Arc::new(Mutex::new(Vec::with_capacity(jobs * runs_per_job)));
    let counted = Arc::new(AtomicUsize::new(0));
    let mut tasks = TaskRegistry::new();
    {
        let lateness = Arc::clone(&lateness);
        let counted = Arc::clone(&counted);
        tasks.register_fn("record", move |run: TaskRun| {
            let late = (Utc::now() - run.scheduled_time)
                .num_microseconds()
                .unwrap_or(0);
            if run.scheduled_time < end {
                lateness
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(late as f64 / 1000.0);
                counted.fetch_add(1, Ordering::Relaxed);
            }
            async { Ok::<String, TaskFailure>(String::new()) }
        });
    }
    let mut builder = Scheduler::builder()
        .tasks(tasks)
        .executor("default", ThreadPoolExecutor::new(16));
    // The library's default unless given (`--fire-ahead=MS`).
    if let Some(window) = common::flag("fire-ahead").and_then(|ms| ms.parse::<u64>().ok()) {
        builder = builder.fire_ahead(Duration::from_millis(window));
    }
    if let Some(shared) = &store.store {
        builder = builder.store_shared("default", Arc::clone(shared));
    }
    let scheduler = builder.build();
    scheduler.start();
    let started = Instant::now();
    for _ in 0..jobs {
        let mut spec = JobSpec::new(
            "record",
            TriggerSpec::Interval(Box::new(IntervalSpec {
                seconds: interval,
                start_date: Some(first.to_rfc3339()),
                ..IntervalSpec::default()
            })),
        );
        spec.options.coalesce = Some(false);
        spec.options.max_instances = Some(1000);
        spec.options.misfire_grace_time = None;
        scheduler
            .add_job(spec)
            .await
            .map_err(|error| error.to_string())?;
    }
    let add_seconds = started.elapsed().as_secs_f64();
    let late_adds = Utc::now() > first;
    let until = |instant: DateTime<Utc>| (instant - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    tokio::time::sleep(until(first)).await;
    let cpu_before = common::cpu_ms();
    let watched = Instant::now();
    let expected = jobs * runs_per_job;
    let deadline = end + TimeDelta::seconds(10);
    loop {
        let now = Utc::now();
        if now >= deadline || (now >= end && counted.load(Ordering::Relaxed) >= expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = common::cpu_ms() - cpu_before;
    let watched = watched.elapsed().as_secs_f64();
    scheduler.shutdown(Some(Duration::from_secs(5))).await;
    let lateness = std::mem::take(
        &mut *lateness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    let fired = lateness.len();
    let kind = store.kind;
    store.cleanup().await;
    Ok(serde_json::json!({
        "system": "kairos",
        "workload": "recurring",
        "store": kind,
        "jobs": jobs,
        "interval_s": interval,
        "window_s": window,
        "add_per_s": jobs as f64 / add_seconds,
        "adding_overran_first_fire": late_adds,
        "expected_runs": expected,
        "fired": fired,
        "lost": expected - fired.min(expected),
        "lateness_ms": common::lateness_json(lateness),
        "cpu_ms": cpu,
        "cpu_percent": cpu / (watched * 1000.0) * 100.0,
    }))
}
