//! Unit tests of the cron trigger on civil time and in zones.

use chrono::{DateTime, Utc};

use crate::trigger::datetime::format_instant;
use crate::trigger::words::spec_from_words;
use crate::trigger::{Trigger, TriggerContext};

fn fire_times(words: &[&str], from: &str, count: usize) -> Vec<String> {
    let words: Vec<String> = words.iter().map(|word| word.to_string()).collect();
    let from: DateTime<Utc> = DateTime::parse_from_rfc3339(from)
        .expect("test instant")
        .with_timezone(&Utc);
    let spec = spec_from_words("cron", &words).expect("spec");
    let trigger = Trigger::new(spec, &TriggerContext::new(from)).expect("trigger");
    let zone = trigger.timezone();
    trigger
        .fire_times(from)
        .take(count)
        .map(|instant| format_instant(instant, &zone))
        .collect()
}

#[test]
fn finer_fields_default_to_their_minimum() {
    assert_eq!(
        fire_times(&["hour=3"], "2024-01-01T05:00:00Z", 2),
        ["2024-01-02T03:00:00+00:00", "2024-01-03T03:00:00+00:00"]
    );
    assert_eq!(
        fire_times(&["day_of_week=mon"], "2024-01-01T00:00:01Z", 1),
        ["2024-01-08T00:00:00+00:00"]
    );
}

#[test]
fn nothing_given_fires_every_second() {
    assert_eq!(
        fire_times(&[], "2024-01-01T00:00:00.5Z", 2),
        ["2024-01-01T00:00:01+00:00", "2024-01-01T00:00:02+00:00"]
    );
}

#[test]
fn weekday_positions() {
    assert_eq!(
        fire_times(&["day=last fri"], "2024-01-01T00:00:00Z", 3),
        [
            "2024-01-26T00:00:00+00:00",
            "2024-02-23T00:00:00+00:00",
            "2024-03-29T00:00:00+00:00"
        ]
    );
    assert_eq!(
        fire_times(&["day=5th sun"], "2024-01-01T00:00:00Z", 2),
        ["2024-03-31T00:00:00+00:00", "2024-06-30T00:00:00+00:00"]
    );
}

#[test]
fn leap_days_only() {
    assert_eq!(
        fire_times(&["month=2", "day=29"], "2021-01-01T00:00:00Z", 2),
        ["2024-02-29T00:00:00+00:00", "2028-02-29T00:00:00+00:00"]
    );
}

#[test]
fn far_years_and_impossible_dates() {
    assert_eq!(
        fire_times(&["year=2099"], "2024-01-01T00:00:00Z", 1),
        ["2099-01-01T00:00:00+00:00"]
    );
    assert!(fire_times(&["month=2", "day=30"], "2024-01-01T00:00:00Z", 1).is_empty());
    assert!(fire_times(&["year=2020"], "2024-01-01T00:00:00Z", 1).is_empty());
}

#[test]
fn iso_weeks() {
    // ISO week 1 of 2026 starts on Monday 2025-12-29.
    assert_eq!(
        fire_times(&["week=1", "day_of_week=mon"], "2025-06-01T00:00:00Z", 1),
        ["2025-12-29T00:00:00+00:00"]
    );
}
