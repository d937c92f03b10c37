//! The main loop: one timer that sleeps until the earliest next run time.
//!
//! Each pass is a function of `(now, stores)` that submits what is due and returns
//! the next deadline ([`process_due_jobs`]); the shell around it sleeps on the clock,
//! the wake-up [`Notify`](tokio::sync::Notify) or a state change, whichever comes
//! first. Finished runs come back on a channel and are recorded by a second task
//! ([`record_finished_runs`]), so slow history writes never delay the timer.
//!
//! ```text
//! sleep ──(deadline | wake | pause/stop)──> acquire due batch ──> plan (misfire,
//!   ^                                        coalesce) ──> claim instance ──> submit
//!   └──────────── next deadline <── release batch (new next run times) <──┘
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;

use super::plan::plan;
use super::{submission, Event, Inner, SchedulerState};
use crate::history::{RunOutcome, RunRecord};
use crate::job::{generate_id, Job};
use crate::store::{Release, StoreError};
use crate::trigger::jitter::delay_run;

/// The first retry delay after a store error; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest retry delay after repeated store errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut state = inner.state.subscribe();
    let mut backoff = MIN_BACKOFF;
    loop {
        let current = *state.borrow_and_update();
        let deadline = match current {
            SchedulerState::Stopped => break,
            SchedulerState::Paused => None,
            SchedulerState::Running => {
                let now = inner.clock.now();
                match process_due_jobs(&inner, now).await {
                    Ok(deadline) => {
                        backoff = MIN_BACKOFF;
                        deadline
                    }
                    Err(error) => {
                        tracing::error!(%error, retry_in = ?backoff, "job store error in the main loop");
                        let retry = now + TimeDelta::from_std(backoff).unwrap_or(TimeDelta::MAX);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        Some(retry)
                    }
                }
            }
        };
        inner.lock().deadline = deadline;
        let sleep = async {
            match deadline {
                Some(deadline) => inner.clock.sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = inner.wake.notified() => {}
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    inner.lock().deadline = None;
}

/// Submits everything due at `now` in every store; returns when to look again.
///
/// A store that fails is skipped for this pass (the others still run) and the error
/// is returned after all stores were served, so the loop retries with backoff.
pub(crate) async fn process_due_jobs(
    inner: &Inner,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut next_deadline: Option<DateTime<Utc>> = None;
    let mut first_error = None;
    for (name, store) in &inner.stores {
        let served = async {
            loop {
                let jobs = store
                    .acquire_due_jobs(&inner.id, now, inner.batch_size, inner.lease)
                    .await?;
                let count = jobs.len();
                let mut releases = Vec::with_capacity(count);
                for job in jobs {
                    releases.push(handle_due_job(inner, name, &job, now).await);
                }
                let finished: Vec<String> = releases
                    .iter()
                    .filter(|release| release.next_run_time.is_none())
                    .map(|release| release.job_id.clone())
                    .collect();
                store.release_jobs(&inner.id, releases).await?;
                for job_id in finished {
                    inner.emit(Event::JobRemoved {
                        job_id,
                        jobstore: name.clone(),
                    });
                }
                if count < inner.batch_size {
                    break;
                }
            }
            store.next_run_time().await
        }
        .await;
        match served {
            Ok(Some(next)) => {
                next_deadline = Some(next_deadline.map_or(next, |deadline| deadline.min(next)));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(jobstore = name, %error, "job store failed");
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(next_deadline),
    }
}

/// Plans and submits one acquired job; returns what to write back for it.
async fn handle_due_job(inner: &Inner, jobstore: &str, job: &Job, now: DateTime<Utc>) -> Release {
    let plan = plan(job, now);
    if let Some(first) = plan.first_missed {
        inner.emit(Event::JobMissed {
            job_id: job.id.clone(),
            scheduled_time: first,
            count: plan.missed,
        });
        record_unstarted(
            inner,
            jobstore,
            job,
            first,
            now,
            RunOutcome::Missed,
            format!(
                "{} run time(s) from {first} were later than the misfire grace time",
                plan.missed
            ),
        )
        .await;
    }
    let jitter = job.effective_jitter();
    for scheduled_time in plan.run {
        let start_at = match jitter {
            Some(jitter) => {
                let mut mutable = inner.lock();
                delay_run(
                    scheduled_time,
                    jitter,
                    plan.next_run_time,
                    &mut mutable.random,
                )
            }
            None => scheduled_time,
        };
        if let Err(error) = submit_run(inner, jobstore, job, scheduled_time, start_at).await {
            tracing::warn!(job_id = job.id, %error, "could not submit a run");
        }
    }
    Release {
        job_id: job.id.clone(),
        revision: job.revision,
        next_run_time: plan.next_run_time,
    }
}

/// Claims an instance slot and hands one run to the job's executor; returns the run id.
/// A run that cannot start (limit reached, executor or task gone) is recorded as such.
pub(crate) async fn submit_run(
    inner: &Inner,
    jobstore: &str,
    job: &Job,
    scheduled_time: DateTime<Utc>,
    start_at: DateTime<Utc>,
) -> Result<String, StoreError> {
    let store = inner
        .stores
        .get(jobstore)
        .ok_or_else(|| StoreError::NotFound(jobstore.to_owned()))?;
    if !store
        .claim_instance(&job.id, &inner.id, job.max_instances)
        .await?
    {
        inner.emit(Event::JobMaxInstances {
            job_id: job.id.clone(),
            scheduled_time,
            max_instances: job.max_instances,
        });
        let reason = format!(
            "{} run(s) of this job were still going (max_instances)",
            job.max_instances
        );
        return Ok(record_unstarted(
            inner,
            jobstore,
            job,
            scheduled_time,
            inner.clock.now(),
            RunOutcome::Skipped,
            reason,
        )
        .await);
    }
    let refusal = match (
        inner.executors.get(&job.executor),
        submission(inner, job, scheduled_time, start_at),
    ) {
        (None, _) => Err(format!("the executor \"{}\" does not exist", job.executor)),
        (_, None) => Err(format!("the task \"{}\" is not registered", job.task)),
        (Some(executor), Some(submission)) => {
            let run_id = submission.run.run_id.clone();
            inner
                .lock()
                .run_stores
                .insert(run_id.clone(), jobstore.to_owned());
            match executor.submit(submission) {
                Ok(()) => {
                    inner.emit(Event::JobSubmitted {
                        job_id: job.id.clone(),
                        run_id: run_id.clone(),
                        scheduled_time,
                        start_at,
                        executor: job.executor.clone(),
                        queued: executor.load().queued,
                    });
                    return Ok(run_id);
                }
                Err(error) => {
                    inner.lock().run_stores.remove(&run_id);
                    Err(error.to_string())
                }
            }
        }
    };
    let reason = refusal.unwrap_or_default();
    store.release_instance(&job.id, &inner.id).await?;
    let run_id = record_unstarted(
        inner,
        jobstore,
        job,
        scheduled_time,
        inner.clock.now(),
        RunOutcome::Error,
        reason,
    )
    .await;
    Ok(run_id)
}

/// Records and announces a run that never started; returns its run id.
async fn record_unstarted(
    inner: &Inner,
    jobstore: &str,
    job: &Job,
    scheduled_time: DateTime<Utc>,
    now: DateTime<Utc>,
    outcome: RunOutcome,
    reason: String,
) -> String {
    let record = RunRecord {
        run_id: generate_id(),
        job_id: job.id.clone(),
        scheduled_time,
        started_at: None,
        finished_at: now,
        outcome,
        error: Some(reason),
        output: None,
    };
    let run_id = record.run_id.clone();
    if let Some(store) = inner.stores.get(jobstore) {
        if let Err(error) = store.record_run(record.clone()).await {
            tracing::warn!(job_id = job.id, %error, "could not record a run");
        }
    }
    if outcome != RunOutcome::Missed {
        inner.emit(Event::for_run(record));
    }
    run_id
}

/// Records finished runs, frees their instance slots and announces them, until the
/// scheduler stops and every run reported before that is handled.
pub(crate) async fn record_finished_runs(
    inner: Arc<Inner>,
    mut finished: mpsc::UnboundedReceiver<RunRecord>,
) {
    loop {
        tokio::select! {
            received = finished.recv() => match received {
                Some(record) => record_one(&inner, record).await,
                None => break,
            },
            () = inner.drain.notified() => break,
        }
    }
    // Shutdown signals `drain` only after the executors stopped, so everything they
    // reported is queued here.
    while let Ok(record) = finished.try_recv() {
        record_one(&inner, record).await;
    }
}

async fn record_one(inner: &Inner, record: RunRecord) {
    let jobstore = inner.lock().run_stores.remove(&record.run_id);
    if let Some(store) = jobstore.as_deref().and_then(|name| inner.stores.get(name)) {
        if let Err(error) = store.release_instance(&record.job_id, &inner.id).await {
            tracing::warn!(job_id = record.job_id, %error, "could not release a run's instance slot");
        }
        if let Err(error) = store.record_run(record.clone()).await {
            tracing::warn!(job_id = record.job_id, %error, "could not record a run");
        }
    }
    inner.emit(Event::for_run(record));
}
