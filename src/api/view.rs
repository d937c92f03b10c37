//! How the API shows a job: [`JobView`], with the trigger as structured JSON (the
//! resolved [`TriggerSpec`], which `POST /jobs` accepts back) and as a short line for
//! people ([`describe_trigger`], in APScheduler's `cron[hour='3']` style).
//!
//! Kept apart from [`Job`] so the stored record can change without changing the
//! API's contract (docs/semantics.md, "Outside contracts").

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::history::RunRecord;
use crate::job::options::{option_views, OptionViews};
use crate::job::Job;
use crate::scheduler::SuccessWatchState;
use crate::trigger::words::spec_to_words;
use crate::trigger::TriggerSpec;

/// A job as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct JobView {
    id: String,
    name: String,
    task: String,
    args: serde_json::Value,
    trigger: TriggerSpec,
    trigger_text: String,
    /// The trigger in the words `kairos next` and the preview take.
    trigger_words: String,
    executor: String,
    /// Made from the list of job options (src/job/options.rs).
    options: OptionViews,
    /// `scheduled`, `paused`, `failed` (a one-off job whose attempts were used up) or
    /// `broken` (set aside: its trigger could not be computed).
    state: &'static str,
    paused: bool,
    /// A failed run waiting for its next attempt (the next run time).
    #[serde(skip_serializing_if = "Option::is_none")]
    retrying: Option<RetryingView>,
    /// Why a `failed` job failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<FailureView>,
    /// Why a `broken` job was set aside.
    #[serde(skip_serializing_if = "Option::is_none")]
    broken: Option<String>,
    /// RFC 3339 in UTC; `null` while paused.
    next_run_time: Option<String>,
    /// Read-only: the daemon's config files own the job.
    from_config: bool,
    /// The store that holds the job, where the answer knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    jobstore: Option<String>,
    /// The job's latest run, where the request asked for it (`null`: none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run: Option<Option<LastRun>>,
    /// Where a job with `expect_success_within` stands against it (docs/alerts.md),
    /// where the answer computed it (one job, a page of jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    success_watch: Option<SuccessWatchView>,
}

/// A watched job against its dead-man's switch: what the web page marks overdue.
#[derive(Debug, Serialize)]
pub(crate) struct SuccessWatchView {
    /// When its last successful run ended; `null`: none in its run history.
    last_success: Option<String>,
    /// When it is, or became, overdue.
    deadline: String,
    /// The deadline has passed: the switch raises (or has raised) `overdue`.
    overdue: bool,
}

/// How a job's latest run ended: what a jobs table shows.
#[derive(Debug, Serialize)]
pub(crate) struct LastRun {
    outcome: &'static str,
    scheduled_time: String,
    finished_at: String,
}

impl JobView {
    /// The view with secrets in its args hidden, for a token that may only read
    /// (docs/threat-model.md): see [`redact_args`].
    pub(crate) fn redacted_if(mut self, hide: bool) -> JobView {
        if hide {
            redact_args(&mut self.args);
        }
        self
    }

    /// The view, saying which store holds the job.
    pub(crate) fn in_store(mut self, jobstore: String) -> JobView {
        self.jobstore = Some(jobstore);
        self
    }

    /// The view with where the job stands against its `expect_success_within`
    /// (`None`: it has none).
    pub(crate) fn with_success_watch(mut self, watch: Option<SuccessWatchState>) -> JobView {
        self.success_watch = watch.map(|watch| SuccessWatchView {
            last_success: watch.last_success.map(rfc3339),
            deadline: rfc3339(watch.deadline),
            overdue: watch.overdue,
        });
        self
    }

    /// The view with the job's latest run (`None`: it has not run yet).
    pub(crate) fn with_last_run(mut self, run: Option<&RunRecord>) -> JobView {
        self.last_run = Some(run.map(|run| LastRun {
            outcome: run.outcome.as_str(),
            scheduled_time: rfc3339(run.scheduled_time),
            finished_at: rfc3339(run.finished_at),
        }));
        self
    }
}

/// RFC 3339 in UTC, as the API writes instants.
pub(crate) fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[derive(Debug, Serialize)]
struct RetryingView {
    scheduled_time: String,
    /// The number of the next attempt.
    attempt: u32,
}

#[derive(Debug, Serialize)]
struct FailureView {
    scheduled_time: String,
    attempts: u32,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> JobView {
        JobView {
            id: job.id.clone(),
            name: job.name.clone(),
            task: job.task.clone(),
            args: job.args.clone(),
            trigger_text: describe_trigger(&job.trigger.spec()),
            trigger_words: spec_to_words(&job.trigger.spec()),
            trigger: job.trigger.spec().into_owned(),
            executor: job.executor.clone(),
            options: option_views(&job.options()),
            state: job.state(),
            paused: job.paused,
            retrying: job.retry.pending.as_ref().map(|pending| RetryingView {
                scheduled_time: rfc3339(pending.scheduled_time),
                attempt: pending.attempt,
            }),
            broken: job.retry.broken.clone(),
            failure: job.retry.failed.as_ref().map(|failure| FailureView {
                scheduled_time: rfc3339(failure.scheduled_time),
                attempts: failure.attempts,
                at: rfc3339(failure.at),
                error: failure.error.clone(),
            }),
            next_run_time: job.next_run_time.map(rfc3339),
            from_config: job.is_from_config(),
            jobstore: None,
            last_run: None,
            success_watch: None,
        }
    }
}

