//! `threadpool`: runs tasks inside the scheduler's process, at most `max_workers` at a
//! time. Async tasks run on the tokio runtime; blocking ones (registered with
//! [`crate::task::TaskRegistry::register_blocking`]) on tokio's blocking pool.
//!
//! A panicking task is a failed run: each run is its own tokio task, so a panic
//! unwinds that task only and comes back as a `JoinError`.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Executor, ExecutorContext, ExecutorError, ExecutorLoad, Submission};
use crate::history::{bound_output, RunOutcome, RunRecord, MAX_OUTPUT_BYTES};
use crate::task::{panic_payload_message, TaskRun};

/// Runs tasks in process, bounded by `max_workers`.
pub struct ThreadPoolExecutor {
    max_workers: usize,
    timeout: Option<Duration>,
    shared: Arc<Shared>,
    context: OnceLock<ExecutorContext>,
    runs: Mutex<JoinSet<()>>,
}

struct Shared {
    workers: Semaphore,
    running: AtomicUsize,
    queued: AtomicUsize,
    /// Queued runs whose start time has not come yet ([`ExecutorLoad::early`]).
    early: AtomicUsize,
    closed: AtomicBool,
    /// Runs submitted and not yet reported, so a shutdown that stops them can.
    in_flight: Mutex<HashMap<String, TaskRun>>,
}

impl Shared {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, TaskRun>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ThreadPoolExecutor {
    /// A pool running at most `max_workers` runs at once (at least one).
    pub fn new(max_workers: usize) -> ThreadPoolExecutor {
        let max_workers = max_workers.max(1);
        ThreadPoolExecutor {
            max_workers,
            timeout: None,
            shared: Arc::new(Shared {
                workers: Semaphore::new(max_workers),
                running: AtomicUsize::new(0),
                queued: AtomicUsize::new(0),
                early: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                in_flight: Mutex::new(HashMap::new()),
            }),
            context: OnceLock::new(),
            runs: Mutex::new(JoinSet::new()),
        }
    }

    /// Gives up on a run after `timeout`; an async task is dropped at its next await
    /// point, a blocking one is abandoned (its thread finishes on its own).
    pub fn with_timeout(mut self, timeout: Duration) -> ThreadPoolExecutor {
        self.timeout = Some(timeout);
        self
    }
}

#[async_trait]
impl Executor for ThreadPoolExecutor {
    fn start(&self, context: ExecutorContext) {
        let _ = self.context.set(context);
    }

    fn submit(&self, submission: Submission) -> Result<(), ExecutorError> {
        let context = self.context.get().ok_or(ExecutorError::NotStarted)?.clone();
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(ExecutorError::ShuttingDown);
        }
        let shared = Arc::clone(&self.shared);
        let timeout = self.timeout;
        shared.queued.fetch_add(1, Ordering::Relaxed);
        let early = context.clock.now() < submission.start_at;
        if early {
            shared.early.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut in_flight = shared.in_flight();
            for run in &submission.runs {
                in_flight.insert(run.run_id.clone(), run.clone());
            }
        }
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Reap finished runs so the set does not grow with the daemon's uptime.
        while runs.try_join_next().is_some() {}
        runs.spawn(run_one(submission, context, shared, timeout, early));
        Ok(())
    }

    fn load(&self) -> ExecutorLoad {
        ExecutorLoad {
            running: self.shared.running.load(Ordering::Relaxed),
            queued: self.shared.queued.load(Ordering::Relaxed),
            early: self.shared.early.load(Ordering::Relaxed),
            max_workers: self.max_workers,
        }
    }

    async fn shutdown(&self, wait: Option<Duration>) {
        self.shared.closed.store(true, Ordering::Release);
        let mut runs = std::mem::take(
            &mut *self
                .runs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if let Some(wait) = wait {
            let drained =
                tokio::time::timeout(wait, async { while runs.join_next().await.is_some() {} })
                    .await;
            if drained.is_ok() {
                return;
            }
        }
        runs.abort_all();
        while runs.join_next().await.is_some() {}
        let Some(context) = self.context.get() else {
            return;
        };
        let stopped: Vec<TaskRun> = self
            .shared
            .in_flight()
            .drain()
            .map(|(_, run)| run)
            .collect();
        context.report_stopped(stopped);
    }
}

async fn run_one(
    submission: Submission,
    context: ExecutorContext,
    shared: Arc<Shared>,
    timeout: Option<Duration>,
    early: bool,
) {
    let clock = &context.clock;
    while clock.now() < submission.start_at {
        clock.sleep_until(submission.start_at).await;
    }
    if early {
        shared.early.fetch_sub(1, Ordering::Relaxed);
    }
    let permit = shared.workers.acquire().await;
    shared.queued.fetch_sub(1, Ordering::Relaxed);
    shared.running.fetch_add(1, Ordering::Relaxed);
    let report = |record: RunRecord| {
        shared.in_flight().remove(&record.run_id);
        // The scheduler is gone if this fails; nobody is left to tell.
        let _ = context.finished.send(record);
    };
    // The last record goes out after the worker slot is free, so whoever reads it sees
    // the pool as it is after the submission.
    let mut last_record = None;
    for run in &submission.runs {
        if let Some(record) = last_record.take() {
            report(record);
        }
        last_record = Some(run_task(&submission, run, clock.as_ref(), timeout).await);
    }
    shared.running.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
    if let Some(record) = last_record {
        report(record);
    }
}

/// Runs the task once and describes how it went.
async fn run_task(
    submission: &Submission,
    run: &TaskRun,
    clock: &dyn crate::clock::Clock,
    timeout: Option<Duration>,
) -> RunRecord {
    let started_at = clock.now();
    let task = Arc::clone(&submission.task);
    let input = run.clone();
    // The task runs inside this run's own tokio task (`run_one`, spawned per
    // submission): a panic is caught here and stays inside the run, and aborting the run
    // (shutdown without wait) drops it. A second task per run cost an allocation, a
    // wake-up and a hand-off between workers on every run (issue 9, recurring).
    let work = AssertUnwindSafe(task.run(input)).catch_unwind();
    let result = match timeout {
        Some(limit) => tokio::time::timeout(limit, work).await.ok(),
        None => Some(work.await),
    };
    let (outcome, error, output) = match result {
        Some(Ok(Ok(output))) => (RunOutcome::Success, None, output),
        Some(Ok(Err(failure))) => (failure.outcome(), Some(failure.message), failure.output),
        Some(Err(payload)) => (
            RunOutcome::Error,
            Some(panic_payload_message(payload.as_ref())),
            String::new(),
        ),
        None => (
            RunOutcome::Timeout,
            Some(format!(
                "the task ran longer than its timeout of {}",
                humantime::format_duration(timeout.unwrap_or_default())
            )),
            String::new(),
        ),
    };
    RunRecord {
        run_id: run.run_id.clone(),
        job_id: run.job_id.clone(),
        scheduled_time: run.scheduled_time,
        started_at: Some(started_at),
        finished_at: clock.now(),
        outcome,
        error,
        output: (!output.is_empty()).then(|| bound_output(output, MAX_OUTPUT_BYTES)),
    }
}
