//! The driver: builds the nodes of a scenario on one shared store, plays its
//! operations and faults on simulated time, and collects what happened (the
//! operations' answers, the ground-truth executions and the store's run records).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kairos::clock::Clock;
use kairos::history::RunRecord;
use kairos::job::{JobChanges, JobOptions, JobSpec};
use kairos::scheduler::{Membership, Scheduler};
use kairos::store::memory::MemoryStore;
use kairos::store::prelude::*;
use kairos::trigger::TriggerSpec;

use super::scenario::{job_id, Ms, Op, OpKind, Scenario, StoreKind, Trig};
use super::sim::{
    hold_time_while_the_store_works, lock, settle, work_tasks, AimedKills, Execution, Executions,
    KillPoint, NodeStore, SimClock, StoreFaults,
};

/// 2030-01-01T00:00:00Z: scenario time 0.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000, 0).unwrap_or_default()
}

pub fn ms_of(instant: DateTime<Utc>) -> Ms {
    (instant - t0()).num_milliseconds()
}

fn instant(ms: Ms) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds(ms)
}

/// In a cluster, a node is reaped this long after its last heartbeat.
pub const NODE_TIMEOUT: Ms = 3_000;
pub const HEARTBEAT: Ms = 1_000;
pub const POLL: Ms = 1_000;

/// An operation as it was applied: when, and what the scheduler answered.
#[derive(Clone, Debug)]
pub struct Applied {
    pub op: Op,
    pub at: Ms,
    /// `Ok` with the run id for "run now"; `Err` with the error.
    pub result: Result<Option<String>, String>,
}

#[derive(Clone, Debug)]
pub struct Kill {
    pub node: usize,
    pub incarnation: usize,
    pub at: Ms,
    /// By when the dead node's work is free for others: its successor's start, or
    /// the reaping deadline.
    pub taken_over: Ms,
}

/// Everything the checker judges.
#[derive(Debug, Default)]
pub struct Observed {
    pub applied: Vec<Applied>,
    pub executions: Vec<Execution>,
    pub records: Vec<RunRecord>,
    /// The jobs in the store at the end (a one-off job whose attempts were used up
    /// stays there, `failed`).
    pub jobs: Vec<kairos::job::Job>,
    pub kills: Vec<Kill>,
    pub outages: Vec<(Ms, Ms)>,
    /// (when, how far) the clock jumped.
    pub jumps: Vec<(Ms, Ms)>,
    pub fire_ahead: Ms,
    pub end: Ms,
    /// How many nodes share the store: a waiting run (`overlap`) learns of a run's end
    /// on another node only at its next claim.
    pub nodes: usize,
    /// The driver's own trouble (the world never went quiet ...).
    pub trouble: Vec<String>,
    /// More disturbed windows the driver knows of (against real daemons: an
    /// operation whose answer took long enough to straddle a fire time).
    pub windows: Vec<(Ms, Ms)>,
    /// How much later than on simulated time things may come, in ms, everywhere the
    /// model allows lateness (0 on simulated time; against real daemons, the tolerance
    /// of wall-clock scheduling, docs/lifecycle-checker.md "Against real daemons").
    /// Never applied to "never early".
    pub slack: Ms,
    /// How far apart, in ms, two instants the model takes as one may be: a catch-up's
    /// next run starts the instant the one before ended (0 on simulated time; against
    /// real daemons, the few ms between a record's end and the next run's start).
    pub same_instant: Ms,
}

