//! `threadpool`: runs tasks inside the scheduler's process, at most `max_workers` at a
//! time. Async tasks run on the tokio runtime; blocking ones (registered with
//! [`crate::task::TaskRegistry::register_blocking`]) on tokio's blocking pool.
//!
//! A panicking task is a failed run: the panic is caught around the task inside its
//! submission's own tokio task and becomes the run's error. Runs handed over before
//! their start time wait behind one gate per instant ([`super::start_gate`]).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::start_gate::{GateVerdict, StartGates};
use super::{Executor, ExecutorContext, ExecutorError, ExecutorLoad, Submission, Withdrawal};
use crate::history::{bound_output, RunOutcome, RunRecord, MAX_OUTPUT_BYTES};
use crate::task::{panic_payload_message, Task, TaskRun};

/// Runs tasks in process, bounded by `max_workers`.
pub struct ThreadPoolExecutor {
    max_workers: usize,
    timeout: Option<Duration>,
    shared: Arc<Shared>,
    context: OnceLock<ExecutorContext>,
    runs: Mutex<Runs>,
}

/// The submissions' tokio tasks, so a shutdown can wait for them or stop them.
///
/// Plain handles rather than a `JoinSet`: a set allocates an entry per task and
/// registers a waker that moves it to the set's ready list as it ends, work every run
/// paid for and only a shutdown reads (BENCHMARKS.md, "Instructions per run").
struct Runs {
    handles: Vec<JoinHandle<()>>,
    /// Finished tasks' handles stay until the list grows to this size; then they are
    /// dropped and it doubles from what is left, so pruning costs O(1) per submission.
    prune_at: usize,
}

impl Drop for Runs {
    /// Dropped without a shutdown, the pool stops its runs, as a `JoinSet` would.
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
}

/// The smallest [`Runs::prune_at`].
const MIN_PRUNE_AT: usize = 1024;

struct Shared {
    workers: Semaphore,
    running: AtomicUsize,
    queued: AtomicUsize,
    /// Queued runs whose start time has not come yet ([`ExecutorLoad::early`]).
    early: Arc<AtomicUsize>,
    closed: AtomicBool,
    /// Where runs handed over early wait for their start time.
    gates: StartGates,
}

/// The runs of one submission that have not been reported yet.
///
/// It travels with the submission's tokio task, so whatever ends that task reports
/// every run once: the task itself as each run finishes, or, when a shutdown aborts it
/// (before its first poll too, since the guard is an argument of the task's future),
/// this guard's `Drop`, which reports the rest as stopped. It replaces a map of runs
/// in flight, which cost a clone of every run and two hashed updates under a lock
/// (BENCHMARKS.md, recurring).
struct Unreported {
    context: ExecutorContext,
    /// Runs not started yet, earliest first (the one running is in `running`).
    waiting: std::collections::VecDeque<TaskRun>,
    /// The identity of the run whose task is running, to report if it is stopped.
    running: Option<RunIdentity>,
    /// A finished run's record held back until the next run starts or the worker slot is
    /// free (see `run_one`).
    finished: Option<RunRecord>,
}

/// What a stopped run's record needs from its [`TaskRun`], which the task consumed.
struct RunIdentity {
    run_id: String,
    job_id: String,
    scheduled_time: DateTime<Utc>,
}

impl Unreported {
    fn report(&self, record: RunRecord) {
        // The scheduler is gone if this fails; nobody is left to tell.
        let _ = self.context.finished.send(record);
    }
}

