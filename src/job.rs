//! Jobs: a task (by name) plus a trigger plus options.
//!
//! A [`JobSpec`] is what a caller asks for (config, API, library); the scheduler checks
//! it against the task registry and the trigger rules and turns it into a [`Job`], the
//! record a store keeps. Jobs hold a task *name* and JSON args, never code, so any
//! process that knows the name can run a stored job after a restart.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::trigger::spec::humane_duration;
use crate::trigger::{Trigger, TriggerSpec};

pub mod options;

pub use self::options::{JobChanges, JobDefaults, JobOptions, OptionError, OPTION_KEYS};

/// What a caller gives to add a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's id; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A human name; defaults to the task name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The registered task to run.
    pub task: String,
    /// The task's arguments.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub args: serde_json::Value,
    /// When to run.
    pub trigger: TriggerSpec,
    /// The options; unset ones come from the scheduler's job defaults.
    #[serde(flatten)]
    pub options: JobOptions,
    /// Start paused (no next run time until resumed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The first run time, instead of the trigger's first fire time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<DateTime<Utc>>,
    /// Overwrite a job with the same id instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_existing: bool,
    /// Defined in the daemon's config files, which own it (see [`Job::from_config`]).
    /// Never read from JSON: an API caller cannot claim config ownership.
    #[serde(skip)]
    pub from_config: bool,
    /// For a config-owned job: the version of the config that defines it, kept with
    /// the job ([`Job::config_version`]). Never read from JSON.
    #[serde(skip)]
    pub config_version: Option<ConfigVersion>,
}

/// Which config wrote a config-owned job: the generation the store gave that config
/// (see `store::ConfigGeneration` and docs/config-reload.md) and its content hash. A
/// node syncing an older generation leaves a job written by a newer one alone.
///
/// Ordered by `generation`: a counter kept in the store, never a file time or a clock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// The store's generation of the config; 0 for jobs written before generations
    /// were kept (they count as the oldest).
    #[serde(default)]
    pub generation: u64,
    /// A hash of the jobs the config defines (16 hex digits): configs that define the
    /// same jobs have the same hash, whenever and wherever their files were written.
    pub hash: String,
}

impl JobSpec {
    /// The spec as a config-owned job keeps it ([`Job::config_spec`]): what defines the
    /// job, without how it was added (`replace_existing`, `from_config`) or an explicit
    /// first run time, which only matters when the job is added.
    pub fn canonical(&self) -> JobSpec {
        JobSpec {
            next_run_time: None,
            replace_existing: false,
            from_config: false,
            config_version: None,
            ..self.clone()
        }
    }

    /// A job running `task` on `trigger`, with every option at its default.
    pub fn new(task: impl Into<String>, trigger: TriggerSpec) -> JobSpec {
        JobSpec {
            id: None,
            name: None,
            task: task.into(),
            args: serde_json::Value::Null,
            trigger,
            options: JobOptions::default(),
            paused: false,
            next_run_time: None,
            replace_existing: false,
            from_config: false,
            config_version: None,
        }
    }

    /// The same spec with an id.
    pub fn with_id(mut self, id: impl Into<String>) -> JobSpec {
        self.id = Some(id.into());
        self
    }

    /// The same spec with a name.
    pub fn with_name(mut self, name: impl Into<String>) -> JobSpec {
        self.name = Some(name.into());
        self
    }

    /// The same spec with args.
    pub fn with_args(mut self, args: serde_json::Value) -> JobSpec {
        self.args = args;
        self
    }
}
/// What a run due while `max_instances` runs of its job are executing does
/// (`overlap = "skip" | "queue" | "replace"`; docs/semantics.md, "max_instances", and
/// docs/lifecycle.md, "When the limit is reached").
///
/// ```text
/// every 1 s, runs of 2.5 s, max_instances = 1:
///   skip:     0 ─────────── 2.5   1 s, 2 s skipped                  3 ─── …
///   queue:    0 ─────────── 2.5 ─(1 s, late)─────── 5.0 …  2 s skipped (one waits)
///   replace:  0 ──── 1 ✂ (replaced by the run of 1 s)  1 ──── 2 ✂  2 ──── …
/// ```
// Read through `FromStr`, so any bad value (a number too) is an invalid value naming
// the three names, not a syntax error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Overlap {
    /// The run is recorded as skipped (the default).
    #[default]
    Skip,
    /// The run waits and starts as soon as a running run of the job ends; at most one
    /// run of a job waits, in the whole cluster (a further one is skipped).
    Queue,
    /// The oldest running run of the job is stopped, then the new run starts.
    Replace,
}

