//! The persistent stores under the scheduler: SQLite and PostgreSQL (and any other
//! store URL given).
//!
//! Per store: adding one-off jobs one by one and in batches, firing jobs spread over a
//! window through the real scheduler and clock, without and with a one-second
//! fire-ahead window (lateness p50/p99, measured as in `burst.rs`: the job reads the wall clock when it
//! starts), and the restart time with many pending jobs (connect, migrations checked,
//! first next run time read).
//!
//! Usage: `cargo bench --bench stores -- [--quick] [URL...]`. Default URLs: a fresh
//! SQLite file and the local PostgreSQL (`KAIROS_TEST_POSTGRES_URL` overrides). Full
//! sizes: 100,000 adds each way, 10,000 fires over 5 s, 1,000,000 pending for the
//! restart; `--quick`: 5,000 / 2,000 over 2 s / 50,000. Prints one JSON line per store.

#[path = "common/jobs.rs"]
mod jobs;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use jobs::one_off;
use kairos::job::{Job, JobSpec};
use kairos::scheduler::Scheduler;
use kairos::store::prelude::*;
use kairos::store::sql::{connect, SqlOptions};
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::{DateSpec, TriggerSpec};

/// The firing runs measured: (fire-ahead window, whether adds overlap the firing).
/// None and one second ahead with the adds done first, then one second ahead while
/// eight clients keep adding jobs one by one (as an order service does).
const FIRINGS: [(Duration, bool); 3] = [
    (Duration::ZERO, false),
    (Duration::from_secs(1), false),
    (Duration::from_secs(1), true),
];

/// How many clients add jobs concurrently while jobs fire, in the overlapping run.
const OVERLAP_CLIENTS: usize = 8;

