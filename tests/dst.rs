//! DST behaviour of every wall-clock trigger, written from docs/semantics.md's rules:
//!
//! - a civil time inside a spring-forward gap fires at the first instant after the gap,
//!   and several matches inside one gap fire once;
//! - a civil time inside a fall-back fold fires once, in the first pass, unless the hour
//!   field matches all 24 hours, in which case it fires in both passes;
//! - `interval` is elapsed time and ignores DST;
//! - fire times strictly increase.
//!
//! Zones: America/New_York and Europe/London (one-hour shifts), Australia/Lord_Howe (a
//! 30-minute shift) and Pacific/Apia, which skipped 30 December 2011 entirely.

use chrono::{DateTime, Utc};
use kairos::trigger::datetime::format_instant;
use kairos::trigger::words::spec_from_words;
use kairos::trigger::{Trigger, TriggerContext};

/// The first `count` fire times at or after `from`, shown in the trigger's zone.
fn fires(kind: &str, words: &[&str], from: &str, count: usize) -> Vec<String> {
    let words: Vec<String> = words.iter().map(|word| word.to_string()).collect();
    let from: DateTime<Utc> = DateTime::parse_from_rfc3339(from)
        .expect("test instant")
        .with_timezone(&Utc);
    let spec = spec_from_words(kind, &words).expect("valid words");
    let trigger = Trigger::new(spec, &TriggerContext::new(from)).expect("valid trigger");
    let zone = trigger.timezone();
    let times: Vec<DateTime<Utc>> = trigger.fire_times(from).take(count).collect();
    assert!(
        times.windows(2).all(|pair| pair[0] < pair[1]),
        "fire times do not strictly increase: {times:?}"
    );
    times
        .into_iter()
        .map(|instant| format_instant(instant, &zone))
        .collect()
}

const NEW_YORK: &str = "timezone=America/New_York";

// ---- New York, spring forward: 2024-03-10 02:00 EST -> 03:00 EDT ----

#[test]
fn new_york_time_in_the_gap_fires_at_the_end_of_the_gap() {
    assert_eq!(
        fires(
            "cron",
            &["hour=2", "minute=30", NEW_YORK],
            "2024-03-09T00:00:00Z",
            3
        ),
        [
            "2024-03-09T02:30:00-05:00",
            "2024-03-10T03:00:00-04:00",
            "2024-03-11T02:30:00-04:00"
        ]
    );
}

#[test]
fn new_york_every_quarter_hour_keeps_real_quarter_hours_across_the_gap() {
    // 02:00, 02:15, 02:30 and 02:45 do not exist; they and 03:00 fire once, at 03:00 EDT.
    assert_eq!(
        fires(
            "cron",
            &["minute=*/15", NEW_YORK],
            "2024-03-10T06:40:00Z",
            4
        ),
        [
            "2024-03-10T01:45:00-05:00",
            "2024-03-10T03:00:00-04:00",
            "2024-03-10T03:15:00-04:00",
            "2024-03-10T03:30:00-04:00"
        ]
    );
}

#[test]
fn new_york_several_matches_in_one_gap_fire_once() {
    assert_eq!(
        fires(
            "cron",
            &["hour=2", "minute=*/15", NEW_YORK],
            "2024-03-09T12:00:00Z",
            3
        ),
        [
            "2024-03-10T03:00:00-04:00",
            "2024-03-11T02:00:00-04:00",
            "2024-03-11T02:15:00-04:00"
        ]
    );
}

#[test]
fn apscheduler_529_monday_after_spring_forward_is_not_skipped() {
    // APScheduler added a wall-clock difference as elapsed time and jumped over the
    // Monday after the change (its issue #529).
    assert_eq!(
        fires(
            "cron",
            &["day_of_week=mon", NEW_YORK],
            "2024-03-09T12:00:00Z",
            2
        ),
        ["2024-03-11T00:00:00-04:00", "2024-03-18T00:00:00-04:00"]
    );
    assert_eq!(
        fires(
            "cron",
            &["day_of_week=mon-fri", "hour=9", "minute=30", NEW_YORK],
            "2024-03-08T15:00:00Z",
            2
        ),
        ["2024-03-11T09:30:00-04:00", "2024-03-12T09:30:00-04:00"]
    );
}

// ---- New York, fall back: 2024-11-03 02:00 EDT -> 01:00 EST ----

#[test]
fn new_york_repeated_time_fires_once_in_the_first_pass() {
    assert_eq!(
        fires(
            "cron",
            &["hour=1", "minute=30", NEW_YORK],
            "2024-11-02T00:00:00Z",
            3
        ),
        [
            "2024-11-02T01:30:00-04:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-04T01:30:00-05:00"
        ]
    );
}

