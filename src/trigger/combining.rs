//! `and` / `or`: triggers built from other triggers, as APScheduler's `AndTrigger` and
//! `OrTrigger`.
//!
//! Both work on "the first fire time at or after an instant" of their parts, so a part
//! never sees another part's previous fire time (APScheduler's `OrTrigger` passes it on,
//! which stops an interval or date part from ever firing again).
//!
//! An `and` trigger searches for an instant every part agrees on by repeatedly jumping
//! to the latest candidate. Parts that rarely or never agree (two intervals with
//! co-prime periods) would make that search long, so it gives up after
//! [`AGREEMENT_ROUNDS`] jumps and the trigger counts as finished.

use chrono::{DateTime, Utc};

use super::datetime::truncate_to_micros;
use super::{CombiningSpec, Schedule, Trigger, TriggerContext, TriggerError, TriggerSpec};

/// How many candidate instants an `and` trigger tries before it gives up.
pub(crate) const AGREEMENT_ROUNDS: usize = 100_000;

pub(crate) fn build(
    spec: CombiningSpec,
    context: &TriggerContext,
    all: bool,
) -> Result<Trigger, TriggerError> {
    let kind = if all { "and" } else { "or" };
    if spec.triggers.is_empty() {
        return Err(TriggerError::conflict(
            "triggers",
            format!("an {kind} trigger needs at least one trigger to combine"),
        ));
    }
    let mut parts = Vec::with_capacity(spec.triggers.len());
    for (index, part) in spec.triggers.iter().enumerate() {
        let place = format!("triggers[{index}]");
        let trigger = Trigger::new(part.clone(), context).map_err(|error| error.within(&place))?;
        if trigger.jitter().is_some() {
            return Err(TriggerError::conflict(
                format!("{place}.jitter"),
                format!("jitter belongs on the {kind} trigger itself, not on its parts"),
            ));
        }
        parts.push(trigger);
    }
    let zone = parts[0].timezone();
    let resolved = CombiningSpec {
        triggers: parts.iter().map(|part| part.spec().into_owned()).collect(),
        jitter: spec.jitter,
    };
    Ok(Trigger::from_parts(
        if all {
            TriggerSpec::And(resolved)
        } else {
            TriggerSpec::Or(resolved)
        },
        zone,
        spec.jitter,
        if all {
            Schedule::And(parts)
        } else {
            Schedule::Or(parts)
        },
    ))
}

/// The first instant at or after `instant` at which every part fires.
pub(crate) fn all_agree_at_or_after(
    parts: &[Trigger],
    instant: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut candidate = truncate_to_micros(instant);
    for _ in 0..AGREEMENT_ROUNDS {
        let mut latest = candidate;
        let mut agreed = true;
        for part in parts {
            let fire = part.first_fire_at_or_after(candidate)?;
            if fire != candidate {
                agreed = false;
            }
            latest = latest.max(fire);
        }
        if agreed {
            return Some(candidate);
        }
        candidate = latest;
    }
    None
}

/// The earliest instant at or after `instant` at which any part fires.
pub(crate) fn any_at_or_after(parts: &[Trigger], instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    parts
        .iter()
        .filter_map(|part| part.first_fire_at_or_after(instant))
        .min()
}
