//! `memory://`: jobs in this process only, gone with it.
//!
//! Jobs sit in a slab with an index by id and a heap by next run time, so the earliest
//! job and the due batch are found without a scan, up to millions of pending jobs. Run
//! history is a bounded ring. Everything is under one mutex held only for in-memory
//! work, never across an await.
//!
//! A million pending one-off jobs is the workload to size for (BENCHMARKS.md), at about a
//! hundred bytes each:
//! - a job is 72 bytes in the slab, its id inline ([`compact`]);
//! - the index by id holds a 4-byte slot number per job, and the due index a 16-byte
//!   key ([`tables`]);
//! - what only acquired jobs have, the lease expiry and the holder, is in side maps
//!   by slot number: few jobs are acquired at a time.

mod compact;
mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use self::compact::{Names, StoredJob};
use self::tables::{InsertError, JobTable, SlotNumber};
use super::{
    wake, Cluster, ConfigGeneration, DueJobs, FinishedRun, InstanceClaim, InstanceSlots,
    JobListing, Jobs, NodeInfo, Nodes, OrphanedRun, Release, RunHistory, RunLimits, StoreError,
};
use crate::history::{RunOutcome, RunRecord};
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
    /// The jobs, and the due ones (not paused, not acquired) by next run time.
    jobs: JobTable,
    /// Task and executor names, shared by the stored jobs.
    names: Names,
    /// Who acquired which job, by slot. Hashed as the job table is: every run of a
    /// recurring job inserts and removes here (BENCHMARKS.md, recurring).
    holdings: hashbrown::HashMap<SlotNumber, Holding>,
    /// Acquired jobs by lease expiry: (expiry, slot). Ties need no order: every lease
    /// that ran out goes back to the due index, which orders them.
    leases: BTreeSet<(DateTime<Utc>, SlotNumber)>,
    /// The holders of each job's running instances, one entry per instance (so a
    /// scheduler only ever frees its own).
    instances: hashbrown::HashMap<Arc<str>, Vec<InstanceSlot>>,
    /// Each job's waiter, if it has one ([`InstanceSlots::wait_for_instance`]).
    waiters: hashbrown::HashMap<Arc<str>, Waiter>,
    runs: VecDeque<RunRecord>,
    next_revision: u64,
    /// The membership: a memory store is never shared, but the scheduler registers
    /// itself all the same, so `kairos cluster` shows one node.
    nodes: BTreeMap<String, NodeInfo>,
    /// The configs applied, oldest first: generation `n` at index `n - 1`.
    configs: Vec<ConfigGeneration>,
    /// Alert keys claimed ([`Cluster::claim_alert`]), with when each claim ends.
    alert_claims: HashMap<String, DateTime<Utc>>,
}

/// One running instance of a job ([`InstanceSlots::claim_instances`]).
#[derive(Debug)]
struct InstanceSlot {
    /// The scheduler that runs it; `None` once it is an orphaned run, whose owner died
    /// and which waits for [`InstanceSlots::take_orphaned_runs`].
    owner: Option<Arc<str>>,
    /// [`InstanceClaim::run_times`]: empty for a run whose job stays leased.
    run_times: Vec<DateTime<Utc>>,
}

impl InstanceSlot {
    fn is_held_by(&self, owner: &str) -> bool {
        self.owner.as_deref() == Some(owner)
    }
}

/// The node where a run of a job waits for an instance slot
/// ([`InstanceSlots::wait_for_instance`]).
#[derive(Debug)]
struct Waiter {
    owner: Arc<str>,
    /// The limit its run claims under.
    max_instances: u32,
    /// When it ends unless refreshed, on the wall clock (as the history's age is judged).
    until: DateTime<Utc>,
}