#[test]
fn new_york_restricted_hour_does_not_repeat_in_the_second_pass() {
    assert_eq!(
        fires(
            "cron",
            &["hour=1", "minute=*/15", NEW_YORK],
            "2024-11-03T04:50:00Z",
            5
        ),
        [
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T01:15:00-04:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:45:00-04:00",
            "2024-11-04T01:00:00-05:00"
        ]
    );
}

#[test]
fn new_york_every_hour_fires_in_both_passes() {
    assert_eq!(
        fires(
            "cron",
            &["minute=*/15", NEW_YORK],
            "2024-11-03T05:40:00Z",
            6
        ),
        [
            "2024-11-03T01:45:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:15:00-05:00",
            "2024-11-03T01:30:00-05:00",
            "2024-11-03T01:45:00-05:00",
            "2024-11-03T02:00:00-05:00"
        ]
    );
    // `*/1` and `0-23` also match every hour.
    for hours in ["*/1", "0-23"] {
        let hour = format!("hour={hours}");
        assert_eq!(
            fires(
                "cron",
                &[&hour, "minute=30", NEW_YORK],
                "2024-11-03T05:00:00Z",
                3
            ),
            [
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T01:30:00-05:00",
                "2024-11-03T02:30:00-05:00"
            ],
            "{hours}"
        );
    }
}

#[test]
fn new_york_starting_inside_the_fold() {
    // From 01:50 EDT (first pass) the next quarter hour is 01:00 EST, in the second pass.
    assert_eq!(
        fires(
            "cron",
            &["minute=*/15", NEW_YORK],
            "2024-11-03T05:50:00Z",
            2
        ),
        ["2024-11-03T01:00:00-05:00", "2024-11-03T01:15:00-05:00"]
    );
    // From 01:10 EST (second pass), a restricted hour waits for the next day.
    assert_eq!(
        fires(
            "cron",
            &["hour=1", "minute=*/15", NEW_YORK],
            "2024-11-03T06:10:00Z",
            1
        ),
        ["2024-11-04T01:00:00-05:00"]
    );
}

#[test]
fn new_york_crontab_follows_the_same_rules() {
    assert_eq!(
        fires(
            "crontab",
            &["30 2 * * *", NEW_YORK],
            "2024-03-09T12:00:00Z",
            2
        ),
        ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"]
    );
    assert_eq!(
        fires(
            "crontab",
            &["30 1 * * *", NEW_YORK],
            "2024-11-03T00:00:00Z",
            2
        ),
        ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]
    );
    assert_eq!(
        fires(
            "crontab",
            &["*/30 * * * *", NEW_YORK],
            "2024-11-03T05:15:00Z",
            4
        ),
        [
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:30:00-05:00",
            "2024-11-03T02:00:00-05:00"
        ]
    );
}

#[test]
fn new_york_calendar_interval_keeps_its_wall_clock_time() {
    assert_eq!(
        fires(
            "calendarinterval",
            &[
                "days=1",
                "hour=2",
                "minute=30",
                "start_date=2024-03-09",
                NEW_YORK
            ],
            "2024-03-09T00:00:00Z",
            3
        ),
        [
            "2024-03-09T02:30:00-05:00",
            "2024-03-10T03:00:00-04:00",
            "2024-03-11T02:30:00-04:00"
        ]
    );
    assert_eq!(
        fires(
            "calendarinterval",
            &[
                "days=1",
                "hour=1",
                "minute=30",
                "start_date=2024-11-02",
                NEW_YORK
            ],
            "2024-11-02T00:00:00Z",
            3
        ),
        [
            "2024-11-02T01:30:00-04:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-04T01:30:00-05:00"
        ]
    );
}

#[test]
fn new_york_interval_is_elapsed_time() {
    // 24 hours after noon EST on the day before the change is 13:00 EDT.
    assert_eq!(
        fires(
            "interval",
            &["hours=24", "start_date=2024-03-09 12:00:00", NEW_YORK],
            "2024-03-09T00:00:00Z",
            3
        ),
        [
            "2024-03-09T12:00:00-05:00",
            "2024-03-10T13:00:00-04:00",
            "2024-03-11T13:00:00-04:00"
        ]
    );
}

#[test]
fn new_york_dates_inside_the_gap_mean_its_end() {
    assert_eq!(
        fires(
            "date",
            &["run_date=2024-03-10 02:30:00", NEW_YORK],
            "2024-01-01T00:00:00Z",
            2
        ),
        ["2024-03-10T03:00:00-04:00"]
    );
    assert_eq!(
        fires(
            "date",
            &["run_date=2024-11-03 01:30:00", NEW_YORK],
            "2024-01-01T00:00:00Z",
            2
        ),
        ["2024-11-03T01:30:00-04:00"]
    );
}

