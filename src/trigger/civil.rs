//! From "the next matching wall-clock time" to "the next instant to fire": the DST rules
//! of docs/semantics.md, applied in one place for `cron`, `crontab` and `calendarinterval`.
//!
//! A schedule only answers "which civil date-time at or after this one matches?". This
//! module walks the time line of the zone with it:
//!
//! ```text
//! spring forward (New York, 2024-03-10)       fall back (New York, 2024-11-03)
//! civil   01:30  [02:00 .. 03:00)  03:00       civil 01:00 .. 01:59 | 01:00 .. 01:59 | 02:00
//!                 does not exist                     EDT (1st pass)  | EST (2nd pass)
//! fires   01:30   03:00 EDT once   03:15 …     fires the 1st pass only, or both passes when
//!                 (first instant after)              the hour field matches all 24 hours
//! ```
//!
//! # Ground rules
//! - Fire times are whole seconds and strictly increase: a caller asks for the first
//!   fire time at or after an instant, and every civil match that maps to an instant
//!   before it is skipped.
//! - Several matches inside one gap map to the same instant, so they fire once.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use super::datetime::ceil_to_second;
use super::zone::{LocalTime, Zone};

/// A recurring wall-clock schedule.
pub(crate) trait CivilSchedule {
    /// The smallest matching civil date-time at or after `from`, if any; the search may
    /// give up once it passes `limit`.
    fn next_match(
        &self,
        from: NaiveDateTime,
        limit: Option<NaiveDateTime>,
    ) -> Option<NaiveDateTime>;

    /// Whether a civil time that occurs twice fires twice (every hour matches).
    fn fires_in_both_passes(&self) -> bool;
}

/// The first instant at or after `from` (rounded up to a whole second) at which
/// `schedule` fires in `zone`, no later than `end`.
pub(crate) fn first_fire_at_or_after(
    schedule: &impl CivilSchedule,
    zone: &Zone,
    from: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let start = ceil_to_second(from);
    if end.is_some_and(|end| start > end) {
        return None;
    }
    // The civil limit only stops hopeless searches early; the exact check is on the
    // instant below. Two days cover any offset difference, including Apia's lost day.
    let limit = end.map(|end| zone.to_local(end) + TimeDelta::days(2));
    let civil = zone.to_local(start);
    let both_passes = schedule.fires_in_both_passes();
    let second_pass = if both_passes && zone.fixed_offset().is_none() {
        second_pass_before(schedule, zone, start, civil, limit)
    } else {
        None
    };
    // Starting exactly at the end of a spring-forward gap, the civil times inside the
    // gap are behind `civil`, yet they fire at this very instant: search from the start
    // of the gap instead. (Transitions fall on whole seconds, like `start`.)
    let mut search_from = civil;
    if zone.fixed_offset().is_none() {
        let second_before = start - TimeDelta::seconds(1);
        if zone.offset_at(second_before).local_minus_utc() < zone.offset_at(start).local_minus_utc()
        {
            search_from = zone.to_local(second_before) + TimeDelta::seconds(1);
        }
    }
    let found = loop {
        let Some(matched) = schedule.next_match(search_from, limit) else {
            break None;
        };
        let candidate = match zone.resolve(matched) {
            LocalTime::Unique(instant) => Some(instant),
            LocalTime::Ambiguous { earliest, .. } if earliest >= start => Some(earliest),
            LocalTime::Ambiguous { latest, .. } if both_passes && latest >= start => Some(latest),
            // The first pass is over and this schedule fires once: skip the repeat.
            LocalTime::Ambiguous { .. } => None,
            LocalTime::Skipped { after_gap } => Some(after_gap),
        };
        match candidate {
            Some(instant) if instant >= start => break Some(instant),
            _ => search_from = matched + TimeDelta::seconds(1),
        }
    };
    let fire = match (found, second_pass) {
        (Some(found), Some(second)) => Some(found.min(second)),
        (found, second) => found.or(second),
    };
    fire.filter(|fire| end.is_none_or(|end| *fire <= end))
}

/// When `start` lies in the first pass of a fold, the civil times of the fold that are
/// earlier than `start`'s have a second occurrence still ahead; the forward civil
/// search cannot see them, so look for the first of them here.
fn second_pass_before(
    schedule: &impl CivilSchedule,
    zone: &Zone,
    start: DateTime<Utc>,
    civil: NaiveDateTime,
    limit: Option<NaiveDateTime>,
) -> Option<DateTime<Utc>> {
    let LocalTime::Ambiguous { earliest, latest } = zone.resolve(civil) else {
        return None;
    };
    if earliest != start {
        return None;
    }
    let second_pass_start = zone.transition_between(start, latest);
    let matched = schedule.next_match(zone.to_local(second_pass_start), limit)?;
    if matched >= civil {
        return None;
    }
    match zone.resolve(matched) {
        LocalTime::Ambiguous { latest, .. } => Some(latest),
        _ => None,
    }
}
