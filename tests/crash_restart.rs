//! Crash and restart of the real daemon on a persistent store: 1,000 one-off jobs due
//! over 10 s, `kill -9` of `kairos run` midway, then a restart under the same node id.
//!
//! What it shows: every job runs (none is lost, including the ones the killed daemon
//! had taken from the store and handed to its executor ahead of time but not started),
//! the store ends empty, and a job runs twice only if its run had started before the
//! kill while its one-off job was still in the store (the run was in flight, so the
//! restarted daemon cannot know it ran: at-least-once across a crash). The test counts
//! those from the run log and a snapshot of the store taken right after the kill, and
//! prints them.
//!
//! Each job appends its id to `runs.log` with a shell command (short `O_APPEND` writes
//! are atomic), so the log is the ground truth of which runs started, whatever the
//! daemon recorded.
//!
//! It runs on SQLite (a file in the temp dir) and PostgreSQL
//! (`KAIROS_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`, with
//! a table prefix of its own, dropped at the end). A server that cannot be reached
//! prints `SKIP <reason>` and passes, unless `KAIROS_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use common::daemon::{lines, temp_dir, wait_until, write, Daemon};
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::store::prelude::*;
use kairos::store::{self, OpenOptions};
use serde_json::json;

/// How many one-off jobs.
const JOBS: usize = 1000;
/// Over how long they are due.
const SPREAD: Duration = Duration::from_secs(10);
/// How long after they were added the first is due (the daemon starts meanwhile).
const FIRST_DUE: Duration = Duration::from_secs(2);
/// The node id of both daemons: the restart frees the leases the killed one left.
const NODE_ID: &str = "crash-restart-node";

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

/// Where the test's store lives.
struct Place {
    db: Db,
    url: String,
    prefix: String,
}

impl Place {
    fn new(db: Db, dir: &Path) -> Place {
        let prefix = format!("crash{:08x}_", fastrand::u32(..));
        let url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.join("state/kairos.db").display()),
            Db::Postgres => std::env::var("KAIROS_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        };
        Place { db, url, prefix }
    }

    async fn open(&self) -> Result<Arc<dyn JobStore>, store::OpenError> {
        let options = OpenOptions {
            prefix: self.prefix.clone(),
            ..OpenOptions::default()
        };
        store::open(&self.url, &options).await
    }

