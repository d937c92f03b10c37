//! Next-fire-time benchmarks: kairos side by side with the `cron` and `croner` crates.
//!
//! One criterion group per expression, with one function per library (`kairos`, `cron`,
//! `croner`), so `cargo bench --bench next_fire_time` prints them next to each other.
//! Each timed operation is one "first fire time at or after `from`" computation, with
//! `from` rotating through 64 fixed, precomputed UTC instants so no library can profit
//! from a repeated input. Parsing happens outside the timed loops; the `parse` group
//! measures it on its own, and `iterate_1000` walks 1000 consecutive fire times.
//!
//! Before anything is timed, [`check_equivalence`] asserts that every library produces
//! the same first fire times for every expression, so the comparison is apples to
//! apples. See `benches/README.md` for how to run and read the results.

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::Criterion;
use kairos::trigger::{words::spec_from_words, Trigger, TriggerContext};

/// One expression, written for each library.
///
/// The semantics all libraries are asked for: "the first fire time at or after `from`",
/// in UTC, with whole-second start instants.
///
/// - kairos `cron` words follow APScheduler (`day_of_week` 0 = Monday; unspecified
///   fields finer than the finest given one default to their minimum); kairos `crontab`
///   is Vixie 5-field.
/// - `cron` 0.17 takes `sec min hour dom month dow [year]`, with `dow` 1 = Sunday (so
///   weekday *names* are used), and always ANDs day-of-month with day-of-week.
/// - `croner` 3 takes 5 fields (seconds default to 0), or 6 with seconds, or 7 with a
///   year; POSIX weekdays (0 = Sunday); `5#L` = last Friday of the month.
struct Case {
    /// The criterion group name.
    group: &'static str,
    /// kairos trigger type: `cron` (APScheduler words) or `crontab`.
    kairos_kind: &'static str,
    /// kairos words (for `crontab`, the line is the first word).
    kairos_words: &'static [&'static str],
    /// The `cron` crate's equivalent, `None` where it has none.
    cron: Option<&'static str>,
    /// The `croner` crate's equivalent, `None` where it has none.
    croner: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        group: "every_minute",
        kairos_kind: "crontab",
        kairos_words: &["* * * * *", "timezone=UTC"],
        cron: Some("0 * * * * *"),
        croner: Some("* * * * *"),
    },
    Case {
        group: "weekdays_9-17_every_15min",
        kairos_kind: "crontab",
        kairos_words: &["*/15 9-17 * * 1-5", "timezone=UTC"],
        cron: Some("0 */15 9-17 * * Mon-Fri"),
        croner: Some("*/15 9-17 * * 1-5"),
    },
    Case {
        group: "hour=3",
        kairos_kind: "cron",
        kairos_words: &["hour=3", "timezone=UTC"],
        cron: Some("0 0 3 * * *"),
        croner: Some("0 3 * * *"),
    },
    Case {
        group: "monthly_1st",
        kairos_kind: "crontab",
        kairos_words: &["0 0 1 * *", "timezone=UTC"],
        cron: Some("0 0 0 1 * *"),
        croner: Some("0 0 1 * *"),
    },
    Case {
        group: "day=last_fri",
        kairos_kind: "cron",
        kairos_words: &["day=last fri", "timezone=UTC"],
        // The `cron` crate has no "last weekday of the month" (no `L`, no `#`): omitted.
        cron: None,
        croner: Some("0 0 * * 5#L"),
    },
    Case {
        group: "month=2_day=29",
        kairos_kind: "cron",
        kairos_words: &["month=2", "day=29", "timezone=UTC"],
        cron: Some("0 0 0 29 2 *"),
        croner: Some("0 0 29 2 *"),
    },
    Case {
        group: "year=2099",
        kairos_kind: "cron",
        // APScheduler defaults: month, day, hour, minute and second take their minimum,
        // so this fires exactly once, at 2099-01-01T00:00:00Z.
        kairos_words: &["year=2099", "timezone=UTC"],
        cron: Some("0 0 0 1 1 * 2099"),
        croner: Some("0 0 0 1 1 * 2099"),
    },
    Case {
        group: "second=every_10s",
        kairos_kind: "cron",
        kairos_words: &["second=*/10", "timezone=UTC"],
        cron: Some("*/10 * * * * *"),
        croner: Some("*/10 * * * * *"),
    },
];

/// The expression walked by `iterate_1000` and parsed by `parse`.
const WEEKDAYS: &Case = &CASES[1];

/// How many start instants the timed loops rotate through (a power of two).
const STARTS: usize = 64;

