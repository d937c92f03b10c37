//! The `kairos` command line: `run`, `check`, `next`, `jobs`, `runs`, `cluster`, and
//! `completions` and `man`, which are written from the same clap definitions.
//!
//! `jobs` and `runs` are clients of a running daemon's HTTP API (`kairos::client`);
//! they only read their arguments and say which call to make and how to print its
//! answer.
//!
//! This file holds the commands and `main`; `args.rs` the arguments of `kairos jobs`,
//! `api_command.rs` the API calls, `check.rs` and `next.rs` those two commands.

mod api_command;
mod args;
mod check;
mod next;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use self::api_command::{api_command, ApiCommand};
use self::args::{Connection, JobsCommand};
use self::check::check;
use self::next::{next, NextError};
use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use kairos::config;
use kairos::daemon::{self, logging};
use kairos::executor::process::run_worker;
use kairos::task::TaskRegistry;

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

/// The daemon's allocator (`kairos::allocator`, docs/architecture.md, "The allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for input that is wrong (an invalid trigger, a bad --from).
const EXIT_INVALID_INPUT: u8 = 2;

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    kairos::allocator::tune();
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
