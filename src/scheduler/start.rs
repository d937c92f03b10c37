//! The start of a run: whether a run handed over before its time may start when its
//! time comes (the "due → handed over → started" steps of `docs/lifecycle.md`).
//!
//! A run is handed to its executor up to the fire-ahead window before it is due, so
//! that the store's writes are done by then. Two things are only known at its time:
//!
//! - **Its job may have changed.** A pause, reschedule or removal made through this
//!   scheduler takes the run back at once ([`Withdrawal`]); one made through another
//!   node of a shared store is seen here, by reading the job's schedule from the store
//!   as the run's time comes. Runs due at one instant ask in one read
//!   ([`StoreBatches`]).
//! - **`max_instances` counts the runs executing then.** A run handed over early
//!   claims its instance slot at its time, not at hand-over, so a run it has not
//!   started yet never counts against the limit (a run now through any node finds the
//!   slot free); a run due at once whose job's previous run still held the slot claims
//!   at its time too. Only a slot still taken then skips the run (once, as skipped),
//!   or, as the job's `overlap` says, makes it wait for a running run to end or stop
//!   the oldest one first ([`RunStart::wait_for_slot`]). Runs due at one instant claim
//!   in one store call ([`ClaimSlots`]).
//!
//! ```text
//! every 2 s, each run 1.5 s, fire-ahead 1 s:
//!   0 s ──run 1──── 1.5 s                    2 s ──run 2──── 3.5 s
//!            1 s: run 2 handed over (no slot yet)
//!                                            2 s: slot free → claim → start
//! ```

use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::{Event, Inner, SchedulerState};
use crate::executor::{StartAnswer, StartCheck, Withdrawal};
use crate::history::RunOutcome;
use crate::job::Overlap;
use crate::store::{InstanceClaim, JobSchedule, JobStore, StoreError};

/// What a run handed over needs to know at its time; the executor asks it
/// ([`StartCheck::may_start`]) once its start time has come.
pub(crate) struct RunStart {
    pub(crate) inner: Weak<Inner>,
    /// Its job's store ([`Inner::shared_store_name`]).
    pub(crate) jobstore: Arc<str>,
    pub(crate) job_id: String,
    pub(crate) max_instances: u32,
    /// What it does when the limit is reached at its time ([`Overlap`]).
    pub(crate) overlap: Overlap,
    /// The first scheduled time of the submission (for the events).
    pub(crate) scheduled_time: DateTime<Utc>,
    /// When it came due: its scheduled time, or later for a retry attempt (the end of
    /// its wait) and an orphaned run (when it was taken). A replacement stops only runs
    /// that started by then ([`Inner::runs_to_replace`]).
    pub(crate) due_at: DateTime<Utc>,
    /// How many runs the submission holds (they share one slot).
    pub(crate) runs: usize,
    /// The revision the job had when it was taken: finding it in the store means
    /// nobody changed the job since. Nothing of this node's own is written to the job
    /// before this check (a held job's release waits for the run's end, a deferred one
    /// for this check: `deferred::Deferred`), so the store shows either that revision
    /// or somebody's change. A revision alone, since a change may leave the next run
    /// time as it was (a new trigger whose first time is the run's).
    pub(crate) acquired_revision: u64,
    /// For the later runs of a catch-up ([`StartCheck::may_continue`]): `None` for a
    /// job its runs hold (its revision tells), else what the store shows of the job
    /// until somebody changes it.
    pub(crate) written_back: Option<WrittenBack>,
    /// Read the job's schedule from the store first (runs handed over early).
    pub(crate) confirm_schedule: bool,
    /// Whether it holds its instance slot (claimed at hand-over, for a run due then);
    /// otherwise it claims one at its time.
    pub(crate) slot_claimed: bool,
    /// What the slot claimed at its time carries ([`InstanceClaim::run_times`]).
    pub(crate) run_times: Vec<DateTime<Utc>>,
    /// The submission's withdrawal: set here when the store shows the job changed, so
    /// the run's end writes back as for a run taken back locally.
    pub(crate) withdrawal: Withdrawal,
    /// The first run of the submission: its job's deferred release waits for this
    /// check (`RunPlace::awaiting_check`).
    pub(crate) first_run_id: String,
    /// The last run of the submission when it is not the first (a catch-up): its
    /// record frees the slot claimed here ([`RunStart::last_run_id`]). `None` for a
    /// submission of one run, which needs no second copy of its id.
    pub(crate) later_run_id: Option<String>,
    /// Whether the run holds its job until it ends (`deferred::HeldRelease`): nothing
    /// of this node's own is written to the job before then, so while it waits for a
    /// slot any new revision in the store is somebody's change.
    pub(crate) held: bool,
    /// For a catch-up of a job with retries ([`CatchUpRetries`]): a failed run with
    /// attempts left stops it, to be tried again before the times after it.
    pub(crate) retries: Option<CatchUpRetries>,
}

/// What the later runs of a held catch-up of a job with retries need to know to stop at
/// a failed run ([`StartCheck::may_continue`], docs/lifecycle.md "Failed runs"): its
/// times run one after another, and a time that fails with attempts left is tried
/// again before the times after it, which go on after its attempts (the pending attempt
/// keeps where: `PendingAttempt::catch_up_from`). Retried after the whole catch-up
/// instead, each failed time of it would need a pending attempt of its own, and the
/// job holds one.
pub(crate) struct CatchUpRetries {
    /// The attempt the submission's first run is (a retry goes on with the rest of the
    /// catch-up it stopped); the later runs are first attempts.
    pub(crate) first_attempt: u32,
    pub(crate) max_attempts: u32,
    /// How many later runs have asked so far: the run before the next is this one.
    pub(crate) asked: std::sync::atomic::AtomicUsize,
}

/// Why the rest of a catch-up did not start when one of its runs failed with attempts
/// left ([`CatchUpRetries`]): the failed time is tried again first, and these times run
/// after its attempts.
pub const RETRIED_FIRST: &str =
    "an earlier run of this catch-up failed and is tried again first; this time runs after its attempts";

