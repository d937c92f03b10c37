//! Tasks: what a job runs, by name.
//!
//! A job names a task (`command`, `http`, `stats.correct`, `orders.cancel`, or one a
//! library user registers) and gives it JSON args. The [`TaskRegistry`] maps names to
//! [`Task`]s; the scheduler refuses a job whose task is unknown or whose args the task
//! rejects when the job is added, not when it fires.
//!
//! Some tasks also take settings from a `[tasks.SECTION]` table of config.toml (the
//! database and Redis URLs of `stats.correct` under `[tasks.stats]`, say): the registry
//! knows them unconfigured from the start, so jobs can name them before config is read,
//! and [`TaskRegistry::configure`] swaps in the configured tasks (`settings.rs`).
//!
//! # Ground rules
//! - A task gets its args and the run's identity, and returns text output or a failure.
//!   It must not assume it runs in the scheduler's process: the process pool runs it in
//!   a `kairos worker` child.
//! - Tasks that change data are written to be idempotent: after a crash a run may be
//!   repeated (docs/semantics.md, "Delivery").

mod args;
pub(crate) use self::args::{DURATION_PATTERN, MAX_SCHEMA_SECONDS};
pub mod command;
pub mod env_args;
pub mod http;
pub mod orders;
pub mod outbound;
mod settings;
mod sql;
pub mod stats;

pub use self::settings::{SettingsError, SettingsErrorKind};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The identity and input of one run, as a task sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRun {
    /// The job being run.
    pub job_id: String,
    /// This run's id.
    pub run_id: String,
    /// The time the trigger scheduled this run for.
    pub scheduled_time: DateTime<Utc>,
    /// The job's args.
    pub args: serde_json::Value,
    /// Whether the job comes from the daemon's config files, the operator's own: the
    /// `http` task checks where the others may connect (see `outbound.rs`), and the
    /// `command` task (the operator's choice) may inherit the environment.
    #[serde(default)]
    pub from_config: bool,
}

/// Why a task failed, and what it printed before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct TaskFailure {
    /// What went wrong.
    pub message: String,
    /// Output produced before the failure.
    #[serde(default)]
    pub output: String,
    /// The task gave up because it ran out of time (its own timeout), which the run
    /// history records as a timeout rather than an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

impl TaskFailure {
    /// A failure with a message and no output.
    pub fn new(message: impl Into<String>) -> TaskFailure {
        TaskFailure {
            message: message.into(),
            output: String::new(),
            timed_out: false,
        }
    }

    /// A failure because the task's own time limit ran out.
    pub fn timeout(message: impl Into<String>) -> TaskFailure {
        TaskFailure {
            timed_out: true,
            ..TaskFailure::new(message)
        }
    }

    /// The run outcome this failure stands for.
    pub fn outcome(&self) -> crate::history::RunOutcome {
        if self.timed_out {
            crate::history::RunOutcome::Timeout
        } else {
            crate::history::RunOutcome::Error
        }
    }
}

/// Something a job can run.
#[async_trait]
pub trait Task: Send + Sync + 'static {
    /// Checks a job's args when the job is added; the error says what is wrong.
    fn check_args(&self, _args: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }

    /// The JSON Schema of the args [`Task::check_args`] takes, where the task can state
    /// it: the API's OpenAPI document describes each task's args with it, so that
    /// clients and schema-driven tools send what is taken. What its keywords state
    /// must hold for everything `check_args` takes; rules between fields (one of two
    /// keys, say) go in its description, since client generators cannot model
    /// `oneOf`/`not` over an object's keys. `None`: any JSON, as far as the document
    /// can tell.
    fn args_schema(&self) -> Option<serde_json::Value> {
        None
    }

    /// Runs once; `Ok` carries the output to keep in the run history.
    async fn run(&self, run: TaskRun) -> Result<String, TaskFailure>;

    /// Makes a run ready to start: by default it is left as it is; the registry's
    /// [`TaskRegistry::runnable`] resolves `${NAME}` in its args ([`env_args`]). The
    /// process pool calls it in the scheduler's process, before it hands the run to a
    /// worker; an error fails the run.
    fn prepare_run(&self, run: TaskRun) -> Result<TaskRun, TaskFailure> {
        Ok(run)
    }

    /// The `[tasks.SECTION]` settings this task was configured with, if any: the
    /// process pool sends them to its worker, which configures its own copy of the
    /// task with them (see [`TaskRegistry::configured`]).
    fn settings(&self) -> Option<serde_json::Value> {
        None
    }

    /// How this task's failed runs are retried when the job says nothing: tasks that
    /// change data and are safe to repeat declare one (README lists them); `None`
    /// leaves it to the scheduler's job defaults.
    fn default_retry(&self) -> Option<crate::job::RetryPolicy> {
        None
    }
}

/// A task made from an async function.
struct AsyncFnTask<F>(F);

#[async_trait]
impl<F, Fut> Task for AsyncFnTask<F>
where
    F: Fn(TaskRun) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, TaskFailure>> + Send + 'static,
{
    async fn run(&self, run: TaskRun) -> Result<String, TaskFailure> {
        (self.0)(run).await
    }
}

