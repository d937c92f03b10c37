//! `kairos check`: reads the config as the daemon would, then says what it found (its
//! jobs, their next fire times, the stores and their history), as text or `--json`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use kairos::client::table;
use kairos::config;
use kairos::daemon::{self};
use kairos::task::TaskRegistry;
use kairos::trigger::datetime::format_instant;
use kairos::trigger::words::spec_to_words;
use kairos::trigger::{Trigger, TriggerContext};

/// One job of `kairos check --json`.
#[derive(serde::Serialize)]
pub(super) struct CheckedJob {
    pub(super) id: String,
    pub(super) task: String,
    pub(super) trigger: String,
    pub(super) paused: bool,
    /// The next three fire times, in the trigger's zone.
    pub(super) next_run_times: Vec<String>,
    /// Why the trigger cannot be built, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
}

/// One problem of `kairos check --json`.
#[derive(serde::Serialize)]
pub(super) struct CheckProblem {
    pub(super) file: String,
    /// 1-based; absent when the problem has no position (a file that cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) column: Option<usize>,
    /// The key path (`jobs[2].trigger.hour`); absent when not about one key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) key: Option<String>,
    /// unknown_key, missing_key, invalid_value, unknown_reference, duplicate,
    /// syntax or io.
    pub(super) kind: &'static str,
    pub(super) message: String,
}

impl From<&config::ConfigError> for CheckProblem {
    fn from(error: &config::ConfigError) -> CheckProblem {
        use config::ConfigErrorKind as Kind;
        let position = |value: usize| Some(value).filter(|value| *value > 0);
        CheckProblem {
            file: error.file.display().to_string(),
            line: position(error.line),
            column: position(error.column),
            key: Some(error.key.clone()).filter(|key| !key.is_empty()),
            kind: match error.kind {
                Kind::Io => "io",
                Kind::Syntax => "syntax",
                Kind::UnknownKey => "unknown_key",
                Kind::MissingKey => "missing_key",
                Kind::InvalidValue => "invalid_value",
                Kind::UnknownReference => "unknown_reference",
                Kind::Duplicate => "duplicate",
            },
            message: error.message.clone(),
        }
    }
}

/// `kairos check`: the same loading path as `run`; prints every problem, or the job
/// table (with `json`, one JSON object either way). Returns whether the config is
/// valid.
pub(super) fn check(path: &Path, json: bool) -> anyhow::Result<bool> {
    let tasks = TaskRegistry::with_builtins();
    let config = match config::load_with(path, &tasks) {
        Ok(config) => config,
        Err(errors) if json => {
            let problems: Vec<CheckProblem> = errors.iter().map(CheckProblem::from).collect();
            let answer = serde_json::json!({
                "ok": false,
                "config": path.display().to_string(),
                "errors": problems,
            });
            println!("{answer}");
            return Ok(false);
        }
        Err(errors) => {
            for error in errors.iter() {
                eprintln!("{error}");
            }
            eprintln!("{}: {} problem(s)", path.display(), errors.len());
            return Ok(false);
        }
    };
    // The rules `kairos run` would read: the same environment, setting and files,
    // read before the next run times below are computed with them.
    kairos::trigger::tzdata::configure(config.scheduler.tzdir.clone());
    kairos::trigger::tzdata::reload();
    let now = Utc::now();
    let context = TriggerContext::new(now).with_timezone(config.scheduler.timezone);
    let mut jobs = Vec::with_capacity(config.jobs.len());
    for job in &config.jobs {
        let spec = &job.spec;
        let (next_run_times, error) = match Trigger::new(spec.trigger.clone(), &context) {
            Ok(trigger) => {
                let zone = trigger.timezone();
                let times = trigger
                    .fire_times(now)
                    .take(3)
                    .map(|time| format_instant(time, &zone))
                    .collect();
                (times, None)
            }
            Err(error) => (Vec::new(), Some(error.to_string())),
        };
        jobs.push(CheckedJob {
            id: job.id().to_owned(),
            task: spec.task.clone(),
            trigger: spec_to_words(&spec.trigger),
            paused: spec.paused,
            next_run_times,
            error,
        });
    }
    let specs: Vec<_> = config.jobs.iter().map(|job| job.spec.clone()).collect();
    let hash = daemon::sync::config_hash(&specs);
    let (generation, history_runs) = store_lines(&config, &hash);
    let history = history_line(&config.history, history_runs);
    let tzdata = kairos::trigger::tzdata::info();
    let mut out = std::io::stdout().lock();
    if json {
        let answer = serde_json::json!({
            "ok": true,
            "config": path.display().to_string(),
            "errors": [],
            "jobs": jobs,
            "jobstores": config.jobstores.len(),
            "executors": config.executors.len(),
            "config_hash": hash,
            "config_generation": generation,
            "history_runs": history_runs,
            "history": history,
            "tzdata": tzdata,
        });
        writeln!(out, "{answer}").context("writing the result")?;
        return Ok(true);
    }
    let mut table = table::Table::new(&["ID", "TASK", "TRIGGER", "NEXT RUNS"]);
    for job in &jobs {
        let next = match (&job.error, job.paused) {
            (_, true) => "paused".to_owned(),
            (Some(error), _) => format!("invalid: {error}"),
            (None, _) if job.next_run_times.is_empty() => "never".to_owned(),
            (None, _) => job.next_run_times.join(", "),
        };
        table.push(vec![
            job.id.clone(),
            job.task.clone(),
            job.trigger.clone(),
            next,
        ]);
    }
    write!(out, "{table}").context("writing the job table")?;
    writeln!(
        out,
        "{}: valid; {} job(s), {} store(s), {} executor(s)",
        path.display(),
        config.jobs.len(),
        config.jobstores.len(),
        config.executors.len()
    )
    .context("writing the job table")?;
    writeln!(out, "config hash: {hash}").context("writing the job table")?;
    writeln!(out, "config generation: {generation}").context("writing the job table")?;
    writeln!(out, "history: {history}").context("writing the job table")?;
    writeln!(out, "tzdata: {tzdata}").context("writing the job table")?;
    Ok(true)
}