#[async_trait]
impl StartCheck for RunStart {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn may_start_together(&self, checks: &[Arc<dyn StartCheck>]) -> Vec<StartAnswer> {
        RunStart::start_together(checks).await
    }

    async fn may_start(&self) -> Result<(), String> {
        // The scheduler is gone: its executors are being stopped anyway.
        let Some(inner) = self.inner.upgrade() else {
            return Ok(());
        };
        let Some(store) = inner.stores.get(&*self.jobstore).cloned() else {
            return Ok(());
        };
        if self.confirm_schedule {
            let confirmed = self.confirm_schedule(&inner, &store).await;
            self.checked(&inner);
            confirmed?;
        }
        if !self.slot_claimed {
            self.claim_slot(&inner, &store).await?;
        }
        Ok(())
    }

    async fn may_continue(&self, previous: RunOutcome) -> Result<(), String> {
        if let Some(retries) = &self.retries {
            let before = retries
                .asked
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            let attempt = if before == 0 {
                retries.first_attempt
            } else {
                1
            };
            // A replaced run is `error` too, but the executor stops the rest for it
            // before asking; the record task tells the two apart the same way
            // (`record::Unwritten::add`).
            if matches!(previous, RunOutcome::Error | RunOutcome::Timeout)
                && attempt < retries.max_attempts
            {
                return Err(RETRIED_FIRST.to_owned());
            }
        }
        let Some(inner) = self.inner.upgrade() else {
            return Ok(());
        };
        let Some(store) = inner.stores.get(&*self.jobstore).cloned() else {
            return Ok(());
        };
        let schedule = self.schedule_once_the_store_answers(&inner, &store).await?;
        let unchanged = schedule.is_some_and(|schedule| match self.written_back {
            None => schedule.revision == self.acquired_revision,
            Some(written) => {
                schedule.next_run_time.is_some()
                    && (schedule.next_run_time == written.released_next
                        || schedule.next_run_time == written.acquired_next)
            }
        });
        if unchanged {
            Ok(())
        } else {
            // Recorded as a run taken back through this node is: the job changed.
            Err(crate::executor::WITHDRAWN.to_owned())
        }
    }
}

/// The checks of one chunk of a gate's runs that go to one store of one scheduler
/// ([`RunStart::start_together`]).
struct StartGroup {
    inner: Arc<Inner>,
    store: Arc<dyn JobStore>,
    /// The runs' places in the chunk.
    indices: Vec<usize>,
}

/// The answer at `position` of a batched store call's `answers`, or its error.
fn answer_at<T: Clone>(
    answers: &Result<Vec<T>, StoreError>,
    position: usize,
) -> Result<T, StoreError> {
    match answers {
        Ok(answers) => answers
            .get(position)
            .cloned()
            .ok_or_else(|| StoreError::corrupt("the store answered fewer than asked")),
        Err(error) => Err(error.clone()),
    }
}

/// What is left of a check made together with others, for the run to wait out
/// ([`StartAnswer::Later`]).
enum Rest {
    /// Behind a run of its job that waits for a slot here ([`RunStart::wait_for_slot`]).
    WaitForSlot,
    /// A claim refused or not answered ([`RunStart::settle_claim`]).
    Settle(Result<bool, StoreError>),
}

impl RunStart {
    /// [`StartCheck::may_start_together`]: the checks of runs due at one instant, made
    /// as each run would make its own ([`StartCheck::may_start`]), in the same order
    /// (the schedule read, the deferred write-back let go, the slot claimed), but with
    /// one read and one claim per store for them all. A run whose claim is refused, or
    /// not answered, or that queues behind a waiting run of its job, goes on alone
    /// ([`StartAnswer::Later`]) as it would have.
    async fn start_together(checks: &[Arc<dyn StartCheck>]) -> Vec<StartAnswer> {
        let mut answers: Vec<Option<StartAnswer>> = checks.iter().map(|_| None).collect();
        let mut groups: Vec<StartGroup> = Vec::new();
        for (index, check) in checks.iter().enumerate() {
            let Some(run) = check.as_any().downcast_ref::<RunStart>() else {
                answers[index] = Some(StartAnswer::alone(check));
                continue;
            };
            // As `may_start`: a scheduler gone, or a store it no longer has, lets the
            // run go (its executors are being stopped anyway).
            let Some(inner) = run.inner.upgrade() else {
                answers[index] = Some(StartAnswer::Now(Ok(())));
                continue;
            };
            let Some(store) = inner.stores.get(&*run.jobstore) else {
                answers[index] = Some(StartAnswer::Now(Ok(())));
                continue;
            };
            match groups
                .iter_mut()
                .find(|group| Arc::ptr_eq(&group.inner, &inner) && Arc::ptr_eq(&group.store, store))
            {
                Some(group) => group.indices.push(index),
                None => groups.push(StartGroup {
                    store: Arc::clone(store),
                    inner,
                    indices: vec![index],
                }),
            }
        }
        for group in &groups {
            Self::start_group(checks, group, &mut answers).await;
        }
        answers
            .into_iter()
            .zip(checks)
            .map(|(answer, check)| answer.unwrap_or_else(|| StartAnswer::alone(check)))
            .collect()
    }