/// Who acquired a job last, until a release, a recovery or a reap ends it.
#[derive(Debug)]
struct Holding {
    /// When the lease runs out; `None` once it has and the job is due again.
    lease: Option<DateTime<Utc>>,
    /// The owner. It outlives an expired lease that nobody took over (as the SQL
    /// store's `lease_owner` does), so a late release from a paused owner is still
    /// accepted then, and only then: the fencing rule of [`DueJobs::release_jobs`].
    holder: Arc<str>,
    /// Whether a write changed the job's schedule since it was acquired
    /// ([`crate::store::changes_schedule`]). The other stores keep a schedule version
    /// per job and the version each lease took; this store serves one process, so
    /// whether the version moved since this holding began is all it keeps, and only
    /// for held jobs (a stored job stays 72 bytes, `memory/compact.rs`).
    schedule_changed: bool,
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

/// The error for a memory store that holds as many jobs (or task and executor
/// pairs) as it can count.
fn full() -> StoreError {
    StoreError::unavailable(format!(
        "the memory store holds {} jobs or task and executor pairs, as many as it can",
        SlotNumber::MAX
    ))
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
        let stored = StoredJob::new(&job, &mut self.names).ok_or_else(full)?;
        match self.jobs.insert_new(stored) {
            Ok(_) => {
                self.next_revision += 1;
                Ok(job)
            }
            Err(InsertError::Taken) => Err(StoreError::Conflict(job.id)),
            Err(InsertError::Full) => Err(full()),
        }
    }

    /// Inserts or overwrites a job. An acquired job stays acquired, by the same
    /// holder, and out of the due index until released.
    fn put(&mut self, mut job: Job) -> Result<Job, StoreError> {
        job.revision = self.bump();
        let stored = StoredJob::new(&job, &mut self.names).ok_or_else(full)?;
        match self.jobs.find(&job.id) {
            Some(slot) => {
                let changes_schedule = self.jobs.get(slot).is_some_and(|current| {
                    crate::store::changes_schedule(
                        current.trigger(),
                        current.next_run_time(),
                        current.paused(),
                        &job,
                    )
                });
                let leased = match self.holdings.get_mut(&slot) {
                    Some(holding) => {
                        holding.schedule_changed |= changes_schedule;
                        holding.lease.is_some()
                    }
                    None => false,
                };
                self.jobs.replace(slot, stored, !leased);
            }
            None => {
                self.jobs.insert_new(stored).map_err(|error| match error {
                    InsertError::Taken => StoreError::Conflict(job.id.clone()),
                    InsertError::Full => full(),
                })?;
            }
        }
        Ok(job)
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.jobs.find(id) {
            Some(slot) => {
                self.remove_slot(slot);
                true
            }
            None => false,
        }
    }

    /// Removes the job in `slot` with its lease: the slot goes to the next job added,
    /// which must not inherit them.
    fn remove_slot(&mut self, slot: SlotNumber) {
        self.jobs.remove(slot);
        self.drop_holding(slot);
    }

    /// Forgets who holds the job in `slot`, and its lease.
    fn drop_holding(&mut self, slot: SlotNumber) {
        if let Some(Holding {
            lease: Some(expiry),
            ..
        }) = self.holdings.remove(&slot)
        {
            self.leases.remove(&(expiry, slot));
        }
    }

    /// Moves the leases `owner` holds on `job_ids` to `expiry`. A lease that ran out
    /// and went back among the due jobs is taken out again: still held (nobody took the
    /// job over), its run is still going.
    fn renew_leases(&mut self, owner: &str, job_ids: &[String], expiry: DateTime<Utc>) {
        for id in job_ids {
            let Some(slot) = self.jobs.find(id) else {
                continue;
            };
            let Some(holding) = self.holdings.get_mut(&slot) else {
                continue;
            };
            if &*holding.holder != owner {
                continue;
            }
            match holding.lease.replace(expiry) {
                Some(old) => {
                    self.leases.remove(&(old, slot));
                }
                None => self.jobs.make_not_due(slot),
            }
            self.leases.insert((expiry, slot));
        }
    }

