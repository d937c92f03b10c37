//! Scenarios: what a seed stands for. A scenario is a store, a number of nodes, and a
//! list of timed operations (job changes sent through some node, and faults); the
//! same seed always gives the same scenario.
//!
//! Instants are kept apart on purpose so that the model never has to order two
//! things that happen at once: fire times are whole tenths of a second, operations
//! and faults happen at 37 ms past a tenth, and task durations end at 61 ms past one.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

/// Milliseconds after the scenario's start.
pub type Ms = i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Sqlite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trig {
    /// Every `every` ms from `start` (an `interval` trigger with a `start_date`).
    Every { every: Ms, start: Ms },
    /// Once at `at` (a `date` trigger).
    At { at: Ms },
}

impl Trig {
    /// The fire times in `[from, until)` (for a one-off job: its time, if before `until`).
    pub fn fire_times(&self, from: Ms, until: Ms) -> Vec<Ms> {
        match *self {
            // A one-off job's time stays due until it has run: one paused past its
            // time and resumed runs at once, late (its next fire time, as
            // APScheduler's `DateTrigger` gives it, is its date whatever `now` is).
            Trig::At { at } => (at < until).then_some(at).into_iter().collect(),
            Trig::Every { every, start } => {
                let mut first = start;
                if from > start {
                    first = start + (from - start + every - 1) / every * every;
                }
                (0..)
                    .map(|step| first + step * every)
                    .take_while(|time| *time < until)
                    .collect()
            }
        }
    }

    pub fn spec(&self, t0: DateTime<Utc>) -> serde_json::Value {
        let instant = |ms: Ms| (t0 + TimeDelta::milliseconds(ms)).to_rfc3339();
        match *self {
            Trig::At { at } => serde_json::json!({"type": "date", "run_date": instant(at)}),
            Trig::Every { every, start } => serde_json::json!({
                "type": "interval",
                "seconds": every / 1000,
                "start_date": instant(start),
            }),
        }
    }
}

/// What a run of a job does: how long it takes, and whether it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub ms: Ms,
    pub fail: bool,
}

impl Work {
    pub fn args(&self) -> serde_json::Value {
        serde_json::json!({"ms": self.ms, "fail": self.fail})
    }
}

/// A job's `retry` option: `max_attempts` runs of one scheduled time at most, the wait
/// after attempt `n` failed drawn from `[0, initial * multiplier^(n-1)]`, capped at
/// `max_delay` (full jitter, docs/lifecycle.md "Failed runs").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial: Ms,
    /// A whole multiplier (1 to 3), so the model's delay caps are exact.
    pub multiplier: u32,
    pub max_delay: Ms,
}

impl Retry {
    /// The longest wait after attempt `attempt` (1-based) failed, in ms.
    pub fn delay_cap(&self, attempt: u32) -> Ms {
        let mut cap = self.initial;
        for _ in 1..attempt {
            cap = cap.saturating_mul(Ms::from(self.multiplier));
            if cap >= self.max_delay {
                break;
            }
        }
        cap.min(self.max_delay)
    }

    pub fn spec(&self) -> kairos::job::RetryPolicy {
        let ms = |ms: Ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        kairos::job::RetryPolicy {
            max_attempts: self.max_attempts,
            initial_delay: Some(ms(self.initial)),
            multiplier: Some(f64::from(self.multiplier)),
            max_delay: Some(ms(self.max_delay)),
        }
    }
}

/// A job's `overlap` option: what a run due while `max_instances` runs go does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overlap {
    #[default]
    Skip,
    Queue,
    Replace,
}