    /// [`RunStart::start_together`] for the runs of one store of one scheduler.
    async fn start_group(
        checks: &[Arc<dyn StartCheck>],
        group: &StartGroup,
        answers: &mut [Option<StartAnswer>],
    ) {
        let run = |index: usize| checks[index].as_any().downcast_ref::<RunStart>();
        let (inner, store) = (&group.inner, &group.store);
        let confirming: Vec<(usize, &RunStart)> = group
            .indices
            .iter()
            .filter_map(|&index| run(index).map(|run| (index, run)))
            .filter(|(_, run)| run.confirm_schedule)
            .collect();
        if !confirming.is_empty() {
            let ids: Vec<String> = confirming
                .iter()
                .map(|(_, run)| run.job_id.clone())
                .collect();
            let schedules = store.job_schedules(&ids).await;
            for (position, &(index, run)) in confirming.iter().enumerate() {
                if let Err(refusal) = run.judge_schedule(inner, answer_at(&schedules, position)) {
                    answers[index] = Some(StartAnswer::Now(Err(refusal)));
                }
            }
            // They have looked at their jobs (`RunStart::checked`), each after its
            // refusal kept its deferred release at the time it was taken: with one
            // lock and at most one wake-up of the loop for the chunk. Per run, the
            // loop woke ten thousand times and scanned the deferred releases under
            // the lock the next runs' checks wait for.
            let mut wake_loop = false;
            {
                let mutable = inner.lock();
                for (_, run) in &confirming {
                    if let Some(place) = mutable.run_stores.get(&run.first_run_id) {
                        place.awaiting_check.clear();
                    }
                    wake_loop |= run.written_back.is_some();
                }
            }
            if wake_loop {
                inner.wake.notify_one();
            }
        }
        // Most instants have no run waiting for a slot: one look for the chunk.
        let anyone_waiting = !inner.lock().waiting_for_slot.is_empty();
        let mut claiming: Vec<(usize, &RunStart)> = Vec::new();
        for &index in &group.indices {
            let Some(run) = run(index) else {
                continue;
            };
            if answers[index].is_some() {
                continue;
            }
            if run.slot_claimed {
                answers[index] = Some(StartAnswer::Now(Ok(())));
            } else if anyone_waiting && run.behind_waiting_run(inner) {
                answers[index] = Some(Self::later(&checks[index], group, Rest::WaitForSlot));
            } else {
                claiming.push((index, run));
            }
        }
        if claiming.is_empty() {
            return;
        }
        let claims: Vec<InstanceClaim> = claiming
            .iter()
            .map(|(_, run)| run.instance_claim(run.max_instances))
            .collect();
        let claimed = store.claim_instances(&inner.id, &claims).await;
        // The granted hold their slots (`RunStart::holds_slot`), marked under one lock
        // before any of them is told to start.
        let mut mutable = inner.lock();
        for (position, &(index, run)) in claiming.iter().enumerate() {
            answers[index] = Some(match answer_at(&claimed, position) {
                Ok(true) => {
                    if let Some(place) = mutable.run_stores.get_mut(run.last_run_id()) {
                        place.frees_instance = true;
                    }
                    StartAnswer::Now(Ok(()))
                }
                refused => Self::later(&checks[index], group, Rest::Settle(refused)),
            });
        }
    }

    /// The `rest` of `check`'s start, for its run to wait out.
    fn later(check: &Arc<dyn StartCheck>, group: &StartGroup, rest: Rest) -> StartAnswer {
        let check = Arc::clone(check);
        let (inner, store) = (Arc::clone(&group.inner), Arc::clone(&group.store));
        StartAnswer::Later(Box::pin(async move {
            let Some(run) = check.as_any().downcast_ref::<RunStart>() else {
                return check.may_start().await;
            };
            match rest {
                Rest::WaitForSlot => run.wait_for_slot(&inner, &store).await,
                Rest::Settle(claimed) => run.settle_claim(&inner, &store, claimed).await,
            }
        }))
    }
}

impl RunStart {
    /// Where the job stands now, for the next run of a catch-up
    /// ([`StartCheck::may_continue`]): read again after a back-off while the store
    /// cannot answer. The catch-up holds its job meanwhile, and a removal, pause or
    /// change answered before the store went out of reach must still stop the rest
    /// (seed 90,294 of the family with retries, overlap and faults: the rest of a
    /// catch-up ran after a removal, the read failing in an outage that began after
    /// the removal had answered).
    async fn schedule_once_the_store_answers(
        &self,
        inner: &Inner,
        store: &Arc<dyn JobStore>,
    ) -> Result<Option<JobSchedule>, String> {
        let ids = std::slice::from_ref(&self.job_id);
        self.once_the_store_answers(
            inner,
            "read its job",
            None,
            |_| crate::executor::WITHDRAWN.to_owned(),
            || async move { Ok(store.job_schedules(ids).await?.pop().flatten()) },
        )
        .await
    }

