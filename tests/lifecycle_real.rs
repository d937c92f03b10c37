//! The lifecycle checker against real daemons (docs/lifecycle-checker.md, "Against real
//! daemons"): seeded random scenarios played on wall-clock time by one to three
//! `kairos run` processes sharing one store (SQLite, PostgreSQL, Redis), with
//! operations sent through any node's HTTP API, `kill -9` of a node (restarted under
//! its id, or reaped by the others) and store outages, held against the same reference
//! model as the simulated checker (`lifecycle_model/model.rs`).
//!
//! Ground truth: every job is a `command` that appends a start line (run id, scheduled
//! time, node, pid, wall-clock nanoseconds) and an end line to one `runs.log` (short
//! `O_APPEND` writes are atomic), sleeps for its work in between and exits 1 when it
//! is to fail. The store's run records are read through the library at the end.
//!
//! `KAIROS_REAL_CHECK_SECONDS` (default 15) is how long each store plays scenarios,
//! one after another (at least one); `KAIROS_SEED=N` replays one scenario;
//! `KAIROS_SEED_BASE=N` fixes where the seeds start; `KAIROS_TRACE=1` prints what
//! was observed and the daemons' logs of every scenario, not only of failed ones. A
//! server that cannot be reached prints `SKIP <reason>` and passes, unless
//! `KAIROS_REQUIRE_SERVICES=1`. The stores take turns, so each has the cores its
//! wall-clock timing needs.

#![allow(clippy::unwrap_used)]

mod common;

#[path = "lifecycle_model/model.rs"]
mod model;
#[path = "lifecycle_model/scenario.rs"]
#[allow(dead_code)]
mod scenario;
#[path = "lifecycle_model/sim.rs"]
#[allow(dead_code)]
mod sim;
#[path = "lifecycle_model/world.rs"]
#[allow(dead_code)]
mod world;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::daemon::{temp_dir, write, Daemon};
use common::shared_store::{Db, Place};
use kairos::history::RunRecord;
use kairos::store::prelude::*;
use kairos::store::OpenOptions;
use model::Discrepancy;
use scenario::{job_id, JobDef, Ms, Op, OpKind, Overlap, Scenario, StoreKind, Trig, Work};
use serde_json::{json, Value};
use sim::Execution;
use world::{Applied, Kill, Observed};

/// How much later than on simulated time the model lets things come, wherever it
/// allows lateness (the tails of disturbed windows, the end of a scenario, the
/// successor of a killed node): wall-clock scheduling on a loaded two-core machine, a
/// daemon's start, the store's retry back-off. Never applied to "never early".
const SLACK: Ms = 3_000;
/// How long after the daemon noted a run's start the task may note it (a process
/// spawn and a `date` under load): a run whose record's start is this close before its
/// own is taken to have started at the record's start.
const START_TOLERANCE: Ms = 1_500;
/// How far apart a catch-up's runs may be, one ending and the next starting, in the
/// daemon's records (they are one instant on simulated time).
const SAME_INSTANT: Ms = 100;
/// `fire_ahead` in every node's config.
const FIRE_AHEAD: Ms = 1_000;
/// The cluster settings in every node's config: a killed node without a successor is
/// reaped within `NODE_TIMEOUT + 2 * HEARTBEAT + POLL`.
const HEARTBEAT: Ms = 1_000;
const NODE_TIMEOUT: Ms = 4_000;
const POLL: Ms = 1_000;
const API_TOKEN: &str = "real-check-token";

/// The stores take turns (each scenario's timing wants the machine's cores).
static TURNS: Mutex<()> = Mutex::new(());

#[test]
fn real_daemons_on_sqlite_keep_the_lifecycle_promises() {
    check_store(
        Store::Sqlite,
        "real_daemons_on_sqlite_keep_the_lifecycle_promises",
    );
}

#[test]
fn real_daemons_on_postgres_keep_the_lifecycle_promises() {
    check_store(
        Store::Shared(Db::Postgres),
        "real_daemons_on_postgres_keep_the_lifecycle_promises",
    );
}

#[test]
fn real_daemons_on_redis_keep_the_lifecycle_promises() {
    check_store(
        Store::Shared(Db::Redis),
        "real_daemons_on_redis_keep_the_lifecycle_promises",
    );
}

