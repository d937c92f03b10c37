//! `sqlite://`, `postgres://`, `mysql://`: one job store on SQL, three dialects.
//!
//! This module owns the store and everything the databases share: the table layout,
//! the revision and lease rules of [`crate::store`], the JSON form of jobs, broken-row
//! handling and error mapping. What differs between databases lives in one file per
//! dialect (`sqlite.rs`, `postgres.rs`, `mysql.rs`), each implementing `Dialect`:
//! connecting, the DDL, how rows are locked for a claim, placeholders, the schema lock
//! and which error codes mean "unique violation". Nothing here matches on the dialect;
//! [`connect`] only picks the dialect type from the URL scheme, which each dialect
//! declares.
//!
//! # Schema (version 11, MySQL 9; `{p}` is the table prefix, default `kairos_`)
//! - `{p}jobs`: `id` (primary key), `next_run_time` (UTC microseconds, NULL while paused),
//!   `paused`, `revision`, `lease_owner`, `lease_expires` (µs, NULL when not acquired),
//!   `broken`, and `job`, the [`Job`](crate::job::Job) as serde_json text. Indexed on
//!   `next_run_time` (due scans, the earliest wake-up), `lease_expires` (expired
//!   leases) and `lease_owner` (a node's held jobs); since version 11 the two lease
//!   indexes hold only held jobs (partial; MySQL has no partial indexes), so an add
//!   writes no index entry for a lease it does not have. Since version 10 (MySQL 9) `schedule_version`, bumped by every write that
//!   changes the job's schedule, and `lease_schedule`, the schedule version the lease
//!   took (NULL for a lease taken before): what a release is judged by (the ground
//!   rules of [`crate::store`]).
//! - `{p}instances`: one row per running instance, keyed by `(job_id, slot)` with
//!   `slot < max_instances`, so the primary key itself bounds concurrent runs.
//! - `{p}runs`: run history, indexed on `(job_id, finished_at)` and `finished_at`.
//! - `{p}nodes` (version 2): cluster membership, one row per node (`id`, `host`, `pid`,
//!   `version`, `started_at`, `heartbeat_at` in µs, and since version 4 (MySQL: 3)
//!   `stats`, the [`NodeStats`](crate::store::NodeStats) of its last beat as JSON); see
//!   `nodes.rs`.
//! - `{p}config_generations` (version 5, MySQL 4): the configs applied, in order
//!   (`generation` primary key, `hash`, `node_id`, `forced`); see `cluster.rs`.
//! - `{p}alert_claims` (version 7, MySQL 6): alert keys claimed once per cluster
//!   (`claim_key` primary key, `expires_at` µs); see `cluster.rs`.
//! - `{p}settings` (version 9, MySQL 8): what the store remembers about itself, one
//!   `value` per `name`; today the zone rules its next run times follow (see
//!   `cluster.rs`).
//! - `{p}waiters` (version 12, MySQL 10): the run of a job that waits for an instance
//!   slot (`overlap = "queue"`), one per job at most (`job_id` primary key, `owner`,
//!   the `max_instances` its run claims under, `expires_at` µs); see `history.rs`.
//! - `{p}schema_version`: the migrations applied.
//!
//! # Ground rules
//! - Columns are the truth for what the store itself changes (`next_run_time`,
//!   `revision`, leases); the JSON is the truth for the rest. Reading a job overlays the
//!   columns on the JSON, so a release never rewrites the JSON.
//! - Revisions come from `Revisions`: microseconds of the clock, but always above
//!   the row's previous revision and any this process handed out. A job removed and
//!   re-added therefore never repeats an old revision, and a write is one statement
//!   when it needs no read (adding) and one transaction when it does.
//! - Every write that reads first (update, replace, release, claim) locks the rows it
//!   reads (`Dialect::LOCK_ROWS` in a `Dialect::BEGIN_WRITE` transaction), in id
//!   order, so concurrent writers queue instead of losing updates.
//! - A row whose JSON cannot be read (corrupt, or a trigger type this build does not
//!   know) is logged with its id, marked `broken` and left out of the due set, so it
//!   never blocks the others. Opening the store clears the marks: a newer build may
//!   read what an older one could not.
//! - No `unwrap` on anything that came from the database; decode failures are
//!   [`StoreError::Corrupt`], every other database failure is
//!   [`StoreError::Unavailable`] except unique violations ([`StoreError::Conflict`])
//!   and what no retry can mend: a URL whose options do not parse, an unknown scheme, a
//!   bad table prefix ([`StoreError::Config`], reported when the store is opened). The
//!   driver's error is kept as the error's `source()`.

