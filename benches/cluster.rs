//! The cluster benchmark: real `kairos run` daemons sharing one
//! store, measured from the outside.
//!
//! The workload, per run (the full size; `--quick` divides it):
//!
//! ```text
//! T0 ─ 100 recurring jobs, every second ───────────────────────────── T0+60s
//!              T0+20s ── 10,000 one-off jobs, evenly spread ── T0+40s
//!                                   T0+30s  (failover run) kill -9 one node
//! ```
//!
//! Each run is on 1, 2 or 3 nodes, plus a failover run on 3 nodes whose first node is
//! killed (SIGKILL) midway. Every job is the built-in `http` task calling a small
//! server in this process, which counts the calls per job: the ground truth of what
//! executed, whichever node did it and whether or not it lived to record it. The run
//! history in the store gives, per (job, scheduled time), when each recorded run
//! started. From these:
//!
//! - lateness: start − scheduled time of each recorded run (p50, p99, max);
//! - missed: runs that never executed (per job, fewer calls than scheduled times);
//! - unrecorded: runs that executed but left no record (the killed node's);
//! - duplicates: runs executed more than once; in the failover run, those scheduled
//!   around the kill (from 2 s before it to the fire-ahead window and a second after
//!   it) that the killed node had in hand and a survivor ran again after the failover
//!   are the in-flight window, where at-least-once allows a repeat; any other is a bug;
//! - failover: how long after the kill the last run due at or after it started.
//!
//! Nodes: lease 5 s, heartbeat 1 s, node timeout 3 s, the daemon's defaults for a
//! shared store otherwise (fire-ahead 1 s, poll 5 s, wake-ups through the store), a
//! thread pool of 32 workers.
//!
//! Usage: `cargo bench --bench cluster -- [--quick] [--store=postgres|redis|mariadb|URL]
//! [--nodes=1,2,3] [--no-failover]`. Prints one JSON line per run, then a Markdown table.

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/common/daemon.rs"]
#[allow(dead_code)]
mod daemon;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kairos::history::RunOutcome;
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::store::prelude::*;
use kairos::store::{self, OpenOptions};
use serde_json::json;

use daemon::{temp_dir, write, Daemon};

/// How big a run is.
#[derive(Clone, Copy, Debug)]
struct Size {
    one_off: usize,
    /// Over how long the one-off jobs are due, centred in the window.
    spread: i64,
    recurring: usize,
    /// How long the recurring jobs fire (one run per second each).
    window: i64,
}

const FULL: Size = Size {
    one_off: 10_000,
    spread: 20,
    recurring: 100,
    window: 60,
};

const QUICK: Size = Size {
    one_off: 1_000,
    spread: 5,
    recurring: 20,
    window: 15,
};

/// How long after adding the jobs the first is due: the daemons start meanwhile.
const LEAD: i64 = 5;
/// The daemons' fire-ahead window (their default for a shared store).
const FIRE_AHEAD: i64 = 1;

