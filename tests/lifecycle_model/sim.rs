//! The simulated world the checker drives the real scheduler in: a clock that knows
//! who sleeps until when, a store wrapper per node that can be cut off (an outage, a
//! killed process), and a task whose every start and end goes into a ground-truth log.
//!
//! Everything runs on one current-thread tokio runtime with tokio's time paused, so
//! "run until nothing can move" is one `tokio::time::sleep` away (the runtime only
//! advances its paused clock when every task is idle), and the simulated clock then
//! jumps to the next instant anybody sleeps until. The same seed gives the same
//! schedule of instants; the scheduler never reads the machine's clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use kairos::clock::{BoxFuture, Clock};
use kairos::history::RunRecord;
use kairos::job::Job;
use kairos::store::prelude::*;
use kairos::store::{
    FinishedRun, InstanceClaim, JobPage, JobQuery, NodeInfo, OrphanedRun, Release, RunLimits,
    StoreError, WakeUp,
};
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use tokio::sync::watch;

/// A clock that only moves when the driver sets it, and that knows the earliest
/// instant any task sleeps until, so the driver can jump straight there.
#[derive(Clone)]
pub struct SimClock {
    shared: Arc<ClockShared>,
}

struct ClockShared {
    time: watch::Sender<DateTime<Utc>>,
    /// Deadlines of the sleeps in progress, with how many sleep until each.
    sleepers: Mutex<BTreeMap<DateTime<Utc>, usize>>,
}

/// Removes its deadline from the clock's sleepers when the sleep ends or is dropped.
struct Sleeper {
    shared: Arc<ClockShared>,
    deadline: DateTime<Utc>,
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let mut sleepers = lock(&self.shared.sleepers);
        if let Some(count) = sleepers.get_mut(&self.deadline) {
            *count -= 1;
            if *count == 0 {
                sleepers.remove(&self.deadline);
            }
        }
    }
}

impl SimClock {
    pub fn new(start: DateTime<Utc>) -> SimClock {
        SimClock {
            shared: Arc::new(ClockShared {
                time: watch::Sender::new(start),
                sleepers: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    pub fn set(&self, instant: DateTime<Utc>) {
        self.shared.time.send_replace(instant);
    }

    /// The earliest deadline somebody sleeps until that is still ahead.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let now = self.now();
        lock(&self.shared.sleepers)
            .range((std::ops::Bound::Excluded(now), std::ops::Bound::Unbounded))
            .next()
            .map(|(deadline, _)| *deadline)
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        *self.shared.time.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()> {
        *lock(&self.shared.sleepers).entry(deadline).or_default() += 1;
        let sleeper = Sleeper {
            shared: Arc::clone(&self.shared),
            deadline,
        };
        let mut time = self.shared.time.subscribe();
        Box::pin(async move {
            let _sleeper = sleeper;
            // An error means the clock is gone: nobody can wake us.
            let _ = time.wait_for(|now| *now >= deadline).await;
        })
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What happened to the store as a whole: an outage every node sees.
#[derive(Default)]
pub struct StoreFaults {
    pub down: AtomicBool,
    /// Store calls in flight, over all nodes (the SQLite driver answers from a thread
    /// of its own, so "idle" means none of these are pending either).
    pub in_flight: AtomicUsize,
    /// Told when a store call starts ([`hold_time_while_the_store_works`]).
    pub busy: tokio::sync::Notify,
}

/// Keeps tokio's paused time from advancing while a store call is in flight, whoever
/// awaits it (the driver's own operation, the main loop, the record task): an idle
/// runtime would jump its clock to the next tokio timer, which may be the store
/// driver's own timeout (SQLite's pool waits for a connection with one). A task that
/// is always ready keeps the runtime from idling; it sleeps while no call is in flight.
pub async fn hold_time_while_the_store_works(faults: Arc<StoreFaults>) {
    loop {
        let started = faults.busy.notified();
        if faults.in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_micros(20));
            tokio::task::yield_now().await;
            continue;
        }
        started.await;
    }
}

/// One node's handle on the shared store: cut off during an outage, and for good once
/// its node is killed (a killed process writes nothing more, its leases and instance
/// slots stay behind for a successor or a reaper).
pub struct NodeStore {
    pub inner: Arc<dyn JobStore>,
    pub faults: Arc<StoreFaults>,
    pub killed: Arc<AtomicBool>,
    /// A kill aimed at a write-back, and who this handle's node is (node, incarnation).
    pub aim: AimedKills,
    pub node: (usize, usize),
    pub clock: SimClock,
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl NodeStore {
    fn enter(&self) -> Result<InFlight<'_>, StoreError> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("the node was killed".to_owned()));
        }
        if self.faults.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("simulated outage".to_owned()));
        }
        self.faults.in_flight.fetch_add(1, Ordering::SeqCst);
        self.faults.busy.notify_one();
        Ok(InFlight(&self.faults.in_flight))
    }
}

/// Every method of the trait goes through [`NodeStore::enter`], the defaults too, so a
/// killed node cannot recover, register or reap behind the checker's back.
#[async_trait]
impl Jobs for NodeStore {
    async fn add_job(&self, job: Job) -> Result<Job, StoreError> {
        let _in = self.enter()?;
        self.inner.add_job(job).await
    }

