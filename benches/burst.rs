//! The burst workload: N one-off jobs spread over W seconds on the memory store.
//!
//! Reports the add rate, lateness (run start minus scheduled time, measured the same
//! way for every system: the task reads the wall clock when it starts), jobs lost and
//! memory per pending job. `benches/compare/burst.sh` runs it next to APScheduler 3.11
//! on the same workload.
//!
//! Usage: `cargo bench --bench burst -- [JOBS] [SECONDS] [--adders=K] [--lead=S]
//! [--store=memory|sqlite|URL] [--fire-ahead=MS]` (default 100000 10, one adding task, the first job due
//! 5 s after adding starts, the memory store). `--adders=K` adds from K tasks at once,
//! as an API server's connections do; `--store=sqlite` measures a fresh SQLite file and
//! a `postgres://` URL fresh tables there (dropped afterwards).
//! Prints one JSON line on stdout.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use kairos::executor::pool::ThreadPoolExecutor;
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::{DateSpec, TriggerSpec};

fn main() {
    #[cfg(feature = "mimalloc")]
    kairos::allocator::tune();
    let adders = std::env::args()
        .find_map(|arg| arg.strip_prefix("--adders=").and_then(|k| k.parse().ok()))
        .unwrap_or(1)
        .max(1);
    let lead: f64 = common::flag("lead")
        .and_then(|lead| lead.parse().ok())
        .unwrap_or(5.0);
    let store = common::flag("store").unwrap_or_else(|| "memory".to_owned());
    let positional = common::positional();
    let mut args = positional.iter();
    let jobs: usize = args
        .next()
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(100_000);
    let seconds: f64 = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(10.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(jobs, seconds, adders, lead, &store));
}

async fn run(jobs: usize, seconds: f64, adders: usize, lead: f64, store: &str) {
    let store = match common::BenchStore::open(store).await {
        Ok(store) => store,
        Err(error) => {
            eprintln!("store: {error}");
            std::process::exit(1);
        }
    };
    let lateness_ms = Arc::new(Mutex::new(Vec::with_capacity(jobs)));
    let fired = Arc::new(AtomicUsize::new(0));
    let mut tasks = TaskRegistry::new();
    {
        let lateness_ms = Arc::clone(&lateness_ms);
        let fired = Arc::clone(&fired);
        tasks.register_fn("record", move |run: TaskRun| {
            let late = (Utc::now() - run.scheduled_time)
                .num_microseconds()
                .unwrap_or(0);
            lateness_ms
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(late as f64 / 1000.0);
            fired.fetch_add(1, Ordering::Relaxed);
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
    // Jobs start firing `lead` seconds from now (adding must finish first, for the
    // slowest system too) and spread evenly over the window.
    let first = Utc::now() + TimeDelta::microseconds((lead * 1e6) as i64);
    let spacing = seconds / jobs as f64;
    // The inputs exist before timing starts, as they do in an API server that receives
    // dates as text; the timed part is the scheduler's work. (The APScheduler twin also
    // computes its run dates first.)
    let run_dates: Arc<Vec<String>> = Arc::new(
        (0..jobs)
            .map(|index| {
                let offset = TimeDelta::microseconds((index as f64 * spacing * 1e6) as i64);
                (first + offset).to_rfc3339()
            })
            .collect(),
    );
    let (baseline_kib, _) = common::memory_kib();
    let started = Instant::now();
    let mut adding = tokio::task::JoinSet::new();
    for adder in 0..adders {
        let scheduler = scheduler.clone();
        let run_dates = Arc::clone(&run_dates);
        adding.spawn(async move {
            for run_date in run_dates.iter().skip(adder).step_by(adders) {
                let spec = JobSpec::new(
                    "record",
                    TriggerSpec::Date(DateSpec {
                        run_date: Some(run_date.clone()),
                        ..DateSpec::default()
                    }),
                );
                if let Err(error) = scheduler.add_job(spec).await {
                    eprintln!("add_job failed: {error}");
                    std::process::exit(1);
                }
            }
        });
    }
    while adding.join_next().await.is_some() {}
    let add_seconds = started.elapsed().as_secs_f64();
    let (pending_kib, _) = common::memory_kib();
    let late_adds = Utc::now() > first;
    // Wait for the rest of the lead, the window and a grace of ten seconds.
    let deadline = Instant::now() + Duration::from_secs_f64(lead + seconds + 10.0);
    while fired.load(Ordering::Relaxed) < jobs && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    scheduler.shutdown(Some(Duration::from_secs(5))).await;
    let (_, peak_kib) = common::memory_kib();
    let lateness = std::mem::take(
        &mut *lateness_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    let fired_count = lateness.len();
    let result = serde_json::json!({
        "system": "kairos",
        "workload": "burst",
        "store": store.kind,
        "lead_s": lead,
        "jobs": jobs,
        "window_s": seconds,
        "add_per_s": jobs as f64 / add_seconds,
        "adders": adders,
        "fired": fired_count,
        "lost": jobs - fired_count.min(jobs),
        "lateness_ms": common::lateness_json(lateness),
        "bytes_per_pending_job": (pending_kib.saturating_sub(baseline_kib) * 1024) as f64 / jobs as f64,
        "peak_rss_mib": peak_kib as f64 / 1024.0,
        "adding_overran_window_start": late_adds,
    });
    println!("{result}");
    store.cleanup().await;
}
