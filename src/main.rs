//! The `kairos` command line: `run`, `check`, `next`, `jobs`, `runs`.
//!
//! `jobs` and `runs` (the API client) come with the HTTP API; until then they say so
//! instead of pretending.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use kairos::config;
use kairos::daemon::{self, logging};
use kairos::executor::process::run_worker;
use kairos::task::TaskRegistry;
use kairos::trigger::datetime::format_instant;
use kairos::trigger::words::spec_from_words;
use kairos::trigger::{Trigger, TriggerContext, TriggerSpec, Zone};

/// An APScheduler-style job scheduler and daemon.
#[derive(Parser)]
#[command(name = "kairos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the scheduler, its stores and executors, reloading on SIGHUP.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Validate the config and job files and print the job table.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Preview the fire times of a trigger, like `systemd-analyze calendar`.
    ///
    /// Examples:
    ///   kairos next cron hour=3 minute=30 timezone=Asia/Shanghai
    ///   kairos next crontab "*/15 9-17 * * mon-fri" -n 8
    ///   kairos next interval minutes=90 start_date="2024-01-01 00:00:00"
    ///   kairos next calendarinterval months=1 hour=9 start_date=2024-01-31
    ///   kairos next date run_date="2024-12-24 18:00:00" timezone=Europe/Berlin
    #[command(verbatim_doc_comment)]
    Next {
        /// cron, crontab, interval, date or calendarinterval.
        kind: String,
        /// field=value words with APScheduler's names; a crontab line comes first.
        words: Vec<String>,
        /// List fire times at or after this RFC 3339 instant (default: now).
        #[arg(long = "from", value_name = "TIME")]
        from: Option<String>,
        /// How many fire times to list.
        #[arg(short = 'n', long = "count", default_value_t = 5)]
        count: usize,
        /// Print a JSON array instead of one time per line.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and steer the jobs of a running daemon (not built yet).
    Jobs {
        /// The jobs subcommand and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Show the run history (not built yet).
    Runs {
        /// The arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run one task for the processpool executor, which starts this; reads its request
    /// from stdin.
    #[command(hide = true)]
    Worker,
}

/// Exit status for input that is wrong (an invalid trigger, a bad --from).
const EXIT_INVALID_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Worker => run_worker(&TaskRegistry::with_builtins()),
        Command::Next {
            kind,
            words,
            from,
            count,
            json,
        } => match next(&kind, &words, from.as_deref(), count, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(NextError::Invalid(message)) => {
                eprintln!("{message}");
                ExitCode::from(EXIT_INVALID_INPUT)
            }
            Err(NextError::Output(error)) => {
                eprintln!("kairos: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match run_daemon(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("kairos: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => match check(&config) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("kairos: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Jobs { .. } | Command::Runs { .. } => {
            eprintln!(
                "kairos: this command is not built yet: the API client comes with the HTTP API \
                 (see README.md)"
            );
            ExitCode::FAILURE
        }
    }
}

/// `kairos run`: the config is loaded before logging starts, so its errors reach the
/// terminal (or the journal) as plain lines with their positions.
fn run_daemon(path: &Path) -> anyhow::Result<()> {
    let tasks = TaskRegistry::with_builtins();
    let config = match config::load_with(path, &tasks) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors.iter() {
                eprintln!("{error}");
            }
            anyhow::bail!("{} problem(s) in the config; not started", errors.len());
        }
    };
    logging::init(&config.log.level, config.log.format).context("setting up logging")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon::run(path, tasks, config))?;
    // Blocking work still going after the shutdown timeout (a thread-pool task that
    // ignores it) must not hold the process.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// `kairos check`: the same loading path as `run`; prints every problem, or the job
/// table. Returns whether the config is valid.
fn check(path: &Path) -> anyhow::Result<bool> {
    let tasks = TaskRegistry::with_builtins();
    let config = match config::load_with(path, &tasks) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors.iter() {
                eprintln!("{error}");
            }
            eprintln!("{}: {} problem(s)", path.display(), errors.len());
            return Ok(false);
        }
    };
    let now = Utc::now();
    let context = TriggerContext::new(now).with_timezone(config.scheduler.timezone);
    let mut rows = vec![[
        "ID".to_owned(),
        "TASK".to_owned(),
        "TRIGGER".to_owned(),
        "NEXT RUNS".to_owned(),
    ]];
    for job in &config.jobs {
        let spec = &job.spec;
        let next = match Trigger::new(spec.trigger.clone(), &context) {
            _ if spec.paused => "paused".to_owned(),
            Ok(trigger) => {
                let zone = trigger.timezone();
                let times: Vec<String> = trigger
                    .fire_times(now)
                    .take(3)
                    .map(|time| format_instant(time, &zone))
                    .collect();
                if times.is_empty() {
                    "never".to_owned()
                } else {
                    times.join(", ")
                }
            }
            Err(error) => format!("invalid: {error}"),
        };
        rows.push([
            job.id().to_owned(),
            spec.task.clone(),
            trigger_words(&spec.trigger),
            next,
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = std::io::stdout().lock();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end()).context("writing the job table")?;
    }
    writeln!(
        out,
        "{}: valid; {} job(s), {} store(s), {} executor(s)",
        path.display(),
        config.jobs.len(),
        config.jobstores.len(),
        config.executors.len()
    )
    .context("writing the job table")?;
    Ok(true)
}

/// A trigger in the words `kairos next` takes: `cron hour=3 minute=30`.
fn trigger_words(spec: &TriggerSpec) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(spec) else {
        return String::from("?");
    };
    let mut words = Vec::new();
    if let Some(kind) = fields.get("type").and_then(|kind| kind.as_str()) {
        words.push(kind.to_owned());
    }
    for (key, value) in &fields {
        if key == "type" || value.is_null() {
            continue;
        }
        let text = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        if key == "expression" {
            words.push(format!("{text:?}"));
        } else if text.contains(' ') {
            words.push(format!("{key}={text:?}"));
        } else {
            words.push(format!("{key}={text}"));
        }
    }
    words.join(" ")
}

enum NextError {
    /// The user's input is wrong: one line naming the field and the reason.
    Invalid(String),
    /// Writing the output failed.
    Output(anyhow::Error),
}

fn next(
    kind: &str,
    words: &[String],
    from: Option<&str>,
    count: usize,
    json: bool,
) -> Result<(), NextError> {
    let from = match from {
        Some(text) => DateTime::parse_from_rfc3339(text.trim())
            .map(|instant| instant.with_timezone(&Utc))
            .map_err(|error| {
                NextError::Invalid(format!(
                    "--from: {text:?} is not an RFC 3339 instant ({error}; e.g. 2024-03-01T12:00:00+08:00)"
                ))
            })?,
        None => Utc::now(),
    };
    let spec =
        spec_from_words(kind, words).map_err(|error| NextError::Invalid(error.to_string()))?;
    let context = TriggerContext::new(from).with_timezone(Zone::system());
    let trigger =
        Trigger::new(spec, &context).map_err(|error| NextError::Invalid(error.to_string()))?;
    let zone = trigger.timezone();
    let times: Vec<String> = trigger
        .fire_times(from)
        .take(count)
        .map(|instant| format_instant(instant, &zone))
        .collect();
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer(&mut out, &times)
            .map_err(anyhow::Error::from)
            .and_then(|()| writeln!(out).map_err(anyhow::Error::from))
    } else {
        times
            .iter()
            .try_for_each(|time| writeln!(out, "{time}"))
            .map_err(anyhow::Error::from)
    };
    written
        .context("writing the fire times")
        .map_err(NextError::Output)
}
