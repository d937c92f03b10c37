//! Property tests of the calendar triggers (`cron`, `crontab`) and of how triggers take
//! bad input.
//!
//! Random but valid expressions are built together with their meaning, and a small,
//! independent brute-force matcher (written from docs/semantics.md, not from kairos's code)
//! checks kairos's fire times against it: they strictly increase, each one matches (or
//! is the first instant after a spring-forward gap that swallowed a match), and no
//! matching instant between two of them is left out. Zones with DST (New York, London,
//! Lord Howe's half-hour shift, Apia's lost day) are converted with chrono-tz directly.
//! Random text and random JSON must give a one-line `field: reason` error, never a
//! panic, and a built trigger survives a JSON round trip.

#![allow(clippy::unwrap_used)]

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use kairos::trigger::words::spec_from_words;
use kairos::trigger::{Trigger, TriggerContext, TriggerError, TriggerSpec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Expressions and what they mean
// ---------------------------------------------------------------------------------------

/// The meaning of one item of a comma-separated field.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sem {
    /// `first..=last` every `step` (`*`, `*/n`, `a`, `a-b`, `a-b/n` and `a/n` all are).
    Range { first: u32, last: u32, step: u32 },
    /// `last`: the last day of the month.
    LastDay,
    /// `2nd mon` (nth 0..=4) or `last mon` (nth 5); weekday 0 = Monday.
    Nth { nth: u32, weekday: u32 },
}

/// One field as written, with its meaning.
#[derive(Clone, Debug)]
struct Field {
    text: String,
    items: Vec<Sem>,
}

impl Field {
    fn range(text: &str, first: u32, last: u32) -> Field {
        Field {
            text: text.to_owned(),
            items: vec![Sem::Range {
                first,
                last,
                step: 1,
            }],
        }
    }

    /// Whether a plain value is in the field (positions are ignored).
    fn has(&self, value: u32) -> bool {
        self.items.iter().any(|item| match *item {
            Sem::Range { first, last, step } => {
                value >= first && value <= last && (value - first) % step == 0
            }
            _ => false,
        })
    }

    /// Whether the day field matches `date` (APScheduler's `last`, `2nd mon`, `last fri`).
    fn has_day(&self, date: NaiveDate) -> bool {
        let day = date.day();
        let last = days_in_month(date.year(), date.month());
        let weekday = date.weekday().num_days_from_monday();
        self.has(day)
            || self.items.iter().any(|item| match *item {
                Sem::LastDay => day == last,
                Sem::Nth { nth, weekday: want } => {
                    weekday == want
                        && if nth == 5 {
                            day + 7 > last
                        } else {
                            (day - 1) / 7 == nth
                        }
                }
                Sem::Range { .. } => false,
            })
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .unwrap()
        .pred_opt()
        .unwrap()
        .day()
}

/// The lexical shape of a field: bounds, the values to generate, names, rules.
#[derive(Clone, Copy, Debug)]
struct Syntax {
    min: u32,
    max: u32,
    /// Values are generated in `lo..=hi` (years would otherwise mostly lie past 2100).
    lo: u32,
    hi: u32,
    names: &'static [&'static str],
    full_names: &'static [&'static str],
    names_base: u32,
    /// APScheduler refuses a step larger than the range it steps over.
    aps: bool,
    /// `last`, `last fri`, `2nd mon` (APScheduler's day field).
    positions: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const MONTHS_FULL: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const MONDAY_FIRST: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MONDAY_FIRST_FULL: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const SUNDAY_FIRST: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SUNDAY_FIRST_FULL: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

const fn numeric(min: u32, max: u32, aps: bool) -> Syntax {
    Syntax {
        min,
        max,
        lo: min,
        hi: max,
        names: &[],
        full_names: &[],
        names_base: 0,
        aps,
        positions: false,
    }
}

const APS_YEAR: Syntax = Syntax {
    lo: 1985,
    hi: 2075,
    ..numeric(1970, 9999, true)
};
const APS_MONTH: Syntax = Syntax {
    names: &MONTHS,
    full_names: &MONTHS_FULL,
    names_base: 1,
    ..numeric(1, 12, true)
};
const APS_DAY: Syntax = Syntax {
    positions: true,
    ..numeric(1, 31, true)
};
const APS_WEEK: Syntax = numeric(1, 53, true);
const APS_DAY_OF_WEEK: Syntax = Syntax {
    names: &MONDAY_FIRST,
    full_names: &MONDAY_FIRST_FULL,
    names_base: 0,
    ..numeric(0, 6, true)
};
const APS_HOUR: Syntax = numeric(0, 23, true);
const APS_MINUTE: Syntax = numeric(0, 59, true);
const APS_SECOND: Syntax = numeric(0, 59, true);

const TAB_MINUTE: Syntax = numeric(0, 59, false);
const TAB_HOUR: Syntax = numeric(0, 23, false);
const TAB_DAY: Syntax = numeric(1, 31, false);
const TAB_MONTH: Syntax = Syntax {
    aps: false,
    ..APS_MONTH
};
const TAB_DAY_OF_WEEK: Syntax = Syntax {
    names: &SUNDAY_FIRST,
    full_names: &SUNDAY_FIRST_FULL,
    names_base: 0,
    ..numeric(0, 7, false)
};

/// A value as a number or, where the field has a name for it, as a name in some case.
fn render(syntax: &Syntax, value: u32, style: (u8, u8)) -> String {
    let index = value.wrapping_sub(syntax.names_base) as usize;
    let name = match style.0 {
        1 => syntax.names.get(index),
        2 => syntax.full_names.get(index),
        _ => None,
    };
    match name {
        None => value.to_string(),
        Some(name) => match style.1 {
            1 => name.to_uppercase(),
            2 => {
                let mut chars = name.chars();
                let first = chars.next().unwrap().to_ascii_uppercase();
                std::iter::once(first).chain(chars).collect()
            }
            _ => (*name).to_owned(),
        },
    }
}

