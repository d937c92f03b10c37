//! Three real daemons sharing one store: a kill -9 and a freeze past the lease midway
//!, on PostgreSQL, MariaDB and Redis in turn.
//!
//! Every execution appends `job-id scheduled-time node` to one `runs.log` (a shell
//! command; short `O_APPEND` writes are atomic), so the log is the ground truth of
//! what ran, where, whatever the daemons recorded. The workload:
//!
//! ```text
//! T0+5s ─────────────────────────────── T0+15s   300 one-off jobs, evenly spread
//! T0+5s ─ every second ──────────────── T0+19s   5 recurring jobs, coalesce = false
//!   T0+7s  `slow` (runs 3 s)  ──> its node is frozen (SIGSTOP) as it starts, for
//!          longer than the lease and the node timeout; another node is killed (SIGKILL)
//!          at the same moment; the frozen node is resumed (SIGCONT) 5.5 s later
//! ```
//!
//! Checked per (job, scheduled time): it ran, and ran once, except for runs that were
//! in flight on the killed or the frozen node (their node ran them, or was running
//! them, and could not write that back before the lease was taken over: at-least-once
//! by design), which ran at most twice, once there; those are counted and printed. The
//! frozen node's late write-backs are refused by the store and it says so in its log
//! ("stale release rejected"), and a survivor reaps both.
//!
//! Each store gets a table or key prefix of its own, dropped at the end. A server
//! that cannot be reached prints `SKIP <reason>` and passes, unless
//! `KAIROS_REQUIRE_SERVICES=1`. The stores take turns, so each run has the cores.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::daemon::{lines, temp_dir, wait_until, write, Daemon};
use common::shared_store::{Db, Place};
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::store::prelude::*;
use serde_json::json;

/// The one-off jobs.
const ONE_OFF: usize = 300;
/// Over how long they are due.
const SPREAD: Duration = Duration::from_secs(10);
/// The recurring jobs, each firing every second.
const RECURRING: usize = 5;
/// How many times each recurring job fires.
const RECURRING_RUNS: i64 = 15;
/// How long after the jobs were added the first is due (the daemons start meanwhile).
const FIRST_DUE: Duration = Duration::from_secs(5);
/// When the slow job is due, after the first.
const SLOW_AFTER_FIRST: Duration = Duration::from_secs(2);
/// The lease; the slow job's run is shorter, the freeze longer.
const LEASE: &str = "4s";
/// How long the frozen node stays frozen: past the lease and the node timeout.
const FREEZE: Duration = Duration::from_millis(5500);
/// The nodes.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// One node's config: the shared store, a short lease and node timeout, no API, no
/// fire-ahead (runs start as they are handed over, which keeps the window in which
/// a kill loses track of a run to the hand-over itself).
fn write_config(dir: &Path, node: &str, place: &Place) {
    write_config_with(dir, node, place, "");
}

/// [`write_config`] with extra `[scheduler]` lines.
fn write_config_with(dir: &Path, node: &str, place: &Place, scheduler: &str) {
    write(
        dir,
        "config.toml",
        &format!(
            r#"[scheduler]
node_id = "{node}"
lease = "{LEASE}"
heartbeat = "1s"
node_timeout = "4s"
fire_ahead = "0s"
shutdown_timeout = "10s"
{scheduler}

[jobstores.default]
url = "{url}"
prefix = "{prefix}"

[executors.default]
type = "threadpool"
max_workers = 8

[api]
enabled = false
"#,
            url = place.url,
            prefix = place.prefix,
        ),
    );
}

/// The shell line each job runs: one line per execution, with the executing node.
fn record_command(runs_log: &Path, before: &str) -> String {
    format!(
        "{before}echo \"$KAIROS_JOB_ID $KAIROS_SCHEDULED_TIME $CLUSTER_NODE\" >> '{}'",
        runs_log.display()
    )
}