    /// Puts jobs whose owner let the lease run out back among the due jobs.
    fn reclaim_expired_leases(&mut self, now: DateTime<Utc>) {
        while let Some(&(expiry, slot)) = self.leases.first() {
            if expiry > now {
                break;
            }
            self.leases.pop_first();
            // The holder stays: until someone else acquires the job, its owner's late
            // release is still the one that decides.
            if let Some(holding) = self.holdings.get_mut(&slot) {
                holding.lease = None;
            }
            self.jobs.make_due(slot);
        }
    }

    /// Ends an acquisition for good: the job is due again and nobody holds it.
    fn end_lease(&mut self, slot: SlotNumber) {
        self.drop_holding(slot);
        self.jobs.make_due(slot);
    }

    /// Ends the acquisition of the job in `slot` and makes it due at `next`: one write
    /// per index, since a recurring job's every run comes through here (BENCHMARKS.md:
    /// 10,000 jobs due in the same second).
    fn reschedule(&mut self, slot: SlotNumber, next: DateTime<Utc>) {
        let revision = self.bump();
        if self.jobs.get(slot).is_none() {
            return;
        }
        self.drop_holding(slot);
        // If the lease ran out and nobody took the job, it is due at its old time:
        // the table takes it out of the due index before moving it.
        self.jobs.reschedule(slot, next, revision);
    }

    /// Ends every acquisition `owner` holds; returns how many.
    fn end_leases_of(&mut self, owner: &str) -> u64 {
        let held: Vec<SlotNumber> = self
            .holdings
            .iter()
            .filter(|(_, holding)| &*holding.holder == owner)
            .map(|(&slot, _)| slot)
            .collect();
        for &slot in &held {
            self.end_lease(slot);
        }
        u64::try_from(held.len()).unwrap_or(u64::MAX)
    }

    /// Takes one of `job_id`'s `max_instances` slots for `owner`, if one is free; for a
    /// job that `queues`, another owner's waiter under a limit as high keeps one.
    fn claim_slot(
        &mut self,
        job_id: &str,
        owner: &Arc<str>,
        max_instances: u32,
        run_times: &[DateTime<Utc>],
        queues: bool,
    ) -> bool {
        let mut limit = usize::try_from(max_instances).unwrap_or(usize::MAX);
        if queues && self.waits_elsewhere(job_id, owner, max_instances) {
            limit = limit.saturating_sub(1);
        }
        let slot = || InstanceSlot {
            owner: Some(Arc::clone(owner)),
            run_times: run_times.to_vec(),
        };
        // Looked up by `&str` first: only a job with no running instance needs its id
        // allocated as a key.
        if let Some(slots) = self.instances.get_mut(job_id) {
            if slots.len() >= limit {
                return false;
            }
            slots.push(slot());
            return true;
        }
        if limit == 0 {
            return false;
        }
        self.instances.insert(Arc::from(job_id), vec![slot()]);
        true
    }

    /// Whether an owner other than `owner` is `job_id`'s live waiter, claiming under a
    /// limit as high as `max_instances` or higher. The map is looked at only for a job
    /// that queues, and the clock read only when it has such a waiter.
    fn waits_elsewhere(&self, job_id: &str, owner: &str, max_instances: u32) -> bool {
        self.waiters.get(job_id).is_some_and(|waiter| {
            &*waiter.owner != owner
                && waiter.max_instances >= max_instances
                && waiter.until > Utc::now()
        })
    }

    /// Ends every waiter `owner` has ([`InstanceSlots::wait_for_instance`]).
    fn end_waiters_of(&mut self, owner: &str) {
        self.waiters.retain(|_, waiter| &*waiter.owner != owner);
    }