mod cluster;
mod driver;
mod group_commit;
mod history;
mod jobs;
mod leases;
mod mysql;
mod nodes;
mod postgres;
mod schema;
mod sqlite;

use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::error::DatabaseError;
use sqlx::{Database, Pool, Transaction};

use self::driver::{Arg, SqlDb};
use super::{JobStore, StoreError};

/// The longest table prefix: it is spliced into DDL and index names, which some
/// databases cap at 64 characters.
pub const MAX_PREFIX_LEN: usize = 20;

/// How many ids one `IN (…)` list carries; longer lists are cut into chunks.
const CHUNK: usize = 256;

/// Settings of a SQL job store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlOptions {
    /// Prepended to every table name, so several schedulers (or tests) can share one
    /// database: `[A-Za-z0-9_]`, at most [`MAX_PREFIX_LEN`] characters.
    pub table_prefix: String,
    /// The size of the connection pool.
    pub max_connections: u32,
    /// How long a running-instance slot counts when its owner never releases it (the
    /// scheduler died mid-run).
    pub instance_ttl: Duration,
    /// How long an operation waits for a connection, including when the server is
    /// down; it then fails with [`StoreError::Unavailable`] and the scheduler retries.
    pub acquire_timeout: Duration,
    /// A pooled connection unused for this long is pinged before its next use and
    /// replaced if the server went away meanwhile (a restart, an idle timeout);
    /// connections in steady use skip the ping, a round trip per statement.
    pub idle_check_after: Duration,
    /// The longest one statement may run on the server (PostgreSQL
    /// `statement_timeout`, MariaDB `max_statement_time`, MySQL `max_execution_time`
    /// for reads); it then fails as `Unavailable` and the scheduler retries. A
    /// statement stuck behind a lock no longer holds the main loop (and, under
    /// systemd, the watchdog notices a pass that cannot finish for any other reason).
    pub statement_timeout: Duration,
}

impl Default for SqlOptions {
    fn default() -> SqlOptions {
        SqlOptions {
            table_prefix: "kairos_".to_owned(),
            max_connections: 10,
            instance_ttl: Duration::from_secs(3600),
            acquire_timeout: Duration::from_secs(10),
            idle_check_after: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Connects to the database named by `url`, applies the schema migrations and returns
/// the store.
///
/// `sqlite://PATH` (relative or absolute; the file and its directory are created if
/// missing, in WAL mode), `postgres://…` or `postgresql://…`, `mysql://…` or
/// `mariadb://…` (MySQL 8 or MariaDB 10.6 and later: claims need `SKIP LOCKED`).
/// Several schedulers may connect at once: migrations run under a lock.
pub async fn connect(url: &str, options: SqlOptions) -> Result<Arc<dyn JobStore>, StoreError> {
    check_prefix(&options.table_prefix)?;
    // Schemes are case-insensitive (RFC 3986), but the drivers only read lowercase.
    let scheme = scheme_of(url)?.to_ascii_lowercase();
    let lowered = format!("{scheme}{}", &url[scheme.len()..]);
    let (url, scheme) = (lowered.as_str(), scheme.as_str());
    if sqlite::Sqlite::SCHEMES.contains(&scheme) {
        return Ok(Arc::new(
            SqlStore::<sqlite::Sqlite>::open(url, options).await?,
        ));
    }
    if postgres::Postgres::SCHEMES.contains(&scheme) {
        return Ok(Arc::new(
            SqlStore::<postgres::Postgres>::open(url, options).await?,
        ));
    }
    if mysql::MySql::SCHEMES.contains(&scheme) {
        return Ok(Arc::new(
            SqlStore::<mysql::MySql>::open(url, options).await?,
        ));
    }
    Err(StoreError::config(format!(
        "no SQL store for URL scheme {scheme:?} (expected sqlite, postgres or mysql)"
    )))
}

/// The scheme of a store URL: what comes before the first `:`.
fn scheme_of(url: &str) -> Result<&str, StoreError> {
    url.split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|scheme| !scheme.is_empty())
        .ok_or_else(|| StoreError::config(format!("{url:?} is not a store URL")))
}

/// Checks a table prefix: it is spliced into SQL, so only identifier characters pass.
fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    let valid = prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::config(format!(
            "invalid table prefix {prefix:?}: use at most {MAX_PREFIX_LEN} of A-Z, a-z, 0-9 and _"
        )))
    }
}