/// Found by the SQLite check: three operations sent into an outage waited out the
/// daemons' busy timeout one after the other, the scenario ran 8 s past its planned end,
/// and a run due after that end was judged against due times that stopped at it.
#[test]
fn a_scenario_carried_past_its_planned_end_is_judged_to_its_real_end() {
    let _turn = TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    check_seeds(
        Store::Sqlite,
        "a_scenario_carried_past_its_planned_end_is_judged_to_its_real_end",
        Box::new(std::iter::once(500_696_155_502)),
        Duration::ZERO,
    );
}

#[derive(Clone, Copy, Debug)]
enum Store {
    Sqlite,
    Shared(Db),
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|value| {
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} is a number"))
    })
}

fn check_store(store: Store, test: &str) {
    let _turn = TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Store::Shared(db) = store {
        let place = Place::new(db, "lreal");
        let reached = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), place.open())
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|opened| opened.map_err(|error| error.to_string()))
        });
        match reached {
            Ok(_) => runtime.block_on(place.clean()),
            Err(error) => {
                let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
                assert!(!required, "{db:?}: {error} (KAIROS_REQUIRE_SERVICES=1)");
                println!("SKIP {db:?}: {error}");
                return;
            }
        }
    }
    let budget = Duration::from_secs(env_number("KAIROS_REAL_CHECK_SECONDS").unwrap_or(15));
    let seeds: Box<dyn Iterator<Item = u64>> = match env_number("KAIROS_SEED") {
        Some(seed) => Box::new(std::iter::once(seed)),
        None => {
            let base = env_number("KAIROS_SEED_BASE").unwrap_or_else(|| fastrand::u64(..1 << 40));
            Box::new(base..)
        }
    };
    drop(runtime);
    check_seeds(store, test, seeds, budget);
}

