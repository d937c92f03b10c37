//! The scheduler: the [`Scheduler`] handle users hold, and the main loop it drives.
//!
//! The handle is cheap to clone and usable from any task; it talks to stores directly
//! and nudges the loop when a change makes a job due earlier than the loop planned
//! to wake. The loop itself (`main_loop.rs`) is private: one timer, asleep until the
//! earliest next run time, no per-job timers and no polling while idle.
//!
//! # Ground rules
//! - No lock is held across store I/O, executor submission or event delivery.
//! - A store error in the loop is logged and retried with backoff; it never stops the
//!   loop. A store error in a handle call is returned to the caller.
//! - Events go to a broadcast channel; a listener that falls behind loses the oldest
//!   events (and is told so by tokio), the scheduler never waits for listeners.

mod alerts;
mod backoff;
mod deferred;
mod event;
mod explain;
mod generation;
mod hand_over;
mod jobs;
mod main_loop;
mod membership;
pub mod plan;
mod record;
mod recovery;
mod renewal;
mod retention;
mod start;
mod zones;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;

pub use self::event::Event;
pub use self::explain::{Explanation, ScheduledTime};
pub use self::generation::{describe_claim, ConfigState, Standing};
pub use self::jobs::{ListedJobs, SuccessWatchState, MAX_BACKFILL};
pub use self::membership::{host_name, ClusterNode, Membership};
pub use self::record::MAX_UNWRITTEN_RUNS;
pub use self::start::RETRIED_FIRST;
pub use self::zones::{ZoneRulesAtStart, ZoneRulesRecord, ZoneRulesReload};
pub use crate::store::{HistoryRetention, DEFAULT_FAILURES_PER_JOB, DEFAULT_SUCCESSES_PER_JOB};
// Defined with the store, whose `fire_ahead` falls back to it (docs/architecture.md:
// imports point down); kept here too, as the builder documents it.
use crate::alert::AlertSettings;
use crate::clock::{Clock, SystemClock};
use crate::executor::{Executor, ExecutorContext};
use crate::history::RunRecord;
use crate::job::{Job, JobDefaults};
pub use crate::store::DEFAULT_FIRE_AHEAD;
use crate::store::{JobStore, StoreError};
use crate::task::TaskRegistry;
use crate::trigger::{TriggerContext, TriggerError, Zone};

/// Why a scheduler call failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// No job with that id.
    #[error("no job with id {0:?}")]
    JobNotFound(String),
    /// The job was changed since the revision the caller named (`If-Match`).
    #[error("job {id:?} was changed since (its revision is now {revision})")]
    RevisionChanged {
        /// The job's id.
        id: String,
        /// Its revision now.
        revision: u64,
    },
    /// A job with that id exists and `replace_existing` was not set.
    #[error("a job with id {0:?} already exists")]
    JobExists(String),
    /// The job names a task that is not registered.
    #[error("task: unknown task {name:?} ({})", match suggestion {
        Some(close) => format!("did you mean {close:?}?"),
        None => format!("known: {known}"),
    })]
    UnknownTask {
        /// The name given.
        name: String,
        /// The registered names.
        known: String,
        /// The registered name closest to `name`, if it is a likely typo of it.
        suggestion: Option<String>,
    },
    /// The task refused the job's args.
    #[error("args: {0}")]
    InvalidArgs(String),
    /// The trigger is invalid.
    #[error("trigger.{0}")]
    InvalidTrigger(#[from] TriggerError),
    /// The trigger has no fire time from now on.
    #[error("trigger: it never fires from now on")]
    TriggerNeverFires,
    /// The job names an executor that does not exist.
    #[error("executor: unknown executor {0:?}")]
    UnknownExecutor(String),
    /// The job names a store that does not exist.
    #[error("jobstore: unknown job store {0:?}")]
    UnknownStore(String),
    /// An option is out of range.
    #[error("{field}: {reason}")]
    InvalidOption {
        /// The option.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A backfill of a one-off job: its one fire time is no range to fill in. The
    /// request is well formed, the job is the wrong kind for it (so the API answers
    /// 409, not 422: the same range backfills a recurring job).
    #[error("job {0:?} is a one-off job: it has one fire time and nothing to backfill; run it with POST /jobs/{{id}}/run")]
    NothingToBackfill(String),
    /// Another live process holds this scheduler's node id
    /// ([`Scheduler::check_node_id`]).
    #[error(
        "node id {id:?} belongs to a live node: pid {pid} on host {host:?}, last heartbeat \
         {last_heartbeat}; stop that one first, or give this one another node id \
         ([scheduler] node_id)"
    )]
    NodeIdInUse {
        /// The id.
        id: String,
        /// Where the live node runs.
        host: String,
        /// Its process id there.
        pid: u32,
        /// Its last heartbeat.
        last_heartbeat: DateTime<Utc>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl SchedulerError {
    /// [`SchedulerError::UnknownTask`] for `name`, with the registered task closest to
    /// it as a suggestion.
    pub(crate) fn unknown_task(name: &str, tasks: &crate::task::TaskRegistry) -> SchedulerError {
        SchedulerError::UnknownTask {
            name: name.to_owned(),
            known: tasks.names().collect::<Vec<_>>().join(", "),
            suggestion: crate::suggest::closest_of(name, tasks.names()).map(str::to_owned),
        }
    }
}

impl From<StoreError> for SchedulerError {
    fn from(error: StoreError) -> SchedulerError {
        match error {
            StoreError::Conflict(id) => SchedulerError::JobExists(id),
            StoreError::NotFound(id) => SchedulerError::JobNotFound(id),
            other => SchedulerError::Store(other),
        }
    }
}

/// Whether the loop is running, paused, or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedulerState {
    /// Built but not started, or shut down.
    Stopped,
    /// Taking due jobs.
    Running,
    /// Started, but taking no jobs until resumed.
    Paused,
}

