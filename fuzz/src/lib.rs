//! What the fuzz targets share: building a trigger from a spec and checking the fire
//! times it computes. Every check is a plain `assert!`: a failed property is a crash
//! libFuzzer saves as a reproducer.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kairos::{Trigger, TriggerContext, TriggerSpec, Zone};

/// How many fire times each built trigger is asked for: enough to cross a period
/// boundary or two, few enough to keep thousands of runs a second.
pub const FIRE_TIMES: usize = 6;

/// The instant triggers are built at and fire times are asked from: a Saturday in the
/// middle of a month, days before New York's spring-forward change.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_709_975_096, 123_456_000).unwrap_or_default()
}

/// The default zone the checks build with (triggers that name one use theirs): one with
/// DST changes, so gaps and folds are reached without the input naming a zone.
pub fn default_zone() -> Zone {
    "America/New_York"
        .parse()
        .unwrap_or(kairos::trigger::zone::UTC)
}

/// Builds `spec` as the API and `kairos next` do and checks the fire times it lists.
/// Returns the trigger when the spec was valid.
pub fn build_and_check(spec: TriggerSpec) -> Option<Trigger> {
    build_and_check_in(spec, default_zone())
}

/// [`build_and_check`] with `zone` for triggers that name none.
pub fn build_and_check_in(spec: TriggerSpec, zone: Zone) -> Option<Trigger> {
    let context = TriggerContext::new(now()).with_timezone(zone);
    let trigger = Trigger::new(spec, &context).ok()?;
    check_fire_times(&trigger, now());
    // The spec a trigger reports is what the store keeps and the API shows: it must
    // build again.
    let again = Trigger::new(trigger.spec().into_owned(), &context);
    assert!(
        again.is_ok(),
        "the spec of a built trigger does not build again: {:?} -> {:?}",
        trigger.spec(),
        again.err()
    );
    Some(trigger)
}

/// Fire times strictly increase and, but for a `date` trigger's single run, none lies
/// before the instant they were asked from (README.md, "Triggers").
pub fn check_fire_times(trigger: &Trigger, from: DateTime<Utc>) {
    // The deadline keeps a slow combination from stalling the fuzzer; running out of
    // it is an answer (`EvaluationError`), not a failure.
    let deadline = Instant::now() + Duration::from_secs(2);
    let Ok(times) = trigger.try_fire_times(from, FIRE_TIMES, Some(deadline)) else {
        return;
    };
    let is_date = trigger.kind() == "date";
    for pair in times.windows(2) {
        assert!(pair[0] < pair[1], "fire times do not increase: {times:?}");
    }
    if let Some(first) = times.first() {
        assert!(
            is_date || *first >= from,
            "{} trigger fires at {first}, before {from}",
            trigger.kind()
        );
    }
    // Asking again from a later instant never answers earlier than asked.
    if let Some(&first) = times.first() {
        let later = first + chrono::TimeDelta::microseconds(1);
        if let Some(next) = trigger.next_fire_time(Some(first), later) {
            assert!(next > first, "next after {first} is {next}");
        }
    }
}

/// Splits fuzz input into UTF-8 text, or `None` for bytes that are not UTF-8 (every
/// parser takes `&str`).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
