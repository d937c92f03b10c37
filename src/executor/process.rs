//! `processpool`: runs each task in a child process, at most `max_workers` at a time, so
//! a task that crashes, leaks or hangs cannot take the scheduler down with it.
//!
//! # How a run happens
//! - **Spawn.** The child is the scheduler's own binary, started as `<exe> worker` with
//!   `KAIROS_WORKER=1` ([`WORKER_ENV`]): the `kairos` binary handles its hidden `worker`
//!   subcommand, and a program embedding kairos calls [`run_worker_if_requested`] first
//!   thing in `main`, which looks only at the variable. On Linux `<exe>` is
//!   `/proc/self/exe` (with `argv[0]` set to [`std::env::current_exe`]), so the worker
//!   is the very build the scheduler runs even after a package upgrade replaced the file
//!   on disk. [`ProcessPoolExecutor::with_worker_program`] starts something else.
//! - **Protocol.** The parent writes one JSON request (protocol version, task name,
//!   `TaskRun`, result path) to the child's stdin and closes it. The child runs the task
//!   on a current-thread tokio runtime and writes a JSON reply to the result file: a
//!   file in [`std::env::temp_dir`] that the parent created exclusively (mode 0600) and
//!   removes afterwards. stdout and stderr belong to the task, so nothing the task
//!   prints can be taken for the reply.
//! - **Output.** Both pipes are drained concurrently from the start, so a task that
//!   prints 100 MB never blocks on a full pipe; the parent keeps the first
//!   [`MAX_OUTPUT_BYTES`](crate::history::MAX_OUTPUT_BYTES) and counts the rest. The
//!   record's output is the task's returned text followed by what the worker printed
//!   (stdout and stderr interleaved as they arrive), cut with a note that says how much
//!   there was.
//! - **Isolation.** Each child leads its own process group, so a timeout or a shutdown
//!   kills the worker and everything it started with one `kill(-pgid, SIGKILL)`.
//!
//! # Ground rules
//! - A run owns its process group: when the worker exits, whatever is left in the group
//!   (a background child the task forgot) is killed too, as systemd does with a unit's
//!   cgroup. A process that escapes with `setsid` is beyond reach; the parent stops
//!   reading its output shortly after the worker exits.
//! - The reply file is trusted only after the worker exited on its own. Without a reply
//!   the exit status explains the run ("killed by signal 6 (SIGABRT)").
//! - Every submission is reported exactly once: whoever removes the run from `in_flight`
//!   sends its record. Shutdown stops queued runs before they start, kills the groups of
//!   running ones, and reports both as errors.
//! - A process that was started as a worker but did not run as one (its `main` does not
//!   call [`run_worker_if_requested`]) refuses to start workers itself, so a forgotten
//!   call is an error in the run history and not a fork bomb.

mod child;
mod worker;

pub use worker::{run_worker, run_worker_if_requested, WORKER_ENV};

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::start_gate::{GateVerdict, StartGates};
use super::{Executor, ExecutorContext, ExecutorError, ExecutorLoad, Submission};
use crate::history::RunRecord;
use crate::task::TaskRun;
use child::{supervise, Ended, Launch};

/// How long a shutdown waits for killed runs to report themselves before it gives up on
/// them and reports them itself.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Runs tasks in child processes, bounded by `max_workers`.
pub struct ProcessPoolExecutor {
    max_workers: usize,
    launch: Arc<Launch>,
    shared: Arc<Shared>,
    context: OnceLock<ExecutorContext>,
    runs: Mutex<JoinSet<()>>,
}

struct Shared {
    workers: Semaphore,
    running: Arc<AtomicUsize>,
    queued: Arc<AtomicUsize>,
    /// Queued runs whose start time has not come yet ([`ExecutorLoad::early`]).
    early: Arc<AtomicUsize>,
    closed: AtomicBool,
    phase: watch::Sender<Phase>,
    /// Runs submitted and not yet reported; removing one is the right to report it.
    in_flight: Mutex<HashMap<String, TaskRun>>,
    /// Where runs handed over early wait for their start time.
    gates: StartGates,
}

/// Where a shutdown is; runs watch it while they wait and while they run. The phases
/// only move forward, in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Open,
    /// No run starts any more; running ones may finish.
    Draining,
    /// Running ones are killed.
    Killing,
}

impl Shared {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, TaskRun>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `record` unless the run was reported already.
    fn report(&self, context: &ExecutorContext, record: RunRecord) {
        if self.in_flight().remove(&record.run_id).is_some() {
            // The scheduler is gone if this fails; nobody is left to tell.
            let _ = context.finished.send(record);
        }
    }
}