/// Builds a [`Scheduler`].
pub struct SchedulerBuilder {
    id: String,
    timezone: Zone,
    clock: Arc<dyn Clock>,
    stores: BTreeMap<String, Arc<dyn JobStore>>,
    executors: BTreeMap<String, Arc<dyn Executor>>,
    tasks: TaskRegistry,
    job_defaults: JobDefaults,
    batch_size: usize,
    /// `None`: the longest the stores ask for ([`crate::store::Cluster::fire_ahead`]).
    fire_ahead: Option<Duration>,
    lease: Duration,
    max_unwritten_runs: usize,
    retention: Option<HistoryRetention>,
    membership: Option<Membership>,
    poll_interval: Option<Duration>,
    within_capacity: bool,
    alerts: Option<AlertSettings>,
}

impl SchedulerBuilder {
    /// Raises alerts (off by default; the daemon turns it on): a run that fails with
    /// no attempt left (`failed`), times out (`timeout`) or misses its grace time
    /// (`missed`), and jobs that have not succeeded within their
    /// `expect_success_within` (`overdue`, checked every `settings.check_every` on the
    /// scheduler's clock and when the scheduler starts). Each alert is claimed in the
    /// job's store first, so a cluster sends it once; it is then an [`Event::Alert`]
    /// (a log line, a metric, a `GET /events` entry) and a POST to each webhook in
    /// `settings` that wants it. See `docs/alerts.md`.
    pub fn alerts(mut self, settings: AlertSettings) -> SchedulerBuilder {
        self.alerts = Some(settings);
        self
    }

    /// Takes due jobs only while its executors have free workers (default: off; the
    /// daemon turns it on for stores several nodes share), so in a cluster a node
    /// whose executors are full leaves due jobs to the others.
    ///
    /// Each pass acquires at most as many jobs as there are free workers in all its
    /// executors ([`ExecutorLoad::free`](crate::executor::ExecutorLoad::free): neither
    /// running a run nor owed to a queued one whose time has come; runs handed over
    /// ahead of their time in the fire-ahead window need none yet), and none while
    /// they are full; a run that ends wakes the loop to take more. A job acquired for
    /// an executor that is full while another has room waits in its queue, as before.
    ///
    /// ```text
    /// node a (8/8 busy):  pass: 0 free ─ takes nothing ─ … run ends ─ wake ─ takes 1
    /// node b (2/8 busy):  pass: 6 free ─ takes up to 6 due jobs
    /// ```
    ///
    /// Off, a node takes every due job at once and queues the runs its workers cannot
    /// start yet, judging their lateness when it takes them: right for a single node,
    /// where nobody else could run them sooner. On, with every node full, due jobs wait
    /// in the store and are judged when a node takes them (a job whose
    /// `misfire_grace_time` passes meanwhile is reported missed).
    pub fn acquire_within_capacity(mut self, on: bool) -> SchedulerBuilder {
        self.within_capacity = on;
        self
    }

