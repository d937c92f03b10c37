//! The web page in real Chromium: `tests/ui/browser.mjs` drives Debian's
//! Chromium through Playwright's library against a real `kairos run` holding 100,000
//! jobs in SQLite — find a job, pause and resume it, run it now and see the run arrive
//! live, reschedule it with the preview, remove one with confirmation, the overview,
//! a failed job (its badge, the header's count, its attempts, the explain panel, run
//! again), a job's options, a read-only token that cannot act, phone width — and saves
//! screenshots to `target/ui-artifacts/` (docs/web-page-jobs.png and
//! docs/web-page-job.png are copies of `jobs-table.png` and `job-page.png`).
//!
//! Needs `node`, Chromium (`/usr/bin/chromium` or `KAIROS_CHROMIUM`) and
//! `tests/ui/node_modules` (`npm ci --prefix tests/ui`; `.ci/run` installs all three).
//! Without them the test prints `SKIP <reason>` and passes, unless
//! `KAIROS_REQUIRE_SERVICES=1`, where it fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::daemon::{temp_dir, write, Daemon};
use kairos::clock::ManualClock;
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::store::{self, OpenOptions};
use kairos::trigger::{DateSpec, TriggerSpec};
use serde_json::json;

const WRITE_TOKEN: &str = "ui-write-secret";
const READ_TOKEN: &str = "ui-read-secret";
/// Jobs seeded into the store before the daemon starts.
const SEEDED: usize = 100_000;
/// Jobs added besides: `overdue-job` (seeded), `target-job`, `remove-me`, `flaky-job`
/// and `retrying-job` (through the API).
const EXTRA: usize = 5;

/// What the browser test needs, or why it cannot run.
fn browser_tools(manifest: &Path) -> Result<PathBuf, String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|output| output.status.success()) {
        return Err("node is not installed".to_owned());
    }
    let chromium = std::env::var_os("KAIROS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "{} not found (apt-get install chromium, or set KAIROS_CHROMIUM)",
            chromium.display()
        ));
    }
    let playwright = manifest.join("tests/ui/node_modules/playwright-core");
    if !playwright.exists() {
        return Err("tests/ui/node_modules is missing (npm ci --prefix tests/ui)".to_owned());
    }
    Ok(chromium)
}

