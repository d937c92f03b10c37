//! Tasks: what a job runs, by name.
//!
//! A job names a task (`command`, `http`, `stats.correct`, or one a library user
//! registers) and gives it JSON args. The [`TaskRegistry`] maps names to [`Task`]s; the
//! scheduler refuses a job whose task is unknown or whose args the task rejects when
//! the job is added, not when it fires.
//!
//! # Ground rules
//! - A task gets its args and the run's identity, and returns text output or a failure.
//!   It must not assume it runs in the scheduler's process: the process pool runs it in
//!   a `kairos worker` child.
//! - Tasks that change data are written to be idempotent: after a crash a run may be
//!   repeated (DESIGN.md, "Delivery").

mod args;
pub mod command;
pub mod http;

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

    /// Runs once; `Ok` carries the output to keep in the run history.
    async fn run(&self, run: TaskRun) -> Result<String, TaskFailure>;
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
    let payload = error.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    format!("the task panicked: {text}")
}

/// Task names and the tasks they stand for.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    tasks: BTreeMap<String, Arc<dyn Task>>,
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

    /// A registry with the built-in `command` and `http` tasks.
    pub fn with_builtins() -> TaskRegistry {
        let mut registry = TaskRegistry::new();
        registry.register("command", command::CommandTask);
        registry.register("http", http::HttpTask::default());
        registry
    }

    /// Registers `task` under `name`, replacing any task of that name.
    pub fn register(&mut self, name: impl Into<String>, task: impl Task) -> &mut TaskRegistry {
        self.tasks.insert(name.into(), Arc::new(task));
        self
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
        self.tasks.get(name).cloned()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }
}
