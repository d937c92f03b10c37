//! Executors: how a run happens once the scheduler has decided it is due.
//!
//! The scheduler hands each run to the job's executor as a [`Submission`] and goes
//! back to its timer at once; the executor reports every finished run on the channel
//! it got in [`ExecutorContext`]. Two kinds exist: [`pool::ThreadPoolExecutor`] runs
//! tasks in the scheduler's process, [`process::ProcessPoolExecutor`] in `kairos worker`
//! child processes, so a crash, leak or hang cannot take the scheduler down.
//!
//! # Ground rules
//! - `submit` never blocks and never drops a run: a full executor queues it. The
//!   scheduler judged lateness when it took the job, so waiting for a worker delays a
//!   run, it does not make it "missed" (APScheduler 3's most reported surprise).
//! - Every submitted run produces exactly one [`RunRecord`], whatever the task does
//!   (panic, abort, hang, flood of output).
//! - A submission does not start before its `start_at` (the first scheduled time plus
//!   jitter); its runs go one after another, never side by side.

pub mod pool;
pub mod process;
mod start_gate;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::history::RunRecord;
use crate::task::{Task, TaskRun};

/// One or more runs of a job handed to an executor together.
///
/// Several runs come together when a job without `coalesce` is overdue for several run
/// times (APScheduler hands them to one instance too): they run one after another,
/// earliest first, under the one instance slot the scheduler claimed for them, and each
/// is reported on its own.
#[derive(Clone)]
pub struct Submission {
    /// The runs' identities and args, as the task sees them; never empty.
    pub runs: Vec<TaskRun>,
    /// The task's registered name (what a worker process looks up), shared by the
    /// submissions of the task.
    pub task_name: Arc<str>,
    /// The task itself, for executors that run it in process.
    pub task: Arc<dyn Task>,
    /// Do not start before this instant (scheduled time plus jitter).
    pub start_at: DateTime<Utc>,
    /// Set when the scheduler takes the runs back before `start_at`.
    pub withdrawal: Withdrawal,
    /// Asked once `start_at` has come, before a worker is taken: whether the runs may
    /// start at all ([`StartCheck`]). `None` starts them.
    pub start_check: Option<Arc<dyn StartCheck>>,
    /// Stops the run that is executing (`overlap = "replace"`): its task is cancelled
    /// (thread pool) or its process group killed (process pool), and it is recorded
    /// as an error with the reason given; the rest of the submission does not start.
    pub stop: RunStop,
}

/// The scheduler's way to stop a run while it executes, and to know whether and since
/// when it does (`overlap = "replace"`, docs/lifecycle.md "When the limit is reached").
/// Clones share one state.
#[derive(Clone, Debug, Default)]
pub struct RunStop(Arc<RunStopState>);

/// One per submission, so every run pays for it: a mutex and a `Notify`, which cost
/// no allocation of their own (a `watch` channel's shared state cost a tenth of a
/// run's instructions, BENCHMARKS.md recurring).
#[derive(Debug, Default)]
struct RunStopState {
    state: std::sync::Mutex<StopState>,
    /// Woken once, when stopped.
    stopped: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct StopState {
    /// `Some(reason)` once stopped.
    reason: Option<String>,
    /// When the executing run started; `None` before it starts (and between the runs
    /// of a catch-up).
    started_at: Option<DateTime<Utc>>,
}

impl RunStop {
    fn lock(&self) -> std::sync::MutexGuard<'_, StopState> {
        self.0
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops the executing run, if any, with `reason` (the first reason given stays).
    pub fn stop(&self, reason: impl Into<String>) {
        {
            let mut state = self.lock();
            if state.reason.is_some() {
                return;
            }
            state.reason = Some(reason.into());
        }
        self.0.stopped.notify_waiters();
    }

    /// The reason it was stopped with, if it was.
    pub fn stopped_because(&self) -> Option<String> {
        self.lock().reason.clone()
    }

    /// Whether it was stopped (without copying the reason).
    pub fn is_stopped(&self) -> bool {
        self.lock().reason.is_some()
    }

    /// Waits until it is stopped; returns the reason.
    pub async fn stopped(&self) -> String {
        loop {
            let notified = self.0.stopped.notified();
            tokio::pin!(notified);
            // Registered before looking, so a stop in between still wakes it.
            notified.as_mut().enable();
            if let Some(reason) = self.stopped_because() {
                return reason;
            }
            notified.await;
        }
    }

