//! `kairos run`: load, build, sync, start, then serve signals until told to stop.
//!
//! # Ground rules
//! - One reload path: SIGHUP and a changed config file (with `watch = true`) all
//!   become a [`ReloadRequest`] on one channel, handled one at a time.
//! - A reload loads the config exactly as start-up and `kairos check` do; a config that
//!   fails validation is rejected whole and the running one stays. Only the jobs (and
//!   the `[job_defaults]` folded into them) reload; a change to any other section is
//!   refused by name, since it needs new stores, executors or listeners.
//! - SIGTERM or SIGINT stops taking jobs, lets running ones finish within
//!   `shutdown_timeout`, then stops what is left (process-pool children included); the
//!   main loop has released every batch it took, so no lease outlives the daemon except
//!   those of one-off jobs whose run was stopped before it ended: they stay and run
//!   again at the next start, as after a crash. A second signal exits at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::notify::Notifier;
use super::sync::{sync_config_jobs, SyncReport};
use crate::api::{self, ApiConfigError, ApiSettings, RateLimit, ReloadOutcome, ReloadRequest};
use crate::config::{changed_settings, load_with, Config, ConfigErrors, ExecutorKind};
use crate::executor::pool::ThreadPoolExecutor;
use crate::executor::process::ProcessPoolExecutor;
use crate::scheduler::{host_name, Membership, Scheduler, SchedulerError, ZoneRulesRecord};
use crate::store::{self, OpenError};
use crate::task::{ConfigureError, TaskRegistry};
use crate::trigger::datetime::format_instant;
use crate::trigger::tzdata;

/// The fire-ahead window for stores whose writes are durable commits or network round
/// trips: runs are handed over this early and start on time (see
/// [`SchedulerBuilder::fire_ahead`](crate::scheduler::SchedulerBuilder::fire_ahead)).
const PERSISTENT_FIRE_AHEAD: Duration = Duration::from_secs(1);

