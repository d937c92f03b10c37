//! The MySQL/MariaDB dialect: `mysql://` or `mariadb://`, a store several schedulers
//! share. Needs MySQL 8.0.1+ or MariaDB 10.6+, the first with `SKIP LOCKED`.
//!
//! Claims select due rows `FOR UPDATE SKIP LOCKED` in a transaction: rows another
//! scheduler is claiming are skipped, not waited for. Sessions run at READ COMMITTED
//! (set on connect) rather than InnoDB's default REPEATABLE READ, whose gap locks on
//! the `next_run_time` range would make a claim block concurrent adds. Migrations take
//! `GET_LOCK`, keyed by the table prefix. Ids are `utf8mb4_bin` so they compare and
//! sort by bytes, as in the other stores; DDL is not transactional here, which is why
//! every migration statement is idempotent.

use std::future::Future;
use std::str::FromStr;

use sqlx::error::DatabaseError;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlQueryResult};
use sqlx::{Executor, Pool, Row};

use super::{Dialect, Migration, SqlOptions};

/// `ER_DUP_ENTRY` and `ER_DUP_ENTRY_WITH_KEY_NAME`.
const DUPLICATE_ENTRY: [u16; 2] = [1062, 1586];

/// `ER_DUP_KEYNAME`: an index of that name exists (a migration ran before).
const DUPLICATE_KEY_NAME: u16 = 1061;
/// `ER_DUP_FIELDNAME`: the column exists already.
const DUPLICATE_FIELD_NAME: u16 = 1060;

/// How long a scheduler waits for another one's migrations, in seconds.
const SCHEMA_LOCK_TIMEOUT_SECONDS: i64 = 60;

/// The MySQL/MariaDB dialect.
#[derive(Debug)]
pub(crate) struct MySql;

