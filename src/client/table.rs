//! How `kairos jobs` and `kairos runs` show the API's answers to people: aligned
//! tables (one row per job or run) and `key: value` details of one job.
//!
//! Scripts use `--json`, the API's own JSON; nothing here is meant to be parsed. Times
//! are shown in the zone the caller passes (the machine's, from the CLI), to the
//! second; every cell has its control characters escaped, since job names and error
//! texts come from the server and must not be able to move the terminal's cursor.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use unicode_width::UnicodeWidthStr;

use super::{JobView, ReloadReport, RunStarted};
use crate::history::RunRecord;
use crate::scheduler::ClusterNode;
use crate::store::NodeStats;
use crate::trigger::Zone;

/// The widest error text a runs table shows, in terminal columns; `--json` has all
/// of it.
const MAX_ERROR_WIDTH: usize = 60;

/// `text` cut to at most `width` terminal columns, ending in `…` when cut.
fn cut_to_width(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut cut = String::new();
    let mut used = 0;
    for character in text.chars() {
        let wide = unicode_width::UnicodeWidthChar::width(character).unwrap_or(0);
        // One column is kept for the ellipsis.
        if used + wide > width.saturating_sub(1) {
            break;
        }
        used += wide;
        cut.push(character);
    }
    cut.push('…');
    cut
}

/// Rows of cells printed in columns two spaces apart, the first row being the header.
///
/// Columns are measured in terminal columns (`unicode-width`, UAX #11), not in chars:
/// a CJK job name such as `订单取消` takes eight columns, and counting it as four
/// would push every cell after it out of line.
#[derive(Clone, Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
    color: bool,
}

impl Table {
    /// A table with this header row, without color.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|header| (*header).to_owned()).collect()],
            color: false,
        }
    }

    /// With `color` on, the words of STATE and OUTCOME columns are colored (red for
    /// what failed, yellow for what waits, green for what is fine); see
    /// [`crate::color::wanted`] for when a caller should turn it on.
    pub fn with_color(mut self, color: bool) -> Table {
        self.color = color;
        self
    }

    /// Adds a row; its cells are made safe to print.
    pub fn push(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|cell| printable(cell)).collect());
    }

    /// How many rows there are below the header.
    pub fn len(&self) -> usize {
        self.rows.len() - 1
    }

    /// Whether there are no rows below the header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(column))
                    .map(|cell| cell.width())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let headers = self.rows.first().cloned().unwrap_or_default();
        for (index, row) in self.rows.iter().enumerate() {
            let mut line = String::new();
            for (column, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                let style = match (self.color, index) {
                    (false, _) | (true, 0) => None,
                    (true, _) => headers
                        .get(column)
                        .and_then(|header| cell_color(header, cell)),
                };
                match style {
                    Some(code) => line.push_str(&format!("\u{1b}[{code}m{cell}\u{1b}[0m")),
                    None => line.push_str(cell),
                }
                // Padding after the color ends, so the escape codes take no width.
                let pad = width.saturating_sub(cell.width());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// The SGR color code for a STATE or OUTCOME cell: red for what failed, yellow for
/// what waits or was passed over, green for what is fine.
fn cell_color(header: &str, cell: &str) -> Option<&'static str> {
    if header != "STATE" && header != "OUTCOME" {
        return None;
    }
    match cell {
        "failed" | "broken" | "error" | "dead" | "missed" | "timeout" => Some("31"),
        "paused" | "skipped" | "running" | "retrying" => Some("33"),
        "scheduled" | "success" | "alive" => Some("32"),
        _ => None,
    }
}

/// `text` with control characters (newlines, escape sequences) written as escapes.
fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|character| {
            if character.is_control() {
                character.escape_default().to_string()
            } else {
                character.to_string()
            }
        })
        .collect()
}

