//! `GET /metrics`: Prometheus text exposition (format 0.0.4).
//!
//! Gauges are read when scraped (jobs by state, the scheduler's state); run counters
//! are counted from the scheduler's events by a task [`Metrics::start`] spawns, so
//! they start at zero when the API starts and count every run the scheduler records.
//! Executor queue depth is not exported yet: the executors do not expose it outside
//! their submission events.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::{self, error::RecvError};

use super::error::ApiError;
use super::scheduler::state_name;
use super::{AppState, Routes, Verb};
use crate::alert::AlertKind;
use crate::history::RunOutcome;
use crate::scheduler::{Event, Scheduler, SchedulerState};
use crate::store::JobQuery;

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Verb::Get, "/metrics", metrics)
}

const OUTCOMES: [RunOutcome; 5] = [
    RunOutcome::Success,
    RunOutcome::Error,
    RunOutcome::Timeout,
    RunOutcome::Missed,
    RunOutcome::Skipped,
];

/// Counters fed from the scheduler's events.
#[derive(Default)]
pub(crate) struct Metrics {
    /// Finished runs, indexed as [`OUTCOMES`].
    runs: [AtomicU64; 5],
    /// Events the counting task missed because it fell behind.
    events_lost: AtomicU64,
    /// [`Event::RecordsBacklogged`] events.
    backlogged: AtomicU64,
    /// Alerts this node raised ([`Event::Alert`]), indexed as [`AlertKind::ALL`].
    alerts: [AtomicU64; 4],
    /// Webhook deliveries: delivered, failed (attempts used up or refused), dropped
    /// (queue full).
    deliveries: [AtomicU64; 3],
}

impl Metrics {
    /// The counters, and a task that feeds them until the scheduler or the API is
    /// dropped. Outside a tokio runtime nothing is counted (and a warning says so).
    pub(crate) fn start(scheduler: &Scheduler) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::default());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(count_runs(scheduler.subscribe(), Arc::downgrade(&metrics)));
            }
            Err(_) => tracing::warn!(
                "the API router was built outside a tokio runtime; /metrics will not count runs"
            ),
        }
        metrics
    }

    fn record(&self, outcome: RunOutcome) {
        if let Some(index) = OUTCOMES.iter().position(|known| *known == outcome) {
            self.runs[index].fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn count_runs(mut events: broadcast::Receiver<Event>, metrics: Weak<Metrics>) {
    loop {
        let received = events.recv().await;
        // Holding only a weak reference lets the task end with the router.
        let Some(metrics) = metrics.upgrade() else {
            return;
        };
        match received {
            Ok(Event::JobExecuted { run } | Event::JobError { run }) => metrics.record(run.outcome),
            Ok(Event::RecordsBacklogged { .. }) => {
                metrics.backlogged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Alert { alert }) => {
                if let Some(index) = AlertKind::ALL.iter().position(|kind| *kind == alert.event) {
                    metrics.alerts[index].fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Event::AlertDelivered { .. }) => {
                metrics.deliveries[0].fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::AlertUndelivered { attempts, .. }) => {
                let index = if attempts == 0 { 2 } else { 1 };
                metrics.deliveries[index].fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(RecvError::Lagged(lost)) => {
                metrics.events_lost.fetch_add(lost, Ordering::Relaxed);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Counted by the stores, never by reading every job: a scrape costs the same with
    // ten jobs or a million (docs/threat-model.md, "Bounded work").
    let total = state.scheduler.count_jobs().await?;
    let paused_only = JobQuery {
        paused: Some(true),
        limit: 1,
        ..JobQuery::default()
    };
    let paused = state.scheduler.list_jobs(&paused_only, None).await?.total;
    let pending = total.saturating_sub(paused);
    let mut text = String::new();
    family(
        &mut text,
        "kairos_jobs",
        "gauge",
        "Jobs in the scheduler's stores, by state.",
    );
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(text, "kairos_jobs{{state=\"pending\"}} {pending}");
    let _ = writeln!(text, "kairos_jobs{{state=\"paused\"}} {paused}");
    family(
        &mut text,
        "kairos_scheduler_state",
        "gauge",
        "1 for the state the scheduler is in.",
    );
    let current = state.scheduler.state();
    for candidate in [
        SchedulerState::Running,
        SchedulerState::Paused,
        SchedulerState::Stopped,
    ] {
        let value = u8::from(candidate == current);
        let _ = writeln!(
            text,
            "kairos_scheduler_state{{state=\"{}\"}} {value}",
            state_name(candidate)
        );
    }
    family(
        &mut text,
        "kairos_runs_total",
        "counter",
        "Runs recorded since the API started, by outcome.",
    );
    for (outcome, count) in OUTCOMES.iter().zip(&state.metrics.runs) {
        let _ = writeln!(
            text,
            "kairos_runs_total{{outcome=\"{}\"}} {}",
            outcome.as_str(),
            count.load(Ordering::Relaxed)
        );
    }
    unlabelled(
        &mut text,
        "kairos_metrics_events_lost_total",
        "counter",
        "Scheduler events the run counters missed (they fell behind).",
        state.metrics.events_lost.load(Ordering::Relaxed),
    );
    unlabelled(
        &mut text,
        "kairos_unwritten_runs",
        "gauge",
        "Finished runs whose records the job store has not taken yet.",
        u64::try_from(state.scheduler.unwritten_runs()).unwrap_or(u64::MAX),
    );
    unlabelled(
        &mut text,
        "kairos_records_backlogged_total",
        "counter",
        "Times a store's unwritten run records reached the cap (no jobs taken from it until written).",
        state.metrics.backlogged.load(Ordering::Relaxed),
    );
    family(
        &mut text,
        "kairos_alerts_total",
        "counter",
        "Alerts this node raised since the API started (each is raised once per cluster), by event.",
    );
    for (kind, count) in AlertKind::ALL.iter().zip(&state.metrics.alerts) {
        let _ = writeln!(
            text,
            "kairos_alerts_total{{event=\"{kind}\"}} {}",
            count.load(Ordering::Relaxed)
        );
    }
    family(
        &mut text,
        "kairos_alert_deliveries_total",
        "counter",
        "Alert webhook deliveries since the API started, by result (failed: attempts used up or refused; dropped: the webhook's queue was full).",
    );
    for (result, count) in ["delivered", "failed", "dropped"]
        .iter()
        .zip(&state.metrics.deliveries)
    {
        let _ = writeln!(
            text,
            "kairos_alert_deliveries_total{{result=\"{result}\"}} {}",
            count.load(Ordering::Relaxed)
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// Writes the `# HELP` and `# TYPE` lines that open one metric family.
fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} {kind}");
}

/// Writes a metric family that has a single, unlabelled sample.
fn unlabelled(text: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(text, name, kind, help);
    let _ = writeln!(text, "{name} {value}");
}