impl Dialect for MySql {
    type Database = sqlx::MySql;
    const NAME: &'static str = "mysql";
    const SCHEMES: &'static [&'static str] = &["mysql", "mariadb"];
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_ROWS: &'static str = " FOR UPDATE";
    const CLAIM_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";
    const LOCKS_SCANNED_ROWS: bool = true;
    const MIGRATIONS: &'static [Migration] = &[
        Migration {
            version: 1,
            statements: &[
                // Ids fit an index key: 255 characters of utf8mb4 are 1020 bytes.
                "CREATE TABLE IF NOT EXISTS {p}jobs (
                id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
                next_run_time BIGINT NULL,
                paused SMALLINT NOT NULL DEFAULT 0,
                revision BIGINT NOT NULL,
                lease_owner VARCHAR(255) NULL,
                lease_expires BIGINT NULL,
                broken SMALLINT NOT NULL DEFAULT 0,
                job MEDIUMTEXT NOT NULL,
                KEY {p}jobs_next_run_time (next_run_time),
                KEY {p}jobs_lease_expires (lease_expires)
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
                "CREATE TABLE IF NOT EXISTS {p}instances (
                job_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
                slot BIGINT NOT NULL,
                owner VARCHAR(255) NOT NULL,
                claimed_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                PRIMARY KEY (job_id, slot)
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
                // Output is bounded to 64 KiB plus a note, more than TEXT holds.
                "CREATE TABLE IF NOT EXISTS {p}runs (
                seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                run_id VARCHAR(255) NOT NULL,
                job_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
                scheduled_time BIGINT NOT NULL,
                started_at BIGINT NULL,
                finished_at BIGINT NOT NULL,
                outcome VARCHAR(32) NOT NULL,
                error MEDIUMTEXT NULL,
                output MEDIUMTEXT NULL,
                KEY {p}runs_job (job_id, finished_at),
                KEY {p}runs_finished (finished_at)
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
            ],
        },
        // Version 2: cluster membership.
        Migration {
            version: 2,
            statements: &[
                "CREATE TABLE IF NOT EXISTS {p}nodes (
                id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
                host VARCHAR(255) NOT NULL,
                pid BIGINT NOT NULL,
                version VARCHAR(64) NOT NULL,
                started_at BIGINT NOT NULL,
                heartbeat_at BIGINT NOT NULL
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
                // By owner, so a node finishing its runs, recovering or reaping touches
                // (and locks) only that owner's rows: InnoDB locks every row a locking
                // statement scans, and a frozen node's open transaction would
                // otherwise stall everyone else's.
                "ALTER TABLE {p}instances ADD INDEX {p}instances_owner (owner, job_id)",
                "ALTER TABLE {p}jobs ADD INDEX {p}jobs_lease_owner (lease_owner)",
            ],
        },
        // Version 3: what each node reports with its heartbeat (JSON).
        // MySQL has no `ADD COLUMN IF NOT EXISTS`: a migration cut short is run again
        // and the duplicate column passes (`is_already_there`).
        Migration {
            version: 3,
            statements: &["ALTER TABLE {p}nodes ADD COLUMN stats TEXT"],
        },
        // Version 4: the configs applied, in order (`cluster.rs`).
        Migration {
            version: 4,
            statements: &["CREATE TABLE IF NOT EXISTS {p}config_generations (
                generation BIGINT NOT NULL PRIMARY KEY,
                hash VARCHAR(64) NOT NULL,
                node_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
                forced BIGINT NOT NULL DEFAULT 0
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"],
        },
        // Version 5: which attempt of its scheduled time a run was (retries).
        Migration {
            version: 5,
            statements: &["ALTER TABLE {p}runs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 1"],
        },
        // Version 6: alert keys claimed once per cluster (`cluster.rs`).
        Migration {
            version: 6,
            statements: &[
                "CREATE TABLE IF NOT EXISTS {p}alert_claims (
                claim_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
                expires_at BIGINT NOT NULL,
                KEY {p}alert_claims_expires (expires_at)
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
            ],
        },
        // Version 7: the run times an instance slot stands for (orphaned runs).
        Migration {
            version: 7,
            statements: &["ALTER TABLE {p}instances ADD COLUMN run_times TEXT"],
        },
        // Version 8: what the store remembers about itself (`cluster.rs`).
        Migration {
            version: 8,
            statements: &["CREATE TABLE IF NOT EXISTS {p}settings (
                name VARCHAR(64) NOT NULL PRIMARY KEY,
                value TEXT NOT NULL
            )"],
        },
        // Version 9: the schedule version a release is judged by (`leases.rs`). Rows
        // of an upgraded store start at 0; their leases, taken before, have none. A
        // migration cut short is run again and the duplicate column passes.
        Migration {
            version: 9,
            statements: &[
                "ALTER TABLE {p}jobs ADD COLUMN schedule_version BIGINT NOT NULL DEFAULT 0",
                "ALTER TABLE {p}jobs ADD COLUMN lease_schedule BIGINT",
            ],
        },
        // Version 10: the run waiting for an instance slot, one per job at most
        // (`history.rs`, `InstanceSlots::wait_for_instance`).
        Migration {
            version: 10,
            statements: &["CREATE TABLE IF NOT EXISTS {p}waiters (
                job_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
                owner VARCHAR(255) NOT NULL,
                max_instances BIGINT NOT NULL,
                expires_at BIGINT NOT NULL
            ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"],
        },
    ];

    fn connect(
        url: &str,
        options: &SqlOptions,
    ) -> impl Future<Output = Result<Pool<sqlx::MySql>, sqlx::Error>> + Send {
        let parsed = MySqlConnectOptions::from_str(url);
        let timeout = options.statement_timeout;
        let pool = super::driver::pool_options::<sqlx::MySql>(options).after_connect(
            move |connection, _| {
                Box::pin(async move {
                    connection
                        .execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    // MariaDB bounds every statement (seconds); MySQL has no such
                    // setting and bounds reads only (milliseconds), and refuses the other's.
                    let mariadb = format!(
                        "SET SESSION max_statement_time = {}",
                        timeout.as_secs_f64().max(0.001)
                    );
                    if connection.execute(mariadb.as_str()).await.is_err() {
                        let mysql = format!(
                            "SET SESSION max_execution_time = {}",
                            timeout.as_millis().max(1)
                        );
                        connection.execute(mysql.as_str()).await?;
                    }
                    Ok(())
                })
            },
        );
        async move {
            let pool = pool.connect_with(parsed?).await?;
            let version: String = sqlx::query("SELECT VERSION()")
                .fetch_one(&pool)
                .await?
                .try_get(0)?;
            if !supports_skip_locked(&version) {
                return Err(sqlx::Error::Configuration(
                    format!(
                        "server version {version} has no SKIP LOCKED; \
                         kairos needs MySQL 8.0.1+ or MariaDB 10.6+"
                    )
                    .into(),
                ));
            }
            Ok(pool)
        }
    }

    fn placeholder(_index: usize, sql: &mut String) {
        sql.push('?');
    }

    async fn lock_schema<'c>(
        connection: &'c mut MySqlConnection,
        key: &'c str,
    ) -> Result<(), sqlx::Error> {
        let row = sqlx::query("SELECT GET_LOCK(?, ?)")
            .bind(key)
            .bind(SCHEMA_LOCK_TIMEOUT_SECONDS)
            .fetch_one(connection)
            .await?;
        // 1: taken; 0: timed out; NULL: an error (killed, out of memory).
        match row.try_get::<Option<i64>, _>(0)? {
            Some(1) => Ok(()),
            _ => Err(sqlx::Error::Protocol(format!(
                "could not take the schema lock {key:?} within \
                 {SCHEMA_LOCK_TIMEOUT_SECONDS} s"
            ))),
        }
    }

    async fn unlock_schema<'c>(
        connection: &'c mut MySqlConnection,
        key: &'c str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(key)
            .execute(connection)
            .await?;
        Ok(())
    }

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    fn is_unique_violation(error: &dyn DatabaseError) -> bool {
        error
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|error| DUPLICATE_ENTRY.contains(&error.number()))
    }

    fn is_already_there(error: &dyn DatabaseError) -> bool {
        error
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|error| {
                matches!(error.number(), DUPLICATE_KEY_NAME | DUPLICATE_FIELD_NAME)
            })
    }
}

