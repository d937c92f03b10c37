//! Due jobs under leases in Redis: the [`DueJobs`] impl, with setting aside what
//! cannot be read and ending a dead owner's leases.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::codec::{decode_job, micros, micros_or_empty, parse_micros, parse_score, store_error};
use super::slots::SLOT_SEPARATOR;
use super::{scripts, warn_unreadable, RedisStore, MAX_COUNT, SCRIPT_BATCH};
use crate::job::Job;
use crate::store::{wake, DueJobs, Release, StoreError};

impl RedisStore {
    /// Sets aside acquired jobs that could not be read: `(id, revision read)`.
    async fn quarantine(&self, owner: &str, broken: &[(String, String)]) -> Result<(), StoreError> {
        let keys = &self.keys;
        let mut invocation = scripts::QUARANTINE.prepare_invoke();
        invocation
            .key(&keys.revs)
            .key(&keys.next)
            .key(&keys.due)
            .key(&keys.leases)
            .key(&keys.owners)
            .key(&keys.broken)
            .arg(owner);
        for (id, revision) in broken {
            invocation.arg(id).arg(revision);
        }
        self.invoke::<i64>(&invocation).await.map(drop)
    }

    /// Ends every lease `owner` holds (recover_owner.lua): its jobs are due again at
    /// their next run times. Returns how many.
    pub(super) async fn end_leases_of(&self, owner: &str) -> Result<u64, StoreError> {
        let keys = &self.keys;
        let leases: i64 = self
            .invoke(
                scripts::RECOVER_OWNER
                    .key(&keys.next)
                    .key(&keys.due)
                    .key(&keys.leases)
                    .key(&keys.owners)
                    .arg(owner),
            )
            .await?;
        Ok(u64::try_from(leases).unwrap_or(0))
    }
}

#[async_trait]
impl DueJobs for RedisStore {
    async fn job_schedules(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<crate::store::JobSchedule>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        // Every job has a revision; only scheduled ones have a next run time.
        let (revisions, nexts): (Vec<Option<String>>, Vec<Option<String>>) = ::redis::pipe()
            .atomic()
            .hmget(&keys.revs, ids)
            .hmget(&keys.next, ids)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        revisions
            .iter()
            .zip(nexts.iter().chain(std::iter::repeat(&None)))
            .map(|(revision, next)| match revision {
                None => Ok(None),
                Some(revision) => Ok(Some(crate::store::JobSchedule {
                    next_run_time: parse_micros(next.as_deref().unwrap_or(""))
                        .map_err(StoreError::corrupt)?,
                    revision: revision.parse().map_err(|_| {
                        StoreError::corrupt(format!("job revision {revision:?} is not a number"))
                    })?,
                })),
            })
            .collect()
    }

    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (due, expiry): (String, String) = self
            .invoke(
                scripts::NEXT_RUN_TIME
                    .key(&self.keys.due)
                    .key(&self.keys.leases),
            )
            .await?;
        let read = |score: &str| match score {
            "" => Ok(None),
            score => parse_score(score).map(Some).map_err(StoreError::corrupt),
        };
        Ok(wake::earliest([&read(&due)?, &read(&expiry)?]))
    }

    async fn acquire_due_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Saturates instead of overflowing: an endless lease ends at chrono's last day,
        // which still fits the µs the scripts keep.
        let expiry = TimeDelta::from_std(lease)
            .ok()
            .and_then(|lease| now.checked_add_signed(lease))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let keys = &self.keys;
        let flat: Vec<String> = self
            .invoke(
                scripts::ACQUIRE
                    .key(&keys.jobs)
                    .key(&keys.revs)
                    .key(&keys.next)
                    .key(&keys.due)
                    .key(&keys.leases)
                    .key(&keys.owners)
                    .key(&keys.sched)
                    .key(&keys.lease_sched)
                    .arg(micros(now))
                    .arg(limit.min(MAX_COUNT))
                    .arg(micros(expiry))
                    .arg(owner),
            )
            .await?;
        let mut acquired = Vec::with_capacity(flat.len() / 5);
        let mut broken = Vec::new();
        for entry in flat.chunks_exact(5) {
            let [id, json, revision, next, holder] = entry else {
                continue;
            };
            match decode_job(id, json, revision, next) {
                Ok(job) => {
                    if !holder.is_empty() {
                        // Rare: a holder that died or froze past its lease.
                        self.free_slots_still_due(&job.id, holder, job.next_run_time)
                            .await?;
                    }
                    acquired.push(job);
                }
                Err(reason) => {
                    warn_unreadable(id, &reason, &format!("set aside in {}", keys.broken));
                    broken.push((id.clone(), revision.clone()));
                }
            }
        }
        if !broken.is_empty() {
            // The readable jobs are leased to us already: returning an error now would
            // strand them until their lease ran out. A failed quarantine is retried when
            // the lease of the broken job runs out and it is acquired again.
            if let Err(error) = self.quarantine(owner, &broken).await {
                tracing::warn!(%error, "Redis job store: could not set aside unreadable jobs");
            }
        }
        Ok(acquired)
    }

    async fn release_jobs(
        &self,
        owner: &str,
        releases: &[Release],
    ) -> Result<Vec<String>, StoreError> {
        if releases.is_empty() {
            return Ok(Vec::new());
        }
        let keys = &self.keys;
        let mut invocation = scripts::RELEASE.prepare_invoke();
        invocation
            .key(&keys.jobs)
            .key(&keys.revs)
            .key(&keys.next)
            .key(&keys.due)
            .key(&keys.leases)
            .key(&keys.owners)
            .key(&keys.seq)
            .key(&keys.broken)
            .key(&keys.sched)
            .key(&keys.lease_sched)
            .arg(owner);
        for release in releases {
            invocation
                .arg(&release.job_id)
                .arg(release.revision)
                .arg(micros_or_empty(release.next_run_time))
                .arg(micros_or_empty(release.acquired_next_run_time));
        }
        self.invoke::<Vec<String>>(&invocation).await
    }

    async fn renew_holdings(
        &self,
        owner: &str,
        job_ids: &[String],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let lease_expiry = now
            .checked_add_signed(TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        // Slots measure real time, as when they were claimed (module docs).
        let slot_expiry = Utc::now()
            .checked_add_signed(TimeDelta::from_std(self.instance_ttl).unwrap_or(TimeDelta::MAX))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let keys = &self.keys;
        for chunk in job_ids.chunks(SCRIPT_BATCH) {
            let mut invocation = scripts::RENEW.prepare_invoke();
            invocation
                .key(&keys.due)
                .key(&keys.leases)
                .key(&keys.owners)
                .arg(owner)
                .arg(micros(lease_expiry))
                .arg(micros(slot_expiry))
                .arg(self.instance_ttl.as_millis().max(1))
                .arg(format!("{owner}{SLOT_SEPARATOR}"));
            for id in chunk {
                invocation.key(keys.instances(id)).arg(id);
            }
            self.invoke::<i64>(&invocation).await?;
        }
        Ok(())
    }
}
