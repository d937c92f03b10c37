//! From the raw schema to a validated [`Config`](super::Config): one small `check_*`
//! function per section, each taking what it needs, reporting every problem into the
//! shared error list and returning its best value anyway, so that the checks after it
//! still run and the user sees all problems at once (STYLE 3, 15).
//!
//! The `[[jobs]]` tables have their own file, `jobs.rs`; the helpers that word errors
//! the same way everywhere (`invalid`, `missing`, `unknown_name`) live here.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind};
use super::raw::{HumaneDuration, RawApi, RawExecutor, RawJobStore, RawRoot, RawScheduler};
use super::read::{backticked, Named, Section};
use super::source::{join_key, Source};
use super::{
    ApiConfig, ExecutorConfig, ExecutorKind, JobStoreConfig, LogConfig, LogFormat, SchedulerConfig,
    TokenConfig,
};
use crate::job::JobDefaults;
use crate::store::url::{expand, StoreUrl, StoreUrlError};
use crate::store::HistoryRetention;
use crate::suggest;
use crate::task::outbound::AllowRule;
use crate::task::{SettingsErrorKind, TaskRegistry};
use crate::trigger::Zone;

/// The name of the executor and store used when none is named.
const DEFAULT: &str = "default";

/// `[scheduler]`, with the system's zone and `HOSTNAME-PID` as defaults.
pub(crate) fn check_scheduler(
    raw: &RawRoot,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> SchedulerConfig {
    let source = &raw.source;
    let mut config = SchedulerConfig {
        timezone: Zone::system(),
        tzdir: None,
        node_id: default_node_id(),
        batch_size: None,
        fire_ahead: None,
        shutdown_timeout: Duration::from_secs(30),
        watch: false,
        lease: DEFAULT_LEASE,
        heartbeat: DEFAULT_HEARTBEAT,
        node_timeout: DEFAULT_NODE_TIMEOUT,
        poll_interval: None,
    };
    let Some(section) = &raw.scheduler else {
        return config;
    };
    let scheduler = &section.value;
    if let Some(timezone) = &scheduler.timezone {
        match timezone.get_ref().parse::<Zone>() {
            Ok(zone) => config.timezone = zone,
            Err(error) => errors.push(invalid(source, timezone, "scheduler.timezone", error)),
        }
    }
    if let Some(tzdir) = &scheduler.tzdir {
        config.tzdir = check_tzdir(source, tzdir, config_dir, errors);
    }
    if let Some(node_id) = &scheduler.node_id {
        if node_id.get_ref().trim().is_empty() {
            errors.push(invalid(
                source,
                node_id,
                "scheduler.node_id",
                "must not be empty",
            ));
        } else {
            config.node_id = node_id.get_ref().clone();
        }
    }
    if let Some(batch_size) = &scheduler.batch_size {
        config.batch_size = at_least_one(source, batch_size, "scheduler.batch_size", errors);
    }
    config.fire_ahead = scheduler.fire_ahead.map(|duration| duration.0);
    if let Some(timeout) = scheduler.shutdown_timeout {
        config.shutdown_timeout = timeout.0;
    }
    config.watch = scheduler.watch.unwrap_or(false);
    check_cluster_timing(source, scheduler, &mut config, errors);
    config
}

/// `[scheduler] tzdir`: `"compiled-in"`, or a directory that exists (relative to the
/// config file's directory); a directory that is not there is an error naming the key,
/// not a silent fall back to the compiled-in rules (docs/semantics.md, "Zone rules").
fn check_tzdir(
    source: &Source,
    tzdir: &Spanned<String>,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Option<PathBuf>> {
    let text = tzdir.get_ref().trim();
    if text == crate::trigger::tzdata::COMPILED_IN {
        return Some(None);
    }
    if text.is_empty() {
        errors.push(invalid(
            source,
            tzdir,
            "scheduler.tzdir",
            "must name a zoneinfo directory (e.g. /usr/share/zoneinfo) or be \"compiled-in\"",
        ));
        return None;
    }
    let dir = config_dir.join(text);
    if !dir.is_dir() {
        errors.push(invalid(
            source,
            tzdir,
            "scheduler.tzdir",
            format!(
                "{} is not a directory (a zoneinfo directory such as /usr/share/zoneinfo, or \"compiled-in\")",
                dir.display()
            ),
        ));
        return None;
    }
    Some(Some(dir))
}

/// The lease, heartbeat and node timeout of a cluster. None may be zero,
/// and a node must get at least two heartbeats within the timeout, or one late beat
/// (a slow store, a GC pause) would get a live node reaped.
fn check_cluster_timing(
    source: &Source,
    scheduler: &RawScheduler,
    config: &mut SchedulerConfig,
    errors: &mut Vec<ConfigError>,
) {
    let positive = |value: &Option<Spanned<HumaneDuration>>,
                    key: &str,
                    errors: &mut Vec<ConfigError>|
     -> Option<Duration> {
        let value = value.as_ref()?;
        if value.get_ref().0.is_zero() {
            errors.push(invalid(source, value, key, "must be longer than zero"));
            return None;
        }
        Some(value.get_ref().0)
    };
    if let Some(lease) = positive(&scheduler.lease, "scheduler.lease", errors) {
        config.lease = lease;
    }
    if let Some(heartbeat) = positive(&scheduler.heartbeat, "scheduler.heartbeat", errors) {
        config.heartbeat = heartbeat;
    }
    if let Some(timeout) = positive(&scheduler.node_timeout, "scheduler.node_timeout", errors) {
        config.node_timeout = timeout;
    }
    config.poll_interval = positive(&scheduler.poll_interval, "scheduler.poll_interval", errors);
    if config.node_timeout < config.heartbeat.saturating_mul(2) {
        let message = format!(
            "must be at least two heartbeats ({:?}), or a live node with one late beat is reaped",
            config.heartbeat.saturating_mul(2)
        );
        let blamed = scheduler
            .node_timeout
            .as_ref()
            .or(scheduler.heartbeat.as_ref());
        let key = if scheduler.node_timeout.is_some() {
            "scheduler.node_timeout"
        } else {
            "scheduler.heartbeat"
        };
        if let Some(blamed) = blamed {
            errors.push(invalid(source, blamed, key, message));
        }
    }
}

/// The default lease (as [`crate::scheduler::Scheduler::builder`]'s).
const DEFAULT_LEASE: Duration = Duration::from_secs(300);
/// The default heartbeat.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// The default node timeout: six heartbeats.
const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// The host name: stable across restarts, unique among one daemon per host.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "kairos".to_owned());
    // The host name alone, so a daemon restarted after a crash has the same id and
    // frees the leases and instance slots it left at once (Scheduler::start). Two
    // daemons on one host sharing a store must set distinct node ids.
    host
}

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

/// `[job_defaults]`: docs/semantics.md's defaults, with names that must exist. Also reports a
/// missing `default` executor or store when nothing names another one.
pub(crate) fn check_job_defaults(
    raw: &RawRoot,
    names: &Names<'_>,
    errors: &mut Vec<ConfigError>,
) -> (JobDefaults, Option<Duration>) {
    let (jobstores, executors) = (names.jobstores, names.executors);
    let source = &raw.source;
    let mut defaults = JobDefaults::default();
    let mut jitter = None;
    let (mut executor_named, mut jobstore_named) = (false, false);
    if let Some(section) = &raw.job_defaults {
        let raw_defaults = &section.value;
        if let Some(executor) = &raw_defaults.executor {
            executor_named = true;
            check_reference(
                source,
                executor,
                "job_defaults.executor",
                "executor",
                executors,
                errors,
            );
            defaults.executor = executor.get_ref().clone();
        }
        if let Some(jobstore) = &raw_defaults.jobstore {
            jobstore_named = true;
            check_reference(
                source,
                jobstore,
                "job_defaults.jobstore",
                "job store",
                jobstores,
                errors,
            );
            defaults.jobstore = jobstore.get_ref().clone();
        }
        if let Some(grace) = raw_defaults.misfire_grace_time {
            defaults.misfire_grace_time = grace.0;
        }
        if let Some(coalesce) = raw_defaults.coalesce {
            defaults.coalesce = coalesce;
        }
        if let Some(max_instances) = &raw_defaults.max_instances {
            if let Some(max_instances) =
                at_least_one(source, max_instances, "job_defaults.max_instances", errors)
            {
                defaults.max_instances = max_instances;
            }
        }
        if let Some(overlap) = &raw_defaults.overlap {
            if let Some(overlap) = check_overlap(source, overlap, "job_defaults.overlap", errors) {
                defaults.overlap = overlap;
            }
        }
        jitter = raw_defaults.jitter.map(|duration| duration.0);
        if let Some(retry) = &raw_defaults.retry {
            defaults.retry = check_retry(source, retry, "job_defaults", errors);
        }
        if let Some(within) = &raw_defaults.expect_success_within {
            defaults.expect_success_within = check_expect_success_within(
                source,
                within,
                "job_defaults.expect_success_within",
                errors,
            );
        }
    }
    // Jobs that name no executor run on `default`; say once, at the section, that it
    // is missing, rather than at every such job.
    if !executor_named && !executors.contains(DEFAULT) {
        if let Some(first) = raw.executors.first() {
            errors.push(source.error(
                first.name.span(),
                "executors",
                ConfigErrorKind::UnknownReference,
                "no executor is named `default`; name one `default` or set [job_defaults] executor",
            ));
        }
    }
    if !jobstore_named && !jobstores.contains(DEFAULT) {
        if let Some(first) = raw.jobstores.first() {
            errors.push(source.error(
                first.name.span(),
                "jobstores",
                ConfigErrorKind::UnknownReference,
                "no job store is named `default`; name one `default` or set [job_defaults] jobstore",
            ));
        }
    }
    (defaults, jitter)
}

/// `[api]`: a parseable listen address, a token with `${VAR}` expanded, task names that
/// exist.
pub(crate) fn check_api(
    raw: &RawRoot,
    tasks: &TaskRegistry,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> ApiConfig {
    let source = &raw.source;
    let mut api = ApiConfig {
        enabled: true,
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        token: None,
        read_tokens: Vec::new(),
        allowed_tasks: tasks
            .names()
            .filter(|name| *name != "command")
            .map(str::to_owned)
            .collect(),
        rate_limit: None,
        rate_limit_burst: None,
        tokens: Vec::new(),
        ui: true,
        allowed_hosts: Vec::new(),
        http_allow: Vec::new(),
        max_connections: 512,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_event_streams: 64,
    };
    let Some(section) = &raw.api else {
        return api;
    };
    let raw_api = &section.value;
    api.enabled = raw_api.enabled.unwrap_or(true);
    if let Some(listen) = &raw_api.listen {
        match listen.get_ref().trim().parse::<SocketAddr>() {
            Ok(address) => api.listen = address,
            Err(_) => errors.push(invalid(
                source,
                listen,
                "api.listen",
                format!(
                    "{:?} is not an address and port such as \"127.0.0.1:8080\" or \"[::1]:8080\"",
                    listen.get_ref()
                ),
            )),
        }
    }
    if let Some(token) = &raw_api.token {
        api.token = check_token(source, token, "api.token", errors);
    }
    if let Some(file) = &raw_api.token_file {
        if raw_api.token.is_some() {
            errors.push(invalid(
                source,
                file,
                "api.token_file",
                "give `token` or `token_file`, not both",
            ));
        } else {
            api.token = read_token_file(source, file, "api.token_file", config_dir, errors);
        }
    }
    for (index, token) in raw_api.read_tokens.iter().flatten().enumerate() {
        let key = format!("api.read_tokens[{index}]");
        if let Some(token) = check_token(source, token, &key, errors) {
            api.read_tokens.push(token);
        }
    }
    check_named_tokens(source, raw_api, tasks, config_dir, &mut api, errors);
    // Without a token anyone who reaches the port controls the scheduler: only this
    // machine may, then. (A read token alone does not protect the write routes.)
    let write_token = api.token.is_some() || api.tokens.iter().any(|token| token.write);
    if api.enabled && !write_token && !api.listen.ip().is_loopback() {
        // The default is loopback, so a non-loopback address was written down.
        if let Some(listen) = &raw_api.listen {
            let message = format!(
                "{} is not a loopback address, so the API needs a `token` (or `token_file`)",
                api.listen
            );
            errors.push(invalid(source, listen, "api.listen", message));
        }
    }
    if let Some(allowed) = &raw_api.allowed_tasks {
        let known: Vec<&str> = tasks.names().collect();
        api.allowed_tasks = BTreeSet::new();
        for (index, task) in allowed.iter().enumerate() {
            let key = format!("api.allowed_tasks[{index}]");
            if known.contains(&task.get_ref().as_str()) {
                api.allowed_tasks.insert(task.get_ref().clone());
            } else {
                errors.push(unknown_name(source, task, &key, "task", &known));
            }
        }
    }
    check_rate_limit(source, raw_api, &mut api, errors);
    for (index, host) in raw_api.allowed_hosts.iter().flatten().enumerate() {
        let name = host.get_ref().trim();
        let readable = !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-._:[]".contains(&byte));
        if readable {
            api.allowed_hosts.push(name.to_ascii_lowercase());
        } else {
            let key = format!("api.allowed_hosts[{index}]");
            let message = format!(
                "{name:?} is not a host name or address such as \"kairos.internal\" or \"10.0.0.5\""
            );
            errors.push(invalid(source, host, &key, message));
        }
    }
    for (index, rule) in raw_api.http_allow.iter().flatten().enumerate() {
        match AllowRule::parse(rule.get_ref()) {
            Ok(_) => api.http_allow.push(rule.get_ref().trim().to_owned()),
            Err(message) => {
                let key = format!("api.http_allow[{index}]");
                errors.push(invalid(source, rule, &key, message));
            }
        }
    }
    check_server_limits(source, raw_api, &mut api, errors);
    // On by default only where the API is private to the machine; elsewhere the
    // operator turns it on knowingly (the page still needs a token to show anything).
    api.ui = raw_api.ui.unwrap_or(api.listen.ip().is_loopback());
    api
}

/// `rate_limit` and `rate_limit_burst`: at least 1 each; the burst defaults to twice
/// the rate, so a client that was quiet for two seconds may catch up at once.
fn check_rate_limit(
    source: &Source,
    raw_api: &RawApi,
    api: &mut ApiConfig,
    errors: &mut Vec<ConfigError>,
) {
    (api.rate_limit, api.rate_limit_burst) = check_rate(
        source,
        raw_api.rate_limit.as_ref(),
        raw_api.rate_limit_burst.as_ref(),
        "api",
        errors,
    );
}

/// A rate and its burst under `prefix`, each at least 1.
fn check_rate(
    source: &Source,
    rate: Option<&Spanned<u32>>,
    burst: Option<&Spanned<u32>>,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) -> (Option<u32>, Option<u32>) {
    let rate =
        rate.and_then(|rate| at_least_one(source, rate, &format!("{prefix}.rate_limit"), errors));
    let burst = burst.and_then(|burst| {
        at_least_one(source, burst, &format!("{prefix}.rate_limit_burst"), errors)
    });
    (rate, burst.or(rate.map(|rate| rate.saturating_mul(2))))
}

/// `[api.tokens.NAME]`: `token` or `token_file`, `access` read or write, `tasks` that
/// exist (only for a write token), and a rate.
fn check_named_tokens(
    source: &Source,
    raw_api: &RawApi,
    tasks: &TaskRegistry,
    config_dir: &Path,
    api: &mut ApiConfig,
    errors: &mut Vec<ConfigError>,
) {
    for (name, raw) in raw_api.tokens.iter().flatten() {
        let prefix = format!("api.tokens.{name}");
        let raw_token = raw.get_ref();
        let secret = match (&raw_token.token, &raw_token.token_file) {
            (Some(token), None) => check_token(source, token, &format!("{prefix}.token"), errors),
            (None, Some(file)) => read_token_file(
                source,
                file,
                &format!("{prefix}.token_file"),
                config_dir,
                errors,
            ),
            (Some(_), Some(file)) => {
                errors.push(invalid(
                    source,
                    file,
                    &format!("{prefix}.token_file"),
                    "give `token` or `token_file`, not both",
                ));
                None
            }
            (None, None) => {
                errors.push(invalid(
                    source,
                    raw,
                    &prefix,
                    "needs `token` or `token_file`",
                ));
                None
            }
        };
        let write = match &raw_token.access {
            None => false,
            Some(access) => match access.get_ref().as_str() {
                "read" => false,
                "write" => true,
                other => {
                    errors.push(invalid(
                        source,
                        access,
                        &format!("{prefix}.access"),
                        format!("{other:?} is not \"read\" or \"write\""),
                    ));
                    false
                }
            },
        };
        let token_tasks = raw_token.tasks.as_ref().map(|listed| {
            let known: Vec<&str> = tasks.names().collect();
            let mut chosen = BTreeSet::new();
            for (index, task) in listed.iter().enumerate() {
                let key = format!("{prefix}.tasks[{index}]");
                if !write {
                    errors.push(invalid(
                        source,
                        task,
                        &key,
                        "only a token with access = \"write\" schedules tasks",
                    ));
                } else if known.contains(&task.get_ref().as_str()) {
                    chosen.insert(task.get_ref().clone());
                } else {
                    errors.push(unknown_name(source, task, &key, "task", &known));
                }
            }
            chosen
        });
        let (rate_limit, rate_limit_burst) = check_rate(
            source,
            raw_token.rate_limit.as_ref(),
            raw_token.rate_limit_burst.as_ref(),
            &prefix,
            errors,
        );
        if let Some(token) = secret {
            api.tokens.push(TokenConfig {
                name: name.clone(),
                token,
                write,
                tasks: token_tasks,
                rate_limit,
                rate_limit_burst,
            });
        }
    }
}

/// `max_connections`, `header_timeout`, `idle_timeout`, `max_event_streams`: the
/// API server's limits (see `api/server.rs`); counts at least 1, durations as given.
fn check_server_limits(
    source: &Source,
    raw_api: &RawApi,
    api: &mut ApiConfig,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(count) = &raw_api.max_connections {
        if let Some(count) = at_least_one(source, count, "api.max_connections", errors) {
            api.max_connections = count as usize;
        }
    }
    if let Some(count) = &raw_api.max_event_streams {
        if let Some(count) = at_least_one(source, count, "api.max_event_streams", errors) {
            api.max_event_streams = count as usize;
        }
    }
    if let Some(timeout) = raw_api.header_timeout {
        api.header_timeout = timeout.0;
    }
    if let Some(timeout) = raw_api.idle_timeout {
        api.idle_timeout = timeout.0;
    }
}

/// `token_file`: the token is its first line (a secret kept out of the config, e.g. a
/// systemd credential); relative to the config file's directory, `${VAR}` expanded.
fn read_token_file(
    source: &Source,
    file: &Spanned<String>,
    key: &str,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    // `${VAR}` expanded, for `token_file = "${CREDENTIALS_DIRECTORY}/api-token"`
    // (a systemd credential, see systemd/kairos.service).
    let expanded = match expand(file.get_ref(), |name| std::env::var(name).ok()) {
        Ok(expanded) => expanded,
        Err(StoreUrlError::MissingVariable(name)) => {
            errors.push(invalid(
                source,
                file,
                key,
                format!("the environment variable {name:?} is not set"),
            ));
            return None;
        }
        Err(_) => {
            errors.push(invalid(
                source,
                file,
                key,
                "has an unfinished ${…}; write ${NAME} to read the variable NAME",
            ));
            return None;
        }
    };
    let path = config_dir.join(expanded);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.lines().next().map(str::trim) {
            Some(token) if !token.is_empty() => Some(token.to_owned()),
            _ => {
                errors.push(invalid(
                    source,
                    file,
                    key,
                    format!("{} is empty", path.display()),
                ));
                None
            }
        },
        Err(error) => {
            errors.push(invalid(
                source,
                file,
                key,
                format!("cannot read {}: {error}", path.display()),
            ));
            None
        }
    }
}

/// The API token, with `${VAR}` expanded now: unlike a store URL nothing expands it
/// later, and a literal `${KAIROS_TOKEN}` accepted as a token would be a silent hole.
fn check_token(
    source: &Source,
    token: &Spanned<String>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let expanded = expand(token.get_ref(), |name| std::env::var(name).ok());
    match expanded {
        Ok(expanded) if expanded.is_empty() => {
            errors.push(invalid(
                source,
                token,
                key,
                "is empty; leave `token` out to run without one",
            ));
            None
        }
        Ok(expanded) => Some(expanded),
        Err(StoreUrlError::MissingVariable(name)) => {
            errors.push(invalid(
                source,
                token,
                key,
                format!("the environment variable {name:?} is not set"),
            ));
            None
        }
        Err(_) => {
            errors.push(invalid(
                source,
                token,
                key,
                "has an unfinished ${…}; write ${NAME} to read the variable NAME",
            ));
            None
        }
    }
}

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

/// `[history]`: 30 days, 100 successes and 1,000 other runs per job, and no store-wide
/// row limit unless told otherwise; `"none"` lifts a limit.
pub(crate) fn check_history(raw: &RawRoot) -> HistoryRetention {
    let mut retention = HistoryRetention::default();
    if let Some(section) = &raw.history {
        if let Some(keep) = section.value.keep {
            retention.keep = keep.0;
        }
        retention.max_rows = section.value.max_rows;
        if let Some(count) = section.value.successes_per_job {
            retention.successes_per_job = count.0;
        }
        if let Some(count) = section.value.failures_per_job {
            retention.failures_per_job = count.0;
        }
    }
    retention
}

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
fn not_one_of(what: &str, written: &str, choices: &[&str]) -> String {
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

/// `overlap`: one of `skip`, `queue`, `replace` (docs/semantics.md, "max_instances").
pub(crate) fn check_overlap(
    source: &Source,
    value: &Spanned<String>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<crate::job::Overlap> {
    match value.get_ref().parse() {
        Ok(overlap) => Some(overlap),
        Err(reason) => {
            errors.push(invalid(source, value, key, reason));
            None
        }
    }
}

/// A `retry` table under `parent` (`job_defaults`, `jobs[3]`), with the field that is
/// wrong named in the error.
pub(crate) fn check_retry(
    source: &Source,
    retry: &Spanned<crate::job::RetryPolicy>,
    parent: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<crate::job::RetryPolicy> {
    match retry.get_ref().check() {
        Ok(()) => Some(retry.get_ref().clone()),
        Err((field, reason)) => {
            errors.push(invalid(source, retry, &format!("{parent}.{field}"), reason));
            None
        }
    }
}

/// `expect_success_within`: at least [`SuccessWatch::MIN_WITHIN`](crate::job::SuccessWatch::MIN_WITHIN).
pub(crate) fn check_expect_success_within(
    source: &Source,
    within: &Spanned<super::raw::HumaneDuration>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Duration> {
    let shortest = crate::job::SuccessWatch::MIN_WITHIN;
    let duration = within.get_ref().0;
    if duration < shortest {
        errors.push(invalid(
            source,
            within,
            key,
            format!(
                "must be at least {} (the dead-man's switch is checked about once a minute), not {}",
                humantime::format_duration(shortest),
                humantime::format_duration(duration)
            ),
        ));
        return None;
    }
    Some(duration)
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
