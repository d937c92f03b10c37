//! Jobs in Redis: the [`Jobs`] impl, whose writes all go through put.lua.

use std::collections::HashMap;

use async_trait::async_trait;

use super::codec::{decode_job, micros_or_empty, schedule_key, store_error};
use super::{scripts, warn_unreadable, RedisStore};
use crate::job::Job;
use crate::store::{JobListing, Jobs, StoreError};

/// How many jobs one put.lua call writes: a batch of 100 000 one-off jobs becomes 100
/// calls of a few milliseconds each, so Redis never stops serving the other schedulers
/// for long, and each request stays small.
const PUT_BATCH: usize = 1_000;

impl RedisStore {
    /// put.lua with its keys, its `mode` and the wake-up channel: the jobs' arguments
    /// (id, JSON, next run time) follow.
    fn put_invocation(&self, mode: &str) -> ::redis::ScriptInvocation<'static> {
        let keys = &self.keys;
        let mut invocation = scripts::PUT.prepare_invoke();
        invocation
            .key(&keys.jobs)
            .key(&keys.revs)
            .key(&keys.next)
            .key(&keys.due)
            .key(&keys.leases)
            .key(&keys.broken)
            .key(&keys.seq)
            .key(&keys.sched)
            .arg(mode)
            .arg(&keys.wake);
        invocation
    }

    /// Runs put.lua on `jobs`, [`PUT_BATCH`] at a time; returns them with their new
    /// revisions. The first job that `mode` refuses ends the call with its error, and
    /// the jobs before it stay written.
    async fn put(&self, mode: &str, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        let mut written = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let chunk: Vec<Job> = jobs.by_ref().take(PUT_BATCH).collect();
            let mut invocation = self.put_invocation(mode);
            for job in &chunk {
                let json = serde_json::to_string(job)
                    .map_err(|error| StoreError::corrupt(format!("job {:?}: {error}", job.id)))?;
                invocation
                    .arg(&job.id)
                    .arg(json)
                    .arg(micros_or_empty(job.next_run_time))
                    .arg(schedule_key(job)?);
            }
            let revisions: Vec<i64> = self.invoke(&invocation).await?;
            for (mut job, revision) in chunk.into_iter().zip(revisions) {
                match revision {
                    -1 => return Err(StoreError::Conflict(job.id)),
                    -2 => return Err(StoreError::NotFound(job.id)),
                    revision => {
                        job.revision = u64::try_from(revision).map_err(|_| {
                            StoreError::corrupt(format!("revision {revision} of job {:?}", job.id))
                        })?;
                        written.push(job);
                    }
                }
            }
        }
        Ok(written)
    }

    /// Runs put.lua on one job.
    async fn put_one(&self, mode: &str, job: Job) -> Result<Job, StoreError> {
        let id = job.id.clone();
        self.put(mode, vec![job])
            .await?
            .pop()
            .ok_or_else(|| StoreError::corrupt(format!("no revision came back for job {id:?}")))
    }
}

#[async_trait]
impl Jobs for RedisStore {
    async fn add_job(&self, job: Job) -> Result<Job, StoreError> {
        self.put_one("add", job).await
    }

    async fn add_jobs(&self, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        self.put("add", jobs).await
    }

    async fn replace_job(&self, job: Job) -> Result<Job, StoreError> {
        self.put_one("replace", job).await
    }

    async fn update_job(&self, job: Job) -> Result<Job, StoreError> {
        self.put_one("update", job).await
    }

    async fn update_job_if(
        &self,
        mut job: Job,
        revision: u64,
    ) -> Result<Result<Job, u64>, StoreError> {
        // put.lua compares the stored revision and writes in one script: atomic.
        let json = serde_json::to_string(&job)
            .map_err(|error| StoreError::corrupt(format!("job {:?}: {error}", job.id)))?;
        let mut invocation = self.put_invocation(&format!("update_if:{revision}"));
        invocation
            .arg(&job.id)
            .arg(json)
            .arg(micros_or_empty(job.next_run_time))
            .arg(schedule_key(&job)?);
        let out: Vec<i64> = self.invoke(&invocation).await?;
        match out[..] {
            [-2] => Err(StoreError::NotFound(job.id)),
            [-3, current] => Ok(Err(u64::try_from(current).unwrap_or(0))),
            [written] if written > 0 => {
                job.revision = u64::try_from(written).unwrap_or(0);
                Ok(Ok(job))
            }
            _ => Err(StoreError::corrupt(format!(
                "an unexpected answer {out:?} to a conditional update of job {:?}",
                job.id
            ))),
        }
    }