    /// Looks at the stores at least this often, even with nothing due (default: never;
    /// the daemon sets it for shared stores).
    ///
    /// A job added or changed through this scheduler wakes its loop at once. One added
    /// by another node, or by a process that writes to the store directly, is seen
    /// when this loop next looks: at its next deadline, or within this interval,
    /// whichever is first. It is the safety net under cross-node wake-ups, and the
    /// bound on how late such a job can be when the store cannot notify (MySQL).
    ///
    /// ```text
    /// node a:  sleeping ─────────────── (next job in 1 h) ───────────────>
    ///                 ^ node b adds a job due in 2 s
    /// poll:    ─ look ──── look ──── look ─ (the job is found, runs ≤ poll late)
    /// ```
    pub fn poll_interval(mut self, interval: Duration) -> SchedulerBuilder {
        self.poll_interval = Some(interval).filter(|interval| !interval.is_zero());
        self
    }

    /// Takes part in the stores' cluster membership: registers this scheduler as a
    /// node (its [`id`](SchedulerBuilder::id) is the node id), renews its heartbeat,
    /// and reaps nodes whose heartbeat is older than the timeout, freeing their leases
    /// and instance slots (see [`crate::store::Nodes::register_node`]). Off by default; the
    /// daemon turns it on.
    pub fn membership(mut self, membership: Membership) -> SchedulerBuilder {
        self.membership = Some(membership);
        self
    }

    /// The id this scheduler uses for leases (a node id in a cluster). A blank id is
    /// ignored and the default (`kairos-<pid>`) kept: the stores mark the slots of
    /// orphaned runs with the empty owner (`docs/lifecycle.md`), and `kairos check`
    /// refuses a blank `node_id` for the same reason.
    pub fn id(mut self, id: impl Into<String>) -> SchedulerBuilder {
        let id = id.into();
        if !id.trim().is_empty() {
            self.id = id;
        }
        self
    }

    /// The zone of triggers that name none.
    pub fn timezone(mut self, timezone: Zone) -> SchedulerBuilder {
        self.timezone = timezone;
        self
    }

    /// The clock (tests use [`crate::clock::ManualClock`]).
    pub fn clock(mut self, clock: impl Clock) -> SchedulerBuilder {
        self.clock = Arc::new(clock);
        self
    }

    /// Adds a named job store.
    pub fn store(mut self, name: impl Into<String>, store: impl JobStore) -> SchedulerBuilder {
        self.stores.insert(name.into(), Arc::new(store));
        self
    }

    /// Adds a named job store that is already shared (what [`crate::store`]'s openers
    /// return).
    pub fn store_shared(
        mut self,
        name: impl Into<String>,
        store: Arc<dyn JobStore>,
    ) -> SchedulerBuilder {
        self.stores.insert(name.into(), store);
        self
    }

    /// Adds a named executor.
    pub fn executor(
        mut self,
        name: impl Into<String>,
        executor: impl Executor,
    ) -> SchedulerBuilder {
        self.executors.insert(name.into(), Arc::new(executor));
        self
    }

    /// The tasks jobs may name.
    pub fn tasks(mut self, tasks: TaskRegistry) -> SchedulerBuilder {
        self.tasks = tasks;
        self
    }

    /// The defaults for job options.
    pub fn job_defaults(mut self, defaults: JobDefaults) -> SchedulerBuilder {
        self.job_defaults = defaults;
        self
    }

    /// Trims every store's run history in the background (off by default: the memory
    /// store bounds its history itself).
    pub fn history_retention(mut self, retention: HistoryRetention) -> SchedulerBuilder {
        self.retention = Some(retention);
        self
    }

    /// Takes jobs from their store up to this long before they are due and hands them
    /// to their executor to start on time (default: the longest window the stores ask
    /// for, [`crate::store::Cluster::fire_ahead`]: a second on
    /// the SQL stores, [`DEFAULT_FIRE_AHEAD`] on the others; zero takes them when due).
    ///
    /// This keeps the store and the scheduler's own work off the firing path, as
    /// Quartz's fire-ahead window does: for stores whose writes are slow (a durable SQL
    /// commit takes milliseconds), and for many jobs due at once (ten thousand due in
    /// the same second are handed over in the window before it and start together).
    /// A run handed over early is taken back if its job is paused, rescheduled or
    /// removed through this scheduler before it is due (it is recorded as skipped);
    /// a change made through another node of a shared store does not reach it, so
    /// there keep the window short.
    pub fn fire_ahead(mut self, window: Duration) -> SchedulerBuilder {
        self.fire_ahead = Some(window);
        self
    }

