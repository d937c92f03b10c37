//! The order-cancel workload at scale: a shop schedules one cancel job per order, due a
//! fixed time after the order, so a busy scheduler holds a million one-off jobs due
//! over the next 30 days, added one by one in due order.
//!
//! Two modes, each printing one JSON line:
//! - `cargo bench --bench pending -- [JOBS] [DAYS] [IDLE_S] [--budget=S]` (default
//!   1000000 30 60 300): on the memory store, the add rate, the resident memory per
//!   pending job, and the CPU used over IDLE_S seconds while holding them. Adding stops
//!   at the budget (checked every 10,000 adds) and says so (`capped`).
//! - `cargo bench --bench pending -- restart FILE [JOBS]`: fills the SQLite file FILE
//!   with JOBS pending jobs when it does not exist yet (in batches, the fastest way in),
//!   then measures a restart on it: connect, migrations checked, scheduler started and
//!   the first next run time read.
//!
//! `benches/compare/run.sh` runs both next to APScheduler 3.11 and tokio-cron-scheduler.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::store::sql::{connect, SqlOptions};
use kairos::task::{TaskFailure, TaskRegistry};
use kairos::trigger::{DateSpec, TriggerSpec};

fn main() {
    #[cfg(feature = "mimalloc")]
    kairos::allocator::tune();
    let positional = common::positional();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = if positional.first().map(String::as_str) == Some("restart") {
        let Some(file) = positional.get(1) else {
            eprintln!("usage: pending restart FILE [JOBS]");
            std::process::exit(2);
        };
        let jobs = positional
            .get(2)
            .and_then(|jobs| jobs.parse().ok())
            .unwrap_or(1_000_000);
        runtime.block_on(restart(Path::new(file), jobs))
    } else {
        let number = |index: usize, default: f64| {
            positional
                .get(index)
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
        };
        let budget = common::flag("budget")
            .and_then(|budget| budget.parse().ok())
            .unwrap_or(300.0);
        runtime.block_on(hold(
            number(0, 1e6) as usize,
            number(1, 30.0) as i64,
            number(2, 60.0),
            budget,
        ))
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(error) => {
            eprintln!("pending: {error}");
            std::process::exit(1);
        }
    }
}

/// A one-off job due at `due`.
fn one_off(due: chrono::DateTime<Utc>) -> JobSpec {
    JobSpec::new(
        "noop",
        TriggerSpec::Date(DateSpec {
            run_date: Some(due.to_rfc3339()),
            ..DateSpec::default()
        }),
    )
}

fn noop_tasks() -> TaskRegistry {
    let mut tasks = TaskRegistry::new();
    tasks.register_fn("noop", |_| async {
        Ok::<String, TaskFailure>(String::new())
    });
    tasks
}

/// Adds `jobs` one-off jobs due over `days`, then watches the idle process.
async fn hold(jobs: usize, days: i64, idle: f64, budget: f64) -> Result<serde_json::Value, String> {
    let scheduler = Scheduler::builder().tasks(noop_tasks()).build();
    scheduler.start();
    // Due over the next `days`, the first in an hour, in due order; the dates exist
    // before timing starts, as an API server receives them as text. They stay alive
    // until memory is measured: freed during the adds, their ~56 bytes a job would be
    // reused by the store and counted in its favour.
    let base = Utc::now() + TimeDelta::hours(1);
    let spacing_us = days * 86_400 * 1_000_000 / jobs.max(1) as i64;
    let dates: Vec<String> = (0..jobs)
        .map(|index| (base + TimeDelta::microseconds(index as i64 * spacing_us)).to_rfc3339())
        .collect();
    let (baseline_kib, _) = common::memory_kib();
    let started = Instant::now();
    let mut added = 0;
    for date in &dates {
        let spec = JobSpec::new(
            "noop",
            TriggerSpec::Date(DateSpec {
                run_date: Some(date.clone()),
                ..DateSpec::default()
            }),
        );
        scheduler
            .add_job(spec)
            .await
            .map_err(|error| error.to_string())?;
        added += 1;
        if added % 10_000 == 0 && started.elapsed().as_secs_f64() > budget {
            break;
        }
    }
    let add_seconds = started.elapsed().as_secs_f64();
    let (pending_kib, _) = common::memory_kib();
    drop(dates);
    // Let the adding settle, then watch.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = common::cpu_ms();
    let watched = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(idle)).await;
    let cpu = common::cpu_ms() - before;
    let watched = watched.elapsed().as_secs_f64();
    scheduler.shutdown(None).await;
    Ok(serde_json::json!({
        "system": "kairos",
        "workload": "pending",
        "store": "memory",
        "jobs": jobs,
        "added": added,
        "capped": added < jobs,
        "add_per_s": added as f64 / add_seconds,
        "bytes_per_pending_job": (pending_kib.saturating_sub(baseline_kib) * 1024) as f64 / added as f64,
        "rss_mib": pending_kib as f64 / 1024.0,
        "idle_s": watched,
        "idle_cpu_ms": cpu,
        "idle_cpu_percent": cpu / (watched * 1000.0) * 100.0,
    }))
}

/// Fills `file` with `jobs` pending jobs if it does not exist, then times a restart.
async fn restart(file: &Path, jobs: usize) -> Result<serde_json::Value, String> {
    let url = format!("sqlite://{}", file.display());
    let mut fill_s = None;
    if !file.exists() {
        let started = Instant::now();
        let store = connect(&url, SqlOptions::default())
            .await
            .map_err(|error| error.to_string())?;
        let scheduler = Scheduler::builder()
            .tasks(noop_tasks())
            .store_shared("default", Arc::clone(&store))
            .build();
        let base = Utc::now() + TimeDelta::hours(1);
        let spacing_us = 30 * 86_400 * 1_000_000 / jobs.max(1) as i64;
        let mut added = 0;
        while added < jobs {
            let batch: Vec<JobSpec> = (added..(added + 10_000).min(jobs))
                .map(|index| one_off(base + TimeDelta::microseconds(index as i64 * spacing_us)))
                .collect();
            added += batch.len();
            scheduler
                .add_jobs(batch)
                .await
                .map_err(|error| error.to_string())?;
        }
        drop(scheduler);
        drop(store);
        fill_s = Some(started.elapsed().as_secs_f64());
    }
    let started = Instant::now();
    let store = connect(&url, SqlOptions::default())
        .await
        .map_err(|error| error.to_string())?;
    let scheduler = Scheduler::builder()
        .tasks(noop_tasks())
        .store_shared("default", Arc::clone(&store))
        .build();
    scheduler.start();
    let first = store
        .next_run_time()
        .await
        .map_err(|error| error.to_string())?;
    let restart_ms = started.elapsed().as_secs_f64() * 1e3;
    let (rss_kib, _) = common::memory_kib();
    scheduler.shutdown(None).await;
    if first.is_none() {
        return Err("the pending jobs did not survive the restart".to_owned());
    }
    Ok(serde_json::json!({
        "system": "kairos",
        "workload": "restart",
        "store": "sqlite",
        "jobs": jobs,
        "fill_s": fill_s,
        "restart_ms": restart_ms,
        "rss_after_restart_mib": rss_kib as f64 / 1024.0,
    }))
}