impl Overlap {
    pub fn spec(self) -> kairos::Overlap {
        match self {
            Overlap::Skip => kairos::Overlap::Skip,
            Overlap::Queue => kairos::Overlap::Queue,
            Overlap::Replace => kairos::Overlap::Replace,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobDef {
    pub trigger: Trig,
    pub max_instances: u32,
    pub coalesce: bool,
    pub grace: Option<Ms>,
    pub work: Work,
    /// `None`: no retry (`max_attempts = 1`, the default).
    pub retry: Option<Retry>,
    pub overlap: Overlap,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    Add(usize, JobDef),
    /// New work, and a new `max_instances` if given.
    Modify(usize, Work, Option<u32>),
    Pause(usize),
    Resume(usize),
    Reschedule(usize, Trig),
    Remove(usize),
    RunNow(usize),
    /// The store refuses every call for this long.
    Outage(Ms),
    /// The node dies (no cleanup); `Some(ms)`: a successor under the same id starts
    /// that much later, `None`: the others reap it.
    Kill(Option<Ms>),
    /// Armed at its time, whichever node it names: the node that next starts a run of
    /// the job dies at that run's start instant, after the run has started and before
    /// the node writes anything more (the deferred write-back of a job that allows
    /// several runs at once, the run's record). The successor as for `Kill`.
    KillAtRunStart(usize, Option<Ms>),
    /// Armed at its time, whichever node it names: the node that next writes the job
    /// back (a release: the deferred write-back of a job that allows several runs at
    /// once, made once its run has looked at its job; a held job's, at its run's end)
    /// dies as that write reaches the store, and none of it lands. The successor as for
    /// `Kill`.
    KillAtWriteBack(usize, Option<Ms>),
    /// The wall clock jumps forward.
    ClockJump(Ms),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub at: Ms,
    /// The node it is sent through (or that is killed).
    pub node: usize,
    pub kind: OpKind,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub store: StoreKind,
    pub nodes: usize,
    /// When the scenario stops; nothing new is asked of the scheduler in its last
    /// seconds, so what is due by then can happen.
    pub end: Ms,
    pub ops: Vec<Op>,
}

pub fn job_id(index: usize) -> String {
    format!("j{index}")
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario {} on {:?}, {} node(s), until +{} ms:",
            self.seed, self.store, self.nodes, self.end
        )?;
        for op in &self.ops {
            writeln!(f, "  +{:>6} ms  node {}  {:?}", op.at, op.node, op.kind)?;
        }
        Ok(())
    }
}

/// What the random scenarios may contain.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub store: StoreKind,
    pub max_nodes: usize,
    pub faults: bool,
    /// Whether scenarios may reach the seams where the core once broke its promises
    /// (see `without_seams`).
    pub seams: bool,
    /// Whether jobs may allow several runs at once (`max_instances` > 1).
    pub several_instances: bool,
    /// Whether the one kill of a scenario is aimed at a run's start
    /// ([`OpKind::KillAtRunStart`], see `aim_the_kill_at_a_run_start`).
    pub kills_at_run_starts: bool,
    /// Whether jobs may retry failed runs (`retry`).
    pub retries: bool,
    /// Whether jobs may queue or replace runs due at the limit (`overlap`).
    pub overlaps: bool,
}

impl Mix {
    /// The mix of the families written before retries and overlap policies: jobs
    /// that neither retry nor queue nor replace.
    pub const fn plain(
        store: StoreKind,
        max_nodes: usize,
        faults: bool,
        seams: bool,
        several_instances: bool,
    ) -> Mix {
        Mix {
            store,
            max_nodes,
            faults,
            seams,
            several_instances,
            kills_at_run_starts: false,
            retries: false,
            overlaps: false,
        }
    }
}