/// One parsed expression per library.
struct Compiled {
    kairos: Trigger,
    cron: Option<cron::Schedule>,
    croner: Option<croner::Cron>,
}

fn words(case: &Case) -> Vec<String> {
    case.kairos_words
        .iter()
        .map(|word| word.to_string())
        .collect()
}

fn context_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid fixed instant")
}

fn parse_kairos(kind: &str, words: &[String]) -> Trigger {
    let spec = spec_from_words(kind, words).expect("kairos words should parse");
    Trigger::new(spec, &TriggerContext::new(context_now())).expect("kairos trigger should build")
}

fn compile(case: &Case) -> Compiled {
    Compiled {
        kairos: parse_kairos(case.kairos_kind, &words(case)),
        cron: case
            .cron
            .map(|line| cron::Schedule::from_str(line).expect("cron crate should parse")),
        croner: case
            .croner
            .map(|line| croner::Cron::from_str(line).expect("croner should parse")),
    }
}

/// 64 whole-second UTC instants spread pseudo-randomly over 2024-2026 (a fixed LCG, so
/// every run and every library gets the same inputs).
fn start_instants() -> Vec<DateTime<Utc>> {
    let base = context_now();
    let span = 3 * 365 * 86_400_u64;
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..STARTS)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let offset = (state >> 33) % span;
            base + TimeDelta::seconds(i64::try_from(offset).expect("offset fits in i64"))
        })
        .collect()
}

/// `cron`'s `Schedule::after` is strictly after; one second earlier makes it "at or
/// after" for whole-second instants. Precomputed, so the subtraction is not timed.
fn cron_starts(starts: &[DateTime<Utc>]) -> Vec<DateTime<Utc>> {
    starts.iter().map(|t| *t - TimeDelta::seconds(1)).collect()
}

fn kairos_first(trigger: &Trigger, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    trigger.fire_times(from).take(n).collect()
}

fn cron_first(schedule: &cron::Schedule, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    schedule
        .after(&(from - TimeDelta::seconds(1)))
        .take(n)
        .collect()
}

fn croner_first(cron: &croner::Cron, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    cron.iter_from(from, croner::Direction::Forward)
        .take(n)
        .collect()
}

/// Asserts that every library agrees with kairos on each expression: the first 5 fire
/// times from one reference instant (fewer where the schedule ends, as `year=2099`
/// does after one), and the first fire time from each of the benchmark's start
/// instants, plus the 1000 fire times that `iterate_1000` walks.
fn check_equivalence() {
    // A Friday afternoon, not on any schedule's fire time.
    let reference = Utc
        .with_ymd_and_hms(2024, 5, 17, 13, 7, 43)
        .single()
        .expect("a valid reference instant");
    let starts = start_instants();
    for case in CASES {
        let compiled = compile(case);
        let expected = kairos_first(&compiled.kairos, reference, 5);
        assert!(
            !expected.is_empty(),
            "{}: kairos found no fire time",
            case.group
        );
        if let Some(schedule) = &compiled.cron {
            assert_eq!(
                cron_first(schedule, reference, 5),
                expected,
                "{}: cron crate disagrees with kairos",
                case.group
            );
        }
        if let Some(cron) = &compiled.croner {
            assert_eq!(
                croner_first(cron, reference, 5),
                expected,
                "{}: croner disagrees with kairos",
                case.group
            );
        }
        for &from in &starts {
            let expected = compiled.kairos.next_fire_time(None, from);
            if let Some(schedule) = &compiled.cron {
                let got = schedule.after(&(from - TimeDelta::seconds(1))).next();
                assert_eq!(got, expected, "{}: cron crate from {from}", case.group);
            }
            if let Some(cron) = &compiled.croner {
                let got = cron.find_next_occurrence(&from, true).ok();
                assert_eq!(got, expected, "{}: croner from {from}", case.group);
            }
        }
    }
    let compiled = compile(WEEKDAYS);
    let expected = kairos_first(&compiled.kairos, reference, 1000);
    assert_eq!(expected.len(), 1000);
    let schedule = compiled
        .cron
        .as_ref()
        .expect("cron has the weekday expression");
    let cron = compiled
        .croner
        .as_ref()
        .expect("croner has the weekday expression");
    assert_eq!(
        cron_first(schedule, reference, 1000),
        expected,
        "iterate_1000: cron crate"
    );
    assert_eq!(
        croner_first(cron, reference, 1000),
        expected,
        "iterate_1000: croner"
    );
    let words = parse_kairos("cron", &weekday_cron_words());
    assert_eq!(
        kairos_first(&words, reference, 1000),
        expected,
        "parse: kairos cron words"
    );
    for case in CASES {
        let peers: Vec<&str> = [
            ("cron", case.cron.is_some()),
            ("croner", case.croner.is_some()),
        ]
        .iter()
        .filter_map(|&(name, present)| present.then_some(name))
        .collect();
        eprintln!(
            "equivalent: {:<26} kairos = {}",
            case.group,
            peers.join(" = ")
        );
    }
}

