//! `GET /overview`: what the web page's first screen charts — fires coming in the next
//! 24 hours, runs of the last hour per minute by outcome with lateness percentiles,
//! the latest problems, and the cluster's nodes.
//!
//! Bounded work whatever the store holds: the timeline expands the earliest
//! [`TIMELINE_JOBS`] scheduled jobs, at most [`FIRES_PER_JOB`] fires each, and the
//! run charts read the newest [`RECENT_RUNS`] records; the answer says when a bound
//! cut it short (`truncated`).

use axum::extract::State;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;

use super::compute::off_workers;
use super::error::ApiError;
use super::view::rfc3339;
use super::{AppState, Routes, Verb};
use crate::history::{RunOutcome, RunRecord};
use crate::scheduler::{ClusterNode, ConfigState};
use crate::store::{JobCounts, JobQuery};
use crate::trigger::Budget;

/// How many of the earliest scheduled jobs the timeline expands.
const TIMELINE_JOBS: usize = 1000;
/// How many fires of one job the timeline counts.
const FIRES_PER_JOB: usize = 1440;
/// How many run records the charts read.
const RECENT_RUNS: usize = 10_000;
/// Hours in the timeline.
const TIMELINE_HOURS: usize = 24;
/// Minutes in the run charts.
const CHART_MINUTES: usize = 60;
/// Problems listed.
const PROBLEMS: usize = 20;

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Verb::Get, "/overview", overview)
}

#[derive(Serialize)]
struct Overview {
    now: String,
    scheduler_state: &'static str,
    jobs: u64,
    /// How many jobs are in each state, as the stores count them (no job is read).
    job_states: JobStates,
    /// How many run records the stores hold; `None` when they cannot be counted now
    /// (the rest of the page still shows).
    history_runs: Option<u64>,
    upcoming: Upcoming,
    runs: RecentRuns,
    problems: Vec<RunRecord>,
    nodes: Vec<ClusterNode>,
    /// The config generation the store holds against this node's config; `None` when
    /// it cannot be read (the rest of the page still shows).
    config: Option<ConfigView>,
}

/// Jobs by state: what the page's header counts (failed jobs) and the overview shows.
#[derive(Serialize)]
struct JobStates {
    /// With a next run time.
    scheduled: u64,
    paused: u64,
    /// Set aside: failed one-off jobs and broken jobs, as `GET /jobs?state=failed`
    /// lists them.
    failed: u64,
}

impl From<JobCounts> for JobStates {
    fn from(counts: JobCounts) -> JobStates {
        JobStates {
            scheduled: counts.pending,
            paused: counts.paused,
            failed: counts.failed,
        }
    }
}

#[derive(Serialize)]
struct ConfigView {
    #[serde(flatten)]
    state: ConfigState,
    /// The same in one line.
    message: String,
}

#[derive(Serialize)]
struct Upcoming {
    /// The start of the first hour; each count covers one hour from there.
    from: String,
    hourly: Vec<u64>,
    truncated: bool,
}

#[derive(Serialize)]
struct RecentRuns {
    /// The start of the first minute; each entry covers one minute from there.
    from: String,
    minutes: Vec<Minute>,
    truncated: bool,
}

#[derive(Default, Serialize)]
struct Minute {
    success: u64,
    error: u64,
    timeout: u64,
    missed: u64,
    skipped: u64,
    /// Lateness percentiles of the runs that started this minute, in milliseconds.
    lateness_p50_ms: Option<f64>,
    lateness_p99_ms: Option<f64>,
}

async fn overview(State(state): State<AppState>) -> Result<axum::Json<Overview>, ApiError> {
    let scheduler = &state.scheduler;
    let now = scheduler.clock().now();
    let upcoming = upcoming(&state, now).await?;
    let records = scheduler.runs(None, RECENT_RUNS).await?;
    let runs = recent_runs(&records, now);
    let problems = records
        .iter()
        .filter(|run| {
            matches!(
                run.outcome,
                RunOutcome::Error | RunOutcome::Timeout | RunOutcome::Missed
            )
        })
        .take(PROBLEMS)
        .cloned()
        .collect();
    Ok(axum::Json(Overview {
        now: rfc3339(now),
        scheduler_state: super::scheduler::state_name(scheduler.state()),
        jobs: scheduler.count_jobs().await?,
        job_states: scheduler.count_job_states().await?.into(),
        history_runs: scheduler.count_runs().await.ok(),
        upcoming,
        runs,
        problems,
        nodes: scheduler.cluster().await?,
        config: match scheduler.config_state().await {
            Ok(state) => Some(ConfigView {
                message: state.describe(),
                state,
            }),
            Err(error) => {
                tracing::warn!(%error, "overview: the config generation cannot be read");
                None
            }
        },
    }))
}