/// The scenario of `seed`.
pub fn generate(seed: u64, mix: Mix) -> Scenario {
    let mut rng = fastrand::Rng::with_seed(seed);
    let nodes = rng.usize(1..=mix.max_nodes);
    let horizon: Ms = 12_000 + rng.i64(0..=8) * 1000;
    let end = horizon + 4_000;
    let jobs = rng.usize(1..=4);
    // Operation times: 37 ms past a tenth, never on a fire time or a run's end.
    let op_time = |rng: &mut fastrand::Rng, from: Ms, to: Ms| -> Ms {
        rng.i64(from / 100..to / 100) * 100 + 37
    };
    let mut ops = Vec::new();
    for job in 0..jobs {
        let at = if rng.u8(..4) == 0 {
            op_time(&mut rng, 0, horizon / 2)
        } else {
            37
        };
        let def = job_def(&mut rng, at, horizon);
        ops.push(Op {
            at,
            node: rng.usize(..nodes),
            kind: OpKind::Add(job, def),
        });
    }
    let changes = rng.usize(0..=8);
    for _ in 0..changes {
        let at = op_time(&mut rng, 200, horizon);
        let job = rng.usize(..jobs);
        let kind = match rng.u8(..12) {
            0 | 1 => OpKind::Pause(job),
            2 | 3 => OpKind::Resume(job),
            4 | 5 => OpKind::Reschedule(job, trigger(&mut rng, at, horizon)),
            6 => OpKind::Remove(job),
            7 | 8 => OpKind::RunNow(job),
            _ => OpKind::Modify(
                job,
                work(&mut rng),
                (rng.u8(..3) == 0).then(|| rng.u32(1..=3)),
            ),
        };
        ops.push(Op {
            at,
            node: rng.usize(..nodes),
            kind,
        });
    }
    if mix.faults {
        // At most one fault of each kind, all over by the horizon.
        if rng.u8(..3) == 0 {
            ops.push(Op {
                at: op_time(&mut rng, 1000, horizon - 3000),
                node: 0,
                kind: OpKind::Outage(rng.i64(1..=25) * 100),
            });
        }
        if rng.u8(..3) == 0 {
            let successor = if nodes == 1 || rng.bool() {
                Some(rng.i64(1..=20) * 100)
            } else {
                None
            };
            ops.push(Op {
                at: op_time(&mut rng, 1000, horizon - 3000),
                node: rng.usize(..nodes),
                kind: OpKind::Kill(successor),
            });
        }
        if rng.u8(..4) == 0 {
            ops.push(Op {
                at: op_time(&mut rng, 1000, horizon - 3000),
                node: 0,
                kind: OpKind::ClockJump(rng.i64(1..=60) * 100),
            });
        }
    }
    ops.sort_by_key(|op| op.at);
    if !mix.seams {
        ops = without_seams(ops, nodes);
    }
    if mix.kills_at_run_starts {
        aim_the_kill_at_a_run_start(&mut ops, seed, nodes, jobs, horizon);
    }
    if !mix.several_instances {
        // After the draws, so a seed's scenario differs only in this.
        for op in &mut ops {
            match &mut op.kind {
                OpKind::Add(_, def) => def.max_instances = 1,
                OpKind::Modify(_, _, Some(limit)) => *limit = 1,
                _ => {}
            }
        }
    }
    // Retries and overlap policies are drawn from a generator of their own, after
    // everything else, so a seed's scenario without them is the one it always was.
    if mix.retries || mix.overlaps {
        let mut extra = fastrand::Rng::with_seed(seed ^ 0x5eed_0ff4_11ed);
        for op in &mut ops {
            let OpKind::Add(_, def) = &mut op.kind else {
                continue;
            };
            if mix.retries && extra.u8(..2) == 0 {
                let initial = extra.i64(1..=15) * 100;
                def.retry = Some(Retry {
                    max_attempts: extra.u32(2..=4),
                    initial,
                    multiplier: extra.u32(1..=3),
                    max_delay: initial + extra.i64(0..=20) * 100,
                });
                // Failing work, more often than elsewhere, so that attempts happen.
                if extra.u8(..2) == 0 {
                    def.work.fail = true;
                }
            }
            if mix.overlaps {
                def.overlap = match extra.u8(..4) {
                    0 => Overlap::Skip,
                    1 | 2 => Overlap::Queue,
                    _ => Overlap::Replace,
                };
                // Runs that outlast their interval, so that the limit is reached.
                if extra.u8(..2) == 0 {
                    def.work.ms = def.work.ms.max(extra.i64(10..40) * 100 + 61);
                }
            }
        }
    }
    // A node that is down takes no operations: send them through a live one.
    let mut dead: Vec<Option<(Ms, Option<Ms>)>> = vec![None; nodes];
    for op in &mut ops {
        if let OpKind::Kill(successor) = op.kind {
            dead[op.node] = Some((op.at, successor));
            continue;
        }
        let alive = |node: usize, at: Ms| match dead[node] {
            None => true,
            Some((_, Some(after))) => at > after,
            Some((_, None)) => false,
        };
        let _ = &dead;
        if !alive(op.node, op.at) {
            if let Some(node) = (0..nodes).find(|node| alive(*node, op.at)) {
                op.node = node;
            }
        }
    }
    // A kill when no other node is left to take over gets a successor.
    for index in 0..ops.len() {
        if nodes == 1 {
            match ops[index].kind {
                OpKind::KillAtRunStart(job, None) => {
                    ops[index].kind = OpKind::KillAtRunStart(job, Some(1000));
                }
                OpKind::KillAtWriteBack(job, None) => {
                    ops[index].kind = OpKind::KillAtWriteBack(job, Some(1000));
                }
                _ => {}
            }
        }
        if let OpKind::Kill(None) = ops[index].kind {
            let others_alive = (0..nodes).any(|node| {
                node != ops[index].node
                    && !ops[..index]
                        .iter()
                        .any(|op| op.node == node && matches!(op.kind, OpKind::Kill(_)))
            });
            if !others_alive {
                ops[index].kind = OpKind::Kill(Some(1000));
            }
        }
    }
    Scenario {
        seed,
        store: mix.store,
        nodes,
        end,
        ops,
    }
}

