//! The real `kairos run` daemon for the HTTP benches (`http_adds.rs`,
//! `durable_adds.rs`): started on a config for one store, its API address read from its
//! log, killed when dropped; and the tables a PostgreSQL run leaves, dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The API token of the bench daemon's config.
pub const TOKEN: &str = "bench-token";

/// A `kairos run` child on a config for `store_url`; killed when dropped.
pub struct Daemon {
    child: Child,
    /// The API's base URL, `http://127.0.0.1:PORT/api/v1`.
    pub base_url: String,
}

impl Daemon {
    /// Writes a config for `store_url` (tables named with `prefix`) in `dir` and starts
    /// `kairos run` on it; waits until its API listens.
    pub fn start(dir: &Path, store_url: &str, prefix: &str) -> Result<Daemon, String> {
        std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        let config = dir.join("config.toml");
        // No rate limit to speak of: the clients share one token on purpose. The
        // thread pool is unused (nothing fires before 2099).
        let text = format!(
            r#"[jobstores.default]
url = "{store_url}"
table_prefix = "{prefix}"

[api]
listen = "127.0.0.1:0"
token = "{TOKEN}"
rate_limit = 1000000
"#
        );
        std::fs::write(&config, text).map_err(|error| format!("{}: {error}", config.display()))?;
        let log_path = dir.join("daemon.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kairos"))
            .args(["run", "-c"])
            .arg(&config)
            .current_dir(dir)
            .env_remove("NOTIFY_SOCKET")
            // The default log level, as deployed: each add logs one `job added` line.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start kairos: {error}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let base_url = wait_for_listen(stderr, &log_path);
        let daemon = Daemon { child, base_url };
        match daemon.base_url.is_empty() {
            true => Err(format!(
                "the daemon did not start; see {}",
                log_path.display()
            )),
            false => Ok(daemon),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the daemon's log until it says where the API listens; the rest of the log
/// goes on being copied to `log_path` by a thread, so the pipe never fills up.
fn wait_for_listen(stderr: std::process::ChildStderr, log_path: &Path) -> String {
    let (found_sender, found) = std::sync::mpsc::channel();
    let log_path = log_path.to_owned();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut log = std::fs::File::create(&log_path).ok();
        let mut found_sender = Some(found_sender);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(log) = &mut log {
                let _ = writeln!(log, "{line}");
            }
            if let Some(start) = line.find("API listening on http://") {
                let url = line[start + "API listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if let Some(sender) = found_sender.take() {
                    let _ = sender.send(url);
                }
            }
        }
    });
    found
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_default()
}

/// Drops the tables a PostgreSQL run created (the SQLite file goes with its directory).
pub async fn drop_tables(url: &str, prefix: &str) {
    if !url.starts_with("postgres") {
        return;
    }
    let Ok(pool) = sqlx::PgPool::connect(url).await else {
        return;
    };
    for table in [
        "jobs",
        "instances",
        "runs",
        "nodes",
        "config_generations",
        "alert_claims",
        "settings",
        "waiters",
        "schema_version",
    ] {
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{table}"))
            .execute(&pool)
            .await;
    }
}