impl ProcessPoolExecutor {
    /// A pool running at most `max_workers` child processes at once (at least one).
    pub fn new(max_workers: usize) -> ProcessPoolExecutor {
        let max_workers = max_workers.max(1);
        ProcessPoolExecutor {
            max_workers,
            launch: Arc::new(Launch {
                program: None,
                timeout: None,
            }),
            shared: Arc::new(Shared {
                workers: Semaphore::new(max_workers),
                running: Arc::new(AtomicUsize::new(0)),
                queued: Arc::new(AtomicUsize::new(0)),
                early: Arc::new(AtomicUsize::new(0)),
                closed: AtomicBool::new(false),
                phase: watch::Sender::new(Phase::Open),
                gates: StartGates::default(),
                in_flight: Mutex::new(HashMap::new()),
            }),
            context: OnceLock::new(),
            runs: Mutex::new(JoinSet::new()),
        }
    }

    /// Kills a run's whole process group after `timeout` (counted from the spawn) and
    /// reports it as [`RunOutcome::Timeout`](crate::history::RunOutcome::Timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> ProcessPoolExecutor {
        Arc::make_mut(&mut self.launch).timeout = Some(timeout);
        self
    }

    /// Starts workers as `program args...` instead of this binary's `worker`
    /// subcommand; the program must end up in [`run_worker`] (for instance through
    /// [`run_worker_if_requested`], as [`WORKER_ENV`] is set for it).
    pub fn with_worker_program<I, A>(
        mut self,
        program: impl Into<PathBuf>,
        args: I,
    ) -> ProcessPoolExecutor
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        Arc::make_mut(&mut self.launch).program =
            Some((program.into(), args.into_iter().map(Into::into).collect()));
        self
    }
}

#[async_trait]
impl Executor for ProcessPoolExecutor {
    fn start(&self, context: ExecutorContext) {
        let _ = self.context.set(context);
    }

