//! `orders.cancel` through the real daemon. The order service's cancel job is
//! added through the API (`kairos jobs add`, as in examples/news-app/README.md) and must
//! survive a restart of the daemon and run when due, and a daemon that was down at the
//! due time must run it once on start.
//!
//! The orders live in a SQLite file and the jobs in the daemon's SQLite store, both in
//! the test's temp dir, so nothing outside is needed.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{temp_dir, wait_until, write, Daemon};
use serde_json::Value;

/// A daemon's directory: config, job store and the shop's orders database.
struct Shop {
    dir: std::path::PathBuf,
    orders_url: String,
    runtime: tokio::runtime::Runtime,
}

impl Shop {
    /// Orders 42 and 43, both unpaid, and a config with `[tasks.orders]` and the API on
    /// a free port.
    fn new(name: &str) -> Shop {
        let dir = temp_dir(name);
        let orders_url = format!("sqlite://{}?mode=rwc", dir.join("shop.db").display());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        write(
            &dir,
            "config.toml",
            &format!(
                r#"[scheduler]
shutdown_timeout = "5s"

[jobstores.default]
url = "sqlite://state/kairos.db"

[api]
listen = "127.0.0.1:{port}"

[tasks.orders]
database_url = "{orders_url}"
table = "orders"
id_column = "id"
status_column = "status"
unpaid_value = "unpaid"
cancelled_value = "cancelled"
cancelled_at_column = "cancelled_at"
"#
            ),
        );
        let shop = Shop {
            dir,
            orders_url,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        shop.sql(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL, cancelled_at TEXT)",
        );
        shop.sql("INSERT INTO orders (id, status) VALUES (42, 'unpaid'), (43, 'unpaid')");
        shop
    }

    fn sql(&self, statement: &str) {
        self.runtime.block_on(async {
            let pool = sqlx::SqlitePool::connect(&self.orders_url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        });
    }

    fn status(&self, id: i64) -> String {
        self.runtime.block_on(async {
            let pool = sqlx::SqlitePool::connect(&self.orders_url).await.unwrap();
            let (status,): (String,) = sqlx::query_as("SELECT status FROM orders WHERE id = ?")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            status
        })
    }

    /// `kairos ARGS -c config.toml`: the CLI finds the daemon through the config.
    fn kairos(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_kairos"))
            .args(args)
            .arg("-c")
            .arg(self.dir.join("config.toml"))
            .env_remove("KAIROS_URL")
            .env_remove("KAIROS_TOKEN")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }

    /// What the order service does when it creates an order.
    fn add_cancel_job(&self, order_id: i64, delay: &str) {
        let (ok, text) = self.kairos(&[
            "jobs",
            "add",
            "--id",
            &format!("order-cancel-{order_id}"),
            "--task",
            "orders.cancel",
            "--args",
            &format!("{{\"order_id\":{order_id}}}"),
            "date",
            &format!("delay={delay}"),
        ]);
        assert!(ok, "kairos jobs add: {text}");
    }

    /// The outputs of the job's runs, from the daemon's run history.
    fn run_outputs(&self, job_id: &str) -> Vec<String> {
        let (ok, text) = self.kairos(&["runs", job_id, "--json"]);
        assert!(ok, "kairos runs: {text}");
        let runs: Value = serde_json::from_str(&text).unwrap();
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|run| run["output"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn job_exists(&self, job_id: &str) -> bool {
        self.kairos(&["jobs", "show", job_id]).0
    }
}

/// SIGTERM and wait for a clean exit.
fn stop(mut daemon: Daemon) {
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|status| status.success()),
        "{:?}\n{}",
        status,
        daemon.log()
    );
}

fn wait_for_status(shop: &Shop, id: i64, status: &str, timeout: Duration) -> bool {
    wait_until(timeout, || shop.status(id) == status)
}

#[test]
fn a_cancel_job_survives_a_restart_and_runs_when_due() {
    let shop = Shop::new("orders-restart");
    let daemon = Daemon::start(&shop.dir);
    let added = Instant::now();
    shop.add_cancel_job(42, "8s");
    stop(daemon);
    assert!(added.elapsed() < Duration::from_secs(6), "too slow to test");

    let daemon = Daemon::start(&shop.dir);
    assert!(shop.job_exists("order-cancel-42"), "{}", daemon.log());
    assert_eq!(shop.status(42), "unpaid", "not before it is due");
    assert!(
        wait_for_status(&shop, 42, "cancelled", Duration::from_secs(20)),
        "{}",
        daemon.log()
    );
    assert!(added.elapsed() >= Duration::from_secs(8));
    // The run history is written just after the task's UPDATE.
    assert!(wait_until(Duration::from_secs(5), || !shop
        .run_outputs("order-cancel-42")
        .is_empty()));
    assert_eq!(shop.run_outputs("order-cancel-42"), ["cancelled"]);
    assert!(
        !shop.job_exists("order-cancel-42"),
        "a one-off job is removed"
    );
    assert_eq!(shop.status(43), "unpaid");
    stop(daemon);
    let _ = std::fs::remove_dir_all(&shop.dir);
}

#[test]
fn a_daemon_down_at_the_due_time_runs_the_cancel_once_on_start() {
    let shop = Shop::new("orders-downtime");
    let daemon = Daemon::start(&shop.dir);
    let added = Instant::now();
    shop.add_cancel_job(43, "2s");
    stop(daemon);
    assert!(
        added.elapsed() < Duration::from_secs(2),
        "the daemon was not down before the due time; too slow to test"
    );
    std::thread::sleep(Duration::from_secs(3).saturating_sub(added.elapsed()));
    assert_eq!(
        shop.status(43),
        "unpaid",
        "nothing ran while the daemon was down"
    );

    let daemon = Daemon::start(&shop.dir);
    assert!(
        wait_for_status(&shop, 43, "cancelled", Duration::from_secs(10)),
        "{}",
        daemon.log()
    );
    assert!(wait_until(Duration::from_secs(5), || !shop
        .run_outputs("order-cancel-43")
        .is_empty()));
    // Give a second run, if there were one, time to show up.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(shop.run_outputs("order-cancel-43"), ["cancelled"], "once");
    assert!(!shop.job_exists("order-cancel-43"));
    assert_eq!(shop.status(42), "unpaid");
    stop(daemon);
    let _ = std::fs::remove_dir_all(&shop.dir);
}