/// Adds [`SEEDED`] one-off order-cancel-like jobs, due over the next days, to the
/// SQLite database at `database`, in batches, before the daemon opens it.
async fn seed(database: &Path) {
    let url = format!("sqlite://{}", database.display());
    let store = store::open(&url, &OpenOptions::default())
        .await
        .expect("open the store");
    let scheduler = Scheduler::builder()
        .store_shared("default", Arc::clone(&store))
        .build();
    let first = Utc::now() + TimeDelta::hours(2);
    let mut added = 0;
    while added < SEEDED {
        let batch: Vec<JobSpec> = (added..(added + 10_000).min(SEEDED))
            .map(|index| {
                let due = first + TimeDelta::seconds(i64::try_from(index).unwrap() * 3);
                let trigger = TriggerSpec::Date(DateSpec {
                    run_date: Some(due.to_rfc3339()),
                    ..DateSpec::default()
                });
                JobSpec::new("command", trigger)
                    .with_id(format!("order-cancel-{index}"))
                    .with_name(format!("Cancel order {index} if unpaid"))
                    .with_args(json!({"argv": ["true"]}))
            })
            .collect();
        added += batch.len();
        scheduler.add_jobs(batch).await.expect("add a batch");
    }
    // A job whose dead-man's switch ran out before the daemon started: added on a clock
    // two minutes behind, its watch began then, and its one-minute window has passed
    // with no success (docs/alerts.md).
    let behind = Scheduler::builder()
        .clock(ManualClock::new(Utc::now() - TimeDelta::minutes(2)))
        .store_shared("default", store)
        .build();
    let mut watched = JobSpec::new(
        "command",
        TriggerSpec::Date(DateSpec {
            run_date: Some((Utc::now() + TimeDelta::days(30)).to_rfc3339()),
            ..DateSpec::default()
        }),
    )
    .with_id("overdue-job")
    .with_name("Should have succeeded by now")
    .with_args(json!({"argv": ["true"]}));
    watched.options.expect_success_within = Some(Duration::from_secs(60));
    behind
        .add_jobs(vec![watched])
        .await
        .expect("add the watched job");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_page_works_in_chromium() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chromium = match browser_tools(&manifest) {
        Ok(chromium) => chromium,
        Err(reason) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(!required, "{reason} (KAIROS_REQUIRE_SERVICES=1)");
            println!("SKIP {reason}");
            return;
        }
    };
    let dir = temp_dir("web-ui");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    seed(&dir.join("state/kairos.db")).await;
    write(
        &dir,
        "config.toml",
        &format!(
            r#"[scheduler]
shutdown_timeout = "2s"

[jobstores.default]
url = "sqlite://state/kairos.db"

[executors.default]
type = "threadpool"
max_workers = 4

[api]
listen = "127.0.0.1:0"
token = "{WRITE_TOKEN}"
read_tokens = ["{READ_TOKEN}"]
allowed_tasks = ["command"]
"#
        ),
    );
    let daemon = Daemon::start(&dir);
    let base = daemon
        .logged_url("web page on ")
        .trim_end_matches('/')
        .to_owned();

    // The jobs the browser acts on, added the way an application would.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    for (id, name) in [
        ("target-job", "Browser test target"),
        ("remove-me", "Removed by the browser test"),
    ] {
        let response = client
            .post(format!("{base}/api/v1/jobs"))
            .bearer_auth(WRITE_TOKEN)
            .header("content-type", "application/json")
            .body(
                json!({
                    "id": id,
                    "name": name,
                    "task": "command",
                    "args": {"argv": ["echo", "hello from the browser test"]},
                    "trigger": {"type": "interval", "hours": 1},
                })
                .to_string(),
            )
            .send()
            .await
            .expect("the daemon answers");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    add_failed_job(&client, &base).await;
    let artifacts = target.join("ui-artifacts");
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("node")
            .arg(manifest.join("tests/ui/browser.mjs"))
            .current_dir(manifest.join("tests/ui"))
            .env("KAIROS_UI_URL", &base)
            .env("KAIROS_UI_TOKEN", WRITE_TOKEN)
            .env("KAIROS_UI_READ_TOKEN", READ_TOKEN)
            .env("KAIROS_UI_ARTIFACTS", &artifacts)
            .env("KAIROS_UI_TOTAL", (SEEDED + EXTRA).to_string())
            .env("KAIROS_CHROMIUM", &chromium)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test finishes within 5 minutes")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\n--- daemon log (tail) ---\n{}",
        tail(&daemon.log(), 40)
    );
    let summary: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .expect("a JSON summary on the last line");
    let median = summary["first_page_median_ms"].as_f64().expect("a median");
    println!(
        "first page of the jobs table with {} jobs in SQLite: median {median} ms over {} loads \
         (screenshots in {})",
        SEEDED + EXTRA,
        summary["first_page_ms"],
        artifacts.display()
    );
    println!(
        "the header's failed count (GET /jobs?state=failed&limit=1): median {} ms of {}; \
         GET /overview: median {} ms of {}",
        summary["failed_count_median_ms"],
        summary["failed_count_ms"],
        summary["overview_median_ms"],
        summary["overview_ms"]
    );
    for screenshot in [
        "jobs-table.png",
        "job-page.png",
        "overview.png",
        "phone-jobs.png",
        "failed-job.png",
    ] {
        assert!(
            artifacts.join(screenshot).exists(),
            "{screenshot} was saved"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Adds `flaky-job`, a one-off command that fails with two attempts, and
/// `retrying-job`, one whose second attempt waits an hour, and waits until the daemon
/// keeps the first as `failed` and has the second's retry pending (docs/lifecycle.md,
/// "Failed runs"), so the page has both to show.
async fn add_failed_job(client: &reqwest::Client, base: &str) {
    for (id, name, retry) in [
        (
            "flaky-job",
            "Fails twice",
            json!({"max_attempts": 2, "initial_delay": "100ms", "max_delay": "200ms"}),
        ),
        (
            "retrying-job",
            "Fails, tries again in an hour",
            json!({"max_attempts": 3, "initial_delay": "1h", "max_delay": "1h"}),
        ),
    ] {
        let response = client
            .post(format!("{base}/api/v1/jobs"))
            .bearer_auth(WRITE_TOKEN)
            .header("content-type", "application/json")
            .body(
                json!({
                    "id": id,
                    "name": name,
                    "task": "command",
                    "args": {"argv": ["sh", "-c", format!("echo {id} broke >&2; exit 3")]},
                    "trigger": {"type": "date", "delay": "1s"},
                    "options": {"retry": retry},
                })
                .to_string(),
            )
            .send()
            .await
            .expect("the daemon answers");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }
    wait_for_job(client, base, "flaky-job", |job| job["state"] == "failed").await;
    wait_for_job(client, base, "retrying-job", |job| {
        job["retrying"]["attempt"] == 2
    })
    .await;
}

/// Waits (at most 30 s) until job `id` is as `ready` wants it.
async fn wait_for_job(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = client
            .get(format!("{base}/api/v1/jobs/{id}"))
            .bearer_auth(WRITE_TOKEN)
            .send()
            .await
            .expect("the daemon answers")
            .text()
            .await
            .expect("a body");
        let job: serde_json::Value = serde_json::from_str(&body).expect("a job");
        if ready(&job) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never got there: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
