//! Idle cost: a scheduler holding 10,000 jobs due tomorrow, watched for a minute.
//!
//! docs/semantics.md: one timer sleeps until the earliest due time; no per-job timers and no
//! polling while idle. The only wake-ups are the system clock's bounded sleeps
//! (`kairos::clock::MAX_SLEEP`), which guard against wall-clock jumps.
//!
//! Usage: `cargo bench --bench idle -- [JOBS] [SECONDS]` (default 10000 60).
//! Prints one JSON line: the process's CPU time over the watch, from /proc.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::task::{TaskFailure, TaskRegistry};
use kairos::trigger::{DateSpec, TriggerSpec};

/// User plus system CPU time of this process, in clock ticks (1/100 s on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"));
    let jobs: i64 = args
        .next()
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(10_000);
    let seconds: u64 = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(60);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let mut tasks = TaskRegistry::new();
        tasks.register_fn("noop", |_| async {
            Ok::<String, TaskFailure>(String::new())
        });
        let scheduler = Scheduler::builder().tasks(tasks).build();
        scheduler.start();
        let tomorrow = Utc::now() + TimeDelta::days(1);
        for index in 0..jobs {
            let run_date = tomorrow + TimeDelta::seconds(index);
            let spec = JobSpec::new(
                "noop",
                TriggerSpec::Date(DateSpec {
                    run_date: Some(run_date.to_rfc3339()),
                    ..DateSpec::default()
                }),
            );
            if let Err(error) = scheduler.add_job(spec).await {
                eprintln!("add_job failed: {error}");
                std::process::exit(1);
            }
        }
        // Let the adding settle, then watch.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = cpu_ticks();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let ticks = cpu_ticks() - before;
        let watched = started.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "system": "kairos",
                "pending_jobs": jobs,
                "watched_s": watched,
                "cpu_ms": ticks * 10,
                "cpu_percent": ticks as f64 * 10.0 / (watched * 1000.0) * 100.0,
            })
        );
        scheduler.shutdown(None).await;
    });
}
