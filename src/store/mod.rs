//! Job stores: where jobs and their run history live.
//!
//! The contract is shaped for several schedulers sharing one store (a cluster): due
//! jobs are *acquired* under a lease by one scheduler, handled, and *released* with
//! their new next run time, and running instances are counted in the store, so
//! `max_instances` holds across schedulers.
//!
//! # Ground rules
//! - Every write bumps the job's `revision`. A write that changes the job's
//!   *schedule* — its trigger, its next run time, or whether it is paused
//!   ([`changes_schedule`]) — also bumps its *schedule version*, which taking a job
//!   and its holder's release do not. An acquisition remembers the schedule version it
//!   took the job at, and the release is judged by it: while the schedule version is
//!   the one taken, the released next run time applies, on top of a change that left
//!   the schedule alone (new args, a new name: the run times just handled must not run
//!   again); once it moved, the change's schedule wins and the release only ends the
//!   lease, whatever next run time the change gave, even the very time the job was
//!   taken at (a reschedule to a one-off job at that time). Comparing next run times
//!   cannot tell that reschedule from a change that left the schedule alone
//!   (`docs/lifecycle.md`, "Held until the run ends"). A removed job stays removed.
//! - Fencing: a release is written only if its `owner` still holds the job, i.e. it
//!   acquired the job last and nobody ended that since (a release, a recovery, a reap).
//!   A lease that ran out but that no other scheduler took over still counts as held:
//!   the run happened, and writing its next run time is what keeps it from running
//!   twice. A node that was frozen (a long GC-like pause, `SIGSTOP`, a network cut)
//!   while another took its jobs over therefore cannot write back a stale next run
//!   time: [`DueJobs::release_jobs`] returns those releases as fenced off, unwritten.
//!   Run records are still written (history says what ran, twice if it ran twice),
//!   and instance slots are only ever freed by the owner that holds them.
//! - Acquired jobs are invisible to other acquisitions and to [`DueJobs::next_run_time`]
//!   until released or until their lease expires (the owner died).
//! - Stores several schedulers share may push wake-ups ([`Cluster::wake_ups`]): every
//!   add, replace and update is announced with its earliest next run time, so another
//!   node's loop fires a new job on time instead of at its next poll (see [`wake`]).
//! - Errors are mapped to a few kinds ([`StoreErrorKind`]); the scheduler retries
//!   `Unavailable` with backoff and never loses a job over one.
//!
//! # The contract by concern
//! [`JobStore`] is the one bound callers hold; it is made of seven traits, each a
//! concern a store answers for, and every store implements each under its methods'
//! own names. A method called on a `dyn JobStore` needs no import; one called on a
//! concrete store needs its trait in scope (`use kairos::store::prelude::*`):
//!
//! | trait | what | methods |
//! | --- | --- | --- |
//! | [`Jobs`] | the jobs one at a time | `add_job(s)`, `replace_job`, `update_job(_if)`, `remove_job`, `remove_all_jobs`, `get_job` |
//! | [`JobListing`] | the jobs many at a time | `get_jobs`, `get_config_jobs`, `list_jobs` (a filtered page), `count_jobs`, `count_job_states` |
//! | [`DueJobs`] | due jobs under leases | `next_run_time`, `job_schedules`, `acquire_due_jobs`, `release_jobs`, `renew_holdings`, `move_next_run_times` |
//! | [`InstanceSlots`] | running-instance slots (`max_instances`) | `claim_instance(s)`, `release_instance`, `finish_runs`, `recover_owner`, `take_orphaned_runs`, `running_times`, `wait_for_instance`, `stop_waiting` |
//! | [`RunHistory`] | run records | `record_run`, `runs`, `runs_from`, `prune_runs`, `count_runs`, `last_success` |
//! | [`Nodes`] | the cluster's membership | `register_node`, `heartbeat(_node)`, `deregister_node`, `list_nodes`, `reap_dead_nodes` |
//! | [`Cluster`] | what nodes agree on through the store | `is_shared`, `fire_ahead`, `wake_ups`, config generations, zone rules, `claim_alert` |
//!
//! [`DueJobs`] builds on [`Jobs`] and [`InstanceSlots`] on [`RunHistory`]: their
//! defaults read jobs and write records.

pub mod memory;
pub mod query;
pub mod redis;
mod retention;
pub mod sql;
pub mod url;
pub mod wake;

pub use self::query::{JobPage, JobQuery, SetAside};
pub use self::retention::{HistoryRetention, DEFAULT_FAILURES_PER_JOB, DEFAULT_SUCCESSES_PER_JOB};
pub use self::url::{open, OpenError, OpenOptions};
pub use self::wake::WakeUp;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::history::RunRecord;
use crate::job::Job;

/// How early a scheduler takes due jobs unless told otherwise
/// ([`SchedulerBuilder::fire_ahead`](crate::scheduler::SchedulerBuilder::fire_ahead)),
/// and what [`Cluster::fire_ahead`] returns by default: long enough to hand over ten
/// thousand jobs due in the same second before it starts (BENCHMARKS.md, recurring),
/// short enough that a job added a moment before its time still meets it.
pub const DEFAULT_FIRE_AHEAD: Duration = Duration::from_millis(250);

