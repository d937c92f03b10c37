//! `memory://`: jobs in this process only, gone with it.
//!
//! Jobs sit in a map by id and in an ordered index by next run time, so the earliest
//! job and the due batch are found without a scan, up to millions of pending jobs. Run
//! history is a bounded ring. Everything is under one mutex held only for in-memory
//! work, never across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::{JobStore, NodeInfo, Release, StoreError};
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
    jobs: HashMap<Arc<str>, Entry>,
    /// Jobs that are due some time: not paused, not acquired.
    due_index: BTreeSet<(DateTime<Utc>, Arc<str>)>,
    /// Acquired jobs by lease expiry.
    leases: BTreeSet<(DateTime<Utc>, Arc<str>)>,
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
struct Entry {
    job: Job,
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
        let id: Arc<str> = Arc::from(job.id.as_str());
        match self.jobs.entry(Arc::clone(&id)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(StoreError::Conflict(job.id)),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                self.next_revision += 1;
                job.revision = self.next_revision;
                if let Some(next) = job.next_run_time {
                    self.due_index.insert((next, id));
                }
                vacant.insert(Entry {
                    job: job.clone(),
                    lease: None,
                    holder: None,
                });
                Ok(job)
            }
        }
    }

    /// Inserts or overwrites a job that is not acquired.
    fn put(&mut self, mut job: Job) -> Job {
        job.revision = self.bump();
        let id: Arc<str> = Arc::from(job.id.as_str());
        let lease = self.unindex(&id);
        if lease.is_none() {
            if let Some(next) = job.next_run_time {
                self.due_index.insert((next, Arc::clone(&id)));
            }
        }
        let holder = self.jobs.get(&id).and_then(|entry| entry.holder.clone());
        self.jobs.insert(
            id,
            Entry {
                job: job.clone(),
                lease,
                holder,
            },
        );
        job
    }

    /// Drops a job from the due index; returns its lease if it is acquired.
    fn unindex(&mut self, id: &Arc<str>) -> Option<DateTime<Utc>> {
        let entry = self.jobs.get(id)?;
        match entry.lease {
            Some(expiry) => Some(expiry),
            None => {
                if let Some(next) = entry.job.next_run_time {
                    self.due_index.remove(&(next, Arc::clone(id)));
                }
                None
            }
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some((key, entry)) = self.jobs.remove_entry(id) else {
            return false;
        };
        match entry.lease {
            Some(expiry) => {
                self.leases.remove(&(expiry, Arc::clone(&key)));
            }
            None => {
                if let Some(next) = entry.job.next_run_time {
                    self.due_index.remove(&(next, key));
                }
            }
        }
        true
    }

    /// Puts jobs whose owner let the lease run out back among the due jobs.
    fn reclaim_expired_leases(&mut self, now: DateTime<Utc>) {
        while let Some((expiry, id)) = self.leases.first().cloned() {
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
                self.due_index.insert((next, Arc::clone(id)));
            }
        }
    }

    /// Ends an acquisition for good: the job is due again and nobody holds it.
    fn end_lease(&mut self, id: &Arc<str>) {
        if let Some(expiry) = self.jobs.get(id).and_then(|entry| entry.lease) {
            self.leases.remove(&(expiry, Arc::clone(id)));
        }
        self.expire_lease(id);
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.holder = None;
        }
    }

    /// Ends every acquisition `owner` holds; returns how many.
    fn end_leases_of(&mut self, owner: &str) -> u64 {
        let held: Vec<Arc<str>> = self
            .jobs
            .iter()
            .filter(|(_, entry)| entry.holder.as_deref() == Some(owner))
            .map(|(id, _)| Arc::clone(id))
            .collect();
        for id in &held {
            self.end_lease(id);
        }
        u64::try_from(held.len()).unwrap_or(u64::MAX)
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
        Ok(self.lock().jobs.get(id).map(|entry| entry.job.clone()))
    }

    async fn count_jobs(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.lock().jobs.len()).unwrap_or(u64::MAX))
    }

    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut jobs: Vec<Job> = self
            .lock()
            .jobs
            .values()
            .map(|entry| entry.job.clone())
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
        let next_due = state.due_index.first().map(|(time, _)| *time);
        // An expiring lease makes its job due again; wake up for that too.
        let next_expiry = state.leases.first().map(|(time, _)| *time);
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
        while acquired.len() < limit {
            let Some((next, id)) = state.due_index.first().cloned() else {
                break;
            };
            if next > now {
                break;
            }
            state.due_index.pop_first();
            state.leases.insert((expiry, Arc::clone(&id)));
            if let Some(entry) = state.jobs.get_mut(&id) {
                entry.lease = Some(expiry);
                entry.holder = Some(Arc::from(owner));
                acquired.push(entry.job.clone());
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
            let Some((id, holder, revision)) = state
                .jobs
                .get_key_value(release.job_id.as_str())
                .map(|(id, entry)| (Arc::clone(id), entry.holder.clone(), entry.job.revision))
            else {
                continue; // removed while it ran: it stays removed
            };
            if holder.as_deref() != Some(owner) {
                // Our lease is gone (taken over, recovered or reaped): whoever holds
                // the job now decides its next run time.
                fenced.push(release.job_id);
                continue;
            }
            let schedule_untouched = state
                .jobs
                .get(&id)
                .is_some_and(|entry| entry.job.next_run_time == release.acquired_next_run_time);
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
                Some(next) => {
                    state.end_lease(&id);
                    // Out of the due index while its time changes.
                    state.unindex(&id);
                    let revision = state.bump();
                    if let Some(entry) = state.jobs.get_mut(&id) {
                        entry.job.next_run_time = Some(next);
                        entry.job.revision = revision;
                    }
                    state.due_index.insert((next, Arc::clone(&id)));
                }
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
        let mut state = self.lock();
        let owners = state.instances.entry(Arc::from(job_id)).or_default();
        if owners.len() >= usize::try_from(max_instances).unwrap_or(usize::MAX) {
            return Ok(false);
        }
        owners.push(Arc::from(owner));
        Ok(true)
    }

    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some(owners) = state.instances.get_mut(job_id) {
            if let Some(position) = owners.iter().rposition(|held| &**held == owner) {
                owners.swap_remove(position);
            }
            if owners.is_empty() {
                state.instances.remove(job_id);
            }
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
        let mut state = self.lock();
        if self.history_limit == 0 {
            return Ok(());
        }
        while state.runs.len() >= self.history_limit {
            state.runs.pop_front();
        }
        state.runs.push_back(record);
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
