//! Shared test helpers: jobs and releases for store tests, a task that records its
//! runs, and a job store that fails on command.
//!
//! [`FaultyStore`] delegates to a [`MemoryStore`] and can be switched to answer
//! `Unavailable` to every call (a store that went away), to refuse the next releases,
//! or to report a history backlog for retention; it counts the calls tests care about.

#![allow(dead_code)] // Each test file uses a different part.

pub mod daemon;
pub mod shared_store;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use kairos::history::RunRecord;
use kairos::job::Job;
use kairos::store::memory::MemoryStore;
use kairos::store::prelude::*;
use kairos::store::{FinishedRun, InstanceClaim, Release, RunLimits, StoreError};
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::{Trigger, TriggerContext, TriggerSpec};

/// 2030-01-01T00:00:00Z, the start of every store test's schedules.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000, 0).unwrap_or_default()
}

/// `seconds` as a time delta.
pub fn secs(seconds: i64) -> TimeDelta {
    TimeDelta::seconds(seconds)
}

/// A `date` trigger firing `second` seconds after [`t0`].
pub fn date_at(second: i64) -> TriggerSpec {
    serde_json::from_value(serde_json::json!({
        "type": "date", "run_date": (t0() + secs(second)).to_rfc3339(),
    }))
    .unwrap_or_else(|error| panic!("a test trigger: {error}"))
}