/// What kind of failure a [`StoreError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// A job with that id exists already.
    Conflict,
    /// No job with that id.
    NotFound,
    /// The store cannot be reached or refused the operation; worth retrying.
    Unavailable,
    /// Stored data could not be read back.
    Corrupt,
    /// The store is configured wrong (its URL, its table or key prefix): retrying
    /// changes nothing. Reported when a store is opened, so the daemon stops with it
    /// rather than wait for an outage to end.
    Config,
}

/// The underlying error of a [`StoreError`] (the driver's, a decoder's), shared so
/// that the error stays `Clone`. Two causes are equal when they read the same.
#[derive(Clone, Debug)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Wraps `error`.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(error))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// A failed store operation.
///
/// The message of each kind reads as before causes were kept (tests and operators
/// match it); the driver's error, where there is one, is its `source()`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A job with that id exists already.
    #[error("a job with id {0:?} already exists")]
    Conflict(String),
    /// No job with that id.
    #[error("no job with id {0:?}")]
    NotFound(String),
    /// The store cannot be reached.
    #[error("the job store is unavailable: {message}")]
    Unavailable {
        /// What failed, for the log.
        message: String,
        /// The driver's error, if one caused it.
        #[source]
        source: Option<Cause>,
    },
    /// Stored data could not be read back.
    #[error("stored data is unreadable: {message}")]
    Corrupt {
        /// What could not be read.
        message: String,
        /// The decoder's error, if one caused it.
        #[source]
        source: Option<Cause>,
    },
    /// The store is configured wrong: a URL no store takes, a bad table prefix.
    #[error("the job store is misconfigured: {message}")]
    Config {
        /// What is wrong.
        message: String,
        /// The parser's error, if one caused it.
        #[source]
        source: Option<Cause>,
    },
}

impl StoreError {
    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Conflict(_) => StoreErrorKind::Conflict,
            StoreError::NotFound(_) => StoreErrorKind::NotFound,
            StoreError::Unavailable { .. } => StoreErrorKind::Unavailable,
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
            StoreError::Config { .. } => StoreErrorKind::Config,
        }
    }

    /// The store cannot be reached: `message`, no cause.
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// Stored data could not be read back: `message`, no cause.
    pub fn corrupt(message: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            message: message.into(),
            source: None,
        }
    }

    /// The store is configured wrong: `message`, no cause.
    pub fn config(message: impl Into<String>) -> StoreError {
        StoreError::Config {
            message: message.into(),
            source: None,
        }
    }

    /// The same error, caused by `cause` (kept as its `source()`); a conflict or a
    /// missing job has no cause and stays as it is.
    pub fn caused_by(
        mut self,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        match &mut self {
            StoreError::Unavailable { source, .. }
            | StoreError::Corrupt { source, .. }
            | StoreError::Config { source, .. } => *source = Some(Cause::new(cause)),
            StoreError::Conflict(_) | StoreError::NotFound(_) => {}
        }
        self
    }
}

/// A next run time to move ([`DueJobs::move_next_run_times`]): the zone rules check
/// at start moves many at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextRunMove {
    /// The job.
    pub job_id: String,
    /// The revision the job was read at: a job changed since is left as it is.
    pub revision: u64,
    /// Its new next run time.
    pub next_run_time: DateTime<Utc>,
}

/// What a scheduler writes back for a job it acquired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The job.
    pub job_id: String,
    /// The revision that was acquired.
    pub revision: u64,
    /// The new next run time; `None` when the trigger is finished and the job goes.
    pub next_run_time: Option<DateTime<Utc>>,
    /// The next run time the job had when it was acquired. A store judges a release
    /// by the schedule version its acquisition took (see the ground rules); only a
    /// lease taken before the store kept schedule versions (an upgraded SQL or Redis
    /// store) falls back to comparing this with the stored next run time.
    pub acquired_next_run_time: Option<DateTime<Utc>>,
}

/// Whether writing `after` over a job stored with `trigger`, `next_run_time` and
/// `paused` changes its schedule, and so bumps its schedule version (see the ground
/// rules): a new trigger (even one whose first time is the stored next run time), a
/// new next run time, a pause or a resume. New args, a new name or new options leave
/// the schedule alone: a run taken before them still moves the job on when it ends.
pub(crate) fn changes_schedule(
    trigger: &crate::trigger::Trigger,
    next_run_time: Option<DateTime<Utc>>,
    paused: bool,
    after: &Job,
) -> bool {
    *trigger != after.trigger || next_run_time != after.next_run_time || paused != after.paused
}

/// The longest key [`Cluster::claim_alert`] takes, in bytes (a SQL primary key column).
pub const MAX_CLAIM_KEY: usize = 255;

/// How many of a job's newest run records the default [`RunHistory::last_success`] reads.
pub const LAST_SUCCESS_SCAN: usize = 10_000;

/// Where one job stands, as [`DueJobs::job_schedules`] answers for a job that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobSchedule {
    /// Its next run time; `None` while it is paused.
    pub next_run_time: Option<DateTime<Utc>>,
    /// Its revision: any write since a read shows here, even one that left the next
    /// run time as it was (a new trigger whose first time is the old one's).
    pub revision: u64,
}