/// One schema migration: statements with `{p}` for the table prefix.
#[derive(Debug)]
pub(crate) struct Migration {
    /// Applied in increasing order; recorded in `{p}schema_version`.
    pub version: i64,
    /// Idempotent statements (`IF NOT EXISTS`), so a migration cut short by a crash on
    /// a database without transactional DDL (MySQL) can simply run again.
    pub statements: &'static [&'static str],
}

/// What differs between SQL databases. Implemented by one type per dialect file.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// The sqlx database.
    type Database: SqlDb;
    /// The dialect's name in logs and errors.
    const NAME: &'static str;
    /// The URL schemes that select this dialect.
    const SCHEMES: &'static [&'static str];
    /// Opens a transaction that will write.
    const BEGIN_WRITE: &'static str;
    /// Appended to a `SELECT` whose rows the transaction then writes.
    const LOCK_ROWS: &'static str;
    /// Appended to the claim's `SELECT` of due jobs: rows that another scheduler is
    /// claiming at this moment are skipped rather than waited for.
    const CLAIM_LOCK: &'static str;
    /// The schema, oldest first.
    const MIGRATIONS: &'static [Migration];
    /// Whether a locking statement may lock (and wait for) every row it scans rather
    /// than only the rows it matches: InnoDB does, and on a small table its optimizer
    /// scans the whole table for `WHERE (a = ? AND b = ?) OR …`. Such dialects delete
    /// rows one primary key at a time where a row of another session may be locked
    /// (a node frozen inside a transaction must not stall the others).
    const LOCKS_SCANNED_ROWS: bool = false;
    /// Whether several schedulers may share the database ([`Cluster::is_shared`]).
    const SHARED: bool = true;
    /// How long this process's writers wait for their turn ([`WriterQueue`]), if they
    /// take turns at all: a database with one write lock and a busy handler that
    /// sleeps (SQLite) has them queue in the process instead of polling for the lock.
    const WRITER_TURN: Option<Duration> = None;

    /// A connection pool for `url`.
    fn connect(
        url: &str,
        options: &SqlOptions,
    ) -> impl Future<Output = Result<Pool<Self::Database>, sqlx::Error>> + Send;

    /// Appends the placeholder of the `index`th (1-based) bound value.
    fn placeholder(index: usize, sql: &mut String);

    /// Takes the lock that serializes migrations of the tables named by `key`.
    fn lock_schema<'c>(
        connection: &'c mut <Self::Database as Database>::Connection,
        key: &'c str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c;

    /// Releases the lock of [`Dialect::lock_schema`] after the migrations succeeded.
    fn unlock_schema<'c>(
        connection: &'c mut <Self::Database as Database>::Connection,
        key: &'c str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c;

    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Database as Database>::QueryResult) -> u64;

    /// Whether a database error is a primary-key or unique-index violation.
    fn is_unique_violation(error: &dyn DatabaseError) -> bool;

    /// The statement that announces written jobs to listening schedulers, with two
    /// placeholders: the channel and the payload ([`crate::store::wake`]); `None` when
    /// the database cannot push (the default).
    const NOTIFY: Option<&'static str> = None;

    /// Starts a listener on `channel` with a connection of its own, made from `pool`'s
    /// settings ([`Cluster::wake_ups`]); `None` when the database cannot push (the
    /// default).
    fn listen(
        _pool: &Pool<Self::Database>,
        _channel: String,
    ) -> Option<tokio::sync::mpsc::Receiver<crate::store::WakeUp>> {
        None
    }

    /// Whether a migration statement failed only because what it creates exists
    /// already: for DDL the database cannot write idempotently (MySQL has no
    /// `CREATE INDEX IF NOT EXISTS`), so a migration cut short can run again. Dialects
    /// whose DDL says `IF NOT EXISTS` keep the default.
    fn is_already_there(_error: &dyn DatabaseError) -> bool {
        false
    }
}

