//! What only the SQL stores have to prove, beyond the shared conformance suite
//! (tests/store_conformance.rs): migrations under concurrent starts, several
//! independent schedulers (separate pools, as separate processes would have) claiming
//! and counting instances at once, broken rows, and a throughput measurement.
//!
//! Each test runs on SQLite (a temporary file), PostgreSQL and MariaDB/MySQL with its
//! own table prefix, and drops its tables at the end. A server that cannot be reached
//! prints `SKIP <reason>` and passes, unless `KAIROS_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{job, t0, LEASE};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use kairos::job::Job;
use kairos::store::prelude::*;
use kairos::store::sql::{connect, SqlOptions};
use kairos::store::{Release, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
    Mysql,
}

const ALL: [Db; 3] = [Db::Sqlite, Db::Postgres, Db::Mysql];

/// One database and a fresh table prefix on it.
#[derive(Clone)]
struct Place {
    db: Db,
    url: String,
    prefix: String,
}

impl Place {
    fn new(db: Db) -> Place {
        let prefix = format!("s{:08x}_", fastrand::u32(..));
        let env =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let url = match db {
            Db::Sqlite => {
                let path = std::env::temp_dir().join(format!("kairos-smoke-{prefix}.db"));
                format!("sqlite://{}", path.display())
            }
            Db::Postgres => env(
                "KAIROS_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            Db::Mysql => env("KAIROS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        };
        Place { db, url, prefix }
    }

    async fn open(&self) -> Result<Arc<dyn JobStore>, StoreError> {
        let options = SqlOptions {
            table_prefix: self.prefix.clone(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(3),
            ..SqlOptions::default()
        };
        connect(&self.url, options).await
    }

    /// Runs raw statements (`{p}` is the prefix) with sqlx directly.
    async fn execute(&self, statements: &[&str]) {
        macro_rules! run_all {
            ($pool:ty) => {{
                let pool = <$pool>::connect(&self.url).await.unwrap();
                for statement in statements {
                    let statement = statement.replace("{p}", &self.prefix);
                    sqlx::query(&statement).execute(&pool).await.unwrap();
                }
                pool.close().await;
            }};
        }
        match self.db {
            Db::Sqlite => run_all!(sqlx::SqlitePool),
            Db::Postgres => run_all!(sqlx::PgPool),
            Db::Mysql => run_all!(sqlx::MySqlPool),
        }
    }

    async fn cleanup(&self) {
        match self.db {
            Db::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
            Db::Postgres | Db::Mysql => {
                self.execute(&[
                    "DROP TABLE IF EXISTS {p}jobs",
                    "DROP TABLE IF EXISTS {p}instances",
                    "DROP TABLE IF EXISTS {p}runs",
                    "DROP TABLE IF EXISTS {p}schema_version",
                    "DROP TABLE IF EXISTS {p}nodes",
                    "DROP TABLE IF EXISTS {p}config_generations",
                ])
                .await;
            }
        }
    }
}

/// Runs `test` on every database that can be reached.
async fn on_each<F, Fut>(test: F)
where
    F: Fn(Place, Arc<dyn JobStore>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in ALL {
        let place = Place::new(db);
        match place.open().await {
            Ok(store) => test(place, store).await,
            Err(error) => skip(db, &error),
        }
    }
}

/// A server that cannot be reached: a failure with `KAIROS_REQUIRE_SERVICES=1`, else
/// a printed `SKIP`.
fn skip(db: Db, error: &StoreError) {
    let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
    assert!(!required, "{db:?}: {error} (KAIROS_REQUIRE_SERVICES=1)");
    println!("SKIP {db:?}: {error}");
}

/// The nodes' stats column is an additive migration: tables of the previous
/// version (SQLite and PostgreSQL 3, MySQL 2) keep their rows and gain the column, and
/// on MySQL, whose DDL is not transactional, a migration cut short after adding the
/// column runs again cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_stats_column_is_added_to_older_tables() {
    use kairos::store::{NodeInfo, NodeStats};

    on_each(|place, store| async move {
        // The stats column's migration.
        let newest = if place.db == Db::Mysql { 3 } else { 4 };
        let node = NodeInfo {
            id: "old-node".to_owned(),
            host: "h".to_owned(),
            pid: 1,
            version: "0.1.0".to_owned(),
            started: t0(),
            last_heartbeat: t0(),
            stats: None,
        };
        store.register_node(node.clone()).await.unwrap();
        // Back to the version before it, as an older kairos left the tables (the
        // migrations after it are idempotent and run again).
        let back = format!("DELETE FROM {{p}}schema_version WHERE version >= {newest}");
        place
            .execute(&["ALTER TABLE {p}nodes DROP COLUMN stats", &back])
            .await;
        let store = place.open().await.unwrap();
        assert_eq!(
            store.list_nodes().await.unwrap(),
            std::slice::from_ref(&node)
        );
        let beat = NodeInfo {
            stats: Some(NodeStats {
                running: 1,
                ..NodeStats::default()
            }),
            ..node.clone()
        };
        assert!(store.heartbeat_node(&beat).await.unwrap());
        assert_eq!(
            store.list_nodes().await.unwrap(),
            std::slice::from_ref(&beat)
        );
        if place.db == Db::Mysql {
            place.execute(&[&back]).await;
            let store = place.open().await.unwrap();
            assert_eq!(store.list_nodes().await.unwrap(), [beat]);
        }
        place.cleanup().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_when_schedulers_start_at_once() {
    on_each(|place, store| async move {
        store.add_job(job("kept", Some(t0()))).await.unwrap();
        // Eight schedulers start at once on the same tables, twice.
        for _ in 0..2 {
            let opens: Vec<_> = (0..8)
                .map(|_| {
                    let place = place.clone();
                    tokio::spawn(async move { place.open().await })
                })
                .collect();
            for opened in opens {
                let other = opened.await.unwrap().unwrap();
                assert!(other.get_job("kept").await.unwrap().is_some());
            }
        }
        // A schema newer than this build is refused rather than misread.
        place
            .execute(&["INSERT INTO {p}schema_version (version, applied_at) VALUES (99, 0)"])
            .await;
        let refused = place.open().await;
        assert!(
            matches!(&refused, Err(StoreError::Corrupt { message, .. }) if message.contains("99")),
            "{:?}: {:?}",
            place.db,
            refused.err()
        );
        place.cleanup().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_schedulers_never_claim_the_same_job_or_too_many_instances() {
    on_each(|place, store| async move {
        let count = 600;
        let jobs: Vec<Job> = (0..count)
            .map(|index| {
                job(
                    &format!("j{index:04}"),
                    Some(t0() + TimeDelta::seconds(index % 13)),
                )
            })
            .collect();
        store.add_jobs(jobs).await.unwrap();
        let now = t0() + TimeDelta::seconds(20);
        // Four schedulers, each with its own pool, as four processes would have.
        let mut schedulers = Vec::new();
        for index in 0..4 {
            let store = place.open().await.unwrap();
            schedulers.push(tokio::spawn(async move {
                let owner = format!("node{index}");
                let mut taken = Vec::new();
                loop {
                    let batch = store.acquire_due_jobs(&owner, now, 9, LEASE).await.unwrap();
                    if batch.is_empty() {
                        return taken;
                    }
                    taken.extend(batch.into_iter().map(|job| job.id));
                }
            }));
        }
        let mut all = Vec::new();
        for scheduler in schedulers {
            all.extend(scheduler.await.unwrap());
        }
        let unique: BTreeSet<&String> = all.iter().collect();
        assert_eq!(
            all.len(),
            unique.len(),
            "{:?}: a job was claimed twice",
            place.db
        );
        assert_eq!(unique.len(), count as usize, "{:?}", place.db);

        // Twelve claims of one job with max_instances = 3, from four schedulers at once.
        let mut claims = Vec::new();
        for index in 0..12 {
            let store = place.open().await.unwrap();
            claims.push(tokio::spawn(async move {
                store
                    .claim_instance("j0000", &format!("node{}", index % 4), 3)
                    .await
                    .unwrap()
            }));
        }
        let mut granted = 0;
        for claim in claims {
            granted += usize::from(claim.await.unwrap());
        }
        assert_eq!(granted, 3, "{:?}", place.db);
        place.cleanup().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_row_reports_corrupt_and_can_be_removed_or_replaced() {
    on_each(|place, store| async move {
        store.add_job(job("bad", Some(t0()))).await.unwrap();
        store.add_job(job("lunar", Some(t0()))).await.unwrap();
        place
            .execute(&[
                "UPDATE {p}jobs SET job = 'not json' WHERE id = 'bad'",
                // A trigger type a future kairos might know.
                r#"UPDATE {p}jobs SET job = '{"id":"lunar","trigger":{"type":"lunar"}}'
                   WHERE id = 'lunar'"#,
            ])
            .await;
        let read = store.get_job("bad").await;
        assert!(
            matches!(read, Err(StoreError::Corrupt { message, .. }) if message.contains("bad"))
        );
        assert!(store.get_jobs().await.unwrap().is_empty());
        assert!(store
            .acquire_due_jobs("one", t0(), 10, LEASE)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.next_run_time().await.unwrap(),
            None,
            "broken rows wake nobody"
        );
        // Repairing one puts it back; removing the other works without reading it.
        store.replace_job(job("lunar", Some(t0()))).await.unwrap();
        store.remove_job("bad").await.unwrap();
        let due = store
            .acquire_due_jobs("one", t0(), 10, LEASE)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, "lunar");
        place.cleanup().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_added_job_never_matches_a_release_of_the_old_one() {
    on_each(|place, store| async move {
        store.add_job(job("a", Some(t0()))).await.unwrap();
        let acquired = store
            .acquire_due_jobs("one", t0(), 10, LEASE)
            .await
            .unwrap();
        store.remove_job("a").await.unwrap();
        // Re-added with another schedule while the old one was running.
        let again = store
            .add_job(job("a", Some(t0() + TimeDelta::seconds(500))))
            .await
            .unwrap();
        assert_ne!(again.revision, acquired[0].revision);
        store
            .release_jobs(
                "one",
                &[Release {
                    job_id: "a".to_owned(),
                    revision: acquired[0].revision,
                    acquired_next_run_time: acquired[0].next_run_time,
                    next_run_time: Some(t0() + TimeDelta::seconds(10)),
                }],
            )
            .await
            .unwrap();
        let kept = store.get_job("a").await.unwrap().unwrap();
        assert_eq!(kept.next_run_time, Some(t0() + TimeDelta::seconds(500)));
        place.cleanup().await;
    })
    .await;
}

/// Pooled connections are not pinged before every statement (sqlx's default, a round
/// trip each, BENCHMARKS.md), only after sitting idle for `idle_check_after`: one that the
/// server closed meanwhile (a restart, an idle timeout) is replaced before it is used,
/// so the next operation succeeds. PostgreSQL, whose connections a test can pick out
/// by their application name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_server_closed_is_replaced_before_use() {
    let place = Place::new(Db::Postgres);
    let application = format!("kairos_idle_{}", place.prefix.trim_end_matches('_'));
    let separator = if place.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}application_name={application}", place.url);
    let options = SqlOptions {
        table_prefix: place.prefix.clone(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(3),
        idle_check_after: Duration::from_millis(200),
        ..SqlOptions::default()
    };
    let store = match connect(&url, options).await {
        Ok(store) => store,
        Err(error) => return skip(Db::Postgres, &error),
    };
    store.add_job(job("a", Some(t0()))).await.unwrap();
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{application}'"
    );
    place.execute(&[&terminate]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found = store.get_job("a").await.unwrap();
    assert_eq!(found.map(|job| job.id), Some("a".to_owned()));
    drop(store);
    place.cleanup().await;
}