/// Fires per hour over the next [`TIMELINE_HOURS`], from the earliest scheduled jobs.
async fn upcoming(state: &AppState, now: DateTime<Utc>) -> Result<Upcoming, ApiError> {
    let from = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
    let hours = i64::try_from(TIMELINE_HOURS).unwrap_or(24);
    let until = from + TimeDelta::hours(hours);
    let query = JobQuery {
        paused: Some(false),
        limit: TIMELINE_JOBS,
        ..JobQuery::default()
    };
    let listed = state.scheduler.list_jobs(&query, None).await?;
    let truncated = listed.total > u64::try_from(TIMELINE_JOBS).unwrap_or(u64::MAX);
    // Fire times are CPU work that may take a combined trigger's whole budget per job:
    // off the async workers, and cut short (truncated) at the deadline.
    let jobs = listed.jobs;
    let (hourly, truncated) = off_workers(move |deadline| {
        let mut hourly = vec![0u64; TIMELINE_HOURS];
        let mut truncated = truncated;
        'jobs: for (_, job) in &jobs {
            let Some(next) = job.next_run_time else {
                continue;
            };
            let mut fire = Some(next);
            let mut counted = 0;
            while let Some(at) = fire.filter(|at| *at < until) {
                if counted == FIRES_PER_JOB {
                    truncated = true;
                    break;
                }
                counted += 1;
                // A run overdue now is due in the current hour.
                let hour = (at.max(from) - from).num_hours();
                if let Some(slot) = usize::try_from(hour)
                    .ok()
                    .and_then(|hour| hourly.get_mut(hour))
                {
                    *slot += 1;
                }
                let mut budget = Budget::new(Some(deadline));
                match job.trigger.try_next_fire_time(Some(at), at, &mut budget) {
                    Ok(next) => fire = next,
                    Err(_) => {
                        truncated = true;
                        break 'jobs;
                    }
                }
            }
        }
        (hourly, truncated)
    })
    .await?;
    Ok(Upcoming {
        from: rfc3339(from),
        hourly,
        truncated,
    })
}

/// Runs of the last [`CHART_MINUTES`] by the minute they finished.
fn recent_runs(records: &[RunRecord], now: DateTime<Utc>) -> RecentRuns {
    let minutes = i64::try_from(CHART_MINUTES).unwrap_or(60);
    let end = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now) + TimeDelta::minutes(1);
    let from = end - TimeDelta::minutes(minutes);
    let mut chart: Vec<Minute> = (0..CHART_MINUTES).map(|_| Minute::default()).collect();
    let mut lateness: Vec<Vec<f64>> = vec![Vec::new(); CHART_MINUTES];
    for run in records {
        let Some(index) = usize::try_from((run.finished_at - from).num_minutes())
            .ok()
            .filter(|_| run.finished_at >= from)
            .filter(|index| *index < CHART_MINUTES)
        else {
            continue;
        };
        let minute = &mut chart[index];
        match run.outcome {
            RunOutcome::Success => minute.success += 1,
            RunOutcome::Error => minute.error += 1,
            RunOutcome::Timeout => minute.timeout += 1,
            RunOutcome::Missed => minute.missed += 1,
            RunOutcome::Skipped => minute.skipped += 1,
        }
        if let Some(late) = run.lateness() {
            // Microseconds fit an f64 exactly for any lateness a chart shows.
            let micros = late.num_microseconds().unwrap_or(i64::MAX) as f64;
            lateness[index].push(micros / 1000.0);
        }
    }
    for (minute, mut samples) in chart.iter_mut().zip(lateness) {
        samples.sort_by(f64::total_cmp);
        minute.lateness_p50_ms = percentile(&samples, 0.50);
        minute.lateness_p99_ms = percentile(&samples, 0.99);
    }
    let oldest_read = records.last().map(|run| run.finished_at);
    RecentRuns {
        from: rfc3339(from),
        minutes: chart,
        truncated: records.len() >= RECENT_RUNS && oldest_read.is_some_and(|oldest| oldest > from),
    }
}

/// The nearest-rank percentile of sorted `samples`.
fn percentile(samples: &[f64], quantile: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    // The rank is at most the sample count, which is far below f64's exact range.
    let rank = (quantile * samples.len() as f64).ceil() as usize;
    samples.get(rank.clamp(1, samples.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.50), Some(50.0));
        assert_eq!(percentile(&samples, 0.99), Some(99.0));
    }

    #[test]
    fn runs_land_in_the_minute_they_finished() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T10:30:20Z")
            .map(|time| time.with_timezone(&Utc))
            .unwrap_or_else(|error| panic!("{error}"));
        let run = |finished: DateTime<Utc>, outcome, late_ms: i64| RunRecord {
            run_id: "r".to_owned(),
            job_id: "j".to_owned(),
            scheduled_time: finished - TimeDelta::seconds(1),
            started_at: Some(finished - TimeDelta::seconds(1) + TimeDelta::milliseconds(late_ms)),
            finished_at: finished,
            outcome,
            error: None,
            output: None,
            attempt: 1,
        };
        let records = vec![
            run(now, RunOutcome::Success, 4),
            run(now - TimeDelta::seconds(10), RunOutcome::Error, 8),
            run(now - TimeDelta::minutes(5), RunOutcome::Success, 2),
            run(now - TimeDelta::hours(2), RunOutcome::Success, 1),
        ];
        let chart = recent_runs(&records, now);
        let last = &chart.minutes[CHART_MINUTES - 1];
        assert_eq!((last.success, last.error), (1, 1));
        assert_eq!(last.lateness_p50_ms, Some(4.0));
        assert_eq!(last.lateness_p99_ms, Some(8.0));
        assert_eq!(chart.minutes[CHART_MINUTES - 6].success, 1);
        let counted: u64 = chart
            .minutes
            .iter()
            .map(|minute| minute.success + minute.error)
            .sum();
        assert_eq!(counted, 3, "the run two hours ago is outside the chart");
        assert!(!chart.truncated);
    }
}