impl Overlap {
    /// The names a config or a request may give.
    pub const NAMES: [&'static str; 3] = ["skip", "queue", "replace"];

    /// The policy's name as config and JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Replace => "replace",
        }
    }

    /// Whether it is the default (`skip`), left out of a job's JSON.
    pub fn is_skip(&self) -> bool {
        *self == Overlap::Skip
    }
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Overlap {
    type Error = String;

    fn try_from(name: String) -> Result<Overlap, String> {
        name.parse()
    }
}

impl std::str::FromStr for Overlap {
    type Err = String;

    fn from_str(name: &str) -> Result<Overlap, String> {
        match name {
            "skip" => Ok(Overlap::Skip),
            "queue" => Ok(Overlap::Queue),
            "replace" => Ok(Overlap::Replace),
            other => Err(format!(
                "must be one of \"skip\", \"queue\", \"replace\", not {other:?}"
            )),
        }
    }
}

/// How the failed runs of a job are tried again: `retry = { max_attempts = 5,
/// initial_delay = "1s", multiplier = 2.0, max_delay = "5m" }`.
///
/// Only runs that end in `error` or `timeout` are retried. Attempt `n + 1` of a
/// scheduled time waits a random time (full jitter) of up to
/// `min(max_delay, initial_delay × multiplierⁿ⁻¹)` after attempt `n` ends; the wait is
/// the job's next run time in the store, so it survives a restart and a failover. A
/// one-off job whose attempts are all used up stays in its store as `failed` (see
/// `docs/lifecycle.md`).
///
/// ```text
/// max_attempts = 3, initial_delay = 1s, multiplier = 2:
///   attempt 1 ✗ ─ wait ≤ 1s ─ attempt 2 ✗ ─ wait ≤ 2s ─ attempt 3 ✗ → failed
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Runs of one scheduled time in all, the first included (1: no retry).
    #[serde(default = "RetryPolicy::default_max_attempts")]
    pub max_attempts: u32,
    /// The longest wait before the second attempt (default 1 s).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humane_duration"
    )]
    pub initial_delay: Option<Duration>,
    /// How much the longest wait grows per attempt (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// The longest wait between two attempts (default 5 min).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humane_duration"
    )]
    pub max_delay: Option<Duration>,
}

// Sound: `check` refuses a multiplier that is not a finite number (NaN included).
impl Eq for RetryPolicy {}

impl RetryPolicy {
    fn default_max_attempts() -> u32 {
        1
    }

    /// The most attempts a policy may ask for: a job failing for good stops within
    /// a bounded number of runs.
    pub const MAX_ATTEMPTS: u32 = 1000;

    /// `max_attempts` attempts with the default waits.
    pub fn attempts(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_delay: None,
            multiplier: None,
            max_delay: None,
        }
    }

    /// Why the policy cannot be used, naming the field (`retry.max_attempts`, …).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_attempts == 0 || self.max_attempts > Self::MAX_ATTEMPTS {
            return Err((
                "retry.max_attempts",
                format!(
                    "must be between 1 and {} (1: no retry), not {}",
                    Self::MAX_ATTEMPTS,
                    self.max_attempts
                ),
            ));
        }
        if let Some(multiplier) = self.multiplier {
            if !multiplier.is_finite() || !(1.0..=100.0).contains(&multiplier) {
                return Err((
                    "retry.multiplier",
                    format!("must be a number from 1 to 100, not {multiplier}"),
                ));
            }
        }
        if self.initial_delay() > self.max_delay() {
            return Err((
                "retry.initial_delay",
                format!(
                    "{} is longer than max_delay ({})",
                    humantime::format_duration(self.initial_delay()),
                    humantime::format_duration(self.max_delay())
                ),
            ));
        }
        Ok(())
    }

    /// A policy from its fields as `kairos jobs add --retry` takes them
    /// (`max_attempts=5,initial_delay=1s`), checked.
    pub fn from_fields(text: &str) -> Result<RetryPolicy, String> {
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
        let policy: RetryPolicy = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|error| {
                format!("{error} (fields: max_attempts, initial_delay, multiplier, max_delay)")
            })?;
        policy
            .check()
            .map_err(|(field, reason)| format!("{field}: {reason}"))?;
        Ok(policy)
    }

    /// The longest wait before the second attempt.
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay.unwrap_or(Duration::from_secs(1))
    }

    /// How much the longest wait grows per attempt.
    pub fn multiplier(&self) -> f64 {
        self.multiplier.unwrap_or(2.0)
    }

    /// The longest wait between two attempts.
    pub fn max_delay(&self) -> Duration {
        self.max_delay.unwrap_or(Duration::from_secs(300))
    }

    /// The longest wait after attempt `attempt` (1-based) failed.
    pub fn delay_cap(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.initial_delay().as_secs_f64() * self.multiplier().powi(exponent);
        let cap = self.max_delay().as_secs_f64();
        Duration::try_from_secs_f64(grown.min(cap)).unwrap_or(self.max_delay())
    }

    /// The wait after attempt `attempt` failed: full jitter, uniform in
    /// `[0, delay_cap(attempt)]`, so failing jobs of a whole fleet do not retry in step.
    pub fn delay(&self, attempt: u32, random: &mut fastrand::Rng) -> Duration {
        self.delay_cap(attempt).mul_f64(random.f64())
    }
}