/// `2024-03-01 12:00:00 +08:00`: the instant in `zone`, to the second.
pub fn time(instant: DateTime<Utc>, zone: &Zone) -> String {
    zone.to_fixed(instant)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// A job's state in a word: `paused`, `scheduled` or `failed` (a one-off job kept
/// after its attempts failed), as the daemon says; from an older daemon, `done` for a
/// job with no run left.
fn state(job: &JobView) -> &str {
    if let Some(state) = job.state.as_deref() {
        return state;
    }
    match (job.paused, job.next_run_time) {
        (true, _) => "paused",
        (false, Some(_)) => "scheduled",
        (false, None) => "done",
    }
}

/// The job table: ID, NAME, TASK, TRIGGER, NEXT RUN, STATE.
pub fn jobs(jobs: &[JobView], zone: &Zone) -> Table {
    let mut table = Table::new(&["ID", "NAME", "TASK", "TRIGGER", "NEXT RUN", "STATE"]);
    for job in jobs {
        table.push(vec![
            job.id.clone(),
            job.name.clone(),
            job.task.clone(),
            job.trigger_text.clone(),
            job.next_run_time
                .map_or_else(|| "-".to_owned(), |next| time(next, zone)),
            state(job).to_owned(),
        ]);
    }
    table
}

/// Everything about one job, a `key: value` line each.
pub fn job_details(job: &JobView, zone: &Zone) -> String {
    let compact = |value: &serde_json::Value| value.to_string();
    let options = &job.options;
    let lines: [(&str, String); 15] = [
        ("id", job.id.clone()),
        ("name", job.name.clone()),
        ("task", job.task.clone()),
        ("args", compact(&job.args)),
        ("trigger", job.trigger_text.clone()),
        ("trigger spec", compact(&job.trigger)),
        ("executor", job.executor.clone()),
        (
            "misfire grace",
            options
                .misfire_grace_time
                .clone()
                .unwrap_or_else(|| "none (never too late)".to_owned()),
        ),
        ("coalesce", options.coalesce.to_string()),
        ("max instances", options.max_instances.to_string()),
        ("overlap", options.overlap.to_string()),
        (
            "jitter",
            options.jitter.clone().unwrap_or_else(|| "none".to_owned()),
        ),
        (
            "expect success",
            options
                .expect_success_within
                .as_ref()
                .map_or_else(|| "-".to_owned(), |within| format!("within {within}")),
        ),
        ("state", state(job).to_owned()),
        (
            "next run",
            job.next_run_time
                .map_or_else(|| "-".to_owned(), |next| time(next, zone)),
        ),
    ];
    let source = if job.from_config {
        "config file (pause, resume and run only; edit the file to change it)"
    } else {
        "api"
    };
    // The options this client has no line of its own for, after the ones it has: their
    // key in words, their value as it comes (`-` for none).
    let other: Vec<(String, String)> = options
        .other
        .iter()
        .map(|(key, value)| {
            let shown = match value {
                serde_json::Value::Null => "-".to_owned(),
                serde_json::Value::String(text) => text.clone(),
                value => compact(value),
            };
            (key.replace('_', " "), shown)
        })
        .collect();
    let options_end = lines
        .iter()
        .position(|(key, _)| *key == "state")
        .unwrap_or(lines.len());
    let (head, tail) = lines.split_at(options_end);
    let lines: Vec<(&str, &str)> = head
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .chain(
            other
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )
        .chain(tail.iter().map(|(key, value)| (*key, value.as_str())))
        .chain([("defined in", source)])
        .collect();
    let width = lines.iter().map(|(key, _)| key.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for (key, value) in lines {
        let label = format!("{key}:");
        text.push_str(&format!("{label:<width$} {}\n", printable(value)));
    }
    text
}

/// A duration for people, to the millisecond: `1s 250ms`.
fn short_duration(delta: chrono::TimeDelta) -> String {
    let millis = delta.num_milliseconds();
    let sign = if millis < 0 { "-" } else { "" };
    let whole = Duration::from_millis(millis.unsigned_abs());
    format!("{sign}{}", humantime::format_duration(whole))
}

/// The run table, newest first as the API gives it: SCHEDULED, JOB, OUTCOME, LATE,
/// DURATION, RUN ID, ERROR (its first line, cut short).
pub fn runs(runs: &[RunRecord], zone: &Zone) -> Table {
    let mut table = Table::new(&[
        "SCHEDULED",
        "JOB",
        "OUTCOME",
        "LATE",
        "DURATION",
        "RUN ID",
        "ERROR",
    ]);
    for run in runs {
        let dash = || "-".to_owned();
        let error = run
            .error
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        let error = cut_to_width(error, MAX_ERROR_WIDTH);
        table.push(vec![
            time(run.scheduled_time, zone),
            run.job_id.clone(),
            run.outcome.as_str().to_owned(),
            run.lateness().map_or_else(dash, short_duration),
            run.started_at
                .map_or_else(dash, |started| short_duration(run.finished_at - started)),
            run.run_id.clone(),
            error,
        ]);
    }
    table
}

/// Each run's whole output and error, under a heading naming the run, for
/// `kairos runs --output`; runs with neither are left out.
pub fn run_outputs(runs: &[RunRecord], zone: &Zone) -> String {
    let mut text = String::new();
    for run in runs {
        if run.output.is_none() && run.error.is_none() {
            continue;
        }
        text.push_str(&format!(
            "\n== {} {} {} ({}) ==\n",
            run.job_id,
            time(run.scheduled_time, zone),
            run.outcome.as_str(),
            run.run_id
        ));
        for (label, body) in [("error", &run.error), ("output", &run.output)] {
            if let Some(body) = body {
                if run.error.is_some() && run.output.is_some() {
                    text.push_str(&format!("{label}:\n"));
                }
                text.push_str(body.trim_end());
                text.push('\n');
            }
        }
    }
    text
}

/// The node table of `kairos cluster`: NODE (`*` marks the one answering), STATE
/// (alive or dead), HOST, PID, VERSION, STARTED, LAST BEAT (how long ago, by
/// `now`), RUNNING (runs executing / executor capacity, and any queued), LATE (the
/// p99 and max lateness of the runs that ended in its last heartbeat window, and how
/// many), JOBS (some of the jobs it is running), JOBSTORES.
pub fn cluster(nodes: &[ClusterNode], now: DateTime<Utc>, zone: &Zone) -> Table {
    let mut table = Table::new(&[
        "NODE",
        "STATE",
        "HOST",
        "PID",
        "VERSION",
        "STARTED",
        "LAST BEAT",
        "RUNNING",
        "LATE p99/max (runs)",
        "JOBS",
        "JOBSTORES",
    ]);
    for node in nodes {
        let info = &node.node;
        let marker = if node.this_node { " *" } else { "" };
        let ago = (now - info.last_heartbeat).max(chrono::TimeDelta::zero());
        let (running, late, jobs) = match &info.stats {
            Some(stats) => node_load(stats),
            None => (dash(), dash(), dash()),
        };
        table.push(vec![
            format!("{}{marker}", info.id),
            if node.alive { "alive" } else { "dead" }.to_owned(),
            info.host.clone(),
            info.pid.to_string(),
            info.version.clone(),
            time(info.started, zone),
            format!("{} ago", short_duration(ago)),
            running,
            late,
            jobs,
            node.jobstores.join(","),
        ]);
    }
    table
}

/// An empty cell.
fn dash() -> String {
    "-".to_owned()
}

/// The RUNNING, LATE and JOBS cells of a node's stats.
fn node_load(stats: &NodeStats) -> (String, String, String) {
    let mut running = format!("{}/{}", stats.running, stats.capacity);
    if stats.queued > 0 {
        running.push_str(&format!(" +{} queued", stats.queued));
    }
    let late = if stats.ended == 0 {
        dash()
    } else {
        let ms = |ms: u64| {
            short_duration(chrono::TimeDelta::milliseconds(
                ms.try_into().unwrap_or(i64::MAX),
            ))
        };
        format!(
            "{}/{} ({})",
            ms(stats.lateness_p99_ms),
            ms(stats.lateness_max_ms),
            stats.ended
        )
    };
    const SHOWN: usize = 3;
    let mut jobs = stats
        .running_jobs
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if stats.running_jobs.len() > SHOWN {
        jobs.push_str(",…");
    }
    if jobs.is_empty() {
        jobs = dash();
    }
    (running, late, jobs)
}

/// What `kairos jobs run` says: the run was submitted, and how to follow it.
pub fn run_started(started: &RunStarted) -> String {
    match &started.run_id {
        Some(run_id) => format!(
            "job {} submitted as run {}; `kairos runs {}` shows how it ends\n",
            printable(&started.job_id),
            printable(run_id),
            printable(&started.job_id)
        ),
        None => format!(
            "failed job {} runs again now, with fresh attempts; `kairos runs {}` shows how it ends\n",
            printable(&started.job_id),
            printable(&started.job_id)
        ),
    }
}

/// What a reload did: one line per kind of change that happened, then the failures.
pub fn reload_summary(report: &ReloadReport) -> String {
    let mut text = String::new();
    for (label, ids) in [
        ("added", &report.added),
        ("changed", &report.changed),
        ("removed", &report.removed),
    ] {
        if !ids.is_empty() {
            let ids: Vec<String> = ids.iter().map(|id| printable(id)).collect();
            text.push_str(&format!("{label} ({}): {}\n", ids.len(), ids.join(", ")));
        }
    }
    text.push_str(&format!("unchanged: {}\n", report.unchanged));
    if let Some(message) = &report.message {
        // The generation part: after the counts, which the lines above show.
        let config = message.split_once("; ").map_or("", |(_, rest)| rest);
        if !config.is_empty() {
            text.push_str(&format!("config: {}\n", printable(config)));
        }
    }
    for failure in &report.failed {
        text.push_str(&format!(
            "failed: {}: {}\n",
            printable(&failure.id),
            printable(&failure.error)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_cells_cannot_steer_the_terminal() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.push(vec!["a".to_owned(), "first".to_owned()]);
        table.push(vec!["long-id".to_owned(), "evil\u{1b}[2J\nname".to_owned()]);
        assert_eq!(
            table.to_string(),
            "ID       NAME\na        first\nlong-id  evil\\u{1b}[2J\\nname\n"
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn cjk_names_are_measured_in_terminal_columns() {
        let mut table = Table::new(&["ID", "NAME", "STATE"]);
        table.push(vec![
            "a".to_owned(),
            "订单取消".to_owned(),
            "paused".to_owned(),
        ]);
        table.push(vec![
            "b".to_owned(),
            "stats".to_owned(),
            "scheduled".to_owned(),
        ]);
        let text = table.to_string();
        let lines: Vec<&str> = text.lines().collect();
        // "订单取消" is 8 columns wide, so STATE starts at column 4 + 8 + 2 = 14 on
        // every line, whatever the characters before it.
        let column_of = |line: &str, word: &str| {
            let byte = line
                .find(word)
                .unwrap_or_else(|| panic!("{word} in {line}"));
            line[..byte].width()
        };
        assert_eq!(column_of(lines[0], "STATE"), 14, "{text}");
        assert_eq!(column_of(lines[1], "paused"), 14, "{text}");
        assert_eq!(column_of(lines[2], "scheduled"), 14, "{text}");
    }

    #[test]
    fn color_only_when_asked_and_padding_stays_outside_it() {
        let mut table = Table::new(&["ID", "STATE", "NAME"]);
        table.push(vec!["a".to_owned(), "failed".to_owned(), "x".to_owned()]);
        table.push(vec!["b".to_owned(), "scheduled".to_owned(), "y".to_owned()]);
        assert!(!table.to_string().contains('\u{1b}'));
        let colored = table.clone().with_color(true).to_string();
        assert!(
            colored.contains("\u{1b}[31mfailed\u{1b}[0m     x"),
            "{colored:?}"
        );
        assert!(
            colored.contains("\u{1b}[32mscheduled\u{1b}[0m  y"),
            "{colored:?}"
        );
        assert!(colored.starts_with("ID  STATE      NAME\n"), "{colored:?}");
    }

    #[test]
    fn long_errors_are_cut_by_width() {
        assert_eq!(cut_to_width("short", 10), "short");
        assert_eq!(cut_to_width("abcdef", 4), "abc…");
        assert_eq!(cut_to_width("错误错误错误", 5), "错误…");
    }

    #[test]
    fn durations_read_to_the_millisecond() {
        assert_eq!(
            short_duration(chrono::TimeDelta::milliseconds(1250)),
            "1s 250ms"
        );
        assert_eq!(short_duration(chrono::TimeDelta::milliseconds(-5)), "-5ms");
    }
}
