//! The SQLite dialect: `sqlite://PATH`, an embedded, single-node store.
//!
//! SQLite has one writer at a time, so there is nothing to skip: a claim runs in a
//! `BEGIN IMMEDIATE` transaction, which takes the write lock up front (a deferred
//! transaction that reads and then writes could fail with `SQLITE_BUSY` instead of
//! waiting), and other writers wait for it through the busy timeout. The same
//! transaction is the schema lock. The file is opened in WAL mode so readers (the
//! API listing jobs) never wait for the scheduler's writes, with `synchronous = FULL`
//! so a job whose add was acknowledged survives a power cut.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Executor, Pool};

use super::{Dialect, Migration, SqlOptions};

/// How long a writer waits for another one before the statement fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's extended result codes for a violated primary key or unique index.
const SQLITE_CONSTRAINT_PRIMARYKEY: &str = "1555";
const SQLITE_CONSTRAINT_UNIQUE: &str = "2067";

/// The SQLite dialect.
#[derive(Debug)]
pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    type Database = sqlx::Sqlite;
    const NAME: &'static str = "sqlite";
    const SCHEMES: &'static [&'static str] = &["sqlite"];
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    // The write transaction already excludes every other writer.
    const LOCK_ROWS: &'static str = "";
    const CLAIM_LOCK: &'static str = "";
    const MIGRATIONS: &'static [Migration] = &[
        Migration {
            version: 1,
            statements: &[
                "CREATE TABLE IF NOT EXISTS {p}jobs (
                id TEXT NOT NULL PRIMARY KEY,
                next_run_time INTEGER,
                paused INTEGER NOT NULL DEFAULT 0,
                revision INTEGER NOT NULL,
                lease_owner TEXT,
                lease_expires INTEGER,
                broken INTEGER NOT NULL DEFAULT 0,
                job TEXT NOT NULL
            )",
                "CREATE INDEX IF NOT EXISTS {p}jobs_next_run_time ON {p}jobs (next_run_time, id)",
                "CREATE INDEX IF NOT EXISTS {p}jobs_lease_expires ON {p}jobs (lease_expires)",
                "CREATE TABLE IF NOT EXISTS {p}instances (
                job_id TEXT NOT NULL,
                slot INTEGER NOT NULL,
                owner TEXT NOT NULL,
                claimed_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                PRIMARY KEY (job_id, slot)
            )",
                // `seq` is the rowid: newest-first ties are broken by insertion order.
                "CREATE TABLE IF NOT EXISTS {p}runs (
                seq INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL,
                job_id TEXT NOT NULL,
                scheduled_time INTEGER NOT NULL,
                started_at INTEGER,
                finished_at INTEGER NOT NULL,
                outcome TEXT NOT NULL,
                error TEXT,
                output TEXT
            )",
                "CREATE INDEX IF NOT EXISTS {p}runs_job ON {p}runs (job_id, finished_at)",
                "CREATE INDEX IF NOT EXISTS {p}runs_finished ON {p}runs (finished_at)",
            ],
        },
        // Version 2: cluster membership.
        Migration {
            version: 2,
            statements: &[
                "CREATE TABLE IF NOT EXISTS {p}nodes (
                id TEXT NOT NULL PRIMARY KEY,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                version TEXT NOT NULL,
                started_at INTEGER NOT NULL,
                heartbeat_at INTEGER NOT NULL
            )",
                // By owner: finishing runs, recovering and reaping find a node's rows
                // without scanning (and locking) the others'.
                "CREATE INDEX IF NOT EXISTS {p}instances_owner ON {p}instances (owner, job_id)",
                "CREATE INDEX IF NOT EXISTS {p}jobs_lease_owner ON {p}jobs (lease_owner)",
            ],
        },
        Migration {
            version: 3,
            statements: &[
                // Opening the store clears the broken marks (`UPDATE … WHERE broken <> 0`);
                // without an index that scanned every job: 0.8 s of a restart with a
                // million pending. Partial, so it holds only the few broken rows.
                "CREATE INDEX IF NOT EXISTS {p}jobs_broken ON {p}jobs (broken) WHERE broken <> 0",
            ],
        },
        // Version 4: what each node reports with its heartbeat (JSON). No
        // `IF NOT EXISTS` for columns here, and none needed: the migration runs in the
        // schema lock's transaction, whole or not at all.
        Migration {
            version: 4,
            statements: &["ALTER TABLE {p}nodes ADD COLUMN stats TEXT"],
        },
        // Version 5: the configs applied, in order (`cluster.rs`).
        Migration {
            version: 5,
            statements: &["CREATE TABLE IF NOT EXISTS {p}config_generations (
                generation INTEGER NOT NULL PRIMARY KEY,
                hash TEXT NOT NULL,
                node_id TEXT NOT NULL,
                forced INTEGER NOT NULL DEFAULT 0
            )"],
        },
        // Version 6: which attempt of its scheduled time a run was (retries).
        Migration {
            version: 6,
            statements: &["ALTER TABLE {p}runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1"],
        },
        // Version 7: alert keys claimed once per cluster (`cluster.rs`).
        Migration {
            version: 7,
            statements: &[
                "CREATE TABLE IF NOT EXISTS {p}alert_claims (
                claim_key TEXT NOT NULL PRIMARY KEY,
                expires_at INTEGER NOT NULL
            )",
                "CREATE INDEX IF NOT EXISTS {p}alert_claims_expires ON {p}alert_claims (expires_at)",
            ],
        },
        // Version 8: the run times an instance slot stands for (orphaned runs).
        Migration {
            version: 8,
            statements: &["ALTER TABLE {p}instances ADD COLUMN run_times TEXT"],
        },
        // Version 9: what the store remembers about itself (`cluster.rs`).
        Migration {
            version: 9,
            statements: &["CREATE TABLE IF NOT EXISTS {p}settings (
                name TEXT NOT NULL PRIMARY KEY,
                value TEXT NOT NULL
            )"],
        },
        // Version 10: the schedule version a release is judged by (`leases.rs`). Rows
        // of an upgraded store start at 0; their leases, taken before, have none.
        Migration {
            version: 10,
            statements: &[
                "ALTER TABLE {p}jobs ADD COLUMN schedule_version INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE {p}jobs ADD COLUMN lease_schedule INTEGER",
            ],
        },
        // Version 11: the lease indexes hold only the jobs a node holds. Every job
        // added had an entry (a NULL) in both, so each one-at-a-time add wrote two
        // index pages more than it needed (BENCHMARKS.md, durable adds); the queries
        // that use them ask for a held lease (`lease_expires IS NOT NULL`,
        // `lease_owner = ?`), which implies the indexes' condition.
        Migration {
            version: 11,
            statements: &[
                "DROP INDEX IF EXISTS {p}jobs_lease_expires",
                "CREATE INDEX IF NOT EXISTS {p}jobs_lease_expires ON {p}jobs (lease_expires) \
                 WHERE lease_expires IS NOT NULL",
                "DROP INDEX IF EXISTS {p}jobs_lease_owner",
                "CREATE INDEX IF NOT EXISTS {p}jobs_lease_owner ON {p}jobs (lease_owner) \
                 WHERE lease_owner IS NOT NULL",
            ],
        },
        // Version 12: the run waiting for an instance slot, one per job at most
        // (`history.rs`, `InstanceSlots::wait_for_instance`).
        Migration {
            version: 12,
            statements: &["CREATE TABLE IF NOT EXISTS {p}waiters (
                job_id TEXT NOT NULL PRIMARY KEY,
                owner TEXT NOT NULL,
                max_instances INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            )"],
        },
    ];

    // One process owns an SQLite file: SQLite stores are single-node.
    const SHARED: bool = false;
    // As long as a writer would wait for another process's lock.
    const WRITER_TURN: Option<Duration> = Some(BUSY_TIMEOUT);

    fn connect(
        url: &str,
        options: &SqlOptions,
    ) -> impl Future<Output = Result<Pool<sqlx::Sqlite>, sqlx::Error>> + Send {
        let parsed = SqliteConnectOptions::from_str(url);
        let pool = super::driver::pool_options(options);
        async move {
            let connect = parsed?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(BUSY_TIMEOUT);
            // sqlx creates the file but not its directory; `sqlite://data/kairos.db`
            // on a fresh machine should just work.
            // Blocking, but once at startup and only a few syscalls.
            if let Some(directory) = connect.get_filename().parent() {
                if !directory.as_os_str().is_empty() {
                    std::fs::create_dir_all(directory)?;
                }
            }
            pool.connect_with(connect).await
        }
    }

    fn placeholder(_index: usize, sql: &mut String) {
        sql.push('?');
    }

    async fn lock_schema<'c>(
        connection: &'c mut SqliteConnection,
        _key: &'c str,
    ) -> Result<(), sqlx::Error> {
        connection.execute("BEGIN IMMEDIATE").await?;
        Ok(())
    }

    async fn unlock_schema<'c>(
        connection: &'c mut SqliteConnection,
        _key: &'c str,
    ) -> Result<(), sqlx::Error> {
        connection.execute("COMMIT").await?;
        Ok(())
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn is_unique_violation(error: &dyn DatabaseError) -> bool {
        matches!(
            error.code().as_deref(),
            Some(SQLITE_CONSTRAINT_PRIMARYKEY | SQLITE_CONSTRAINT_UNIQUE)
        )
    }

    // SQLite has no `ADD COLUMN IF NOT EXISTS`; a column a migration added already is
    // reported only by its message (the code is the generic SQLITE_ERROR).
    fn is_already_there(error: &dyn DatabaseError) -> bool {
        error.message().starts_with("duplicate column name")
    }
}
