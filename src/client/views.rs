//! The API's answers as the client reads them. They mirror the API's JSON
//! (`src/api/view.rs`) rather than share the server's types, and accept fields they
//! do not know, so a newer daemon does not break an older CLI.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::history::RunRecord;
use crate::job::JobOptions;
use crate::scheduler::ClusterNode;
use crate::trigger::TriggerSpec;

/// An answer of the API: the parsed value and the body exactly as it came.
#[derive(Clone, Debug)]
pub struct Fetched<T> {
    /// The body parsed.
    pub value: T,
    /// The body as received (empty for `204 No Content`), for `--json`.
    pub body: String,
}

/// A job as the API shows it (`src/api/view.rs`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// Its name, for people.
    pub name: String,
    /// The task it runs.
    pub task: String,
    /// The task's arguments.
    #[serde(default)]
    pub args: serde_json::Value,
    /// The trigger, structured, as `POST /jobs` takes it.
    pub trigger: serde_json::Value,
    /// The trigger in APScheduler's short form: `cron[hour='3']`.
    pub trigger_text: String,
    /// The executor that runs it.
    pub executor: String,
    /// Its options.
    pub options: JobOptionsView,
    /// Whether it is paused.
    pub paused: bool,
    /// `scheduled`, `paused` or `failed` (absent from daemons before failed jobs were
    /// kept).
    #[serde(default)]
    pub state: Option<String>,
    /// When it runs next; `None` while paused.
    pub next_run_time: Option<DateTime<Utc>>,
    /// The daemon's config files own it: pause, resume and run only.
    #[serde(default)]
    pub from_config: bool,
}

/// A job's options as the API shows them.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JobOptionsView {
    /// How late a run may start (`"30s"`); `None`: never too late.
    pub misfire_grace_time: Option<String>,
    /// Whether overdue runs are folded into one.
    pub coalesce: bool,
    /// How many runs may go at once.
    pub max_instances: u32,
    /// What a run due while `max_instances` runs go does (absent from older daemons:
    /// `skip`).
    #[serde(default)]
    pub overlap: crate::job::Overlap,
    /// Random delay per run, at most this (`"5s"`).
    pub jitter: Option<String>,
    /// The dead-man's switch (`"25h"`); `None`: none.
    #[serde(default)]
    pub expect_success_within: Option<String>,
    /// Every other option the daemon shows (`retry`, and any option newer than this
    /// client), by its key: shown as it comes, so that an option added to the one list
    /// (src/job/options.rs) needs no edit here.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// What resuming a job did.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Resumed {
    /// The job, running on its schedule again.
    Job(Box<JobView>),
    /// The job's trigger had no fire time left, so the scheduler removed it.
    Removed {
        /// The job's id.
        id: String,
        /// Always true.
        removed: bool,
        /// The API's explanation.
        message: String,
    },
}

/// The answer to `POST /jobs/{id}/run`: the run was submitted.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RunStarted {
    /// The job.
    pub job_id: String,
    /// The run's id, as `kairos runs` shows it; absent when a failed job was set to
    /// run again now with fresh attempts (through the scheduler's loop).
    #[serde(default)]
    pub run_id: Option<String>,
}

/// The answer to `GET /jobs/{id}/explain` (the parts the CLI prints).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Explained {
    /// One sentence: where the job stands and why.
    pub summary: String,
    /// Its recent scheduled times, newest first.
    #[serde(default)]
    pub recent: Vec<ExplainedTime>,
}

/// One recent scheduled time in [`Explained`].
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ExplainedTime {
    /// The scheduled time.
    pub scheduled_time: DateTime<Utc>,
    /// What became of it, in a word.
    pub outcome: String,
    /// In a sentence.
    pub detail: String,
}

/// The answer to `POST /jobs/{id}/backfill`: how many runs were handed over.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BackfillStarted {
    /// The job.
    pub job_id: String,
    /// How many of its fire times in the range were handed over.
    pub runs: usize,
    /// The first run's id (none when the range held no fire time).
    #[serde(default)]
    pub run_id: Option<String>,
}