    async fn add_jobs(&self, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        let _in = self.enter()?;
        self.inner.add_jobs(jobs).await
    }

    async fn replace_job(&self, job: Job) -> Result<Job, StoreError> {
        let _in = self.enter()?;
        self.inner.replace_job(job).await
    }

    async fn update_job(&self, job: Job) -> Result<Job, StoreError> {
        let _in = self.enter()?;
        self.inner.update_job(job).await
    }

    async fn remove_job(&self, id: &str) -> Result<(), StoreError> {
        let _in = self.enter()?;
        self.inner.remove_job(id).await
    }

    async fn remove_all_jobs(&self) -> Result<(), StoreError> {
        let _in = self.enter()?;
        self.inner.remove_all_jobs().await
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let _in = self.enter()?;
        self.inner.get_job(id).await
    }
}
#[async_trait]
impl JobListing for NodeStore {
    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let _in = self.enter()?;
        self.inner.get_jobs().await
    }

    async fn get_config_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let _in = self.enter()?;
        self.inner.get_config_jobs().await
    }

    async fn count_jobs(&self) -> Result<u64, StoreError> {
        let _in = self.enter()?;
        self.inner.count_jobs().await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage, StoreError> {
        let _in = self.enter()?;
        self.inner.list_jobs(query).await
    }
}

#[async_trait]
impl DueJobs for NodeStore {
    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let _in = self.enter()?;
        self.inner.next_run_time().await
    }

    async fn acquire_due_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        let _in = self.enter()?;
        self.inner.acquire_due_jobs(owner, now, limit, lease).await
    }

    async fn release_jobs(
        &self,
        owner: &str,
        releases: &[Release],
    ) -> Result<Vec<String>, StoreError> {
        {
            let mut aim = lock(&self.aim);
            let successor = match &aim.armed {
                Some((job, KillPoint::WriteBack, successor))
                    if releases.iter().any(|release| release.job_id == *job) =>
                {
                    Some(*successor)
                }
                _ => None,
            };
            if let Some(successor) = successor {
                aim.armed = None;
                let (node, incarnation) = self.node;
                aim.fired
                    .push((node, incarnation, self.clock.now(), successor));
                self.killed.store(true, Ordering::SeqCst);
            }
        }
        let _in = self.enter()?;
        self.inner.release_jobs(owner, releases).await
    }
}

