//! The reference model of the run lifecycle's promises, and the checks that hold the
//! observed runs against it (docs/lifecycle-checker.md).
//!
//! The model knows nothing of the scheduler's code. From the operations that
//! succeeded, at the times they answered, it works out for each job the stretches of
//! time in which the job existed, unpaused, under one trigger; the fire times of that
//! trigger inside those stretches are the job's *due times*, and nothing else may
//! run. Faults (a store outage, a killed node, a clock jump) open *disturbed windows*
//! in which runs may be late, coalesced, missed or skipped, but where the at-most-once,
//! never-early, max_instances and nothing-after-removal rules still hold. Outside them
//! every due time must run on time, or be skipped only while `max_instances` runs of
//! its job were really executing.

use std::collections::{BTreeMap, BTreeSet};

use kairos::executor::WITHDRAWN;
use kairos::history::{RunOutcome, RunRecord};
use kairos::scheduler::RETRIED_FIRST;

use super::scenario::{job_id, JobDef, Ms, OpKind, Overlap, Trig};
use super::sim::Execution;
use super::world::{ms_of, Observed};

/// One broken promise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Discrepancy {
    /// The promise, as named in docs/lifecycle-checker.md.
    pub promise: &'static str,
    pub job: String,
    /// The scheduled time (scenario ms) concerned.
    pub time: Ms,
    pub detail: String,
}

impl std::fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] job {} at +{} ms: {}",
            self.promise, self.job, self.time, self.detail
        )
    }
}

/// A stretch in which a job existed, unpaused, under one trigger: `[from, until)`.
#[derive(Clone, Debug)]
struct Stretch {
    from: Ms,
    until: Ms,
    trigger: Trig,
}

#[derive(Debug, Default)]
struct JobModel {
    stretches: Vec<Stretch>,
    /// `max_instances` from each time on.
    max_instances: Vec<(Ms, u32)>,
    /// (time, run id) of each "run now" that was accepted.
    run_now: Vec<(Ms, String)>,
    removed_at: Option<Ms>,
    /// Times of every operation on the job that succeeded.
    touched: Vec<Ms>,
    /// Times of the reschedules and resumes that succeeded: each starts a stretch.
    schedule_changes: Vec<Ms>,
}

impl JobModel {
    fn due_times(&self, until: Ms) -> BTreeSet<Ms> {
        self.stretches
            .iter()
            .flat_map(|stretch| {
                stretch
                    .trigger
                    .fire_times(stretch.from, stretch.until.min(until))
            })
            .collect()
    }

    /// The stretch that holds `time`.
    fn stretch_at(&self, time: Ms) -> Option<&Stretch> {
        self.stretches
            .iter()
            .find(|stretch| stretch.from <= time && time < stretch.until)
    }

    /// The largest `max_instances` the job had over `[from, to]`: a change made while
    /// a run was being handed over may apply to it or not.
    fn max_instances_over(&self, from: Ms, to: Ms) -> u32 {
        let mut current = 0;
        let mut largest = 0;
        for (at, value) in &self.max_instances {
            if *at <= from {
                current = *value;
            } else if *at <= to {
                largest = largest.max(*value);
            }
        }
        largest.max(current)
    }

    /// The smallest `max_instances` the job had from `from` to `to`: a skip in that
    /// span is right if at least that many runs were executing (the limit a skip was
    /// judged by may be any value the job had while its run was planned).
    fn min_instances_over(&self, from: Ms, to: Ms) -> u32 {
        let mut current = u32::MAX;
        let mut smallest = u32::MAX;
        for (at, value) in &self.max_instances {
            if *at <= from {
                current = *value;
            } else if *at <= to {
                smallest = smallest.min(*value);
            }
        }
        smallest.min(current)
    }
}

/// Builds each job's model from the operations that succeeded.
fn models(observed: &Observed) -> BTreeMap<String, JobModel> {
    let mut jobs: BTreeMap<String, JobModel> = BTreeMap::new();
    // (exists, paused, trigger, since)
    let mut state: BTreeMap<String, (bool, bool, Option<Trig>, Ms)> = BTreeMap::new();
    for applied in &observed.applied {
        let Ok(answer) = &applied.result else {
            continue;
        };
        let at = applied.at;
        let index = match &applied.op.kind {
            OpKind::Add(job, _)
            | OpKind::Modify(job, _, _)
            | OpKind::Pause(job)
            | OpKind::Resume(job)
            | OpKind::Reschedule(job, _)
            | OpKind::Remove(job)
            | OpKind::RunNow(job) => *job,
            _ => continue,
        };
        let id = job_id(index);
        let model = jobs.entry(id.clone()).or_default();
        model.touched.push(at);
        let (exists, paused, trigger, since) = state.entry(id).or_insert((false, false, None, 0));
        let close = |model: &mut JobModel, trigger: &Option<Trig>, since: Ms| {
            if let Some(trigger) = trigger {
                model.stretches.push(Stretch {
                    from: since,
                    until: at,
                    trigger: *trigger,
                });
            }
        };
        match &applied.op.kind {
            OpKind::Add(_, def) => {
                *exists = true;
                *paused = false;
                *trigger = Some(def.trigger);
                *since = at;
                model.max_instances.push((at, def.max_instances));
            }
            OpKind::Modify(_, _, Some(value)) => model.max_instances.push((at, *value)),
            // Pausing a paused job, or resuming a running one, changes nothing.
            OpKind::Pause(_) if *exists && !*paused => {
                close(model, trigger, *since);
                *paused = true;
            }
            OpKind::Resume(_) if *exists && *paused => {
                *paused = false;
                *since = at;
                model.schedule_changes.push(at);
            }
            OpKind::Reschedule(_, new) => {
                model.schedule_changes.push(at);
                if *exists && !*paused {
                    close(model, trigger, *since);
                    *since = at;
                }
                *trigger = Some(*new);
            }
            OpKind::Remove(_) => {
                if *exists && !*paused {
                    close(model, trigger, *since);
                }
                *exists = false;
                model.removed_at = Some(at);
            }
            // A failed one-off job is run again through the loop, with fresh attempts:
            // no run id yet, and the time it was asked at becomes due. A failed job
            // that was paused is resumed by it (README, "When runs fail"): its trigger
            // has no time left, and a later reschedule applies at once.
            OpKind::RunNow(_) if answer.as_deref() == Some("") => {
                if *exists && *paused {
                    *paused = false;
                    *since = at;
                }
                model.stretches.push(Stretch {
                    from: at,
                    until: at + 1,
                    trigger: Trig::At { at },
                });
            }
            OpKind::RunNow(_) => model
                .run_now
                .extend(answer.clone().map(|run_id| (at, run_id))),
            _ => {}
        }
    }
    for (id, (exists, paused, trigger, since)) in state {
        if let (true, false, Some(trigger)) = (exists, paused, trigger) {
            if let Some(model) = jobs.get_mut(&id) {
                model.stretches.push(Stretch {
                    from: since,
                    until: Ms::MAX,
                    trigger,
                });
            }
        }
    }
    jobs
}

