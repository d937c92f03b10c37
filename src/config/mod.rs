//! The daemon's config: `config.toml` and the job files it includes, read into a
//! validated [`Config`] that `kairos run` and `kairos check` both get from [`load_with`]
//! (`check` runs exactly the loading path that `run` uses, so a config it passes starts).
//!
//! Loading is in two stages, parse then validate: `raw.rs` reads each file into a serde schema that
//! keeps spans, section by section and job by job (`read.rs` holds the machinery,
//! `trigger.rs` the trigger tables, `source.rs` the file and its positions); `check/`
//! (settings, one file per section) and `jobs.rs` (jobs, across files) turn that into a [`Config`] with small
//! `check_*` functions, resolving defaults and names (executors, stores, tasks). Every problem of every file is collected into
//! [`ConfigErrors`], each with file, line, column, key path and reason, all at once; a
//! config with any error is rejected as a whole, so a reload keeps the running one.
//! The daemon compares the jobs of two configs for a reload (`daemon/sync.rs`).
//!
//! ```toml
//! include = ["jobs/*.toml"]     # globs relative to this file's directory
//!
//! [scheduler]
//! timezone = "Asia/Shanghai"    # default: the system's zone
//!
//! [jobstores.default]
//! url = "sqlite://var/kairos.db" # relative SQLite paths: from this file's directory
//!
//! [executors.default]
//! type = "threadpool"
//! max_workers = 10
//!
//! [[jobs]]
//! id = "nightly-stats"
//! task = "command"
//! args = { argv = ["/usr/local/bin/recount"] }
//! trigger = { type = "cron", hour = 3 }
//! ```
//!
//! # Ground rules
//! - Loading never connects to anything and never panics: store URLs are parsed, not
//!   opened, and `${VAR}` in a store URL is left for [`crate::store::open`] to expand.
//! - Jobs in config are owned by config (docs/semantics.md, Reload): [`ConfigJob::spec`] has
//!   every option resolved against `[job_defaults]`, so a change of defaults shows up
//!   in a reload (`daemon/sync.rs`) as a change of the jobs it affects.
//! - Included files hold only `[[jobs]]`; every other section has one home, the main
//!   file.

mod alerts;
mod check;
mod error;
mod include;
mod jobs;
mod raw;
mod read;
mod source;
mod trigger;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

pub use self::error::{ConfigError, ConfigErrorKind, ConfigErrors};
use self::source::Source;
use crate::alert::AlertSettings;
use crate::job::{JobDefaults, JobSpec};
use crate::store::url::OpenOptions;
use crate::store::HistoryRetention;
use crate::task::TaskRegistry;
use crate::trigger::{TriggerContext, Zone};

/// A validated config: every name it uses exists, every value is in range.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The main config file, as given.
    pub path: PathBuf,
    /// Every file read, the main one first: what a file watcher watches.
    pub files: Vec<PathBuf>,
    /// The directories `include` patterns with wildcards read: a file watcher watches
    /// them too, so a job file added to an empty `jobs/` is seen.
    pub include_dirs: Vec<PathBuf>,
    /// `[scheduler]`.
    pub scheduler: SchedulerConfig,
    /// `[jobstores.NAME]`; `default` (`sqlite://kairos.db` beside the config file) when
    /// none is given.
    pub jobstores: BTreeMap<String, JobStoreConfig>,
    /// `[executors.NAME]`; `default` (a 10-worker thread pool) when none is given.
    pub executors: BTreeMap<String, ExecutorConfig>,
    /// `[job_defaults]`, for jobs that set no option of their own (API jobs; config jobs
    /// have them resolved already).
    pub job_defaults: JobDefaults,
    /// `[job_defaults] jitter`. [`JobDefaults`] has no jitter, so this reaches only
    /// config jobs whose job and trigger set none.
    pub default_jitter: Option<Duration>,
    /// `[api]`.
    pub api: ApiConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[history]`: `keep`, `max_rows`, `successes_per_job` and `failures_per_job`; the
    /// trimming cadence keeps its defaults.
    pub history: HistoryRetention,
    /// `[tasks.NAME]`: the settings of built-in tasks, as JSON for each task to read.
    pub tasks: BTreeMap<String, serde_json::Value>,
    /// `[tasks] env_allow`: the environment variables `${NAME}` in job args may name,
    /// resolved when a run starts (README.md, "Secrets in job args").
    pub env_allow: Vec<String>,
    /// `[alerts]` and `[[alerts.webhooks]]` (see `docs/alerts.md`).
    pub alerts: AlertSettings,
    /// The `[[jobs]]` of the main file and the included files, in file order.
    pub jobs: Vec<ConfigJob>,
}

/// `[scheduler]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// The zone of triggers that name none; default: the system's zone, else UTC.
    pub timezone: Zone,
    /// `tzdir`: where zone rules come from, for [`crate::trigger::tzdata::configure`]:
    /// `None` when not set (the system's tz database), `Some(None)` for
    /// `"compiled-in"`, else the zoneinfo directory (a relative one taken from the
    /// config file's directory). `KAIROS_TZDIR` outranks it.
    pub tzdir: Option<Option<PathBuf>>,
    /// This node's name in a cluster; default: the host name.
    pub node_id: String,
    /// How many due jobs one pass takes at most; `None`: the scheduler's default.
    pub batch_size: Option<usize>,
    /// How early jobs are taken before they are due; `None`: the daemon chooses by
    /// store (none for memory, a second for shared stores).
    pub fire_ahead: Option<Duration>,
    /// How long shutdown waits for running jobs; default 30 s.
    pub shutdown_timeout: Duration,
    /// Reload when a config file changes; default false.
    pub watch: bool,
    /// How long an acquired job stays leased to this node; default 5 minutes (see
    /// [`crate::scheduler::SchedulerBuilder::lease`]).
    pub lease: Duration,
    /// How often this node renews its heartbeat in the stores; default 10 s.
    pub heartbeat: Duration,
    /// How old a node's heartbeat may be before a survivor reaps it; default 60 s.
    pub node_timeout: Duration,
    /// How often the loop looks at the stores with nothing due; `None`: the daemon
    /// chooses (5 s when a store is shared: PostgreSQL, MySQL, Redis; never otherwise).
    pub poll_interval: Option<Duration>,
}

