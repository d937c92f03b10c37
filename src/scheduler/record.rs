//! The record task: the end of every run (the "finished" step of `docs/lifecycle.md`).
//!
//! Finished runs come back from the executors on a channel; this task writes them to
//! their stores in batches, after them what each run's end changes in its job (a retry
//! pending, a one-off job kept as failed, [`FollowUp`]), and last the write-backs that
//! runs held until their end ([`HeldRelease`]), which end the jobs' leases. Slow
//! history writes never delay the main loop's timer. A store that refuses them keeps
//! them here, retried with backoff, up to a cap past which the loop takes no more jobs
//! from that store ([`MAX_UNWRITTEN_RUNS`]).

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
// foldhash, not SipHash: these maps are touched once per run (its record, follow-up
// and release), keyed by the store names the config gives, not by anyone's input.
use hashbrown::HashMap;
use tokio::sync::mpsc;

use super::backoff::RetrySchedule;
use super::deferred::HeldRelease;
use super::main_loop::{report_fenced, CatchUp, RunPlace, StoppedAt};
use super::{start, Event, Inner};
use crate::history::{RunOutcome, RunRecord};
use crate::job::{generate_id, Job};
use crate::store::{FinishedRun, Release};

/// Records finished runs, frees their instance slots and announces them, until the
/// scheduler stops and every run reported before that is handled.
///
/// Runs that finished together are written in one store call per store
/// ([`crate::store::InstanceSlots::finish_runs`]): at thousands of runs a second, a commit
/// per run would compete with the main loop for the store. A batch the store refused is
/// kept and written again with backoff, so a store blip neither loses history nor leaves an
/// instance slot taken until it expires.
pub(crate) async fn record_finished_runs(
    inner: Arc<Inner>,
    mut finished: mpsc::UnboundedReceiver<RunRecord>,
    mut flushes: mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>,
) {
    let mut unwritten = Unwritten::default();
    // When waiting writes are tried again: the records that arrive meanwhile are tried
    // with them at once, but do not push the retry back.
    let mut retry = RetrySchedule::new();
    // Who asked for everything finished so far to be written ([`Inner::flush_finished_runs`]).
    let mut flushed: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    loop {
        let waiting = !unwritten.is_empty();
        let planned = retry.planned().filter(|_| waiting);
        let retry_due = async {
            match planned {
                // On the scheduler's clock, like every wait of the scheduling logic, so
                // simulated time (tests, the scenario checker) retries as real time does.
                Some(at) => inner.clock.sleep_until(at).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            received = finished.recv() => match received {
                Some(record) => {
                    let mut batch = vec![record];
                    // The runs of the instant start first (`Inner::after_starting_runs`).
                    inner.after_starting_runs().await;
                    // Let the runs queued behind this task finish first: when thousands
                    // end together, one write carries hundreds of them instead of each
                    // its own (BENCHMARKS.md, recurring). Alone, a record waits one turn.
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
            () = retry_due => {}
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
        let tried = inner.clock.now();
        if unwritten.write(&inner).await {
            retry.succeeded();
        } else {
            retry.failed(tried);
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
    by_store: HashMap<Arc<str>, VecDeque<FinishedRun>>,
    /// What a run's outcome changes in its job, by store.
    follow_ups: HashMap<Arc<str>, Vec<PendingFollowUp>>,
    /// One-off runs that ended with nothing else to change in their jobs, by store: a
    /// pause made through another node while they ran would leave the job paused (or,
    /// resumed, due at that time again), so their jobs' schedules are read in one
    /// batch and a changed one is looked at ([`FollowUp::Finished`]).
    one_offs_ended: HashMap<Arc<str>, Vec<PendingFollowUp>>,
    releases: HashMap<Arc<str>, Vec<Release>>,
    to_announce: Vec<RunRecord>,
    /// A release among them may leave its job due (see `add`).
    wake_loop: bool,
    /// The earliest next run time among the releases: the loop takes the job then.
    earliest_next: Option<DateTime<Utc>>,
}

/// A [`FollowUp`] waiting to be written: its job, the revision and the pause count
/// ([`crate::job::RetryState::pauses`]) the job had when its run took it.
struct PendingFollowUp {
    job_id: String,
    revision: u64,
    pauses: u64,
    follow_up: FollowUp,
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
        /// The catch-up it stopped goes on from here after its attempts
        /// ([`crate::job::PendingAttempt::catch_up_from`]).
        catch_up_from: Option<DateTime<Utc>>,
        /// For a one-off job, what it is kept as if a pause made while its run went
        /// cancels the attempts left: failed, since its time ran and failed.
        failed_if_paused: Option<crate::job::JobFailure>,
    },
    /// A one-off job's last attempt failed: it stays, as failed.
    Failed(crate::job::JobFailure),
    /// A retried recurring job's attempts ended (the last, `attempt`, of
    /// `scheduled_time`): its schedule resumes.
    Resume {
        scheduled_time: DateTime<Utc>,
        attempt: u32,
        resume_at: Option<DateTime<Utc>>,
    },
    /// A one-off job paused while its run went: the run happened, so the job is done
    /// (resuming it must not run that time again).
    Finished { scheduled_time: DateTime<Utc> },
}

impl FollowUp {
    /// What `run`, attempt `attempt` of its time and the end of `held` (its last run,
    /// or the failed run a catch-up stopped at), asks for (before `held` moves past the
    /// end). A run stopped for a newer one (`overlap = "replace"`, `replaced`) did not
    /// fail: the newer run is the one that counts, so it is not retried.
    fn after(
        held: &HeldRelease,
        run: &RunRecord,
        attempt: u32,
        replaced: bool,
    ) -> Option<FollowUp> {
        let failed = run.started_at.is_some()
            && !replaced
            && matches!(run.outcome, RunOutcome::Error | RunOutcome::Timeout);
        let one_off = held.trigger.is_none() && held.release.next_run_time.is_none();
        let max_attempts = held.policy.as_ref().map_or(1, |policy| policy.max_attempts);
        match &held.policy {
            Some(policy) if failed && attempt < max_attempts => {
                let delay = policy.delay(attempt, &mut fastrand::Rng::new());
                let delay = TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
                Some(FollowUp::Retry {
                    scheduled_time: run.scheduled_time,
                    attempt: attempt + 1,
                    max_attempts,
                    retry_at: run
                        .finished_at
                        .checked_add_signed(delay)
                        .unwrap_or(run.finished_at),
                    resume_at: None,
                    catch_up_from: None,
                    failed_if_paused: one_off.then(|| failure(run, attempt)),
                })
            }
            _ if failed && one_off => Some(FollowUp::Failed(failure(run, attempt))),
            // The runs were a retry (and the rest of the catch-up it stopped, if any):
            // the pending attempt they ran is done.
            _ if held.attempt > 1 && !one_off => Some(FollowUp::Resume {
                scheduled_time: held.retried.unwrap_or(run.scheduled_time),
                attempt: held.attempt,
                resume_at: None,
            }),
            _ => None,
        }
    }

    /// The same, going on with the catch-up it stopped from `from` after its attempts.
    fn going_on_from(mut self, from: Option<DateTime<Utc>>) -> FollowUp {
        if let FollowUp::Retry { catch_up_from, .. } = &mut self {
            *catch_up_from = from;
        }
        self
    }

    /// The same, resuming the job's schedule at `next` (its release's next run time).
    fn with_resume(mut self, next: Option<DateTime<Utc>>) -> FollowUp {
        match &mut self {
            FollowUp::Retry { resume_at, .. } | FollowUp::Resume { resume_at, .. } => {
                *resume_at = next;
            }
            FollowUp::Failed(_) | FollowUp::Finished { .. } => {}
        }
        self
    }

    /// Whether the change made to the job since its run was taken leaves this follow-up
    /// to apply: one that kept the pending attempt the run was (a modify of its args or
    /// options) did not cancel the retries, which only a pause, a reschedule or a
    /// removal do (docs/lifecycle.md, "Failed runs"); they clear the pending attempt.
    /// Dropped after such a change, the stale pending attempt would run the same
    /// attempt of the same time again at the job's next run time.
    fn survives_change(&self, job: &Job) -> bool {
        let taken = match self {
            FollowUp::Retry {
                scheduled_time,
                attempt,
                ..
            } => (*scheduled_time, attempt.saturating_sub(1)),
            FollowUp::Resume {
                scheduled_time,
                attempt,
                ..
            } => (*scheduled_time, *attempt),
            FollowUp::Failed(failure) => (failure.scheduled_time, failure.attempts),
            FollowUp::Finished { .. } => return false,
        };
        // A first attempt has no pending attempt to compare: any change wins.
        taken.1 > 1
            && !job.paused
            && job
                .retry
                .pending
                .as_ref()
                .is_some_and(|pending| (pending.scheduled_time, pending.attempt) == taken)
    }

    /// What a one-off job is kept as when a pause made while its failing run went wins:
    /// failed, whether that run was its last attempt or had attempts left.
    fn failed_if_paused(&self) -> Option<&crate::job::JobFailure> {
        match self {
            FollowUp::Failed(failure) => Some(failure),
            FollowUp::Retry {
                failed_if_paused, ..
            } => failed_if_paused.as_ref(),
            FollowUp::Resume { .. } | FollowUp::Finished { .. } => None,
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
            FollowUp::Resume { .. } | FollowUp::Finished { .. } => {}
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
                catch_up_from,
                ..
            } => {
                job.retry.pending = Some(crate::job::PendingAttempt {
                    scheduled_time,
                    attempt,
                    resume_at,
                    catch_up_from,
                });
                job.retry.failed = None;
                job.next_run_time = Some(retry_at);
            }
            FollowUp::Failed(failure) => {
                job.retry.pending = None;
                job.retry.failed = Some(failure);
                job.next_run_time = None;
            }
            FollowUp::Resume { resume_at, .. } => {
                job.retry.pending = None;
                job.next_run_time = if job.paused { None } else { resume_at };
            }
            FollowUp::Finished { .. } => {}
        }
    }
}

/// A one-off job's failure as its failed run, attempt `attempt` of its time, leaves it.
fn failure(run: &RunRecord, attempt: u32) -> crate::job::JobFailure {
    crate::job::JobFailure {
        scheduled_time: run.scheduled_time,
        attempts: attempt,
        at: run.finished_at,
        error: run.error.clone(),
    }
}

/// The records of the fire times of `run`'s job that came while `run` executed
/// ([`HeldRelease`]): skipped, as `max_instances = 1` says, one record each (the last
/// counting any beyond `times`).
fn skipped_while_running(
    inner: &Inner,
    run: &RunRecord,
    times: &[DateTime<Utc>],
    skipped: u64,
) -> Vec<RunRecord> {
    let beyond = skipped.saturating_sub(times.len() as u64);
    times
        .iter()
        .enumerate()
        .map(|(index, time)| {
            inner.emit(Event::JobMaxInstances {
                job_id: run.job_id.clone(),
                scheduled_time: *time,
                max_instances: 1,
            });
            let more = if index + 1 == times.len() && beyond > 0 {
                format!(" ({beyond} later run time(s) skipped too)")
            } else {
                String::new()
            };
            RunRecord {
                run_id: generate_id(),
                job_id: run.job_id.clone(),
                scheduled_time: *time,
                started_at: None,
                finished_at: run.finished_at,
                outcome: RunOutcome::Skipped,
                error: Some(format!(
                    "the run for {} was still going at this time (max_instances = 1){more}",
                    run.scheduled_time
                )),
                output: None,
                attempt: 1,
            }
        })
        .collect()
}

impl Unwritten {
    fn is_empty(&self) -> bool {
        self.by_store.values().all(VecDeque::is_empty)
            && self.releases.values().all(Vec::is_empty)
            && self.follow_ups.values().all(Vec::is_empty)
            && self.one_offs_ended.values().all(Vec::is_empty)
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
                let was_full = mutable.backlogged.contains(&**name);
                if full && !was_full {
                    mutable.backlogged.insert(name.to_string());
                    events.push(Event::RecordsBacklogged {
                        jobstore: name.to_string(),
                        pending: runs.len(),
                    });
                } else if !full && was_full {
                    mutable.backlogged.remove(&**name);
                    events.push(Event::RecordsDrained {
                        jobstore: name.to_string(),
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
        let places: Vec<Option<(RunPlace, bool)>> = {
            let mut mutable = inner.lock();
            for record in &records {
                if let Some(late) = record.lateness() {
                    mutable.lateness.add(late);
                }
            }
            records
                .iter()
                .map(|record| {
                    let place = mutable.run_stores.remove(&record.run_id);
                    // Gone, it has nothing more to look at (`deferred::Deferred`).
                    if let Some(place) = &place {
                        place.awaiting_check.clear();
                    }
                    if let Some((catch_up, place)) = place
                        .as_ref()
                        .and_then(|place| Some((place.catch_up.as_ref()?, place)))
                    {
                        catch_up.note(record, place.attempt);
                    }
                    // Changed through this node while it ran (`Inner::note_change`).
                    let changed = place.as_ref().is_some_and(|place| place.release.is_some())
                        && mutable.changed_while_held.remove(&record.job_id);
                    place.map(|place| (place, changed))
                })
                .collect()
        };
        // Runs waiting for a slot (`overlap`) claim again, after these are written.
        // Only for records: a flush with nothing new (a waiting run's own, before each
        // claim) must not wake the waiters, or they would claim without pause.
        if !records.is_empty() {
            inner.run_ended.notify_waiters();
        }
        for (mut record, placed) in records.into_iter().zip(places) {
            // The attempt a run was is its place's (set on the record below).
            let attempt = placed
                .as_ref()
                .map_or(record.attempt, |(place, _)| place.attempt);
            inner.metrics.run_ended(
                &record,
                placed.as_ref().map(|(place, _)| &place.metrics),
                attempt,
            );
            if let Some((
                RunPlace {
                    jobstore: store,
                    frees_instance,
                    release,
                    withdrawal,
                    catch_up,
                    stop,
                    ..
                },
                changed,
            )) = placed
            {
                record.attempt = attempt;
                let mut skipped_meanwhile = Vec::new();
                match release {
                    // It ran to its end, or was skipped at its time (the instance
                    // limit): a one-off job goes, a recurring one moves on past the
                    // run's end. Or it was taken back (paused, rescheduled, removed):
                    // the release ends the lease, and the change that took it back
                    // stays (see `DueJobs::release_jobs`).
                    Some(held)
                        if record.started_at.is_some()
                            || withdrawal.is_withdrawn()
                            || record.outcome == RunOutcome::Skipped =>
                    {
                        // Taken back (its job changed): it did not run, so its time is
                        // not used up; the release only ends the lease, and a change
                        // that left the time as it was (a pause and a resume) finds the
                        // job still due then.
                        let taken_back = withdrawal.is_withdrawn() && record.started_at.is_none();
                        let one_off = held.trigger.is_none();
                        let pauses = held.pauses;
                        // A catch-up of a job with retries that stopped at a failed run
                        // (`start::CatchUpRetries`): that run's retry goes first, and the
                        // catch-up's later times after its attempts.
                        let stopped_at = catch_up
                            .as_ref()
                            .filter(|_| {
                                !taken_back
                                    && record.started_at.is_none()
                                    && record.error.as_deref() == Some(start::RETRIED_FIRST)
                            })
                            .and_then(|catch_up| catch_up.take_stopped_at());
                        let follow_up = if taken_back {
                            None
                        } else if let Some(stopped) = &stopped_at {
                            FollowUp::after(&held, &stopped.run, stopped.attempt, false)
                                .map(|follow_up| follow_up.going_on_from(stopped.rest_from))
                        } else {
                            let replaced = stop.is_stopped();
                            FollowUp::after(&held, &record, attempt, replaced).or_else(|| {
                                (changed && one_off && record.started_at.is_some()).then_some(
                                    FollowUp::Finished {
                                        scheduled_time: record.scheduled_time,
                                    },
                                )
                            })
                        };
                        // The change left the job at a time the loop has not seen.
                        self.wake_loop |= changed;
                        let (release, skipped, times) = if taken_back {
                            // A catch-up taken back part way held its job while its
                            // first runs went: the times that came meanwhile are
                            // recorded as for any held run.
                            let ran = catch_up.as_ref().is_some_and(|catch_up| {
                                catch_up.ran.load(std::sync::atomic::Ordering::Acquire)
                            });
                            let (mut release, skipped, times) = if ran {
                                held.at_end(record.finished_at)
                            } else {
                                (held.release, 0, Vec::new())
                            };
                            release.next_run_time = release.acquired_next_run_time;
                            (release, skipped, times)
                        } else if stopped_at.is_some() {
                            // The catch-up goes on after the attempts, up to the time it
                            // was planned to (the release's): the times that come
                            // meanwhile are skipped when the whole of it ends.
                            (held.release, 0, Vec::new())
                        } else {
                            // Rescheduled or paused meanwhile, through any node: the
                            // store leaves the new schedule as it is, even at the very
                            // time this run was taken at (its schedule version moved,
                            // `docs/lifecycle.md`, "Held until the run ends").
                            held.at_end(record.finished_at)
                        };
                        if follow_up.is_none() && one_off && record.started_at.is_some() {
                            self.one_offs_ended.entry(store.clone()).or_default().push(
                                PendingFollowUp {
                                    job_id: release.job_id.clone(),
                                    revision: release.revision,
                                    pauses,
                                    follow_up: FollowUp::Finished {
                                        scheduled_time: record.scheduled_time,
                                    },
                                },
                            );
                        }
                        if let Some(follow_up) = follow_up {
                            follow_up.log(&record);
                            if let FollowUp::Retry { retry_at, .. } = &follow_up {
                                self.earliest_next = Some(
                                    self.earliest_next.map_or(*retry_at, |e| e.min(*retry_at)),
                                );
                            }
                            self.follow_ups.entry(store.clone()).or_default().push(
                                PendingFollowUp {
                                    job_id: release.job_id.clone(),
                                    revision: release.revision,
                                    pauses,
                                    follow_up: follow_up.with_resume(release.next_run_time),
                                },
                            );
                        }
                        if !times.is_empty() {
                            skipped_meanwhile =
                                skipped_while_running(inner, &record, &times, skipped);
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
                for skipped in skipped_meanwhile {
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
            let Some(store) = inner.stores.get(&**name) else {
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
                        tracing::warn!(jobstore = &**name, runs = runs.len(), %error, "could not record finished runs; will retry");
                        break;
                    }
                }
            }
        }
        self.report_backlog(inner);
        // One-off runs changed through another node while they ran: one read per store.
        for (name, ended) in &mut self.one_offs_ended {
            if ended.is_empty() || refused.contains(name) {
                continue;
            }
            let Some(store) = inner.stores.get(&**name) else {
                ended.clear();
                continue;
            };
            let ids: Vec<String> = ended.iter().map(|ended| ended.job_id.clone()).collect();
            match store.job_schedules(&ids).await {
                Ok(schedules) => {
                    let follow_ups = self.follow_ups.entry(name.clone()).or_default();
                    for (ended, schedule) in ended.drain(..).zip(schedules) {
                        // Paused (kept, without a next run time), or changed at all
                        // (perhaps paused and resumed): finished below if a pause met
                        // the run and its time is the one that ran.
                        if schedule.is_some_and(|schedule| {
                            schedule.next_run_time.is_none() || schedule.revision != ended.revision
                        }) {
                            follow_ups.push(ended);
                        }
                    }
                    ended.clear();
                }
                Err(error) => {
                    all_written = false;
                    refused.push(name.clone());
                    tracing::warn!(jobstore = &**name, %error, "could not read the jobs of ended one-off runs; will retry");
                }
            }
        }
        // After their runs' records and before their releases (which end the leases).
        for (name, follow_ups) in &mut self.follow_ups {
            if follow_ups.is_empty() || refused.contains(name) {
                continue;
            }
            let Some(store) = inner.stores.get(&**name) else {
                follow_ups.clear();
                continue;
            };
            let mut left = Vec::new();
            for pending in follow_ups.drain(..) {
                let PendingFollowUp {
                    job_id,
                    revision,
                    pauses,
                    follow_up,
                } = pending;
                let outcome = match store.get_job(&job_id).await {
                    Ok(Some(job)) => match &follow_up {
                        // A one-off job's run happened: a pause that met it (paused
                        // now, or paused and resumed since it was taken) leaves the job
                        // done, not due at that time again.
                        FollowUp::Finished { scheduled_time } => {
                            let done = (job.paused || job.retry.pauses != pauses)
                                && job.trigger.next_fire_time(None, *scheduled_time)
                                    == Some(*scheduled_time);
                            if done {
                                store.remove_job(&job_id).await
                            } else {
                                Ok(())
                            }
                        }
                        // Paused while its failing run went: the run happened, and
                        // failed; it is kept failed (and paused, if it still is)
                        // rather than due again, the pause cancelling any attempts
                        // left (docs/lifecycle.md, "Failed runs"). A pause met the run
                        // if the job is paused now, or was paused since it was taken
                        // (and resumed before the run ended: its pause count moved).
                        _ if job.revision != revision
                            && (job.paused || job.retry.pauses != pauses) =>
                        {
                            match follow_up.failed_if_paused().filter(|failure| {
                                job.trigger.next_fire_time(None, failure.scheduled_time)
                                    == Some(failure.scheduled_time)
                            }) {
                                Some(failure) => {
                                    let mut job = job;
                                    FollowUp::Failed(failure.clone()).apply(&mut job);
                                    store.update_job(job).await.map(drop)
                                }
                                // Otherwise the pause wins: it cancels any pending
                                // attempt (`survives_change` keeps none of a paused job).
                                None => Ok(()),
                            }
                        }
                        // Changed since it was taken: the change wins, unless it left
                        // the attempt pending as it was.
                        _ if job.revision != revision && !follow_up.survives_change(&job) => Ok(()),
                        _ => {
                            let mut job = job;
                            follow_up.clone().apply(&mut job);
                            store.update_job(job).await.map(drop)
                        }
                    },
                    Ok(None) => Ok(()),
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok(()) => {}
                    Err(error) if error.kind() == crate::store::StoreErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(jobstore = &**name, job_id, %error, "could not write what a run's end changes in its job; will retry");
                        left.push(PendingFollowUp {
                            job_id,
                            revision,
                            pauses,
                            follow_up,
                        });
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
            let Some(store) = inner.stores.get(&**name) else {
                releases.clear();
                continue;
            };
            // Told before the job goes: a run now of it waiting for the slot its run
            // freed must not take the removal for one answered through another node
            // (`start::RunStart::wait_for_slot`).
            {
                let mut mutable = inner.lock();
                for release in releases.iter().filter(|r| r.next_run_time.is_none()) {
                    if mutable.waiting_for_slot.contains_key(&release.job_id) {
                        mutable.finishing_one_offs.insert(release.job_id.clone());
                    }
                }
            }
            match store.release_jobs(&inner.id, releases).await {
                Ok(fenced) => {
                    report_fenced(inner, name, &fenced);
                    if !fenced.is_empty() {
                        let mut mutable = inner.lock();
                        for job_id in &fenced {
                            mutable.finishing_one_offs.remove(job_id);
                        }
                    }
                    // Only a finished job goes; a recurring one moved on, and is
                    // still there (its metrics and its alerts' watch with it).
                    let finished: Vec<String> = releases
                        .drain(..)
                        .filter(|release| {
                            release.next_run_time.is_none() && !fenced.contains(&release.job_id)
                        })
                        .map(|release| release.job_id)
                        .collect();
                    inner
                        .finished_jobs_removed(name, store.as_ref(), finished)
                        .await;
                }
                Err(error) => {
                    all_written = false;
                    tracing::warn!(jobstore = &**name, jobs = releases.len(), %error, "could not remove finished one-off jobs; will retry");
                }
            }
        }
        if all_written {
            if std::mem::take(&mut self.wake_loop) {
                inner.wake.notify_one();
            }
            inner.wake_if_earlier(self.earliest_next.take());
        } else {
            // Jobs stay leased until their writes land, so the loop may pass over
            // changes made to them meanwhile (a reschedule while the store was down):
            // it looks again once everything is written.
            self.wake_loop = true;
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

impl CatchUp {
    /// Notes the record of one of its runs, attempt `attempt`, as it comes in: whether
    /// one started, and the failed run it stopped at ([`start::CatchUpRetries`]),
    /// with the first of its times that did not start after it.
    fn note(&self, record: &RunRecord, attempt: u32) {
        let mut stopped_at = self
            .stopped_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if record.started_at.is_some() {
            self.ran.store(true, std::sync::atomic::Ordering::Release);
            // Only the last run that started may be the one it stopped at.
            *stopped_at =
                matches!(record.outcome, RunOutcome::Error | RunOutcome::Timeout).then(|| {
                    StoppedAt {
                        run: RunRecord {
                            output: None,
                            ..record.clone()
                        },
                        attempt,
                        rest_from: None,
                    }
                });
        } else if record.error.as_deref() == Some(start::RETRIED_FIRST) {
            if let Some(stopped) = stopped_at.as_mut() {
                stopped.rest_from.get_or_insert(record.scheduled_time);
            }
        }
    }

    /// The failed run it stopped at, if it did.
    fn take_stopped_at(&self) -> Option<StoppedAt> {
        self.stopped_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}