/// How many jobs a store holds in each state ([`JobListing::count_job_states`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Neither paused nor set aside: jobs with a next run time.
    pub pending: u64,
    /// Paused jobs.
    pub paused: u64,
    /// Jobs set aside: neither paused nor with a next run time, which is a one-off job
    /// kept as `failed` or a job set aside as `broken` (as `JobQuery::failed` lists).
    pub failed: u64,
}

impl JobCounts {
    /// Counts one job.
    pub fn add(&mut self, paused: bool, scheduled: bool) {
        let count = match (paused, scheduled) {
            (true, _) => &mut self.paused,
            (false, true) => &mut self.pending,
            (false, false) => &mut self.failed,
        };
        *count = count.saturating_add(1);
    }

    /// The sum of two stores' counts.
    pub fn plus(self, other: JobCounts) -> JobCounts {
        JobCounts {
            pending: self.pending.saturating_add(other.pending),
            paused: self.paused.saturating_add(other.paused),
            failed: self.failed.saturating_add(other.failed),
        }
    }
}

/// One job's request for a running-instance slot ([`InstanceSlots::claim_instances`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceClaim {
    /// The job.
    pub job_id: String,
    /// Its `max_instances`.
    pub max_instances: u32,
    /// The scheduled times the run in this slot stands for, when nothing else in the
    /// store remembers them: a run of a job that allows several at once, whose next run
    /// time was written when it became due. A slot whose owner dies with them in it
    /// becomes an orphaned run ([`InstanceSlots::take_orphaned_runs`]) instead of being
    /// freed, so the run happens again elsewhere (`docs/lifecycle.md`, "Held until the
    /// run ends"). Empty for a run whose job stays leased until it ends.
    pub run_times: Vec<DateTime<Utc>>,
    /// Whether the job queues its runs (`overlap = "queue"`): only then does the
    /// store look for a run of it waiting on another node
    /// ([`InstanceSlots::wait_for_instance`]), whose slot such a claim leaves free. A
    /// claim of any other job costs the store nothing more.
    pub queues: bool,
}

/// A run whose node died while it went, and which nothing else would run again
/// ([`InstanceSlots::take_orphaned_runs`]): its instance slot now belongs to the node that
/// took it.
#[derive(Clone, Debug, PartialEq)]
pub struct OrphanedRun {
    /// The job, as the store has it now.
    pub job: Job,
    /// The scheduled times the run stood for ([`InstanceClaim::run_times`]).
    pub run_times: Vec<DateTime<Utc>>,
}

/// A run that ended, to write back ([`InstanceSlots::finish_runs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedRun {
    /// Its record for the history.
    pub record: RunRecord,
    /// Whether it held an instance slot to free: the last of the runs handed over
    /// together does (they share one slot).
    pub frees_instance: bool,
}

/// A scheduler process sharing the store: one row of the cluster's membership
/// ([`Nodes::register_node`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// The node id: the scheduler's id, the owner of its leases and instance slots.
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The kairos version it runs.
    pub version: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// Its last heartbeat, by its own clock.
    pub last_heartbeat: DateTime<Utc>,
    /// What it reported with its last heartbeat ([`Nodes::heartbeat_node`]);
    /// `None` until its first beat, or from a store or a kairos that keeps none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<NodeStats>,
}

/// How busy a node is and how far behind: what it reports with each heartbeat, so
/// `kairos cluster` shows every node's load from any node.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NodeStats {
    /// Runs executing on the node.
    pub running: u64,
    /// Runs handed to its executors and waiting for a worker (or, in the fire-ahead
    /// window, for their time): a backlog here means the node is behind.
    pub queued: u64,
    /// How many runs its executors execute at once, in all.
    pub capacity: u64,
    /// The ids of jobs with runs in flight there, sorted, at most
    /// [`NodeStats::MAX_JOBS`] of them.
    pub running_jobs: Vec<String>,
    /// Runs that ended on the node since its previous heartbeat, which the lateness
    /// figures describe.
    pub ended: u64,
    /// How late those runs started after their scheduled time (ms): the median.
    pub lateness_p50_ms: u64,
    /// The 99th percentile of the same.
    pub lateness_p99_ms: u64,
    /// The latest of the same.
    pub lateness_max_ms: u64,
}

impl NodeStats {
    /// The most job ids [`NodeStats::running_jobs`] lists: a node row stays small.
    pub const MAX_JOBS: usize = 20;
}

/// One config applied to a store: the order between the configs of the nodes that
/// share it, which comes from neither file times nor clocks (docs/config-reload.md).
///
/// Generations count up from 1 without gaps; recording one is a compare-and-set
/// ([`Cluster::record_config_generation`]), so two nodes never both get the same.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigGeneration {
    /// Its number: 1 for the first config applied to the store, one more for each after.
    pub generation: u64,
    /// The content hash of the config's jobs (16 hex digits).
    pub hash: String,
    /// The node that applied it.
    pub node_id: String,
    /// Whether it took a forced reload: the content had been superseded before.
    #[serde(default)]
    pub forced: bool,
}

