//! The reading machinery under `raw.rs`: a spanned TOML value into a serde type, key
//! by key as far as it goes, so one bad value costs only itself.
//!
//! Serde stops at its first error; a user wants every problem at once. So a table is
//! read into its struct, and when that fails the offending key (found from the error's
//! span) is reported and left out, and the rest is read again. Unknown keys are checked
//! first against the struct's own field list, taken from serde's derive, so the "did
//! you mean" can never disagree with the schema.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Deserializer;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind};
use super::source::{join_key, path_at, Source};
use crate::suggest;

/// A section as read: the value with the keys that could be read, the span of the whole
/// table, and the keys that were present but refused (already reported, so checks for
/// a missing key must not report them again).
#[derive(Debug)]
pub(crate) struct Section<T> {
    pub(crate) value: T,
    pub(crate) span: Range<usize>,
    pub(crate) failed: BTreeSet<String>,
}

impl<T> Section<T> {
    /// Whether `key` was given but refused.
    pub(crate) fn refused(&self, key: &str) -> bool {
        self.failed.contains(key)
    }
}

/// A `[NAME.ENTRY]` table such as `[executors.default]`: the entry's name and span.
#[derive(Debug)]
pub(crate) struct Named<T> {
    pub(crate) name: Spanned<String>,
    pub(crate) section: Section<T>,
}

