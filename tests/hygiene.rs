//! Repository hygiene: nothing the repository ignores, and no build or install
//! artefact (a Python venv, `node_modules`, a cargo `target`), is tracked. Such files
//! bloat every clone, go stale, and a venv or `node_modules` committed from one machine
//! does not run on another; the scripts that make them (tests/fuzz/api-fuzz.sh,
//! tests/generated_client/run.sh, examples/news-app/order_service/test_e2e.sh, .ci/run)
//! make them again where they do not work.
//!
//! Outside a git checkout (a source tarball, `cargo package`) there is nothing to
//! check: the test says so and does nothing.

use std::path::Path;
use std::process::Command;

/// The tracked files, or why they cannot be listed (git missing, not a checkout).
fn git(arguments: &[&str]) -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("git")
        .args(arguments)
        .current_dir(root)
        .output()
        .map_err(|error| format!("git cannot be run: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "git {} failed: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8(output.stdout).map_err(|error| format!("git's output is not UTF-8: {error}"))
}

/// Whether this source tree is a git checkout; prints why not when it is not.
fn in_a_checkout() -> bool {
    match git(&["rev-parse", "--is-inside-work-tree"]) {
        Ok(answer) if answer.trim() == "true" => true,
        Ok(answer) => {
            eprintln!(
                "SKIP hygiene: not inside a git work tree ({})",
                answer.trim()
            );
            false
        }
        Err(reason) => {
            eprintln!("SKIP hygiene: not a git checkout: {reason}");
            false
        }
    }
}

/// Why `path` (as `git ls-files` prints it) is an artefact that must not be tracked.
fn artefact(path: &str) -> Option<&'static str> {
    let components: Vec<&str> = path.split('/').collect();
    let directories = &components[..components.len().saturating_sub(1)];
    let file = components.last().copied().unwrap_or_default();
    for directory in directories {
        match *directory {
            "node_modules" => return Some("an npm install (node_modules)"),
            "target" => return Some("a cargo build directory (target)"),
            "__pycache__" => return Some("Python bytecode (__pycache__)"),
            "site-packages" => return Some("an installed Python package (site-packages)"),
            ".venv" | "venv" => return Some("a Python virtualenv"),
            _ => {}
        }
    }
    if file == "pyvenv.cfg" {
        return Some("a Python virtualenv (pyvenv.cfg)");
    }
    if file.ends_with(".pyc") {
        return Some("Python bytecode (.pyc)");
    }
    None
}

#[test]
fn no_tracked_file_is_one_gitignore_ignores() {
    if !in_a_checkout() {
        return;
    }
    let ignored = git(&["ls-files", "--cached", "--ignored", "--exclude-standard"])
        .unwrap_or_else(|reason| panic!("{reason}"));
    let ignored: Vec<&str> = ignored.lines().filter(|line| !line.is_empty()).collect();
    assert!(
        ignored.is_empty(),
        "tracked files that .gitignore ignores (git rm --cached them, or stop ignoring \
         them):\n{}",
        ignored.join("\n")
    );
}

#[test]
fn no_venv_node_modules_or_target_artefact_is_tracked() {
    if !in_a_checkout() {
        return;
    }
    let tracked = git(&["ls-files"]).unwrap_or_else(|reason| panic!("{reason}"));
    let artefacts: Vec<String> = tracked
        .lines()
        .filter_map(|path| artefact(path).map(|why| format!("{path}: {why}")))
        .collect();
    assert!(
        artefacts.is_empty(),
        "tracked build or install artefacts (git rm --cached them):\n{}",
        artefacts.join("\n")
    );
}

#[test]
fn artefacts_are_told_from_sources() {
    for path in [
        "tests/fuzz/.venv/bin/python",
        "benches/compare/venv/pyvenv.cfg",
        "tests/ui/node_modules/playwright-core/index.js",
        "benches/compare/tcs/target/release/tcs",
        "examples/news-app/order_service/__pycache__/app.cpython-313.pyc",
        "lib/python3.13/site-packages/x.py",
        "pyvenv.cfg",
        "tool.pyc",
    ] {
        assert!(artefact(path).is_some(), "{path}");
    }
    for path in [
        "src/trigger/tzdata.rs",
        "tests/fuzz/api-fuzz.sh",
        "docs/target-audience.md",
        "src/api/ui/app.js",
        "examples/news-app/order_service/app.py",
    ] {
        assert!(artefact(path).is_none(), "{path}");
    }
}