/// Which run records [`RunHistory::prune_runs`] keeps (docs/semantics.md, "Run history"):
/// a record goes when any limit says so.
///
/// The per-job counts keep each job's newest successes and, apart from them, its newest
/// other outcomes (errors, timeouts, missed and skipped runs), as Kubernetes'
/// `successfulJobsHistoryLimit` and `failedJobsHistoryLimit` do: a job that runs every
/// second holds a bounded history whatever the age limit, and its failures are not
/// pushed out by its successes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunLimits {
    /// Records that finished longer ago than this go.
    pub keep: Option<Duration>,
    /// At most this many records in the store (the newest).
    pub max_rows: Option<u64>,
    /// At most this many `success` records per job (the newest).
    pub successes_per_job: Option<u64>,
    /// At most this many records of other outcomes per job (the newest).
    pub failures_per_job: Option<u64>,
}

impl RunLimits {
    /// Whether any limit is set (else pruning has nothing to do).
    pub fn is_bounded(&self) -> bool {
        self.keep.is_some()
            || self.max_rows.is_some()
            || self.successes_per_job.is_some()
            || self.failures_per_job.is_some()
    }
}

/// Which of a job's slots, given as (held by the owner freeing one, the last of its run
/// times), the run that ended at `last_run_time` frees: the owner's slot that carries
/// that time ([`InstanceClaim::run_times`]: the last run of a submission frees it), else
/// the owner's newest without run times, else its newest. A slot that carries run times
/// must go with its own run, or a crash would run again a time that ran and not the
/// one that was going.
pub(crate) fn slot_to_free(
    slots: impl DoubleEndedIterator<Item = (bool, Option<DateTime<Utc>>)> + ExactSizeIterator + Clone,
    last_run_time: Option<DateTime<Utc>>,
) -> Option<usize> {
    let mine = slots.enumerate().filter(|(_, (held, _))| *held);
    last_run_time
        .and_then(|time| mine.clone().find(|(_, (_, last))| *last == Some(time)))
        .or_else(|| mine.clone().rev().find(|(_, (_, last))| last.is_none()))
        .or_else(|| mine.clone().next_back())
        .map(|(index, _)| index)
}

/// [`InstanceClaim::run_times`] as a store keeps them: microseconds since the epoch,
/// comma-separated; `None` for none.
pub(crate) fn encode_run_times(run_times: &[DateTime<Utc>]) -> Option<String> {
    if run_times.is_empty() {
        return None;
    }
    let micros: Vec<String> = run_times
        .iter()
        .map(|time| time.timestamp_micros().to_string())
        .collect();
    Some(micros.join(","))
}

/// The run times [`encode_run_times`] wrote; a part that is not a time is skipped
/// (an orphan is run again at the times that can be read, rather than not at all).
pub(crate) fn decode_run_times(text: &str) -> Vec<DateTime<Utc>> {
    text.split(',')
        .filter_map(|part| part.trim().parse::<i64>().ok())
        .filter_map(DateTime::from_timestamp_micros)
        .collect()
}

/// Whether a slot's run times are still its job's to run: the job, stored with `next`,
/// has not moved past the earliest of them. A job that allows several runs at once
/// writes its next run time back when its run is due, and the run claims its slot at
/// that moment too; a node that dies between the two leaves both the slot and the job
/// at the run's time. Orphaned then, the slot would be run again by one node and the
/// job by another (or the same): the time twice. So a dead owner's slot whose times the
/// job still shows is freed, not orphaned, and the job runs them, once
/// (`docs/lifecycle.md`, "Held until the run ends"). Every store applies it where a
/// slot outlives its owner: recovering or reaping the owner, and taking its job over
/// from its expired lease ([`DueJobs::acquire_due_jobs`]).
pub(crate) fn times_still_due(run_times: &[DateTime<Utc>], next: Option<DateTime<Utc>>) -> bool {
    match (run_times.iter().min(), next) {
        (Some(earliest), Some(next)) => next <= *earliest,
        _ => false,
    }
}

/// The jobs themselves, one at a time: adding, changing, removing and reading them
/// ([`JobListing`] reads them many at a time).
#[async_trait]
pub trait Jobs: Send + Sync + 'static {
    /// Adds a new job; `Conflict` if the id is taken. Returns the job as stored.
    async fn add_job(&self, job: Job) -> Result<Job, StoreError>;

    /// Adds several new jobs. Stores that can add a batch in one round trip (a
    /// transaction, a pipeline) do so; the default adds them one by one. Either way a
    /// job whose id is taken fails with `Conflict`, and the jobs before it stay added.
    async fn add_jobs(&self, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        let mut added = Vec::with_capacity(jobs.len());
        for job in jobs {
            added.push(self.add_job(job).await?);
        }
        Ok(added)
    }

    /// Adds a job or overwrites the one with the same id (`replace_existing`).
    async fn replace_job(&self, job: Job) -> Result<Job, StoreError>;

    /// Overwrites an existing job; `NotFound` if there is none.
    async fn update_job(&self, job: Job) -> Result<Job, StoreError>;

    /// [`Jobs::update_job`], only if the stored job's revision is still
    /// `revision`; otherwise nothing is written and the answer is `Ok(Err(current))`,
    /// the revision it has now. The API's `If-Match` rests on this. The default reads,
    /// compares and writes in two calls; the built-in stores compare and write in one
    /// step (under the memory store's lock, in one SQL transaction with the row
    /// locked, in one Redis script), so of two changes from one revision one wins.
    async fn update_job_if(&self, job: Job, revision: u64) -> Result<Result<Job, u64>, StoreError> {
        match self.get_job(&job.id).await? {
            None => Err(StoreError::NotFound(job.id)),
            Some(current) if current.revision != revision => Ok(Err(current.revision)),
            Some(_) => self.update_job(job).await.map(Ok),
        }
    }

    /// Removes a job; `NotFound` if there is none.
    async fn remove_job(&self, id: &str) -> Result<(), StoreError>;

    /// Removes every job.
    async fn remove_all_jobs(&self) -> Result<(), StoreError>;

    /// The job with this id.
    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError>;
}