    fn submit(&self, submission: Submission) -> Result<(), ExecutorError> {
        let context = self.context.get().ok_or(ExecutorError::NotStarted)?.clone();
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(ExecutorError::ShuttingDown);
        }
        let queued = Count::enter(&self.shared.queued);
        let early =
            (context.clock.now() < submission.start_at).then(|| Count::enter(&self.shared.early));
        {
            let mut in_flight = self.shared.in_flight();
            for run in &submission.runs {
                in_flight.insert(run.run_id.clone(), run.clone());
            }
        }
        let run = run_one(
            submission,
            context,
            Arc::clone(&self.shared),
            Arc::clone(&self.launch),
            queued,
            early,
        );
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Reap finished runs so the set does not grow with the daemon's uptime.
        while runs.try_join_next().is_some() {}
        runs.spawn(run);
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
        self.shared.phase.send_replace(Phase::Draining);
        let mut runs = std::mem::take(
            &mut *self
                .runs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if let Some(wait) = wait {
            if tokio::time::timeout(wait, join_all(&mut runs))
                .await
                .is_ok()
            {
                return;
            }
        }
        // Each run kills its own group and reports what it printed until then.
        self.shared.phase.send_replace(Phase::Killing);
        if tokio::time::timeout(KILL_GRACE, join_all(&mut runs))
            .await
            .is_err()
        {
            tracing::warn!("process pool runs did not stop after their groups were killed");
            // Dropping a run's future kills its group (GroupGuard) and its child.
            runs.abort_all();
            join_all(&mut runs).await;
        }
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

async fn join_all(runs: &mut JoinSet<()>) {
    while runs.join_next().await.is_some() {}
}

/// Waits until shutdown has reached `wanted` (forever if the executor is gone).
async fn reached(phase: &mut watch::Receiver<Phase>, wanted: Phase) {
    if phase.wait_for(|now| *now >= wanted).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn run_one(
    submission: Submission,
    context: ExecutorContext,
    shared: Arc<Shared>,
    launch: Arc<Launch>,
    queued: Count,
    early: Option<Count>,
) {
    let clock = &context.clock;
    let mut phase = shared.phase.subscribe();
    let ready = async {
        if let Some(early) = early.and_then(Count::into_counter) {
            // Behind its instant's gate, whose opener makes the check (`start_gate`)
            // and counts the run out of `early`; a withdrawal ends the wait at once
            // (`Withdrawal::withdrawn`).
            let verdict = shared
                .gates
                .wait(
                    clock,
                    submission.start_at,
                    submission.start_check.as_ref(),
                    &submission.withdrawal,
                    &early,
                )
                .await;
            match verdict {
                GateVerdict::Withdrawn => return Err(super::WITHDRAWN.to_owned()),
                GateVerdict::Checked(answer) => answer?,
            }
        } else {
            if submission.withdrawal.is_withdrawn() {
                return Err(super::WITHDRAWN.to_owned());
            }
            if let Some(check) = &submission.start_check {
                check.may_start().await?;
            }
        }
        Ok(shared.workers.acquire().await)
    };
    let permit = tokio::select! {
        permit = ready => match permit {
            Ok(permit) => permit.ok(),
            Err(reason) => {
                let withdrawn: Vec<TaskRun> = {
                    let mut in_flight = shared.in_flight();
                    submission
                        .runs
                        .iter()
                        .filter_map(|run| in_flight.remove(&run.run_id))
                        .collect()
                };
                // Counted out before the records go, so whoever reads them sees the
                // pool without these runs.
                drop(queued);
                context.report_skipped(withdrawn, &reason);
                return;
            }
        },
        () = reached(&mut phase, Phase::Draining) => None,
    };
    let Some(permit) = permit else {
        for run in &submission.runs {
            let record = record(
                run,
                None,
                clock.now(),
                Ended::error("the scheduler shut down before the run started"),
            );
            shared.report(&context, record);
        }
        return;
    };
    drop(queued);
    let running = Count::enter(&shared.running);
    // The last record goes out after the worker slot is free, so whoever reads it sees
    // the pool as it is after the submission.
    let mut last_record = None;
    let mut taken_back: Option<String> = None;
    for run in &submission.runs {
        let previous = last_record
            .as_ref()
            .map(|record: &RunRecord| record.outcome);
        if let Some(record) = last_record.take() {
            shared.report(&context, record);
        }
        // Taken back while an earlier run of the same submission went (a pause or
        // removal through this node, or the run was replaced): the rest do not start.
        if taken_back.is_none()
            && (submission.withdrawal.is_withdrawn() || submission.stop.is_stopped())
        {
            taken_back = Some(super::WITHDRAWN.to_owned());
        }
        // The same through another node (its job changed in the store); or the run
        // before failed and is tried again first.
        if let (None, Some(previous), Some(check)) =
            (&taken_back, previous, &submission.start_check)
        {
            taken_back = check.may_continue(previous).await.err();
        }
        if let Some(reason) = &taken_back {
            last_record = Some(record(
                run,
                None,
                clock.now(),
                Ended::skipped(reason.clone()),
            ));
            continue;
        }
        // Runs of one submission go one after another; none starts once shutdown began.
        if *phase.borrow() >= Phase::Draining {
            last_record = Some(record(
                run,
                None,
                clock.now(),
                Ended::error("the scheduler shut down before the run started"),
            ));
            continue;
        }
        let started_at = clock.now();
        submission.stop.set_started(Some(started_at));
        let settings = submission.task.settings();
        // `${NAME}` in the args is resolved here, in the scheduler's process; the worker
        // gets the run ready to go.
        let ended = match submission.task.prepare_run(run.clone()) {
            Ok(prepared) => {
                supervise(
                    &submission.task_name,
                    settings,
                    &prepared,
                    &launch,
                    &mut phase,
                    &submission.stop,
                )
                .await
            }
            Err(failure) => Ended::error(failure.message),
        };
        submission.stop.set_started(None);
        // Taken before the permit goes, so runs that share a worker slot never overlap
        // in the history.
        let finished_at = clock.now();
        last_record = Some(record(run, Some(started_at), finished_at, ended));
    }
    drop(running);
    drop(permit);
    if let Some(record) = last_record {
        shared.report(&context, record);
    }
}

fn record(
    run: &TaskRun,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: chrono::DateTime<chrono::Utc>,
    ended: Ended,
) -> RunRecord {
    RunRecord {
        run_id: run.run_id.clone(),
        job_id: run.job_id.clone(),
        scheduled_time: run.scheduled_time,
        started_at,
        finished_at,
        outcome: ended.outcome,
        error: ended.error,
        output: (!ended.output.is_empty()).then_some(ended.output),
        attempt: 1,
    }
}

/// One unit of `queued` or `running` for as long as it lives, so a run whose future is
/// dropped mid-way does not leave the counts off.
struct Count(Option<Arc<AtomicUsize>>);

impl Count {
    fn enter(counter: &Arc<AtomicUsize>) -> Count {
        counter.fetch_add(1, Ordering::Relaxed);
        Count(Some(Arc::clone(counter)))
    }

    /// Hands the unit to whoever takes the counter: it counts the unit out itself
    /// (a start gate, `StartGates::wait`).
    fn into_counter(mut self) -> Option<Arc<AtomicUsize>> {
        self.0.take()
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        if let Some(counter) = &self.0 {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