/// Plays the scenarios of `seeds` until `budget` has passed (at least one), and fails
/// with the report of each that broke a promise. The caller holds `TURNS`.
fn check_seeds(store: Store, test: &str, seeds: Box<dyn Iterator<Item = u64>>, budget: Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // reqwest is built without a default TLS provider (plain HTTP here anyway).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = std::time::Instant::now();
    let mut played = 0;
    let mut failures = Vec::new();
    for seed in seeds {
        let scenario = generate(seed);
        let shown = describe(&scenario, store);
        println!("{test}: {shown}");
        let (observed, found) = runtime.block_on(play(store, &scenario));
        played += 1;
        if found.is_empty() {
            println!(
                "{test}: seed {seed}: {} runs, {} records, no discrepancy",
                observed.executions.len(),
                observed.records.len()
            );
        } else {
            let mut report = format!("{shown}{}", observed.timeline());
            for discrepancy in &found {
                report.push_str(&format!("  {discrepancy}\n"));
            }
            report.push_str(&format!(
                "  replay: KAIROS_SEED={seed} cargo test --test lifecycle_real {test} -- --nocapture\n"
            ));
            println!("{test}: seed {seed} broke a promise:\n{report}");
            failures.push(report);
        }
        if started.elapsed() >= budget || std::env::var_os("KAIROS_SEED").is_some() {
            break;
        }
    }
    println!(
        "{test}: {played} scenario(s) in {:.0?}, {} with a discrepancy",
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {played} scenario(s) broke a promise:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// Scenarios on wall-clock time.

/// A scenario as the simulated checker shows it, naming the store it plays on here
/// (the simulated checker's scenarios know only its own stores).
fn describe(scenario: &Scenario, store: Store) -> String {
    let name = match store {
        Store::Sqlite => "SQLite".to_owned(),
        Store::Shared(db) => format!("{db:?}"),
    };
    scenario
        .to_string()
        .replacen("on Sqlite", &format!("on {name}, real daemons"), 1)
}

/// The scenario of `seed` for real daemons: like the simulated checker's
/// (`scenario::generate`), on a coarser grid. Fire times are whole seconds and
/// operations are sent half a second past one, so an answer that takes less than half
/// a second never straddles a fire time; a new trigger's first time is at least 1.5 s
/// after its operation. No clock jumps (the wall clock is the machine's), and no job
/// operation during a store outage (it would wait for the store and answer late).
fn generate(seed: u64) -> Scenario {
    let mut rng = fastrand::Rng::with_seed(seed);
    let nodes = rng.usize(1..=3);
    let horizon: Ms = rng.i64(10..=20) * 1000;
    let end = horizon + 6_000;
    let jobs = rng.usize(1..=4);
    let op_time =
        |rng: &mut fastrand::Rng, from: Ms, to: Ms| rng.i64(from / 1000..to / 1000) * 1000 + 500;
    let mut ops = Vec::new();
    let mut kill = false;
    let mut outage: Option<(Ms, Ms)> = None;
    if rng.bool() {
        let at = op_time(&mut rng, 2_000, horizon - 3_000);
        let length = rng.i64(1..=6) * 1000;
        outage = Some((at, at + length));
        ops.push(Op {
            at,
            node: 0,
            kind: OpKind::Outage(length),
        });
    }
    if rng.bool() {
        kill = true;
        let successor = if nodes == 1 || rng.bool() {
            Some(rng.i64(1..=4) * 1000)
        } else {
            None
        };
        ops.push(Op {
            at: op_time(&mut rng, 2_000, horizon - 3_000),
            node: rng.usize(..nodes),
            kind: OpKind::Kill(successor),
        });
    }
    for job in 0..jobs {
        let at = if rng.u8(..4) == 0 {
            op_time(&mut rng, 0, horizon / 2)
        } else {
            500
        };
        let def = JobDef {
            trigger: trigger(&mut rng, at),
            // Kills included: a started run of a job that allows several at once is
            // run again from its instance slot (docs/lifecycle.md, "Held until the
            // run ends").
            max_instances: if rng.u8(..3) == 0 { rng.u32(2..=3) } else { 1 },
            coalesce: rng.u8(..4) != 0,
            grace: (rng.u8(..4) == 0).then(|| rng.i64(1..=3) * 1000),
            work: work(&mut rng),
            retry: None,
            overlap: Overlap::Skip,
        };
        ops.push(Op {
            at,
            node: rng.usize(..nodes),
            kind: OpKind::Add(job, def),
        });
    }
    for _ in 0..rng.usize(0..=10) {
        let at = op_time(&mut rng, 1_000, horizon);
        let job = rng.usize(..jobs);
        let kind = match rng.u8(..12) {
            0 | 1 => OpKind::Pause(job),
            2 | 3 => OpKind::Resume(job),
            4 | 5 => OpKind::Reschedule(job, trigger(&mut rng, at)),
            6 => OpKind::Remove(job),
            7 | 8 => OpKind::RunNow(job),
            _ => OpKind::Modify(
                job,
                work(&mut rng),
                (!kill && rng.u8(..3) == 0).then(|| rng.u32(1..=3)),
            ),
        };
        let during_outage = outage.is_some_and(|(from, to)| at >= from - 1_000 && at <= to + 1_000);
        if !during_outage {
            ops.push(Op {
                at,
                node: rng.usize(..nodes),
                kind,
            });
        }
    }
    ops.sort_by_key(|op| op.at);
    Scenario {
        seed,
        store: StoreKind::Sqlite,
        nodes,
        end,
        ops,
    }
}

/// A trigger whose first fire time is at least 1.5 s after `now` (half a second past
/// a whole second), on whole seconds.
fn trigger(rng: &mut fastrand::Rng, now: Ms) -> Trig {
    let first = now - 500 + 2_000;
    if rng.u8(..4) == 0 {
        Trig::At {
            at: first + rng.i64(0..=12) * 1000,
        }
    } else {
        Trig::Every {
            every: rng.i64(1..=4) * 1000,
            start: first + rng.i64(0..=3) * 1000,
        }
    }
}

fn work(rng: &mut fastrand::Rng) -> Work {
    let ms = match rng.u8(..4) {
        0 => rng.i64(1..5) * 100,
        1 => rng.i64(5..15) * 100,
        2 => rng.i64(15..40) * 100,
        _ => 50,
    };
    Work {
        ms,
        fail: rng.u8(..6) == 0,
    }
}

/// A trigger moved by `by` ms (an operation sent later than planned keeps its
/// distance to its trigger's first time).
fn shifted(trigger: Trig, by: Ms) -> Trig {
    match trigger {
        Trig::At { at } => Trig::At { at: at + by },
        Trig::Every { every, start } => Trig::Every {
            every,
            start: start + by,
        },
    }
}

// ---------------------------------------------------------------------------------
// A store that can be cut off.

/// A TCP proxy between the daemons and PostgreSQL or Redis: cut, it drops every open
/// connection and closes each new one at once, so the daemons see the server go away.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let down = Arc::clone(&down);
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let handle = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    lock(&connections).push(handle);
                }
            }
        });
        Proxy {
            port,
            down,
            connections,
            accept,
        }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for connection in lock(&self.connections).drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where one scenario's store lives, and how the daemons reach it.
