//! "Why didn't it run?": a job's next run and why not earlier, and what became of its
//! recent scheduled times, from its state and its run history — one sentence first,
//! the details after.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Scheduler, SchedulerError};
use crate::history::{RunOutcome, RunRecord};
use crate::job::{Job, Overlap};

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
    /// `queued` (a run of it waits on this node for a running one to end, `overlap`),
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
    /// `overlap = "replace"`, or overtaken by one while it waited), `skipped` (its
    /// detail says when a run of the job was already queued, `overlap = "queue"`),
    /// `missed`, or `taken_back`.
    pub outcome: &'static str,
    /// How many attempts it had.
    pub attempts: u32,
    /// One sentence.
    pub detail: String,
    /// When its run started, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// The scheduled time of the run it waited behind: a run of its job was still going
    /// at its time, and it started late, when that one ended (`overlap = "queue"`, or
    /// `"replace"` behind runs of other nodes; docs/lifecycle.md, "When the limit is
    /// reached").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_behind: Option<DateTime<Utc>>,
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
        // Any waiting run: every limit is at least 0.
        let waiting_here = self.inner.has_waiting_run(id, 0);
        Ok(explain(
            &job,
            &history,
            self.inner.clock.now(),
            Here {
                running: running_here,
                waiting: waiting_here,
            },
        ))
    }
}

/// What of a job goes on on the node that explains it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Here {
    /// A run of it is in flight.
    pub(crate) running: bool,
    /// A run of it waits for a running one to end (`overlap`).
    pub(crate) waiting: bool,
}

/// The explanation of `job` at `now`, given its run records (newest first) and what
/// of it goes on on this node.
pub(crate) fn explain(
    job: &Job,
    history: &[RunRecord],
    now: DateTime<Utc>,
    here: Here,
) -> Explanation {
    let running_here = here.running;
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
    } else if here.waiting {
        (
            format!(
                "Queued: a run of it waits on this node for one of its {} running run(s) to \
                 end (overlap = {}), and starts then; times that come meanwhile are skipped \
                 (at most one waits).",
                job.max_instances, job.overlap
            ),
            "queued",
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
        recent: recent(history, job.overlap),
    }
}

/// The run that `record` waited behind, if it did: one of its job's runs was still
/// going at its scheduled time, and `record` started only after that one ended. Only a
/// job that queues its runs waits (`overlap = "queue"`, or `"replace"` behind runs of
/// other nodes); with `skip` a late start has other causes (a full pool, a store out of
/// reach).
fn waited_behind<'a>(
    record: &RunRecord,
    history: &'a [RunRecord],
    overlap: Overlap,
) -> Option<&'a RunRecord> {
    let started = record.started_at?;
    if overlap == Overlap::Skip || started <= record.scheduled_time {
        return None;
    }
    history
        .iter()
        .filter(|other| {
            other.run_id != record.run_id
                && other
                    .started_at
                    .is_some_and(|at| at <= record.scheduled_time)
                && other.finished_at > record.scheduled_time
                && other.finished_at <= started
        })
        .max_by_key(|other| other.finished_at)
}

/// What became of each recent scheduled time, newest first.
fn recent(history: &[RunRecord], overlap: Overlap) -> Vec<ScheduledTime> {
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
                // A waiting run overtaken by a newer run of its job (`overlap = "replace"`).
                RunOutcome::Skipped if error.starts_with(super::main_loop::REPLACED) => {
                    ("replaced", format!("did not start: {error}"))
                }
                RunOutcome::Skipped if error == crate::executor::WITHDRAWN => {
                    ("taken_back", format!("did not run: {error}"))
                }
                RunOutcome::Skipped if error.contains("paused") => {
                    ("taken_back", format!("did not run: {error}"))
                }
                RunOutcome::Skipped => ("skipped", format!("skipped: {error}")),
            };
            // The first attempt is the one that waited for a slot, if one did.
            let first = records
                .iter()
                .find(|record| record.started_at.is_some())
                .copied();
            let behind = first.and_then(|first| waited_behind(first, history, overlap));
            let started_at = first.and_then(|first| first.started_at);
            let detail = match (behind, started_at) {
                (Some(behind), Some(started)) => format!(
                    "queued behind the run of {} (still going at this time, overlap = {overlap}); \
                     started at {started}, {} s late; {detail}",
                    behind.scheduled_time,
                    (started - scheduled_time).num_milliseconds() as f64 / 1000.0
                ),
                _ => detail,
            };
            Some(ScheduledTime {
                scheduled_time,
                outcome,
                attempts,
                detail,
                started_at,
                queued_behind: behind.map(|behind| behind.scheduled_time),
            })
        })
        .collect()
}