fn name_style() -> impl Strategy<Value = (u8, u8)> {
    (
        prop_oneof![3 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
        0u8..3,
    )
}

/// One item of a field, valid for `syntax`, with its meaning.
fn item(syntax: Syntax) -> BoxedStrategy<(String, Sem)> {
    let s = syntax;
    let all = Sem::Range {
        first: s.min,
        last: s.max,
        step: 1,
    };
    // APScheduler: a step may not exceed the span; Vixie cron takes any step.
    let star_steps = if s.aps {
        (s.max - s.min).min(40)
    } else {
        s.max - s.min + 3
    };
    let star = Just(("*".to_owned(), all)).boxed();
    let star_step = (1..=star_steps)
        .prop_map(move |step| {
            (
                format!("*/{step}"),
                Sem::Range {
                    first: s.min,
                    last: s.max,
                    step,
                },
            )
        })
        .boxed();
    let value = (s.lo..=s.hi, name_style())
        .prop_map(move |(v, style)| {
            (
                render(&s, v, style),
                Sem::Range {
                    first: v,
                    last: v,
                    step: 1,
                },
            )
        })
        .boxed();
    let range = (s.lo..=s.hi, any::<u32>(), name_style())
        .prop_map(move |(a, r, style)| {
            let b = a + r % (s.hi - a + 1);
            (
                format!("{}-{}", render(&s, a, style), render(&s, b, style)),
                Sem::Range {
                    first: a,
                    last: b,
                    step: 1,
                },
            )
        })
        .boxed();
    let range_step = (s.lo..s.hi, any::<u32>(), any::<u32>())
        .prop_map(move |(a, r, q)| {
            let b = a + 1 + r % (s.hi - a);
            let span = b - a;
            let cap = if s.aps { span } else { span + 3 };
            let step = 1 + q % cap.min(40);
            (
                format!("{a}-{b}/{step}"),
                Sem::Range {
                    first: a,
                    last: b,
                    step,
                },
            )
        })
        .boxed();
    let from_step = (s.lo..s.hi, any::<u32>())
        .prop_map(move |(a, q)| {
            let span = s.max - a;
            let cap = if s.aps { span } else { span + 3 };
            let step = 1 + q % cap.min(40);
            (
                format!("{a}/{step}"),
                Sem::Range {
                    first: a,
                    last: s.max,
                    step,
                },
            )
        })
        .boxed();
    if !s.positions {
        return prop_oneof![
            1 => star,
            2 => star_step,
            5 => value,
            2 => range,
            2 => range_step,
            1 => from_step,
        ]
        .boxed();
    }
    let last = Just(("last".to_owned(), Sem::LastDay)).boxed();
    let nth = (0u32..6, 0u32..7, 0u8..2, 0u8..3)
        .prop_map(|(nth, weekday, full, case)| {
            let position = ["1st", "2nd", "3rd", "4th", "5th", "last"][nth as usize];
            let syntax = APS_DAY_OF_WEEK;
            let name = render(&syntax, weekday, (1 + full, case));
            (format!("{position} {name}"), Sem::Nth { nth, weekday })
        })
        .boxed();
    prop_oneof![
        1 => star,
        2 => star_step,
        5 => value,
        2 => range,
        2 => range_step,
        1 => from_step,
        1 => last,
        2 => nth,
    ]
    .boxed()
}

/// A whole field: one to three items.
fn field(syntax: Syntax) -> BoxedStrategy<Field> {
    prop::collection::vec(item(syntax), 1..=3)
        .prop_map(|items| Field {
            text: items
                .iter()
                .map(|(text, _)| text.as_str())
                .collect::<Vec<_>>()
                .join(","),
            items: items.into_iter().map(|(_, sem)| sem).collect(),
        })
        .boxed()
}

/// An hour field, often one that hits the hours in which the test zones change their
/// clocks (01:00-04:00), so that folds and gaps come up.
fn transition_hours(syntax: Syntax) -> BoxedStrategy<Field> {
    let near = prop::sample::select(vec![
        ("1", 1, 1, 1),
        ("2", 2, 2, 1),
        ("3", 3, 3, 1),
        ("1-3", 1, 3, 1),
        ("0-4/2", 0, 4, 2),
        ("1/1", 1, 23, 1),
        ("2-3", 2, 3, 1),
    ])
    .prop_map(|(text, first, last, step)| Field {
        text: text.to_owned(),
        items: vec![Sem::Range { first, last, step }],
    });
    prop_oneof![3 => field(syntax), 1 => near].boxed()
}

/// What the brute-force checks need from an expression.
trait Expression: std::fmt::Debug {
    /// Every field but the second matches `civil`.
    fn minute_matches(&self, civil: NaiveDateTime) -> bool;
    /// The second field matches `second`.
    fn second_matches(&self, second: u32) -> bool;
    /// The hour field matches all 24 hours: the expression fires in both passes of a fold.
    fn all_hours(&self) -> bool;

    fn matches(&self, civil: NaiveDateTime) -> bool {
        self.minute_matches(civil) && self.second_matches(civil.second())
    }

    /// Whether some civil time in `from..to` (whole seconds) matches.
    fn any_match_in(&self, from: NaiveDateTime, to: NaiveDateTime) -> bool {
        let mut minute = from.with_second(0).unwrap();
        while minute < to {
            if self.minute_matches(minute) {
                for second in 0..60 {
                    let civil = minute + TimeDelta::seconds(i64::from(second));
                    if civil >= from && civil < to && self.second_matches(second) {
                        return true;
                    }
                }
            }
            minute += TimeDelta::minutes(1);
        }
        false
    }
}

const CRON_FIELDS: [&str; 8] = [
    "year",
    "month",
    "day",
    "week",
    "day_of_week",
    "hour",
    "minute",
    "second",
];

/// A `cron` trigger's fields (APScheduler 3.x semantics).
#[derive(Clone, Debug)]
struct CronExpr {
    given: Vec<Option<Field>>,
    /// The fields in force: given, or `*` when coarser than the finest given field, or the
    /// field's minimum when finer.
    effective: Vec<Field>,
}

impl CronExpr {
    fn new(given: Vec<Option<Field>>) -> CronExpr {
        let finest = given.iter().rposition(Option::is_some);
        let star = |index: usize| {
            let syntax = [
                APS_YEAR,
                APS_MONTH,
                APS_DAY,
                APS_WEEK,
                APS_DAY_OF_WEEK,
                APS_HOUR,
                APS_MINUTE,
                APS_SECOND,
            ][index];
            Field::range("*", syntax.min, syntax.max)
        };
        let effective = (0..8)
            .map(|index| match (&given[index], finest) {
                (Some(field), _) => field.clone(),
                (None, Some(finest)) if index > finest => match index {
                    1 | 2 => Field::range("1", 1, 1),
                    5..=7 => Field::range("0", 0, 0),
                    _ => star(index),
                },
                _ => star(index),
            })
            .collect();
        CronExpr { given, effective }
    }

    fn words(&self, zone: &str) -> Vec<String> {
        let mut words: Vec<String> = self
            .given
            .iter()
            .zip(CRON_FIELDS)
            .filter_map(|(field, name)| {
                field.as_ref().map(|field| format!("{name}={}", field.text))
            })
            .collect();
        words.push(format!("timezone={zone}"));
        words
    }
}

impl Expression for CronExpr {
    fn minute_matches(&self, civil: NaiveDateTime) -> bool {
        let f = &self.effective;
        let date = civil.date();
        f[0].has(civil.year() as u32)
            && f[1].has(civil.month())
            && f[2].has_day(date)
            && f[3].has(date.iso_week().week())
            && f[4].has(date.weekday().num_days_from_monday())
            && f[5].has(civil.hour())
            && f[6].has(civil.minute())
    }

    fn second_matches(&self, second: u32) -> bool {
        self.effective[7].has(second)
    }

    fn all_hours(&self) -> bool {
        (0..24).all(|hour| self.effective[5].has(hour))
    }
}

fn cron_expr() -> impl Strategy<Value = CronExpr> {
    (
        prop::option::weighted(0.15, field(APS_YEAR)),
        prop::option::weighted(0.3, field(APS_MONTH)),
        prop::option::weighted(0.35, field(APS_DAY)),
        prop::option::weighted(0.1, field(APS_WEEK)),
        prop::option::weighted(0.35, field(APS_DAY_OF_WEEK)),
        prop::option::weighted(0.5, transition_hours(APS_HOUR)),
        prop::option::weighted(0.5, field(APS_MINUTE)),
        prop::option::weighted(0.4, field(APS_SECOND)),
    )
        .prop_map(|(year, month, day, week, dow, hour, minute, second)| {
            CronExpr::new(vec![year, month, day, week, dow, hour, minute, second])
        })
}

/// A crontab line (Vixie cron semantics) and its fields.
#[derive(Clone, Debug)]
struct CrontabExpr {
    line: String,
    /// minute, hour, day of month, month, day of week (0 and 7 = Sunday).
    fields: Vec<Field>,
}

impl CrontabExpr {
    fn day_fields_star(&self) -> bool {
        self.fields[2].text.starts_with('*') || self.fields[4].text.starts_with('*')
    }

    /// Whether the line can never fire (kairos refuses such lines).
    fn day_never_occurs(&self) -> bool {
        self.day_fields_star()
            && !(1..=12).any(|month| {
                self.fields[3].has(month)
                    && (1..=days_in_month(2024, month)).any(|day| self.fields[2].has(day))
            })
    }
}

impl Expression for CrontabExpr {
    fn minute_matches(&self, civil: NaiveDateTime) -> bool {
        let f = &self.fields;
        let weekday = civil.weekday().num_days_from_sunday();
        let day_of_month = f[2].has(civil.day());
        let day_of_week = f[4].has(weekday) || (weekday == 0 && f[4].has(7));
        // Vixie: a day field starting with `*` makes the two AND, otherwise they OR.
        let day = if self.day_fields_star() {
            day_of_month && day_of_week
        } else {
            day_of_month || day_of_week
        };
        f[0].has(civil.minute()) && f[1].has(civil.hour()) && f[3].has(civil.month()) && day
    }

    fn second_matches(&self, second: u32) -> bool {
        second == 0
    }

    fn all_hours(&self) -> bool {
        (0..24).all(|hour| self.fields[1].has(hour))
    }
}

fn crontab_expr() -> impl Strategy<Value = CrontabExpr> {
    let separator = prop::sample::select(vec![" ", "  ", "\t", " \t "]);
    let line = (
        field(TAB_MINUTE),
        transition_hours(TAB_HOUR),
        // Day fields: often `*` so that the AND and OR cases both come up.
        prop_oneof![1 => Just(Field::range("*", 1, 31)), 2 => field(TAB_DAY)],
        prop_oneof![1 => Just(Field::range("*", 1, 12)), 1 => field(TAB_MONTH)],
        prop_oneof![1 => Just(Field::range("*", 0, 7)), 2 => field(TAB_DAY_OF_WEEK)],
        separator,
        prop::sample::select(vec!["", " "]),
    )
        .prop_map(|(minute, hour, day, month, dow, separator, pad)| {
            let fields = vec![minute, hour, day, month, dow];
            let line = fields
                .iter()
                .map(|field| field.text.as_str())
                .collect::<Vec<_>>()
                .join(separator);
            CrontabExpr {
                line: format!("{pad}{line}{pad}"),
                fields,
            }
        });
    let zero = |text: &str, value: u32| Field::range(text, value, value);
    let macros = prop::sample::select(vec![
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@DAILY",
        "@Weekly",
    ])
    .prop_map(move |name| {
        let star = |min, max| Field::range("*", min, max);
        let fields = match name.to_ascii_lowercase().as_str() {
            "@hourly" => vec![
                zero("0", 0),
                star(0, 23),
                star(1, 31),
                star(1, 12),
                star(0, 7),
            ],
            "@daily" | "@midnight" => {
                vec![
                    zero("0", 0),
                    zero("0", 0),
                    star(1, 31),
                    star(1, 12),
                    star(0, 7),
                ]
            }
            "@weekly" => vec![
                zero("0", 0),
                zero("0", 0),
                star(1, 31),
                star(1, 12),
                zero("0", 0),
            ],
            "@monthly" => vec![
                zero("0", 0),
                zero("0", 0),
                zero("1", 1),
                star(1, 12),
                star(0, 7),
            ],
            _ => vec![
                zero("0", 0),
                zero("0", 0),
                zero("1", 1),
                zero("1", 1),
                star(0, 7),
            ],
        };
        CrontabExpr {
            line: name.to_owned(),
            fields,
        }
    });
    prop_oneof![12 => line, 1 => macros]
}

// ---------------------------------------------------------------------------------------
// Zones and instants, with chrono-tz directly
// ---------------------------------------------------------------------------------------

const ZONES: [&str; 6] = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "UTC",
    "Asia/Kolkata",
];