/// `[NAME.ENTRY]` tables, each read into `T`.
pub(crate) fn read_named<T: DeserializeOwned>(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Named<T>> {
    let Some(table) = expect_table(source, value, path, errors) else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    for (name, entry) in table.iter() {
        let entry_path = join_key(path, name.get_ref());
        if let Some(section) = read_struct(source, entry, &entry_path, errors) {
            entries.push(Named {
                name: Spanned::new(name.span(), name.get_ref().to_string()),
                section,
            });
        }
    }
    entries
}

pub(crate) fn expect_table<'a, 'i>(
    source: &Source,
    value: &'a Spanned<DeValue<'i>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<&'a DeTable<'i>> {
    let table = value.get_ref().as_table();
    if table.is_none() {
        errors.push(source.error(
            value.span(),
            path,
            ConfigErrorKind::InvalidValue,
            format!("expected a table, found {}", value.get_ref().type_str()),
        ));
    }
    table
}

/// Reads a table into the struct `T`, as much of it as possible: unknown keys and keys
/// whose values do not fit are reported and left out, and the rest is read again.
/// `None` when the table is not a table or `T` cannot be had without the keys left out
/// (a required field).
pub(crate) fn read_struct<T: DeserializeOwned>(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Section<T>> {
    let table = expect_table(source, value, path, errors)?;
    let known = field_names::<T>();
    let mut remaining = table.clone();
    let mut failed = BTreeSet::new();
    for (key, _) in table.iter() {
        if !known.contains(&key.get_ref().as_ref()) {
            let key_path = join_key(path, key.get_ref());
            errors.push(unknown_key(
                source,
                key.span(),
                &key_path,
                key.get_ref(),
                known,
            ));
            failed.insert(key.get_ref().to_string());
            remaining.remove(key.get_ref().as_ref());
        }
    }
    // Each round either succeeds or removes one key, so this ends.
    loop {
        let attempt = Spanned::new(value.span(), DeValue::Table(remaining.clone()));
        let error = match T::deserialize(ValueDeserializer::from(attempt.clone())) {
            Ok(read) => {
                return Some(Section {
                    value: read,
                    span: value.span(),
                    failed,
                })
            }
            Err(error) => error,
        };
        let offset = error.span().map_or(value.span().start, |span| span.start);
        let culprit = remaining.iter().find_map(|(key, child)| {
            let key_path = join_key(path, key.get_ref());
            let found = if key.span().contains(&offset) {
                Some((key_path, key.span()))
            } else {
                path_at(child, &key_path, offset)
            };
            found.map(|found| (key.get_ref().to_string(), found))
        });
        match culprit {
            Some((key, (key_path, span))) => {
                errors.push(source.error(
                    span,
                    key_path,
                    ConfigErrorKind::InvalidValue,
                    error.message(),
                ));
                remaining.remove(key.as_str());
                failed.insert(key);
            }
            None => {
                // Not about one key: a required field is missing. When a key was left
                // out above, that is the cause, and it has been reported already.
                if failed.is_empty() {
                    errors.push(source.error(
                        value.span(),
                        path,
                        ConfigErrorKind::MissingKey,
                        error.message(),
                    ));
                }
                return None;
            }
        }
    }
}

/// Reads one value into `T`; the error names the key path of the offending part.
pub(crate) fn read_value<T: DeserializeOwned>(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(read) => Some(read),
        Err(error) => {
            let offset = error.span().map_or(value.span().start, |span| span.start);
            let (key_path, span) =
                path_at(value, path, offset).unwrap_or_else(|| (path.to_owned(), value.span()));
            errors.push(source.error(
                span,
                key_path,
                ConfigErrorKind::InvalidValue,
                error.message(),
            ));
            None
        }
    }
}

/// A TOML value as JSON (task args and settings). TOML date-times become their text.
pub(crate) fn read_json(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<serde_json::Value> {
    let mut json = read_value::<serde_json::Value>(source, value, path, errors)?;
    datetimes_as_text(&mut json);
    Some(json)
}

/// The `toml` crate hands a date-time to serde as a one-entry map under a private
/// field name; JSON users want the text.
fn datetimes_as_text(json: &mut serde_json::Value) {
    const TOML_DATETIME_FIELD: &str = "$__toml_private_datetime";
    match json {
        serde_json::Value::Object(map) => {
            if map.len() == 1 {
                if let Some(serde_json::Value::String(text)) = map.get(TOML_DATETIME_FIELD) {
                    *json = serde_json::Value::String(text.clone());
                    return;
                }
            }
            map.values_mut().for_each(datetimes_as_text);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(datetimes_as_text),
        _ => {}
    }
}

/// "unknown key `x`; did you mean `y`?", or the list of keys when nothing is close.
pub(crate) fn unknown_key(
    source: &Source,
    span: Range<usize>,
    path: &str,
    written: &str,
    known: &[&str],
) -> ConfigError {
    let message = match suggest::closest(written, known) {
        Some(close) => format!("unknown key `{written}`; did you mean `{close}`?"),
        None => format!(
            "unknown key `{written}`; expected one of {}",
            backticked(known)
        ),
    };
    source.error(span, path, ConfigErrorKind::UnknownKey, message)
}

/// `a`, `b` and `c` as "`a`, `b`, `c`".
pub(crate) fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The field names serde's derive gives a struct: the key list of a section, taken from
/// the schema itself so the "unknown key" check can never disagree with it.
pub(crate) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that only records the fields a struct asks for.
    struct FieldNames<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for FieldNames<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // Always an error: the deserializer gives no data, it only listens.
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::raw::{HumaneDuration, RawExecutor, RawLog, RawScheduler};
    use crate::trigger::CronSpec;

    #[test]
    fn field_names_come_from_the_schema() {
        assert_eq!(field_names::<RawLog>(), &["level", "format"] as &[&str]);
        assert!(field_names::<CronSpec>().contains(&"day_of_week"));
        assert!(field_names::<RawExecutor>().contains(&"type"));
    }

    #[test]
    fn reads_every_good_key_and_reports_every_bad_one() {
        let source = Source::new(
            PathBuf::from("x.toml"),
            "[scheduler]\nbatch_size = \"ten\"\nfire_ahead = \"2s\"\ntimezon = \"UTC\"\nshutdown_timeout = \"soon\"\nwatch = true\n"
                .to_owned(),
        );
        let Ok(table) = source.parse() else {
            panic!("valid TOML")
        };
        let Some(value) = table.get_ref().get("scheduler") else {
            panic!("has [scheduler]")
        };
        let mut errors = Vec::new();
        let Some(section) = read_struct::<RawScheduler>(&source, value, "scheduler", &mut errors)
        else {
            panic!("the good keys are read")
        };
        assert_eq!(
            section.value.fire_ahead,
            Some(HumaneDuration(Duration::from_secs(2)))
        );
        assert_eq!(section.value.watch, Some(true));
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[0].starts_with(
                "x.toml:4:1: scheduler.timezon: unknown key `timezon`; did you mean `timezone`?"
            ),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with("x.toml:2:14: scheduler.batch_size: invalid type")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|line| line.starts_with(
                "x.toml:5:20: scheduler.shutdown_timeout: \"soon\" is not a duration"
            )),
            "{lines:#?}"
        );
        assert!(section.refused("batch_size"));
    }

    #[test]
    fn datetimes_in_args_become_text() {
        let source = Source::new(
            PathBuf::from("x.toml"),
            "args = { at = 2024-03-01T12:00:00Z, list = [1979-05-27] }\n".to_owned(),
        );
        let Ok(table) = source.parse() else {
            panic!("valid TOML")
        };
        let Some(value) = table.get_ref().get("args") else {
            panic!("has args")
        };
        let mut errors = Vec::new();
        let json = read_json(&source, value, "args", &mut errors);
        assert_eq!(
            json,
            Some(serde_json::json!({"at": "2024-03-01T12:00:00Z", "list": ["1979-05-27"]}))
        );
    }
}