    /// Called by the executor as a run starts (`Some`) and ends (`None`).
    pub fn set_started(&self, at: Option<DateTime<Utc>>) {
        self.lock().started_at = at;
    }

    /// When the run executing now started; `None` when none executes.
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.lock().started_at
    }
}

/// The scheduler's last word on a submission, asked when its start time has come.
///
/// A run may be handed over before it is due (the fire-ahead window, jitter), but
/// whether it may start is judged at its time: its job may have been paused,
/// rescheduled or removed meanwhile (through another node too), and `max_instances`
/// counts the runs executing *then*, not those executing at hand-over (see the run
/// lifecycle in `docs/lifecycle.md`).
#[async_trait]
pub trait StartCheck: Send + Sync + 'static {
    /// `Ok(())` to start the runs; `Err(reason)` to start none of them, each reported
    /// as skipped with the reason ([`ExecutorContext::report_skipped`]).
    async fn may_start(&self) -> Result<(), String>;

    /// Asked before each later run of a submission of several (a catch-up, run one
    /// after another), with how the run before it ended: `Err(reason)` takes the rest
    /// back, each reported as skipped with the reason. A catch-up can take long, and
    /// its job may be paused, rescheduled or removed meanwhile through any node; and a
    /// failed run of a job with retries is tried again before the times after it
    /// (docs/lifecycle.md, "Failed runs").
    async fn may_continue(&self, previous: crate::history::RunOutcome) -> Result<(), String> {
        let _ = previous;
        Ok(())
    }

    /// This check as [`std::any::Any`], so that [`StartCheck::may_start_together`]
    /// can find its own kind among the checks it is given.
    fn as_any(&self) -> &dyn std::any::Any;

    /// [`StartCheck::may_start`] of each of `checks` (runs due at one instant, handed
    /// over early), made together by their start gate's opener, which calls it on one
    /// of them: one answer per check, in order. Made together, the checks of one
    /// instant can share their store calls and wake each run once (BENCHMARKS.md,
    /// recurring). The default makes each check on its own.
    async fn may_start_together(&self, checks: &[Arc<dyn StartCheck>]) -> Vec<StartAnswer> {
        checks.iter().map(StartAnswer::alone).collect()
    }
}

/// What [`StartCheck::may_start_together`] says of one check.
pub enum StartAnswer {
    /// The verdict, known now.
    Now(Result<(), String>),
    /// The rest of a check that has to wait (for a running run to free its slot, for a
    /// store out of reach): its verdict once it ends. Dropped, it ends halfway, as a
    /// run's own check ends when its run's future is dropped.
    Later(futures_util::future::BoxFuture<'static, Result<(), String>>),
}

impl StartAnswer {
    /// `check` made on its own, later.
    pub fn alone(check: &Arc<dyn StartCheck>) -> StartAnswer {
        let check = Arc::clone(check);
        StartAnswer::Later(Box::pin(async move { check.may_start().await }))
    }
}

impl std::fmt::Debug for StartAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartAnswer::Now(verdict) => f.debug_tuple("Now").field(verdict).finish(),
            StartAnswer::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// The scheduler's way to take back runs it handed over ahead of their start time
/// (the fire-ahead window, jitter) when their job is paused, rescheduled or removed
/// meanwhile: an executor whose runs wait for their start time stops waiting when it
/// is set ([`Withdrawal::withdrawn`]), starts none of the runs and reports each as
/// skipped ([`ExecutorContext::report_withdrawn`]) at once. The record ends the job's
/// lease, so the job, changed, is taken again at once: a new schedule's time before
/// the old run's comes on time (docs/lifecycle.md, "Handed over, judged at its time").
#[derive(Clone, Debug, Default)]
pub struct Withdrawal(Option<Arc<WithdrawalFlag>>);

/// A [`Withdrawal`]'s flag, and who waits for it.
#[derive(Debug, Default)]
struct WithdrawalFlag {
    withdrawn: AtomicBool,
    waiters: tokio::sync::Notify,
}

impl Withdrawal {
    /// One that can be set; [`Withdrawal::default`] never is (runs due now).
    pub fn new() -> Withdrawal {
        Withdrawal(Some(Arc::new(WithdrawalFlag::default())))
    }

    /// Takes the runs back, if they have not started.
    pub fn withdraw(&self) {
        if let Some(flag) = &self.0 {
            flag.withdrawn.store(true, Ordering::Release);
            flag.waiters.notify_waiters();
        }
    }