/// A task made from a blocking function; it runs on tokio's blocking pool so it cannot
/// stall the scheduler's runtime.
struct BlockingFnTask<F>(Arc<F>);

#[async_trait]
impl<F> Task for BlockingFnTask<F>
where
    F: Fn(TaskRun) -> Result<String, TaskFailure> + Send + Sync + 'static,
{
    async fn run(&self, run: TaskRun) -> Result<String, TaskFailure> {
        let function = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || function(run))
            .await
            .unwrap_or_else(|error| Err(TaskFailure::new(panic_message(error))))
    }
}

/// Describes a task that panicked or was cancelled.
pub(crate) fn panic_message(error: tokio::task::JoinError) -> String {
    if error.is_cancelled() {
        return "the task was cancelled".to_owned();
    }
    panic_payload_message(error.into_panic().as_ref())
}

/// Describes a panic from its payload (a `&str` or `String` message, as `panic!` makes).
pub(crate) fn panic_payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    format!("the task panicked: {text}")
}

/// Builds a configured task from its settings, without connecting to anything.
type Configure =
    Arc<dyn Fn(&serde_json::Value) -> Result<Arc<dyn Task>, Vec<SettingsError>> + Send + Sync>;

/// How a task that takes settings is configured.
#[derive(Clone)]
struct Configurable {
    /// `stats` for `[tasks.stats]`.
    section: String,
    configure: Configure,
}

/// Why [`TaskRegistry::configure`] refused a section's settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("[tasks.{section}]: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigureError {
    /// The section: `stats`.
    pub section: String,
    /// Every problem in it.
    pub errors: Vec<SettingsError>,
}

/// A registered task, with what each of its runs shares.
#[derive(Clone)]
struct Registered {
    task: Arc<dyn Task>,
    /// Its name, shared by its runs' submissions.
    name: Arc<str>,
    /// The task wrapped as runs start it ([`TaskRegistry::runnable`]), made when the
    /// task or `env_allow` changes rather than on every run: a wrapper made per run was
    /// one more allocation on every run's path (BENCHMARKS.md, "Instructions per run").
    runnable: Arc<dyn Task>,
}