    /// How long an acquired job stays leased to this scheduler (default: five minutes).
    /// If the scheduler dies holding it, another scheduler takes the job once the lease
    /// expires (or this one, restarted under the same id, at once). The lease only
    /// needs to outlast one pass of the main loop and the fire-ahead window (a job
    /// handed over early stays leased until its run is due), not the job's runs.
    pub fn lease(mut self, lease: Duration) -> SchedulerBuilder {
        self.lease = lease;
        self
    }

    /// How many finished runs' records this node keeps for a store that refuses
    /// them (an outage) before it stops taking jobs from that store until they are
    /// written (default [`MAX_UNWRITTEN_RUNS`]): the backlog is bounded, and nothing
    /// in it is dropped.
    pub fn max_unwritten_runs(mut self, records: usize) -> SchedulerBuilder {
        self.max_unwritten_runs = records.max(1);
        self
    }

    /// How many due jobs one store acquisition takes at most.
    pub fn batch_size(mut self, batch_size: usize) -> SchedulerBuilder {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Builds the scheduler; a `default` memory store and a `default` thread pool of 10
    /// workers are added when none of that name was given.
    pub fn build(mut self) -> Scheduler {
        self.stores
            .entry("default".to_owned())
            .or_insert_with(|| Arc::new(crate::store::memory::MemoryStore::new()));
        self.executors
            .entry("default".to_owned())
            .or_insert_with(|| Arc::new(crate::executor::pool::ThreadPoolExecutor::new(10)));
        let fire_ahead = self.fire_ahead.unwrap_or_else(|| {
            self.stores
                .values()
                .map(|store| store.fire_ahead())
                .max()
                .unwrap_or(DEFAULT_FIRE_AHEAD)
        });
        // Every store call of the scheduler goes through one wrapper that times it
        // (docs/metrics.md).
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let stores: BTreeMap<String, Arc<dyn JobStore>> = self
            .stores
            .into_iter()
            .map(|(name, store)| {
                let wrapped = metrics.store.instrument(&name, store);
                (name, Arc::new(wrapped) as Arc<dyn JobStore>)
            })
            .collect();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (finished_sender, finished_receiver) = mpsc::unbounded_channel();
        let (flush_sender, flush_receiver) = mpsc::unbounded_channel();
        let (state, _) = watch::channel(SchedulerState::Stopped);
        Scheduler {
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                schedule_checks: start::StoreBatches::default(),
                slot_claims: start::StoreBatches::default(),
                recovery: tokio::sync::Mutex::new(()),
                flush_sender,
                id: self.id,
                timezone: self.timezone,
                clock: self.clock,
                store_names: stores.keys().map(|name| Arc::from(name.as_str())).collect(),
                stores,
                metrics,
                executors: self.executors,
                tasks: self.tasks,
                defaults: self.job_defaults,
                batch_size: self.batch_size,
                fire_ahead,
                lease: self.lease,
                max_unwritten_runs: self.max_unwritten_runs,
                retention: self.retention,
                membership: self.membership,
                poll_interval: self.poll_interval,
                within_capacity: self.within_capacity,
                alerts: self.alerts,
                starved: std::sync::atomic::AtomicBool::new(false),
                events,
                wake: Notify::new(),
                run_ended: Notify::new(),
                drain: Notify::new(),
                state,
                mutable: Mutex::new(Mutable {
                    deadline: None,
                    pass_started: None,
                    write_started: None,
                    backlogged: std::collections::HashSet::new(),
                    unwritten_runs: 0,
                    changed_while_held: std::collections::HashSet::new(),
                    waiting_for_slot: std::collections::HashMap::new(),
                    finishing_one_offs: std::collections::HashSet::new(),
                    finished_receiver: Some(finished_receiver),
                    flush_receiver: Some(flush_receiver),
                    handles: Vec::new(),
                    run_stores: hashbrown::HashMap::new(),
                    pending_releases: HashMap::new(),
                    deferred_releases: HashMap::new(),
                    orphans_to_take: std::collections::BTreeSet::new(),
                    unrecovered: std::collections::BTreeSet::new(),
                    random: fastrand::Rng::new(),
                    lateness: membership::LatenessWindow::default(),
                }),
                finished_sender,
                config_status: Mutex::new(None),
            }),
        }
    }
}

/// How many events a slow listener may fall behind before it loses some.
const EVENT_CAPACITY: usize = 4096;

