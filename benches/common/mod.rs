//! What the comparison benches share: reading this process's memory (from /proc) and
//! CPU time (getrusage), percentiles, and the store a run is measured on
//! (`--store=memory|sqlite|URL`).
//!
//! Included with `#[path]` by `burst.rs`, `pending.rs` and `recurring.rs`; each uses a
//! different part, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use kairos::store::prelude::*;
use kairos::store::sql::{connect, SqlOptions};

mod allocator;

/// The process's resident and peak resident memory in KiB, from /proc.
pub fn memory_kib() -> (u64, u64) {
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
/// `getrusage(RUSAGE_SELF)` (microseconds). Every system of the comparison suite reads
/// its CPU this way (APScheduler's peer with Python's `resource.getrusage`,
/// tokio-cron-scheduler's with the same call as here), so the figures compare; /proc's
/// clock ticks (10 ms) would round an idle minute to 0 or 10 ms.
#[allow(unsafe_code)]
pub fn cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let ms = |time: libc::timeval| time.tv_sec as f64 * 1000.0 + time.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// The value at `fraction` of a sorted slice (nearest rank); NaN when empty.
pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// p50, p99, max and min of lateness samples in ms, as the JSON every system prints,
/// and `abs_p99`, the p99 of |lateness|: a run that starts early (a peer that rounds due
/// times to whole seconds) is as far off as one that starts late.
pub fn lateness_json(mut lateness: Vec<f64>) -> serde_json::Value {
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

/// The value of `--name=value` among the arguments.
pub fn flag(name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    std::env::args().find_map(|arg| arg.strip_prefix(&prefix).map(str::to_owned))
}

/// The arguments that are not flags.
pub fn positional() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect()
}

/// The store a run is measured on, and what to clean up after it.
pub struct BenchStore {
    /// `None` for the scheduler's default memory store.
    pub store: Option<Arc<dyn JobStore>>,
    /// `memory`, `sqlite` or `postgresql`, for the JSON line.
    pub kind: &'static str,
    url: String,
    prefix: String,
    sqlite_file: Option<PathBuf>,
}

impl BenchStore {
    /// `memory`; `sqlite` (a fresh file in the temp dir); or a PostgreSQL URL (tables
    /// with a fresh prefix, dropped by [`BenchStore::cleanup`]).
    pub async fn open(spec: &str) -> Result<BenchStore, String> {
        let prefix = format!("b{:08x}_", fastrand::u32(..));
        let (url, kind, sqlite_file) = match spec {
            "memory" => {
                return Ok(BenchStore {
                    store: None,
                    kind: "memory",
                    url: String::new(),
                    prefix,
                    sqlite_file: None,
                })
            }
            "sqlite" => {
                let file =
                    std::env::temp_dir().join(format!("kairos-bench-{:08x}.db", fastrand::u32(..)));
                (format!("sqlite://{}", file.display()), "sqlite", Some(file))
            }
            url if url.starts_with("postgres") => (url.to_owned(), "postgresql", None),
            other => return Err(format!("unknown store {other}")),
        };
        let options = SqlOptions {
            table_prefix: prefix.clone(),
            ..SqlOptions::default()
        };
        let store = connect(&url, options)
            .await
            .map_err(|error| error.to_string())?;
        Ok(BenchStore {
            store: Some(store),
            kind,
            url,
            prefix,
            sqlite_file,
        })
    }

    /// Drops the run's tables or removes its SQLite file.
    pub async fn cleanup(self) {
        drop(self.store);
        if let Some(file) = self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
        if self.kind == "postgresql" {
            if let Ok(pool) = sqlx::PgPool::connect(&self.url).await {
                for table in ["jobs", "instances", "runs", "schema_version"] {
                    let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {}{table}", self.prefix))
                        .execute(&pool)
                        .await;
                }
            }
        }
    }
}
