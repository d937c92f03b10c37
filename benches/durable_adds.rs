//! One-at-a-time durable adds next to the machine's bound for them, measured in the
//! same run.
//!
//! A lone caller that adds one job and waits until it is committed cannot go faster
//! than one durable commit per add. The bound is measured here, in the same run and on
//! the same storage or server as kairos:
//!
//! - SQLite: overwrite a 4 KiB page in place in a preallocated 4 MiB file beside the
//!   SQLite files and `fsync` it, in a loop: one WAL frame, committed as SQLite commits
//!   its WAL (`synchronous = FULL`; the bundled SQLite is built without
//!   `HAVE_FDATASYNC`, so it calls `fsync`), in the WAL's steady state (SQLite writes
//!   its WAL from the start again after each checkpoint). Appending 128 bytes and
//!   `fsync`ing is measured too and reported beside it (`append_fsync_per_s`): each
//!   append changes the file's size, which `fsync` must journal, so it is slower than
//!   what SQLite's commits cost once the WAL has its size, and no bound for them.
//! - PostgreSQL: a single-row `INSERT` on a trivial table (a BIGINT key and a short
//!   text), each its own commit (autocommit), over one connection to the same URL: one
//!   round trip and one WAL flush per row.
//!
//! kairos, on a fresh SQLite file or fresh PostgreSQL tables, one add after another:
//!
//! - `store`: `JobStore::add_job` of a one-off job (the store as the library opens it);
//! - `scheduler`: `Scheduler::add_job` on a started scheduler over a store of its own;
//! - `http`: the real `kairos run` daemon (its own fresh file or tables), one client
//!   `POST /api/v1/jobs` after another (keep-alive).
//!
//! The phases take turns in slices of at most half a second (bound, store, scheduler,
//! HTTP, append; in a fresh random order each turn), each getting the same total time,
//! so the machine's changing load falls on all of them alike. Ratios are kairos / bound.
//!
//! Usage: `cargo bench --bench durable_adds -- [--quick] [--seconds S] [URL...]`.
//! Default URLs: `sqlite` (fresh files in the temp dir) and
//! `postgres://postgres@127.0.0.1:5432/test` (`KAIROS_TEST_POSTGRES_URL` overrides).
//! 3 s per phase, `--quick` 1 s. Prints one JSON line per store.

#[path = "common/daemon.rs"]
mod daemon;

#[path = "common/jobs.rs"]
mod jobs;

#[path = "common/allocator.rs"]
mod allocator;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jobs::one_off;
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::store::prelude::*;
use kairos::store::sql::{connect, SqlOptions};
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::{DateSpec, TriggerSpec};
use sqlx::Connection;

use daemon::{drop_tables, Daemon, TOKEN};

/// What one phase measured: adds (or bound operations) done, its time, per-add times.
struct Phase {
    done: u64,
    seconds: f64,
    micros: Vec<f64>,
    errors: u64,
}

impl Phase {
    fn new() -> Phase {
        Phase {
            done: 0,
            seconds: 0.0,
            micros: Vec::new(),
            errors: 0,
        }
    }

    fn record(&mut self, ok: bool, began: Instant) {
        if ok {
            self.done += 1;
            self.micros.push(began.elapsed().as_secs_f64() * 1e6);
        } else {
            self.errors += 1;
        }
    }

    fn per_s(&self) -> f64 {
        self.done as f64 / self.seconds
    }

    fn p50_us(&mut self) -> f64 {
        self.micros.sort_by(f64::total_cmp);
        percentile(&self.micros, 0.5)
    }

    fn p99_us(&mut self) -> f64 {
        self.micros.sort_by(f64::total_cmp);
        percentile(&self.micros, 0.99)
    }
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

/// Runs `step` one call after another for `duration`, adding to `phase`; a step gets
/// a number unique within the phase and returns whether it worked.
async fn timed<F, Fut>(phase: &mut Phase, duration: Duration, mut step: F)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let deadline = start + duration;
    while Instant::now() < deadline && phase.errors <= 100 {
        let index = phase.done + phase.errors + 1;
        let began = Instant::now();
        let ok = step(index).await;
        phase.record(ok, began);
    }
    phase.seconds += start.elapsed().as_secs_f64();
}

/// The bound's state, kept across slices: its files or its connection.
enum Bound {
    /// SQLite: a preallocated file overwritten a page at a time (the WAL's steady
    /// state: SQLite reuses its WAL from the start after each checkpoint), and a file
    /// appended to (a WAL that grows, which `fsync` must also make the new size durable
    /// for).
    Files {
        overwrite: std::fs::File,
        append: std::fs::File,
        dir: PathBuf,
    },
    /// PostgreSQL: one connection and its trivial table.
    Postgres {
        connection: sqlx::PgConnection,
        table: String,
    },
}