/// The scheduler: add, change and remove jobs; start, pause and stop the loop.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// This scheduler, for what outlives a call: the start checks of runs handed over.
    me: std::sync::Weak<Inner>,
    /// Reads, in batches, the schedules of jobs whose early runs come due.
    schedule_checks: start::StoreBatches<start::ReadSchedules>,
    /// Claims, in batches, the instance slots of runs as they come due.
    slot_claims: start::StoreBatches<start::ClaimSlots>,
    /// Held while a store is recovered from an earlier run of this scheduler
    /// (`recovery::recover_store`): one recovery at a time.
    recovery: tokio::sync::Mutex<()>,
    /// Asks the record task to write what has finished so far ([`Inner::flush_finished_runs`]).
    flush_sender: mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>,
    id: String,
    timezone: Zone,
    clock: Arc<dyn Clock>,
    stores: BTreeMap<String, Arc<dyn JobStore>>,
    /// The stores' names, shared by the runs in flight rather than copied into each
    /// ([`Inner::shared_store_name`]).
    store_names: Vec<Arc<str>>,
    /// What this scheduler counts (`GET /metrics`).
    metrics: Arc<crate::metrics::Metrics>,
    executors: BTreeMap<String, Arc<dyn Executor>>,
    tasks: TaskRegistry,
    defaults: JobDefaults,
    batch_size: usize,
    fire_ahead: Duration,
    lease: Duration,
    max_unwritten_runs: usize,
    retention: Option<HistoryRetention>,
    membership: Option<Membership>,
    poll_interval: Option<Duration>,
    /// [`SchedulerBuilder::acquire_within_capacity`].
    within_capacity: bool,
    /// [`SchedulerBuilder::alerts`].
    alerts: Option<AlertSettings>,
    /// The last pass left due jobs in a store because the executors were full: a run
    /// that ends wakes the loop.
    starved: std::sync::atomic::AtomicBool,
    events: broadcast::Sender<Event>,
    wake: Notify,
    /// Wakes the runs waiting for an instance slot (`overlap = "queue"`, "replace"):
    /// a run of this node ended, or a job was changed here (`start::RunStart`).
    run_ended: Notify,
    /// Tells the record task that the executors are done and it may finish.
    drain: Notify,
    state: watch::Sender<SchedulerState>,
    mutable: Mutex<Mutable>,
    finished_sender: mpsc::UnboundedSender<RunRecord>,
    /// This node's config hash and where it stood at its last sync (`generation.rs`).
    config_status: Mutex<Option<(String, Standing)>>,
}

