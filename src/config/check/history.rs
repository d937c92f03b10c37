//! `[history]`: how long run records are kept and how many.

use super::super::raw::RawRoot;
use crate::store::HistoryRetention;

/// `[history]`: 30 days, 100 successes and 1,000 other runs per job, and no store-wide
/// row limit unless told otherwise; `"none"` lifts a limit.
pub(crate) fn check_history(raw: &RawRoot) -> HistoryRetention {
    let mut retention = HistoryRetention::default();
    if let Some(section) = &raw.history {
        if let Some(keep) = section.value.keep {
            retention.keep = keep.0;
        }
        retention.max_rows = section.value.max_rows;
        if let Some(count) = section.value.successes_per_job {
            retention.successes_per_job = count.0;
        }
        if let Some(count) = section.value.failures_per_job {
            retention.failures_per_job = count.0;
        }
    }
    retention
}