/// The windows in which runs may be late, folded, missed or skipped: around each
/// outage, killed node and clock jump, with a tail for the retries' back-off.
fn disturbed(observed: &Observed) -> Vec<(Ms, Ms)> {
    let before = observed.fire_ahead + 100 + observed.slack;
    let after = 1_500 + observed.slack;
    let mut windows = Vec::new();
    for (from, to) in &observed.outages {
        windows.push((from - before, to + (to - from) + after));
    }
    for kill in &observed.kills {
        windows.push((kill.at - before, kill.taken_over + after));
    }
    for (at, by) in &observed.jumps {
        windows.push((at - before, at + by + after));
    }
    for (from, to) in &observed.windows {
        windows.push((from - before, to + after));
    }
    // Overlapping windows are one disturbance: what one delays, the next may fold.
    windows.sort();
    let mut merged: Vec<(Ms, Ms)> = Vec::new();
    for (from, to) in windows {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

fn within(windows: &[(Ms, Ms)], time: Ms) -> bool {
    windows
        .iter()
        .any(|(from, to)| *from <= time && time <= *to)
}

/// When an execution stopped executing: its end, the kill of its node, or never.
fn stopped(execution: &Execution, observed: &Observed) -> Option<Ms> {
    if let Some(finished) = execution.finished {
        return Some(ms_of(finished));
    }
    observed
        .kills
        .iter()
        .find(|kill| kill.node == execution.node && kill.incarnation == execution.incarnation)
        .map(|kill| kill.at)
}

fn kill_of<'a>(execution: &Execution, observed: &'a Observed) -> Option<&'a super::world::Kill> {
    observed
        .kills
        .iter()
        .find(|kill| kill.node == execution.node && kill.incarnation == execution.incarnation)
}

/// How many runs of `job` were executing at `time` (started at or before it, not
/// stopped by then).
fn executing(executions: &[&Execution], observed: &Observed, time: Ms) -> usize {
    executions
        .iter()
        .filter(|execution| {
            ms_of(execution.started) <= time
                && stopped(execution, observed).is_none_or(|stop| stop > time)
        })
        .count()
}

/// What the record of a run skipped because another run of its job waited, on its node
/// or (under `queue`) on another, says (docs/lifecycle.md, "When the limit is
/// reached").
const ALREADY_WAITING: &str = "another run of this job was already waiting";

/// How the record of a run stopped for a newer one begins, and that of a waiting run a
/// newer one overtook (`overlap = "replace"`, docs/lifecycle.md "In a cluster").
const REPLACED: &str = "replaced by the run of";

/// Whether the record is that of a waiting run a newer run of its job overtook: skipped,
/// "replaced by the run of T".
fn is_superseded(record: &RunRecord) -> bool {
    record.outcome == RunOutcome::Skipped
        && record
            .error
            .as_deref()
            .is_some_and(|error| error.starts_with(REPLACED))
}

/// What the record of a waiting run that holds its job says when a change took it back
/// (docs/lifecycle.md, "When the limit is reached").
const CHANGED_WHILE_WAITING: &str = "the job was changed while this run waited";

/// Whether a record's error says its run was dropped by a change that came while it
/// waited for a slot: through another node (the store showed the job changed,
/// [`CHANGED_WHILE_WAITING`] or "the job was paused …"), or through its own node ("the
/// job was paused, rescheduled or removed while this run waited …").
fn dropped_while_waiting(error: &str) -> bool {
    error.starts_with(CHANGED_WHILE_WAITING)
        || (error.starts_with("the job was ") && error.contains(" while this run waited"))
}

/// What the record of a run skipped because the store could not claim its slot says.
const OUTAGE_SKIP: &str = "could not claim an instance slot";

/// What the record of a fire time that came while a run held its job says.
const HELD_SKIP: &str = "was still going at this time (max_instances = 1)";

/// How many runs of `job` held an instance slot at `time`: those executing, and those
/// of a killed node until its work is free for the others (until then nobody can tell
/// a dead node's slot from a live one's).
fn holding(executions: &[&Execution], observed: &Observed, time: Ms) -> usize {
    executions
        .iter()
        .filter(|execution| {
            ms_of(execution.started) <= time
                && slot_freed(execution, observed).is_none_or(|freed| freed > time)
        })
        .count()
}

/// When the instance slot of `execution` was freed: at its end, or, for a run its
/// node's kill stopped, once the dead node's work was taken over. The store frees a
/// dead node's slots only then (its successor's recovery, or the reaping of a node
/// whose heartbeat is older than the node timeout), and a slot that carries the run's
/// times passes to the node that runs it again (docs/lifecycle.md, "Held until the
/// run ends").
fn slot_freed(execution: &Execution, observed: &Observed) -> Option<Ms> {
    match (kill_of(execution, observed), execution.finished) {
        (Some(kill), None) => Some(kill.taken_over),
        _ => stopped(execution, observed),
    }
}

/// When the catch-up `run` belongs to ends: the end of the last of the runs of its job
/// that its worker started one after another, each the instant the one before ended
/// (`None` while it goes). Against real daemons "the instant" is within
/// `observed.same_instant`.
fn catch_up_end(executions: &[&Execution], observed: &Observed, run: &Execution) -> Option<Ms> {
    let mut current = run;
    let mut hops = 0;
    loop {
        let finished = current.finished?;
        let next = executions.iter().find(|other| {
            other.job_id == current.job_id
                && other.node == current.node
                && other.incarnation == current.incarnation
                && (other.started - finished).num_milliseconds().abs() <= observed.same_instant
                && other.run_id != current.run_id
        });
        match next {
            Some(next) if hops < executions.len() => {
                current = next;
                hops += 1;
            }
            _ => return Some(ms_of(finished)),
        }
    }
}

/// The job as it was last added (its retry policy and overlap are not changed by the
/// scenarios' operations after that).
fn definition<'a>(observed: &'a Observed, id: &str) -> Option<&'a JobDef> {
    observed
        .applied
        .iter()
        .rev()
        .find_map(|applied| match &applied.op.kind {
            OpKind::Add(job, def) if job_id(*job) == id && applied.result.is_ok() => Some(def),
            _ => None,
        })
}

/// Whether the run ended in an outcome that is retried: `error` or `timeout`, not a
/// stop for a newer run (`overlap = "replace"`), which is recorded as `error` too.
fn failed_for_retry(run: &Execution) -> bool {
    run.finished.is_some() && run.failed && !run.stopped_early
}

/// The attempts of one scheduled time that follow a failed attempt of it, each with the
/// attempt it follows: `(failed attempt, next attempt)`, in start order. Runs of one
/// time are attempts only for a job with retries; "run now" runs are left out.
fn retries<'a>(runs: &[&'a Execution]) -> Vec<(&'a Execution, &'a Execution)> {
    let mut pairs = Vec::new();
    for pair in runs.windows(2) {
        if failed_for_retry(pair[0]) {
            pairs.push((pair[0], pair[1]));
        }
    }
    pairs
}

fn is_withdrawal(record: &RunRecord) -> bool {
    record.error.as_deref() == Some(WITHDRAWN)
}