struct Backing {
    /// The URL and prefix the daemons use (through the proxy on a shared store).
    daemon_url: String,
    prefix: String,
    /// The URL the checker reads the records from.
    direct_url: String,
    place: Option<Place>,
    proxy: Option<Proxy>,
    /// An SQLite outage: a connection holding `BEGIN EXCLUSIVE`.
    held: Option<sqlx::SqliteConnection>,
}

impl Backing {
    async fn new(store: Store, dir: &Path) -> Backing {
        match store {
            Store::Sqlite => {
                let url = format!("sqlite://{}", dir.join("kairos.db").display());
                Backing {
                    daemon_url: url.clone(),
                    prefix: String::new(),
                    direct_url: url,
                    place: None,
                    proxy: None,
                    held: None,
                }
            }
            Store::Shared(db) => {
                let place = Place::new(db, "lreal");
                let url = url::Url::parse(&place.url).unwrap();
                let upstream = format!(
                    "{}:{}",
                    url.host_str().unwrap_or("127.0.0.1"),
                    url.port_or_known_default().unwrap_or(0)
                );
                let proxy = Proxy::start(upstream).await;
                let mut through = url.clone();
                through.set_host(Some("127.0.0.1")).unwrap();
                through.set_port(Some(proxy.port)).unwrap();
                Backing {
                    daemon_url: through.to_string(),
                    prefix: place.prefix.clone(),
                    direct_url: place.url.clone(),
                    place: Some(place),
                    proxy: Some(proxy),
                    held: None,
                }
            }
        }
    }

    /// Starts an outage; false if it could not be started.
    async fn cut(&mut self) -> bool {
        if let Some(proxy) = &self.proxy {
            proxy.cut();
            return true;
        }
        // SQLite: the daemons' writers wait behind the lock for their busy timeout,
        // then fail as unavailable.
        use sqlx::{Connection, Executor};
        let Ok(mut connection) = sqlx::SqliteConnection::connect(&self.direct_url).await else {
            return false;
        };
        if connection.execute("BEGIN EXCLUSIVE").await.is_err() {
            return false;
        }
        self.held = Some(connection);
        true
    }

    async fn restore(&mut self) {
        if let Some(proxy) = &self.proxy {
            proxy.restore();
        }
        if let Some(mut connection) = self.held.take() {
            use sqlx::{Connection, Executor};
            let _ = connection.execute("ROLLBACK").await;
            let _ = connection.close().await;
        }
    }

    async fn records(&self) -> Result<Vec<RunRecord>, String> {
        let options = OpenOptions {
            prefix: self.prefix.clone(),
            ..OpenOptions::default()
        };
        let store: Arc<dyn JobStore> = kairos::store::open(&self.direct_url, &options)
            .await
            .map_err(|error| error.to_string())?;
        store
            .runs(None, 1_000_000)
            .await
            .map_err(|error| error.to_string())
    }

    async fn clean(&mut self) {
        self.restore().await;
        if let Some(place) = &self.place {
            place.clean().await;
        }
    }
}

// ---------------------------------------------------------------------------------
// The daemons.

struct Node {
    dir: PathBuf,
    incarnation: usize,
    daemon: Option<Daemon>,
    api: String,
}

fn write_config(dir: &Path, index: usize, backing: &Backing) {
    write(
        dir,
        "config.toml",
        &format!(
            r#"[scheduler]
node_id = "real-check-{index}"
lease = "20s"
heartbeat = "{HEARTBEAT}ms"
node_timeout = "{NODE_TIMEOUT}ms"
poll_interval = "{POLL}ms"
fire_ahead = "{FIRE_AHEAD}ms"
shutdown_timeout = "2s"

[jobstores.default]
url = "{url}"
prefix = "{prefix}"

[executors.default]
type = "threadpool"
max_workers = 16

[api]
listen = "127.0.0.1:0"
token = "{API_TOKEN}"
allowed_tasks = ["command"]
"#,
            url = backing.daemon_url,
            prefix = backing.prefix,
        ),
    );
}

fn start_node(node: &mut Node, index: usize) {
    let name = format!("{index}.{}", node.incarnation);
    let daemon = Daemon::start_with_env(&node.dir, &[("KAIROS_CHECK_NODE", &name)]);
    node.api = daemon.api_url();
    node.daemon = Some(daemon);
}

/// The shell line of a job: a start line, the work, an end line, the exit status.
fn command(log: &Path, work: Work) -> Value {
    let log = log.display();
    let line = format!(
        "echo \"start $KAIROS_RUN_ID $KAIROS_JOB_ID $KAIROS_SCHEDULED_TIME $KAIROS_CHECK_NODE $$ $(date +%s%N)\" >> '{log}'; \
         sleep {seconds}; \
         echo \"end $KAIROS_RUN_ID $$ $(date +%s%N) {status}\" >> '{log}'; exit {status}",
        seconds = work.ms as f64 / 1000.0,
        status = u8::from(work.fail),
    );
    json!({"shell": true, "command": line, "inherit_env": true})
}