    /// `call`'s answer once the store gives one: while it fails, a back-off that
    /// doubles up to [`MAX_SLOT_WAIT`] (or a run of this node ending) comes before the
    /// next call, after `first` too when the caller met an error already. The wait
    /// ends without an answer when the scheduler stops, or when the job is changed
    /// through this node (`withdrawn` says so, given the last error). What for
    /// (`waiting_for`, "claim its instance slot") goes in the log and the reason.
    async fn once_the_store_answers<T, Call, Answer>(
        &self,
        inner: &Inner,
        waiting_for: &str,
        first: Option<StoreError>,
        withdrawn: impl Fn(&StoreError) -> String,
        mut call: Call,
    ) -> Result<T, String>
    where
        Call: FnMut() -> Answer,
        Answer: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut state = inner.state.subscribe();
        let mut backoff = MIN_SLOT_WAIT;
        let mut failed = first;
        loop {
            if let Some(error) = failed.take() {
                tracing::warn!(job_id = self.job_id, %error, "the job store could not {waiting_for}; trying again");
                let woken = inner.run_ended.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if *state.borrow_and_update() == SchedulerState::Stopped {
                    return Err(format!(
                        "the scheduler stopped while this run waited for the job store to \
                         {waiting_for}: {error}"
                    ));
                }
                if self.withdrawal.is_withdrawn() {
                    return Err(withdrawn(&error));
                }
                back_off(inner, &mut backoff, woken, &mut state).await;
            }
            match call().await {
                Ok(answer) => return Ok(answer),
                Err(error) => failed = Some(error),
            }
        }
    }

    /// The last run of the submission: its record frees the slot claimed here.
    fn last_run_id(&self) -> &str {
        self.later_run_id.as_deref().unwrap_or(&self.first_run_id)
    }

    /// The run has looked at its job: its job's deferred release may now be written;
    /// the loop writes it. Only a job its run does not hold has one
    /// (`deferred::Deferred`).
    fn checked(&self, inner: &Inner) {
        if let Some(place) = inner.lock().run_stores.get(&self.first_run_id) {
            place.awaiting_check.clear();
        }
        if self.written_back.is_some() {
            inner.wake.notify_one();
        }
    }

    /// Refuses the start if the job was removed, paused or rescheduled since it was
    /// taken. A store that cannot answer does not stop the run: a change that could
    /// not be written cannot have been answered either (see `docs/lifecycle.md`).
    async fn confirm_schedule(
        &self,
        inner: &Inner,
        store: &Arc<dyn JobStore>,
    ) -> Result<(), String> {
        let schedule = inner
            .schedule_checks
            .ask(store, &self.jobstore, &inner.id, self.job_id.clone())
            .await;
        self.judge_schedule(inner, schedule)
    }

    /// What [`RunStart::confirm_schedule`] makes of the job's schedule as the store
    /// showed it at the run's time.
    fn judge_schedule(
        &self,
        inner: &Inner,
        schedule: Result<Option<JobSchedule>, StoreError>,
    ) -> Result<(), String> {
        let refusal = match schedule {
            Ok(None) => "the job was removed after this run was handed over and before it was due",
            Ok(Some(schedule)) if schedule.revision == self.acquired_revision => return Ok(()),
            Ok(Some(JobSchedule {
                next_run_time: None,
                ..
            })) => "the job was paused after this run was handed over and before it was due",
            // Rescheduled, or modified: the run it has was taken from the job as it was.
            // Taken back, its time is not used up, so a job changed without a new
            // schedule is taken again at once and runs as it is now.
            Ok(Some(_)) => {
                "the job was changed after this run was handed over and before it was due"
            }
            Err(error) => {
                tracing::warn!(
                    job_id = self.job_id,
                    %error,
                    "could not confirm the job's schedule as its run came due; starting it"
                );
                return Ok(());
            }
        };
        self.withdrawal.withdraw();
        inner.keep_deferred_release_at_acquired_time(&self.first_run_id);
        Err(refusal.to_owned())
    }

    /// The claim of the run's instance slot, with its times
    /// ([`InstanceClaim::run_times`]) and under `max_instances`.
    fn instance_claim(&self, max_instances: u32) -> InstanceClaim {
        InstanceClaim {
            job_id: self.job_id.clone(),
            max_instances,
            run_times: self.run_times.clone(),
            queues: self.queues(),
        }
    }

    /// The run holds its instance slot: its record frees it, whether it starts or not.
    fn holds_slot(&self, inner: &Inner) {
        if let Some(place) = inner.lock().run_stores.get_mut(self.last_run_id()) {
            place.frees_instance = true;
        }
    }

    /// Whether the run's claim would only be refused: under `queue` or `replace`, a
    /// run of its job already waits here for a slot and goes first. A run planned
    /// under a raised limit claims first: the slots the raise added are ones the
    /// waiting run, claiming under its own limit, cannot take.
    fn behind_waiting_run(&self, inner: &Inner) -> bool {
        self.overlap != Overlap::Skip && inner.has_waiting_run(&self.job_id, self.max_instances)
    }

    /// Claims the run's instance slot at its time, in one store call with the other
    /// runs due then. A refusal is looked at twice: runs of this job that ended here a
    /// moment ago may not have freed their slots in the store yet, so this node's
    /// finished runs are written first ([`Inner::flush_finished_runs`]) and the claim
    /// tried again.
    async fn claim_slot(&self, inner: &Inner, store: &Arc<dyn JobStore>) -> Result<(), String> {
        if self.behind_waiting_run(inner) {
            // The run waiting already goes first; this one is refused there.
            return self.wait_for_slot(inner, store).await;
        }
        let claimed = inner
            .slot_claims
            .ask(
                store,
                &self.jobstore,
                &inner.id,
                self.instance_claim(self.max_instances),
            )
            .await;
        self.settle_claim(inner, store, claimed).await
    }

    /// What the batched claim of the run's slot (`claimed`) leaves: the run starts with
    /// its slot, or a refusal is tried once more after this node's ended runs are
    /// written (the claim made again only then), and then skips or waits as `overlap`
    /// says.
    async fn settle_claim(
        &self,
        inner: &Inner,
        store: &Arc<dyn JobStore>,
        mut claimed: Result<bool, StoreError>,
    ) -> Result<(), String> {
        if matches!(claimed, Ok(false)) {
            inner.flush_finished_runs().await;
            let claim = self.instance_claim(self.max_instances);
            claimed = store
                .claim_instances(&inner.id, std::slice::from_ref(&claim))
                .await
                .map(|claimed| claimed.first().copied().unwrap_or(false));
        }
        let mut waited_for_store = false;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            // A run that holds its job is its job's only time (a one-off job's), or an
            // attempt its pending retry stands for: skipped, it would be lost with it.
            // It waits for the store instead.
            Err(error) if self.held => {
                waited_for_store = true;
                self.claim_once_the_store_answers(inner, store, error)
                    .await?
            }
            Err(error) => {
                // Without a slot the limit cannot be kept; the run is not lost
                // silently either: its record says why.
                tracing::warn!(job_id = self.job_id, %error, "could not claim an instance slot");
                return Err(format!("could not claim an instance slot: {error}"));
            }
        };
        if claimed {
            self.holds_slot(inner);
            if waited_for_store {
                // A removal, pause or change through another node may have answered
                // while this node could not reach the store: it is seen now.
                return self
                    .still_wanted_after(inner, store, "the job store to claim its instance slot")
                    .await;
            }
            return Ok(());
        }
        if self.overlap != Overlap::Skip {
            return self.wait_for_slot(inner, store).await;
        }
        inner.emit(Event::JobMaxInstances {
            job_id: self.job_id.clone(),
            scheduled_time: self.scheduled_time,
            max_instances: self.max_instances,
        });
        Err(format!(
            "{} run(s) of this job were still going at its time (max_instances); skipped {} run time(s)",
            self.max_instances, self.runs
        ))
    }

    /// A run that holds its job, whose claim the store could not answer (`error`):
    /// claims again after a back-off that doubles up to [`MAX_SLOT_WAIT`] until the
    /// store answers, and says whether the slot was granted. The job stays leased to
    /// this node meanwhile (its lease renewed with the run's), so its time waits with
    /// it, and starts late rather than never (docs/lifecycle.md, "Handed over, judged
    /// at its time"). The wait ends without a start when the scheduler stops or the
    /// job is changed through this node; a change through another node is looked for
    /// once the slot is granted.
    async fn claim_once_the_store_answers(
        &self,
        inner: &Inner,
        store: &Arc<dyn JobStore>,
        error: StoreError,
    ) -> Result<bool, String> {
        let claim = self.instance_claim(self.max_instances);
        let (claim, owner) = (&claim, inner.id.as_str());
        self.once_the_store_answers(
            inner,
            "claim its instance slot",
            Some(error),
            |error| {
                format!(
                    "the job was paused, rescheduled or removed while this run waited for the \
                     job store to claim its instance slot: {error}"
                )
            },
            || async move {
                let claimed = store
                    .claim_instances(owner, std::slice::from_ref(claim))
                    .await?;
                Ok(claimed.first().copied().unwrap_or(false))
            },
        )
        .await
    }

    /// `overlap = "queue"` or `"replace"` once the limit refused the slot: the run
    /// waits for one (a replacement first stops the oldest runs of its job on this
    /// node, as many as the limit needs), at most one per job on this node and, under
    /// `queue`, in the cluster. See docs/lifecycle.md, "When the limit is reached".
    ///
    /// Under `queue` the run that waits is its job's waiter in the store
    /// ([`crate::store::InstanceSlots::wait_for_instance`]), which keeps one of the
    /// job's slots from the claims of other nodes: a run of another node that comes due
    /// meanwhile is skipped (or claims beside it), and the slot a running run frees is
    /// this run's at its next claim, wherever the run ended. A run that does not hold
    /// its job, due while another node's run waits, is skipped as one due while a run
    /// of this node waits; a run that holds its job waits behind it without being the
    /// waiter, and tries to become it at each claim. A store that cannot register it
    /// leaves it waiting as before waiters. Under `replace` nothing registers: a newer
    /// run wins there ([`RunStart::superseded`]).
    ///
    /// The claim is the store's, so the limit holds across nodes: it is tried again
    /// when a run of this node ends (its record written first, which frees its slot)
    /// or after a back-off that doubles up to [`MAX_SLOT_WAIT`], for runs on other
    /// nodes. The wait ends without a start when the job is paused, rescheduled or
    /// removed through this node, removed or paused through another (read after each
    /// refused claim, and once a claim is granted: [`RunStart::still_wanted`]), or the
    /// scheduler stops, and for a replacement when a newer run of its job already goes
    /// ([`RunStart::superseded`]); each is recorded as skipped with the reason.
    async fn wait_for_slot(&self, inner: &Inner, store: &Arc<dyn JobStore>) -> Result<(), String> {
        let already_waiting = {
            let mut mutable = inner.lock();
            if mutable.waiting_for_slot.contains_key(&self.job_id) {
                true
            } else {
                mutable
                    .waiting_for_slot
                    .insert(self.job_id.clone(), self.max_instances);
                false
            }
        };
        // A run that holds its job waits behind the one waiting already: nothing else
        // of its job comes while it holds it, and refused it would lose its time (a
        // retry's pending attempt, a one-off job's only time).
        if already_waiting && !self.held {
            // The waiting run goes first, but a slot it leaves free is this run's: one
            // claim that keeps a slot for it (under a limit one lower) starts this run
            // only if both fit. The waiting run may wake at this very instant, on its
            // back-off, and take one of two free slots (docs/lifecycle.md, "When the
            // limit is reached").
            if self.max_instances > 1 && self.claim_beside_waiting_run(inner, store).await {
                return self.still_wanted(inner, store).await;
            }
            return Err(self.skipped_behind_waiting_run(inner));
        }
        let waiting = (!already_waiting).then_some(Waiting {
            inner,
            job_id: &self.job_id,
        });
        let in_store = waiting.is_some() && self.queues();
        if in_store {
            match store
                .wait_for_instance(&self.job_id, &inner.id, self.max_instances, WAITER_TTL)
                .await
            {
                Ok(true) => {}
                // A run of another node waits already. Its claim left that run's slot
                // free, the way a claim beside a run waiting here does, and was
                // refused: this run is skipped as one due while a run of this node
                // waits.
                Ok(false) if !self.held => {
                    drop(waiting);
                    return Err(self.skipped_behind_waiting_run(inner));
                }
                // It waits behind it: skipped, it would lose its time.
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(job_id = self.job_id, %error, "could not make this run its job's waiter in the store; it waits on this node alone");
                }
            }
        }
        let waited = self.wait_until_granted(inner, store, in_store).await;
        if in_store {
            // Before this node's place is given up: a run of this node that waits next
            // registers after this, not before.
            if let Err(error) = store.stop_waiting(&self.job_id, &inner.id).await {
                tracing::warn!(job_id = self.job_id, %error, "could not end this node's waiter of the job; it ends by itself when its time-to-live runs out");
            }
        }
        drop(waiting);
        waited
    }

    /// Whether the job queues its runs: only then does a run of it wait as its job's
    /// waiter in the store, and do its claims leave a slot to another node's
    /// ([`InstanceClaim::queues`]).
    fn queues(&self) -> bool {
        self.overlap == Overlap::Queue
    }

    /// A run due while another run of its job waits, on this node or (under `queue`)
    /// on another, that does not fit beside it: recorded as skipped, with why.
    fn skipped_behind_waiting_run(&self, inner: &Inner) -> String {
        inner.emit(Event::JobMaxInstances {
            job_id: self.job_id.clone(),
            scheduled_time: self.scheduled_time,
            max_instances: self.max_instances,
        });
        format!(
            "another run of this job was already waiting for one of its {} running run(s) \
             to end (max_instances, overlap = {}); skipped {} run time(s)",
            self.max_instances, self.overlap, self.runs
        )
    }

    /// The wait of [`RunStart::wait_for_slot`]: claims until a claim is granted or the
    /// wait ends without a start; `in_store` when the run is (or tries to be) its
    /// job's waiter, refreshed before each claim after the first.
    async fn wait_until_granted(
        &self,
        inner: &Inner,
        store: &Arc<dyn JobStore>,
        in_store: bool,
    ) -> Result<(), String> {
        let mut state = inner.state.subscribe();
        let mut backoff = MIN_SLOT_WAIT;
        let mut first = true;
        loop {
            if in_store && !std::mem::take(&mut first) {
                // Each claim refreshes the waiter (or, for a run that waits behind
                // another node's, or that could not register, tries to become it).
                if let Err(error) = store
                    .wait_for_instance(&self.job_id, &inner.id, self.max_instances, WAITER_TTL)
                    .await
                {
                    tracing::debug!(job_id = self.job_id, %error, "could not refresh this node's waiter of the job");
                }
            }
            let woken = inner.run_ended.notified();
            tokio::pin!(woken);
            // Registered before looking, so a run that ends meanwhile still wakes it.
            woken.as_mut().enable();
            if *state.borrow_and_update() == SchedulerState::Stopped {
                return Err(format!(
                    "the scheduler stopped while this run waited for a running run of its job \
                     to end (overlap = {})",
                    self.overlap
                ));
            }
            if self.withdrawal.is_withdrawn() {
                return Err(format!(
                    "the job was paused, rescheduled or removed while this run waited for a \
                     running run of it to end (overlap = {})",
                    self.overlap
                ));
            }
            // A replacement stops runs of this node only where that makes room: the
            // runs of other nodes may fill the limit without them (a `max_instances`
            // lowered while runs went on two nodes), and it never stops those. Its
            // claim counts the runs it would stop as stopped (a limit as many higher):
            // granted, it stops them and starts as they end; refused, stopping them
            // would be for nothing, and it waits as a queued run does, claiming again
            // as runs end (docs/lifecycle.md, "In a cluster").
            let to_replace = if self.overlap == Overlap::Replace {
                inner.runs_to_replace(&self.job_id, self.due_at, self.max_instances)
            } else {
                Vec::new()
            };
            // The records of this node's ended runs free their slots when written.
            inner.flush_finished_runs().await;
            // With the run's times, as at its time: the slot carries them for a job
            // written back when its run was due (an orphaned run if this node dies).
            let claim = self.instance_claim(
                self.max_instances
                    .saturating_add(u32::try_from(to_replace.len()).unwrap_or(u32::MAX)),
            );
            let refused = match store
                .claim_instances(&inner.id, std::slice::from_ref(&claim))
                .await
                .map(|claimed| claimed.first().copied().unwrap_or(false))
            {
                Ok(true) => {
                    self.holds_slot(inner);
                    if !to_replace.is_empty() {
                        inner.replace_runs(&to_replace, self.scheduled_time);
                        self.wait_for_replaced(inner, &to_replace).await?;
                    }
                    return self.still_wanted(inner, store).await;
                }
                Ok(false) => true,
                Err(error) => {
                    tracing::warn!(job_id = self.job_id, %error, "could not claim an instance slot; will retry");
                    false
                }
            };
            // A change through another node: this node hears of no run of it ending.
            self.still_wanted(inner, store).await?;
            if refused {
                self.superseded(store).await?;
            }
            back_off(inner, &mut backoff, woken, &mut state).await;
        }
    }

    /// `overlap = "replace"`, after a refused claim: ends the wait if a run of the job
    /// newer than this one (a later scheduled time) already holds a slot, on any node.
    /// The newest run wins: this run would only start after it, older, and it never
    /// stops a run of another node. Without this, the runs of a node that holds the
    /// only slot, each replacing the one before there, could overtake it claim after
    /// claim, and it would wait without end and leave no trace (docs/lifecycle.md, "In
    /// a cluster"). Recorded as skipped, replaced by that run. A run that holds its job
    /// (a retry attempt, a one-off job's run) carries no run times in its slot and has
    /// no newer run of its job while it holds it; a store that cannot answer leaves it
    /// waiting.
    async fn superseded(&self, store: &Arc<dyn JobStore>) -> Result<(), String> {
        if self.overlap != Overlap::Replace || self.held {
            return Ok(());
        }
        let Some(&own) = self.run_times.iter().max() else {
            return Ok(());
        };
        let newest = match store.running_times(&self.job_id).await {
            Ok(times) => times.into_iter().filter(|time| *time > own).max(),
            Err(error) => {
                tracing::warn!(job_id = self.job_id, %error, "could not read the running runs' times; still waiting");
                None
            }
        };
        match newest {
            None => Ok(()),
            Some(newer) => Err(format!(
                "{} {} (overlap = replace), already going while this run waited for a slot; \
                 skipped {} run time(s)",
                super::main_loop::REPLACED,
                newer.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                self.runs
            )),
        }
    }

    /// Waits until the runs this replacement stopped have ended (their records came
    /// in), so that it never executes beside them: the slot it holds already counted
    /// them as stopped.
    async fn wait_for_replaced(&self, inner: &Inner, replaced: &[String]) -> Result<(), String> {
        let mut state = inner.state.subscribe();
        let mut backoff = MIN_SLOT_WAIT;
        loop {
            let woken = inner.run_ended.notified();
            tokio::pin!(woken);
            // Registered before looking, so a run that ends meanwhile still wakes it.
            woken.as_mut().enable();
            if !inner.any_run_going(replaced) {
                return Ok(());
            }
            if *state.borrow_and_update() == SchedulerState::Stopped {
                return Err(format!(
                    "the scheduler stopped while this run waited for the run it replaced to \
                     end (overlap = {})",
                    self.overlap
                ));
            }
            back_off(inner, &mut backoff, woken, &mut state).await;
        }
    }

    /// Claims a slot for this run while another run of its job waits here, leaving one
    /// free for that one: under `max_instances - 1`. Whether it was granted.
    async fn claim_beside_waiting_run(&self, inner: &Inner, store: &Arc<dyn JobStore>) -> bool {
        inner.flush_finished_runs().await;
        let claim = self.instance_claim(self.max_instances.saturating_sub(1));
        let granted = store
            .claim_instances(&inner.id, std::slice::from_ref(&claim))
            .await
            .is_ok_and(|claimed| claimed.first().copied().unwrap_or(false));
        if granted {
            self.holds_slot(inner);
        }
        granted
    }

    /// Whether a waiting run's job was removed or paused through another node since it
    /// was handed over (or changed at all, for a run that holds its job, [`RunStart::held`]):
    /// asked after each refused claim, and once a claim is granted. The
    /// slot a removed job's last run frees is
    /// granted like any other, so the claim alone does not tell; docs/lifecycle.md
    /// promises that once a removal or pause has answered, through any node, the job
    /// does not start. Read after the claim, not before: a removal answered before the
    /// slot was granted is seen here either way.
    ///
    /// A job gone because this node's record task removed it as a finished one-off
    /// job (its own run ended while a run now of it waited) was not removed by anyone:
    /// that run now still starts (`Inner`'s `finishing_one_offs`). A store that cannot
    /// answer cannot have taken a change either.
    async fn still_wanted(&self, inner: &Inner, store: &Arc<dyn JobStore>) -> Result<(), String> {
        let waited_for = format!("a running run of it to end (overlap = {})", self.overlap);
        self.still_wanted_after(inner, store, &waited_for).await
    }

    /// [`RunStart::still_wanted`], for a run that waited for `waited_for` (what its
    /// record says when the job changed meanwhile).
    async fn still_wanted_after(
        &self,
        inner: &Inner,
        store: &Arc<dyn JobStore>,
        waited_for: &str,
    ) -> Result<(), String> {
        let refusal = match store.get_job(&self.job_id).await {
            Ok(None) if !inner.lock().finishing_one_offs.contains(&self.job_id) => "removed",
            // Paused since it was handed over: a run now of a job already paused runs.
            Ok(Some(job)) if job.paused && job.revision != self.acquired_revision => "paused",
            // A run that holds its job, changed since it was taken (a reschedule, a
            // modify): taken back as at its time (`RunStart::confirm_schedule`), its
            // time not used up, so the job is taken again at once and runs as it is
            // now, or as its new schedule says. A waiting retry attempt so learns of a
            // reschedule that cancelled it (docs/lifecycle.md, "Failed runs"), and a
            // waiting run never starts as its job was before a change answered.
            Ok(Some(job)) if self.held && job.revision != self.acquired_revision => "changed",
            Ok(_) | Err(_) => return Ok(()),
        };
        if self.held {
            // Its end writes back as for a run taken back here: the job stays as the
            // change left it, at the run's time if the change kept its schedule
            // (docs/lifecycle.md, "Held until the run ends").
            self.withdrawal.withdraw();
        }
        Err(format!(
            "the job was {refusal} while this run waited for {waited_for}"
        ))
    }
}

