//! The PostgreSQL dialect: `postgres://` or `postgresql://`, a store several schedulers
//! share.
//!
//! Claims select due rows `FOR UPDATE SKIP LOCKED` in a READ COMMITTED transaction:
//! rows another scheduler is claiming at that moment are skipped, not waited for, and
//! once it commits its lease makes them not due anymore (PostgreSQL re-checks the
//! `WHERE` of a row that changed while the statement ran). Writes of jobs are
//! announced with `pg_notify` on the channel `{prefix}wake`, which every scheduler
//! LISTENs to on a connection of its own (`crate::store::wake`). Migrations take a
//! session-level advisory lock keyed by the table prefix. Ids are `COLLATE "C"`, so
//! ordering by id is by bytes, as in the other stores, whatever the database's locale.

use std::future::Future;
use std::str::FromStr;

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgQueryResult};
use sqlx::Pool;
use tokio::sync::mpsc;

use super::{Dialect, Migration, SqlOptions};
use crate::store::{wake, WakeUp};

/// SQLSTATE `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// The PostgreSQL dialect.
#[derive(Debug)]
pub(crate) struct Postgres;

impl Dialect for Postgres {
    type Database = sqlx::Postgres;
    const NAME: &'static str = "postgres";
    const SCHEMES: &'static [&'static str] = &["postgres", "postgresql"];
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_ROWS: &'static str = " FOR UPDATE";
    const CLAIM_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";
    const MIGRATIONS: &'static [Migration] = &[
        Migration {
            version: 1,
            statements: &[
                r#"CREATE TABLE IF NOT EXISTS {p}jobs (
                id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                next_run_time BIGINT,
                paused SMALLINT NOT NULL DEFAULT 0,
                revision BIGINT NOT NULL,
                lease_owner TEXT,
                lease_expires BIGINT,
                broken SMALLINT NOT NULL DEFAULT 0,
                job TEXT NOT NULL
            )"#,
                "CREATE INDEX IF NOT EXISTS {p}jobs_next_run_time ON {p}jobs (next_run_time, id)",
                "CREATE INDEX IF NOT EXISTS {p}jobs_lease_expires ON {p}jobs (lease_expires)",
                r#"CREATE TABLE IF NOT EXISTS {p}instances (
                job_id TEXT COLLATE "C" NOT NULL,
                slot BIGINT NOT NULL,
                owner TEXT NOT NULL,
                claimed_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                PRIMARY KEY (job_id, slot)
            )"#,
                r#"CREATE TABLE IF NOT EXISTS {p}runs (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                run_id TEXT NOT NULL,
                job_id TEXT COLLATE "C" NOT NULL,
                scheduled_time BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT NOT NULL,
                outcome TEXT NOT NULL,
                error TEXT,
                output TEXT
            )"#,
                "CREATE INDEX IF NOT EXISTS {p}runs_job ON {p}runs (job_id, finished_at)",
                "CREATE INDEX IF NOT EXISTS {p}runs_finished ON {p}runs (finished_at)",
            ],
        },
        // Version 2: cluster membership.
        Migration {
            version: 2,
            statements: &[
                r#"CREATE TABLE IF NOT EXISTS {p}nodes (
                id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                host TEXT NOT NULL,
                pid BIGINT NOT NULL,
                version TEXT NOT NULL,
                started_at BIGINT NOT NULL,
                heartbeat_at BIGINT NOT NULL
            )"#,
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
        // Version 4: what each node reports with its heartbeat (JSON).
        Migration {
            version: 4,
            statements: &["ALTER TABLE {p}nodes ADD COLUMN IF NOT EXISTS stats TEXT"],
        },
        // Version 5: the configs applied, in order (`cluster.rs`).
        Migration {
            version: 5,
            statements: &[r#"CREATE TABLE IF NOT EXISTS {p}config_generations (
                generation BIGINT NOT NULL PRIMARY KEY,
                hash TEXT NOT NULL,
                node_id TEXT COLLATE "C" NOT NULL,
                forced BIGINT NOT NULL DEFAULT 0
            )"#],
        },
        // Version 6: which attempt of its scheduled time a run was (retries).
        Migration {
            version: 6,
            statements: &[
                "ALTER TABLE {p}runs ADD COLUMN IF NOT EXISTS attempt BIGINT NOT NULL DEFAULT 1",
            ],
        },
        // Version 7: alert keys claimed once per cluster (`cluster.rs`).
        Migration {
            version: 7,
            statements: &[
                "CREATE TABLE IF NOT EXISTS {p}alert_claims (
                claim_key TEXT NOT NULL PRIMARY KEY,
                expires_at BIGINT NOT NULL
            )",
                "CREATE INDEX IF NOT EXISTS {p}alert_claims_expires ON {p}alert_claims (expires_at)",
            ],
        },
        // Version 8: the run times an instance slot stands for (orphaned runs).
        Migration {
            version: 8,
            statements: &["ALTER TABLE {p}instances ADD COLUMN IF NOT EXISTS run_times TEXT"],
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
                "ALTER TABLE {p}jobs ADD COLUMN IF NOT EXISTS schedule_version BIGINT NOT NULL DEFAULT 0",
                "ALTER TABLE {p}jobs ADD COLUMN IF NOT EXISTS lease_schedule BIGINT",
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
            statements: &[r#"CREATE TABLE IF NOT EXISTS {p}waiters (
                job_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
                owner TEXT NOT NULL,
                max_instances BIGINT NOT NULL,
                expires_at BIGINT NOT NULL
            )"#],
        },
    ];

    fn connect(
        url: &str,
        options: &SqlOptions,
    ) -> impl Future<Output = Result<Pool<sqlx::Postgres>, sqlx::Error>> + Send {
        let parsed = PgConnectOptions::from_str(url);
        let pool = super::driver::pool_options(options);
        let statement_timeout = options.statement_timeout.as_millis().max(1).to_string();
        async move {
            let mut connect = parsed?;
            // Named in pg_stat_activity, so an operator can tell the schedulers apart
            // from the application's own connections (unless the URL names them).
            if connect.get_application_name().is_none() {
                connect = connect.application_name("kairos");
            }
            // `CREATE TABLE IF NOT EXISTS` on every start would otherwise log a NOTICE
            // ("already exists, skipping") through sqlx each time.
            let connect = connect.options([
                ("client_min_messages", "warning"),
                ("statement_timeout", statement_timeout.as_str()),
            ]);
            pool.connect_with(connect).await
        }
    }

    fn placeholder(index: usize, sql: &mut String) {
        sql.push('$');
        sql.push_str(&index.to_string());
    }

    async fn lock_schema<'c>(
        connection: &'c mut PgConnection,
        key: &'c str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock_id(key))
            .execute(connection)
            .await?;
        Ok(())
    }

    async fn unlock_schema<'c>(
        connection: &'c mut PgConnection,
        key: &'c str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(lock_id(key))
            .execute(connection)
            .await?;
        Ok(())
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn is_unique_violation(error: &dyn DatabaseError) -> bool {
        error.code().as_deref() == Some(UNIQUE_VIOLATION)
    }

    // `pg_notify` rather than `NOTIFY`: the channel and payload are bound values.
    const NOTIFY: Option<&'static str> = Some("SELECT pg_notify(?, ?)");

    fn listen(pool: &Pool<sqlx::Postgres>, channel: String) -> Option<mpsc::Receiver<WakeUp>> {
        let (sender, receiver) = mpsc::channel(wake::WAKE_CAPACITY);
        tokio::spawn(listen(pool.clone(), channel, sender));
        Some(receiver)
    }
}

