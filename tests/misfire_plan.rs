//! The misfire planner (`kairos::scheduler::plan::plan`) on its own: which overdue run
//! times run, which are reported missed, what coalescing keeps, and the next run time.
//! docs/semantics.md, "Semantics users rely on", Misfires; the timeline in `scheduler/plan.rs`.
//!
//! The planner is pure, so these tests build a [`Job`] directly and call it with
//! whatever `now` they like; no scheduler, no clock.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kairos::job::Job;
use kairos::scheduler::plan::{plan, Plan, MAX_RUN_TIMES};
use kairos::trigger::{Trigger, TriggerContext, TriggerSpec};
use serde_json::json;

/// The instant every test starts from: 2024-01-01T00:00:00Z.
fn t0() -> DateTime<Utc> {
    at("2024-01-01T00:00:00Z")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn secs(seconds: i64) -> TimeDelta {
    TimeDelta::seconds(seconds)
}

fn trigger(spec: serde_json::Value) -> Trigger {
    let spec: TriggerSpec = serde_json::from_value(spec).unwrap();
    Trigger::new(spec, &TriggerContext::new(t0())).unwrap()
}

/// A job with the default options (coalesce, no grace, one instance) whose next run
/// time is the trigger's first fire time at or after [`t0`].
fn job(spec: serde_json::Value) -> Job {
    let trigger = trigger(spec);
    let next_run_time = trigger.next_fire_time(None, t0());
    Job {
        id: "job".to_owned(),
        name: "job".to_owned(),
        task: "task".to_owned(),
        args: serde_json::Value::Null,
        trigger,
        executor: "default".to_owned(),
        misfire_grace_time: None,
        coalesce: true,
        max_instances: 1,
        overlap: Default::default(),
        jitter: None,
        paused: false,
        next_run_time,
        revision: 1,
        config_spec: None,
        config_version: None,
        retry: Default::default(),
        expect_success: None,
    }
}

/// Every 10 s from t0 + 10 s.
fn every_10s() -> Job {
    job(json!({"type": "interval", "seconds": 10, "start_date": "2024-01-01T00:00:10Z"}))
}

fn times(offsets: &[i64]) -> Vec<DateTime<Utc>> {
    offsets.iter().map(|offset| t0() + secs(*offset)).collect()
}

#[test]
fn a_job_that_is_not_due_yet_plans_nothing() {
    let job = every_10s();
    let planned = plan(&job, t0() + secs(9));
    assert_eq!(
        planned,
        Plan {
            run: vec![],
            first_missed: None,
            missed: 0,
            broken: None,
            next_run_time: Some(t0() + secs(10)),
        }
    );
}

#[test]
fn a_job_due_exactly_now_runs_and_moves_to_its_next_fire_time() {
    let job = every_10s();
    let planned = plan(&job, t0() + secs(10));
    assert_eq!(planned.run, times(&[10]));
    assert_eq!(planned.missed, 0);
    assert_eq!(planned.first_missed, None);
    assert_eq!(planned.next_run_time, Some(t0() + secs(20)));
}

#[test]
fn a_paused_job_plans_nothing() {
    let mut job = every_10s();
    job.paused = true;
    job.next_run_time = None;
    let planned = plan(&job, t0() + secs(1_000));
    assert!(planned.run.is_empty());
    assert_eq!(planned.missed, 0);
    assert_eq!(planned.next_run_time, None);
}

#[test]
fn overdue_without_grace_and_with_coalesce_runs_only_the_latest() {
    // Down from t0 to t0 + 105 s: 10..=100 are due (10 run times).
    let job = every_10s();
    let planned = plan(&job, t0() + secs(105));
    assert_eq!(planned.run, times(&[100]));
    // Coalesced run times are not "missed": there is no grace time to miss.
    assert_eq!(planned.missed, 0);
    assert_eq!(planned.first_missed, None);
    assert_eq!(planned.next_run_time, Some(t0() + secs(110)));
}

#[test]
fn overdue_without_grace_and_without_coalesce_runs_every_time() {
    let mut job = every_10s();
    job.coalesce = false;
    let planned = plan(&job, t0() + secs(105));
    assert_eq!(
        planned.run,
        times(&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    );
    assert_eq!(planned.missed, 0);
    assert_eq!(planned.next_run_time, Some(t0() + secs(110)));
}

#[test]
fn next_run_time_is_the_first_fire_time_after_now_when_now_is_a_fire_time() {
    let mut job = every_10s();
    job.coalesce = false;
    let planned = plan(&job, t0() + secs(100));
    assert_eq!(planned.run.last(), Some(&(t0() + secs(100))));
    assert_eq!(planned.run.len(), 10);
    assert_eq!(planned.next_run_time, Some(t0() + secs(110)));
}

#[test]
fn run_times_older_than_the_grace_are_missed_and_the_recent_ones_run() {
    // now = 105: lateness of 10..=100 is 95..=5 s; grace 20 s keeps 90 and 100.
    let mut job = every_10s();
    job.coalesce = false;
    job.misfire_grace_time = Some(Duration::from_secs(20));
    let planned = plan(&job, t0() + secs(105));
    assert_eq!(planned.run, times(&[90, 100]));
    assert_eq!(planned.missed, 8);
    assert_eq!(planned.first_missed, Some(t0() + secs(10)));
    assert_eq!(planned.next_run_time, Some(t0() + secs(110)));
}

#[test]
fn grace_and_coalesce_run_the_latest_time_within_the_grace() {
    let mut job = every_10s();
    job.misfire_grace_time = Some(Duration::from_secs(20));
    let planned = plan(&job, t0() + secs(105));
    assert_eq!(planned.run, times(&[100]));
    assert_eq!(planned.missed, 8);
    assert_eq!(planned.first_missed, Some(t0() + secs(10)));
}

#[test]
fn a_run_exactly_as_late_as_the_grace_still_runs() {
    // "older than misfire_grace_time": lateness == grace is not older.
    let mut job = every_10s();
    job.misfire_grace_time = Some(Duration::from_secs(5));
    let planned = plan(&job, t0() + secs(15));
    assert_eq!(planned.run, times(&[10]));
    assert_eq!(planned.missed, 0);

    let planned = plan(&job, t0() + secs(15) + TimeDelta::microseconds(1));
    assert!(planned.run.is_empty());
    assert_eq!(planned.missed, 1);
    assert_eq!(planned.first_missed, Some(t0() + secs(10)));
    assert_eq!(planned.next_run_time, Some(t0() + secs(20)));
}

#[test]
fn when_every_time_is_too_late_nothing_runs_and_the_job_moves_on() {
    let mut job = every_10s();
    job.misfire_grace_time = Some(Duration::from_secs(1));
    let planned = plan(&job, t0() + secs(105));
    assert!(planned.run.is_empty());
    assert_eq!(planned.missed, 10);
    assert_eq!(planned.first_missed, Some(t0() + secs(10)));
    assert_eq!(planned.next_run_time, Some(t0() + secs(110)));
}

#[test]
fn a_zero_grace_misses_every_late_run_but_not_a_punctual_one() {
    let mut job = every_10s();
    job.misfire_grace_time = Some(Duration::ZERO);
    assert_eq!(plan(&job, t0() + secs(10)).run, times(&[10]));
    let late = plan(&job, t0() + secs(10) + TimeDelta::microseconds(1));
    assert!(late.run.is_empty());
    assert_eq!(late.missed, 1);
}

#[test]
fn a_one_off_job_runs_after_any_downtime_by_default() {
    // docs/semantics.md: misfire_grace_time = none, so an order to cancel still runs.
    let job = job(json!({"type": "date", "run_date": "2024-01-01T00:30:00Z"}));
    let planned = plan(&job, at("2024-03-01T00:00:00Z"));
    assert_eq!(planned.run, vec![at("2024-01-01T00:30:00Z")]);
    assert_eq!(planned.missed, 0);
    assert_eq!(planned.next_run_time, None, "a date job is finished");
}

#[test]
fn a_one_off_job_past_its_grace_is_missed_and_finished() {
    let mut job = job(json!({"type": "date", "run_date": "2024-01-01T00:30:00Z"}));
    job.misfire_grace_time = Some(Duration::from_secs(60));
    let planned = plan(&job, at("2024-01-01T00:31:01Z"));
    assert!(planned.run.is_empty());
    assert_eq!(planned.missed, 1);
    assert_eq!(planned.first_missed, Some(at("2024-01-01T00:30:00Z")));
    assert_eq!(planned.next_run_time, None);
}

#[test]
fn an_interval_with_an_end_date_finishes_after_its_last_overdue_run() {
    let mut job = job(json!({
        "type": "interval", "seconds": 10,
        "start_date": "2024-01-01T00:00:10Z", "end_date": "2024-01-01T00:00:30Z",
    }));
    job.coalesce = false;
    let planned = plan(&job, t0() + secs(1_000));
    assert_eq!(planned.run, times(&[10, 20, 30]));
    assert_eq!(planned.next_run_time, None);
}

#[test]
fn a_per_minute_cron_job_after_three_days_down_coalesces_to_one_run() {
    // Every minute (second defaults to 0); 3 days = 4320 run times, fewer than the cap.
    let job = job(json!({"type": "cron", "minute": "*"}));
    assert_eq!(job.next_run_time, Some(t0()));
    let now = t0() + TimeDelta::days(3) + secs(30);
    let planned = plan(&job, now);
    assert_eq!(planned.run, vec![t0() + TimeDelta::days(3)]);
    assert_eq!(planned.missed, 0);
    assert_eq!(
        planned.next_run_time,
        Some(t0() + TimeDelta::days(3) + secs(60))
    );
}

#[test]
fn a_per_minute_cron_job_after_three_days_down_with_grace_misses_all_but_the_latest() {
    let mut job = job(json!({"type": "cron", "minute": "*"}));
    job.misfire_grace_time = Some(Duration::from_secs(60));
    let now = t0() + TimeDelta::days(3) + secs(30);
    let planned = plan(&job, now);
    // t0 ..= t0 + 3 days, one per minute: 3 * 1440 + 1 run times; the last runs.
    assert_eq!(planned.run, vec![t0() + TimeDelta::days(3)]);
    assert_eq!(planned.missed, 3 * 1440);
    assert_eq!(planned.first_missed, Some(t0()));
}

#[test]
fn the_backlog_walked_is_bounded_by_max_run_times() {
    // Every second, down for a day: 86 401 overdue run times, more than the cap.
    let mut job =
        job(json!({"type": "interval", "seconds": 1, "start_date": "2024-01-01T00:00:00Z"}));
    job.coalesce = false;
    let now = t0() + TimeDelta::days(1) + TimeDelta::milliseconds(500);
    let started = std::time::Instant::now();
    let planned = plan(&job, now);
    let took = started.elapsed();
    // At most MAX_RUN_TIMES walked, plus the latest one the planner jumps to.
    assert!(
        planned.run.len() <= MAX_RUN_TIMES + 1,
        "{} run times planned",
        planned.run.len()
    );
    assert!(!planned.run.is_empty());
    // Runs are distinct and increasing, never later than now.
    assert!(planned.run.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(planned.run.iter().all(|time| *time <= now));
    // The job resumes from now, not from where the walk stopped.
    assert_eq!(
        planned.next_run_time,
        Some(t0() + TimeDelta::days(1) + secs(1))
    );
    assert!(
        took < Duration::from_secs(5),
        "planning took {took:?} (the walk should be bounded)"
    );
}

#[test]
fn past_the_cap_the_jumped_over_run_times_are_missed_and_the_latest_runs() {
    // plan.rs: past MAX_RUN_TIMES the planner jumps to the latest run time due now;
    // without coalescing, what it jumped over (t0 + 10 000 s .. t0 + 86 399 s) is
    // reported as missed, counted as a lower bound, and the latest time runs too.
    let mut job =
        job(json!({"type": "interval", "seconds": 1, "start_date": "2024-01-01T00:00:00Z"}));
    job.coalesce = false;
    let now = t0() + TimeDelta::days(1) + TimeDelta::milliseconds(500);
    let planned = plan(&job, now);
    assert_eq!(planned.run.len(), MAX_RUN_TIMES + 1);
    assert_eq!(planned.run[MAX_RUN_TIMES - 1], t0() + secs(9_999));
    assert_eq!(planned.run.last(), Some(&(t0() + TimeDelta::days(1))));
    assert_eq!(planned.first_missed, Some(t0() + secs(10_000)));
    assert!(planned.missed >= 1);
    assert_eq!(
        planned.next_run_time,
        Some(t0() + TimeDelta::days(1) + secs(1))
    );
}

#[test]
fn past_the_cap_a_coalesced_job_runs_its_latest_run_time() {
    // docs/semantics.md: "with coalesce only the latest run time runs". The latest run time at
    // or before now is t0 + 86 400 s; the planner runs t0 + 9 999 s, a day late.
    let job = job(json!({"type": "interval", "seconds": 1, "start_date": "2024-01-01T00:00:00Z"}));
    let now = t0() + TimeDelta::days(1) + TimeDelta::milliseconds(500);
    let planned = plan(&job, now);
    assert_eq!(planned.run, vec![t0() + TimeDelta::days(1)]);
}

#[test]
fn the_plan_is_a_pure_function_of_the_job_and_now() {
    let mut job = every_10s();
    job.misfire_grace_time = Some(Duration::from_secs(20));
    let now = t0() + secs(105);
    assert_eq!(plan(&job, now), plan(&job, now));
    // And it does not touch the job.
    let before = job.clone();
    let _ = plan(&job, now);
    assert_eq!(job, before);
}

#[test]
fn an_explicit_next_run_time_off_the_grid_is_honoured_then_the_grid_resumes() {
    // JobSpec.next_run_time may put the first run anywhere; later ones follow the trigger.
    let mut job = every_10s();
    job.next_run_time = Some(t0() + secs(3));
    job.coalesce = false;
    let planned = plan(&job, t0() + secs(25));
    assert_eq!(planned.run, times(&[3, 10, 20]));
    assert_eq!(planned.next_run_time, Some(t0() + secs(30)));
}