/// Sleeps until a run of this node ends (`woken`, registered before the caller
/// looked), the back-off ends (it then doubles, up to [`MAX_SLOT_WAIT`]), or the
/// scheduler's state changes: how a run waiting for a slot, or for the runs it
/// replaced to end, waits between two looks.
async fn back_off(
    inner: &Inner,
    backoff: &mut std::time::Duration,
    woken: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    state: &mut tokio::sync::watch::Receiver<SchedulerState>,
) {
    let now = inner.clock.now();
    let retry_at = now
        .checked_add_signed(chrono::TimeDelta::from_std(*backoff).unwrap_or_default())
        .unwrap_or(now);
    *backoff = (*backoff * 2).min(MAX_SLOT_WAIT);
    tokio::select! {
        () = woken => {}
        () = inner.clock.sleep_until(retry_at) => {}
        _ = state.changed() => {}
    }
}

/// The first wait before a waiting run claims its slot again (`overlap`), unless a run
/// of this node ends first; it doubles up to [`MAX_SLOT_WAIT`].
const MIN_SLOT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// The longest wait between two claims of a waiting run: how late at most it learns
/// that a run on another node ended.
const MAX_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a job's waiter stands in the store after the waiting run last refreshed it
/// ([`crate::store::InstanceSlots::wait_for_instance`]). The run refreshes it before
/// each claim, and its claims are at most [`MAX_SLOT_WAIT`] apart plus what one look
/// takes (this node's records written first, the store's answers): six times the
/// longest back-off leaves a slow store room, so a live waiter never lapses between
/// two refreshes and loses its turn. The time-to-live only ends the waiter of a run
/// whose future was dropped (a shutdown) or whose node died and was not recovered or
/// reaped: the slot it keeps from other nodes stays kept that long at most.
const WAITER_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// A job's place in [`Inner`]'s `waiting_for_slot`, given up however the wait ends
/// (a start, a refusal, or the run's future dropped by a shutdown).
struct Waiting<'a> {
    inner: &'a Inner,
    job_id: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut mutable = self.inner.lock();
        mutable.waiting_for_slot.remove(self.job_id);
        mutable.finishing_one_offs.remove(self.job_id);
    }
}

