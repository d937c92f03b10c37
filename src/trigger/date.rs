//! `date`: fire once, at `run_date` or `delay` after the trigger is built.

use chrono::{DateTime, TimeDelta, Utc};

use super::datetime::format_instant;
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
    // A written date means the same with the zone written next to it; only a computed
    // one (from `delay` or now) needs writing out.
    let written_text = spec.run_date.filter(|_| written.is_some());
    Ok(Trigger::from_parts(
        TriggerSpec::Date(DateSpec {
            run_date: Some(written_text.unwrap_or_else(|| format_instant(run_date, &zone))),
            delay: None,
            timezone: Some(zone.name()),
        }),
        zone,
        None,
        Schedule::Date(run_date),
    ))
}