/// Pages in the overwritten file: 4 MiB, the size of SQLite's WAL at its default
/// checkpoint (1,000 pages).
const BOUND_PAGES: u64 = 1024;
const PAGE: usize = 4096;

impl Bound {
    async fn open(target: &Target) -> Result<Bound, String> {
        match &target.sqlite_dir {
            Some(dir) => {
                let open = |name: &str, append: bool| {
                    let path = dir.join(name);
                    std::fs::OpenOptions::new()
                        .create(true)
                        .write(true)
                        .append(append)
                        .open(&path)
                        .map_err(|error| format!("{}: {error}", path.display()))
                };
                let mut overwrite = open("bound-overwrite.bin", false)?;
                overwrite
                    .write_all(&vec![0u8; PAGE * BOUND_PAGES as usize])
                    .and_then(|()| overwrite.sync_all())
                    .map_err(|error| format!("bound file: {error}"))?;
                Ok(Bound::Files {
                    overwrite,
                    append: open("bound-append.log", true)?,
                    dir: dir.clone(),
                })
            }
            None => {
                let mut connection = sqlx::PgConnection::connect(&target.url)
                    .await
                    .map_err(|error| error.to_string())?;
                let table = format!("{}bound", target.prefix);
                sqlx::query(&format!(
                    "CREATE TABLE {table} (id BIGINT PRIMARY KEY, v TEXT NOT NULL)"
                ))
                .execute(&mut connection)
                .await
                .map_err(|error| error.to_string())?;
                Ok(Bound::Postgres { connection, table })
            }
        }
    }

    /// One slice of the bound: overwrite a page and fsync (SQLite), or one single-row
    /// INSERT, its own commit (PostgreSQL), one after another. Blocking file calls on
    /// the runtime's thread: nothing else runs meanwhile, and a `spawn_blocking` hop
    /// per record would count against the bound, not kairos.
    async fn slice(&mut self, phase: &mut Phase, duration: Duration) {
        let start = Instant::now();
        let deadline = start + duration;
        let page = [b'x'; PAGE];
        while Instant::now() < deadline && phase.errors <= 100 {
            let index = phase.done + phase.errors + 1;
            let began = Instant::now();
            let ok = match self {
                Bound::Files { overwrite, .. } => {
                    use std::os::unix::fs::FileExt;
                    let offset = (index % BOUND_PAGES) * PAGE as u64;
                    overwrite.write_all_at(&page, offset).is_ok() && overwrite.sync_all().is_ok()
                }
                Bound::Postgres { connection, table } => {
                    sqlx::query(&format!("INSERT INTO {table} (id, v) VALUES ($1, $2)"))
                        .bind(index as i64)
                        .bind("order-cancel")
                        .execute(&mut *connection)
                        .await
                        .is_ok()
                }
            };
            phase.record(ok, began);
        }
        phase.seconds += start.elapsed().as_secs_f64();
    }

    /// SQLite only: one slice appending 128 bytes and fsyncing, for comparison.
    fn append_slice(&mut self, phase: &mut Phase, duration: Duration) {
        let Bound::Files { append, .. } = self else {
            return;
        };
        let start = Instant::now();
        let deadline = start + duration;
        let record = [b'x'; 128];
        while Instant::now() < deadline && phase.errors <= 100 {
            let began = Instant::now();
            let ok = append.write_all(&record).is_ok() && append.sync_all().is_ok();
            phase.record(ok, began);
        }
        phase.seconds += start.elapsed().as_secs_f64();
    }

    async fn close(self) {
        match self {
            Bound::Files { dir, .. } => {
                let _ = std::fs::remove_file(dir.join("bound-overwrite.bin"));
                let _ = std::fs::remove_file(dir.join("bound-append.log"));
            }
            Bound::Postgres {
                mut connection,
                table,
            } => {
                let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                    .execute(&mut connection)
                    .await;
            }
        }
    }
}

/// Where one store's figures are measured.
struct Target {
    /// `sqlite` or `postgresql`, for the JSON line.
    kind: &'static str,
    /// The library's store URL.
    url: String,
    /// Table prefix of the library's store (PostgreSQL) and of the bound's table.
    prefix: String,
    /// SQLite: the directory holding the library's file, the daemon's and the bound's.
    sqlite_dir: Option<PathBuf>,
}

fn far() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2099-01-01T00:00:00Z")
        .expect("a date")
        .with_timezone(&Utc)
}