    async fn drop_tables(&self) {
        if let Db::Postgres = self.db {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            for table in [
                "jobs",
                "instances",
                "runs",
                "nodes",
                "config_generations",
                "schema_version",
            ] {
                let statement = format!("DROP TABLE IF EXISTS {}{table}", self.prefix);
                sqlx::query(&statement).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

/// The daemon's config: the store, 16 threads, no API, a fixed node id.
fn write_config(dir: &Path, place: &Place) {
    write(
        dir,
        "config.toml",
        &format!(
            r#"[scheduler]
node_id = "{NODE_ID}"
shutdown_timeout = "20s"

[jobstores.default]
url = "{url}"
prefix = "{prefix}"

[executors.default]
type = "threadpool"
max_workers = 16

[api]
enabled = false
"#,
            url = place.url,
            prefix = place.prefix,
        ),
    );
}

/// `job-0000` … `job-0999`.
fn job_id(index: usize) -> String {
    format!("job-{index:04}")
}

/// Adds the one-off jobs through the library, due over [`SPREAD`] from [`FIRST_DUE`]
/// after now; the scheduler that adds them is never started.
async fn add_jobs(store: Arc<dyn JobStore>) {
    let scheduler = Scheduler::builder().store_shared("default", store).build();
    let first = Utc::now() + TimeDelta::from_std(FIRST_DUE).unwrap();
    let step = SPREAD / u32::try_from(JOBS).unwrap();
    let specs = (0..JOBS)
        .map(|index| {
            let id = job_id(index);
            let due = first + TimeDelta::from_std(step * u32::try_from(index).unwrap()).unwrap();
            let trigger =
                serde_json::from_value(json!({"type": "date", "run_date": due.to_rfc3339()}))
                    .unwrap();
            let mut spec = JobSpec::new("command", trigger)
                .with_id(id.clone())
                .with_args(json!({"shell": true, "command": format!("echo {id} >> runs.log")}));
            spec.options.executor = Some("default".to_owned());
            spec
        })
        .collect();
    let added = scheduler.add_jobs(specs).await.unwrap();
    assert_eq!(added.len(), JOBS);
}

/// How many times each job id appears in `runs.log`.
fn run_counts(dir: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines(dir, "runs.log") {
        *counts.entry(line.trim().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Waits until `runs.log` stops growing (runs the killed daemon had started finish
/// their append), at most `timeout`; returns its lines.
fn settled_lines(dir: &Path, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut seen = lines(dir, "runs.log").len();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = lines(dir, "runs.log").len();
        if now == seen || Instant::now() >= deadline {
            return now;
        }
        seen = now;
    }
}

/// The two tests take turns: each wants the machine's cores for its daemon.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn crash_and_restart(db: Db) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = temp_dir("crash");
    let place = Place::new(db, &dir);
    let store = match place.open().await {
        Ok(store) => store,
        Err(error) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(!required, "{db:?}: {error} (KAIROS_REQUIRE_SERVICES=1)");
            println!("SKIP {db:?}: {error}");
            return;
        }
    };
    write_config(&dir, &place);
    add_jobs(Arc::clone(&store)).await;
    let started = Instant::now();

    // The first daemon, killed once about half the jobs ran.
    let mut daemon = Daemon::start(&dir);
    assert!(
        wait_until(Duration::from_secs(60), || lines(&dir, "runs.log").len()
            >= JOBS / 2),
        "half the jobs did not run in time:\n{}",
        daemon.log()
    );
    daemon.signal("KILL");
    daemon.wait_exit(Duration::from_secs(10)).expect("killed");
    let lines_at_kill = settled_lines(&dir, Duration::from_secs(5));
    let ran_before: BTreeSet<String> = run_counts(&dir).into_keys().collect();
    let left_in_store: BTreeSet<String> = store
        .get_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    // Started, but the one-off job was not yet released: the run was in flight.
    let in_flight: BTreeSet<&String> = ran_before.intersection(&left_in_store).collect();
    // Gone from the store without having started: lost for good.
    let lost_at_kill: Vec<String> = (0..JOBS)
        .map(job_id)
        .filter(|id| !ran_before.contains(id) && !left_in_store.contains(id))
        .collect();
    assert!(
        lost_at_kill.is_empty(),
        "{db:?}: {} job(s) left the store before they ran (first: {:?})",
        lost_at_kill.len(),
        lost_at_kill.first()
    );

    // The second daemon, under the same node id, runs the rest.
    let mut daemon = Daemon::start(&dir);
    let all_ran = wait_until(Duration::from_secs(60), || run_counts(&dir).len() >= JOBS);
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(30)).expect("it exits");
    assert!(status.success(), "{status:?}\n{}", daemon.log());

    let counts = run_counts(&dir);
    let missing: Vec<String> = (0..JOBS)
        .map(job_id)
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(
        all_ran && missing.is_empty(),
        "{db:?}: {} job(s) never ran (first: {:?})\n{}",
        missing.len(),
        missing.first(),
        daemon.log()
    );
    let unknown: Vec<&String> = counts.keys().filter(|id| !id.starts_with("job-")).collect();
    assert!(unknown.is_empty(), "stray lines in runs.log: {unknown:?}");
    let total: usize = counts.values().sum();
    let duplicates = total - counts.len();
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, &n)| n > 1).collect();
    eprintln!(
        "{db:?}: {JOBS} jobs, killed after {lines_at_kill} runs with {} jobs in the store, \
         {} in flight, {duplicates} duplicates, {total} runs in all, {:.1} s",
        left_in_store.len(),
        in_flight.len(),
        started.elapsed().as_secs_f64()
    );
    for (id, runs) in &duplicated {
        assert!(
            **runs == 2 && in_flight.contains(id),
            "{db:?}: {id} ran {runs} times but was not in flight at the kill \
             (in flight: {in_flight:?})"
        );
    }
    assert!(duplicates <= in_flight.len());
    let remaining = store.get_jobs().await.unwrap();
    assert!(
        remaining.is_empty(),
        "{db:?}: {} one-off job(s) stayed in the store after they ran: {:?}",
        remaining.len(),
        remaining.iter().map(|job| &job.id).collect::<Vec<_>>()
    );
    drop(store);
    place.drop_tables().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_kill_9_midway_loses_no_job_and_repeats_only_runs_in_flight() {
    crash_and_restart(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_kill_9_midway_loses_no_job_and_repeats_only_runs_in_flight() {
    crash_and_restart(Db::Postgres).await;
}
