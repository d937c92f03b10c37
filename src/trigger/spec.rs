//! Trigger specifications as users write them in config files, API requests and
//! `kairos next`: serde types with APScheduler's field names.
//!
//! Values are read leniently where users are used to it (a cron field as `3` or `"3"`, a
//! date as a string or a TOML date-time, a duration as seconds or `"1h30m"`), and
//! unknown fields are errors so that a typo never silently changes a schedule.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a user writes to describe a trigger; `type` selects the variant.
///
/// The larger variants are boxed so that a pending one-off job (a `date` trigger, the
/// common case by far) stays small in memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TriggerSpec {
    /// Fire once.
    Date(DateSpec),
    /// Fire every fixed elapsed duration.
    Interval(Box<IntervalSpec>),
    /// Fire when calendar fields match (APScheduler 3.x syntax).
    Cron(Box<CronSpec>),
    /// Fire on a classic 5-field crontab line.
    Crontab(Box<CrontabSpec>),
    /// Fire every N years/months/weeks/days at a wall-clock time.
    #[serde(rename = "calendarinterval")]
    CalendarInterval(Box<CalendarIntervalSpec>),
    /// Fire when all the given triggers agree.
    And(CombiningSpec),
    /// Fire when any of the given triggers fires.
    Or(CombiningSpec),
}

impl TriggerSpec {
    /// Whether its fire times are found by a search over the calendar, whose cost
    /// depends on the rules (cron fields that rarely match, a calendar interval, a
    /// combination), rather than read off the spec: a date is its own only fire time.
    pub fn searches_for_fire_times(&self) -> bool {
        !matches!(self, TriggerSpec::Date(_))
    }

    /// The `type` name of this specification.
    pub fn kind(&self) -> &'static str {
        match self {
            TriggerSpec::Date(_) => "date",
            TriggerSpec::Interval(_) => "interval",
            TriggerSpec::Cron(_) => "cron",
            TriggerSpec::Crontab(_) => "crontab",
            TriggerSpec::CalendarInterval(_) => "calendarinterval",
            TriggerSpec::And(_) => "and",
            TriggerSpec::Or(_) => "or",
        }
    }
}

/// `date`: one run at `run_date`, or `delay` after the trigger is created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateSpec {
    /// When to run; a civil time is read in `timezone`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "datetime_text"
    )]
    pub run_date: Option<String>,
    /// Run this long after the trigger is created (the API's one-off delayed jobs).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humane_duration"
    )]
    pub delay: Option<Duration>,
    /// The zone of `run_date` when it has no offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// `interval`: every `weeks + days + hours + minutes + seconds` of elapsed time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalSpec {
    /// Weeks in the interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weeks: u64,
    /// Days in the interval (24 hours each: DST does not stretch them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub days: u64,
    /// Hours in the interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hours: u64,
    /// Minutes in the interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minutes: u64,
    /// Seconds in the interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seconds: u64,
    /// The first fire time and the origin of the grid; default: one interval after creation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "datetime_text"
    )]
    pub start_date: Option<String>,
    /// No fire time after this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "datetime_text"
    )]
    pub end_date: Option<String>,
    /// The zone for dates without an offset and for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Delay each run at random by up to this much.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humane_duration"
    )]
    pub jitter: Option<Duration>,
}

/// `cron`: APScheduler 3.x's `CronTrigger` fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSpec {
    /// 4-digit year.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "field_text"
    )]
    pub year: Option<String>,
    /// Month, 1-12 or `jan`-`dec`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "field_text"
    )]
    pub month: Option<String>,
    /// Day of the month, 1-31, `last`, `last fri`, `2nd mon`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "field_text"
    )]
    pub day: Option<String>,
    /// ISO week, 1-53.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "field_text"
    )]
    pub week: Option<String>,
    /// Weekday, 0-6 with 0 = Monday, or `mon`-`sun`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "field_text"
    )]
    pub day_of_week: Option<String>,
    /// Hour, 0-23.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "field_text"
    )]
    pub hour: Option<String>,
    /// Minute, 0-59.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "field_text"
    )]
    pub minute: Option<String>,
    /// Second, 0-59.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "field_text"
    )]
    pub second: Option<String>,
    /// No fire time before this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "datetime_text"
    )]
    pub start_date: Option<String>,
    /// No fire time after this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "datetime_text"
    )]
    pub end_date: Option<String>,
    /// The zone the fields are matched in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Delay each run at random by up to this much.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humane_duration"
    )]
    pub jitter: Option<Duration>,
}

/// `crontab`: a 5-field crontab line or an `@` macro.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrontabSpec {
    /// `minute hour day-of-month month day-of-week`, or `@daily` and friends.
    #[serde(alias = "line")]
    pub expression: String,
    /// No fire time before this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "datetime_text"
    )]
    pub start_date: Option<String>,
    /// No fire time after this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "datetime_text"
    )]
    pub end_date: Option<String>,
    /// The zone the line is matched in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Delay each run at random by up to this much.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humane_duration"
    )]
    pub jitter: Option<Duration>,
}

