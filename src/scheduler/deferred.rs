//! Releases that wait for their run: a job held by its run is written back when the
//! run ends ([`HeldRelease`]), and a job handed over early is written back when its
//! run is due and has looked at its job ([`Deferred`], [`flush_deferred`];
//! docs/lifecycle.md, "Held until the run ends" and "Judged at its time").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::main_loop::{report_fenced, MAX_SKIPPED_RECORDS};
use super::Inner;
use crate::store::Release;

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
    /// Which attempt of its scheduled time the first of its runs is (1-based): more
    /// than 1 for a retry, whose pending attempt the runs clear when they end.
    pub(crate) attempt: u32,
    /// For a retry, the scheduled time it tries again (its pending attempt's): the
    /// rest of a catch-up it goes on with have others.
    pub(crate) retried: Option<DateTime<Utc>>,
    /// How the job's failed runs are retried, if they are.
    pub(crate) policy: Option<crate::job::RetryPolicy>,
    /// How many times the job had been paused when it was taken
    /// ([`crate::job::RetryState::pauses`]): another count at the run's end means a
    /// pause met the run.
    pub(crate) pauses: u64,
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
/// ([`super::start::RunStart`], `RunPlace::awaiting_check`), which wakes the loop. Written
/// first, it would leave the store showing the old trigger's next time, and the run
/// could not tell it from a reschedule through another node that landed on that same
/// time (`docs/lifecycle.md`, "Judged at its time").
pub(crate) struct Deferred {
    /// When to write it: the first run time handed over.
    pub(crate) at: DateTime<Utc>,
    /// The run it waits for (`RunPlace::awaiting_check`).
    pub(crate) run_id: String,
    /// That run's `RunPlace::awaiting_check`, shared.
    pub(crate) awaiting_check: AwaitingCheck,
    /// That run's `RunPlace::withdrawal`, shared.
    pub(crate) withdrawal: crate::executor::Withdrawal,
    pub(crate) release: Release,
}

impl Deferred {
    /// Whether its run has yet to look at its job: a run taken back, ended or gone
    /// has nothing more to look at. Read from the flags the run shares, not by looking
    /// the run up: the loop asks this of every deferred release on every pass, and
    /// thousands wait at one instant (BENCHMARKS.md, recurring).
    fn awaits_check(&self) -> bool {
        self.awaiting_check.is_awaiting() && !self.withdrawal.is_withdrawn()
    }
}

/// Whether a run handed over early has yet to look at its job in the store as its
/// time comes ([`super::start::RunStart`]); clones share one flag. Cleared when the run
/// has looked, and when its place is gone (its record came, or its executor refused
/// it), under the scheduler's lock as its place changes.
#[derive(Clone, Debug, Default)]
pub(crate) struct AwaitingCheck(Option<Arc<AtomicBool>>);

impl AwaitingCheck {
    /// A flag set while the run has to look (`awaiting`); none otherwise.
    pub(crate) fn new(awaiting: bool) -> AwaitingCheck {
        AwaitingCheck(awaiting.then(|| Arc::new(AtomicBool::new(true))))
    }

    /// Whether the run has yet to look.
    pub(crate) fn is_awaiting(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Acquire))
    }

    /// The run has looked, or is gone.
    pub(crate) fn clear(&self) {
        if let Some(flag) = &self.0 {
            flag.store(false, Ordering::Release);
        }
    }
}

/// Writes the deferred releases due by `until` (all of them with `None`), store by
/// store; a store that fails keeps them as pending releases, written before anything
/// more is taken from it. Returns when the next deferred release is due.
pub(super) async fn flush_deferred(
    inner: &Inner,
    until: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
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
                let due_now = until.is_none_or(|until| entry.at <= until && !entry.awaits_check());
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
            // the runs whose time has come have started (`Inner::after_starting_runs`)
            // and the runs that are ready have had their turn (BENCHMARKS.md, recurring).
            inner.after_starting_runs().await;
            tokio::task::yield_now().await;
            let chunk: Vec<Release> = releases.by_ref().take(RELEASE_CHUNK).collect();
            match store.release_jobs(&inner.id, &chunk).await {
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
pub(super) fn next_deferred(inner: &Inner) -> Option<DateTime<Utc>> {
    let mutable = inner.lock();
    mutable
        .deferred_releases
        .values()
        .flatten()
        .filter(|entry| !entry.awaits_check())
        .map(|entry| entry.at)
        .min()
}

/// How many deferred releases one store write carries.
pub(super) const RELEASE_CHUNK: usize = 256;
