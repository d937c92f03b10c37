//! The config file (`config.toml` and its `[[jobs]]` tables), loaded with
//! `kairos::config::load` from a file in a temporary directory, every check the daemon
//! and `kairos check` run. Checks: no panic; the fire times of every job a config
//! loads strictly increase.
//!
//! Inputs that name files (`include`, `token_file`) are skipped: they would read the
//! machine's own files (a FIFO or /dev/zero would stall or exhaust the fuzzer), and
//! what those keys do with files is covered by tests/config.rs.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The file each input is written to, in a directory of this process's own.
fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kairos-fuzz-config-{}", std::process::id()));
        if let Err(error) = std::fs::create_dir_all(&dir) {
            panic!("cannot make {}: {error}", dir.display());
        }
        dir.join("config.toml")
    })
}

/// Whether any key at any depth names a file.
fn names_files(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(table) => table
            .iter()
            .any(|(key, value)| key_names_file(key) || names_files(value)),
        toml::Value::Array(items) => items.iter().any(names_files),
        _ => false,
    }
}

fn key_names_file(key: &str) -> bool {
    key == "include" || key.ends_with("file") || key.ends_with("path") || key.ends_with("dir")
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = kairos_fuzz::text(data) else {
        return;
    };
    match text.parse::<toml::Table>() {
        Ok(table) => {
            if names_files(&toml::Value::Table(table)) {
                return;
            }
        }
        // Not TOML: kairos stops at its own parse, before any key is read. Skip text
        // that might still be read as naming a file by a more lenient parse.
        Err(_) => {
            if ["include", "file", "path", "dir"]
                .iter()
                .any(|word| text.contains(word))
            {
                return;
            }
        }
    }
    let path = config_path();
    if let Err(error) = std::fs::write(path, data) {
        panic!("cannot write {}: {error}", path.display());
    }
    let Ok(config) = kairos::config::load(path) else {
        return;
    };
    for job in &config.jobs {
        // Built at the fuzzer's fixed instant rather than the load's "now", so a
        // trigger relative to now may fail to build here: only its fire times count.
        kairos_fuzz::build_and_check_in(job.spec.trigger.clone(), config.scheduler.timezone);
    }
});
