//! Jitter: a random delay added to a run, so that many jobs on the same schedule do
//! not hit a service in the same second.
//!
//! ```text
//! scheduled  10:00:00                         10:01:00 (next scheduled)
//!            |----- jitter = 30s -----|
//!            run anywhere in here           the next run is still computed from 10:01:00
//! ```
//!
//! The delay never feeds the next computation (APScheduler 3's interval trigger adds
//! it to the previous fire time and drifts), and never pushes a run to or past the next
//! scheduled time.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The instant a run scheduled at `scheduled` actually starts, delayed at random by up
/// to `jitter` but kept before `next_scheduled`.
pub fn delay_run(
    scheduled: DateTime<Utc>,
    jitter: Duration,
    next_scheduled: Option<DateTime<Utc>>,
    random: &mut fastrand::Rng,
) -> DateTime<Utc> {
    let mut limit = i64::try_from(jitter.as_micros()).unwrap_or(i64::MAX);
    if let Some(next) = next_scheduled {
        let room = (next - scheduled).num_microseconds().unwrap_or(i64::MAX) - 1;
        limit = limit.min(room.max(0));
    }
    if limit <= 0 {
        return scheduled;
    }
    let delay = random.i64(0..=limit);
    scheduled
        .checked_add_signed(TimeDelta::microseconds(delay))
        .unwrap_or(scheduled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("instant")
    }

    #[test]
    fn stays_within_the_jitter() {
        let mut random = fastrand::Rng::with_seed(7);
        for _ in 0..1_000 {
            let run = delay_run(at(0), Duration::from_secs(30), None, &mut random);
            assert!(run >= at(0) && run <= at(30), "{run}");
        }
    }

    #[test]
    fn never_reaches_the_next_run() {
        let mut random = fastrand::Rng::with_seed(7);
        for _ in 0..1_000 {
            let run = delay_run(at(0), Duration::from_secs(3600), Some(at(60)), &mut random);
            assert!(run >= at(0) && run < at(60), "{run}");
        }
    }

    #[test]
    fn spreads_runs_out() {
        let mut random = fastrand::Rng::with_seed(7);
        let runs: std::collections::BTreeSet<_> = (0..100)
            .map(|_| delay_run(at(0), Duration::from_secs(30), None, &mut random))
            .collect();
        assert!(runs.len() > 90, "only {} distinct delays", runs.len());
    }

    #[test]
    fn zero_jitter_or_no_room_runs_on_time() {
        let mut random = fastrand::Rng::with_seed(7);
        assert_eq!(delay_run(at(0), Duration::ZERO, None, &mut random), at(0));
        assert_eq!(
            delay_run(at(0), Duration::from_secs(5), Some(at(0)), &mut random),
            at(0)
        );
    }
}
