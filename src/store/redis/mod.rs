//! `redis://`: jobs and run history in Redis, shared by every scheduler of a cluster.
//!
//! The store keeps the semantics of the memory store (`src/store/memory.rs`) exactly:
//! revisions, leases, the release rule with schedule versions, instance counts.
//! Only the data lives elsewhere, and every step that touches more than one structure
//! is one Lua script (`scripts.rs`, `lua/`).
//!
//! # Key layout
//! Every key starts with the prefix given to [`connect`] (`kairos:` below):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `kairos:jobs` | hash | id → job JSON (its `revision`, `next_run_time` are stale copies) |
//! | `kairos:revs` | hash | id → revision (authoritative) |
//! | `kairos:next` | hash | id → next run time, µs; absent while paused |
//! | `kairos:due` | sorted set | ids neither paused, leased nor quarantined, by next run time |
//! | `kairos:leases` | sorted set | acquired ids by lease expiry (µs) |
//! | `kairos:owners` | hash | acquired id → the scheduler holding it (kept past expiry until taken over) |
//! | `kairos:broken` | set | ids whose stored form could not be read, set aside |
//! | `kairos:seq` | string | the revision counter, shared by all jobs, never reset |
//! | `kairos:sched` | hash | id → `VERSION KEY`: the job's schedule version and the SHA-1 of its trigger and pause, by which put.lua tells a write that changes the schedule (absent for a job written before versions) |
//! | `kairos:leasesched` | hash | acquired id → the schedule version its lease took, which its release is judged by |
//! | `kairos:inst:ID` | sorted set | job ID's running instances: `owner␟nonce`, then `␟` and the run times a slot stands for (µs, comma-separated) if any, by slot expiry; an orphaned run (its owner died) has no owner and never expires |
//! | `kairos:orphans` | set | the ids of the jobs with orphaned runs (take_orphans.lua) |
//! | `kairos:runs` | sorted set | run records by finish time: `<20-digit seq>:<job id>` |
//! | `kairos:runs:ID` | sorted set | the same members, for job ID only |
//! | `kairos:runok:ID`, `kairos:runfail:ID` | sorted set | the same members, job ID's `success` records and its others apart: what the per-job history limits count (records written before these existed are only trimmed by age and `max_rows`) |
//! | `kairos:runjobs` | set | the ids of the jobs with run records, walked by pruning |
//! | `kairos:run` | hash | run member → run record JSON |
//! | `kairos:runseq` | string | the run record counter |
//! | `kairos:nodes` | hash | node id → its registration and latest stats ([`NodeInfo`] JSON) |
//! | `kairos:beats` | sorted set | node ids by last heartbeat (µs, the node's clock) |
//! | `kairos:alert:KEY` | string | an alert claimed once per cluster, expiring with its claim |
//! | `kairos:configs` | hash | generation → the [`ConfigGeneration`] applied as it (JSON), 1, 2, … without gaps |
//! | `kairos:wake` | pub/sub channel | the earliest next run time of each write (µs) |
//!
//! # Ground rules
//! - One script per atomic step (add/replace/update, remove, acquire, release,
//!   quarantine, next run time, claim/release an instance, record/read/prune runs). Reads
//!   of several hashes (`get_job`, `get_jobs`) are one MULTI/EXEC. Nothing reads a
//!   structure in Rust and writes another based on it.
//! - Time comes from the caller: `acquire_due_jobs` gets the scheduler's clock, so
//!   simulated time works and Redis's clock is never read. Instance slots and run
//!   retention have no clock in the trait; they use this machine's wall clock, because
//!   they measure real time (how long a dead scheduler's slot lingers, how old a
//!   record is).
//! - Revisions come from one counter (`seq`), as in the memory store: a job removed and
//!   added again must never get back a revision that a late release still carries.
//! - A release is written only by the job's holder in `owners` (the fencing rule of
//!   [`crate::store`]): if the caller's lease ran out and another scheduler took the
//!   job, or a recovery or reap ended the lease, the release is returned as fenced off
//!   and nothing is written. An expired lease keeps its holder until someone else
//!   acquires the job. Otherwise the memory store's rule applies unchanged.
//! - A job whose JSON cannot be read is logged with its id and moved to `broken` when an
//!   acquisition meets it, so it is neither acquired again and again nor blocks the
//!   jobs behind it; `replace_job`, `update_job` or `remove_job` ends that.
//! - Instance slots expire after the `instance_ttl` given to [`connect`], so a slot of a
//!   scheduler that died frees itself; it must be longer than the longest run.
//! - One [`ConnectionManager`]: a single multiplexed connection shared by all calls
//!   (Redis serves one connection's commands in order, and the scripts are short), which
//!   reconnects by itself after a restart or a network blip. Meanwhile calls fail fast
//!   as `Unavailable` and the scheduler retries with backoff; it never waits forever, as
//!   every request has a response timeout.
//! - One Redis server (with replicas, if wanted), not Redis Cluster: the scripts build
//!   per-job keys (`inst:`, `runs:`) from the prefix, which Cluster would not route.
//! - Wake-ups across a cluster: put.lua PUBLISHes the earliest next run time it wrote
//!   on `wake`, in the same atomic step as the write, and [`Cluster::wake_ups`]
//!   SUBSCRIBEs on a connection of its own (`wake.rs`; the multiplexed connection
//!   cannot be in subscribe mode). Another node's change is seen at once, or, while
//!   that connection is down, at the poll (`SchedulerBuilder::poll_interval`).
//! - Membership (`nodes`, `beats`): a heartbeat only renews a registered node, and a
//!   reap (reap_nodes.lua) takes dead nodes out in one step, then frees their instance
//!   slots by SCAN and only then ends their leases, as `recover_owner` does: a job
//!   taken over while the dead node's slot still counted would be refused by
//!   `max_instances`.

