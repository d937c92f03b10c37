//! `[log]`: the `tracing` filter and the format of the daemon's log.

use super::super::error::ConfigError;
use super::super::raw::RawRoot;
use super::super::read::backticked;
use super::super::{LogConfig, LogFormat};
use super::report::{invalid, not_one_of};

/// `[log]`: `level` is a `tracing` filter, `format` is `text` or `json`.
pub(crate) fn check_log(raw: &RawRoot, errors: &mut Vec<ConfigError>) -> LogConfig {
    const FORMATS: &[&str] = &["text", "json"];
    let source = &raw.source;
    let mut log = LogConfig {
        level: "info".to_owned(),
        format: LogFormat::Text,
    };
    let Some(section) = &raw.log else {
        return log;
    };
    if let Some(level) = &section.value.level {
        match check_log_filter(level.get_ref()) {
            Ok(()) => log.level = level.get_ref().trim().to_owned(),
            Err(message) => errors.push(invalid(source, level, "log.level", message)),
        }
    }
    if let Some(format) = &section.value.format {
        match format.get_ref().as_str() {
            "text" => log.format = LogFormat::Text,
            "json" => log.format = LogFormat::Json,
            other => errors.push(invalid(
                source,
                format,
                "log.format",
                not_one_of("a log format", other, FORMATS),
            )),
        }
    }
    log
}

/// A `tracing` filter: comma-separated `level` or `target=level` directives. A bare
/// word must be a level: `tracing` would take `inf` as a target name and log nothing,
/// which is never what a config meant.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(format!(
            "is empty; expected a level such as `info` ({})",
            backticked(LEVELS)
        ));
    }
    for directive in directives {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            Some(_) => return Err(format!("{directive:?} has no target before `=`")),
            None => directive,
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(not_one_of("a log level", level, LEVELS));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_take_levels_and_target_levels() {
        assert_eq!(check_log_filter("info"), Ok(()));
        assert_eq!(check_log_filter("warn,kairos=debug"), Ok(()));
        assert_eq!(check_log_filter("WARN"), Ok(()));
        let Err(message) = check_log_filter("inf") else {
            panic!("inf is not a level")
        };
        assert_eq!(message, "`inf` is not a log level; did you mean `info`?");
        assert!(check_log_filter("kairos=loud").is_err());
        assert!(check_log_filter("").is_err());
    }
}