fn main() {
    #[cfg(feature = "mimalloc")]
    kairos::allocator::tune();
    let quick = std::env::args().any(|arg| arg == "--quick");
    let size = if quick { QUICK } else { FULL };
    let store = common::flag("store").unwrap_or_else(|| "postgres".to_owned());
    let url = match store.as_str() {
        "postgres" => std::env::var("KAIROS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        "redis" => std::env::var("KAIROS_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned()),
        "mariadb" | "mysql" => std::env::var("KAIROS_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned()),
        url => url.to_owned(),
    };
    let nodes: Vec<usize> = common::flag("nodes")
        .unwrap_or_else(|| "1,2,3".to_owned())
        .split(',')
        .filter_map(|count| count.trim().parse().ok())
        .filter(|count| (1..=9).contains(count))
        .collect();
    let failover = !std::env::args().any(|arg| arg == "--no-failover");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut results = Vec::new();
    let mut plan: Vec<(usize, bool)> = nodes.iter().map(|count| (*count, false)).collect();
    if failover {
        plan.push((3, true));
    }
    for (count, kill) in plan {
        eprintln!(
            "cluster: {count} node(s){} on {url} ...",
            if kill { ", kill -9 one midway" } else { "" }
        );
        match runtime.block_on(run(&url, size, count, kill)) {
            Ok(result) => {
                println!("{result}");
                results.push(result);
            }
            Err(error) => {
                eprintln!("cluster: {error}");
                std::process::exit(1);
            }
        }
    }
    println!();
    println!("{}", table(&results, size, quick));
}

/// Where one run's store lives.
struct Place {
    url: String,
    prefix: String,
}

impl Place {
    async fn open(&self) -> Result<Arc<dyn JobStore>, String> {
        let options = OpenOptions {
            prefix: self.prefix.clone(),
            ..OpenOptions::default()
        };
        store::open(&self.url, &options)
            .await
            .map_err(|error| error.to_string())
    }

    /// Drops the run's tables or keys.
    async fn clean(&self) {
        let tables = ["jobs", "instances", "runs", "nodes", "schema_version"];
        let statements = tables.map(|table| format!("DROP TABLE IF EXISTS {}{table}", self.prefix));
        if self.url.starts_with("postgres") {
            if let Ok(pool) = sqlx::PgPool::connect(&self.url).await {
                for statement in &statements {
                    let _ = sqlx::query(statement).execute(&pool).await;
                }
                pool.close().await;
            }
        } else if self.url.starts_with("mysql") || self.url.starts_with("mariadb") {
            if let Ok(pool) = sqlx::MySqlPool::connect(&self.url).await {
                for statement in &statements {
                    let _ = sqlx::query(statement).execute(&pool).await;
                }
                pool.close().await;
            }
        } else if self.url.starts_with("redis") {
            let Ok(client) = ::redis::Client::open(self.url.as_str()) else {
                return;
            };
            let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                return;
            };
            // The store turns the trailing `_` into `:`.
            let pattern = format!("{}*", self.prefix.trim_end_matches('_'));
            let keys: Vec<String> = ::redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut connection)
                .await
                .unwrap_or_default();
            for chunk in keys.chunks(1000) {
                let _ = ::redis::cmd("DEL")
                    .arg(chunk)
                    .query_async::<i64>(&mut connection)
                    .await;
            }
        }
    }
}

/// Calls per job id, as the target server saw them.
type Hits = Arc<Mutex<HashMap<String, u64>>>;

