//! The `processpool` executor against real child processes.
//!
//! The workers are this test binary itself: `worker_entry` below is an ordinary test
//! that does nothing in a normal run, and the pool starts the binary as
//! `<test binary> worker_entry --exact --nocapture ...`, so libtest runs only that test,
//! in which `KAIROS_WORKER` is set and `run_worker_if_requested` takes over with the
//! test tasks. That is exactly how a program embedding kairos becomes a worker. libtest
//! prints a "running 1 test" line first; the worker's stdout is captured output, so
//! assertions look for what the tasks print rather than comparing the whole output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kairos::clock::SystemClock;
use kairos::executor::process::{run_worker_if_requested, ProcessPoolExecutor};
use kairos::executor::{Executor, ExecutorContext, ExecutorError, Submission};
use kairos::history::{RunOutcome, RunRecord, MAX_OUTPUT_BYTES};
use kairos::task::orders::CancelOrderTask;
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use serde_json::json;
use tokio::sync::mpsc;

/// Nothing here may hang CI, however broken the executor is.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// What the flood task prints.
const FLOOD_BYTES: usize = 100 * 1024 * 1024;

#[test]
fn worker_entry() {
    if run_worker_if_requested(&test_tasks()).is_some() {
        // Leave before libtest prints its summary into the captured output; the parent
        // reads the result file, not the exit status, once the worker has reported.
        std::process::exit(0);
    }
}

fn test_tasks() -> TaskRegistry {
    let mut tasks = TaskRegistry::new();
    // Unconfigured, as in `kairos worker`: its settings come with each request.
    tasks.register_configurable(
        "orders.cancel",
        "orders",
        CancelOrderTask::unconfigured(),
        CancelOrderTask::from_settings,
    );
    tasks.register_fn("echo", |_run| async {
        println!("printed to stdout");
        eprintln!("printed to stderr");
        Ok("returned text".to_owned())
    });
    tasks.register_fn("panic", explode);
    tasks.register_blocking("abort", abort_now);
    tasks.register_fn("hang", hang);
    tasks.register_blocking("flood", flood);
    tasks.register_fn("gate", gate);
    tasks.register_fn("sleep", |run: TaskRun| async move {
        let ms = run.args["ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(format!("slept {ms} ms"))
    });
    tasks
}

async fn explode(_run: TaskRun) -> Result<String, TaskFailure> {
    panic!("boom in the worker")
}

fn abort_now(_run: TaskRun) -> Result<String, TaskFailure> {
    std::process::abort()
}

/// Starts `sleep 1000` (a grandchild of the pool), says where it is, and never ends.
async fn hang(run: TaskRun) -> Result<String, TaskFailure> {
    let failed = |error: std::io::Error| TaskFailure::new(error.to_string());
    let grandchild = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .map_err(failed)?;
    println!("started sleep {}", grandchild.id());
    let ready = run.args["ready_file"]
        .as_str()
        .ok_or_else(|| TaskFailure::new("no ready_file"))?;
    // Renamed into place, so the test never reads half of it.
    let partial = format!("{ready}.partial");
    std::fs::write(
        &partial,
        format!("{} {}", std::process::id(), grandchild.id()),
    )
    .and_then(|()| std::fs::rename(&partial, ready))
    .map_err(failed)?;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok("woke up".to_owned())
}

/// Says it started (`started-<scheduled µs>` in `args.dir`, holding the worker's pid)
/// and waits for the test to let it end (`release-<scheduled µs>`).
async fn gate(run: TaskRun) -> Result<String, TaskFailure> {
    let failed = |error: std::io::Error| TaskFailure::new(error.to_string());
    let dir = PathBuf::from(
        run.args["dir"]
            .as_str()
            .ok_or_else(|| TaskFailure::new("no dir"))?,
    );
    let key = run.scheduled_time.timestamp_micros();
    let partial = dir.join(format!("started-{key}.partial"));
    std::fs::write(&partial, std::process::id().to_string())
        .and_then(|()| std::fs::rename(&partial, dir.join(format!("started-{key}"))))
        .map_err(failed)?;
    while !dir.join(format!("release-{key}")).exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok("released".to_owned())
}

fn flood(_run: TaskRun) -> Result<String, TaskFailure> {
    let chunk = vec![b'x'; 64 * 1024];
    let mut out = std::io::stdout().lock();
    for _ in 0..FLOOD_BYTES / chunk.len() {
        out.write_all(&chunk)
            .map_err(|error| TaskFailure::new(error.to_string()))?;
    }
    Ok("flooded".to_owned())
}

// ---------------------------------------------------------------------------------------
// The parent's side.

/// A pool whose workers are this test binary running `worker_entry`.
fn pool(max_workers: usize) -> ProcessPoolExecutor {
    let exe = std::env::current_exe().expect("the test binary's path");
    ProcessPoolExecutor::new(max_workers).with_worker_program(
        exe,
        [
            "worker_entry",
            "--exact",
            "--nocapture",
            "--quiet",
            "--test-threads=1",
        ],
    )
}

fn start(executor: ProcessPoolExecutor) -> (Box<dyn Executor>, mpsc::UnboundedReceiver<RunRecord>) {
    let (finished, records) = mpsc::unbounded_channel();
    let executor: Box<dyn Executor> = Box::new(executor);
    executor.start(ExecutorContext {
        clock: Arc::new(SystemClock),
        finished,
    });
    (executor, records)
}

fn submission(task: &str, args: serde_json::Value) -> Submission {
    let now = Utc::now();
    Submission {
        runs: vec![TaskRun {
            job_id: format!("job-{task}"),
            run_id: format!("{task}-{:016x}", fastrand::u64(..)),
            scheduled_time: now,
            args,
            from_config: false,
        }],
        task_name: task.into(),
        // The pool runs the task by name in the worker; this one is never called.
        task: test_tasks().get("echo").expect("echo is registered"),
        start_at: now,
        withdrawal: Default::default(),
        start_check: None,
        stop: Default::default(),
    }
}

async fn next_record(records: &mut mpsc::UnboundedReceiver<RunRecord>) -> RunRecord {
    tokio::time::timeout(TEST_LIMIT, records.recv())
        .await
        .expect("a record within the test limit")
        .expect("the executor keeps the channel open")
}

async fn within<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("the test finished within its limit");
}