impl Observed {
    /// One line per execution and record, in time order: what `KAIROS_TRACE=short`
    /// prints for a replayed scenario.
    pub fn timeline(&self) -> String {
        let mut lines: Vec<(Ms, String)> = Vec::new();
        for run in &self.executions {
            lines.push((
                ms_of(run.started),
                format!(
                    "{:>6}  exec   {} at +{} on node {}.{} until {}{}",
                    ms_of(run.started),
                    run.job_id,
                    ms_of(run.scheduled),
                    run.node,
                    run.incarnation,
                    run.finished
                        .map_or("(never)".to_owned(), |end| format!("+{}", ms_of(end))),
                    if run.stopped_early {
                        " stopped"
                    } else if run.failed {
                        " failed"
                    } else {
                        ""
                    },
                ),
            ));
        }
        for record in &self.records {
            lines.push((
                ms_of(record.finished_at),
                format!(
                    "{:>6}  record {} at +{} {:?} attempt {}{}",
                    ms_of(record.finished_at),
                    record.job_id,
                    ms_of(record.scheduled_time),
                    record.outcome,
                    record.attempt,
                    record
                        .error
                        .as_deref()
                        .map_or(String::new(), |e| format!(": {e}")),
                ),
            ));
        }
        for (at, until) in &self.outages {
            lines.push((*at, format!("{at:>6}  outage until +{until}")));
        }
        for (at, by) in &self.jumps {
            lines.push((*at, format!("{at:>6}  clock jumps by {by} ms")));
        }
        for kill in &self.kills {
            lines.push((
                kill.at,
                format!(
                    "{:>6}  node {}.{} killed (work free at +{})",
                    kill.at, kill.node, kill.incarnation, kill.taken_over
                ),
            ));
        }
        for applied in &self.applied {
            lines.push((
                applied.at,
                format!(
                    "{:>6}  op     {:?} -> {:?}",
                    applied.at, applied.op.kind, applied.result
                ),
            ));
        }
        lines.sort_by_key(|(at, _)| *at);
        let mut out = String::new();
        for (_, line) in lines {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

struct Node {
    incarnation: usize,
    scheduler: Scheduler,
    killed: Arc<AtomicBool>,
}

struct World {
    clock: SimClock,
    store: Arc<dyn JobStore>,
    faults: Arc<StoreFaults>,
    log: Executions,
    nodes: Vec<Node>,
    cluster: bool,
    /// A kill aimed at a run's start, armed and fired ([`OpKind::KillAtRunStart`]).
    aim: AimedKills,
}

impl World {
    fn node(&self, index: usize, incarnation: usize) -> Node {
        let killed = Arc::new(AtomicBool::new(false));
        let store = NodeStore {
            inner: Arc::clone(&self.store),
            faults: Arc::clone(&self.faults),
            killed: Arc::clone(&killed),
            aim: Arc::clone(&self.aim),
            node: (index, incarnation),
            clock: self.clock.clone(),
        };
        let tasks = work_tasks(
            self.clock.clone(),
            Arc::clone(&self.log),
            index,
            incarnation,
            Arc::clone(&killed),
            Arc::clone(&self.aim),
        );
        let mut builder = Scheduler::builder()
            .id(format!("node-{index}"))
            .clock(self.clock.clone())
            .store("default", store)
            .tasks(tasks);
        if self.cluster {
            builder = builder
                .membership(Membership {
                    heartbeat: Duration::from_millis(HEARTBEAT as u64),
                    node_timeout: Duration::from_millis(NODE_TIMEOUT as u64),
                    host: "sim".to_owned(),
                })
                .poll_interval(Duration::from_millis(POLL as u64));
        }
        let scheduler = builder.build();
        scheduler.start();
        Node {
            incarnation,
            scheduler,
            killed,
        }
    }
}

fn trigger_spec(trigger: &Trig) -> TriggerSpec {
    serde_json::from_value(trigger.spec(t0())).unwrap_or_else(|error| panic!("{error}"))
}

async fn apply(world: &World, op: &Op) -> Result<Option<String>, String> {
    let scheduler = &world.nodes[op.node].scheduler;
    let show = |error: kairos::scheduler::SchedulerError| error.to_string();
    match &op.kind {
        OpKind::Add(job, def) => {
            let mut spec = JobSpec::new("work", trigger_spec(&def.trigger)).with_id(job_id(*job));
            spec.args = def.work.args();
            spec.options = JobOptions {
                max_instances: Some(def.max_instances),
                coalesce: Some(def.coalesce),
                misfire_grace_time: def.grace.map(|ms| Duration::from_millis(ms as u64)),
                retry: def.retry.map(|retry| retry.spec()),
                overlap: Some(def.overlap.spec()),
                ..JobOptions::default()
            };
            scheduler.add_job(spec).await.map(|_| None).map_err(show)
        }
        OpKind::Modify(job, work, max_instances) => {
            let changes = JobChanges {
                args: Some(work.args()),
                max_instances: *max_instances,
                ..JobChanges::default()
            };
            scheduler
                .modify_job(&job_id(*job), changes)
                .await
                .map(|_| None)
                .map_err(show)
        }
        OpKind::Pause(job) => scheduler
            .pause_job(&job_id(*job))
            .await
            .map(|_| None)
            .map_err(show),
        OpKind::Resume(job) => scheduler
            .resume_job(&job_id(*job))
            .await
            .map(|_| None)
            .map_err(show),
        OpKind::Reschedule(job, trigger) => scheduler
            .reschedule_job(&job_id(*job), trigger_spec(trigger))
            .await
            .map(|_| None)
            .map_err(show),
        OpKind::Remove(job) => scheduler
            .remove_job(&job_id(*job))
            .await
            .map(|_| None)
            .map_err(show),
        OpKind::RunNow(job) => scheduler
            .run_job_now(&job_id(*job))
            .await
            .map(Some)
            .map_err(show),
        OpKind::Outage(_)
        | OpKind::Kill(_)
        | OpKind::KillAtRunStart(..)
        | OpKind::KillAtWriteBack(..)
        | OpKind::ClockJump(_) => Ok(None),
    }
}

/// When the successor of a node killed at `at` takes its work over (`successor`: its
/// delay; `None`: the others reap it).
fn taken_over(at: Ms, successor: Option<Ms>) -> Ms {
    match successor {
        Some(after) => at + after,
        None => at + NODE_TIMEOUT + 2 * HEARTBEAT + POLL,
    }
}

/// Notes the kills fired at runs' starts since the last look: each is a kill at that
/// instant, with its successor's start scheduled.
fn note_fired_kills(world: &World, observed: &mut Observed, restarts: &mut Vec<(Ms, usize)>) {
    let fired = std::mem::take(&mut lock(&world.aim).fired);
    for (node, incarnation, started, successor) in fired {
        let at = ms_of(started);
        if let Some(after) = successor {
            restarts.push((at + after, node));
        }
        observed.kills.push(Kill {
            node,
            incarnation,
            at,
            taken_over: taken_over(at, successor),
        });
    }
}

/// What the driver does at an instant besides the scenario's operations.
enum Due {
    Op(usize),
    Restart(usize),
    StoreUp,
}

/// Plays `scenario` on a fresh current-thread runtime, with tokio's time paused once
/// the store is open.
pub fn run(scenario: &Scenario) -> Observed {
    // KAIROS_LOG=filter shows the scheduler's own log lines next to the timeline.
    if let Ok(filter) = std::env::var("KAIROS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|error| panic!("a runtime: {error}"));
    // One folder per play: written scenarios all have seed 0, and tests run at once.
    static PLAYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kairos-model-{}-{}-{}",
        std::process::id(),
        scenario.seed,
        PLAYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let observed = runtime.block_on(play(scenario, &dir));
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    observed
}

async fn open_store(kind: StoreKind, dir: &std::path::Path) -> Arc<dyn JobStore> {
    match kind {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Sqlite => {
            std::fs::create_dir_all(dir).unwrap_or_else(|error| panic!("{error}"));
            let url = format!("sqlite://{}", dir.join("kairos.db").display());
            // The pool's waits are on tokio's timer, which the scenario pauses and which
            // jumps ahead while the runtime idles, as it does while SQLite's own thread
            // opens a connection on a loaded machine: a wait that never ends in simulated
            // time keeps a slow connection from failing the scenario as an outage.
            let options = kairos::store::sql::SqlOptions {
                acquire_timeout: std::time::Duration::from_secs(365 * 24 * 3600),
                ..kairos::store::sql::SqlOptions::default()
            };
            kairos::store::sql::connect(&url, options)
                .await
                .unwrap_or_else(|error| panic!("{url}: {error}"))
        }
    }
}

async fn play(scenario: &Scenario, dir: &std::path::Path) -> Observed {
    let clock = SimClock::new(t0());
    // Opened on running time: SQLite's pool waits for its connections with a tokio
    // timeout, which paused time would fire at once while the driver thread works.
    let store = open_store(scenario.store, dir).await;
    tokio::time::pause();
    let mut world = World {
        clock: clock.clone(),
        store,
        faults: Arc::new(StoreFaults::default()),
        log: Arc::default(),
        nodes: Vec::new(),
        cluster: scenario.nodes > 1,
        aim: AimedKills::default(),
    };
    let mut observed = Observed {
        nodes: scenario.nodes,
        fire_ahead: world
            .store
            .fire_ahead()
            .as_millis()
            .try_into()
            .unwrap_or(Ms::MAX),
        ..Observed::default()
    };
    tokio::spawn(hold_time_while_the_store_works(Arc::clone(&world.faults)));
    for index in 0..scenario.nodes {
        let node = world.node(index, 0);
        world.nodes.push(node);
    }
    if !settle(&world.faults).await {
        observed
            .trouble
            .push("the nodes never settled at start".to_owned());
    }
    let tokio_start = tokio::time::Instant::now();
    // Scenario times shift by the clock jumps before them.
    let mut shift: Ms = 0;
    let mut next_op = 0;
    let mut restarts: Vec<(Ms, usize)> = Vec::new();
    let mut store_up: Option<Ms> = None;
    let mut outage_from: Option<Ms> = None;
    let mut end = scenario.end;
    loop {
        let now = ms_of(clock.now());
        let mut due: Option<(Ms, Due)> = None;
        let mut consider = |at: Ms, what: Due| {
            if due.as_ref().is_none_or(|(first, _)| at < *first) {
                due = Some((at, what));
            }
        };
        if let Some(op) = scenario.ops.get(next_op) {
            consider(op.at + shift, Due::Op(next_op));
        }
        for (at, node) in &restarts {
            consider(*at, Due::Restart(*node));
        }
        if let Some(at) = store_up {
            consider(at, Due::StoreUp);
        }
        // Rounded up: a retry's jittered wait ends between two milliseconds, and a
        // clock set short of it would wake nobody.
        let sleeper = clock.next_deadline().map(|deadline| {
            let ms = ms_of(deadline);
            if instant(ms) < deadline {
                ms + 1
            } else {
                ms
            }
        });
        let next = match (&due, sleeper) {
            (Some((at, _)), Some(sleep)) => (*at).min(sleep),
            (Some((at, _)), None) => *at,
            (None, Some(sleep)) => sleep,
            (None, None) => break,
        };
        if next > end {
            break;
        }
        if std::env::var_os("KAIROS_TRACE_STEPS").is_some() {
            eprintln!("step +{next} ms (sleeper {sleeper:?})");
        }
        if next > now {
            clock.set(instant(next));
            follow(tokio_start, next).await;
        }
        if !settle(&world.faults).await {
            observed
                .trouble
                .push(format!("never settled at +{next} ms"));
            break;
        }
        note_fired_kills(&world, &mut observed, &mut restarts);
        let Some((at, what)) = due.filter(|(at, _)| *at <= next) else {
            continue;
        };
        match what {
            Due::Op(index) => {
                next_op += 1;
                let op = &scenario.ops[index];
                let result = match op.kind {
                    OpKind::Outage(length) => {
                        world.faults.down.store(true, Ordering::SeqCst);
                        store_up = Some(at + length);
                        // Its end is noted when it comes (a clock jump may move it).
                        outage_from = Some(at);
                        Ok(None)
                    }
                    OpKind::Kill(successor) => {
                        let node = &world.nodes[op.node];
                        node.killed.store(true, Ordering::SeqCst);
                        if let Some(after) = successor {
                            restarts.push((at + after, op.node));
                        }
                        observed.kills.push(Kill {
                            node: op.node,
                            incarnation: node.incarnation,
                            at,
                            taken_over: taken_over(at, successor),
                        });
                        Ok(None)
                    }
                    OpKind::KillAtRunStart(job, successor) => {
                        lock(&world.aim).armed =
                            Some((job_id(job), KillPoint::RunStart, successor));
                        Ok(None)
                    }
                    OpKind::KillAtWriteBack(job, successor) => {
                        lock(&world.aim).armed =
                            Some((job_id(job), KillPoint::WriteBack, successor));
                        Ok(None)
                    }
                    OpKind::ClockJump(by) => {
                        clock.set(instant(at + by));
                        follow(tokio_start, at + by).await;
                        shift += by;
                        end += by;
                        for restart in &mut restarts {
                            restart.0 += by;
                        }
                        if let Some(up) = &mut store_up {
                            *up += by;
                        }
                        for kill in &mut observed.kills {
                            if kill.taken_over > at {
                                kill.taken_over += by;
                            }
                        }
                        observed.jumps.push((at, by));
                        Ok(None)
                    }
                    // A node killed at a run's start, which the scenario could not
                    // know of: what was sent through it goes through a live one.
                    _ if world.nodes[op.node].killed.load(Ordering::SeqCst) => {
                        match (0..world.nodes.len())
                            .find(|node| !world.nodes[*node].killed.load(Ordering::SeqCst))
                        {
                            Some(node) => {
                                let rerouted = Op { node, ..op.clone() };
                                let result = apply(&world, &rerouted).await;
                                observed.applied.push(Applied {
                                    op: rerouted,
                                    at,
                                    result,
                                });
                                if !settle(&world.faults).await {
                                    observed
                                        .trouble
                                        .push(format!("never settled after +{at} ms"));
                                    break;
                                }
                                note_fired_kills(&world, &mut observed, &mut restarts);
                                continue;
                            }
                            None => Err("no live node to send it through".to_owned()),
                        }
                    }
                    _ => apply(&world, op).await,
                };
                observed.applied.push(Applied {
                    op: op.clone(),
                    at,
                    result,
                });
            }
            Due::Restart(index) => {
                restarts.retain(|(_, node)| *node != index);
                let incarnation = world.nodes[index].incarnation + 1;
                let node = world.node(index, incarnation);
                // The zombie stays in the runtime, cut off from the store and its tasks:
                // a killed process does nothing more.
                world.nodes[index] = node;
            }
            Due::StoreUp => {
                world.faults.down.store(false, Ordering::SeqCst);
                if let Some(from) = outage_from.take() {
                    observed.outages.push((from, at));
                }
                store_up = None;
            }
        }
        if !settle(&world.faults).await {
            observed
                .trouble
                .push(format!("never settled after +{at} ms"));
            break;
        }
        note_fired_kills(&world, &mut observed, &mut restarts);
    }
    world.faults.down.store(false, Ordering::SeqCst);
    if let Some(from) = outage_from {
        observed.outages.push((from, ms_of(clock.now())));
    }
    observed.end = ms_of(clock.now()).max(end);
    observed.executions = lock(&world.log).clone();
    match world.store.runs(None, 1_000_000).await {
        Ok(records) => observed.records = records,
        Err(error) => observed
            .trouble
            .push(format!("reading the run records: {error}")),
    }
    match world.store.get_jobs().await {
        Ok(jobs) => observed.jobs = jobs,
        Err(error) => observed.trouble.push(format!("reading the jobs: {error}")),
    }
    observed
}

/// Brings tokio's paused clock to scenario time `ms` (it runs a little ahead, by the
/// settling sleeps, never behind): the record task's retry back-off sleeps on it, and
/// must see the outage last as long as the scheduler's clock does.
async fn follow(start: tokio::time::Instant, ms: Ms) {
    let target = start + Duration::from_millis(ms.max(0) as u64);
    let now = tokio::time::Instant::now();
    if target > now {
        tokio::time::advance(target - now).await;
    }
}