    /// Frees one of `owner`'s slots of `job_id`: the one of the run that ended at
    /// `last_run_time` ([`super::slot_to_free`]), else the newest.
    fn free_slot(&mut self, job_id: &str, owner: &str, last_run_time: Option<DateTime<Utc>>) {
        if let Some(slots) = self.instances.get_mut(job_id) {
            let position = super::slot_to_free(
                slots
                    .iter()
                    .map(|slot| (slot.is_held_by(owner), slot.run_times.last().copied())),
                last_run_time,
            );
            if let Some(position) = position {
                slots.swap_remove(position);
            }
            if slots.is_empty() {
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

    /// [`RunHistory::prune_runs`]: marks what the limits drop, newest first, then drops
    /// at most `batch` of the marked records, oldest first, in one pass over the ring.
    fn prune_runs(&mut self, limits: &RunLimits, now: DateTime<Utc>, batch: usize) -> u64 {
        let cutoff = limits.keep.and_then(|keep| {
            let keep = TimeDelta::from_std(keep).ok()?;
            now.checked_sub_signed(keep)
        });
        let max_rows = limits
            .max_rows
            .map(|rows| usize::try_from(rows).unwrap_or(usize::MAX));
        // Newest first by finish time, as the other stores judge it (records may come
        // in out of order): (job, is a success) -> how many newer records it has.
        let mut order: Vec<usize> = (0..self.runs.len()).collect();
        order.sort_by_key(|index| std::cmp::Reverse((self.runs[*index].finished_at, *index)));
        let mut seen: HashMap<(&str, bool), u64> = HashMap::new();
        let mut drop = vec![false; self.runs.len()];
        for (newer, index) in order.into_iter().enumerate() {
            let run = &self.runs[index];
            let success = run.outcome == RunOutcome::Success;
            let per_job = if success {
                limits.successes_per_job
            } else {
                limits.failures_per_job
            };
            let count = seen.entry((run.job_id.as_str(), success)).or_default();
            *count += 1;
            drop[index] = cutoff.is_some_and(|cutoff| run.finished_at < cutoff)
                || max_rows.is_some_and(|rows| newer >= rows)
                || per_job.is_some_and(|limit| *count > limit);
        }
        let mut left = batch;
        let mut index = 0;
        self.runs.retain(|_| {
            let keep = !(drop[index] && left > 0);
            if !keep {
                left -= 1;
            }
            index += 1;
            keep
        });
        u64::try_from(batch - left).unwrap_or(u64::MAX)
    }

    /// Frees every instance slot `owner` holds, and orphans those with run times
    /// ([`InstanceSlots::take_orphaned_runs`]) that their jobs no longer show
    /// ([`super::times_still_due`]); returns how many.
    fn free_slots_of(&mut self, owner: &str) -> u64 {
        let mut freed = 0;
        let jobs = &self.jobs;
        self.instances.retain(|job_id, slots| {
            let next = jobs.get_by_id(job_id).and_then(StoredJob::next_run_time);
            slots.retain_mut(|slot| {
                if !slot.is_held_by(owner) {
                    return true;
                }
                freed += 1;
                slot.owner = None;
                !slot.run_times.is_empty() && !super::times_still_due(&slot.run_times, next)
            });
            !slots.is_empty()
        });
        u64::try_from(freed).unwrap_or(u64::MAX)
    }

    /// Frees `owner`'s slots of `job_id` whose run times the job, at `next`, still
    /// shows ([`super::times_still_due`]): its job was taken over from `owner`'s expired
    /// lease, and the new holder runs those times.
    fn free_slots_still_due(&mut self, job_id: &str, owner: &str, next: Option<DateTime<Utc>>) {
        if let Some(slots) = self.instances.get_mut(job_id) {
            slots.retain(|slot| {
                !(slot.is_held_by(owner) && super::times_still_due(&slot.run_times, next))
            });
            if slots.is_empty() {
                self.instances.remove(job_id);
            }
        }
    }

    /// [`InstanceSlots::take_orphaned_runs`]: hands every orphaned slot to `owner`; drops
    /// the orphans of jobs no longer in the store.
    fn take_orphans(&mut self, owner: &str) -> Vec<OrphanedRun> {
        let owner: Arc<str> = Arc::from(owner);
        let mut taken = Vec::new();
        let (jobs, names) = (&self.jobs, &self.names);
        self.instances.retain(|job_id, slots| {
            let job = jobs.get_by_id(job_id);
            slots.retain_mut(|slot| {
                if slot.owner.is_some() {
                    return true;
                }
                let Some(job) = job else {
                    return false;
                };
                slot.owner = Some(Arc::clone(&owner));
                taken.push(OrphanedRun {
                    job: job.to_job(names),
                    run_times: slot.run_times.clone(),
                });
                true
            });
            !slots.is_empty()
        });
        taken
    }
}

#[async_trait]
impl Jobs for MemoryStore {
    async fn add_job(&self, job: Job) -> Result<Job, StoreError> {
        self.lock().insert_new(job)
    }

    async fn add_jobs(&self, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        // One lock for the whole batch.
        let mut state = self.lock();
        jobs.into_iter().map(|job| state.insert_new(job)).collect()
    }

    async fn replace_job(&self, job: Job) -> Result<Job, StoreError> {
        self.lock().put(job)
    }

    async fn update_job(&self, job: Job) -> Result<Job, StoreError> {
        let mut state = self.lock();
        if state.jobs.find(&job.id).is_none() {
            return Err(StoreError::NotFound(job.id));
        }
        state.put(job)
    }

    async fn update_job_if(&self, job: Job, revision: u64) -> Result<Result<Job, u64>, StoreError> {
        let mut state = self.lock();
        match state.jobs.get_by_id(&job.id).map(|stored| stored.revision) {
            None => Err(StoreError::NotFound(job.id)),
            Some(current) if current != revision => Ok(Err(current)),
            Some(_) => state.put(job).map(Ok),
        }
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
        state.holdings.clear();
        state.leases.clear();
        Ok(())
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let state = self.lock();
        Ok(state.jobs.get_by_id(id).map(|job| job.to_job(&state.names)))
    }
}
#[async_trait]
impl JobListing for MemoryStore {
    async fn count_jobs(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.lock().jobs.len()).unwrap_or(u64::MAX))
    }

    async fn count_job_states(&self) -> Result<crate::store::JobCounts, StoreError> {
        // One pass over the compact table under the lock, decoding nothing: about a
        // millisecond per 100,000 jobs.
        let state = self.lock();
        let mut counts = crate::store::JobCounts::default();
        for (_, job) in state.jobs.iter() {
            counts.add(job.paused(), job.next_run_time().is_some());
        }
        Ok(counts)
    }

    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let state = self.lock();
        let mut jobs: Vec<Job> = state
            .jobs
            .iter()
            .map(|(_, job)| job.to_job(&state.names))
            .collect();
        drop(state);
        jobs.sort_by(|left, right| {
            let key = |job: &Job| (job.next_run_time.is_none(), job.next_run_time);
            key(left)
                .cmp(&key(right))
                .then_with(|| left.id.cmp(&right.id))
        });
        Ok(jobs)
    }
}