/// A job store on one SQL database.
pub(crate) struct SqlStore<D: Dialect> {
    pool: Pool<D::Database>,
    prefix: String,
    instance_ttl: Duration,
    /// Shared by clones: a clone is the same store (see `group_commit.rs`).
    revisions: Arc<Revisions>,
    /// Single adds waiting to be inserted together (`group_commit.rs`).
    adds: Arc<std::sync::Mutex<group_commit::AddQueue>>,
    /// This process's writers' turns ([`Dialect::WRITER_TURN`]).
    writers: WriterQueue,
    dialect: PhantomData<fn() -> D>,
}

/// Where a store's writers in this process wait for their turn at the database's one
/// write lock, woken in order as the writer before them ends (docs/architecture.md,
/// "SQLite's one writer").
/// Without it they would find the lock taken and poll for it through SQLite's busy
/// handler, which sleeps 1, 2, 5, … up to 100 ms between looks: a writer could sleep
/// half a second after the lock came free, and the runs due meanwhile with it
/// (BENCHMARKS.md, "Burst on SQLite"). Shared by clones of the store.
#[derive(Clone, Default)]
struct WriterQueue(Arc<tokio::sync::Mutex<()>>);

impl WriterQueue {
    /// Waits for this writer's turn, for at most `patience` (a turn held that long is
    /// a stuck writer, and waiting on would stall the scheduler: the store answers as
    /// SQLite's busy timeout would).
    async fn turn(
        &self,
        patience: Duration,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, sqlx::Error> {
        tokio::time::timeout(patience, Arc::clone(&self.0).lock_owned())
            .await
            .map_err(|_| {
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "another write of this process held the database for over {patience:?}"
                    ),
                ))
            })
    }
}

/// A write transaction, holding its writer's turn ([`WriterQueue`]) until it ends.
pub(super) struct WriteTransaction<D: Dialect> {
    transaction: Transaction<'static, D::Database>,
    /// Dropped after the transaction (fields drop in order), so the next writer
    /// begins once this one has ended.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<D: Dialect> WriteTransaction<D> {
    /// Commits, then gives the turn to the next writer.
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.transaction.commit().await
    }
}

impl<D: Dialect> std::ops::Deref for WriteTransaction<D> {
    type Target = Transaction<'static, D::Database>;

    fn deref(&self) -> &Self::Target {
        &self.transaction
    }
}

impl<D: Dialect> std::ops::DerefMut for WriteTransaction<D> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.transaction
    }
}

