//! The tokio-cron-scheduler 0.15 peer of the kairos benchmark suite.
//!
//! The same workloads as kairos's `benches/{burst,pending,recurring}.rs` and the
//! APScheduler twin `benches/compare/apscheduler_peer.py`, with one JSON line on stdout
//! per run. Lateness is measured the same way everywhere: the job reads the wall clock
//! when it starts, lateness = start - the time the job was meant to run.
//!
//! Fairest configuration: the default in-memory store, jobs added before `start()` so
//! the 500 ms ticker does not scan a growing job list while adding, and for the firing
//! workloads channels as large as the job count (`new_with_channel_size`): with the
//! default 200, a tick that activates more jobs than that overflows its broadcast
//! channels and the lagging receivers drop activations (28% of a 10,000-job burst). tokio-cron-scheduler has no knob for its tick (a fixed 500 ms sleep between
//! scans of every job) and keeps next ticks in whole seconds, so one-off jobs can also
//! fire up to a second early; both show in the lateness columns.
//!
//! Usage:
//!   kairos-compare-tcs burst JOBS WINDOW_S LEAD_S
//!   kairos-compare-tcs pending JOBS DAYS IDLE_S ADD_BUDGET_S
//!   kairos-compare-tcs recurring JOBS INTERVAL_S WINDOW_S LEAD_S

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio_cron_scheduler::{Job, JobScheduler};

const SYSTEM: &str = "tokio-cron-scheduler-0.15";

/// Resident and peak resident memory of this process in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User plus system CPU time of this process in milliseconds, all threads, from
/// `getrusage(RUSAGE_SELF)` (microseconds): the source kairos's benches and
/// APScheduler's peer read too, so the suite's CPU figures compare.
fn cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let ms = |time: libc::timeval| time.tv_sec as f64 * 1000.0 + time.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn lateness_json(mut lateness: Vec<f64>) -> serde_json::Value {
    let mut off: Vec<f64> = lateness.iter().map(|late| late.abs()).collect();
    off.sort_by(f64::total_cmp);
    lateness.sort_by(f64::total_cmp);
    serde_json::json!({
        "abs_p99": percentile(&off, 0.99),
        "p50": percentile(&lateness, 0.50),
        "p99": percentile(&lateness, 0.99),
        "max": lateness.last().copied().unwrap_or(f64::NAN),
        "min": lateness.first().copied().unwrap_or(f64::NAN),
    })
}

