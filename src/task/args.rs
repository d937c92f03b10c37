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