#[async_trait]
impl InstanceSlots for NodeStore {
    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
    ) -> Result<bool, StoreError> {
        let _in = self.enter()?;
        self.inner
            .claim_instance(job_id, owner, max_instances)
            .await
    }

    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let _in = self.enter()?;
        self.inner.release_instance(job_id, owner).await
    }

    async fn claim_instances(
        &self,
        owner: &str,
        claims: &[InstanceClaim],
    ) -> Result<Vec<bool>, StoreError> {
        let _in = self.enter()?;
        self.inner.claim_instances(owner, claims).await
    }

    async fn finish_runs(&self, owner: &str, runs: Vec<FinishedRun>) -> Result<(), StoreError> {
        let _in = self.enter()?;
        self.inner.finish_runs(owner, runs).await
    }

    async fn recover_owner(&self, owner: &str) -> Result<u64, StoreError> {
        let _in = self.enter()?;
        self.inner.recover_owner(owner).await
    }

    async fn take_orphaned_runs(&self, owner: &str) -> Result<Vec<OrphanedRun>, StoreError> {
        let _in = self.enter()?;
        self.inner.take_orphaned_runs(owner).await
    }

    async fn running_times(&self, job_id: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let _in = self.enter()?;
        self.inner.running_times(job_id).await
    }

    async fn wait_for_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let _in = self.enter()?;
        self.inner
            .wait_for_instance(job_id, owner, max_instances, ttl)
            .await
    }

    async fn stop_waiting(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let _in = self.enter()?;
        self.inner.stop_waiting(job_id, owner).await
    }
}

#[async_trait]
impl RunHistory for NodeStore {
    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        let _in = self.enter()?;
        self.inner.record_run(record).await
    }

    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let _in = self.enter()?;
        self.inner.runs(job_id, limit).await
    }

    async fn prune_runs(&self, limits: &RunLimits, batch: usize) -> Result<u64, StoreError> {
        let _in = self.enter()?;
        self.inner.prune_runs(limits, batch).await
    }

    async fn count_runs(&self) -> Result<u64, StoreError> {
        let _in = self.enter()?;
        self.inner.count_runs().await
    }
}

#[async_trait]
impl Nodes for NodeStore {
    async fn register_node(&self, node: NodeInfo) -> Result<(), StoreError> {
        let _in = self.enter()?;
        self.inner.register_node(node).await
    }

    async fn heartbeat(&self, node_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let _in = self.enter()?;
        self.inner.heartbeat(node_id, now).await
    }

    async fn heartbeat_node(&self, node: &NodeInfo) -> Result<bool, StoreError> {
        let _in = self.enter()?;
        self.inner.heartbeat_node(node).await
    }

    async fn deregister_node(&self, node_id: &str) -> Result<(), StoreError> {
        let _in = self.enter()?;
        self.inner.deregister_node(node_id).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let _in = self.enter()?;
        self.inner.list_nodes().await
    }

    async fn reap_dead_nodes(
        &self,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let _in = self.enter()?;
        self.inner.reap_dead_nodes(now, timeout).await
    }
}

#[async_trait]
impl Cluster for NodeStore {
    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<WakeUp>> {
        self.inner.wake_ups()
    }

    fn fire_ahead(&self) -> Duration {
        self.inner.fire_ahead()
    }
}

/// One execution of the `work` task, as the task itself saw it: the ground truth of
/// what ran, where and when, whatever the scheduler recorded.
#[derive(Clone, Debug)]
pub struct Execution {
    /// Which incarnation of which node ran it ([`Incarnation`]).
    pub node: usize,
    pub incarnation: usize,
    pub job_id: String,
    pub run_id: String,
    pub scheduled: DateTime<Utc>,
    pub started: DateTime<Utc>,
    /// `None` while it runs, and for good when its node was killed first.
    pub finished: Option<DateTime<Utc>>,
    pub failed: bool,
    /// The scheduler stopped it before its work was done (`overlap = "replace"`
    /// drops the task at its await point): `finished` is when.
    pub stopped_early: bool,
}

pub type Executions = Arc<Mutex<Vec<Execution>>>;

/// Where an aimed kill strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillPoint {
    /// As a run of the job starts (`OpKind::KillAtRunStart`).
    RunStart,
    /// As a write-back of the job reaches the store (`OpKind::KillAtWriteBack`).
    WriteBack,
}

/// A kill aimed at a run (`OpKind::KillAtRunStart`, `OpKind::KillAtWriteBack`), shared
/// by every node's `work` task and store handle: armed by the driver, fired by the
/// first node to reach its point for its job.
#[derive(Default)]
pub struct AimedKill {
    /// The job, where the kill strikes, and the successor's delay.
    pub armed: Option<(String, KillPoint, Option<i64>)>,
    /// Kills fired and not yet seen by the driver: node, incarnation, when, successor.
    pub fired: Vec<(usize, usize, DateTime<Utc>, Option<i64>)>,
}

