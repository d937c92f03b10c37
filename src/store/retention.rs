//! How long run history is kept and how often it is trimmed: the limits the scheduler's
//! retention task (`scheduler/retention.rs`) asks every store to apply. Here, below the
//! config and the scheduler that both name it, so that imports point down the layers
//! (docs/architecture.md).

use std::time::Duration;

use super::RunLimits;

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