mod codec;
mod keys;
mod scripts;
mod wake;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{FromRedisValue, ScriptInvocation};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use self::codec::{
    decode_job, micros, micros_or_empty, parse_micros, parse_score, schedule_key, store_error,
};
use self::keys::Keys;
use super::{
    decode_run_times, encode_run_times, Cluster, ConfigGeneration, DueJobs, FinishedRun,
    InstanceClaim, InstanceSlots, JobStore, Jobs, NodeInfo, Nodes, OrphanedRun, Release,
    RunHistory, RunLimits, StoreError, WakeUp,
};
use crate::history::RunRecord;
use crate::job::Job;

/// How long one connection attempt may take before the store reports `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may wait for its reply. Long enough for a batch of thousands of
/// jobs or a history prune (milliseconds each), short enough that a hung server turns
/// into a retry instead of a stuck scheduler.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the connection manager retries a failed (re)connection before the call
/// waiting on it fails. Every call during an outage waits for these retries, and the
/// scheduler already retries `Unavailable` with its own backoff, so a few quick ones
/// (under a second in all, enough for a Redis restart) beat the crate's default of six
/// (about ten seconds per call).
const RECONNECT_RETRIES: usize = 3;

/// The most that counts and limits sent to a script can be: Lua numbers are doubles,
/// and Redis refuses a range end it cannot read as an integer.
const MAX_COUNT: usize = 1 << 40;

/// How many jobs one put.lua call writes: a batch of 100 000 one-off jobs becomes 100
/// calls of a few milliseconds each, so Redis never stops serving the other schedulers
/// for long, and each request stays small.
const PUT_BATCH: usize = 1_000;

/// How many claims or finished runs one script call carries: a script blocks Redis
/// while it runs, so batches stay small enough to keep that under a millisecond or so.
const SCRIPT_BATCH: usize = 256;

/// The longest instance time-to-live honoured; PEXPIRE refuses times past the year
/// 292 million, and nothing runs for ten years.
const MAX_INSTANCE_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Connects to `redis://…` (or `rediss://…`, TLS; see [`crate::tls`]), with every key under `prefix` (e.g. `"kairos:"` or, in
/// tests, `"t3f9a:"`). Instance slots not released expire after `instance_ttl`.
pub async fn connect(
    url: &str,
    prefix: &str,
    instance_ttl: Duration,
) -> Result<Arc<dyn JobStore>, StoreError> {
    let client = crate::tls::redis_client(url)
        .map_err(|error| StoreError::config(error.to_string()).caused_by(error))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1));
    let connection = ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|error| {
            let hint = crate::tls::redis_connect_hint(url, &error);
            match store_error(error) {
                StoreError::Unavailable { message, source } => StoreError::Unavailable {
                    message: message + hint,
                    source,
                },
                other => other,
            }
        })?;
    Ok(Arc::new(RedisStore {
        client,
        connection,
        keys: Keys::new(prefix),
        instance_ttl: instance_ttl.clamp(Duration::from_millis(1), MAX_INSTANCE_TTL),
    }))
}

