//! One config file in memory: its path, its text, and the map from byte offsets (the
//! spans the TOML parser records) to the 1-based line and column that errors show.
//!
//! Also the walk that turns a span back into the key path it belongs to, so a serde
//! error deep inside a table still names `jobs[3].trigger.hour`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind};

/// A config file's path and text.
#[derive(Debug)]
pub(crate) struct Source {
    path: PathBuf,
    text: String,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl Source {
    /// Reads `path`; the error names the file.
    pub(crate) fn read(path: &Path) -> Result<Source, ConfigError> {
        std::fs::read_to_string(path)
            .map(|text| Source::new(path.to_path_buf(), text))
            .map_err(|error| {
                ConfigError::file(path, ConfigErrorKind::Io, format!("cannot read: {error}"))
            })
    }

    pub(crate) fn new(path: PathBuf, text: String) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(index, _)| index + 1))
            .collect();
        Source {
            path,
            text,
            line_starts,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file as a spanned TOML table; a syntax error is one error at its position.
    pub(crate) fn parse(&self) -> Result<Spanned<DeTable<'_>>, ConfigError> {
        DeTable::parse(&self.text).map_err(|error| {
            let span = error.span().unwrap_or(0..0);
            // The parser's message is one line; its Display adds a source excerpt we
            // do not want in a one-line-per-problem report.
            self.error(span, "", ConfigErrorKind::Syntax, error.message().trim())
        })
    }

    /// The 1-based line and column (in characters) of byte `offset`.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self
            .line_starts
            .partition_point(|start| *start <= offset)
            .max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        (line, column + 1)
    }

    /// An error at the start of `span`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        kind: ConfigErrorKind,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_column(span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            key: key.into(),
            kind,
            message: message.into(),
        }
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    // Keys that are not bare TOML keys are quoted, as in `tasks."stats.correct"`.
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// The path (below `parent`) of the deepest key or array element of `value` whose key
/// or value contains `offset`, with the span to report: the key's when the offset is on
/// the key, else the value's. `None` when nothing inside `value` contains it.
///
/// Every child is searched, not only those whose parent's span contains the offset: the
/// span of a `[section]` or `[[jobs]]` table covers its header, not its keys.
pub(crate) fn path_at(
    value: &Spanned<DeValue<'_>>,
    parent: &str,
    offset: usize,
) -> Option<(String, Range<usize>)> {
    let inside = match value.get_ref() {
        DeValue::Table(table) => table.iter().find_map(|(key, child)| {
            let path = join_key(parent, key.get_ref());
            if key.span().contains(&offset) {
                Some((path, key.span()))
            } else {
                path_at(child, &path, offset)
            }
        }),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| path_at(item, &format!("{parent}[{index}]"), offset)),
        _ => None,
    };
    inside.or_else(|| {
        value
            .span()
            .contains(&offset)
            .then(|| (parent.to_owned(), value.span()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_and_count_characters() {
        let source = Source::new(PathBuf::from("x.toml"), "a = 1\nné = \"é\"\n".to_owned());
        assert_eq!(source.line_column(0), (1, 1));
        assert_eq!(source.line_column(4), (1, 5));
        assert_eq!(source.line_column(6), (2, 1));
        // After "né = " (6 bytes, 5 characters).
        assert_eq!(source.line_column(12), (2, 6));
        assert_eq!(source.line_column(10_000), (3, 1));
    }

    #[test]
    fn finds_the_key_path_of_a_span() {
        let source = Source::new(
            PathBuf::from("x.toml"),
            "[[jobs]]\nid = \"a\"\n[[jobs]]\nid = \"b\"\ntrigger = { type = \"cron\", hour = 25 }\n"
                .to_owned(),
        );
        let Ok(table) = source.parse() else {
            panic!("valid TOML")
        };
        let span = table.span();
        let root = Spanned::new(span, DeValue::Table(table.into_inner()));
        let offset = source.text.find("25").unwrap_or(0);
        let Some((path, span)) = path_at(&root, "", offset) else {
            panic!("the offset is inside")
        };
        assert_eq!(path, "jobs[1].trigger.hour");
        assert_eq!(source.line_column(span.start), (5, 35));
        assert_eq!(
            join_key("tasks", "stats.correct"),
            "tasks.\"stats.correct\""
        );
    }
}
