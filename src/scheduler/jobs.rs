//! The handle's job operations: add, change, pause, remove, list and run jobs.
//!
//! Each call checks its input against the task registry and the trigger rules, writes
//! to the job's store, announces the change and, when the change makes a job due
//! earlier than the loop planned to wake, wakes it. No lock is held across store I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{hand_over, Event, Inner, Scheduler, SchedulerError, SchedulerState};
use crate::executor::{Submission, Withdrawal};
use crate::history::RunRecord;
use crate::job::{generate_id, Job, JobChanges, JobOptions, JobSpec, SuccessWatch};
use crate::store::query::list_order;
use crate::store::{JobQuery, StoreError};
use crate::task::TaskRun;
use crate::trigger::{Trigger, TriggerSpec};

/// A watched job against its `expect_success_within` ([`Scheduler::success_watch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuccessWatchState {
    /// When its last successful run ended, if its run history holds one.
    pub last_success: Option<DateTime<Utc>>,
    /// When it is (or became) overdue: the last success, or the start of the watch if
    /// none since, plus the window.
    pub deadline: DateTime<Utc>,
    /// Whether the deadline has passed.
    pub overdue: bool,
}

/// A page of jobs as [`Scheduler::list_jobs`] gives it.
#[derive(Debug, Default)]
pub struct ListedJobs {
    /// The page: each job with the name of its store.
    pub jobs: Vec<(String, Job)>,
    /// How many jobs match in all.
    pub total: u64,
}