/// `[jobstores.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStoreConfig {
    /// The store URL for [`crate::store::open`]: a relative SQLite path is made
    /// relative to the config file's directory; `${VAR}` is still unexpanded.
    pub url: String,
    /// `prefix` (or `table_prefix`): of table names or Redis keys.
    pub prefix: Option<String>,
    /// How long a dead scheduler's running-instance slot keeps counting.
    pub instance_ttl: Option<Duration>,
}

impl JobStoreConfig {
    /// The options for [`crate::store::open`]; unset ones keep their defaults.
    pub fn open_options(&self) -> OpenOptions {
        let defaults = OpenOptions::default();
        OpenOptions {
            prefix: self.prefix.clone().unwrap_or(defaults.prefix),
            instance_ttl: self.instance_ttl.unwrap_or(defaults.instance_ttl),
        }
    }
}

/// Which executor an `[executors.NAME]` table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorKind {
    /// `threadpool`: runs in the daemon's process.
    ThreadPool,
    /// `processpool`: runs each run in a child process.
    ProcessPool,
}

/// `[executors.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// `type`.
    pub kind: ExecutorKind,
    /// How many runs at once; at least 1.
    pub max_workers: usize,
    /// How long one run may take before it is stopped; `None`: no limit.
    pub timeout: Option<Duration>,
}

/// `[api]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Serve the API at all; default true.
    pub enabled: bool,
    /// Where to listen; default `127.0.0.1:8080` (loopback only).
    pub listen: SocketAddr,
    /// The bearer token (`token`, `${VAR}` expanded, or the first line of
    /// `token_file`); `None`: no token required, which only a loopback `listen` allows.
    pub token: Option<String>,
    /// Tokens that may only read (`GET`), for dashboards; `${VAR}` expanded.
    pub read_tokens: Vec<String>,
    /// The tasks API clients may add jobs for; default: every registered task but
    /// `command`, so a token is never a way to run arbitrary programs.
    pub allowed_tasks: BTreeSet<String>,
    /// `rate_limit`: requests per second each client may make (per token, or per
    /// address without one); default none (failed authentications are always
    /// limited). Past it requests get 429.
    pub rate_limit: Option<u32>,
    /// `rate_limit_burst`: how many requests a client may make at once after a quiet
    /// spell; default twice `rate_limit`.
    pub rate_limit_burst: Option<u32>,
    /// `[api.tokens.NAME]`: named tokens, by name.
    pub tokens: Vec<TokenConfig>,
    /// `ui`: serve the web page at `/`; default true when `listen` is a loopback
    /// address.
    pub ui: bool,
    /// `allowed_hosts`: host names or addresses, besides loopback ones and `listen`,
    /// that requests may name in `Host` and whose pages may change things (`Origin`);
    /// default none. See docs/threat-model.md.
    pub allowed_hosts: Vec<String>,
    /// `http_allow`: host names and CIDR ranges whose loopback and private addresses
    /// `http` jobs added through the API may reach; default none. Link-local and
    /// metadata addresses are refused whatever it says (see `task/outbound.rs`).
    pub http_allow: Vec<String>,
    /// `max_connections`: connections open at once; default 512.
    pub max_connections: usize,
    /// `header_timeout`: how long a client may take to send a request head; default 10 s.
    pub header_timeout: Duration,
    /// `idle_timeout`: how long a connection may sit without traffic; default 60 s.
    pub idle_timeout: Duration,
    /// `max_event_streams`: `GET /events` streams open at once; default 64.
    pub max_event_streams: usize,
}

