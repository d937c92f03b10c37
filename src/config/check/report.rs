//! How problems are worded the same way everywhere: `invalid`, `missing`, an unknown
//! name with the closest known one, and the names a job may refer to.

use std::collections::BTreeSet;
use std::ops::Range;

use toml::Spanned;

use super::super::error::{ConfigError, ConfigErrorKind};
use super::super::read::backticked;
use super::super::source::Source;
use crate::suggest;
use crate::task::TaskRegistry;

/// The names a job may refer to.
pub(crate) struct Names<'a> {
    /// From [`declared_names`].
    pub(crate) jobstores: &'a BTreeSet<String>,
    /// From [`declared_names`].
    pub(crate) executors: &'a BTreeSet<String>,
    pub(crate) tasks: &'a TaskRegistry,
}

/// Reports `name` when `known` does not hold it.
pub(crate) fn check_reference(
    source: &Source,
    name: &Spanned<String>,
    key: &str,
    what: &str,
    known: &BTreeSet<String>,
    errors: &mut Vec<ConfigError>,
) {
    if !known.contains(name.get_ref()) {
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        errors.push(unknown_name(source, name, key, what, &names));
    }
}

/// "unknown executor `x`; did you mean `y`?", or the list of what exists.
pub(crate) fn unknown_name(
    source: &Source,
    name: &Spanned<String>,
    key: &str,
    what: &str,
    known: &[&str],
) -> ConfigError {
    let written = name.get_ref();
    let message = match suggest::closest(written, known) {
        Some(close) => format!("unknown {what} `{written}`; did you mean `{close}`?"),
        None if known.is_empty() => format!("unknown {what} `{written}`; there are none"),
        None => format!(
            "unknown {what} `{written}`; expected one of {}",
            backticked(known)
        ),
    };
    source.error(name.span(), key, ConfigErrorKind::UnknownReference, message)
}

/// "`x` is not a log format; did you mean `y`?" or the list of choices; `what` comes
/// with its article ("a log format", "an executor type").
pub(super) fn not_one_of(what: &str, written: &str, choices: &[&str]) -> String {
    match suggest::closest(written, choices) {
        Some(close) => format!("`{written}` is not {what}; did you mean `{close}`?"),
        None => format!(
            "`{written}` is not {what}; expected one of {}",
            backticked(choices)
        ),
    }
}

pub(crate) fn at_least_one<N>(
    source: &Source,
    value: &Spanned<N>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<N>
where
    N: Copy + PartialOrd + From<u8>,
{
    if *value.get_ref() < N::from(1) {
        errors.push(invalid(source, value, key, "must be at least 1"));
        None
    } else {
        Some(*value.get_ref())
    }
}

pub(crate) fn invalid<T>(
    source: &Source,
    value: &Spanned<T>,
    key: &str,
    message: impl ToString,
) -> ConfigError {
    source.error(
        value.span(),
        key,
        ConfigErrorKind::InvalidValue,
        message.to_string(),
    )
}

pub(crate) fn missing(
    source: &Source,
    table_span: Range<usize>,
    key: &str,
    expected: &str,
) -> ConfigError {
    source.error(
        table_span,
        key,
        ConfigErrorKind::MissingKey,
        format!("missing; expected {expected}"),
    )
}