/// Zone `name`, with the engine on the compiled-in zone rules: this oracle reads
/// chrono-tz's, and chrono-tz's tables end with 2099, where the system's TZif files (the
/// engine's rules when the system has them) go on with DST. The DST rules themselves
/// hold on both sources: tests/dst.rs, tests/differential_cron.rs and
/// tests/conformance.rs run on each (.ci/run), and trigger/zone.rs compares the two.
fn tz(name: &str) -> Tz {
    static COMPILED_IN: std::sync::Once = std::sync::Once::new();
    COMPILED_IN.call_once(|| {
        kairos::trigger::tzdata::use_rules_from(None);
    });
    name.parse().unwrap()
}

fn seconds(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap()
}

fn offset(zone: Tz, instant: DateTime<Utc>) -> i32 {
    zone.offset_from_utc_datetime(&instant.naive_utc())
        .fix()
        .local_minus_utc()
}

fn local(zone: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&zone).naive_local()
}

/// Whether `instant` is the second occurrence of its wall-clock time (a fall-back fold).
fn in_second_pass(zone: Tz, instant: DateTime<Utc>) -> bool {
    match zone.from_local_datetime(&local(zone, instant)) {
        LocalResult::Ambiguous(a, b) => {
            let later = a.with_timezone(&Utc).max(b.with_timezone(&Utc));
            later == instant && a != b
        }
        _ => false,
    }
}

/// When `instant` is the first instant after a spring-forward gap: the civil times the
/// gap swallowed (`from..to`).
fn gap_before(zone: Tz, instant: DateTime<Utc>) -> Option<(NaiveDateTime, NaiveDateTime)> {
    let before = instant - TimeDelta::seconds(1);
    (offset(zone, instant) > offset(zone, before)).then(|| {
        (
            local(zone, before) + TimeDelta::seconds(1),
            local(zone, instant),
        )
    })
}

/// The first instant after `after` (within about two years) with another offset.
fn next_transition(zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let start = offset(zone, after);
    let mut low = after.timestamp();
    let mut high = (1..=110)
        .map(|week| low + week * 7 * 86_400)
        .find(|t| offset(zone, seconds(*t)) != start)?;
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if offset(zone, seconds(middle)) == start {
            low = middle;
        } else {
            high = middle;
        }
    }
    Some(seconds(high))
}

/// Where a search starts: a random instant in 1990..2060, or one shortly before a
/// transition of the zone (`back` seconds before it).
#[derive(Clone, Debug)]
struct Start {
    base: i64,
    micros: u32,
    back: Option<i64>,
}

const Y1990: i64 = 631_152_000;
const Y2060: i64 = 2_840_140_800;
const Y2010: i64 = 1_262_304_000;
const Y2021: i64 = 1_609_459_200;

fn start() -> impl Strategy<Value = Start> {
    let back = prop_oneof![
        1 => 0i64..=3,
        1 => 0i64..=120,
        1 => 0i64..=7_200,
        1 => 0i64..=172_800,
    ];
    (
        Y1990..Y2060,
        prop_oneof![3 => Just(0u32), 1 => 0u32..1_000_000],
        prop::option::weighted(0.6, back),
    )
        .prop_map(|(base, micros, back)| Start { base, micros, back })
}

impl Start {
    fn instant(&self, zone: Tz) -> DateTime<Utc> {
        let mut base = self.base;
        if let Some(back) = self.back {
            // Apia only had DST from 2010 to 2021 (and lost 2011-12-30).
            if zone == chrono_tz::Pacific::Apia {
                base = Y2010 + (base - Y1990) % (Y2021 - Y2010);
            }
            if let Some(transition) = next_transition(zone, seconds(base)) {
                base = transition.timestamp() - back;
            }
        }
        DateTime::from_timestamp(base, self.micros * 1_000).unwrap()
    }
}

fn ceil_second(instant: DateTime<Utc>) -> DateTime<Utc> {
    if instant.nanosecond() == 0 {
        instant
    } else {
        instant.with_nanosecond(0).unwrap() + TimeDelta::seconds(1)
    }
}

// ---------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------

/// Whether docs/semantics.md says `instant` is a fire time of `expr` in `zone`: its civil time
/// matches (in the second pass of a fold only if every hour matches), or it is the first
/// instant after a gap that swallowed a match.
fn should_fire(expr: &dyn Expression, zone: Tz, instant: DateTime<Utc>) -> bool {
    let civil = local(zone, instant);
    if expr.matches(civil) && (expr.all_hours() || !in_second_pass(zone, instant)) {
        return true;
    }
    gap_before(zone, instant).is_some_and(|(from, to)| expr.any_match_in(from, to))
}

fn show(zone: Tz, instant: DateTime<Utc>) -> String {
    instant.with_timezone(&zone).to_rfc3339()
}

fn check_increasing(
    fires: &[DateTime<Utc>],
    from: DateTime<Utc>,
    zone: Tz,
) -> Result<(), TestCaseError> {
    if let Some(first) = fires.first() {
        prop_assert!(
            *first >= from,
            "first fire {} before from {}",
            show(zone, *first),
            show(zone, from)
        );
    }
    for fire in fires {
        prop_assert_eq!(fire.nanosecond(), 0, "not a whole second: {}", fire);
    }
    for pair in fires.windows(2) {
        prop_assert!(
            pair[0] < pair[1],
            "fire times do not strictly increase: {} then {}",
            show(zone, pair[0]),
            show(zone, pair[1])
        );
    }
    Ok(())
}

