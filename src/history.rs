//! Run history: one record per run of a job for one scheduled time.
//!
//! Stores keep the records ([`crate::store::RunHistory::record_run`]); the memory store
//! keeps a bounded ring, persistent stores a table with retention.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How much task output a run record keeps; the rest is cut and marked.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The task finished without error.
    Success,
    /// The task failed, panicked or crashed.
    Error,
    /// The task ran past its timeout and was stopped.
    Timeout,
    /// The run time was older than the misfire grace time when the scheduler took it.
    Missed,
    /// The run was not started because `max_instances` runs were already going.
    Skipped,
}

impl RunOutcome {
    /// The outcome's name as it appears in JSON and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Error => "error",
            RunOutcome::Timeout => "timeout",
            RunOutcome::Missed => "missed",
            RunOutcome::Skipped => "skipped",
        }
    }
}

/// One run of a job for one scheduled time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Unique id of the run.
    pub run_id: String,
    /// The job that ran.
    pub job_id: String,
    /// The time the trigger scheduled this run for.
    pub scheduled_time: DateTime<Utc>,
    /// When the task started; `None` for missed and skipped runs.
    pub started_at: Option<DateTime<Utc>>,
    /// When the task ended (or the run was given up).
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// What went wrong, for failed runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the task printed or returned, at most [`MAX_OUTPUT_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Which attempt of its scheduled time the run was, from 1 (see
    /// [`crate::job::RetryPolicy`]).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

/// Records written before attempts were counted were first attempts.
fn first_attempt() -> u32 {
    1
}

impl RunRecord {
    /// How late the run started after its scheduled time.
    pub fn lateness(&self) -> Option<chrono::TimeDelta> {
        self.started_at.map(|started| started - self.scheduled_time)
    }
}

/// Cuts `text` to at most `limit` bytes on a character boundary, saying how much was cut.
pub fn bound_output(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let total = text.len();
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(
        "\n[output cut: {total} bytes, kept the first {cut}]"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_on_a_character_boundary() {
        let cut = bound_output("ééééé".to_owned(), 3);
        assert!(cut.starts_with('é'));
        assert!(cut.contains("[output cut: 10 bytes, kept the first 2]"));
        assert_eq!(bound_output("short".to_owned(), 10), "short");
    }
}