/// Checks what was observed against the model; every broken promise, sorted.
pub fn check(observed: &Observed) -> Vec<Discrepancy> {
    let mut found = BTreeSet::new();
    let mut report = |promise: &'static str, job: &str, time: Ms, detail: String| {
        found.insert(Discrepancy {
            promise,
            job: job.to_owned(),
            time,
            detail,
        });
    };
    for trouble in &observed.trouble {
        report("driver", "-", 0, trouble.clone());
    }
    let jobs = models(observed);
    let windows = disturbed(observed);
    // Late enough that a due time's run has certainly started by the end.
    let checked_until = observed.end - 500 - observed.slack;
    let by_run: BTreeMap<&str, &RunRecord> = observed
        .records
        .iter()
        .map(|record| (record.run_id.as_str(), record))
        .collect();
    let mut record_count: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &observed.records {
        *record_count.entry(record.run_id.as_str()).or_default() += 1;
    }
    for (run_id, count) in &record_count {
        if *count > 1 {
            report(
                "one record per run",
                "-",
                0,
                format!("run {run_id} has {count} records"),
            );
        }
    }
    let empty = JobModel::default();
    let mut ids: BTreeSet<&str> = jobs.keys().map(String::as_str).collect();
    ids.extend(observed.executions.iter().map(|run| run.job_id.as_str()));
    for id in ids {
        let model = jobs.get(id).unwrap_or(&empty);
        let executions: Vec<&Execution> = observed
            .executions
            .iter()
            .filter(|run| run.job_id == id)
            .collect();
        let records: Vec<&RunRecord> = observed
            .records
            .iter()
            .filter(|record| record.job_id == id)
            .collect();
        let due = model.due_times(observed.end + 1);
        let run_now: BTreeMap<&str, Ms> = model
            .run_now
            .iter()
            .map(|(at, run_id)| (run_id.as_str(), *at))
            .collect();

        // Never early; only at a due time or as asked; nothing after removal.
        for run in &executions {
            let scheduled = ms_of(run.scheduled);
            let started = ms_of(run.started);
            if started < scheduled {
                report(
                    "never early",
                    id,
                    scheduled,
                    format!("started at +{started} ms on node {}", run.node),
                );
            }
            // A "run now" whose node died while it ran is run again from its instance
            // slot (an orphaned run, docs/lifecycle.md "Held until the run ends"), at
            // its own time, under a new run id: at least once, as for a due time.
            let asked = run_now.get(run.run_id.as_str()) == Some(&scheduled)
                || executions.iter().any(|killed| {
                    run_now.get(killed.run_id.as_str()) == Some(&scheduled)
                        && killed.started < run.started
                        && kill_of(killed, observed).is_some()
                });
            if !asked && !due.contains(&scheduled) {
                report(
                    "only due times run",
                    id,
                    scheduled,
                    format!(
                        "ran at +{started} ms on node {}, but the job was not due then \
                         (paused, rescheduled or removed before it, or never had that time)",
                        run.node
                    ),
                );
            }
            if let Some(removed) = model.removed_at {
                if started > removed {
                    report(
                        "nothing runs after removal",
                        id,
                        scheduled,
                        format!("started at +{started} ms, removed at +{removed} ms"),
                    );
                }
            }
        }

        // At most once per scheduled time, unless a crash allows one repeat.
        let mut by_time: BTreeMap<Ms, Vec<&Execution>> = BTreeMap::new();
        for run in &executions {
            // Two "run now" at one instant are two runs for one time, as asked.
            if !run_now.contains_key(run.run_id.as_str()) {
                by_time.entry(ms_of(run.scheduled)).or_default().push(run);
            }
        }
        for (time, mut runs) in by_time.clone() {
            runs.sort_by_key(|run| run.started);
            let mut allowed = 0;
            for earlier in &runs {
                if let Some(kill) = kill_of(earlier, observed) {
                    let started = ms_of(earlier.started);
                    // A catch-up writes its job back when its last run ends
                    // (docs/lifecycle.md): killed before that, it runs again from
                    // its first time.
                    // A kill aimed at a write-back strikes at the very instant the run
                    // ended, before the job's write-back that follows its record.
                    let unwritten = match catch_up_end(&executions, observed, earlier) {
                        None => true,
                        Some(finished) => {
                            finished >= kill.at
                                || observed
                                    .outages
                                    .iter()
                                    .any(|(from, to)| *from <= kill.at && *to >= finished)
                        }
                    };
                    if started <= kill.at && unwritten {
                        allowed += 1;
                    }
                }
            }
            // A new schedule (a reschedule, a resume) that has this time again, once
            // it already ran, owes it a run of its own: the time runs once per
            // schedule (a one-off job rescheduled to a time that already ran runs
            // again, late, as APScheduler's date trigger does).
            for pair in runs.windows(2) {
                let (first, second) = (ms_of(pair[0].started), ms_of(pair[1].started));
                if model
                    .schedule_changes
                    .iter()
                    .any(|&change| change > first && change <= second)
                {
                    allowed += 1;
                }
            }
            // A job with retries runs a time again after each failed attempt, up to
            // `max_attempts` runs in all (docs/lifecycle.md, "Failed runs").
            if let Some(retry) = definition(observed, id).and_then(|def| def.retry) {
                let failed = runs.iter().filter(|run| failed_for_retry(run)).count();
                allowed += failed.min(retry.max_attempts.saturating_sub(1) as usize);
            }
            if runs.len() > 1 + allowed {
                let starts: Vec<String> = runs
                    .iter()
                    .map(|run| format!("+{} ms on node {}", ms_of(run.started), run.node))
                    .collect();
                report(
                    "at most once",
                    id,
                    time,
                    format!("ran {} times: {}", runs.len(), starts.join(", ")),
                );
            }
        }

        // max_instances, over all nodes, from the runs' real starts and ends.
        for run in &executions {
            let started = ms_of(run.started);
            let going = executing(&executions, observed, started);
            let limit = model.max_instances_over(
                started - observed.fire_ahead - 1_500 - observed.slack,
                started,
            );
            if limit > 0 && going > limit as usize {
                report(
                    "max_instances",
                    id,
                    ms_of(run.scheduled),
                    format!("{going} runs executing at +{started} ms, max_instances {limit}"),
                );
            }
        }

        // A time being retried holds its job from its first attempt to its last (the
        // job waits in the store for the next attempt): due times in between come
        // late, when the attempts end, folded by `coalesce` like any backlog. The last
        // may be an attempt that waited for a slot and never started (a pause or
        // reschedule took it back): it held the job until its record, and a change
        // that cancels it cancels that backlog too. A time that failed in a catch-up
        // stops it, and the catch-up's later times go on after its last attempt, in the
        // same worker (docs/lifecycle.md, "Failed runs"): the hold lasts to their end.
        let mut retrying: Vec<(Ms, Ms)> = Vec::new();
        // The same, with the time retried: (time, from, to).
        let mut retried: Vec<(Ms, Ms, Ms)> = Vec::new();
        if definition(observed, id).is_some_and(|def| def.retry.is_some()) {
            for (&time, runs) in &by_time {
                let mut runs = runs.clone();
                runs.sort_by_key(|run| run.started);
                if runs.iter().any(|run| failed_for_retry(run)) {
                    let from = ms_of(runs[0].started);
                    let not_started = records
                        .iter()
                        .filter(|record| {
                            ms_of(record.scheduled_time) == time
                                && record.started_at.is_none()
                                && ms_of(record.finished_at) >= from
                        })
                        .map(|record| ms_of(record.finished_at));
                    let to = runs
                        .iter()
                        .map(|run| {
                            stopped(run, observed).map_or(Ms::MAX / 2, |stop| {
                                catch_up_end(&executions, observed, run)
                                    .map_or(stop, |end| end.max(stop))
                            })
                        })
                        .chain(not_started)
                        .max()
                        .unwrap_or(from);
                    let cap = definition(observed, id)
                        .and_then(|def| def.retry)
                        .map_or(0, |retry| retry.delay_cap(retry.max_attempts));
                    let until = to.saturating_add(cap + observed.fire_ahead + observed.slack + 100);
                    retrying.push((from, until));
                    retried.push((time, from, until));
                }
            }
        }
        // Every due time runs: on time outside the disturbed windows.
        // A time of a job that queues (or replaces behind runs of other nodes), due at
        // its limit, that may still wait when the scenario ends (below).
        let waits_at_end = |at: Ms| {
            observed.nodes > 1
                && definition(observed, id).is_some_and(|def| def.overlap != Overlap::Skip)
                && holding(&executions, observed, at)
                    >= model.min_instances_over(at - 1, at) as usize
                && !by_time.contains_key(&at)
                && records
                    .iter()
                    .all(|record| ms_of(record.scheduled_time) != at)
        };
        for &time in due.range(..checked_until) {
            if within(&windows, time) || within(&retrying, time) || by_time.contains_key(&time) {
                continue;
            }
            // A time that came while a run of the job held it is recorded when that run
            // ends (docs/lifecycle.md, "Held until the run ends"): not yet, if it has not
            // ended well before the end of the scenario.
            // A catch-up (runs one after another in one worker) holds the job until
            // its last run ends, and runs its times in order: a time after one of its
            // runs may still wait in it.
            let held_past_end = executions.iter().any(|run| {
                run.job_id == *id
                    && ms_of(run.scheduled) <= time
                    && catch_up_end(&executions, observed, run)
                        .is_none_or(|finished| finished + 500 > checked_until)
            });
            if held_past_end {
                continue;
            }
            // A time after a failed run of a catch-up runs after that run's attempts
            // (docs/lifecycle.md, "Failed runs"): not yet, if they hold the job past the
            // end; never, if a change cancelled them (the change wins, and the rest of
            // the catch-up goes with the pending attempt).
            let owed_after_attempts = records.iter().any(|record| {
                ms_of(record.scheduled_time) == time
                    && record.error.as_deref() == Some(RETRIED_FIRST)
                    && (retried.iter().any(|(retried, from, until)| {
                        *retried < time
                            && *from <= ms_of(record.finished_at)
                            && *until + 500 > checked_until
                    }) || model
                        .touched
                        .iter()
                        .any(|at| *at >= ms_of(record.finished_at) - observed.fire_ahead))
            });
            if owed_after_attempts {
                continue;
            }
            // A run that holds its job (a job with retries) and waits for a slot holds
            // it while it waits; a change through any node takes it back at its next
            // claim, its time not used up, and the job, taken again at once, folds the
            // times that came meanwhile by `coalesce` like any backlog
            // (docs/lifecycle.md, "When the limit is reached"; seed 20,853 of the
            // cluster family with retries and overlap). A reschedule that took it back
            // drops them with the old schedule, whatever `coalesce` says: the waiting
            // run, behind another node's waiting run (the job's waiter), held the job
            // past them (seed 40,280 of the cluster family with retries and overlap).
            let coalesces = definition(observed, id).is_some_and(|def| def.coalesce);
            let folded_after_waiting = definition(observed, id)
                .and_then(|def| def.retry)
                .is_some_and(|retry| retry.max_attempts > 1)
                && records.iter().any(|record| {
                    record.started_at.is_none()
                    // Through any node (seed 70,823 of the family on one node: a
                    // reschedule through the node the run waited on).
                    && record.error.as_deref().is_some_and(dropped_while_waiting)
                    && ms_of(record.scheduled_time) < time
                    && ms_of(record.finished_at) >= time
                    // Folded into a later time that runs once the job is taken again,
                    // or dropped by a reschedule while it waited.
                    && ((coalesces
                        && (executions.iter().any(|run| {
                            ms_of(run.scheduled) > time
                                && ms_of(run.started) >= ms_of(record.finished_at)
                        }) || ms_of(record.finished_at) + 1_000 > checked_until))
                        || model.schedule_changes.iter().any(|change| {
                            *change >= ms_of(record.scheduled_time)
                                && *change <= ms_of(record.finished_at)
                        }))
                });
            if folded_after_waiting {
                continue;
            }
            // A schedule changed while a run held the job takes effect when that run
            // ends (docs/lifecycle.md, "Held until the run ends"): the new schedule's
            // times before then are late runs, folded by `coalesce` like any backlog.
            let changed_while_held = model.schedule_changes.iter().any(|&change| {
                // A one-off time already past when its schedule came is due from then.
                let due_from = model
                    .stretches
                    .iter()
                    .find(|stretch| stretch.from <= change && change < stretch.until)
                    .filter(|stretch| matches!(stretch.trigger, Trig::At { at } if at == time))
                    .map_or(time, |_| time.max(change));
                change <= due_from
                    && executions.iter().any(|run| {
                        ms_of(run.started) <= change
                            && stopped(run, observed).is_none_or(|stop| {
                                stop > change && time <= stop + observed.fire_ahead + observed.slack
                            })
                    })
            });
            if changed_while_held {
                continue;
            }
            // A time that came while a run held the job is recorded when that run ends;
            // if its node died before the store took that record (an outage between
            // the end and the kill), the record died with it, and the successor folds
            // the time into its late run like any backlog.
            // A time of a job that queues (or replaces behind runs of other nodes),
            // due at its limit, waits for a slot; in a cluster the runs of its job keep
            // the limit reached as long as times keep coming on the nodes that run
            // them, so it may still wait at the end. The waits it does end are held to
            // "a queued run starts when a slot frees".
            // A job with retries is held by such a waiting run (docs/lifecycle.md,
            // "When the limit is reached"): its later times come when that run ends,
            // which may be after the end too.
            let held_by_waiting = definition(observed, id)
                .and_then(|def| def.retry)
                .is_some_and(|retry| retry.max_attempts > 1)
                && due.range(..time).any(|&earlier| waits_at_end(earlier));
            // Under `queue` one run of a job waits at most, in the whole cluster: it is
            // the job's waiter in the store, and a run due while it waits, on any node,
            // is skipped and recorded (docs/lifecycle.md, "In a cluster"). So a time
            // waits at the end only if no earlier time of its job does. An earlier one
            // may leave no trace without waiting still: lost with its node, killed
            // after it (a waiting run holds nothing a successor takes), or in a
            // disturbed window. A job with retries is held by its waiting run (above),
            // and so is a one-off job's: a run that holds its job waits behind the
            // waiter, not skipped; so the job must be left as it was between the two.
            // A catch-up (`coalesce = false`) waits with all its times in one run.
            let queues_alone = definition(observed, id).is_some_and(|def| {
                def.overlap == Overlap::Queue
                    && def.coalesce
                    && def.retry.is_none_or(|retry| retry.max_attempts <= 1)
            });
            let behind_one_waiting = queues_alone
                && due.range(..time).any(|&earlier| {
                    waits_at_end(earlier)
                        && !within(&windows, earlier)
                        && !observed.kills.iter().any(|kill| kill.at >= earlier)
                        && !model
                            .touched
                            .iter()
                            .any(|at| *at >= earlier - observed.fire_ahead - 1_000 && *at <= time)
                });
            if (waits_at_end(time) && !behind_one_waiting) || held_by_waiting {
                continue;
            }
            let record_died = executions.iter().any(|run| {
                ms_of(run.started) <= time
                    && run.finished.is_some_and(|finished| {
                        ms_of(finished) >= time
                            && kill_of(run, observed).is_some_and(|kill| {
                                observed
                                    .outages
                                    .iter()
                                    .any(|(from, to)| *from <= kill.at && *to >= ms_of(finished))
                            })
                    })
            });
            if record_died {
                continue;
            }
            // A time that came while a run held its job (one run at a time) on a node
            // killed before that run's end was written: its record ("was still going
            // at this time") was to be written then, and died with the node. The
            // successor takes the job at the killed run's time and folds the times
            // after it like any backlog (seeds 100,185 and 100,216 of the family with
            // kills at run starts, where a clock jump brought the kill forward into a
            // run that outlasted several due times). Only a run still executing at
            // the time excuses it: one that ended before the time had given its job
            // back, so the time was due as any other. Its end may come just before
            // the kill, with the records it was to write still unwritten.
            let held_by_killed_run = model.max_instances_over(time, time) == 1
                && executions.iter().any(|run| {
                    ms_of(run.started) <= time
                        && run.finished.is_none_or(|finished| ms_of(finished) >= time)
                        && kill_of(run, observed).is_some_and(|kill| kill.at >= time)
                });
            if held_by_killed_run {
                continue;
            }
            let record = records
                .iter()
                .find(|record| ms_of(record.scheduled_time) == time && record.started_at.is_none());
            let detail = match record {
                // Judged on its own below ("a waiting run is replaced only by a newer one").
                Some(record) if is_superseded(record) => None,
                // A waiting run dropped by a change while it waited: a held run taken
                // back (its time not used up), or any run whose job was paused or
                // removed meanwhile. The change's answer, not the limit's, once a change
                // came while it waited (seeds 40,280 and 50,064 of the families with
                // retries and overlap); how long it waited first is "a queued run starts
                // when a slot frees"'s to judge.
                Some(record)
                    if record.error.as_deref().is_some_and(dropped_while_waiting)
                        && model.touched.iter().any(|at| {
                            *at >= time - observed.fire_ahead && *at <= ms_of(record.finished_at)
                        }) =>
                {
                    None
                }
                Some(record) if is_withdrawal(record) => Some(format!(
                    "taken back unasked (recorded at +{} ms: {WITHDRAWN})",
                    ms_of(record.finished_at)
                )),
                // Came while a run held the job (max_instances = 1 when it was
                // taken): judged by the limit that run was planned with, recorded at
                // its end (docs/lifecycle.md, "Held until the run ends"). A held run
                // that waited for a slot (`queue`, `replace`: a job with retries or a
                // one-off job) held its job while it waited too, and the times that
                // came meanwhile are skipped at its end ("When the limit is reached");
                // how long it may wait is "a queued run starts when a slot frees"'s
                // and "a retry comes within its longest wait"'s to judge.
                Some(record)
                    if record.outcome == RunOutcome::Skipped
                        && record
                            .error
                            .as_deref()
                            .is_some_and(|error| error.contains(HELD_SKIP))
                        && (holding(&executions, observed, time) >= 1
                            || executions.iter().any(|held| {
                                ms_of(held.scheduled) <= time
                                    && ms_of(held.started) > time
                                    && held.finished == Some(record.finished_at)
                            })) =>
                {
                    None
                }
                Some(record) if record.outcome == RunOutcome::Skipped => {
                    // Judged at its time, or later at its start (jitter, a gate) or at
                    // the end of the run that held the job: the limit must have been
                    // reached at one of them.
                    let decided = time.max(ms_of(record.finished_at));
                    let going = holding(&executions, observed, time).max(holding(
                        &executions,
                        observed,
                        decided,
                    ));
                    let limit = model.min_instances_over(
                        time - observed.fire_ahead - 1_500 - observed.slack,
                        decided,
                    );
                    // Under `queue` the run waiting on another node keeps a slot from
                    // this node's claims (docs/lifecycle.md, "In a cluster"): a slot
                    // freed there is its own, and it hears of one freed elsewhere at
                    // its next claim, up to the back-off later. A time due meanwhile is
                    // skipped as one due behind a waiting run, though fewer than the
                    // limit execute. A killed node's run frees its slot only when its
                    // work is free for the others (`holding`).
                    let behind_waiting = observed.nodes > 1
                        && record
                            .error
                            .as_deref()
                            .is_some_and(|error| error.contains(ALREADY_WAITING))
                        && executions.iter().any(|other| {
                            slot_freed(other, observed).is_some_and(|freed| {
                                freed <= decided
                                    && freed + CROSS_NODE_WAIT > time
                                    && holding(&executions, observed, freed - 1) >= limit as usize
                            })
                        });
                    (going < limit as usize && !behind_waiting).then(|| {
                        format!(
                            "skipped (max_instances {limit}) at +{} ms, but only {going} run(s) \
                             of the job were executing at +{decided} ms",
                            ms_of(record.finished_at)
                        )
                    })
                }
                // Judged by the grace time below: late only if something delayed it.
                Some(record) if record.outcome == RunOutcome::Missed => None,
                Some(record) => Some(format!(
                    "recorded as {} at +{} ms although nothing delayed it: {}",
                    record.outcome.as_str(),
                    ms_of(record.finished_at),
                    record.error.clone().unwrap_or_default()
                )),
                None => Some("never ran and has no record".to_owned()),
            };
            if let Some(detail) = detail {
                let promise = if record.is_some_and(|record| {
                    record.outcome == RunOutcome::Skipped && !is_withdrawal(record)
                }) {
                    "skipped only at max_instances"
                } else {
                    "every due time runs"
                };
                report(promise, id, time, detail);
            }
        }

        // A waiting run of a job that replaces ends, recorded as skipped "replaced by
        // the run of T", once a claim of it is refused while a run of its job newer
        // than it (a later scheduled time) executes, on any node: the newest run wins
        // (docs/lifecycle.md, "In a cluster"; seed 20,364 of the family with retries,
        // overlap and faults). Never otherwise: not for a job that queues or skips,
        // not behind older runs only. The store is what the scheduler asks, so a run
        // that ended still counts while its slot is held: in a disturbed window its
        // record (which frees the slot) may wait for the store, and a killed node's run
        // holds its slot until its work is free for the others.
        for record in records.iter().filter(|record| is_superseded(record)) {
            let (time, at) = (ms_of(record.scheduled_time), ms_of(record.finished_at));
            let replaces =
                definition(observed, id).is_some_and(|def| def.overlap == Overlap::Replace);
            let newer = executions.iter().any(|run| {
                let until = slot_freed(run, observed);
                ms_of(run.scheduled) > time
                    && ms_of(run.started) <= at
                    && (until.is_none_or(|stop| stop + observed.slack > at) || within(&windows, at))
            });
            if !replaces || !newer {
                report(
                    "a waiting run is replaced only by a newer one",
                    id,
                    time,
                    format!(
                        "skipped at +{at} ms ({}), but no newer run of the job was executing then",
                        record.error.clone().unwrap_or_default()
                    ),
                );
            }
        }

        // In a disturbed window, runs may be folded into a later one, missed or
        // skipped, but not all lost: of the due times a window holds, while the job
        // stays as it was until the window closes, one at least leaves a trace.
        for (from, to) in &windows {
            let group: Vec<Ms> = due.range(*from..=*to).copied().collect();
            let Some(first) = group.first() else { continue };
            let untouched = !model
                .touched
                .iter()
                .any(|at| *at >= *first - observed.fire_ahead && *at <= to + 1_000);
            let same_stretch = model
                .stretch_at(*first)
                .is_some_and(|stretch| stretch.until > to + 1_000);
            if !untouched || !same_stretch || to + 1_000 > checked_until {
                continue;
            }
            // Times that come while a run (or a catch-up) holds the job are recorded
            // when it ends: not yet, if it goes on past the end of the scenario. A job
            // with retries is held by its runs whatever its limit, from a failed time's
            // first attempt to its last and, in a catch-up, the catch-up's later times
            // after it (docs/lifecycle.md, "Failed runs"; seed 20,411 of the family
            // with retries, overlap and faults).
            let held_by_runs = model.max_instances_over(*from, *to) == 1
                || definition(observed, id)
                    .and_then(|def| def.retry)
                    .is_some_and(|retry| retry.max_attempts > 1);
            let held_past_end = held_by_runs
                && (executions.iter().any(|run| {
                    run.job_id == *id
                        && ms_of(run.started) <= *to
                        && catch_up_end(&executions, observed, run)
                            .is_none_or(|finished| finished + 500 > checked_until)
                }) || retried
                    .iter()
                    .any(|(_, start, until)| *start <= *to && *until + 500 > checked_until));
            if held_past_end {
                continue;
            }
            // A time of a job that queues (or replaces behind a run of another node),
            // due at its limit, waits for a slot on the node that took it. A waiting
            // run holds no slot and is not kept across a restart: a node killed while
            // it waits loses it, its time written back when it came due
            // (docs/lifecycle.md, "When the limit is reached"). So a time due at its
            // limit before a kill in its window may leave no trace (seed 20,615 of the
            // family with retries, overlap and faults).
            let lost_while_waiting = definition(observed, id)
                .is_some_and(|def| def.overlap != Overlap::Skip)
                && group.iter().any(|time| {
                    holding(&executions, observed, *time)
                        >= model.min_instances_over(*time - 1, *time).max(1) as usize
                        && observed
                            .kills
                            .iter()
                            .any(|kill| kill.at >= *time && kill.at <= *to)
                });
            if lost_while_waiting {
                continue;
            }
            // A time of the window may be the cluster's one waiting run of a job that
            // queues, still waiting when the scenario ends: delayed, not lost, as
            // "every due time runs" allows it (`waits_at_end`). A waiter hears of a
            // slot freed on another node at its next claim, up to a back-off of 5 s
            // later (seed 30,651 of the family with faults: a run of 4 s behind one
            // the outage delayed, its slot freed 2.8 s before the end).
            if group.iter().any(|time| waits_at_end(*time)) {
                continue;
            }
            let traced = group.iter().any(|time| {
                by_time.contains_key(time)
                    || records
                        .iter()
                        .any(|record| ms_of(record.scheduled_time) == *time)
            });
            if !traced {
                report(
                    "a disturbance delays runs, never loses them all",
                    id,
                    *first,
                    format!(
                        "none of the due times {group:?} in the disturbed window +{from}..+{to} ms \
                         ran or was recorded"
                    ),
                );
            }
        }

        // A run that holds its job (a one-off job's only time, a retry's attempt)
        // waits for the store when its slot claim meets an outage: skipped, its time
        // would be lost, and with it the one-off job or the attempts left
        // (docs/lifecycle.md, "Handed over, judged at its time"; seed 70,647 of the
        // family with retries, overlap and faults, whose skip record had let it pass).
        let retried = definition(observed, id)
            .and_then(|def| def.retry)
            .is_some_and(|retry| retry.max_attempts > 1);
        for record in &records {
            let scheduled = ms_of(record.scheduled_time);
            let one_off = model
                .stretch_at(scheduled)
                .is_some_and(|stretch| matches!(stretch.trigger, Trig::At { .. }));
            if record.outcome == RunOutcome::Skipped
                && record
                    .error
                    .as_deref()
                    .is_some_and(|error| error.starts_with(OUTAGE_SKIP))
                && (one_off || retried)
            {
                report(
                    "an outage delays a held run, never skips it",
                    id,
                    scheduled,
                    format!(
                        "skipped at +{} ms: {}",
                        ms_of(record.finished_at),
                        record.error.clone().unwrap_or_default()
                    ),
                );
            }
        }

        // Missed only past the grace time.
        for record in &records {
            if record.outcome == RunOutcome::Missed {
                let scheduled = ms_of(record.scheduled_time);
                let late = ms_of(record.finished_at) - scheduled;
                let grace =
                    observed
                        .applied
                        .iter()
                        .rev()
                        .find_map(|applied| match &applied.op.kind {
                            OpKind::Add(job, def)
                                if job_id(*job) == id && applied.result.is_ok() =>
                            {
                                def.grace
                            }
                            _ => None,
                        });
                if grace.is_none_or(|grace| late <= grace) {
                    report(
                        "missed only past the grace time",
                        id,
                        scheduled,
                        format!("recorded missed {late} ms late, grace {grace:?}"),
                    );
                }
            }
        }

        // A run a killed node had started runs again (at-least-once across crashes),
        // or a later due time of the job runs late in its place (coalesced).
        for run in &executions {
            let Some(kill) = kill_of(run, observed) else {
                continue;
            };
            let scheduled = ms_of(run.scheduled);
            if run.finished.is_some() || run_now.contains_key(run.run_id.as_str()) {
                continue;
            }
            let touched = model
                .touched
                .iter()
                .any(|at| *at >= scheduled && *at <= kill.taken_over + 1_500 + observed.slack);
            // Past its misfire grace time by the time it is free again, it is missed.
            let grace = observed
                .applied
                .iter()
                .rev()
                .find_map(|applied| match &applied.op.kind {
                    OpKind::Add(job, def) if job_id(*job) == id && applied.result.is_ok() => {
                        Some(def.grace)
                    }
                    _ => None,
                })
                .flatten();
            let missed = grace.is_some_and(|grace| kill.taken_over - scheduled > grace);
            if touched
                || missed
                || kill.taken_over + 2_000 > checked_until
                || observed.jumps.iter().any(|(at, _)| *at >= kill.at)
                || !observed.outages.is_empty()
            {
                continue;
            }
            let again = executions.iter().any(|other| {
                let other_time = ms_of(other.scheduled);
                other.run_id != run.run_id
                    && ms_of(other.started) > kill.at
                    && other_time >= scheduled
                    && other_time <= kill.taken_over + observed.fire_ahead + observed.slack
            });
            if !again {
                report(
                    "at least once across crashes",
                    id,
                    scheduled,
                    format!(
                        "started at +{} ms on node {}, which was killed at +{} ms; \
                         its successor (free from +{} ms) did not run it again",
                        ms_of(run.started),
                        run.node,
                        kill.at,
                        kill.taken_over
                    ),
                );
            }
        }

        // "Run now" runs now, or is skipped only at max_instances.
        for (at, run_id) in &model.run_now {
            if executions.iter().any(|run| run.run_id == *run_id) {
                continue;
            }
            match by_run.get(run_id.as_str()) {
                // Judged above ("a waiting run is replaced only by a newer one").
                Some(record) if is_superseded(record) => {}
                Some(record) if record.outcome == RunOutcome::Skipped => {
                    let going = holding(&executions, observed, *at);
                    let limit = model.min_instances_over(*at - 1, *at);
                    // A run now while a run of its job waits for a slot is skipped: at
                    // most one waits per node, and under `queue` in the cluster, and it
                    // goes first (docs/lifecycle.md, "When the limit is reached"). In
                    // a cluster that run hears of a slot freed on another node only at
                    // its next claim, up to the back-off later ("In a cluster"), so it
                    // may still wait a moment after the limit was last reached (seed
                    // 20,040 of the cluster family with retries and overlap).
                    let behind_waiting = observed.nodes > 1
                        && record
                            .error
                            .as_deref()
                            .is_some_and(|error| error.contains(ALREADY_WAITING))
                        && executions.iter().any(|other| {
                            stopped(other, observed).is_some_and(|stop| {
                                stop <= *at
                                    && stop + CROSS_NODE_WAIT > *at
                                    && holding(&executions, observed, stop - 1) >= limit as usize
                            })
                        });
                    // In a disturbed window a run that ended may still hold its slot:
                    // its record, which frees it, waits for the store to come back.
                    if going < limit as usize && !within(&windows, *at) && !behind_waiting {
                        report(
                            "skipped only at max_instances",
                            id,
                            *at,
                            format!("run now was skipped with {going} run(s) executing, max_instances {limit}"),
                        );
                    }
                }
                _ if within(&windows, *at) || *at > checked_until => {}
                // A run now of a job that queues (or replaces behind runs of other
                // nodes) waits for a slot like a scheduled run: while runs of its job
                // keep the limit reached, it may still wait at the end.
                None if definition(observed, id)
                    .is_some_and(|def| def.overlap != Overlap::Skip)
                    && holding(&executions, observed, *at)
                        >= model.min_instances_over(*at - 1, *at) as usize => {}
                other => report(
                    "run now runs",
                    id,
                    *at,
                    format!("accepted as run {run_id}, but did not run (record: {other:?})"),
                ),
            }
        }

        // Each run that ended on a live node is recorded once, as it happened.
        for run in &executions {
            let Some(finished) = run.finished else {
                continue;
            };
            let finished = ms_of(finished);
            if kill_of(run, observed).is_some()
                || within(&windows, finished)
                || finished > checked_until - 1_000
            {
                continue;
            }
            match by_run.get(run.run_id.as_str()) {
                None => report(
                    "every run is recorded",
                    id,
                    ms_of(run.scheduled),
                    format!(
                        "run {} ended at +{finished} ms without a record",
                        run.run_id
                    ),
                ),
                Some(record) => {
                    let outcome = if run.failed || run.stopped_early {
                        RunOutcome::Error
                    } else {
                        RunOutcome::Success
                    };
                    if record.started_at != Some(run.started) || record.outcome != outcome {
                        report(
                            "every run is recorded",
                            id,
                            ms_of(run.scheduled),
                            format!("the record {record:?} does not match the run {run:?}"),
                        );
                    }
                }
            }
        }
        for record in &records {
            if let Some(started) = record.started_at {
                let matched = executions
                    .iter()
                    .any(|run| run.run_id == record.run_id && run.started == started);
                if !matched {
                    report(
                        "every run is recorded",
                        id,
                        ms_of(record.scheduled_time),
                        format!("a record of a start that did not happen: {record:?}"),
                    );
                }
            }
        }

        policies(
            observed,
            id,
            model,
            &executions,
            &records,
            &windows,
            &mut report,
        );
    }
    found.into_iter().collect()
}

