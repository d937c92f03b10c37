//! "Why didn't it run?": a job's next run and why not earlier, and what became of its
//! recent scheduled times, from its state and its run history — one sentence first,
//! the details after.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Scheduler, SchedulerError};
use crate::history::{RunOutcome, RunRecord};
use crate::job::Job;

/// How many run records an explanation reads.
const RECENT_RECORDS: usize = 200;

/// How many recent scheduled times it lists.
const RECENT_TIMES: usize = 20;

/// The answer to "why didn't it run?" ([`Scheduler::explain_job`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// The job.
    pub job_id: String,
    /// One sentence: where the job stands and why.
    pub summary: String,
    /// `scheduled`, `paused`, `failed` or `broken` (as the job view names it).
    pub state: &'static str,
    /// Its next run time, if it has one.
    pub next_run_time: Option<DateTime<Utc>>,
    /// Why the next run is when it is: `trigger`, `retry_wait`, `paused`, `failed`,
    /// `running` (a run of it goes on this node), `overdue` (due, not started yet), or
    /// `finished`.
    pub next_run_reason: &'static str,
    /// Its recent scheduled times, newest first, with what became of each.
    pub recent: Vec<ScheduledTime>,
}

/// What became of one scheduled time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduledTime {
    /// The time the trigger (or a run now, a backfill) scheduled.
    pub scheduled_time: DateTime<Utc>,
    /// `ran`, `failed`, `timed_out`, `retried`, `replaced` (stopped for a newer run,
    /// `overlap = "replace"`), `skipped` (its detail says when a run of the job was
    /// already queued, `overlap = "queue"`), `missed`, or `taken_back`.
    pub outcome: &'static str,
    /// How many attempts it had.
    pub attempts: u32,
    /// One sentence.
    pub detail: String,
}

impl Scheduler {
    /// Why job `id`'s next run is when it is, and what became of its recent scheduled
    /// times: built from its state and its run history.
    pub async fn explain_job(&self, id: &str) -> Result<Explanation, SchedulerError> {
        let (_, job) = self.inner.find_job(id).await?;
        let history = self.runs(Some(id), RECENT_RECORDS).await?;
        let running_here = self
            .inner
            .lock()
            .run_stores
            .values()
            .any(|place| place.job_id == id);
        Ok(explain(
            &job,
            &history,
            self.inner.clock.now(),
            running_here,
        ))
    }
}

/// The explanation of `job` at `now`, given its run records (newest first) and
/// whether a run of it is in flight on this node.
pub(crate) fn explain(
    job: &Job,
    history: &[RunRecord],
    now: DateTime<Utc>,
    running_here: bool,
) -> Explanation {
    let (summary, reason) = if let Some(failure) = &job.retry.failed {
        (
            format!(
                "Failed for good: its run for {} failed {} time(s), the last at {}{}; run it \
                 again (run now) or remove it.",
                failure.scheduled_time,
                failure.attempts,
                failure.at,
                failure
                    .error
                    .as_deref()
                    .map(|error| format!(" ({error})"))
                    .unwrap_or_default()
            ),
            "failed",
        )
    } else if job.paused {
        (
            "Paused: it does not run until it is resumed.".to_owned(),
            "paused",
        )
    } else if let Some(pending) = &job.retry.pending {
        (
            format!(
                "Retrying: its run for {} failed; attempt {} of {} is due at {}.",
                pending.scheduled_time,
                pending.attempt,
                job.max_attempts(),
                job.next_run_time
                    .map_or_else(|| "its time".to_owned(), |at| at.to_string())
            ),
            "retry_wait",
        )
    } else if running_here {
        (
            "Running now on this node; its next run time is written when the run ends \
             (times that come meanwhile are skipped by max_instances, or run by another \
             node if it allows more)."
                .to_owned(),
            "running",
        )
    } else {
        match job.next_run_time {
            Some(next) if next <= now => (
                format!(
                    "Due since {next}, not started yet: a run of it still going \
                     (max_instances = {}), no free worker or node, or the store out of reach \
                     delays it.",
                    job.max_instances
                ),
                "overdue",
            ),
            Some(next) => (
                format!("Next run at {next}, its trigger's next fire time."),
                "trigger",
            ),
            None => ("Its trigger has no fire time left.".to_owned(), "finished"),
        }
    };
    Explanation {
        job_id: job.id.clone(),
        summary,
        state: job.state(),
        next_run_time: job.next_run_time,
        next_run_reason: reason,
        recent: recent(history),
    }
}

/// What became of each recent scheduled time, newest first.
fn recent(history: &[RunRecord]) -> Vec<ScheduledTime> {
    let mut by_time: BTreeMap<DateTime<Utc>, Vec<&RunRecord>> = BTreeMap::new();
    for record in history {
        by_time
            .entry(record.scheduled_time)
            .or_default()
            .push(record);
    }
    by_time
        .into_iter()
        .rev()
        .take(RECENT_TIMES)
        .filter_map(|(scheduled_time, mut records)| {
            records.sort_by_key(|record| (record.attempt, record.finished_at));
            let last = *records.last()?;
            let attempts = records
                .iter()
                .filter(|record| record.started_at.is_some())
                .count();
            let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            let error = last.error.as_deref().unwrap_or("");
            let (outcome, detail) = match last.outcome {
                RunOutcome::Success if attempts > 1 => (
                    "retried",
                    format!("ran {attempts} times; the last attempt succeeded"),
                ),
                RunOutcome::Success => ("ran", "ran and succeeded".to_owned()),
                // Stopped for a newer run of its job (`overlap = "replace"`).
                RunOutcome::Error if error.starts_with(super::main_loop::REPLACED) => {
                    ("replaced", format!("started, then stopped: {error}"))
                }
                RunOutcome::Error => (
                    "failed",
                    format!("ran {attempts} time(s); the last failed: {error}"),
                ),
                RunOutcome::Timeout => (
                    "timed_out",
                    format!("ran {attempts} time(s); the last timed out: {error}"),
                ),
                RunOutcome::Missed => ("missed", format!("missed: {error}")),
                RunOutcome::Skipped if error == crate::executor::WITHDRAWN => {
                    ("taken_back", format!("did not run: {error}"))
                }
                RunOutcome::Skipped if error.contains("paused") => {
                    ("taken_back", format!("did not run: {error}"))
                }
                RunOutcome::Skipped => ("skipped", format!("skipped: {error}")),
            };
            Some(ScheduledTime {
                scheduled_time,
                outcome,
                attempts,
                detail,
            })
        })
        .collect()
}
