//! `GET /metrics` as an operator's Prometheus sees it (docs/metrics.md):
//! - a scrape of a million SQLite jobs asks the store one count and reads no job, and
//!   returns the run histograms (its time is printed, never asserted: timing
//!   assertions are flaky on a shared machine);
//! - the alert rules under `deploy/prometheus/` pass `promtool check rules` and their
//!   unit tests (`promtool test rules`);
//! - every metric the Grafana dashboard and the rules query is in a real daemon's
//!   scrape.
//!
//! promtool comes from Debian's `prometheus` package (.ci/run installs it). Without it
//! the promtool test says SKIP, and fails under `KAIROS_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use chrono::{TimeDelta, Utc};
use common::daemon::{sqlite_config, temp_dir, write, Daemon};
use kairos::api::{app, ApiSettings};
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::store::{self, OpenOptions};
use kairos::trigger::{DateSpec, TriggerSpec};
use serde_json::{json, Value};
use sqlx::Connection;
use tower::ServiceExt;

/// How many jobs the scrape test fills the store with (`KAIROS_METRICS_JOBS` to change).
const JOBS: u64 = 1_000_000;

/// Jobs added through the store's own batch path; the rest are copies of them made
/// by one SQL statement (ids and JSON rewritten), which is how a million rows fit in
/// a debug test's time.
const TEMPLATE_JOBS: u64 = 10_000;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fills the SQLite database at `database` with `jobs` one-off jobs due over the
/// next weeks: [`TEMPLATE_JOBS`] through `Scheduler::add_jobs`, then copies of those.
async fn seed(database: &Path, jobs: u64) {
    let url = format!("sqlite://{}", database.display());
    let opened = store::open(&url, &OpenOptions::default())
        .await
        .expect("open the store");
    let scheduler = Scheduler::builder().store_shared("default", opened).build();
    let first = Utc::now() + TimeDelta::hours(2);
    let template = TEMPLATE_JOBS.min(jobs);
    let mut added = 0;
    while added < template {
        let batch: Vec<JobSpec> = (added..(added + 5_000).min(template))
            .map(|index| {
                let due = first + TimeDelta::seconds(i64::try_from(index).unwrap());
                JobSpec::new(
                    "command",
                    TriggerSpec::Date(DateSpec {
                        run_date: Some(due.to_rfc3339()),
                        ..DateSpec::default()
                    }),
                )
                .with_id(format!("order-cancel-{index}"))
                .with_args(json!({"argv": ["true"]}))
            })
            .collect();
        added += u64::try_from(batch.len()).unwrap();
        scheduler.add_jobs(batch).await.expect("add a batch");
    }
    drop(scheduler);
    let copies = jobs.div_ceil(template).saturating_sub(1);
    if copies == 0 {
        return;
    }
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // Copy k of every template job: id `order-cancel-N-k`, due k × template seconds
    // later, its JSON's id rewritten to match (a real job any reader decodes).
    let copy = format!(
        "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < {copies}) \
         INSERT INTO kairos_jobs (id, next_run_time, paused, revision, broken, job) \
         SELECT id || '-' || k.n, next_run_time + k.n * {template} * 1000000, paused, revision, broken, \
                replace(job, '\"id\":\"' || id || '\"', '\"id\":\"' || id || '-' || k.n || '\"') \
         FROM kairos_jobs, k WHERE id LIKE 'order-cancel-%'"
    );
    sqlx::query(&copy).execute(&mut connection).await.unwrap();
    connection.close().await.unwrap();
}

/// The value of each sample in a scrape, by its name and labels as written.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The store calls a scrape counted, by operation (`_count` of the latency histogram).
fn store_calls(text: &str) -> BTreeMap<String, f64> {
    let prefix = "kairos_store_operation_duration_seconds_count{";
    samples(text)
        .into_iter()
        .filter_map(|(series, value)| {
            let labels = series.strip_prefix(prefix)?;
            let operation = labels.split("operation=\"").nth(1)?.split('"').next()?;
            Some((operation.to_owned(), value))
        })
        .collect()
}