/// `[api.tokens.NAME]`: a named token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// `NAME`.
    pub name: String,
    /// `token` (`${VAR}` expanded) or the first line of `token_file`.
    pub token: String,
    /// `access = "write"`; default `"read"`.
    pub write: bool,
    /// `tasks`: the only tasks a write token may schedule, which also keeps it from
    /// everything scheduler-wide; `None`: `[api] allowed_tasks` and full access.
    pub tasks: Option<BTreeSet<String>>,
    /// `rate_limit`: its own requests per second; default `[api] rate_limit`.
    pub rate_limit: Option<u32>,
    /// `rate_limit_burst`: default twice its `rate_limit`.
    pub rate_limit_burst: Option<u32>,
}

impl fmt::Debug for TokenConfig {
    /// Never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("write", &self.write)
            .field("tasks", &self.tasks)
            .field("rate_limit", &self.rate_limit)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ApiConfig {
    /// Never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("read_tokens", &self.read_tokens.len())
            .field("allowed_tasks", &self.allowed_tasks)
            .field("rate_limit", &self.rate_limit)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("tokens", &self.tokens)
            .field("ui", &self.ui)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("http_allow", &self.http_allow)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_event_streams", &self.max_event_streams)
            .finish()
    }
}

// The daemon's logging (`daemon/logging.rs`) reads it from here: the config owns the
// `[log]` schema, and imports point down the layers (docs/architecture.md).
/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event: level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` and the spans,
    /// for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(name: &str) -> Result<LogFormat, UnknownLogFormat> {
        match name {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(UnknownLogFormat {
                format: name.to_string(),
            }),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// A log format that is neither `text` nor `json`.
#[derive(Debug, thiserror::Error)]
#[error("unknown log format {format:?}: expected \"text\" or \"json\"")]
pub struct UnknownLogFormat {
    /// The format as given.
    pub format: String,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `warn,kairos=debug`; default `info`.
    pub level: String,
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

/// Where something in a config file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file, as opened.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A job defined in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigJob {
    /// What to give the scheduler: the id is always set, and every option is resolved
    /// against `[job_defaults]`.
    pub spec: JobSpec,
    /// Where the job's table is.
    pub origin: Origin,
}

impl ConfigJob {
    /// The job's id.
    pub fn id(&self) -> &str {
        self.spec.id.as_deref().unwrap_or_default()
    }
}

/// The sections other than `jobs` that differ between `old` and `new`, by their TOML
/// names (`scheduler`, `jobstores`, `executors`, `job_defaults`, `api`, `log`,
/// `history`, `tasks`), in that order.
///
/// Which of them a running daemon can apply is the daemon's decision; this only says
/// what changed. (The jobs are the daemon's config sync's, `daemon/sync.rs`: a change
/// of `job_defaults` shows there as a change of the jobs it affects.)
pub fn changed_settings(old: &Config, new: &Config) -> Vec<&'static str> {
    let sections = [
        ("scheduler", old.scheduler != new.scheduler),
        ("jobstores", old.jobstores != new.jobstores),
        ("executors", old.executors != new.executors),
        (
            "job_defaults",
            old.job_defaults != new.job_defaults || old.default_jitter != new.default_jitter,
        ),
        ("api", old.api != new.api),
        ("log", old.log != new.log),
        ("history", old.history != new.history),
        (
            "tasks",
            old.tasks != new.tasks || old.env_allow != new.env_allow,
        ),
        ("alerts", old.alerts != new.alerts),
    ];
    sections
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name)
        .collect()
}

/// Loads and validates the config at `path` against the built-in tasks.
///
/// A daemon that registers more tasks uses [`load_with`].
pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
    load_with(path, &TaskRegistry::with_builtins())
}

/// Reads and checks only the `[api]` table of the config at `path`, as `kairos jobs`
/// needs it to reach the daemon (address, tokens). Included job files and the other
/// sections are not read: a broken job file is the daemon's to report, and must not keep
/// an operator from listing the jobs of a daemon that runs.
pub fn load_api(path: impl AsRef<Path>, tasks: &TaskRegistry) -> Result<ApiConfig, ConfigErrors> {
    let path = path.as_ref();
    let root = Arc::new(Source::read(path)?);
    let table = root.parse()?;
    let mut errors = Vec::new();
    let raw = raw::read_api_only(&root, &table, &mut errors);
    let config_dir = path.parent().unwrap_or(Path::new(""));
    let api = check::check_api(&raw, tasks, config_dir, &mut errors);
    match ConfigErrors::from_vec(errors) {
        Some(errors) => Err(errors),
        None => Ok(api),
    }
}

/// Loads the config at `path` and the files it includes, and validates it: task names
/// against `tasks`, triggers by building them, store URLs by parsing them. Returns
/// every problem found, not just the first.
pub fn load_with(path: impl AsRef<Path>, tasks: &TaskRegistry) -> Result<Config, ConfigErrors> {
    let path = path.as_ref();
    // Without the main file there is nothing to check further.
    let root = Arc::new(Source::read(path)?);
    let table = root.parse()?;

    let mut errors = Vec::new();
    let raw = raw::read_root(&root, &table, &mut errors);
    let scheduler =
        check::check_scheduler(&raw, path.parent().unwrap_or(Path::new("")), &mut errors);
    let context = TriggerContext::new(Utc::now()).with_timezone(scheduler.timezone);
    let mut raw_jobs = raw::read_jobs(&root, &table, &context, &mut errors);

    let include_dirs = include::directories(&root, &raw.include);
    let mut files = vec![path.to_path_buf()];
    for included in include::resolve(&root, &raw.include, &mut errors) {
        if files.contains(&included) {
            continue;
        }
        files.push(included.clone());
        let source = match Source::read(&included) {
            Ok(source) => Arc::new(source),
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        match source.parse() {
            Ok(table) => {
                raw::check_included_keys(&source, &table, &mut errors);
                raw_jobs.extend(raw::read_jobs(&source, &table, &context, &mut errors));
            }
            Err(error) => errors.push(error),
        }
    }

    let config_dir = path.parent().unwrap_or(Path::new(""));
    let jobstores = check::check_jobstores(&raw, config_dir, &mut errors);
    let executors = check::check_executors(&raw, &mut errors);
    let (declared_jobstores, declared_executors) = (
        check::declared_names(&raw.jobstores),
        check::declared_names(&raw.executors),
    );
    let names = check::Names {
        jobstores: &declared_jobstores,
        executors: &declared_executors,
        tasks,
    };
    let (job_defaults, default_jitter) = check::check_job_defaults(&raw, &names, &mut errors);
    let api = check::check_api(&raw, tasks, config_dir, &mut errors);
    let log = check::check_log(&raw, &mut errors);
    let history = check::check_history(&raw);
    let task_settings = check::check_task_settings(&raw, tasks, &mut errors);
    let env_allow = check::check_env_allow(&raw, &mut errors);
    let alerts = alerts::check_alerts(&raw, &mut errors);
    let jobs = jobs::check_jobs(
        &raw_jobs,
        &names,
        &job_defaults,
        default_jitter,
        &mut errors,
    );

    if !errors.is_empty() {
        // One line per problem in file order, whatever order the checks ran in.
        let rank = |file: &Path| {
            files
                .iter()
                .position(|seen| seen == file)
                .unwrap_or(usize::MAX)
        };
        errors.sort_by(|left, right| {
            (rank(&left.file), left.line, left.column).cmp(&(
                rank(&right.file),
                right.line,
                right.column,
            ))
        });
        if let Some(errors) = ConfigErrors::from_vec(errors) {
            return Err(errors);
        }
    }
    Ok(Config {
        path: path.to_path_buf(),
        files,
        include_dirs,
        scheduler,
        jobstores,
        executors,
        job_defaults,
        default_jitter,
        api,
        log,
        history,
        tasks: task_settings,
        env_allow,
        alerts,
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::LogFormat;

    #[test]
    fn log_format_parses_from_strings_and_config() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!("text".parse::<LogFormat>()?, LogFormat::Text);
        assert_eq!("json".parse::<LogFormat>()?, LogFormat::Json);
        assert!("JSON".parse::<LogFormat>().is_err());
        #[derive(serde::Deserialize)]
        struct Log {
            format: LogFormat,
        }
        let log: Log = serde_json::from_str(r#"{"format": "json"}"#)?;
        assert_eq!(log.format, LogFormat::Json);
        assert!(serde_json::from_str::<Log>(r#"{"format": "xml"}"#).is_err());
        Ok(())
    }
}