/// The jobs many at a time: all of them, the config's, a filtered page, and counts
/// that need not read them.
#[async_trait]
pub trait JobListing: Send + Sync + 'static {
    /// All jobs, by next run time, paused ones last.
    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError>;

    /// The jobs the daemon's config files own ([`Job::is_from_config`]), in any order:
    /// what a reload compares with the files. Stores that can find them without
    /// reading every job do; the default filters [`get_jobs`](JobListing::get_jobs).
    async fn get_config_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut jobs = self.get_jobs().await?;
        jobs.retain(Job::is_from_config);
        Ok(jobs)
    }

    /// How many jobs the store holds (for status lines and health checks, which must
    /// not read a million jobs to count them). The default counts
    /// [`get_jobs`](JobListing::get_jobs).
    async fn count_jobs(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.get_jobs().await?.len()).unwrap_or(u64::MAX))
    }

    /// How many jobs the store holds in each state, for `GET /metrics` (every scrape
    /// asks): counted by the store, never by reading the jobs, where it can
    /// (docs/metrics.md says what each store's count costs). The default counts
    /// [`get_jobs`](JobListing::get_jobs).
    async fn count_job_states(&self) -> Result<JobCounts, StoreError> {
        let mut counts = JobCounts::default();
        for job in self.get_jobs().await? {
            counts.add(job.paused, job.next_run_time.is_some());
        }
        Ok(counts)
    }

    /// One page of the jobs that match `query`, in list order, with how many match in
    /// all. Stores that can page without reading every job do; the default filters
    /// [`get_jobs`](JobListing::get_jobs).
    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage, StoreError> {
        Ok(query::page_of(self.get_jobs().await?, query))
    }
}

/// Due jobs under leases: when the next is due, taking due jobs for one scheduler, writing
/// them back, and keeping their leases while their runs go (see the ground rules above).
#[async_trait]
pub trait DueJobs: Jobs {
    /// The earliest next run time of a job that is neither paused nor acquired.
    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Where each of the jobs `ids` stands, in the order asked: `None` for a job that
    /// is gone, else its next run time and revision. A run handed over early
    /// asks this when its time comes, so that a pause, reschedule or removal made
    /// through any node stops it (see `docs/lifecycle.md`). Stores that can answer a
    /// batch in one round trip do; the default reads the jobs one by one.
    async fn job_schedules(&self, ids: &[String]) -> Result<Vec<Option<JobSchedule>>, StoreError> {
        let mut schedules = Vec::with_capacity(ids.len());
        for id in ids {
            schedules.push(self.get_job(id).await?.map(|job| JobSchedule {
                next_run_time: job.next_run_time,
                revision: job.revision,
            }));
        }
        Ok(schedules)
    }

    /// Takes up to `limit` jobs due at `now` for `owner`, earliest first, leased for
    /// `lease`. A job taken over from another owner's expired lease frees that
    /// owner's slots of it whose run times the job still shows ([`times_still_due`]):
    /// this owner runs those times now.
    async fn acquire_due_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError>;

    /// Writes back acquired jobs in one go (see the ground rules on revisions and
    /// fencing). Returns the ids of the releases it *fenced off*: `owner` no longer
    /// held the job's lease (another scheduler acquired the job after the lease ran
    /// out, or the lease was ended by [`recover_owner`](InstanceSlots::recover_owner) or
    /// [`reap_dead_nodes`](Nodes::reap_dead_nodes)), so nothing of them was written.
    /// The caller logs them; retrying them would be refused again. A job removed
    /// meanwhile is neither written nor reported.
    async fn release_jobs(
        &self,
        owner: &str,
        releases: &[Release],
    ) -> Result<Vec<String>, StoreError>;

