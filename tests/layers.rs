//! Every import inside the crate points down the layers docs/architecture.md draws, so
//! that there is no cycle and each layer can be read without the ones above it.
//!
//! A textual scan, on purpose: every `crate::module` path (and every `super::` path that
//! climbs to the crate root) in a file under `src/` names the top-level module it
//! reaches, and that module must sit on a lower floor than the file's own. Comments are
//! skipped, since a doc link to a layer above is a pointer for the reader, not a
//! dependency.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The floors, top first. A module may import any module on a lower floor, never one
/// on its own floor or above. Keep in step with docs/architecture.md ("The layers").
const FLOORS: &[&[&str]] = &[
    &["main"],
    &["daemon", "client"],
    &["api"],
    &["scheduler"],
    &["metrics", "config"],
    &["alert"],
    &["store"],
    &["executor"],
    &["task"],
    &["history"],
    &["job"],
    &["trigger"],
    &[
        "allocator",
        "clock",
        "color",
        "process_group",
        "secret_url",
        "suggest",
        "tls",
    ],
];

/// The crate root's own files, which are no layer.
const ROOT_FILES: &[&str] = &["lib"];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&module))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, found)?;
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
    Ok(())
}

/// The module path of a file: `src/store/sql/mod.rs` is `["store", "sql"]`,
/// `src/store/sql/jobs.rs` is `["store", "sql", "jobs"]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_owned();
    }
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// The identifier that starts `text`, if any.
fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules a line names through `crate::` (also `crate::{a, b::c}`) or
/// through `super::` chains that climb to the crate root.
fn referenced_modules(line: &str, own_path: &[String]) -> Vec<String> {
    let mut modules = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        // `$crate::` or `kairos_crate::` are not this crate's root.
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = identifier(item.trim());
                if !name.is_empty() {
                    modules.push(name.to_owned());
                }
            }
        } else {
            let name = identifier(after);
            if !name.is_empty() {
                modules.push(name.to_owned());
            }
        }
    }
    let mut rest = line;
    while let Some(at) = rest.find("super::") {
        let before = rest[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            rest = &rest[at + "super::".len()..];
            continue;
        }
        let mut after = &rest[at..];
        let mut climbs = 0;
        while let Some(next) = after.strip_prefix("super::") {
            climbs += 1;
            after = next;
        }
        rest = after;
        // A file's own module path, less one per `super`: at zero it is the root.
        // (An inline `mod tests` adds a level this count does not see, which can only
        // make a path look as if it reached the root when it did not; the name after
        // it then has to be a top-level module for it to count.)
        if climbs >= own_path.len() {
            let name = identifier(after);
            if !name.is_empty() {
                modules.push(name.to_owned());
            }
        }
    }
    modules
}

/// The code of a line, or nothing for a comment line.
fn code_of(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    // A trailing comment: cut at `//` unless it sits inside a string (a URL).
    match trimmed.find(" //") {
        Some(at) if !trimmed[..at].contains('"') => &trimmed[..at],
        _ => trimmed,
    }
}

#[test]
fn every_import_points_down_the_layers() -> Result<(), Box<dyn std::error::Error>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    files.sort();
    assert!(
        files.len() > 50,
        "found only {} files under src/",
        files.len()
    );

    let mut unplaced = Vec::new();
    let mut against = Vec::new();
    let mut edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src)?;
        let path = module_path(relative);
        let Some(own) = path.first() else { continue };
        if ROOT_FILES.contains(&own.as_str()) {
            continue;
        }
        let Some(own_floor) = floor_of(own) else {
            unplaced.push(format!("src/{} (module {own})", relative.display()));
            continue;
        };
        let text = fs::read_to_string(file)?;
        for (index, line) in text.lines().enumerate() {
            for module in referenced_modules(code_of(line), &path) {
                if module == *own {
                    continue;
                }
                let Some(floor) = floor_of(&module) else {
                    // Not a top-level module: an item of the crate root
                    // (`crate::Trigger`) or a `super::` that did not reach the root.
                    continue;
                };
                *edges.entry((own.clone(), module.clone())).or_default() += 1;
                if floor <= own_floor {
                    against.push(format!(
                        "src/{}:{}: {own} imports {module} ({}): {}",
                        relative.display(),
                        index + 1,
                        if floor == own_floor {
                            "same floor"
                        } else {
                            "a floor above"
                        },
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules on no floor; place them in FLOORS and docs/architecture.md:\n{}",
        unplaced.join("\n")
    );
    // The scan sees the imports it must see: a check that finds nothing proves nothing.
    for (from, to) in [
        ("scheduler", "store"),
        ("api", "scheduler"),
        ("job", "trigger"),
    ] {
        assert!(
            edges.contains_key(&(from.to_owned(), to.to_owned())),
            "the scan found no {from} → {to} import; is it still reading paths?"
        );
    }
    assert!(
        against.is_empty(),
        "imports against the layers of docs/architecture.md:\n{}",
        against.join("\n")
    );
    Ok(())
}

#[test]
fn the_scan_reads_the_forms_imports_take() {
    let store = vec!["store".to_owned(), "sql".to_owned(), "jobs".to_owned()];
    assert_eq!(
        referenced_modules("use crate::{job::Job, history::RunRecord};", &store),
        ["job", "history"]
    );
    assert_eq!(
        referenced_modules("let x = crate::scheduler::DEFAULT;", &store),
        ["scheduler"]
    );
    assert_eq!(
        referenced_modules("use super::super::super::api::X;", &store),
        ["api"]
    );
    assert!(referenced_modules("use super::super::leases;", &store).is_empty());
    assert!(referenced_modules("$crate::job::x", &store).is_empty());
    assert_eq!(code_of("/// see [`crate::api`]"), "");
    assert_eq!(code_of("use crate::job; // why"), "use crate::job;");
}

#[test]
fn every_floor_is_in_the_architecture_doc() -> Result<(), Box<dyn std::error::Error>> {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))?;
    for module in FLOORS.iter().flat_map(|floor| floor.iter()) {
        assert!(
            doc.contains(&format!("`{module}`")),
            "docs/architecture.md does not place `{module}`"
        );
    }
    Ok(())
}
