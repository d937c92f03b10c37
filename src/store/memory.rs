//! `memory://`: jobs in this process only, gone with it.
//!
//! Jobs sit in a map by id and in an ordered index by next run time, so the earliest
//! job and the due batch are found without a scan, up to millions of pending jobs. Run
//! history is a bounded ring. Everything is under one mutex held only for in-memory
//! work, never across an await.
//!
//! A million pending one-off jobs is the workload to size for (issue 9): jobs are kept
//! compact ([`compact`]), the map holds one pointer per job and finds it by the id the
//! job holds, and both indexes share that same id allocation.

mod compact;
mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use self::compact::{Names, StoredJob};
use self::tables::{JobTable, Timed};
use super::{FinishedRun, InstanceClaim, JobStore, NodeInfo, Release, StoreError};
use crate::history::RunRecord;
use crate::job::Job;

/// How many run records the memory store keeps by default.
pub const DEFAULT_HISTORY: usize = 10_000;

/// A job store in memory.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    history_limit: usize,
}

#[derive(Debug, Default)]
struct State {
    jobs: JobTable,
    /// Task and executor names, shared by the stored jobs.
    names: Names,
    /// Jobs that are due some time: not paused, not acquired.
    due_index: BTreeSet<Timed>,
    /// Acquired jobs by lease expiry.
    leases: BTreeSet<Timed>,
    /// The owners of each job's running instances, one entry per instance (so a
    /// scheduler only ever frees its own).
    instances: HashMap<Arc<str>, Vec<Arc<str>>>,
    runs: VecDeque<RunRecord>,
    next_revision: u64,
    /// The membership: a memory store is never shared, but the scheduler registers
    /// itself all the same, so `kairos cluster` shows one node.
    nodes: BTreeMap<String, NodeInfo>,
}

#[derive(Debug)]
pub(in crate::store::memory) struct Entry {
    pub(in crate::store::memory) job: StoredJob,
    lease: Option<DateTime<Utc>>,
    /// Who acquired the job last, until a release, a recovery or a reap ends it. It
    /// outlives an expired lease that nobody took over (as the SQL store's
    /// `lease_owner` does), so a late release from a paused owner is still accepted
    /// then, and only then: the fencing rule of [`JobStore::release_jobs`].
    holder: Option<Arc<str>>,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store keeping the last [`DEFAULT_HISTORY`] run records.
    pub fn new() -> MemoryStore {
        MemoryStore::with_history_limit(DEFAULT_HISTORY)
    }

    /// An empty store keeping the last `limit` run records.
    pub fn with_history_limit(limit: usize) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            history_limit: limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the maps half-updated (every method finishes
        // its writes before returning), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn bump(&mut self) -> u64 {
        self.next_revision += 1;
        self.next_revision
    }

    /// Inserts a job whose id must be new: one hash of the id for the check and the
    /// insert, since adding is the hot path of the one-off-job workload.
    fn insert_new(&mut self, mut job: Job) -> Result<Job, StoreError> {
        job.revision = self.next_revision + 1;
        let stored = StoredJob::new(&job, &mut self.names);
        let id = Arc::clone(&stored.id);
        let entry = Entry {
            job: stored,
            lease: None,
            holder: None,
        };
        if !self.jobs.insert_new(entry) {
            return Err(StoreError::Conflict(job.id));
        }
        self.next_revision += 1;
        if let Some(next) = job.next_run_time {
            self.due_index.insert(Timed::new(next, &id));
        }
        Ok(job)
    }

    /// Inserts or overwrites a job that is not acquired.
    fn put(&mut self, mut job: Job) -> Job {
        job.revision = self.bump();
        let stored = StoredJob::new(&job, &mut self.names);
        let id = Arc::clone(&stored.id);
        let lease = self.unindex(&id);
        if lease.is_none() {
            if let Some(next) = job.next_run_time {
                self.due_index.insert(Timed::new(next, &id));
            }
        }
        let holder = self.jobs.get(&id).and_then(|entry| entry.holder.clone());
        if let Some(expiry) = lease {
            // The lease index must hold the allocation the new entry holds.
            self.leases.remove(&Timed::new(expiry, &id));
            self.leases.insert(Timed::new(expiry, &id));
        }
        self.jobs.insert(Entry {
            job: stored,
            lease,
            holder,
        });
        job
    }