#[async_trait]
impl DueJobs for MemoryStore {
    async fn renew_holdings(
        &self,
        owner: &str,
        job_ids: &[String],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<(), StoreError> {
        // Instance slots here never expire; only leases need renewing.
        let expiry = now
            .checked_add_signed(
                chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX),
            )
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut state = self.lock();
        state.renew_leases(owner, job_ids, expiry);
        Ok(())
    }

    async fn job_schedules(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<crate::store::JobSchedule>>, StoreError> {
        let state = self.lock();
        Ok(ids
            .iter()
            .map(|id| {
                state
                    .jobs
                    .get_by_id(id)
                    .map(|job| crate::store::JobSchedule {
                        next_run_time: job.next_run_time(),
                        revision: job.revision,
                    })
            })
            .collect())
    }

    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.lock();
        let next_due = state.jobs.first_due().map(|(at, _)| at);
        // An expiring lease makes its job due again; wake up for that too.
        let next_expiry = state.leases.first().map(|&(expiry, _)| expiry);
        Ok(wake::earliest([&next_due, &next_expiry]))
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
        // Jobs are large and a batch is up to a thousand of them: growing the vector
        // step by step would copy them over and over.
        let mut acquired = Vec::with_capacity(limit.min(state.jobs.due_len()));
        // One allocation of the owner for the batch, shared by its jobs.
        let holder: Arc<str> = Arc::from(owner);
        while acquired.len() < limit {
            match state.jobs.first_due() {
                Some((next, _)) if next <= now => {}
                _ => break,
            }
            let Some(slot) = state.jobs.pop_due() else {
                break;
            };
            state.leases.insert((expiry, slot));
            let before = state.holdings.insert(
                slot,
                Holding {
                    lease: Some(expiry),
                    holder: Arc::clone(&holder),
                    schedule_changed: false,
                },
            );
            if let Some(job) = state.jobs.get(slot) {
                let job = job.to_job(&state.names);
                // Taken over from an expired lease: what its holder started and did
                // not write back is this owner's to run now.
                if let Some(before) = before.filter(|before| *before.holder != *owner) {
                    state.free_slots_still_due(&job.id, &before.holder, job.next_run_time);
                }
                acquired.push(job);
            }
        }
        Ok(acquired)
    }