/// Task names and the tasks they stand for.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    tasks: BTreeMap<String, Registered>,
    /// By task name.
    configurable: BTreeMap<String, Configurable>,
    /// The variables `${NAME}` in job args may name (`[tasks] env_allow`).
    env_allow: Arc<std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for TaskRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.tasks.keys()).finish()
    }
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> TaskRegistry {
        TaskRegistry::default()
    }

    /// A registry with the built-in tasks: `command`, `http`, and the news app's
    /// `stats.correct` and `orders.cancel`, the last two unconfigured (a run fails and
    /// says which setting is missing) until [`TaskRegistry::configure`] gives them
    /// their `[tasks.stats]` and `[tasks.orders]` settings.
    pub fn with_builtins() -> TaskRegistry {
        let mut registry = TaskRegistry::new();
        registry.register("command", command::CommandTask);
        registry.register_configurable(
            "http",
            http::SETTINGS_SECTION,
            http::HttpTask::default(),
            http::HttpTask::from_settings,
        );
        registry.register_configurable(
            stats::TASK_NAME,
            stats::SECTION,
            stats::StatsTask::unconfigured(),
            stats::StatsTask::from_settings,
        );
        registry.register_configurable(
            orders::TASK_NAME,
            orders::SECTION,
            orders::CancelOrderTask::unconfigured(),
            orders::CancelOrderTask::from_settings,
        );
        registry
    }

    /// Registers `unconfigured` under `name`, to be replaced by what `configure` builds
    /// from the `[tasks.SECTION]` settings when [`TaskRegistry::configure`] is given
    /// them. `configure` must not connect to anything: config checks call it too.
    pub fn register_configurable<T, F>(
        &mut self,
        name: impl Into<String>,
        section: impl Into<String>,
        unconfigured: impl Task,
        configure: F,
    ) -> &mut TaskRegistry
    where
        T: Task,
        F: Fn(&serde_json::Value) -> Result<T, Vec<SettingsError>> + Send + Sync + 'static,
    {
        let name = name.into();
        self.configurable.insert(
            name.clone(),
            Configurable {
                section: section.into(),
                configure: Arc::new(move |settings| {
                    configure(settings).map(|task| Arc::new(task) as Arc<dyn Task>)
                }),
            },
        );
        self.register(name, unconfigured)
    }

    /// The task a `[tasks.SECTION]` table configures, if one does.
    pub fn task_of_section(&self, section: &str) -> Option<&str> {
        self.configurable
            .iter()
            .find(|(_, configurable)| configurable.section == section)
            .map(|(name, _)| name.as_str())
    }

    /// The settings sections tasks take, sorted: `orders`, `stats`.
    pub fn sections(&self) -> Vec<&str> {
        let mut sections: Vec<&str> = self
            .configurable
            .values()
            .map(|configurable| configurable.section.as_str())
            .collect();
        sections.sort_unstable();
        sections
    }

    /// Checks `settings` for `[tasks.SECTION]` without configuring anything; a section
    /// no task takes is accepted as is.
    pub fn check_settings(
        &self,
        section: &str,
        settings: &serde_json::Value,
    ) -> Result<(), Vec<SettingsError>> {
        match self.configurable_of_section(section) {
            Some(configurable) => (configurable.configure)(settings).map(drop),
            None => Ok(()),
        }
    }

    /// Replaces each task that takes settings with one configured from `settings`
    /// (keyed by section, as [`crate::config::Config::tasks`] is); tasks whose section
    /// is absent stay unconfigured. Nothing is replaced if any section is refused.
    pub fn configure(
        &mut self,
        settings: &BTreeMap<String, serde_json::Value>,
    ) -> Result<(), ConfigureError> {
        let mut configured = Vec::new();
        for (name, configurable) in &self.configurable {
            if let Some(value) = settings.get(&configurable.section) {
                let task = (configurable.configure)(value).map_err(|errors| ConfigureError {
                    section: configurable.section.clone(),
                    errors,
                })?;
                configured.push((name.clone(), task));
            }
        }
        for (name, task) in configured {
            self.insert(name, task);
        }
        Ok(())
    }

    /// The task `name` configured with `settings`, for a process-pool worker that was
    /// sent them ([`Task::settings`]); `None` when `name` takes no settings.
    pub fn configured(
        &self,
        name: &str,
        settings: &serde_json::Value,
    ) -> Option<Result<Arc<dyn Task>, ConfigureError>> {
        let configurable = self.configurable.get(name)?;
        Some(
            (configurable.configure)(settings).map_err(|errors| ConfigureError {
                section: configurable.section.clone(),
                errors,
            }),
        )
    }

    fn configurable_of_section(&self, section: &str) -> Option<&Configurable> {
        self.configurable
            .values()
            .find(|configurable| configurable.section == section)
    }

    /// Registers `task` under `name`, replacing any task of that name.
    pub fn register(&mut self, name: impl Into<String>, task: impl Task) -> &mut TaskRegistry {
        self.insert(name.into(), Arc::new(task));
        self
    }

    /// Puts `task` under `name`, with its runnable wrapper.
    fn insert(&mut self, name: String, task: Arc<dyn Task>) {
        let registered = Registered {
            name: Arc::from(name.as_str()),
            runnable: wrapped(&task, &self.env_allow),
            task,
        };
        self.tasks.insert(name, registered);
    }

    /// Registers an async function as a task.
    pub fn register_fn<F, Fut>(&mut self, name: impl Into<String>, function: F) -> &mut TaskRegistry
    where
        F: Fn(TaskRun) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, TaskFailure>> + Send + 'static,
    {
        self.register(name, AsyncFnTask(function))
    }

    /// Registers a blocking function as a task (it runs on the blocking pool).
    pub fn register_blocking<F>(
        &mut self,
        name: impl Into<String>,
        function: F,
    ) -> &mut TaskRegistry
    where
        F: Fn(TaskRun) -> Result<String, TaskFailure> + Send + Sync + 'static,
    {
        self.register(name, BlockingFnTask(Arc::new(function)))
    }

    /// The task registered under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Task>> {
        self.tasks
            .get(name)
            .map(|registered| Arc::clone(&registered.task))
    }

    /// Lets `${NAME}` in job args name these environment variables (`[tasks]
    /// env_allow`); they are read when a run starts ([`env_args`]).
    pub fn allow_env(&mut self, names: impl IntoIterator<Item = String>) -> &mut TaskRegistry {
        self.env_allow = Arc::new(names.into_iter().collect());
        for registered in self.tasks.values_mut() {
            registered.runnable = wrapped(&registered.task, &self.env_allow);
        }
        self
    }

    /// The task registered under `name`, as runs start it: `${NAME}` in the run's args
    /// is resolved first, from the variables [`TaskRegistry::allow_env`] lists.
    pub fn runnable(&self, name: &str) -> Option<Arc<dyn Task>> {
        self.runnable_named(name).map(|(_, task)| task)
    }

    /// [`TaskRegistry::runnable`] with the task's name, shared (a submission carries
    /// both on every run).
    pub(crate) fn runnable_named(&self, name: &str) -> Option<(Arc<str>, Arc<dyn Task>)> {
        self.tasks.get(name).map(|registered| {
            (
                Arc::clone(&registered.name),
                Arc::clone(&registered.runnable),
            )
        })
    }

    /// The JSON Schema of the args of the task registered under `name`, if it states
    /// one ([`Task::args_schema`]).
    pub fn args_schema(&self, name: &str) -> Option<serde_json::Value> {
        self.tasks
            .get(name)
            .and_then(|registered| registered.task.args_schema())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }
}

/// `task` as runs start it: `${NAME}` in the run's args resolved first, from `allowed`.
fn wrapped(
    task: &Arc<dyn Task>,
    allowed: &Arc<std::collections::BTreeSet<String>>,
) -> Arc<dyn Task> {
    Arc::new(env_args::ResolvedArgsTask {
        inner: Arc::clone(task),
        allowed: Arc::clone(allowed),
    })
}
