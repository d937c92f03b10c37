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

mod event;
mod main_loop;
pub mod plan;
mod retention;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;

pub use self::event::Event;
pub use self::retention::HistoryRetention;
use crate::clock::{Clock, SystemClock};
use crate::executor::{Executor, ExecutorContext, Submission};
use crate::history::RunRecord;
use crate::job::{generate_id, Job, JobChanges, JobDefaults, JobSpec};
use crate::store::{JobStore, StoreError};
use crate::task::{TaskRegistry, TaskRun};
use crate::trigger::{Trigger, TriggerContext, TriggerError, TriggerSpec, Zone};

/// Why a scheduler call failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// No job with that id.
    #[error("no job with id {0:?}")]
    JobNotFound(String),
    /// A job with that id exists and `replace_existing` was not set.
    #[error("a job with id {0:?} already exists")]
    JobExists(String),
    /// The job names a task that is not registered.
    #[error("task: unknown task {name:?} (known: {known})")]
    UnknownTask {
        /// The name given.
        name: String,
        /// The registered names.
        known: String,
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
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
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
    fire_ahead: Duration,
    lease: Duration,
    retention: Option<HistoryRetention>,
}

impl SchedulerBuilder {
    /// The id this scheduler uses for leases (a node id in a cluster).
    pub fn id(mut self, id: impl Into<String>) -> SchedulerBuilder {
        self.id = id.into();
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
    /// to their executor to start on time (default: zero, take them when due).
    ///
    /// For stores whose writes are slow (a durable SQL commit takes milliseconds) this
    /// keeps the store off the firing path, as Quartz's fire-ahead window does. A run
    /// handed over ahead of time still starts if its job is removed or paused within the
    /// window, so keep the window short; the built-in tasks are safe to run late or
    /// again by design.
    pub fn fire_ahead(mut self, window: Duration) -> SchedulerBuilder {
        self.fire_ahead = window;
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
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (finished_sender, finished_receiver) = mpsc::unbounded_channel();
        let (state, _) = watch::channel(SchedulerState::Stopped);
        Scheduler {
            inner: Arc::new(Inner {
                id: self.id,
                timezone: self.timezone,
                clock: self.clock,
                stores: self.stores,
                executors: self.executors,
                tasks: self.tasks,
                defaults: self.job_defaults,
                batch_size: self.batch_size,
                fire_ahead: self.fire_ahead,
                lease: self.lease,
                retention: self.retention,
                events,
                wake: Notify::new(),
                drain: Notify::new(),
                state,
                mutable: Mutex::new(Mutable {
                    deadline: None,
                    finished_receiver: Some(finished_receiver),
                    handles: Vec::new(),
                    run_stores: HashMap::new(),
                    pending_releases: HashMap::new(),
                    random: fastrand::Rng::new(),
                }),
                finished_sender,
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
    id: String,
    timezone: Zone,
    clock: Arc<dyn Clock>,
    stores: BTreeMap<String, Arc<dyn JobStore>>,
    executors: BTreeMap<String, Arc<dyn Executor>>,
    tasks: TaskRegistry,
    defaults: JobDefaults,
    batch_size: usize,
    fire_ahead: Duration,
    lease: Duration,
    retention: Option<HistoryRetention>,
    events: broadcast::Sender<Event>,
    wake: Notify,
    /// Tells the record task that the executors are done and it may finish.
    drain: Notify,
    state: watch::Sender<SchedulerState>,
    mutable: Mutex<Mutable>,
    finished_sender: mpsc::UnboundedSender<RunRecord>,
}

struct Mutable {
    /// When the loop plans to wake next; `None` while it sleeps with nothing due.
    deadline: Option<DateTime<Utc>>,
    finished_receiver: Option<mpsc::UnboundedReceiver<RunRecord>>,
    handles: Vec<JoinHandle<()>>,
    /// Each run in flight: its store, so the record lands in the right place, and whether
    /// its record frees the job's instance slot (the last run of a submission does).
    run_stores: HashMap<String, (String, bool)>,
    /// Releases a store refused (it was unreachable), by store: their runs were
    /// submitted, so they are written before anything more is taken from that store.
    pending_releases: HashMap<String, Vec<crate::store::Release>>,
    random: fastrand::Rng,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Mutable> {
        self.mutable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn emit(&self, event: Event) {
        event.log();
        // No listener is not an error.
        let _ = self.events.send(event);
    }

    /// Emits the event `make` builds, unless nobody would see it: the hot paths (adding
    /// and submitting) skip building events when no listener or log wants them.
    pub(crate) fn emit_with(&self, make: impl FnOnce() -> Event) {
        if self.events.receiver_count() > 0 || tracing::enabled!(tracing::Level::DEBUG) {
            self.emit(make());
        }
    }

    /// Wakes the loop if `time` is earlier than when it plans to wake.
    fn wake_if_earlier(&self, time: Option<DateTime<Utc>>) {
        let Some(time) = time else { return };
        let earlier = self.lock().deadline.is_none_or(|deadline| time < deadline);
        if earlier {
            self.wake.notify_one();
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
            fire_ahead: Duration::ZERO,
            lease: Duration::from_secs(300),
            retention: None,
        }
    }

    /// Listens to the scheduler's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
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
    pub fn start(&self) {
        if self.state() != SchedulerState::Stopped {
            return;
        }
        let finished = {
            let mut mutable = self.inner.lock();
            let Some(receiver) = mutable.finished_receiver.take() else {
                tracing::warn!("a scheduler that was shut down cannot be started again");
                return;
            };
            receiver
        };
        for executor in self.inner.executors.values() {
            executor.start(ExecutorContext {
                clock: Arc::clone(&self.inner.clock),
                finished: self.inner.finished_sender.clone(),
            });
        }
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
        let records = tokio::spawn(main_loop::record_finished_runs(
            Arc::clone(&self.inner),
            finished,
        ));
        self.inner.lock().handles.extend([main, records]);
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

    /// Adds a job; it fails if the task, trigger, executor, store or options are
    /// invalid, or the id is taken and `replace_existing` is not set.
    pub async fn add_job(&self, spec: JobSpec) -> Result<Job, SchedulerError> {
        let inner = &self.inner;
        let (jobstore, store) = {
            let name = spec
                .options
                .jobstore
                .as_deref()
                .unwrap_or(&inner.defaults.jobstore);
            let (name, store) = inner
                .stores
                .get_key_value(name)
                .ok_or_else(|| SchedulerError::UnknownStore(name.to_owned()))?;
            (name.as_str(), Arc::clone(store))
        };
        let replace = spec.replace_existing;
        let job = self.build_job(spec)?;
        let stored = if replace {
            store.replace_job(job).await?
        } else {
            store.add_job(job).await?
        };
        inner.emit_with(|| Event::JobAdded {
            job_id: stored.id.clone(),
            jobstore: jobstore.to_owned(),
        });
        inner.wake_if_earlier(stored.next_run_time);
        Ok(stored)
    }

    /// Adds several jobs: each is checked first (one invalid spec adds nothing), then
    /// each store gets its jobs in one batch. `replace_existing` is not supported here.
    pub async fn add_jobs(&self, specs: Vec<JobSpec>) -> Result<Vec<Job>, SchedulerError> {
        let inner = &self.inner;
        let mut by_store: BTreeMap<String, Vec<Job>> = BTreeMap::new();
        for spec in specs {
            let jobstore = spec
                .options
                .jobstore
                .clone()
                .unwrap_or_else(|| inner.defaults.jobstore.clone());
            inner.store(&jobstore)?;
            if spec.replace_existing {
                return Err(SchedulerError::InvalidOption {
                    field: "replace_existing",
                    reason: "is not supported when adding jobs in a batch".to_owned(),
                });
            }
            by_store
                .entry(jobstore)
                .or_default()
                .push(self.build_job(spec)?);
        }
        let mut added = Vec::new();
        for (jobstore, jobs) in by_store {
            let stored = inner.store(&jobstore)?.add_jobs(jobs).await?;
            let earliest = stored.iter().filter_map(|job| job.next_run_time).min();
            for job in &stored {
                inner.emit_with(|| Event::JobAdded {
                    job_id: job.id.clone(),
                    jobstore: jobstore.clone(),
                });
            }
            inner.wake_if_earlier(earliest);
            added.extend(stored);
        }
        Ok(added)
    }

    fn build_job(&self, spec: JobSpec) -> Result<Job, SchedulerError> {
        let inner = &self.inner;
        let context = inner.trigger_context();
        let task = inner
            .tasks
            .get(&spec.task)
            .ok_or_else(|| SchedulerError::UnknownTask {
                name: spec.task.clone(),
                known: inner.tasks.names().collect::<Vec<_>>().join(", "),
            })?;
        task.check_args(&spec.args)
            .map_err(SchedulerError::InvalidArgs)?;
        let executor = spec
            .options
            .executor
            .unwrap_or_else(|| inner.defaults.executor.clone());
        if !inner.executors.contains_key(&executor) {
            return Err(SchedulerError::UnknownExecutor(executor));
        }
        let max_instances = spec
            .options
            .max_instances
            .unwrap_or(inner.defaults.max_instances);
        if max_instances == 0 {
            return Err(SchedulerError::InvalidOption {
                field: "max_instances",
                reason: "must be at least 1".to_owned(),
            });
        }
        let trigger = Trigger::new(spec.trigger, &context)?;
        let next_run_time = if spec.paused {
            None
        } else {
            let next = spec
                .next_run_time
                .or_else(|| trigger.next_fire_time(None, context.now));
            Some(next.ok_or(SchedulerError::TriggerNeverFires)?)
        };
        Ok(Job {
            id: spec.id.unwrap_or_else(generate_id),
            name: spec.name.unwrap_or_else(|| spec.task.clone()),
            task: spec.task,
            args: spec.args,
            trigger,
            executor,
            misfire_grace_time: spec
                .options
                .misfire_grace_time
                .or(inner.defaults.misfire_grace_time),
            coalesce: spec.options.coalesce.unwrap_or(inner.defaults.coalesce),
            max_instances,
            jitter: spec.options.jitter,
            paused: spec.paused,
            next_run_time,
            revision: 0,
        })
    }

    /// Applies `changes` to a job. A new trigger recomputes the next run time from now.
    pub async fn modify_job(&self, id: &str, changes: JobChanges) -> Result<Job, SchedulerError> {
        let inner = &self.inner;
        let (jobstore, mut job) = inner.find_job(id).await?;
        if let Some(args) = changes.args {
            let task = inner
                .tasks
                .get(&job.task)
                .ok_or_else(|| SchedulerError::UnknownTask {
                    name: job.task.clone(),
                    known: inner.tasks.names().collect::<Vec<_>>().join(", "),
                })?;
            task.check_args(&args)
                .map_err(SchedulerError::InvalidArgs)?;
            job.args = args;
        }
        if let Some(executor) = changes.executor {
            if !inner.executors.contains_key(&executor) {
                return Err(SchedulerError::UnknownExecutor(executor));
            }
            job.executor = executor;
        }
        if let Some(max_instances) = changes.max_instances {
            if max_instances == 0 {
                return Err(SchedulerError::InvalidOption {
                    field: "max_instances",
                    reason: "must be at least 1".to_owned(),
                });
            }
            job.max_instances = max_instances;
        }
        if let Some(name) = changes.name {
            job.name = name;
        }
        if changes.clear_misfire_grace_time {
            job.misfire_grace_time = None;
        }
        if let Some(grace) = changes.misfire_grace_time {
            job.misfire_grace_time = Some(grace);
        }
        if let Some(coalesce) = changes.coalesce {
            job.coalesce = coalesce;
        }
        if let Some(jitter) = changes.jitter {
            job.jitter = Some(jitter);
        }
        if let Some(spec) = changes.trigger {
            let context = inner.trigger_context();
            job.trigger = Trigger::new(spec, &context)?;
            if !job.paused {
                job.next_run_time = Some(
                    job.trigger
                        .next_fire_time(None, context.now)
                        .ok_or(SchedulerError::TriggerNeverFires)?,
                );
            }
        }
        if let Some(next) = changes.next_run_time {
            if !job.paused {
                job.next_run_time = Some(next);
            }
        }
        self.write_changed(jobstore, job).await
    }

    async fn write_changed(&self, jobstore: String, job: Job) -> Result<Job, SchedulerError> {
        let stored = self.inner.store(&jobstore)?.update_job(job).await?;
        self.inner.emit(Event::JobModified {
            job_id: stored.id.clone(),
            jobstore,
        });
        self.inner.wake_if_earlier(stored.next_run_time);
        Ok(stored)
    }

    /// Gives a job a new trigger; its next run time is computed from now.
    pub async fn reschedule_job(
        &self,
        id: &str,
        trigger: TriggerSpec,
    ) -> Result<Job, SchedulerError> {
        self.modify_job(
            id,
            JobChanges {
                trigger: Some(trigger),
                ..JobChanges::default()
            },
        )
        .await
    }

    /// Pauses a job: it keeps its place but has no next run time.
    pub async fn pause_job(&self, id: &str) -> Result<Job, SchedulerError> {
        let (jobstore, mut job) = self.inner.find_job(id).await?;
        job.paused = true;
        job.next_run_time = None;
        self.write_changed(jobstore, job).await
    }

    /// Resumes a paused job: its next run time is computed from now. A job whose
    /// trigger has no fire time left is removed, and `None` is returned.
    pub async fn resume_job(&self, id: &str) -> Result<Option<Job>, SchedulerError> {
        let (jobstore, mut job) = self.inner.find_job(id).await?;
        if !job.paused {
            return Ok(Some(job));
        }
        let now = self.inner.clock.now();
        match job.trigger.next_fire_time(None, now) {
            Some(next) => {
                job.paused = false;
                job.next_run_time = Some(next);
                self.write_changed(jobstore, job).await.map(Some)
            }
            None => {
                self.remove_job(id).await?;
                Ok(None)
            }
        }
    }

    /// Removes a job. A run in progress finishes; the job does not run again.
    pub async fn remove_job(&self, id: &str) -> Result<(), SchedulerError> {
        for (name, store) in &self.inner.stores {
            match store.remove_job(id).await {
                Ok(()) => {
                    self.inner.emit(Event::JobRemoved {
                        job_id: id.to_owned(),
                        jobstore: name.clone(),
                    });
                    return Ok(());
                }
                Err(StoreError::NotFound(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(SchedulerError::JobNotFound(id.to_owned()))
    }

    /// Removes every job from every store.
    pub async fn remove_all_jobs(&self) -> Result<(), SchedulerError> {
        for (name, store) in &self.inner.stores {
            let jobs = store.get_jobs().await?;
            store.remove_all_jobs().await?;
            for job in jobs {
                self.inner.emit_with(|| Event::JobRemoved {
                    job_id: job.id,
                    jobstore: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The job with this id.
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>, SchedulerError> {
        match self.inner.find_job(id).await {
            Ok((_, job)) => Ok(Some(job)),
            Err(SchedulerError::JobNotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// All jobs of all stores, by next run time, paused ones last.
    pub async fn get_jobs(&self) -> Result<Vec<Job>, SchedulerError> {
        let mut jobs = Vec::new();
        for store in self.inner.stores.values() {
            jobs.extend(store.get_jobs().await?);
        }
        jobs.sort_by_key(|job| (job.next_run_time.is_none(), job.next_run_time));
        Ok(jobs)
    }

    /// Runs a job now, once, outside its schedule (its next run time is unchanged).
    /// Returns the run id. `max_instances` still applies.
    pub async fn run_job_now(&self, id: &str) -> Result<String, SchedulerError> {
        let (jobstore, job) = self.inner.find_job(id).await?;
        let now = self.inner.clock.now();
        main_loop::submit_runs(&self.inner, &jobstore, &job, &[now], now)
            .await
            .map_err(SchedulerError::from)
    }

    /// Run records, newest first, of one job or of all.
    pub async fn runs(
        &self,
        job_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, SchedulerError> {
        let mut runs = Vec::new();
        for store in self.inner.stores.values() {
            runs.extend(store.runs(job_id, limit).await?);
        }
        runs.sort_by_key(|run| std::cmp::Reverse(run.finished_at));
        runs.truncate(limit);
        Ok(runs)
    }
}

/// Builds the submission of `job`'s runs for `scheduled_times` (earliest first).
fn submission(
    inner: &Inner,
    job: &Job,
    scheduled_times: &[DateTime<Utc>],
    start_at: DateTime<Utc>,
) -> Option<Submission> {
    let task = inner.tasks.get(&job.task)?;
    let runs = scheduled_times
        .iter()
        .map(|scheduled_time| TaskRun {
            job_id: job.id.clone(),
            run_id: generate_id(),
            scheduled_time: *scheduled_time,
            args: job.args.clone(),
        })
        .collect();
    Some(Submission {
        runs,
        task_name: job.task.clone(),
        task,
        start_at,
    })
}