    async fn release_jobs(
        &self,
        owner: &str,
        releases: &[Release],
    ) -> Result<Vec<String>, StoreError> {
        let mut state = self.lock();
        let mut fenced = Vec::new();
        for release in releases {
            let Some(slot) = state.jobs.find(&release.job_id) else {
                continue; // removed while it ran: it stays removed
            };
            if state.jobs.get(slot).is_none() {
                continue;
            }
            let Some(holding) = state
                .holdings
                .get(&slot)
                .filter(|holding| &*holding.holder == owner)
            else {
                // Our lease is gone (taken over, recovered or reaped): whoever holds
                // the job now decides its next run time.
                fenced.push(release.job_id.clone());
                continue;
            };
            if holding.schedule_changed {
                // Its schedule changed while acquired: the change wins, even at the
                // next run time the job was taken at (see the store's ground rules).
                state.end_lease(slot);
                continue;
            }
            match release.next_run_time {
                None => state.remove_slot(slot),
                Some(next) => state.reschedule(slot, next),
            }
        }
        Ok(fenced)
    }
}

#[async_trait]
impl InstanceSlots for MemoryStore {
    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
    ) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .claim_slot(job_id, &Arc::from(owner), max_instances, &[], false))
    }

    async fn claim_instances(
        &self,
        owner: &str,
        claims: &[InstanceClaim],
    ) -> Result<Vec<bool>, StoreError> {
        // One lock and one owner allocation for the batch: at 10,000 runs a second,
        // a lock per run is what the main loop waits on (BENCHMARKS.md, recurring).
        let owner: Arc<str> = Arc::from(owner);
        let mut state = self.lock();
        Ok(claims
            .iter()
            .map(|claim| {
                state.claim_slot(
                    &claim.job_id,
                    &owner,
                    claim.max_instances,
                    &claim.run_times,
                    claim.queues,
                )
            })
            .collect())
    }

    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.lock().free_slot(job_id, owner, None);
        Ok(())
    }

    async fn finish_runs(&self, owner: &str, runs: Vec<FinishedRun>) -> Result<(), StoreError> {
        // One lock for the batch, as `claim_instances`.
        let mut state = self.lock();
        for run in runs {
            if run.frees_instance {
                state.free_slot(&run.record.job_id, owner, Some(run.record.scheduled_time));
            }
            state.push_run(run.record, self.history_limit);
        }
        Ok(())
    }

    async fn recover_owner(&self, owner: &str) -> Result<u64, StoreError> {
        let mut state = self.lock();
        state.end_waiters_of(owner);
        Ok(state.end_leases_of(owner) + state.free_slots_of(owner))
    }

    async fn take_orphaned_runs(&self, owner: &str) -> Result<Vec<OrphanedRun>, StoreError> {
        Ok(self.lock().take_orphans(owner))
    }

    async fn running_times(&self, job_id: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let state = self.lock();
        Ok(state
            .instances
            .get(job_id)
            .into_iter()
            .flatten()
            // An orphaned run has no owner: nobody executes it now.
            .filter(|slot| slot.owner.is_some())
            .flat_map(|slot| slot.run_times.iter().copied())
            .collect())
    }

    async fn wait_for_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let until = TimeDelta::from_std(ttl)
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut state = self.lock();
        match state.waiters.get_mut(job_id) {
            Some(waiter) if &*waiter.owner != owner && waiter.until > now => Ok(false),
            Some(waiter) => {
                if &*waiter.owner != owner {
                    waiter.owner = Arc::from(owner);
                }
                waiter.max_instances = max_instances;
                waiter.until = until;
                Ok(true)
            }
            None => {
                let waiter = Waiter {
                    owner: Arc::from(owner),
                    max_instances,
                    until,
                };
                state.waiters.insert(Arc::from(job_id), waiter);
                Ok(true)
            }
        }
    }

    async fn stop_waiting(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state
            .waiters
            .get(job_id)
            .is_some_and(|waiter| &*waiter.owner == owner)
        {
            state.waiters.remove(job_id);
        }
        Ok(())
    }
}

