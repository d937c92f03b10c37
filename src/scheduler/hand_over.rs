//! Handing due runs to their executors: one instance-slot claim for a batch's due runs
//! ([`hand_over_due_runs`]), one per "run now" or backfill ([`submit_runs`]), and the
//! hand-over of each run with its start check, stop handle and release
//! (docs/lifecycle.md, "Taken and planned").

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::deferred::{AwaitingCheck, HeldRelease};
use super::jobs::submission;
use super::main_loop::{CatchUp, DueRuns, RunPlace};
use super::recovery::recover_store;
use super::{start, Event, Inner};
use crate::executor::Withdrawal;
use crate::history::{RunOutcome, RunRecord};
use crate::job::{generate_id, Job, Overlap};
use crate::store::{InstanceClaim, JobStore, StoreError};

/// Claims the instance slots of a batch's due runs in one store call, then hands each
/// claimed job's runs to its executor. Returns the jobs whose final release the runs
/// now hold ([`RunPlace::release`]), to leave out of the batch's release. Fails only
/// when the claim itself failed, in which case nothing was handed over.
pub(super) async fn hand_over_due_runs(
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
            queues: due.job.overlap == Overlap::Queue,
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
        let (run_id, handed_over, (awaiting_check, withdrawal)) = hand_over(
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
                handed.early.insert(
                    due.job.id.clone(),
                    EarlyRun {
                        at: *first,
                        run_id,
                        awaiting_check,
                        withdrawal,
                    },
                );
            }
        }
    }
    Ok(handed)
}

/// The run times an instance slot carries ([`InstanceClaim::run_times`]): those of a
/// job written back when its run is due (`written_back`), which nothing else in the
/// store remembers once the run has started. A node that dies during such a run leaves
/// them as an orphaned run, run again elsewhere ([`super::recovery::replay_orphaned_runs`]); a job its
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
pub(super) struct HandedOver {
    /// Jobs whose final release their runs hold ([`RunPlace::release`]).
    pub(super) held: hashbrown::HashSet<String>,
    /// Recurring jobs handed over ahead of their time (the fire-ahead window), with
    /// their first run time and run id: their release waits until then, and until that
    /// run has looked at its job ([`super::deferred::Deferred`]).
    pub(super) early: hashbrown::HashMap<String, EarlyRun>,
}

/// The first run of a job handed over ahead of its time ([`HandedOver::early`]).
pub(super) struct EarlyRun {
    /// Its scheduled time.
    pub(super) at: DateTime<Utc>,
    pub(super) run_id: String,
    /// Its place's flags, which its job's deferred release shares.
    pub(super) awaiting_check: AwaitingCheck,
    pub(super) withdrawal: Withdrawal,
}

/// The shortest fire-ahead window with which the loop wakes without spinning: runs
/// are then handed over at least this early, so a wake-up a millisecond late is on
/// time.
pub(super) const COARSE_WAKE_MIN_FIRE_AHEAD: Duration = Duration::from_millis(10);