/// The same store: one pool, one revision counter, one add queue. (Derived `Clone`
/// would ask for `D: Clone`.)
impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> SqlStore<D> {
        SqlStore {
            pool: self.pool.clone(),
            prefix: self.prefix.clone(),
            instance_ttl: self.instance_ttl,
            revisions: Arc::clone(&self.revisions),
            adds: Arc::clone(&self.adds),
            writers: self.writers.clone(),
            dialect: PhantomData,
        }
    }
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SqlStore")
            .field("dialect", &D::NAME)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Connects, migrates and clears the broken marks (see the ground rules).
    async fn open(url: &str, options: SqlOptions) -> Result<SqlStore<D>, StoreError> {
        check_prefix(&options.table_prefix)?;
        let pool = D::connect(url, &options).await.map_err(failure::<D>)?;
        let store = SqlStore {
            pool,
            prefix: options.table_prefix,
            instance_ttl: options.instance_ttl,
            revisions: Arc::default(),
            adds: Arc::default(),
            writers: WriterQueue::default(),
            dialect: PhantomData,
        };
        schema::migrate(&store).await?;
        let sql = store.sql("UPDATE {p}jobs SET broken = 0 WHERE broken <> 0");
        store.execute(&sql, Vec::new()).await?;
        Ok(store)
    }

    /// `template` with `{p}` replaced by the table prefix and each `?` by the
    /// dialect's placeholder.
    fn sql(&self, template: &str) -> String {
        render::<D>(template, &self.prefix)
    }

    /// Runs one statement on a pooled connection; returns the rows it changed. The
    /// error is left as it is, for callers that tell conflicts apart.
    async fn run(&self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        let _turn = self.writer_turn().await?;
        let mut connection = self.pool.acquire().await?;
        execute_on::<D>(&mut connection, sql, args).await
    }

    /// [`SqlStore::run`] with the error mapped.
    async fn execute(&self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        self.run(sql, args).await.map_err(failure::<D>)
    }

    /// Waits for this writer's turn where the dialect has writers take turns.
    async fn writer_turn(&self) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, sqlx::Error> {
        match D::WRITER_TURN {
            Some(patience) => self.writers.turn(patience).await.map(Some),
            None => Ok(None),
        }
    }

    /// Runs one query on a pooled connection.
    async fn fetch(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<RowOf<D>>, StoreError> {
        let mut connection = self.pool.acquire().await.map_err(failure::<D>)?;
        D::Database::fetch_all(&mut connection, sql, args)
            .await
            .map_err(failure::<D>)
    }

    /// Opens a write transaction.
    async fn begin(&self) -> Result<WriteTransaction<D>, StoreError> {
        let turn = self.writer_turn().await.map_err(failure::<D>)?;
        let transaction = self
            .pool
            .begin_with(D::BEGIN_WRITE)
            .await
            .map_err(failure::<D>)?;
        Ok(WriteTransaction {
            transaction,
            _turn: turn,
        })
    }
}

/// A row of dialect `D`'s database.
type RowOf<D> = <<D as Dialect>::Database as Database>::Row;

/// Runs one statement on `connection` (pooled, or a transaction); returns the rows it
/// changed.
async fn execute_on<D: Dialect>(
    connection: &mut <D::Database as Database>::Connection,
    sql: &str,
    args: Vec<Arg>,
) -> Result<u64, sqlx::Error> {
    let result = D::Database::execute(connection, sql, args).await?;
    Ok(D::rows_affected(&result))
}

/// Replaces `{p}` with `prefix` and numbers the `?` placeholders for dialect `D`.
fn render<D: Dialect>(template: &str, prefix: &str) -> String {
    let mut sql = String::with_capacity(template.len() + 64);
    let mut index = 0;
    // The prefix holds identifier characters only (check_prefix), so no `?` comes
    // from it; templates hold no string literals with `?` either.
    for (part_index, part) in template.split("{p}").enumerate() {
        if part_index > 0 {
            sql.push_str(prefix);
        }
        for character in part.chars() {
            if character == '?' {
                index += 1;
                D::placeholder(index, &mut sql);
            } else {
                sql.push(character);
            }
        }
    }
    sql
}

/// `count` placeholders separated by commas, for `IN (…)`.
fn marks(count: usize) -> String {
    let mut list = String::with_capacity(count * 3);
    for index in 0..count {
        if index > 0 {
            list.push_str(", ");
        }
        list.push('?');
    }
    list
}

