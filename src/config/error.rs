//! Config errors: each one names its file, line and column, the key path and the
//! reason, and [`ConfigErrors`] carries every problem of one load at once, so
//! a user fixes a config in one round instead of one error per `kairos check`.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// A file could not be read (a missing config or explicitly included file).
    Io,
    /// The file is not valid TOML.
    Syntax,
    /// A key the schema does not have (usually a typo).
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong type, out of range, or otherwise not acceptable.
    InvalidValue,
    /// A name that refers to nothing: an executor, job store or task that does not exist.
    UnknownReference,
    /// A job id defined twice.
    Duplicate,
}

/// One problem in a config file.
///
/// Displays as `FILE:LINE:COLUMN: KEY: MESSAGE`, e.g.
/// `jobs/stats.toml:4:8: jobs[0].trigger.hour: 25 is out of range 0-23`; the position is
/// left out when there is none (a file that could not be read), the key when the
/// problem is not about one key (a TOML syntax error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, as it was opened: the config path as given, included files joined to
    /// the config file's directory.
    pub file: PathBuf,
    /// The 1-based line of the offending key or value; 0 when there is no position.
    pub line: usize,
    /// The 1-based column (in characters) of the offending key or value; 0 when there is
    /// no position.
    pub column: usize,
    /// The key path from the top of the file: `api.listen`, `jobs[2].trigger.hour`.
    pub key: String,
    /// The kind of mistake.
    pub kind: ConfigErrorKind,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// An error about a whole file, without a position (it could not be read).
    pub(crate) fn file(path: &Path, kind: ConfigErrorKind, message: impl Into<String>) -> Self {
        ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            kind,
            message: message.into(),
        }
    }

    /// `file:line:column`, to point from one error at another place (a duplicate id).
    pub fn position(&self) -> String {
        format!("{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Every problem found while loading a config; never empty.
///
/// Displays as one line per problem, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps the problems found, or `None` when there were none.
    pub(crate) fn from_vec(errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        (!errors.is_empty()).then_some(ConfigErrors { errors })
    }

    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// How many problems there are (at least one).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a load that found nothing wrong returns a config instead.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> ConfigErrors {
        ConfigErrors {
            errors: vec![error],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_position_key_and_message() {
        let error = ConfigError {
            file: PathBuf::from("jobs/stats.toml"),
            line: 4,
            column: 8,
            key: "jobs[0].trigger.hour".to_owned(),
            kind: ConfigErrorKind::InvalidValue,
            message: "25 is out of range 0-23".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "jobs/stats.toml:4:8: jobs[0].trigger.hour: 25 is out of range 0-23"
        );
        let unreadable = ConfigError::file(
            Path::new("config.toml"),
            ConfigErrorKind::Io,
            "cannot read: not found",
        );
        assert_eq!(
            unreadable.to_string(),
            "config.toml: cannot read: not found"
        );
        let both = ConfigErrors::from_vec(vec![error, unreadable]);
        assert_eq!(
            both.map(|errors| errors.to_string().lines().count()),
            Some(2)
        );
        assert_eq!(ConfigErrors::from_vec(Vec::new()), None);
    }
}