/// A path for the hang task to say where it is; removed when dropped.
struct ReadyFile(PathBuf);

impl ReadyFile {
    fn new() -> ReadyFile {
        ReadyFile(std::env::temp_dir().join(format!(
            "kairos-test-ready-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        )))
    }

    fn args(&self) -> serde_json::Value {
        json!({ "ready_file": self.0.to_str().expect("a UTF-8 temp path") })
    }

    /// Waits for the hang task's `(worker pid = pgid, grandchild pid)`.
    async fn wait(&self) -> (i32, i32) {
        loop {
            // The file may exist before the task finished writing it: retry until both
            // pids are there.
            if let Ok(text) = std::fs::read_to_string(&self.0) {
                let mut pids = text.split_whitespace().map(str::parse::<i32>);
                if let (Some(Ok(pgid)), Some(Ok(pid))) = (pids.next(), pids.next()) {
                    return (pgid, pid);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `(state, process group)` of a process, from /proc.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// A zombie is dead: it only waits for whoever adopted it to reap it.
fn alive(pid: i32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

fn live_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| matches!(proc_stat(*pid), Some((_, group)) if group == pgid) && alive(*pid))
        .collect()
}

/// SIGKILL is delivered asynchronously; give the kernel a moment, then insist.
async fn assert_group_gone(pgid: i32, grandchild: i32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (alive(grandchild) || !live_members(pgid).is_empty())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(grandchild), "the grandchild {grandchild} survived");
    assert_eq!(
        live_members(pgid),
        Vec::<i32>::new(),
        "group {pgid} has live members"
    );
}

fn peak_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_in_a_worker_and_its_output_is_kept() {
    within(async {
        let (executor, mut records) = start(pool(1));
        let submitted = submission("echo", json!({}));
        executor.submit(submitted.clone()).expect("submitted");
        let record = next_record(&mut records).await;
        assert_eq!(record.outcome, RunOutcome::Success, "{record:?}");
        assert_eq!(record.run_id, submitted.runs[0].run_id);
        assert_eq!(record.job_id, "job-echo");
        let output = record.output.expect("output");
        assert!(output.starts_with("returned text\n"), "{output:?}");
        assert!(output.contains("printed to stdout\n"), "{output:?}");
        assert!(output.contains("printed to stderr\n"), "{output:?}");
        assert!(record.started_at.expect("started") <= record.finished_at);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_does_not_start_before_its_start_at() {
    within(async {
        let (executor, mut records) = start(pool(1));
        let mut submitted = submission("echo", json!({}));
        submitted.start_at = Utc::now() + TimeDelta::milliseconds(1200);
        executor.submit(submitted.clone()).expect("submitted");
        assert_eq!(executor.load().queued, 1);
        let record = next_record(&mut records).await;
        assert_eq!(record.outcome, RunOutcome::Success, "{record:?}");
        assert!(record.started_at.expect("started") >= submitted.start_at);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_is_an_error_with_its_message() {
    within(async {
        let (executor, mut records) = start(pool(1));
        executor
            .submit(submission("panic", json!({})))
            .expect("submitted");
        let record = next_record(&mut records).await;
        assert_eq!(record.outcome, RunOutcome::Error);
        let error = record.error.expect("an error");
        assert!(
            error.contains("the task panicked: boom in the worker"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborting_task_is_reported_by_its_signal() {
    within(async {
        let (executor, mut records) = start(pool(1));
        executor
            .submit(submission("abort", json!({})))
            .expect("submitted");
        let record = next_record(&mut records).await;
        assert_eq!(record.outcome, RunOutcome::Error);
        let error = record.error.expect("an error");
        assert!(error.contains("killed by signal 6 (SIGABRT)"), "{error}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_whole_process_group() {
    within(async {
        let (executor, mut records) = start(pool(1).with_timeout(Duration::from_secs(4)));
        let ready = ReadyFile::new();
        executor
            .submit(submission("hang", ready.args()))
            .expect("submitted");
        let (pgid, grandchild) = tokio::select! {
            pids = ready.wait() => pids,
            record = records.recv() => panic!("the run ended before the task started: {record:?}"),
        };
        assert_eq!(proc_stat(grandchild).map(|(_, group)| group), Some(pgid));
        let record = next_record(&mut records).await;
        assert_eq!(record.outcome, RunOutcome::Timeout, "{record:?}");
        let error = record.error.expect("an error");
        assert!(error.contains("timeout of 4s"), "{error}");
        let output = record.output.expect("what it printed before");
        assert!(
            output.contains(&format!("started sleep {grandchild}")),
            "{output:?}"
        );
        assert_group_gone(pgid, grandchild).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_output_is_bounded() {
    within(async {
        let peak_before = peak_memory_kib();
        let (executor, mut records) = start(pool(1));
        executor
            .submit(submission("flood", json!({})))
            .expect("submitted");
        let record = next_record(&mut records).await;
        assert_eq!(record.outcome, RunOutcome::Success, "{record:?}");
        let output = record.output.expect("output");
        assert!(output.starts_with("flooded\n"), "{:?}", &output[..100]);
        assert!(
            output.len() <= MAX_OUTPUT_BYTES + 100,
            "{} bytes",
            output.len()
        );
        let note = &output[output.rfind('\n').expect("a note") + 1..];
        let total: usize = note
            .strip_prefix("[output cut: ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|total| total.parse().ok())
            .unwrap_or_else(|| panic!("a cut note, not {note:?}"));
        assert!(total >= FLOOD_BYTES, "{note}");
        // The parent read 100 MB and never held it: its peak grew by far less.
        let growth_kib = peak_memory_kib().saturating_sub(peak_before);
        assert!(
            growth_kib < 32 * 1024,
            "peak memory grew by {growth_kib} KiB"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_workers_bounds_the_children_running_at_once() {
    within(async {
        let (executor, mut records) = start(pool(2));
        for _ in 0..4 {
            executor
                .submit(submission("sleep", json!({ "ms": 1000 })))
                .expect("submitted");
        }
        let load = executor.load();
        assert_eq!((load.running + load.queued, load.max_workers), (4, 2));
        let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for _ in 0..4 {
            let record = next_record(&mut records).await;
            assert_eq!(record.outcome, RunOutcome::Success, "{record:?}");
            spans.push((record.started_at.expect("started"), record.finished_at));
        }
        // The most runs alive at one instant: count at each start, spans half-open.
        let most = spans
            .iter()
            .map(|(start, _)| {
                spans
                    .iter()
                    .filter(|(other_start, other_end)| other_start <= start && start < other_end)
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert_eq!(most, 2, "{spans:?}");
        let first = spans.iter().map(|(start, _)| *start).min().expect("runs");
        let last = spans.iter().map(|(_, end)| *end).max().expect("runs");
        assert!(last - first >= TimeDelta::milliseconds(2000), "{spans:?}");
        assert_eq!(executor.load().running + executor.load().queued, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_without_wait_kills_running_children_and_reports_every_run() {
    within(async {
        let (executor, mut records) = start(pool(1));
        let ready = ReadyFile::new();
        let running = submission("hang", ready.args());
        let queued = submission("sleep", json!({ "ms": 10 }));
        executor.submit(running.clone()).expect("submitted");
        executor.submit(queued.clone()).expect("submitted");
        let (pgid, grandchild) = ready.wait().await;
        tokio::time::timeout(Duration::from_secs(30), executor.shutdown(None))
            .await
            .expect("shutdown returns promptly");
        let mut reported = [
            next_record(&mut records).await,
            next_record(&mut records).await,
        ];
        reported.sort_by_key(|record| record.run_id != running.runs[0].run_id);
        let [killed, never_started] = &reported;
        assert_eq!(killed.run_id, running.runs[0].run_id);
        assert_eq!(killed.outcome, RunOutcome::Error);
        assert!(killed.started_at.is_some());
        let error = killed.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("shut down before the run finished"),
            "{error}"
        );
        assert_eq!(never_started.run_id, queued.runs[0].run_id);
        assert_eq!(never_started.outcome, RunOutcome::Error);
        assert_eq!(never_started.started_at, None);
        assert!(records.try_recv().is_err(), "one record per run");
        assert_group_gone(pgid, grandchild).await;
        assert_eq!(
            executor.submit(submission("echo", json!({}))),
            Err(ExecutorError::ShuttingDown)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kairos_binary_is_a_worker_that_rejects_unknown_tasks() {
    within(async {
        let kairos = Path::new(env!("CARGO_BIN_EXE_kairos"));
        let (executor, mut records) =
            start(ProcessPoolExecutor::new(1).with_worker_program(kairos, ["worker"]));
        executor
            .submit(submission("no.such.task", json!({})))
            .expect("submitted");
        let record = next_record(&mut records).await;
        assert_eq!(record.outcome, RunOutcome::Error);
        let error = record.error.expect("an error");
        assert!(error.contains("unknown task `no.such.task`"), "{error}");
        assert!(error.contains("command, http"), "{error}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_of_one_submission_go_one_after_another() {
    within(async {
        // A job without coalesce that was overdue three times: one submission, three
        // runs, one worker at a time, each reported on its own and in order.
        let (executor, mut records) = start(pool(4));
        let mut submitted = submission("echo", json!({}));
        let first = submitted.runs[0].clone();
        for index in 1..3 {
            let mut run = first.clone();
            run.run_id = format!("{}-{index}", first.run_id);
            run.scheduled_time = first.scheduled_time + chrono::TimeDelta::seconds(index);
            submitted.runs.push(run);
        }
        let expected: Vec<String> = submitted
            .runs
            .iter()
            .map(|run| run.run_id.clone())
            .collect();
        executor.submit(submitted).expect("submitted");
        let mut reported = Vec::new();
        for _ in 0..3 {
            reported.push(next_record(&mut records).await);
        }
        let ids: Vec<String> = reported
            .iter()
            .map(|record| record.run_id.clone())
            .collect();
        assert_eq!(ids, expected);
        assert!(reported
            .iter()
            .all(|record| record.outcome == RunOutcome::Success));
        for pair in reported.windows(2) {
            let started = pair[1].started_at.expect("started");
            assert!(started >= pair[0].finished_at, "runs overlapped: {pair:?}");
        }
    })
    .await;
}

/// A worker reads no config, so a task configured in the parent
/// (`[tasks.orders]`) must reach the worker with its settings.
#[tokio::test]
async fn a_configured_task_takes_its_settings_into_the_worker() {
    within(async {
        let path = std::env::temp_dir().join(format!(
            "kairos-pool-orders-{}-{:016x}.db",
            std::process::id(),
            fastrand::u64(..)
        ));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let db = sqlx::SqlitePool::connect(&url)
            .await
            .expect("a SQLite file");
        sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
            .execute(&db)
            .await
            .expect("create");
        sqlx::query("INSERT INTO orders VALUES (7, 'unpaid')")
            .execute(&db)
            .await
            .expect("insert");
        let configured = CancelOrderTask::from_settings(&json!({
            "database_url": url,
            "table": "orders",
            "id_column": "id",
            "status_column": "status",
            "unpaid_value": "unpaid",
            "cancelled_value": "cancelled",
        }))
        .expect("valid settings");
        let (executor, mut records) = start(pool(1));
        let mut submission = submission("orders.cancel", json!({ "order_id": 7 }));
        submission.task = Arc::new(configured);
        executor.submit(submission).expect("submitted");
        let record = next_record(&mut records).await;
        assert_eq!(record.outcome, RunOutcome::Success, "{record:?}");
        assert!(
            record
                .output
                .as_deref()
                .unwrap_or_default()
                .contains("cancelled"),
            "{record:?}"
        );
        let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = 7")
            .fetch_one(&db)
            .await
            .expect("the order");
        assert_eq!(status, "cancelled");
        executor.shutdown(None).await;
        db.close().await;
        let _ = std::fs::remove_file(path);
    })
    .await;
}

/// A submission handed over ahead of its start time and taken back before it
/// (`Withdrawal`) never starts: each of its runs is reported as skipped at once, and the
/// executor's counts go back to idle. The same for both kinds of executor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_submission_is_reported_as_skipped_and_never_started() {
    within(async {
        let threads = {
            let (finished, records) = mpsc::unbounded_channel();
            let executor: Box<dyn Executor> =
                Box::new(kairos::executor::pool::ThreadPoolExecutor::new(1));
            executor.start(ExecutorContext {
                clock: Arc::new(SystemClock),
                finished,
            });
            (executor, records)
        };
        for (executor, mut records) in [start(pool(1)), threads] {
            let mut submitted = submission("echo", json!({}));
            submitted.start_at = Utc::now() + TimeDelta::milliseconds(300);
            submitted.withdrawal = kairos::executor::Withdrawal::new();
            let withdrawal = submitted.withdrawal.clone();
            executor.submit(submitted.clone()).expect("submitted");
            assert_eq!(executor.load().early, 1);
            withdrawal.withdraw();
            let record = next_record(&mut records).await;
            assert_eq!(record.outcome, RunOutcome::Skipped, "{record:?}");
            assert_eq!(record.started_at, None);
            assert_eq!(record.run_id, submitted.runs[0].run_id);
            assert_eq!(record.error.as_deref(), Some(kairos::executor::WITHDRAWN));
            // At once, not at its start time: its job is given back meanwhile.
            assert!(record.finished_at < submitted.start_at, "{record:?}");
            let load = executor.load();
            assert_eq!((load.queued, load.early, load.running), (0, 0, 0));
            executor.shutdown(None).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// `overlap` with a scheduler on the process pool (docs/lifecycle.md, "When the limit is
// reached"); the thread pool's side is tests/overlap.rs.

/// A running scheduler on a manual clock at t0, on a pool of two workers, with one
/// job `j` of `task` every `every_s` seconds, `max_instances = 1` and `overlap`.
async fn overlap_scheduler(
    task: &str,
    args: serde_json::Value,
    every_s: u64,
    overlap: kairos::job::Overlap,
) -> (kairos::scheduler::Scheduler, kairos::clock::ManualClock) {
    let t0 = DateTime::from_timestamp(1_893_456_000, 0).expect("t0");
    let clock = kairos::clock::ManualClock::new(t0);
    let scheduler = kairos::scheduler::Scheduler::builder()
        .clock(clock.clone())
        .store("default", kairos::store::memory::MemoryStore::new())
        .executor("default", pool(2))
        .tasks(test_tasks())
        .build();
    let trigger = serde_json::from_value(json!({
        "type": "interval", "seconds": every_s, "start_date": t0.to_rfc3339(),
    }))
    .expect("a trigger");
    let mut spec = kairos::job::JobSpec::new(task, trigger)
        .with_id("j")
        .with_args(args);
    spec.options.max_instances = Some(1);
    spec.options.overlap = Some(overlap);
    scheduler.add_job(spec).await.expect("added");
    scheduler.start();
    (scheduler, clock)
}

/// Moves the manual clock to `until` in steps of 100 ms, letting the scheduler look.
async fn clock_to(clock: &kairos::clock::ManualClock, until: DateTime<Utc>) {
    use kairos::clock::Clock;
    while clock.now() < until {
        clock.set((clock.now() + TimeDelta::milliseconds(100)).min(until));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The record of `j`'s run of `scheduled` once there is one that `done` accepts.
async fn record_of(
    scheduler: &kairos::scheduler::Scheduler,
    scheduled: DateTime<Utc>,
    done: impl Fn(&RunRecord) -> bool,
) -> RunRecord {
    loop {
        let runs = scheduler.runs(Some("j"), 100).await.expect("runs");
        if let Some(run) = runs
            .into_iter()
            .find(|run| run.scheduled_time == scheduled && done(run))
        {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a file to exist; returns what it holds.
async fn file(path: &Path) -> String {
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `overlap = "replace"` on the process pool: the run due while one goes kills the
/// running run's whole process group (its worker and the grandchild it started), the
/// old run is recorded as replaced, and the new one starts at its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacing_run_kills_the_running_runs_process_group() {
    within(async {
        let ready = ReadyFile::new();
        let (scheduler, clock) =
            overlap_scheduler("hang", ready.args(), 10, kairos::job::Overlap::Replace).await;
        let t0 = DateTime::from_timestamp(1_893_456_000, 0).expect("t0");
        let (pgid, grandchild) = ready.wait().await;
        assert!(alive(grandchild));
        let _ = std::fs::remove_file(&ready.0);
        clock_to(&clock, t0 + TimeDelta::seconds(10)).await;
        let replaced = record_of(&scheduler, t0, |_| true).await;
        assert_group_gone(pgid, grandchild).await;
        assert_eq!(replaced.outcome, RunOutcome::Error, "{replaced:?}");
        assert_eq!(
            replaced.error.as_deref(),
            Some("replaced by the run of 2030-01-01T00:00:10Z (overlap = replace); its process group was killed"),
        );
        // The new run started at its time, in a new group.
        let (new_pgid, new_grandchild) = ready.wait().await;
        assert_ne!(new_pgid, pgid);
        assert!(alive(new_grandchild));
        scheduler.shutdown(None).await;
        assert_group_gone(new_pgid, new_grandchild).await;
        let new = record_of(&scheduler, t0 + TimeDelta::seconds(10), |_| true).await;
        let started = new.started_at.expect("it started");
        assert!(
            started - (t0 + TimeDelta::seconds(10)) <= TimeDelta::milliseconds(200),
            "{new:?}"
        );
        assert!(replaced.finished_at <= started, "{replaced:?} {new:?}");
    })
    .await;
}

/// `overlap = "queue"` on the process pool: every 1 s with runs that end when the
/// test says (at 2.5 s for the first): the run of 1 s waits and starts when the first
/// ends, never beside it; the run of 2 s, due while it waits, is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_waits_for_the_running_child_to_end() {
    within(async {
        let dir = std::env::temp_dir().join(format!(
            "kairos-test-gate-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let args = json!({ "dir": dir.to_str().expect("a UTF-8 temp path") });
        let (scheduler, clock) =
            overlap_scheduler("gate", args, 1, kairos::job::Overlap::Queue).await;
        let t0 = DateTime::from_timestamp(1_893_456_000, 0).expect("t0");
        let key = |second: i64| (t0 + TimeDelta::seconds(second)).timestamp_micros();
        file(&dir.join(format!("started-{}", key(0)))).await;
        clock_to(&clock, t0 + TimeDelta::milliseconds(2_200)).await;
        let skipped = record_of(&scheduler, t0 + TimeDelta::seconds(2), |_| true).await;
        assert_eq!(skipped.outcome, RunOutcome::Skipped, "{skipped:?}");
        assert!(
            skipped
                .error
                .as_deref()
                .unwrap_or("")
                .contains("already waiting"),
            "{skipped:?}"
        );
        assert!(
            !dir.join(format!("started-{}", key(1))).exists(),
            "the run of 1 s waits while the run of 0 s goes"
        );
        clock_to(&clock, t0 + TimeDelta::milliseconds(2_500)).await;
        std::fs::write(dir.join(format!("release-{}", key(0))), "").expect("released");
        file(&dir.join(format!("started-{}", key(1)))).await;
        let first = record_of(&scheduler, t0, |_| true).await;
        assert_eq!(first.outcome, RunOutcome::Success, "{first:?}");
        std::fs::write(dir.join(format!("release-{}", key(1))), "").expect("released");
        let queued = record_of(&scheduler, t0 + TimeDelta::seconds(1), |_| true).await;
        scheduler.shutdown(None).await;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(queued.outcome, RunOutcome::Success, "{queued:?}");
        let started = queued.started_at.expect("it started");
        assert!(started >= first.finished_at, "{first:?} {queued:?}");
        assert_eq!(started, t0 + TimeDelta::milliseconds(2_500), "{queued:?}");
    })
    .await;
}
