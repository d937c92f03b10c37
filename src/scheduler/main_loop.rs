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
//! - **Judged at their time** ([`super::start::RunStart`]): a run handed over early starts only
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
//!
//! This file holds the loop and the planning of due jobs; beside it: `hand_over.rs`
//! (slot claims and handing runs to executors, "run now" too), `deferred.rs`
//! (releases that wait for their run), `recovery.rs` (what an earlier incarnation or a
//! dead node left) and `backoff.rs` (when to try a failing store again).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;

use super::backoff::RetrySchedule;
use super::deferred::{flush_deferred, next_deferred, AwaitingCheck, Deferred, HeldRelease};
use super::hand_over::{hand_over_due_runs, record_unstarted, COARSE_WAKE_MIN_FIRE_AHEAD};
use super::plan::plan;
use super::recovery::{recover_earlier_run, replay_orphaned_runs};
use super::{Event, Inner, SchedulerState};
use crate::executor::Withdrawal;
use crate::history::{RunOutcome, RunRecord};
use crate::job::{Job, Overlap};
use crate::store::{Release, StoreError, WakeUp};
use crate::trigger::jitter::delay_run;

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
                match store.release_jobs(&inner.id, &pending).await {
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
                        Ok(mut handed) => {
                            // Written when their runs end (see `RunPlace::release`).
                            releases.retain(|release| !handed.held.contains(&release.job_id));
                            // Written when their runs are due (see `Deferred`); moved
                            // there, not copied.
                            let mut deferred = Vec::new();
                            if !handed.early.is_empty() {
                                let mut kept = Vec::with_capacity(releases.len());
                                for release in releases.drain(..) {
                                    match handed.early.remove(&release.job_id) {
                                        Some(early) => deferred.push(Deferred {
                                            at: early.at,
                                            run_id: early.run_id,
                                            awaiting_check: early.awaiting_check,
                                            withdrawal: early.withdrawal,
                                            release,
                                        }),
                                        None => kept.push(release),
                                    }
                                }
                                releases = kept;
                            }
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
                let fenced = match store.release_jobs(&inner.id, &releases).await {
                    Ok(fenced) => fenced,
                    Err(error) => {
                        inner.lock().pending_releases.insert(name.clone(), releases);
                        return Err(error);
                    }
                };
                report_fenced(inner, name, &fenced);
                let finished = finished
                    .into_iter()
                    .filter(|job_id| !fenced.contains(job_id))
                    .collect();
                inner
                    .finished_jobs_removed(name, store.as_ref(), finished)
                    .await;
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

    /// The oldest executing runs of `job_id` on this node that started by `due_at`,
    /// which the run due then stops (`overlap = "replace"`): as many as it takes to
    /// leave fewer than `max_instances` going here, at least one (a `max_instances`
    /// lowered while they went leaves more than one too many; docs/lifecycle.md, "When
    /// the limit is reached"). Their run ids; none when none goes here.
    pub(crate) fn runs_to_replace(
        &self,
        job_id: &str,
        due_at: DateTime<Utc>,
        max_instances: u32,
    ) -> Vec<String> {
        let mutable = self.lock();
        let mut going: Vec<_> = mutable
            .run_stores
            .iter()
            .filter(|(_, place)| place.job_id == job_id && !place.stop.is_stopped())
            .filter_map(|(run_id, place)| place.stop.started_at().map(|started| (started, run_id)))
            // Only a run older than this one: a run that waited (behind runs of other
            // nodes) must not stop one that started after it came due, which is the
            // newer of the two.
            .filter(|(started, _)| *started <= due_at)
            .collect();
        if going.is_empty() {
            return Vec::new();
        }
        going.sort_by_key(|(started, _)| *started);
        let limit = usize::try_from(max_instances).unwrap_or(usize::MAX);
        let excess = going.len().saturating_sub(limit).saturating_add(1);
        going
            .into_iter()
            .take(excess)
            .map(|(_, run_id)| run_id.clone())
            .collect()
    }

    /// Stops `runs` ([`Inner::runs_to_replace`]) for the run of `scheduled_time`: their
    /// tasks are cancelled or process groups killed, and their records say what
    /// replaced them.
    pub(crate) fn replace_runs(&self, runs: &[String], scheduled_time: DateTime<Utc>) {
        let reason = format!(
            "{REPLACED} {} (overlap = replace)",
            scheduled_time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        );
        let mutable = self.lock();
        for run_id in runs {
            if let Some(place) = mutable.run_stores.get(run_id) {
                place.stop.stop(reason.clone());
            }
        }
    }

    /// Whether any of `runs` has not ended yet (its record not come in).
    pub(crate) fn any_run_going(&self, runs: &[String]) -> bool {
        let mutable = self.lock();
        runs.iter()
            .any(|run_id| mutable.run_stores.contains_key(run_id))
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

    /// Runs whose start time has come and that have not started yet, over all the
    /// executors: woken by their gate and not yet polled, or waiting for a worker.
    fn runs_starting(&self) -> usize {
        self.executors
            .values()
            .map(|executor| executor.load().waiting())
            .fold(0, usize::saturating_add)
    }

    /// Returns once the runs whose time has come have started, or as soon as a turn
    /// passes without one of them starting; the work that follows runs' ends (their
    /// records, the write-backs of their jobs) waits here, so that it goes after the
    /// starts of an instant rather than between them (docs/lifecycle.md, "Order of
    /// work at an instant"). A turn without progress means what is left waits for
    /// something else (a worker, an instance slot, perhaps one that a record waiting
    /// here would free), so the wait never holds anything up for long.
    pub(crate) async fn after_starting_runs(&self) {
        let mut starting = self.runs_starting();
        while starting > 0 {
            tokio::task::yield_now().await;
            let now = self.runs_starting();
            if now >= starting {
                break;
            }
            starting = now;
        }
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
pub(super) struct DueRuns<'a> {
    pub(super) job: &'a Job,
    /// Earliest first; never empty.
    pub(super) run_times: Vec<DateTime<Utc>>,
    pub(super) start_at: DateTime<Utc>,
    /// The job's release when its runs hold the job until they end ([`HeldRelease`]).
    pub(super) final_release: Option<HeldRelease>,
    /// The next run time written back for the job otherwise.
    pub(super) released_next: Option<DateTime<Utc>>,
    /// The revision its runs judge the job by at their time
    /// ([`super::start::RunStart::acquired_revision`]): the one it was taken at, or the one
    /// this node's own write gave it since (set aside as broken).
    pub(super) checked_revision: u64,
}

/// Where a run in flight reports, and what its end writes back.
pub(crate) struct RunPlace {
    /// Its job (for the node's stats: what it is running).
    pub(crate) job_id: String,
    /// The store of its job, where its record goes ([`Inner::shared_store_name`]).
    pub(crate) jobstore: Arc<str>,
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
    /// time came ([`super::start::RunStart`]): its job's deferred release waits ([`Deferred`]),
    /// which shares the flag.
    pub(crate) awaiting_check: AwaitingCheck,
    /// For the runs of a catch-up (several runs of one submission), shared by them
    /// ([`CatchUp`]).
    pub(crate) catch_up: Option<Arc<CatchUp>>,
    /// Which attempt of its scheduled time the run is (1-based): the first run of a
    /// retry its pending attempt's, every other run 1.
    pub(crate) attempt: u32,
    /// What its end updates in the metrics (by task and executor, and the job's own
    /// series when it is watched).
    pub(crate) metrics: crate::metrics::RunMetrics,
    /// Stops it while it executes, and tells since when it does (`overlap = "replace"`,
    /// [`Inner::runs_to_replace`]).
    pub(crate) stop: crate::executor::RunStop,
}

/// What the record task learns of a catch-up as the records of its runs come in, in
/// their order (`record.rs`).
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// Set once one of its runs started, so a catch-up taken back part way still
    /// records the times that came while it ran.
    pub(crate) ran: std::sync::atomic::AtomicBool,
    /// The failed run it stopped at, if it did (`start::CatchUpRetries`): its retry is
    /// written with the release the last run carries.
    pub(crate) stopped_at: std::sync::Mutex<Option<StoppedAt>>,
}

/// The failed run a catch-up stopped at ([`CatchUp::stopped_at`]).
#[derive(Debug)]
pub(crate) struct StoppedAt {
    /// Its record (without its output).
    pub(crate) run: RunRecord,
    /// Which attempt of its time it was.
    pub(crate) attempt: u32,
    /// The first time of the catch-up that did not start after it: where the catch-up
    /// goes on once the failed time's attempts end.
    pub(crate) rest_from: Option<DateTime<Utc>>,
}

/// How the record of a run stopped for a newer one (`overlap = "replace"`) begins:
/// "replaced by the run of T (overlap = replace)". Such a run is not retried, and
/// `explain` calls it replaced. A waiting run that a newer run overtook is recorded as
/// skipped with the same beginning (`RunStart::superseded`).
pub(crate) const REPLACED: &str = "replaced by the run of";

/// The most fire times that came during one run recorded each on its own; past it
/// the last record counts the rest.
pub(super) const MAX_SKIPPED_RECORDS: usize = 100;

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
                    retried: None,
                    policy: job.retry.policy.clone(),
                    pauses: job.retry.pauses,
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

/// The times a retry runs: the one it tries again, then, for a catch-up that stopped at
/// it (docs/lifecycle.md, "Failed runs"), the catch-up's times after it, one after
/// another in the same worker: those from [`crate::job::PendingAttempt::catch_up_from`]
/// before the time the schedule resumes at, which the catch-up was planned up to.
fn retry_run_times(job: &Job, pending: &crate::job::PendingAttempt) -> Vec<DateTime<Utc>> {
    let mut times = vec![pending.scheduled_time];
    let mut next = pending.catch_up_from;
    while let Some(time) = next.filter(|time| {
        pending.resume_at.is_none_or(|resume| *time < resume)
            && *time > pending.scheduled_time
            && times.len() <= super::plan::MAX_RUN_TIMES
    }) {
        times.push(time);
        next = job.trigger.next_fire_time(Some(time), time);
    }
    times
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
        run_times: retry_run_times(job, pending),
        start_at: job.next_run_time.unwrap_or(now),
        final_release: Some(HeldRelease {
            release: release.clone(),
            trigger: pending.resume_at.map(|_| job.trigger.clone()),
            attempt: pending.attempt,
            retried: Some(pending.scheduled_time),
            policy: job.retry.policy.clone(),
            pauses: job.retry.pauses,
        }),
        released_next: pending.resume_at,
        checked_revision: job.revision,
    };
    (release, Some(due))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;

    use crate::executor::{Executor, ExecutorContext, ExecutorError, ExecutorLoad, Submission};
    use crate::scheduler::Scheduler;

    /// An executor whose load says `starting` runs are due and not started yet.
    struct Starting(Arc<AtomicUsize>);

    #[async_trait]
    impl Executor for Starting {
        fn start(&self, _context: ExecutorContext) {}

        fn submit(&self, _submission: Submission) -> Result<(), ExecutorError> {
            Err(ExecutorError::ShuttingDown)
        }

        fn load(&self) -> ExecutorLoad {
            ExecutorLoad {
                running: 0,
                queued: self.0.load(Ordering::SeqCst) + 3,
                early: 3,
                max_workers: 10,
            }
        }

        async fn shutdown(&self, _wait: Option<Duration>) {}
    }

    fn scheduler_with(starting: &Arc<AtomicUsize>) -> Scheduler {
        Scheduler::builder()
            .executor("default", Starting(Arc::clone(starting)))
            .build()
    }

    /// The work after runs' ends waits while the runs whose time has come start, one
    /// turn at a time, and goes on once they all did.
    #[tokio::test(flavor = "current_thread")]
    async fn after_starting_runs_waits_while_runs_start() {
        let starting = Arc::new(AtomicUsize::new(50));
        let scheduler = scheduler_with(&starting);
        let starter = {
            let starting = Arc::clone(&starting);
            tokio::spawn(async move {
                while starting.load(Ordering::SeqCst) > 0 {
                    starting.fetch_sub(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            })
        };
        scheduler.inner.after_starting_runs().await;
        assert_eq!(
            starting.load(Ordering::SeqCst),
            0,
            "returned before the runs started"
        );
        starter.await.expect("the starter ends");
    }

    /// Runs that do not start (waiting for a worker or a slot) hold nothing up: the
    /// wait ends after one turn without a start.
    #[tokio::test(flavor = "current_thread")]
    async fn after_starting_runs_ends_when_a_turn_starts_nothing() {
        let starting = Arc::new(AtomicUsize::new(7));
        let scheduler = scheduler_with(&starting);
        tokio::time::timeout(
            Duration::from_secs(5),
            scheduler.inner.after_starting_runs(),
        )
        .await
        .expect("the wait ends although no run starts");
        assert_eq!(starting.load(Ordering::SeqCst), 7);
    }
}
