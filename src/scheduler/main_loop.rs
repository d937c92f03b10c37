//! The main loop: one timer that sleeps until the earliest next run time.
//!
//! Each pass is a function of `(now, stores)` that submits what is due and returns
//! the next deadline ([`process_due_jobs`]); the shell around it sleeps on the clock,
//! the wake-up [`Notify`](tokio::sync::Notify) or a state change, whichever comes
//! first. Stores shared by several nodes push the other nodes' changes
//! ([`JobStore::wake_ups`]), which wake the loop the same way a local change does.
//! Finished runs come back on a channel and are recorded by a second task
//! ([`record_finished_runs`]), so slow history writes never delay the timer.
//!
//! ```text
//! sleep ──(deadline | wake | pause/stop)──> acquire due batch ──> plan (misfire,
//!   ^                                        coalesce) ──> claim instance ──> submit
//!   └──────────── next deadline <── release batch (new next run times) <──┘
//! ```
//!
//! The life of one run, from the store to its record, is `docs/lifecycle.md`; in
//! short:
//!
//! - **Taken and planned** ([`process_due_jobs`], [`plan_due_job`]): a due job is
//!   acquired under a lease, misfires and coalescing are judged, and its runs are
//!   handed to its executor, up to the fire-ahead window early.
//! - **Judged at their time** ([`start::RunStart`]): a run handed over early starts only
//!   if its job was not paused, rescheduled or removed meanwhile (through any node),
//!   and `max_instances` is judged then, by the runs executing then.
//! - **Held until they end** ([`HeldRelease`]): a one-off job, and a recurring job with
//!   `max_instances = 1`, stay leased to this node until the run ends (the lease and
//!   the instance slot renewed meanwhile, `renewal.rs`), and are written back with
//!   the run's record. A node that dies first leaves them to its restarted successor
//!   or to another node, which runs them again: at least once across a crash. A job
//!   that allows several runs at once is written back when its run is due
//!   ([`Deferred`]), so its next run can be taken while this one goes; a run of it
//!   that had started on a node that died is not repeated.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;

use super::jobs::submission;
use super::plan::plan;
use super::{start, Event, Inner, SchedulerState};
use crate::executor::Withdrawal;
use crate::history::{RunOutcome, RunRecord};
use crate::job::{generate_id, Job};
use crate::store::{FinishedRun, InstanceClaim, JobStore, Release, StoreError, WakeUp};
use crate::trigger::jitter::delay_run;

