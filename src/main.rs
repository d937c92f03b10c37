//! The `kairos` command line: `run`, `check`, `next`, `jobs`, `runs`, `cluster`, and
//! `completions` and `man`, which are written from the same clap definitions.
//!
//! `jobs` and `runs` are clients of a running daemon's HTTP API (`kairos::client`);
//! this file only reads their arguments and says which call to make and how to print
//! its answer.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, CommandFactory, Parser, Subcommand};
use kairos::client::{
    table, trigger_from_words, ApiClient, ClientError, Endpoint, EndpointError, JobFilter, JobView,
    NewJob, Resumed,
};
use kairos::config;
use kairos::daemon::{self, logging};
use kairos::executor::process::run_worker;
use kairos::job::JobOptions;
use kairos::task::TaskRegistry;
use kairos::trigger::datetime::format_instant;
use kairos::trigger::words::{spec_from_words, spec_to_words};
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
        /// Print the result as one JSON object, for scripts and editors: `ok`, then
        /// `errors` (each with file, line, column, key, kind and message) or `jobs`.
        #[arg(long)]
        json: bool,
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
        /// How many fire times to list (at most 10,000).
        #[arg(short = 'n', long = "count", default_value_t = 5)]
        count: usize,
        /// Print a JSON array instead of one time per line.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and steer the jobs of a running daemon, through its HTTP API.
    ///
    /// The daemon is found at KAIROS_URL (e.g. http://127.0.0.1:8080) with the token in
    /// KAIROS_TOKEN; either one left unset comes from the config's [api] listen and
    /// token (-c, default ./config.toml when it exists), then from the defaults
    /// (127.0.0.1:8080, no token). The config's token is never sent to a KAIROS_URL. Exit status: 0 done, 1 the API refused or could
    /// not be reached, 2 invalid input (nothing was sent).
    ///
    /// Examples:
    ///   kairos jobs list
    ///   kairos jobs add --id order-cancel-42 --task orders.cancel --args '{"order_id":42}' date delay=30m
    ///   kairos jobs reschedule nightly cron hour=4 minute=15
    ///   kairos jobs show order-cancel-42 --json
    #[command(verbatim_doc_comment)]
    Jobs {
        /// What to do.
        #[command(subcommand)]
        command: JobsCommand,
        /// Where the API is and how to print its answers.
        #[command(flatten)]
        connection: Connection,
    },
    /// Show the run history of a running daemon, newest first, through its HTTP API.
    ///
    /// The daemon is found as for `kairos jobs` (KAIROS_URL, KAIROS_TOKEN, -c).
    Runs {
        /// Only this job's runs (they are kept after the job is removed).
        job_id: Option<String>,
        /// How many runs to show, 1 to 1000 (the API's default: 50).
        #[arg(short = 'n', long, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: Option<u16>,
        /// After the table, print each run's whole output and error (what a
        /// `stats.correct` run corrected, what an `orders.cancel` run did).
        #[arg(short = 'o', long)]
        output: bool,
        /// Go on with older runs, from the page that printed this cursor.
        #[arg(long)]
        cursor: Option<String>,
        /// Where the API is and how to print its answers.
        #[command(flatten)]
        connection: Connection,
    },
    /// Show the nodes sharing a running daemon's job stores (a cluster), through its
    /// HTTP API: each node's id, whether its heartbeat is recent, host, pid, version,
    /// start and last heartbeat.
    ///
    /// The daemon is found as for `kairos jobs` (KAIROS_URL, KAIROS_TOKEN, -c).
    Cluster {
        /// Where the API is and how to print its answers.
        #[command(flatten)]
        connection: Connection,
    },
    /// Print a shell completion script for bash, zsh or fish (elvish, powershell too).
    ///
    /// Examples:
    ///   kairos completions bash > /etc/bash_completion.d/kairos
    ///   kairos completions zsh > "${fpath[1]}/_kairos"
    ///   kairos completions fish > ~/.config/fish/completions/kairos.fish
    #[command(verbatim_doc_comment)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per command to a folder.
    ///
    /// Examples:
    ///   kairos man | man -l -
    ///   kairos man --dir /usr/local/share/man/man1
    #[command(verbatim_doc_comment)]
    Man {
        /// Write kairos.1, kairos-jobs.1, kairos-jobs-list.1, ... into this folder
        /// instead of printing kairos.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run one task for the processpool executor, which starts this; reads its request
    /// from stdin.
    #[command(hide = true)]
    Worker,
}