/// Makes the one kill of a scenario (adding one if the draws had none) a kill aimed at
/// a run of a job whose runs are written back when they are due (its `max_instances`
/// is at least 2, docs/lifecycle.md "Held until the run ends"): at the run's start
/// ([`OpKind::KillAtRunStart`]) or at its write-back ([`OpKind::KillAtWriteBack`]).
/// The run's check at its time, its deferred write-back and its start all happen at
/// the run's instant, in that order; a kill at 37 ms past a tenth never falls between
/// them. Drawn from a generator of its own, after the others, so the rest of the
/// seed's scenario is the one it would be without.
fn aim_the_kill_at_a_run_start(
    ops: &mut Vec<Op>,
    seed: u64,
    nodes: usize,
    jobs: usize,
    horizon: Ms,
) {
    let mut aim = fastrand::Rng::with_seed(seed ^ 0x6b69_6c6c_6174_7374);
    let drawn = ops.iter().position(|op| matches!(op.kind, OpKind::Kill(_)));
    let (at, node, successor) = match drawn.map(|index| ops.remove(index)) {
        Some(Op {
            at,
            node,
            kind: OpKind::Kill(successor),
        }) => (at, node, successor),
        _ => {
            let successor = if nodes == 1 || aim.bool() {
                Some(aim.i64(1..=20) * 100)
            } else {
                None
            };
            let at = aim.i64(1000 / 100..(horizon - 3000) / 100) * 100 + 37;
            (at, aim.usize(..nodes), successor)
        }
    };
    let job = aim.usize(..jobs);
    for op in ops.iter_mut() {
        match &mut op.kind {
            OpKind::Add(added, def) if *added == job => {
                def.max_instances = def.max_instances.max(2)
            }
            OpKind::Modify(modified, _, Some(limit)) if *modified == job => {
                *limit = (*limit).max(2);
            }
            _ => {}
        }
    }
    let index = ops.partition_point(|op| op.at <= at);
    let kind = if aim.bool() {
        OpKind::KillAtRunStart(job, successor)
    } else {
        OpKind::KillAtWriteBack(job, successor)
    };
    ops.insert(index, Op { at, node, kind });
}