/// How many values an `IN (…)` list of `count` ids binds: the next power of two, so
/// the statements of every batch size share a few prepared forms (the last id is
/// repeated, which changes nothing).
fn padded(count: usize) -> usize {
    count.max(1).next_power_of_two()
}

/// Maps a database failure to a store error kind.
fn failure<D: Dialect>(error: sqlx::Error) -> StoreError {
    let message = format!("{}: {error}", D::NAME);
    let kind = match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::corrupt(message),
        // The URL's options do not parse: retrying cannot help.
        sqlx::Error::Configuration(_) => StoreError::config(message),
        _ => StoreError::unavailable(message),
    };
    kind.caused_by(error)
}

/// Whether `error` is a unique violation, which callers turn into a conflict.
fn is_conflict<D: Dialect>(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|error| D::is_unique_violation(error))
}

/// An instant as stored: microseconds since the Unix epoch.
fn micros(instant: DateTime<Utc>) -> i64 {
    instant.timestamp_micros()
}

/// A stored instant back; `Corrupt` when it is out of chrono's range.
fn instant(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::corrupt(format!("instant {micros} µs is out of range")))
}

/// A duration in microseconds, saturating.
fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Hands out revisions: the clock in microseconds, bumped past anything seen.
///
/// A plain per-row counter would restart when a job is removed and re-added under the
/// same id, and a release carrying the old job's revision could then match the new
/// job. Clock-based revisions make that impossible in practice, and the floor keeps
/// every row's revisions strictly increasing even when clocks of several schedulers
/// disagree.
#[derive(Debug, Default)]
struct Revisions {
    last: AtomicI64,
}

