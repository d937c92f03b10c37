//! The built-in `http` task (being built).

use async_trait::async_trait;

use super::{Task, TaskFailure, TaskRun};

/// Calls a URL.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpTask;

#[async_trait]
impl Task for HttpTask {
    async fn run(&self, _run: TaskRun) -> Result<String, TaskFailure> {
        Err(TaskFailure::new("the http task is not built yet"))
    }
}
