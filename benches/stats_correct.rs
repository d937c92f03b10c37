//! `stats.correct` against the original news app's approach, on the same seeded
//! database in the same run (faster than the original, peak
//! memory under 100 MB).
//!
//! ```text
//! cargo bench --bench stats_correct [-- --quick] [--rounds N] [--keep] [--concurrency N]
//! ```
//!
//! 1. Seeds a MariaDB database of its own (`kairos_bench_stats_<size>` next to
//!    `KAIROS_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`) with the
//!    news-seed dataset (examples/news-app/dataset.rs) of 1,000,000 attitudes,
//!    1,000,000 collections and 200,000 comments, plus the users, articles, follows
//!    and comment likes they go with; `--quick` uses 1/20 of that. With `--keep` the
//!    database stays, and a later run that finds it complete reuses it.
//! 2. Each round runs, one after the other, all eleven default counters:
//!    - kairos: `stats.correct` in a child process (this binary with `--child`), so its
//!      peak RSS (VmHWM) is the task's own and not the seeder's;
//!    - the original: `benches/compare/stats_original.py` (redis-py + PyMySQL, one
//!      MULTI/EXEC of DEL + ZADD per counter, every row fetched first) from
//!      `benches/compare/.venv`, made on first use from PyPI.
//!
//!    Each writes under its own Redis key prefix (`KAIROS_TEST_REDIS_URL`, default
//!    `redis://127.0.0.1:6379/`), so from the second round on both replace existing
//!    sets, as the nightly job does.
//! 3. Checks that both produced identical sorted sets, deletes the keys, and prints one
//!    JSON line: the median time and the highest peak RSS of each, and the ratios
//!    (kairos / original: below 1 is better).

#![allow(clippy::unwrap_used)]

#[path = "../examples/news-app/dataset.rs"]
mod dataset;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kairos::task::stats::{news_app_counters, StatsTask};
use kairos::task::{Task, TaskRun};
use redis::AsyncCommands;
use serde_json::{json, Value};

const KAIROS_PREFIX: &str = "kairos-bench:";
const ORIGINAL_PREFIX: &str = "original-bench:";
const FULL_SIZE: u64 = 1_000_000;
const VENV: &str = "benches/compare/.venv";

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(position) = args.iter().position(|arg| arg == "--child") {
        let settings: Value = serde_json::from_str(&args[position + 1]).unwrap();
        child(&settings);
        return;
    }
    let quick = args.iter().any(|arg| arg == "--quick");
    let keep = args.iter().any(|arg| arg == "--keep");
    let rounds: usize = args
        .iter()
        .position(|arg| arg == "--rounds")
        .map_or(3, |position| args[position + 1].parse().unwrap());
    // `[tasks.stats] concurrency`; unset, the task's default.
    let concurrency: Option<u64> = args
        .iter()
        .position(|arg| arg == "--concurrency")
        .map(|position| args[position + 1].parse().unwrap());
    let size = if quick { FULL_SIZE / 20 } else { FULL_SIZE };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(size, rounds, keep, concurrency));
}

/// Peak resident memory of this process, from /proc.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// `--child SETTINGS`: one run of the task; prints its time, peak RSS and output.
fn child(settings: &Value) {
    // A multi-threaded runtime with two workers, as the daemon's worker process has.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let task = StatsTask::from_settings(settings).unwrap();
    let started = Instant::now();
    let output = runtime
        .block_on(task.run(TaskRun {
            job_id: "fix-statistics".to_owned(),
            run_id: "bench".to_owned(),
            scheduled_time: chrono::Utc::now(),
            args: Value::Null,
            from_config: false,
        }))
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"system": "kairos", "seconds": seconds, "peak_rss_kib": peak_rss_kib(), "output": output})
    );
}