fn check_matches(
    expr: &dyn Expression,
    fires: &[DateTime<Utc>],
    zone: Tz,
) -> Result<(), TestCaseError> {
    for fire in fires {
        prop_assert!(
            should_fire(expr, zone, *fire),
            "fire time {} (civil {}) does not match{}",
            show(zone, *fire),
            local(zone, *fire),
            if in_second_pass(zone, *fire) {
                " (it is in the second pass of a fold)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// No instant in `[from, first)` or between two consecutive fire times should have fired.
/// Gaps longer than two days are not searched; `budget` caps the seconds searched.
fn check_nothing_skipped(
    expr: &dyn Expression,
    fires: &[DateTime<Utc>],
    from: DateTime<Utc>,
    zone: Tz,
    mut budget: i64,
) -> Result<(), TestCaseError> {
    let mut spans = Vec::new();
    if let Some(first) = fires.first() {
        spans.push((ceil_second(from), *first));
    }
    for pair in fires.windows(2) {
        spans.push((pair[0] + TimeDelta::seconds(1), pair[1]));
    }
    for (low, high) in spans {
        let length = (high - low).num_seconds();
        if length > 2 * 86_400 || length > budget {
            continue;
        }
        budget -= length;
        if let Some(missed) = first_should_fire(expr, zone, low, high) {
            prop_assert!(
                false,
                "{} (civil {}) should have fired: it lies between {} and {}",
                show(zone, missed),
                local(zone, missed),
                show(zone, low),
                show(zone, high)
            );
        }
    }
    Ok(())
}

/// The first whole-second instant in `low..high` that should fire. Works a UTC minute
/// at a time when the offset is constant (one civil minute), a second at a time when not.
fn first_should_fire(
    expr: &dyn Expression,
    zone: Tz,
    low: DateTime<Utc>,
    high: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut previous_offset = offset(zone, low - TimeDelta::seconds(1));
    let mut t = low.timestamp();
    let end = high.timestamp();
    while t < end {
        let chunk_end = ((t / 60) + 1) * 60;
        let chunk_end = chunk_end.min(end);
        let first = offset(zone, seconds(t));
        let last = offset(zone, seconds(chunk_end - 1));
        let steady = first == previous_offset && first == last && first % 60 == 0;
        if !steady || expr.minute_matches(local(zone, seconds(t))) {
            for second in t..chunk_end {
                if should_fire(expr, zone, seconds(second)) {
                    return Some(seconds(second));
                }
            }
        }
        previous_offset = last;
        t = chunk_end;
    }
    None
}

/// Searching again from any fire time finds that same fire time, and from the one
/// before it finds the next: the fire times do not depend on where a search starts.
fn check_restartable(
    trigger: &Trigger,
    fires: &[DateTime<Utc>],
    zone: Tz,
) -> Result<(), TestCaseError> {
    for (index, fire) in fires.iter().enumerate() {
        if gap_before(zone, *fire).is_some() {
            // Known: a search that starts at the end of a gap misses the gap's matches
            // (see `search_from_the_end_of_a_gap_finds_the_gap_fire`).
            continue;
        }
        prop_assert_eq!(
            trigger.next_fire_time(None, *fire),
            Some(*fire),
            "a search from fire time {} does not find it",
            show(zone, *fire)
        );
        if let Some(next) = fires.get(index + 1) {
            prop_assert_eq!(trigger.next_fire_time(Some(*fire), *fire), Some(*next));
        }
    }
    Ok(())
}

fn build(kind: &str, words: &[String], from: DateTime<Utc>) -> Result<Trigger, TriggerError> {
    let spec = spec_from_words(kind, words)?;
    Trigger::new(spec, &TriggerContext::new(from))
}

/// A built trigger, its zone, where the search started and the fire times found.
type Case = (Trigger, Tz, DateTime<Utc>, Vec<DateTime<Utc>>);

fn cron_case(expr: &CronExpr, zone_name: &str, start: &Start) -> Result<Case, TestCaseError> {
    let zone = tz(zone_name);
    let from = start.instant(zone);
    let words = expr.words(zone_name);
    let trigger = build("cron", &words, from)
        .map_err(|error| TestCaseError::fail(format!("{words:?} refused: {error}")))?;
    prop_assert_eq!(trigger.timezone().name(), zone_name);
    let fires: Vec<_> = trigger.fire_times(from).take(20).collect();
    Ok((trigger, zone, from, fires))
}

/// `None` when kairos rightly refuses the line (a day that never occurs).
fn crontab_case(
    expr: &CrontabExpr,
    zone_name: &str,
    start: &Start,
) -> Result<Option<Case>, TestCaseError> {
    let zone = tz(zone_name);
    let from = start.instant(zone);
    let words = vec![expr.line.clone(), format!("timezone={zone_name}")];
    let trigger = match build("crontab", &words, from) {
        Ok(trigger) => trigger,
        Err(error) if expr.day_never_occurs() && error.field() == "day" => return Ok(None),
        Err(error) => {
            return Err(TestCaseError::fail(format!("{words:?} refused: {error}")));
        }
    };
    prop_assert!(
        !expr.day_never_occurs(),
        "{:?} never fires but was accepted",
        expr.line
    );
    let fires: Vec<_> = trigger.fire_times(from).take(20).collect();
    Ok(Some((trigger, zone, from, fires)))
}

fn zone_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(ZONES.to_vec())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn cron_fire_times_strictly_increase(expr in cron_expr(), zone in zone_name(), start in start()) {
        let (_, zone, from, fires) = cron_case(&expr, zone, &start)?;
        check_increasing(&fires, from, zone)?;
    }

    #[test]
    fn cron_fire_times_match_the_expression(expr in cron_expr(), zone in zone_name(), start in start()) {
        let (trigger, zone, _, fires) = cron_case(&expr, zone, &start)?;
        check_matches(&expr, &fires, zone)?;
        check_restartable(&trigger, &fires, zone)?;
    }

    #[test]
    fn crontab_fire_times_strictly_increase_and_match(expr in crontab_expr(), zone in zone_name(), start in start()) {
        if let Some((trigger, zone, from, fires)) = crontab_case(&expr, zone, &start)? {
            check_increasing(&fires, from, zone)?;
            check_matches(&expr, &fires, zone)?;
            check_restartable(&trigger, &fires, zone)?;
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn cron_skips_no_matching_instant(expr in cron_expr(), zone in zone_name(), start in start()) {
        let (_, zone, from, fires) = cron_case(&expr, zone, &start)?;
        check_nothing_skipped(&expr, &fires, from, zone, 3 * 86_400)?;
    }

    #[test]
    fn crontab_skips_no_matching_instant(expr in crontab_expr(), zone in zone_name(), start in start()) {
        if let Some((_, zone, from, fires)) = crontab_case(&expr, zone, &start)? {
            check_nothing_skipped(&expr, &fires, from, zone, 3 * 86_400)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Windows, intervals and calendar intervals
// ---------------------------------------------------------------------------------------

/// `start_date`/`end_date` as users write them: an instant with `Z` (sometimes with a
/// fraction), or the civil time in the trigger's zone when that civil time is unique.
fn write_instant(zone: Tz, instant: DateTime<Utc>, civil: bool) -> String {
    let local_time = local(zone, instant);
    if civil
        && instant.nanosecond() == 0
        && matches!(
            zone.from_local_datetime(&local_time),
            LocalResult::Single(_)
        )
    {
        local_time.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
}

/// Where a civil date-time fires under docs/semantics.md's rules for a once-a-day wall-clock
/// time: itself, its first pass in a fold, the first instant after a gap.
fn localize(zone: Tz, civil: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&civil) {
        LocalResult::Single(instant) => instant.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
        LocalResult::None => next_transition(zone, (civil - TimeDelta::days(2)).and_utc()).unwrap(),
    }
}

/// `date` plus `months` calendar months, on the same day or the month's last day.
fn add_months(date: NaiveDate, months: u32) -> Option<NaiveDate> {
    let index = i64::from(date.year()) * 12 + i64::from(date.month0()) + i64::from(months);
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
    if year > 9999 {
        return None;
    }
    NaiveDate::from_ymd_opt(year, month, date.day().min(days_in_month(year, month)))
}

proptest! {
    #![proptest_config(config(256))]

    /// A window only cuts fire times off: inside it they are those of the same trigger
    /// without a window.
    #[test]
    fn a_window_only_cuts_fire_times(
        expr in cron_expr(),
        zone_name in zone_name(),
        start in start(),
        shift in -3 * 86_400i64..3 * 86_400,
        length in 0i64..5 * 86_400,
        (civil_start, civil_end, fraction) in (any::<bool>(), any::<bool>(), prop_oneof![3 => Just(0u32), 1 => 1u32..1_000_000]),
    ) {
        let zone = tz(zone_name);
        let from = start.instant(zone);
        let window_start = from + TimeDelta::seconds(shift) + TimeDelta::microseconds(i64::from(fraction));
        let window_end = window_start + TimeDelta::seconds(length);
        let mut words = expr.words(zone_name);
        let plain = build("cron", &words, from)
            .map_err(|error| TestCaseError::fail(format!("{words:?}: {error}")))?;
        words.push(format!("start_date={}", write_instant(zone, window_start, civil_start)));
        words.push(format!("end_date={}", write_instant(zone, window_end, civil_end)));
        let windowed = build("cron", &words, from)
            .map_err(|error| TestCaseError::fail(format!("{words:?}: {error}")))?;
        let got: Vec<_> = windowed.fire_times(from).take(20).collect();
        let expected: Vec<_> = plain
            .fire_times(from.max(window_start))
            .take_while(|fire| *fire <= window_end)
            .take(20)
            .collect();
        prop_assert_eq!(got, expected, "{:?}", words);
    }

    /// Interval fire times are the grid `start + k * interval`, from the first point at or
    /// after `from`, up to `end_date`.
    #[test]
    fn interval_fire_times_lie_on_the_grid(
        (weeks, days, hours, minutes, secs) in (0u64..2, 0u64..3, 0u64..30, 0u64..90, 0u64..100),
        start in start(),
        zone_name in zone_name(),
        offset_steps in -50i64..50,
        micros in 0i64..1_000_000,
        civil_start in any::<bool>(),
        end_steps in prop::option::of(0i64..60),
    ) {
        let interval = ((weeks * 7 + days) * 24 + hours) * 3_600 + minutes * 60 + secs;
        prop_assume!(interval > 0);
        let interval = TimeDelta::seconds(interval as i64);
        let zone = tz(zone_name);
        let grid_start = start.instant(zone) + TimeDelta::microseconds(micros);
        let from = grid_start + interval * (offset_steps as i32) + TimeDelta::microseconds(micros / 3);
        let mut words = vec![
            format!("weeks={weeks}"), format!("days={days}"), format!("hours={hours}"),
            format!("minutes={minutes}"), format!("seconds={secs}"),
            format!("start_date={}", write_instant(zone, grid_start, civil_start)),
            format!("timezone={zone_name}"),
        ];
        let end = end_steps.map(|steps| grid_start + interval * (steps as i32));
        if let Some(end) = end {
            words.push(format!("end_date={}", write_instant(zone, end, false)));
        }
        let trigger = build("interval", &words, from)
            .map_err(|error| TestCaseError::fail(format!("{words:?}: {error}")))?;
        let fires: Vec<_> = trigger.fire_times(from).take(10).collect();
        let mut expected = Vec::new();
        let mut k = 0;
        while expected.len() < 10 {
            let point = grid_start + interval * k;
            k += 1;
            if end.is_some_and(|end| point > end) {
                break;
            }
            if point >= from {
                expected.push(point);
            }
        }
        prop_assert_eq!(fires, expected, "{:?}", words);
    }

    /// A calendar interval fires at its wall-clock time on `start + n * step` (month steps
    /// clamped to the month's end), under the DST rules: once in a fold, at the first
    /// instant after a gap.
    #[test]
    fn calendar_interval_keeps_its_wall_clock_time(
        (years, months, weeks, days) in (0u32..2, 0u32..14, 0u32..3, 0u32..40),
        hour in prop_oneof![1 => 0u32..24, 1 => 1u32..4],
        minute in prop_oneof![1 => 0u32..60, 1 => Just(30u32)],
        second in prop_oneof![1 => 0u32..60, 2 => Just(0u32)],
        start in start(),
        back_days in 0i64..3_000,
        zone_name in zone_name(),
    ) {
        prop_assume!(years + months + weeks + days > 0);
        let zone = tz(zone_name);
        let from = start.instant(zone);
        let first_date = local(zone, from).date() - TimeDelta::days(back_days);
        let words = vec![
            format!("years={years}"), format!("months={months}"), format!("weeks={weeks}"),
            format!("days={days}"), format!("hour={hour}"), format!("minute={minute}"),
            format!("second={second}"), format!("start_date={first_date}"),
            format!("timezone={zone_name}"),
        ];
        let trigger = build("calendarinterval", &words, from)
            .map_err(|error| TestCaseError::fail(format!("{words:?}: {error}")))?;
        let fires: Vec<_> = trigger.fire_times(from).take(12).collect();
        let time = chrono::NaiveTime::from_hms_opt(hour, minute, second).unwrap();
        let step_months = years * 12 + months;
        let step_days = weeks * 7 + days;
        let mut expected = Vec::new();
        let mut n = 0u32;
        while expected.len() < 12 {
            let Some(date) = add_months(first_date, step_months * n)
                .and_then(|date| date.checked_add_signed(TimeDelta::days(i64::from(step_days * n))))
            else {
                break;
            };
            n += 1;
            if date.year() > 9000 {
                break;
            }
            let fire = localize(zone, date.and_time(time));
            if fire >= ceil_second(from) && expected.last().is_none_or(|last| fire > *last) {
                expected.push(fire);
            }
        }
        prop_assert_eq!(
            fires.iter().map(|fire| show(zone, *fire)).collect::<Vec<_>>(),
            expected.iter().map(|fire| show(zone, *fire)).collect::<Vec<_>>(),
            "{:?} from {}", words, show(zone, from)
        );
    }
}

/// A field in the plain grammar (numbers, `*`, ranges, steps, lists), read independently.
fn plain_field(text: &str, min: u32, max: u32) -> Field {
    let items = text
        .split(',')
        .map(|part| {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, step.parse().unwrap()),
                None => (part, 1),
            };
            let (first, last) = match range.split_once('-') {
                _ if range == "*" => (min, max),
                Some((first, last)) => (first.parse().unwrap(), last.parse().unwrap()),
                None if part.contains('/') => (range.parse().unwrap(), max),
                None => (range.parse().unwrap(), range.parse().unwrap()),
            };
            Sem::Range { first, last, step }
        })
        .collect();
    Field {
        text: text.to_owned(),
        items,
    }
}

/// Every transition of the DST zones in 2011 (Apia's lost day among them) and 2024, and
/// typical schedules started shortly before, at and after each: the same checks as the
/// random properties, at the places where they matter most.
#[test]
fn every_transition_of_2011_and_2024_passes_the_checks() {
    let bounds: [(u32, u32); 8] = [
        (1970, 9999),
        (1, 12),
        (1, 31),
        (1, 53),
        (0, 6),
        (0, 23),
        (0, 59),
        (0, 59),
    ];
    let cron = |fields: &[(usize, &str)]| {
        let mut given: Vec<Option<Field>> = vec![None; 8];
        for (index, text) in fields {
            let (min, max) = bounds[*index];
            given[*index] = Some(plain_field(text, min, max));
        }
        CronExpr::new(given)
    };
    let crons = [
        cron(&[(6, "*/15")]),
        cron(&[(5, "2"), (6, "30")]),
        cron(&[(6, "30")]),
        cron(&[(7, "59")]),
        cron(&[(5, "1-3"), (7, "*/20")]),
        cron(&[(5, "0")]),
        cron(&[(5, "*"), (6, "45"), (7, "30")]),
    ];
    let tab = |line: &str| {
        let bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
        let fields = line
            .split(' ')
            .zip(bounds)
            .map(|(text, (min, max))| plain_field(text, min, max))
            .collect();
        CrontabExpr {
            line: line.to_owned(),
            fields,
        }
    };
    let tabs = [
        tab("30 2 * * *"),
        tab("*/30 * * * *"),
        tab("0 * * * *"),
        tab("0 0 * * *"),
        tab("59 * * * *"),
        tab("45 1 * * *"),
        tab("0 2 * * 0"),
    ];
    let mut checked = 0;
    for zone_name in [
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Pacific/Apia",
    ] {
        let zone = tz(zone_name);
        for year_start in ["2011-01-01T00:00:00Z", "2024-01-01T00:00:00Z"] {
            let mut after: DateTime<Utc> = year_start.parse().unwrap();
            while let Some(transition) =
                next_transition(zone, after).filter(|t| t.year() == after.year())
            {
                after = transition;
                for back in [7_200, 1, 0, -1] {
                    let from = transition - TimeDelta::seconds(back);
                    let run =
                        |expr: &dyn Expression, trigger: Trigger| -> Result<(), TestCaseError> {
                            let fires: Vec<_> = trigger.fire_times(from).take(20).collect();
                            check_increasing(&fires, from, zone)?;
                            check_matches(expr, &fires, zone)?;
                            check_restartable(&trigger, &fires, zone)?;
                            check_nothing_skipped(expr, &fires, from, zone, 86_400)
                        };
                    for expr in &crons {
                        let trigger = build("cron", &expr.words(zone_name), from).unwrap();
                        run(expr, trigger).unwrap_or_else(|error| {
                            panic!("{expr:?} in {zone_name} from {from}: {error}")
                        });
                        checked += 1;
                    }
                    for expr in &tabs {
                        let words = vec![expr.line.clone(), format!("timezone={zone_name}")];
                        let trigger = build("crontab", &words, from).unwrap();
                        run(expr, trigger).unwrap_or_else(|error| {
                            panic!("{} in {zone_name} from {from}: {error}", expr.line)
                        });
                        checked += 1;
                    }
                }
            }
        }
    }
    // Two transitions a year in each zone, three in Apia's 2011, none in Apia's 2024.
    assert!(checked >= 14 * 4 * 14, "only {checked} runs");
}

// ---------------------------------------------------------------------------------------
// Bad input: errors, never panics
// ---------------------------------------------------------------------------------------

/// Text that is almost, or not at all, a valid value.
fn near_miss() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "1",
        "0",
        "7",
        "8",
        "13",
        "23",
        "24",
        "31",
        "32",
        "59",
        "60",
        "-",
        "*",
        "/",
        ",",
        " ",
        "  ",
        "last",
        "xyz",
        "mon",
        "jan",
        "sun",
        "5-3",
        "1-",
        "*/",
        "99999999999",
        "-1",
        "1/0",
        ",,",
        "1st",
        "5th",
        "6th",
        "last xyz",
        "?",
        "L",
        "#",
        "W",
        "@",
        "@daily",
        "@reboot",
        "=",
        "+",
        ":",
        ".",
        "T",
        "Z",
        "2024-03-10",
        "02:30",
        "9999-12-31",
        "0000-01-01",
        "+14:00",
        "-23:59",
        "1e9",
        "NaN",
        "inf",
        "1h",
        "30m",
        "s",
        "\t",
        "\n",
        "é",
        "٣",
        "１",
        "\u{0}",
        "\u{200b}",
        "ß",
        "İ",
        "🕐",
    ]);
    prop::collection::vec(tokens, 0..7).prop_map(|tokens| tokens.concat())
}

fn fuzz_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => near_miss(),
        2 => any::<String>(),
        2 => "[0-9a-z*/, @-]{0,14}",
    ]
}

/// A bad value must give `field: reason` on one line, with a non-empty field and reason
/// (`fields`: the fields that may be blamed).
fn check_error(error: &TriggerError, fields: &[&str], input: &str) -> Result<(), TestCaseError> {
    let shown = error.to_string();
    prop_assert!(
        !error.field().is_empty(),
        "no field in {:?} for {:?}",
        shown,
        input
    );
    prop_assert!(
        !error.reason().trim().is_empty(),
        "no reason in {:?} for {:?}",
        shown,
        input
    );
    prop_assert_eq!(&shown, &format!("{}: {}", error.field(), error.reason()));
    prop_assert!(
        fields.contains(&error.field()),
        "{:?} blames {:?}, expected one of {:?} (input {:?})",
        shown,
        error.field(),
        fields,
        input
    );
    Ok(())
}

/// The one-line rule of docs/semantics.md ("one line naming the field and the reason").
fn check_one_line(error: &TriggerError, input: &str) -> Result<(), TestCaseError> {
    let shown = error.to_string();
    prop_assert!(
        !shown.contains(['\n', '\r']),
        "error for {:?} spans lines: {:?}",
        input,
        shown
    );
    Ok(())
}

/// Builds `kind` from `words`; a built trigger computes a few fire times (no panic).
fn try_words(kind: &str, words: &[String]) -> Result<(), TriggerError> {
    let from = seconds(1_700_000_000);
    let spec = spec_from_words(kind, words)?;
    let trigger = Trigger::new(spec, &TriggerContext::new(from))?;
    let _: Vec<_> = trigger.fire_times(from).take(3).collect();
    let late = seconds(253_402_300_799); // 9999-12-31T23:59:59Z, the last RFC 3339 instant
    let _ = trigger.next_fire_time(None, late);
    let _ = trigger.next_fire_time(Some(late), late);
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_text_in_a_cron_field_is_refused_cleanly(text in fuzz_text(), field in prop::sample::select(CRON_FIELDS.to_vec())) {
        if let Err(error) = try_words("cron", &[format!("{field}={text}")]) {
            check_error(&error, &[field], &text)?;
            check_one_line(&error, &text)?;
        }
    }

    #[test]
    fn any_text_as_a_crontab_line_is_refused_cleanly(text in fuzz_text()) {
        let fields = ["crontab", "minute", "hour", "day", "month", "day_of_week"];
        let as_spec: TriggerSpec = serde_json::from_value(
            json!({"type": "crontab", "expression": text, "timezone": "UTC"}),
        )
        .unwrap();
        if let Err(error) = Trigger::new(as_spec, &TriggerContext::new(seconds(1_700_000_000))) {
            check_error(&error, &fields, &text)?;
            check_one_line(&error, &text)?;
        }
        // As `kairos next crontab …` reads it: a word that looks like field=value is one.
        let _ = try_words("crontab", std::slice::from_ref(&text));
        let _ = try_words("crontab", &text.split(' ').map(str::to_owned).collect::<Vec<_>>());
    }

    #[test]
    fn any_text_in_a_date_word_is_refused_cleanly(
        text in fuzz_text(),
        (kind, field) in prop::sample::select(vec![
            ("cron", "start_date"), ("cron", "end_date"), ("cron", "timezone"), ("cron", "jitter"),
            ("crontab", "start_date"), ("crontab", "end_date"), ("crontab", "timezone"), ("crontab", "jitter"),
            ("interval", "start_date"), ("interval", "end_date"), ("interval", "timezone"), ("interval", "jitter"),
            ("calendarinterval", "start_date"), ("calendarinterval", "end_date"), ("calendarinterval", "timezone"),
            ("calendarinterval", "jitter"),
            ("date", "run_date"), ("date", "timezone"), ("date", "delay"),
        ]),
    ) {
        let mut words = match kind {
            "cron" => vec!["hour=3".to_owned()],
            "crontab" => vec!["0 3 * * *".to_owned()],
            "interval" => vec!["minutes=90".to_owned()],
            "calendarinterval" => vec!["days=1".to_owned(), "hour=3".to_owned()],
            _ => vec![],
        };
        words.push(format!("{field}={text}"));
        if let Err(error) = try_words(kind, &words) {
            check_error(&error, &[field], &text)?;
            check_one_line(&error, &text)?;
        }
    }

    #[test]
    fn any_number_word_is_refused_cleanly(
        (kind, field) in prop::sample::select(vec![
            ("interval", "weeks"), ("interval", "days"), ("interval", "hours"), ("interval", "minutes"),
            ("interval", "seconds"), ("calendarinterval", "years"), ("calendarinterval", "months"),
            ("calendarinterval", "weeks"), ("calendarinterval", "days"), ("calendarinterval", "hour"),
            ("calendarinterval", "minute"), ("calendarinterval", "second"),
        ]),
        text in prop_oneof![
            2 => fuzz_text(),
            2 => any::<u64>().prop_map(|n| n.to_string()),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => prop::sample::select(vec![
                "4294967295", "4294967296", "18446744073709551615", "18446744073709551616",
                "0", "00", "+1", " 1", "1 ", "1.5", "1e3", "0x10", "-0",
            ]).prop_map(str::to_owned),
        ],
        others in prop::sample::select(vec![
            vec![], vec!["days=1"], vec!["weeks=4294967295"], vec!["seconds=1", "start_date=9999-12-31"],
            vec!["months=1", "start_date=0001-01-01"], vec!["years=1", "start_date=9999-12-31 23:59:59+14:00"],
        ]),
    ) {
        let mut words: Vec<String> = others
            .iter()
            .filter(|word| !word.starts_with(&format!("{field}=")))
            .filter(|word| {
                // Only words that belong to the kind.
                let key = word.split('=').next().unwrap_or_default();
                let allowed: &[&str] = if kind == "interval" {
                    &["weeks", "days", "hours", "minutes", "seconds", "start_date"]
                } else {
                    &["years", "months", "weeks", "days", "hour", "minute", "second", "start_date"]
                };
                allowed.contains(&key)
            })
            .map(|word| word.to_string())
            .collect();
        words.push(format!("{field}={text}"));
        if let Err(error) = try_words(kind, &words) {
            check_error(&error, &[field, kind, "interval", "start_date"], &text)?;
            check_one_line(&error, &text)?;
        }
    }

    #[test]
    fn any_word_list_is_refused_cleanly(
        kind in prop::sample::select(vec!["cron", "crontab", "interval", "date", "calendarinterval", "weekly"]),
        words in prop::collection::vec(fuzz_text(), 0..4),
    ) {
        if let Err(error) = try_words(kind, &words) {
            prop_assert!(!error.reason().trim().is_empty());
            prop_assert_eq!(error.to_string(), format!("{}: {}", error.field(), error.reason()));
        }
    }
}

const SPEC_KEYS: [&str; 29] = [
    "type",
    "year",
    "month",
    "day",
    "week",
    "day_of_week",
    "hour",
    "minute",
    "second",
    "start_date",
    "end_date",
    "timezone",
    "jitter",
    "expression",
    "line",
    "weeks",
    "days",
    "hours",
    "minutes",
    "seconds",
    "years",
    "months",
    "run_date",
    "delay",
    "triggers",
    "x",
    "",
    "Type",
    "HOUR",
];

/// Random JSON: mostly objects shaped like trigger specifications.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e20f64..1e20).prop_map(|n| json!(n)),
        prop::sample::select(vec![0.5f64, 1e300, -0.0, 1e-300, 3.0]).prop_map(|n| json!(n)),
        (0u32..70).prop_map(|n| json!(n)),
        fuzz_text().prop_map(Value::String),
        prop::sample::select(vec![
            "cron",
            "crontab",
            "interval",
            "date",
            "calendarinterval",
            "and",
            "or",
            "*/5",
            "mon-fri",
            "last fri",
            "2024-03-10 02:30:00",
            "9999-12-31T23:59:59+14:00",
            "0001-01-01",
            "America/New_York",
            "Pacific/Apia",
            "+05:30",
            "30m",
            "1h30m",
            "0 3 * * *",
            "@daily",
            "99999999999",
        ])
        .prop_map(|text| Value::String(text.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            (
                prop::sample::select(vec![
                    "cron",
                    "crontab",
                    "interval",
                    "date",
                    "calendarinterval",
                    "and",
                    "or",
                ]),
                prop::collection::vec((prop::sample::select(SPEC_KEYS.to_vec()), inner), 0..5),
            )
                .prop_map(|(kind, pairs)| {
                    let mut object = serde_json::Map::new();
                    object.insert("type".to_owned(), json!(kind));
                    for (key, value) in pairs {
                        object.insert(key.to_owned(), value);
                    }
                    Value::Object(object)
                }),
        ]
    })
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn any_json_is_read_or_refused_cleanly(value in json_value(), garble in any::<u8>()) {
        let mut text = value.to_string();
        if garble % 8 == 0 && !text.is_empty() {
            // Broken JSON too.
            let mut cut = garble as usize % text.len();
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let from = seconds(1_700_000_000);
        if let Ok(spec) = serde_json::from_str::<TriggerSpec>(&text) {
            // `and` searches may take 100,000 rounds.
            let is_and = matches!(spec, TriggerSpec::And(_));
            match Trigger::new(spec, &TriggerContext::new(from)) {
                Ok(trigger) if !is_and => {
                    let _: Vec<_> = trigger.fire_times(from).take(3).collect();
                    let _ = serde_json::to_string(&trigger).unwrap();
                }
                Ok(_) => {}
                Err(error) => {
                    prop_assert!(!error.field().is_empty(), "{:?}", error.to_string());
                    prop_assert!(!error.reason().trim().is_empty(), "{:?}", error.to_string());
                }
            }
        }
        let _ = serde_json::from_str::<Trigger>(&text);
    }
}

