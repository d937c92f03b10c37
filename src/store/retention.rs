//! How long run history is kept and how often it is trimmed: the limits the scheduler's
//! retention task (`scheduler/retention.rs`) asks every store to apply. Here, below the
//! config and the scheduler that both name it, so that imports point down the layers
//! (docs/architecture.md).

use std::time::Duration;

/// How long history is kept and how often it is trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryRetention {
    /// Delete run records older than this.
    pub keep: Option<Duration>,
    /// Keep at most this many run records per store (the newest).
    pub max_rows: Option<u64>,
    /// How often to trim.
    pub every: Duration,
    /// How many records one store call deletes at most.
    pub batch: usize,
}

impl Default for HistoryRetention {
    /// Thirty days, no row limit, trimmed every ten minutes, 1,000 rows a call.
    fn default() -> HistoryRetention {
        HistoryRetention {
            keep: Some(Duration::from_secs(30 * 86_400)),
            max_rows: None,
            every: Duration::from_secs(600),
            batch: 1000,
        }
    }
}
