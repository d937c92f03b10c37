//! Running the real `kairos` binary in a temporary directory: start it on a config,
//! send it signals, read its log, wait for it to exit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A fresh, empty directory under the system's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kairos-{name}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("jobs")).expect("create a temp dir");
    dir
}

/// Writes `text` to `dir/relative`, creating directories.
/// The `config.toml` most daemon tests start from: `jobs/*.toml` included, an SQLite
/// store under `state/`, a four-worker thread pool, a 2 s shutdown, and the API on a
/// free loopback port with `api` appended to its table.
pub fn sqlite_config(api: &str) -> String {
    format!(
        r#"include = ["jobs/*.toml"]

[scheduler]
shutdown_timeout = "2s"

[jobstores.default]
url = "sqlite://state/kairos.db"

[executors.default]
type = "threadpool"
max_workers = 4

[api]
listen = "127.0.0.1:0"
{api}
"#
    )
}

pub fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create a directory");
    }
    fs::write(&path, text).expect("write a file");
}

/// Polls `done` every 20 ms for up to `timeout`; whether it became true.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of `dir/name`, or none if it does not exist yet.
pub fn lines(dir: &Path, name: &str) -> Vec<String> {
    fs::read_to_string(dir.join(name))
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A `kairos run` process; killed (SIGKILL) when dropped if still running.
pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts `kairos run -c dir/config.toml` with `dir` as working directory and its
    /// log appended to `dir/daemon.log`; waits until it says it is running.
    pub fn start(dir: &Path) -> Daemon {
        Daemon::start_with_env(dir, &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let log = dir.join("daemon.log");
        let offset = fs::metadata(&log).map(|meta| meta.len()).unwrap_or(0);
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the daemon log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_kairos"));
        command
            .args(["run", "-c"])
            .arg(dir.join("config.toml"))
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start kairos run");
        let daemon = Daemon {
            child,
            dir: dir.to_owned(),
            log,
        };
        assert!(
            daemon.wait_for_log_after(offset, "kairos is running", Duration::from_secs(20)),
            "the daemon did not start:\n{}",
            daemon.log()
        );
        daemon
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The URL the daemon logged last after `marker` (`"API listening on "`, `"web
    /// page on "`): it listens on port 0, so its address is only in the log.
    pub fn logged_url(&self, marker: &str) -> String {
        let log = self.log();
        let start = log
            .rfind(marker)
            .unwrap_or_else(|| panic!("the daemon never logged {marker:?}:\n{log}"))
            + marker.len();
        log[start..]
            .split_whitespace()
            .next()
            .expect("an address")
            .to_owned()
    }

    /// The API's base URL (`http://127.0.0.1:PORT/api/v1`).
    pub fn api_url(&self) -> String {
        self.logged_url("API listening on ")
    }

    /// How long the log is now, to wait for what comes after.
    pub fn log_len(&self) -> u64 {
        fs::metadata(&self.log).map(|meta| meta.len()).unwrap_or(0)
    }

    /// Waits until the log after byte `offset` contains `needle`.
    pub fn wait_for_log_after(&self, offset: u64, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            let log = fs::read(&self.log).unwrap_or_default();
            let start = usize::try_from(offset).unwrap_or(0).min(log.len());
            String::from_utf8_lossy(&log[start..]).contains(needle)
        })
    }

    /// Sends a signal by name (`HUP`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Reload (SIGHUP) and wait until the reload was handled; returns the log it wrote.
    pub fn reload(&self) -> String {
        let offset = self.log_len();
        self.signal("HUP");
        let handled = |log: &str| log.contains("config jobs:") || log.contains("config rejected");
        let done = wait_until(Duration::from_secs(10), || handled(&self.log_after(offset)));
        assert!(done, "the reload was not handled:\n{}", self.log());
        self.log_after(offset)
    }

    fn log_after(&self, offset: u64) -> String {
        let log = fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(log.len());
        String::from_utf8_lossy(&log[start..]).into_owned()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