impl Scheduler {
    /// Adds a job; it fails if the task, trigger, executor, store or options are
    /// invalid, or the id is taken and `replace_existing` is not set.
    pub async fn add_job(&self, spec: JobSpec) -> Result<Job, SchedulerError> {
        let inner = &self.inner;
        let (jobstore, store) = {
            let name = self.jobstore_for(&spec);
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
        let config_spec = spec.from_config.then(|| Box::new(spec.canonical()));
        let context = inner.trigger_context();
        let task = inner
            .tasks
            .get(&spec.task)
            .ok_or_else(|| SchedulerError::unknown_task(&spec.task, &inner.tasks))?;
        task.check_args(&spec.args)
            .map_err(SchedulerError::InvalidArgs)?;
        let executor = spec
            .options
            .executor
            .clone()
            .unwrap_or_else(|| inner.defaults.executor.clone());
        if !inner.executors.contains_key(&executor) {
            return Err(SchedulerError::UnknownExecutor(executor));
        }
        let max_instances = spec
            .options
            .max_instances
            .unwrap_or(inner.defaults.max_instances);
        // The job's own policy, else its task's, else the scheduler's default.
        let retry = spec
            .options
            .retry
            .clone()
            .or_else(|| task.default_retry())
            .or_else(|| inner.defaults.retry.clone());
        let within = spec
            .options
            .expect_success_within
            .or(inner.defaults.expect_success_within);
        // The options as they will apply, checked by their kinds (src/job/options.rs),
        // as a config file's are.
        JobOptions {
            max_instances: Some(max_instances),
            retry: retry.clone(),
            expect_success_within: within,
            ..spec.options.clone()
        }
        .check()
        .map_err(|error| SchedulerError::InvalidOption {
            field: error.key,
            reason: error.reason,
        })?;
        let expect_success = within.map(|within| SuccessWatch {
            within,
            since: context.now,
        });
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
            overlap: spec.options.overlap.unwrap_or(inner.defaults.overlap),
            jitter: spec.options.jitter,
            paused: spec.paused,
            next_run_time,
            revision: 0,
            config_spec,
            config_version: spec.from_config.then_some(spec.config_version).flatten(),
            retry: crate::job::RetryState {
                policy: retry.filter(|policy| policy.max_attempts > 1),
                pending: None,
                failed: None,
                broken: None,
                pauses: 0,
            },
            expect_success,
        })
    }

    /// Applies `changes` to a job. A new trigger recomputes the next run time from now.
    pub async fn modify_job(&self, id: &str, changes: JobChanges) -> Result<Job, SchedulerError> {
        self.modify_job_if(id, changes, None).await
    }

    /// [`Scheduler::modify_job`], but only if the job's [`Job::revision`] is still
    /// `revision` (when given): otherwise [`SchedulerError::RevisionChanged`] and
    /// nothing is written. The API's `If-Match` rests on this; the revision is the
    /// store's, so it holds across nodes sharing the store. The store compares and
    /// writes in one step ([`crate::store::Jobs::update_job_if`]), so of two
    /// changes made from one revision only the first is written.
    pub async fn modify_job_if(
        &self,
        id: &str,
        changes: JobChanges,
        revision: Option<u64>,
    ) -> Result<Job, SchedulerError> {
        let inner = &self.inner;
        let (jobstore, mut job) = inner.find_job(id).await?;
        check_revision(&job, revision)?;
        let scheduled_before = job.next_run_time;
        let new_schedule = changes.trigger.is_some();
        if let Some(args) = changes.args {
            let task = inner
                .tasks
                .get(&job.task)
                .ok_or_else(|| SchedulerError::unknown_task(&job.task, &inner.tasks))?;
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
        if let Some(overlap) = changes.overlap {
            job.overlap = overlap;
        }
        if let Some(jitter) = changes.jitter {
            job.jitter = Some(jitter);
        }
        if changes.clear_expect_success_within {
            job.expect_success = None;
        }
        if let Some(within) = changes.expect_success_within {
            // The same window keeps its start; a new one starts now.
            if job.expect_success.as_ref().map(|watch| watch.within) != Some(within) {
                job.expect_success = Some(check_expect_success_within(within, inner.clock.now())?);
            }
        }
        if let Some(spec) = changes.trigger {
            let context = inner.trigger_context();
            job.trigger = Trigger::new(spec, &context)?;
            // A new schedule cancels a pending retry, and gives a failed or broken job a
            // new start.
            job.retry.pending = None;
            job.retry.failed = None;
            job.retry.broken = None;
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
                job.retry.pending = None;
                job.retry.failed = None;
                job.next_run_time = Some(next);
            }
        }
        let stored = self
            .write_changed_if(jobstore, job, scheduled_before, revision)
            .await?;
        if new_schedule {
            // A run held early for a time the new trigger keeps was planned with the
            // old one: taken back, the job is taken again at that time and planned anew.
            self.inner.withdraw_early_runs(&stored.id);
        }
        Ok(stored)
    }

    /// Writes a changed job; `scheduled_before` is its next run time before the change.
    async fn write_changed(
        &self,
        jobstore: String,
        job: Job,
        scheduled_before: Option<DateTime<Utc>>,
    ) -> Result<Job, SchedulerError> {
        self.write_changed_if(jobstore, job, scheduled_before, None)
            .await
    }

    /// [`Self::write_changed`], only if the stored job is still at `revision` (when
    /// given): the store compares and writes in one step where it can.
    async fn write_changed_if(
        &self,
        jobstore: String,
        job: Job,
        scheduled_before: Option<DateTime<Utc>>,
        revision: Option<u64>,
    ) -> Result<Job, SchedulerError> {
        let store = self.inner.store(&jobstore)?;
        let stored = match revision {
            None => store.update_job(job).await?,
            Some(expected) => {
                let id = job.id.clone();
                match store.update_job_if(job, expected).await? {
                    Ok(stored) => stored,
                    Err(revision) => return Err(SchedulerError::RevisionChanged { id, revision }),
                }
            }
        };
        // A run already handed over for the old time must not happen: the change moved
        // it (or paused the job). Other changes (args, name ...) leave it be.
        if stored.next_run_time != scheduled_before {
            self.inner.withdraw_early_runs(&stored.id);
        }
        // A run holding the job writes it back when it ends; the store leaves a new
        // schedule as it is then (its schedule version moved), and the run's end wakes
        // the loop to take the job at the time this change gave it.
        self.inner.note_change(&stored.id);
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
        self.reschedule_job_if(id, trigger, None).await
    }

    /// [`Scheduler::reschedule_job`], only if the job's revision is still `revision`
    /// (see [`Scheduler::modify_job_if`]).
    pub async fn reschedule_job_if(
        &self,
        id: &str,
        trigger: TriggerSpec,
        revision: Option<u64>,
    ) -> Result<Job, SchedulerError> {
        self.modify_job_if(
            id,
            JobChanges {
                trigger: Some(trigger),
                ..JobChanges::default()
            },
            revision,
        )
        .await
    }

    /// Pauses a job: it keeps its place but has no next run time.
    pub async fn pause_job(&self, id: &str) -> Result<Job, SchedulerError> {
        let (jobstore, mut job) = self.inner.find_job(id).await?;
        let scheduled_before = job.next_run_time;
        if !job.paused {
            // Counted, so a run going now learns at its end that a pause met it.
            job.retry.pauses = job.retry.pauses.saturating_add(1);
        }
        job.paused = true;
        job.next_run_time = None;
        // A pending retry is cancelled: resuming starts from the trigger again.
        job.retry.pending = None;
        self.write_changed(jobstore, job, scheduled_before).await
    }

    /// Resumes a paused job: its next run time is computed from now. A job whose
    /// trigger has no fire time left is removed, and `None` is returned.
    pub async fn resume_job(&self, id: &str) -> Result<Option<Job>, SchedulerError> {
        let (jobstore, mut job) = self.inner.find_job(id).await?;
        if !job.paused {
            return Ok(Some(job));
        }
        if job.retry.failed.is_some() {
            // A failed job paused goes back to failed: its time ran, and failed; only a
            // run-now (fresh attempts) or a new schedule runs it again.
            let scheduled_before = job.next_run_time;
            job.paused = false;
            job.next_run_time = None;
            return self
                .write_changed(jobstore, job, scheduled_before)
                .await
                .map(Some);
        }
        let now = self.inner.clock.now();
        match job.trigger.next_fire_time(None, now) {
            Some(next) => {
                let scheduled_before = job.next_run_time;
                job.paused = false;
                job.next_run_time = Some(next);
                self.write_changed(jobstore, job, scheduled_before)
                    .await
                    .map(Some)
            }
            None => {
                self.remove_job(id).await?;
                Ok(None)
            }
        }
    }

    /// Removes a job. A run in progress finishes; the job does not run again.
    pub async fn remove_job(&self, id: &str) -> Result<(), SchedulerError> {
        self.remove_job_if(id, None).await
    }

    /// [`Scheduler::remove_job`], only if the job's revision is still `revision`
    /// (see [`Scheduler::modify_job_if`]).
    pub async fn remove_job_if(
        &self,
        id: &str,
        revision: Option<u64>,
    ) -> Result<(), SchedulerError> {
        if revision.is_some() {
            let (_, job) = self.inner.find_job(id).await?;
            check_revision(&job, revision)?;
        }
        for (name, store) in &self.inner.stores {
            match store.remove_job(id).await {
                Ok(()) => {
                    self.inner.withdraw_early_runs(id);
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
                self.inner.withdraw_early_runs(&job.id);
                self.inner.job_removed(job.id, name);
            }
        }
        Ok(())
    }

    /// The job with this id.
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>, SchedulerError> {
        Ok(self.locate_job(id).await?.map(|(_, job)| job))
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

    /// One page of the jobs that match `query`, with the name of each one's store and
    /// how many match in all; only the store named `jobstore` when given (an unknown
    /// name lists nothing). Each store pages for itself; with several stores, each is
    /// asked for the first `offset + limit` and the pages are merged.
    pub async fn list_jobs(
        &self,
        query: &JobQuery,
        jobstore: Option<&str>,
    ) -> Result<ListedJobs, SchedulerError> {
        let stores: Vec<(&String, &Arc<dyn crate::store::JobStore>)> = self
            .inner
            .stores
            .iter()
            .filter(|(name, _)| jobstore.is_none_or(|wanted| wanted == name.as_str()))
            .collect();
        if let [(name, store)] = stores.as_slice() {
            let page = store.list_jobs(query).await?;
            return Ok(ListedJobs {
                jobs: page
                    .jobs
                    .into_iter()
                    .map(|job| ((*name).clone(), job))
                    .collect(),
                total: page.total,
            });
        }
        let widened = JobQuery {
            offset: 0,
            limit: query.offset.saturating_add(query.limit),
            ..query.clone()
        };
        let mut jobs = Vec::new();
        let mut total: u64 = 0;
        for (name, store) in stores {
            let page = store.list_jobs(&widened).await?;
            total = total.saturating_add(page.total);
            jobs.extend(page.jobs.into_iter().map(|job| (name.clone(), job)));
        }
        jobs.sort_by(|(_, left), (_, right)| list_order(left, right));
        let jobs = jobs
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect();
        Ok(ListedJobs { jobs, total })
    }

    /// The job with this id and the name of the store that holds it.
    pub async fn locate_job(&self, id: &str) -> Result<Option<(String, Job)>, SchedulerError> {
        match self.inner.find_job(id).await {
            Ok(found) => Ok(Some(found)),
            Err(SchedulerError::JobNotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The name of the store [`Scheduler::add_job`] puts `spec` in: its own
    /// `jobstore` option or the default.
    pub fn jobstore_for<'a>(&'a self, spec: &'a JobSpec) -> &'a str {
        spec.options
            .jobstore
            .as_deref()
            .unwrap_or(&self.inner.defaults.jobstore)
    }

    /// The names of the scheduler's job stores.
    pub fn jobstore_names(&self) -> Vec<String> {
        self.inner.stores.keys().cloned().collect()
    }

    /// The jobs the daemon's config files own, of all stores (see
    /// [`JobListing::get_config_jobs`](crate::store::JobListing::get_config_jobs)).
    pub async fn get_config_jobs(&self) -> Result<Vec<Job>, SchedulerError> {
        let mut jobs = Vec::new();
        for store in self.inner.stores.values() {
            jobs.extend(store.get_config_jobs().await?);
        }
        Ok(jobs)
    }

    /// How many run records all stores hold: the history's size.
    pub async fn count_runs(&self) -> Result<u64, SchedulerError> {
        let mut count: u64 = 0;
        for store in self.inner.stores.values() {
            count = count.saturating_add(store.count_runs().await?);
        }
        Ok(count)
    }

    /// How many jobs all stores hold.
    pub async fn count_jobs(&self) -> Result<u64, SchedulerError> {
        let mut count: u64 = 0;
        for store in self.inner.stores.values() {
            count = count.saturating_add(store.count_jobs().await?);
        }
        Ok(count)
    }

    /// How many jobs are in each state, across all stores, as the stores count them
    /// ([`crate::store::JobListing::count_job_states`]): no job is read.
    pub async fn count_job_states(&self) -> Result<crate::store::JobCounts, SchedulerError> {
        let mut counts = crate::store::JobCounts::default();
        for store in self.inner.stores.values() {
            counts = counts.plus(store.count_job_states().await?);
        }
        Ok(counts)
    }

    /// Where `job`, held in store `jobstore`, stands against its dead-man's switch
    /// (`expect_success_within`, docs/alerts.md): its last success, the deadline that
    /// gives, and whether the deadline has passed on the scheduler's clock — what the
    /// switch judges when it raises `overdue`. `None` for a job without the option, at
    /// no cost; otherwise one read of the job's last success.
    pub async fn success_watch(
        &self,
        jobstore: &str,
        job: &Job,
    ) -> Result<Option<SuccessWatchState>, SchedulerError> {
        let Some(watch) = &job.expect_success else {
            return Ok(None);
        };
        let last_success = self.inner.store(jobstore)?.last_success(&job.id).await?;
        let deadline = watch.deadline(last_success);
        Ok(Some(SuccessWatchState {
            last_success,
            deadline,
            overdue: self.inner.clock.now() >= deadline,
        }))
    }

    /// Sets the metrics' gauges of state (jobs by state, the scheduler's state,
    /// executor load, unwritten runs) from cheap counts, before a scrape encodes them
    /// (docs/metrics.md).
    pub async fn refresh_metrics(&self) -> Result<(), SchedulerError> {
        use crate::metrics::{ExecutorLabels, StateLabels};
        let metrics = &self.inner.metrics;
        let counts = self.count_job_states().await?;
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        for (state, count) in [
            ("pending", counts.pending),
            ("paused", counts.paused),
            ("failed", counts.failed),
        ] {
            metrics
                .jobs
                .get_or_create(&StateLabels { state })
                .set(gauge(count));
        }
        let current = self.state();
        for (state, candidate) in [
            ("running", SchedulerState::Running),
            ("paused", SchedulerState::Paused),
            ("stopped", SchedulerState::Stopped),
        ] {
            metrics
                .scheduler_state
                .get_or_create(&StateLabels { state })
                .set(i64::from(candidate == current));
        }
        let count = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        for (name, executor) in &self.inner.executors {
            let load = executor.load();
            let labels = ExecutorLabels {
                executor: name.clone(),
            };
            metrics
                .executor_busy
                .get_or_create(&labels)
                .set(count(load.running));
            metrics
                .executor_queued
                .get_or_create(&labels)
                .set(count(load.waiting()));
            metrics
                .executor_capacity
                .get_or_create(&labels)
                .set(count(load.max_workers));
        }
        metrics.unwritten_runs.set(count(self.unwritten_runs()));
        Ok(())
    }

    /// The earliest next run time of any job that is neither paused nor running
    /// ahead, across all stores.
    pub async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        let mut earliest: Option<DateTime<Utc>> = None;
        for store in self.inner.stores.values() {
            if let Some(next) = store.next_run_time().await? {
                earliest = Some(earliest.map_or(next, |known| known.min(next)));
            }
        }
        Ok(earliest)
    }

    /// Runs a job now, once, outside its schedule (its next run time is unchanged).
    /// Returns the run id. `max_instances` still applies, with the job's `overlap`
    /// policy (the run may wait, or replace a running one).
    pub async fn run_job_now(&self, id: &str) -> Result<String, SchedulerError> {
        self.run_job_now_with(id, false).await
    }

    /// [`Scheduler::run_job_now`]; with `force` the run starts whatever
    /// `max_instances` and `overlap` say (it still counts as a running run).
    pub async fn run_job_now_with(&self, id: &str, force: bool) -> Result<String, SchedulerError> {
        let (jobstore, mut job) = self.inner.find_job(id).await?;
        let now = self.inner.clock.now();
        if job.retry.failed.is_some() {
            // A failed one-off job runs again with a fresh set of attempts, through the
            // loop like any due job (held, retried, kept as failed again if it fails).
            // Its run id is not known yet: the empty id says so.
            let scheduled_before = job.next_run_time;
            job.retry.failed = None;
            job.retry.pending = None;
            job.paused = false;
            job.next_run_time = Some(now);
            self.write_changed(jobstore, job, scheduled_before).await?;
            return Ok(String::new());
        }
        hand_over::submit_runs(&self.inner, &jobstore, &job, &[now], now, force)
            .await
            .map_err(SchedulerError::from)
    }

    /// Runs `id`'s fire times from `from` to `to` (both included) now, as Temporal's
    /// schedule backfill does: each time once, one after another, earliest first, as
    /// one submission under one instance slot (so `max_instances` holds: when the limit
    /// is reached they are skipped, wait or replace the oldest run, as the job's
    /// `overlap` says, and are recorded so). The job's own schedule is not
    /// touched. At most [`MAX_BACKFILL`] times; a one-off job has no times to fill in.
    /// Returns how many runs were handed over and the first one's run id.
    pub async fn backfill_job(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(usize, String), SchedulerError> {
        let (jobstore, job) = self.inner.find_job(id).await?;
        if job.trigger.kind() == "date" {
            return Err(SchedulerError::NothingToBackfill(id.to_owned()));
        }
        if from > to {
            return Err(SchedulerError::InvalidOption {
                field: "from",
                reason: format!("{from} is after to ({to})"),
            });
        }
        let times: Vec<DateTime<Utc>> = job
            .trigger
            .fire_times(from)
            .take_while(|time| *time <= to)
            .take(MAX_BACKFILL + 1)
            .collect();
        if times.len() > MAX_BACKFILL {
            return Err(SchedulerError::InvalidOption {
                field: "to",
                reason: format!(
                    "the range holds more than {MAX_BACKFILL} fire times; backfill it in parts"
                ),
            });
        }
        if times.is_empty() {
            return Ok((0, String::new()));
        }
        let now = self.inner.clock.now();
        let run_id =
            hand_over::submit_runs(&self.inner, &jobstore, &job, &times, now, false).await?;
        Ok((times.len(), run_id))
    }

    /// Run records, newest first, of one job or of all.
    pub async fn runs(
        &self,
        job_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, SchedulerError> {
        self.runs_from(job_id, 0, limit).await
    }

    /// [`Scheduler::runs`] after skipping the newest `offset`: a page of the whole
    /// history. With one store the store skips them; with several, each store's newest
    /// `offset + limit` are merged.
    pub async fn runs_from(
        &self,
        job_id: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<RunRecord>, SchedulerError> {
        if let [store] = self.inner.stores.values().collect::<Vec<_>>()[..] {
            return Ok(store.runs_from(job_id, offset, limit).await?);
        }
        let mut runs = Vec::new();
        let wanted = offset.saturating_add(limit);
        for store in self.inner.stores.values() {
            runs.extend(store.runs(job_id, wanted).await?);
        }
        runs.sort_by_key(|run| std::cmp::Reverse(run.finished_at));
        Ok(runs.into_iter().skip(offset).take(limit).collect())
    }
}

/// The most fire times one backfill runs ([`Scheduler::backfill_job`]).
pub const MAX_BACKFILL: usize = 1000;

/// A dead-man's switch of `within` that starts at `now`, or why it cannot be one.
fn check_expect_success_within(
    within: Duration,
    now: DateTime<Utc>,
) -> Result<crate::job::SuccessWatch, SchedulerError> {
    match crate::job::SuccessWatch::refuse_within(within) {
        Some(reason) => Err(SchedulerError::InvalidOption {
            field: "expect_success_within",
            reason,
        }),
        None => Ok(crate::job::SuccessWatch { within, since: now }),
    }
}

/// Builds the submission of `job`'s runs for `scheduled_times` (earliest first), handed
/// over at `now`.
pub(crate) fn submission(
    inner: &Inner,
    job: &Job,
    scheduled_times: &[DateTime<Utc>],
    start_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Submission> {
    // Runs resolve `${NAME}` in their args as they start (task/env_args.rs); the job
    // keeps the text as written.
    let (task_name, task) = inner.tasks.runnable_named(&job.task)?;
    let runs = scheduled_times
        .iter()
        .map(|scheduled_time| TaskRun {
            job_id: job.id.clone(),
            run_id: generate_id(),
            scheduled_time: *scheduled_time,
            args: job.args.clone(),
            from_config: job.is_from_config(),
        })
        .collect();
    Some(Submission {
        runs,
        task_name,
        task,
        start_at,
        // Runs handed over ahead of their time can be taken back until then, and the
        // later runs of a catch-up (several times of one job, run one after another)
        // until each starts: a pause or removal meanwhile stops the rest.
        // And runs that may wait for a running run of their job to end (`overlap`).
        withdrawal: if start_at > now
            || scheduled_times.len() > 1
            || job.overlap != crate::job::Overlap::Skip
        {
            Withdrawal::new()
        } else {
            Withdrawal::default()
        },
        // Set by the hand-over when the runs are judged again at their time.
        start_check: None,
        stop: crate::executor::RunStop::default(),
    })
}

/// [`SchedulerError::RevisionChanged`] unless `job` is at `revision` (or none is asked).
fn check_revision(job: &Job, revision: Option<u64>) -> Result<(), SchedulerError> {
    match revision {
        Some(expected) if expected != job.revision => Err(SchedulerError::RevisionChanged {
            id: job.id.clone(),
            revision: job.revision,
        }),
        _ => Ok(()),
    }
}
