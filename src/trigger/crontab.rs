//! `crontab`: a classic 5-field crontab line with Vixie cron's semantics.
//!
//! `minute hour day-of-month month day-of-week`, where day-of-week counts from
//! 0 = Sunday and also takes 7 for Sunday, names are case-insensitive, and `@hourly`,
//! `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly` and `@annually` stand for
//! their lines. When both day fields are restricted a day matches if either does;
//! a day field that starts with `*` (including `*/2`) counts as unrestricted, as in
//! Vixie cron (croniter differs there). The line compiles to the same
//! [`CronSchedule`] as a `cron` trigger, with the day-of-week folded into the day set.

use super::cron::field::{
    parse_items, FieldSyntax, Item, CRONTAB_WEEKDAY_FULL_NAMES, CRONTAB_WEEKDAY_NAMES,
    MONTH_FULL_NAMES, MONTH_NAMES,
};
use super::cron::schedule::{bits, days_in_month, CronSchedule, DaySet, MIN_YEAR};
use super::cron::CronTrigger;
use super::window::read_window;
use super::{CrontabSpec, Schedule, Trigger, TriggerContext, TriggerError, TriggerSpec};

const fn syntax(name: &'static str, min: u32, max: u32) -> FieldSyntax {
    FieldSyntax {
        name,
        min,
        max,
        names: &[],
        full_names: &[],
        names_base: 0,
        name_kind: "",
        reject_large_step: false,
        positions: false,
    }
}

const MINUTE: FieldSyntax = syntax("minute", 0, 59);
const HOUR: FieldSyntax = syntax("hour", 0, 23);
const DAY: FieldSyntax = syntax("day", 1, 31);
const MONTH: FieldSyntax = FieldSyntax {
    names: &MONTH_NAMES,
    full_names: &MONTH_FULL_NAMES,
    names_base: 1,
    name_kind: "month",
    ..syntax("month", 1, 12)
};
const DAY_OF_WEEK: FieldSyntax = FieldSyntax {
    names: &CRONTAB_WEEKDAY_NAMES,
    full_names: &CRONTAB_WEEKDAY_FULL_NAMES,
    names_base: 0,
    name_kind: "weekday",
    ..syntax("day_of_week", 0, 7)
};

pub(crate) fn build(spec: CrontabSpec, context: &TriggerContext) -> Result<Trigger, TriggerError> {
    let schedule = parse_line(&spec.expression)?;
    let window = read_window(
        spec.timezone.as_deref(),
        spec.start_date.as_deref(),
        spec.end_date.as_deref(),
        context,
    )?;
    Ok(Trigger::from_parts(
        TriggerSpec::Crontab(Box::new(CrontabSpec {
            timezone: Some(window.zone.name()),
            ..spec
        })),
        window.zone,
        spec.jitter,
        Schedule::Cron(Box::new(CronTrigger { schedule, window })),
    ))
}

/// Compiles a crontab line (or macro) into a schedule.
pub(crate) fn parse_line(line: &str) -> Result<CronSchedule, TriggerError> {
    let trimmed = line.trim();
    let expanded = if trimmed.starts_with('@') {
        expand_macro(trimmed)?
    } else {
        trimmed
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(TriggerError::syntax(
            "crontab",
            format!("expected 5 fields, got {}", fields.len()),
        ));
    }
    let mask = |text: &str, syntax: &FieldSyntax| -> Result<u64, TriggerError> {
        let items = parse_items(syntax, text).map_err(|error| {
            TriggerError::new(
                error.kind(),
                error.field(),
                format!("{} (in the crontab line)", error.reason()),
            )
        })?;
        Ok(items
            .iter()
            .fold(0, |mask, item| mask | item.mask(syntax.min, syntax.max)))
    };
    let minutes = mask(fields[0], &MINUTE)?;
    let hours = mask(fields[1], &HOUR)?;
    let days_of_month = mask(fields[2], &DAY)?;
    let months = mask(fields[3], &MONTH)?;
    let sunday_first = mask(fields[4], &DAY_OF_WEEK)?;
    // Vixie cron: a day field that starts with `*` does not restrict the day.
    let day_of_month_star = fields[2].starts_with('*');
    let day_of_week_star = fields[4].starts_with('*');
    // Crontab counts weekdays from Sunday (0 and 7); the schedule from Monday.
    let monday_first = (0..=7u32)
        .filter(|weekday| sunday_first & (1 << weekday) != 0)
        .fold(0u8, |mask, weekday| mask | (1 << ((weekday + 6) % 7)));
    // Vixie cron: when either day field starts with `*`, a day must match both (the
    // `*`-led one still restricts by its step); otherwise a day matches if either does.
    let (days, weekdays) = if day_of_month_star || day_of_week_star {
        check_day_occurs(days_of_month, months, fields[2], fields[3])?;
        (
            DaySet {
                days: days_of_month,
                ..DaySet::default()
            },
            u64::from(monday_first),
        )
    } else {
        (
            DaySet {
                days: days_of_month,
                weekdays: monday_first,
                ..DaySet::default()
            },
            bits(0, 6),
        )
    };
    Ok(CronSchedule {
        years: vec![Item::Range {
            first: MIN_YEAR as u32,
            last: None,
            step: 1,
        }],
        months,
        days,
        weeks: bits(1, 53),
        weekdays,
        hours,
        minutes,
        seconds: 1,
    })
}

