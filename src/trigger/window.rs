//! The parts most triggers share: the zone they live in and the window
//! (`start_date`..=`end_date`) they may fire in.
//!
//! The zone is chosen as APScheduler chooses it: `timezone` if given, else the offset
//! written on `start_date` or `end_date`, else the scheduler's zone. As in APScheduler,
//! an `end_date` before `start_date` is allowed and leaves the trigger with no fire
//! time; the scheduler reports a job whose trigger never fires when it is added.

use chrono::{DateTime, Utc};

use super::datetime::{parse_datetime, WrittenDateTime};
use super::{TriggerContext, TriggerError, Zone};

/// A trigger's zone and the instants it may fire between (both inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub zone: Zone,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Parses a date-time field, naming it in the error.
pub(crate) fn parse_field(
    field: &str,
    text: Option<&str>,
) -> Result<Option<WrittenDateTime>, TriggerError> {
    text.map(|text| parse_datetime(text).map_err(|reason| TriggerError::syntax(field, reason)))
        .transpose()
}

/// The zone named by `timezone`, else the first offset written on `dates`, else the
/// context's zone.
pub(crate) fn choose_zone(
    timezone: Option<&str>,
    dates: &[Option<WrittenDateTime>],
    context: &TriggerContext,
) -> Result<Zone, TriggerError> {
    if let Some(name) = timezone {
        return name
            .parse::<Zone>()
            .map_err(|error| TriggerError::unknown_name("timezone", error.to_string()));
    }
    Ok(dates
        .iter()
        .flatten()
        .find_map(WrittenDateTime::offset)
        .map(Zone::Fixed)
        .unwrap_or(context.timezone))
}

/// Reads `timezone`, `start_date` and `end_date`.
pub(crate) fn read_window(
    timezone: Option<&str>,
    start_date: Option<&str>,
    end_date: Option<&str>,
    context: &TriggerContext,
) -> Result<Window, TriggerError> {
    let start = parse_field("start_date", start_date)?;
    let end = parse_field("end_date", end_date)?;
    let zone = choose_zone(timezone, &[start, end], context)?;
    Ok(Window {
        zone,
        start: start.map(|start| start.to_instant(&zone)),
        end: end.map(|end| end.to_instant(&zone)),
    })
}
