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
//!   ([`ScheduleChecks`]).
//! - **`max_instances` counts the runs executing then.** A run whose job's previous
//!   run still held the instance slot at hand-over claims its slot at its time instead
//!   of being skipped at hand-over; only if the slot is still taken then is it skipped
//!   (once, as skipped).
//!
//! ```text
//! every 2 s, each run 1.5 s, fire-ahead 1 s:
//!   0 s ──run 1──── 1.5 s                    2 s ──run 2──── 3.5 s
//!            1 s: run 2 handed over (slot taken: claim at its time)
//!                                            2 s: slot free → claim → start
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::{Event, Inner};
use crate::executor::{StartCheck, Withdrawal};
use crate::store::{JobSchedule, JobStore, StoreError};

/// What a run handed over needs to know at its time; the executor asks it
/// ([`StartCheck::may_start`]) once its start time has come.
pub(crate) struct RunStart {
    pub(crate) inner: Weak<Inner>,
    pub(crate) jobstore: String,
    pub(crate) job_id: String,
    pub(crate) max_instances: u32,
    /// The first scheduled time of the submission (for the events).
    pub(crate) scheduled_time: DateTime<Utc>,
    /// How many runs the submission holds (they share one slot).
    pub(crate) runs: usize,
    /// The next run time the job had when it was taken, and the one written back for
    /// it: finding either in the store means nobody changed its schedule since.
    pub(crate) acquired_next: Option<DateTime<Utc>>,
    pub(crate) released_next: Option<DateTime<Utc>>,
    /// Read the job's schedule from the store first (runs handed over early).
    pub(crate) confirm_schedule: bool,
    /// Whether it holds its instance slot (claimed at hand-over, or lent away to a
    /// run now before its time, [`RunStart::lend_slot`]), and whether it has been
    /// judged; under one lock, so a slot is never lent from a run that started.
    pub(crate) slot: Mutex<SlotState>,
    /// The submission's withdrawal: set here when the store shows the job changed, so
    /// the run's end writes back as for a run taken back locally.
    pub(crate) withdrawal: Withdrawal,
    /// The last run of the submission: its record frees the slot claimed here.
    pub(crate) last_run_id: String,
}

/// [`RunStart::slot`].
#[derive(Debug, Default)]
pub(crate) struct SlotState {
    /// The run holds its instance slot.
    pub(crate) claimed: bool,
    /// `may_start` has begun: the slot is the run's for good.
    pub(crate) judged: bool,
}

impl RunStart {
    fn slot_state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Gives the slot this run claimed early to a run now of the same job, if the run
    /// has not come to its time yet: `max_instances` counts the runs executing, and
    /// this one is not. It claims again at its time (and is skipped if the run now
    /// still goes then). Whether the slot was lent.
    pub(crate) fn lend_slot(&self) -> bool {
        let mut state = self.slot_state();
        if state.judged || !state.claimed {
            return false;
        }
        state.claimed = false;
        true
    }
}

#[async_trait]
impl StartCheck for RunStart {
    async fn may_start(&self) -> Result<(), String> {
        // The scheduler is gone: its executors are being stopped anyway.
        let Some(inner) = self.inner.upgrade() else {
            return Ok(());
        };
        let Some(store) = inner.stores.get(&self.jobstore).cloned() else {
            return Ok(());
        };
        let claimed = {
            let mut state = self.slot_state();
            state.judged = true;
            state.claimed
        };
        if self.confirm_schedule {
            self.confirm_schedule(&inner, &store).await?;
        }
        if !claimed {
            self.claim_slot(&inner, &store).await?;
        }
        Ok(())
    }
}