/// A command job.
fn command_job(id: &str, trigger: serde_json::Value, command: String) -> JobSpec {
    let mut spec = JobSpec::new("command", serde_json::from_value(trigger).unwrap())
        .with_id(id.to_owned())
        // The command names the node from the daemon's CLUSTER_NODE, so it takes the
        // daemon's environment (a command job's is clean otherwise).
        .with_args(json!({"shell": true, "command": command, "inherit_env": true}));
    spec.options.executor = Some("default".to_owned());
    // Runs a failover delays are run late, each one, rather than merged.
    spec.options.coalesce = Some(false);
    spec
}

/// What should run: (job id, scheduled time) for every execution expected once.
type Expected = BTreeSet<(String, DateTime<Utc>)>;

/// Adds the workload through the library (a scheduler that is never started); returns
/// what should run and when the slow job is due.
async fn add_jobs(store: Arc<dyn JobStore>, runs_log: &Path) -> Expected {
    let scheduler = Scheduler::builder().store_shared("default", store).build();
    let first = (Utc::now() + TimeDelta::from_std(FIRST_DUE).unwrap())
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap();
    let mut expected = Expected::new();
    let mut specs = Vec::new();
    let step = SPREAD / u32::try_from(ONE_OFF).unwrap();
    for index in 0..ONE_OFF {
        let id = format!("once-{index:03}");
        let due = first + TimeDelta::from_std(step * u32::try_from(index).unwrap()).unwrap();
        let due = due.duration_trunc(TimeDelta::microseconds(1)).unwrap();
        expected.insert((id.clone(), due));
        specs.push(command_job(
            &id,
            json!({"type": "date", "run_date": due.to_rfc3339()}),
            record_command(runs_log, ""),
        ));
    }
    let last = first + TimeDelta::seconds(RECURRING_RUNS - 1);
    for index in 0..RECURRING {
        let id = format!("every-{index}");
        for run in 0..RECURRING_RUNS {
            expected.insert((id.clone(), first + TimeDelta::seconds(run)));
        }
        let mut spec = command_job(
            &id,
            json!({"type": "interval", "seconds": 1,
                   "start_date": first.to_rfc3339(), "end_date": last.to_rfc3339()}),
            record_command(runs_log, ""),
        );
        // The frozen and the killed node may each hold a slot of the job (a run they
        // were running) until a survivor reaps them: with max_instances = 1 the job's
        // runs in that window would be skipped (max_instances semantics: a slot held
        // by a node that is only slow looks the same). Room for both, and the runs
        // the survivor makes.
        spec.options.max_instances = Some(3);
        specs.push(spec);
    }
    let slow_due = first + TimeDelta::from_std(SLOW_AFTER_FIRST).unwrap();
    expected.insert(("slow".to_owned(), slow_due));
    let mut slow = command_job(
        "slow",
        json!({"type": "date", "run_date": slow_due.to_rfc3339()}),
        // A start line first, so the test knows which node to freeze.
        format!(
            "echo \"started $CLUSTER_NODE\" >> '{}'; sleep 3; {}",
            runs_log.display(),
            record_command(runs_log, "")
        ),
    );
    // The survivor that takes `slow` over runs it again while the frozen node's slot
    // still counts (if it takes the job when the lease expires, before the reap), so
    // the frozen node's late write-back always meets the survivor's hold, and is
    // refused; with one slot the survivor would skip the run and remove the job.
    slow.options.max_instances = Some(2);
    specs.push(slow);
    let added = scheduler.add_jobs(specs).await.unwrap();
    assert_eq!(added.len(), ONE_OFF + RECURRING + 1);
    expected
}

/// One execution read back from `runs.log`.
#[derive(Debug)]
struct Execution {
    job: String,
    scheduled: DateTime<Utc>,
    node: String,
}