impl Drop for Unreported {
    fn drop(&mut self) {
        if let Some(record) = self.finished.take() {
            self.report(record);
        }
        let running = self.running.take().map(|identity| TaskRun {
            job_id: identity.job_id,
            run_id: identity.run_id,
            scheduled_time: identity.scheduled_time,
            args: serde_json::Value::Null,
            from_config: false,
        });
        let stopped: Vec<TaskRun> = running.into_iter().chain(self.waiting.drain(..)).collect();
        if !stopped.is_empty() {
            self.context.report_stopped(stopped);
        }
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
                early: Arc::new(AtomicUsize::new(0)),
                closed: AtomicBool::new(false),
                gates: StartGates::default(),
            }),
            context: OnceLock::new(),
            runs: Mutex::new(Runs {
                handles: Vec::new(),
                prune_at: MIN_PRUNE_AT,
            }),
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
        let Submission {
            runs: task_runs,
            task,
            start_at,
            withdrawal,
            start_check,
            stop,
            ..
        } = submission;
        let unreported = Unreported {
            context: context.clone(),
            waiting: task_runs.into(),
            running: None,
            finished: None,
        };
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if runs.handles.len() >= runs.prune_at {
            runs.handles.retain(|handle| !handle.is_finished());
            runs.prune_at = (runs.handles.len() * 2).max(MIN_PRUNE_AT);
        }
        let start = Start {
            at: start_at,
            early,
            withdrawal,
            check: start_check,
            stop,
        };
        // Boxed: the run's future is a few kilobytes, and tokio copies a task's future
        // (and its output slot, the same size) several times between spawn and the
        // end; a box is one copy and one small allocation (BENCHMARKS.md, "Instructions
        // per run").
        let handle = tokio::spawn(Box::pin(run_one(
            unreported, task, start, context, shared, timeout,
        )));
        runs.handles.push(handle);
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
        // Still a `Runs`, so a shutdown dropped part way stops what is left.
        let mut runs = Runs {
            handles: std::mem::take(
                &mut self
                    .runs
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .handles,
            ),
            prune_at: MIN_PRUNE_AT,
        };
        let handles = &mut runs.handles;
        if let Some(wait) = wait {
            let drained = tokio::time::timeout(wait, async {
                // Popped once ended, so that none is polled again after its end below.
                while let Some(handle) = handles.last_mut() {
                    // A run's panic is caught inside it (`run_task`); an error here is
                    // one more ended run.
                    let _ = handle.await;
                    handles.pop();
                }
            })
            .await;
            if drained.is_ok() {
                return;
            }
        }
        // Each aborted run reports what it had not reported as stopped ([`Unreported`]).
        for handle in handles.iter() {
            handle.abort();
        }
        while let Some(handle) = handles.last_mut() {
            let _ = handle.await;
            handles.pop();
        }
    }
}

async fn run_one(
    mut unreported: Unreported,
    task: Arc<dyn Task>,
    start: Start,
    context: ExecutorContext,
    shared: Arc<Shared>,
    timeout: Option<Duration>,
) {
    let clock = &context.clock;
    let verdict = if start.early {
        // Behind its instant's gate, whose opener makes the check (`start_gate`); a
        // withdrawal ends the wait at once (`Withdrawal::withdrawn`).
        shared
            .gates
            .wait(
                clock,
                start.at,
                start.check.as_ref(),
                &start.withdrawal,
                &shared.early,
            )
            .await
    } else if let Some(check) = &start.check {
        GateVerdict::Checked(check.may_start().await)
    } else {
        GateVerdict::Checked(Ok(()))
    };
    match verdict {
        GateVerdict::Checked(Ok(())) => {}
        GateVerdict::Withdrawn => {
            shared.queued.fetch_sub(1, Ordering::Relaxed);
            context.report_withdrawn(unreported.waiting.drain(..));
            return;
        }
        GateVerdict::Checked(Err(reason)) => {
            shared.queued.fetch_sub(1, Ordering::Relaxed);
            context.report_skipped(unreported.waiting.drain(..), &reason);
            return;
        }
    }
    let permit = shared.workers.acquire().await;
    shared.queued.fetch_sub(1, Ordering::Relaxed);
    shared.running.fetch_add(1, Ordering::Relaxed);
    // The last record goes out after the worker slot is free, so whoever reads it sees
    // the pool as it is after the submission.
    while let Some(run) = unreported.waiting.pop_front() {
        let previous = unreported.finished.as_ref().map(|record| record.outcome);
        if let Some(record) = unreported.finished.take() {
            unreported.report(record);
        }
        if start.withdrawal.is_withdrawn() || start.stop.is_stopped() {
            // Taken back while an earlier run of the same submission went (a pause or
            // removal through this node, or the run was replaced): the rest do not start.
            unreported.waiting.push_front(run);
            context.report_withdrawn(unreported.waiting.drain(..));
            break;
        }
        if let (Some(check), Some(previous)) = (start.check.as_ref(), previous) {
            // The same, through another node; or the run before failed and is tried
            // again first.
            if let Err(reason) = check.may_continue(previous).await {
                unreported.waiting.push_front(run);
                context.report_skipped(unreported.waiting.drain(..), &reason);
                break;
            }
        }
        unreported.running = Some(RunIdentity {
            run_id: run.run_id.clone(),
            job_id: run.job_id.clone(),
            scheduled_time: run.scheduled_time,
        });
        let outcome = run_task(&task, run, clock.as_ref(), timeout, &start.stop).await;
        if let Some(identity) = unreported.running.take() {
            unreported.finished = Some(outcome.into_record(identity));
        }
    }
    shared.running.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
    if let Some(record) = unreported.finished.take() {
        unreported.report(record);
    }
}