    /// Drops a job from the due index; returns its lease if it is acquired.
    fn unindex(&mut self, id: &Arc<str>) -> Option<DateTime<Utc>> {
        let entry = self.jobs.get(id)?;
        match entry.lease {
            Some(expiry) => Some(expiry),
            None => {
                if let Some(next) = entry.job.next_run_time {
                    self.due_index.remove(&Timed::new(next, id));
                }
                None
            }
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(entry) = self.jobs.remove(id) else {
            return false;
        };
        let key = Arc::clone(&entry.job.id);
        match entry.lease {
            Some(expiry) => {
                self.leases.remove(&Timed::new(expiry, &key));
            }
            None => {
                if let Some(next) = entry.job.next_run_time {
                    self.due_index.remove(&Timed::new(next, &key));
                }
            }
        }
        true
    }

    /// Puts jobs whose owner let the lease run out back among the due jobs.
    fn reclaim_expired_leases(&mut self, now: DateTime<Utc>) {
        while let Some(Timed { at: expiry, id, .. }) = self.leases.first().cloned() {
            if expiry > now {
                break;
            }
            self.leases.pop_first();
            // The holder stays: until someone else acquires the job, its owner's late
            // release is still the one that decides.
            self.expire_lease(&id);
        }
    }

    /// Makes an acquired job due again, keeping its holder.
    fn expire_lease(&mut self, id: &Arc<str>) {
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.lease = None;
            if let Some(next) = entry.job.next_run_time {
                self.due_index.insert(Timed::new(next, id));
            }
        }
    }