/// How often a daemon on a shared store looks at it with nothing due, unless
/// `[scheduler] poll_interval` says otherwise: the safety net under the wake-ups
/// PostgreSQL and Redis push, and on MySQL/MariaDB (which cannot push) the bound on
/// how late a job added through another node can be seen here.
const SHARED_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// How often `watch = true` looks at the config files.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config is invalid (every problem, with positions).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A job store could not be opened.
    #[error("job store {name:?}: {source}")]
    Store {
        /// The store's name in the config.
        name: String,
        /// Why.
        source: OpenError,
    },
    /// The config's jobs could not be read from or written to the store.
    #[error("syncing the config's jobs: {0}")]
    Sync(#[from] SchedulerError),
    /// Another live daemon holds this one's node id, or the stores could not say.
    #[error("{0}")]
    NodeId(#[source] SchedulerError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    /// The API settings would expose it without authentication.
    #[error("{0}")]
    Api(#[from] ApiConfigError),
    /// The API's address could not be bound.
    #[error("api.listen: cannot listen on {address}: {source}")]
    Listen {
        /// The configured address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A `[tasks.SECTION]` table was refused by its task (a config from
    /// [`crate::config::load_with`] has been checked already, so only a hand-made one).
    #[error("{0}")]
    TaskSettings(#[from] ConfigureError),
}

/// Runs the daemon on the config at `path` until SIGTERM or SIGINT.
///
/// The caller sets up logging first (from [`crate::config::load_with`]'s result, so
/// config errors reach the terminal as they are).
pub async fn run(path: &Path, tasks: TaskRegistry, config: Config) -> Result<(), DaemonError> {
    let notifier = Arc::new(Notifier::from_env());
    // The watcher's first look, taken before anything is awaited: an edit made while
    // the stores open and the config jobs sync (or before the watcher's task first
    // runs) differs from it and is reloaded. Taken later, it would be the baseline and
    // the edit never seen (docs/config-reload.md, "File watching").
    let first_look = config
        .scheduler
        .watch
        .then(|| fingerprint(&watched_paths(&config)));
    // `[scheduler] tzdir` picks the zone rules (KAIROS_TZDIR outranks it); read here,
    // before any next run time is computed (docs/semantics.md, "Zone rules").
    tzdata::configure(config.scheduler.tzdir.clone());
    tzdata::reload();
    let scheduler = build_scheduler(&config, tasks.clone()).await?;
    // Before anything is written: a live daemon under this id (started by hand next
    // to the systemd one, say) must not see its leases taken and its jobs run twice.
    scheduler
        .check_node_id()
        .await
        .map_err(DaemonError::NodeId)?;
    // Rules that changed while the daemon was down move the stored next run times, as
    // a reload would; the same rules cost one read per store. Before the config sync,
    // so config jobs changed there are computed once, with these rules. Stores that
    // recorded no rules are checked beside the running scheduler instead (see
    // `ZoneRulesRecord::Missing`): a million jobs to read must not hold the start.
    if let Err(error) = scheduler
        .check_zone_rules_at_start(ZoneRulesRecord::Differing)
        .await
    {
        tracing::error!(%error, "the stored next run times could not be checked against the zone rules in use");
    }
    let unrecorded = scheduler.clone();
    tokio::spawn(async move {
        if let Err(error) = unrecorded
            .check_zone_rules_at_start(ZoneRulesRecord::Missing)
            .await
        {
            tracing::error!(%error, "the stored next run times could not be checked against the zone rules in use");
        }
    });
    let specs = config_specs(&config);
    let report = sync_config_jobs(&scheduler, specs, false).await?;
    log_sync(&report);
    scheduler.start();
    // Installed before READY, so a signal sent as soon as systemd sees us is handled.
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let (reload_sender, mut reloads) = mpsc::channel::<ReloadRequest>(4);
    let api = match config.api.enabled {
        true => Some(start_api(&config, &scheduler, reload_sender.clone()).await?),
        false => None,
    };
    let (watched, watched_receiver) = watch::channel(watched_paths(&config));
    if let Some(first_look) = first_look {
        tokio::spawn(watch_files(
            first_look,
            watched_receiver,
            reload_sender.clone(),
        ));
    }
    if let Some(every) = notifier.watchdog_interval() {
        tokio::spawn(keep_watchdog_fed(
            Arc::clone(&notifier),
            scheduler.clone(),
            every,
        ));
    }
    tracing::info!(
        config = %path.display(),
        node_id = config.scheduler.node_id,
        jobstores = config.jobstores.len(),
        "kairos is running"
    );
    notifier.ready();
    report_status(&notifier, &scheduler).await;
    let mut config = config;
    loop {
        let request = tokio::select! {
            _ = hangup.recv() => ReloadRequest::Signal,
            Some(request) = reloads.recv() => request,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        };
        notifier.reloading();
        let (reply, label, force) = match request {
            ReloadRequest::Api { reply, force } => (Some(reply), "api", force),
            ReloadRequest::Signal => (None, "signal", false),
            ReloadRequest::FileChanged => (None, "file changed", false),
        };
        let outcome = match reload(path, &tasks, &config, &scheduler, label, force).await {
            Ok((new, report)) => {
                config = new;
                watched.send_replace(watched_paths(&config));
                ReloadOutcome::Applied(Box::new(report.into_view()))
            }
            Err(problems) => ReloadOutcome::Rejected(problems),
        };
        if let Some(reply) = reply {
            // The caller may have gone (a timed-out request); the reload stands.
            let _ = reply.send(outcome);
        }
        notifier.ready();
        report_status(&notifier, &scheduler).await;
    }
    drop(reload_sender);
    notifier.stopping();
    // No API calls once draining starts: a job added now would never run here.
    if let Some((stop_api, served)) = api {
        let _ = stop_api.send(());
        match served.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the API server failed"),
            Err(error) => tracing::warn!(%error, "the API server task failed"),
        }
    }
    let timeout = config.scheduler.shutdown_timeout;
    tracing::info!(
        ?timeout,
        "shutting down: waiting for running jobs (a second signal stops at once)"
    );
    tokio::select! {
        () = scheduler.shutdown(Some(timeout)) => {}
        _ = terminate.recv() => exit_now(),
        _ = interrupt.recv() => exit_now(),
    }
    tracing::info!("kairos stopped");
    Ok(())
}

/// The second SIGTERM or SIGINT: the operator wants out now. Process-pool children
/// are in their own process groups, which the unit's `KillMode=mixed` still reaches.
fn exit_now() -> ! {
    tracing::warn!("second signal: exiting without waiting for running jobs");
    std::process::exit(1)
}

/// Binds the API's address and serves it in a task; returns what stops it and the task.
async fn start_api(
    config: &Config,
    scheduler: &Scheduler,
    reloads: mpsc::Sender<ReloadRequest>,
) -> Result<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>), DaemonError> {
    let settings = ApiSettings {
        tokens: config.api.token.iter().cloned().collect(),
        read_tokens: config.api.read_tokens.clone(),
        allowed_tasks: Some(config.api.allowed_tasks.iter().cloned().collect()),
        named_tokens: config
            .api
            .tokens
            .iter()
            .map(|token| api::NamedToken {
                name: token.name.clone(),
                token: token.token.clone(),
                write: token.write,
                tasks: token
                    .tasks
                    .as_ref()
                    .map(|tasks| tasks.iter().cloned().collect()),
                rate_limit: rate(token.rate_limit, token.rate_limit_burst),
            })
            .collect(),
        rate_limit: rate(config.api.rate_limit, config.api.rate_limit_burst),
        reload: Some(reloads),
        ui: config.api.ui,
        allowed_hosts: allowed_hosts(&config.api),
        max_event_streams: config.api.max_event_streams,
        executors: Some(config.executors.keys().cloned().collect()),
        ..ApiSettings::default()
    };
    let address = config.api.listen;
    api::check_listen(&address, &settings)?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| DaemonError::Listen { address, source })?;
    let bound = listener.local_addr().unwrap_or(address);
    let router = api::app(scheduler.clone(), settings);
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = api::ServerLimits {
        max_connections: config.api.max_connections,
        header_timeout: config.api.header_timeout,
        idle_timeout: config.api.idle_timeout,
    };
    let served = tokio::spawn(api::serve_with(listener, router, limits, async move {
        let _ = stopped.await;
    }));
    tracing::info!(listen = %bound, "API listening on http://{bound}{}", api::PREFIX);
    if config.api.ui {
        tracing::info!("web page on http://{bound}/");
    }
    Ok((stop, served))
}

/// A configured rate and burst as the API takes them.
fn rate(per_second: Option<u32>, burst: Option<u32>) -> Option<RateLimit> {
    per_second.map(|per_second| RateLimit {
        per_second: f64::from(per_second),
        burst: burst.unwrap_or(per_second.saturating_mul(2)),
    })
}

/// `[api] allowed_hosts` plus the address the API listens on, unless that is every
/// interface (`0.0.0.0`, `::`), which names no host.
fn allowed_hosts(api: &crate::config::ApiConfig) -> Vec<String> {
    let mut hosts = api.allowed_hosts.clone();
    if !api.listen.ip().is_unspecified() {
        hosts.push(api.listen.ip().to_string());
    }
    hosts
}

/// Configures the tasks that take settings from `config.tasks` (`[tasks.stats]`,
/// `[tasks.orders]`), opens the stores and executors of `config` and builds the
/// scheduler (not started).
///
/// `tasks` is the registry the config was checked against: tasks that take settings
/// are in it unconfigured, so jobs could name them before config was read.
pub async fn build_scheduler(
    config: &Config,
    mut tasks: TaskRegistry,
) -> Result<Scheduler, DaemonError> {
    // Connects to nothing: the tasks open their databases when they first run, so a
    // database that is down delays no start.
    // `[api] http_allow` is the `http` task's setting (see task/outbound.rs).
    let mut settings = config.tasks.clone();
    if !config.api.http_allow.is_empty() {
        settings.insert(
            crate::task::http::SETTINGS_SECTION.to_owned(),
            serde_json::json!({ "allow": config.api.http_allow }),
        );
    }
    tasks.configure(&settings)?;
    tasks.allow_env(config.env_allow.iter().cloned());
    let mut builder = Scheduler::builder()
        .id(config.scheduler.node_id.clone())
        .timezone(config.scheduler.timezone)
        .tasks(tasks)
        .job_defaults(config.job_defaults.clone())
        .history_retention(config.history)
        // Always on: alerts are log lines, events and metrics even without webhooks.
        .alerts(config.alerts.clone());
    let mut persistent = false;
    let mut shared = false;
    for (name, store_config) in &config.jobstores {
        let store = store::open(&store_config.url, &store_config.open_options())
            .await
            .map_err(|source| DaemonError::Store {
                name: name.clone(),
                source,
            })?;
        persistent |= !store_config.url.trim_start().starts_with("memory:");
        let scheme = store_config.url.trim_start().to_ascii_lowercase();
        shared |= ["postgres", "mysql", "mariadb", "redis"]
            .iter()
            .any(|shared_scheme| scheme.starts_with(shared_scheme));
        builder = builder.store_shared(name.clone(), store);
    }
    for (name, executor) in &config.executors {
        builder = match executor.kind {
            ExecutorKind::ThreadPool => {
                let mut pool = ThreadPoolExecutor::new(executor.max_workers);
                if let Some(timeout) = executor.timeout {
                    pool = pool.with_timeout(timeout);
                }
                builder.executor(name.clone(), pool)
            }
            ExecutorKind::ProcessPool => {
                let mut pool = ProcessPoolExecutor::new(executor.max_workers);
                if let Some(timeout) = executor.timeout {
                    pool = pool.with_timeout(timeout);
                }
                builder.executor(name.clone(), pool)
            }
        };
    }
    let fire_ahead = config.scheduler.fire_ahead.unwrap_or(if persistent {
        PERSISTENT_FIRE_AHEAD
    } else {
        crate::store::DEFAULT_FIRE_AHEAD
    });
    // Other nodes' changes reach this loop within the poll interval; a
    // store nobody else writes to needs no polling.
    let poll = config
        .scheduler
        .poll_interval
        .or(shared.then_some(SHARED_POLL_INTERVAL));
    if let Some(poll) = poll {
        builder = builder.poll_interval(poll);
    }
    builder = builder
        .fire_ahead(fire_ahead)
        // A node whose workers are busy leaves due jobs to the others; a
        // node alone takes them and queues the runs, judging lateness as it takes them.
        .acquire_within_capacity(shared)
        .lease(config.scheduler.lease)
        // Every daemon is a node: in a shared store that is what lets survivors free a
        // dead node's leases; in a single-node store it costs a write per
        // heartbeat and shows the node in `kairos cluster`.
        .membership(Membership {
            heartbeat: config.scheduler.heartbeat,
            node_timeout: config.scheduler.node_timeout,
            host: host_name(),
        });
    if let Some(batch_size) = config.scheduler.batch_size {
        builder = builder.batch_size(batch_size);
    }
    Ok(builder.build())
}

/// The config's jobs as the scheduler takes them.
fn config_specs(config: &Config) -> Vec<crate::job::JobSpec> {
    config.jobs.iter().map(|job| job.spec.clone()).collect()
}

/// One reload: the new config and what the sync did, or why it was rejected (one
/// line per problem; the running config stays).
async fn reload(
    path: &Path,
    tasks: &TaskRegistry,
    running: &Config,
    scheduler: &Scheduler,
    asked_by: &str,
    force: bool,
) -> Result<(Config, SyncReport), Vec<String>> {
    tracing::info!(asked_by, force, "reloading the config");
    // The zone rules first, so config jobs changed below get their next run times
    // from the new ones; they are the system's, read again whatever the config says
    // (docs/config-reload.md).
    if let Err(error) = scheduler.reload_zone_rules().await {
        tracing::error!(%error, "the zone rules were read again, but next run times could not be moved");
    }
    let new = match load_with(path, tasks) {
        Ok(new) => new,
        Err(errors) => {
            let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
            for problem in &problems {
                tracing::error!("{problem}");
            }
            tracing::error!(
                problems = problems.len(),
                "config rejected; the running config stays"
            );
            return Err(problems);
        }
    };
    let refused: Vec<&str> = changed_settings(running, &new)
        .into_iter()
        .filter(|section| *section != "job_defaults")
        .collect();
    if !refused.is_empty() {
        let problem = format!(
            "{}: changed sections [{}] only take effect at a restart; restart the daemon or undo the change",
            path.display(),
            refused.join("], [")
        );
        tracing::error!("config rejected: {problem}; the running config stays");
        return Err(vec![problem]);
    }
    let specs = config_specs(&new);
    match sync_config_jobs(scheduler, specs, force).await {
        Ok(report) => {
            log_sync(&report);
            Ok((new, report))
        }
        Err(error) => {
            let problem = format!("the job store could not be read: {error}");
            tracing::error!("config rejected: {problem}; the running config stays");
            Err(vec![problem])
        }
    }
}

fn log_sync(report: &SyncReport) {
    for (id, error) in &report.failed {
        tracing::error!(job_id = id, %error, "config job not applied");
    }
    tracing::info!(
        added = ?report.added,
        changed = ?report.changed,
        removed = ?report.removed,
        "config jobs: {}",
        report.summary()
    );
}

/// Tells systemd how many jobs there are and when the next one is due.
async fn report_status(notifier: &Notifier, scheduler: &Scheduler) {
    if !notifier.is_enabled() {
        return;
    }
    let counted = scheduler.count_jobs().await;
    let next = scheduler.next_run_time().await;
    let status = match (counted, next) {
        (Ok(count), Ok(Some(next))) => format!(
            "{count} jobs; next run {}",
            format_instant(next, &scheduler.timezone())
        ),
        (Ok(count), Ok(None)) => format!("{count} jobs; none due"),
        (Err(error), _) | (_, Err(error)) => format!("job store unavailable: {error}"),
    };
    notifier.status(&status);
}

/// Pings the watchdog while the main loop makes progress: a loop that died, or whose
/// pass has not finished within the watchdog's timeout (twice the ping interval),
/// stops the pings, so systemd restarts the daemon.
async fn keep_watchdog_fed(notifier: Arc<Notifier>, scheduler: Scheduler, every: Duration) {
    loop {
        if scheduler.is_making_progress(every.saturating_mul(2)) {
            notifier.watchdog();
        }
        tokio::time::sleep(every).await;
    }
}

/// `watch = true`: asks for a reload when the content of a config file changes, or a
/// file appears in or leaves a directory an include pattern reads. `files` is updated
/// after each reload with what the running config reads ([`watched_paths`]).
///
/// Polling, not inotify: reading a few small files every two seconds costs nothing
/// measurable; it sees changes that notifications miss or scatter (a Kubernetes
/// ConfigMap's symlink swap, an editor's write-and-rename, NFS and bind mounts, a
/// directory that did not exist yet); it needs no debouncing of the bursts `cp -r` or
/// `git checkout` cause, since a burst ends within one period; and it compares
/// content, not modification times, so a `cp -p` rollback (old times, old size) is a
/// change while a `touch` is not.
async fn watch_files(
    first_look: Fingerprint,
    mut files: watch::Receiver<Vec<PathBuf>>,
    reloads: mpsc::Sender<ReloadRequest>,
) {
    let mut seen = first_look;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        // Compared with the last look, never re-read as a baseline after a reload: a
        // change made between the reload and that re-read would be lost. A reload that
        // changed which files are read may cost one more reload, which changes nothing.
        let now = fingerprint(&files.borrow_and_update());
        if now != seen {
            seen = now;
            if reloads.send(ReloadRequest::FileChanged).await.is_err() {
                return;
            }
        }
    }
}

/// The files a running config reads and the directories its include patterns list.
fn watched_paths(config: &Config) -> Vec<PathBuf> {
    let mut paths = config.files.clone();
    paths.extend(config.include_dirs.iter().cloned());
    paths
}

/// What the watcher compares between two looks: each watched file and a hash of its
/// content (`None` when it cannot be read).
type Fingerprint = Vec<(PathBuf, Option<u64>)>;

/// A hash of each file's content among `paths`, and of each `.toml` file in the
/// directories among them (or beside the files), by path; `None` for what cannot be
/// read.
fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        let directory = if path.is_dir() {
            Some(path.as_path())
        } else {
            files.push(path.clone());
            path.parent()
        };
        if let Some(Ok(entries)) = directory.map(std::fs::read_dir) {
            files.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "toml")),
            );
        }
    }
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|path| {
            let content = std::fs::read(&path).ok().map(|bytes| fnv1a(&bytes));
            (path, content)
        })
        .collect()
}

/// FNV-1a: a cheap hash to tell file contents apart (not a defence against anyone).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