// ---------------------------------------------------------------------------------------
// Serde round trip
// ---------------------------------------------------------------------------------------

/// A date-time as users write it: civil, with `Z` or with an offset, sometimes a fraction.
fn written_date() -> impl Strategy<Value = String> {
    (
        Y1990..Y2060,
        prop::sample::select(vec!["", "Z", "+05:30", "-03:00", "+14:00"]),
        prop::sample::select(vec!["", ".5", ".123456"]),
        prop::sample::select(vec![" ", "T"]),
    )
        .prop_map(|(t, offset, fraction, separator)| {
            let civil = seconds(t).naive_utc();
            format!(
                "{}{separator}{}{fraction}{offset}",
                civil.format("%Y-%m-%d"),
                civil.format("%H:%M:%S")
            )
        })
}

fn window() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    (
        prop::option::weighted(0.3, written_date()),
        prop::option::weighted(0.3, written_date()),
        prop::option::weighted(0.7, zone_name()),
        prop::option::weighted(0.3, prop::sample::select(vec!["30s", "1h 30m", "90"])),
    )
        .prop_map(|(start, end, zone, jitter)| {
            let mut pairs = Vec::new();
            if let Some(start) = start {
                pairs.push(("start_date", json!(start)));
            }
            if let Some(end) = end {
                pairs.push(("end_date", json!(end)));
            }
            if let Some(zone) = zone {
                pairs.push(("timezone", json!(zone)));
            }
            if let Some(jitter) = jitter {
                pairs.push(("jitter", json!(jitter)));
            }
            pairs
        })
}