fn arg<T: std::str::FromStr>(args: &[String], index: usize, default: T) -> T {
    args.get(index)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("burst") => {
            burst(
                arg(&args, 1, 10_000),
                arg(&args, 2, 5.0),
                arg(&args, 3, 5.0),
            )
            .await
        }
        Some("pending") => {
            pending(
                arg(&args, 1, 1_000_000),
                arg(&args, 2, 30),
                arg(&args, 3, 60.0),
                arg(&args, 4, 300.0),
            )
            .await
        }
        Some("recurring") => {
            recurring(
                arg(&args, 1, 10_000),
                arg(&args, 2, 1),
                arg(&args, 3, 60),
                arg(&args, 4, 5.0),
            )
            .await
        }
        _ => {
            eprintln!("usage: kairos-compare-tcs burst|pending|recurring ...");
            std::process::exit(2);
        }
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(error) => {
            eprintln!("tokio-cron-scheduler: {error}");
            std::process::exit(1);
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// N one-off jobs spread over the window, the first `lead` seconds from now.
async fn burst(jobs: usize, window: f64, lead: f64) -> Result<serde_json::Value> {
    let mut scheduler = JobScheduler::new_with_channel_size(jobs.max(200)).await?;
    let lateness = Arc::new(Mutex::new(Vec::with_capacity(jobs)));
    let fired = Arc::new(AtomicUsize::new(0));
    let now_instant = Instant::now();
    let now = Utc::now();
    let spacing = window / jobs as f64;
    // The inputs exist before timing starts, as in the kairos and APScheduler twins.
    let runs: Vec<(Instant, DateTime<Utc>)> = (0..jobs)
        .map(|index| {
            let offset = Duration::from_secs_f64(lead + index as f64 * spacing);
            (
                now_instant + offset,
                now + TimeDelta::from_std(offset).unwrap_or_default(),
            )
        })
        .collect();
    let first = runs.first().map(|run| run.1).unwrap_or(now);
    let (baseline_kib, _) = memory_kib();
    let started = Instant::now();
    for (instant, at) in runs {
        let lateness = Arc::clone(&lateness);
        let fired = Arc::clone(&fired);
        let job = Job::new_one_shot_at_instant(instant, move |_, _| {
            let late = (Utc::now() - at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            lateness
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(late);
            fired.fetch_add(1, Ordering::Relaxed);
        })?;
        scheduler.add(job).await?;
    }
    let add_seconds = started.elapsed().as_secs_f64();
    let (pending_kib, _) = memory_kib();
    let late_adds = Utc::now() > first;
    scheduler.start().await?;
    let deadline = Instant::now() + Duration::from_secs_f64(lead + window + 10.0);
    while fired.load(Ordering::Relaxed) < jobs && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lateness = std::mem::take(
        &mut *lateness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    let _ = scheduler.shutdown().await;
    let (_, peak_kib) = memory_kib();
    Ok(serde_json::json!({
        "system": SYSTEM,
        "workload": "burst",
        "store": "memory",
        "jobs": jobs,
        "window_s": window,
        "lead_s": lead,
        "add_per_s": jobs as f64 / add_seconds,
        "fired": lateness.len(),
        "lost": jobs - lateness.len().min(jobs),
        "lateness_ms": lateness_json(lateness),
        "bytes_per_pending_job": (pending_kib.saturating_sub(baseline_kib) * 1024) as f64 / jobs as f64,
        "peak_rss_mib": peak_kib as f64 / 1024.0,
        "adding_overran_window_start": late_adds,
    }))
}

/// The order-cancel workload: N one-off jobs due over the next DAYS, added one by one
/// in due order (an order's cancel falls a fixed time after it was placed), then the
/// process is watched while it holds them.
async fn pending(jobs: usize, days: i64, idle: f64, budget: f64) -> Result<serde_json::Value> {
    let mut scheduler = JobScheduler::new().await?;
    let span = Duration::from_secs((days * 86_400) as u64);
    let spacing = span.as_secs_f64() / jobs as f64;
    let base = Instant::now() + Duration::from_secs(3600);
    let (baseline_kib, _) = memory_kib();
    let started = Instant::now();
    let mut added = 0;
    for index in 0..jobs {
        let at = base + Duration::from_secs_f64(index as f64 * spacing);
        let job = Job::new_one_shot_at_instant(at, |_, _| {})?;
        scheduler.add(job).await?;
        added += 1;
        if added % 10_000 == 0 && started.elapsed().as_secs_f64() > budget {
            break;
        }
    }
    let add_seconds = started.elapsed().as_secs_f64();
    let (pending_kib, _) = memory_kib();
    scheduler.start().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_ms();
    let watched = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(idle)).await;
    let cpu = cpu_ms() - before;
    let watched = watched.elapsed().as_secs_f64();
    let _ = scheduler.shutdown().await;
    Ok(serde_json::json!({
        "system": SYSTEM,
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

/// N jobs repeating every INTERVAL seconds, watched for WINDOW seconds.
///
/// A repeated job's n-th run is due at its first tick plus n intervals (the crate
/// advances a repeated job from its previous tick, never skipping one), so each job
/// counts its runs and its lateness is start - (first tick + n * interval).
async fn recurring(
    jobs: usize,
    interval: u64,
    window: u64,
    lead: f64,
) -> Result<serde_json::Value> {
    let mut scheduler = JobScheduler::new_with_channel_size(jobs.max(200)).await?;
    let lateness = Arc::new(Mutex::new(Vec::with_capacity(jobs * window as usize)));
    let counted = Arc::new(AtomicUsize::new(0));
    let runs_per_job = (window / interval.max(1)) as i64;
    let mut firsts = Vec::with_capacity(jobs);
    let started = Instant::now();
    for _ in 0..jobs {
        let first = Arc::new(AtomicI64::new(i64::MAX));
        let mine = Arc::clone(&first);
        let lateness = Arc::clone(&lateness);
        let counted = Arc::clone(&counted);
        let mut n: i64 = 0;
        let job = Job::new_repeated(Duration::from_secs(interval), move |_, _| {
            let now = Utc::now().timestamp_micros();
            let due = mine.load(Ordering::Relaxed) * 1_000_000 + n * interval as i64 * 1_000_000;
            if n < runs_per_job {
                lateness
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push((now - due) as f64 / 1000.0);
                counted.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
        })?;
        let id = scheduler.add(job).await?;
        firsts.push((id, first));
    }
    let add_seconds = started.elapsed().as_secs_f64();
    let mut latest_first = i64::MIN;
    for (id, first) in &firsts {
        let tick = scheduler
            .next_tick_for_job(*id)
            .await?
            .ok_or("a job without a next tick")?;
        first.store(tick.timestamp(), Ordering::Relaxed);
        latest_first = latest_first.max(tick.timestamp());
    }
    // No start date can be given: the jobs' first ticks are one interval after each
    // was created; the lead is only used to let the process settle.
    let _ = lead;
    scheduler.start().await?;
    let cpu_before = cpu_ms();
    let watch_start = Instant::now();
    // Watch until the last job's window has passed, plus a grace for stragglers.
    let end = latest_first + window as i64;
    let grace = 5;
    loop {
        let now = Utc::now().timestamp();
        if now >= end + grace
            || (now >= end && counted.load(Ordering::Relaxed) >= jobs * runs_per_job as usize)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = cpu_ms() - cpu_before;
    let watched = watch_start.elapsed().as_secs_f64();
    let lateness = std::mem::take(
        &mut *lateness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    let _ = scheduler.shutdown().await;
    let expected = jobs * runs_per_job as usize;
    Ok(serde_json::json!({
        "system": SYSTEM,
        "workload": "recurring",
        "store": "memory",
        "jobs": jobs,
        "interval_s": interval,
        "window_s": window,
        "add_per_s": jobs as f64 / add_seconds,
        "expected_runs": expected,
        "fired": lateness.len(),
        "lost": expected - lateness.len().min(expected),
        "lateness_ms": lateness_json(lateness),
        "cpu_ms": cpu,
        "cpu_percent": cpu / (watched * 1000.0) * 100.0,
    }))
}