/// The next run times of a job its runs do not hold, written back at hand-over: the
/// store shows the one it was taken at until the write-back is done (a store refusing
/// writes retries it), then the one written back, until somebody changes the job.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WrittenBack {
    pub(crate) acquired_next: Option<DateTime<Utc>>,
    pub(crate) released_next: Option<DateTime<Utc>>,
}

/// Batches the store calls of runs that come due together: the first to ask calls
/// for everyone who asked before its call went out, and again for those who asked
/// meanwhile, so ten thousand runs due at one instant cost a few calls, not ten
/// thousand (the way a group commit batches writes). One per kind of call
/// ([`ReadSchedules`], [`ClaimSlots`]).
pub(crate) struct StoreBatches<Op: BatchedCall> {
    // foldhash, not SipHash: every run due at an instant looks its store up here.
    pending: Mutex<hashbrown::HashMap<String, Batch<Op>>>,
}

impl<Op: BatchedCall> Default for StoreBatches<Op> {
    fn default() -> Self {
        StoreBatches {
            pending: Mutex::new(hashbrown::HashMap::new()),
        }
    }
}

/// One store call that answers a batch of asks, one answer per ask, in order.
#[async_trait]
pub(crate) trait BatchedCall: Send + Sync + 'static {
    /// What one run asks.
    type Ask: Send;
    /// What it is answered.
    type Answer: Send;
    /// Asks the store for the whole batch.
    async fn call(
        store: &dyn JobStore,
        owner: &str,
        asks: Vec<Self::Ask>,
    ) -> Result<Vec<Self::Answer>, StoreError>;
}