/// How `kairos jobs` and `kairos runs` reach the API and print its answers.
#[derive(Args)]
struct Connection {
    /// The daemon's config file, read for [api] listen and token when KAIROS_URL or
    /// KAIROS_TOKEN is unset [default: ./config.toml, if it exists].
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the API's JSON as it is, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs: ID, NAME, TASK, TRIGGER, NEXT RUN, STATE.
    ///
    /// Without options, every job. Any filter or paging option asks the API for one
    /// page (50 jobs unless -n says otherwise); when there are more, the command that
    /// shows the next page is printed to stderr.
    ///
    /// Examples:
    ///   kairos jobs list --state failed
    ///   kairos jobs list --task orders.cancel -n 100
    ///   kairos jobs list --task orders.cancel -n 100 --cursor CURSOR
    #[command(verbatim_doc_comment)]
    List(Box<ListJobs>),
    /// Show everything about one job.
    Show {
        /// The job's id.
        id: String,
    },
    /// Add a job; the trigger is given in the words `kairos next` takes.
    ///
    /// Examples:
    ///   kairos jobs add --id order-cancel-42 --task orders.cancel --args '{"order_id":42}' date delay=30m
    ///   kairos jobs add --id report --task http --args '{"url":"http://localhost/r"}' cron hour=3 timezone=Europe/Berlin
    #[command(verbatim_doc_comment)]
    Add(Box<AddJob>),
    /// Pause a job: it keeps its place but does not run until resumed.
    Pause {
        /// The job's id.
        id: String,
    },
    /// Resume a paused job from its trigger's next fire time.
    Resume {
        /// The job's id.
        id: String,
    },
    /// Remove a job; its run history stays.
    Remove {
        /// The job's id.
        id: String,
    },
    /// Give a job a new trigger, in the words `kairos next` takes.
    ///
    /// Example: kairos jobs reschedule nightly cron hour=4 minute=15
    Reschedule {
        /// The job's id.
        id: String,
        /// cron, crontab, interval, date or calendarinterval.
        kind: String,
        /// field=value words with APScheduler's names; a crontab line comes first.
        words: Vec<String>,
    },
    /// Run a job once now, outside its schedule (its next run time stays).
    ///
    /// The job's max_instances and overlap apply: the run may be skipped, wait for a
    /// running run to end, or replace the oldest one.
    Run {
        /// The job's id.
        id: String,
        /// Start the run whatever max_instances and overlap say.
        #[arg(long)]
        force: bool,
    },
    /// Why a job's next run is when it is, and what became of its recent times.
    Explain {
        /// The job's id.
        id: String,
    },
    /// Run a recurring job's fire times in a range now, each once (at most 1,000).
    ///
    /// Example: kairos jobs backfill nightly --from 2026-12-01T00:00:00Z --to 2026-12-02T00:00:00Z
    Backfill {
        /// The job's id.
        id: String,
        /// The first fire time to run, RFC 3339 (included).
        #[arg(long, value_parser = parse_instant)]
        from: chrono::DateTime<chrono::Utc>,
        /// The last fire time to run, RFC 3339 (included).
        #[arg(long, value_parser = parse_instant)]
        to: chrono::DateTime<chrono::Utc>,
    },
    /// Make the daemon read its config files again, as SIGHUP does.
    Reload {
        /// Apply the files even if their content was superseded by a newer config
        /// generation in the job store: the explicit rollback.
        #[arg(long)]
        force: bool,
    },
}