/// A job whose run failed and will be tried again: what its next run is
/// ([`Job::retrying`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAttempt {
    /// The scheduled time being retried.
    pub scheduled_time: DateTime<Utc>,
    /// The number of the next attempt (2 for the first retry).
    pub attempt: u32,
    /// The job's next regular run time, taken up again once the attempts end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<DateTime<Utc>>,
    /// For a time that failed in the middle of a catch-up (several missed times run one
    /// after another): the first of the catch-up's times after it, which run after its
    /// attempts, up to `resume_at` (docs/lifecycle.md, "Failed runs").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_from: Option<DateTime<Utc>>,
}

/// A one-off job whose attempts were all used up ([`Job::failed`]): kept, listed as
/// `failed`, run again on request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// The scheduled time that failed.
    pub scheduled_time: DateTime<Utc>,
    /// How many attempts were made.
    pub attempts: u32,
    /// When the last one ended.
    pub at: DateTime<Utc>,
    /// What went wrong the last time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A job as a store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique within the scheduler.
    pub id: String,
    /// A human name.
    pub name: String,
    /// The registered task to run.
    pub task: String,
    /// The task's arguments.
    #[serde(default)]
    pub args: serde_json::Value,
    /// When to run.
    pub trigger: Trigger,
    /// The named executor that runs the job.
    pub executor: String,
    /// How late a run may start; `None` for no limit.
    #[serde(default, with = "humane_duration")]
    pub misfire_grace_time: Option<Duration>,
    /// Run only the latest of several overdue run times.
    pub coalesce: bool,
    /// How many runs may run at once.
    pub max_instances: u32,
    /// What a run due while `max_instances` runs execute does; absent in jobs
    /// written before kairos had it, which skip.
    #[serde(default, skip_serializing_if = "Overlap::is_skip")]
    pub overlap: Overlap,
    /// Random delay of each run, at most this much.
    #[serde(default, with = "humane_duration")]
    pub jitter: Option<Duration>,
    /// Whether the job is paused.
    #[serde(default)]
    pub paused: bool,
    /// The next scheduled run; `None` while paused.
    pub next_run_time: Option<DateTime<Utc>>,
    /// Bumped by the store on every write, so a scheduler releasing a job it acquired
    /// can tell whether someone changed the job in between.
    #[serde(default)]
    pub revision: u64,
    /// For a job defined in the daemon's config files, the spec it was made from (with
    /// the job defaults folded in). A reload adds, changes and removes such jobs to match
    /// the files and never touches the others (added through the API or the library);
    /// comparing specs tells, across restarts too, whether a job or its trigger changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_spec: Option<Box<JobSpec>>,
    /// For a config-owned job: the version of the config that last wrote it. Absent
    /// on jobs written before kairos kept it, which count as the oldest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<ConfigVersion>,
    /// How failed runs are retried, and where the job stands with it.
    #[serde(flatten)]
    pub retry: RetryState,
    /// The dead-man's switch, when the job has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_success: Option<SuccessWatch>,
}

/// The dead-man's switch of a job (`expect_success_within`): when the job has not
/// succeeded for `within`, whatever the cause (the daemon was stopped, the job is
/// paused or failing, the store is down, the trigger never fires), an `overdue` alert
/// is raised, once per stretch without success (see `docs/alerts.md`).
///
/// ```text
/// within = 25h:  ✓ 03:00 ─────────── (daemon down) ─────────── 04:00+1d: overdue ─ ✓ ends it
///                 |<──────────────── 25 h ───────────────────>|
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessWatch {
    /// How long the job may go without a success.
    #[serde(with = "humane_duration::required")]
    pub within: Duration,
    /// When the watch began: the job was added, or given this `within`. Counted from
    /// when the job never succeeded since.
    pub since: DateTime<Utc>,
}

impl SuccessWatch {
    /// The shortest `within`: the switch watches over hours or days and is checked
    /// about once a minute; it is not a timeout.
    pub const MIN_WITHIN: Duration = Duration::from_secs(60);

