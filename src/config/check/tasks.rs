//! `[tasks]`: the variables job args may name (`env_allow`) and each task's
//! `[tasks.NAME]` settings, checked by the task that takes them.

use std::collections::BTreeMap;

use super::super::error::{ConfigError, ConfigErrorKind};
use super::super::raw::RawRoot;
use super::super::source::join_key;
use super::report::unknown_name;
use crate::task::{SettingsErrorKind, TaskRegistry};

/// `[tasks.NAME]`: NAME is the settings section of a task (`stats` for
/// `stats.correct`), whose settings that task checks, or the name of a registered task
/// (settings passed through as they are).
/// `[tasks] env_allow`: the environment variables `${NAME}` in job args may name
/// (task/env_args.rs); each must be a variable name.
pub(crate) fn check_env_allow(raw: &RawRoot, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let mut names = Vec::new();
    for (index, name) in raw.env_allow.iter().flatten().enumerate() {
        if crate::task::env_args::is_variable_name(name.get_ref()) {
            names.push(name.get_ref().clone());
        } else {
            errors.push(raw.source.error(
                name.span(),
                format!("tasks.env_allow[{index}]"),
                ConfigErrorKind::InvalidValue,
                format!(
                    "{:?} is not an environment variable name (letters, digits and _, not \
                     starting with a digit)",
                    name.get_ref()
                ),
            ));
        }
    }
    names
}

pub(crate) fn check_task_settings(
    raw: &RawRoot,
    tasks: &TaskRegistry,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, serde_json::Value> {
    let mut known: Vec<&str> = tasks.sections();
    known.extend(tasks.names());
    let mut settings = BTreeMap::new();
    for entry in &raw.tasks {
        let name = entry.name.get_ref();
        let section_key = join_key("tasks", name);
        if !known.contains(&name.as_str()) {
            errors.push(unknown_name(
                &raw.source,
                &entry.name,
                &section_key,
                "task settings section",
                &known,
            ));
            continue;
        }
        if let Err(problems) = tasks.check_settings(name, &entry.settings) {
            for problem in problems {
                let kind = match problem.kind {
                    SettingsErrorKind::UnknownKey => ConfigErrorKind::UnknownKey,
                    SettingsErrorKind::MissingKey => ConfigErrorKind::MissingKey,
                    SettingsErrorKind::InvalidValue => ConfigErrorKind::InvalidValue,
                };
                let key = if problem.key.is_empty() {
                    section_key.clone()
                } else {
                    format!("{section_key}.{}", problem.key)
                };
                let at_value = kind == ConfigErrorKind::InvalidValue;
                errors.push(raw.source.error(
                    entry.span_of(&problem.key, at_value),
                    key,
                    kind,
                    problem.message,
                ));
            }
        }
        settings.insert(name.clone(), entry.settings.clone());
    }
    settings
}