/// `kairos jobs list`: the filters and paging of `GET /api/v1/jobs`.
#[derive(Args)]
struct ListJobs {
    /// Only the jobs in this state: scheduled, paused, failed (one-off jobs kept
    /// after their attempts failed; `kairos jobs run ID` runs one again) or broken
    /// (jobs whose trigger cannot be evaluated).
    #[arg(long, value_parser = ["scheduled", "paused", "failed", "broken"])]
    state: Option<String>,
    /// Only the jobs of this task.
    #[arg(long)]
    task: Option<String>,
    /// Only the jobs in this job store.
    #[arg(long)]
    jobstore: Option<String>,
    /// Only the jobs with this text in their id or name (ignoring case).
    #[arg(short = 'q', long = "search", value_name = "TEXT")]
    search: Option<String>,
    /// How many jobs in the page, 1 to 1000 (the API's default: 50).
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: Option<u16>,
    /// Skip this many matching jobs.
    #[arg(long, conflicts_with = "cursor")]
    offset: Option<usize>,
    /// Go on from the page that printed this cursor (its `next_cursor`).
    #[arg(long)]
    cursor: Option<String>,
}

/// `kairos jobs add`.
#[derive(Args)]
struct AddJob {
    /// The job's id [default: made up by the daemon].
    #[arg(long)]
    id: Option<String>,
    /// The task to run, by its registered name.
    #[arg(long)]
    task: String,
    /// The task's arguments, as JSON.
    #[arg(long, value_name = "JSON")]
    args: Option<String>,
    /// A name for people [default: the id].
    #[arg(long)]
    name: Option<String>,
    /// The executor that runs it [default: the daemon's].
    #[arg(long)]
    executor: Option<String>,
    /// How late a run may start and still run ("30s", "1h"); later runs are missed.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    misfire_grace_time: Option<Duration>,
    /// How many runs of the job may go at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_instances: Option<u32>,
    /// What a run due while max_instances runs go does: skip, queue (wait for one to
    /// end; one waits at most) or replace (stop the oldest) [default: the daemon's].
    #[arg(long, value_name = "POLICY", value_parser = parse_overlap)]
    overlap: Option<kairos::job::Overlap>,
    /// Try failed runs again: max_attempts=N[,initial_delay=1s][,multiplier=2][,max_delay=5m]
    /// [default: the task's, else the daemon's job defaults].
    #[arg(long, value_name = "FIELD=VALUE,...", value_parser = parse_retry)]
    retry: Option<kairos::job::RetryPolicy>,
    /// The dead-man's switch: raise an `overdue` alert when the job has not succeeded
    /// for this long ("25h") [default: the daemon's job defaults].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    expect_success_within: Option<Duration>,
    /// Run overdue runs as one [default: the daemon's].
    #[arg(long, overrides_with = "no_coalesce")]
    coalesce: bool,
    /// Run every overdue run.
    #[arg(long, overrides_with = "coalesce")]
    no_coalesce: bool,
    /// Add the job paused.
    #[arg(long)]
    paused: bool,
    /// Replace a job with the same id instead of failing.
    #[arg(long)]
    replace_existing: bool,
    /// Send this Idempotency-Key, so a retried add never makes two jobs.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// cron, crontab, interval, date or calendarinterval.
    kind: String,
    /// field=value words with APScheduler's names; a crontab line comes first.
    words: Vec<String>,
}

/// Exit status for input that is wrong (an invalid trigger, a bad --from).
const EXIT_INVALID_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => suggest_subcommand(error).exit(),
    };
    match cli.command {
        Command::Worker => run_worker(&TaskRegistry::with_builtins()),
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a failed write (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kairos", &mut script);
            let mut out = std::io::stdout().lock();
            match out.write_all(&script).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("kairos: writing the completion script: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Man { dir } => match man(dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("kairos: {error:#}");
                ExitCode::FAILURE
            }
        },
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
        Command::Check { config, json } => match check(&config, json) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("kairos: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Jobs {
            command,
            connection,
        } => api_command(&connection, ApiCommand::Jobs(command)),
        Command::Cluster { connection } => api_command(&connection, ApiCommand::Cluster),
        Command::Runs {
            job_id,
            limit,
            output,
            cursor,
            connection,
        } => api_command(
            &connection,
            ApiCommand::Runs {
                job_id,
                limit: limit.map(usize::from),
                output,
                cursor,
            },
        ),
    }
}