/// The answer to `POST /scheduler/reload`: what the config files changed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ReloadReport {
    /// Ids of jobs new in the files.
    #[serde(default)]
    pub added: Vec<String>,
    /// Ids of jobs whose definition changed.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Ids of jobs no longer in the files.
    #[serde(default)]
    pub removed: Vec<String>,
    /// How many jobs stayed as they were.
    #[serde(default)]
    pub unchanged: usize,
    /// Jobs that could not be applied, with why.
    #[serde(default)]
    pub failed: Vec<ReloadFailure>,
    /// Whether the files were applied: `Some(false)` when a newer config generation
    /// superseded them; `None` from a daemon that predates config generations.
    #[serde(default)]
    pub applied: Option<bool>,
    /// The reload in one line, config generation included.
    #[serde(default)]
    pub message: Option<String>,
}

/// One job a reload could not apply.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ReloadFailure {
    /// The job's id.
    pub id: String,
    /// Why.
    pub error: String,
}

/// The body of `POST /jobs`: the job, with its options under `options`.
#[derive(Clone, Debug, Serialize)]
pub struct NewJob {
    /// The id; the server makes one up when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The name; the server uses the id when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The task to run.
    pub task: String,
    /// The task's arguments.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub args: serde_json::Value,
    /// When to run it.
    pub trigger: TriggerSpec,
    /// Executor, misfire grace time, coalescing, instances.
    pub options: JobOptions,
    /// Add it paused.
    pub paused: bool,
    /// Replace a job with the same id instead of failing with 409.
    pub replace_existing: bool,
}

#[derive(Deserialize)]
pub(super) struct JobList {
    pub(super) jobs: Vec<JobView>,
    #[serde(default)]
    pub(super) total: Option<u64>,
    #[serde(default)]
    pub(super) next_cursor: Option<String>,
}

/// The filters and the page of `GET /jobs`, as `kairos jobs list` passes them; all
/// `None` lists every job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// `scheduled`, `paused`, `failed` or `broken`.
    pub state: Option<String>,
    /// Only jobs of this task.
    pub task: Option<String>,
    /// Only jobs in this job store.
    pub jobstore: Option<String>,
    /// Text in the id or name, ignoring case.
    pub text: Option<String>,
    /// How many jobs in the page (the API's default: 50, at most 1,000).
    pub limit: Option<usize>,
    /// Skip this many matching jobs (offset paging).
    pub offset: Option<usize>,
    /// Go on after the page that answered with this `next_cursor` (cursor paging).
    pub cursor: Option<String>,
}

impl JobFilter {
    /// The query parameters this filter sends.
    pub(super) fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        let texts = [
            ("state", &self.state),
            ("task", &self.task),
            ("jobstore", &self.jobstore),
            ("q", &self.text),
            ("cursor", &self.cursor),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        for (name, value) in [("limit", self.limit), ("offset", self.offset)] {
            if let Some(value) = value {
                query.push((name, value.to_string()));
            }
        }
        query
    }
}

/// One page of `GET /jobs`.
#[derive(Clone, Debug)]
pub struct JobPage {
    /// The jobs in this page.
    pub jobs: Vec<JobView>,
    /// How many jobs match in all (absent from an unfiltered, unpaged list).
    pub total: Option<u64>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// One page of `GET /runs`.
#[derive(Clone, Debug)]
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<RunRecord>,
    /// Where the next (older) page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ClusterList {
    pub(super) nodes: Vec<ClusterNode>,
}

#[derive(Deserialize)]
pub(super) struct RunList {
    pub(super) runs: Vec<RunRecord>,
    #[serde(default)]
    pub(super) next_cursor: Option<String>,
}

#[derive(Serialize)]
pub(super) struct Reschedule<'a> {
    pub(super) trigger: &'a TriggerSpec,
}