    /// The longest `within`: 100 years (of 365.25 days), so that the deadline it sets
    /// stays within the years RFC 3339 can write (docs/alerts.md).
    pub const MAX_WITHIN: Duration = Duration::from_secs(100 * 31_557_600);

    /// Why `within` cannot be a switch's window, if it cannot: shorter than
    /// [`MIN_WITHIN`](Self::MIN_WITHIN) or longer than [`MAX_WITHIN`](Self::MAX_WITHIN).
    /// The config and the API say the same.
    pub fn refuse_within(within: Duration) -> Option<String> {
        if within < Self::MIN_WITHIN {
            Some(format!(
                "must be at least {} (the dead-man's switch is checked about once a minute), not {}",
                humantime::format_duration(Self::MIN_WITHIN),
                humantime::format_duration(within)
            ))
        } else if within > Self::MAX_WITHIN {
            Some(format!(
                "must be at most {} (a deadline later than that is not a date), not {}",
                humantime::format_duration(Self::MAX_WITHIN),
                humantime::format_duration(within)
            ))
        } else {
            None
        }
    }

    /// When the job is overdue if its last success (if any) was at `last_success`.
    pub fn deadline(&self, last_success: Option<DateTime<Utc>>) -> DateTime<Utc> {
        let start = last_success.map_or(self.since, |success| success.max(self.since));
        let within = chrono::TimeDelta::from_std(self.within).unwrap_or(chrono::TimeDelta::MAX);
        start
            .checked_add_signed(within)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// A job's retry policy and where it stands: a retry pending, or failed for good.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryState {
    /// How failed runs are retried; `None`: they are not.
    #[serde(default, rename = "retry", skip_serializing_if = "Option::is_none")]
    pub policy: Option<RetryPolicy>,
    /// A failed run waiting for its next attempt (the job's next run time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingAttempt>,
    /// A one-off job whose attempts were used up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<JobFailure>,
    /// Why the job was set aside as `broken`: its trigger's next fire time could not be
    /// computed within its evaluation budget. A new trigger ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// How many times the job was paused. A run held since before a pause finds, at
    /// its end, that a pause met it (through whichever node, resumed since or not): a
    /// pause cancels the attempts left of a failing run it meets, and a one-off job's
    /// time that ran and failed is kept failed (docs/lifecycle.md, "Failed runs").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pauses: u64,
}

/// For serde: a count left out while zero.
fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl Job {
    /// Whether the daemon's config files own this job.
    pub fn is_from_config(&self) -> bool {
        self.config_spec.is_some()
    }

    /// The options as they apply to the job (what the API shows of it); a job does
    /// not know its store.
    pub fn options(&self) -> JobOptions {
        JobOptions {
            executor: Some(self.executor.clone()),
            jobstore: None,
            misfire_grace_time: self.misfire_grace_time,
            coalesce: Some(self.coalesce),
            max_instances: Some(self.max_instances),
            overlap: Some(self.overlap),
            jitter: self.jitter,
            retry: self.retry.policy.clone(),
            expect_success_within: self.expect_success.as_ref().map(|watch| watch.within),
        }
    }

    /// The jitter that applies: the job's own, else the trigger's.
    pub fn effective_jitter(&self) -> Option<Duration> {
        self.jitter.or(self.trigger.jitter())
    }

    /// How many runs of one scheduled time the job gets (1: no retry).
    pub fn max_attempts(&self) -> u32 {
        self.retry
            .policy
            .as_ref()
            .map_or(1, |policy| policy.max_attempts)
    }

    /// The failed run waiting for its next attempt, if any.
    pub fn retrying(&self) -> Option<&PendingAttempt> {
        self.retry.pending.as_ref()
    }

    /// Where the job stands: `scheduled`, `paused`, `failed` (a one-off job whose
    /// attempts were used up; it has no next run time and is not paused) or `broken`
    /// (its trigger could not be evaluated within its budget).
    pub fn state(&self) -> &'static str {
        if self.paused {
            "paused"
        } else if self.retry.broken.is_some() {
            "broken"
        } else if self.retry.failed.is_some() {
            "failed"
        } else {
            "scheduled"
        }
    }
}

/// A new random job id: 32 hex digits (128 random bits).
pub fn generate_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = fastrand::u128(..);
    // Most significant digit first; written as bytes, then checked once (every id of a
    // run goes through here, thousands a second).
    let mut digits = [0u8; 32];
    for (index, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((bits >> (4 * (31 - index))) & 0xf) as usize];
    }
    std::str::from_utf8(&digits)
        .map(str::to_owned)
        .unwrap_or_default()
}