/// `calendarinterval`: calendar steps from `start_date` at a fixed wall-clock time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarIntervalSpec {
    /// Years per step.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub years: u32,
    /// Months per step.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub months: u32,
    /// Weeks per step.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub weeks: u32,
    /// Days per step.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub days: u32,
    /// The wall-clock hour to fire at.
    #[serde(default)]
    pub hour: u32,
    /// The wall-clock minute to fire at.
    #[serde(default)]
    pub minute: u32,
    /// The wall-clock second to fire at.
    #[serde(default)]
    pub second: u32,
    /// The first date; default: the day the trigger is created.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "datetime_text"
    )]
    pub start_date: Option<String>,
    /// The last date that may fire.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "datetime_text"
    )]
    pub end_date: Option<String>,
    /// The zone of the wall-clock time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Delay each run at random by up to this much.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humane_duration"
    )]
    pub jitter: Option<Duration>,
}

/// `and` / `or`: a combination of triggers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CombiningSpec {
    /// The triggers to combine.
    pub triggers: Vec<TriggerSpec>,
    /// Delay each run at random by up to this much.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humane_duration"
    )]
    pub jitter: Option<Duration>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_zero_u32(value: &u32) -> bool {
    *value == 0
}

/// A cron field given as a number or a string.
fn field_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct FieldText;
    impl Visitor<'_> for FieldText {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a cron field as a number or a string such as \"*/5\" or \"mon-fri\"")
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(value.to_owned()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(FieldText)
}

/// The field name under which the `toml` crate hands a native TOML date-time to serde.
const TOML_DATETIME_FIELD: &str = "$__toml_private_datetime";

/// A date-time given as a string or as a native TOML date-time.
fn datetime_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct DateTimeText;
    impl<'de> Visitor<'de> for DateTimeText {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a date-time such as \"2024-03-01 12:00:00\" or \"2024-03-01T12:00:00+08:00\"",
            )
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(value.to_owned()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            match map.next_entry::<String, String>()? {
                Some((key, value)) if key == TOML_DATETIME_FIELD => Ok(Some(value)),
                _ => Err(de::Error::custom("expected a date-time")),
            }
        }
    }
    deserializer.deserialize_any(DateTimeText)
}

/// Durations as seconds (`30`, `1.5`) or humane text (`"30s"`, `"1h30m"`).
pub(crate) mod humane_duration {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.collect_str(&humantime::format_duration(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        struct DurationValue;
        impl Visitor<'_> for DurationValue {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"1h30m\" or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
                Ok(Some(Duration::from_secs(value)))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
                u64::try_from(value)
                    .map(|seconds| Some(Duration::from_secs(seconds)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
                Duration::try_from_secs_f64(value)
                    .map(Some)
                    .map_err(|_| E::custom(format!("{value} is not a valid number of seconds")))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                parse(value).map(Some).map_err(E::custom)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        deserializer.deserialize_any(DurationValue)
    }

    /// The same for a duration that must be there (`Duration`, not `Option`).
    pub mod required {
        use super::*;

        pub fn serialize<S: Serializer>(
            value: &Duration,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            super::serialize(&Some(*value), serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Duration, D::Error> {
            super::deserialize(deserializer)?
                .ok_or_else(|| de::Error::custom("expected a duration"))
        }
    }

    /// The longest duration text read. People write `"1h30m"` or `"2days 3h"`; a
    /// longer text is refused before the parser, which panics on a sum past
    /// `u64::MAX` seconds (humantime 2.4; found by `fuzz/fuzz_targets/duration.rs`).
    /// With at most this many characters and [`MAX_DIGITS`] a number, no sum gets
    /// near it.
    pub const MAX_TEXT: usize = 100;

    /// The most digits one number of a duration may have: 10^15 s is 31 million years.
    pub const MAX_DIGITS: usize = 15;

    /// The most seconds a bare number may give: written back as years, months and so
    /// on, a duration under it reads back without nearing the parser's overflow.
    pub const MAX_SECONDS: f64 = 1e15;

    /// Parses `"30s"`, `"1h30m"`, `"1h 30m"` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let trimmed = text.trim();
        if let Ok(seconds) = trimmed.parse::<f64>() {
            if seconds > MAX_SECONDS {
                return Err(format!(
                    "{text:?} seconds is too large for a duration (at most {MAX_SECONDS})"
                ));
            }
            return Duration::try_from_secs_f64(seconds)
                .map_err(|_| format!("{text:?} is not a valid number of seconds"));
        }
        if trimmed.len() > MAX_TEXT {
            return Err(format!(
                "a duration of {} characters is too long (at most {MAX_TEXT}; e.g. \"1h30m\")",
                trimmed.len()
            ));
        }
        if trimmed
            .split(|character: char| !character.is_ascii_digit())
            .any(|number| number.len() > MAX_DIGITS)
        {
            return Err(format!(
                "{text:?} has a number of more than {MAX_DIGITS} digits: too large for a duration"
            ));
        }
        humantime::parse_duration(trimmed).map_err(|error| {
            format!(
                "{text:?} is not a duration ({error}; expected e.g. \"30s\", \"15m\" or \"1h30m\")"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_date_is_read_off_its_spec_without_a_search() {
        let spec = |value: serde_json::Value| -> TriggerSpec {
            serde_json::from_value(value).expect("a trigger spec")
        };
        assert!(
            !spec(serde_json::json!({"type": "date", "run_date": "2030-01-01T00:00:00Z"}))
                .searches_for_fire_times()
        );
        for searched in [
            serde_json::json!({"type": "cron", "hour": 3}),
            serde_json::json!({"type": "interval", "minutes": 5}),
            serde_json::json!({"type": "calendarinterval", "months": 1}),
        ] {
            assert!(
                spec(searched.clone()).searches_for_fire_times(),
                "{searched}"
            );
        }
    }
}