/// Moves `clock` from its time to `until` in `step`s, giving the scheduler a moment of
/// real time after each (and a little more at the end).
pub async fn step_to(clock: &kairos::clock::ManualClock, until: DateTime<Utc>, step: Duration) {
    use kairos::clock::Clock;
    let step = TimeDelta::from_std(step).unwrap_or(TimeDelta::MAX);
    while clock.now() < until {
        let next = clock
            .now()
            .checked_add_signed(step)
            .unwrap_or(until)
            .min(until);
        clock.set(next);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Waits, in real time, until `done` holds (checked every 10 ms, for up to 10 s): for
/// what the scheduler does after the simulated clock moved, which a loaded machine may
/// take a while to get to. Whether it came to hold.
pub async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Starts of the `slow` task ([`slow_task`]): (job id, scheduled time, started at).
pub type Started = Arc<Mutex<Vec<(String, DateTime<Utc>, DateTime<Utc>)>>>;

/// A task `slow` that notes each start and runs for `took` of the scheduler's clock.
pub fn slow_task(clock: &kairos::clock::ManualClock, took: Duration) -> (TaskRegistry, Started) {
    use kairos::clock::Clock;
    let started: Started = Arc::default();
    let mut tasks = TaskRegistry::new();
    let seen = Arc::clone(&started);
    let clock = clock.clone();
    tasks.register_fn("slow", move |run: TaskRun| {
        let now = clock.now();
        seen.lock()
            .unwrap()
            .push((run.job_id.clone(), run.scheduled_time, now));
        let clock = clock.clone();
        async move {
            let end = now + TimeDelta::from_std(took).unwrap();
            while clock.now() < end {
                clock.sleep_until(end).await;
            }
            Ok::<String, TaskFailure>(String::new())
        }
    });
    (tasks, started)
}

/// The lease store tests acquire with.
pub const LEASE: Duration = Duration::from_secs(60);

/// A job that runs every 10 s from [`t0`]; its next run time is `next` (paused when
/// `None`).
pub fn job(id: &str, next: Option<DateTime<Utc>>) -> Job {
    let spec: TriggerSpec = serde_json::from_value(serde_json::json!({
        "type": "interval", "seconds": 10, "start_date": "2030-01-01T00:00:00Z", "timezone": "UTC",
    }))
    .unwrap_or_else(|error| panic!("a test trigger: {error}"));
    Job {
        id: id.to_owned(),
        name: format!("job {id}"),
        task: "noop".to_owned(),
        args: serde_json::json!({"id": id}),
        trigger: Trigger::new(spec, &TriggerContext::new(t0()))
            .unwrap_or_else(|error| panic!("a test trigger: {error}")),
        executor: "default".to_owned(),
        misfire_grace_time: None,
        coalesce: true,
        max_instances: 1,
        overlap: Default::default(),
        jitter: None,
        paused: next.is_none(),
        next_run_time: next,
        revision: 0,
        config_spec: None,
        config_version: None,
        retry: Default::default(),
        expect_success: None,
    }
}

/// What a scheduler would write back for `job`, acquired as it is, with `next`.
pub fn release(job: &Job, next: Option<DateTime<Utc>>) -> Release {
    Release {
        job_id: job.id.clone(),
        revision: job.revision,
        acquired_next_run_time: job.next_run_time,
        next_run_time: next,
    }
}

/// (job id, scheduled time) of every run, in the order they ran.
pub type Runs = Arc<Mutex<Vec<(String, DateTime<Utc>)>>>;

/// Tasks with one task, `record`, that notes each run in the returned list.
pub fn recording_tasks() -> (TaskRegistry, Runs) {
    let runs: Runs = Arc::default();
    let mut tasks = TaskRegistry::new();
    let seen = Arc::clone(&runs);
    tasks.register_fn("record", move |run: TaskRun| {
        seen.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((run.job_id.clone(), run.scheduled_time));
        async { Ok::<String, TaskFailure>(String::new()) }
    });
    (tasks, runs)
}

/// Waits (in real time, at most 5 s) until `runs` holds `count` runs; returns them.
pub async fn wait_for_runs(runs: &Runs, count: usize) -> Vec<(String, DateTime<Utc>)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let seen = || {
        runs.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    };
    while seen().len() < count && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen()
}

/// What a [`FaultyStore`] has been told and has seen; shared with the test.
#[derive(Default)]
pub struct Faults {
    /// Every call fails with `Unavailable`.
    pub down: AtomicBool,
    /// How many more `release_jobs` calls fail.
    pub failing_releases: AtomicU32,
    /// Old run records waiting to be pruned.
    pub prune_backlog: AtomicU64,
    /// How many times `prune_runs` was called.
    pub prune_calls: AtomicU64,
    /// How many times `release_jobs` was called.
    pub release_calls: AtomicU64,
    /// How many more `claim_instances` calls fail.
    pub failing_claims: AtomicU32,
    /// How many times `claim_instance` (one slot) was called.
    pub claim_calls: AtomicU64,
    /// How many more `finish_runs` calls fail.
    pub failing_finishes: AtomicU32,
    /// `acquire_due_jobs` never returns (a statement stuck on the server).
    pub hang_acquire: AtomicBool,
    /// `get_job` never returns.
    pub hang_reads: AtomicBool,
}

/// Takes one from `counter` if it is above zero; true if it did (the call fails).
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

/// A memory store that fails when told to.
pub struct FaultyStore {
    jobs: MemoryStore,
    pub faults: Arc<Faults>,
}

impl FaultyStore {
    pub fn new() -> (FaultyStore, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let store = FaultyStore {
            jobs: MemoryStore::new(),
            faults: Arc::clone(&faults),
        };
        (store, faults)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.faults.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable(
                "the test took the store down".to_owned(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Jobs for FaultyStore {
    async fn add_job(&self, job: Job) -> Result<Job, StoreError> {
        self.check()?;
        self.jobs.add_job(job).await
    }

    async fn replace_job(&self, job: Job) -> Result<Job, StoreError> {
        self.check()?;
        self.jobs.replace_job(job).await
    }

    async fn update_job(&self, job: Job) -> Result<Job, StoreError> {
        self.check()?;
        self.jobs.update_job(job).await
    }

    async fn remove_job(&self, id: &str) -> Result<(), StoreError> {
        self.check()?;
        self.jobs.remove_job(id).await
    }

    async fn remove_all_jobs(&self) -> Result<(), StoreError> {
        self.check()?;
        self.jobs.remove_all_jobs().await
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.check()?;
        if self.faults.hang_reads.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.jobs.get_job(id).await
    }
}
#[async_trait]
impl JobListing for FaultyStore {
    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        self.check()?;
        self.jobs.get_jobs().await
    }
}

#[async_trait]
impl DueJobs for FaultyStore {
    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.check()?;
        self.jobs.next_run_time().await
    }

    async fn acquire_due_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        self.check()?;
        if self.faults.hang_acquire.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.jobs.acquire_due_jobs(owner, now, limit, lease).await
    }

    async fn release_jobs(
        &self,
        owner: &str,
        releases: &[Release],
    ) -> Result<Vec<String>, StoreError> {
        self.faults.release_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let failing = &self.faults.failing_releases;
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            return Err(StoreError::unavailable(
                "the test refused a release".to_owned(),
            ));
        }
        self.jobs.release_jobs(owner, releases).await
    }
}

#[async_trait]
impl InstanceSlots for FaultyStore {
    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max: u32,
    ) -> Result<bool, StoreError> {
        self.faults.claim_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.jobs.claim_instance(job_id, owner, max).await
    }

    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.check()?;
        self.jobs.release_instance(job_id, owner).await
    }

    async fn claim_instances(
        &self,
        owner: &str,
        claims: &[InstanceClaim],
    ) -> Result<Vec<bool>, StoreError> {
        self.check()?;
        if take_one(&self.faults.failing_claims) {
            return Err(StoreError::unavailable(
                "the test refused a claim".to_owned(),
            ));
        }
        self.jobs.claim_instances(owner, claims).await
    }

    async fn finish_runs(&self, owner: &str, runs: Vec<FinishedRun>) -> Result<(), StoreError> {
        self.check()?;
        if take_one(&self.faults.failing_finishes) {
            return Err(StoreError::unavailable(
                "the test refused finished runs".to_owned(),
            ));
        }
        self.jobs.finish_runs(owner, runs).await
    }

    async fn running_times(&self, job_id: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        self.check()?;
        self.jobs.running_times(job_id).await
    }

    async fn wait_for_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.jobs
            .wait_for_instance(job_id, owner, max_instances, ttl)
            .await
    }

    async fn stop_waiting(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.check()?;
        self.jobs.stop_waiting(job_id, owner).await
    }
}

#[async_trait]
impl RunHistory for FaultyStore {
    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        self.check()?;
        self.jobs.record_run(record).await
    }

    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.check()?;
        self.jobs.runs(job_id, limit).await
    }

    async fn count_runs(&self) -> Result<u64, StoreError> {
        self.check()?;
        self.jobs.count_runs().await
    }

    async fn prune_runs(&self, _limits: &RunLimits, batch: usize) -> Result<u64, StoreError> {
        self.faults.prune_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let backlog = &self.faults.prune_backlog;
        let left = backlog.load(Ordering::SeqCst);
        let deleted = left.min(batch as u64);
        backlog.store(left - deleted, Ordering::SeqCst);
        Ok(deleted)
    }
}

/// Keeps no membership, as a store that cannot be shared.
impl Nodes for FaultyStore {}

/// Has the defaults of a store that cannot be shared.
impl Cluster for FaultyStore {}
