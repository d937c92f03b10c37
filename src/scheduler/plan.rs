//! What to do with a due job: which run times run, which are missed, and the next run
//! time. A pure function of the job and `now`, so misfire and coalescing rules are
//! tested without a scheduler.
//!
//! ```text
//! misfire_grace_time = 10m, coalesce = true, now = 12:30, hourly job down since 09:00
//!
//!   09:00   10:00   11:00   12:00      12:30 (now)   13:00
//!   missed  missed  missed  missed       |           next run time
//!   (older than 10m)        (30m late: also missed)
//!
//! misfire_grace_time = none (the default): 12:00 runs (the latest, coalesced),
//! 09:00-11:00 are dropped by coalescing; with coalesce = false all four run.
//! ```
//!
//! Lateness is judged here, when the scheduler takes the job, not when a worker frees
//! up. The backlog walked is bounded by [`MAX_RUN_TIMES`] (APScheduler's
//! `_get_run_times` is not): past it the planner jumps to the latest run time due at
//! `now` (a doubling search backwards from `now`), and the run times jumped over count
//! as missed unless coalescing would have dropped them anyway; the count is then a
//! lower bound (the walked ones plus one for the jump).

use chrono::{DateTime, TimeDelta, Utc};

use crate::job::Job;

/// The most overdue run times looked at for one job in one pass.
pub const MAX_RUN_TIMES: usize = 10_000;

/// The outcome of planning one due job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Run times to submit, earliest first.
    pub run: Vec<DateTime<Utc>>,
    /// The earliest missed run time, if any.
    pub first_missed: Option<DateTime<Utc>>,
    /// How many run times were missed.
    pub missed: u64,
    /// The job's next run time after this pass; `None` when its trigger is finished
    /// (or [`broken`](Plan::broken)).
    pub next_run_time: Option<DateTime<Utc>>,
    /// Why the trigger's next fire time could not be computed within its evaluation
    /// budget (a combination too costly to evaluate): the job is set aside as `broken`
    /// rather than taken as finished, and not evaluated again on every pass.
    pub broken: Option<String>,
}

/// Plans the due run times of `job` at `now`.
pub fn plan(job: &Job, now: DateTime<Utc>) -> Plan {
    let grace = job
        .misfire_grace_time
        .map(|grace| TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX));
    let too_late = |time: DateTime<Utc>| grace.is_some_and(|grace| now - time > grace);
    let mut plan = Plan {
        run: Vec::new(),
        first_missed: None,
        missed: 0,
        next_run_time: None,
        broken: None,
    };
    let miss = |plan: &mut Plan, time: DateTime<Utc>| {
        plan.missed += 1;
        plan.first_missed.get_or_insert(time);
    };
    let mut current = job.next_run_time;
    let mut walked = 0usize;
    while let Some(time) = current.filter(|time| *time <= now) {
        let time = if walked == MAX_RUN_TIMES {
            // Too far behind to walk: jump to the latest run time due now. What lies
            // between was dropped; coalescing without a grace limit would drop it too.
            let latest = latest_fire_at_or_before(job, time, now);
            if latest > time && (!job.coalesce || grace.is_some()) {
                miss(&mut plan, time);
            }
            latest
        } else {
            time
        };
        walked += 1;
        if too_late(time) {
            miss(&mut plan, time);
        } else {
            plan.run.push(time);
        }
        current = match job.trigger.try_next_fire_time(
            Some(time),
            now,
            &mut crate::trigger::Budget::new(None),
        ) {
            Ok(next) => next,
            Err(error) => {
                plan.broken = Some(format!(
                    "the trigger's next fire time after {time} could not be computed: {error}"
                ));
                None
            }
        };
        if walked > MAX_RUN_TIMES {
            break;
        }
    }
    if job.coalesce && plan.run.len() > 1 {
        plan.run.drain(..plan.run.len() - 1);
    }
    plan.next_run_time = current;
    plan
}

/// The latest fire time of `job` at or before `now`, given `known`, one that is.
///
/// Searches windows `[now - d, now]` for d = 1 s, 2 s, 4 s …: the first window that
/// holds a fire time holds few, and walking them forward finds the last.
fn latest_fire_at_or_before(job: &Job, known: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let mut width = TimeDelta::seconds(1);
    loop {
        let from = now.checked_sub_signed(width).unwrap_or(known).max(known);
        let mut latest = match job.trigger.first_fire_at_or_after(from) {
            Some(found) if found <= now => found,
            _ if from == known => return known,
            _ => {
                width = width.checked_mul(2).unwrap_or(TimeDelta::MAX);
                continue;
            }
        };
        for _ in 0..MAX_RUN_TIMES {
            match job.trigger.next_fire_time(Some(latest), now) {
                Some(next) if next <= now => latest = next,
                _ => break,
            }
        }
        return latest;
    }
}