impl RunStart {
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
            .schedule_of(store, &self.jobstore, &self.job_id)
            .await;
        let refusal = match schedule {
            Ok(None) => "the job was removed after this run was handed over and before it was due",
            // A finished trigger writes nothing back before the run ends (the job then
            // goes), so only a recurring job can be found at its released time.
            Ok(Some(next))
                if next == self.acquired_next
                    || (self.released_next.is_some() && next == self.released_next) =>
            {
                return Ok(())
            }
            Ok(Some(None)) => {
                "the job was paused after this run was handed over and before it was due"
            }
            Ok(Some(Some(_))) => {
                "the job was rescheduled after this run was handed over and before it was due"
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
        Err(refusal.to_owned())
    }

    /// Claims the instance slot the run could not claim at hand-over. A refusal is
    /// looked at twice: runs of this job that ended here a moment ago may not have
    /// freed their slots in the store yet, so this node's finished runs are written
    /// first ([`Inner::flush_finished_runs`]) and the claim tried again.
    async fn claim_slot(&self, inner: &Inner, store: &Arc<dyn JobStore>) -> Result<(), String> {
        let mut claimed = false;
        for attempt in 0..2 {
            if attempt > 0 {
                inner.flush_finished_runs().await;
            }
            match store
                .claim_instance(&self.job_id, &inner.id, self.max_instances)
                .await
            {
                Ok(true) => {
                    claimed = true;
                    break;
                }
                Ok(false) => {}
                Err(error) => {
                    // Without a slot the limit cannot be kept; the run is not lost
                    // silently either: its record says why.
                    tracing::warn!(job_id = self.job_id, %error, "could not claim an instance slot");
                    return Err(format!("could not claim an instance slot: {error}"));
                }
            }
        }
        if claimed {
            if let Some(place) = inner.lock().run_stores.get_mut(&self.last_run_id) {
                place.frees_instance = true;
            }
            return Ok(());
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
}

/// Batches the schedule reads of runs that come due together: the first to ask reads
/// for everyone who asked before its read went out, and again for those who asked
/// meanwhile, so ten thousand runs due at one instant cost a few reads, not ten
/// thousand (the way a group commit batches writes).
#[derive(Default)]
pub(crate) struct ScheduleChecks {
    pending: Mutex<HashMap<String, Batch>>,
}

type Answer = oneshot::Sender<Result<JobSchedule, StoreError>>;

#[derive(Default)]
struct Batch {
    asks: Vec<(String, Answer)>,
    /// Someone is reading for this store now and will read again for new asks.
    reading: bool,
}

impl ScheduleChecks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Batch>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The job's schedule in `store` ([`JobStore::job_schedules`]).
    pub(crate) async fn schedule_of(
        &self,
        store: &Arc<dyn JobStore>,
        jobstore: &str,
        job_id: &str,
    ) -> Result<JobSchedule, StoreError> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut pending = self.lock();
            let batch = pending.entry(jobstore.to_owned()).or_default();
            batch.asks.push((job_id.to_owned(), answer));
            !std::mem::replace(&mut batch.reading, true)
        };
        if lead {
            // The other runs woken with this one (one gate per instant) ask first.
            tokio::task::yield_now().await;
            let mut reader = Reader {
                checks: self,
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
                        batch.reading = false;
                        reader.done = true;
                        break;
                    }
                    std::mem::take(&mut batch.asks)
                };
                let ids: Vec<String> = asks.iter().map(|(id, _)| id.clone()).collect();
                let answers = store.job_schedules(&ids).await;
                for (index, (_, answer)) in asks.into_iter().enumerate() {
                    let result = match &answers {
                        Ok(schedules) => schedules.get(index).copied().ok_or_else(|| {
                            StoreError::Corrupt("the store answered fewer jobs than asked".into())
                        }),
                        Err(error) => Err(error.clone()),
                    };
                    // The asker may be gone (its run was stopped); nothing to tell.
                    let _ = answer.send(result);
                }
            }
        }
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the schedule read was abandoned".into(),
            ))
        })
    }
}

/// Ends a reader's turn however it ends (done, or dropped by a shutdown): the next
/// asker leads again, and asks it did not serve are answered (dropped: "abandoned").
struct Reader<'a> {
    checks: &'a ScheduleChecks,
    jobstore: &'a str,
    /// It handed over its turn itself.
    done: bool,
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut pending = self.checks.lock();
        if let Some(batch) = pending.get_mut(self.jobstore) {
            batch.reading = false;
            batch.asks.clear();
        }
    }
}