/// `kairos check`'s line on the run history: its size in the default store (when it
/// could be read) and the limits that keep it bounded (README.md, "Run history").
pub(super) fn history_line(
    retention: &kairos::scheduler::HistoryRetention,
    runs: Option<u64>,
) -> String {
    let size = match runs {
        Some(runs) => format!("{runs} run record(s)"),
        None => "size unknown".to_owned(),
    };
    let mut limits = Vec::new();
    if let Some(keep) = retention.keep {
        limits.push(format!("for {}", humantime_short(keep)));
    }
    if let Some(count) = retention.successes_per_job {
        limits.push(format!("{count} successes per job"));
    }
    if let Some(count) = retention.failures_per_job {
        limits.push(format!("{count} other runs per job"));
    }
    if let Some(rows) = retention.max_rows {
        limits.push(format!("{rows} in all"));
    }
    if limits.is_empty() {
        return format!("{size}; kept without limit");
    }
    format!("{size}; kept at most {}", limits.join(", "))
}

/// `d` as the largest whole unit that divides it: `30d`, `12h`, `90s`.
pub(super) fn humantime_short(duration: Duration) -> String {
    let seconds = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds >= size && seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// How long `kairos check` waits for the job store before saying it cannot tell.
pub(super) const CHECK_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// `kairos check`: what the default job store holds against this config, as a start
/// or a reload would judge it, and how many run records it holds (`None` when it
/// cannot tell). A store that is not there yet (memory, a SQLite file not created) is
/// not created, and holds no history; one that cannot be reached is said so, and the
/// check still passes: it judges the files.
pub(super) fn store_lines(config: &config::Config, hash: &str) -> (String, Option<u64>) {
    let name = &config.job_defaults.jobstore;
    let Some(store) = config.jobstores.get(name) else {
        return (format!("no job store {name:?}"), None);
    };
    let url = match kairos::store::url::StoreUrl::parse(&store.url) {
        Ok(url) => url,
        Err(error) => return (format!("job store {name:?}: {error}"), None),
    };
    match &url {
        kairos::store::url::StoreUrl::Memory => {
            return (
                format!(
                    "job store {name:?} is in memory: each start applies this config as \
                     generation 1"
                ),
                Some(0),
            );
        }
        kairos::store::url::StoreUrl::Sqlite(text) => {
            let file = text
                .split_once("://")
                .map_or(text.as_str(), |(_, rest)| rest)
                .split('?')
                .next()
                .unwrap_or_default();
            if !Path::new(file).exists() {
                return (
                    format!(
                        "job store {name:?} ({file}) does not exist yet: the first start \
                         applies this config as generation 1"
                    ),
                    Some(0),
                );
            }
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return (
                format!("cannot tell: starting the async runtime: {error}"),
                None,
            )
        }
    };
    let options = store.open_options();
    runtime.block_on(async {
        let read = async {
            let opened = kairos::store::open(&store.url, &options)
                .await
                .map_err(|error| error.to_string())?;
            let history = opened
                .config_generations(usize::MAX)
                .await
                .map_err(|error| error.to_string())?;
            let line = kairos::scheduler::describe_claim(&history, hash, opened.is_shared());
            // The history's size is worth showing even when the store cannot count it.
            Ok::<_, String>((line, opened.count_runs().await.ok()))
        };
        match tokio::time::timeout(CHECK_STORE_TIMEOUT, read).await {
            Ok(Ok(lines)) => lines,
            Ok(Err(error)) => (format!("cannot tell: job store {name:?}: {error}"), None),
            Err(_) => (
                format!(
                    "cannot tell: job store {name:?} did not answer within \
                     {CHECK_STORE_TIMEOUT:?}"
                ),
                None,
            ),
        }
    })
}