struct Mutable {
    /// When the loop plans to wake next; `None` while it sleeps with nothing due.
    deadline: Option<DateTime<Utc>>,
    /// When the loop's current pass began (real time); `None` between passes.
    pass_started: Option<std::time::Instant>,
    /// When the record task's current store write began; `None` between writes.
    write_started: Option<std::time::Instant>,
    /// Stores whose unwritten run records reached the cap (`max_unwritten_runs`): the loop
    /// takes no jobs from them until the records are written.
    backlogged: std::collections::HashSet<String>,
    /// Finished runs not yet written to their stores.
    unwritten_runs: usize,
    /// Jobs changed through this scheduler while a run of theirs held them: their
    /// run's end looks at them again (`record::FollowUp::Finished`, a wake-up).
    changed_while_held: std::collections::HashSet<String>,
    /// Jobs with a run of this node waiting for an instance slot (`overlap = "queue"`,
    /// or a replacement waiting for the run it stopped to end): at most one per job,
    /// with the `max_instances` it claims under.
    waiting_for_slot: std::collections::HashMap<String, u32>,
    /// Jobs with a waiting run (above) that this node's record task is removing as
    /// finished one-off jobs: the waiting run (a run now) still starts though its job
    /// is gone, as no removal was answered (`start::RunStart::wait_for_slot`).
    finishing_one_offs: std::collections::HashSet<String>,
    finished_receiver: Option<mpsc::UnboundedReceiver<RunRecord>>,
    flush_receiver: Option<mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>>,
    handles: Vec<JoinHandle<()>>,
    /// Each run in flight: where its record goes, and what its end writes back.
    // foldhash, not SipHash: one insert and one removal per run, keyed by
    // generated run ids (BENCHMARKS.md, recurring).
    run_stores: hashbrown::HashMap<String, main_loop::RunPlace>,
    /// Releases a store refused (it was unreachable), by store: their runs were
    /// submitted, so they are written before anything more is taken from that store.
    pending_releases: HashMap<String, Vec<crate::store::Release>>,
    /// Releases of runs handed over ahead of their time, by store, written when the
    /// runs are due (`deferred::Deferred`).
    deferred_releases: HashMap<String, Vec<deferred::Deferred>>,
    /// Stores that may hold orphaned runs for this node to take
    /// (`recovery::replay_orphaned_runs`): marked after a recovery and at each
    /// heartbeat, taken by the loop's next pass while the scheduler runs.
    orphans_to_take: std::collections::BTreeSet<String>,
    /// Stores in which what an earlier run of this scheduler left (same id) is not
    /// freed yet (`InstanceSlots::recover_owner`): nothing may claim a lease or a slot in
    /// them until it is, or the recovery would free that too (`main_loop::run`).
    unrecovered: std::collections::BTreeSet<String>,
    random: fastrand::Rng,
    /// How late the runs that ended since the last heartbeat started (the node's
    /// stats, `membership.rs`).
    lateness: membership::LatenessWindow,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Mutable> {
        self.mutable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn emit(&self, event: Event) {
        event.log();
        // Each event updates its metric where it is logged (docs/metrics.md).
        match &event {
            Event::Alert { alert } => self.metrics.alert_raised(alert.event),
            Event::AlertDelivered { .. } => self.metrics.alert_delivery(true, 0),
            Event::AlertUndelivered { attempts, .. } => {
                self.metrics.alert_delivery(false, *attempts);
            }
            Event::RecordsBacklogged { .. } => self.metrics.records_backlogged(),
            Event::JobRemoved { job_id, .. } => self.metrics.forget_job(job_id),
            _ => {}
        }
        // No listener is not an error.
        let _ = self.events.send(event);
    }

    /// Emits the event `make` builds, unless nobody would see it: the hot paths (adding
    /// and submitting) skip building events when no listener or log wants them.
    pub(crate) fn emit_with(&self, make: impl FnOnce() -> Event) {
        if self.wants_events() {
            self.emit(make());
        }
    }

    /// Announces the jobs of `jobstore` whose releases asked for their removal
    /// (`finished`, one-off jobs whose runs ended), as far as they really went. A
    /// release leaves a job whose schedule changed while it was held: a reschedule or
    /// pause through any node, a retry planned, a failure kept (docs/lifecycle.md);
    /// those are still there. One read tells, made only when someone would see the
    /// event or a job's series would go with it. A read that fails announces none: a
    /// "removed" that may be false is worse than one missed.
    pub(crate) async fn finished_jobs_removed(
        &self,
        jobstore: &str,
        store: &dyn JobStore,
        finished: Vec<String>,
    ) {
        if finished.is_empty() || (!self.wants_events() && !self.metrics.watches_any(&finished)) {
            return;
        }
        match store.job_schedules(&finished).await {
            Ok(schedules) => {
                for (job_id, schedule) in finished.into_iter().zip(schedules) {
                    if schedule.is_none() {
                        self.job_removed(job_id, jobstore);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(jobstore, jobs = finished.len(), %error, "could not tell which finished jobs are gone; no \"job removed\" event for them");
            }
        }
    }

    /// The name of the store `name`, shared: a run's place and start check name their
    /// store with it (one reference count, not one allocation per run, BENCHMARKS.md
    /// "Instructions per run"). A scheduler has a few stores, so a scan finds it.
    pub(crate) fn shared_store_name(&self, name: &str) -> Arc<str> {
        self.store_names
            .iter()
            .find(|shared| ***shared == *name)
            .cloned()
            .unwrap_or_else(|| Arc::from(name))
    }

    /// Whether an event would reach anyone: a listener, or the log at debug level.
    fn wants_events(&self) -> bool {
        self.events.receiver_count() > 0 || tracing::enabled!(tracing::Level::DEBUG)
    }

    /// Announces that `job_id` left `jobstore`, if anyone would see it. Its watched-job
    /// series go with it either way (docs/metrics.md): they are not the event's to keep
    /// when nobody listens.
    pub(crate) fn job_removed(&self, job_id: String, jobstore: &str) {
        if self.wants_events() {
            self.emit(Event::JobRemoved {
                job_id,
                jobstore: jobstore.to_owned(),
            });
        } else {
            self.metrics.forget_job(&job_id);
        }
    }

    /// Whether a finished run's event would reach anyone (a listener or the log):
    /// at thousands of runs a second, building events nobody sees costs a copy of
    /// every run record (BENCHMARKS.md, recurring).
    pub(crate) fn announces_run(&self, run: &crate::history::RunRecord) -> bool {
        self.events.receiver_count() > 0
            || if run.outcome == crate::history::RunOutcome::Success {
                tracing::enabled!(tracing::Level::INFO)
            } else {
                tracing::enabled!(tracing::Level::WARN)
            }
    }

    /// Wakes the loop if a job due at `time` must be taken earlier than the loop plans
    /// to wake (it takes jobs the fire-ahead window before they are due).
    fn wake_if_earlier(&self, time: Option<DateTime<Utc>>) {
        let Some(time) = time else { return };
        let fire_ahead = chrono::TimeDelta::from_std(self.fire_ahead).unwrap_or_default();
        let time = time.checked_sub_signed(fire_ahead).unwrap_or(time);
        let earlier = self.lock().deadline.is_none_or(|deadline| time < deadline);
        if earlier {
            self.wake.notify_one();
        }
    }

    /// Returns once the record task has written (or tried to write) every run that
    /// finished before the call: their instance slots are free in the store then.
    /// Asks the record task to try its waiting writes now, without waiting for them:
    /// the main loop's pass just succeeded after a failure, so the store is back, and
    /// the record task's back-off (grown during the outage) need not run out first.
    pub(crate) fn nudge_unwritten_runs(&self) {
        let (done, _) = tokio::sync::oneshot::channel();
        // An error is the record task gone (a shutdown): nothing more gets written.
        let _ = self.flush_sender.send(done);
    }

    pub(crate) async fn flush_finished_runs(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.flush_sender.send(done).is_ok() {
            // An error is the record task gone (a shutdown): nothing more gets written.
            let _ = written.await;
        }
    }

    fn store(&self, name: &str) -> Result<&Arc<dyn JobStore>, SchedulerError> {
        self.stores
            .get(name)
            .ok_or_else(|| SchedulerError::UnknownStore(name.to_owned()))
    }

    fn trigger_context(&self) -> TriggerContext {
        TriggerContext::new(self.clock.now()).with_timezone(self.timezone)
    }

    /// Finds the store that holds job `id`.
    async fn find_job(&self, id: &str) -> Result<(String, Job), SchedulerError> {
        for (name, store) in &self.stores {
            if let Some(job) = store.get_job(id).await? {
                return Ok((name.clone(), job));
            }
        }
        Err(SchedulerError::JobNotFound(id.to_owned()))
    }
}

impl Scheduler {
    /// A builder with UTC, the system clock and no stores or executors yet.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder {
            id: format!("kairos-{}", std::process::id()),
            timezone: crate::trigger::zone::UTC,
            clock: Arc::new(SystemClock),
            stores: BTreeMap::new(),
            executors: BTreeMap::new(),
            tasks: TaskRegistry::with_builtins(),
            job_defaults: JobDefaults::default(),
            batch_size: 1000,
            fire_ahead: None,
            lease: Duration::from_secs(300),
            max_unwritten_runs: MAX_UNWRITTEN_RUNS,
            retention: None,
            membership: None,
            poll_interval: None,
            within_capacity: false,
            alerts: None,
        }
    }

    /// Listens to the scheduler's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// What the scheduler counts: the registry `GET /metrics` encodes
    /// (docs/metrics.md).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// The scheduler's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.inner.clock)
    }