    /// Whether the runs were taken back.
    pub fn is_withdrawn(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|flag| flag.withdrawn.load(Ordering::Acquire))
    }

    /// Returns once the runs are taken back; never for one that cannot be.
    pub async fn withdrawn(&self) {
        let Some(flag) = &self.0 else {
            return std::future::pending().await;
        };
        loop {
            let notified = flag.waiters.notified();
            tokio::pin!(notified);
            // Registered before looking, so a withdrawal meanwhile still wakes it.
            notified.as_mut().enable();
            if flag.withdrawn.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("runs", &self.runs)
            .field("task_name", &self.task_name)
            .field("start_at", &self.start_at)
            .field("start_check", &self.start_check.is_some())
            .finish()
    }
}

/// What an executor needs from the scheduler that starts it.
#[derive(Clone)]
pub struct ExecutorContext {
    /// The scheduler's clock, for `start_at` and run timestamps.
    pub clock: Arc<dyn Clock>,
    /// Where finished runs are reported.
    pub finished: mpsc::UnboundedSender<RunRecord>,
}

impl ExecutorContext {
    /// Reports runs that a shutdown stopped before they finished (or started), so that
    /// every submitted run still gets its one record.
    pub fn report_stopped(&self, runs: impl IntoIterator<Item = TaskRun>) {
        self.report_unfinished(
            runs,
            crate::history::RunOutcome::Error,
            "the scheduler shut down before the run finished",
        );
    }

    /// Reports runs the scheduler took back before they were due ([`Withdrawal`]).
    pub fn report_withdrawn(&self, runs: impl IntoIterator<Item = TaskRun>) {
        self.report_skipped(runs, WITHDRAWN);
    }

    /// Reports runs that did not start, with why: withdrawn, or refused by their
    /// [`StartCheck`].
    pub fn report_skipped(&self, runs: impl IntoIterator<Item = TaskRun>, reason: &str) {
        self.report_unfinished(runs, crate::history::RunOutcome::Skipped, reason);
    }

    /// One record per run that did not run to its end, with why.
    fn report_unfinished(
        &self,
        runs: impl IntoIterator<Item = TaskRun>,
        outcome: crate::history::RunOutcome,
        reason: &str,
    ) {
        let now = self.clock.now();
        for run in runs {
            // The scheduler is gone if this fails; nobody is left to tell.
            let _ = self.finished.send(RunRecord {
                run_id: run.run_id,
                job_id: run.job_id,
                scheduled_time: run.scheduled_time,
                started_at: None,
                finished_at: now,
                outcome,
                error: Some(reason.to_owned()),
                output: None,
                attempt: 1,
            });
        }
    }
}

/// Why a withdrawn run did not start.
pub const WITHDRAWN: &str =
    "the job was paused, rescheduled or removed after this run was handed over and before it was due";

/// How busy an executor is, for metrics and events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutorLoad {
    /// Runs executing now.
    pub running: usize,
    /// Runs waiting for a worker (or for their jittered start).
    pub queued: usize,
    /// Of the queued runs, those still waiting for their start time (handed over in
    /// the fire-ahead window, or jittered): they need no worker yet, so they do not
    /// make the executor full.
    pub early: usize,
    /// The most runs that execute at once.
    pub max_workers: usize,
}

impl ExecutorLoad {
    /// Queued runs whose start time has come: owed a worker, and not started yet.
    pub fn waiting(&self) -> usize {
        self.queued.saturating_sub(self.early)
    }

    /// Workers neither running a run nor owed to one whose start time has come.
    pub fn free(&self) -> usize {
        self.max_workers
            .saturating_sub(self.running.saturating_add(self.waiting()))
    }
}

/// Why an executor refused a submission.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorError {
    /// `start` has not been called.
    #[error("the executor has not been started")]
    NotStarted,
    /// The executor is shutting down and takes no new runs.
    #[error("the executor is shutting down")]
    ShuttingDown,
}

/// Something that runs submitted tasks.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Called once by the scheduler before any submission.
    fn start(&self, context: ExecutorContext);

    /// Queues a run and returns at once.
    fn submit(&self, submission: Submission) -> Result<(), ExecutorError>;

    /// How busy the executor is.
    fn load(&self) -> ExecutorLoad;

    /// Stops taking runs; waits for running ones up to `wait` (none: don't wait), then
    /// stops what is left. Runs stopped this way are reported as errors.
    async fn shutdown(&self, wait: Option<Duration>);
}