/// One start line of `runs.log`, with its end if it came.
#[derive(Clone, Debug)]
struct Line {
    run_id: String,
    job_id: String,
    scheduled: DateTime<Utc>,
    node: usize,
    incarnation: usize,
    pid: u32,
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    /// Whether it exited non-zero (its work was to fail).
    failed: bool,
}

fn nanos(text: &str) -> Option<DateTime<Utc>> {
    let nanos: i64 = text.parse().ok()?;
    Some(DateTime::from_timestamp_nanos(nanos))
}

/// The runs in `runs.log`, matched start to end by run id and pid.
fn read_log(log: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines: Vec<Line> = Vec::new();
    let mut ends: BTreeMap<(String, u32), (DateTime<Utc>, bool)> = BTreeMap::new();
    for row in text.lines() {
        let words: Vec<&str> = row.split_whitespace().collect();
        match words.as_slice() {
            ["start", run_id, job_id, scheduled, node, pid, at] => {
                let Some((node, incarnation)) = node.split_once('.') else {
                    continue;
                };
                let (Ok(scheduled), Some(started), Ok(node), Ok(incarnation), Ok(pid)) = (
                    DateTime::parse_from_rfc3339(scheduled),
                    nanos(at),
                    node.parse(),
                    incarnation.parse(),
                    pid.parse(),
                ) else {
                    continue;
                };
                lines.push(Line {
                    run_id: (*run_id).to_owned(),
                    job_id: (*job_id).to_owned(),
                    scheduled: scheduled.with_timezone(&Utc),
                    node,
                    incarnation,
                    pid,
                    started,
                    finished: None,
                    failed: false,
                });
            }
            ["end", run_id, pid, at, status] => {
                if let (Ok(pid), Some(at)) = (pid.parse(), nanos(at)) {
                    ends.insert(((*run_id).to_owned(), pid), (at, *status != "0"));
                }
            }
            _ => {}
        }
    }
    for line in &mut lines {
        if let Some((at, failed)) = ends.get(&(line.run_id.clone(), line.pid)) {
            line.finished = Some(*at);
            line.failed = *failed;
        }
    }
    lines
}