/// The first retry delay after a store error; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest retry delay after repeated store errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) async fn run(inner: Arc<Inner>) {
    for (name, store) in &inner.stores {
        match store.recover_owner(&inner.id).await {
            Ok(0) => {}
            Ok(freed) => {
                tracing::info!(
                    jobstore = name,
                    scheduler_id = inner.id,
                    freed,
                    "freed the leases and instance slots an earlier run of this scheduler left"
                );
            }
            // They expire on their own; this only makes recovery faster.
            Err(error) => {
                tracing::warn!(jobstore = name, %error, "could not free leases left by an earlier run");
            }
        }
    }
    // Other nodes' changes, pushed by the stores that can (PostgreSQL, Redis).
    let listeners: Vec<tokio::task::JoinHandle<()>> = inner
        .stores
        .values()
        .filter_map(|store| store.wake_ups())
        .map(|wake_ups| tokio::spawn(forward_wake_ups(Arc::clone(&inner), wake_ups)))
        .collect();
    let mut state = inner.state.subscribe();
    let mut backoff = MIN_BACKOFF;
    loop {
        let current = *state.borrow_and_update();
        let deadline = match current {
            SchedulerState::Stopped => break,
            // Taking nothing, but runs handed over early still get their jobs' next
            // run times when due (their leases must not run out).
            SchedulerState::Paused => flush_deferred(&inner, Some(inner.clock.now())).await,
            SchedulerState::Running => {
                // During a pass the loop has no deadline, so a job added or changed
                // meanwhile always leaves a wake-up behind.
                {
                    let mut mutable = inner.lock();
                    mutable.deadline = None;
                    mutable.pass_started = Some(std::time::Instant::now());
                }
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
        // The safety net: another node's change is seen within the poll interval.
        let deadline = match (current, inner.poll_interval) {
            (SchedulerState::Running, Some(interval)) => {
                let poll = inner
                    .clock
                    .now()
                    .checked_add_signed(TimeDelta::from_std(interval).unwrap_or(TimeDelta::MAX));
                match (deadline, poll) {
                    (Some(deadline), Some(poll)) => Some(deadline.min(poll)),
                    (deadline, poll) => deadline.or(poll),
                }
            }
            _ => deadline,
        };
        {
            let mut mutable = inner.lock();
            mutable.deadline = deadline;
            mutable.pass_started = None;
        }
        let sleep = async {
            match deadline {
                // With a fire-ahead window the loop takes jobs that long before they
                // are due, and their executor starts them on time: waking a millisecond
                // late costs nothing, and spinning through the last millisecond before
                // each of a stream of one-off jobs kept a core busy (issue 9, burst).
                Some(deadline) if inner.fire_ahead >= COARSE_WAKE_MIN_FIRE_AHEAD => {
                    inner.clock.sleep_until_coarse(deadline).await
                }
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
    // What was handed over early is written now: the executors still run those runs
    // (a shutdown with a wait lets them), as they would have been at hand-over.
    // One the store refuses now stays unwritten: its job runs again once the lease
    // runs out (or at once, when this node restarts under its id).
    flush_deferred(&inner, None).await;
    // Dropping their receivers ends the stores' listening connections.
    for listener in listeners {
        listener.abort();
    }
}

/// Turns a store's wake-ups ([`JobStore::wake_ups`]) into wake-ups of the loop: a
/// change due before the loop's deadline wakes it (STYLE 10), a resync always does (the
/// store may have changed while nobody listened). The loop then re-reads the store, so
/// a wake-up is only ever a hint.
async fn forward_wake_ups(inner: Arc<Inner>, mut wake_ups: mpsc::Receiver<WakeUp>) {
    while let Some(wake_up) = wake_ups.recv().await {
        match wake_up {
            WakeUp::Due(time) => inner.wake_if_earlier(Some(time)),
            WakeUp::Resync => inner.wake.notify_one(),
        }
    }
}

/// Submits everything due at `now` in every store; returns when to look again.
///
/// A store that fails is skipped for this pass (the others still run) and the error
/// is returned after all stores were served, so the loop retries with backoff.
pub(crate) async fn process_due_jobs(
    inner: &Inner,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut first_error = None;
    let mut starved_any = false;
    // Jobs due within the fire-ahead window are taken now and started on time by their
    // executor.
    let fire_ahead = TimeDelta::from_std(inner.fire_ahead).unwrap_or(TimeDelta::zero());
    let horizon = now.checked_add_signed(fire_ahead).unwrap_or(now);
    // Runs handed over early whose time has come: their jobs get their next run times.
    let mut next_deadline = flush_deferred(inner, Some(now)).await;
    for (name, store) in &inner.stores {
        let served = async {
            // Runs already submitted but not written back (the store failed last time)
            // are written first: taking those jobs again would run the same times twice.
            let pending = inner.lock().pending_releases.remove(name);
            if let Some(pending) = pending {
                match store.release_jobs(&inner.id, pending.clone()).await {
                    Ok(fenced) => report_fenced(inner, name, &fenced),
                    Err(error) => {
                        inner.lock().pending_releases.insert(name.clone(), pending);
                        return Err(error);
                    }
                }
            }
            let mut starved = false;
            if inner.lock().backlogged.contains(name) {
                // Its run records are not being written: runs taken now would only add
                // to them. The record task wakes the loop once they are written.
                return Ok((None, false));
            }
            loop {
                let limit = inner.acquisition_limit();
                if limit == 0 {
                    // Full: due jobs stay in the store for nodes with free workers.
                    starved = true;
                    break;
                }
                let jobs = store
                    .acquire_due_jobs(&inner.id, horizon, limit, inner.lease)
                    .await?;
                let count = jobs.len();
                let mut releases = Vec::with_capacity(count);
                let mut due_runs = Vec::new();
                for job in &jobs {
                    let (release, due) = plan_due_job(inner, name, job, now).await;
                    releases.push(release);
                    due_runs.extend(due);
                }
                let claim_error =
                    match hand_over_due_runs(inner, name, store.as_ref(), &due_runs, now).await {
                        Ok(handed) => {
                            // Written when their runs end (see `RunPlace::release`).
                            releases.retain(|release| !handed.held.contains(&release.job_id));
                            // Written when their runs are due (see `Deferred`).
                            let mut deferred = Vec::new();
                            releases.retain(|release| match handed.early.get(&release.job_id) {
                                Some(at) => {
                                    deferred.push(Deferred {
                                        at: *at,
                                        release: release.clone(),
                                    });
                                    false
                                }
                                None => true,
                            });
                            if !deferred.is_empty() {
                                inner
                                    .lock()
                                    .deferred_releases
                                    .entry(name.clone())
                                    .or_default()
                                    .extend(deferred);
                            }
                            None
                        }
                        Err(error) => {
                            // Nothing was handed over: write the jobs back as they were
                            // acquired, so the retry runs them instead of skipping them.
                            for due in &due_runs {
                                if let Some(release) = releases
                                    .iter_mut()
                                    .find(|release| release.job_id == due.job.id)
                                {
                                    release.next_run_time = due.job.next_run_time;
                                }
                            }
                            Some(error)
                        }
                    };
                let finished: Vec<String> = releases
                    .iter()
                    .filter(|release| release.next_run_time.is_none())
                    .map(|release| release.job_id.clone())
                    .collect();
                let fenced = match store.release_jobs(&inner.id, releases.clone()).await {
                    Ok(fenced) => fenced,
                    Err(error) => {
                        inner.lock().pending_releases.insert(name.clone(), releases);
                        return Err(error);
                    }
                };
                report_fenced(inner, name, &fenced);
                for job_id in finished {
                    if fenced.contains(&job_id) {
                        continue;
                    }
                    inner.emit_with(|| Event::JobRemoved {
                        job_id,
                        jobstore: name.clone(),
                    });
                }
                if let Some(error) = claim_error {
                    return Err(error);
                }
                if count < limit {
                    break;
                }
            }
            // Wake the fire-ahead window before the next job is due.
            let next = store
                .next_run_time()
                .await?
                .map(|next| next.checked_sub_signed(fire_ahead).unwrap_or(next));
            // Full, with jobs due that it had to leave (not merely full with nothing
            // due, which needs no looking until the next deadline).
            let left_due = starved && next.is_some_and(|next| next <= now);
            if !left_due {
                return Ok((next, false));
            }
            // Wait for a run to end (which wakes the loop), or look again after a
            // moment in case nobody else took them.
            let recheck = now
                .checked_add_signed(TimeDelta::from_std(STARVED_RECHECK).unwrap_or_default())
                .unwrap_or(now);
            Ok((Some(next.map_or(recheck, |next| next.max(recheck))), true))
        }
        .await;
        let served = served.map(|(next, starved)| {
            starved_any |= starved;
            next
        });
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
    // Including the releases this pass deferred.
    let deferred = inner
        .lock()
        .deferred_releases
        .values()
        .flatten()
        .map(|entry| entry.at)
        .min();
    if let Some(deferred) = deferred {
        next_deadline = Some(next_deadline.map_or(deferred, |deadline| deadline.min(deferred)));
    }
    inner
        .starved
        .store(starved_any, std::sync::atomic::Ordering::Release);
    match first_error {
        Some(error) => Err(error),
        None => Ok(next_deadline),
    }
}

/// How long a node whose executors were full waits before looking at the store again
/// if no run of its own ends first ([`SchedulerBuilder::acquire_within_capacity`](super::SchedulerBuilder::acquire_within_capacity)).
const STARVED_RECHECK: Duration = Duration::from_secs(1);

impl Inner {
    /// Takes back the runs of `job_id` handed over ahead of their start time and not
    /// started yet: the job was paused, rescheduled or removed through this scheduler,
    /// so the run it had when it was taken must not happen. Their executor reports them
    /// as skipped; the release written for them then leaves the change in place.
    pub(crate) fn withdraw_early_runs(&self, job_id: &str) {
        let mutable = self.lock();
        for place in mutable.run_stores.values() {
            if place.job_id == job_id {
                place.withdrawal.withdraw();
            }
        }
    }

    /// How many due jobs one acquisition may take: the batch size, and with
    /// [`SchedulerBuilder::acquire_within_capacity`](super::SchedulerBuilder::acquire_within_capacity)
    /// no more than the executors' free workers.
    fn acquisition_limit(&self) -> usize {
        if !self.within_capacity {
            return self.batch_size;
        }
        // Runs handed over ahead of their time hold no worker yet: counting them would
        // shrink the fire-ahead window to the pool's size.
        let free: usize = self
            .executors
            .values()
            .map(|executor| executor.load().free())
            .fold(0, usize::saturating_add);
        free.min(self.batch_size)
    }
}

/// Logs releases the store fenced off ([`JobStore::release_jobs`]): this scheduler's
/// lease on those jobs ended (it was paused or cut off past the lease, and another
/// scheduler took the jobs over, or a survivor reaped it), so its next run times were
/// not written. Nothing to retry: the job's current holder decides.
fn report_fenced(inner: &Inner, jobstore: &str, fenced: &[String]) {
    for job_id in fenced {
        tracing::warn!(
            jobstore,
            job_id,
            scheduler_id = inner.id,
            "stale release rejected by the store: this node's lease on the job was lost"
        );
    }
}

/// Runs of one acquired job to hand over to its executor.
struct DueRuns<'a> {
    job: &'a Job,
    /// Earliest first; never empty.
    run_times: Vec<DateTime<Utc>>,
    start_at: DateTime<Utc>,
    /// The job's release when its runs hold the job until they end ([`HeldRelease`]).
    final_release: Option<HeldRelease>,
    /// The next run time written back for the job ([`start::RunStart`]).
    released_next: Option<DateTime<Utc>>,
}

/// Where a run in flight reports, and what its end writes back.
pub(crate) struct RunPlace {
    /// Its job (for the node's stats: what it is running).
    pub(crate) job_id: String,
    /// The store of its job, where its record goes.
    pub(crate) jobstore: String,
    /// Whether its record frees the job's instance slot: the last run of a submission
    /// does (they share one slot).
    pub(crate) frees_instance: bool,
    /// On the last run of a job its runs hold ([`HeldRelease`]): the release written
    /// once the run has ended. Until then the job stays in the store under this
    /// scheduler's lease (renewed while the run goes, `renewal.rs`), so if the process
    /// dies first, the run happens again (after a restart under the same id, or when
    /// the lease expires) instead of being lost with it. A run that a shutdown stopped
    /// before it ended writes nothing, for the same reason.
    pub(crate) release: Option<HeldRelease>,
    /// Takes the run back while it waits for its start time ([`Inner::withdraw_early_runs`]).
    pub(crate) withdrawal: Withdrawal,
}

/// A job's release held by its run until the run ends: the job stays leased to this
/// node meanwhile, so the run happens at least once across a crash (see
/// `docs/lifecycle.md`).
///
/// Runs hold their job when nothing else of it can happen meanwhile: a one-off job
/// (its trigger is finished), and a recurring job with `max_instances = 1`, whose next
/// run could not start before this one ends anyway. Its fire times that come while the
/// run executes are skipped when it ends (`max_instances`), and the job is written
/// back at its first fire time after the end:
///
/// ```text
/// every 2 s, a run of 2.5 s:  0 s run ─────────── 2.5 s end: 2 s skipped, next 4 s
/// ```
///
/// A job that allows several runs at once is written back when its run is due
/// ([`Deferred`]), so its next run can be taken while this one goes.
#[derive(Clone, Debug)]
pub(crate) struct HeldRelease {
    pub(crate) release: Release,
    /// A recurring job's trigger, to move its next run time past the run's end.
    pub(crate) trigger: Option<crate::trigger::Trigger>,
    /// Which attempt of its scheduled time the run is (1-based).
    pub(crate) attempt: u32,
    /// How the job's failed runs are retried, if they are.
    pub(crate) policy: Option<crate::job::RetryPolicy>,
}

impl HeldRelease {
    /// The release to write for a run that ended at `end`, and the fire times skipped
    /// because they came while it executed: (how many, the first).
    fn at_end(mut self, end: DateTime<Utc>) -> (Release, u64, Option<DateTime<Utc>>) {
        let Some(trigger) = self.trigger else {
            return (self.release, 0, None);
        };
        let mut skipped = 0u64;
        let mut first = None;
        let mut next = self.release.next_run_time;
        while let Some(time) = next.filter(|time| *time <= end) {
            first.get_or_insert(time);
            skipped += 1;
            next = if skipped >= super::plan::MAX_RUN_TIMES as u64 {
                // A run far longer than its interval: jump to the first time after it
                // (the count then says "at least").
                trigger.fire_times(end + TimeDelta::microseconds(1)).next()
            } else {
                trigger.next_fire_time(Some(time), end)
            };
        }
        self.release.next_run_time = next;
        (self.release, skipped, first)
    }
}

/// Plans one acquired job (misfire, coalesce, jitter); returns what to write back for
/// it and the runs to hand over, if any.
async fn plan_due_job<'a>(
    inner: &Inner,
    jobstore: &str,
    job: &'a Job,
    now: DateTime<Utc>,
) -> (Release, Option<DueRuns<'a>>) {
    if let Some(pending) = job.retrying() {
        return plan_retry(job, pending, now);
    }
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
    let release = Release {
        job_id: job.id.clone(),
        revision: job.revision,
        acquired_next_run_time: job.next_run_time,
        next_run_time: plan.next_run_time,
    };
    let due = plan.run.first().copied().map(|first| {
        let start_at = match job.effective_jitter() {
            Some(jitter) => {
                let mut mutable = inner.lock();
                delay_run(first, jitter, plan.next_run_time, &mut mutable.random)
            }
            None => first,
        };
        DueRuns {
            job,
            run_times: plan.run.clone(),
            start_at,
            final_release: (release.next_run_time.is_none()
                || job.max_instances == 1
                || job.max_attempts() > 1)
                .then(|| HeldRelease {
                    release: release.clone(),
                    trigger: release.next_run_time.map(|_| job.trigger.clone()),
                    attempt: 1,
                    policy: job.retry.policy.clone(),
                }),
            released_next: release.next_run_time,
        }
    });
    (release, due)
}

/// Plans the next attempt of a failed run ([`crate::job::RetryPolicy`]): the scheduled
/// time that failed runs again, at the job's next run time (the end of the wait), and
/// the job's regular schedule resumes after it.
fn plan_retry<'a>(
    job: &'a Job,
    pending: &crate::job::PendingAttempt,
    now: DateTime<Utc>,
) -> (Release, Option<DueRuns<'a>>) {
    let release = Release {
        job_id: job.id.clone(),
        revision: job.revision,
        acquired_next_run_time: job.next_run_time,
        next_run_time: pending.resume_at,
    };
    let due = DueRuns {
        job,
        run_times: vec![pending.scheduled_time],
        start_at: job.next_run_time.unwrap_or(now),
        final_release: Some(HeldRelease {
            release: release.clone(),
            trigger: pending.resume_at.map(|_| job.trigger.clone()),
            attempt: pending.attempt,
            policy: job.retry.policy.clone(),
        }),
        released_next: pending.resume_at,
    };
    (release, Some(due))
}

/// Claims the instance slots of a batch's due runs in one store call, then hands each
/// claimed job's runs to its executor. Returns the jobs whose final release the runs
/// now hold ([`RunPlace::release`]), to leave out of the batch's release. Fails only
/// when the claim itself failed, in which case nothing was handed over.
async fn hand_over_due_runs(
    inner: &Inner,
    jobstore: &str,
    store: &dyn JobStore,
    due_runs: &[DueRuns<'_>],
    now: DateTime<Utc>,
) -> Result<HandedOver, StoreError> {
    let mut handed = HandedOver::default();
    if due_runs.is_empty() {
        return Ok(handed);
    }
    let claims: Vec<InstanceClaim> = due_runs
        .iter()
        .map(|due| InstanceClaim {
            job_id: due.job.id.clone(),
            max_instances: due.job.max_instances,
        })
        .collect();
    let claimed = store.claim_instances(&inner.id, &claims).await?;
    for (index, due) in due_runs.iter().enumerate() {
        // A store that answered fewer claims than asked granted none of the rest.
        // A slot not free now is claimed when the run is due, and only then may the
        // run be skipped: `max_instances` counts the runs executing at its time
        // ([`start::RunStart`]).
        let slot_claimed = claimed.get(index).copied().unwrap_or(false);
        let (_, handed_over) = hand_over(
            inner,
            jobstore,
            store,
            due.job,
            &due.run_times,
            due.start_at,
            HandOver {
                final_release: due.final_release.clone(),
                slot_claimed,
                released_next: due.released_next,
            },
        )
        .await;
        if handed_over && due.final_release.is_some() {
            handed.held.insert(due.job.id.clone());
        } else if handed_over {
            if let Some(first) = due.run_times.first().filter(|first| **first > now) {
                handed.early.insert(due.job.id.clone(), *first);
            }
        }
    }
    Ok(handed)
}

/// What [`hand_over_due_runs`] handed over that changes when the batch's releases are
/// written.
#[derive(Default)]
struct HandedOver {
    /// Jobs whose final release their runs hold ([`RunPlace::release`]).
    held: hashbrown::HashSet<String>,
    /// Recurring jobs handed over ahead of their time (the fire-ahead window), with
    /// their first run time: their release waits until then ([`Deferred`]).
    early: hashbrown::HashMap<String, DateTime<Utc>>,
}

/// A release held back until its run's scheduled time.
///
/// A recurring job handed over in the fire-ahead window keeps its lease until its run
/// is due instead of getting its next run time at once, so a node that dies before
/// the run starts leaves the job to the others at the time it had, and the run happens
/// elsewhere (late by the failover), rather than never:
///
/// ```text
/// node a: take (T−1s) ── hand over ─────── T: write next run time ── run
///                              ✝ (kill -9)
/// node b:                      ·· reap a ── take (old time T) ── run, late
/// ```
///
/// Releases are written when their time comes by the loop's next pass (it wakes for
/// them), while the loop is paused too, and all at once when it stops.
pub(crate) struct Deferred {
    /// When to write it: the first run time handed over.
    pub(crate) at: DateTime<Utc>,
    pub(crate) release: Release,
}

/// Writes the deferred releases due by `until` (all of them with `None`), store by
/// store; a store that fails keeps them as pending releases, written before anything
/// more is taken from it. Returns when the next deferred release is due.
async fn flush_deferred(inner: &Inner, until: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let due: Vec<(String, Vec<Release>)> = {
        let mut mutable = inner.lock();
        let mut due = Vec::new();
        for (name, deferred) in &mut mutable.deferred_releases {
            let (now_due, later): (Vec<Deferred>, Vec<Deferred>) = std::mem::take(deferred)
                .into_iter()
                .partition(|entry| until.is_none_or(|until| entry.at <= until));
            *deferred = later;
            if !now_due.is_empty() {
                due.push((
                    name.clone(),
                    now_due.into_iter().map(|entry| entry.release).collect(),
                ));
            }
        }
        due
    };
    for (name, releases) in due {
        let Some(store) = inner.stores.get(&name) else {
            continue;
        };
        let mut releases = releases.into_iter().peekable();
        while releases.peek().is_some() {
            // These come due at the instant their runs start: ten thousand recurring jobs
            // due in one second release together. Written a chunk at a time, each after
            // the runs that are ready have had their turn, so the runs start first
            // (issue 9, recurring).
            tokio::task::yield_now().await;
            let chunk: Vec<Release> = releases.by_ref().take(RELEASE_CHUNK).collect();
            match store.release_jobs(&inner.id, chunk.clone()).await {
                Ok(fenced) => report_fenced(inner, &name, &fenced),
                Err(error) => {
                    tracing::warn!(jobstore = name, %error, "could not write back runs handed over early; will retry");
                    inner
                        .lock()
                        .pending_releases
                        .entry(name)
                        .or_default()
                        .extend(chunk.into_iter().chain(releases));
                    break;
                }
            }
        }
    }
    inner
        .lock()
        .deferred_releases
        .values()
        .flatten()
        .map(|entry| entry.at)
        .min()
}

/// The shortest fire-ahead window with which the loop wakes without spinning: runs
/// are then handed over at least this early, so a wake-up a millisecond late is on
/// time.
const COARSE_WAKE_MIN_FIRE_AHEAD: Duration = Duration::from_millis(10);

/// How many deferred releases one store write carries.
const RELEASE_CHUNK: usize = 256;

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
    if scheduled_times.is_empty() {
        return Err(StoreError::NotFound(job.id.clone()));
    }
    let store = inner
        .stores
        .get(jobstore)
        .ok_or_else(|| StoreError::NotFound(jobstore.to_owned()))?;
    if store
        .claim_instance(&job.id, &inner.id, job.max_instances)
        .await?
    {
        let (run_id, _) = hand_over(
            inner,
            jobstore,
            store.as_ref(),
            job,
            scheduled_times,
            start_at,
            HandOver {
                final_release: None,
                slot_claimed: true,
                released_next: job.next_run_time,
            },
        )
        .await;
        Ok(run_id)
    } else {
        Ok(refuse_max_instances(inner, jobstore, job, scheduled_times).await)
    }
}

/// Records and announces runs skipped because `max_instances` runs were going;
/// returns the record's run id.
async fn refuse_max_instances(
    inner: &Inner,
    jobstore: &str,
    job: &Job,
    scheduled_times: &[DateTime<Utc>],
) -> String {
    let first = scheduled_times
        .first()
        .copied()
        .unwrap_or_else(|| inner.clock.now());
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
    record_unstarted(
        inner,
        jobstore,
        job,
        first,
        now,
        RunOutcome::Skipped,
        reason,
    )
    .await
}

/// How runs are handed over ([`hand_over`]).
struct HandOver {
    /// Goes with the last run ([`RunPlace::release`]) when the executor takes them.
    final_release: Option<HeldRelease>,
    /// The instance slot is claimed; otherwise the runs claim it at their start time.
    slot_claimed: bool,
    /// The next run time written back for the job ([`start::RunStart`]).
    released_next: Option<DateTime<Utc>>,
}

/// Hands runs to the job's executor; returns the first run id and whether the
/// executor took them. A refused hand-over frees the slot and is recorded as an error.
/// Runs handed over before their start time, or without their slot, are judged again
/// when that time comes ([`start::RunStart`]).
async fn hand_over(
    inner: &Inner,
    jobstore: &str,
    store: &dyn JobStore,
    job: &Job,
    scheduled_times: &[DateTime<Utc>],
    start_at: DateTime<Utc>,
    how: HandOver,
) -> (String, bool) {
    let first = scheduled_times.first().copied().unwrap_or(start_at);
    let refusal = match (
        inner.executors.get(&job.executor),
        submission(inner, job, scheduled_times, start_at),
    ) {
        (None, _) => format!("the executor {:?} does not exist", job.executor),
        (_, None) => format!("the task {:?} is not registered", job.task),
        (Some(executor), Some(mut submission)) => {
            let run_ids: Vec<String> = submission
                .runs
                .iter()
                .map(|run| run.run_id.clone())
                .collect();
            let early = start_at > inner.clock.now();
            if early || !how.slot_claimed {
                submission.start_check = Some(Arc::new(start::RunStart {
                    inner: inner.me.clone(),
                    jobstore: jobstore.to_owned(),
                    job_id: job.id.clone(),
                    max_instances: job.max_instances,
                    scheduled_time: first,
                    runs: run_ids.len(),
                    acquired_next: job.next_run_time,
                    released_next: how.released_next,
                    confirm_schedule: early,
                    slot_claimed: how.slot_claimed,
                    withdrawal: submission.withdrawal.clone(),
                    last_run_id: run_ids.last().cloned().unwrap_or_default(),
                }));
            }
            {
                let mut mutable = inner.lock();
                let last = run_ids.len().saturating_sub(1);
                let mut final_release = how.final_release;
                for (index, run_id) in run_ids.iter().enumerate() {
                    let place = RunPlace {
                        job_id: job.id.clone(),
                        jobstore: jobstore.to_owned(),
                        frees_instance: index == last && how.slot_claimed,
                        release: if index == last {
                            final_release.take()
                        } else {
                            None
                        },
                        withdrawal: submission.withdrawal.clone(),
                    };
                    mutable.run_stores.insert(run_id.clone(), place);
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
                    return (run_ids.first().cloned().unwrap_or_default(), true);
                }
                Err(error) => {
                    let mut mutable = inner.lock();
                    for run_id in &run_ids {
                        mutable.run_stores.remove(run_id);
                    }
                    error.to_string()
                }
            }
        }
    };
    if how.slot_claimed {
        if let Err(error) = store.release_instance(&job.id, &inner.id).await {
            // The slot expires after the store's instance time-to-live.
            tracing::warn!(job_id = job.id, %error, "could not free the instance slot of a refused run");
        }
    }
    let now = inner.clock.now();
    let run_id =
        record_unstarted(inner, jobstore, job, first, now, RunOutcome::Error, refusal).await;
    (run_id, false)
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
        attempt: 1,
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
///
/// Runs that finished together are written in one store call per store
/// ([`JobStore::finish_runs`]): at thousands of runs a second, a commit per run would
/// compete with the main loop for the store. A batch the store refused is kept and
/// written again with backoff, so a store blip neither loses history nor leaves an
/// instance slot taken until it expires.
pub(crate) async fn record_finished_runs(
    inner: Arc<Inner>,
    mut finished: mpsc::UnboundedReceiver<RunRecord>,
    mut flushes: mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>,
) {
    let mut unwritten = Unwritten::default();
    let mut backoff = MIN_BACKOFF;
    // Who asked for everything finished so far to be written ([`Inner::flush_finished_runs`]).
    let mut flushed: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    loop {
        let waiting = !unwritten.is_empty();
        let retry = async {
            if waiting {
                tokio::time::sleep(backoff).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            received = finished.recv() => match received {
                Some(record) => {
                    let mut batch = vec![record];
                    // Let the runs queued behind this task finish first: when thousands
                    // end together, one write carries hundreds of them instead of each
                    // its own (issue 9, recurring). Alone, a record waits one turn.
                    tokio::task::yield_now().await;
                    while batch.len() < RECORD_BATCH {
                        match finished.try_recv() {
                            Ok(record) => batch.push(record),
                            Err(_) => break,
                        }
                    }
                    unwritten.add(&inner, batch);
                    // A worker is free again: take what the loop had to leave.
                    if inner.starved.load(std::sync::atomic::Ordering::Acquire) {
                        inner.wake.notify_one();
                    }
                }
                None => break,
            },
            () = retry => {}
            Some(done) = flushes.recv() => {
                // Every record sent before the ask is in the channel by now.
                let mut batch = Vec::new();
                while let Ok(record) = finished.try_recv() {
                    batch.push(record);
                }
                unwritten.add(&inner, batch);
                flushed.push(done);
            }
            () = inner.drain.notified() => break,
        }
        if unwritten.write(&inner).await {
            backoff = MIN_BACKOFF;
        } else {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
    // Shutdown signals `drain` only after the executors stopped, so everything they
    // reported is queued here.
    let mut rest = Vec::new();
    while let Ok(record) = finished.try_recv() {
        rest.push(record);
    }
    unwritten.add(&inner, rest);
    if !unwritten.write(&inner).await {
        tracing::warn!(
            runs = unwritten.len(),
            "the job store refused the last run records at shutdown; they are lost (one-off jobs among them stay and run again)"
        );
    }
}

/// How many finished runs one store write carries at most.
const RECORD_BATCH: usize = 256;

/// Run records and final releases ([`RunPlace::release`]) not yet written, per store,
/// with the records' announcements held until the first write attempt.
#[derive(Default)]
struct Unwritten {
    by_store: HashMap<String, VecDeque<FinishedRun>>,
    /// What a run's outcome changes in its job, by store (job id, acquired revision).
    follow_ups: HashMap<String, Vec<(String, u64, FollowUp)>>,
    releases: HashMap<String, Vec<Release>>,
    to_announce: Vec<RunRecord>,
    /// A release among them may leave its job due (see `add`).
    wake_loop: bool,
    /// The earliest next run time among the releases: the loop takes the job then.
    earliest_next: Option<DateTime<Utc>>,
}

/// What the end of a held run ([`HeldRelease`]) changes in its job besides the
/// write-back: written (read, changed, updated) after the run's record and before the
/// release, which then ends the lease and leaves the change in place.
#[derive(Clone, Debug)]
enum FollowUp {
    /// The run failed and has attempts left: the same scheduled time runs again at
    /// `retry_at`; the job's schedule resumes after.
    Retry {
        scheduled_time: DateTime<Utc>,
        attempt: u32,
        max_attempts: u32,
        retry_at: DateTime<Utc>,
        resume_at: Option<DateTime<Utc>>,
    },
    /// A one-off job's last attempt failed: it stays, as failed.
    Failed(crate::job::JobFailure),
    /// A retried recurring job's attempts ended: its schedule resumes.
    Resume { resume_at: Option<DateTime<Utc>> },
}

impl FollowUp {
    /// What `run`, the end of `held`, asks for (before `held` moves past the end).
    fn after(held: &HeldRelease, run: &RunRecord) -> Option<FollowUp> {
        let failed = run.started_at.is_some()
            && matches!(run.outcome, RunOutcome::Error | RunOutcome::Timeout);
        let one_off = held.trigger.is_none() && held.release.next_run_time.is_none();
        let max_attempts = held.policy.as_ref().map_or(1, |policy| policy.max_attempts);
        match &held.policy {
            Some(policy) if failed && held.attempt < max_attempts => {
                let delay = policy.delay(held.attempt, &mut fastrand::Rng::new());
                let delay = TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
                Some(FollowUp::Retry {
                    scheduled_time: run.scheduled_time,
                    attempt: held.attempt + 1,
                    max_attempts,
                    retry_at: run
                        .finished_at
                        .checked_add_signed(delay)
                        .unwrap_or(run.finished_at),
                    resume_at: None,
                })
            }
            _ if failed && one_off => Some(FollowUp::Failed(crate::job::JobFailure {
                scheduled_time: run.scheduled_time,
                attempts: held.attempt,
                at: run.finished_at,
                error: run.error.clone(),
            })),
            _ if held.attempt > 1 && !one_off => Some(FollowUp::Resume { resume_at: None }),
            _ => None,
        }
    }

    /// The same, resuming the job's schedule at `next` (its release's next run time).
    fn with_resume(self, next: Option<DateTime<Utc>>) -> FollowUp {
        match self {
            FollowUp::Retry {
                scheduled_time,
                attempt,
                max_attempts,
                retry_at,
                ..
            } => FollowUp::Retry {
                scheduled_time,
                attempt,
                max_attempts,
                retry_at,
                resume_at: next,
            },
            FollowUp::Resume { .. } => FollowUp::Resume { resume_at: next },
            failed => failed,
        }
    }

    /// One log line: a failure is never silent.
    fn log(&self, run: &RunRecord) {
        match self {
            FollowUp::Retry {
                attempt,
                max_attempts,
                retry_at,
                ..
            } => tracing::warn!(
                job_id = run.job_id,
                scheduled_time = %run.scheduled_time,
                failed_attempt = attempt - 1,
                max_attempts,
                %retry_at,
                "run failed; it will be tried again"
            ),
            FollowUp::Failed(failure) => tracing::error!(
                job_id = run.job_id,
                scheduled_time = %run.scheduled_time,
                attempts = failure.attempts,
                "one-off job failed for good; kept in its store as failed (re-run or remove it)"
            ),
            FollowUp::Resume { .. } => {}
        }
    }

    /// Applies the change to `job` as read from the store.
    fn apply(self, job: &mut Job) {
        match self {
            FollowUp::Retry {
                scheduled_time,
                attempt,
                retry_at,
                resume_at,
                ..
            } => {
                job.retry.pending = Some(crate::job::PendingAttempt {
                    scheduled_time,
                    attempt,
                    resume_at,
                });
                job.retry.failed = None;
                job.next_run_time = Some(retry_at);
            }
            FollowUp::Failed(failure) => {
                job.retry.pending = None;
                job.retry.failed = Some(failure);
                job.next_run_time = None;
            }
            FollowUp::Resume { resume_at } => {
                job.retry.pending = None;
                job.next_run_time = if job.paused { None } else { resume_at };
            }
        }
    }
}

/// The record of the fire times of `run`'s job that came while `run` executed
/// ([`HeldRelease`]): skipped, as `max_instances = 1` says, and said once.
fn skipped_while_running(
    inner: &Inner,
    run: &RunRecord,
    first: DateTime<Utc>,
    skipped: u64,
) -> RunRecord {
    inner.emit(Event::JobMaxInstances {
        job_id: run.job_id.clone(),
        scheduled_time: first,
        max_instances: 1,
    });
    RunRecord {
        run_id: generate_id(),
        job_id: run.job_id.clone(),
        scheduled_time: first,
        started_at: None,
        finished_at: run.finished_at,
        outcome: RunOutcome::Skipped,
        error: Some(format!(
            "the run for {} was still going at this time (max_instances = 1); skipped {skipped} run time(s)",
            run.scheduled_time
        )),
        output: None,
        attempt: 1,
    }
}

impl Unwritten {
    fn is_empty(&self) -> bool {
        self.by_store.values().all(VecDeque::is_empty)
            && self.releases.values().all(Vec::is_empty)
            && self.follow_ups.values().all(Vec::is_empty)
    }

    fn len(&self) -> usize {
        self.by_store.values().map(VecDeque::len).sum()
    }

    /// Tells the loop which stores hold the most records it keeps
    /// ([`SchedulerBuilder::max_unwritten_runs`](super::SchedulerBuilder::max_unwritten_runs)): it
    /// takes no jobs from those until the records are written, so the backlog grows
    /// no further than the runs already handed over (see `docs/lifecycle.md`).
    fn report_backlog(&self, inner: &Inner) {
        let mut events = Vec::new();
        {
            let mut mutable = inner.lock();
            for (name, runs) in &self.by_store {
                let full = runs.len() >= inner.max_unwritten_runs;
                let was_full = mutable.backlogged.contains(name);
                if full && !was_full {
                    mutable.backlogged.insert(name.clone());
                    events.push(Event::RecordsBacklogged {
                        jobstore: name.clone(),
                        pending: runs.len(),
                    });
                } else if !full && was_full {
                    mutable.backlogged.remove(name);
                    events.push(Event::RecordsDrained {
                        jobstore: name.clone(),
                    });
                }
            }
            mutable.unwritten_runs = self.len();
        }
        for event in events {
            let drained = matches!(event, Event::RecordsDrained { .. });
            inner.emit(event);
            if drained {
                inner.wake.notify_one();
            }
        }
    }

    /// Sorts finished runs by the store their job lives in.
    fn add(&mut self, inner: &Inner, records: Vec<RunRecord>) {
        // One lock for the batch: the scheduler's loop takes the same lock.
        let places: Vec<Option<RunPlace>> = {
            let mut mutable = inner.lock();
            for record in &records {
                if let Some(late) = record.lateness() {
                    mutable.lateness.add(late);
                }
            }
            records
                .iter()
                .map(|record| mutable.run_stores.remove(&record.run_id))
                .collect()
        };
        for (mut record, placed) in records.into_iter().zip(places) {
            if let Some(RunPlace {
                jobstore: store,
                frees_instance,
                release,
                withdrawal,
                ..
            }) = placed
            {
                let mut skipped_meanwhile = None;
                match release {
                    // It ran to its end, or was skipped at its time (the instance
                    // limit): a one-off job goes, a recurring one moves on past the
                    // run's end. Or it was taken back (paused, rescheduled, removed):
                    // the release ends the lease, and the change that took it back
                    // stays (see `JobStore::release_jobs`).
                    Some(held)
                        if record.started_at.is_some()
                            || withdrawal.is_withdrawn()
                            || record.outcome == RunOutcome::Skipped =>
                    {
                        record.attempt = held.attempt;
                        let follow_up = FollowUp::after(&held, &record);
                        let (release, skipped, first) = held.at_end(record.finished_at);
                        if let Some(follow_up) = follow_up {
                            follow_up.log(&record);
                            if let FollowUp::Retry { retry_at, .. } = &follow_up {
                                self.earliest_next = Some(
                                    self.earliest_next.map_or(*retry_at, |e| e.min(*retry_at)),
                                );
                            }
                            self.follow_ups.entry(store.clone()).or_default().push((
                                release.job_id.clone(),
                                release.revision,
                                follow_up.with_resume(release.next_run_time),
                            ));
                        }
                        if let Some(first) = first {
                            skipped_meanwhile =
                                Some(skipped_while_running(inner, &record, first, skipped));
                        }
                        // A run that did not start leaves its job to a change (a pause,
                        // a reschedule) the loop has not seen: it looks once written.
                        self.wake_loop |= record.started_at.is_none();
                        self.earliest_next = match (self.earliest_next, release.next_run_time) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        self.releases
                            .entry(store.clone())
                            .or_default()
                            .push(release);
                    }
                    // A shutdown stopped it: the job stays, leased, and runs again.
                    Some(held) => {
                        tracing::info!(
                            job_id = held.release.job_id,
                            "the run was stopped before it ended; the job stays and runs again"
                        );
                    }
                    None => {}
                }
                let runs = self.by_store.entry(store).or_default();
                if let Some(skipped) = skipped_meanwhile {
                    if inner.announces_run(&skipped) {
                        self.to_announce.push(skipped.clone());
                    }
                    runs.push_back(FinishedRun {
                        record: skipped,
                        frees_instance: false,
                    });
                }
                if inner.announces_run(&record) {
                    self.to_announce.push(record.clone());
                }
                runs.push_back(FinishedRun {
                    record,
                    frees_instance,
                });
            } else if inner.announces_run(&record) {
                self.to_announce.push(record);
            }
        }
        self.report_backlog(inner);
    }

    /// Writes what is pending and announces the new records; `false` if a store
    /// refused (its runs or releases stay pending).
    async fn write(&mut self, inner: &Inner) -> bool {
        // A write that never returns is a stuck scheduler too (the watchdog's question,
        // `Scheduler::is_making_progress`).
        inner.lock().write_started = Some(std::time::Instant::now());
        let written = self.write_all(inner).await;
        inner.lock().write_started = None;
        written
    }

    async fn write_all(&mut self, inner: &Inner) -> bool {
        let mut all_written = true;
        let mut refused = Vec::new();
        for (name, runs) in &mut self.by_store {
            if runs.is_empty() {
                continue;
            }
            let Some(store) = inner.stores.get(name) else {
                runs.clear();
                continue;
            };
            // A chunk at a time, oldest first: a retry after an outage copies one
            // chunk, not the whole backlog.
            while !runs.is_empty() {
                let chunk: Vec<FinishedRun> = runs.iter().take(RECORD_BATCH).cloned().collect();
                let written = chunk.len();
                match store.finish_runs(&inner.id, chunk).await {
                    Ok(()) => {
                        runs.drain(..written);
                    }
                    Err(error) => {
                        all_written = false;
                        refused.push(name.clone());
                        tracing::warn!(jobstore = name, runs = runs.len(), %error, "could not record finished runs; will retry");
                        break;
                    }
                }
            }
        }
        self.report_backlog(inner);
        // After their runs' records and before their releases (which end the leases).
        for (name, follow_ups) in &mut self.follow_ups {
            if follow_ups.is_empty() || refused.contains(name) {
                continue;
            }
            let Some(store) = inner.stores.get(name) else {
                follow_ups.clear();
                continue;
            };
            let mut left = Vec::new();
            for (job_id, revision, follow_up) in follow_ups.drain(..) {
                let outcome = match store.get_job(&job_id).await {
                    // Changed or removed since it was taken: the change wins.
                    Ok(Some(job)) if job.revision != revision => Ok(()),
                    Ok(None) => Ok(()),
                    Ok(Some(mut job)) => {
                        follow_up.clone().apply(&mut job);
                        store.update_job(job).await.map(drop)
                    }
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok(()) => {}
                    Err(error) if error.kind() == crate::store::StoreErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(jobstore = name, job_id, %error, "could not write what a run's end changes in its job; will retry");
                        left.push((job_id, revision, follow_up));
                    }
                }
            }
            if !left.is_empty() {
                all_written = false;
                refused.push(name.clone());
                *follow_ups = left;
            }
        }
        // After their runs' records, so a job never goes without its history.
        for (name, releases) in &mut self.releases {
            if releases.is_empty() || refused.contains(name) {
                continue;
            }
            let Some(store) = inner.stores.get(name) else {
                releases.clear();
                continue;
            };
            match store.release_jobs(&inner.id, releases.clone()).await {
                Ok(fenced) => {
                    report_fenced(inner, name, &fenced);
                    for release in releases.drain(..) {
                        if fenced.contains(&release.job_id) {
                            continue;
                        }
                        inner.emit_with(|| Event::JobRemoved {
                            job_id: release.job_id,
                            jobstore: name.clone(),
                        });
                    }
                }
                Err(error) => {
                    all_written = false;
                    tracing::warn!(jobstore = name, jobs = releases.len(), %error, "could not remove finished one-off jobs; will retry");
                }
            }
        }
        if all_written {
            if std::mem::take(&mut self.wake_loop) {
                inner.wake.notify_one();
            }
            inner.wake_if_earlier(self.earliest_next.take());
        }
        for record in self.to_announce.drain(..) {
            inner.emit(Event::for_run(record));
        }
        all_written
    }
}

/// How many run records a node holds for a store that refuses them before it stops
/// taking jobs from that store ([`Event::RecordsBacklogged`]), unless told otherwise
/// ([`SchedulerBuilder::max_unwritten_runs`](super::SchedulerBuilder::max_unwritten_runs)).
pub const MAX_UNWRITTEN_RUNS: usize = 10_000;
