//! The arguments of `kairos jobs` (where the daemon is, each subcommand and its
//! flags) and the parsers clap calls for the values it cannot read itself.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// How `kairos jobs` and `kairos runs` reach the API and print its answers.
#[derive(Args)]
pub(super) struct Connection {
    /// The daemon's config file, read for [api] listen and token when KAIROS_URL or
    /// KAIROS_TOKEN is unset [default: ./config.toml, if it exists].
    #[arg(short, long, global = true, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// Print the API's JSON as it is, for scripts.
    #[arg(long, global = true)]
    pub(super) json: bool,
}

#[derive(Subcommand)]
pub(super) enum JobsCommand {
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
pub(super) struct ListJobs {
    /// Only the jobs in this state: scheduled, paused, failed (one-off jobs kept
    /// after their attempts failed; `kairos jobs run ID` runs one again) or broken
    /// (jobs whose trigger cannot be evaluated).
    #[arg(long, value_parser = ["scheduled", "paused", "failed", "broken"])]
    pub(super) state: Option<String>,
    /// Only the jobs of this task.
    #[arg(long)]
    pub(super) task: Option<String>,
    /// Only the jobs in this job store.
    #[arg(long)]
    pub(super) jobstore: Option<String>,
    /// Only the jobs with this text in their id or name (ignoring case).
    #[arg(short = 'q', long = "search", value_name = "TEXT")]
    pub(super) search: Option<String>,
    /// How many jobs in the page, 1 to 1000 (the API's default: 50).
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(super) limit: Option<u16>,
    /// Skip this many matching jobs.
    #[arg(long, conflicts_with = "cursor")]
    pub(super) offset: Option<usize>,
    /// Go on from the page that printed this cursor (its `next_cursor`).
    #[arg(long)]
    pub(super) cursor: Option<String>,
}

/// `kairos jobs add`.
#[derive(Args)]
pub(super) struct AddJob {
    /// The job's id [default: made up by the daemon].
    #[arg(long)]
    pub(super) id: Option<String>,
    /// The task to run, by its registered name.
    #[arg(long)]
    pub(super) task: String,
    /// The task's arguments, as JSON.
    #[arg(long, value_name = "JSON")]
    pub(super) args: Option<String>,
    /// A name for people [default: the id].
    #[arg(long)]
    pub(super) name: Option<String>,
    /// The job options' flags (`--executor`, `--max-instances`, …).
    #[command(flatten)]
    pub(super) options: OptionFlags,
    /// Run overdue runs as one [default: the daemon's].
    #[arg(long, overrides_with = "no_coalesce")]
    pub(super) coalesce: bool,
    /// Run every overdue run.
    #[arg(long, overrides_with = "coalesce")]
    pub(super) no_coalesce: bool,
    /// Add the job paused.
    #[arg(long)]
    pub(super) paused: bool,
    /// Replace a job with the same id instead of failing.
    #[arg(long)]
    pub(super) replace_existing: bool,
    /// Send this Idempotency-Key, so a retried add never makes two jobs.
    #[arg(long, value_name = "KEY")]
    pub(super) idempotency_key: Option<String>,
    /// cron, crontab, interval, date or calendarinterval.
    pub(super) kind: String,
    /// field=value words with APScheduler's names; a crontab line comes first.
    pub(super) words: Vec<String>,
}

/// Makes [`OptionFlags`] from the list of job options (src/job/options.rs): a flag for
/// each option whose entry has `cli` attributes, in the list's order.
macro_rules! define_option_flags {
    (@flags [$($fields:tt)*] [$($names:ident)*]) => {
        // No doc comment: clap would take it for the about of `kairos jobs add`.
        #[derive(Args)]
        pub(super) struct OptionFlags {
            $($fields)*
        }

        impl OptionFlags {
            /// The options the flags give; the others are left to the daemon.
            pub(super) fn into_options(self) -> kairos::job::JobOptions {
                kairos::job::JobOptions {
                    $($names: self.$names,)*
                    ..kairos::job::JobOptions::default()
                }
            }
        }
    };
    (@flags [$($fields:tt)*] [$($names:ident)*]
        $(#[$attr:meta])* $name:ident: $ty:ty as $kind:ty {
            change: $change:ident $(($clear:ident))?, default: [$($default:tt)*], cli: [],
            $($more:tt)*
        }
        $($rest:tt)*
    ) => {
        define_option_flags!(@flags [$($fields)*] [$($names)*] $($rest)*);
    };
    (@flags [$($fields:tt)*] [$($names:ident)*]
        $(#[$attr:meta])* $name:ident: $ty:ty as $kind:ty {
            change: $change:ident $(($clear:ident))?, default: [$($default:tt)*], cli: [$($cli:tt)+],
            $($more:tt)*
        }
        $($rest:tt)*
    ) => {
        define_option_flags!(@flags
            [$($fields)* $($cli)+ pub(super) $name: Option<$ty>,]
            [$($names)* $name]
            $($rest)*
        );
    };
    ($($entries:tt)*) => {
        define_option_flags!(@flags [] [] $($entries)*);
    };
}

kairos::job_options!(define_option_flags);

/// An RFC 3339 instant (`2026-12-01T03:00:00+08:00`), in UTC.
pub(super) fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.to_utc())
        .map_err(|error| format!("{text:?} is not an RFC 3339 date-time: {error}"))
}
