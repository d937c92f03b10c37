//! What the scheduler tells listeners. Every event is also a tracing event carrying the
//! job id, emitted in one place ([`Event::log`]) so logs and listeners never disagree.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::alert::{Alert, AlertKind};
use crate::history::{RunOutcome, RunRecord};

/// Something that happened in the scheduler.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The main loop started.
    SchedulerStarted,
    /// The scheduler shut down.
    SchedulerShutdown,
    /// Scheduler-wide pause: no job is taken until resumed.
    SchedulerPaused,
    /// Scheduler-wide resume.
    SchedulerResumed,
    /// A job was added.
    JobAdded {
        /// The job.
        job_id: String,
        /// Its store.
        jobstore: String,
    },
    /// A job was changed (modified, rescheduled, paused, resumed).
    JobModified {
        /// The job.
        job_id: String,
        /// Its store.
        jobstore: String,
    },
    /// A job was removed, or finished its schedule and left its store. A one-off job
    /// whose run failed, or whose schedule changed while it ran, stays, and gets none.
    JobRemoved {
        /// The job.
        job_id: String,
        /// Its store.
        jobstore: String,
    },
    /// A run was handed to an executor (one event per run, also when several overdue
    /// runs of a job go to the executor together).
    JobSubmitted {
        /// The job.
        job_id: String,
        /// The run.
        run_id: String,
        /// The time the trigger scheduled it for.
        scheduled_time: DateTime<Utc>,
        /// When it may start (after jitter).
        start_at: DateTime<Utc>,
        /// The executor.
        executor: String,
        /// Submissions waiting for a worker in that executor, this one included: a full
        /// pool delays runs, it does not drop them.
        queued: usize,
    },
    /// A run finished without error.
    JobExecuted {
        /// The run's record.
        run: RunRecord,
    },
    /// A run failed, timed out or could not be started.
    JobError {
        /// The run's record.
        run: RunRecord,
    },
    /// Run times older than the misfire grace time were not run.
    JobMissed {
        /// The job.
        job_id: String,
        /// The earliest run time missed.
        scheduled_time: DateTime<Utc>,
        /// How many run times were missed in this batch.
        count: u64,
    },
    /// A run was skipped because `max_instances` runs were still going.
    JobMaxInstances {
        /// The job.
        job_id: String,
        /// The run time skipped.
        scheduled_time: DateTime<Utc>,
        /// The limit.
        max_instances: u32,
    },
    /// A store has refused the records of finished runs for so long that this node
    /// holds [`MAX_UNWRITTEN_RUNS`](crate::scheduler::MAX_UNWRITTEN_RUNS) of them: it
    /// takes no more jobs from that store until they are written (nothing is dropped).
    RecordsBacklogged {
        /// The store.
        jobstore: String,
        /// Records waiting to be written.
        pending: usize,
    },
    /// The backlog of a store went back under the cap: jobs are taken from it again.
    RecordsDrained {
        /// The store.
        jobstore: String,
    },
    /// This node raised an alert (failed, missed, timeout, overdue), once in the
    /// cluster; it goes to the webhooks that want it (`docs/alerts.md`).
    Alert {
        /// The alert, as the webhooks receive it.
        alert: Alert,
    },
    /// A webhook took an alert (it answered 2xx).
    AlertDelivered {
        /// The alert's kind.
        alert: AlertKind,
        /// The alert's job.
        job_id: String,
        /// The webhook, without credentials or query.
        webhook: String,
        /// POSTs it took.
        attempts: u32,
    },
    /// An alert did not reach a webhook: its attempts ran out, the webhook refused it,
    /// or its queue was full (`attempts` is then 0).
    AlertUndelivered {
        /// The alert's kind.
        alert: AlertKind,
        /// The alert's job.
        job_id: String,
        /// The webhook, without credentials or query.
        webhook: String,
        /// POSTs made.
        attempts: u32,
        /// Why.
        reason: String,
    },
}

impl Event {
    /// Writes the event to the log.
    pub fn log(&self) {
        match self {
            Event::SchedulerStarted => tracing::info!("scheduler started"),
            Event::SchedulerShutdown => tracing::info!("scheduler shut down"),
            Event::SchedulerPaused => tracing::info!("scheduler paused"),
            Event::SchedulerResumed => tracing::info!("scheduler resumed"),
            Event::RecordsBacklogged { jobstore, pending } => tracing::error!(
                jobstore,
                pending,
                "the job store keeps refusing run records; taking no jobs from it until they are written"
            ),
            Event::RecordsDrained { jobstore } => {
                tracing::info!(jobstore, "run records written; taking jobs from the store again")
            }
            Event::JobAdded { job_id, jobstore } => {
                tracing::info!(job_id, jobstore, "job added")
            }
            Event::JobModified { job_id, jobstore } => {
                tracing::info!(job_id, jobstore, "job modified")
            }
            Event::JobRemoved { job_id, jobstore } => {
                tracing::info!(job_id, jobstore, "job removed")
            }
            Event::JobSubmitted {
                job_id,
                run_id,
                scheduled_time,
                executor,
                queued,
                ..
            } => {
                tracing::debug!(job_id, run_id, %scheduled_time, executor, queued, "run submitted")
            }
            Event::JobExecuted { run } => tracing::info!(
                job_id = run.job_id,
                run_id = run.run_id,
                scheduled_time = %run.scheduled_time,
                lateness_ms = run.lateness().map(|late| late.num_milliseconds()),
                "run succeeded"
            ),
            // A skipped run did not fail: it says once, with why (the instance limit,
            // a change that took it back), and nothing else logs it.
            Event::JobError { run } if run.outcome == RunOutcome::Skipped => tracing::warn!(
                job_id = run.job_id,
                run_id = run.run_id,
                scheduled_time = %run.scheduled_time,
                reason = run.error.as_deref().unwrap_or(""),
                "run skipped"
            ),
            Event::JobError { run } => tracing::warn!(
                job_id = run.job_id,
                run_id = run.run_id,
                scheduled_time = %run.scheduled_time,
                lateness_ms = run.lateness().map(|late| late.num_milliseconds()),
                outcome = run.outcome.as_str(),
                error = run.error.as_deref().unwrap_or(""),
                "run failed"
            ),
            Event::JobMissed {
                job_id,
                scheduled_time,
                count,
            } => {
                tracing::warn!(job_id, %scheduled_time, count, "run missed its misfire grace time")
            }
            Event::Alert { alert } => tracing::error!(
                alert = alert.event.as_str(),
                job_id = alert.job_id,
                scheduled_time = %alert.scheduled_time,
                attempt = alert.attempt,
                "alert: {}",
                alert.message
            ),
            Event::AlertDelivered {
                alert,
                job_id,
                webhook,
                attempts,
            } => tracing::info!(
                alert = alert.as_str(),
                job_id,
                webhook,
                attempts,
                "alert delivered"
            ),
            Event::AlertUndelivered {
                alert,
                job_id,
                webhook,
                attempts,
                reason,
            } => tracing::error!(
                alert = alert.as_str(),
                job_id,
                webhook,
                attempts,
                reason,
                "alert not delivered"
            ),
            Event::JobMaxInstances {
                job_id,
                scheduled_time,
                max_instances,
            } => {
                // The skipped run's own record is the one line that says so.
                tracing::debug!(job_id, %scheduled_time, max_instances, "max_instances reached")
            }
        }
    }

    /// The event for a finished run.
    pub(crate) fn for_run(run: RunRecord) -> Event {
        if run.outcome == RunOutcome::Success {
            Event::JobExecuted { run }
        } else {
            Event::JobError { run }
        }
    }
}