/// The executions in `runs.log` (start lines left out).
fn executions(runs_log: &Path) -> Vec<Execution> {
    let dir = runs_log.parent().unwrap();
    lines(dir, "runs.log")
        .iter()
        .filter(|line| !line.starts_with("started "))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "a bad line in runs.log: {line:?}");
            Execution {
                job: fields[0].to_owned(),
                scheduled: DateTime::parse_from_rfc3339(fields[1])
                    .unwrap()
                    .with_timezone(&Utc),
                node: fields[2].to_owned(),
            }
        })
        .collect()
}

/// The stores take turns: each wants the machine's cores for its three daemons.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn kill_one_freeze_one(db: Db) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let place = Place::new(db, "cl");
    let store = match place.open().await {
        Ok(store) => store,
        Err(error) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(!required, "{db:?}: {error} (KAIROS_REQUIRE_SERVICES=1)");
            println!("SKIP {db:?}: {error}");
            return;
        }
    };
    let dir = temp_dir("cluster");
    let runs_log = dir.join("runs.log");
    let node_dirs: Vec<PathBuf> = NODES.iter().map(|node| dir.join(node)).collect();
    for (node, node_dir) in NODES.iter().zip(&node_dirs) {
        write_config(node_dir, node, &place);
    }
    let expected = add_jobs(Arc::clone(&store), &runs_log).await;
    let started = Instant::now();
    let mut daemons: BTreeMap<&str, Daemon> = NODES
        .iter()
        .zip(&node_dirs)
        .map(|(node, node_dir)| {
            (
                *node,
                Daemon::start_with_env(node_dir, &[("CLUSTER_NODE", node)]),
            )
        })
        .collect();

    // Freeze the node running `slow` as it starts, and kill another one.
    let mut frozen = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            frozen = lines(&dir, "runs.log")
                .iter()
                .find_map(|line| line.strip_prefix("started ").map(str::to_owned));
            frozen.is_some()
        }),
        "{db:?}: the slow job did not start"
    );
    let frozen = frozen.unwrap();
    let frozen = NODES.into_iter().find(|node| *node == frozen).unwrap();
    let killed = NODES.into_iter().find(|node| *node != frozen).unwrap();
    daemons[frozen].signal("STOP");
    daemons[killed].signal("KILL");
    let frozen_at = Instant::now();
    let killed_daemon = daemons.get_mut(killed).unwrap();
    killed_daemon
        .wait_exit(Duration::from_secs(10))
        .expect("killed");
    // What ran on the killed node up to its death (its children may still append).
    std::thread::sleep(FREEZE.saturating_sub(frozen_at.elapsed()));
    daemons[frozen].signal("CONT");
    let survivor = NODES
        .into_iter()
        .find(|node| *node != frozen && *node != killed)
        .unwrap();

    // Everything runs; then a moment for late duplicates to show, and a clean stop.
    let all_ran = wait_until(Duration::from_secs(30), || {
        let ran: BTreeSet<(String, DateTime<Utc>)> = executions(&runs_log)
            .into_iter()
            .map(|execution| (execution.job, execution.scheduled))
            .collect();
        expected.is_subset(&ran)
    });
    std::thread::sleep(Duration::from_secs(2));
    for node in [frozen, survivor] {
        let daemon = daemons.get_mut(node).unwrap();
        daemon.signal("TERM");
        let status = daemon.wait_exit(Duration::from_secs(20)).expect("it exits");
        assert!(status.success(), "{node}: {status:?}\n{}", daemon.log());
    }
    let logs: BTreeMap<&str, String> = daemons
        .iter()
        .map(|(node, daemon)| (*node, daemon.log()))
        .collect();

    // Per (job, scheduled time): where it ran.
    let mut ran: BTreeMap<(String, DateTime<Utc>), Vec<String>> = BTreeMap::new();
    for execution in executions(&runs_log) {
        ran.entry((execution.job, execution.scheduled))
            .or_default()
            .push(execution.node);
    }
    let missing: Vec<&(String, DateTime<Utc>)> = expected
        .iter()
        .filter(|key| !ran.contains_key(*key))
        .collect();
    let unexpected: Vec<&(String, DateTime<Utc>)> =
        ran.keys().filter(|key| !expected.contains(*key)).collect();
    let mut repeated_in_flight = BTreeMap::from([(killed, 0), (frozen, 0)]);
    let mut wrong_duplicates = Vec::new();
    for (key, nodes) in &ran {
        if nodes.len() < 2 {
            continue;
        }
        // Twice, once on the killed or frozen node, which could not write it back.
        let culprit = [killed, frozen]
            .into_iter()
            .find(|culprit| nodes.iter().filter(|node| node == culprit).count() == 1);
        match culprit {
            Some(culprit) if nodes.len() == 2 => {
                *repeated_in_flight.get_mut(culprit).unwrap() += 1;
            }
            _ => wrong_duplicates.push((key.clone(), nodes.clone())),
        }
    }
    for (key, nodes) in ran.iter().filter(|(_, nodes)| nodes.len() > 1) {
        eprintln!("{db:?}: ran {} times: {key:?} on {nodes:?}", nodes.len());
    }
    let per_node: BTreeMap<&String, usize> =
        ran.values()
            .flatten()
            .fold(BTreeMap::new(), |mut counts, node| {
                *counts.entry(node).or_insert(0) += 1;
                counts
            });
    let rejected = logs[frozen]
        .matches("stale release rejected by the store")
        .count();
    let reaped = |node: &str| {
        logs[survivor].contains("reaped a dead node")
            && logs[survivor]
                .lines()
                .any(|line| line.contains("reaped a dead node") && line.contains(node))
    };
    eprintln!(
        "{db:?}: {} runs expected, {} executions ({per_node:?}); killed {killed}, froze \
         {frozen} for {:.1} s; repeated after being in flight: {repeated_in_flight:?}; \
         {rejected} stale release(s) of the frozen node rejected; {:.1} s",
        expected.len(),
        ran.values().map(Vec::len).sum::<usize>(),
        FREEZE.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let context = || {
        format!(
            "{db:?}\n--- {frozen} (frozen) ---\n{}\n--- {survivor} ---\n{}",
            tail(&logs[frozen]),
            tail(&logs[survivor])
        )
    };
    assert!(
        all_ran && missing.is_empty(),
        "{} run(s) never happened: {:?}\n{}",
        missing.len(),
        missing,
        context()
    );
    assert!(unexpected.is_empty(), "unexpected runs: {unexpected:?}");
    assert!(
        wrong_duplicates.is_empty(),
        "runs repeated beyond the in-flight window: {wrong_duplicates:?}\n{}",
        context()
    );
    assert!(
        rejected > 0,
        "the frozen node wrote nothing stale back, or was not refused\n{}",
        context()
    );
    assert!(
        reaped(killed) && reaped(frozen),
        "the survivor did not reap both\n{}",
        context()
    );
    assert!(
        logs[frozen].contains("this node was reaped as dead"),
        "the frozen node did not notice it was reaped\n{}",
        context()
    );
    let left = store.get_jobs().await.unwrap();
    assert!(
        left.is_empty(),
        "{db:?}: jobs left after every run: {:?}",
        left.iter().map(|job| &job.id).collect::<Vec<_>>()
    );
    drop(store);
    place.clean().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The last lines of a log, for failure messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Wake-ups travel through the store: with a poll interval of 30 s,
/// a one-off job added through another handle (an application writing through the
/// library, as a third node would) and a job rescheduled there both fire on one of
/// two daemons within half a second of their time, not at the next poll.
async fn wake_ups_fire_other_nodes_jobs_on_time(db: Db) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let place = Place::new(db, "cl");
    let store = match place.open().await {
        Ok(store) => store,
        Err(error) => {
            let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
            assert!(!required, "{db:?}: {error} (KAIROS_REQUIRE_SERVICES=1)");
            println!("SKIP {db:?}: {error}");
            return;
        }
    };
    let dir = temp_dir("cluster-wake");
    let runs_log = dir.join("runs.log");
    let mut daemons = Vec::new();
    for node in &NODES[..2] {
        let node_dir = dir.join(node);
        write_config_with(&node_dir, node, &place, "poll_interval = \"30s\"");
        daemons.push(Daemon::start_with_env(&node_dir, &[("CLUSTER_NODE", node)]));
    }
    // Both registered: their loops (and listeners) are up; a moment more for the
    // listeners' first look, which would otherwise find the job by itself.
    let registered = Instant::now();
    while store.list_nodes().await.unwrap().len() < 2 {
        assert!(
            registered.elapsed() < Duration::from_secs(20),
            "{db:?}: the nodes did not register"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writer = Scheduler::builder()
        .store_shared("default", Arc::clone(&store))
        .build();
    // Seen in the log within `bound` of `due`: when it was seen, late by how much.
    let fired_late = |job: &str, due: DateTime<Utc>| {
        let mut seen = None;
        wait_until(Duration::from_secs(10), || {
            let ran = executions(&runs_log)
                .iter()
                .any(|execution| execution.job == job);
            if ran {
                seen = Some(Utc::now());
            }
            ran
        });
        seen.map(|seen| (seen - due).to_std().unwrap_or_default())
    };
    let bound = Duration::from_millis(500);

    let due = (Utc::now() + TimeDelta::seconds(1))
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap();
    writer
        .add_job(command_job(
            "added",
            json!({"type": "date", "run_date": due.to_rfc3339()}),
            record_command(&runs_log, ""),
        ))
        .await
        .unwrap();
    let added_late = fired_late("added", due);

    writer
        .add_job(command_job(
            "moved",
            json!({"type": "date", "delay": "1h"}),
            record_command(&runs_log, ""),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let due = (Utc::now() + TimeDelta::seconds(1))
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap();
    writer
        .reschedule_job(
            "moved",
            serde_json::from_value(json!({"type": "date", "run_date": due.to_rfc3339()})).unwrap(),
        )
        .await
        .unwrap();
    let moved_late = fired_late("moved", due);

    // Each node's heartbeat (every second here) carries its load for `kairos cluster`.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for node in store.list_nodes().await.unwrap() {
        let stats = node
            .stats
            .unwrap_or_else(|| panic!("{db:?}: {} has no stats", node.id));
        assert_eq!(stats.capacity, 8, "{db:?}: {}: {stats:?}", node.id);
        assert_eq!(stats.running, 0, "{db:?}: {}: {stats:?}", node.id);
    }

    for daemon in &mut daemons {
        daemon.signal("TERM");
        let status = daemon.wait_exit(Duration::from_secs(20)).expect("it exits");
        assert!(status.success(), "{status:?}\n{}", daemon.log());
    }
    eprintln!("{db:?}: added job seen {added_late:?} after its time, rescheduled {moved_late:?}");
    let logs = || {
        daemons
            .iter()
            .map(|daemon| tail(&daemon.log()))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    assert!(
        added_late.is_some_and(|late| late < bound),
        "{db:?}: the added job ran {added_late:?} after its time\n{}",
        logs()
    );
    assert!(
        moved_late.is_some_and(|late| late < bound),
        "{db:?}: the rescheduled job ran {moved_late:?} after its time\n{}",
        logs()
    );
    let ran = executions(&runs_log);
    assert_eq!(ran.len(), 2, "each ran once: {ran:?}");
    drop(store);
    place.clean().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wake_ups_fire_other_nodes_jobs_on_time() {
    wake_ups_fire_other_nodes_jobs_on_time(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wake_ups_fire_other_nodes_jobs_on_time() {
    wake_ups_fire_other_nodes_jobs_on_time(Db::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_nodes_survive_a_kill_and_a_freeze() {
    kill_one_freeze_one(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_three_nodes_survive_a_kill_and_a_freeze() {
    kill_one_freeze_one(Db::Mariadb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_three_nodes_survive_a_kill_and_a_freeze() {
    kill_one_freeze_one(Db::Redis).await;
}
