//! Task settings: the `[tasks.SECTION]` tables of config.toml that configure a built-in
//! task (`[tasks.stats]` for `stats.correct`, `[tasks.orders]` for `orders.cancel`), and
//! the small reader the tasks parse them with.
//!
//! Settings differ from a job's args: they are the same for every job of the task, they
//! may hold secrets (`${VAR}` in URLs), and they change only with a restart. A task
//! reads them into its own typed settings once, when config is checked and again when
//! the daemon configures the registry, so a typo is reported by `kairos check` with its
//! file, line and column rather than at 03:00 by the first run.
//!
//! # Ground rules
//! - Reading settings never connects to anything: `kairos check` must work on a machine
//!   that cannot reach the databases.
//! - Every problem is collected, each with the key path below the section
//!   (`counters[2].query`), which config turns into `tasks.stats.counters[2].query` and
//!   a position.

use std::time::Duration;

use serde_json::{Map, Value};

use super::args::kind;
use crate::trigger::spec::humane_duration;

/// What kind of mistake a [`SettingsError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingsErrorKind {
    /// A key the settings do not have.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong type or shape.
    InvalidValue,
}

/// One problem in a task's settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    /// The key path below the section: `database_url`, `counters[2].query`; empty for
    /// the section itself.
    pub key: String,
    /// The kind of mistake.
    pub kind: SettingsErrorKind,
    /// What is wrong and what was expected.
    pub message: String,
}

impl SettingsError {
    /// A value of `key` that is not acceptable.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
        SettingsError {
            key: key.into(),
            kind: SettingsErrorKind::InvalidValue,
            message: message.into(),
        }
    }

    /// `key` is required and absent.
    pub fn missing(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
        SettingsError {
            kind: SettingsErrorKind::MissingKey,
            ..SettingsError::new(key, message)
        }
    }

    /// `key` is not one of the settings.
    pub fn unknown(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
        SettingsError {
            kind: SettingsErrorKind::UnknownKey,
            ..SettingsError::new(key, message)
        }
    }
}

/// Reads the fields of one settings table, collecting every problem.
pub(crate) struct SettingsReader<'a> {
    fields: &'a Map<String, Value>,
    /// The path of this table below the section: `""` or `counters[2]`.
    path: String,
    pub(crate) errors: Vec<SettingsError>,
}

impl<'a> SettingsReader<'a> {
    /// A reader of `value`, which must be a table holding only `known` keys.
    pub(crate) fn new(value: &'a Value, path: &str, known: &[&str]) -> Result<Self, SettingsError> {
        let Value::Object(fields) = value else {
            return Err(SettingsError::new(
                path,
                format!("must be a table, not {}", kind(value)),
            ));
        };
        let mut reader = SettingsReader {
            fields,
            path: path.to_owned(),
            errors: Vec::new(),
        };
        for key in fields.keys().filter(|key| !known.contains(&key.as_str())) {
            let hint = match crate::suggest::closest(key, known) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("expected one of {}", backticked(known)),
            };
            let key_path = reader.key(key);
            reader.errors.push(SettingsError::unknown(
                key_path,
                format!("unknown key `{key}`; {hint}"),
            ));
        }
        Ok(reader)
    }

    /// The path of `key` in this table.
    pub(crate) fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of `key`, if present and not null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.fields.get(key).filter(|value| !value.is_null())
    }

    /// A string that must be present and not blank; `hint` says what to write.
    pub(crate) fn required_string(&mut self, key: &str, hint: &str) -> Option<String> {
        match self.get(key) {
            None => {
                let path = self.key(key);
                self.errors
                    .push(SettingsError::missing(path, format!("missing; {hint}")));
                None
            }
            Some(_) => self.optional_string(key),
        }
    }

    /// A string that may be absent but, when present, is not blank.
    pub(crate) fn optional_string(&mut self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            Value::String(_) => {
                let path = self.key(key);
                self.errors.push(SettingsError::new(
                    path,
                    "is empty; leave the key out instead",
                ));
                None
            }
            other => {
                let path = self.key(key);
                self.errors.push(SettingsError::new(
                    path,
                    format!("must be a string, not {}", kind(other)),
                ));
                None
            }
        }
    }

    /// A positive whole number.
    pub(crate) fn optional_count(&mut self, key: &str) -> Option<usize> {
        let value = self.get(key)?;
        match value.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(count) if count > 0 => Some(count),
            _ => {
                let path = self.key(key);
                self.errors.push(SettingsError::new(
                    path,
                    format!("must be a whole number above zero, not {value}"),
                ));
                None
            }
        }
    }

    /// A duration: `"30s"`, `"1h30m"` or a number of seconds; `"none"` for no limit.
    pub(crate) fn optional_duration(&mut self, key: &str) -> Option<Option<Duration>> {
        let value = self.get(key)?;
        let parsed = match value {
            Value::String(text) if text.trim() == "none" => Ok(None),
            Value::String(text) => humane_duration::parse(text)
                .map(Some)
                .map_err(|error| error.to_string()),
            Value::Number(number) => number
                .as_f64()
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
                .map(Some)
                .ok_or_else(|| format!("{number} is not a valid number of seconds")),
            other => Err(format!(
                "must be a duration such as \"30m\", a number of seconds or \"none\", not {}",
                kind(other)
            )),
        };
        match parsed {
            Ok(Some(duration)) if duration.is_zero() => {
                let path = self.key(key);
                self.errors.push(SettingsError::new(
                    path,
                    "must be more than zero (\"none\" for no limit)",
                ));
                None
            }
            Ok(duration) => Some(duration),
            Err(message) => {
                let path = self.key(key);
                self.errors.push(SettingsError::new(path, message));
                None
            }
        }
    }

    /// The errors so far, or `Ok` when there are none.
    pub(crate) fn finish(self) -> Result<(), Vec<SettingsError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// `a`, `b` as "`a`, `b`".
fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collects_every_problem_with_its_path() {
        let value = json!({"url": "", "batch": 0, "timout": "1m"});
        let mut reader = SettingsReader::new(&value, "counters[1]", &["url", "batch", "timeout"])
            .expect("a table");
        assert_eq!(reader.optional_string("url"), None);
        assert_eq!(reader.optional_count("batch"), None);
        assert_eq!(reader.required_string("name", "e.g. \"x\""), None);
        let errors = reader.finish().expect_err("three problems");
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "counters[1].timout",
                "counters[1].url",
                "counters[1].batch",
                "counters[1].name"
            ]
        );
        assert!(errors[0].message.contains("did you mean `timeout`"));
    }

    #[test]
    fn durations_accept_none_and_numbers() {
        let value = json!({"a": "none", "b": 90, "c": "1h"});
        let mut reader = SettingsReader::new(&value, "", &["a", "b", "c"]).expect("a table");
        assert_eq!(reader.optional_duration("a"), Some(None));
        assert_eq!(
            reader.optional_duration("b"),
            Some(Some(Duration::from_secs(90)))
        );
        assert_eq!(
            reader.optional_duration("c"),
            Some(Some(Duration::from_secs(3600)))
        );
        assert!(reader.finish().is_ok());
    }
}