/// `*/15 9-17 * * 1-5` as APScheduler-style `cron` words (for the `parse` group).
fn weekday_cron_words() -> Vec<String> {
    [
        "minute=*/15",
        "hour=9-17",
        "day_of_week=mon-fri",
        "timezone=UTC",
    ]
    .iter()
    .map(|word| word.to_string())
    .collect()
}

/// One group per expression: one next-fire computation per iteration.
fn bench_next_fire_time(c: &mut Criterion) {
    let starts = start_instants();
    let cron_starts = cron_starts(&starts);
    for case in CASES {
        let compiled = compile(case);
        let mut group = c.benchmark_group(case.group);

        let trigger = &compiled.kairos;
        let mut i = 0;
        group.bench_function("kairos", |b| {
            b.iter(|| {
                i = (i + 1) % STARTS;
                trigger.next_fire_time(None, black_box(starts[i]))
            })
        });

        if let Some(schedule) = &compiled.cron {
            let mut i = 0;
            group.bench_function("cron", |b| {
                b.iter(|| {
                    i = (i + 1) % STARTS;
                    schedule.after(black_box(&cron_starts[i])).next()
                })
            });
        }

        if let Some(cron) = &compiled.croner {
            let mut i = 0;
            group.bench_function("croner", |b| {
                b.iter(|| {
                    i = (i + 1) % STARTS;
                    cron.find_next_occurrence(black_box(&starts[i]), true).ok()
                })
            });
        }

        group.finish();
    }
}

/// 1000 consecutive fire times of `*/15 9-17 * * 1-5`, each library's own iterator.
fn bench_iterate(c: &mut Criterion) {
    let compiled = compile(WEEKDAYS);
    let from = Utc
        .with_ymd_and_hms(2024, 5, 17, 13, 7, 43)
        .single()
        .expect("a valid start instant");
    let mut group = c.benchmark_group("iterate_1000");

    let trigger = &compiled.kairos;
    group.bench_function("kairos", |b| {
        b.iter(|| trigger.fire_times(black_box(from)).take(1000).last())
    });

    let schedule = compiled
        .cron
        .as_ref()
        .expect("cron has the weekday expression");
    let cron_from = from - TimeDelta::seconds(1);
    group.bench_function("cron", |b| {
        b.iter(|| schedule.after(black_box(&cron_from)).take(1000).last())
    });

    let cron = compiled
        .croner
        .as_ref()
        .expect("croner has the weekday expression");
    group.bench_function("croner", |b| {
        b.iter(|| {
            cron.iter_from(black_box(from), croner::Direction::Forward)
                .take(1000)
                .last()
        })
    });

    group.finish();
}

/// Parse cost of `*/15 9-17 * * 1-5`: text to a ready-to-query schedule.
fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");

    // kairos: words to spec, then spec to compiled trigger. The words are built once.
    let crontab_words = words(WEEKDAYS);
    group.bench_function("kairos", |b| {
        b.iter(|| parse_kairos(WEEKDAYS.kairos_kind, black_box(&crontab_words)))
    });
    // The same schedule as APScheduler-style `cron` words.
    let cron_words = weekday_cron_words();
    group.bench_function("kairos_cron_words", |b| {
        b.iter(|| parse_kairos("cron", black_box(&cron_words)))
    });

    let cron_line = WEEKDAYS.cron.expect("cron has the weekday expression");
    group.bench_function("cron", |b| {
        b.iter(|| cron::Schedule::from_str(black_box(cron_line)).expect("cron crate should parse"))
    });

    let croner_line = WEEKDAYS.croner.expect("croner has the weekday expression");
    group.bench_function("croner", |b| {
        b.iter(|| croner::Cron::from_str(black_box(croner_line)).expect("croner should parse"))
    });

    group.finish();
}

fn main() {
    check_equivalence();
    // Modest defaults for a shared 2-core machine; command-line flags still override.
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    bench_next_fire_time(&mut criterion);
    bench_iterate(&mut criterion);
    bench_parse(&mut criterion);
    criterion.final_summary();
}