/// A mistyped subcommand (`kairos jbos`, `kairos jobs lsit`) gets clap's "a similar
/// subcommand exists" tip, found with the edit distance the rest of kairos uses for
/// its suggestions (a swap of two letters is one edit).
fn suggest_subcommand(mut error: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::InvalidSubcommand {
        return error;
    }
    let Some(ContextValue::String(written)) = error.get(ContextKind::InvalidSubcommand) else {
        return error;
    };
    let written = written.clone();
    // The command the mistyped word was given to: follow the words before it down
    // the subcommand tree.
    let mut command = Cli::command();
    for word in std::env::args().skip(1) {
        if word == written {
            break;
        }
        if let Some(sub) = command.find_subcommand(&word).cloned() {
            command = sub;
        }
    }
    let names: Vec<String> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .map(|sub| sub.get_name().to_owned())
        .collect();
    if let Some(close) = kairos::suggest::closest_of(&written, names.iter().map(String::as_str)) {
        error.insert(
            ContextKind::SuggestedSubcommand,
            ContextValue::Strings(vec![close.to_owned()]),
        );
    }
    error
}

/// `kairos man`: kairos.1 on stdout, or a page per command into `dir`.
fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let command = Cli::command();
    match dir {
        Some(dir) => clap_mangen::generate_to(command, dir)
            .with_context(|| format!("writing man pages into {}", dir.display())),
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .context("writing the man page")
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

/// One job of `kairos check --json`.
#[derive(serde::Serialize)]
struct CheckedJob {
    id: String,
    task: String,
    trigger: String,
    paused: bool,
    /// The next three fire times, in the trigger's zone.
    next_run_times: Vec<String>,
    /// Why the trigger cannot be built, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One problem of `kairos check --json`.
#[derive(serde::Serialize)]
struct CheckProblem {
    file: String,
    /// 1-based; absent when the problem has no position (a file that cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    /// The key path (`jobs[2].trigger.hour`); absent when not about one key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// unknown_key, missing_key, invalid_value, unknown_reference, duplicate,
    /// syntax or io.
    kind: &'static str,
    message: String,
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
fn check(path: &Path, json: bool) -> anyhow::Result<bool> {
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
fn history_line(retention: &kairos::scheduler::HistoryRetention, runs: Option<u64>) -> String {
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
fn humantime_short(duration: Duration) -> String {
    let seconds = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds >= size && seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// How long `kairos check` waits for the job store before saying it cannot tell.
const CHECK_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// `kairos check`: what the default job store holds against this config, as a start
/// or a reload would judge it, and how many run records it holds (`None` when it
/// cannot tell). A store that is not there yet (memory, a SQLite file not created) is
/// not created, and holds no history; one that cannot be reached is said so, and the
/// check still passes: it judges the files.
fn store_lines(config: &config::Config, hash: &str) -> (String, Option<u64>) {
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

enum NextError {
    /// The user's input is wrong: one line naming the field and the reason.
    Invalid(String),
    /// Writing the output failed.
    Output(anyhow::Error),
}

/// The most fire times `kairos next -n` lists: a preview, not an export, and each one
/// may take a combined trigger's whole evaluation budget.
const MAX_NEXT_COUNT: usize = 10_000;

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
    if count > MAX_NEXT_COUNT {
        return Err(NextError::Invalid(format!(
            "-n: {count} is more than {MAX_NEXT_COUNT} fire times"
        )));
    }
    let zone = trigger.timezone();
    let times: Vec<String> = trigger
        .try_fire_times(from, count, None)
        .map_err(|error| NextError::Invalid(format!("trigger: {error}")))?
        .into_iter()
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

/// What `kairos jobs`, `kairos runs` or `kairos cluster` was asked to do.
enum ApiCommand {
    Jobs(JobsCommand),
    Cluster,
    Runs {
        job_id: Option<String>,
        limit: Option<usize>,
        output: bool,
        cursor: Option<String>,
    },
}

/// An RFC 3339 instant (`2026-12-01T03:00:00+08:00`), in UTC.
fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.to_utc())
        .map_err(|error| format!("{text:?} is not an RFC 3339 date-time: {error}"))
}

/// `--overlap queue`: one of the policies, or an error naming them.
fn parse_overlap(text: &str) -> Result<kairos::job::Overlap, String> {
    text.parse()
}

/// `--retry max_attempts=5,initial_delay=1s`: the fields of a retry policy, checked.
fn parse_retry(text: &str) -> Result<kairos::job::RetryPolicy, String> {
    let mut fields = serde_json::Map::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not FIELD=VALUE"))?;
        let value = match key.trim() {
            "max_attempts" => value
                .trim()
                .parse::<u32>()
                .map(serde_json::Value::from)
                .map_err(|_| format!("max_attempts: {value:?} is not a whole number"))?,
            "multiplier" => value
                .trim()
                .parse::<f64>()
                .map(serde_json::Value::from)
                .map_err(|_| format!("multiplier: {value:?} is not a number"))?,
            _ => serde_json::Value::from(value.trim()),
        };
        fields.insert(key.trim().to_owned(), value);
    }
    let policy: kairos::job::RetryPolicy =
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(|error| {
            format!("{error} (fields: max_attempts, initial_delay, multiplier, max_delay)")
        })?;
    policy
        .check()
        .map_err(|(field, reason)| format!("{field}: {reason}"))?;
    Ok(policy)
}

/// A request with its input checked, ready to send.
enum ApiRequest {
    List(JobFilter),
    Show(String),
    Add {
        job: Box<NewJob>,
        idempotency_key: Option<String>,
    },
    Pause(String),
    Resume(String),
    Remove(String),
    Reschedule(String, TriggerSpec),
    Run(String, bool),
    Backfill {
        id: String,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    },
    Explain(String),
    Reload {
        force: bool,
    },
    Runs {
        job_id: Option<String>,
        limit: Option<usize>,
        output: bool,
        cursor: Option<String>,
    },
    Cluster,
}

/// Why an API command failed, which decides its exit status.
enum ApiFailure {
    /// The input is wrong; nothing was sent (exit 2).
    Input(String),
    /// The API refused or could not be reached, or the answer could not be written
    /// (exit 1).
    Failed(String),
}

impl From<ClientError> for ApiFailure {
    fn from(error: ClientError) -> ApiFailure {
        ApiFailure::Failed(error.to_string())
    }
}

fn api_command(connection: &Connection, command: ApiCommand) -> ExitCode {
    match run_api_command(connection, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ApiFailure::Input(message)) => {
            eprintln!("kairos: {message}");
            ExitCode::from(EXIT_INVALID_INPUT)
        }
        Err(ApiFailure::Failed(message)) => {
            eprintln!("kairos: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_api_command(connection: &Connection, command: ApiCommand) -> Result<(), ApiFailure> {
    // Input first: a mistake is reported as such even when the daemon is down.
    let request = prepare_request(command)?;
    let endpoint =
        Endpoint::discover(connection.config.as_deref()).map_err(|error| match error {
            EndpointError::ApiDisabled { .. } => ApiFailure::Failed(error.to_string()),
            EndpointError::Config { ref errors, .. } => {
                for problem in errors {
                    eprintln!("{problem}");
                }
                ApiFailure::Input(error.to_string())
            }
            _ => ApiFailure::Input(error.to_string()),
        })?;
    let client = ApiClient::new(endpoint)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| ApiFailure::Failed(format!("starting the async runtime: {error}")))?;
    runtime.block_on(send_request(&client, request, connection.json))
}

fn prepare_request(command: ApiCommand) -> Result<ApiRequest, ApiFailure> {
    let trigger = |kind: &str, words: &[String]| {
        trigger_from_words(kind, words)
            .map_err(|error| ApiFailure::Input(format!("trigger.{error}")))
    };
    Ok(match command {
        ApiCommand::Runs {
            job_id,
            limit,
            output,
            cursor,
        } => ApiRequest::Runs {
            job_id,
            limit,
            output,
            cursor,
        },
        ApiCommand::Cluster => ApiRequest::Cluster,
        ApiCommand::Jobs(JobsCommand::List(list)) => ApiRequest::List(JobFilter {
            state: list.state,
            task: list.task,
            jobstore: list.jobstore,
            text: list.search,
            limit: list.limit.map(usize::from),
            offset: list.offset,
            cursor: list.cursor,
        }),
        ApiCommand::Jobs(JobsCommand::Show { id }) => ApiRequest::Show(id),
        ApiCommand::Jobs(JobsCommand::Pause { id }) => ApiRequest::Pause(id),
        ApiCommand::Jobs(JobsCommand::Resume { id }) => ApiRequest::Resume(id),
        ApiCommand::Jobs(JobsCommand::Remove { id }) => ApiRequest::Remove(id),
        ApiCommand::Jobs(JobsCommand::Run { id, force }) => ApiRequest::Run(id, force),
        ApiCommand::Jobs(JobsCommand::Explain { id }) => ApiRequest::Explain(id),
        ApiCommand::Jobs(JobsCommand::Backfill { id, from, to }) => {
            ApiRequest::Backfill { id, from, to }
        }
        ApiCommand::Jobs(JobsCommand::Reload { force }) => ApiRequest::Reload { force },
        ApiCommand::Jobs(JobsCommand::Reschedule { id, kind, words }) => {
            ApiRequest::Reschedule(id, trigger(&kind, &words)?)
        }
        ApiCommand::Jobs(JobsCommand::Add(add)) => {
            let args = match &add.args {
                None => serde_json::Value::Null,
                Some(text) => serde_json::from_str(text)
                    .map_err(|error| ApiFailure::Input(format!("--args: not JSON: {error}")))?,
            };
            let coalesce = match (add.coalesce, add.no_coalesce) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let job = NewJob {
                trigger: trigger(&add.kind, &add.words)?,
                id: add.id,
                name: add.name,
                task: add.task,
                args,
                options: JobOptions {
                    executor: add.executor,
                    misfire_grace_time: add.misfire_grace_time,
                    coalesce,
                    max_instances: add.max_instances,
                    overlap: add.overlap,
                    retry: add.retry,
                    expect_success_within: add.expect_success_within,
                    ..JobOptions::default()
                },
                paused: add.paused,
                replace_existing: add.replace_existing,
            };
            ApiRequest::Add {
                job: Box::new(job),
                idempotency_key: add.idempotency_key,
            }
        }
    })
}

async fn send_request(
    client: &ApiClient,
    request: ApiRequest,
    json: bool,
) -> Result<(), ApiFailure> {
    let zone = Zone::system();
    let color = kairos::color::wanted(std::io::stdout().is_terminal());
    let one_job = |job: &JobView| {
        table::jobs(std::slice::from_ref(job), &zone)
            .with_color(color)
            .to_string()
    };
    match request {
        ApiRequest::List(filter) => {
            let page = client.list_jobs_filtered(&filter).await?;
            print_answer(&page.body, json, || {
                table::jobs(&page.value.jobs, &zone)
                    .with_color(color)
                    .to_string()
            })?;
            if !json {
                if let Some(cursor) = &page.value.next_cursor {
                    let total = page
                        .value
                        .total
                        .map_or_else(String::new, |total| format!(" of {total}"));
                    eprintln!(
                        "{} job(s){total} shown; the next page: kairos jobs list ... --cursor {cursor}",
                        page.value.jobs.len()
                    );
                }
            }
            Ok(())
        }
        ApiRequest::Show(id) => {
            let job = client.get_job(&id).await?;
            print_answer(&job.body, json, || table::job_details(&job.value, &zone))
        }
        ApiRequest::Add {
            job,
            idempotency_key,
        } => {
            let added = client.add_job(&job, idempotency_key.as_deref()).await?;
            print_answer(&added.body, json, || one_job(&added.value))
        }
        ApiRequest::Pause(id) => {
            let job = client.pause_job(&id).await?;
            print_answer(&job.body, json, || one_job(&job.value))
        }
        ApiRequest::Resume(id) => {
            let resumed = client.resume_job(&id).await?;
            print_answer(&resumed.body, json, || match &resumed.value {
                Resumed::Job(job) => one_job(job),
                Resumed::Removed { id, message, .. } => format!("job {id:?}: {message}\n"),
            })
        }
        ApiRequest::Remove(id) => {
            client.remove_job(&id).await?;
            // The API answers 204 with no body: --json prints nothing.
            print_answer("", json, || format!("removed job {id:?}\n"))
        }
        ApiRequest::Reschedule(id, trigger) => {
            let job = client.reschedule_job(&id, &trigger).await?;
            print_answer(&job.body, json, || one_job(&job.value))
        }
        ApiRequest::Run(id, force) => {
            let started = client.run_job_with(&id, force).await?;
            print_answer(&started.body, json, || table::run_started(&started.value))
        }
        ApiRequest::Explain(id) => {
            let explained = client.explain_job(&id).await?;
            print_answer(&explained.body, json, || {
                let mut text = format!("{}\n", explained.value.summary);
                for time in &explained.value.recent {
                    text.push_str(&format!(
                        "  {}  {:<10}  {}\n",
                        time.scheduled_time, time.outcome, time.detail
                    ));
                }
                text
            })
        }
        ApiRequest::Backfill { id, from, to } => {
            let started = client.backfill_job(&id, from, to).await?;
            print_answer(&started.body, json, || {
                format!(
                    "job {id:?}: {} fire time(s) from {from} to {to} handed over, one after another; `kairos runs {id}` shows how they end\n",
                    started.value.runs
                )
            })
        }
        ApiRequest::Reload { force } => {
            let report = client.reload(force).await?;
            print_answer(&report.body, json, || table::reload_summary(&report.value))?;
            if report.value.applied == Some(false) {
                return Err(ApiFailure::Failed(
                    "the config files were not applied: a newer config generation superseded \
                     them (kairos jobs reload --force rolls back to them)"
                        .to_owned(),
                ));
            }
            match report.value.failed.len() {
                0 => Ok(()),
                failed => Err(ApiFailure::Failed(format!(
                    "{failed} job(s) from the config files could not be applied"
                ))),
            }
        }
        ApiRequest::Cluster => {
            let nodes = client.cluster().await?;
            print_answer(&nodes.body, json, || {
                table::cluster(&nodes.value, chrono::Utc::now(), &zone)
                    .with_color(color)
                    .to_string()
            })
        }
        ApiRequest::Runs {
            job_id,
            limit,
            output,
            cursor,
        } => {
            let page = client
                .runs_page(job_id.as_deref(), limit, cursor.as_deref())
                .await?;
            let runs = &page.value.runs;
            print_answer(&page.body, json, || {
                let mut text = table::runs(runs, &zone).with_color(color).to_string();
                if output {
                    text.push_str(&table::run_outputs(runs, &zone));
                }
                text
            })?;
            if let (false, Some(cursor)) = (json, &page.value.next_cursor) {
                eprintln!("older runs: kairos runs ... --cursor {cursor}");
            }
            Ok(())
        }
    }
}

/// Prints the API's `body` as it is for `--json`, else what `human` makes of it.
fn print_answer(body: &str, json: bool, human: impl FnOnce() -> String) -> Result<(), ApiFailure> {
    let text = match json {
        true if body.is_empty() => return Ok(()),
        true => format!("{}\n", body.trim_end()),
        false => human(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| ApiFailure::Failed(format!("writing the answer: {error}")))
}
