//! The `kairos` command line: `run`, `check`, `next`, `jobs`, `runs`.
//!
//! Only `next` exists so far; the daemon and the API client come with the scheduler,
//! store and API work, and until then their commands say so instead of pretending.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use kairos::executor::process::run_worker;
use kairos::task::TaskRegistry;
use kairos::trigger::datetime::format_instant;
use kairos::trigger::words::spec_from_words;
use kairos::trigger::{Trigger, TriggerContext, Zone};

/// An APScheduler-style job scheduler and daemon.
#[derive(Parser)]
#[command(name = "kairos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (not built yet).
    Run {
        /// The config file.
        #[arg(short, long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Validate the config and job files (not built yet).
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
        Command::Run { .. }
        | Command::Check { .. }
        | Command::Jobs { .. }
        | Command::Runs { .. } => {
            eprintln!(
                "kairos: this command is not built yet; so far kairos has its trigger engine \
                 and `kairos next` (see README.md)"
            );
            ExitCode::FAILURE
        }
    }
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