/// `kill -9` of a node and of the runs it had going (a host that dies takes its
/// processes with it; the runs' shells lead process groups of their own, so they would
/// outlive the daemon otherwise).
fn kill_node(node: &mut Node, index: usize, log: &Path) {
    if let Some(mut daemon) = node.daemon.take() {
        let _ = daemon.child.kill();
        let _ = daemon.child.wait();
    }
    // A shell the daemon spawned just before it died writes its start line at once.
    std::thread::sleep(Duration::from_millis(100));
    for line in read_log(log) {
        if line.node == index && line.incarnation == node.incarnation && line.finished.is_none() {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", line.pid)])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------
// Playing a scenario.

enum Event {
    Op(usize),
    StoreUp,
    Restart(usize),
}

struct Player {
    t0: DateTime<Utc>,
    client: reqwest::Client,
    log: PathBuf,
}

impl Player {
    fn now(&self) -> Ms {
        (Utc::now() - self.t0).num_milliseconds()
    }

    async fn sleep_until(&self, at: Ms) {
        let wait = at - self.now();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    /// Sends a job operation through `api`; the answer as the model takes it.
    async fn send(&self, api: &str, kind: &OpKind) -> Result<Option<String>, String> {
        let (method, path, body) = match kind {
            OpKind::Add(job, def) => {
                let mut options = json!({
                    "max_instances": def.max_instances,
                    "coalesce": def.coalesce,
                });
                if let Some(grace) = def.grace {
                    options["misfire_grace_time"] = json!(format!("{}s", grace / 1000));
                }
                (
                    reqwest::Method::POST,
                    "/jobs".to_owned(),
                    Some(json!({
                        "id": job_id(*job),
                        "task": "command",
                        "args": command(&self.log, def.work),
                        "trigger": def.trigger.spec(self.t0),
                        "options": options,
                    })),
                )
            }
            OpKind::Modify(job, work, max_instances) => {
                let mut body = json!({"args": command(&self.log, *work)});
                if let Some(limit) = max_instances {
                    body["max_instances"] = json!(limit);
                }
                (
                    reqwest::Method::PATCH,
                    format!("/jobs/{}", job_id(*job)),
                    Some(body),
                )
            }
            OpKind::Pause(job) => (
                reqwest::Method::POST,
                format!("/jobs/{}/pause", job_id(*job)),
                None,
            ),
            OpKind::Resume(job) => (
                reqwest::Method::POST,
                format!("/jobs/{}/resume", job_id(*job)),
                None,
            ),
            OpKind::Reschedule(job, trigger) => (
                reqwest::Method::POST,
                format!("/jobs/{}/reschedule", job_id(*job)),
                Some(json!({"trigger": trigger.spec(self.t0)})),
            ),
            OpKind::Remove(job) => (
                reqwest::Method::DELETE,
                format!("/jobs/{}", job_id(*job)),
                None,
            ),
            OpKind::RunNow(job) => (
                reqwest::Method::POST,
                format!("/jobs/{}/run", job_id(*job)),
                None,
            ),
            OpKind::Outage(_)
            | OpKind::Kill(_)
            | OpKind::KillAtRunStart(..)
            | OpKind::KillAtWriteBack(..)
            | OpKind::ClockJump(_) => return Ok(None),
        };
        let mut request = self
            .client
            .request(method, format!("{api}{path}"))
            .bearer_auth(API_TOKEN)
            .timeout(Duration::from_secs(20));
        // The API wants the JSON content type on every change, even without a body.
        request = request.header("content-type", "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.map_err(|error| error.to_string())?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        if let OpKind::RunNow(_) = kind {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Ok(Some(body["run_id"].as_str().unwrap_or("").to_owned()));
        }
        Ok(None)
    }
}

/// Plays `scenario` on `store` and checks it; what was observed, in model time, and
/// every broken promise.
async fn play(store: Store, scenario: &Scenario) -> (Observed, Vec<Discrepancy>) {
    let dir = temp_dir(&format!("lreal-{}", scenario.seed));
    let log = dir.join("runs.log");
    let mut backing = Backing::new(store, &dir).await;
    let mut nodes: Vec<Node> = Vec::new();
    for index in 0..scenario.nodes {
        let node_dir = dir.join(format!("node-{index}"));
        write_config(&node_dir, index, &backing);
        let mut node = Node {
            dir: node_dir,
            incarnation: 0,
            daemon: None,
            api: String::new(),
        };
        tokio::task::block_in_place(|| start_node(&mut node, index));
        nodes.push(node);
    }
    // Scenario time 0: the next whole second, a moment after every node is up.
    let t0 = (Utc::now() + TimeDelta::milliseconds(500))
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap()
        + TimeDelta::seconds(1);
    let player = Player {
        t0,
        client: reqwest::Client::new(),
        log: log.clone(),
    };
    let mut observed = Observed {
        fire_ahead: FIRE_AHEAD,
        slack: SLACK,
        same_instant: SAME_INSTANT,
        end: scenario.end,
        nodes: scenario.nodes,
        ..Observed::default()
    };
    let mut events: Vec<(Ms, Event)> = scenario
        .ops
        .iter()
        .enumerate()
        .map(|(index, op)| (op.at, Event::Op(index)))
        .collect();
    let mut outage_from: Option<Ms> = None;
    let mut dead: Vec<bool> = vec![false; nodes.len()];
    let mut ops = scenario.ops.clone();
    // When each applied operation was sent.
    let mut sent_at: Vec<Ms> = Vec::new();
    loop {
        events.sort_by_key(|(at, _)| *at);
        if events.is_empty() {
            break;
        }
        let (planned, event) = events.remove(0);
        player.sleep_until(planned).await;
        match event {
            Event::StoreUp => {
                backing.restore().await;
                if let Some(from) = outage_from.take() {
                    observed.outages.push((from, player.now()));
                }
            }
            Event::Restart(index) if outage_from.is_some() => {
                // A daemon whose store is unavailable at start exits (systemd starts it
                // again, `Restart=on-failure`): the successor starts once the store is
                // back.
                let up = events
                    .iter()
                    .find(|(_, event)| matches!(event, Event::StoreUp))
                    .map_or(planned + 1_000, |(at, _)| *at);
                events.push((up + 500, Event::Restart(index)));
            }
            Event::Restart(index) => {
                nodes[index].incarnation += 1;
                tokio::task::block_in_place(|| start_node(&mut nodes[index], index));
                dead[index] = false;
                let now = player.now();
                if let Some(kill) = observed
                    .kills
                    .iter_mut()
                    .rev()
                    .find(|kill| kill.node == index)
                {
                    kill.taken_over = now;
                }
            }
            Event::Op(index) => {
                let op = &mut ops[index];
                match op.kind {
                    OpKind::Outage(length) => {
                        let from = player.now();
                        if backing.cut().await {
                            outage_from = Some(from);
                            events.push((player.now() + length, Event::StoreUp));
                        } else {
                            observed
                                .trouble
                                .push("could not start an outage".to_owned());
                        }
                    }
                    OpKind::Kill(successor) => {
                        let at = player.now();
                        let incarnation = nodes[op.node].incarnation;
                        tokio::task::block_in_place(|| {
                            kill_node(&mut nodes[op.node], op.node, &log)
                        });
                        dead[op.node] = true;
                        let taken_over = match successor {
                            Some(after) => {
                                events.push((at + after, Event::Restart(op.node)));
                                // Set when the successor is up.
                                Ms::MAX / 4
                            }
                            None => at + NODE_TIMEOUT + 2 * HEARTBEAT + POLL,
                        };
                        observed.kills.push(Kill {
                            node: op.node,
                            incarnation,
                            at,
                            taken_over,
                        });
                    }
                    _ if dead.iter().all(|dead| *dead) => {
                        // Every node is down (one node, killed): the operation waits for
                        // its successor.
                        events.push((planned + 1_000, Event::Op(index)));
                    }
                    _ => {
                        // Sent half a second past a whole second: a late driver waits for
                        // the next one, and moves the operation's trigger along.
                        let mut send_at = planned;
                        while player.now() > send_at + 200 {
                            send_at += 1_000;
                        }
                        player.sleep_until(send_at).await;
                        let by = send_at - scenario.ops[index].at;
                        match &mut op.kind {
                            OpKind::Add(_, def) => def.trigger = shifted(def.trigger, by),
                            OpKind::Reschedule(_, trigger) => *trigger = shifted(*trigger, by),
                            _ => {}
                        }
                        // Through the node it names, or a live one if that one is down.
                        let through = (0..nodes.len())
                            .map(|step| (op.node + step) % nodes.len())
                            .find(|node| !dead[*node])
                            .unwrap_or(op.node);
                        op.node = through;
                        let sent = player.now();
                        let result = player.send(&nodes[through].api, &op.kind).await;
                        let answered = player.now();
                        // An answer that straddles a whole second leaves the fire time
                        // in between to either side: a disturbed window.
                        if sent.div_euclid(1000) != answered.div_euclid(1000) {
                            observed.windows.push((sent, answered));
                        }
                        if let (OpKind::Reschedule(_, trigger), Ok(_)) = (&op.kind, &result) {
                            let first = match trigger {
                                Trig::At { at } => *at,
                                Trig::Every { start, .. } => *start,
                            };
                            if answered >= first {
                                observed.trouble.push(format!(
                                    "a reschedule sent at +{sent} ms answered at +{answered} ms, \
                                     after its new trigger's first time +{first} ms"
                                ));
                            }
                        }
                        // A stretch opens when the operation is sent (what runs from then
                        // on may be its doing) and closes when it has answered.
                        let at = match op.kind {
                            OpKind::Add(..) | OpKind::Resume(_) => sent,
                            _ => answered,
                        };
                        observed.applied.push(Applied {
                            op: op.clone(),
                            at,
                            result,
                        });
                        sent_at.push(sent);
                    }
                }
            }
        }
    }
    player.sleep_until(scenario.end).await;
    // What was recorded, then what ran, while the daemons still run: every run a record
    // was read of has its start line in the log by then.
    match backing.records().await {
        Ok(records) => observed.records = records,
        Err(error) => observed
            .trouble
            .push(format!("reading the run records: {error}")),
    }
    let lines = read_log(&log);
    // Operations sent into a SQLite outage wait out the daemons' busy timeout, one after
    // the other, and can carry the scenario past its planned end: the model's due times
    // reach as far as what was observed (as the simulated world's do).
    observed.end = observed.end.max(player.now());
    if let Some(from) = outage_from {
        observed.outages.push((from, player.now()));
    }
    for (index, node) in nodes.iter_mut().enumerate() {
        tokio::task::block_in_place(|| kill_node(node, index, &log));
    }
    backing.clean().await;
    let daemon_logs: Vec<String> = nodes
        .iter()
        .map(|node| std::fs::read_to_string(node.dir.join("daemon.log")).unwrap_or_default())
        .collect();

    // Into model time: scenario time 0 is the model's t0.
    let shift = world::t0() - t0;
    let to_model = |instant: DateTime<Utc>| instant + shift;
    // The daemon's view of when a run executed, from its record: it started the run a
    // moment before the task noted it, and freed its slot a moment after the task's
    // last note. The checks of `max_instances` and of skips judge what the daemon saw.
    let recorded: BTreeMap<&str, (DateTime<Utc>, DateTime<Utc>)> = observed
        .records
        .iter()
        .filter_map(|record| {
            record
                .started_at
                .map(|started| (record.run_id.as_str(), (started, record.finished_at)))
        })
        .collect();
    let mut executions = Vec::new();
    for line in lines {
        // A run of a killed node ends with the kill as far as anyone can tell: its end
        // line may come in the moment between the daemon's death and the shell's.
        let killed = observed
            .kills
            .iter()
            .find(|kill| kill.node == line.node && kill.incarnation == line.incarnation);
        let finished = line.finished.filter(|finished| {
            killed.is_none_or(|kill| (*finished - t0).num_milliseconds() < kill.at)
        });
        let (started, finished) = match recorded.get(line.run_id.as_str()) {
            Some((started, ended))
                if *started <= line.started
                    && line.started - *started <= TimeDelta::milliseconds(START_TOLERANCE) =>
            {
                (*started, finished.map(|finished| finished.max(*ended)))
            }
            _ => (line.started, finished),
        };
        executions.push(Execution {
            node: line.node,
            incarnation: line.incarnation,
            job_id: line.job_id,
            run_id: line.run_id,
            scheduled: to_model(line.scheduled),
            started: to_model(started),
            finished: finished.map(to_model),
            failed: line.failed,
            stopped_early: false,
        });
    }
    observed.executions = executions;
    for record in &mut observed.records {
        record.scheduled_time = to_model(record.scheduled_time);
        record.started_at = record.started_at.map(to_model);
        record.finished_at = to_model(record.finished_at);
    }
    run_now_at_its_time(&mut observed, &sent_at);
    let mut found = model::check(&observed);
    // The daemon's own note of a start is never early either.
    for record in &observed.records {
        if let Some(started) = record.started_at {
            if started < record.scheduled_time {
                found.push(Discrepancy {
                    promise: "never early",
                    job: record.job_id.clone(),
                    time: world::ms_of(record.scheduled_time),
                    detail: format!("recorded as started at +{} ms", world::ms_of(started)),
                });
            }
        }
    }
    if !found.is_empty() || std::env::var_os("KAIROS_TRACE").is_some() {
        println!("{}", observed.timeline());
        for (index, text) in daemon_logs.iter().enumerate() {
            println!(
                "--- daemon log of node {index} (seed {}):\n{text}",
                scenario.seed
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (observed, found)
}

/// A "run now" is for the instant the daemon took it, somewhere between the request and
/// its answer (the model knows it by the instant it answered, one and the same on
/// simulated time): that instant, read from the run or its record. A "run now" of a
/// failed one-off job answers without a run id: it makes the job due again at that
/// instant, so the instant is the scheduled time of the job's first run inside the
/// request's window.
fn run_now_at_its_time(observed: &mut Observed, sent_at: &[Ms]) {
    for (applied, sent) in observed.applied.iter_mut().zip(sent_at) {
        let (OpKind::RunNow(job), Ok(Some(run_id))) = (&applied.op.kind, &applied.result) else {
            continue;
        };
        let (sent, answered) = (*sent, applied.at);
        let within = |at: &Ms| sent <= *at && *at <= answered;
        let scheduled = if run_id.is_empty() {
            let job_id = job_id(*job);
            observed
                .executions
                .iter()
                .filter(|run| run.job_id == job_id)
                .map(|run| world::ms_of(run.scheduled))
                .chain(
                    observed
                        .records
                        .iter()
                        .filter(|record| record.job_id == job_id)
                        .map(|record| world::ms_of(record.scheduled_time)),
                )
                .filter(within)
                .min()
        } else {
            observed
                .executions
                .iter()
                .find(|run| run.run_id == *run_id)
                .map(|run| run.scheduled)
                .or_else(|| {
                    observed
                        .records
                        .iter()
                        .find(|record| record.run_id == *run_id)
                        .map(|record| record.scheduled_time)
                })
                .map(world::ms_of)
                .filter(within)
        };
        if let Some(scheduled) = scheduled {
            applied.at = scheduled;
        }
    }
}