    /// The zone of triggers that name none.
    pub fn timezone(&self) -> Zone {
        self.inner.timezone
    }

    /// The tasks jobs may name.
    pub fn tasks(&self) -> &TaskRegistry {
        &self.inner.tasks
    }

    /// Whether the loop is running, paused or stopped.
    pub fn state(&self) -> SchedulerState {
        *self.inner.state.borrow()
    }

    /// Starts the executors and the main loop. Must be called inside a tokio runtime.
    ///
    /// Before its first pass the loop frees, in every store, the leases and instance
    /// slots that an earlier process with this scheduler's id left behind
    /// ([`crate::store::InstanceSlots::recover_owner`]): with a
    /// stable id (the daemon's node id), a restart after a crash runs the interrupted
    /// jobs at once instead of after their leases expire.
    pub fn start(&self) {
        if self.state() != SchedulerState::Stopped {
            return;
        }
        let (finished, flushes) = {
            let mut mutable = self.inner.lock();
            let (Some(receiver), Some(flushes)) = (
                mutable.finished_receiver.take(),
                mutable.flush_receiver.take(),
            ) else {
                tracing::warn!("a scheduler that was shut down cannot be started again");
                return;
            };
            (receiver, flushes)
        };
        for executor in self.inner.executors.values() {
            executor.start(ExecutorContext {
                clock: Arc::clone(&self.inner.clock),
                finished: self.inner.finished_sender.clone(),
            });
        }
        // Nothing claims a slot in a store before what an earlier run of this id left
        // there is recovered (`recovery::recover_store`), from this instant on.
        self.inner.lock().unrecovered = self.inner.stores.keys().cloned().collect();
        self.inner.state.send_replace(SchedulerState::Running);
        let main = tokio::spawn(main_loop::run(Arc::clone(&self.inner)));
        if let Some(retention) = self.inner.retention {
            // Not awaited at shutdown: it only ever deletes old history, and it stops on
            // its own when it sees the scheduler stop.
            let every =
                chrono::TimeDelta::from_std(retention.every).unwrap_or(chrono::TimeDelta::MAX);
            let first = self.inner.clock.now().checked_add_signed(every);
            if let Some(first) = first {
                tokio::spawn(retention::run(Arc::clone(&self.inner), retention, first));
            }
        }
        let records = tokio::spawn(record::record_finished_runs(
            Arc::clone(&self.inner),
            finished,
            flushes,
        ));
        // Not awaited at shutdown either: it stops when it sees the scheduler stop.
        tokio::spawn(renewal::run(Arc::clone(&self.inner)));
        if let Some(settings) = self.inner.alerts.clone() {
            // Subscribed here, before the loop runs, so no event is missed; it stops
            // at the shutdown event, after the last runs' records were announced.
            let events = self.inner.events.subscribe();
            tokio::spawn(alerts::run(Arc::clone(&self.inner), settings, events));
        }
        self.inner.lock().handles.extend([main, records]);
        if let Some(membership) = self.inner.membership.clone() {
            // Awaited at shutdown after the runs were recorded: it deregisters last.
            let members = tokio::spawn(membership::run(Arc::clone(&self.inner), membership));
            self.inner.lock().handles.push(members);
        }
        self.inner.emit(Event::SchedulerStarted);
    }

