//! Reloads as operators do them, on the real `kairos run` binary: removing the last
//! job file, rolling back with `cp -p`, `watch = true`, and three daemons sharing a
//! PostgreSQL or Redis store during a rollout (docs/config-reload.md).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::daemon::{temp_dir, write, Daemon};
use common::shared_store::{Db, Place};
use kairos::store::prelude::*;
use kairos::store::{self, OpenOptions};
use serde_json::json;

/// A job file with one hourly job `id` whose command says `word`.
fn job_file(id: &str, word: &str) -> String {
    format!(
        r#"[[jobs]]
id = "{id}"
task = "command"
args = {{ argv = ["echo", "{word}"] }}
trigger = {{ type = "interval", hours = 1 }}
"#
    )
}

/// The store's jobs: (id, the command's argv), by id.
async fn jobs_in(store: &Arc<dyn JobStore>) -> Vec<(String, serde_json::Value)> {
    let mut jobs: Vec<(String, serde_json::Value)> = store
        .get_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|job| (job.id, job.args["argv"].clone()))
        .collect();
    jobs.sort_by(|left, right| left.0.cmp(&right.0));
    jobs
}

fn echo(word: &str) -> serde_json::Value {
    json!(["echo", word])
}

/// Sets a file's modification time, as `cp -p` or `rsync -a` carry an old one over.
fn set_modified(path: &Path, when: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

// ---- one node, SQLite ----

fn write_sqlite_config(dir: &Path, extra: &str) {
    write(
        dir,
        "config.toml",
        &format!(
            r#"include = ["jobs/*.toml"]

[scheduler]
{extra}

[jobstores.default]
url = "sqlite://state/kairos.db"

[api]
enabled = false
"#
        ),
    );
}

async fn open_sqlite(dir: &Path) -> Arc<dyn JobStore> {
    let url = format!("sqlite://{}", dir.join("state/kairos.db").display());
    store::open(&url, &OpenOptions::default()).await.unwrap()
}

/// Regression: with the only job file deleted, the newest modification time left was
/// `config.toml`'s, older than the store's version, so the reload said "left to a
/// newer config in the store" and the job ran on forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_removing_the_last_job_file_removes_its_job() {
    let dir = temp_dir("last-file");
    write_sqlite_config(&dir, "");
    write(&dir, "jobs/only.toml", &job_file("only", "one"));
    // The main file is the newest: the job file's removal leaves only older times.
    set_modified(
        &dir.join("jobs/only.toml"),
        SystemTime::now() - Duration::from_secs(7200),
    );
    let daemon = Daemon::start(&dir);
    std::fs::remove_file(dir.join("jobs/only.toml")).unwrap();
    let reload = daemon.reload();
    assert!(reload.contains("1 removed"), "{reload}");
    assert!(!reload.contains("not applied"), "{reload}");
    drop(daemon);
    assert_eq!(jobs_in(&open_sqlite(&dir).await).await, []);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: a rollback with `cp -p` keeps the saved file's old modification time,
/// and under the file-time order an older time was not a change: the rollback was
/// ignored. On one node the files win, whatever their times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_cp_p_rollback_applies() {
    let dir = temp_dir("cp-p");
    write_sqlite_config(&dir, "");
    write(&dir, "jobs/a.toml", &job_file("a", "original"));
    set_modified(
        &dir.join("jobs/a.toml"),
        SystemTime::now() - Duration::from_secs(86_400),
    );
    let daemon = Daemon::start(&dir);
    let copied = |from: &str, to: &str| {
        let status = Command::new("cp")
            .arg("-p")
            .arg(dir.join(from))
            .arg(dir.join(to))
            .status()
            .unwrap();
        assert!(status.success());
    };
    copied("jobs/a.toml", "a.toml.saved");
    write(&dir, "jobs/a.toml", &job_file("a", "edited"));
    let reload = daemon.reload();
    assert!(reload.contains("1 changed"), "{reload}");
    copied("a.toml.saved", "jobs/a.toml");
    let reload = daemon.reload();
    assert!(reload.contains("1 changed"), "{reload}");
    assert!(reload.contains("generation 3"), "{reload}");
    drop(daemon);
    assert_eq!(
        jobs_in(&open_sqlite(&dir).await).await,
        [("a".to_owned(), echo("original"))]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: `watch = true` compared modification times and sizes, so an edit that
/// kept both (a `cp -p` rollback of a same-length file) was never seen. It compares
/// contents now; and a job file added to a `jobs/` left empty is seen too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_a_rollback_that_keeps_size_and_modification_time() {
    let dir = temp_dir("watch");
    write_sqlite_config(&dir, "watch = true");
    let file = dir.join("jobs/a.toml");
    write(&dir, "jobs/a.toml", &job_file("a", "one"));
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_modified(&file, old);
    let daemon = Daemon::start(&dir);
    let offset = daemon.log_len();
    // Same length, same modification time, other content.
    write(&dir, "jobs/a.toml", &job_file("a", "two"));
    set_modified(&file, old);
    assert!(
        daemon.wait_for_log_after(offset, "1 changed", Duration::from_secs(10)),
        "{}",
        daemon.log()
    );
    let offset = daemon.log_len();
    std::fs::remove_file(&file).unwrap();
    assert!(
        daemon.wait_for_log_after(offset, "1 removed", Duration::from_secs(10)),
        "{}",
        daemon.log()
    );
    let offset = daemon.log_len();
    write(&dir, "jobs/b.toml", &job_file("b", "new"));
    assert!(
        daemon.wait_for_log_after(offset, "1 added", Duration::from_secs(10)),
        "{}",
        daemon.log()
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- three daemons on a shared store ----

/// One node's directory: its config on the shared store, with the API on.
fn node_dir(place: &Place, node: &str) -> std::path::PathBuf {
    let dir = temp_dir(&format!("rollout-{node}"));
    write(
        &dir,
        "config.toml",
        &format!(
            r#"include = ["jobs/*.toml"]

[scheduler]
node_id = "{node}"
heartbeat = "1s"
node_timeout = "30s"
shutdown_timeout = "5s"

[jobstores.default]
url = "{url}"
prefix = "{prefix}"

[api]
listen = "127.0.0.1:0"
token = "secret"
"#,
            url = place.url,
            prefix = place.prefix,
        ),
    );
    dir
}

/// The jobs of config version `version` (1: x and y; 2: x changed, y gone, z new).
fn write_version(dir: &Path, version: u32) {
    for name in ["x", "y", "z"] {
        let _ = std::fs::remove_file(dir.join(format!("jobs/{name}.toml")));
    }
    match version {
        1 => {
            write(dir, "jobs/x.toml", &job_file("x", "v1"));
            write(dir, "jobs/y.toml", &job_file("y", "v1"));
        }
        _ => {
            write(dir, "jobs/x.toml", &job_file("x", "v2"));
            write(dir, "jobs/z.toml", &job_file("z", "v2"));
        }
    }
}

fn version_jobs(version: u32) -> Vec<(String, serde_json::Value)> {
    match version {
        1 => vec![("x".to_owned(), echo("v1")), ("y".to_owned(), echo("v1"))],
        _ => vec![("x".to_owned(), echo("v2")), ("z".to_owned(), echo("v2"))],
    }
}

async fn health(client: &reqwest::Client, daemon: &Daemon) -> serde_json::Value {
    let text = client
        .get(format!("{}/health", daemon.api_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn stop(mut daemon: Daemon) {
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(15)).is_some());
}

/// The acceptance of the rollout rule on real daemons: a node restarted with older
/// files does not undo the newer config and says why (log, `/health`, `kairos
/// check`); a forced reload of the older files applies them.
async fn a_restarted_node_on_old_files_does_not_undo_the_rollout(db: Db) {
    let place = Place::new(db, "cr");
    let store = match place.open().await {
        Ok(store) => store,
        Err(error) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(
                !required,
                "{}: {error} (KAIROS_REQUIRE_SERVICES=1)",
                place.url
            );
            println!("SKIP {}: {error}", place.url);
            return;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let dirs: Vec<_> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| node_dir(&place, node))
        .collect();
    for dir in &dirs {
        write_version(dir, 1);
    }
    let a = Daemon::start(&dirs[0]);
    let b = Daemon::start(&dirs[1]);
    let c = Daemon::start(&dirs[2]);
    assert_eq!(jobs_in(&store).await, version_jobs(1));

    // The rollout reaches a first.
    write_version(&dirs[0], 2);
    let reload = a.reload();
    assert!(
        reload.contains("applied as config generation 2"),
        "{reload}"
    );
    assert_eq!(jobs_in(&store).await, version_jobs(2));

    // c restarts before its files arrive: it leaves the store alone and says why.
    stop(c);
    let c = Daemon::start(&dirs[2]);
    let log = c.log();
    assert!(
        log.contains("superseded by a newer one") && log.contains("--force"),
        "{log}"
    );
    assert_eq!(jobs_in(&store).await, version_jobs(2));
    let said = health(&client, &c).await;
    assert_eq!(said["config"]["node_state"], "superseded", "{said}");
    assert_eq!(said["config"]["store_generation"], 2, "{said}");
    assert_eq!(said["config"]["node_generation"], 1, "{said}");
    assert_ne!(said["config"]["node_hash"], said["config"]["store_hash"]);
    let said = health(&client, &a).await;
    assert_eq!(said["config"]["node_state"], "current", "{said}");
    // b reloads on old files (a SIGHUP too early): the same.
    let reload = b.reload();
    assert!(reload.contains("not applied"), "{reload}");
    assert_eq!(jobs_in(&store).await, version_jobs(2));
    // `kairos check` on c's files says so without a daemon.
    let checked = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["check", "-c"])
        .arg(dirs[2].join("config.toml"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{out}");
    assert!(
        out.contains("config hash:") && out.contains("superseded by generation 2"),
        "{out}"
    );

    // A forced reload on c rolls back to its (older) files.
    let forced = client
        .post(format!("{}/scheduler/reload", c.api_url()))
        .bearer_auth("secret")
        .header("content-type", "application/json")
        .body(json!({"force": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), 200);
    let report: serde_json::Value = serde_json::from_str(&forced.text().await.unwrap()).unwrap();
    assert_eq!(report["applied"], true, "{report}");
    assert_eq!(report["config"]["generation"]["forced"], true, "{report}");
    assert_eq!(jobs_in(&store).await, version_jobs(1));
    // Now a's newer files are the superseded ones, and a restart of a keeps the rollback.
    stop(a);
    let a = Daemon::start(&dirs[0]);
    assert!(a.log().contains("superseded by a newer one"));
    assert_eq!(
        health(&client, &a).await["config"]["node_state"],
        "superseded"
    );
    assert_eq!(jobs_in(&store).await, version_jobs(1));

    for daemon in [a, b, c] {
        stop(daemon);
    }
    place.clean().await;
    for dir in &dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_restarted_node_on_old_files_does_not_undo_the_rollout() {
    a_restarted_node_on_old_files_does_not_undo_the_rollout(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_restarted_node_on_old_files_does_not_undo_the_rollout() {
    a_restarted_node_on_old_files_does_not_undo_the_rollout(Db::Redis).await;
}
