//! Run-history retention: a background task that trims every store's history to
//! `[history] keep`, `max_rows`, `successes_per_job` and `failures_per_job`, in bounded
//! batches so that a large backlog never holds a store for long (docs/semantics.md,
//! "Run history").
//!
//! The per-job counts are what keep a busy daemon's store flat: the age limit alone
//! lets a job that runs every second pile up 2.6 million records in 30 days. With the
//! defaults, a store holds at most about `successes_per_job + failures_per_job` records
//! per recurring job, plus what finished since the last round.
//!
//! It runs on the scheduler's clock, so simulated-time tests drive it too, and a store
//! error is logged and retried at the next round; retention never stops the scheduler.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Inner, SchedulerState};
use crate::store::RunLimits;

/// How long history is kept and how often it is trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryRetention {
    /// Delete run records older than this.
    pub keep: Option<Duration>,
    /// Keep at most this many run records per store (the newest).
    pub max_rows: Option<u64>,
    /// Keep at most this many `success` records per job (the newest).
    pub successes_per_job: Option<u64>,
    /// Keep at most this many records of other outcomes per job (the newest): failures
    /// are kept longer than successes, since they are what people come to read.
    pub failures_per_job: Option<u64>,
    /// How often to trim.
    pub every: Duration,
    /// How many records one store call deletes at most.
    pub batch: usize,
}

/// The default [`HistoryRetention::successes_per_job`].
pub const DEFAULT_SUCCESSES_PER_JOB: u64 = 100;

/// The default [`HistoryRetention::failures_per_job`].
pub const DEFAULT_FAILURES_PER_JOB: u64 = 1_000;

impl Default for HistoryRetention {
    /// Thirty days, the newest 100 successes and 1,000 other outcomes per job, no
    /// store-wide row limit, trimmed every minute, 1,000 rows a call.
    ///
    /// Every minute rather than every ten: what finished since the last round is what a
    /// store holds beyond the limits, and a ten-minute period let 200 jobs firing every
    /// second add 120,000 records between rounds.
    fn default() -> HistoryRetention {
        HistoryRetention {
            keep: Some(Duration::from_secs(30 * 86_400)),
            max_rows: None,
            successes_per_job: Some(DEFAULT_SUCCESSES_PER_JOB),
            failures_per_job: Some(DEFAULT_FAILURES_PER_JOB),
            every: Duration::from_secs(60),
            batch: 1000,
        }
    }
}

impl HistoryRetention {
    /// The limits a store applies.
    pub fn limits(&self) -> RunLimits {
        RunLimits {
            keep: self.keep,
            max_rows: self.max_rows,
            successes_per_job: self.successes_per_job,
            failures_per_job: self.failures_per_job,
        }
    }
}

/// Trims history every `retention.every`, first at `first`, until the scheduler stops.
/// (`first` is computed by the caller when the scheduler starts, so a clock that moves
/// before this task first runs cannot shift the schedule.)
pub(crate) async fn run(inner: Arc<Inner>, retention: HistoryRetention, first: DateTime<Utc>) {
    let mut state = inner.state.subscribe();
    let every = TimeDelta::from_std(retention.every).unwrap_or(TimeDelta::MAX);
    let mut next = first;
    loop {
        // Sleep on the scheduler's clock, waking early only to notice a stop.
        while inner.clock.now() < next {
            tokio::select! {
                () = inner.clock.sleep_until(next) => {}
                changed = state.changed() => {
                    if changed.is_err() || *state.borrow_and_update() == SchedulerState::Stopped {
                        return;
                    }
                }
            }
        }
        trim(&inner, &retention).await;
        // The next round is a period after this one was due, not after it finished.
        let Some(after) = next.checked_add_signed(every) else {
            return;
        };
        next = after.max(inner.clock.now());
    }
}

/// One round: every store, batch after batch, until nothing is left to delete.
pub(crate) async fn trim(inner: &Inner, retention: &HistoryRetention) -> u64 {
    let mut total = 0;
    let limits = retention.limits();
    if !limits.is_bounded() {
        return 0;
    }
    for (name, store) in &inner.stores {
        loop {
            match store.prune_runs(&limits, retention.batch.max(1)).await {
                Ok(0) => break,
                Ok(deleted) => {
                    total += deleted;
                    // Let the scheduler's own store calls in between batches.
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    tracing::warn!(jobstore = name, %error, "trimming the run history failed");
                    break;
                }
            }
        }
    }
    if total > 0 {
        tracing::info!(deleted = total, "trimmed the run history");
    }
    total
}