    /// Stops the loop, then the executors: with `wait`, running jobs get up to that
    /// long to finish; without, they are stopped at once. Their records are kept.
    pub async fn shutdown(&self, wait: Option<Duration>) {
        if self.state() == SchedulerState::Stopped {
            return;
        }
        self.inner.state.send_replace(SchedulerState::Stopped);
        self.inner.wake.notify_one();
        let handles = std::mem::take(&mut self.inner.lock().handles);
        let mut handles = handles.into_iter();
        if let Some(main) = handles.next() {
            let _ = main.await;
        }
        for executor in self.inner.executors.values() {
            executor.shutdown(wait).await;
        }
        // The record task drains what the executors reported, then stops.
        self.inner.drain.notify_one();
        for handle in handles {
            let _ = handle.await;
        }
        self.inner.emit(Event::SchedulerShutdown);
    }

    /// Whether the main loop is running (started, not shut down, and its task has not
    /// ended): what a watchdog keep-alive should report.
    pub fn is_alive(&self) -> bool {
        self.state() != SchedulerState::Stopped
            && self
                .inner
                .lock()
                .handles
                .first()
                .is_some_and(|main| !main.is_finished())
    }

    /// Whether the main loop is alive ([`Scheduler::is_alive`]) and not stuck: it is
    /// asleep between passes, or its current pass began less than `stall` ago, and the
    /// same holds for the write of finished runs. A pass or a write that cannot finish
    /// (a store call that never returns) stops being progress, so a watchdog that asks
    /// this lets systemd restart the daemon.
    pub fn is_making_progress(&self, stall: Duration) -> bool {
        if !self.is_alive() {
            return false;
        }
        let mutable = self.inner.lock();
        let young = |started: Option<std::time::Instant>| {
            started.is_none_or(|started| started.elapsed() < stall)
        };
        young(mutable.pass_started) && young(mutable.write_started)
    }

    /// Finished runs whose records this node has not been able to write yet (a store
    /// refusing writes); see [`MAX_UNWRITTEN_RUNS`].
    pub fn unwritten_runs(&self) -> usize {
        self.inner.lock().unwritten_runs
    }

    /// Stops taking due jobs until [`Scheduler::resume`]; running jobs go on.
    pub fn pause(&self) {
        if self.state() == SchedulerState::Running {
            self.inner.state.send_replace(SchedulerState::Paused);
            self.inner.emit(Event::SchedulerPaused);
        }
    }

    /// Takes due jobs again after [`Scheduler::pause`].
    pub fn resume(&self) {
        if self.state() == SchedulerState::Paused {
            self.inner.state.send_replace(SchedulerState::Running);
            self.inner.wake.notify_one();
            self.inner.emit(Event::SchedulerResumed);
        }
    }
}