pub type AimedKills = Arc<Mutex<AimedKill>>;

/// A task registry with one task, `work`: it sleeps on the simulated clock for
/// `args.ms` milliseconds and fails if `args.fail`. A killed node's runs neither start
/// nor end (the process is gone), so they never reach the log after the kill. A run of
/// the job `aim` is armed for kills its node as it starts, once it is in the log: in
/// the same poll, so the node writes nothing after the start.
pub fn work_tasks(
    clock: SimClock,
    log: Executions,
    node: usize,
    incarnation: usize,
    killed: Arc<AtomicBool>,
    aim: AimedKills,
) -> TaskRegistry {
    let mut tasks = TaskRegistry::new();
    tasks.register_fn("work", move |run: TaskRun| {
        let (clock, log, killed) = (clock.clone(), Arc::clone(&log), Arc::clone(&killed));
        let aim = Arc::clone(&aim);
        async move {
            if killed.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let ms = run.args.get("ms").and_then(|ms| ms.as_i64()).unwrap_or(0);
            let fail = run
                .args
                .get("fail")
                .and_then(|fail| fail.as_bool())
                .unwrap_or(false);
            let started = clock.now();
            let index = {
                let mut log = lock(&log);
                log.push(Execution {
                    node,
                    incarnation,
                    job_id: run.job_id.clone(),
                    run_id: run.run_id.clone(),
                    scheduled: run.scheduled_time,
                    started,
                    finished: None,
                    failed: fail,
                    stopped_early: false,
                });
                log.len() - 1
            };
            let fire = {
                let mut aim = lock(&aim);
                let successor = match &aim.armed {
                    Some((job, KillPoint::RunStart, successor)) if *job == run.job_id => {
                        Some(*successor)
                    }
                    _ => None,
                };
                if let Some(successor) = successor {
                    aim.armed = None;
                    aim.fired.push((node, incarnation, started, successor));
                }
                successor.is_some()
            };
            if fire {
                killed.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            // Dropped before its end (a replacement stops it), the run ends there.
            let mut stop = StoppedEarly {
                log: Arc::clone(&log),
                index,
                clock: clock.clone(),
                killed: Arc::clone(&killed),
                done: false,
            };
            let end = started + TimeDelta::milliseconds(ms);
            while clock.now() < end {
                clock.sleep_until(end).await;
            }
            if killed.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            stop.done = true;
            lock(&log)[index].finished = Some(clock.now());
            if fail {
                Err(TaskFailure::new("the scenario asked this run to fail"))
            } else {
                Ok(String::new())
            }
        }
    });
    tasks
}

/// Notes the end of a run of `work` whose future is dropped before its work is done:
/// the scheduler stopped it (`overlap = "replace"`). A killed node's runs are not
/// ended by it: a killed process ends nothing.
struct StoppedEarly {
    log: Executions,
    index: usize,
    clock: SimClock,
    killed: Arc<AtomicBool>,
    done: bool,
}

impl Drop for StoppedEarly {
    fn drop(&mut self) {
        if self.done || self.killed.load(Ordering::SeqCst) {
            return;
        }
        let mut log = lock(&self.log);
        if let Some(execution) = log.get_mut(self.index) {
            execution.finished = Some(self.clock.now());
            execution.stopped_early = true;
        }
    }
}

/// Runs every task of the current-thread runtime until none can move without the
/// simulated clock moving: tokio's paused clock only advances, firing the sleep below,
/// once every task is idle. Store calls answered by another thread (SQLite) are waited
/// for in real time. Returns false if the world never went quiet.
pub async fn settle(faults: &StoreFaults) -> bool {
    let mut quiet = 0;
    for _ in 0..1_000_000 {
        if faults.in_flight.load(Ordering::SeqCst) > 0 {
            // Waiting for another thread: let tokio time stand still meanwhile, or the
            // store driver's own timeouts would fire.
            quiet = 0;
            std::thread::sleep(Duration::from_micros(20));
            tokio::task::yield_now().await;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        if faults.in_flight.load(Ordering::SeqCst) == 0 {
            quiet += 1;
            if quiet >= 3 {
                return true;
            }
        }
    }
    false
}
