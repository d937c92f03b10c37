//! One counter's correction: stream its query's rows, build the new sorted set under a
//! temporary key in batches, then put it in place of the live key in one atomic step.
//!
//! ```text
//!  SQL rows ──▶ batch of 1,000 ──▶ pipeline: ZADD tmp … ; PEXPIRE tmp ; ZMSCORE live …
//!                                                  │ (added / changed / unchanged)
//!  end of rows ──▶ swap.lua: ZCARD live ; RENAME tmp live ; PERSIST live   (or DEL live)
//! ```
//!
//! # Ground rules
//! - The live key is only ever touched by the swap script, so a reader sees the old set
//!   until the new one is complete, and a run that fails anywhere before the swap
//!   (bad SQL, a timeout, Redis going away) leaves the old set exactly as it was.
//! - Memory is one batch, however many rows the query returns: the comparison with the
//!   old values happens batch by batch (ZMSCORE of the batch's members against the live
//!   key), never by loading either set.
//! - The temporary key expires on its own ([`TEMP_KEY_TTL`], renewed with every batch),
//!   and the next run deletes a leftover one first, so a crashed run leaks nothing.

use std::time::Duration;

use futures_util::TryStreamExt;
use redis::aio::MultiplexedConnection;

use crate::task::sql::SqlPool;

/// How long an abandoned temporary key lives after its last batch.
const TEMP_KEY_TTL: Duration = Duration::from_secs(3600);

/// Replaces the live key with the temporary one (see `swap.lua`).
static SWAP: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("swap.lua")));

/// What one counter's correction changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CounterChanges {
    /// Members of the new set.
    pub(crate) members: u64,
    /// Members the old set lacked.
    pub(crate) added: u64,
    /// Members whose score differed.
    pub(crate) changed: u64,
    /// Members of the old set the new one lacks.
    pub(crate) removed: u64,
}

/// Why a counter could not be corrected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CounterError {
    /// The database could not be reached.
    #[error("{0}")]
    Database(#[from] crate::task::sql::SqlError),
    /// The query failed or returned a row that is not (member, count).
    #[error("the query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// No connection to Redis could be made.
    #[error("{0}")]
    RedisUnreachable(String),
    /// A Redis command failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The counter took longer than `counter_timeout`.
    #[error("gave up after {} (counter_timeout)", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// The temporary key the new set of `live` is built under.
pub(crate) fn temp_key(live: &str) -> String {
    format!("{live}:kairos-tmp")
}

/// Corrects the sorted set at `live` from the rows of `query`.
pub(crate) async fn refresh(
    pool: &SqlPool,
    redis: &mut MultiplexedConnection,
    query: &str,
    live: &str,
    batch_size: usize,
) -> Result<CounterChanges, CounterError> {
    let temp = temp_key(live);
    // A leftover of a run that died mid-way would otherwise be merged into this one.
    redis::cmd("DEL")
        .arg(&temp)
        .query_async::<()>(redis)
        .await?;
    // A live key of another type (someone's mistake) is replaced, not compared with:
    // ZMSCORE would fail on it.
    let live_type: String = redis::cmd("TYPE").arg(live).query_async(redis).await?;
    let compare = matches!(live_type.as_str(), "zset" | "none");

    let mut batch = Batch {
        live,
        temp: &temp,
        compare,
        pairs: Vec::with_capacity(batch_size),
        changes: CounterChanges::default(),
        unchanged: 0,
    };
    let mut rows = pool.pairs(query);
    while let Some(pair) = rows.try_next().await.map_err(CounterError::Query)? {
        batch.pairs.push(pair);
        if batch.pairs.len() >= batch_size {
            batch.flush(redis).await?;
        }
    }
    drop(rows);
    batch.flush(redis).await?;

    let mut changes = batch.changes;
    let old_members: u64 = SWAP
        .key(&temp)
        .key(live)
        .arg(if changes.members > 0 { "1" } else { "0" })
        .invoke_async(redis)
        .await?;
    // Old members still present were counted batch by batch as changed or unchanged;
    // the rest were removed.
    changes.removed = old_members.saturating_sub(changes.changed + batch.unchanged);
    Ok(changes)
}

/// The rows read but not yet written, and the counts so far.
struct Batch<'a> {
    live: &'a str,
    temp: &'a str,
    compare: bool,
    pairs: Vec<(String, f64)>,
    changes: CounterChanges,
    /// Members already in the live key with the same score.
    unchanged: u64,
}

impl Batch<'_> {
    /// Writes the pending rows to the temporary key and compares them with the live
    /// key, in one round trip.
    async fn flush(&mut self, redis: &mut MultiplexedConnection) -> Result<(), CounterError> {
        if self.pairs.is_empty() {
            return Ok(());
        }
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(self.temp);
        for (member, count) in &self.pairs {
            zadd.arg(*count).arg(member);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(zadd)
            .cmd("PEXPIRE")
            .arg(self.temp)
            .arg(u64::try_from(TEMP_KEY_TTL.as_millis()).unwrap_or(u64::MAX))
            .ignore();
        let (written, old_scores): (u64, Vec<Option<f64>>) = if self.compare {
            let mut zmscore = redis::cmd("ZMSCORE");
            zmscore.arg(self.live);
            for (member, _) in &self.pairs {
                zmscore.arg(member);
            }
            pipe.add_command(zmscore);
            pipe.query_async(redis).await?
        } else {
            let (written,): (u64,) = pipe.query_async(redis).await?;
            (written, vec![None; self.pairs.len()])
        };
        // ZADD counts members new to the temporary key, so a query that repeats a
        // member is not counted twice.
        self.changes.members += written;
        for ((_, count), old) in self.pairs.iter().zip(old_scores) {
            match old {
                None => self.changes.added += 1,
                Some(old) if old == *count => self.unchanged += 1,
                Some(_) => self.changes.changed += 1,
            }
        }
        self.pairs.clear();
        Ok(())
    }
}
