//! `redis://`: jobs and run history in Redis, shared by every scheduler of a cluster.
//!
//! The store keeps the semantics of the memory store (`src/store/memory.rs`) exactly:
//! revisions, leases, the release rule with schedule versions, instance counts.
//! Only the data lives elsewhere, and every step that touches more than one structure
//! is one Lua script (`scripts.rs`, `lua/`).
//!
//! # Files
//! One per part of the store contract: `jobs.rs` ([`Jobs`], put.lua's batches),
//! `leases.rs` ([`DueJobs`]), `slots.rs` ([`InstanceSlots`], the members of `inst:ID`),
//! `history.rs` ([`RunHistory`]), `nodes.rs` ([`Nodes`]), `cluster.rs` ([`Cluster`]),
//! and `wake.rs` (its wake-up listener); here, connecting and the key layout.
//!
//! [`Jobs`]: crate::store::Jobs
//! [`DueJobs`]: crate::store::DueJobs
//! [`InstanceSlots`]: crate::store::InstanceSlots
//! [`RunHistory`]: crate::store::RunHistory
//! [`Nodes`]: crate::store::Nodes
//! [`Cluster`]: crate::store::Cluster
//! [`NodeInfo`]: crate::store::NodeInfo
//! [`ConfigGeneration`]: crate::store::ConfigGeneration
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
//! | `kairos:wait:ID` | hash | job ID's waiter: the `owner` whose run waits for one of its instance slots (`overlap = "queue"`) and the `max` instances it claims under, expiring with it (wait_for_instance.lua) |
//! | `kairos:waiters` | set | the ids of the jobs with a waiter, for a recovery or a reap (stop_waiting.lua) |
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
//!   on `wake`, in the same atomic step as the write, and
//!   [`Cluster::wake_ups`](crate::store::Cluster::wake_ups) SUBSCRIBEs on a connection of
//!   its own (`wake.rs`; the multiplexed connection cannot be in subscribe mode). Another
//!   node's change is seen at once, or, while that connection is down, at the poll
//!   (`SchedulerBuilder::poll_interval`).
//! - Membership (`nodes`, `beats`): a heartbeat only renews a registered node, and a
//!   reap (reap_nodes.lua) takes dead nodes out in one step, then frees their instance
//!   slots by SCAN and only then ends their leases, as `recover_owner` does: a job
//!   taken over while the dead node's slot still counted would be refused by
//!   `max_instances`.

mod cluster;
mod codec;
mod history;
mod jobs;
mod keys;
mod leases;
mod nodes;
mod scripts;
mod slots;
mod wake;

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{FromRedisValue, ScriptInvocation};

use self::codec::store_error;
use self::keys::Keys;
use super::{JobStore, StoreError};

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
}

/// Logs a job that cannot be read; the store carries on without it.
fn warn_unreadable(id: &str, reason: &str, action: &str) {
    tracing::warn!(
        job_id = id,
        reason,
        "Redis job store: unreadable job {action}"
    );
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
