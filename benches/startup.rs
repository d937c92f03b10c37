//! Start-up to READY: the time from starting `kairos run` to its `READY=1` on the
//! sd_notify socket (what systemd waits for), on the shipped config (SQLite, the demo
//! jobs, the API on loopback) and on SQLite holding many pending jobs.
//!
//! Usage: `cargo bench --bench startup -- [--quick]`. Full: 1,000,000 pending jobs;
//! `--quick`: 50,000. Prints one JSON line.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::store::{self, OpenOptions};
use kairos::trigger::{DateSpec, TriggerSpec};

/// Starts measured per configuration.
const STARTS: usize = 7;

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let pending = if quick { 50_000 } else { 1_000_000 };
    let dir = std::env::temp_dir().join(format!("kairos-startup-{:08x}", fastrand::u32(..)));
    std::fs::create_dir_all(dir.join("jobs")).expect("a temp dir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(repo.join("config.toml")).expect("config.toml");
    // The shipped config, with the API on a free port so runs never collide.
    let config = shipped.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    std::fs::write(dir.join("config.toml"), config).expect("write the config");
    for entry in std::fs::read_dir(repo.join("jobs")).expect("jobs/") {
        let path = entry.expect("a job file").path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dir.join("jobs").join(name)).expect("copy a job file");
        }
    }
    // The first start creates the database; the shipped case is measured after it.
    start_to_ready(&dir);
    let shipped_ms = median((0..STARTS).map(|_| start_to_ready(&dir)).collect());

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let filled = Instant::now();
    runtime.block_on(fill(&dir.join("var/kairos.db"), pending));
    let fill_s = filled.elapsed().as_secs_f64();
    let pending_ms = median((0..STARTS).map(|_| start_to_ready(&dir)).collect());
    println!(
        "{}",
        serde_json::json!({
            "starts": STARTS,
            "shipped_config_ready_ms_p50": shipped_ms,
            "pending_jobs": pending,
            "pending_ready_ms_p50": pending_ms,
            "fill_s": fill_s,
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Starts the daemon in `dir`, waits for READY=1, stops it; returns milliseconds.
fn start_to_ready(dir: &Path) -> f64 {
    let socket_path: PathBuf = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("a read timeout");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["run", "-c"])
        .arg(dir.join("config.toml"))
        .current_dir(dir)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kairos run");
    let mut buffer = [0u8; 4096];
    let elapsed = loop {
        let received = socket
            .recv(&mut buffer)
            .expect("a notification before the timeout");
        if String::from_utf8_lossy(&buffer[..received]).contains("READY=1") {
            break started.elapsed();
        }
    };
    let _ = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    elapsed.as_secs_f64() * 1000.0
}

/// Adds `count` one-off jobs due in a day to the daemon's SQLite store.
async fn fill(database: &Path, count: usize) {
    let url = format!("sqlite://{}", database.display());
    let store = store::open(&url, &OpenOptions::default())
        .await
        .expect("open the store");
    let scheduler = Scheduler::builder().store_shared("default", store).build();
    let due = Utc::now() + TimeDelta::days(1);
    let mut added = 0;
    while added < count {
        let batch: Vec<JobSpec> = (added..(added + 10_000).min(count))
            .map(|index| {
                let trigger = TriggerSpec::Date(DateSpec {
                    run_date: Some((due + TimeDelta::milliseconds(index as i64)).to_rfc3339()),
                    ..DateSpec::default()
                });
                JobSpec::new("command", trigger)
                    .with_id(format!("pending-{index}"))
                    .with_args(serde_json::json!({"argv": ["true"]}))
            })
            .collect();
        added += batch.len();
        scheduler.add_jobs(batch).await.expect("add a batch");
    }
}
