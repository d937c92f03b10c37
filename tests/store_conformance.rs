//! One store conformance suite, written once and run against every job store.
//!
//! Each test gets a fresh, isolated store (its own table prefix or key prefix), so the
//! tests run in parallel against one server. Stores on real servers use the local
//! PostgreSQL, MariaDB and Redis (override with `KAIROS_TEST_POSTGRES_URL`,
//! `KAIROS_TEST_MYSQL_URL`, `KAIROS_TEST_REDIS_URL`). A test whose server cannot be
//! reached prints `SKIP <reason>` and passes, unless `KAIROS_REQUIRE_SERVICES=1`.
//!
//! To add a backend: give it an arm in [`open`] and a line in the `conformance!`
//! invocation at the bottom; a store that outlives the process also gets arms in
//! [`reopen`] and [`corrupt`] and a line in the `persistent` invocation.

#![allow(clippy::unwrap_used)]

mod common;

use common::{job, release, secs, t0, LEASE};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kairos::history::{RunOutcome, RunRecord};
use kairos::job::Job;
use kairos::store::memory::MemoryStore;
use kairos::store::prelude::*;
use kairos::store::sql::SqlOptions;
use kairos::store::{
    ConfigGeneration, FinishedRun, InstanceClaim, JobQuery, JobSchedule, NodeInfo, OrphanedRun,
    Release, RunLimits, SetAside, StoreError,
};
use kairos::trigger::TriggerSpec;
use serde_json::json;

/// The stores the suite knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
    Mysql,
    Redis,
}

/// A fresh store for one test.
struct Harness {
    store: Arc<dyn JobStore>,
    backend: Backend,
    /// The table or key prefix that isolates this test.
    prefix: String,
    /// Where the store lives (empty for memory).
    url: String,
}

fn env_url(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

/// Opens a fresh store of `backend`; `Err` says why it cannot be had here.
async fn open(backend: Backend) -> Result<Harness, String> {
    let prefix = format!("t{:08x}_", fastrand::u32(..));
    let (store, url): (Arc<dyn JobStore>, String) = match backend {
        Backend::Memory => (Arc::new(MemoryStore::new()), String::new()),
        Backend::Redis => {
            let url = env_url("KAIROS_TEST_REDIS_URL", "redis://127.0.0.1:6379/");
            let store = kairos::store::redis::connect(&url, &prefix, Duration::from_secs(300))
                .await
                .map_err(|error| format!("Redis at {url}: {error}"))?;
            (store, url)
        }
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("kairos-conformance-{prefix}.db"));
            let url = format!("sqlite://{}", path.display());
            let store = open_sql(&url, &prefix)
                .await
                .map_err(|error| format!("SQLite at {url}: {error}"))?;
            (store, url)
        }
        Backend::Postgres => {
            let url = env_url(
                "KAIROS_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            );
            let store = open_sql(&url, &prefix)
                .await
                .map_err(|error| format!("PostgreSQL at {url}: {error}"))?;
            (store, url)
        }
        Backend::Mysql => {
            let url = env_url("KAIROS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
            let store = open_sql(&url, &prefix)
                .await
                .map_err(|error| format!("MySQL at {url}: {error}"))?;
            (store, url)
        }
    };
    Ok(Harness {
        store,
        backend,
        prefix,
        url,
    })
}

/// Opens the SQL store at `url` with the test's table prefix; an unreachable server
/// fails within a few seconds.
async fn open_sql(url: &str, prefix: &str) -> Result<Arc<dyn JobStore>, StoreError> {
    let options = SqlOptions {
        table_prefix: prefix.to_owned(),
        max_connections: 4,
        acquire_timeout: Duration::from_secs(3),
        ..SqlOptions::default()
    };
    kairos::store::sql::connect(url, options).await
}

/// Runs raw statements on the SQL database behind a harness (to corrupt or drop
/// tables), with sqlx directly.
async fn sql_execute(backend: Backend, url: &str, statements: &[String]) {
    macro_rules! run_all {
        ($pool:ty) => {{
            let pool = <$pool>::connect(url).await.unwrap();
            for statement in statements {
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }};
    }
    match backend {
        Backend::Sqlite => run_all!(sqlx::SqlitePool),
        Backend::Postgres => run_all!(sqlx::PgPool),
        Backend::Mysql => run_all!(sqlx::MySqlPool),
        Backend::Memory | Backend::Redis => {}
    }
}

/// A second, independent connection to the same store (what a restarted scheduler
/// opens); `None` for the memory store, which does not outlive its process.
async fn reopen(harness: &Harness) -> Arc<dyn JobStore> {
    match harness.backend {
        Backend::Redis => {
            kairos::store::redis::connect(&harness.url, &harness.prefix, Duration::from_secs(300))
                .await
                .unwrap()
        }
        Backend::Sqlite | Backend::Postgres | Backend::Mysql => {
            open_sql(&harness.url, &harness.prefix).await.unwrap()
        }
        Backend::Memory => unreachable!("the memory store runs no persistence test"),
    }
}

/// Overwrites job `id`'s stored form with something unreadable; `false` if the backend
/// cannot hold a corrupt job (the memory store keeps typed values).
async fn corrupt(harness: &Harness, id: &str) {
    match harness.backend {
        Backend::Memory => unreachable!("the memory store keeps typed values"),
        Backend::Redis => {
            let client = ::redis::Client::open(harness.url.as_str()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            ::redis::cmd("HSET")
                .arg(format!("{}jobs", harness.prefix))
                .arg(id)
                .arg("{not json")
                .query_async::<i64>(&mut connection)
                .await
                .unwrap();
        }
        Backend::Sqlite | Backend::Postgres | Backend::Mysql => {
            let statement = format!(
                "UPDATE {}jobs SET job = '{{not json' WHERE id = '{id}'",
                harness.prefix
            );
            sql_execute(harness.backend, &harness.url, &[statement]).await;
        }
    }
}

/// Deletes what a test left on a shared server (a failed test leaves its keys, to look at).
async fn cleanup(backend: Backend, prefix: &str, url: &str) {
    if matches!(backend, Backend::Postgres | Backend::Mysql) {
        let statements: Vec<String> = [
            "jobs",
            "instances",
            "runs",
            "nodes",
            "config_generations",
            "alert_claims",
            "waiters",
            "schema_version",
        ]
        .iter()
        .map(|table| format!("DROP TABLE IF EXISTS {prefix}{table}"))
        .collect();
        sql_execute(backend, url, &statements).await;
    }
    if backend == Backend::Sqlite {
        let path = url.trim_start_matches("sqlite://");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
    if backend == Backend::Redis {
        let client = ::redis::Client::open(url).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            ::redis::cmd("DEL")
                .arg(keys)
                .query_async::<i64>(&mut connection)
                .await
                .unwrap();
        }
    }
}

/// Runs `test` against a fresh store of `backend`, or reports why it cannot.
async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    match open(backend).await {
        Ok(harness) => {
            let (prefix, url) = (harness.prefix.clone(), harness.url.clone());
            test(harness).await;
            cleanup(backend, &prefix, &url).await;
        }
        Err(reason) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(
                !required,
                "{backend:?}: {reason} (KAIROS_REQUIRE_SERVICES=1)"
            );
            println!("SKIP {backend:?}: {reason}");
        }
    }
}

// ---- building blocks ----

fn ids(jobs: &[Job]) -> Vec<String> {
    jobs.iter().map(|job| job.id.clone()).collect()
}

fn record(job_id: &str, run: &str, finished: DateTime<Utc>) -> RunRecord {
    RunRecord {
        run_id: run.to_owned(),
        job_id: job_id.to_owned(),
        scheduled_time: finished - secs(1),
        started_at: Some(finished - secs(1)),
        finished_at: finished,
        outcome: RunOutcome::Success,
        error: None,
        output: Some(format!("output of {run}")),
        // Attempts other than the first round-trip too.
        attempt: 1 + u32::try_from(run.len() % 3).unwrap_or(0),
    }
}

// ---- the tests, written once, by the part of the store contract they test ----

// ---- Jobs and JobListing: adding, changing, reading, listing and counting jobs ----

async fn add_get_update_remove(harness: Harness) {
    let store = &harness.store;
    let added = store
        .add_job(job("a", Some(t0() + secs(10))))
        .await
        .unwrap();
    assert!(added.revision > 0, "a write sets a revision");
    let read = store.get_job("a").await.unwrap().expect("the job is there");
    assert_eq!(read.id, "a");
    assert_eq!(read.name, "job a");
    assert_eq!(read.args, json!({"id": "a"}));
    assert_eq!(read.next_run_time, Some(t0() + secs(10)));
    assert_eq!(read.trigger.spec(), added.trigger.spec());
    assert_eq!(read.revision, added.revision);

    let mut changed = read.clone();
    changed.name = "renamed".to_owned();
    changed.next_run_time = Some(t0() + secs(20));
    let updated = store.update_job(changed).await.unwrap();
    assert!(
        updated.revision > added.revision,
        "every write bumps the revision"
    );
    let read = store.get_job("a").await.unwrap().unwrap();
    assert_eq!(read.name, "renamed");
    assert_eq!(read.next_run_time, Some(t0() + secs(20)));

    store.remove_job("a").await.unwrap();
    assert!(store.get_job("a").await.unwrap().is_none());
}

async fn a_batch_of_jobs_is_added_at_once(harness: Harness) {
    let store = &harness.store;
    let batch: Vec<Job> = (0..50)
        .map(|index| job(&format!("b{index:02}"), Some(t0() + secs(index))))
        .collect();
    let added = store.add_jobs(batch).await.unwrap();
    assert_eq!(added.len(), 50);
    assert!(added.iter().all(|job| job.revision > 0));
    assert_eq!(store.get_jobs().await.unwrap().len(), 50);
    assert_eq!(store.next_run_time().await.unwrap(), Some(t0()));
    // A taken id fails the batch with Conflict.
    let again = vec![job("new", Some(t0())), job("b07", Some(t0()))];
    assert!(matches!(
        store.add_jobs(again).await,
        Err(StoreError::Conflict(id)) if id == "b07"
    ));
}

async fn missing_and_duplicate_ids_are_errors(harness: Harness) {
    let store = &harness.store;
    store.add_job(job("a", Some(t0()))).await.unwrap();
    assert!(matches!(
        store.add_job(job("a", Some(t0()))).await,
        Err(StoreError::Conflict(id)) if id == "a"
    ));
    assert!(matches!(
        store.update_job(job("nope", Some(t0()))).await,
        Err(StoreError::NotFound(id)) if id == "nope"
    ));
    assert!(matches!(
        store.remove_job("nope").await,
        Err(StoreError::NotFound(id)) if id == "nope"
    ));
    // replace_job adds or overwrites.
    let replaced = store
        .replace_job(job("a", Some(t0() + secs(50))))
        .await
        .unwrap();
    assert_eq!(replaced.next_run_time, Some(t0() + secs(50)));
    store.replace_job(job("b", None)).await.unwrap();
    assert_eq!(store.get_jobs().await.unwrap().len(), 2);
}

/// Many adds at once, as an HTTP API under load makes them (the SQL stores group them
/// into one statement): each gets its own answer, a taken id fails only its own add.
async fn concurrent_adds_each_get_their_own_answer(harness: Harness) {
    let store = &harness.store;
    store.add_job(job("taken", Some(t0()))).await.unwrap();
    let adds = (0..40).map(|index| {
        let store = Arc::clone(store);
        let id = match index {
            7 | 23 => "taken".to_owned(),
            31 => "twice".to_owned(),
            32 => "twice".to_owned(),
            _ => format!("job-{index}"),
        };
        tokio::spawn(async move {
            (
                id.clone(),
                store.add_job(job(&id, Some(t0() + secs(index)))).await,
            )
        })
    });
    let mut added = 0;
    let mut conflicts = Vec::new();
    for add in adds.collect::<Vec<_>>() {
        let (id, outcome) = add.await.unwrap();
        match outcome {
            Ok(job) => {
                assert_eq!(job.id, id);
                added += 1;
            }
            Err(StoreError::Conflict(conflict)) => {
                assert_eq!(conflict, id);
                conflicts.push(conflict);
            }
            Err(other) => panic!("{id}: {other}"),
        }
    }
    conflicts.sort();
    assert_eq!(conflicts, ["taken", "taken", "twice"]);
    assert_eq!(added, 37);
    assert_eq!(store.count_jobs().await.unwrap(), 38);
}

async fn a_conditional_update_writes_only_at_the_expected_revision(harness: Harness) {
    let store = &harness.store;
    let added = store
        .add_job(job("c", Some(t0() + secs(10))))
        .await
        .unwrap();
    let mut renamed = added.clone();
    renamed.name = "first".to_owned();
    let written = store
        .update_job_if(renamed, added.revision)
        .await
        .unwrap()
        .expect("the revision was current");
    assert!(written.revision > added.revision);
    let mut stale = added.clone();
    stale.name = "stale".to_owned();
    assert_eq!(
        store
            .update_job_if(stale, added.revision)
            .await
            .unwrap()
            .err(),
        Some(written.revision),
        "refused, naming the revision it has"
    );
    assert_eq!(store.get_job("c").await.unwrap().unwrap().name, "first");
    assert!(matches!(
        store.update_job_if(job("nope", None), 1).await,
        Err(StoreError::NotFound(_))
    ));
    // Eight writers from one revision at once: exactly one is written.
    let writers = (0..8).map(|index| {
        let store = Arc::clone(store);
        let mut job = written.clone();
        job.name = format!("writer-{index}");
        tokio::spawn(async move { store.update_job_if(job, written.revision).await })
    });
    let mut won = 0;
    for writer in writers.collect::<Vec<_>>() {
        if writer.await.unwrap().unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

/// A caller that goes away mid-add (an HTTP client that hung up) strands none of the
/// adds that came after it: on the SQL stores a lone add writes in its caller's future
/// while later adds queue behind it (src/store/sql/group_commit.rs), and whatever
/// queued is handed on when that future is dropped.
async fn an_abandoned_add_strands_no_add_queued_behind_it(harness: Harness) {
    let store = &harness.store;
    for round in 0..20u32 {
        let first = {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                store
                    .add_job(job(&format!("abandoned-{round}"), Some(t0())))
                    .await
            })
        };
        // Let the first add start its write before the others arrive, in some rounds.
        for _ in 0..round % 4 {
            tokio::task::yield_now().await;
        }
        let later: Vec<_> = (0..5u32)
            .map(|index| {
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    store
                        .add_job(job(&format!("later-{round}-{index}"), Some(t0())))
                        .await
                })
            })
            .collect();
        first.abort();
        for add in later {
            let added = tokio::time::timeout(std::time::Duration::from_secs(20), add)
                .await
                .expect("an add queued behind an abandoned one finishes")
                .unwrap();
            added.unwrap();
        }
        let _ = first.await;
    }
    // The store still takes adds, lone and concurrent.
    store.add_job(job("after", Some(t0()))).await.unwrap();
    assert!(store.get_job("after").await.unwrap().is_some());
}