/// How many runs are handed over between two turns given to other tasks.
pub(super) const HAND_OVER_CHUNK: usize = 64;

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
        // A job that queues claims as its waiting runs do: another node's waiter keeps
        // its slot from this run too (docs/lifecycle.md, "In a cluster").
        let claim = crate::store::InstanceClaim {
            job_id: job.id.clone(),
            max_instances: limit,
            run_times: Vec::new(),
            queues: !force && job.overlap == Overlap::Queue,
        };
        store
            .claim_instances(&inner.id, std::slice::from_ref(&claim))
            .await?
            .first()
            .copied()
            .unwrap_or(false)
    };
    if !claimed && job.overlap == Overlap::Skip {
        return Ok(refuse_max_instances(inner, jobstore, job, scheduled_times).await);
    }
    // Without its slot (the limit was reached and the job queues or replaces), the run
    // waits for one at its start ([`start::RunStart`]).
    let (run_id, _, _) = hand_over(
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
pub(super) async fn refuse_max_instances(
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
pub(super) struct HandOver {
    /// Goes with the last run ([`RunPlace::release`]) when the executor takes them.
    pub(super) final_release: Option<HeldRelease>,
    /// The instance slot is claimed; otherwise the runs claim it at their start time.
    pub(super) slot_claimed: bool,
    /// The next run time written back for the job when its runs do not hold it
    /// ([`start::RunStart::written_back`]).
    pub(super) released_next: Option<DateTime<Utc>>,
    /// [`start::RunStart::acquired_revision`].
    pub(super) checked_revision: u64,
}

/// Hands runs to the job's executor; returns the first run id, whether the
/// executor took them, and the first run's `RunPlace::awaiting_check` and withdrawal. A refused hand-over frees the slot and is recorded as an error.
/// Runs handed over before their start time, or without their slot, are judged again
/// when that time comes ([`start::RunStart`]).
pub(super) async fn hand_over(
    inner: &Inner,
    jobstore: &str,
    store: &dyn JobStore,
    job: &Job,
    scheduled_times: &[DateTime<Utc>],
    start_at: DateTime<Utc>,
    how: HandOver,
) -> (String, bool, (AwaitingCheck, Withdrawal)) {
    let first = scheduled_times.first().copied().unwrap_or(start_at);
    let now = inner.clock.now();
    let refusal = match (
        inner.executors.get(&job.executor),
        submission(inner, job, scheduled_times, start_at, now),
    ) {
        (None, _) => format!("the executor {:?} does not exist", job.executor),
        (_, None) => format!("the task {:?} is not registered", job.task),
        (Some(executor), Some(mut submission)) => {
            // The first run's id, and the later ones' of a catch-up: a lone run (nearly
            // every one) needs no list of them (BENCHMARKS.md, "Instructions per run").
            let first_run_id = submission
                .runs
                .first()
                .map(|run| run.run_id.clone())
                .unwrap_or_default();
            let later_run_ids: Vec<String> = submission
                .runs
                .iter()
                .skip(1)
                .map(|run| run.run_id.clone())
                .collect();
            let run_ids = || std::iter::once(&first_run_id).chain(&later_run_ids);
            let early = start_at > now;
            let catch_up = !later_run_ids.is_empty();
            let store_name = inner.shared_store_name(jobstore);
            let start = (early || !how.slot_claimed || catch_up).then(|| {
                Arc::new(start::RunStart {
                    inner: inner.me.clone(),
                    jobstore: Arc::clone(&store_name),
                    job_id: job.id.clone(),
                    max_instances: job.max_instances,
                    overlap: job.overlap,
                    scheduled_time: first,
                    due_at: start_at,
                    runs: 1 + later_run_ids.len(),
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
                    first_run_id: first_run_id.clone(),
                    later_run_id: later_run_ids.last().cloned(),
                    held: how.final_release.is_some(),
                    retries: how
                        .final_release
                        .as_ref()
                        .filter(|_| catch_up)
                        .and_then(|held| {
                            let max_attempts = held.policy.as_ref()?.max_attempts;
                            (max_attempts > 1).then(|| start::CatchUpRetries {
                                first_attempt: held.attempt,
                                max_attempts,
                                asked: std::sync::atomic::AtomicUsize::new(0),
                            })
                        }),
                })
            });
            submission.start_check = start
                .clone()
                .map(|start| start as Arc<dyn crate::executor::StartCheck>);
            // Only a job its runs do not hold has a deferred release waiting for the
            // check (`deferred::Deferred`); a held one's flag would be read by nobody.
            let first_awaiting = AwaitingCheck::new(early && how.final_release.is_none());
            let withdrawal = submission.withdrawal.clone();
            {
                let mut mutable = inner.lock();
                let last = later_run_ids.len();
                let catch_up = catch_up.then(|| Arc::new(CatchUp::default()));
                // The first run is the attempt its job's pending attempt says (a retry);
                // the later ones of a catch-up, first attempts.
                let first_attempt = how.final_release.as_ref().map_or(1, |held| held.attempt);
                let mut final_release = how.final_release;
                let metrics = inner.metrics.for_run(job);
                for (index, run_id) in run_ids().enumerate() {
                    let place = RunPlace {
                        job_id: job.id.clone(),
                        jobstore: Arc::clone(&store_name),
                        frees_instance: index == last && how.slot_claimed,
                        release: if index == last {
                            final_release.take()
                        } else {
                            None
                        },
                        withdrawal: submission.withdrawal.clone(),
                        awaiting_check: if index == 0 {
                            first_awaiting.clone()
                        } else {
                            AwaitingCheck::default()
                        },
                        catch_up: catch_up.clone(),
                        attempt: if index == 0 { first_attempt } else { 1 },
                        metrics: metrics.clone(),
                        stop: submission.stop.clone(),
                    };
                    mutable.run_stores.insert(run_id.clone(), place);
                }
            }
            match executor.submit(submission) {
                Ok(()) => {
                    for (run_id, scheduled_time) in run_ids().zip(scheduled_times) {
                        inner.emit_with(|| Event::JobSubmitted {
                            job_id: job.id.clone(),
                            run_id: run_id.clone(),
                            scheduled_time: *scheduled_time,
                            start_at: start_at.max(*scheduled_time),
                            executor: job.executor.clone(),
                            queued: executor.load().queued,
                        });
                    }
                    return (first_run_id, true, (first_awaiting, withdrawal));
                }
                Err(error) => {
                    let mut mutable = inner.lock();
                    for run_id in run_ids() {
                        mutable.run_stores.remove(run_id);
                    }
                    first_awaiting.clear();
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
    (run_id, false, Default::default())
}

/// Records and announces a run that never started; returns its run id.
pub(super) async fn record_unstarted(
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