/// Where each job stands ([`crate::store::DueJobs::job_schedules`]), to confirm a run's
/// schedule.
pub(crate) struct ReadSchedules;

#[async_trait]
impl BatchedCall for ReadSchedules {
    type Ask = String;
    type Answer = Option<JobSchedule>;
    async fn call(
        store: &dyn JobStore,
        _owner: &str,
        asks: Vec<String>,
    ) -> Result<Vec<Option<JobSchedule>>, StoreError> {
        store.job_schedules(&asks).await
    }
}

/// Instance slots claimed at the runs' time
/// ([`crate::store::InstanceSlots::claim_instances`]).
pub(crate) struct ClaimSlots;

#[async_trait]
impl BatchedCall for ClaimSlots {
    type Ask = InstanceClaim;
    type Answer = bool;
    async fn call(
        store: &dyn JobStore,
        owner: &str,
        asks: Vec<InstanceClaim>,
    ) -> Result<Vec<bool>, StoreError> {
        store.claim_instances(owner, &asks).await
    }
}

type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

struct Batch<Op: BatchedCall> {
    asks: Vec<(Op::Ask, Answer<Op::Answer>)>,
    /// Someone is calling for this store now and will call again for new asks.
    calling: bool,
}

impl<Op: BatchedCall> Default for Batch<Op> {
    fn default() -> Self {
        Batch {
            asks: Vec::new(),
            calling: false,
        }
    }
}

