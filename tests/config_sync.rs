//! Config-owned jobs on several nodes sharing one store (issue 10, item 5): nodes
//! syncing their config files in any order never duplicate a job, and a node with an
//! older config never undoes a newer one (see `src/daemon/sync.rs`).
//!
//! Each "node" is a scheduler that is never started (syncing needs no loop) on one
//! shared store, memory and SQLite (whose jobs go through JSON, as on the servers).
//! Config versions come from real files whose modification times the test sets.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kairos::daemon::sync::{config_version, sync_config_jobs, SyncReport};
use kairos::job::{ConfigVersion, JobSpec};
use kairos::scheduler::Scheduler;
use kairos::store::memory::MemoryStore;
use kairos::store::sql::SqlOptions;
use kairos::store::JobStore;
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use serde_json::json;

/// A node: a scheduler on the shared store that knows the `note` task.
fn node(store: &Arc<dyn JobStore>, id: &str) -> Scheduler {
    let mut tasks = TaskRegistry::new();
    tasks.register_fn("note", |_run: TaskRun| async {
        Ok::<String, TaskFailure>(String::new())
    });
    Scheduler::builder()
        .id(id)
        .store_shared("default", Arc::clone(store))
        .tasks(tasks)
        .build()
}

/// A config job: `note` every hour with `args`.
fn job(id: &str, args: serde_json::Value) -> JobSpec {
    let trigger = serde_json::from_value(json!({"type": "interval", "hours": 1})).unwrap();
    let mut spec = JobSpec::new("note", trigger).with_id(id).with_args(args);
    spec.from_config = true;
    spec
}

/// A config file written `age` before now, and the version of a config with `jobs`.
struct Config {
    jobs: Vec<JobSpec>,
    version: ConfigVersion,
}

fn config(dir: &std::path::Path, name: &str, age: Duration, jobs: Vec<JobSpec>) -> Config {
    // A directory of its own: a directory's modification time counts too.
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let path: PathBuf = home.join("config.toml");
    std::fs::write(&path, name).unwrap();
    let when = SystemTime::now() - age;
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(when).unwrap();
    drop(file);
    std::fs::File::open(&home)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let version = config_version(&[path], &jobs);
    Config { jobs, version }
}

async fn sync(node: &Scheduler, config: &Config) -> SyncReport {
    let report = sync_config_jobs(node, config.jobs.clone(), &config.version)
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    report
}

/// The store's config jobs: (id, args), by id.
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

async fn nodes_agree_on_the_newest_config(store: Arc<dyn JobStore>) {
    let dir = std::env::temp_dir().join(format!("kairos-config-sync-{:08x}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let hour = Duration::from_secs(3600);
    let old = config(
        &dir,
        "old.toml",
        hour * 3,
        vec![job("x", json!(1)), job("y", json!(1))],
    );
    let new = config(
        &dir,
        "new.toml",
        hour * 2,
        vec![job("x", json!(2)), job("z", json!(2))],
    );
    let (a, b) = (node(&store, "a"), node(&store, "b"));

    // Both start at once on the old config: each job once, nothing refused.
    let (first, second) = tokio::join!(sync(&a, &old), sync(&b, &old));
    assert_eq!(
        first.added.len() + second.added.len(),
        2,
        "{first:?} {second:?}"
    );
    assert_eq!(
        stored(&store).await,
        [("x".into(), json!(1)), ("y".into(), json!(1))]
    );

    // b gets the new config: x changes, y goes, z comes.
    let report = sync(&b, &new).await;
    assert_eq!(
        (report.added, report.changed, report.removed),
        (
            vec!["z".to_owned()],
            vec!["x".to_owned()],
            vec!["y".to_owned()]
        )
    );
    let newest = [("x".into(), json!(2)), ("z".into(), json!(2))];
    assert_eq!(stored(&store).await, newest);

    // a restarts, still on the old config: it neither undoes x nor brings y back.
    let report = sync(&a, &old).await;
    assert_eq!(
        report.newer_in_store,
        Some(new.version.clone()),
        "{report:?}"
    );
    assert!(report.added.is_empty() && report.changed.is_empty() && report.removed.is_empty());
    assert_eq!(stored(&store).await, newest);

    // a gets the new jobs in a file written earlier than b's (a copy with its own
    // time): the same jobs, so nothing to do and nothing refused.
    let same_earlier = config(
        &dir,
        "same-earlier.toml",
        hour * 2 + Duration::from_secs(60),
        new.jobs.clone(),
    );
    let report = sync(&a, &same_earlier).await;
    assert_eq!(report.newer_in_store, None);
    assert_eq!(
        (
            report.added.len(),
            report.changed.len(),
            report.removed.len(),
            report.unchanged
        ),
        (0, 0, 0, 2)
    );

    // A newer config that only drops z keeps x as it is, stamped with its version:
    // a node still on `new` then counts as older and cannot bring z back.
    let only_x = config(&dir, "only-x.toml", hour, vec![job("x", json!(2))]);
    let report = sync(&b, &only_x).await;
    assert_eq!(
        (report.removed, report.unchanged),
        (vec!["z".to_owned()], 1)
    );
    let report = sync(&a, &new).await;
    assert_eq!(report.newer_in_store, Some(only_x.version.clone()));
    assert_eq!(stored(&store).await, [("x".into(), json!(2))]);

    // Rolling back is writing the old file again: it is the newest change.
    let rolled_back = config(&dir, "rolled-back.toml", Duration::ZERO, old.jobs.clone());
    sync(&a, &rolled_back).await;
    assert_eq!(
        stored(&store).await,
        [("x".into(), json!(1)), ("y".into(), json!(1))]
    );
    let report = sync(&b, &only_x).await;
    assert!(report.newer_in_store.is_some(), "b's config is older now");
    assert_eq!(
        stored(&store).await,
        [("x".into(), json!(1)), ("y".into(), json!(1))]
    );

    // Many restarts in any order: still one job per id, the newest config's.
    let nodes: Vec<Scheduler> = (0..6)
        .map(|index| node(&store, &format!("n{index}")))
        .collect();
    let configs = [&old, &new, &only_x, &rolled_back, &same_earlier, &new];
    let syncs = nodes
        .iter()
        .zip(configs)
        .map(|(node, config)| sync(node, config));
    futures_util::future::join_all(syncs).await;
    assert_eq!(
        stored(&store).await,
        [("x".into(), json!(1)), ("y".into(), json!(1))]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_nodes_agree_on_the_newest_config() {
    nodes_agree_on_the_newest_config(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_nodes_agree_on_the_newest_config() {
    let path =
        std::env::temp_dir().join(format!("kairos-config-sync-{:08x}.db", fastrand::u32(..)));
    let url = format!("sqlite://{}", path.display());
    let store = kairos::store::sql::connect(&url, SqlOptions::default())
        .await
        .unwrap();
    nodes_agree_on_the_newest_config(store).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
