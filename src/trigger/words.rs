//! `field=value` words, as `kairos next` takes them, into a [`TriggerSpec`].
//!
//! The words use APScheduler's keyword names (`hour=3`, `day_of_week=mon-fri`,
//! `minutes=30`, `start_date=…`, `timezone=Asia/Shanghai`); a `crontab` trigger takes
//! its line as the first word(s). The same parser serves any caller that previews a
//! trigger from text, so the preview and the CLI cannot disagree.

use std::time::Duration;

use super::spec::humane_duration;
use super::{
    CalendarIntervalSpec, CronSpec, CrontabSpec, DateSpec, IntervalSpec, TriggerError, TriggerSpec,
};
use crate::suggest::closest;

/// The trigger kinds that words can describe.
pub const KINDS: [&str; 5] = ["cron", "crontab", "interval", "date", "calendarinterval"];

const DATE_FIELDS: &[&str] = &["run_date", "delay", "timezone"];
const INTERVAL_FIELDS: &[&str] = &[
    "weeks",
    "days",
    "hours",
    "minutes",
    "seconds",
    "start_date",
    "end_date",
    "timezone",
    "jitter",
];
const CRON_FIELDS: &[&str] = &[
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
];
const CRONTAB_FIELDS: &[&str] = &["expression", "start_date", "end_date", "timezone", "jitter"];
const CALENDAR_INTERVAL_FIELDS: &[&str] = &[
    "years",
    "months",
    "weeks",
    "days",
    "hour",
    "minute",
    "second",
    "start_date",
    "end_date",
    "timezone",
    "jitter",
];

/// Builds a specification from one line of words, the trigger kind first, as a shell
/// would split it: `cron hour=3 minute=30`, `crontab "0 3 * * *"`,
/// `date run_date="2024-03-01 12:00"`. Double quotes group, a backslash escapes.
pub fn spec_from_line(line: &str) -> Result<TriggerSpec, TriggerError> {
    let words = split_words(line)?;
    let Some((kind, words)) = words.split_first() else {
        return Err(TriggerError::syntax(
            "type",
            format!(
                "no trigger given (expected one of {} and field=value words)",
                KINDS.join(", ")
            ),
        ));
    };
    spec_from_words(kind, words)
}

/// A trigger in the words [`spec_from_line`] and `kairos next` take:
/// `cron hour=3 minute=30`. Combining triggers (`and`, `or`) have no words: their
/// JSON is given instead.
pub fn spec_to_words(spec: &TriggerSpec) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(spec) else {
        return String::from("?");
    };
    let mut words = Vec::new();
    if let Some(kind) = fields.get("type").and_then(|kind| kind.as_str()) {
        if !KINDS.contains(&kind) {
            return serde_json::Value::Object(fields).to_string();
        }
        words.push(kind.to_owned());
    }
    for (key, value) in &fields {
        if key == "type" || value.is_null() {
            continue;
        }
        let text = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        if key == "expression" {
            words.push(quote(&text));
        } else if text.is_empty()
            || text
                .chars()
                .any(|character| character.is_whitespace() || matches!(character, '"' | '\\'))
        {
            words.push(format!("{key}={}", quote(&text)));
        } else {
            words.push(format!("{key}={text}"));
        }
    }
    words.join(" ")
}

/// `text` in double quotes as [`split_words`] reads them: a backslash before `"` and
/// `\`, every other character as it is (a newline stays a newline, where Rust's own
/// `{:?}` would write `\n`, which reads back as `n`).
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        if matches!(character, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}