#[async_trait]
impl RunHistory for MemoryStore {
    async fn last_success(&self, job_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.lock();
        Ok(state
            .runs
            .iter()
            .filter(|run| run.job_id == job_id && run.outcome == RunOutcome::Success)
            .map(|run| run.finished_at)
            .max())
    }

    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        self.lock().push_run(record, self.history_limit);
        Ok(())
    }

    async fn prune_runs(&self, limits: &RunLimits, batch: usize) -> Result<u64, StoreError> {
        // The ring bounds the history's size already; the limits choose which records
        // it holds. The age is judged on the wall clock, as the other stores judge it.
        Ok(self.lock().prune_runs(limits, Utc::now(), batch))
    }

    async fn count_runs(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.lock().runs.len()).unwrap_or(u64::MAX))
    }

    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.runs_from(job_id, 0, limit).await
    }

    async fn runs_from(
        &self,
        job_id: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.lock();
        Ok(state
            .runs
            .iter()
            .rev()
            .filter(|run| job_id.is_none_or(|id| run.job_id == id))
            .skip(offset)
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Nodes for MemoryStore {
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
            state.end_waiters_of(id);
        }
        Ok(dead)
    }
}

#[async_trait]
impl Cluster for MemoryStore {
    async fn config_generations(&self, limit: usize) -> Result<Vec<ConfigGeneration>, StoreError> {
        Ok(self
            .lock()
            .configs
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn claim_alert(
        &self,
        key: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let until = TimeDelta::from_std(ttl)
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut state = self.lock();
        // Alerts are rare: dropping the ended claims on each call keeps the map small.
        state.alert_claims.retain(|_, ends| *ends > now);
        if state.alert_claims.contains_key(key) {
            return Ok(false);
        }
        state.alert_claims.insert(key.to_owned(), until);
        Ok(true)
    }

    async fn record_config_generation(&self, next: ConfigGeneration) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let newest = u64::try_from(state.configs.len()).unwrap_or(u64::MAX);
        if next.generation != newest.saturating_add(1) {
            return Ok(false);
        }
        state.configs.push(next);
        Ok(true)
    }
}
