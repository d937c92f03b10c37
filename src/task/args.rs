//! Reading the JSON args of the built-in tasks: objects with known keys, durations,
//! and messages that name the field and say what kind of value was found.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::trigger::spec::humane_duration;

/// `args` as an object whose keys are all in `known`; an unknown key is named, with the
/// closest known one when it looks like a typo.
pub(crate) fn object<'a>(
    args: &'a Value,
    known: &[&str],
    example: &str,
) -> Result<&'a Map<String, Value>, String> {
    let Value::Object(fields) = args else {
        return Err(format!(
            "args: must be an object such as {example}, not {}",
            kind(args)
        ));
    };
    if let Some(key) = fields.keys().find(|key| !known.contains(&key.as_str())) {
        let hint = match crate::suggest::closest(key, known) {
            Some(close) => format!("did you mean \"{close}\"?"),
            None => format!("expected one of {}", known.join(", ")),
        };
        return Err(format!("{key}: unknown key ({hint})"));
    }
    Ok(fields)
}

/// A duration given as `"30s"`, `"1h30m"` or a number of seconds; `null` is none.
pub(crate) fn duration_arg(field: &str, value: &Value) -> Result<Option<Duration>, String> {
    let duration = match value {
        Value::Null => return Ok(None),
        Value::String(text) => {
            humane_duration::parse(text).map_err(|error| format!("{field}: {error}"))?
        }
        Value::Number(number) => number
            .as_f64()
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .ok_or_else(|| format!("{field}: {number} is not a valid number of seconds"))?,
        other => {
            return Err(format!(
                "{field}: must be a duration such as \"30s\" or a number of seconds, not {}",
                kind(other)
            ))
        }
    };
    if duration.is_zero() {
        return Err(format!("{field}: must be more than zero"));
    }
    Ok(Some(duration))
}

/// What kind of JSON value `value` is, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `bytes` as text, without a character cut at its end.
pub(crate) fn utf8_prefix(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        // An incomplete character at the end and nothing invalid before it.
        Err(error) if error.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..error.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// humantime's unit spellings, longest first within each unit (`Unit::from_str`).
macro_rules! duration_units {
    () => {
        "(nanos|nsec|ns|usec|us|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)"
    };
}

/// A JSON Schema `pattern` for the text durations [`duration_arg`] and the API's
/// duration fields take (`crate::trigger::spec::humane_duration`): seconds (`"90"`,
/// `"1.5"`), or numbers with humantime's units, ASCII spellings (`"1h30m"`, `"1h 30m"`,
/// `"2days"`); what the API writes back (humantime's `format_duration`) matches it
/// too. Narrower than what is parsed (no `µs`, at most 7 digits a part), never wider:
/// the OpenAPI document states it so that what a schema-driven tool makes from it is
/// taken. Written for ECMA-262, Python and Rust regular expressions alike.
pub(crate) const DURATION_PATTERN: &str = concat!(
    r"^ *([0-9]{1,9}(\.[0-9]{1,9})?|[0-9]{1,7}",
    duration_units!(),
    r"( ?[0-9]{1,7}",
    duration_units!(),
    r")*) *$"
);

/// [`DURATION_PATTERN`] without zero: the first number is not 0, so the whole is more
/// than zero, as [`duration_arg`] requires.
pub(crate) const NONZERO_DURATION_PATTERN: &str = concat!(
    r"^ *([1-9][0-9]{0,8}(\.[0-9]{1,9})?|0?\.[0-9]{0,8}[1-9]|[1-9][0-9]{0,6}",
    duration_units!(),
    r"( ?[0-9]{1,7}",
    duration_units!(),
    r")*) *$"
);

/// The JSON Schema of a task's `timeout`-like arg read with [`duration_arg`]: a text
/// duration, positive seconds, or null for none.
pub(crate) fn duration_arg_schema(description: &str) -> Value {
    serde_json::json!({
        "type": ["string", "number", "null"],
        "pattern": NONZERO_DURATION_PATTERN,
        "exclusiveMinimum": 0,
        "maximum": MAX_SCHEMA_SECONDS,
        "description": description,
        "examples": ["30s", 90],
    })
}

/// The largest number of seconds the documents state for a duration given as a
/// number: about 31,700 years, well inside what every duration field takes.
pub(crate) const MAX_SCHEMA_SECONDS: u64 = 1_000_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// What the pattern allows, the parser takes; and the two agree on zero.
    #[test]
    fn the_duration_patterns_allow_only_what_is_parsed() {
        let pattern = regex::Regex::new(DURATION_PATTERN).expect("pattern");
        let nonzero = regex::Regex::new(NONZERO_DURATION_PATTERN).expect("pattern");
        for text in [
            "30s",
            "1h30m",
            "1h 30m",
            "90",
            "1.5",
            " 15m ",
            "0",
            "0s",
            "250ms",
            "2w 3d",
            "999999w",
            "0.5",
            ".5",
            "999999999.999999999",
            "2days",
            "1year 2months",
            "31688years 1month 1day 15h 13m 5s",
            "1s 500ms",
            "3M",
            "10 s",
        ] {
            let parsed = crate::trigger::spec::humane_duration::parse(text);
            if pattern.is_match(text) {
                assert!(parsed.is_ok(), "{text:?} matches but does not parse");
            }
            if nonzero.is_match(text) {
                assert!(
                    duration_arg("timeout", &Value::String(text.to_owned()))
                        .is_ok_and(|d| d.is_some()),
                    "{text:?} matches the non-zero pattern but is refused"
                );
            }
        }
        for text in ["30s", "1h30m", "1h 30m", "90", "1.5", "0", "2days 3h"] {
            assert!(pattern.is_match(text), "{text:?}");
        }
        // What the API writes back matches too (a trigger's jitter is read and shown).
        for seconds in [1, 59, 90, 3_600, 86_400 * 45, 1_000_000_000_000] {
            let shown = humantime::format_duration(Duration::from_secs(seconds)).to_string();
            assert!(pattern.is_match(&shown), "{shown:?}");
        }
        for text in ["0", "0s", "0.0", "00", "", "s", "1x", "-1", "1h  30m"] {
            assert!(!nonzero.is_match(text), "{text:?}");
        }
        for text in ["", "s", "1x", "-1", "inf", "NaN", "1e5"] {
            assert!(!pattern.is_match(text), "{text:?}");
        }
    }
}