/// The promises of retries and overlap policies (docs/lifecycle.md, "When the limit is
/// reached" and "Failed runs"), for job `id`.
#[allow(clippy::too_many_arguments)]
/// How late a run waiting for a slot may hear that a run of its job on another node
/// ended: its claim's back-off (at most 5 s, `start::MAX_SLOT_WAIT`) and a poll.
const CROSS_NODE_WAIT: Ms = 5_000 + 1_000;

fn policies(
    observed: &Observed,
    id: &str,
    model: &JobModel,
    executions: &[&Execution],
    records: &[&RunRecord],
    windows: &[(Ms, Ms)],
    report: &mut impl FnMut(&'static str, &str, Ms, String),
) {
    let Some(def) = definition(observed, id) else {
        return;
    };
    let checked_until = observed.end - 500 - observed.slack;
    let run_now: BTreeSet<&str> = model.run_now.iter().map(|(_, run)| run.as_str()).collect();
    let attempt_of = |run: &Execution| {
        records
            .iter()
            .find(|record| record.run_id == run.run_id)
            .map(|record| record.attempt)
    };
    let mut by_time: BTreeMap<Ms, Vec<&Execution>> = BTreeMap::new();
    for run in executions {
        if !run_now.contains(run.run_id.as_str()) {
            by_time.entry(ms_of(run.scheduled)).or_default().push(run);
        }
    }
    for runs in by_time.values_mut() {
        runs.sort_by_key(|run| run.started);
    }
    // Changes that cancel a pending attempt: a pause, a reschedule, a removal; whether
    // each is a reschedule.
    let cancels: Vec<(Ms, bool)> = observed
        .applied
        .iter()
        .filter(|applied| applied.result.is_ok())
        .filter_map(|applied| match &applied.op.kind {
            OpKind::Pause(job) | OpKind::Remove(job) if job_id(*job) == id => {
                Some((applied.at, false))
            }
            OpKind::Reschedule(job, _) if job_id(*job) == id => Some((applied.at, true)),
            _ => None,
        })
        .collect();
    // Whether a change cancels the attempts of a time whose first attempt started at
    // `first`: it came after that start. A reschedule to a time already past (a one-off
    // date, or one a clock jump left behind) makes that time due at once, and the node
    // that answered it starts its first attempt at that very instant: the change came
    // first, and its own time's attempts are not cancelled by it. A pause or a removal
    // starts nothing, and no other run starts at an operation's instant (operations
    // are 37 ms past a tenth, fire times whole tenths).
    let cancels_after = |first: Ms| -> Vec<Ms> {
        cancels
            .iter()
            .filter(|(at, reschedule)| *at > first || (*at == first && !*reschedule))
            .map(|(at, _)| *at)
            .collect()
    };

    // Retries: a failed attempt is followed by the next one, never before its end and,
    // left alone, no later than its longest wait (full jitter); a pause, reschedule or
    // removal cancels what is pending; a one-off job whose attempts are used up stays,
    // `failed`.
    match def.retry {
        None => {
            for runs in by_time.values() {
                for (failed, again) in retries(runs) {
                    // Without retries a time runs again only after a crash or a new
                    // schedule ("at most once" judges those); a record says which attempt.
                    if attempt_of(again).is_some_and(|attempt| attempt > 1) {
                        report(
                            "only jobs with retries retry",
                            id,
                            ms_of(failed.scheduled),
                            format!(
                                "run {} is recorded as attempt {:?} of a job without retries",
                                again.run_id,
                                attempt_of(again)
                            ),
                        );
                    }
                }
            }
        }
        Some(retry) => {
            for (&time, runs) in &by_time {
                for (failed, again) in retries(runs) {
                    let Some(ended) = failed.finished.map(ms_of) else {
                        continue;
                    };
                    let started = ms_of(again.started);
                    let attempt = attempt_of(failed).unwrap_or(1);
                    if kill_of(failed, observed).is_some() || kill_of(again, observed).is_some() {
                        continue;
                    }
                    if let Some(next) = attempt_of(again).filter(|next| *next != attempt + 1) {
                        report(
                            "each attempt is the next",
                            id,
                            time,
                            format!(
                                "the run after attempt {attempt} (ended at +{ended} ms) started at \
                                 +{started} ms as attempt {next}"
                            ),
                        );
                    }
                    if started < ended {
                        report(
                            "a retry waits for its attempt to end",
                            id,
                            time,
                            format!(
                                "attempt {} started at +{started} ms, before attempt {attempt} \
                                 ended at +{ended} ms",
                                attempt + 1
                            ),
                        );
                    }
                    let cap = retry.delay_cap(attempt);
                    // An attempt due while other runs of its job fill its limit (a run
                    // now) waits for them like any run of its time: it is late only
                    // past the end of the last of those. It waits as a queued run
                    // does, so it hears at once of the end of a run of its own node,
                    // and of one on another node at its next claim (a back-off up to
                    // 5 s: docs/lifecycle.md, "In a cluster"), as "a queued run starts
                    // when a slot frees" allows below. A run that came due by then
                    // and waited for the slot already (a queued "run now") goes
                    // before it, as the one run waiting goes first (docs/lifecycle.md,
                    // "When the limit is reached"; seed 30,567 of the families with
                    // retries and overlap).
                    let limit = model.min_instances_over(ended, started).max(1) as usize;
                    let due_by = executions
                        .iter()
                        .filter(|other| {
                            other.run_id != again.run_id
                                && (ms_of(other.started) <= ended + cap
                                    || (ms_of(other.scheduled) <= ended + cap
                                        && other.started <= again.started))
                                && stopped(other, observed).is_none_or(|stop| stop > ended)
                        })
                        .filter_map(|other| {
                            let stop = stopped(other, observed)?;
                            let elsewhere =
                                other.node != again.node || other.incarnation != again.incarnation;
                            Some((stop, if elsewhere { CROSS_NODE_WAIT } else { 0 }))
                        })
                        .filter(|(stop, _)| executing(executions, observed, *stop - 1) >= limit)
                        .map(|(stop, heard)| stop + heard)
                        .max()
                        .map_or(ended + cap, |heard| heard.max(ended + cap));
                    if started > due_by + 1 + observed.slack
                        && !within(windows, ended)
                        && !within(windows, started)
                    {
                        report(
                            "a retry comes within its longest wait",
                            id,
                            time,
                            format!(
                                "attempt {} started at +{started} ms, {} ms after attempt \
                                 {attempt} ended at +{ended} ms; the longest wait is {cap} ms",
                                attempt + 1,
                                started - ended
                            ),
                        );
                    }
                    if let Some(change) = cancels_after(ms_of(runs[0].started))
                        .iter()
                        .find(|change| **change < started)
                    {
                        report(
                            "pause, reschedule and removal cancel pending attempts",
                            id,
                            time,
                            format!(
                                "attempt {} started at +{started} ms after a change at \
                                 +{change} ms",
                                attempt + 1
                            ),
                        );
                    }
                }
                // A failed attempt with attempts left is tried again, unless a change
                // cancels it or the scenario ends first.
                let Some(last) = runs.last() else { continue };
                let attempts = runs.iter().filter(|run| failed_for_retry(run)).count();
                let Some(ended) = last.finished.map(ms_of) else {
                    continue;
                };
                let left = attempts < retry.max_attempts as usize;
                let cancelled = !cancels_after(ms_of(runs[0].started)).is_empty();
                let disturbed = runs.iter().any(|run| {
                    within(windows, ms_of(run.started)) || kill_of(run, observed).is_some()
                }) || within(windows, ended + retry.delay_cap(retry.max_attempts));
                let touched = model.touched.iter().any(|at| *at >= ms_of(runs[0].started));
                // Due by the end of its longest wait, or, if runs of its job filled the
                // limit then (a run now), by the end of the last of those plus the
                // back-off of a claim across nodes, as for "a retry comes within its
                // longest wait": it may still wait at the end of the scenario.
                let cap = retry.delay_cap(attempts as u32);
                let limit = model.min_instances_over(ended, ended + cap).max(1) as usize;
                let due_by = executions
                    .iter()
                    .filter(|other| {
                        ms_of(other.started) <= ended + cap
                            && stopped(other, observed).is_none_or(|stop| stop > ended)
                    })
                    .map(|other| stopped(other, observed).unwrap_or(Ms::MAX / 2))
                    .filter(|stop| executing(executions, observed, *stop - 1) >= limit)
                    .map(|stop| stop.saturating_add(CROSS_NODE_WAIT))
                    .max()
                    .map_or(ended + cap, |heard| heard.max(ended + cap));
                if failed_for_retry(last)
                    && left
                    && !cancelled
                    && !disturbed
                    && !touched
                    && due_by + 1_000 < checked_until
                {
                    report(
                        "a failed attempt with attempts left is tried again",
                        id,
                        time,
                        format!(
                            "attempt {attempts} of {} failed at +{ended} ms and was not tried again",
                            retry.max_attempts
                        ),
                    );
                }
                // A one-off job whose attempts are used up stays, `failed`.
                let one_off = matches!(
                    model.stretch_at(time).map(|stretch| stretch.trigger),
                    Some(Trig::At { .. })
                );
                if one_off
                    && !left
                    && failed_for_retry(last)
                    && !cancelled
                    && !touched
                    && !disturbed
                    && ended + 1_000 < checked_until
                {
                    let state = observed
                        .jobs
                        .iter()
                        .find(|job| job.id == id)
                        .map(|job| job.state());
                    if state != Some("failed") {
                        report(
                            "a one-off job whose attempts are used up stays failed",
                            id,
                            time,
                            format!(
                                "its {attempts} attempt(s) failed, the last at +{ended} ms; \
                                 at the end the job is {state:?}"
                            ),
                        );
                    }
                }
            }
        }
    }

    // Overlap: a run stopped before its work was done was replaced by a newer run of
    // its job, which started then; a run that waited for a slot (`queue`, or
    // `replace` behind runs of other nodes) started as soon as one was free.
    for run in executions {
        if !run.stopped_early {
            continue;
        }
        let Some(stop) = run.finished.map(ms_of) else {
            continue;
        };
        if stop > observed.end - 1 {
            // Ended with the world, not by the scheduler.
            continue;
        }
        if def.overlap != Overlap::Replace {
            report(
                "only a replacement stops a run",
                id,
                ms_of(run.scheduled),
                format!(
                    "stopped at +{stop} ms before its work was done, overlap = {:?}",
                    def.overlap
                ),
            );
            continue;
        }
        let newer = executions.iter().any(|other| {
            other.run_id != run.run_id
                && other.node == run.node
                && other.incarnation == run.incarnation
                && ms_of(other.started) >= stop
                && ms_of(other.started) <= stop + 1 + observed.slack
        });
        let refused = records.iter().any(|record| {
            record.started_at.is_none()
                && ms_of(record.finished_at) >= stop
                && ms_of(record.finished_at) <= stop + 1 + observed.slack
        });
        if !newer && !refused && !within(windows, stop) {
            report(
                "a replaced run makes way for a newer one",
                id,
                ms_of(run.scheduled),
                format!("stopped at +{stop} ms, and no newer run of its job started then"),
            );
        }
    }
    if def.overlap == Overlap::Skip {
        return;
    }
    let attempts: BTreeSet<&str> = by_time
        .values()
        .flat_map(|runs| {
            retries(runs)
                .into_iter()
                .map(|(_, again)| again.run_id.as_str())
        })
        .collect();
    // On one node a waiting run claims when a run of its node ends; across nodes it
    // learns of an end elsewhere at its next claim (a back-off up to 5 s).
    let tolerance = if observed.nodes > 1 {
        CROSS_NODE_WAIT
    } else {
        1
    } + observed.slack;
    for run in executions {
        let (scheduled, started) = (ms_of(run.scheduled), ms_of(run.started));
        if started <= scheduled + 1
            || attempts.contains(run.run_id.as_str())
            || within(windows, scheduled)
            || within(windows, started)
            || model
                .touched
                .iter()
                .any(|at| *at >= scheduled - observed.fire_ahead - 1_000 && *at <= started)
        {
            continue;
        }
        let limit = model.min_instances_over(scheduled, started);
        // Only a run that waited: the limit was reached at its time. A run its node's
        // kill stopped holds its slot until its work is taken over (`slot_freed`).
        if holding(executions, observed, scheduled) < limit as usize {
            continue;
        }
        let mut instants: Vec<Ms> = executions
            .iter()
            .filter_map(|other| slot_freed(other, observed))
            .filter(|freed| *freed >= scheduled && *freed < started)
            .collect();
        instants.sort_unstable();
        // A slot that stayed free for longer than a waiting run takes to hear of it
        // (another node's waiting run may take it first: the order between nodes is
        // not promised, docs/lifecycle.md "In a cluster").
        let free_long = instants.into_iter().find(|at| {
            if holding(executions, observed, *at) >= limit as usize {
                return false;
            }
            let taken = executions
                .iter()
                .map(|other| ms_of(other.started))
                .filter(|start| start >= at)
                .min()
                .unwrap_or(Ms::MAX);
            taken > at + tolerance
        });
        if let Some(free) = free_long {
            report(
                "a queued run starts when a slot frees",
                id,
                scheduled,
                format!(
                    "waited until +{started} ms (overlap = {:?}), although a slot of \
                     max_instances {limit} was free from +{free} ms",
                    def.overlap
                ),
            );
        }
    }
}
