//! Running-instance slots in Redis: the [`InstanceSlots`] impl. A job's slots are one
//! sorted set (`inst:ID`) of `owner␟nonce[␟run times]` members by expiry.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::codec::{micros, store_error};
use super::history::is_success;
use super::{scripts, RedisStore, SCRIPT_BATCH};
use crate::store::{
    decode_run_times, encode_run_times, times_still_due, FinishedRun, InstanceClaim, InstanceSlots,
    Jobs, OrphanedRun, StoreError,
};

/// The separator between owner and nonce in an instance slot (ASCII unit separator).
pub(super) const SLOT_SEPARATOR: char = '\u{1f}';

impl RedisStore {
    /// Frees every instance slot the `owners` hold; returns how many. Slots live in one
    /// set per job; SCAN visits them without blocking Redis.
    pub(super) async fn free_slots_of(&self, owners: &[String]) -> Result<u64, StoreError> {
        let keys = &self.keys;
        let prefixes: Vec<String> = owners
            .iter()
            .map(|owner| format!("{owner}{SLOT_SEPARATOR}"))
            .collect();
        let pattern = format!("{}inst:*", escape_glob(&keys.prefix));
        let inst_prefix = format!("{}inst:", keys.prefix);
        let mut connection = self.connection.clone();
        let mut cursor: u64 = 0;
        let mut slots: u64 = 0;
        loop {
            let (next, found): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(store_error)?;
            for key in found {
                let members = self.slot_members(&key).await?;
                let (orphans, held): (Vec<&String>, Vec<&String>) = members
                    .iter()
                    .filter(|member| prefixes.iter().any(|mine| member.starts_with(mine)))
                    .partition(|member| slot_run_times(member).is_some());
                if !orphans.is_empty() {
                    // Slots that stand for run times nothing else remembers stay, as
                    // orphaned runs (`InstanceSlots::take_orphaned_runs`); those whose
                    // job still shows their times are freed (`store::times_still_due`),
                    // judged by the script against the job as it is then.
                    let job_id = key.strip_prefix(&inst_prefix).unwrap_or_default();
                    let mut invocation = scripts::ORPHAN_SLOTS.prepare_invoke();
                    invocation
                        .key(&key)
                        .key(&keys.orphans)
                        .key(&keys.next)
                        .arg(job_id);
                    for member in &orphans {
                        let earliest = slot_run_times(member)
                            .map(decode_run_times)
                            .and_then(|times| times.into_iter().min());
                        invocation
                            .arg(member.as_str())
                            .arg(super::codec::micros_or_empty(earliest));
                    }
                    let orphaned: i64 = self.invoke(&invocation).await?;
                    slots += u64::try_from(orphaned).unwrap_or(0);
                }
                if !held.is_empty() {
                    let removed: u64 = ::redis::cmd("ZREM")
                        .arg(&key)
                        .arg(&held)
                        .query_async(&mut connection)
                        .await
                        .map_err(store_error)?;
                    slots += removed;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(slots)
    }

    /// Frees `owner`'s slots of `job_id` whose run times the job, at `next`, still
    /// shows (`store::times_still_due`): the job was taken over from `owner`'s expired
    /// lease, and its new holder runs those times. A reaper orphaning the same slots
    /// meanwhile judges them by the job the same way (orphan_slots.lua), so the slot is
    /// freed either way.
    pub(super) async fn free_slots_still_due(
        &self,
        job_id: &str,
        owner: &str,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let key = self.keys.instances(job_id);
        let members = self.slot_members(&key).await?;
        let mine = format!("{owner}{SLOT_SEPARATOR}");
        let still_due: Vec<&String> = members
            .iter()
            .filter(|member| member.starts_with(&mine))
            .filter(|member| {
                slot_run_times(member)
                    .is_some_and(|times| times_still_due(&decode_run_times(times), next))
            })
            .collect();
        if !still_due.is_empty() {
            let mut connection = self.connection.clone();
            ::redis::cmd("ZREM")
                .arg(&key)
                .arg(&still_due)
                .query_async::<i64>(&mut connection)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// Every member of the instance set `key` (one job's slots).
    async fn slot_members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        ::redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .map_err(store_error)
    }

    /// Ends every waiter the `owners` have ([`InstanceSlots::wait_for_instance`]),
    /// found through the set of jobs with one (`waiters`), which it also rids of jobs
    /// whose waiter expired.
    pub(super) async fn end_waiters_of(&self, owners: &[String]) -> Result<(), StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        let job_ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(&keys.waiters)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        for job_id in &job_ids {
            for owner in owners {
                self.invoke::<i64>(
                    scripts::STOP_WAITING
                        .key(keys.waiter(job_id))
                        .key(&keys.waiters)
                        .arg(owner)
                        .arg(job_id),
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// An instance slot's member: `owner␟nonce`, then `␟` and its run times when it stands
/// for some ([`InstanceClaim::run_times`]).
fn slot_member(owner: &str, run_times: &[DateTime<Utc>]) -> String {
    let nonce = fastrand::u64(..);
    match encode_run_times(run_times) {
        Some(times) => format!("{owner}{SLOT_SEPARATOR}{nonce:016x}{SLOT_SEPARATOR}{times}"),
        None => format!("{owner}{SLOT_SEPARATOR}{nonce:016x}"),
    }
}

/// The run times part of a slot's member ([`slot_member`]), if it has one.
fn slot_run_times(member: &str) -> Option<&str> {
    let mut parts = member.splitn(3, SLOT_SEPARATOR);
    parts.nth(2).filter(|times| !times.is_empty())
}

/// `text` with Redis glob characters escaped, for a `MATCH` pattern.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[async_trait]
impl InstanceSlots for RedisStore {
    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
    ) -> Result<bool, StoreError> {
        let claim = InstanceClaim {
            job_id: job_id.to_owned(),
            max_instances,
            run_times: Vec::new(),
            queues: false,
        };
        let claimed = self.claim_instances(owner, &[claim]).await?;
        Ok(claimed.first() == Some(&true))
    }

    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.invoke::<i64>(
            scripts::RELEASE_INSTANCE
                .key(self.keys.instances(job_id))
                .arg(format!("{owner}{SLOT_SEPARATOR}")),
        )
        .await
        .map(drop)
    }

    async fn recover_owner(&self, owner: &str) -> Result<u64, StoreError> {
        // Not atomic, and it need not be: none of this owner's runs is going. Slots
        // first: a job whose lease ended while its slot still counted could be taken by
        // another node and refused by max_instances (a one-off job refused is gone).
        let owners = [owner.to_owned()];
        let slots = self.free_slots_of(&owners).await?;
        self.end_waiters_of(&owners).await?;
        let leases = self.end_leases_of(owner).await?;
        Ok(leases + slots)
    }

    async fn take_orphaned_runs(&self, owner: &str) -> Result<Vec<OrphanedRun>, StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        let job_ids: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(&keys.orphans)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let expiry = Utc::now()
            .checked_add_signed(TimeDelta::from_std(self.instance_ttl).unwrap_or(TimeDelta::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut taken = Vec::new();
        for job_id in job_ids {
            let members: Vec<String> = self
                .invoke(
                    scripts::TAKE_ORPHANS
                        .key(keys.instances(&job_id))
                        .key(&keys.orphans)
                        .arg(owner)
                        .arg(micros(expiry))
                        .arg(self.instance_ttl.as_millis().max(1))
                        .arg(&job_id),
                )
                .await?;
            if members.is_empty() {
                continue;
            }
            match self.get_job(&job_id).await? {
                Some(job) => {
                    for member in &members {
                        taken.push(OrphanedRun {
                            job: job.clone(),
                            run_times: slot_run_times(member)
                                .map(decode_run_times)
                                .unwrap_or_default(),
                        });
                    }
                }
                // Removed since: its orphans have nothing to run.
                None => {
                    ::redis::cmd("ZREM")
                        .arg(keys.instances(&job_id))
                        .arg(&members)
                        .query_async::<i64>(&mut connection)
                        .await
                        .map_err(store_error)?;
                }
            }
        }
        Ok(taken)
    }

    /// One read of the job's unexpired slots; an orphan's member has no owner.
    async fn running_times(&self, job_id: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let mut connection = self.connection.clone();
        let members: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.instances(job_id))
            .arg(format!("({}", micros(Utc::now())))
            .arg("+inf")
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        Ok(members
            .iter()
            .filter(|member| !member.starts_with(SLOT_SEPARATOR))
            .filter_map(|member| slot_run_times(member))
            .flat_map(decode_run_times)
            .collect())
    }

    async fn claim_instances(
        &self,
        owner: &str,
        claims: &[InstanceClaim],
    ) -> Result<Vec<bool>, StoreError> {
        let now = Utc::now();
        let ttl = TimeDelta::from_std(self.instance_ttl).unwrap_or(TimeDelta::MAX);
        let expiry = now
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut claimed = Vec::with_capacity(claims.len());
        for chunk in claims.chunks(SCRIPT_BATCH) {
            let mut invocation = scripts::CLAIM_INSTANCES.prepare_invoke();
            invocation
                .arg(micros(now))
                .arg(micros(expiry))
                .arg(self.instance_ttl.as_millis().max(1))
                .arg(owner);
            for claim in chunk {
                invocation
                    .key(self.keys.instances(&claim.job_id))
                    .arg(claim.max_instances)
                    .arg(slot_member(owner, &claim.run_times))
                    .arg(u8::from(claim.queues));
                if claim.queues {
                    invocation.key(self.keys.waiter(&claim.job_id));
                }
            }
            let answers: Vec<i64> = self.invoke(&invocation).await?;
            claimed.extend(answers.iter().map(|answer| *answer == 1));
        }
        Ok(claimed)
    }

    async fn wait_for_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let waits: i64 = self
            .invoke(
                scripts::WAIT_FOR_INSTANCE
                    .key(self.keys.waiter(job_id))
                    .key(&self.keys.waiters)
                    .arg(owner)
                    .arg(ttl_ms)
                    .arg(job_id)
                    .arg(max_instances),
            )
            .await?;
        Ok(waits == 1)
    }

    async fn stop_waiting(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.invoke::<i64>(
            scripts::STOP_WAITING
                .key(self.keys.waiter(job_id))
                .key(&self.keys.waiters)
                .arg(owner)
                .arg(job_id),
        )
        .await
        .map(drop)
    }

    async fn finish_runs(&self, owner: &str, runs: Vec<FinishedRun>) -> Result<(), StoreError> {
        let keys = &self.keys;
        for chunk in runs.chunks(SCRIPT_BATCH) {
            let mut invocation = scripts::FINISH_RUNS.prepare_invoke();
            invocation
                .key(&keys.runs)
                .key(&keys.run)
                .key(&keys.run_seq)
                .key(&keys.run_jobs)
                .arg(format!("{owner}{SLOT_SEPARATOR}"));
            for run in chunk {
                let record = &run.record;
                let json = serde_json::to_string(record).map_err(|error| {
                    StoreError::corrupt(format!("run {:?}: {error}", record.run_id))
                })?;
                invocation
                    .key(keys.job_runs(&record.job_id))
                    .key(keys.instances(&record.job_id))
                    .key(keys.job_class_runs(&record.job_id, is_success(record)))
                    .arg(micros(record.finished_at))
                    .arg(json)
                    .arg(&record.job_id)
                    .arg(u8::from(run.frees_instance))
                    .arg(micros(record.scheduled_time));
            }
            self.invoke::<i64>(&invocation).await?;
        }
        Ok(())
    }
}
