//! The main loop: one timer that sleeps until the earliest next run time.
//!
//! Each pass is a function of `(now, stores)` that submits what is due and returns
//! the next deadline ([`process_due_jobs`]); the shell around it sleeps on the clock,
//! the wake-up [`Notify`](tokio::sync::Notify) or a state change, whichever comes
//! first. Stores shared by several nodes push the other nodes' changes
//! ([`crate::store::Cluster::wake_ups`]), which wake the loop the same way a local change
//! does. Finished runs come back on a channel and are recorded by a second task
//! (`record.rs`), so slow history writes never delay the timer.
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
//!   and `max_instances` is judged then, by the runs executing then (its instance
//!   slot is claimed at its time, with the other runs due then).
//! - **Held until they end** ([`HeldRelease`]): a one-off job, and a recurring job with
//!   `max_instances = 1` that skips at its limit (`overlap = "skip"`), stay leased to
//!   this node until the run ends (the lease and the instance slot renewed meanwhile,
//!   `renewal.rs`), and are written back with the run's record. A node that dies first
//!   leaves them to its restarted successor or to another node, which runs them again:
//!   at least once across a crash. A job that allows several runs at once, or queues or
//!   replaces its runs (`overlap`), is written back when its run is due
//!   ([`Deferred`]), so its next run can be taken while this one goes; its instance
//!   slot carries the run's times, and a node that dies during the run leaves it as
//!   an orphaned run, which a live node runs again ([`replay_orphaned_runs`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;

use super::jobs::submission;
use super::plan::plan;
use super::{start, Event, Inner, SchedulerState};
use crate::executor::Withdrawal;
use crate::history::{RunOutcome, RunRecord};
use crate::job::{generate_id, Job, Overlap};
use crate::store::{InstanceClaim, JobStore, Release, StoreError, WakeUp};
use crate::trigger::jitter::delay_run;

/// The first retry delay after a store error; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest retry delay after repeated store errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// When to try a failing store again: after a back-off that doubles with each failed
/// retry. A wake-up before the planned retry (a run's check, a new record, a local
/// change) may try early, but a failure then neither pushes the retry back nor grows
/// the back-off, so wake-ups during an outage do not stretch the wait past the
/// store's return. The main loop and the record task each keep one.
pub(super) struct RetrySchedule {
    backoff: Duration,
    at: Option<DateTime<Utc>>,
}

impl RetrySchedule {
    pub(super) fn new() -> RetrySchedule {
        RetrySchedule {
            backoff: MIN_BACKOFF,
            at: None,
        }
    }

    /// When the next retry is planned, while the store fails.
    pub(super) fn planned(&self) -> Option<DateTime<Utc>> {
        self.at
    }

    /// An attempt begun at `tried` failed: the retry to wait for, and the delay if this
    /// failure planned a new one (`None` when it came before the planned retry).
    pub(super) fn failed(&mut self, tried: DateTime<Utc>) -> (DateTime<Utc>, Option<Duration>) {
        if let Some(at) = self.at.filter(|at| tried < *at) {
            return (at, None);
        }
        let delay = self.backoff;
        let at = tried
            .checked_add_signed(TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX))
            .unwrap_or(tried);
        self.at = Some(at);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        (at, Some(delay))
    }

    /// An attempt succeeded; whether it ended a run of failures.
    pub(super) fn succeeded(&mut self) -> bool {
        self.backoff = MIN_BACKOFF;
        self.at.take().is_some()
    }
}