    /// Ends an acquisition for good: the job is due again and nobody holds it.
    fn end_lease(&mut self, id: &Arc<str>) {
        if let Some(expiry) = self.jobs.get(id).and_then(|entry| entry.lease) {
            self.leases.remove(&Timed::new(expiry, id));
        }
        self.expire_lease(id);
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.holder = None;
        }
    }

    /// Ends the acquisition of job `id` and makes it due at `next`: one lookup and one
    /// write per index, since a recurring job's every run comes through here (issue 9:
    /// 10,000 jobs due in the same second).
    fn reschedule(&mut self, id: &Arc<str>, next: DateTime<Utc>) {
        let revision = self.bump();
        let State {
            jobs,
            due_index,
            leases,
            ..
        } = self;
        let Some(entry) = jobs.get_mut(id) else {
            return;
        };
        match entry.lease.take() {
            Some(expiry) => {
                leases.remove(&Timed::new(expiry, id));
            }
            // The lease ran out and nobody took the job: it is due at its old time.
            None => {
                if let Some(old) = entry.job.next_run_time {
                    due_index.remove(&Timed::new(old, id));
                }
            }
        }
        entry.holder = None;
        entry.job.next_run_time = Some(next);
        entry.job.revision = revision;
        due_index.insert(Timed::new(next, id));
    }

    /// Ends every acquisition `owner` holds; returns how many.
    fn end_leases_of(&mut self, owner: &str) -> u64 {
        let held: Vec<Arc<str>> = self
            .jobs
            .values()
            .filter(|entry| entry.holder.as_deref() == Some(owner))
            .map(|entry| Arc::clone(&entry.job.id))
            .collect();
        for id in &held {
            self.end_lease(id);
        }
        u64::try_from(held.len()).unwrap_or(u64::MAX)
    }

    /// Takes one of `job_id`'s `max_instances` slots for `owner`, if one is free.
    fn claim_slot(&mut self, job_id: &str, owner: &Arc<str>, max_instances: u32) -> bool {
        let limit = usize::try_from(max_instances).unwrap_or(usize::MAX);
        // Looked up by `&str` first: only a job with no running instance needs its id
        // allocated as a key.
        if let Some(owners) = self.instances.get_mut(job_id) {
            if owners.len() >= limit {
                return false;
            }
            owners.push(Arc::clone(owner));
            return true;
        }
        if limit == 0 {
            return false;
        }
        self.instances
            .insert(Arc::from(job_id), vec![Arc::clone(owner)]);
        true
    }

    /// Frees one of `owner`'s slots of `job_id`.
    fn free_slot(&mut self, job_id: &str, owner: &str) {
        if let Some(owners) = self.instances.get_mut(job_id) {
            if let Some(position) = owners.iter().rposition(|held| &**held == owner) {
                owners.swap_remove(position);
            }
            if owners.is_empty() {
                self.instances.remove(job_id);
            }
        }
    }

    /// Appends a run record, dropping the oldest beyond `limit`.
    fn push_run(&mut self, record: RunRecord, limit: usize) {
        if limit == 0 {
            return;
        }
        while self.runs.len() >= limit {
            self.runs.pop_front();
        }
        self.runs.push_back(record);
    }

    /// Frees every instance slot `owner` holds; returns how many.
    fn free_slots_of(&mut self, owner: &str) -> u64 {
        let mut freed = 0;
        self.instances.retain(|_, owners| {
            let before = owners.len();
            owners.retain(|held| &**held != owner);
            freed += before - owners.len();
            !owners.is_empty()
        });
        u64::try_from(freed).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn add_job(&self, job: Job) -> Result<Job, StoreError> {
        self.lock().insert_new(job)
    }

    async fn add_jobs(&self, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        // One lock for the whole batch.
        let mut state = self.lock();
        jobs.into_iter().map(|job| state.insert_new(job)).collect()
    }

    async fn replace_job(&self, job: Job) -> Result<Job, StoreError> {
        Ok(self.lock().put(job))
    }

    async fn update_job(&self, job: Job) -> Result<Job, StoreError> {
        let mut state = self.lock();
        if !state.jobs.contains_key(job.id.as_str()) {
            return Err(StoreError::NotFound(job.id));
        }
        Ok(state.put(job))
    }

    async fn remove_job(&self, id: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        // The instance count stays: runs still going release it, and a job re-added
        // under the same id must not run beside them past its max_instances.
        if state.remove(id) {
            Ok(())
        } else {
            Err(StoreError::NotFound(id.to_owned()))
        }
    }

    async fn remove_all_jobs(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.jobs.clear();
        state.due_index.clear();
        state.leases.clear();
        Ok(())
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().jobs.get(id).map(|entry| entry.job.to_job()))
    }

    async fn count_jobs(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.lock().jobs.len()).unwrap_or(u64::MAX))
    }

    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut jobs: Vec<Job> = self
            .lock()
            .jobs
            .values()
            .map(|entry| entry.job.to_job())
            .collect();
        jobs.sort_by(|left, right| {
            let key = |job: &Job| (job.next_run_time.is_none(), job.next_run_time);
            key(left)
                .cmp(&key(right))
                .then_with(|| left.id.cmp(&right.id))
        });
        Ok(jobs)
    }

    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.lock();
        let next_due = state.due_index.first().map(|key| key.at);
        // An expiring lease makes its job due again; wake up for that too.
        let next_expiry = state.leases.first().map(|key| key.at);
        Ok(match (next_due, next_expiry) {
            (Some(due), Some(expiry)) => Some(due.min(expiry)),
            (due, expiry) => due.or(expiry),
        })
    }

    async fn acquire_due_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        let mut state = self.lock();
        state.reclaim_expired_leases(now);
        let expiry = now + TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX / 2);
        let mut acquired = Vec::new();
        // One allocation of the owner for the batch, shared by its jobs.
        let holder: Arc<str> = Arc::from(owner);
        while acquired.len() < limit {
            let Some(Timed { at: next, id, .. }) = state.due_index.first().cloned() else {
                break;
            };
            if next > now {
                break;
            }
            state.due_index.pop_first();
            state.leases.insert(Timed::new(expiry, &id));
            if let Some(entry) = state.jobs.get_mut(&id) {
                entry.lease = Some(expiry);
                entry.holder = Some(Arc::clone(&holder));
                acquired.push(entry.job.to_job());
            }
        }
        Ok(acquired)
    }

    async fn release_jobs(
        &self,
        owner: &str,
        releases: Vec<Release>,
    ) -> Result<Vec<String>, StoreError> {
        let mut state = self.lock();
        let mut fenced = Vec::new();
        for release in releases {
            let Some((id, holder_is_owner, schedule_untouched, revision)) =
                state.jobs.get(release.job_id.as_str()).map(|entry| {
                    (
                        Arc::clone(&entry.job.id),
                        entry.holder.as_deref() == Some(owner),
                        entry.job.next_run_time == release.acquired_next_run_time,
                        entry.job.revision,
                    )
                })
            else {
                continue; // removed while it ran: it stays removed
            };
            if !holder_is_owner {
                // Our lease is gone (taken over, recovered or reaped): whoever holds
                // the job now decides its next run time.
                fenced.push(release.job_id);
                continue;
            }
            if revision != release.revision && !schedule_untouched {
                // Changed while acquired, schedule included: the change wins.
                state.end_lease(&id);
                continue;
            }
            match release.next_run_time {
                None => {
                    state.end_lease(&id);
                    state.remove(&id);
                }
                Some(next) => state.reschedule(&id, next),
            }
        }
        Ok(fenced)
    }

    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
    ) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .claim_slot(job_id, &Arc::from(owner), max_instances))
    }

    async fn claim_instances(
        &self,
        owner: &str,
        claims: &[InstanceClaim],
    ) -> Result<Vec<bool>, StoreError> {
        // One lock and one owner allocation for the batch: at 10,000 runs a second,
        // a lock per run is what the main loop waits on (issue 9, recurring).
        let owner: Arc<str> = Arc::from(owner);
        let mut state = self.lock();
        Ok(claims
            .iter()
            .map(|claim| state.claim_slot(&claim.job_id, &owner, claim.max_instances))
            .collect())
    }

    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.lock().free_slot(job_id, owner);
        Ok(())
    }

    async fn finish_runs(&self, owner: &str, runs: Vec<FinishedRun>) -> Result<(), StoreError> {
        // One lock for the batch, as `claim_instances`.
        let mut state = self.lock();
        for run in runs {
            if run.frees_instance {
                state.free_slot(&run.record.job_id, owner);
            }
            state.push_run(run.record, self.history_limit);
        }
        Ok(())
    }

    async fn recover_owner(&self, owner: &str) -> Result<u64, StoreError> {
        let mut state = self.lock();
        Ok(state.end_leases_of(owner) + state.free_slots_of(owner))
    }

    async fn register_node(&self, node: NodeInfo) -> Result<(), StoreError> {
        self.lock().nodes.insert(node.id.clone(), node);
        Ok(())
    }

    async fn heartbeat(&self, node_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(match self.lock().nodes.get_mut(node_id) {
            Some(node) => {
                node.last_heartbeat = now;
                true
            }
            None => false,
        })
    }

    async fn deregister_node(&self, node_id: &str) -> Result<(), StoreError> {
        self.lock().nodes.remove(node_id);
        Ok(())
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        Ok(self.lock().nodes.values().cloned().collect())
    }

    async fn reap_dead_nodes(
        &self,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let cutoff = TimeDelta::from_std(timeout)
            .ok()
            .and_then(|timeout| now.checked_sub_signed(timeout))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut state = self.lock();
        let dead: Vec<String> = state
            .nodes
            .values()
            .filter(|node| node.last_heartbeat < cutoff)
            .map(|node| node.id.clone())
            .collect();
        for id in &dead {
            state.nodes.remove(id);
            state.end_leases_of(id);
            state.free_slots_of(id);
        }
        Ok(dead)
    }

    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        self.lock().push_run(record, self.history_limit);
        Ok(())
    }

    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.lock();
        Ok(state
            .runs
            .iter()
            .rev()
            .filter(|run| job_id.is_none_or(|id| run.job_id == id))
            .take(limit)
            .cloned()
            .collect())
    }
}