/// Whether a `SELECT VERSION()` string names a server with `SKIP LOCKED`: MySQL
/// 8.0.1+ (`8.0.36`, `8.4.0-log`) or MariaDB 10.6+ (`10.11.6-MariaDB-0+deb12u1`).
fn supports_skip_locked(version: &str) -> bool {
    // MariaDB before 11 may prefix its version for old replication clients.
    let version = version.strip_prefix("5.5.5-").unwrap_or(version);
    let mut numbers = version
        .split(|character: char| !character.is_ascii_digit())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    let patch = numbers.next().unwrap_or(0);
    if version.to_ascii_lowercase().contains("mariadb") {
        (major, minor) >= (10, 6)
    } else {
        (major, minor, patch) >= (8, 0, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_locked_needs_mysql_8_or_mariadb_10_6() {
        assert!(supports_skip_locked("8.0.36"));
        assert!(supports_skip_locked("8.4.0-log"));
        assert!(supports_skip_locked("10.11.19-MariaDB-0+deb12u1"));
        assert!(supports_skip_locked("11.4.2-MariaDB"));
        assert!(!supports_skip_locked("5.7.44"));
        assert!(!supports_skip_locked("8.0.0"));
        assert!(!supports_skip_locked("10.5.23-MariaDB"));
        // MariaDB's old replication-compatible prefix.
        assert!(!supports_skip_locked("5.5.5-10.4.32-MariaDB"));
        assert!(supports_skip_locked("5.5.5-10.11.6-MariaDB"));
    }
}
