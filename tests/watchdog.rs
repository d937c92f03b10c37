//! The systemd watchdog, as systemd sees it: `WATCHDOG=1` on the notify socket while
//! the main loop makes progress, none while a pass is stuck (docs/lifecycle.md,
//! "Liveness and bounds").

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::daemon::{temp_dir, write, Daemon};
use sqlx::Connection;

/// The `WATCHDOG=1` messages that arrive on `socket` within `window`.
fn pings_within(socket: &UnixDatagram, window: Duration) -> usize {
    let until = Instant::now() + window;
    let mut pings = 0;
    let mut buffer = [0u8; 4096];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buffer) {
            Ok(length) => {
                let message = String::from_utf8_lossy(&buffer[..length]);
                pings += message.lines().filter(|line| *line == "WATCHDOG=1").count();
            }
            Err(_) => break,
        }
    }
    pings
}

/// The longest time without a `WATCHDOG=1` on `socket` within `window` (from now).
fn longest_silence_within(socket: &UnixDatagram, window: Duration) -> Duration {
    let start = Instant::now();
    let until = start + window;
    let mut last = start;
    let mut longest = Duration::ZERO;
    let mut buffer = [0u8; 4096];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv(&mut buffer) {
            Ok(length) => {
                let message = String::from_utf8_lossy(&buffer[..length]);
                if message.lines().any(|line| line == "WATCHDOG=1") {
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
            }
            Err(_) => break,
        }
    }
    longest.max(last.elapsed().min(until.saturating_duration_since(last)))
}

/// A PostgreSQL store whose jobs table the test locks: the daemon's next pass waits on
/// the lock (a statement stuck on the server), and the pings stop until it is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_stuck_on_the_store_stops_the_watchdog_pings() {
    let url = std::env::var("KAIROS_TEST_POSTGRES_URL")
        .unwrap_or("postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut locker = match sqlx::PgConnection::connect(&url).await {
        Ok(connection) => connection,
        Err(error) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(!required, "PostgreSQL: {error} (KAIROS_REQUIRE_SERVICES=1)");
            println!("SKIP PostgreSQL: {error}");
            return;
        }
    };
    let prefix = format!("wd{:08x}_", fastrand::u32(..));
    let dir = temp_dir("watchdog");
    write(
        &dir,
        "config.toml",
        &format!(
            r#"include = ["jobs/*.toml"]

[scheduler]
node_id = "watched"

[jobstores.default]
url = "{url}"
prefix = "{prefix}"

[api]
enabled = false
"#
        ),
    );
    write(
        &dir,
        "jobs/tick.toml",
        r#"[[jobs]]
id = "tick"
task = "command"
args = { argv = ["true"] }
trigger = { type = "interval", seconds = 1 }
"#,
    );
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let socket_env = socket_path.display().to_string();
    let mut daemon = Daemon::start_with_env(
        &dir,
        &[
            ("NOTIFY_SOCKET", socket_env.as_str()),
            // Pings every second; a pass older than two seconds is stuck.
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    assert!(
        pings_within(&socket, Duration::from_secs(3)) >= 2,
        "no pings while healthy:\n{}",
        daemon.log()
    );
    // Lock the jobs table: the next pass's claim waits behind it.
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query(&format!("LOCK TABLE {prefix}jobs IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut locker)
        .await
        .unwrap();
    // Pings go on while the stuck pass or write is young (the next run's write-back
    // reaches the lock within a second or two, and is stuck two seconds later): then
    // they stop. A ping comes every second while healthy, so a silence of three
    // seconds within the next twelve says they stopped, whatever the machine's load.
    let silence = longest_silence_within(&socket, Duration::from_secs(12));
    assert!(
        silence >= Duration::from_secs(3),
        "the pings went on while the pass was stuck (longest silence {silence:?}):\n{}",
        daemon.log()
    );
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    assert!(
        pings_within(&socket, Duration::from_secs(3)) >= 1,
        "the pings did not come back:\n{}",
        daemon.log()
    );
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(30)).expect("it exits");
    for table in ["jobs", "instances", "runs", "nodes", "schema_version"] {
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{table}"))
            .execute(&mut locker)
            .await;
    }
}