impl Revisions {
    /// A new revision above `floor` (the row's current revision; 0 for a new row).
    fn after(&self, floor: i64) -> i64 {
        let now = Utc::now().timestamp_micros();
        let step = |last: i64| last.saturating_add(1).max(now).max(floor.saturating_add(1));
        let previous = self
            .last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(step(last))
            })
            .unwrap_or_else(|last| last);
        step(previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_identifiers_of_bounded_length() {
        for good in ["kairos_", "t3f9a_", "", "ABC_123", "x".repeat(20).as_str()] {
            assert!(check_prefix(good).is_ok(), "{good:?}");
        }
        for bad in [
            "kairos-",
            "a b",
            "t;DROP",
            "x\"",
            "é",
            "x".repeat(21).as_str(),
        ] {
            assert!(
                matches!(check_prefix(bad), Err(StoreError::Config { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn url_schemes_pick_one_dialect_each() {
        let pick = |url: &str| {
            let scheme = scheme_of(url).ok()?;
            let names: Vec<&str> = [
                (sqlite::Sqlite::SCHEMES, sqlite::Sqlite::NAME),
                (postgres::Postgres::SCHEMES, postgres::Postgres::NAME),
                (mysql::MySql::SCHEMES, mysql::MySql::NAME),
            ]
            .into_iter()
            .filter(|(schemes, _)| schemes.contains(&scheme))
            .map(|(_, name)| name)
            .collect();
            assert!(names.len() <= 1, "{url}: {names:?}");
            names.first().copied()
        };
        assert_eq!(pick("sqlite://kairos.db"), Some("sqlite"));
        assert_eq!(pick("sqlite:///var/lib/kairos/jobs.db"), Some("sqlite"));
        assert_eq!(pick("postgres://u@h/db"), Some("postgres"));
        assert_eq!(pick("postgresql://u@h/db"), Some("postgres"));
        assert_eq!(pick("mysql://root@h/db"), Some("mysql"));
        assert_eq!(pick("mariadb://root@h/db"), Some("mysql"));
        assert_eq!(pick("redis://h"), None);
        assert_eq!(pick("kairos.db"), None);
    }

    /// A store's writers queue in the process for SQLite's one write lock rather than
    /// find it taken: with SQLite's busy timeout at zero, a writer that found it taken
    /// would fail at once, and one that polled would sleep in the busy handler
    /// (BENCHMARKS.md, "Burst on SQLite": half-second tails).
    #[tokio::test]
    async fn sqlite_writers_wait_their_turn_instead_of_finding_the_lock_taken() {
        use std::str::FromStr;
        let path = std::env::temp_dir().join(format!(
            "kairos-writer-turns-{}-{}.db",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let url = format!("sqlite://{}", path.display());
        let mut store = SqlStore::<sqlite::Sqlite>::open(&url, SqlOptions::default())
            .await
            .expect("a fresh SQLite store");
        let impatient = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .expect("the URL")
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::ZERO);
        store.pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(impatient)
            .await
            .expect("a pool on the same file");
        let transaction = store.begin().await.expect("the first writer's turn");
        let second = {
            let store = store.clone();
            let sql = store.sql("UPDATE {p}jobs SET broken = 0 WHERE broken <> 0");
            tokio::spawn(async move { store.execute(&sql, Vec::new()).await })
        };
        // Time for a writer that went to SQLite to come back refused.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !second.is_finished(),
            "the second writer went to SQLite while the first held the lock: {:?}",
            second.await
        );
        transaction
            .commit()
            .await
            .expect("the first writer commits");
        let written = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the second writer's turn came")
            .expect("the second writer's task");
        assert!(written.is_ok(), "{written:?}");
        store.pool.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn driver_errors_keep_their_cause_and_kind() {
        use std::error::Error as _;
        let outage = failure::<sqlite::Sqlite>(sqlx::Error::PoolTimedOut);
        assert_eq!(outage.kind(), crate::store::StoreErrorKind::Unavailable);
        assert!(outage
            .source()
            .is_some_and(|cause| cause.to_string().contains("timed out")));
        let options = failure::<sqlite::Sqlite>(sqlx::Error::Configuration("bad sslmode".into()));
        assert_eq!(options.kind(), crate::store::StoreErrorKind::Config);
        assert!(options.source().is_some());
        let decode = failure::<sqlite::Sqlite>(sqlx::Error::ColumnNotFound("id".to_owned()));
        assert_eq!(decode.kind(), crate::store::StoreErrorKind::Corrupt);
    }

    #[tokio::test]
    async fn unknown_schemes_and_bad_prefixes_fail_before_connecting() {
        let refused = connect("redis://127.0.0.1", SqlOptions::default()).await;
        assert!(
            matches!(refused, Err(StoreError::Config { message, .. }) if message.contains("redis"))
        );
        let options = SqlOptions {
            table_prefix: "x; DROP TABLE jobs; --".to_owned(),
            ..SqlOptions::default()
        };
        let refused = connect("sqlite://never-created.db", options).await;
        assert!(
            matches!(refused, Err(StoreError::Config { message, .. }) if message.contains("prefix"))
        );
        assert!(!std::path::Path::new("never-created.db").exists());
    }

    #[test]
    fn templates_get_the_prefix_and_numbered_placeholders() {
        let template = "SELECT id FROM {p}jobs WHERE id IN (?, ?) AND revision = ?";
        assert_eq!(
            render::<postgres::Postgres>(template, "k_"),
            "SELECT id FROM k_jobs WHERE id IN ($1, $2) AND revision = $3"
        );
        assert_eq!(
            render::<mysql::MySql>(template, "k_"),
            "SELECT id FROM k_jobs WHERE id IN (?, ?) AND revision = ?"
        );
        assert_eq!(marks(3), "?, ?, ?");
        assert_eq!([0, 1, 2, 3, 5, 200].map(padded), [1, 1, 2, 4, 8, 256]);
    }

    #[test]
    fn revisions_rise_above_the_floor_and_each_other() {
        let revisions = Revisions::default();
        let first = revisions.after(0);
        assert!(first > 0);
        let second = revisions.after(0);
        assert!(second > first);
        let far = i64::MAX / 2;
        assert_eq!(revisions.after(far), far + 1);
        assert_eq!(revisions.after(0), far + 2);
    }
}