/// Splits `line` at spaces outside double quotes; inside quotes a backslash escapes
/// the next character.
fn split_words(line: &str) -> Result<Vec<String>, TriggerError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match character {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => match characters.next() {
                Some(escaped) => word.push(escaped),
                None => break,
            },
            space if space.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                word.push(other);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(TriggerError::syntax(
            "type",
            format!("unbalanced double quote in {line:?}"),
        ));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Builds a specification of `kind` from `field=value` words.
pub fn spec_from_words(kind: &str, words: &[String]) -> Result<TriggerSpec, TriggerError> {
    let (line, words) = match kind {
        // The crontab line comes first, quoted as one word or spread over five.
        "crontab" => {
            let split = words
                .iter()
                .position(|word| is_assignment(word))
                .unwrap_or(words.len());
            (Some(words[..split].join(" ")), &words[split..])
        }
        _ => (None, words),
    };
    let fields = match kind {
        "date" => DATE_FIELDS,
        "interval" => INTERVAL_FIELDS,
        "cron" => CRON_FIELDS,
        "crontab" => CRONTAB_FIELDS,
        "calendarinterval" => CALENDAR_INTERVAL_FIELDS,
        _ => {
            return Err(TriggerError::unknown_name(
                "type",
                format!(
                    "unknown trigger type {kind:?} (expected {})",
                    KINDS.join(", ")
                ),
            ))
        }
    };
    let mut pairs = Assignments::read(words, fields, kind)?;
    let spec = match kind {
        "date" => TriggerSpec::Date(DateSpec {
            run_date: pairs.take("run_date"),
            delay: pairs.duration("delay")?,
            timezone: pairs.take("timezone"),
        }),
        "interval" => TriggerSpec::Interval(Box::new(IntervalSpec {
            weeks: pairs.number("weeks")?,
            days: pairs.number("days")?,
            hours: pairs.number("hours")?,
            minutes: pairs.number("minutes")?,
            seconds: pairs.number("seconds")?,
            start_date: pairs.take("start_date"),
            end_date: pairs.take("end_date"),
            timezone: pairs.take("timezone"),
            jitter: pairs.duration("jitter")?,
        })),
        "cron" => TriggerSpec::Cron(Box::new(CronSpec {
            year: pairs.take("year"),
            month: pairs.take("month"),
            day: pairs.take("day"),
            week: pairs.take("week"),
            day_of_week: pairs.take("day_of_week"),
            hour: pairs.take("hour"),
            minute: pairs.take("minute"),
            second: pairs.take("second"),
            start_date: pairs.take("start_date"),
            end_date: pairs.take("end_date"),
            timezone: pairs.take("timezone"),
            jitter: pairs.duration("jitter")?,
        })),
        "crontab" => {
            let written = line.filter(|line| !line.trim().is_empty());
            let expression = match (written, pairs.take("expression")) {
                (Some(_), Some(_)) => {
                    return Err(TriggerError::conflict(
                        "crontab",
                        "give the line once: as the first word or as expression=…",
                    ))
                }
                (Some(line), None) | (None, Some(line)) => line,
                (None, None) => {
                    return Err(TriggerError::conflict(
                        "crontab",
                        "expected a crontab line such as \"0 3 * * *\" as the first word",
                    ))
                }
            };
            TriggerSpec::Crontab(Box::new(CrontabSpec {
                expression,
                start_date: pairs.take("start_date"),
                end_date: pairs.take("end_date"),
                timezone: pairs.take("timezone"),
                jitter: pairs.duration("jitter")?,
            }))
        }
        _ => TriggerSpec::CalendarInterval(Box::new(CalendarIntervalSpec {
            years: pairs.number("years")?,
            months: pairs.number("months")?,
            weeks: pairs.number("weeks")?,
            days: pairs.number("days")?,
            hour: pairs.number("hour")?,
            minute: pairs.number("minute")?,
            second: pairs.number("second")?,
            start_date: pairs.take("start_date"),
            end_date: pairs.take("end_date"),
            timezone: pairs.take("timezone"),
            jitter: pairs.duration("jitter")?,
        })),
    };
    Ok(spec)
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(key, _)| {
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
    })
}

/// The `field=value` pairs of one command line, checked against the known fields.
struct Assignments(Vec<(String, String)>);