// ---- Europe/London: 2024-03-31 01:00 GMT -> 02:00 BST; 2024-10-27 02:00 BST -> 01:00 GMT ----

#[test]
fn london_gap_and_fold() {
    let london = "timezone=Europe/London";
    assert_eq!(
        fires(
            "cron",
            &["hour=1", "minute=30", london],
            "2024-03-30T12:00:00Z",
            3
        ),
        [
            "2024-03-31T02:00:00+01:00",
            "2024-04-01T01:30:00+01:00",
            "2024-04-02T01:30:00+01:00"
        ]
    );
    assert_eq!(
        fires(
            "cron",
            &["hour=1", "minute=30", london],
            "2024-10-26T12:00:00Z",
            2
        ),
        ["2024-10-27T01:30:00+01:00", "2024-10-28T01:30:00+00:00"]
    );
    assert_eq!(
        fires("cron", &["minute=0", london], "2024-10-26T23:30:00Z", 3),
        [
            "2024-10-27T01:00:00+01:00",
            "2024-10-27T01:00:00+00:00",
            "2024-10-27T02:00:00+00:00"
        ]
    );
}

// ---- Australia/Lord_Howe: a 30-minute shift ----
// 2024-04-07 02:00 +11:00 -> 01:30 +10:30 (fold); 2024-10-06 02:00 +10:30 -> 02:30 +11:00 (gap).

#[test]
fn lord_howe_half_hour_gap() {
    let lord_howe = "timezone=Australia/Lord_Howe";
    assert_eq!(
        fires(
            "cron",
            &["hour=2", "minute=15", lord_howe],
            "2024-10-04T12:00:00Z",
            3
        ),
        [
            "2024-10-05T02:15:00+10:30",
            "2024-10-06T02:30:00+11:00",
            "2024-10-07T02:15:00+11:00"
        ]
    );
}

#[test]
fn lord_howe_half_hour_fold() {
    let lord_howe = "timezone=Australia/Lord_Howe";
    assert_eq!(
        fires(
            "cron",
            &["hour=1", "minute=45", lord_howe],
            "2024-04-06T12:00:00Z",
            2
        ),
        ["2024-04-07T01:45:00+11:00", "2024-04-08T01:45:00+10:30"]
    );
    assert_eq!(
        fires(
            "cron",
            &["minute=*/15", lord_howe],
            "2024-04-06T14:20:00Z",
            5
        ),
        [
            "2024-04-07T01:30:00+11:00",
            "2024-04-07T01:45:00+11:00",
            "2024-04-07T01:30:00+10:30",
            "2024-04-07T01:45:00+10:30",
            "2024-04-07T02:00:00+10:30"
        ]
    );
}

// ---- Pacific/Apia: 2011-12-29 23:59:59 -10:00 was followed by 2011-12-31 00:00 +14:00 ----

const APIA: &str = "timezone=Pacific/Apia";

#[test]
fn apia_a_time_on_the_missing_day_fires_when_the_day_after_begins() {
    assert_eq!(
        fires("cron", &["hour=12", APIA], "2011-12-28T12:00:00Z", 4),
        [
            "2011-12-28T12:00:00-10:00",
            "2011-12-29T12:00:00-10:00",
            "2011-12-31T00:00:00+14:00",
            "2011-12-31T12:00:00+14:00"
        ]
    );
}

#[test]
fn apia_midnight_of_the_missing_day_and_of_the_next_fire_once() {
    assert_eq!(
        fires("crontab", &["0 0 * * *", APIA], "2011-12-28T12:00:00Z", 3),
        [
            "2011-12-29T00:00:00-10:00",
            "2011-12-31T00:00:00+14:00",
            "2012-01-01T00:00:00+14:00"
        ]
    );
}

#[test]
fn apia_a_yearly_date_on_the_missing_day() {
    assert_eq!(
        fires(
            "cron",
            &["month=12", "day=30", "hour=10", APIA],
            "2011-01-01T00:00:00Z",
            2
        ),
        ["2011-12-31T00:00:00+14:00", "2012-12-30T10:00:00+14:00"]
    );
}

#[test]
fn apia_calendar_interval_over_the_missing_day() {
    assert_eq!(
        fires(
            "calendarinterval",
            &["days=1", "hour=9", "start_date=2011-12-28", APIA],
            "2011-12-27T00:00:00Z",
            4
        ),
        [
            "2011-12-28T09:00:00-10:00",
            "2011-12-29T09:00:00-10:00",
            "2011-12-31T00:00:00+14:00",
            "2011-12-31T09:00:00+14:00"
        ]
    );
}