async fn bench(size: u64, rounds: usize, keep: bool, concurrency: Option<u64>) {
    let base = env("KAIROS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
    let redis_url = env("KAIROS_TEST_REDIS_URL", "redis://127.0.0.1:6379/");
    let name = format!("kairos_bench_stats_{size}");
    let (head, _) = base.rsplit_once('/').unwrap();
    let url = format!("{head}/{name}");
    let sizes = dataset::Sizes::for_size(size);

    let mut admin = dataset::Database::connect(&base).await.unwrap();
    if is_seeded(&url, &sizes).await {
        eprintln!("reusing the seeded database {name}");
    } else {
        admin
            .execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        admin
            .execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut database = dataset::Database::connect(&url).await.unwrap();
        database.create_schema().await.unwrap();
        eprintln!("seeding {name} with {} rows:", sizes.total());
        let started = Instant::now();
        database.seed(sizes, 1).await.unwrap();
        eprintln!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    }

    let python = python_venv();
    let counters: Vec<(String, String)> = news_app_counters()
        .into_iter()
        .map(|counter| (counter.key, counter.query))
        .collect();
    let counters_file = std::env::temp_dir().join(format!("kairos-bench-counters-{size}.json"));
    std::fs::write(&counters_file, serde_json::to_string(&counters).unwrap()).unwrap();
    let redis_client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut redis = redis_client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    delete_keys(&mut redis, KAIROS_PREFIX).await;
    delete_keys(&mut redis, ORIGINAL_PREFIX).await;

    let mut settings = json!({
        "database_url": url,
        "redis_url": redis_url,
        "key_prefix": KAIROS_PREFIX,
    });
    if let Some(concurrency) = concurrency {
        settings["concurrency"] = json!(concurrency);
    }
    let mut kairos_runs = Vec::new();
    let mut original_runs = Vec::new();
    for round in 1..=rounds {
        let kairos = run_json(
            Command::new(std::env::current_exe().unwrap())
                .arg("--child")
                .arg(settings.to_string()),
        );
        eprintln!(
            "round {round}: kairos   {:.2} s, peak {:.1} MiB",
            kairos["seconds"].as_f64().unwrap(),
            mib(&kairos)
        );
        let original = run_json(
            Command::new(&python)
                .arg("benches/compare/stats_original.py")
                .args(["--mysql-url", &url, "--redis-url", &redis_url])
                .args(["--prefix", ORIGINAL_PREFIX, "--counters"])
                .arg(&counters_file),
        );
        eprintln!(
            "round {round}: original {:.2} s, peak {:.1} MiB",
            original["seconds"].as_f64().unwrap(),
            mib(&original)
        );
        kairos_runs.push(kairos);
        original_runs.push(original);
    }

    // Both must have written the same counters, or the comparison means nothing.
    let mut members = 0;
    for (key, _) in &counters {
        let ours = zset(&mut redis, &format!("{KAIROS_PREFIX}{key}")).await;
        let theirs = zset(&mut redis, &format!("{ORIGINAL_PREFIX}{key}")).await;
        assert!(ours == theirs, "{key}: kairos and the original differ");
        members += ours.len();
    }
    delete_keys(&mut redis, KAIROS_PREFIX).await;
    delete_keys(&mut redis, ORIGINAL_PREFIX).await;
    let _ = std::fs::remove_file(&counters_file);
    if !keep {
        admin
            .execute(&format!("DROP DATABASE {name}"))
            .await
            .unwrap();
    }

    let kairos_seconds = median(&kairos_runs, "seconds");
    let original_seconds = median(&original_runs, "seconds");
    let kairos_peak = kairos_runs.iter().map(mib).fold(0.0, f64::max);
    let original_peak = original_runs.iter().map(mib).fold(0.0, f64::max);
    let summary = kairos_runs[0]["output"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    println!(
        "{}",
        json!({
            "bench": "stats_correct",
            "attitudes": sizes.attitudes,
            "collections": sizes.collections,
            "comments": sizes.comments,
            "rows": sizes.total(),
            "counters": counters.len(),
            "members": members,
            "rounds": rounds,
            "concurrency": concurrency,
            "kairos": {"seconds": round3(kairos_seconds), "peak_rss_mib": round3(kairos_peak), "first_run": summary},
            "original": {"seconds": round3(original_seconds), "peak_rss_mib": round3(original_peak)},
            "time_ratio": round3(kairos_seconds / original_seconds),
            "peak_rss_ratio": round3(kairos_peak / original_peak),
        })
    );
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn mib(run: &Value) -> f64 {
    // KiB counts are far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    let kib = run["peak_rss_kib"].as_u64().unwrap() as f64;
    kib / 1024.0
}

fn median(runs: &[Value], field: &str) -> f64 {
    let mut values: Vec<f64> = runs
        .iter()
        .map(|run| run[field].as_f64().unwrap())
        .collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `command` and parses the last line it printed as JSON.
fn run_json(command: &mut Command) -> Value {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// Whether the database at `url` already holds the dataset of `sizes` (from `--keep`).
async fn is_seeded(url: &str, sizes: &dataset::Sizes) -> bool {
    let Ok(pool) = sqlx::MySqlPool::connect(url).await else {
        return false;
    };
    let mut complete = true;
    for (table, rows) in [
        ("news_attitude", sizes.attitudes),
        ("news_collection", sizes.collections),
        ("news_comment", sizes.comments),
        ("orders", sizes.orders),
    ] {
        let count: Result<(i64,), _> = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await;
        complete &= matches!(count, Ok((count,)) if u64::try_from(count) == Ok(rows));
    }
    pool.close().await;
    complete
}

/// The venv's python with redis-py and PyMySQL, made on first use.
fn python_venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).unwrap();
    let python = root.join(VENV).join("bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import redis, pymysql"])
            .status()
            .is_ok_and(|status| status.success())
    };
    if !ready(&python) {
        if !python.exists() {
            let made = Command::new("python3")
                .args(["-m", "venv", VENV])
                .status()
                .unwrap();
            assert!(made.success(), "python3 -m venv {VENV} failed");
        }
        let installed = Command::new(root.join(VENV).join("bin/pip"))
            .args(["install", "--quiet", "redis==5.*", "PyMySQL==1.*"])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install redis PyMySQL failed");
    }
    python
}

async fn zset(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<(String, f64)> {
    redis.zrange_withscores(key, 0, -1).await.unwrap()
}

async fn delete_keys(redis: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis.del(keys).await.unwrap();
    }
}