async fn store_slice(store: &Arc<dyn JobStore>, phase: &mut Phase, duration: Duration) {
    timed(phase, duration, |index| {
        let store = Arc::clone(store);
        async move {
            let job = one_off(
                format!("store-{index}"),
                far() + TimeDelta::seconds(index as i64),
            );
            store.add_job(job).await.is_ok()
        }
    })
    .await;
}

async fn scheduler_slice(scheduler: &Scheduler, phase: &mut Phase, duration: Duration) {
    timed(phase, duration, |index| {
        let scheduler = scheduler.clone();
        async move {
            let mut spec = JobSpec::new(
                "record",
                TriggerSpec::Date(DateSpec {
                    run_date: Some((far() + TimeDelta::seconds(index as i64)).to_rfc3339()),
                    ..DateSpec::default()
                }),
            );
            spec.id = Some(format!("scheduler-{index}"));
            scheduler.add_job(spec).await.is_ok()
        }
    })
    .await;
}

async fn http_slice(
    client: &reqwest::Client,
    jobs_url: &str,
    phase: &mut Phase,
    duration: Duration,
) {
    timed(phase, duration, |index| {
        let client = client.clone();
        let jobs_url = jobs_url.to_owned();
        async move {
            // The body http_adds.rs sends, from one client.
            let body = serde_json::json!({
                "id": format!("order-cancel-{index}"),
                "task": "orders.cancel",
                "args": {"order_id": index},
                "trigger": {"type": "date", "run_date": "2099-01-01T00:00:00Z"},
            });
            match client
                .post(&jobs_url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
            {
                Ok(response) => {
                    let created = response.status() == reqwest::StatusCode::CREATED;
                    let _ = response.bytes().await;
                    created
                }
                Err(_) => false,
            }
        }
    })
    .await;
}

/// How long one slice of a phase is at most: the phases take turns in slices this
/// short, so a change in the machine's load (other work, the disk's other writers)
/// falls on the bound and on kairos alike.
const SLICE: Duration = Duration::from_millis(500);

/// All phases on one store, in turns; the JSON line.
async fn measure(target: &Target, duration: Duration) -> Result<serde_json::Value, String> {
    let mut bound = Bound::open(target).await?;
    let options = SqlOptions {
        table_prefix: target.prefix.clone(),
        ..SqlOptions::default()
    };
    let store = connect(&target.url, options)
        .await
        .map_err(|error| error.to_string())?;
    // The scheduler has its own store (file or tables): a started scheduler listens
    // for its store's changes (PostgreSQL) and would work on every add of the `store`
    // phase.
    let scheduler_prefix = format!("{}s_", target.prefix);
    let scheduler_url = match &target.sqlite_dir {
        Some(dir) => format!("sqlite://{}/scheduler.db", dir.display()),
        None => target.url.clone(),
    };
    let scheduler_store = connect(
        &scheduler_url,
        SqlOptions {
            table_prefix: scheduler_prefix.clone(),
            ..SqlOptions::default()
        },
    )
    .await
    .map_err(|error| error.to_string())?;
    let mut tasks = TaskRegistry::new();
    tasks.register_fn("record", |_run: TaskRun| async {
        Ok::<String, TaskFailure>(String::new())
    });
    let scheduler = Scheduler::builder()
        .tasks(tasks)
        .store_shared("default", scheduler_store)
        .build();
    scheduler.start();
    // The daemon gets its own file (SQLite) or tables (PostgreSQL), fresh like the
    // library's.
    let daemon_prefix = format!("{}d_", target.prefix);
    let (daemon_dir, daemon_url) = match &target.sqlite_dir {
        Some(dir) => {
            let daemon_dir = dir.join("daemon");
            let url = format!("sqlite://{}/kairos.db", daemon_dir.display());
            (daemon_dir, url)
        }
        None => (
            std::env::temp_dir().join(format!("kairos-durable-daemon-{:08x}", fastrand::u32(..))),
            target.url.clone(),
        ),
    };
    let daemon = Daemon::start(&daemon_dir, &daemon_url, &daemon_prefix);
    if let Err(error) = &daemon {
        eprintln!("durable_adds: {}: http: {error}", target.kind);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|error| error.to_string())?;

    let (mut by_bound, mut by_append, mut by_store, mut by_scheduler, mut by_http) = (
        Phase::new(),
        Phase::new(),
        Phase::new(),
        Phase::new(),
        Phase::new(),
    );
    let slices = (duration.as_secs_f64() / SLICE.as_secs_f64())
        .ceil()
        .max(1.0);
    let slice = duration.div_f64(slices);
    // A fresh order every turn: what one phase leaves behind (a checkpoint, a woken
    // listener, the disk's write-back) falls on each of the others alike.
    let mut order = [0, 1, 2, 3, 4];
    for _ in 0..slices as usize {
        fastrand::shuffle(&mut order);
        for phase in order {
            match phase {
                0 => bound.slice(&mut by_bound, slice).await,
                1 => store_slice(&store, &mut by_store, slice).await,
                2 => scheduler_slice(&scheduler, &mut by_scheduler, slice).await,
                3 => {
                    if let Ok(daemon) = &daemon {
                        let jobs_url = format!("{}/jobs", daemon.base_url);
                        http_slice(&client, &jobs_url, &mut by_http, slice).await;
                    }
                }
                _ => bound.append_slice(&mut by_append, slice),
            }
        }
    }

    scheduler.shutdown(Some(Duration::from_secs(5))).await;
    drop(scheduler);
    drop(store);
    drop_tables(&scheduler_url, &scheduler_prefix).await;
    let had_daemon = daemon.is_ok();
    drop(daemon);
    drop_tables(&daemon_url, &daemon_prefix).await;
    let _ = std::fs::remove_dir_all(&daemon_dir);
    bound.close().await;

    let bound_per_s = by_bound.per_s();
    let round = |value: f64| (value * 10.0).round() / 10.0;
    let ratio = |value: f64| (value / bound_per_s * 1000.0).round() / 1000.0;
    let mut line = serde_json::json!({
        "bench": "durable_adds",
        "system": "kairos",
        "workload": "durable",
        "store": target.kind,
        "seconds": duration.as_secs_f64(),
        "slices": slices,
        "bound": if target.sqlite_dir.is_some() {
            "overwrite a 4 KiB page + fsync, beside the SQLite files"
        } else {
            "single-row INSERT, autocommit, one connection"
        },
        "bound_per_s": round(bound_per_s),
        "bound_p50_us": round(by_bound.p50_us()),
        "store_adds_per_s": round(by_store.per_s()),
        "store_ratio": ratio(by_store.per_s()),
        "store_p50_us": round(by_store.p50_us()),
        "store_p99_us": round(by_store.p99_us()),
        "scheduler_adds_per_s": round(by_scheduler.per_s()),
        "scheduler_ratio": ratio(by_scheduler.per_s()),
        "scheduler_p50_us": round(by_scheduler.p50_us()),
        "errors": by_bound.errors + by_store.errors + by_scheduler.errors + by_http.errors,
    });
    if target.sqlite_dir.is_some() {
        line["append_fsync_per_s"] = round(by_append.per_s()).into();
        line["append_fsync_p50_us"] = round(by_append.p50_us()).into();
    }
    if had_daemon {
        line["http_adds_per_s"] = round(by_http.per_s()).into();
        line["http_ratio"] = ratio(by_http.per_s()).into();
        line["http_p50_us"] = round(by_http.p50_us()).into();
        line["http_p99_us"] = round(by_http.p99_us()).into();
    }
    Ok(line)
}

fn main() {
    #[cfg(feature = "mimalloc")]
    kairos::allocator::tune();
    let mut duration = Duration::from_secs(3);
    let mut urls = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => duration = Duration::from_secs(1),
            "--seconds" => {
                if let Some(seconds) = args.next().and_then(|value| value.parse::<f64>().ok()) {
                    duration = Duration::from_secs_f64(seconds);
                }
            }
            // `cargo bench` passes `--bench`.
            flag if flag.starts_with("--") => {}
            url => urls.push(url.to_owned()),
        }
    }
    if urls.is_empty() {
        urls = vec![
            "sqlite".to_owned(),
            std::env::var("KAIROS_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        ];
    }
    // reqwest is built without a default TLS provider; the API is plain HTTP anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut failed = false;
    for url in &urls {
        let prefix = format!("d{:08x}_", fastrand::u32(..));
        let target = if url == "sqlite" {
            let dir =
                std::env::temp_dir().join(format!("kairos-durable-{:08x}", fastrand::u32(..)));
            if let Err(error) = std::fs::create_dir_all(&dir) {
                eprintln!("durable_adds: {}: {error}", dir.display());
                failed = true;
                continue;
            }
            Target {
                kind: "sqlite",
                url: format!("sqlite://{}/kairos.db", dir.display()),
                prefix,
                sqlite_dir: Some(dir),
            }
        } else {
            Target {
                kind: "postgresql",
                url: url.clone(),
                prefix,
                sqlite_dir: None,
            }
        };
        match runtime.block_on(measure(&target, duration)) {
            Ok(line) => println!("{line}"),
            Err(error) => {
                eprintln!("durable_adds: {}: {error}", target.kind);
                failed = true;
            }
        }
        runtime.block_on(drop_tables(&target.url, &target.prefix));
        if let Some(dir) = &target.sqlite_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    if failed {
        std::process::exit(1);
    }
}
