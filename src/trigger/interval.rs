//! `interval`: every fixed elapsed duration, on a grid anchored at `start_date`.
//!
//! ```text
//! start_date                                   interval = 1h
//! |-------|-------|-------|-------|----->      fire times: start + n * interval
//!            ^ now: the next fire time is the next grid point, not now + interval
//! ```
//!
//! The interval is elapsed time (APScheduler's `timedelta` arithmetic in UTC): across a
//! DST change a 24-hour interval still fires every 24 hours, so its wall-clock time
//! moves by an hour. Use `calendarinterval` or `cron` for a fixed wall-clock time.

use chrono::{DateTime, TimeDelta, Utc};

use super::datetime::format_instant;
use super::window::{choose_zone, parse_field};
use super::{IntervalSpec, Schedule, Trigger, TriggerContext, TriggerError, TriggerSpec};

/// A compiled interval trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IntervalTrigger {
    /// The interval in microseconds, always > 0.
    interval_micros: i64,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
}

pub(crate) fn build(spec: IntervalSpec, context: &TriggerContext) -> Result<Trigger, TriggerError> {
    let seconds = [
        (spec.weeks, 7 * 86_400u64),
        (spec.days, 86_400),
        (spec.hours, 3_600),
        (spec.minutes, 60),
        (spec.seconds, 1),
    ]
    .iter()
    .try_fold(0u64, |total, (count, unit)| {
        count
            .checked_mul(*unit)
            .and_then(|part| total.checked_add(part))
    });
    let interval_micros = seconds
        .and_then(|seconds| seconds.checked_mul(1_000_000))
        .and_then(|micros| i64::try_from(micros).ok())
        // Keep start + n * interval inside chrono's range for any sane start.
        .filter(|micros| {
            *micros
                <= TimeDelta::days(365 * 10_000)
                    .num_microseconds()
                    .unwrap_or(0)
        })
        .ok_or_else(|| {
            TriggerError::out_of_range("interval", "the interval is longer than 10,000 years")
        })?;
    if interval_micros == 0 {
        return Err(TriggerError::conflict(
            "interval",
            "the interval must be longer than zero (give weeks, days, hours, minutes or seconds)",
        ));
    }
    let interval = TimeDelta::microseconds(interval_micros);
    let start = parse_field("start_date", spec.start_date.as_deref())?;
    let end = parse_field("end_date", spec.end_date.as_deref())?;
    let zone = choose_zone(spec.timezone.as_deref(), &[start, end], context)?;
    // APScheduler's default: the first run one interval after the trigger is created.
    let start = match start {
        Some(start) => start.to_instant(&zone),
        None => context.now.checked_add_signed(interval).ok_or_else(|| {
            TriggerError::out_of_range("interval", "the first fire time is out of range")
        })?,
    };
    let start = super::datetime::truncate_to_micros(start);
    let end = end.map(|end| end.to_instant(&zone));
    Ok(Trigger::from_parts(
        TriggerSpec::Interval(Box::new(IntervalSpec {
            start_date: Some(format_instant(start, &zone)),
            timezone: Some(zone.name()),
            ..spec
        })),
        zone,
        spec.jitter,
        Schedule::Interval(IntervalTrigger {
            interval_micros,
            start,
            end,
        }),
    ))
}

impl IntervalTrigger {
    /// The first grid point at or after `instant`, if it is not past the end.
    pub(crate) fn first_fire_at_or_after(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let fire = if instant <= self.start {
            self.start
        } else {
            let elapsed = (instant - self.start).num_microseconds()?;
            // Round up to the next whole number of intervals.
            let steps = elapsed.checked_add(self.interval_micros - 1)? / self.interval_micros;
            let offset = steps.checked_mul(self.interval_micros)?;
            self.start
                .checked_add_signed(TimeDelta::microseconds(offset))?
        };
        self.end.is_none_or(|end| fire <= end).then_some(fire)
    }
}