/// Listens on `channel` until `sender`'s receiver is dropped: a dedicated connection
/// (`PgListener`, made with the pool's settings but outside it, so it never holds a
/// pooled connection), re-established with backoff whenever it is lost, with a
/// [`WakeUp::Resync`] each time it is up (see [`crate::store::wake`]).
async fn listen(pool: Pool<sqlx::Postgres>, channel: String, sender: wake::WakeSender) {
    let mut backoff = wake::Backoff::default();
    loop {
        let connect = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<PgListener, sqlx::Error>(listener)
        };
        let connected = tokio::select! {
            connected = connect => connected,
            () = sender.closed() => return,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, channel, "postgres: cannot listen for other nodes' changes; retrying (they are seen at the next poll meanwhile)");
                if backoff.sleep(&sender).await {
                    continue;
                }
                return;
            }
        };
        // Changes made while nobody listened were not announced: look now.
        if sender.send(WakeUp::Resync).await.is_err() {
            return;
        }
        let up = std::time::Instant::now();
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = sender.closed() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    let wake_up = wake::parse_payload(notification.payload());
                    if sender.send(wake_up).await.is_err() {
                        return;
                    }
                }
                // The connection was lost; a new listener listens again.
                Ok(None) => {
                    tracing::warn!(
                        channel,
                        "postgres: the listening connection was lost; reconnecting"
                    );
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, channel, "postgres: listening failed; reconnecting");
                    break;
                }
            }
        }
        // A connection that held for a while is retried at once; one that keeps
        // dropping right away backs off.
        if up.elapsed() > STABLE_CONNECTION {
            backoff.reset();
        }
        if !backoff.sleep(&sender).await {
            return;
        }
    }
}

/// How long a listening connection must have held for its loss to be retried without
/// growing the backoff.
const STABLE_CONNECTION: std::time::Duration = std::time::Duration::from_secs(10);

/// The advisory lock id of `key`: FNV-1a, so every process computes the same id
/// (std's hasher is seeded per process).
fn lock_id(key: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_are_stable_across_processes() {
        // FNV-1a of the empty string is the offset basis; the value must never
        // change, or schedulers of two kairos versions would not exclude each other.
        assert_eq!(
            lock_id(""),
            i64::from_ne_bytes(0xcbf2_9ce4_8422_2325u64.to_ne_bytes())
        );
        assert_eq!(lock_id("kairos_schema_a_"), lock_id("kairos_schema_a_"));
        assert_ne!(lock_id("kairos_schema_a_"), lock_id("kairos_schema_b_"));
    }
}