pub(crate) async fn run(inner: Arc<Inner>) {
    // Stores whose leases and slots left by an earlier run of this scheduler (same id)
    // are not freed yet: tried again before every pass until they are. A store out of
    // reach at start would otherwise leave that run's jobs leased to this id until
    // their leases ran out, although this node is the one that should take them.
    // (`Scheduler::start` marked them all, in `unrecovered`, before this task began.)
    recover_earlier_run(&inner).await;
    // Other nodes' changes, pushed by the stores that can (PostgreSQL, Redis).
    let listeners: Vec<tokio::task::JoinHandle<()>> = inner
        .stores
        .values()
        .filter_map(|store| store.wake_ups())
        .map(|wake_ups| tokio::spawn(forward_wake_ups(Arc::clone(&inner), wake_ups)))
        .collect();
    let mut state = inner.state.subscribe();
    let mut retry = RetrySchedule::new();
    loop {
        let current = *state.borrow_and_update();
        let deadline = match current {
            SchedulerState::Stopped => break,
            // Taking nothing, but runs handed over early still get their jobs' next
            // run times when due (their leases must not run out).
            SchedulerState::Paused => flush_deferred(&inner, Some(inner.clock.now())).await,
            SchedulerState::Running => {
                recover_earlier_run(&inner).await;
                // During a pass the loop has no deadline, so a job added or changed
                // meanwhile always leaves a wake-up behind.
                let orphan_stores = {
                    let mut mutable = inner.lock();
                    mutable.deadline = None;
                    mutable.pass_started = Some(std::time::Instant::now());
                    std::mem::take(&mut mutable.orphans_to_take)
                };
                for name in orphan_stores {
                    if !replay_orphaned_runs(&inner, &name).await {
                        inner.lock().orphans_to_take.insert(name);
                    }
                }
                let now = inner.clock.now();
                match process_due_jobs(&inner, now).await {
                    Ok(deadline) => {
                        // The store is back: the record task need not wait out its own
                        // back-off.
                        if retry.succeeded() {
                            inner.nudge_unwritten_runs();
                        }
                        deadline
                    }
                    Err(error) => {
                        let (at, planned) = retry.failed(now);
                        if let Some(retry_in) = planned {
                            tracing::error!(%error, ?retry_in, "job store error in the main loop");
                        }
                        Some(at)
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
                // late costs nothing, and tokio's timer wakes the loop without a hop
                // through the clock's timer thread (`clock::precise`).
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

/// Frees the leases and instance slots an earlier run of this scheduler left in the
/// stores still marked `unrecovered` ([`recover_store`]); the stores that could not be
/// reached stay marked, and are tried again before the next pass.
async fn recover_earlier_run(inner: &Inner) {
    let unrecovered: Vec<String> = inner.lock().unrecovered.iter().cloned().collect();
    for name in unrecovered {
        recover_store(inner, &name).await;
    }
}

/// Frees what an earlier run of this scheduler (same id) left in the store `name`
/// ([`crate::store::InstanceSlots::recover_owner`]), once: the loop calls it before its
/// first pass, "run now" before it claims a slot there, whichever comes first. One at a
/// time, so a recovery never frees a slot claimed after another finished. Whether the store
/// is recovered.
pub(super) async fn recover_store(inner: &Inner, name: &str) -> bool {
    // Recovered long ago, nearly always: no need to queue behind a recovery then.
    if !inner.lock().unrecovered.contains(name) {
        return true;
    }
    let _one_at_a_time = inner.recovery.lock().await;
    if !inner.lock().unrecovered.contains(name) {
        return true;
    }
    let Some(store) = inner.stores.get(name) else {
        return true;
    };
    match store.recover_owner(&inner.id).await {
        Ok(freed) => {
            if freed > 0 {
                tracing::info!(
                    jobstore = name,
                    scheduler_id = inner.id,
                    freed,
                    "freed the leases and instance slots an earlier run of this scheduler left"
                );
            }
            // Its runs of jobs that allow several at once are run again.
            let mut mutable = inner.lock();
            mutable.unrecovered.remove(name);
            mutable.orphans_to_take.insert(name.to_owned());
            true
        }
        Err(error) => {
            tracing::warn!(jobstore = name, %error, "could not free leases left by an earlier run; will retry");
            false
        }
    }
}

/// Takes the orphaned runs of the store `name`
/// ([`crate::store::InstanceSlots::take_orphaned_runs`]: runs of jobs that allow several at
/// once whose node died while they went) and runs them again here, now, each in the
/// instance slot it held: at least once across a crash (`docs/lifecycle.md`, "Held until
/// the run ends"). A job paused since has them recorded as skipped instead: a pause wins
/// over a run not yet done, as it does over a pending retry. Whether the store answered.
pub(super) async fn replay_orphaned_runs(inner: &Inner, name: &str) -> bool {
    let Some(store) = inner.stores.get(name).cloned() else {
        return true;
    };
    let orphans = match store.take_orphaned_runs(&inner.id).await {
        Ok(orphans) => orphans,
        Err(error) => {
            tracing::warn!(jobstore = name, %error, "could not take the runs of dead nodes; will retry");
            return false;
        }
    };
    for orphan in orphans {
        let job = &orphan.job;
        let (Some(&first), now) = (orphan.run_times.first(), inner.clock.now()) else {
            continue;
        };
        // The node died before it wrote the job's next run time (the write-back waits
        // for the run's time and its check): the job is still at this time, and the
        // lease that runs out (or the reap) hands that time to a node as any due run.
        // Running the orphan too would run it twice.
        let still_due = job.next_run_time.is_some_and(|next| next <= first);
        if job.paused || still_due {
            if let Err(error) = store.release_instance(&job.id, &inner.id).await {
                tracing::warn!(job_id = job.id, %error, "could not free the instance slot of a dead node's run");
            }
            if job.paused {
                record_unstarted(
                    inner,
                    name,
                    job,
                    first,
                    now,
                    RunOutcome::Skipped,
                    "its node died while it ran, and the job is paused since".to_owned(),
                )
                .await;
            }
            continue;
        }
        tracing::warn!(
            jobstore = name,
            job_id = job.id,
            scheduled_time = %first,
            runs = orphan.run_times.len(),
            "running again a run whose node died while it went"
        );
        // `max_instances` as the job has it now: a limit lowered since the dead node
        // started the run may leave no room for it beside the runs going now
        // (docs/lifecycle.md, "Held until the run ends"). A claim that counts its own
        // slot too tells: granted, it fits and runs at once in its slot (the extra one
        // given back); refused, its slot is given back and it claims one at its start
        // like any run due then, waiting, replacing or skipped as the job's `overlap`
        // says. A store that cannot answer leaves it in its slot, as it was.
        let slot_claimed = orphan_fits(inner, store.as_ref(), &orphan).await;
        hand_over(
            inner,
            name,
            store.as_ref(),
            job,
            &orphan.run_times,
            now,
            HandOver {
                final_release: None,
                slot_claimed,
                released_next: job.next_run_time,
                checked_revision: job.revision,
            },
        )
        .await;
    }
    true
}

/// Whether an orphaned run taken by this node fits under its job's `max_instances`
/// now, its own slot counted, and so keeps that slot; otherwise the slot is given back
/// and the run claims one at its start ([`replay_orphaned_runs`]).
async fn orphan_fits(
    inner: &Inner,
    store: &dyn JobStore,
    orphan: &crate::store::OrphanedRun,
) -> bool {
    let job = &orphan.job;
    let claim = InstanceClaim {
        job_id: job.id.clone(),
        max_instances: job.max_instances.saturating_add(1),
        run_times: orphan.run_times.clone(),
    };
    let fits = match store.claim_instances(&inner.id, &[claim]).await {
        Ok(granted) => granted.first().copied().unwrap_or(false),
        Err(error) => {
            tracing::warn!(job_id = job.id, %error, "could not judge a dead node's run by the job's limit; running it in its slot");
            return true;
        }
    };
    // Granted: one of its two slots is extra. Refused: its own goes, and it claims anew.
    match store.release_instance(&job.id, &inner.id).await {
        Ok(()) => fits,
        Err(error) => {
            tracing::warn!(job_id = job.id, %error, "could not give back an instance slot of a dead node's run; running it in its slot");
            true
        }
    }
}

/// Turns a store's wake-ups ([`crate::store::Cluster::wake_ups`]) into wake-ups of the
/// loop: a change due before the loop's deadline wakes it, a resync always does (the
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
    let unrecovered = inner.lock().unrecovered.clone();
    let mut first_error = None;
    let mut starved_any = false;
    // Jobs due within the fire-ahead window are taken now and started on time by their
    // executor.
    let fire_ahead = TimeDelta::from_std(inner.fire_ahead).unwrap_or(TimeDelta::zero());
    let horizon = now.checked_add_signed(fire_ahead).unwrap_or(now);
    // Runs handed over early whose time has come: their jobs get their next run times.
    let mut next_deadline = flush_deferred(inner, Some(now)).await;
    for (name, store) in &inner.stores {
        if unrecovered.contains(name) {
            // Nothing is taken from it before the earlier run's leases are freed: a
            // recovery after this pass would free this run's new ones too.
            first_error.get_or_insert(StoreError::unavailable(format!(
                "the leases an earlier run of this scheduler left in {name:?} are not freed yet"
            )));
            continue;
        }
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
                                Some((at, run_id)) => {
                                    deferred.push(Deferred {
                                        at: *at,
                                        run_id: run_id.clone(),
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
    let deferred = next_deferred(inner);
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
        let mut mutable = self.lock();
        for place in mutable.run_stores.values() {
            if place.job_id == job_id {
                place.withdrawal.withdraw();
            }
        }
        // Its write-back, held until the run's time ([`Deferred`]), must not move the
        // job on by the run it no longer has: it only ends the lease, as for a held run
        // taken back. Otherwise a new trigger whose first time is the one the run had
        // would be moved on by the old trigger's next time.
        for deferred in mutable.deferred_releases.values_mut() {
            for entry in deferred.iter_mut() {
                if entry.release.job_id == job_id {
                    entry.release.next_run_time = entry.release.acquired_next_run_time;
                }
            }
        }
        drop(mutable);
        // A run of the job waiting for a slot (`overlap`) looks at its withdrawal now.
        self.run_ended.notify_waiters();
    }

    /// Whether a run of `job_id` waits here for an instance slot (`overlap`) that goes
    /// before a run due now claiming under `max_instances`: one claiming under a limit
    /// as high or higher. A run planned after `max_instances` was raised claims first,
    /// since the slots the raise added are ones the waiting run cannot take.
    pub(crate) fn has_waiting_run(&self, job_id: &str, max_instances: u32) -> bool {
        self.lock()
            .waiting_for_slot
            .get(job_id)
            .is_some_and(|waiting| *waiting >= max_instances)
    }

    /// Stops the oldest executing runs of `job_id` on this node that started by
    /// `due_at`, for the run of `scheduled_time`, due then (`overlap = "replace"`): as
    /// many as it takes to leave fewer
    /// than `max_instances` going here, at least one (a `max_instances` lowered while
    /// they went leaves more than one too many; docs/lifecycle.md, "When the limit is
    /// reached"). Their tasks are cancelled or process groups killed, and their records
    /// say what replaced them. Whether there was one.
    pub(crate) fn replace_oldest_run(
        &self,
        job_id: &str,
        scheduled_time: DateTime<Utc>,
        due_at: DateTime<Utc>,
        max_instances: u32,
    ) -> bool {
        let mutable = self.lock();
        let mut going: Vec<_> = mutable
            .run_stores
            .values()
            .filter(|place| place.job_id == job_id && !place.stop.is_stopped())
            .filter_map(|place| place.stop.started_at().map(|started| (started, place)))
            // Only a run older than this one: a run that waited (behind runs of other
            // nodes) must not stop one that started after it came due, which is the
            // newer of the two.
            .filter(|(started, _)| *started <= due_at)
            .collect();
        if going.is_empty() {
            return false;
        }
        going.sort_by_key(|(started, _)| *started);
        let limit = usize::try_from(max_instances).unwrap_or(usize::MAX);
        let excess = going.len().saturating_sub(limit).saturating_add(1);
        let reason = format!(
            "{REPLACED} {} (overlap = replace)",
            scheduled_time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        );
        for (_, place) in going.iter().take(excess) {
            place.stop.stop(reason.clone());
        }
        true
    }

    /// A run handed over early that its check at its time took back (its job changed
    /// through another node): its job's deferred release, which waited for the check,
    /// must not move the job on by a run that did not happen. It only ends the lease,
    /// as [`withdraw_early_runs`](Self::withdraw_early_runs) does for a change made here.
    pub(crate) fn keep_deferred_release_at_acquired_time(&self, run_id: &str) {
        let mut mutable = self.lock();
        for deferred in mutable.deferred_releases.values_mut() {
            for entry in deferred.iter_mut().filter(|entry| entry.run_id == run_id) {
                entry.release.next_run_time = entry.release.acquired_next_run_time;
            }
        }
    }

    /// Notes a change to `job_id` made through this scheduler while a run of it holds
    /// the job here: the run's end then wakes the loop (the change may have left the
    /// job due before the loop's deadline) and, for a one-off job paused meanwhile,
    /// removes it (its run happened). What the run's write-back leaves of the change is
    /// the store's rule (schedule versions, `DueJobs::release_jobs`), the same for a
    /// change through any node.
    pub(crate) fn note_change(&self, job_id: &str) {
        let mut mutable = self.lock();
        let held = mutable
            .run_stores
            .values()
            .any(|place| place.job_id == job_id && place.release.is_some());
        if held {
            mutable.changed_while_held.insert(job_id.to_owned());
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

/// Logs releases the store fenced off ([`crate::store::DueJobs::release_jobs`]): this
/// scheduler's lease on those jobs ended (it was paused or cut off past the lease, and
/// another scheduler took the jobs over, or a survivor reaped it), so its next run times
/// were not written. Nothing to retry: the job's current holder decides.
pub(super) fn report_fenced(inner: &Inner, jobstore: &str, fenced: &[String]) {
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
    /// The next run time written back for the job otherwise.
    released_next: Option<DateTime<Utc>>,
    /// The revision its runs judge the job by at their time
    /// ([`start::RunStart::acquired_revision`]): the one it was taken at, or the one
    /// this node's own write gave it since (set aside as broken).
    checked_revision: u64,
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
    /// A run handed over early that has not yet looked at its job in the store as its
    /// time came ([`start::RunStart`]): its job's deferred release waits ([`Deferred`]).
    pub(crate) awaiting_check: bool,
    /// For the runs of a catch-up (several runs of one submission): set once one of
    /// them started, so a catch-up taken back part way still records the times that
    /// came while it ran (`record.rs`).
    pub(crate) catch_up_ran: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// What its end updates in the metrics (by task and executor, and the job's own
    /// series when it is watched).
    pub(crate) metrics: crate::metrics::RunMetrics,
    /// Stops it while it executes, and tells since when it does (`overlap = "replace"`,
    /// [`Inner::replace_oldest_run`]).
    pub(crate) stop: crate::executor::RunStop,
}

/// A job's release held by its run until the run ends: the job stays leased to this
/// node meanwhile, so the run happens at least once across a crash (see
/// `docs/lifecycle.md`).
///
/// Runs hold their job when nothing else of it can happen meanwhile: a one-off job
/// (its trigger is finished), and a recurring job with `max_instances = 1` that skips
/// at its limit, whose next run could not start before this one ends anyway (one that
/// queues or replaces is not held: its next run must be taken to wait or replace,
/// docs/lifecycle.md "When the limit is reached"). Its fire times that come while the
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
    /// because they came while it executed: how many, and the first
    /// [`MAX_SKIPPED_RECORDS`] of them.
    pub(super) fn at_end(mut self, end: DateTime<Utc>) -> (Release, u64, Vec<DateTime<Utc>>) {
        let Some(trigger) = self.trigger else {
            return (self.release, 0, Vec::new());
        };
        let mut skipped = 0u64;
        let mut first = Vec::new();
        let mut next = self.release.next_run_time;
        while let Some(time) = next.filter(|time| *time <= end) {
            if first.len() < MAX_SKIPPED_RECORDS {
                first.push(time);
            }
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

/// How the record of a run stopped for a newer one (`overlap = "replace"`) begins:
/// "replaced by the run of T (overlap = replace)". Such a run is not retried, and
/// `explain` calls it replaced.
pub(crate) const REPLACED: &str = "replaced by the run of";

/// The most fire times that came during one run recorded each on its own; past it
/// the last record counts the rest.
const MAX_SKIPPED_RECORDS: usize = 100;

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
    let mut plan = plan(job, planned_at);
    // The revision its runs find the job at: this node's own write setting it aside
    // is not a change that takes a run handed over early back.
    let mut checked_revision = job.revision;
    if let Some(reason) = plan.broken.clone() {
        match quarantine(inner, jobstore, job, &reason).await {
            Some(revision) => checked_revision = revision,
            None => {
                // Not set aside: left as it was taken, nothing of it runs, and the next
                // pass tries again (a job is never taken as finished because its trigger
                // was too costly to evaluate).
                plan.run.clear();
                plan.next_run_time = job.next_run_time;
            }
        }
    }
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
            // A job that queues or replaces its runs is not held by `max_instances = 1`:
            // its next run is taken while this one goes and judged at its time
            // (`start::RunStart::wait_for_slot`, docs/lifecycle.md).
            final_release: (release.next_run_time.is_none()
                || (job.max_instances == 1 && job.overlap == Overlap::Skip)
                || job.max_attempts() > 1)
                .then(|| HeldRelease {
                    release: release.clone(),
                    trigger: release.next_run_time.map(|_| job.trigger.clone()),
                    attempt: 1,
                    policy: job.retry.policy.clone(),
                }),
            released_next: release.next_run_time,
            checked_revision,
        }
    });
    (release, due)
}

/// Sets `job` aside as `broken` (its trigger could not be evaluated within its budget):
/// no next run time, the reason kept and shown, never evaluated again until a new trigger
/// is given. The runs already due still run. The revision the store gave it, if it took
/// it.
async fn quarantine(inner: &Inner, jobstore: &str, job: &Job, reason: &str) -> Option<u64> {
    tracing::error!(
        job_id = job.id,
        reason,
        "job set aside as broken; give it a new trigger"
    );
    let store = inner.stores.get(jobstore)?;
    let mut broken = job.clone();
    broken.retry.broken = Some(reason.to_owned());
    broken.retry.pending = None;
    broken.next_run_time = None;
    match store.update_job(broken).await {
        Ok(stored) => Some(stored.revision),
        Err(error) => {
            tracing::warn!(job_id = job.id, %error, "could not set the job aside as broken; will retry");
            None
        }
    }
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
        checked_revision: job.revision,
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
    // Only runs due now claim their slots here. A run handed over early claims its
    // slot at its time ([`start::RunStart`]): `max_instances` counts the runs
    // executing, and until then it is not one (a run now through any node must find
    // the slot free).
    //
    // Nor does a run of a job with a run of it already waiting for a slot here
    // (`overlap`): the waiting run goes first, and this one is judged at its start.
    let claims_now: Vec<bool> = due_runs
        .iter()
        .map(|due| {
            due.start_at <= now
                && !(due.job.overlap != Overlap::Skip
                    && inner.has_waiting_run(&due.job.id, due.job.max_instances))
        })
        .collect();
    let claims: Vec<InstanceClaim> = due_runs
        .iter()
        .zip(&claims_now)
        .filter(|(_, claim)| **claim)
        .map(|(due, _)| InstanceClaim {
            job_id: due.job.id.clone(),
            max_instances: due.job.max_instances,
            run_times: slot_run_times(due.final_release.is_none(), &due.run_times),
        })
        .collect();
    let claimed = if claims.is_empty() {
        Vec::new()
    } else {
        store.claim_instances(&inner.id, &claims).await?
    };
    let mut claimed = claimed.into_iter();
    for (index, (due, claim)) in due_runs.iter().zip(claims_now).enumerate() {
        if index % HAND_OVER_CHUNK == HAND_OVER_CHUNK - 1 {
            // A batch takes milliseconds to hand over; runs that come due meanwhile
            // (one-off jobs every half millisecond) get their turn on this worker.
            tokio::task::yield_now().await;
        }
        // A store that answered fewer claims than asked granted none of the rest.
        // A slot not free now is claimed when the run is due, and only then may the
        // run be skipped ([`start::RunStart`]).
        let slot_claimed = claim && claimed.next().unwrap_or(false);
        let (run_id, handed_over) = hand_over(
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
                checked_revision: due.checked_revision,
            },
        )
        .await;
        if handed_over && due.final_release.is_some() {
            handed.held.insert(due.job.id.clone());
        } else if handed_over {
            if let Some(first) = due.run_times.first().filter(|first| **first > now) {
                handed.early.insert(due.job.id.clone(), (*first, run_id));
            }
        }
    }
    Ok(handed)
}

/// The run times an instance slot carries ([`InstanceClaim::run_times`]): those of a
/// job written back when its run is due (`written_back`), which nothing else in the
/// store remembers once the run has started. A node that dies during such a run leaves
/// them as an orphaned run, run again elsewhere ([`replay_orphaned_runs`]); a job its
/// runs hold stays at the run's time instead, and needs none.
pub(super) fn slot_run_times(
    written_back: bool,
    run_times: &[DateTime<Utc>],
) -> Vec<DateTime<Utc>> {
    if written_back {
        run_times.to_vec()
    } else {
        Vec::new()
    }
}

/// What [`hand_over_due_runs`] handed over that changes when the batch's releases are
/// written.
#[derive(Default)]
struct HandedOver {
    /// Jobs whose final release their runs hold ([`RunPlace::release`]).
    held: hashbrown::HashSet<String>,
    /// Recurring jobs handed over ahead of their time (the fire-ahead window), with
    /// their first run time and run id: their release waits until then, and until that
    /// run has looked at its job ([`Deferred`]).
    early: hashbrown::HashMap<String, (DateTime<Utc>, String)>,
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
///
/// A release also waits for its run to have looked at its job in the store
/// ([`start::RunStart`], `RunPlace::awaiting_check`), which wakes the loop. Written
/// first, it would leave the store showing the old trigger's next time, and the run
/// could not tell it from a reschedule through another node that landed on that same
/// time (`docs/lifecycle.md`, "Judged at its time").
pub(crate) struct Deferred {
    /// When to write it: the first run time handed over.
    pub(crate) at: DateTime<Utc>,
    /// The run it waits for ([`RunPlace::awaiting_check`]).
    pub(crate) run_id: String,
    pub(crate) release: Release,
}

impl Deferred {
    /// Whether its run has yet to look at its job: a run taken back, ended or gone
    /// has nothing more to look at.
    fn awaits_check(&self, run_stores: &hashbrown::HashMap<String, RunPlace>) -> bool {
        run_stores
            .get(&self.run_id)
            .is_some_and(|place| place.awaiting_check && !place.withdrawal.is_withdrawn())
    }
}

/// Writes the deferred releases due by `until` (all of them with `None`), store by
/// store; a store that fails keeps them as pending releases, written before anything
/// more is taken from it. Returns when the next deferred release is due.
async fn flush_deferred(inner: &Inner, until: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let due: Vec<(String, Vec<Release>)> = {
        let mut mutable = inner.lock();
        let mutable = &mut *mutable;
        let mut due = Vec::new();
        for (name, deferred) in &mut mutable.deferred_releases {
            // Taken out in place: the loop passes here often while ten thousand runs of
            // one instant look at their jobs, and those not due stay where they are
            // (their order does not matter: each is looked at on every pass).
            let mut now_due: Vec<Release> = Vec::new();
            let mut index = 0;
            while index < deferred.len() {
                let entry = &deferred[index];
                let due_now = until.is_none_or(|until| {
                    entry.at <= until && !entry.awaits_check(&mutable.run_stores)
                });
                if due_now {
                    now_due.push(deferred.swap_remove(index).release);
                } else {
                    index += 1;
                }
            }
            if !now_due.is_empty() {
                due.push((name.clone(), now_due));
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
            // (BENCHMARKS.md, recurring).
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
    next_deferred(inner)
}

/// When the loop must wake for a deferred release: the earliest whose run has looked
/// at its job (the others wake it when they do).
fn next_deferred(inner: &Inner) -> Option<DateTime<Utc>> {
    let mutable = inner.lock();
    mutable
        .deferred_releases
        .values()
        .flatten()
        .filter(|entry| !entry.awaits_check(&mutable.run_stores))
        .map(|entry| entry.at)
        .min()
}

/// The shortest fire-ahead window with which the loop wakes without spinning: runs
/// are then handed over at least this early, so a wake-up a millisecond late is on
/// time.
const COARSE_WAKE_MIN_FIRE_AHEAD: Duration = Duration::from_millis(10);

/// How many runs are handed over between two turns given to other tasks.
const HAND_OVER_CHUNK: usize = 64;

/// How many deferred releases one store write carries.
const RELEASE_CHUNK: usize = 256;

/// Claims one instance slot and hands the runs for `scheduled_times` (earliest first)
/// to the job's executor, which runs them one after another; returns the first run id.
/// Runs that cannot start (limit reached, executor or task gone) are recorded as such.
///
/// The job's `overlap` decides what a refused claim does: `skip` records the runs as
/// skipped here; `queue` and `replace` hand them over without a slot, to claim it as
/// they start (`start::RunStart::wait_for_slot`). `force` starts them whatever the
/// limit: their slot is claimed with no limit, so they still count against it.
pub(crate) async fn submit_runs(
    inner: &Inner,
    jobstore: &str,
    job: &Job,
    scheduled_times: &[DateTime<Utc>],
    start_at: DateTime<Utc>,
    force: bool,
) -> Result<String, StoreError> {
    if scheduled_times.is_empty() {
        return Err(StoreError::NotFound(job.id.clone()));
    }
    let store = inner
        .stores
        .get(jobstore)
        .ok_or_else(|| StoreError::NotFound(jobstore.to_owned()))?;
    if !recover_store(inner, jobstore).await {
        // A slot claimed now would be freed by the recovery still to come, and the
        // limit broken (`docs/lifecycle.md`, "Held until the run ends").
        return Err(StoreError::unavailable(format!(
            "the instance slots an earlier run of this scheduler left in {jobstore:?} are not freed yet"
        )));
    }
    let limit = if force { u32::MAX } else { job.max_instances };
    // A run of the job already waiting for a slot here goes first (`overlap`).
    let claimed = if !force
        && job.overlap != Overlap::Skip
        && inner.has_waiting_run(&job.id, job.max_instances)
    {
        false
    } else {
        store.claim_instance(&job.id, &inner.id, limit).await?
    };
    if !claimed && job.overlap == Overlap::Skip {
        return Ok(refuse_max_instances(inner, jobstore, job, scheduled_times).await);
    }
    // Without its slot (the limit was reached and the job queues or replaces), the run
    // waits for one at its start ([`start::RunStart`]).
    let (run_id, _) = hand_over(
        inner,
        jobstore,
        store.as_ref(),
        job,
        scheduled_times,
        start_at,
        HandOver {
            final_release: None,
            slot_claimed: claimed,
            released_next: job.next_run_time,
            checked_revision: job.revision,
        },
    )
    .await;
    Ok(run_id)
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
    /// The next run time written back for the job when its runs do not hold it
    /// ([`start::RunStart::written_back`]).
    released_next: Option<DateTime<Utc>>,
    /// [`start::RunStart::acquired_revision`].
    checked_revision: u64,
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
            let catch_up = run_ids.len() > 1;
            let start = (early || !how.slot_claimed || catch_up).then(|| {
                Arc::new(start::RunStart {
                    inner: inner.me.clone(),
                    jobstore: jobstore.to_owned(),
                    job_id: job.id.clone(),
                    max_instances: job.max_instances,
                    overlap: job.overlap,
                    scheduled_time: first,
                    due_at: start_at,
                    runs: run_ids.len(),
                    acquired_revision: how.checked_revision,
                    // A job its runs hold has nothing written back before they end;
                    // one that allows several runs at once is written back now.
                    written_back: how.final_release.is_none().then_some(start::WrittenBack {
                        acquired_next: job.next_run_time,
                        released_next: how.released_next,
                    }),
                    confirm_schedule: early,
                    slot_claimed: how.slot_claimed,
                    run_times: slot_run_times(how.final_release.is_none(), scheduled_times),
                    withdrawal: submission.withdrawal.clone(),
                    first_run_id: run_ids.first().cloned().unwrap_or_default(),
                    last_run_id: run_ids.last().cloned().unwrap_or_default(),
                    held: how.final_release.is_some(),
                })
            });
            submission.start_check = start
                .clone()
                .map(|start| start as Arc<dyn crate::executor::StartCheck>);
            {
                let mut mutable = inner.lock();
                let last = run_ids.len().saturating_sub(1);
                let catch_up_ran =
                    catch_up.then(|| Arc::new(std::sync::atomic::AtomicBool::new(false)));
                let mut final_release = how.final_release;
                let metrics = inner.metrics.for_run(job);
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
                        awaiting_check: early && index == 0,
                        catch_up_ran: catch_up_ran.clone(),
                        metrics: metrics.clone(),
                        stop: submission.stop.clone(),
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
    inner
        .metrics
        .run_ended(&record, Some(&inner.metrics.for_run(job)), record.attempt);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms)
    }

    #[test]
    fn failures_before_the_planned_retry_neither_push_it_back_nor_grow_the_back_off() {
        let mut retry = RetrySchedule::new();
        assert_eq!(retry.failed(at(0)), (at(500), Some(MIN_BACKOFF)));
        // Woken early twice during the outage: the plan stands.
        assert_eq!(retry.failed(at(100)), (at(500), None));
        assert_eq!(retry.failed(at(499)), (at(500), None));
        // The planned retry fails: the back-off doubles from then.
        assert_eq!(retry.failed(at(500)), (at(1_500), Some(MIN_BACKOFF * 2)));
        assert_eq!(retry.planned(), Some(at(1_500)));
        assert!(retry.succeeded(), "a success ends the run of failures");
        assert!(!retry.succeeded());
        assert_eq!(retry.planned(), None);
        assert_eq!(retry.failed(at(2_000)), (at(2_500), Some(MIN_BACKOFF)));
    }

    #[test]
    fn the_back_off_stops_growing_at_its_longest() {
        let mut retry = RetrySchedule::new();
        let mut now = at(0);
        let mut delay = Duration::ZERO;
        for _ in 0..20 {
            let (next, planned) = retry.failed(now);
            delay = planned.unwrap_or(delay);
            now = next;
        }
        assert_eq!(delay, MAX_BACKOFF);
    }
}