impl Assignments {
    fn read(words: &[String], fields: &[&str], kind: &str) -> Result<Assignments, TriggerError> {
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(words.len());
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(TriggerError::syntax(
                    word.as_str(),
                    "expected field=value, e.g. hour=3",
                ));
            };
            let key = key.trim().to_owned();
            if !fields.contains(&key.as_str()) {
                let hint = closest(&key, fields)
                    .map(|name| format!("; did you mean {name}?"))
                    .unwrap_or_else(|| format!(" (fields: {})", fields.join(", ")));
                return Err(TriggerError::new(
                    super::TriggerErrorKind::UnknownField,
                    key,
                    format!("not a field of a {kind} trigger{hint}"),
                ));
            }
            if pairs.iter().any(|(seen, _)| *seen == key) {
                return Err(TriggerError::conflict(key, "given twice"));
            }
            pairs.push((key, value.trim().to_owned()));
        }
        Ok(Assignments(pairs))
    }

    fn take(&mut self, field: &str) -> Option<String> {
        let index = self.0.iter().position(|(key, _)| key == field)?;
        Some(self.0.swap_remove(index).1)
    }

    fn number<T: std::str::FromStr + Default>(&mut self, field: &str) -> Result<T, TriggerError> {
        match self.take(field) {
            None => Ok(T::default()),
            Some(text) => text.parse().map_err(|_| {
                TriggerError::syntax(field, format!("{text:?} is not a whole number"))
            }),
        }
    }

    fn duration(&mut self, field: &str) -> Result<Option<Duration>, TriggerError> {
        self.take(field)
            .map(|text| {
                humane_duration::parse(&text).map_err(|reason| TriggerError::syntax(field, reason))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/fuzz_targets/duration.rs`: a sum of seconds past `u64::MAX`
    /// panicked inside the duration parser. It is an error naming what is wrong.
    #[test]
    fn a_duration_too_large_to_add_up_is_an_error_not_a_panic() {
        let overflowing = "18446744073709551610       s0.0s1.30s01.70s1.29s01.71s1.30s0.0s1.70      s0.0s1.30s50s";
        let error =
            spec_from_words("date", &[format!("delay={overflowing}")]).expect_err("refused");
        assert!(error.to_string().contains("too"), "{error}");
        let long = "1s ".repeat(60);
        let error = spec_from_words("date", &[format!("delay={long}")]).expect_err("refused");
        assert!(error.to_string().contains("too long"), "{error}");
        // What people write still reads.
        assert!(spec_from_words("date", &["delay=1h30m".to_owned()]).is_ok());
        assert!(spec_from_words("date", &["delay=2days 3h".to_owned()]).is_ok());
    }

    /// Found by the `next_words` fuzz target: the words written for a crontab whose
    /// expression holds newlines quoted them as Rust does (`\n`), which reads back as
    /// the letter `n`.
    #[test]
    fn fuzz_regression_words_of_an_expression_with_newlines_read_back() {
        let line = "crontab \"* 1/59 \n\n* * mon-fri\"";
        let spec = spec_from_line(line).unwrap_or_else(|error| panic!("{line}: {error}"));
        let words = spec_to_words(&spec);
        let again = spec_from_line(&words).unwrap_or_else(|error| panic!("{words}: {error}"));
        assert_eq!(again, spec, "{line:?} written as {words:?}");
        let quoted = "a \"quoted\" \\ tab\tthere";
        assert_eq!(quote(quoted), "\"a \\\"quoted\\\" \\\\ tab\tthere\"");
    }

    #[test]
    fn a_line_splits_like_a_shell_and_round_trips() {
        for line in [
            "cron hour=3 minute=30",
            "crontab \"0 3 * * 1-5\" timezone=Europe/Berlin",
            "date run_date=\"2024-03-01 12:00:00\"",
            "interval minutes=30 jitter=10s",
        ] {
            let spec = spec_from_line(line).unwrap_or_else(|error| panic!("{line}: {error}"));
            let again = spec_from_line(&spec_to_words(&spec))
                .unwrap_or_else(|error| panic!("{line}: {error}"));
            assert_eq!(spec, again, "{line}");
        }
        assert_eq!(
            split_words(r#"a "b c" "f\"g""#).ok(),
            Some(vec!["a".into(), "b c".into(), "f\"g".into()])
        );
        assert!(spec_from_line("cron hour=\"3").is_err());
        assert!(spec_from_line("  ").is_err());
        assert!(spec_from_line("weekly hour=3").is_err());
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn cron_words_fill_the_spec() {
        let spec = spec_from_words(
            "cron",
            &words(&["hour=3", "day_of_week=mon-fri", "timezone=UTC"]),
        )
        .expect("spec");
        let TriggerSpec::Cron(cron) = spec else {
            panic!("not cron")
        };
        assert_eq!(cron.hour.as_deref(), Some("3"));
        assert_eq!(cron.day_of_week.as_deref(), Some("mon-fri"));
        assert_eq!(cron.timezone.as_deref(), Some("UTC"));
    }

    #[test]
    fn crontab_line_may_be_one_word_or_five() {
        let one =
            spec_from_words("crontab", &words(&["0 3 * * 1-5", "timezone=UTC"])).expect("one");
        let five = spec_from_words(
            "crontab",
            &words(&["0", "3", "*", "*", "1-5", "timezone=UTC"]),
        )
        .expect("five");
        assert_eq!(one, five);
    }

    #[test]
    fn mistakes_are_named() {
        let error = |kind: &str, list: &[&str]| {
            spec_from_words(kind, &words(list))
                .expect_err("accepted")
                .to_string()
        };
        assert_eq!(
            error("cron", &["hours=3"]),
            "hours: not a field of a cron trigger; did you mean hour?"
        );
        assert_eq!(error("cron", &["hour=3", "hour=4"]), "hour: given twice");
        assert_eq!(
            error("interval", &["minutes=ten"]),
            "minutes: \"ten\" is not a whole number"
        );
        assert!(error("weekly", &[]).starts_with("type: unknown trigger type \"weekly\""));
        assert!(error("cron", &["3"]).starts_with("3: expected field=value"));
        assert!(error("crontab", &["timezone=UTC"]).starts_with("crontab: expected a crontab line"));
    }
}