/// When a submission may start.
struct Start {
    at: DateTime<Utc>,
    /// Handed over before `at` (it waits behind a gate and counts as early).
    early: bool,
    withdrawal: Withdrawal,
    /// Asked once the time has come ([`super::StartCheck`]).
    check: Option<Arc<dyn super::StartCheck>>,
    /// Cancels the executing run (`overlap = "replace"`).
    stop: super::RunStop,
}

/// How one run went, before it is tied to the run's identity.
struct RunOutcomeParts {
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    outcome: RunOutcome,
    error: Option<String>,
    output: String,
}

impl RunOutcomeParts {
    fn into_record(self, identity: RunIdentity) -> RunRecord {
        RunRecord {
            run_id: identity.run_id,
            job_id: identity.job_id,
            scheduled_time: identity.scheduled_time,
            started_at: Some(self.started_at),
            finished_at: self.finished_at,
            outcome: self.outcome,
            error: self.error,
            output: (!self.output.is_empty()).then(|| bound_output(self.output, MAX_OUTPUT_BYTES)),
            attempt: 1,
        }
    }
}

/// Runs the task once and describes how it went.
async fn run_task(
    task: &Arc<dyn Task>,
    run: TaskRun,
    clock: &dyn crate::clock::Clock,
    timeout: Option<Duration>,
    stop: &super::RunStop,
) -> RunOutcomeParts {
    let started_at = clock.now();
    stop.set_started(Some(started_at));
    // The task runs inside this run's own tokio task (`run_one`, spawned per
    // submission): a panic is caught here and stays inside the run, and aborting the run
    // (shutdown without wait) drops it. A second task per run cost an allocation, a
    // wake-up and a hand-off between workers on every run (BENCHMARKS.md, recurring).
    let work = AssertUnwindSafe(task.run(run)).catch_unwind();
    let limited = async {
        match timeout {
            Some(limit) => tokio::time::timeout(limit, work).await.ok(),
            None => Some(work.await),
        }
    };
    // A replaced run is cancelled as a timed-out one is: an async task is dropped at
    // its next await point, a blocking one abandoned (docs/lifecycle.md).
    let result = tokio::select! {
        result = limited => Ok(result),
        reason = stop.stopped() => Err(reason),
    };
    stop.set_started(None);
    let result = match result {
        Ok(result) => result,
        Err(reason) => {
            return RunOutcomeParts {
                started_at,
                finished_at: clock.now(),
                outcome: RunOutcome::Error,
                error: Some(reason),
                output: String::new(),
            }
        }
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
    RunOutcomeParts {
        started_at,
        finished_at: clock.now(),
        outcome,
        error,
        output,
    }
}