impl<Op: BatchedCall> StoreBatches<Op> {
    fn lock(&self) -> std::sync::MutexGuard<'_, hashbrown::HashMap<String, Batch<Op>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `ask`'s answer from `store`, called in one batch with the asks of the runs
    /// that came due with this one.
    pub(crate) async fn ask(
        &self,
        store: &Arc<dyn JobStore>,
        jobstore: &str,
        owner: &str,
        ask: Op::Ask,
    ) -> Result<Op::Answer, StoreError> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut pending = self.lock();
            // No copy of the store's name per ask: thousands ask at one instant.
            match pending.get_mut(jobstore) {
                Some(batch) => {
                    batch.asks.push((ask, answer));
                    !std::mem::replace(&mut batch.calling, true)
                }
                None => {
                    let mut batch = Batch::default();
                    batch.asks.push((ask, answer));
                    batch.calling = true;
                    pending.insert(jobstore.to_owned(), batch);
                    true
                }
            }
        };
        if lead {
            // The other runs woken with this one (one gate per instant) ask first.
            tokio::task::yield_now().await;
            let mut caller = Caller {
                batches: self,
                jobstore,
                done: false,
            };
            loop {
                let asks = {
                    let mut pending = self.lock();
                    let Some(batch) = pending.get_mut(jobstore) else {
                        break;
                    };
                    if batch.asks.is_empty() {
                        // In the same lock as the last look: an ask after this leads.
                        batch.calling = false;
                        caller.done = true;
                        break;
                    }
                    std::mem::take(&mut batch.asks)
                };
                let (questions, answers): (Vec<Op::Ask>, Vec<Answer<Op::Answer>>) =
                    asks.into_iter().unzip();
                match Op::call(store.as_ref(), owner, questions).await {
                    Ok(results) => {
                        let mut results = results.into_iter();
                        for answer in answers {
                            let result = results.next().ok_or_else(|| {
                                StoreError::corrupt("the store answered fewer than asked")
                            });
                            // The asker may be gone (its run was stopped); nothing to tell.
                            let _ = answer.send(result);
                        }
                    }
                    Err(error) => {
                        for answer in answers {
                            let _ = answer.send(Err(error.clone()));
                        }
                    }
                }
            }
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::unavailable(
                "the batched store call was abandoned",
            ))
        })
    }
}

/// Ends a caller's turn however it ends (done, or dropped by a shutdown): the next
/// asker leads again, and asks it did not serve are answered (dropped: "abandoned").
struct Caller<'a, Op: BatchedCall> {
    batches: &'a StoreBatches<Op>,
    jobstore: &'a str,
    /// It handed over its turn itself.
    done: bool,
}

impl<Op: BatchedCall> Drop for Caller<'_, Op> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut pending = self.batches.lock();
        if let Some(batch) = pending.get_mut(self.jobstore) {
            batch.calling = false;
            batch.asks.clear();
        }
    }
}
