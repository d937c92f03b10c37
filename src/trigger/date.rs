//! `date`: fire once, at `run_date` or `delay` after the trigger is built.

use chrono::{DateTime, Datelike, TimeDelta, Utc};

use super::datetime::WrittenDateTime;
use super::window::{choose_zone, parse_field};
use super::{DateSpec, Schedule, Trigger, TriggerContext, TriggerError, TriggerSpec};

pub(crate) fn build(spec: DateSpec, context: &TriggerContext) -> Result<Trigger, TriggerError> {
    let written = parse_field("run_date", spec.run_date.as_deref())?;
    let zone = choose_zone(spec.timezone.as_deref(), &[written], context)?;
    let run_date: DateTime<Utc> = match (written, spec.delay) {
        (Some(_), Some(_)) => {
            return Err(TriggerError::conflict(
                "delay",
                "give run_date or delay, not both",
            ))
        }
        (Some(written), None) => written.to_instant(&zone),
        (None, Some(delay)) => TimeDelta::from_std(delay)
            .ok()
            .and_then(|delay| context.now.checked_add_signed(delay))
            .ok_or_else(|| {
                TriggerError::out_of_range("delay", format!("{delay:?} is too far in the future"))
            })?,
        // APScheduler's default: a date trigger without a date fires now.
        (None, None) => context.now,
    };
    let run_date = super::datetime::truncate_to_micros(run_date);
    // The run date is kept and shown as RFC 3339 text in its zone (`Trigger::spec`, the
    // stores, the API), which has four-digit years: a `delay` reaching past 9999 would
    // store a date that no longer reads back (found by fuzz/fuzz_targets/duration.rs).
    if let Some(delay) = spec.delay {
        if zone.to_local(run_date).year() > 9999 {
            return Err(TriggerError::out_of_range(
                "delay",
                format!("{delay:?} is too far in the future (the run date must be before the year 10000)"),
            ));
        }
    }
    match written {
        // A civil time keeps its text next to the zone: the user's wall-clock intent
        // survives a change of the zone's rules (tests/apscheduler_port.rs).
        Some(WrittenDateTime::Civil(_)) => Ok(Trigger::from_parts(
            TriggerSpec::Date(DateSpec {
                run_date: spec.run_date,
                delay: None,
                timezone: Some(zone.name()),
            }),
            zone,
            None,
            Schedule::Date(run_date),
        )),
        // An instant (an offset was written, or it came from `delay` or now) is all
        // there is to it: kept inline, with no text (BENCHMARKS.md: memory per pending job).
        Some(WrittenDateTime::Instant(_)) | None => Ok(Trigger::date(run_date, zone)),
    }
}