async fn config_jobs_are_found_and_jobs_counted_without_reading_all(harness: Harness) {
    let store = &harness.store;
    assert_eq!(store.count_jobs().await.unwrap(), 0);
    let mut owned = job("owned", Some(t0()));
    let spec = kairos::job::JobSpec::new("noop", owned.trigger.spec().into_owned());
    owned.config_spec = Some(Box::new(spec));
    store.add_job(owned).await.unwrap();
    store.add_job(job("plain", Some(t0()))).await.unwrap();
    // Its args hold the very text SQL stores search for (`"config_spec":`), so a
    // store must still check what it found; the config does not own this job.
    let mut lookalike = job("lookalike", None);
    lookalike.args = json!({"config_spec": {"not": "a spec"}});
    store.add_job(lookalike).await.unwrap();
    let found: Vec<String> = store
        .get_config_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(found, ["owned"]);
    assert_eq!(store.count_jobs().await.unwrap(), 3);
    store.remove_job("plain").await.unwrap();
    assert_eq!(store.count_jobs().await.unwrap(), 2);
}

/// `GET /metrics` asks every scrape: pending (a next run time), paused, and set aside
/// (neither: a failed one-off job), counted by the store; acquired jobs keep their
/// state.
async fn jobs_are_counted_by_state(harness: Harness) {
    use kairos::store::JobCounts;
    let store = &harness.store;
    assert_eq!(
        store.count_job_states().await.unwrap(),
        JobCounts::default()
    );
    for index in 0..5 {
        store
            .add_job(job(&format!("due-{index}"), Some(t0() + secs(index))))
            .await
            .unwrap();
    }
    store.add_job(job("paused-1", None)).await.unwrap();
    store.add_job(job("paused-2", None)).await.unwrap();
    let mut failed = job("failed", None);
    failed.paused = false;
    store.add_job(failed).await.unwrap();
    let expected = JobCounts {
        pending: 5,
        paused: 2,
        failed: 1,
    };
    assert_eq!(store.count_job_states().await.unwrap(), expected);
    let acquired = store
        .acquire_due_jobs("one", t0() + secs(1), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(acquired.len(), 2);
    assert_eq!(store.count_job_states().await.unwrap(), expected);
    store.remove_job("paused-1").await.unwrap();
    store.remove_job("due-4").await.unwrap();
    assert_eq!(
        store.count_job_states().await.unwrap(),
        JobCounts {
            pending: 4,
            paused: 1,
            failed: 1,
        }
    );
}

async fn jobs_are_listed_a_filtered_page_at_a_time(harness: Harness) {
    let store = &harness.store;
    let mut jobs = Vec::new();
    for index in 0..30 {
        let id = format!("order-{index:02}");
        let next = (index % 5 != 4).then(|| t0() + secs(100 - index));
        let mut job = job(&id, next);
        job.task = if index % 3 == 0 { "report" } else { "noop" }.to_owned();
        job.name = if index == 7 {
            "Nightly Ünïcode report".to_owned()
        } else {
            format!("Cancel order {index}")
        };
        // Args that hold the filter texts must not make a job match.
        job.args =
            json!({"task": "report", "note": "special_100%", "failed": true, "broken": true});
        // Every tenth set aside: a one-off job kept after its attempts failed, and one
        // (the second) a job set aside as broken.
        if index % 10 == 9 {
            job.paused = false;
            job.next_run_time = None;
            if index == 19 {
                job.retry.broken = Some("its trigger took too long to evaluate".to_owned());
            } else {
                job.retry.failed = Some(kairos::job::JobFailure {
                    scheduled_time: t0(),
                    attempts: 3,
                    at: t0() + secs(10),
                    error: Some("connection refused".to_owned()),
                });
            }
        }
        jobs.push(job);
    }
    store.add_jobs(jobs).await.unwrap();
    let all = store.get_jobs().await.unwrap();
    let queries = [
        JobQuery {
            limit: 10,
            ..JobQuery::default()
        },
        JobQuery {
            offset: 20,
            limit: 20,
            ..JobQuery::default()
        },
        JobQuery {
            paused: Some(true),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            paused: Some(false),
            offset: 3,
            limit: 5,
            ..JobQuery::default()
        },
        JobQuery {
            task: Some("report".to_owned()),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            task: Some("repo".to_owned()),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            text: Some("ORDER-1".to_owned()),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            text: Some("cancel order 2".to_owned()),
            limit: 3,
            ..JobQuery::default()
        },
        JobQuery {
            text: Some("ünïcode".to_owned()),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            text: Some("100%".to_owned()),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            text: Some("_".to_owned()),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            paused: Some(false),
            failed: None,
            set_aside: None,
            task: Some("noop".to_owned()),
            text: Some("order".to_owned()),
            offset: 2,
            limit: 4,
        },
        JobQuery {
            set_aside: Some(SetAside::Failed),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            set_aside: Some(SetAside::Failed),
            offset: 1,
            limit: 1,
            ..JobQuery::default()
        },
        JobQuery {
            set_aside: Some(SetAside::Broken),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            failed: Some(true),
            set_aside: Some(SetAside::Broken),
            text: Some("order-19".to_owned()),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            failed: Some(true),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            paused: Some(false),
            failed: Some(false),
            limit: 50,
            ..JobQuery::default()
        },
        JobQuery {
            failed: Some(true),
            task: Some("report".to_owned()),
            limit: 50,
            ..JobQuery::default()
        },
    ];
    for query in queries {
        let page = store.list_jobs(&query).await.unwrap();
        let expected = kairos::store::query::page_of(all.clone(), &query);
        let ids = |jobs: &[Job]| jobs.iter().map(|job| job.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&page.jobs), ids(&expected.jobs), "{query:?}");
        assert_eq!(page.total, expected.total, "{query:?}");
    }
    // Spot checks that the reference itself means what it says.
    let failed = JobQuery {
        failed: Some(true),
        limit: 50,
        ..JobQuery::default()
    };
    let set_aside = store.list_jobs(&failed).await.unwrap();
    assert_eq!(set_aside.total, 3);
    // Each way of being set aside is listed apart, with its own total.
    for (way, state, total) in [
        (SetAside::Failed, "failed", 2),
        (SetAside::Broken, "broken", 1),
    ] {
        let query = JobQuery {
            set_aside: Some(way),
            limit: 50,
            ..JobQuery::default()
        };
        let listed = store.list_jobs(&query).await.unwrap();
        assert_eq!(listed.total, total, "{way:?}");
        assert_eq!(listed.jobs.len(), total as usize, "{way:?}");
        assert!(
            listed.jobs.iter().all(|job| job.state() == state),
            "{way:?}"
        );
    }
    let report = JobQuery {
        task: Some("report".to_owned()),
        limit: 50,
        ..JobQuery::default()
    };
    assert_eq!(store.list_jobs(&report).await.unwrap().total, 10);
    let unicode = JobQuery {
        text: Some("ÜNÏCODE".to_owned()),
        limit: 50,
        ..JobQuery::default()
    };
    let found = store.list_jobs(&unicode).await.unwrap();
    assert_eq!(found.jobs.len(), 1);
    assert_eq!(found.jobs[0].id, "order-07");
    let none = JobQuery {
        text: Some("100%".to_owned()),
        limit: 50,
        ..JobQuery::default()
    };
    assert_eq!(
        store.list_jobs(&none).await.unwrap().total,
        0,
        "args are not searched"
    );
    let first = store
        .list_jobs(&JobQuery {
            limit: 1,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        first.jobs[0].id, "order-28",
        "the earliest next run comes first"
    );
    assert_eq!(first.total, 30);
}

async fn jobs_are_ordered_by_next_run_time_paused_last(harness: Harness) {
    let store = &harness.store;
    store
        .add_job(job("late", Some(t0() + secs(30))))
        .await
        .unwrap();
    store.add_job(job("paused", None)).await.unwrap();
    store
        .add_job(job("early", Some(t0() + secs(10))))
        .await
        .unwrap();
    store
        .add_job(job("middle", Some(t0() + secs(20))))
        .await
        .unwrap();
    assert_eq!(
        ids(&store.get_jobs().await.unwrap()),
        ["early", "middle", "late", "paused"]
    );
    assert_eq!(store.next_run_time().await.unwrap(), Some(t0() + secs(10)));
    store.remove_all_jobs().await.unwrap();
    assert!(store.get_jobs().await.unwrap().is_empty());
    assert_eq!(store.next_run_time().await.unwrap(), None);
}

async fn jobs_survive_a_restart_of_the_scheduler(harness: Harness) {
    use common::{recording_tasks, wait_for_runs};
    use kairos::clock::ManualClock;
    use kairos::job::JobSpec;
    use kairos::scheduler::Scheduler;

    let second_store = reopen(&harness).await;
    let clock = ManualClock::new(t0());
    let date = |at: &str| -> TriggerSpec {
        serde_json::from_value(json!({"type": "date", "run_date": at})).unwrap()
    };
    let every_minute: TriggerSpec = serde_json::from_value(json!({
        "type": "interval", "minutes": 1, "start_date": "2030-01-01T00:01:00Z",
    }))
    .unwrap();
    let (tasks, runs) = recording_tasks();
    let first = Scheduler::builder()
        .clock(clock.clone())
        .store_shared("default", Arc::clone(&harness.store))
        .tasks(tasks.clone())
        .build();
    first.start();
    first
        .add_job(JobSpec::new("record", date("2030-01-01T00:00:30Z")).with_id("order-cancel-1"))
        .await
        .unwrap();
    first
        .add_job(JobSpec::new("record", every_minute).with_id("every-minute"))
        .await
        .unwrap();
    first.shutdown(None).await;
    drop(first);

    // Down for two minutes: the one-off's time and two interval times pass.
    clock.set(t0() + secs(120));
    let second = Scheduler::builder()
        .clock(clock.clone())
        .store_shared("default", second_store)
        .tasks(tasks)
        .build();
    second.start();
    let seen = wait_for_runs(&runs, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut seen_after = runs.lock().unwrap().clone();
    assert_eq!(seen, seen_after, "no more runs than expected");
    seen_after.sort();
    assert_eq!(
        seen_after,
        [
            ("every-minute".to_owned(), t0() + secs(120)),
            ("order-cancel-1".to_owned(), t0() + secs(30)),
        ],
        "the missed one-off runs, the interval runs once (coalesced)"
    );
    assert!(second.get_job("order-cancel-1").await.unwrap().is_none());
    assert_eq!(
        second
            .get_job("every-minute")
            .await
            .unwrap()
            .unwrap()
            .next_run_time,
        Some(t0() + secs(180))
    );
    second.shutdown(None).await;
}

// ---- DueJobs: acquiring due jobs under leases and releasing them ----

async fn acquire_takes_due_jobs_earliest_first_up_to_the_limit(harness: Harness) {
    let store = &harness.store;
    for (id, second) in [("c", 3), ("a", 1), ("b", 2), ("later", 100)] {
        store
            .add_job(job(id, Some(t0() + secs(second))))
            .await
            .unwrap();
    }
    store.add_job(job("paused", None)).await.unwrap();
    let now = t0() + secs(50);
    let first = store.acquire_due_jobs("one", now, 2, LEASE).await.unwrap();
    assert_eq!(ids(&first), ["a", "b"]);
    // Acquired jobs are invisible to further acquisitions and to next_run_time.
    let second = store.acquire_due_jobs("one", now, 10, LEASE).await.unwrap();
    assert_eq!(ids(&second), ["c"]);
    assert!(store
        .acquire_due_jobs("two", now, 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_run_time().await.unwrap(), Some(t0() + secs(100)));
}

async fn a_corrupt_job_is_skipped_without_blocking_the_others(harness: Harness) {
    let store = &harness.store;
    store
        .add_job(job("good", Some(t0() + secs(10))))
        .await
        .unwrap();
    store
        .add_job(job("bad", Some(t0() + secs(5))))
        .await
        .unwrap();
    corrupt(&harness, "bad").await;
    let now = t0() + secs(10);
    let acquired = store.acquire_due_jobs("one", now, 10, LEASE).await.unwrap();
    assert_eq!(ids(&acquired), ["good"]);
    // It is not offered again and again (the good job comes back once its lease
    // ran out, the corrupt one never does).
    let again = store
        .acquire_due_jobs("one", now + secs(100), 10, LEASE)
        .await
        .unwrap();
    assert!(
        !ids(&again).contains(&"bad".to_owned()),
        "{:?}",
        ids(&again)
    );
    // Listing still works.
    let listed = store.get_jobs().await.unwrap();
    assert!(ids(&listed).contains(&"good".to_owned()));
}

async fn release_writes_next_run_times_and_removes_finished_jobs(harness: Harness) {
    let store = &harness.store;
    store
        .add_job(job("again", Some(t0() + secs(10))))
        .await
        .unwrap();
    store
        .add_job(job("done", Some(t0() + secs(10))))
        .await
        .unwrap();
    let now = t0() + secs(10);
    let acquired = store.acquire_due_jobs("one", now, 10, LEASE).await.unwrap();
    assert_eq!(acquired.len(), 2);
    let releases: Vec<Release> = acquired
        .iter()
        .map(|job| {
            let next = (job.id == "again").then(|| t0() + secs(20));
            release(job, next)
        })
        .collect();
    store.release_jobs("one", &releases).await.unwrap();
    let again = store.get_job("again").await.unwrap().unwrap();
    assert_eq!(again.next_run_time, Some(t0() + secs(20)));
    assert!(
        store.get_job("done").await.unwrap().is_none(),
        "finished jobs go"
    );
    // Released jobs are due again at their new time.
    assert_eq!(store.next_run_time().await.unwrap(), Some(t0() + secs(20)));
    let later = store
        .acquire_due_jobs("one", t0() + secs(20), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(ids(&later), ["again"]);
}

async fn changes_made_while_acquired_are_kept(harness: Harness) {
    let store = &harness.store;
    for id in ["renamed", "rescheduled", "removed"] {
        store.add_job(job(id, Some(t0() + secs(10)))).await.unwrap();
    }
    let now = t0() + secs(10);
    let acquired = store.acquire_due_jobs("one", now, 10, LEASE).await.unwrap();
    assert_eq!(acquired.len(), 3);

    let mut renamed = store.get_job("renamed").await.unwrap().unwrap();
    renamed.name = "new name".to_owned();
    store.update_job(renamed).await.unwrap();
    let mut rescheduled = store.get_job("rescheduled").await.unwrap().unwrap();
    rescheduled.next_run_time = Some(t0() + secs(500));
    store.update_job(rescheduled).await.unwrap();
    store.remove_job("removed").await.unwrap();

    let releases: Vec<Release> = acquired
        .iter()
        .map(|job| release(job, Some(t0() + secs(20))))
        .collect();
    store.release_jobs("one", &releases).await.unwrap();

    // A change that left the schedule alone keeps the change and moves past the run
    // time just handled, so that time does not run twice.
    let renamed = store.get_job("renamed").await.unwrap().unwrap();
    assert_eq!(renamed.name, "new name");
    assert_eq!(renamed.next_run_time, Some(t0() + secs(20)));
    // A change to the schedule wins.
    let rescheduled = store.get_job("rescheduled").await.unwrap().unwrap();
    assert_eq!(rescheduled.next_run_time, Some(t0() + secs(500)));
    // A removed job stays removed.
    assert!(store.get_job("removed").await.unwrap().is_none());
    // Nothing is still leased.
    let due = store
        .acquire_due_jobs("one", t0() + secs(20), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(ids(&due), ["renamed"]);
}

/// A one-off `date` trigger at `at`.
fn one_off_at(at: DateTime<Utc>) -> kairos::trigger::Trigger {
    let spec: TriggerSpec = serde_json::from_value(json!({
        "type": "date", "run_date": at.to_rfc3339(), "timezone": "UTC",
    }))
    .unwrap();
    kairos::trigger::Trigger::new(spec, &kairos::trigger::TriggerContext::new(t0())).unwrap()
}

/// A held run's release, taken at one schedule version, is written after its job's
/// schedule changed to the very time it was taken at (a reschedule to a one-off job
/// then, a next run time moved away and back): comparing next run times took those for
/// changes that left the schedule alone and wrote the old trigger's next time under
/// the new one. The schedule version moved, so the change wins; a change that left the
/// schedule alone still lets the release move the job on.
async fn a_release_taken_at_an_older_schedule_version_leaves_the_new_schedule_alone(
    harness: Harness,
) {
    let store = &harness.store;
    let at = t0() + secs(10);
    for id in ["moved_and_back", "renamed", "retriggered"] {
        store.add_job(job(id, Some(at))).await.unwrap();
    }
    let acquired = store.acquire_due_jobs("one", at, 10, LEASE).await.unwrap();
    assert_eq!(ids(&acquired), ["moved_and_back", "renamed", "retriggered"]);

    let mut retriggered = store.get_job("retriggered").await.unwrap().unwrap();
    retriggered.trigger = one_off_at(at);
    store.update_job(retriggered.clone()).await.unwrap();
    let mut moved = store.get_job("moved_and_back").await.unwrap().unwrap();
    moved.next_run_time = Some(at + secs(500));
    let moved = store.update_job(moved).await.unwrap();
    let mut back = moved.clone();
    back.next_run_time = Some(at);
    store
        .update_job_if(back, moved.revision)
        .await
        .unwrap()
        .unwrap();
    let mut renamed = store.get_job("renamed").await.unwrap().unwrap();
    renamed.args = json!({"changed": true});
    store.update_job(renamed).await.unwrap();

    let releases: Vec<Release> = acquired
        .iter()
        .map(|job| release(job, Some(t0() + secs(20))))
        .collect();
    let fenced = store.release_jobs("one", &releases).await.unwrap();
    assert!(fenced.is_empty(), "{fenced:?}");

    // The new schedules stand, at the time the jobs were taken at.
    let now = store.get_job("retriggered").await.unwrap().unwrap();
    assert_eq!(now.trigger, retriggered.trigger);
    assert_eq!(now.next_run_time, Some(at));
    let now = store.get_job("moved_and_back").await.unwrap().unwrap();
    assert_eq!(now.next_run_time, Some(at));
    // The schedule left alone: the run time just handled does not run twice.
    let now = store.get_job("renamed").await.unwrap().unwrap();
    assert_eq!(now.args, json!({"changed": true}));
    assert_eq!(now.next_run_time, Some(t0() + secs(20)));

    // The leases ended: the changed jobs are due again as they are now, and taken at
    // their new schedule version, their release is written.
    let due = store.acquire_due_jobs("two", at, 10, LEASE).await.unwrap();
    assert_eq!(ids(&due), ["moved_and_back", "retriggered"]);
    assert_eq!(due[1].trigger, retriggered.trigger);
    let releases = vec![
        release(&due[0], Some(t0() + secs(30))),
        release(&due[1], None),
    ];
    assert!(store
        .release_jobs("two", &releases)
        .await
        .unwrap()
        .is_empty());
    assert!(store.get_job("retriggered").await.unwrap().is_none());
    let now = store.get_job("moved_and_back").await.unwrap().unwrap();
    assert_eq!(now.next_run_time, Some(t0() + secs(30)));
}

/// A store upgraded under a job leased by an older kairos, which kept no schedule
/// versions: the SQL tables gain their columns (the migration runs on the old tables
/// and keeps their rows), and such a lease, which took no version, is judged by next
/// run times as before; the next lease takes one.
async fn a_lease_taken_before_schedule_versions_is_judged_as_before(harness: Harness) {
    let at = t0() + secs(10);
    for id in ["renamed", "rescheduled"] {
        harness.store.add_job(job(id, Some(at))).await.unwrap();
    }
    let acquired = harness
        .store
        .acquire_due_jobs("old", at, 10, LEASE)
        .await
        .unwrap();
    assert_eq!(acquired.len(), 2);
    let p = &harness.prefix;
    match harness.backend {
        Backend::Redis => {
            let client = ::redis::Client::open(harness.url.as_str()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            for key in ["sched", "leasesched"] {
                ::redis::cmd("DEL")
                    .arg(format!("{p}{key}"))
                    .query_async::<i64>(&mut connection)
                    .await
                    .unwrap();
            }
        }
        Backend::Sqlite | Backend::Postgres | Backend::Mysql => {
            // The schedule versions' migration: SQLite and PostgreSQL 10, MySQL 9.
            let version = if harness.backend == Backend::Mysql {
                9
            } else {
                10
            };
            let statements = [
                format!("ALTER TABLE {p}jobs DROP COLUMN lease_schedule"),
                format!("ALTER TABLE {p}jobs DROP COLUMN schedule_version"),
                format!("DELETE FROM {p}schema_version WHERE version >= {version}"),
            ];
            sql_execute(harness.backend, &harness.url, &statements).await;
        }
        Backend::Memory => unreachable!("the memory store runs no persistence test"),
    }
    let store = reopen(&harness).await;

    let mut renamed = store.get_job("renamed").await.unwrap().unwrap();
    renamed.name = "new name".to_owned();
    store.update_job(renamed).await.unwrap();
    let mut rescheduled = store.get_job("rescheduled").await.unwrap().unwrap();
    rescheduled.next_run_time = Some(at + secs(500));
    store.update_job(rescheduled).await.unwrap();
    let releases: Vec<Release> = acquired
        .iter()
        .map(|job| release(job, Some(t0() + secs(20))))
        .collect();
    assert!(store
        .release_jobs("old", &releases)
        .await
        .unwrap()
        .is_empty());
    let renamed = store.get_job("renamed").await.unwrap().unwrap();
    assert_eq!(renamed.name, "new name");
    assert_eq!(renamed.next_run_time, Some(t0() + secs(20)));
    let rescheduled = store.get_job("rescheduled").await.unwrap().unwrap();
    assert_eq!(rescheduled.next_run_time, Some(at + secs(500)));

    // The next lease takes a schedule version: a new trigger at the very time it was
    // taken at wins over its release.
    let due = store
        .acquire_due_jobs("new", t0() + secs(20), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(ids(&due), ["renamed"]);
    let mut retriggered = due[0].clone();
    retriggered.trigger = one_off_at(t0() + secs(20));
    store.update_job(retriggered.clone()).await.unwrap();
    let releases = vec![release(&due[0], Some(t0() + secs(30)))];
    assert!(store
        .release_jobs("new", &releases)
        .await
        .unwrap()
        .is_empty());
    let now = store.get_job("renamed").await.unwrap().unwrap();
    assert_eq!(now.trigger, retriggered.trigger);
    assert_eq!(now.next_run_time, Some(t0() + secs(20)));
}

async fn an_expired_lease_makes_the_job_acquirable_again(harness: Harness) {
    let store = &harness.store;
    store
        .add_job(job("a", Some(t0() + secs(10))))
        .await
        .unwrap();
    let now = t0() + secs(10);
    let short = Duration::from_secs(30);
    assert_eq!(
        store
            .acquire_due_jobs("dead", now, 10, short)
            .await
            .unwrap()
            .len(),
        1
    );
    // The owner died and never released. Before the lease ends nobody gets the job…
    let before = now + secs(29);
    assert!(store
        .acquire_due_jobs("alive", before, 10, short)
        .await
        .unwrap()
        .is_empty());
    // …and next_run_time says when to look again.
    let wake = store
        .next_run_time()
        .await
        .unwrap()
        .expect("a wake-up for the lease");
    assert!(wake <= now + secs(30), "{wake}");
    // After it ends, another scheduler takes the job.
    let after = now + secs(31);
    let taken = store
        .acquire_due_jobs("alive", after, 10, short)
        .await
        .unwrap();
    assert_eq!(ids(&taken), ["a"]);
    store
        .release_jobs("alive", &[release(&taken[0], Some(t0() + secs(20)))])
        .await
        .unwrap();
    assert_eq!(
        store.get_job("a").await.unwrap().unwrap().next_run_time,
        Some(t0() + secs(20))
    );
}

/// Fencing: a scheduler frozen past its lease while another took
/// the job over cannot write back a stale next run time; nor can one whose lease was
/// ended by a recovery. An expired lease nobody took over is still its owner's.
async fn a_release_from_a_lost_lease_is_fenced_off(harness: Harness) {
    let store = &harness.store;
    store.add_job(job("a", Some(t0()))).await.unwrap();
    store
        .add_job(job("b", Some(t0() + secs(40))))
        .await
        .unwrap();
    let short = Duration::from_secs(30);
    let taken = store
        .acquire_due_jobs("frozen", t0(), 1, short)
        .await
        .unwrap();
    assert_eq!(ids(&taken), ["a"]);
    // "frozen" stops past its lease; "survivor" takes the job over.
    let later = t0() + secs(31);
    let survivor = store
        .acquire_due_jobs("survivor", later, 1, short)
        .await
        .unwrap();
    assert_eq!(ids(&survivor), ["a"]);
    let revision = store.get_job("a").await.unwrap().unwrap().revision;
    // The frozen scheduler wakes and writes back: refused, nothing written.
    let fenced = store
        .release_jobs("frozen", &[release(&taken[0], Some(t0() + secs(20)))])
        .await
        .unwrap();
    assert_eq!(fenced, ["a"]);
    let stored = store.get_job("a").await.unwrap().unwrap();
    assert_eq!(
        stored.next_run_time,
        Some(t0()),
        "the stale time was not written"
    );
    assert_eq!(stored.revision, revision);
    // The holder's release works, once: no double advance.
    let fenced = store
        .release_jobs("survivor", &[release(&survivor[0], Some(t0() + secs(60)))])
        .await
        .unwrap();
    assert!(fenced.is_empty(), "{fenced:?}");
    assert_eq!(
        store.get_job("a").await.unwrap().unwrap().next_run_time,
        Some(t0() + secs(60))
    );
    // A repeat of the stale release after the holder released is refused too.
    let fenced = store
        .release_jobs("frozen", &[release(&taken[0], Some(t0() + secs(20)))])
        .await
        .unwrap();
    assert_eq!(fenced, ["a"]);
    assert_eq!(
        store.get_job("a").await.unwrap().unwrap().next_run_time,
        Some(t0() + secs(60))
    );

    // A lease that ran out with nobody taking over is still the owner's: its release
    // is what keeps the run it handled from running again.
    let slow = store
        .acquire_due_jobs("slow", t0() + secs(40), 1, short)
        .await
        .unwrap();
    assert_eq!(ids(&slow), ["b"]);
    // Another scheduler acquires after b's lease ran out (which makes b due again in
    // stores that reclaim leases on acquisition) but takes an earlier job instead.
    store.add_job(job("early", Some(t0()))).await.unwrap();
    let expired = t0() + secs(71);
    let other = store
        .acquire_due_jobs("other", expired, 1, short)
        .await
        .unwrap();
    assert_eq!(ids(&other), ["early"]);
    let fenced = store
        .release_jobs("slow", &[release(&slow[0], Some(t0() + secs(90)))])
        .await
        .unwrap();
    assert!(fenced.is_empty(), "{fenced:?}");
    assert_eq!(
        store.get_job("b").await.unwrap().unwrap().next_run_time,
        Some(t0() + secs(90))
    );

    // A lease ended by a recovery (or a reap) is gone as well.
    store.add_job(job("c", Some(t0()))).await.unwrap();
    let reaped = store
        .acquire_due_jobs("reaped", expired, 1, short)
        .await
        .unwrap();
    assert_eq!(ids(&reaped), ["c"]);
    store.recover_owner("reaped").await.unwrap();
    let fenced = store
        .release_jobs("reaped", &[release(&reaped[0], None)])
        .await
        .unwrap();
    assert_eq!(fenced, ["c"]);
    assert!(store.get_job("c").await.unwrap().is_some(), "not removed");
}

async fn two_schedulers_acquiring_at_once_never_share_a_job(harness: Harness) {
    let store = &harness.store;
    let count = 200;
    for index in 0..count {
        store
            .add_job(job(&format!("j{index:03}"), Some(t0() + secs(index % 7))))
            .await
            .unwrap();
    }
    let now = t0() + secs(10);
    let take = |owner: &'static str| {
        let store = Arc::clone(store);
        async move {
            let mut taken = Vec::new();
            loop {
                let batch = store.acquire_due_jobs(owner, now, 7, LEASE).await.unwrap();
                if batch.is_empty() {
                    return taken;
                }
                taken.extend(ids(&batch));
            }
        }
    };
    let (one, two) = tokio::join!(tokio::spawn(take("one")), tokio::spawn(take("two")));
    let (one, two) = (one.unwrap(), two.unwrap());
    let mut all: Vec<String> = one.iter().chain(two.iter()).cloned().collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a job was acquired twice");
    assert_eq!(all.len(), count as usize, "every due job was acquired once");
}

/// The zone rules check at start moves next run times in a batch: each job still at
/// the revision it was read at gets its new time and a new revision; one changed or
/// removed meanwhile is left alone. The store keeps the rules its times follow where it
/// can (the SQL stores); where it keeps none, every start recomputes.
async fn next_run_times_move_in_a_batch_at_the_revision_read(harness: Harness) {
    use kairos::store::NextRunMove;
    let store = &harness.store;
    let a = store
        .add_job(job("a", Some(t0() + secs(10))))
        .await
        .unwrap();
    let b = store
        .add_job(job("b", Some(t0() + secs(20))))
        .await
        .unwrap();
    let mut changed = b.clone();
    changed.name = "changed".to_owned();
    let changed = store
        .update_job_if(changed, b.revision)
        .await
        .unwrap()
        .unwrap();
    let moves = vec![
        NextRunMove {
            job_id: "a".to_owned(),
            revision: a.revision,
            next_run_time: t0() + secs(100),
        },
        NextRunMove {
            job_id: "b".to_owned(),
            revision: b.revision,
            next_run_time: t0() + secs(200),
        },
        NextRunMove {
            job_id: "gone".to_owned(),
            revision: 1,
            next_run_time: t0() + secs(300),
        },
    ];
    assert_eq!(
        store.move_next_run_times(moves).await.unwrap(),
        vec!["a".to_owned()]
    );
    let moved = store.get_job("a").await.unwrap().unwrap();
    assert_eq!(moved.next_run_time, Some(t0() + secs(100)));
    assert!(moved.revision > a.revision, "a move is a write");
    assert_eq!(moved.name, a.name);
    let kept = store.get_job("b").await.unwrap().unwrap();
    assert_eq!(kept.next_run_time, changed.next_run_time);
    assert_eq!(kept.revision, changed.revision);
    assert!(store.get_job("gone").await.unwrap().is_none());

    let recorded = store.zone_rules().await.unwrap();
    store
        .record_zone_rules("2099a (system, /zoneinfo)")
        .await
        .unwrap();
    store
        .record_zone_rules("2099b (system, /zoneinfo)")
        .await
        .unwrap();
    let after = store.zone_rules().await.unwrap();
    match harness.backend {
        Backend::Sqlite | Backend::Postgres | Backend::Mysql => {
            assert_eq!(recorded, None);
            assert_eq!(after.as_deref(), Some("2099b (system, /zoneinfo)"));
        }
        Backend::Memory | Backend::Redis => assert_eq!(after, None),
    }
}

/// A run handed over early asks where its job stands as its time comes
/// (`docs/lifecycle.md`, "Judged at its time"): every write shows in the revision, even
/// one that leaves the next run time as it was; an acquisition does not.
async fn job_schedules_show_every_write_by_its_revision(harness: Harness) {
    let store = &harness.store;
    let due = t0() + secs(10);
    let added = store.add_job(job("s", Some(due))).await.unwrap();
    let paused = store.add_job(job("p", None)).await.unwrap();
    let asked = ["s".to_owned(), "gone".to_owned(), "p".to_owned()];
    let schedules = store.job_schedules(&asked).await.unwrap();
    assert_eq!(
        schedules,
        [
            Some(JobSchedule {
                next_run_time: Some(due),
                revision: added.revision
            }),
            None,
            Some(JobSchedule {
                next_run_time: None,
                revision: paused.revision
            }),
        ]
    );
    let taken = store.acquire_due_jobs("one", due, 10, LEASE).await.unwrap();
    assert_eq!(ids(&taken), ["s"]);
    let after_acquire = store.job_schedules(&asked[..1]).await.unwrap();
    assert_eq!(after_acquire[0].map(|s| s.revision), Some(added.revision));
    // A change that keeps the next run time still shows.
    let mut renamed = added.clone();
    renamed.name = "renamed".to_owned();
    let renamed = store.update_job(renamed).await.unwrap();
    let after_change = store.job_schedules(&asked[..1]).await.unwrap();
    assert_eq!(
        after_change[0],
        Some(JobSchedule {
            next_run_time: Some(due),
            revision: renamed.revision
        })
    );
    assert_ne!(renamed.revision, added.revision);
}

// ---- InstanceSlots: running-instance slots, recovered and orphaned ----

async fn max_instances_holds_across_schedulers(harness: Harness) {
    let store = &harness.store;
    store.add_job(job("a", Some(t0()))).await.unwrap();
    assert!(store.claim_instance("a", "one", 2).await.unwrap());
    assert!(store.claim_instance("a", "two", 2).await.unwrap());
    assert!(
        !store.claim_instance("a", "one", 2).await.unwrap(),
        "the limit is 2"
    );
    store.release_instance("a", "two").await.unwrap();
    assert!(
        store.claim_instance("a", "two", 2).await.unwrap(),
        "a slot was freed"
    );
    // Another job's slots are its own.
    assert!(store.claim_instance("b", "one", 1).await.unwrap());
    assert!(!store.claim_instance("b", "two", 1).await.unwrap());
}

async fn instances_are_claimed_and_finished_in_batches(harness: Harness) {
    let store = &harness.store;
    let claim = |job_id: &str, max_instances: u32| InstanceClaim {
        job_id: job_id.to_owned(),
        max_instances,
        run_times: Vec::new(),
        queues: false,
    };
    // "a" allows two, asked three times in one batch; "b" is full (another scheduler).
    assert!(store.claim_instance("b", "two", 1).await.unwrap());
    let claimed = store
        .claim_instances(
            "one",
            &[claim("a", 2), claim("b", 1), claim("a", 2), claim("a", 2)],
        )
        .await
        .unwrap();
    assert_eq!(claimed, [true, false, true, false]);
    assert!(store.claim_instances("one", &[]).await.unwrap().is_empty());
    // Finishing frees exactly the slots it says, and only the owner's.
    let finished = |run_id: &str, job_id: &str, frees_instance: bool| FinishedRun {
        record: record(job_id, run_id, t0() + secs(1)),
        frees_instance,
    };
    store
        .finish_runs(
            "one",
            vec![
                finished("r1", "a", true),
                finished("r2", "a", false),
                finished("r3", "b", true),
            ],
        )
        .await
        .unwrap();
    assert!(
        store.claim_instance("a", "two", 2).await.unwrap(),
        "one slot of a was freed"
    );
    assert!(
        !store.claim_instance("a", "two", 2).await.unwrap(),
        "only one"
    );
    assert!(
        !store.claim_instance("b", "one", 1).await.unwrap(),
        "b's slot is two's"
    );
    let mut run_ids: Vec<String> = store
        .runs(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    run_ids.sort();
    assert_eq!(run_ids, ["r1", "r2", "r3"]);
    assert_eq!(store.runs(Some("b"), 10).await.unwrap().len(), 1);
    // Batches larger than one statement or script call.
    let many: Vec<InstanceClaim> = (0..600)
        .map(|index| claim(&format!("m{index}"), 1))
        .collect();
    let claimed = store.claim_instances("one", &many).await.unwrap();
    assert_eq!(claimed.len(), 600);
    assert!(claimed.iter().all(|claimed| *claimed));
    let runs: Vec<FinishedRun> = (0..600)
        .map(|index| finished(&format!("m{index}-run"), &format!("m{index}"), true))
        .collect();
    store.finish_runs("one", runs).await.unwrap();
    assert!(
        store.claim_instance("m599", "two", 1).await.unwrap(),
        "freed"
    );
    assert_eq!(store.runs(None, 1000).await.unwrap().len(), 603);
}

async fn a_restarted_owner_recovers_its_leases_and_slots(harness: Harness) {
    let store = &harness.store;
    for id in ["a", "b", "c"] {
        store.add_job(job(id, Some(t0()))).await.unwrap();
    }
    // "dead" takes a and b and a slot of a, then dies; "other" holds c and its slot.
    let taken = store
        .acquire_due_jobs("dead", t0(), 2, LEASE)
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);
    assert!(store.claim_instance("a", "dead", 1).await.unwrap());
    let other = store
        .acquire_due_jobs("other", t0(), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert!(store.claim_instance("c", "other", 1).await.unwrap());
    // Restarted under the same id: its leases end and its slot is free, well before
    // the lease would have expired; the other owner's hold is untouched.
    let freed = store.recover_owner("dead").await.unwrap();
    assert_eq!(freed, 3, "two leases and one slot");
    let again: Vec<String> = store
        .acquire_due_jobs("dead", t0(), 10, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(again, ["a", "b"], "runs that were in flight run again");
    assert!(
        store.claim_instance("a", "dead", 1).await.unwrap(),
        "the slot was freed"
    );
    assert!(
        !store.claim_instance("c", "dead", 1).await.unwrap(),
        "c's slot is other's"
    );
    assert_eq!(store.recover_owner("nobody").await.unwrap(), 0);
}

/// A slot that stands for run times (a run of a job allowing several at once, whose
/// next run time was written when it became due) outlives its owner as an orphaned
/// run: still counted by `max_instances`, taken once by one live node with its times
/// and its job, and freed by that node's run; an orphan of a removed job is dropped.
/// A run frees its own slot, not just any of its owner's.
async fn orphaned_runs_are_taken_once_and_freed_by_their_run(harness: Harness) {
    let store = &harness.store;
    let (first, second) = (t0() + secs(10), t0() + secs(20));
    let claim = |job_id: &str, run_times: Vec<DateTime<Utc>>| InstanceClaim {
        job_id: job_id.to_owned(),
        max_instances: 2,
        run_times,
        queues: false,
    };
    store
        .add_job(job("a", Some(t0() + secs(30))))
        .await
        .unwrap();
    store
        .add_job(job("gone", Some(t0() + secs(30))))
        .await
        .unwrap();
    store.register_node(node("dead", t0())).await.unwrap();
    store.register_node(node("live", t0())).await.unwrap();
    // "dead" runs a's times `first` and `second` in two slots, and a plain run of
    // "gone"; the run of `first` ends, and frees its own slot.
    let claimed = store
        .claim_instances(
            "dead",
            &[
                claim("a", vec![first]),
                claim("a", vec![second]),
                claim("gone", vec![first]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(claimed, [true, true, true]);
    let mut ended = record("a", "r-first", first + secs(1));
    ended.scheduled_time = first;
    store
        .finish_runs(
            "dead",
            vec![FinishedRun {
                record: ended,
                frees_instance: true,
            }],
        )
        .await
        .unwrap();
    store.remove_job("gone").await.unwrap();
    assert!(store.take_orphaned_runs("live").await.unwrap().is_empty());

    // "dead" dies; a survivor reaps it.
    assert!(store.heartbeat("live", t0() + secs(100)).await.unwrap());
    let reaped = store
        .reap_dead_nodes(t0() + secs(100), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(reaped, ["dead"]);
    // The orphan still counts: a's limit of two leaves room for one more run only.
    assert!(store.claim_instance("a", "other", 2).await.unwrap());
    assert!(!store.claim_instance("a", "other", 2).await.unwrap());
    store.release_instance("a", "other").await.unwrap();

    let taken = store.take_orphaned_runs("live").await.unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].job.id, "a");
    assert_eq!(
        taken[0].run_times,
        [second],
        "the run still going, not the one that ended"
    );
    assert!(
        store.take_orphaned_runs("other").await.unwrap().is_empty(),
        "taken once"
    );
    // Now "live"'s slot: it counts, and its run frees it.
    assert!(store.claim_instance("a", "other", 2).await.unwrap());
    assert!(!store.claim_instance("a", "other", 2).await.unwrap());
    let mut replayed = record("a", "r-second", second + secs(90));
    replayed.scheduled_time = second;
    store
        .finish_runs(
            "live",
            vec![FinishedRun {
                record: replayed,
                frees_instance: true,
            }],
        )
        .await
        .unwrap();
    assert!(store.claim_instance("a", "other", 2).await.unwrap());
    // The removed job's orphan is gone with it: its slot no longer counts.
    assert!(store.claim_instance("gone", "other", 1).await.unwrap());
}

/// A node that claims its run's slot and dies before it writes the job back leaves
/// the run's time twice in the store: in the slot, and as the job's next run time.
/// Reaped or recovered, such a slot is freed, not orphaned, and the job alone runs the
/// time again (once); a slot whose time the job moved past is still an orphan. Both a
/// reap and a restarted node's recovery keep this rule.
async fn a_slot_whose_time_its_job_still_shows_is_freed_not_orphaned(harness: Harness) {
    let store = &harness.store;
    let (due, later) = (t0() + secs(10), t0() + secs(20));
    let claim = |job_id: &str| InstanceClaim {
        job_id: job_id.to_owned(),
        max_instances: 2,
        run_times: vec![due],
        queues: false,
    };
    for (round, reap) in [(0, true), (1, false)] {
        let (unwritten, written) = (format!("unwritten-{round}"), format!("written-{round}"));
        let owner = format!("dead-{round}");
        store.add_job(job(&unwritten, Some(due))).await.unwrap();
        store.add_job(job(&written, Some(due))).await.unwrap();
        store.register_node(node(&owner, t0())).await.unwrap();
        let taken = store
            .acquire_due_jobs(&owner, due, 10, LEASE)
            .await
            .unwrap();
        assert_eq!(ids(&taken), [unwritten.as_str(), written.as_str()]);
        // Both runs claim their slots at `due`; only `written` is written back.
        let claimed = store
            .claim_instances(&owner, &[claim(&unwritten), claim(&written)])
            .await
            .unwrap();
        assert_eq!(claimed, [true, true]);
        let written_job = taken.iter().find(|job| job.id == written).unwrap();
        let fenced = store
            .release_jobs(&owner, &[release(written_job, Some(later))])
            .await
            .unwrap();
        assert!(fenced.is_empty());
        // It dies: reaped by a survivor, or recovered by its restart.
        if reap {
            store
                .register_node(node("live", t0() + secs(100)))
                .await
                .unwrap();
            let reaped = store
                .reap_dead_nodes(t0() + secs(100), Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(reaped, [owner.as_str()]);
        } else {
            store.recover_owner(&owner).await.unwrap();
        }
        let orphans = store.take_orphaned_runs("live").await.unwrap();
        assert_eq!(
            orphaned(&orphans),
            [(written.as_str(), [due].as_slice())],
            "round {round}: only the slot of the job written back is an orphan"
        );
        // The other job is due at the run's time again, and its slot is free.
        let again = store
            .acquire_due_jobs("live", t0() + secs(100), 10, LEASE)
            .await
            .unwrap();
        assert_eq!(
            ids_at(&again),
            [
                (unwritten.as_str(), Some(due)),
                (written.as_str(), Some(later))
            ]
        );
        assert!(store.claim_instance(&unwritten, "other", 1).await.unwrap());
        store.remove_job(&unwritten).await.unwrap();
        store.remove_job(&written).await.unwrap();
        store.release_instance(&unwritten, "other").await.unwrap();
    }
}

/// A job taken over from an expired lease whose holder claimed its run's slot and did
/// not write the job back: the new holder runs that time, so the old holder's slot of
/// it is freed as the job is taken; reaped later, the old holder leaves no orphan of
/// it. A slot of a time the job had already moved past stays, and is orphaned.
async fn a_job_taken_over_from_an_expired_lease_frees_the_slot_its_time_is_in(harness: Harness) {
    let store = &harness.store;
    let (due, next) = (t0() + secs(10), t0() + secs(11));
    let lease = Duration::from_secs(5);
    let claim = |job_id: &str, time: DateTime<Utc>| InstanceClaim {
        job_id: job_id.to_owned(),
        max_instances: 2,
        run_times: vec![time],
        queues: false,
    };
    store.add_job(job("unwritten", Some(due))).await.unwrap();
    store.add_job(job("moved-on", Some(due))).await.unwrap();
    store.register_node(node("frozen", t0())).await.unwrap();
    // "frozen" runs both at `due`; it writes "moved-on" back, takes it again for its
    // next time, and freezes.
    let taken = store
        .acquire_due_jobs("frozen", due, 10, lease)
        .await
        .unwrap();
    assert_eq!(ids(&taken), ["moved-on", "unwritten"]);
    let claimed = store
        .claim_instances("frozen", &[claim("unwritten", due), claim("moved-on", due)])
        .await
        .unwrap();
    assert_eq!(claimed, [true, true]);
    let moved_on = taken.iter().find(|job| job.id == "moved-on").unwrap();
    store
        .release_jobs("frozen", &[release(moved_on, Some(next))])
        .await
        .unwrap();
    let retaken = store
        .acquire_due_jobs("frozen", next, 10, lease)
        .await
        .unwrap();
    assert_eq!(ids(&retaken), ["moved-on"]);

    // Both leases run out; "live" takes both jobs over, at the times they show.
    let over = store
        .acquire_due_jobs("live", t0() + secs(30), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(
        ids_at(&over),
        [("unwritten", Some(due)), ("moved-on", Some(next))]
    );
    // "unwritten"'s slot went with its lease: "live" has the job's only slot.
    assert!(store.claim_instance("unwritten", "live", 1).await.unwrap());
    assert_eq!(
        store.running_times("moved-on").await.unwrap(),
        [due],
        "the run of a time the job moved past still holds its slot"
    );
    let unwritten = over.iter().find(|job| job.id == "unwritten").unwrap();
    store
        .release_jobs("live", &[release(unwritten, Some(t0() + secs(40)))])
        .await
        .unwrap();

    // "frozen" is reaped: only the run of the time the job had moved past is an orphan.
    store
        .register_node(node("live", t0() + secs(100)))
        .await
        .unwrap();
    let reaped = store
        .reap_dead_nodes(t0() + secs(100), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(reaped, ["frozen"]);
    let orphans = store.take_orphaned_runs("live").await.unwrap();
    assert_eq!(orphaned(&orphans), [("moved-on", [due].as_slice())]);
}

/// (job id, next run time) of each job.
fn ids_at(jobs: &[Job]) -> Vec<(&str, Option<DateTime<Utc>>)> {
    jobs.iter()
        .map(|job| (job.id.as_str(), job.next_run_time))
        .collect()
}

/// (job id, run times) of each orphaned run taken.
fn orphaned(orphans: &[OrphanedRun]) -> Vec<(&str, &[DateTime<Utc>])> {
    orphans
        .iter()
        .map(|orphan| (orphan.job.id.as_str(), orphan.run_times.as_slice()))
        .collect()
}

/// The run times a job's claimed slots stand for, over every owner: what the runs of
/// the job executing now were scheduled for (a waiting `overlap = "replace"` run asks,
/// docs/lifecycle.md "In a cluster"). A slot without times adds none, a freed slot's
/// are gone, and an orphaned run (nobody executes it) is left out until a live node
/// takes it.
async fn running_times_are_those_the_claimed_slots_stand_for(harness: Harness) {
    let store = &harness.store;
    let at = |seconds: i64| t0() + secs(seconds);
    let claim = |job_id: &str, run_times: Vec<DateTime<Utc>>| InstanceClaim {
        job_id: job_id.to_owned(),
        max_instances: 5,
        run_times,
        queues: false,
    };
    let sorted = |mut times: Vec<DateTime<Utc>>| {
        times.sort();
        times
    };
    store.add_job(job("a", Some(at(300)))).await.unwrap();
    store.add_job(job("b", Some(at(300)))).await.unwrap();
    assert!(store.running_times("a").await.unwrap().is_empty());
    store.register_node(node("dead", t0())).await.unwrap();
    store.register_node(node("live", t0())).await.unwrap();
    let claimed = store
        .claim_instances("one", &[claim("a", vec![at(10)]), claim("b", vec![at(15)])])
        .await
        .unwrap();
    assert_eq!(claimed, [true, true]);
    let claimed = store
        .claim_instances(
            "two",
            &[claim("a", vec![at(20), at(30)]), claim("a", Vec::new())],
        )
        .await
        .unwrap();
    assert_eq!(claimed, [true, true]);
    assert!(store.claim_instance("a", "two", 5).await.unwrap());
    assert_eq!(
        sorted(store.running_times("a").await.unwrap()),
        [at(10), at(20), at(30)],
        "every owner's, a slot without times adding none"
    );
    assert_eq!(store.running_times("b").await.unwrap(), [at(15)]);
    assert!(store.running_times("none").await.unwrap().is_empty());

    // The run of 10 s ends and frees its own slot.
    let mut ended = record("a", "r-10", at(11));
    ended.scheduled_time = at(10);
    store
        .finish_runs(
            "one",
            vec![FinishedRun {
                record: ended,
                frees_instance: true,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(store.running_times("a").await.unwrap()),
        [at(20), at(30)]
    );

    // A run of "dead", which dies: its orphan is executed by nobody until taken.
    let claimed = store
        .claim_instances("dead", &[claim("a", vec![at(40)])])
        .await
        .unwrap();
    assert_eq!(claimed, [true]);
    assert!(store.running_times("a").await.unwrap().contains(&at(40)));
    assert!(store.heartbeat("live", at(100)).await.unwrap());
    let reaped = store
        .reap_dead_nodes(at(100), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(reaped, ["dead"]);
    assert_eq!(
        sorted(store.running_times("a").await.unwrap()),
        [at(20), at(30)],
        "an orphaned run is not executing"
    );
    let taken = store.take_orphaned_runs("live").await.unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        sorted(store.running_times("a").await.unwrap()),
        [at(20), at(30), at(40)],
        "taken, it runs again"
    );
}

// ---- RunHistory: run records, their retention and the last success ----

async fn run_history_is_kept_newest_first(harness: Harness) {
    let store = &harness.store;
    for (index, job_id) in ["a", "b", "a", "a"].iter().enumerate() {
        let finished = t0() + secs(index as i64 * 10);
        store
            .record_run(record(job_id, &format!("run{index}"), finished))
            .await
            .unwrap();
    }
    let of_a = store.runs(Some("a"), 10).await.unwrap();
    let run_ids: Vec<&str> = of_a.iter().map(|run| run.run_id.as_str()).collect();
    assert_eq!(run_ids, ["run3", "run2", "run0"]);
    assert_eq!(of_a[0], record("a", "run3", t0() + secs(30)));
    assert_eq!(store.runs(None, 2).await.unwrap().len(), 2);
    assert_eq!(store.runs(None, 10).await.unwrap().len(), 4);
    // Paging past the newest (the API's cursor): the same order, skipped.
    let skipped = store.runs_from(Some("a"), 1, 10).await.unwrap();
    let run_ids: Vec<&str> = skipped.iter().map(|run| run.run_id.as_str()).collect();
    assert_eq!(run_ids, ["run2", "run0"]);
    let middle = store.runs_from(None, 1, 2).await.unwrap();
    let run_ids: Vec<&str> = middle.iter().map(|run| run.run_id.as_str()).collect();
    assert_eq!(run_ids, ["run2", "run1"]);
    assert!(store.runs_from(None, 4, 10).await.unwrap().is_empty());
}

async fn history_retention_deletes_in_bounded_batches(harness: Harness) {
    let store = &harness.store;
    let now = Utc::now();
    for index in 0..30 {
        let finished = now - TimeDelta::days(60) + secs(index);
        store
            .record_run(record("old", &format!("old{index}"), finished))
            .await
            .unwrap();
    }
    for index in 0..10 {
        store
            .record_run(record("new", &format!("new{index}"), now - secs(index)))
            .await
            .unwrap();
    }
    let keep = RunLimits {
        keep: Some(Duration::from_secs(30 * 86_400)),
        ..RunLimits::default()
    };
    // At most 12 per call: the 30 old records take three calls.
    let mut deleted = Vec::new();
    loop {
        let count = store.prune_runs(&keep, 12).await.unwrap();
        assert!(count <= 12, "a call deleted {count}");
        if count == 0 {
            break;
        }
        deleted.push(count);
    }
    assert_eq!(deleted.iter().sum::<u64>(), 30);
    assert_eq!(store.runs(None, 100).await.unwrap().len(), 10);
    // max_rows keeps the newest.
    let max_rows = RunLimits {
        max_rows: Some(4),
        ..RunLimits::default()
    };
    while store.prune_runs(&max_rows, 100).await.unwrap() > 0 {}
    let left = store.runs(None, 100).await.unwrap();
    let mut run_ids: Vec<&str> = left.iter().map(|run| run.run_id.as_str()).collect();
    // Which ones, not their order: run_history_is_kept_newest_first checks that.
    run_ids.sort_unstable();
    assert_eq!(run_ids, ["new0", "new1", "new2", "new3"]);
}

/// The per-job counts keep each job's newest successes and, apart from them, its
/// newest other outcomes, whichever way the records came in (one at a time or a
/// finished batch), and `count_runs` is the history's size.
async fn history_keeps_a_number_of_runs_per_job(harness: Harness) {
    let store = &harness.store;
    // Whole seconds: every store keeps microseconds only.
    let start = DateTime::from_timestamp(Utc::now().timestamp() - 3_600, 0).unwrap();
    let failures = [
        RunOutcome::Error,
        RunOutcome::Timeout,
        RunOutcome::Skipped,
        RunOutcome::Missed,
    ];
    // Job a: 16 runs through the batched record path, every third one not a success.
    let mut batch = Vec::new();
    let mut expected_a = Vec::new();
    for index in 0..16 {
        let mut run = record("a", &format!("a{index:02}"), start + secs(index));
        if index % 3 == 1 {
            run.outcome = failures[usize::try_from(index).unwrap() % failures.len()];
        }
        expected_a.push(run.clone());
        batch.push(FinishedRun {
            record: run,
            frees_instance: false,
        });
    }
    store.finish_runs("node-1", batch).await.unwrap();
    // Job b: 3 successes, one at a time, interleaved with a's in time.
    for index in 0..3 {
        store
            .record_run(record("b", &format!("b{index}"), start + secs(2 * index)))
            .await
            .unwrap();
    }
    assert_eq!(store.count_runs().await.unwrap(), 19);
    let limits = RunLimits {
        successes_per_job: Some(4),
        failures_per_job: Some(2),
        ..RunLimits::default()
    };
    let mut deleted = 0;
    loop {
        let count = store.prune_runs(&limits, 3).await.unwrap();
        assert!(count <= 3, "a call deleted {count}");
        if count == 0 {
            break;
        }
        deleted += count;
    }
    // a: 11 successes and 5 others; 4 and 2 stay.
    assert_eq!(deleted, 7 + 3);
    assert_eq!(store.count_runs().await.unwrap(), 9);
    let newest = |success: bool, count: usize| -> Vec<String> {
        let mut runs: Vec<String> = expected_a
            .iter()
            .rev()
            .filter(|run| (run.outcome == RunOutcome::Success) == success)
            .take(count)
            .map(|run| run.run_id.clone())
            .collect();
        runs.sort();
        runs
    };
    let mut kept: Vec<String> = store
        .runs(Some("a"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    kept.sort();
    let mut expected: Vec<String> = newest(true, 4);
    expected.extend(newest(false, 2));
    expected.sort();
    assert_eq!(kept, expected);
    assert_eq!(store.runs(Some("b"), 100).await.unwrap().len(), 3);
    // The newest success is still there for the dead-man's switch.
    assert_eq!(
        store.last_success("a").await.unwrap(),
        Some(start + secs(15))
    );
    // Nothing more to do: a second round deletes nothing.
    assert_eq!(store.prune_runs(&limits, 100).await.unwrap(), 0);
}

/// The last success of a job is the latest finish among its successful runs, whatever
/// failed after it and whatever other jobs did.
async fn the_last_success_of_a_job_is_read_from_its_history(harness: Harness) {
    let store = &harness.store;
    assert_eq!(store.last_success("a").await.unwrap(), None);
    let failed = |run: &str, finished| RunRecord {
        outcome: RunOutcome::Error,
        error: Some("boom".to_owned()),
        ..record("a", run, finished)
    };
    store.record_run(record("a", "r1", t0())).await.unwrap();
    store
        .record_run(record("a", "r2", t0() + secs(60)))
        .await
        .unwrap();
    store
        .record_run(failed("r3", t0() + secs(120)))
        .await
        .unwrap();
    store
        .record_run(record("b", "r4", t0() + secs(180)))
        .await
        .unwrap();
    assert_eq!(
        store.last_success("a").await.unwrap(),
        Some(t0() + secs(60))
    );
    assert_eq!(
        store.last_success("b").await.unwrap(),
        Some(t0() + secs(180))
    );
    store
        .record_run(failed("r5", t0() + secs(240)))
        .await
        .unwrap();
    assert_eq!(
        store.last_success("a").await.unwrap(),
        Some(t0() + secs(60))
    );
}

// ---- Nodes: membership, heartbeats and reaping ----

fn node(id: &str, beat: DateTime<Utc>) -> NodeInfo {
    NodeInfo {
        id: id.to_owned(),
        host: "host-1".to_owned(),
        pid: 4242,
        version: "0.0.0-test".to_owned(),
        started: t0(),
        last_heartbeat: beat,
        stats: None,
    }
}

/// What a node reports with its heartbeat is kept beside its
/// registration and shown to every node; stores without membership keep none.
async fn node_stats_ride_on_the_heartbeat(harness: Harness) {
    use kairos::store::NodeStats;

    let store = &harness.store;
    store.register_node(node("a", t0())).await.unwrap();
    let stats = NodeStats {
        running: 3,
        queued: 2,
        capacity: 8,
        running_jobs: vec!["job-1".to_owned(), "job-2".to_owned()],
        ended: 40,
        lateness_p50_ms: 2,
        lateness_p99_ms: 17,
        lateness_max_ms: 30,
    };
    let beat = NodeInfo {
        stats: Some(stats.clone()),
        ..node("a", t0() + secs(10))
    };
    assert!(store.heartbeat_node(&beat).await.unwrap());
    let listed = store.list_nodes().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_heartbeat, t0() + secs(10));
    match harness.backend {
        // The memory store serves one process, whose scheduler reports itself live.
        Backend::Memory => assert_eq!(listed[0].stats, None),
        _ => assert_eq!(listed[0].stats, Some(stats)),
    }
    // A plain heartbeat keeps the last stats; a reaped node cannot beat them back.
    assert!(store.heartbeat("a", t0() + secs(20)).await.unwrap());
    assert_eq!(
        store.list_nodes().await.unwrap()[0].last_heartbeat,
        t0() + secs(20)
    );
    let ghost = NodeInfo {
        stats: Some(NodeStats::default()),
        ..node("ghost", t0() + secs(20))
    };
    assert!(!store.heartbeat_node(&ghost).await.unwrap());
    assert_eq!(store.list_nodes().await.unwrap().len(), 1);
}

/// Membership: nodes register and beat; a survivor reaps a node
/// whose heartbeat stopped, freeing its leases and slots at once, and the dead node's
/// late release is fenced off.
async fn a_dead_node_is_reaped_and_its_leases_and_slots_freed(harness: Harness) {
    let store = &harness.store;
    store.register_node(node("b", t0())).await.unwrap();
    store.register_node(node("a", t0())).await.unwrap();
    let listed = store.list_nodes().await.unwrap();
    assert_eq!(listed, [node("a", t0()), node("b", t0())]);
    assert!(store.heartbeat("a", t0() + secs(50)).await.unwrap());
    assert!(!store.heartbeat("ghost", t0() + secs(50)).await.unwrap());
    // Registering again (a restart) replaces the entry.
    store
        .register_node(node("b", t0() + secs(1)))
        .await
        .unwrap();

    store.add_job(job("k", Some(t0()))).await.unwrap();
    let taken = store.acquire_due_jobs("b", t0(), 10, LEASE).await.unwrap();
    assert_eq!(ids(&taken), ["k"]);
    assert!(store.claim_instance("k", "b", 1).await.unwrap());

    // b stops beating; at t0+62 its last beat (t0+1) is past the 60 s timeout.
    let timeout = Duration::from_secs(60);
    assert!(store
        .reap_dead_nodes(t0() + secs(60), timeout)
        .await
        .unwrap()
        .is_empty());
    let reaped = store
        .reap_dead_nodes(t0() + secs(62), timeout)
        .await
        .unwrap();
    assert_eq!(reaped, ["b"]);
    assert!(store
        .reap_dead_nodes(t0() + secs(62), timeout)
        .await
        .unwrap()
        .is_empty());
    let listed = store.list_nodes().await.unwrap();
    assert_eq!(listed, [node("a", t0() + secs(50))]);
    assert!(!store.heartbeat("b", t0() + secs(63)).await.unwrap());

    // Its job is acquirable at once, long before its lease would have expired, and its
    // slot is free.
    let again = store.acquire_due_jobs("a", t0(), 10, LEASE).await.unwrap();
    assert_eq!(ids(&again), ["k"]);
    assert!(store.claim_instance("k", "a", 1).await.unwrap());
    let fenced = store
        .release_jobs("b", &[release(&taken[0], Some(t0() + secs(5)))])
        .await
        .unwrap();
    assert_eq!(fenced, ["k"]);

    store.deregister_node("a").await.unwrap();
    assert!(store.list_nodes().await.unwrap().is_empty());
}

// ---- Cluster: wake-ups, config generations and alert claims ----

/// Stores several nodes share push every write to the others: a
/// job added or changed through one handle wakes a listener on another handle, with
/// the earliest next run time; MySQL and the single-node stores push nothing.
async fn writes_through_one_handle_wake_listeners_on_another(harness: Harness) {
    use kairos::store::WakeUp;

    let pushes = matches!(harness.backend, Backend::Postgres | Backend::Redis);
    let listening = match harness.backend {
        Backend::Memory => Arc::clone(&harness.store),
        _ => reopen(&harness).await,
    };
    let Some(mut wake_ups) = listening.wake_ups() else {
        assert!(!pushes, "{:?} should push wake-ups", harness.backend);
        return;
    };
    assert!(pushes, "{:?} pushes wake-ups", harness.backend);
    async fn next(wake_ups: &mut tokio::sync::mpsc::Receiver<WakeUp>) -> WakeUp {
        tokio::time::timeout(Duration::from_secs(10), wake_ups.recv())
            .await
            .expect("a wake-up within 10 s")
            .expect("the listener is alive")
    }
    // Listening starts with a look at the store: nothing written before was announced.
    assert_eq!(next(&mut wake_ups).await, WakeUp::Resync);
    let writer = &harness.store;
    writer
        .add_job(job("a", Some(t0() + secs(30))))
        .await
        .unwrap();
    assert_eq!(next(&mut wake_ups).await, WakeUp::Due(t0() + secs(30)));
    writer
        .add_jobs(vec![
            job("b", Some(t0() + secs(20))),
            job("c", None),
            job("d", Some(t0() + secs(10))),
        ])
        .await
        .unwrap();
    assert_eq!(
        next(&mut wake_ups).await,
        WakeUp::Due(t0() + secs(10)),
        "a batch: its earliest"
    );
    // A paused job wakes nobody; the next write is what comes next.
    writer.replace_job(job("e", None)).await.unwrap();
    let mut earlier = writer.get_job("a").await.unwrap().unwrap();
    earlier.next_run_time = Some(t0() + secs(5));
    writer.update_job(earlier).await.unwrap();
    assert_eq!(next(&mut wake_ups).await, WakeUp::Due(t0() + secs(5)));
    writer
        .replace_job(job("f", Some(t0() + secs(7))))
        .await
        .unwrap();
    assert_eq!(next(&mut wake_ups).await, WakeUp::Due(t0() + secs(7)));
    if harness.backend == Backend::Postgres {
        // A lost listening connection comes back, with a look at the store first.
        let statement = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query = 'LISTEN \"{}wake\"'",
            harness.prefix
        );
        sql_execute(harness.backend, &harness.url, &[statement]).await;
        assert_eq!(next(&mut wake_ups).await, WakeUp::Resync, "reconnected");
        writer
            .add_job(job("g", Some(t0() + secs(3))))
            .await
            .unwrap();
        assert_eq!(next(&mut wake_ups).await, WakeUp::Due(t0() + secs(3)));
    }
    // The writer's own listener hears its own writes too (harmless: a hint).
    let mut own = writer.wake_ups().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), own.recv()).await;
    assert_eq!(first.unwrap(), Some(WakeUp::Resync));
}

fn generation(generation: u64, hash: &str, node: &str) -> ConfigGeneration {
    ConfigGeneration {
        generation,
        hash: hash.to_owned(),
        node_id: node.to_owned(),
        forced: false,
    }
}

/// The config generation is a compare-and-set: of several nodes recording the same
/// generation at once exactly one wins, a generation that skips one or repeats one is
/// refused, and the list reads newest first. Stores that can be shared say so.
async fn config_generations_are_recorded_by_compare_and_set(harness: Harness) {
    let store = &harness.store;
    assert_eq!(
        store.is_shared(),
        matches!(
            harness.backend,
            Backend::Postgres | Backend::Mysql | Backend::Redis
        )
    );
    assert_eq!(store.config_generations(10).await.unwrap(), []);
    assert!(!store
        .record_config_generation(generation(2, "b", "n1"))
        .await
        .unwrap());
    let attempts = (0..4).map(|node| {
        let store = Arc::clone(store);
        async move {
            store
                .record_config_generation(generation(1, &format!("h{node}"), &format!("n{node}")))
                .await
                .unwrap()
        }
    });
    let won = futures_util::future::join_all(attempts).await;
    assert_eq!(won.iter().filter(|won| **won).count(), 1, "{won:?}");
    let first = store.config_generations(10).await.unwrap();
    assert_eq!(first.len(), 1);
    let mut forced = generation(2, "h9", "n9");
    forced.forced = true;
    assert!(store
        .record_config_generation(forced.clone())
        .await
        .unwrap());
    assert!(!store
        .record_config_generation(generation(2, "hx", "nx"))
        .await
        .unwrap());
    assert!(!store
        .record_config_generation(generation(4, "hx", "nx"))
        .await
        .unwrap());
    assert_eq!(
        store.config_generations(10).await.unwrap(),
        [forced.clone(), first[0].clone()]
    );
    assert_eq!(store.config_generations(1).await.unwrap(), [forced]);
}

/// An alert key is claimed by exactly one of several nodes claiming it at once, stays
/// claimed for its time to live, and can be claimed again once that has passed (Redis
/// measures it in real time, so this test waits in real time too).
async fn alert_keys_are_claimed_once_until_their_claim_ends(harness: Harness) {
    let store = &harness.store;
    let ttl = Duration::from_millis(400);
    let key = "failed|nightly-stats|1700000000000000|3";
    let attempts = (0..4).map(|_| {
        let store = Arc::clone(store);
        async move { store.claim_alert(key, Utc::now(), ttl).await.unwrap() }
    });
    let won = futures_util::future::join_all(attempts).await;
    assert_eq!(won.iter().filter(|won| **won).count(), 1, "{won:?}");
    assert!(!store.claim_alert(key, Utc::now(), ttl).await.unwrap());
    // Another attempt of the same time is another alert.
    let other = "failed|nightly-stats|1700000000000000|4";
    assert!(store.claim_alert(other, Utc::now(), ttl).await.unwrap());
    // The longest key a store must take.
    let long = "k".repeat(kairos::store::MAX_CLAIM_KEY);
    assert!(store.claim_alert(&long, Utc::now(), ttl).await.unwrap());
    assert!(!store.claim_alert(&long, Utc::now(), ttl).await.unwrap());
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(store.claim_alert(key, Utc::now(), ttl).await.unwrap());
    assert!(!store.claim_alert(key, Utc::now(), ttl).await.unwrap());
}

/// `owner`'s claims of `batch`, in one call.
async fn claims(harness: &Harness, owner: &str, batch: &[InstanceClaim]) -> Vec<bool> {
    harness.store.claim_instances(owner, batch).await.unwrap()
}

/// A claim of one slot of `job_id`, without run times.
fn queue_claim(job_id: &str, max_instances: u32, queues: bool) -> InstanceClaim {
    InstanceClaim {
        job_id: job_id.to_owned(),
        max_instances,
        run_times: Vec::new(),
        queues,
    }
}

/// A job's waiter (`overlap = "queue"`, docs/lifecycle.md "In a cluster"): one per
/// job, cluster-wide, refreshed by its owner; it keeps one of the job's slots from the
/// claims of other owners that queue, alone or in a batch, and not from its own
/// owner's claims nor from claims that do not queue; its owner ends it, and only its.
async fn a_waiter_keeps_a_slot_from_the_claims_of_other_owners(harness: Harness) {
    let store = &harness.store;
    let ttl = Duration::from_secs(60);
    assert_eq!(
        claims(&harness, "one", &[queue_claim("a", 2, true)]).await,
        [true]
    );
    assert!(store.wait_for_instance("a", "w", 2, ttl).await.unwrap());
    assert!(
        store.wait_for_instance("a", "w", 2, ttl).await.unwrap(),
        "its owner refreshes it"
    );
    assert!(
        !store.wait_for_instance("a", "x", 2, ttl).await.unwrap(),
        "one waiter per job"
    );
    assert!(
        store.wait_for_instance("b", "x", 1, ttl).await.unwrap(),
        "another job's is its own"
    );
    // One slot of two is taken and the waiter keeps the other from "x" and "one".
    assert_eq!(
        claims(&harness, "x", &[queue_claim("a", 2, true)]).await,
        [false]
    );
    assert_eq!(
        claims(&harness, "one", &[queue_claim("a", 2, true)]).await,
        [false]
    );
    // A claim that does not queue does not look at it.
    assert_eq!(
        claims(&harness, "x", &[queue_claim("a", 2, false)]).await,
        [true]
    );
    store.release_instance("a", "x").await.unwrap();
    // Its own owner's claims do not count it.
    assert_eq!(
        claims(&harness, "w", &[queue_claim("a", 2, true)]).await,
        [true]
    );
    // In a batch, beside claims of jobs without one and claims that do not queue: a
    // limit of three (the waiter's too, refreshed) leaves no slot beside two taken and
    // the waiter's.
    assert!(store.wait_for_instance("a", "w", 3, ttl).await.unwrap());
    let batch = [
        queue_claim("a", 3, true),
        queue_claim("c", 1, true),
        queue_claim("a", 3, false),
    ];
    assert_eq!(claims(&harness, "y", &batch).await, [false, true, true]);
    store.release_instance("a", "y").await.unwrap();
    // A claim under a limit raised above the waiter's does not count it: the slots the
    // raise added are ones the waiter cannot take.
    assert_eq!(
        claims(&harness, "x", &[queue_claim("a", 3, true)]).await,
        [false]
    );
    assert!(store.wait_for_instance("a", "w", 2, ttl).await.unwrap());
    assert_eq!(
        claims(&harness, "x", &[queue_claim("a", 3, true)]).await,
        [true],
        "a waiter under a lower limit"
    );
    store.release_instance("a", "x").await.unwrap();
    assert!(store.wait_for_instance("a", "w", 3, ttl).await.unwrap());
    // Only its owner ends it.
    store.stop_waiting("a", "x").await.unwrap();
    assert!(!store.wait_for_instance("a", "x", 2, ttl).await.unwrap());
    store.stop_waiting("a", "w").await.unwrap();
    assert_eq!(
        claims(&harness, "x", &[queue_claim("a", 3, true)]).await,
        [true],
        "the slot it kept is free"
    );
    assert!(store.wait_for_instance("a", "x", 2, ttl).await.unwrap());
    store.stop_waiting("a", "x").await.unwrap();
    store.stop_waiting("never", "x").await.unwrap();
    // "x" still waits for b: its waiter of a was its only one to end.
    assert!(!store.wait_for_instance("b", "w", 1, ttl).await.unwrap());
}

/// A waiter whose owner stops refreshing it ends at its time-to-live, and one whose
/// owner is recovered (a restart under its id) or reaped (dead) ends at once, as its
/// slots are freed; its slot is then free for the others.
async fn a_waiter_ends_with_its_owner_or_its_time_to_live(harness: Harness) {
    let store = &harness.store;
    let ttl = Duration::from_secs(60);
    // Its time-to-live.
    let short = Duration::from_millis(300);
    assert!(store
        .wait_for_instance("a", "short", 2, short)
        .await
        .unwrap());
    assert!(!store.wait_for_instance("a", "other", 2, ttl).await.unwrap());
    assert_eq!(
        claims(&harness, "other", &[queue_claim("a", 1, true)]).await,
        [false]
    );
    tokio::time::sleep(short + Duration::from_millis(300)).await;
    assert_eq!(
        claims(&harness, "other", &[queue_claim("a", 1, true)]).await,
        [true],
        "an ended waiter keeps nothing"
    );
    assert!(store.wait_for_instance("a", "other", 2, ttl).await.unwrap());
    store.stop_waiting("a", "other").await.unwrap();
    store.release_instance("a", "other").await.unwrap();

    // A recovery of its owner.
    assert!(store
        .wait_for_instance("b", "restarted", 1, ttl)
        .await
        .unwrap());
    assert_eq!(
        claims(&harness, "other", &[queue_claim("b", 1, true)]).await,
        [false]
    );
    assert_eq!(
        store.recover_owner("restarted").await.unwrap(),
        0,
        "a waiter is not a lease or a slot"
    );
    assert_eq!(
        claims(&harness, "other", &[queue_claim("b", 1, true)]).await,
        [true]
    );
    assert!(store.wait_for_instance("b", "other", 1, ttl).await.unwrap());

    // A reap of its owner.
    store.register_node(node("dead", t0())).await.unwrap();
    store.register_node(node("live", t0())).await.unwrap();
    assert!(store.wait_for_instance("c", "dead", 1, ttl).await.unwrap());
    assert!(store.wait_for_instance("d", "live", 1, ttl).await.unwrap());
    assert!(store.heartbeat("live", t0() + secs(100)).await.unwrap());
    let reaped = store
        .reap_dead_nodes(t0() + secs(100), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(reaped, ["dead"]);
    assert_eq!(
        claims(&harness, "other", &[queue_claim("c", 1, true)]).await,
        [true]
    );
    assert!(store.wait_for_instance("c", "other", 1, ttl).await.unwrap());
    assert!(
        !store.wait_for_instance("d", "other", 1, ttl).await.unwrap(),
        "a live node's waiter stays"
    );
    assert!(
        !store.wait_for_instance("b", "live", 1, ttl).await.unwrap(),
        "and so does another owner's"
    );
}

/// Generates one module per backend, with one test per conformance test.
macro_rules! conformance {
    ($($module:ident => $backend:expr),* $(,)?) => {
        $(
            mod $module {
                use super::*;

                conformance!(@tests $backend;
                    // Jobs and JobListing
                    add_get_update_remove,
                    a_batch_of_jobs_is_added_at_once,
                    missing_and_duplicate_ids_are_errors,
                    concurrent_adds_each_get_their_own_answer,
                    a_conditional_update_writes_only_at_the_expected_revision,
                    an_abandoned_add_strands_no_add_queued_behind_it,
                    config_jobs_are_found_and_jobs_counted_without_reading_all,
                    jobs_are_counted_by_state,
                    jobs_are_listed_a_filtered_page_at_a_time,
                    jobs_are_ordered_by_next_run_time_paused_last,
                    // DueJobs
                    acquire_takes_due_jobs_earliest_first_up_to_the_limit,
                    release_writes_next_run_times_and_removes_finished_jobs,
                    changes_made_while_acquired_are_kept,
                    a_release_taken_at_an_older_schedule_version_leaves_the_new_schedule_alone,
                    an_expired_lease_makes_the_job_acquirable_again,
                    a_release_from_a_lost_lease_is_fenced_off,
                    two_schedulers_acquiring_at_once_never_share_a_job,
                    next_run_times_move_in_a_batch_at_the_revision_read,
                    job_schedules_show_every_write_by_its_revision,
                    // InstanceSlots
                    max_instances_holds_across_schedulers,
                    instances_are_claimed_and_finished_in_batches,
                    orphaned_runs_are_taken_once_and_freed_by_their_run,
                    a_slot_whose_time_its_job_still_shows_is_freed_not_orphaned,
                    a_job_taken_over_from_an_expired_lease_frees_the_slot_its_time_is_in,
                    running_times_are_those_the_claimed_slots_stand_for,
                    a_waiter_keeps_a_slot_from_the_claims_of_other_owners,
                    a_waiter_ends_with_its_owner_or_its_time_to_live,
                    // RunHistory
                    run_history_is_kept_newest_first,
                    history_retention_deletes_in_bounded_batches,
                    history_keeps_a_number_of_runs_per_job,
                    the_last_success_of_a_job_is_read_from_its_history,
                    // Nodes
                    node_stats_ride_on_the_heartbeat,
                    a_dead_node_is_reaped_and_its_leases_and_slots_freed,
                    // Cluster
                    writes_through_one_handle_wake_listeners_on_another,
                    config_generations_are_recorded_by_compare_and_set,
                    alert_keys_are_claimed_once_until_their_claim_ends,
                );
            }
        )*
    };
    // Stores that outlive the process: they can hold a corrupt job and survive a
    // restart (the memory store does neither).
    (persistent: $($module:ident => $backend:expr),* $(,)?) => {
        $(
            mod $module {
                use super::*;

                conformance!(@tests $backend;
                    // Jobs and JobListing
                    jobs_survive_a_restart_of_the_scheduler,
                    // DueJobs
                    a_corrupt_job_is_skipped_without_blocking_the_others,
                    a_lease_taken_before_schedule_versions_is_judged_as_before,
                    // InstanceSlots
                    a_restarted_owner_recovers_its_leases_and_slots,
                );
            }
        )*
    };
    (@tests $backend:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                run($backend, super::$test).await;
            }
        )*
    };
}

conformance! {
    memory => Backend::Memory,
    redis => Backend::Redis,
    sqlite => Backend::Sqlite,
    postgres => Backend::Postgres,
    mysql => Backend::Mysql,
}

mod persistent {
    use super::*;

    conformance! { persistent:
        redis => Backend::Redis,
        sqlite => Backend::Sqlite,
        postgres => Backend::Postgres,
        mysql => Backend::Mysql,
    }
}
