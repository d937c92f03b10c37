//! `calendarinterval`: every N years, months, weeks and days, at a fixed wall-clock
//! time, like APScheduler 4's `CalendarIntervalTrigger`.
//!
//! Fire dates are computed from `start_date`, never from the previous fire date, so
//! nothing drifts: the n-th date is `start_date + n * (years, months)` followed by
//! `n * (weeks, days)`. A month step from a day the target month lacks lands on that
//! month's last day and the next step returns to the original day:
//!
//! ```text
//! start 2024-01-31, months = 1:  01-31  02-29  03-31  04-30  05-31 …
//! ```
//!
//! (APScheduler 4 skips such months instead; an "every month on the 31st" job that
//! silently runs seven times a year surprises more people than one that runs on the
//! 30th of April.) The wall-clock time follows docs/semantics.md's DST rules: inside a gap it
//! fires at the first instant after the gap, inside a fold once, in the first pass.

use chrono::{DateTime, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

use super::civil::{first_fire_at_or_after, CivilSchedule};
use super::window::{choose_zone, parse_field};
use super::{
    CalendarIntervalSpec, Schedule, Trigger, TriggerContext, TriggerError, TriggerSpec, Zone,
};

/// A compiled calendar interval trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CalendarIntervalTrigger {
    steps: CalendarSteps,
    zone: Zone,
}

/// The civil part: dates from `start` in calendar steps, at `time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CalendarSteps {
    start: NaiveDate,
    end: Option<NaiveDate>,
    months: u32,
    days: u32,
    time: NaiveTime,
}

pub(crate) fn build(
    spec: CalendarIntervalSpec,
    context: &TriggerContext,
) -> Result<Trigger, TriggerError> {
    let months = spec
        .years
        .checked_mul(12)
        .and_then(|months| months.checked_add(spec.months));
    let days = spec
        .weeks
        .checked_mul(7)
        .and_then(|days| days.checked_add(spec.days));
    let (Some(months), Some(days)) = (months, days) else {
        return Err(TriggerError::out_of_range(
            "calendarinterval",
            "the step is too large",
        ));
    };
    if months == 0 && days == 0 {
        return Err(TriggerError::conflict(
            "calendarinterval",
            "the step must be longer than zero (give years, months, weeks or days)",
        ));
    }
    let time = NaiveTime::from_hms_opt(spec.hour, spec.minute, spec.second).ok_or_else(|| {
        let (field, value, max) = if spec.hour > 23 {
            ("hour", spec.hour, 23)
        } else if spec.minute > 59 {
            ("minute", spec.minute, 59)
        } else {
            ("second", spec.second, 59)
        };
        TriggerError::out_of_range(field, format!("{value} is out of range 0-{max}"))
    })?;
    let start = parse_field("start_date", spec.start_date.as_deref())?;
    let end = parse_field("end_date", spec.end_date.as_deref())?;
    let zone = choose_zone(spec.timezone.as_deref(), &[start, end], context)?;
    // APScheduler 4's default: starting today.
    let start = start.map_or_else(
        || zone.to_local(context.now).date(),
        |start| start.to_date(&zone),
    );
    let end = end.map(|end| end.to_date(&zone));
    // APScheduler 4 refuses this too: the trigger could never fire.
    if let Some(end) = end.filter(|end| *end < start) {
        return Err(TriggerError::conflict(
            "end_date",
            format!("{end} is before start_date {start}"),
        ));
    }
    Ok(Trigger::from_parts(
        TriggerSpec::CalendarInterval(Box::new(CalendarIntervalSpec {
            start_date: Some(start.to_string()),
            end_date: end.map(|end| end.to_string()),
            timezone: Some(zone.name()),
            ..spec
        })),
        zone,
        spec.jitter,
        Schedule::CalendarInterval(Box::new(CalendarIntervalTrigger {
            steps: CalendarSteps {
                start,
                end,
                months,
                days,
                time,
            },
            zone,
        })),
    ))
}

impl CalendarIntervalTrigger {
    /// The first fire time at or after `instant`.
    pub(crate) fn first_fire_at_or_after(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        first_fire_at_or_after(&self.steps, &self.zone, instant, None)
    }
}

impl CalendarSteps {
    /// The n-th fire date-time (n = 0 is the start date).
    fn nth(&self, n: u32) -> Option<NaiveDateTime> {
        let date = self
            .start
            .checked_add_months(Months::new(self.months.checked_mul(n)?))?
            .checked_add_signed(TimeDelta::try_days(i64::from(self.days) * i64::from(n))?)?;
        Some(date.and_time(self.time))
    }
}

impl CivilSchedule for CalendarSteps {
    fn next_match(
        &self,
        from: NaiveDateTime,
        _limit: Option<NaiveDateTime>,
    ) -> Option<NaiveDateTime> {
        // Every step moves the date by at least one day, so the answer lies within as
        // many steps as there are days from the start; the dates strictly increase, so
        // a binary search finds the first one at or after `from`.
        let days_since_start = (from.date() - self.start).num_days().max(0);
        let mut low = 0u32;
        let mut high = u32::try_from(days_since_start + 1).ok()?;
        while low < high {
            let middle = low + (high - low) / 2;
            match self.nth(middle) {
                Some(candidate) if candidate < from => low = middle + 1,
                _ => high = middle,
            }
        }
        let found = self.nth(low)?;
        let within_end = self.end.is_none_or(|end| found.date() <= end);
        (found >= from && within_end).then_some(found)
    }

    fn fires_in_both_passes(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(start: &str, months: u32, days: u32) -> CalendarSteps {
        CalendarSteps {
            start: start.parse().expect("date"),
            end: None,
            months,
            days,
            time: NaiveTime::from_hms_opt(9, 0, 0).expect("time"),
        }
    }

    fn dates(steps: &CalendarSteps, count: usize) -> Vec<String> {
        let mut from = steps.start.and_time(NaiveTime::MIN);
        let mut found = Vec::new();
        while found.len() < count {
            let Some(next) = steps.next_match(from, None) else {
                break;
            };
            found.push(next.date().to_string());
            from = next + TimeDelta::seconds(1);
        }
        found
    }

    #[test]
    fn month_steps_from_the_31st_clamp_without_drifting() {
        assert_eq!(
            dates(&steps("2024-01-31", 1, 0), 5),
            [
                "2024-01-31",
                "2024-02-29",
                "2024-03-31",
                "2024-04-30",
                "2024-05-31"
            ]
        );
    }

    #[test]
    fn leap_day_yearly_lands_on_the_28th_in_common_years() {
        assert_eq!(
            dates(&steps("2024-02-29", 12, 0), 5),
            [
                "2024-02-29",
                "2025-02-28",
                "2026-02-28",
                "2027-02-28",
                "2028-02-29"
            ]
        );
    }

    #[test]
    fn months_and_days_combine_per_step() {
        // Each step adds one month, then ten days.
        assert_eq!(
            dates(&steps("2024-01-01", 1, 10), 3),
            ["2024-01-01", "2024-02-11", "2024-03-21"]
        );
    }

    #[test]
    fn the_end_date_is_inclusive() {
        let mut bounded = steps("2024-01-01", 0, 7);
        bounded.end = Some("2024-01-15".parse().expect("date"));
        assert_eq!(
            dates(&bounded, 10),
            ["2024-01-01", "2024-01-08", "2024-01-15"]
        );
    }
}