    async fn remove_job(&self, id: &str) -> Result<(), StoreError> {
        let keys = &self.keys;
        let removed: i64 = self
            .invoke(
                scripts::REMOVE
                    .key(&keys.jobs)
                    .key(&keys.revs)
                    .key(&keys.next)
                    .key(&keys.due)
                    .key(&keys.leases)
                    .key(&keys.owners)
                    .key(&keys.broken)
                    .key(&keys.sched)
                    .key(&keys.lease_sched)
                    .arg(id),
            )
            .await?;
        if removed == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(id.to_owned()))
        }
    }

    async fn remove_all_jobs(&self) -> Result<(), StoreError> {
        // One command is atomic by itself; UNLINK frees big hashes off the main thread.
        // `seq` stays (see put.lua), and so do instance slots and history, as in the
        // memory store.
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        ::redis::cmd("UNLINK")
            .arg(&keys.jobs)
            .arg(&keys.revs)
            .arg(&keys.next)
            .arg(&keys.due)
            .arg(&keys.leases)
            .arg(&keys.owners)
            .arg(&keys.broken)
            .arg(&keys.sched)
            .arg(&keys.lease_sched)
            .query_async::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        let (json, revision, next): (Option<String>, Option<String>, Option<String>) =
            ::redis::pipe()
                .atomic()
                .hget(&keys.jobs, id)
                .hget(&keys.revs, id)
                .hget(&keys.next, id)
                .query_async(&mut connection)
                .await
                .map_err(store_error)?;
        let Some(json) = json else {
            return Ok(None);
        };
        decode_job(
            id,
            &json,
            revision.as_deref().unwrap_or("0"),
            next.as_deref().unwrap_or(""),
        )
        .map(Some)
        .map_err(|reason| {
            warn_unreadable(id, &reason, "asked for");
            StoreError::corrupt(format!("job {id:?}: {reason}"))
        })
    }
}
#[async_trait]
impl JobListing for RedisStore {
    async fn count_jobs(&self) -> Result<u64, StoreError> {
        let mut connection = self.connection.clone();
        ::redis::cmd("HLEN")
            .arg(&self.keys.jobs)
            .query_async(&mut connection)
            .await
            .map_err(store_error)
    }

    async fn count_job_states(&self) -> Result<crate::store::JobCounts, StoreError> {
        let (pending, paused, failed): (u64, u64, u64) = self
            .invoke(
                scripts::COUNT_STATES
                    .key(&self.keys.jobs)
                    .key(&self.keys.next),
            )
            .await?;
        Ok(crate::store::JobCounts {
            pending,
            paused,
            failed,
        })
    }

    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        type Map = HashMap<String, String>;
        let (jsons, revisions, nexts): (Map, Map, Map) = ::redis::pipe()
            .atomic()
            .hgetall(&keys.jobs)
            .hgetall(&keys.revs)
            .hgetall(&keys.next)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let mut jobs = Vec::with_capacity(jsons.len());
        for (id, json) in &jsons {
            let revision = revisions.get(id).map_or("0", String::as_str);
            let next = nexts.get(id).map_or("", String::as_str);
            match decode_job(id, json, revision, next) {
                Ok(job) => jobs.push(job),
                Err(reason) => warn_unreadable(id, &reason, "left out of the job list"),
            }
        }
        // The memory store's order: by next run time, paused last, then by id.
        jobs.sort_by(|left, right| {
            let key = |job: &Job| (job.next_run_time.is_none(), job.next_run_time);
            key(left)
                .cmp(&key(right))
                .then_with(|| left.id.cmp(&right.id))
        });
        Ok(jobs)
    }
}