    /// Extends what `owner` holds for runs still going, so a live node's long run is
    /// never taken over: its leases on `job_ids` (to `now + lease`, unless another
    /// scheduler took the job over since) and its instance slots of those jobs (by the
    /// store's instance time-to-live). The scheduler calls it a few times per lease
    /// while runs are in flight (see `docs/lifecycle.md`). The default does nothing:
    /// for a store whose leases and slots never run out under a live owner.
    async fn renew_holdings(
        &self,
        _owner: &str,
        _job_ids: &[String],
        _now: DateTime<Utc>,
        _lease: Duration,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Gives each job of `moves` still at the revision it was read at its new next
    /// run time (and a new revision), as [`Jobs::update_job_if`] would; returns the
    /// ids moved. A job changed or removed meanwhile is left out: its change computed
    /// its time anew. The default goes job by job; the SQL stores write a thousand per
    /// transaction, since each transaction there is a durable commit.
    async fn move_next_run_times(
        &self,
        moves: Vec<NextRunMove>,
    ) -> Result<Vec<String>, StoreError> {
        let mut moved = Vec::new();
        for next in moves {
            let Some(mut job) = self.get_job(&next.job_id).await? else {
                continue;
            };
            if job.revision != next.revision {
                continue;
            }
            job.next_run_time = Some(next.next_run_time);
            match self.update_job_if(job, next.revision).await {
                Ok(Ok(_)) => moved.push(next.job_id),
                Ok(Err(_)) | Err(StoreError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(moved)
    }
}

/// Running-instance slots, the count `max_instances` holds across schedulers: claimed as a
/// run starts, freed as it ends, and recovered or orphaned when their owner dies.
#[async_trait]
pub trait InstanceSlots: RunHistory {
    /// Counts one more running instance of a job if fewer than `max_instances` run;
    /// `false` when the limit is reached. In a shared store the count holds across
    /// schedulers, and a slot claimed by a scheduler that died (it never released it)
    /// expires after the store's instance time-to-live.
    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
    ) -> Result<bool, StoreError>;

    /// Counts one running instance less.
    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError>;

    /// [`claim_instance`](InstanceSlots::claim_instance) for a batch, in order (a job that
    /// appears twice takes two slots); one `bool` per claim. Stores that can claim a
    /// batch in one round trip or one commit do so: at thousands of runs a second, a
    /// commit per run is what makes runs late. The default claims one by one.
    async fn claim_instances(
        &self,
        owner: &str,
        claims: &[InstanceClaim],
    ) -> Result<Vec<bool>, StoreError> {
        let mut claimed = Vec::with_capacity(claims.len());
        for claim in claims {
            claimed.push(
                self.claim_instance(&claim.job_id, owner, claim.max_instances)
                    .await?,
            );
        }
        Ok(claimed)
    }

    /// Frees the instance slots of finished runs and records them, as one write where
    /// the store can (then a failure applies none of it, and the caller may retry the
    /// whole batch). The default goes one by one.
    async fn finish_runs(&self, owner: &str, runs: Vec<FinishedRun>) -> Result<(), StoreError> {
        for run in runs {
            if run.frees_instance {
                self.release_instance(&run.record.job_id, owner).await?;
            }
            self.record_run(run.record).await?;
        }
        Ok(())
    }

    /// Frees what an earlier process with this `owner` id left behind when it died:
    /// its leases (the jobs become acquirable at once instead of when the leases expire)
    /// and its instance slots (which would otherwise block `max_instances` until they
    /// expire). A slot that carries run times ([`InstanceClaim::run_times`]) is not
    /// freed but left as an orphaned run, still counted by `max_instances`, for
    /// [`take_orphaned_runs`](InstanceSlots::take_orphaned_runs), unless its job still
    /// shows those times ([`times_still_due`]): the job runs them again. Its waiters
    /// ([`wait_for_instance`](InstanceSlots::wait_for_instance)) end too, uncounted.
    /// Called by a scheduler as
    /// it starts, when none of its runs can be going; returns how many leases and slots
    /// were freed or orphaned. A store that cannot do it cheaply leaves them to expire (the
    /// default).
    async fn recover_owner(&self, _owner: &str) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Takes every orphaned run — a slot with run times whose owner was recovered
    /// ([`recover_owner`](InstanceSlots::recover_owner)) or reaped
    /// ([`reap_dead_nodes`](Nodes::reap_dead_nodes)) — for `owner`, which must run
    /// them: each slot now belongs to `owner` (expiring as a claimed one does), and is
    /// freed when the run ends, as any. Two schedulers taking at once take each orphan
    /// once. An orphan of a job since removed is dropped, not returned. The default has
    /// none (a store that never orphans).
    async fn take_orphaned_runs(&self, _owner: &str) -> Result<Vec<OrphanedRun>, StoreError> {
        Ok(Vec::new())
    }

    /// The run times ([`InstanceClaim::run_times`]) that the job's claimed slots stand
    /// for, over every owner, in no particular order: what the runs of the job executing
    /// now, on any node, were scheduled for. A slot that carries none (a run whose job
    /// stays leased) adds nothing; an expired slot and an orphaned run (its node died,
    /// nobody executes it now) are left out. A waiting `overlap = "replace"` run asks it
    /// after a refused claim: a newer run of its job already going supersedes it
    /// (`docs/lifecycle.md`, "In a cluster").
    async fn running_times(&self, job_id: &str) -> Result<Vec<DateTime<Utc>>, StoreError>;

    /// Makes `owner` the one waiter of `job_id`: the node where a run of the job waits
    /// for an instance slot (`overlap = "queue"`, docs/lifecycle.md "In a cluster"),
    /// claiming under `max_instances`, until `ttl` from now on the store's clock; or, if
    /// `owner` is the waiter already, moves its end to then. `false` when another
    /// owner's waiter stands: a job has at most one, cluster-wide. While it stands, the
    /// waiter keeps one of the job's slots for its run: a claim of another owner that
    /// [queues](InstanceClaim::queues), under a limit no higher than the waiter's, is
    /// granted only if the live slots and the waiter together stay under it. A claim
    /// under a higher limit (one raised since the run began to wait) does not count it:
    /// the slots the raise added are ones the waiter cannot take. The waiter's own
    /// claims never count it.
    /// A waiter ends with [`stop_waiting`](InstanceSlots::stop_waiting), at `ttl`
    /// (its node died, or stopped refreshing it), or when its owner is recovered
    /// ([`recover_owner`](InstanceSlots::recover_owner)) or reaped
    /// ([`reap_dead_nodes`](Nodes::reap_dead_nodes)). The default keeps no waiter and
    /// answers `true`: every node may then have a run waiting, as before waiters.
    async fn wait_for_instance(
        &self,
        _job_id: &str,
        _owner: &str,
        _max_instances: u32,
        _ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Ends `owner`'s waiter of `job_id` ([`wait_for_instance`](InstanceSlots::wait_for_instance)):
    /// its run got its slot or stopped waiting. Another owner's waiter, or none, is
    /// left as it is. The default does nothing, as its `wait_for_instance` keeps none.
    async fn stop_waiting(&self, _job_id: &str, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The run history: a record per run that ended, read newest first and pruned to its
/// limits.
#[async_trait]
pub trait RunHistory: Send + Sync + 'static {
    /// Appends a run record.
    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError>;

    /// Run records, newest first, of one job or of all.
    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError>;

    /// [`RunHistory::runs`] after skipping the newest `offset`: the API's paging through
    /// the whole history. The default reads `offset + limit` records; stores that can
    /// skip without reading do so.
    async fn runs_from(
        &self,
        job_id: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let runs = self.runs(job_id, offset.saturating_add(limit)).await?;
        Ok(runs.into_iter().skip(offset).collect())
    }

    /// Deletes the run records `limits` no longer keeps, at most `batch` of them per
    /// call (so a long backlog never holds the store for long); returns how many were
    /// deleted. The caller calls again until nothing is deleted. Stores that bound their
    /// history themselves may do nothing.
    async fn prune_runs(&self, _limits: &RunLimits, _batch: usize) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// How many run records the store holds: the history's size, shown by `kairos
    /// check` and the web page's overview. The default reads the whole history; every
    /// store of this crate counts without reading.
    async fn count_runs(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.runs(None, usize::MAX).await?.len()).unwrap_or(u64::MAX))
    }

    /// When job `job_id` last finished a run with outcome `success`, according to the
    /// run history; `None` if the history holds none. The dead-man's switch
    /// (`expect_success_within`) asks it for each job it watches. The default reads
    /// the job's newest [`LAST_SUCCESS_SCAN`] records; the SQL stores ask the database.
    async fn last_success(&self, job_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .runs(Some(job_id), LAST_SUCCESS_SCAN)
            .await?
            .into_iter()
            .filter(|run| run.outcome == crate::history::RunOutcome::Success)
            .map(|run| run.finished_at)
            .max())
    }
}

/// The cluster's membership: the schedulers sharing the store, their heartbeats, and
/// reaping the ones that died.
#[async_trait]
pub trait Nodes: Send + Sync + 'static {
    /// Enters a node in the store's membership, replacing an entry with the same id
    /// (a restarted node). Stores that cannot be shared keep no membership (the
    /// default does nothing).
    ///
    /// Membership is how a cluster frees what a dead node held without waiting for
    /// leases and instance slots to expire:
    ///
    /// ```text
    /// node a  ──register──beat──beat──beat──✝ (SIGKILL)
    /// node b  ──register──beat──beat──beat──beat──beat──reap(a)──…
    ///                                  |<── node_timeout ──>|
    /// ```
    /// Only a node's own heartbeat proves it alive; a node's clock judges others, so
    /// `node_timeout` must exceed the clock skew between hosts plus a few heartbeats.
    async fn register_node(&self, _node: NodeInfo) -> Result<(), StoreError> {
        Ok(())
    }

    /// Renews a node's heartbeat; `false` if the node is not registered (a survivor
    /// reaped it as dead while it was paused or cut off: it should register again, and
    /// its leases are gone, so its pending releases will be fenced off).
    async fn heartbeat(&self, _node_id: &str, _now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Renews `node`'s heartbeat (`node.last_heartbeat`) and replaces the stats it
    /// reports ([`NodeInfo::stats`]) in one write; `false` as for
    /// [`heartbeat`](Nodes::heartbeat). The default renews the heartbeat and keeps
    /// no stats.
    async fn heartbeat_node(&self, node: &NodeInfo) -> Result<bool, StoreError> {
        self.heartbeat(&node.id, node.last_heartbeat).await
    }

    /// Takes a node out of the membership (a clean shutdown).
    async fn deregister_node(&self, _node_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// The registered nodes, by id.
    async fn list_nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        Ok(Vec::new())
    }

    /// Reaps the nodes whose last heartbeat is older than `now - timeout`: removes
    /// them from the membership and frees their leases and instance slots (orphaning
    /// those with run times their jobs no longer show) and ends their waiters, as [`recover_owner`](InstanceSlots::recover_owner) does for a
    /// restarted node, so their jobs run again at once (at least once across a crash). Any survivor may call it;
    /// concurrent reapers reap each node once. Returns the ids reaped.
    async fn reap_dead_nodes(
        &self,
        _now: DateTime<Utc>,
        _timeout: Duration,
    ) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

/// What the schedulers sharing a store agree on through it: whether it can be shared,
/// its wake-ups and fire-ahead window, the order of applied configs, the zone rules of
/// the stored next run times, and alerts sent once per cluster.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Whether several schedulers may share this store (PostgreSQL, MySQL, Redis). A
    /// config is applied on a store that cannot be shared whatever its generations say:
    /// there is no other node whose newer config it could undo. `false` by default.
    fn is_shared(&self) -> bool {
        false
    }

    /// Wake-ups pushed by the store whenever a job is added or changed through any
    /// handle on it, this one included ([`wake`]): a receiver fed by a listening
    /// connection of its own, which reconnects with backoff and sends
    /// [`WakeUp::Resync`] each time it is (re)established. Every call starts a new
    /// listener, which ends when its receiver is dropped. Must be called within a
    /// tokio runtime.
    ///
    /// `None` (the default) when the store cannot push: MySQL/MariaDB, whose other
    /// nodes see changes within their poll interval, and the single-node stores.
    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<WakeUp>> {
        None
    }

    /// The fire-ahead window a scheduler on this store uses unless told otherwise
    /// ([`SchedulerBuilder::fire_ahead`](crate::scheduler::SchedulerBuilder::fire_ahead)):
    /// long enough that the store's writes for a due job (take, claim, write back) are
    /// done before it is due. [`DEFAULT_FIRE_AHEAD`] by default.
    fn fire_ahead(&self) -> std::time::Duration {
        DEFAULT_FIRE_AHEAD
    }

    /// The configs applied to the store, newest first, at most `limit` of them
    /// ([`ConfigGeneration`]). The default keeps none.
    async fn config_generations(&self, _limit: usize) -> Result<Vec<ConfigGeneration>, StoreError> {
        Ok(Vec::new())
    }

    /// Records `next` as the newest applied config if `next.generation` is one more than
    /// the newest recorded (1 when none is): the compare-and-set that orders the
    /// configs of a cluster. `false`, and nothing written, when another node recorded
    /// that generation first. The default keeps nothing and says `true`.
    async fn record_config_generation(&self, _next: ConfigGeneration) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// The zone rules the stored next run times were computed with, as the scheduler
    /// recorded them ([`crate::trigger::tzdata::TzDataInfo::fingerprint`]); `None`
    /// when none was recorded. A start that finds other rules in use recomputes the
    /// zoned jobs' next run times (docs/semantics.md, "Zone rules"). The default keeps
    /// nothing, so every start recomputes them; the SQL stores keep it.
    async fn zone_rules(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Records `fingerprint` as the zone rules the stored next run times follow now.
    /// The default keeps nothing.
    async fn record_zone_rules(&self, _fingerprint: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Claims the once-only `key` for `ttl` from `now`: `true` for the one caller, among
    /// every node sharing the store, that claimed it first; `false` for all others
    /// while the claim lasts. A claim older than its `ttl` is gone, and the key can be
    /// claimed again. This is how an alert is sent once per cluster
    /// (`docs/alerts.md`): the key names the alert (event, job, scheduled time,
    /// attempt), at most [`MAX_CLAIM_KEY`] bytes.
    ///
    /// The default claims every key: a store that keeps no claims (a wrapper, a test
    /// double) deduplicates nothing. The memory, SQL and Redis stores keep them.
    async fn claim_alert(
        &self,
        _key: &str,
        _now: DateTime<Utc>,
        _ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// A place that keeps jobs and run history: every part of the store contract, the one
/// bound schedulers, the API and the wrappers hold (`Arc<dyn JobStore>`). Implemented
/// for every type that implements all of its parts; no trait-object upcasting is
/// needed, as the parts' methods are called on the `dyn JobStore` itself.
pub trait JobStore:
    Jobs + JobListing + DueJobs + InstanceSlots + RunHistory + Nodes + Cluster
{
}

impl<T: Jobs + JobListing + DueJobs + InstanceSlots + RunHistory + Nodes + Cluster> JobStore for T {}

/// [`JobStore`] and its parts, for a caller that calls their methods on a concrete store
/// (`MemoryStore`, a wrapper): `use kairos::store::prelude::*;` (a name of the caller's
/// own shadows the glob).
pub mod prelude {
    pub use super::{
        Cluster, DueJobs, InstanceSlots, JobListing, JobStore, Jobs, Nodes, RunHistory,
    };
}