/// The server every job calls: `POST /hit/{job}` counts one execution of the job.
async fn target() -> Result<(String, Hits, tokio::task::JoinHandle<()>), String> {
    let hits: Hits = Arc::default();
    let counted = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/hit/{job}",
        axum::routing::post(
            move |axum::extract::Path(job): axum::extract::Path<String>| {
                let counted = Arc::clone(&counted);
                async move {
                    *counted
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .entry(job)
                        .or_insert(0) += 1;
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| error.to_string())?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{address}"), hits, server))
}

/// A job calling the target server.
fn http_job(id: &str, trigger: serde_json::Value, base: &str) -> Result<JobSpec, String> {
    let trigger = serde_json::from_value(trigger).map_err(|error| error.to_string())?;
    let mut spec = JobSpec::new("http", trigger)
        .with_id(id.to_owned())
        .with_args(json!({"url": format!("{base}/hit/{id}"), "method": "POST", "timeout": "10s"}));
    spec.options.executor = Some("default".to_owned());
    // Late runs (a failover) run late, each one, rather than merged or dropped.
    spec.options.coalesce = Some(false);
    Ok(spec)
}

/// One node's config.
fn write_config(dir: &Path, node: &str, place: &Place) {
    write(
        dir,
        "config.toml",
        &format!(
            r#"[scheduler]
node_id = "{node}"
lease = "5s"
heartbeat = "1s"
node_timeout = "3s"
shutdown_timeout = "10s"

[jobstores.default]
url = "{url}"
prefix = "{prefix}"

[executors.default]
type = "threadpool"
max_workers = 32

[api]
enabled = false
"#,
            url = place.url,
            prefix = place.prefix,
        ),
    );
}

/// What should run: scheduled times per job.
type Expected = BTreeMap<String, Vec<DateTime<Utc>>>;

async fn run(url: &str, size: Size, nodes: usize, kill: bool) -> Result<serde_json::Value, String> {
    let place = Place {
        url: url.to_owned(),
        prefix: format!("bc{:08x}_", fastrand::u32(..)),
    };
    let store = place.open().await?;
    let (base, hits, server) = target().await?;

    // The workload, added through the library before the daemons start.
    let first = (Utc::now() + TimeDelta::seconds(LEAD))
        .duration_trunc(TimeDelta::seconds(1))
        .map_err(|error| error.to_string())?
        + TimeDelta::seconds(1);
    let micros = |instant: DateTime<Utc>| {
        instant
            .duration_trunc(TimeDelta::microseconds(1))
            .unwrap_or(instant)
    };
    let mut expected = Expected::new();
    let mut specs = Vec::new();
    for index in 0..size.recurring {
        let id = format!("every-{index:03}");
        let last = first + TimeDelta::seconds(size.window - 1);
        expected.insert(
            id.clone(),
            (0..size.window)
                .map(|run| first + TimeDelta::seconds(run))
                .collect(),
        );
        let mut spec = http_job(
            &id,
            json!({"type": "interval", "seconds": 1,
                   "start_date": first.to_rfc3339(), "end_date": last.to_rfc3339()}),
            &base,
        )?;
        // A slot held by the killed node until it is reaped must not skip runs.
        spec.options.max_instances = Some(3);
        specs.push(spec);
    }
    let spread_from = first + TimeDelta::seconds((size.window - size.spread) / 2);
    let step = TimeDelta::microseconds(size.spread * 1_000_000 / size.one_off.max(1) as i64);
    for index in 0..size.one_off {
        let id = format!("once-{index:05}");
        let due = micros(spread_from + step * index as i32);
        expected.insert(id.clone(), vec![due]);
        specs.push(http_job(
            &id,
            json!({"type": "date", "run_date": due.to_rfc3339()}),
            &base,
        )?);
    }
    let writer = Scheduler::builder()
        .store_shared("default", Arc::clone(&store))
        .build();
    for chunk in specs.chunks(1000) {
        writer
            .add_jobs(chunk.to_vec())
            .await
            .map_err(|error| error.to_string())?;
    }
    if Utc::now() + TimeDelta::seconds(2) > first {
        return Err("adding the jobs took longer than the lead".to_owned());
    }

    // The daemons.
    let dir = temp_dir("bench-cluster");
    let mut daemons = Vec::new();
    for index in 0..nodes {
        let node = format!("node-{index}");
        let node_dir = dir.join(&node);
        write_config(&node_dir, &node, &place);
        let env = [
            // One line per run would cost more than the runs.
            ("RUST_LOG", "info,kairos::scheduler::event=warn"),
            ("HTTP_PROXY", ""),
            ("http_proxy", ""),
            ("NO_PROXY", "*"),
        ];
        daemons.push(Daemon::start_with_env(&node_dir, &env));
    }

    let end = first + TimeDelta::seconds(size.window);
    let until = |instant: DateTime<Utc>| (instant - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    let mut killed_at = None;
    if kill {
        tokio::time::sleep(until(first + TimeDelta::seconds(size.window / 2))).await;
        if let Some(victim) = daemons.first_mut() {
            victim.signal("KILL");
            killed_at = Some(Utc::now());
            victim.wait_exit(Duration::from_secs(10));
        }
    }
    // Everything due, then time for the last runs (and a failover) to end and record.
    let settle = if kill { 15 } else { 5 };
    tokio::time::sleep(until(end + TimeDelta::seconds(settle))).await;
    let started_stop = Instant::now();
    for daemon in daemons.iter_mut().skip(usize::from(kill)) {
        daemon.signal("TERM");
    }
    for daemon in daemons.iter_mut().skip(usize::from(kill)) {
        if !daemon
            .wait_exit(Duration::from_secs(30))
            .is_some_and(|status| status.success())
        {
            return Err(format!("a daemon did not stop cleanly:\n{}", daemon.log()));
        }
    }
    let stop_seconds = started_stop.elapsed().as_secs_f64();
    let records = store
        .runs(None, 10_000_000)
        .await
        .map_err(|error| error.to_string())?;
    let hits = hits
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    server.abort();

    // Per (job, scheduled time): when each recorded successful run started.
    let mut recorded: BTreeMap<(String, DateTime<Utc>), Vec<DateTime<Utc>>> = BTreeMap::new();
    let mut failed = 0;
    for record in &records {
        match (record.outcome, record.started_at) {
            (RunOutcome::Success, Some(started)) => recorded
                .entry((record.job_id.clone(), record.scheduled_time))
                .or_default()
                .push(started),
            _ => failed += 1,
        }
    }
    let expected_runs: usize = expected.values().map(Vec::len).sum();
    let executions: u64 = hits.values().sum();
    // Never executed: per job, fewer calls than scheduled times.
    let missed: u64 = expected
        .iter()
        .map(|(job, times)| {
            (times.len() as u64).saturating_sub(hits.get(job).copied().unwrap_or(0))
        })
        .sum();
    let unrecorded = expected
        .iter()
        .flat_map(|(job, times)| times.iter().map(move |time| (job.clone(), *time)))
        .filter(|key| !recorded.contains_key(key))
        .count();
    // In the in-flight window: scheduled from 2 s before the kill to the fire-ahead
    // window (and a second of slack) after it.
    let in_window = |scheduled: DateTime<Utc>| {
        killed_at.is_some_and(|kill| {
            scheduled >= kill - TimeDelta::seconds(2)
                && scheduled <= kill + TimeDelta::seconds(FIRE_AHEAD + 1)
        })
    };
    // Executed more than once: extra calls of a job. A one-off job's are at its one
    // scheduled time. A recurring job's repeat is of a time the killed node had
    // started (its call counted, its record lost with it) and a survivor ran again
    // after the failover: such a time has a record that started late, in the window.
    // Extra calls beyond those times are repeats outside the window.
    let (mut duplicates_in_window, mut duplicates_outside) = (0u64, 0u64);
    for (job, times) in &expected {
        let extra = hits
            .get(job)
            .copied()
            .unwrap_or(0)
            .saturating_sub(times.len() as u64);
        if extra == 0 {
            continue;
        }
        let taken_over = times
            .iter()
            .filter(|time| in_window(**time))
            .filter(|time| {
                recorded.get(&(job.clone(), **time)).is_some_and(|starts| {
                    starts.len() > 1
                        || starts
                            .iter()
                            .any(|started| *started - **time > TimeDelta::milliseconds(500))
                })
            })
            .count() as u64;
        let allowed = if times.len() == 1 {
            u64::from(times.iter().all(|time| in_window(*time)))
        } else {
            taken_over
        };
        duplicates_in_window += extra.min(allowed);
        duplicates_outside += extra.saturating_sub(allowed);
    }
    let mut lateness: Vec<f64> = recorded
        .iter()
        .filter_map(|(key, starts)| {
            let started = starts.iter().min()?;
            Some((*started - key.1).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    lateness.sort_by(f64::total_cmp);
    // Runs due at or after the kill: how long after it the last one started.
    let failover = killed_at.map(|kill| {
        recorded
            .iter()
            .filter(|(key, _)| key.1 >= kill - TimeDelta::seconds(FIRE_AHEAD))
            .filter_map(|(key, starts)| {
                let started = starts.iter().min()?;
                Some((*started - key.1.max(kill)).num_milliseconds() as f64 / 1000.0)
            })
            .fold(0.0, f64::max)
    });
    // Lateness of the runs away from the kill, the steady state around it.
    let steady: Vec<f64> = match killed_at {
        Some(kill) => {
            let mut steady: Vec<f64> = recorded
                .iter()
                .filter(|(key, _)| {
                    key.1 < kill - TimeDelta::seconds(2) || key.1 > kill + TimeDelta::seconds(10)
                })
                .filter_map(|(key, starts)| {
                    let started = starts.iter().min()?;
                    Some((*started - key.1).num_microseconds().unwrap_or(0) as f64 / 1000.0)
                })
                .collect();
            steady.sort_by(f64::total_cmp);
            steady
        }
        None => lateness.clone(),
    };
    let logs: Vec<String> = daemons.iter().map(Daemon::log).collect();
    let stale = logs
        .iter()
        .map(|log| log.matches("stale release rejected").count())
        .sum::<usize>();
    drop(daemons);
    drop(writer);
    drop(store);
    place.clean().await;
    let _ = std::fs::remove_dir_all(&dir);
    let kind = url.split(':').next().unwrap_or("?");
    Ok(json!({
        "store": kind,
        "nodes": nodes,
        "kill": kill,
        "one_off": size.one_off,
        "spread_s": size.spread,
        "recurring": size.recurring,
        "window_s": size.window,
        "expected_runs": expected_runs,
        "executions": executions,
        "recorded": records.len(),
        "failed_records": failed,
        "missed": missed,
        "unrecorded": unrecorded,
        "duplicates_in_flight_window": duplicates_in_window,
        "duplicates_outside": duplicates_outside,
        "lateness_ms": {
            "p50": common::percentile(&lateness, 0.50),
            "p99": common::percentile(&lateness, 0.99),
            "max": lateness.last().copied().unwrap_or(f64::NAN),
        },
        "steady_lateness_ms": {
            "p50": common::percentile(&steady, 0.50),
            "p99": common::percentile(&steady, 0.99),
            "max": steady.last().copied().unwrap_or(f64::NAN),
        },
        "failover_s": failover,
        "stale_releases_rejected": stale,
        "stop_s": stop_seconds,
    }))
}

/// The runs as a Markdown table.
fn table(results: &[serde_json::Value], size: Size, quick: bool) -> String {
    let mut text = format!(
        "{} size: {} one-off jobs over {} s and {} recurring jobs every second for {} s\n\n",
        if quick { "Quick" } else { "Full" },
        size.one_off,
        size.spread,
        size.recurring,
        size.window
    );
    text.push_str("| store | nodes | kill -9 | runs | executions | missed | duplicates outside / in the in-flight window | lateness p50 / p99 / max (ms) | failover (s) |\n");
    text.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    let ms = |value: &serde_json::Value| {
        value
            .as_f64()
            .map_or("–".to_owned(), |ms| format!("{ms:.1}"))
    };
    for result in results {
        let late = if result["kill"] == true {
            &result["steady_lateness_ms"]
        } else {
            &result["lateness_ms"]
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} / {} / {}{} | {} |\n",
            result["store"].as_str().unwrap_or("?"),
            result["nodes"],
            if result["kill"] == true {
                "one node"
            } else {
                "–"
            },
            result["expected_runs"],
            result["executions"],
            result["missed"],
            result["duplicates_outside"],
            result["duplicates_in_flight_window"],
            ms(&late["p50"]),
            ms(&late["p99"]),
            ms(&late["max"]),
            if result["kill"] == true {
                " (away from the kill)"
            } else {
                ""
            },
            result["failover_s"]
                .as_f64()
                .map_or("–".to_owned(), |seconds| format!("{seconds:.2}")),
        ));
    }
    text
}