fn expand_macro(name: &str) -> Result<&'static str, TriggerError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        "@reboot" => {
            return Err(TriggerError::syntax(
                "crontab",
                "@reboot is not a schedule; run the job at start-up instead",
            ))
        }
        _ => {
            return Err(TriggerError::syntax(
                "crontab",
                format!(
                    "unknown macro {name:?} (expected @hourly, @daily, @midnight, @weekly, \
                     @monthly, @yearly or @annually)"
                ),
            ))
        }
    })
}

/// A line whose days of the month never occur in its months would never fire (cron
/// would silently do nothing); say so instead.
fn check_day_occurs(
    days_of_month: u64,
    months: u64,
    day_text: &str,
    month_text: &str,
) -> Result<(), TriggerError> {
    // A leap year has the longest February.
    let occurs = (1..=12u32)
        .filter(|month| months & (1 << month) != 0)
        .any(|month| days_of_month & bits(1, days_in_month(2024, month)) != 0);
    if occurs {
        Ok(())
    } else {
        Err(TriggerError::conflict(
            "day",
            format!("day {day_text:?} never occurs in month {month_text:?}, so the line would never fire"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sunday_is_zero_and_seven() {
        let zero = parse_line("0 0 * * 0").expect("line");
        let seven = parse_line("0 0 * * 7").expect("line");
        let name = parse_line("0 0 * * SUN").expect("line");
        assert_eq!(zero.weekdays, 1 << 6);
        assert_eq!(zero, seven);
        assert_eq!(zero, name);
    }

    #[test]
    fn star_led_day_fields_are_anded() {
        // Vixie: `*/2` in the day of the month counts as `*`, so the fields are ANDed:
        // odd days that are Mondays.
        let line = parse_line("0 0 */2 * 1").expect("line");
        assert_eq!(
            line.days.days,
            Item::Range {
                first: 1,
                last: Some(31),
                step: 2
            }
            .mask(1, 31)
        );
        assert_eq!(line.days.weekdays, 0);
        assert_eq!(line.weekdays, 1);
        let or = parse_line("0 0 1,15 * 1").expect("line");
        assert_eq!(or.days.weekdays, 1);
        assert_eq!(or.weekdays, bits(0, 6));
        assert_eq!(or.days.days, (1 << 1) | (1 << 15));
    }

    #[test]
    fn errors_name_the_field() {
        let error = |line: &str| parse_line(line).expect_err(line).to_string();
        assert_eq!(error("0 3 * *"), "crontab: expected 5 fields, got 4");
        assert_eq!(
            error("61 3 * * *"),
            "minute: 61 is out of range 0-59 (in the crontab line)"
        );
        assert!(error("0 0 * * 8").starts_with("day_of_week: 8 is out of range 0-7"));
        assert!(error("0 0 * foo *").starts_with("month: unknown month \"foo\""));
        assert!(error("0 0 30 2 *").starts_with("day: day \"30\" never occurs"));
        assert!(error("@fortnightly").starts_with("crontab: unknown macro"));
        assert!(error("@reboot").starts_with("crontab: @reboot"));
    }

    #[test]
    fn macros_expand() {
        assert_eq!(parse_line("@daily"), parse_line("0 0 * * *"));
        assert_eq!(parse_line("@MIDNIGHT"), parse_line("0 0 * * *"));
        assert_eq!(parse_line("@annually"), parse_line("0 0 1 1 *"));
    }
}
