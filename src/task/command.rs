//! The built-in `command` task (being built).

use async_trait::async_trait;

use super::{Task, TaskFailure, TaskRun};

/// Runs a program.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommandTask;

#[async_trait]
impl Task for CommandTask {
    async fn run(&self, _run: TaskRun) -> Result<String, TaskFailure> {
        Err(TaskFailure::new("the command task is not built yet"))
    }
}