/// A job store in Redis.
struct RedisStore {
    /// For the wake-up subscriber's own connections.
    client: ::redis::Client,
    /// Cloning it is cheap and shares the one connection.
    connection: ConnectionManager,
    keys: Keys,
    instance_ttl: Duration,
}

/// The separator between owner and nonce in an instance slot (ASCII unit separator).
const SLOT_SEPARATOR: char = '\u{1f}';

impl RedisStore {
    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(store_error)
    }

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
    async fn end_leases_of(&self, owner: &str) -> Result<u64, StoreError> {
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

    /// Frees every instance slot the `owners` hold; returns how many. Slots live in one
    /// set per job; SCAN visits them without blocking Redis.
    async fn free_slots_of(&self, owners: &[String]) -> Result<u64, StoreError> {
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
                let members: Vec<String> = ::redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut connection)
                    .await
                    .map_err(store_error)?;
                let (orphans, held): (Vec<&String>, Vec<&String>) = members
                    .iter()
                    .filter(|member| prefixes.iter().any(|mine| member.starts_with(mine)))
                    .partition(|member| slot_run_times(member).is_some());
                if !orphans.is_empty() {
                    // Slots that stand for run times nothing else remembers stay, as
                    // orphaned runs (`InstanceSlots::take_orphaned_runs`).
                    let job_id = key.strip_prefix(&inst_prefix).unwrap_or_default();
                    let mut invocation = scripts::ORPHAN_SLOTS.prepare_invoke();
                    invocation.key(&key).key(&keys.orphans).arg(job_id);
                    for member in &orphans {
                        invocation.arg(member.as_str());
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

/// Logs a job that cannot be read; the store carries on without it.
fn warn_unreadable(id: &str, reason: &str, action: &str) {
    tracing::warn!(
        job_id = id,
        reason,
        "Redis job store: unreadable job {action}"
    );
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
        Ok(match (read(&due)?, read(&expiry)?) {
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
        let mut acquired = Vec::with_capacity(flat.len() / 4);
        let mut broken = Vec::new();
        for entry in flat.chunks_exact(4) {
            let [id, json, revision, next] = entry else {
                continue;
            };
            match decode_job(id, json, revision, next) {
                Ok(job) => acquired.push(job),
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
        releases: Vec<Release>,
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
        for release in &releases {
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
        let slots = self.free_slots_of(&[owner.to_owned()]).await?;
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
                .arg(self.instance_ttl.as_millis().max(1));
            for claim in chunk {
                invocation
                    .key(self.keys.instances(&claim.job_id))
                    .arg(claim.max_instances)
                    .arg(slot_member(owner, &claim.run_times));
            }
            let answers: Vec<i64> = self.invoke(&invocation).await?;
            claimed.extend(answers.iter().map(|answer| *answer == 1));
        }
        Ok(claimed)
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

#[async_trait]
impl RunHistory for RedisStore {
    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(&record)
            .map_err(|error| StoreError::corrupt(format!("run {:?}: {error}", record.run_id)))?;
        let keys = &self.keys;
        self.invoke::<i64>(
            scripts::RECORD_RUN
                .key(&keys.runs)
                .key(keys.job_runs(&record.job_id))
                .key(&keys.run)
                .key(&keys.run_seq)
                .key(keys.job_class_runs(&record.job_id, is_success(&record)))
                .key(&keys.run_jobs)
                .arg(micros(record.finished_at))
                .arg(json)
                .arg(&record.job_id),
        )
        .await
        .map(drop)
    }

    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = match job_id {
            Some(id) => self.keys.job_runs(id),
            None => self.keys.runs.clone(),
        };
        let jsons: Vec<String> = self
            .invoke(
                scripts::RUNS
                    .key(index)
                    .key(&self.keys.run)
                    .arg(limit.min(MAX_COUNT)),
            )
            .await?;
        Ok(jsons
            .iter()
            .filter_map(|json| match serde_json::from_str(json) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::warn!(%error, "Redis job store: unreadable run record left out");
                    None
                }
            })
            .collect())
    }

    async fn prune_runs(&self, limits: &RunLimits, batch: usize) -> Result<u64, StoreError> {
        // A `keep` too long to subtract from now keeps everything.
        let cutoff = limits.keep.and_then(|keep| {
            let keep = TimeDelta::from_std(keep).ok()?;
            Utc::now().checked_sub_signed(keep)
        });
        let per_job = limits.successes_per_job.is_some() || limits.failures_per_job.is_some();
        if batch == 0 || (cutoff.is_none() && limits.max_rows.is_none() && !per_job) {
            return Ok(0);
        }
        let count = |limit: Option<u64>| limit.map(|limit| limit.to_string()).unwrap_or_default();
        let keys = &self.keys;
        let batch = batch.min(MAX_COUNT);
        let mut total = 0;
        // One call per SSCAN step of the run jobs set, each a bounded script, until the
        // set was walked through or the batch is full.
        let mut cursor = if per_job {
            "0".to_owned()
        } else {
            String::new()
        };
        loop {
            let (deleted, next): (i64, String) = self
                .invoke(
                    scripts::PRUNE_RUNS
                        .key(&keys.runs)
                        .key(&keys.run)
                        .key(&keys.run_jobs)
                        .arg(micros_or_empty(cutoff))
                        .arg(count(limits.max_rows))
                        .arg(batch - total)
                        .arg(&keys.prefix)
                        .arg(count(limits.successes_per_job))
                        .arg(count(limits.failures_per_job))
                        .arg(&cursor),
                )
                .await?;
            total += usize::try_from(deleted).unwrap_or(0);
            if total >= batch || cursor.is_empty() || next == "0" {
                break;
            }
            cursor = next;
        }
        Ok(u64::try_from(total).unwrap_or(u64::MAX))
    }

    async fn count_runs(&self) -> Result<u64, StoreError> {
        let mut connection = self.connection.clone();
        let count: u64 = ::redis::cmd("ZCARD")
            .arg(&self.keys.runs)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        Ok(count)
    }
}

#[async_trait]
impl Nodes for RedisStore {
    async fn register_node(&self, node: NodeInfo) -> Result<(), StoreError> {
        let json = serde_json::to_string(&node)
            .map_err(|error| StoreError::corrupt(format!("node {:?}: {error}", node.id)))?;
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        ::redis::pipe()
            .atomic()
            .hset(&keys.nodes, &node.id, json)
            .zadd(&keys.beats, &node.id, micros(node.last_heartbeat))
            .query_async::<()>(&mut connection)
            .await
            .map_err(store_error)
    }

    async fn heartbeat(&self, node_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let keys = &self.keys;
        let beat: i64 = self
            .invoke(
                scripts::HEARTBEAT
                    .key(&keys.nodes)
                    .key(&keys.beats)
                    .arg(node_id)
                    .arg(micros(now)),
            )
            .await?;
        Ok(beat == 1)
    }

    async fn heartbeat_node(&self, node: &NodeInfo) -> Result<bool, StoreError> {
        let json = serde_json::to_string(node)
            .map_err(|error| StoreError::corrupt(format!("node {:?}: {error}", node.id)))?;
        let keys = &self.keys;
        let beat: i64 = self
            .invoke(
                scripts::HEARTBEAT
                    .key(&keys.nodes)
                    .key(&keys.beats)
                    .arg(&node.id)
                    .arg(micros(node.last_heartbeat))
                    .arg(json),
            )
            .await?;
        Ok(beat == 1)
    }

    async fn deregister_node(&self, node_id: &str) -> Result<(), StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        ::redis::pipe()
            .atomic()
            .hdel(&keys.nodes, node_id)
            .zrem(&keys.beats, node_id)
            .query_async::<()>(&mut connection)
            .await
            .map_err(store_error)
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        let (jsons, beats): (HashMap<String, String>, Vec<(String, String)>) = ::redis::pipe()
            .atomic()
            .hgetall(&keys.nodes)
            .cmd("ZRANGE")
            .arg(&keys.beats)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let beats: HashMap<String, String> = beats.into_iter().collect();
        let mut nodes = Vec::with_capacity(jsons.len());
        for (id, json) in &jsons {
            match serde_json::from_str::<NodeInfo>(json) {
                Ok(mut node) => {
                    // The beats set is the truth; the JSON holds the registration's.
                    if let Some(beat) = beats.get(id).and_then(|score| parse_score(score).ok()) {
                        node.last_heartbeat = beat;
                    }
                    nodes.push(node);
                }
                Err(error) => {
                    tracing::warn!(node_id = id, %error, "Redis job store: unreadable node left out");
                }
            }
        }
        nodes.sort_by(|left, right| left.id.cmp(&right.id));
        Ok(nodes)
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
        let keys = &self.keys;
        let dead: Vec<String> = self
            .invoke(
                scripts::REAP_NODES
                    .key(&keys.nodes)
                    .key(&keys.beats)
                    .arg(micros(cutoff)),
            )
            .await?;
        if !dead.is_empty() {
            // The nodes are out of the membership, so no survivor reaps them again.
            // Their slots go first, their leases after (see reap_nodes.lua); if this
            // node fails in between, the leases expire on their own.
            self.free_slots_of(&dead).await?;
            for owner in &dead {
                self.end_leases_of(owner).await?;
            }
        }
        Ok(dead)
    }
}

#[async_trait]
impl Cluster for RedisStore {
    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<WakeUp>> {
        Some(wake::subscribe(self.client.clone(), self.keys.wake.clone()))
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn config_generations(&self, limit: usize) -> Result<Vec<ConfigGeneration>, StoreError> {
        let mut connection = self.connection.clone();
        // Generations have no gaps, so the hash's length is the newest and the newest
        // `limit` are named fields: `/health` reads one, not every config ever applied.
        let newest: u64 = ::redis::cmd("HLEN")
            .arg(&self.keys.configs)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let count = u64::try_from(limit).unwrap_or(u64::MAX).min(newest);
        if count == 0 {
            return Ok(Vec::new());
        }
        let fields: Vec<u64> = (newest - count + 1..=newest).rev().collect();
        let jsons: Vec<Option<String>> = ::redis::cmd("HMGET")
            .arg(&self.keys.configs)
            .arg(&fields)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let mut generations = Vec::with_capacity(jsons.len());
        for (field, json) in fields.iter().zip(jsons) {
            // Recorded after the HLEN above would be newer, never missing: a hole is
            // a hash someone edited by hand.
            let json = json.ok_or_else(|| {
                StoreError::corrupt(format!("config generation {field} is missing"))
            })?;
            let generation: ConfigGeneration = serde_json::from_str(&json).map_err(|error| {
                StoreError::corrupt(format!("config generation {field}: {error}"))
            })?;
            generations.push(generation);
        }
        Ok(generations)
    }

    async fn claim_alert(
        &self,
        key: &str,
        _now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        // `SET NX PX`: one atomic step; the claim ends by Redis's expiry, which measures
        // the real time it is meant to (how long an alert stays sent).
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = ::redis::cmd("SET")
            .arg(self.keys.alert_claim(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        Ok(set.is_some())
    }

    async fn record_config_generation(&self, next: ConfigGeneration) -> Result<bool, StoreError> {
        let json = serde_json::to_string(&next).map_err(|error| {
            StoreError::corrupt(format!("config generation {}: {error}", next.generation))
        })?;
        let recorded: i64 = self
            .invoke(
                scripts::RECORD_CONFIG
                    .key(&self.keys.configs)
                    .arg(next.generation)
                    .arg(json),
            )
            .await?;
        Ok(recorded == 1)
    }
}

/// Whether a record counts among its job's successes for the per-job limits.
fn is_success(record: &RunRecord) -> bool {
    record.outcome == crate::history::RunOutcome::Success
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable() {
        // Port 1 on loopback: nothing listens there, so the refusal is immediate.
        let result = connect("redis://127.0.0.1:1/", "t:", Duration::from_secs(60)).await;
        let error = result.err().map(|error| error.kind());
        assert_eq!(error, Some(crate::store::StoreErrorKind::Unavailable));
        // A URL that is not a Redis URL is a mistake to fix, not an outage to wait out.
        let bad = connect("http://nope", "t:", Duration::from_secs(60)).await;
        assert_eq!(
            bad.err().map(|error| error.kind()),
            Some(crate::store::StoreErrorKind::Config)
        );
    }
}
