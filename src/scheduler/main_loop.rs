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

use super::jobs::submission;
use super::plan::plan;
use super::{Event, Inner, SchedulerState};
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
                // During a pass the loop has no deadline, so a job added or changed
                // meanwhile always leaves a wake-up behind.
                inner.lock().deadline = None;
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
    // Jobs due within the fire-ahead window are taken now and started on time by their
    // executor.
    let fire_ahead = TimeDelta::from_std(inner.fire_ahead).unwrap_or(TimeDelta::zero());
    let horizon = now.checked_add_signed(fire_ahead).unwrap_or(now);
    for (name, store) in &inner.stores {
        let served = async {
            // Runs already submitted but not written back (the store failed last time)
            // are written first: taking those jobs again would run the same times twice.
            let pending = inner.lock().pending_releases.remove(name);
            if let Some(pending) = pending {
                if let Err(error) = store.release_jobs(&inner.id, pending.clone()).await {
                    inner.lock().pending_releases.insert(name.clone(), pending);
                    return Err(error);
                }
            }
            loop {
                let jobs = store
                    .acquire_due_jobs(&inner.id, horizon, inner.batch_size, inner.lease)
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
                if let Err(error) = store.release_jobs(&inner.id, releases.clone()).await {
                    inner.lock().pending_releases.insert(name.clone(), releases);
                    return Err(error);
                }
                for job_id in finished {
                    inner.emit_with(|| Event::JobRemoved {
                        job_id,
                        jobstore: name.clone(),
                    });
                }
                if count < inner.batch_size {
                    break;
                }
            }
            // Wake the fire-ahead window before the next job is due.
            store
                .next_run_time()
                .await
                .map(|next| next.map(|next| next.checked_sub_signed(fire_ahead).unwrap_or(next)))
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
    // A job taken ahead of time is planned at its own due time: it is not late, and
    // only that one run is handed over (later ones come in later passes, so a job that
    // coalesces never merges runs that are not due yet).
    let planned_at = job.next_run_time.map_or(now, |due| due.max(now));
    let plan = plan(job, planned_at);
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
    if let Some(first) = plan.run.first().copied() {
        let start_at = match job.effective_jitter() {
            Some(jitter) => {
                let mut mutable = inner.lock();
                delay_run(first, jitter, plan.next_run_time, &mut mutable.random)
            }
            None => first,
        };
        if let Err(error) = submit_runs(inner, jobstore, job, &plan.run, start_at).await {
            tracing::warn!(job_id = job.id, %error, "could not submit a run");
        }
    }
    Release {
        job_id: job.id.clone(),
        revision: job.revision,
        acquired_next_run_time: job.next_run_time,
        next_run_time: plan.next_run_time,
    }
}

/// Claims one instance slot and hands the runs for `scheduled_times` (earliest first)
/// to the job's executor, which runs them one after another; returns the first run id.
/// Runs that cannot start (limit reached, executor or task gone) are recorded as such.
pub(crate) async fn submit_runs(
    inner: &Inner,
    jobstore: &str,
    job: &Job,
    scheduled_times: &[DateTime<Utc>],
    start_at: DateTime<Utc>,
) -> Result<String, StoreError> {
    let Some(first) = scheduled_times.first().copied() else {
        return Err(StoreError::NotFound(job.id.clone()));
    };
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
            scheduled_time: first,
            max_instances: job.max_instances,
        });
        let reason = format!(
            "{} run(s) of this job were still going (max_instances); skipped {} run time(s)",
            job.max_instances,
            scheduled_times.len()
        );
        let now = inner.clock.now();
        return Ok(record_unstarted(
            inner,
            jobstore,
            job,
            first,
            now,
            RunOutcome::Skipped,
            reason,
        )
        .await);
    }
    let refusal = match (
        inner.executors.get(&job.executor),
        submission(inner, job, scheduled_times, start_at),
    ) {
        (None, _) => Err(format!("the executor {:?} does not exist", job.executor)),
        (_, None) => Err(format!("the task {:?} is not registered", job.task)),
        (Some(executor), Some(submission)) => {
            let run_ids: Vec<String> = submission
                .runs
                .iter()
                .map(|run| run.run_id.clone())
                .collect();
            {
                let mut mutable = inner.lock();
                let last = run_ids.len() - 1;
                for (index, run_id) in run_ids.iter().enumerate() {
                    mutable
                        .run_stores
                        .insert(run_id.clone(), (jobstore.to_owned(), index == last));
                }
            }
            match executor.submit(submission) {
                Ok(()) => {
                    for (run_id, scheduled_time) in run_ids.iter().zip(scheduled_times) {
                        inner.emit_with(|| Event::JobSubmitted {
                            job_id: job.id.clone(),
                            run_id: run_id.clone(),
                            scheduled_time: *scheduled_time,
                            start_at: start_at.max(*scheduled_time),
                            executor: job.executor.clone(),
                            queued: executor.load().queued,
                        });
                    }
                    return Ok(run_ids[0].clone());
                }
                Err(error) => {
                    let mut mutable = inner.lock();
                    for run_id in &run_ids {
                        mutable.run_stores.remove(run_id);
                    }
                    Err(error.to_string())
                }
            }
        }
    };
    let reason = refusal.unwrap_or_default();
    store.release_instance(&job.id, &inner.id).await?;
    let now = inner.clock.now();
    Ok(record_unstarted(inner, jobstore, job, first, now, RunOutcome::Error, reason).await)
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
    let placed = inner.lock().run_stores.remove(&record.run_id);
    if let Some((store, frees_slot)) = placed
        .as_ref()
        .and_then(|(name, frees_slot)| Some((inner.stores.get(name)?, *frees_slot)))
    {
        if frees_slot {
            if let Err(error) = store.release_instance(&record.job_id, &inner.id).await {
                tracing::warn!(job_id = record.job_id, %error, "could not release a run's instance slot");
            }
        }
        if let Err(error) = store.record_run(record.clone()).await {
            tracing::warn!(job_id = record.job_id, %error, "could not record a run");
        }
    }
    inner.emit(Event::for_run(record));
}