/// `"30s"`, `"1h 30m"`: the form the API and config files accept.
pub(crate) fn humane(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// A short description of a trigger, as APScheduler's `str(trigger)` gives it:
/// `cron[day_of_week='mon-fri', hour='9', minute='30']`, `interval[1h 30m]`,
/// `date[2024-03-01 12:00:00+08:00]`, `crontab[0 3 * * *]`.
pub(crate) fn describe_trigger(spec: &TriggerSpec) -> String {
    match spec {
        TriggerSpec::Date(date) => format!("date[{}]", date.run_date.as_deref().unwrap_or("now")),
        TriggerSpec::Interval(interval) => {
            let seconds = [
                (interval.weeks, 7 * 24 * 3600),
                (interval.days, 24 * 3600),
                (interval.hours, 3600),
                (interval.minutes, 60),
                (interval.seconds, 1),
            ]
            .iter()
            .fold(0u64, |total, (count, unit)| {
                total.saturating_add(count.saturating_mul(*unit))
            });
            format!("interval[{}]", humane(Duration::from_secs(seconds)))
        }
        TriggerSpec::Cron(cron) => {
            let fields = [
                ("year", &cron.year),
                ("month", &cron.month),
                ("day", &cron.day),
                ("week", &cron.week),
                ("day_of_week", &cron.day_of_week),
                ("hour", &cron.hour),
                ("minute", &cron.minute),
                ("second", &cron.second),
            ];
            let written: Vec<String> = fields
                .iter()
                .filter_map(|(name, value)| value.as_ref().map(|value| format!("{name}='{value}'")))
                .collect();
            format!("cron[{}]", written.join(", "))
        }
        TriggerSpec::Crontab(crontab) => format!("crontab[{}]", crontab.expression),
        TriggerSpec::CalendarInterval(calendar) => {
            let steps: Vec<String> = [
                (calendar.years, "year"),
                (calendar.months, "month"),
                (calendar.weeks, "week"),
                (calendar.days, "day"),
            ]
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, unit)| {
                let plural = if *count == 1 { "" } else { "s" };
                format!("{count} {unit}{plural}")
            })
            .collect();
            format!(
                "calendarinterval[{}, at {:02}:{:02}:{:02}]",
                steps.join(", "),
                calendar.hour,
                calendar.minute,
                calendar.second
            )
        }
        TriggerSpec::And(combining) | TriggerSpec::Or(combining) => {
            let parts: Vec<String> = combining.triggers.iter().map(describe_trigger).collect();
            format!("{}[{}]", spec.kind(), parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: serde_json::Value) -> TriggerSpec {
        serde_json::from_value(value).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn triggers_read_like_apscheduler() {
        let cron = spec(serde_json::json!({"type": "cron", "hour": 3, "day_of_week": "mon-fri"}));
        assert_eq!(
            describe_trigger(&cron),
            "cron[day_of_week='mon-fri', hour='3']"
        );
        let interval = spec(serde_json::json!({"type": "interval", "hours": 1, "minutes": 30}));
        assert_eq!(describe_trigger(&interval), "interval[1h 30m]");
        let crontab = spec(serde_json::json!({"type": "crontab", "expression": "0 3 * * *"}));
        assert_eq!(describe_trigger(&crontab), "crontab[0 3 * * *]");
        let calendar =
            spec(serde_json::json!({"type": "calendarinterval", "months": 1, "hour": 3}));
        assert_eq!(
            describe_trigger(&calendar),
            "calendarinterval[1 month, at 03:00:00]"
        );
        let either = spec(serde_json::json!({"type": "or", "triggers": [
            {"type": "cron", "hour": 3}, {"type": "crontab", "expression": "@daily"}
        ]}));
        assert_eq!(
            describe_trigger(&either),
            "or[cron[hour='3'], crontab[@daily]]"
        );
    }
}

/// What a redacted secret shows as.
const REDACTED: &str = "***";

/// Hides the secrets job args usually hold: every value under a `headers` or `env`
/// key (an `Authorization` header, a password variable) and the password of any URL.
pub(crate) fn redact_args(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let secret_map =
                    key.eq_ignore_ascii_case("headers") || key.eq_ignore_ascii_case("env");
                match value {
                    serde_json::Value::Object(entries) if secret_map => {
                        for entry in entries.values_mut() {
                            *entry = serde_json::Value::String(REDACTED.to_owned());
                        }
                    }
                    other => redact_args(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_args),
        serde_json::Value::String(text) => {
            if let Ok(mut url) = reqwest::Url::parse(text) {
                if url.password().is_some() && url.set_password(Some(REDACTED)).is_ok() {
                    *text = url.to_string();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_env_and_url_passwords_are_hidden() {
        let mut args = json!({
            "url": "https://user:hunter2@example.com/x",
            "headers": {"Authorization": "Bearer s3cret"},
            "env": {"DB_PASSWORD": "pw"},
            "argv": ["psql", "postgres://app:pw2@db/app"],
            "method": "POST",
        });
        redact_args(&mut args);
        let shown = args.to_string();
        for secret in ["hunter2", "s3cret", "\"pw\"", "pw2"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!(args["method"], "POST");
        assert_eq!(args["headers"]["Authorization"], "***");
    }
}
