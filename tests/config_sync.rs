//! Config-owned jobs on one node and on several nodes sharing one store: the order
//! between configs is the store's generation counter, never a file time or a clock
//! (see docs/config-reload.md and `src/daemon/sync.rs`).
//!
//! Each "node" is a scheduler that is never started (syncing needs no loop) on one
//! store. One node: memory and SQLite, where the files always win. Several nodes: the
//! stores nodes really share, PostgreSQL and Redis (each test with its own table or
//! key prefix; `SKIP` when the server is not there, a failure with
//! `KAIROS_REQUIRE_SERVICES=1`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::Utc;
use kairos::clock::ManualClock;
use kairos::daemon::sync::{config_hash, sync_config_jobs, SyncReport};
use kairos::job::JobSpec;
use kairos::scheduler::{Scheduler, Standing};
use kairos::store::memory::MemoryStore;
use kairos::store::prelude::*;
use kairos::store::sql::SqlOptions;
use kairos::store::{self, OpenOptions};
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use serde_json::json;

fn tasks() -> TaskRegistry {
    let mut tasks = TaskRegistry::new();
    tasks.register_fn("note", |_run: TaskRun| async {
        Ok::<String, TaskFailure>(String::new())
    });
    tasks
}

/// A node: a scheduler on the shared store that knows the `note` task.
fn node(store: &Arc<dyn JobStore>, id: &str) -> Scheduler {
    Scheduler::builder()
        .id(id)
        .store_shared("default", Arc::clone(store))
        .tasks(tasks())
        .build()
}

/// A node whose clock is an hour ahead of the others'.
fn node_an_hour_ahead(store: &Arc<dyn JobStore>, id: &str) -> Scheduler {
    Scheduler::builder()
        .id(id)
        .store_shared("default", Arc::clone(store))
        .tasks(tasks())
        .clock(ManualClock::new(Utc::now() + chrono::TimeDelta::hours(1)))
        .build()
}

/// A config job: `note` every hour with `args`.
fn job(id: &str, args: serde_json::Value) -> JobSpec {
    let trigger = serde_json::from_value(json!({"type": "interval", "hours": 1})).unwrap();
    let mut spec = JobSpec::new("note", trigger).with_id(id).with_args(args);
    spec.from_config = true;
    spec
}

async fn sync(node: &Scheduler, jobs: &[JobSpec]) -> SyncReport {
    sync_with(node, jobs, false).await
}

async fn sync_with(node: &Scheduler, jobs: &[JobSpec], force: bool) -> SyncReport {
    let report = sync_config_jobs(node, jobs.to_vec(), force).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    report
}

/// The store's jobs: (id, args), by id.
async fn stored(store: &Arc<dyn JobStore>) -> Vec<(String, serde_json::Value)> {
    let mut jobs: Vec<(String, serde_json::Value)> = store
        .get_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|job| (job.id, job.args))
        .collect();
    jobs.sort_by(|left, right| left.0.cmp(&right.0));
    jobs
}

/// What the store's jobs should be for `config`: (id, args), by id.
fn expected(config: &[JobSpec]) -> Vec<(String, serde_json::Value)> {
    let mut jobs: Vec<(String, serde_json::Value)> = config
        .iter()
        .map(|spec| (spec.id.clone().unwrap(), spec.args.clone()))
        .collect();
    jobs.sort_by(|left, right| left.0.cmp(&right.0));
    jobs
}

/// The store's generations, oldest first: (generation, hash, forced).
async fn generations(store: &Arc<dyn JobStore>) -> Vec<(u64, String, bool)> {
    let mut all: Vec<(u64, String, bool)> = store
        .config_generations(usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|generation| (generation.generation, generation.hash, generation.forced))
        .collect();
    all.reverse();
    all
}

fn applied(report: &SyncReport) -> bool {
    report.standing.as_ref().is_some_and(Standing::applies)
}

/// Three configs of a rollout: `v1` first, `v2` rolled out, `v3` after it.
fn versions() -> [Vec<JobSpec>; 3] {
    [
        vec![job("x", json!(1)), job("y", json!(1))],
        vec![job("x", json!(2)), job("z", json!(2))],
        vec![job("x", json!(3))],
    ]
}

// ---- one node: the files always win ----

