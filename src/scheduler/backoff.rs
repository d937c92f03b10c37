//! The back-off after a store error: when the main loop and the record task try a
//! failing store again ([`RetrySchedule`]; docs/lifecycle.md, "When the store is
//! unreachable").

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The first retry delay after a store error; it doubles up to [`MAX_BACKOFF`].
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(500);

/// The longest retry delay after repeated store errors.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// When to try a failing store again: after a back-off that doubles with each failed
/// retry. A wake-up before the planned retry (a run's check, a new record, a local
/// change) may try early, but a failure then neither pushes the retry back nor grows
/// the back-off, so wake-ups during an outage do not stretch the wait past the
/// store's return. The main loop and the record task each keep one.
pub(super) struct RetrySchedule {
    backoff: Duration,
    at: Option<DateTime<Utc>>,
}

impl RetrySchedule {
    pub(super) fn new() -> RetrySchedule {
        RetrySchedule {
            backoff: MIN_BACKOFF,
            at: None,
        }
    }

    /// When the next retry is planned, while the store fails.
    pub(super) fn planned(&self) -> Option<DateTime<Utc>> {
        self.at
    }

    /// An attempt begun at `tried` failed: the retry to wait for, and the delay if this
    /// failure planned a new one (`None` when it came before the planned retry).
    pub(super) fn failed(&mut self, tried: DateTime<Utc>) -> (DateTime<Utc>, Option<Duration>) {
        if let Some(at) = self.at.filter(|at| tried < *at) {
            return (at, None);
        }
        let delay = self.backoff;
        let at = tried
            .checked_add_signed(TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX))
            .unwrap_or(tried);
        self.at = Some(at);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        (at, Some(delay))
    }

    /// An attempt succeeded; whether it ended a run of failures.
    pub(super) fn succeeded(&mut self) -> bool {
        self.backoff = MIN_BACKOFF;
        self.at.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms)
    }

    #[test]
    fn failures_before_the_planned_retry_neither_push_it_back_nor_grow_the_back_off() {
        let mut retry = RetrySchedule::new();
        assert_eq!(retry.failed(at(0)), (at(500), Some(MIN_BACKOFF)));
        // Woken early twice during the outage: the plan stands.
        assert_eq!(retry.failed(at(100)), (at(500), None));
        assert_eq!(retry.failed(at(499)), (at(500), None));
        // The planned retry fails: the back-off doubles from then.
        assert_eq!(retry.failed(at(500)), (at(1_500), Some(MIN_BACKOFF * 2)));
        assert_eq!(retry.planned(), Some(at(1_500)));
        assert!(retry.succeeded(), "a success ends the run of failures");
        assert!(!retry.succeeded());
        assert_eq!(retry.planned(), None);
        assert_eq!(retry.failed(at(2_000)), (at(2_500), Some(MIN_BACKOFF)));
    }

    #[test]
    fn the_back_off_stops_growing_at_its_longest() {
        let mut retry = RetrySchedule::new();
        let mut now = at(0);
        let mut delay = Duration::ZERO;
        for _ in 0..20 {
            let (next, planned) = retry.failed(now);
            delay = planned.unwrap_or(delay);
            now = next;
        }
        assert_eq!(delay, MAX_BACKOFF);
    }
}