async fn scrape_in_process(router: &axum::Router) -> String {
    let response = router
        .clone()
        .oneshot(Request::get("/api/v1/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// A client for the daemon's plain-HTTP API.
fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider (plain HTTP here anyway).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let response = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Scrapes every 200 ms until `done` holds of a scrape, for up to 30 s; the last one.
async fn scrape_until(
    client: &reqwest::Client,
    base: &str,
    done: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(client, base).await;
        if done(&text) {
            return Some(text);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A config with an SQLite store, no token (loopback), and `jobs` appended.
fn daemon_dir(name: &str, jobs: &str) -> PathBuf {
    let dir = temp_dir(name);
    write(
        &dir,
        "config.toml",
        &sqlite_config(r#"allowed_tasks = ["command"]"#),
    );
    write(&dir, "jobs/watched.toml", jobs);
    dir
}

/// Config jobs that succeed, fail and retry every second.
const RUNNING_JOBS: &str = r#"[[jobs]]
id = "heartbeat"
task = "command"
args = { argv = ["true"] }
trigger = { type = "interval", seconds = 1 }

[[jobs]]
id = "flaky"
task = "command"
args = { argv = ["false"] }
trigger = { type = "interval", seconds = 1 }
retry = { max_attempts = 2, initial_delay = "1s" }
"#;

#[test]
fn a_scrape_of_a_million_sqlite_jobs_makes_one_store_call_and_returns_the_histograms() {
    let jobs = std::env::var("KAIROS_METRICS_JOBS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(JOBS);
    let dir = daemon_dir("metrics-million", RUNNING_JOBS);
    let database = dir.join("state/kairos.db");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seeding = Instant::now();
    runtime.block_on(seed(&database, jobs));
    println!("seeded {jobs} SQLite jobs in {:?}", seeding.elapsed());

    // In process, with nothing else running: exactly one store call per scrape.
    runtime.block_on(async {
        let url = format!("sqlite://{}", database.display());
        let opened = store::open(&url, &OpenOptions::default()).await.unwrap();
        let scheduler = Scheduler::builder().store_shared("default", opened).build();
        let router = app(scheduler, ApiSettings::default());
        let first = scrape_in_process(&router).await;
        assert!(
            first.contains(&format!("kairos_jobs{{state=\"pending\"}} {jobs}\n")),
            "{first}"
        );
        let started = Instant::now();
        let second = scrape_in_process(&router).await;
        println!(
            "in-process scrape of {jobs} SQLite jobs (this build's profile): {:?}",
            started.elapsed()
        );
        let before = store_calls(&first);
        let after = store_calls(&second);
        let mut made: BTreeMap<String, f64> = BTreeMap::new();
        for (operation, count) in &after {
            let delta = count - before.get(operation).copied().unwrap_or(0.0);
            if delta != 0.0 {
                made.insert(operation.clone(), delta);
            }
        }
        assert_eq!(
            made,
            BTreeMap::from([("count_job_states".to_owned(), 1.0)]),
            "a scrape makes one store call, a count, and reads no job"
        );
    });

    // The daemon on the same database: its scrapes return the histograms of the runs
    // of its config jobs; their time is printed.
    let daemon = Daemon::start(&dir);
    let base = daemon.api_url();
    runtime.block_on(async {
        let client = client();
        let ran = scrape_until(&client, &base, |text| {
            text.contains("kairos_run_duration_seconds_bucket{")
                && text.contains("kairos_job_last_failure_timestamp_seconds{job_id=\"flaky\"}")
        })
        .await;
        assert!(ran.is_some(), "no runs were counted:\n{}", daemon.log());
        let mut times = Vec::new();
        let mut text = String::new();
        for _ in 0..5 {
            let started = Instant::now();
            text = scrape(&client, &base).await;
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "daemon scrape of {jobs} SQLite jobs over HTTP (this build's profile): median {:?}, max {:?}",
            times[times.len() / 2],
            times[times.len() - 1]
        );
        // The seeded jobs and the two recurring config jobs.
        let pending = format!("kairos_jobs{{state=\"pending\"}} {}\n", jobs + 2);
        assert!(text.contains(&pending), "{pending:?} not in\n{text}");
        for line in [
            "# TYPE kairos_run_lateness_seconds histogram",
            "# TYPE kairos_run_duration_seconds histogram",
            "# TYPE kairos_store_operation_duration_seconds histogram",
            "kairos_run_lateness_seconds_bucket{task=\"command\",executor=\"default\",le=\"0.001\"}",
            "kairos_run_duration_seconds_count{task=\"command\",executor=\"default\"}",
            "kairos_store_operation_duration_seconds_bucket{store=\"default\",operation=\"count_job_states\",le=\"0.0001\"}",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        // The daemon reads no job to answer a scrape either.
        let before = store_calls(&text);
        let after = store_calls(&scrape(&client, &base).await);
        for operation in ["get_jobs", "list_jobs", "get_config_jobs", "count_jobs"] {
            assert_eq!(
                before.get(operation),
                after.get(operation),
                "a scrape called {operation}"
            );
        }
        let counted = |calls: &BTreeMap<String, f64>| {
            calls.get("count_job_states").copied().unwrap_or(0.0)
        };
        assert_eq!(counted(&after) - counted(&before), 1.0);
    });
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// promtool, or why there is none.
fn promtool() -> Result<PathBuf, String> {
    let path = std::env::var_os("KAIROS_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    match Command::new(&path).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(path),
        Ok(output) => Err(format!(
            "{} --version failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        )),
        Err(error) => Err(format!(
            "promtool not found ({error}; apt-get install prometheus, or set KAIROS_PROMTOOL)"
        )),
    }
}

fn run_promtool(promtool: &Path, args: &[&str]) {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(manifest().join("deploy/prometheus"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("promtool {}:\n{said}", args.join(" "));
    assert!(output.status.success(), "promtool {args:?} failed:\n{said}");
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let promtool = match promtool() {
        Ok(promtool) => promtool,
        Err(reason) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(!required, "{reason} (KAIROS_REQUIRE_SERVICES=1)");
            println!("SKIP {reason}");
            return;
        }
    };
    run_promtool(&promtool, &["check", "rules", "kairos-rules.yml"]);
    run_promtool(&promtool, &["test", "rules", "kairos-rules.test.yml"]);
}

/// The `kairos_…` metric names in a PromQL expression.
fn metric_names(expr: &str, names: &mut std::collections::BTreeSet<String>) {
    let mut rest = expr;
    while let Some(start) = rest.find("kairos_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
}

/// Every `expr` string in the dashboard's JSON.
fn dashboard_exprs(value: &Value, exprs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => exprs.push(expr.clone()),
                    _ => dashboard_exprs(value, exprs),
                }
            }
        }
        Value::Array(values) => values
            .iter()
            .for_each(|value| dashboard_exprs(value, exprs)),
        _ => {}
    }
}

/// Every `expr:` of the rules file, one-line or a `|` block.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let indent = line.len() - line.trim_start().len();
        index += 1;
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            exprs.push(rest.to_owned());
            continue;
        }
        let mut block = String::new();
        while index < lines.len() {
            let next = lines[index];
            let next_indent = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && next_indent <= indent {
                break;
            }
            block.push_str(next.trim());
            block.push('\n');
            index += 1;
        }
        exprs.push(block);
    }
    exprs
}

#[test]
fn every_metric_the_dashboard_and_rules_query_is_in_a_real_scrape() {
    let deploy = manifest().join("deploy");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy.join("grafana/kairos-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules = std::fs::read_to_string(deploy.join("prometheus/kairos-rules.yml")).unwrap();
    let rule_exprs = rule_exprs(&rules);
    assert_eq!(rule_exprs.len(), rules.matches("- alert:").count());
    exprs.extend(rule_exprs);
    let mut names = std::collections::BTreeSet::new();
    for expr in &exprs {
        metric_names(expr, &mut names);
    }
    assert!(names.len() >= 15, "{names:?}");

    // A daemon whose config jobs succeed, fail and retry, scraped once they did.
    let dir = daemon_dir("metrics-names", RUNNING_JOBS);
    let daemon = Daemon::start(&dir);
    let base = daemon.api_url();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let text = runtime.block_on(async {
        let client = client();
        // A store error of its own: adding a job whose id is taken is the store's
        // `conflict` (a 409), so the error counter has a series to check.
        let job = json!({
            "id": "twice",
            "task": "command",
            "args": {"argv": ["true"]},
            "trigger": {"type": "date", "delay": "1h"},
        });
        for expected in [201, 409] {
            let added = client
                .post(format!("{base}/jobs"))
                .header("content-type", "application/json")
                .body(job.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(added.status().as_u16(), expected);
        }
        scrape_until(&client, &base, |text| {
            text.contains("kairos_run_retries_total{")
                && text.contains("kairos_job_last_success_timestamp_seconds{job_id=\"heartbeat\"}")
        })
        .await
    });
    let text = text.unwrap_or_else(|| panic!("the jobs did not run and retry:\n{}", daemon.log()));
    let series = samples(&text);
    let mut missing = Vec::new();
    for name in &names {
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        let declared = text.contains(&format!("# TYPE {family} "))
            || text.contains(&format!("# TYPE {name} "));
        let sampled = series
            .keys()
            .any(|series| series == name || series.starts_with(&format!("{name}{{")));
        if !declared || !sampled {
            missing.push(name.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not in the scrape: {missing:?}\n{text}"
    );
    println!("checked {} metric names: {names:?}", names.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A watched job's series go when the job does, whether or not anything listens to
/// the scheduler's events: a one-off job with `expect_success_within` that ran and
/// ended leaves none behind. (Its "job removed" event is built only for a listener, and
/// forgetting its series rode on that event, so without one they stayed, and a rule on
/// its last success would have gone on judging a job that no longer exists.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_watched_one_off_job_leaves_no_series_when_nobody_listens() {
    let clock = kairos::clock::ManualClock::new(common::t0());
    let (tasks, runs) = common::recording_tasks();
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .tasks(tasks)
        .executor(
            "default",
            kairos::executor::pool::ThreadPoolExecutor::new(2),
        )
        .build();
    scheduler.start();
    let mut spec = JobSpec::new("record", common::date_at(60)).with_id("watched-once");
    spec.options.expect_success_within = Some(Duration::from_secs(3600));
    scheduler.add_job(spec).await.unwrap();
    let series = |scheduler: &Scheduler| {
        let mut text = String::new();
        scheduler.metrics().encode(&mut text).unwrap();
        text.lines()
            .filter(|line| line.contains("job_id=\"watched-once\""))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    clock.set(common::t0() + common::secs(60));
    assert_eq!(common::wait_for_runs(&runs, 1).await.len(), 1);
    // In real time: the record task writes the run's end, then the job goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (!scheduler.get_jobs().await.unwrap().is_empty() || !series(&scheduler).is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        scheduler.get_jobs().await.unwrap().is_empty(),
        "the job is gone"
    );
    assert_eq!(series(&scheduler), Vec::<String>::new());
    scheduler.shutdown(None).await;
}

/// What a run's end updates, by the rule of docs/metrics.md: histograms and retries by
/// task and executor for every job, last success and failure only for watched jobs.
#[test]
fn runs_fill_the_histograms_and_only_watched_jobs_get_series_of_their_own() {
    use kairos::history::{RunOutcome, RunRecord};
    use kairos::metrics::Metrics;

    let metrics = Metrics::new();
    let mut config_job = common::job("nightly", Some(common::t0()));
    let spec = JobSpec::new("noop", config_job.trigger.spec().into_owned());
    config_job.config_spec = Some(Box::new(spec));
    let mut opted_in = common::job("watched", Some(common::t0()));
    opted_in.expect_success = Some(kairos::job::SuccessWatch {
        within: Duration::from_secs(3600),
        since: common::t0(),
    });
    let api_job = common::job("order-cancel-7", Some(common::t0()));
    assert!(kairos::metrics::watched(&config_job));
    assert!(kairos::metrics::watched(&opted_in));
    assert!(!kairos::metrics::watched(&api_job));

    let run = |job: &kairos::job::Job, outcome: RunOutcome, at: i64| RunRecord {
        run_id: format!("{}-{at}", job.id),
        job_id: job.id.clone(),
        scheduled_time: common::t0() + common::secs(at),
        started_at: Some(common::t0() + common::secs(at) + TimeDelta::milliseconds(20)),
        finished_at: common::t0() + common::secs(at + 2),
        outcome,
        error: None,
        output: None,
        attempt: 1,
    };
    for (job, outcome, at, attempt) in [
        (&config_job, RunOutcome::Success, 10, 1),
        (&config_job, RunOutcome::Error, 20, 1),
        (&opted_in, RunOutcome::Success, 30, 1),
        (&api_job, RunOutcome::Timeout, 40, 1),
        (&api_job, RunOutcome::Success, 50, 2),
    ] {
        let handles = metrics.for_run(job);
        metrics.run_ended(&run(job, outcome, at), Some(&handles), attempt);
    }
    let mut text = String::new();
    metrics.encode(&mut text).unwrap();
    let at = |second: i64| (common::t0() + common::secs(second)).timestamp();
    for line in [
        "kairos_runs_total{outcome=\"success\"} 3".to_owned(),
        "kairos_runs_total{outcome=\"error\"} 1".to_owned(),
        "kairos_runs_total{outcome=\"timeout\"} 1".to_owned(),
        "kairos_run_lateness_seconds_count{task=\"noop\",executor=\"default\"} 5".to_owned(),
        // 20 ms late: in the 0.025 s bucket, not the 0.01 s one.
        "kairos_run_lateness_seconds_bucket{task=\"noop\",executor=\"default\",le=\"0.01\"} 0"
            .to_owned(),
        "kairos_run_lateness_seconds_bucket{task=\"noop\",executor=\"default\",le=\"0.025\"} 5"
            .to_owned(),
        "kairos_run_duration_seconds_bucket{task=\"noop\",executor=\"default\",le=\"2.5\"} 5"
            .to_owned(),
        "kairos_run_retries_total{task=\"noop\",executor=\"default\"} 1".to_owned(),
        format!(
            "kairos_job_last_success_timestamp_seconds{{job_id=\"nightly\"}} {}.0",
            at(12)
        ),
        format!(
            "kairos_job_last_failure_timestamp_seconds{{job_id=\"nightly\"}} {}.0",
            at(22)
        ),
        format!(
            "kairos_job_last_success_timestamp_seconds{{job_id=\"watched\"}} {}.0",
            at(32)
        ),
        "kairos_job_last_failure_timestamp_seconds{job_id=\"watched\"} 0.0".to_owned(),
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "{line:?} not in\n{text}"
        );
    }
    assert!(!text.contains("order-cancel-7"), "{text}");
    // A removed job's series go with it.
    metrics.forget_job("nightly");
    let mut text = String::new();
    metrics.encode(&mut text).unwrap();
    assert!(!text.contains("job_id=\"nightly\""), "{text}");
}