struct Sizes {
    adds: usize,
    fires: usize,
    window: f64,
    pending: usize,
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

fn options(prefix: &str) -> SqlOptions {
    SqlOptions {
        table_prefix: prefix.to_owned(),
        ..SqlOptions::default()
    }
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let sizes = if quick {
        Sizes {
            adds: 5_000,
            fires: 2_000,
            window: 2.0,
            pending: 50_000,
        }
    } else {
        Sizes {
            adds: 100_000,
            fires: 10_000,
            window: 5.0,
            pending: 1_000_000,
        }
    };
    let mut urls: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let sqlite_file =
        std::env::temp_dir().join(format!("kairos-bench-{:08x}.db", fastrand::u32(..)));
    if urls.is_empty() {
        urls.push(format!("sqlite://{}", sqlite_file.display()));
        urls.push(
            std::env::var("KAIROS_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    for url in &urls {
        let prefix = format!("b{:08x}_", fastrand::u32(..));
        match runtime.block_on(measure(url, &prefix, &sizes)) {
            Ok(result) => println!("{result}"),
            Err(error) => eprintln!("{url}: {error}"),
        }
        runtime.block_on(drop_tables(url, &prefix));
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", sqlite_file.display()));
    }
}

async fn measure(url: &str, prefix: &str, sizes: &Sizes) -> Result<serde_json::Value, String> {
    let store = connect(url, options(prefix))
        .await
        .map_err(|error| error.to_string())?;
    let far = Utc::now() + TimeDelta::days(30);

    // Adding, one by one and in batches of 1,000.
    let started = Instant::now();
    for index in 0..sizes.adds {
        store
            .add_job(one_off(
                format!("single-{index}"),
                far + TimeDelta::seconds(index as i64),
            ))
            .await
            .map_err(|error| error.to_string())?;
    }
    let add_single = sizes.adds as f64 / started.elapsed().as_secs_f64();
    let jobs: Vec<Job> = (0..sizes.adds)
        .map(|index| {
            one_off(
                format!("batch-{index}"),
                far + TimeDelta::seconds(index as i64),
            )
        })
        .collect();
    let started = Instant::now();
    for chunk in jobs.chunks(1000) {
        store
            .add_jobs(chunk.to_vec())
            .await
            .map_err(|error| error.to_string())?;
    }
    let add_batch = sizes.adds as f64 / started.elapsed().as_secs_f64();
    store
        .remove_all_jobs()
        .await
        .map_err(|error| error.to_string())?;

    // Firing through the scheduler: all adds done first, then the window; once taking
    // jobs when due, once a second ahead; then a second ahead with adds going on.
    let mut firing = Vec::new();
    for (fire_ahead, overlap) in FIRINGS {
        let fired = fire(Arc::clone(&store), sizes, fire_ahead, overlap).await?;
        store
            .remove_all_jobs()
            .await
            .map_err(|error| error.to_string())?;
        let lateness = &fired.lateness;
        firing.push(serde_json::json!({
            "fire_ahead_s": fire_ahead.as_secs_f64(),
            "overlapping_adds_per_s": overlap.then_some(fired.overlapping_adds_per_s),
            "p50_ms": percentile(lateness, 0.50),
            "p99_ms": percentile(lateness, 0.99),
            "max_ms": lateness.last().copied().unwrap_or(f64::NAN),
            "lost": fired.lost,
        }));
    }

    // Restart with many pending jobs.
    let pending: Vec<Job> = (0..sizes.pending)
        .map(|index| {
            one_off(
                format!("pending-{index}"),
                far + TimeDelta::milliseconds(index as i64),
            )
        })
        .collect();
    for chunk in pending.chunks(1000) {
        store
            .add_jobs(chunk.to_vec())
            .await
            .map_err(|error| error.to_string())?;
    }
    drop(store);
    let started = Instant::now();
    let reopened = connect(url, options(prefix))
        .await
        .map_err(|error| error.to_string())?;
    let scheduler = Scheduler::builder()
        .store_shared("default", Arc::clone(&reopened))
        .build();
    scheduler.start();
    let first = reopened
        .next_run_time()
        .await
        .map_err(|error| error.to_string())?;
    let restart_ms = started.elapsed().as_secs_f64() * 1e3;
    scheduler.shutdown(None).await;
    if first.is_none() {
        return Err("the pending jobs did not survive the restart".to_owned());
    }

    Ok(serde_json::json!({
        "store": kairos::store::url::redact(url),
        "add_single_per_s": add_single,
        "add_batch_per_s": add_batch,
        "adds": sizes.adds,
        "fires": sizes.fires,
        "window_s": sizes.window,
        "lateness": firing,
        "pending": sizes.pending,
        "restart_ms": restart_ms,
    }))
}

/// What one firing run measured.
struct Fired {
    /// Sorted, in ms.
    lateness: Vec<f64>,
    /// Jobs that never ran.
    lost: usize,
    /// Single adds per second that the clients got through during the window.
    overlapping_adds_per_s: f64,
}

/// Fires `sizes.fires` one-off jobs spread over the window, with `overlap`: while
/// [`OVERLAP_CLIENTS`] clients add far-future jobs one by one.
async fn fire(
    store: Arc<dyn JobStore>,
    sizes: &Sizes,
    fire_ahead: Duration,
    overlap: bool,
) -> Result<Fired, String> {
    let lateness = Arc::new(Mutex::new(Vec::with_capacity(sizes.fires)));
    let mut tasks = TaskRegistry::new();
    let seen = Arc::clone(&lateness);
    tasks.register_fn("record", move |run: TaskRun| {
        let late = (Utc::now() - run.scheduled_time)
            .num_microseconds()
            .unwrap_or(0);
        seen.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(late as f64 / 1000.0);
        async { Ok::<String, TaskFailure>(String::new()) }
    });
    let scheduler = Scheduler::builder()
        .store_shared("default", store)
        .tasks(tasks)
        .fire_ahead(fire_ahead)
        .build();
    let first = Utc::now() + TimeDelta::seconds(3);
    let spacing = sizes.window / sizes.fires as f64;
    let specs: Vec<JobSpec> = (0..sizes.fires)
        .map(|index| {
            let at = first + TimeDelta::microseconds((index as f64 * spacing * 1e6) as i64);
            JobSpec::new(
                "record",
                TriggerSpec::Date(DateSpec {
                    run_date: Some(at.to_rfc3339()),
                    ..DateSpec::default()
                }),
            )
        })
        .collect();
    for chunk in specs.chunks(1000) {
        scheduler
            .add_jobs(chunk.to_vec())
            .await
            .map_err(|error| error.to_string())?;
    }
    if Utc::now() > first {
        return Err("adding took longer than the head start".to_owned());
    }
    scheduler.start();
    let adding = Arc::new(std::sync::atomic::AtomicBool::new(overlap));
    let added = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let adds_started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..if overlap { OVERLAP_CLIENTS } else { 0 } {
        let (scheduler, adding, added) = (scheduler.clone(), adding.clone(), added.clone());
        let far = Utc::now() + TimeDelta::days(30);
        clients.push(tokio::spawn(async move {
            let mut index: i64 = 0;
            while adding.load(std::sync::atomic::Ordering::Relaxed) {
                let spec = JobSpec::new(
                    "record",
                    TriggerSpec::Date(DateSpec {
                        run_date: Some((far + TimeDelta::milliseconds(index)).to_rfc3339()),
                        ..DateSpec::default()
                    }),
                )
                .with_id(format!("overlap-{client}-{index}"));
                if scheduler.add_job(spec).await.is_ok() {
                    added.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                index += 1;
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(3.0 + sizes.window + 10.0);
    let count = || {
        lateness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    };
    while count() < sizes.fires && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    adding.store(false, std::sync::atomic::Ordering::Relaxed);
    let adds_elapsed = adds_started.elapsed().as_secs_f64();
    for client in clients {
        let _ = client.await;
    }
    scheduler.shutdown(Some(Duration::from_secs(5))).await;
    let mut sorted = std::mem::take(
        &mut *lateness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    sorted.sort_by(f64::total_cmp);
    let lost = sizes.fires - sorted.len();
    Ok(Fired {
        lateness: sorted,
        lost,
        overlapping_adds_per_s: added.load(std::sync::atomic::Ordering::Relaxed) as f64
            / adds_elapsed,
    })
}

/// Drops the tables a run created (SQLite files are removed by `main`).
async fn drop_tables(url: &str, prefix: &str) {
    if !url.starts_with("postgres") {
        return;
    }
    let Ok(pool) = sqlx::PgPool::connect(url).await else {
        return;
    };
    for table in ["jobs", "instances", "runs", "schema_version"] {
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{table}"))
            .execute(&pool)
            .await;
    }
}
