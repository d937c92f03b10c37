//! `[jobstores.NAME]` and `[executors.NAME]`: each store's URL (a SQLite path made
//! relative to the config file), each executor's kind and workers, and the default
//! of each when none is declared.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use toml::Spanned;

use super::super::error::ConfigError;
use super::super::raw::{RawExecutor, RawJobStore, RawRoot};
use super::super::read::{Named, Section};
use super::super::source::{join_key, Source};
use super::super::{ExecutorConfig, ExecutorKind, JobStoreConfig};
use super::report::{at_least_one, invalid, missing, not_one_of};
use super::DEFAULT;
use crate::store::url::{StoreUrl, StoreUrlError};

/// `[jobstores.NAME]`; `default` = `sqlite://kairos.db` beside the config file when
/// there are none.
pub(crate) fn check_jobstores(
    raw: &RawRoot,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, JobStoreConfig> {
    let mut stores = BTreeMap::new();
    if raw.jobstores.is_empty() {
        stores.insert(
            DEFAULT.to_owned(),
            JobStoreConfig {
                url: resolve_sqlite_path("sqlite://kairos.db", config_dir),
                prefix: None,
                instance_ttl: None,
            },
        );
        return stores;
    }
    for Named { name, section } in &raw.jobstores {
        if let Some(store) = check_jobstore(&raw.source, name, section, config_dir, errors) {
            stores.insert(name.get_ref().clone(), store);
        }
    }
    stores
}

fn check_jobstore(
    source: &Source,
    name: &Spanned<String>,
    section: &Section<RawJobStore>,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<JobStoreConfig> {
    let path = join_key("jobstores", name.get_ref());
    let store = &section.value;
    let prefix = match (&store.prefix, &store.table_prefix) {
        (Some(prefix), Some(table_prefix)) => {
            errors.push(invalid(
                source,
                table_prefix,
                &join_key(&path, "table_prefix"),
                "give `prefix` or `table_prefix`, not both (they are the same setting)",
            ));
            Some(prefix)
        }
        (prefix, table_prefix) => prefix.as_ref().or(table_prefix.as_ref()),
    };
    let url = match &store.url {
        Some(url) => check_store_url(source, url, &join_key(&path, "url"), config_dir, errors)?,
        None => {
            if !section.refused("url") {
                errors.push(missing(
                    source,
                    section.span.clone(),
                    &join_key(&path, "url"),
                    "a store URL such as \"sqlite://kairos.db\", \"memory://\" or \"postgres://…\"",
                ));
            }
            return None;
        }
    };
    Some(JobStoreConfig {
        url,
        prefix: prefix.map(|prefix| prefix.get_ref().clone()),
        instance_ttl: store.instance_ttl.map(|duration| duration.0),
    })
}

/// Parses a store URL the way [`crate::store::open`] will, without connecting. A
/// `${VAR}` that is not set now is not an error here: the daemon's environment (a
/// systemd `EnvironmentFile`) may differ from the shell that runs `kairos check`, and
/// `open` names a missing variable itself.
fn check_store_url(
    source: &Source,
    url: &Spanned<String>,
    path: &str,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let unset = RefCell::new(Vec::new());
    let parsed = StoreUrl::parse_with(url.get_ref(), |name| {
        std::env::var(name).ok().or_else(|| {
            unset.borrow_mut().push(name.to_owned());
            Some("unset".to_owned())
        })
    });
    match parsed {
        Ok(StoreUrl::Sqlite(_)) => Some(resolve_sqlite_path(url.get_ref(), config_dir)),
        Ok(_) => Some(url.get_ref().trim().to_owned()),
        // With a variable unknown, the scheme or path may well come from it.
        Err(StoreUrlError::UnknownScheme(_) | StoreUrlError::MissingPath)
            if !unset.borrow().is_empty() =>
        {
            Some(url.get_ref().trim().to_owned())
        }
        Err(error) => {
            errors.push(invalid(source, url, path, error));
            None
        }
    }
}

/// `sqlite://kairos.db` relative to the config file's directory, so the daemon finds
/// the same database whatever its working directory (systemd starts it in `/`).
fn resolve_sqlite_path(url: &str, config_dir: &Path) -> String {
    let url = url.trim();
    let Some(path) = url.get("sqlite://".len()..).filter(|_| {
        url.get(.."sqlite://".len())
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sqlite://"))
    }) else {
        return url.to_owned();
    };
    let relative = !path.starts_with('/') && !path.starts_with(":memory:") && !path.contains("${");
    if !relative || config_dir.as_os_str().is_empty() {
        return url.to_owned();
    }
    format!("sqlite://{}", config_dir.join(path).to_string_lossy())
}

/// `[executors.NAME]`; `default` = a 10-worker thread pool when there are none.
pub(crate) fn check_executors(
    raw: &RawRoot,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, ExecutorConfig> {
    let mut executors = BTreeMap::new();
    if raw.executors.is_empty() {
        executors.insert(
            DEFAULT.to_owned(),
            ExecutorConfig {
                kind: ExecutorKind::ThreadPool,
                max_workers: 10,
                timeout: None,
            },
        );
        return executors;
    }
    for Named { name, section } in &raw.executors {
        if let Some(executor) = check_executor(&raw.source, name, section, errors) {
            executors.insert(name.get_ref().clone(), executor);
        }
    }
    executors
}

fn check_executor(
    source: &Source,
    name: &Spanned<String>,
    section: &Section<RawExecutor>,
    errors: &mut Vec<ConfigError>,
) -> Option<ExecutorConfig> {
    const KINDS: &[&str] = &["threadpool", "processpool"];
    let path = join_key("executors", name.get_ref());
    let executor = &section.value;
    let kind = match &executor.kind {
        Some(kind) => match kind.get_ref().as_str() {
            "threadpool" => ExecutorKind::ThreadPool,
            "processpool" => ExecutorKind::ProcessPool,
            other => {
                errors.push(invalid(
                    source,
                    kind,
                    &join_key(&path, "type"),
                    not_one_of("an executor type", other, KINDS),
                ));
                return None;
            }
        },
        None => {
            if !section.refused("type") {
                errors.push(missing(
                    source,
                    section.span.clone(),
                    &join_key(&path, "type"),
                    "`threadpool` or `processpool`",
                ));
            }
            return None;
        }
    };
    let max_workers = match &executor.max_workers {
        Some(workers) => at_least_one(source, workers, &join_key(&path, "max_workers"), errors)?,
        None => 10,
    };
    Some(ExecutorConfig {
        kind,
        max_workers,
        timeout: executor.timeout.map(|duration| duration.0),
    })
}

/// The names of the `[executors.NAME]` or `[jobstores.NAME]` tables, valid or not (an
/// invalid one is reported once, by its own check, not again by every job naming it),
/// or `default` when there are none (the built-in default is used then).
pub(crate) fn declared_names<T>(entries: &[Named<T>]) -> BTreeSet<String> {
    if entries.is_empty() {
        return BTreeSet::from([DEFAULT.to_owned()]);
    }
    entries
        .iter()
        .map(|entry| entry.name.get_ref().clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_paths_follow_the_config_file() {
        let dir = Path::new("/etc/kairos");
        assert_eq!(
            resolve_sqlite_path("sqlite://var/kairos.db", dir),
            "sqlite:///etc/kairos/var/kairos.db"
        );
        assert_eq!(
            resolve_sqlite_path("sqlite:///srv/k.db", dir),
            "sqlite:///srv/k.db"
        );
        assert_eq!(
            resolve_sqlite_path("sqlite://k.db", Path::new("")),
            "sqlite://k.db"
        );
        assert_eq!(
            resolve_sqlite_path("postgres://h/db", dir),
            "postgres://h/db"
        );
    }
}
