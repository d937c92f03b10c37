//! `include = ["jobs/*.toml"]`: which files the main config pulls in.
//!
//! Patterns are relative to the main file's directory. `*` and `?` may appear in the
//! file-name part only (`jobs/*.toml`, not `*/jobs.toml`), which is all a job directory
//! needs and keeps this a few lines instead of a dependency. A pattern's matches are
//! taken in sorted order, so jobs load in the same order on every machine; a pattern
//! that matches nothing is fine (an empty `jobs/` directory), a plain path that does not
//! exist is an error (a typo would otherwise drop jobs silently). As in a shell, `*`
//! does not match a leading dot, so editor lock files such as `.#demo.toml` stay out.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind};
use super::source::Source;

/// The files `patterns` name, in load order, each joined to the main file's directory.
pub(crate) fn resolve(
    root: &Source,
    patterns: &[Spanned<String>],
    errors: &mut Vec<ConfigError>,
) -> Vec<PathBuf> {
    let base = root.path().parent().unwrap_or(Path::new(""));
    let mut files = Vec::new();
    for (index, pattern) in patterns.iter().enumerate() {
        let key = format!("include[{index}]");
        let text = pattern.get_ref().as_str();
        let (directory, name) = match text.rsplit_once('/') {
            Some((directory, name)) => (directory, name),
            None => ("", text),
        };
        if name.is_empty() {
            errors.push(root.error(
                pattern.span(),
                key,
                ConfigErrorKind::InvalidValue,
                format!("{text:?} names a directory; write e.g. \"{text}*.toml\""),
            ));
            continue;
        }
        if has_wildcard(directory) {
            errors.push(root.error(
                pattern.span(),
                key,
                ConfigErrorKind::InvalidValue,
                format!(
                    "{text:?}: `*` and `?` may only appear in the file name, e.g. \"jobs/*.toml\""
                ),
            ));
            continue;
        }
        let directory = base.join(directory);
        if !has_wildcard(name) {
            let file = directory.join(name);
            if file.is_file() {
                files.push(file);
            } else {
                errors.push(root.error(
                    pattern.span(),
                    key,
                    ConfigErrorKind::Io,
                    format!("included file {} does not exist", file.display()),
                ));
            }
            continue;
        }
        // A directory that is missing or unreadable matches nothing, like an empty one.
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        let mut matched: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_file())
            .filter(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .is_some_and(|file_name| matches(name, file_name))
            })
            .map(|entry| directory.join(entry.file_name()))
            .collect();
        matched.sort();
        files.extend(matched);
    }
    files
}

/// The directories of the patterns with wildcards, joined to the main file's
/// directory: where a new job file would appear, even while none matches.
pub(crate) fn directories(root: &Source, patterns: &[Spanned<String>]) -> Vec<PathBuf> {
    let base = root.path().parent().unwrap_or(Path::new(""));
    patterns
        .iter()
        .filter_map(|pattern| {
            let (directory, name) = pattern
                .get_ref()
                .rsplit_once('/')
                .unwrap_or(("", pattern.get_ref()));
            has_wildcard(name).then(|| base.join(directory))
        })
        .collect()
}

fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?'])
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` any one
/// character; a leading dot must be matched by a literal dot.
fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // The classic linear matcher: on a mismatch, let the last `*` swallow one more
    // character and retry from there.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(matches("*.toml", "demo.toml"));
        assert!(!matches("*.toml", ".toml"));
        assert!(!matches("*.toml", ".#demo.toml"));
        assert!(matches(".*.toml", ".hidden.toml"));
        assert!(!matches("*.toml", "demo.toml.bak"));
        assert!(matches("job?.toml", "job1.toml"));
        assert!(!matches("job?.toml", "job12.toml"));
        assert!(matches("*stats*", "nightly-stats.toml"));
        assert!(matches("a*b*c", "abxbxc"));
        assert!(!matches("a*b*c", "abxbx"));
        assert!(matches("*", "x"));
        assert!(matches("exact.toml", "exact.toml"));
        assert!(!matches("exact.toml", "exact.tom"));
    }
}
