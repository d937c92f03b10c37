//! `cron`: APScheduler 3.x's `CronTrigger`, field for field.
//!
//! Fields, coarsest first: `year, month, day, week, day_of_week, hour, minute, second`.
//! All given fields must match (AND). A field not given is `*` when it is coarser than
//! the finest field given and its minimum when it is finer, so `hour=3` means 03:00:00
//! every day and `day_of_week="mon"` means Mondays at midnight. `day_of_week` counts
//! from 0 = Monday (not crontab's Sunday); the `day` field also takes `last`,
//! `last fri` and `1st`..`5th` weekday positions.
//!
//! `field.rs` reads the expressions, `schedule.rs` searches civil time, and
//! [`crate::trigger::civil`] turns the match into an instant.

pub(crate) mod field;
pub(crate) mod schedule;

use chrono::{DateTime, NaiveDateTime, Utc};

use self::field::{
    parse_items, FieldSyntax, Item, MONTH_FULL_NAMES, MONTH_NAMES, WEEKDAY_FULL_NAMES,
    WEEKDAY_NAMES,
};
use self::schedule::{CronSchedule, DaySet, MAX_YEAR, MIN_YEAR};
use super::civil::{first_fire_at_or_after, CivilSchedule};
use super::window::{read_window, Window};
use super::{CronSpec, Schedule, Trigger, TriggerContext, TriggerError, TriggerSpec};

/// A compiled `cron` or `crontab` trigger: a schedule in a zone, within a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CronTrigger {
    pub(crate) schedule: CronSchedule,
    pub(crate) window: Window,
}

impl CronTrigger {
    /// The first fire time at or after `instant`, within the window.
    pub(crate) fn first_fire_at_or_after(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = self
            .window
            .start
            .map_or(instant, |start| start.max(instant));
        first_fire_at_or_after(&self.schedule, &self.window.zone, from, self.window.end)
    }
}

impl CivilSchedule for CronSchedule {
    fn next_match(
        &self,
        from: NaiveDateTime,
        limit: Option<NaiveDateTime>,
    ) -> Option<NaiveDateTime> {
        CronSchedule::next_match(self, from, limit)
    }

    fn fires_in_both_passes(&self) -> bool {
        self.matches_every_hour()
    }
}

const fn syntax(name: &'static str, min: u32, max: u32) -> FieldSyntax {
    FieldSyntax {
        name,
        min,
        max,
        names: &[],
        full_names: &[],
        names_base: 0,
        name_kind: "",
        reject_large_step: true,
        positions: false,
    }
}

const YEAR: FieldSyntax = syntax("year", MIN_YEAR as u32, MAX_YEAR as u32);
const MONTH: FieldSyntax = FieldSyntax {
    names: &MONTH_NAMES,
    full_names: &MONTH_FULL_NAMES,
    names_base: 1,
    name_kind: "month",
    ..syntax("month", 1, 12)
};
const DAY: FieldSyntax = FieldSyntax {
    positions: true,
    ..syntax("day", 1, 31)
};
const WEEK: FieldSyntax = syntax("week", 1, 53);
const DAY_OF_WEEK: FieldSyntax = FieldSyntax {
    names: &WEEKDAY_NAMES,
    full_names: &WEEKDAY_FULL_NAMES,
    names_base: 0,
    name_kind: "weekday",
    ..syntax("day_of_week", 0, 6)
};
const HOUR: FieldSyntax = syntax("hour", 0, 23);
const MINUTE: FieldSyntax = syntax("minute", 0, 59);
const SECOND: FieldSyntax = syntax("second", 0, 59);

/// APScheduler's `DEFAULT_VALUES` for fields finer than the finest one given.
const DEFAULTS: [&str; 8] = ["*", "1", "1", "*", "*", "0", "0", "0"];

pub(crate) fn build(spec: CronSpec, context: &TriggerContext) -> Result<Trigger, TriggerError> {
    let given = [
        spec.year.as_deref(),
        spec.month.as_deref(),
        spec.day.as_deref(),
        spec.week.as_deref(),
        spec.day_of_week.as_deref(),
        spec.hour.as_deref(),
        spec.minute.as_deref(),
        spec.second.as_deref(),
    ];
    let schedule = compile_fields(given)?;
    let window = read_window(
        spec.timezone.as_deref(),
        spec.start_date.as_deref(),
        spec.end_date.as_deref(),
        context,
    )?;
    Ok(Trigger::from_parts(
        TriggerSpec::Cron(Box::new(CronSpec {
            timezone: Some(window.zone.name()),
            ..spec
        })),
        window.zone,
        spec.jitter,
        Schedule::Cron(Box::new(CronTrigger { schedule, window })),
    ))
}

/// Compiles the eight fields, coarsest first, applying APScheduler's defaults.
fn compile_fields(given: [Option<&str>; 8]) -> Result<CronSchedule, TriggerError> {
    let finest_given = given.iter().rposition(Option::is_some);
    let text = |index: usize| -> &str {
        match (given[index], finest_given) {
            (Some(text), _) => text,
            (None, Some(finest)) if index > finest => DEFAULTS[index],
            _ => "*",
        }
    };
    let mask = |index: usize, syntax: &FieldSyntax| -> Result<u64, TriggerError> {
        Ok(parse_items(syntax, text(index))?
            .iter()
            .fold(0, |mask, item| mask | item.mask(syntax.min, syntax.max)))
    };
    let years = parse_items(&YEAR, text(0))?;
    let day_items = parse_items(&DAY, text(2))?;
    Ok(CronSchedule {
        years,
        months: mask(1, &MONTH)?,
        days: day_set(&day_items),
        weeks: mask(3, &WEEK)?,
        weekdays: mask(4, &DAY_OF_WEEK)?,
        hours: mask(5, &HOUR)?,
        minutes: mask(6, &MINUTE)?,
        seconds: mask(7, &SECOND)?,
    })
}

fn day_set(items: &[Item]) -> DaySet {
    let mut set = DaySet::default();
    for item in items {
        match *item {
            Item::LastDay => set.last_day = true,
            Item::Position { nth, weekday } => set.positions.push((nth, weekday)),
            Item::Range { .. } => set.days |= item.mask(DAY.min, DAY.max),
        }
    }
    set
}

#[cfg(test)]
mod tests;