fn object(kind: &str, pairs: Vec<(&str, Value)>) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("type".to_owned(), json!(kind));
    for (key, value) in pairs {
        object.insert(key.to_owned(), value);
    }
    Value::Object(object)
}

/// Specifications of every kind that build.
fn spec_json() -> impl Strategy<Value = Value> {
    let cron = (cron_expr(), window()).prop_map(|(expr, mut pairs)| {
        for (field, name) in expr.given.iter().zip(CRON_FIELDS) {
            if let Some(field) = field {
                pairs.push((name, json!(field.text)));
            }
        }
        object("cron", pairs)
    });
    let crontab = (crontab_expr(), window()).prop_map(|(expr, mut pairs)| {
        pairs.push(("expression", json!(expr.line)));
        object("crontab", pairs)
    });
    let interval = (0u64..3, 0u64..3, 0u64..30, 0u64..90, 1u64..100, window()).prop_map(
        |(weeks, days, hours, minutes, seconds, mut pairs)| {
            pairs.push(("weeks", json!(weeks)));
            pairs.push(("days", json!(days)));
            pairs.push(("hours", json!(hours)));
            pairs.push(("minutes", json!(minutes)));
            pairs.push(("seconds", json!(seconds)));
            object("interval", pairs)
        },
    );
    let calendar = (
        0u32..2,
        0u32..14,
        0u32..3,
        1u32..40,
        0u32..24,
        0u32..60,
        window(),
    )
        .prop_map(|(years, months, weeks, days, hour, minute, mut pairs)| {
            pairs.push(("years", json!(years)));
            pairs.push(("months", json!(months)));
            pairs.push(("weeks", json!(weeks)));
            pairs.push(("days", json!(days)));
            pairs.push(("hour", json!(hour)));
            pairs.push(("minute", json!(minute)));
            object("calendarinterval", pairs)
        });
    let date = (written_date(), prop::option::of(zone_name())).prop_map(|(run_date, zone)| {
        let mut pairs = vec![("run_date", json!(run_date))];
        if let Some(zone) = zone {
            pairs.push(("timezone", json!(zone)));
        }
        object("date", pairs)
    });
    let single = prop_oneof![3 => cron, 3 => crontab, 1 => interval, 1 => calendar, 1 => date];
    prop_oneof![
        4 => single.clone(),
        1 => prop::collection::vec(single, 1..3).prop_map(|mut triggers| {
            // Jitter belongs on the combination, not on its parts.
            for part in &mut triggers {
                part.as_object_mut().unwrap().remove("jitter");
            }
            json!({"type": "or", "triggers": triggers})
        }),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_trigger_survives_a_json_round_trip(spec in spec_json(), start in start(), zone in zone_name()) {
        let built_at = start.instant(tz(zone));
        let spec: TriggerSpec = serde_json::from_value(spec.clone())
            .map_err(|error| TestCaseError::fail(format!("{spec}: {error}")))?;
        let trigger = match Trigger::new(spec.clone(), &TriggerContext::new(built_at)) {
            Ok(trigger) => trigger,
            // Generated crontab lines may name days that never occur, and calendar
            // intervals refuse an end before their start; nothing else fails.
            Err(error) if error.field().ends_with("day") => return Ok(()),
            Err(error) if error.field().ends_with("end_date") => return Ok(()),
            Err(error) => return Err(TestCaseError::fail(format!("{spec:?}: {error}"))),
        };
        let stored = serde_json::to_string(&trigger).unwrap();
        let restored: Trigger = serde_json::from_str(&stored)
            .map_err(|error| TestCaseError::fail(format!("{stored}: {error}")))?;
        prop_assert_eq!(&restored, &trigger, "stored as {}", stored);
        prop_assert_eq!(restored.timezone(), trigger.timezone());
        prop_assert_eq!(restored.jitter(), trigger.jitter());
        // Stored again, it reads the same: the stored form is a fixed point.
        prop_assert_eq!(serde_json::to_string(&restored).unwrap(), stored.clone());
        for from in [built_at, built_at + TimeDelta::days(400)] {
            let before: Vec<_> = trigger.fire_times(from).take(5).collect();
            let after: Vec<_> = restored.fire_times(from).take(5).collect();
            prop_assert_eq!(before, after, "stored as {}", stored);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fixed cases: the DST corners the properties rely on, and known bugs
// ---------------------------------------------------------------------------------------

fn fires_of(kind: &str, words: &[&str], from: &str, count: usize) -> Vec<String> {
    let words: Vec<String> = words.iter().map(|word| word.to_string()).collect();
    let from: DateTime<Utc> = from.parse().unwrap();
    let trigger = build(kind, &words, from).unwrap();
    let zone = trigger.timezone();
    trigger
        .fire_times(from)
        .take(count)
        .map(|fire| kairos::trigger::datetime::format_instant(fire, &zone))
        .collect()
}

#[test]
fn the_oracle_agrees_with_design_md_on_new_york() {
    // 02:30 on the spring-forward night fires at 03:00 EDT; a daily 01:30 fires once on
    // the fall-back night; every 30 minutes keeps firing through the fold.
    let zone = tz("America/New_York");
    let expr = CronExpr::new(vec![
        None,
        None,
        None,
        None,
        None,
        Some(field_of("2", 2, 2)),
        Some(field_of("30", 30, 30)),
        None,
    ]);
    let three_edt: DateTime<Utc> = "2024-03-10T07:00:00Z".parse().unwrap();
    assert!(should_fire(&expr, zone, three_edt));
    assert!(!should_fire(&expr, zone, three_edt + TimeDelta::seconds(1)));
    assert_eq!(
        fires_of(
            "cron",
            &["hour=2", "minute=30", "timezone=America/New_York"],
            "2024-03-09T12:00:00Z",
            3
        ),
        [
            "2024-03-10T03:00:00-04:00",
            "2024-03-11T02:30:00-04:00",
            "2024-03-12T02:30:00-04:00"
        ]
    );
    assert_eq!(
        fires_of(
            "crontab",
            &["*/30 * * * *", "timezone=America/New_York"],
            "2024-11-03T05:00:00Z",
            4
        ),
        [
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:30:00-05:00"
        ]
    );
    assert_eq!(
        fires_of(
            "crontab",
            &["30 1 * * *", "timezone=America/New_York"],
            "2024-11-03T05:00:00Z",
            2
        ),
        ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]
    );
}

#[test]
fn apia_lost_day_fires_once_after_the_gap() {
    // 2011-12-30 did not exist in Samoa; a daily noon job fires once at the first
    // instant after the gap (midnight, 2011-12-31 +14:00), then at noon that day.
    assert_eq!(
        fires_of(
            "cron",
            &["hour=12", "timezone=Pacific/Apia"],
            "2011-12-29T00:00:00Z",
            3
        ),
        [
            "2011-12-29T12:00:00-10:00",
            "2011-12-31T00:00:00+14:00",
            "2011-12-31T12:00:00+14:00"
        ]
    );
}

#[test]
fn lord_howe_half_hour_fold() {
    // 2024-04-07 02:00 +11:00 -> 01:30 +10:30: 01:30..02:00 happens twice.
    assert_eq!(
        fires_of(
            "cron",
            &["minute=45", "timezone=Australia/Lord_Howe"],
            "2024-04-06T14:00:00Z",
            3
        ),
        [
            "2024-04-07T01:45:00+11:00",
            "2024-04-07T01:45:00+10:30",
            "2024-04-07T02:45:00+10:30"
        ]
    );
    assert_eq!(
        fires_of(
            "cron",
            &["hour=1", "minute=45", "timezone=Australia/Lord_Howe"],
            "2024-04-06T14:00:00Z",
            2
        ),
        ["2024-04-07T01:45:00+11:00", "2024-04-08T01:45:00+10:30"]
    );
}

fn field_of(text: &str, first: u32, last: u32) -> Field {
    Field::range(text, first, last)
}

#[test]
fn search_from_the_end_of_a_gap_finds_the_gap_fire() {
    // 02:30 does not exist on 2024-03-10 in New York; it fires at 03:00 EDT. That is a
    // fire time (the search from the evening before returns it), so the first fire time
    // at or after 03:00 EDT must be 03:00 EDT too, not 02:30 the next night.
    let words = ["hour=2", "minute=30", "timezone=America/New_York"];
    let before = fires_of("cron", &words, "2024-03-10T06:00:00Z", 1);
    assert_eq!(before, ["2024-03-10T03:00:00-04:00"]);
    let at = fires_of("cron", &words, "2024-03-10T07:00:00Z", 1);
    assert_eq!(at, before);
}

#[test]
fn a_fire_one_second_before_a_gap_hides_the_gap_fire() {
    // Every minute at :59 in New York. 02:00:59 .. 02:59:59 on 2024-03-10 do not exist
    // and all map to 03:00:00 EDT, where they fire once (docs/semantics.md, "DST"). From the
    // evening before that is what happens when the previous fire is 01:58:59; after the
    // fire at 01:59:59 EST the next search starts at 07:00:00Z, the end of the gap.
    let words = ["second=59", "timezone=America/New_York"];
    assert_eq!(
        fires_of("cron", &words, "2024-03-10T06:58:30Z", 3),
        [
            "2024-03-10T01:58:59-05:00",
            "2024-03-10T01:59:59-05:00",
            "2024-03-10T03:00:00-04:00"
        ]
    );
}

#[test]
fn a_huge_calendar_day_step_does_not_panic() {
    // `kairos next calendarinterval days=10000000 start_date=2024-01-01 --from 2500-01-01T00:00:00Z`:
    // the binary search multiplies the step by ~86,000 candidate steps and passes the
    // product to `TimeDelta::days`, which panics above ~1.07e11 days.
    let words: Vec<String> = ["days=10000000", "start_date=2024-01-01", "timezone=UTC"]
        .iter()
        .map(|word| word.to_string())
        .collect();
    let from: DateTime<Utc> = "2500-01-01T00:00:00Z".parse().unwrap();
    let trigger = build("calendarinterval", &words, from).unwrap();
    let next = trigger.next_fire_time(None, from);
    assert!(next.is_none_or(|next| next >= from));
}

#[test]
fn an_error_about_a_value_with_a_line_break_is_one_line() {
    // `kairos next cron $'hour=1\n2'` prints `hour: cannot read "1` and `2" (expected …`
    // on two lines; quoting with escapes (`{:?}`) would keep it on one.
    for (kind, word) in [
        ("cron", "hour=1\n2"),
        ("cron", "start_date=2024-01-01\n12:00"),
        ("interval", "minutes=1\n2"),
        ("crontab", "@daily\nx"),
    ] {
        let error = spec_from_words(kind, &[word.to_owned()])
            .and_then(|spec| Trigger::new(spec, &TriggerContext::new(seconds(1_700_000_000))))
            .expect_err(word)
            .to_string();
        assert!(!error.contains('\n'), "{kind} {word:?}: {error:?}");
    }
}

/// Found by the `duration` fuzz target (fuzz/fuzz_targets/duration.rs): `delay=` of
/// 5184470148447 seconds put the run date in the year 166313, which the trigger's spec
/// wrote as `+166313-07-04T…` and could not read back, so a stored job would not load
/// again. Such a delay is refused, naming the field; one ending in 9999 still builds
/// and its spec builds again.
#[test]
fn fuzz_regression_a_delay_past_the_year_9999_is_refused() {
    let now: DateTime<Utc> = "2024-03-09T09:04:56Z".parse().expect("an instant");
    let context = TriggerContext::new(now);
    let spec = spec_from_words("date", &["delay=5184470148447".to_owned()]).expect("words");
    let error = Trigger::new(spec, &context).expect_err("a run date after 9999");
    assert_eq!(error.field(), "delay", "{error}");
    assert!(
        error.to_string().contains("too far in the future"),
        "{error}"
    );

    let spec = spec_from_words("date", &["delay=250000000000".to_owned()]).expect("words");
    let trigger = Trigger::new(spec, &context).expect("a run date in 9946");
    let again = Trigger::new(trigger.spec().into_owned(), &context).expect("reads back");
    assert_eq!(
        again.next_fire_time(None, now),
        trigger.next_fire_time(None, now)
    );
}
