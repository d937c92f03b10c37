//! Trigger tables (`trigger = { type = "cron", hour = 3 }`): read with their spans,
//! then built, so that a bad trigger is reported at load time with the field it names
//! (`jobs[0].trigger.hour: 25 is out of range 0-23`) rather than when the job is added.
//!
//! A trigger is not read through [`TriggerSpec`]'s own `Deserialize`: its `type` tag
//! makes serde buffer the table, which loses the spans. `type` is read first here, and
//! the rest goes into the chosen variant's struct; `and`/`or` read each of their
//! `triggers` the same way, so an error names `triggers[1].minute`.

use std::time::Duration;

use toml::de::DeValue;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind};
use super::raw::HumaneDuration;
use super::read::{backticked, field_names, read_struct, read_value, unknown_key};
use super::source::{join_key, Source};
use crate::suggest;
use crate::trigger::{
    CalendarIntervalSpec, CombiningSpec, CronSpec, CrontabSpec, DateSpec, IntervalSpec, Trigger,
    TriggerContext, TriggerSpec,
};

/// Reads a trigger table: `type` chooses the fields, and each is checked by name so a
/// misspelt one gets a "did you mean".
pub(crate) fn read_trigger(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<TriggerSpec> {
    const KINDS: &[&str] = &[
        "date",
        "interval",
        "cron",
        "crontab",
        "calendarinterval",
        "and",
        "or",
    ];
    let Some(table) = value.get_ref().as_table() else {
        errors.push(source.error(
            value.span(),
            path,
            ConfigErrorKind::InvalidValue,
            format!(
                "expected a table such as {{ type = \"cron\", hour = 3 }}, found {}",
                value.get_ref().type_str()
            ),
        ));
        return None;
    };
    let type_path = join_key(path, "type");
    let Some(kind) = table.get("type") else {
        errors.push(source.error(
            value.span(),
            type_path,
            ConfigErrorKind::MissingKey,
            format!("missing; expected one of {}", backticked(KINDS)),
        ));
        return None;
    };
    let Some(kind_name) = kind.get_ref().as_str() else {
        errors.push(source.error(
            kind.span(),
            type_path,
            ConfigErrorKind::InvalidValue,
            format!(
                "expected a string, one of {}, found {}",
                backticked(KINDS),
                kind.get_ref().type_str()
            ),
        ));
        return None;
    };
    // The fields of the chosen type, without `type` (which the variant structs do not
    // have: serde's tag takes it).
    let mut fields = table.clone();
    fields.remove("type");
    let fields = Spanned::new(value.span(), DeValue::Table(fields));
    match kind_name {
        "date" => read_struct::<DateSpec>(source, &fields, path, errors)
            .map(|section| TriggerSpec::Date(section.value)),
        "interval" => read_struct::<IntervalSpec>(source, &fields, path, errors)
            .map(|section| TriggerSpec::Interval(Box::new(section.value))),
        "cron" => read_struct::<CronSpec>(source, &fields, path, errors)
            .map(|section| TriggerSpec::Cron(Box::new(section.value))),
        "crontab" => read_struct::<CrontabSpec>(source, &fields, path, errors)
            .map(|section| TriggerSpec::Crontab(Box::new(section.value))),
        "calendarinterval" => read_struct::<CalendarIntervalSpec>(source, &fields, path, errors)
            .map(|section| TriggerSpec::CalendarInterval(Box::new(section.value))),
        "and" => read_combining(source, &fields, path, errors).map(TriggerSpec::And),
        "or" => read_combining(source, &fields, path, errors).map(TriggerSpec::Or),
        other => {
            let mut message = format!("unknown trigger type `{other}`");
            match suggest::closest(other, KINDS) {
                Some(close) => message.push_str(&format!("; did you mean `{close}`?")),
                None => message.push_str(&format!("; expected one of {}", backticked(KINDS))),
            }
            errors.push(source.error(
                kind.span(),
                type_path,
                ConfigErrorKind::InvalidValue,
                message,
            ));
            None
        }
    }
}

/// `and` / `or`: each of `triggers` is read as a trigger of its own, so an error in the
/// second one names `triggers[1].hour`.
fn read_combining(
    source: &Source,
    fields: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<CombiningSpec> {
    let table = fields.get_ref().as_table()?;
    let known = field_names::<CombiningSpec>();
    let mut ok = true;
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
            ok = false;
        }
    }
    let jitter = match table.get("jitter") {
        Some(value) => {
            let read =
                read_value::<HumaneDuration>(source, value, &join_key(path, "jitter"), errors);
            ok &= read.is_some();
            read.map(|duration| duration.0)
        }
        None => None,
    };
    let triggers_path = join_key(path, "triggers");
    let mut triggers = Vec::new();
    match table.get("triggers") {
        None => {
            errors.push(source.error(
                fields.span(),
                triggers_path,
                ConfigErrorKind::MissingKey,
                "missing; expected a list of triggers",
            ));
            ok = false;
        }
        Some(value) => match value.get_ref().as_array() {
            Some(items) => {
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{triggers_path}[{index}]");
                    match read_trigger(source, item, &item_path, errors) {
                        Some(spec) => triggers.push(spec),
                        None => ok = false,
                    }
                }
            }
            None => {
                errors.push(source.error(
                    value.span(),
                    triggers_path,
                    ConfigErrorKind::InvalidValue,
                    format!(
                        "expected a list of triggers, found {}",
                        value.get_ref().type_str()
                    ),
                ));
                ok = false;
            }
        },
    }
    ok.then_some(CombiningSpec { triggers, jitter })
}

/// Builds a trigger to check it (so `hour = 25` is caught at load time, not when the
/// job is added) and reports a failure at the field it names. Returns the spec and the
/// jitter the trigger sets.
pub(crate) fn check_trigger(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    spec: TriggerSpec,
    path: &str,
    context: &TriggerContext,
    errors: &mut Vec<ConfigError>,
) -> Option<(TriggerSpec, Option<Duration>)> {
    match Trigger::new(spec.clone(), context) {
        Ok(trigger) => Some((spec, trigger.jitter())),
        Err(error) => {
            let key = if error.field().is_empty() {
                path.to_owned()
            } else {
                format!("{path}.{}", error.field())
            };
            errors.push(source.error(
                field_span(value, error.field()),
                key,
                ConfigErrorKind::InvalidValue,
                error.reason(),
            ));
            None
        }
    }
}

/// The span of the value at `field` (`hour`, `triggers[1].hour`) inside `value`, or of
/// the nearest enclosing value that exists (a missing field is reported at its table).
fn field_span(value: &Spanned<DeValue<'_>>, field: &str) -> std::ops::Range<usize> {
    let mut current = value;
    for segment in field.split('.').filter(|segment| !segment.is_empty()) {
        let mut parts = segment.split('[');
        let name = parts.next().unwrap_or_default();
        let Some(next) = current
            .get_ref()
            .as_table()
            .and_then(|table| table.get(name))
        else {
            break;
        };
        current = next;
        for index in parts {
            let item = index
                .trim_end_matches(']')
                .parse::<usize>()
                .ok()
                .and_then(|index| current.get_ref().as_array()?.get(index));
            match item {
                Some(item) => current = item,
                None => break,
            }
        }
    }
    current.span()
}
