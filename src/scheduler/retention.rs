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

use chrono::{DateTime, TimeDelta, Utc};

use super::{Inner, SchedulerState};
use crate::store::HistoryRetention;

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