/// Regression: with the last job file gone the config defined no job, so it left no
/// version behind and looked older than the store's; the job kept running forever.
async fn one_node_a_config_with_no_job_left_removes_every_config_job(store: Arc<dyn JobStore>) {
    let single = node(&store, "solo");
    let api_job = JobSpec::new("note", job("x", json!(0)).trigger).with_id("api-job");
    single.add_job(api_job).await.unwrap();
    sync(&single, &[job("only", json!(1))]).await;
    let report = sync(&single, &[]).await;
    assert!(applied(&report), "{report:?}");
    assert_eq!(report.removed, ["only"]);
    assert_eq!(
        stored(&store).await,
        [("api-job".to_owned(), json!(null))],
        "the API's job is never touched"
    );
    // And after a restart, still nothing comes back.
    let restarted = node(&store, "solo");
    let report = sync(&restarted, &[]).await;
    assert!(report.added.is_empty() && report.removed.is_empty());
    assert_eq!(generations(&store).await.len(), 2);
}

/// Regression: a rollback whose files kept their old modification times (`cp -p`,
/// `rsync -a`, `tar x`) was not a change under the file-time order. On one node any
/// content applies, the old one included, without `--force`.
async fn one_node_a_rollback_applies_without_force(store: Arc<dyn JobStore>) {
    let [v1, v2, _] = versions();
    let single = node(&store, "solo");
    sync(&single, &v1).await;
    let next_y = store.get_job("y").await.unwrap().unwrap().next_run_time;
    sync(&single, &v2).await;
    assert_eq!(stored(&store).await, expected(&v2));
    let report = sync(&single, &v1).await;
    assert!(applied(&report), "{report:?}");
    assert_eq!(stored(&store).await, expected(&v1));
    assert_eq!(
        generations(&store).await,
        [
            (1, config_hash(&v1), false),
            (2, config_hash(&v2), false),
            (3, config_hash(&v1), false),
        ]
    );
    // A restart on the same files changes nothing and records nothing.
    let report = sync(&node(&store, "solo"), &v1).await;
    assert_eq!((report.added.len(), report.changed.len()), (0, 0));
    assert_eq!(generations(&store).await.len(), 3);
    // y came back as a new job; an unchanged trigger keeps its time across a reload.
    let y = store.get_job("y").await.unwrap().unwrap();
    assert!(y.next_run_time >= next_y);
    let before = store.get_job("x").await.unwrap().unwrap().next_run_time;
    let mut edited = v1.clone();
    edited[0].args = json!("edited");
    sync(&single, &edited).await;
    assert_eq!(
        store.get_job("x").await.unwrap().unwrap().next_run_time,
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_one_node_a_config_with_no_job_left_removes_every_config_job() {
    one_node_a_config_with_no_job_left_removes_every_config_job(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_one_node_a_rollback_applies_without_force() {
    one_node_a_rollback_applies_without_force(Arc::new(MemoryStore::new())).await;
}

async fn sqlite_store() -> (Arc<dyn JobStore>, std::path::PathBuf) {
    let path =
        std::env::temp_dir().join(format!("kairos-config-sync-{:08x}.db", fastrand::u32(..)));
    let url = format!("sqlite://{}", path.display());
    let store = kairos::store::sql::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    (store, path)
}

fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_node_a_config_with_no_job_left_removes_every_config_job() {
    let (store, path) = sqlite_store().await;
    one_node_a_config_with_no_job_left_removes_every_config_job(store).await;
    remove_sqlite(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_node_a_rollback_applies_without_force() {
    let (store, path) = sqlite_store().await;
    one_node_a_rollback_applies_without_force(store).await;
    remove_sqlite(&path);
}

// ---- several nodes on a shared store ----

/// A shared store with a prefix of its own; `None` (after printing SKIP) when the
/// server is not there.
struct Shared {
    url: String,
    prefix: String,
    redis: bool,
}

impl Shared {
    fn postgres() -> Shared {
        Shared {
            url: std::env::var("KAIROS_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
            prefix: format!("cs{:08x}_", fastrand::u32(..)),
            redis: false,
        }
    }

    fn redis() -> Shared {
        Shared {
            url: std::env::var("KAIROS_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned()),
            prefix: format!("cs{:08x}_", fastrand::u32(..)),
            redis: true,
        }
    }

    async fn open(&self) -> Option<Arc<dyn JobStore>> {
        let options = OpenOptions {
            prefix: self.prefix.clone(),
            ..OpenOptions::default()
        };
        match store::open(&self.url, &options).await {
            Ok(store) => Some(store),
            Err(error) => {
                let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
                assert!(
                    !required,
                    "{}: {error} (KAIROS_REQUIRE_SERVICES=1)",
                    self.url
                );
                println!("SKIP {}: {error}", self.url);
                None
            }
        }
    }

    async fn clean(&self) {
        if self.redis {
            let client = ::redis::Client::open(self.url.as_str()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let pattern = format!("{}*", self.prefix.trim_end_matches('_'));
            let keys: Vec<String> = ::redis::cmd("KEYS")
                .arg(pattern)
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
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            for table in [
                "jobs",
                "instances",
                "runs",
                "nodes",
                "config_generations",
                "schema_version",
            ] {
                let statement = format!("DROP TABLE IF EXISTS {}{table}", self.prefix);
                sqlx::query(&statement).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

/// A rollout on three nodes: a node restarted or reloaded on superseded files never
/// undoes the newer config and says why; new content always applies; a forced reload
/// rolls back; a node whose clock is an hour ahead decides like the others.
async fn three_nodes_during_a_rollout(shared: Shared) {
    let Some(store) = shared.open().await else {
        return;
    };
    let [v1, v2, v3] = versions();
    let (a, b, c) = (node(&store, "a"), node(&store, "b"), node(&store, "c"));

    // All three start at once on v1: each job once, one generation.
    let reports = futures_util::future::join_all([&a, &b, &c].map(|n| sync(n, &v1))).await;
    let added: usize = reports.iter().map(|report| report.added.len()).sum();
    assert_eq!(added, 2, "{reports:?}");
    assert!(reports.iter().all(applied));
    assert_eq!(stored(&store).await, expected(&v1));
    assert_eq!(generations(&store).await, [(1, config_hash(&v1), false)]);

    // a gets v2: new content applies.
    let report = sync(&a, &v2).await;
    assert!(applied(&report));
    assert_eq!(stored(&store).await, expected(&v2));

    // c restarts, still on v1: superseded, nothing undone, and it says why.
    let c = node(&store, "c");
    let report = sync(&c, &v1).await;
    assert!(report.superseded(), "{report:?}");
    assert!(report.added.is_empty() && report.changed.is_empty() && report.removed.is_empty());
    let why = report.summary();
    assert!(
        why.contains("superseded by generation 2") && why.contains("--force"),
        "{why}"
    );
    assert_eq!(stored(&store).await, expected(&v2));
    let state = c.config_state().await.unwrap();
    assert!(!state.current && state.shared, "{state:?}");
    assert_eq!(state.store.map(|store| store.generation), Some(2));

    // b reloads on v1 too (a SIGHUP before its files arrived): the same.
    assert!(sync(&b, &v1).await.superseded());
    // A node whose clock is an hour ahead, on v1: the same, the clock plays no part.
    let ahead = node_an_hour_ahead(&store, "ahead");
    assert!(sync(&ahead, &v1).await.superseded());
    assert_eq!(stored(&store).await, expected(&v2));
    // b gets v2: current, nothing recorded.
    let report = sync(&b, &v2).await;
    assert!(matches!(
        report.standing,
        Some(Standing::Current {
            recorded: false,
            ..
        })
    ));

    // The node an hour ahead gets v3 first: new content applies from it as from any.
    assert!(applied(&sync(&ahead, &v3).await));
    assert_eq!(stored(&store).await, expected(&v3));
    // a and b restart on v2 afterwards: superseded by v3.
    assert!(sync(&node(&store, "a"), &v2).await.superseded());
    assert!(sync(&b, &v2).await.superseded());

    // c rolls back to v1 on purpose: forced, it applies and is recorded as forced.
    let report = sync_with(&c, &v1, true).await;
    assert!(applied(&report), "{report:?}");
    assert_eq!(stored(&store).await, expected(&v1));
    assert_eq!(
        generations(&store).await,
        [
            (1, config_hash(&v1), false),
            (2, config_hash(&v2), false),
            (3, config_hash(&v3), false),
            (4, config_hash(&v1), true),
        ]
    );
    // And the rollback sticks: v3 (and v2) are superseded now, until forced again.
    assert!(sync(&ahead, &v3).await.superseded());
    assert!(sync(&a, &v2).await.superseded());
    assert!(sync(&c, &v1).await.applies_nothing_new());
    assert_eq!(stored(&store).await, expected(&v1));

    shared.clean().await;
}

trait AppliesNothingNew {
    fn applies_nothing_new(&self) -> bool;
}

impl AppliesNothingNew for SyncReport {
    /// Current, and no job added, changed or removed.
    fn applies_nothing_new(&self) -> bool {
        applied(self) && self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Every order in which three nodes can restart during a rollout — `a` with the new
/// files, `b` and `c` still with the old ones — ends with the new config in the store,
/// and every node that came after it on old files says it was superseded.
async fn every_restart_order_ends_with_the_new_config(shared: Shared) {
    let Some(store) = shared.open().await else {
        return;
    };
    let [v1, v2, _] = versions();
    let orders = [
        ["a", "b", "c"],
        ["a", "c", "b"],
        ["b", "a", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["c", "b", "a"],
    ];
    // One store for all orders: each round starts from a fresh old config (the round's
    // "v1" is new content, so it applies), then rolls out the round's "v2".
    for (round, order) in orders.iter().enumerate() {
        let old: Vec<JobSpec> = v1
            .iter()
            .map(|spec| {
                let mut spec = spec.clone();
                spec.args = json!({"round": round, "old": spec.args});
                spec
            })
            .collect();
        let new: Vec<JobSpec> = v2
            .iter()
            .map(|spec| {
                let mut spec = spec.clone();
                spec.args = json!({"round": round, "new": spec.args});
                spec
            })
            .collect();
        assert!(applied(&sync(&node(&store, "setup"), &old).await));
        let mut new_applied = false;
        for name in order {
            let restarted = node(&store, name);
            let files = if *name == "a" { &new } else { &old };
            let report = sync(&restarted, files).await;
            if *name == "a" {
                assert!(applied(&report), "{order:?}: {report:?}");
                new_applied = true;
            } else if new_applied {
                assert!(report.superseded(), "{order:?}: {report:?}");
            } else {
                assert!(report.applies_nothing_new(), "{order:?}: {report:?}");
            }
        }
        assert_eq!(stored(&store).await, expected(&new), "{order:?}");
    }
    // Generations: one per round's old config and one per new one, no gaps.
    let all = generations(&store).await;
    assert_eq!(
        all.iter()
            .map(|(generation, ..)| *generation)
            .collect::<Vec<_>>(),
        (1..=12).collect::<Vec<u64>>()
    );
    shared.clean().await;
}

/// Nodes on old and new files restarting all at once, many times: never a duplicate
/// job, and once the new files have been applied the store ends with them, whatever
/// the interleaving (a node that judged the old files current a moment too early
/// stops at its next write).
async fn concurrent_restarts_never_undo_the_new_config(shared: Shared) {
    let Some(store) = shared.open().await else {
        return;
    };
    let [v1, v2, _] = versions();
    sync(&node(&store, "setup"), &v1).await;
    for round in 0..5 {
        let nodes: Vec<Scheduler> = (0..6)
            .map(|index| node(&store, &format!("n{round}-{index}")))
            .collect();
        let syncs = nodes.iter().enumerate().map(|(index, node)| {
            let files = if index % 2 == 0 { &v1 } else { &v2 };
            sync(node, files)
        });
        futures_util::future::join_all(syncs).await;
        // No duplicates (ids are keys) and the new config, whatever the order.
        assert_eq!(stored(&store).await, expected(&v2), "round {round}");
    }
    assert_eq!(
        generations(&store).await,
        [(1, config_hash(&v1), false), (2, config_hash(&v2), false)]
    );
    shared.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_nodes_during_a_rollout() {
    three_nodes_during_a_rollout(Shared::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_three_nodes_during_a_rollout() {
    three_nodes_during_a_rollout(Shared::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_restart_order_ends_with_the_new_config() {
    every_restart_order_ends_with_the_new_config(Shared::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_every_restart_order_ends_with_the_new_config() {
    every_restart_order_ends_with_the_new_config(Shared::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_restarts_never_undo_the_new_config() {
    concurrent_restarts_never_undo_the_new_config(Shared::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrent_restarts_never_undo_the_new_config() {
    concurrent_restarts_never_undo_the_new_config(Shared::redis()).await;
}

/// The hash is of the jobs, so a config whose files were only moved, reformatted or
/// touched is the same config on every node.
#[test]
fn the_config_hash_is_the_same_for_the_same_jobs_in_any_order() {
    let [v1, ..] = versions();
    let reversed: Vec<JobSpec> = v1.iter().rev().cloned().collect();
    assert_eq!(config_hash(&v1), config_hash(&reversed));
}

/// A node whose default store is in memory but which also shares a PostgreSQL store:
/// the shared store keeps the generations, so the rollout rule holds there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_generations_when_the_default_store_is_in_memory() {
    let shared = Shared::postgres();
    let Some(store) = shared.open().await else {
        return;
    };
    let [v1, v2, _] = versions();
    let node_with_memory = |id: &str| {
        Scheduler::builder()
            .id(id)
            .store("default", MemoryStore::new())
            .store_shared("shared", Arc::clone(&store))
            .tasks(tasks())
            .build()
    };
    let (a, b) = (node_with_memory("a"), node_with_memory("b"));
    assert!(applied(&sync(&a, &v1).await));
    assert!(applied(&sync(&a, &v2).await));
    assert!(sync(&b, &v1).await.superseded());
    assert_eq!(
        generations(&store).await,
        [(1, config_hash(&v1), false), (2, config_hash(&v2), false)]
    );
    shared.clean().await;
}

// ---- the files as the daemon reads them ----

/// The specs of `config.toml` with `text`, loaded as `kairos run` loads them.
fn config_file_specs(text: &str) -> Vec<JobSpec> {
    let dir = std::env::temp_dir().join(format!(
        "kairos-config-sync-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = kairos::config::load(&path).unwrap_or_else(|errors| panic!("{errors}"));
    let _ = std::fs::remove_dir_all(&dir);
    config.jobs.iter().map(|job| job.spec.clone()).collect()
}

/// Two jobs, `keep` and `nightly` (at `hour`, running `argv`), then `extra`.
fn two_job_file(hour: u32, argv: &str, extra: &str) -> String {
    format!(
        "[jobstores.default]\nurl = \"memory://\"\n\n[[jobs]]\nid = \"keep\"\ntask = \"command\"\nargs = {{ argv = [\"true\"] }}\ntrigger = {{ type = \"interval\", minutes = 5 }}\n\n[[jobs]]\nid = \"nightly\"\ntask = \"command\"\nargs = {{ argv = [\"{argv}\"] }}\ntrigger = {{ type = \"cron\", hour = {hour} }}\n{extra}"
    )
}

/// The reload diff of the real sync, on files: a job moved or reformatted is
/// unchanged, new args change a job and keep its next run time, a new trigger
/// changes it, a job gone from the files is removed, and changed `[job_defaults]`
/// change every job that uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_sorts_the_files_jobs_into_added_changed_removed_and_unchanged() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let node = Scheduler::builder()
        .store_shared("default", Arc::clone(&store))
        .tasks(TaskRegistry::with_builtins())
        .build();
    let extra = "\n[[jobs]]\nid = \"new\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"interval\", hours = 1 }\n";
    let old = config_file_specs(&two_job_file(3, "true", ""));
    let first = sync(&node, &old).await;
    assert_eq!(first.added, ["keep", "nightly"]);

    let moved = config_file_specs(&format!(
        "\n\n# moved down\n{}",
        two_job_file(3, "true", "")
    ));
    let same = sync(&node, &moved).await;
    assert!(same.added.is_empty() && same.changed.is_empty() && same.removed.is_empty());
    assert_eq!(same.unchanged, 2);

    let next_run = |job: Option<kairos::job::Job>| job.unwrap().next_run_time;
    let before = next_run(node.get_job("nightly").await.unwrap());
    let args_changed = sync(&node, &config_file_specs(&two_job_file(3, "false", ""))).await;
    assert_eq!(args_changed.changed, ["nightly"]);
    assert!(args_changed.added.is_empty() && args_changed.removed.is_empty());
    assert_eq!(next_run(node.get_job("nightly").await.unwrap()), before);

    let rescheduled = sync(&node, &config_file_specs(&two_job_file(4, "true", extra))).await;
    assert_eq!(rescheduled.added, ["new"]);
    assert_eq!(rescheduled.changed, ["nightly"]);
    assert!(rescheduled.removed.is_empty());
    assert_ne!(next_run(node.get_job("nightly").await.unwrap()), before);

    let back = sync(&node, &old).await;
    assert_eq!(back.removed, ["new"]);
    assert!(back.added.is_empty());

    let defaults = config_file_specs(&format!(
        "[job_defaults]\nmax_instances = 2\n\n{}",
        two_job_file(3, "true", "")
    ));
    let mut changed = sync(&node, &defaults).await.changed;
    changed.sort();
    assert_eq!(changed, ["keep", "nightly"]);
}