fn work(rng: &mut fastrand::Rng) -> Work {
    let ms = match rng.u8(..4) {
        0 => rng.i64(0..3) * 100 + 61,
        1 => rng.i64(3..15) * 100 + 61,
        2 => rng.i64(15..40) * 100 + 61,
        _ => 61,
    };
    Work {
        ms,
        fail: rng.u8(..6) == 0,
    }
}

fn trigger(rng: &mut fastrand::Rng, now: Ms, horizon: Ms) -> Trig {
    if rng.u8(..4) == 0 {
        Trig::At {
            at: (now / 100 + rng.i64(1..=60)) * 100,
        }
    } else {
        let every = rng.i64(1..=4) * 1000;
        let start = (now / 100 + rng.i64(-20..=30)).max(0) * 100;
        let _ = horizon;
        Trig::Every { every, start }
    }
}

fn job_def(rng: &mut fastrand::Rng, at: Ms, horizon: Ms) -> JobDef {
    JobDef {
        trigger: trigger(rng, at, horizon),
        max_instances: if rng.u8(..3) == 0 { rng.u32(2..=3) } else { 1 },
        coalesce: rng.u8(..4) != 0,
        grace: (rng.u8(..4) == 0).then(|| rng.i64(1..=30) * 100),
        work: work(rng),
        retry: None,
        overlap: Overlap::Skip,
    }
}

/// Keeps a scenario off the seams where today's core is known to break its promises
/// (each has a named regression test in tests/lifecycle_model.rs), so that what it does
/// keep is checked on every `cargo test`:
/// - runs end well before the next one is handed over (no run outlasts its interval
///   minus the fire-ahead window), and there is no "run now": a run handed over early
///   claims the instance slot at hand-over;
/// - no change to a one-off job around its time, while its run may be going;
/// - no reschedule or resume shortly before a run time of the job, which may keep a run
///   held early whose write-back then brings back the old trigger, nor shortly after
///   one, which may make the next run due while that one still runs;
/// - with several nodes, no pause, resume, reschedule or removal at all: one made
///   through a node other than the one holding a run early does not take it back;
/// - no killed node: a recurring run that was going when its node died is not run again.
fn without_seams(ops: Vec<Op>, nodes: usize) -> Vec<Op> {
    let short = |work: Work| Work {
        ms: work.ms.min(461),
        ..work
    };
    let mut triggers: std::collections::BTreeMap<usize, Trig> = Default::default();
    let mut kept = Vec::new();
    for mut op in ops {
        let near_a_run = |job: usize, before: Ms, after: Ms| match triggers.get(&job) {
            Some(Trig::At { at }) => op.at >= at - before && op.at <= at + after,
            Some(trigger @ Trig::Every { .. }) => {
                !trigger.fire_times(op.at - after, op.at + before).is_empty()
            }
            None => false,
        };
        let keep = match &mut op.kind {
            OpKind::RunNow(_)
            | OpKind::Kill(_)
            | OpKind::KillAtRunStart(..)
            | OpKind::KillAtWriteBack(..) => false,
            OpKind::Pause(_) | OpKind::Resume(_) | OpKind::Reschedule(..) | OpKind::Remove(_)
                if nodes > 1 =>
            {
                false
            }
            OpKind::Add(job, def) => {
                def.work = short(def.work);
                triggers.insert(*job, def.trigger);
                true
            }
            OpKind::Modify(job, work, _) => {
                *work = short(*work);
                !matches!(triggers.get(job), Some(Trig::At { .. })) || !near_a_run(*job, 400, 700)
            }
            OpKind::Reschedule(job, trigger) => {
                let keep = !near_a_run(*job, 400, 700);
                if keep {
                    triggers.insert(*job, *trigger);
                }
                keep
            }
            OpKind::Resume(job) => !near_a_run(*job, 400, 700),
            OpKind::Pause(job) | OpKind::Remove(job) => {
                !matches!(triggers.get(job), Some(Trig::At { .. })) || !near_a_run(*job, 400, 700)
            }
            _ => true,
        };
        if keep {
            kept.push(op);
        }
    }
    kept
}
