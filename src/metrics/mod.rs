//! What kairos counts, for `GET /metrics`: one prometheus-client [`Registry`] per
//! scheduler, with the names docs/metrics.md lists (and the Grafana dashboard and
//! Prometheus rules under `deploy/` query).
//!
//! # Ground rules
//! - Nothing here reads a store or walks the jobs. Counters and histograms are fed
//!   where things happen (a run ends, a store call returns, an alert is raised);
//!   gauges of state (jobs by state, executor load) are set by the scrape from cheap
//!   counts, so a scrape costs the same with ten jobs or a million.
//! - The hot path allocates no label per run: the handles of a (task, executor) pair,
//!   of a store operation and of a watched job are looked up by `&str` in small caches
//!   and cloned (an `Arc` each); only the first run of a pair builds its labels.
//! - Per-job series (last success and last failure) exist only for jobs defined in the
//!   config files and jobs with `expect_success_within`, and for at most
//!   [`MAX_WATCHED_JOBS`] of them, so a million API-added jobs add no series.

pub mod store;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::alert::AlertKind;
use crate::history::{RunOutcome, RunRecord};
use crate::job::Job;

pub use self::store::{StoreMetrics, StoreOperation};

/// The most jobs with last-success and last-failure series; past it, jobs that would
/// qualify get none (and a warning says so once).
pub const MAX_WATCHED_JOBS: usize = 10_000;

/// The run outcomes in the order of [`Metrics`]' per-outcome handles.
const OUTCOMES: [RunOutcome; 5] = [
    RunOutcome::Success,
    RunOutcome::Error,
    RunOutcome::Timeout,
    RunOutcome::Missed,
    RunOutcome::Skipped,
];

/// Lateness buckets (seconds): a healthy node starts runs within milliseconds; the
/// upper ones tell a full pool or a node that was down.
const LATENESS_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 3600.0,
];

/// Duration buckets (seconds), from a quick HTTP call to an hour-long batch job.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Store call buckets (seconds): a local SQLite call takes tens of microseconds, a
/// remote database a millisecond or more.
pub(crate) const STORE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// A label set with one `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// A label set with one `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The state.
    pub state: &'static str,
}

/// A label set with one `event` label (an alert's kind).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

/// A label set with one `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The labels of run histograms: what ran where.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    task: String,
    executor: String,
}

/// A label set with one `executor` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecutorLabels {
    /// The executor's name.
    pub executor: String,
}

/// A label set with one `job_id` label (not `job`: Prometheus gives every target a
/// `job` label of its own, which would rename ours to `exported_job`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job_id: String,
}

/// Builds histograms with fixed buckets for a [`Family`].
#[derive(Clone, Copy)]
pub(crate) struct Buckets(pub(crate) &'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// A seconds-since-the-epoch gauge.
type Timestamp = Gauge<f64, AtomicU64>;

/// The handles one run updates, cloned from [`Metrics`]' caches when the run is
/// handed over: updating them at its end takes no lock and no allocation.
#[derive(Clone, Debug)]
pub struct RunMetrics {
    lateness: Histogram,
    duration: Histogram,
    retries: Counter,
    /// The job's last success and last failure, when the job is watched.
    last: Option<(Timestamp, Timestamp)>,
}

/// Everything one scheduler counts, and the registry `GET /metrics` encodes.
pub struct Metrics {
    registry: Registry,
    runs: [Counter; 5],
    lateness: Family<RunLabels, Histogram, Buckets>,
    duration: Family<RunLabels, Histogram, Buckets>,
    retries: Family<RunLabels, Counter>,
    /// (task → executor → handles): looked up by `&str`, so a run allocates nothing.
    // foldhash, not SipHash: looked up by task and executor for every run.
    by_run: Mutex<hashbrown::HashMap<String, hashbrown::HashMap<String, RunMetrics>>>,
    last_success: Family<JobLabels, Timestamp>,
    last_failure: Family<JobLabels, Timestamp>,
    /// The watched jobs' (last success, last failure), by job id.
    watched: Mutex<HashMap<String, (Timestamp, Timestamp)>>,
    alerts: [Counter; 4],
    deliveries: [Counter; 3],
    backlogged: Counter,
    /// Jobs by state, set by each scrape from the stores' counts.
    pub jobs: Family<StateLabels, Gauge>,
    /// 1 for the scheduler's state, set by each scrape.
    pub scheduler_state: Family<StateLabels, Gauge>,
    /// Runs executing, by executor, set by each scrape.
    pub executor_busy: Family<ExecutorLabels, Gauge>,
    /// Runs waiting for a worker, by executor, set by each scrape.
    pub executor_queued: Family<ExecutorLabels, Gauge>,
    /// Workers, by executor, set by each scrape.
    pub executor_capacity: Family<ExecutorLabels, Gauge>,
    /// Finished runs whose records the stores have not taken yet, set by each scrape.
    pub unwritten_runs: Gauge,
    /// Store calls, timed and counted by [`store::InstrumentedStore`].
    pub store: StoreMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every kairos metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let runs_family = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "kairos_runs",
            "Runs recorded since the scheduler started, by outcome",
            runs_family.clone(),
        );
        let runs = OUTCOMES.map(|outcome| {
            runs_family.get_or_create_owned(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
        });
        let lateness = Family::new_with_constructor(Buckets(&LATENESS_BUCKETS));
        registry.register(
            "kairos_run_lateness_seconds",
            "How late runs started after their scheduled time, by task and executor",
            lateness.clone(),
        );
        let duration = Family::new_with_constructor(Buckets(&DURATION_BUCKETS));
        registry.register(
            "kairos_run_duration_seconds",
            "How long runs took from start to end, by task and executor",
            duration.clone(),
        );
        let retries = Family::<RunLabels, Counter>::default();
        registry.register(
            "kairos_run_retries",
            "Runs that were a retry (attempt 2 or later) of their scheduled time, by task and executor",
            retries.clone(),
        );
        let last_success = Family::<JobLabels, Timestamp>::default();
        registry.register(
            "kairos_job_last_success_timestamp_seconds",
            "When a watched job's last successful run on this node ended (config jobs and jobs with expect_success_within)",
            last_success.clone(),
        );
        let last_failure = Family::<JobLabels, Timestamp>::default();
        registry.register(
            "kairos_job_last_failure_timestamp_seconds",
            "When a watched job's last failed run (error or timeout) on this node ended",
            last_failure.clone(),
        );
        let alerts_family = Family::<EventLabels, Counter>::default();
        registry.register(
            "kairos_alerts",
            "Alerts this node raised since the scheduler started (each is raised once per cluster), by event",
            alerts_family.clone(),
        );
        let alerts = AlertKind::ALL.map(|kind| {
            alerts_family.get_or_create_owned(&EventLabels {
                event: kind.as_str(),
            })
        });
        let deliveries_family = Family::<ResultLabels, Counter>::default();
        registry.register(
            "kairos_alert_deliveries",
            "Alert webhook deliveries, by result (failed: attempts used up or refused; dropped: the webhook's queue was full)",
            deliveries_family.clone(),
        );
        let deliveries = ["delivered", "failed", "dropped"]
            .map(|result| deliveries_family.get_or_create_owned(&ResultLabels { result }));
        let backlogged = Counter::default();
        registry.register(
            "kairos_records_backlogged",
            "Times a store's unwritten run records reached the cap (no jobs taken from it until written)",
            backlogged.clone(),
        );
        let events_lost: Counter = Counter::default();
        registry.register(
            "kairos_metrics_events_lost",
            "Scheduler events the metrics missed; always 0 since they are counted where they happen, kept for dashboards that query it",
            events_lost,
        );
        let jobs = Family::<StateLabels, Gauge>::default();
        registry.register(
            "kairos_jobs",
            "Jobs in the scheduler's stores, by state (pending: with a next run time; paused; failed: set aside as failed or broken), counted by the stores",
            jobs.clone(),
        );
        let scheduler_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "kairos_scheduler_state",
            "1 for the state the scheduler is in",
            scheduler_state.clone(),
        );
        let executor_busy = Family::<ExecutorLabels, Gauge>::default();
        registry.register(
            "kairos_executor_busy",
            "Runs executing, by executor",
            executor_busy.clone(),
        );
        let executor_queued = Family::<ExecutorLabels, Gauge>::default();
        registry.register(
            "kairos_executor_queued",
            "Runs handed to an executor and waiting for a worker (not those handed over early, waiting for their time), by executor",
            executor_queued.clone(),
        );
        let executor_capacity = Family::<ExecutorLabels, Gauge>::default();
        registry.register(
            "kairos_executor_capacity",
            "Runs an executor executes at once (max_workers), by executor",
            executor_capacity.clone(),
        );
        let unwritten_runs = Gauge::default();
        registry.register(
            "kairos_unwritten_runs",
            "Finished runs whose records the job store has not taken yet",
            unwritten_runs.clone(),
        );
        let store = StoreMetrics::register(&mut registry);
        Metrics {
            registry,
            runs,
            lateness,
            duration,
            retries,
            by_run: Mutex::default(),
            last_success,
            last_failure,
            watched: Mutex::default(),
            alerts,
            deliveries,
            backlogged,
            jobs,
            scheduler_state,
            executor_busy,
            executor_queued,
            executor_capacity,
            unwritten_runs,
            store,
        }
    }

    /// The registry, for encoding a scrape.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Writes the Prometheus text exposition (format 0.0.4) of every metric.
    pub fn encode(&self, text: &mut String) -> Result<(), std::fmt::Error> {
        prometheus_client::encoding::prometheus_text::encode(text, &self.registry)
    }

    /// The handles a run of `job` updates when it ends: taken when the run is handed
    /// over, where the job is at hand.
    pub fn for_run(&self, job: &Job) -> RunMetrics {
        let mut by_run = lock(&self.by_run);
        let cached = by_run
            .get(job.task.as_str())
            .and_then(|executors| executors.get(job.executor.as_str()))
            .cloned();
        let mut handles = match cached {
            Some(handles) => handles,
            None => {
                let labels = RunLabels {
                    task: job.task.clone(),
                    executor: job.executor.clone(),
                };
                let handles = RunMetrics {
                    lateness: self.lateness.get_or_create_owned(&labels),
                    duration: self.duration.get_or_create_owned(&labels),
                    retries: self.retries.get_or_create_owned(&labels),
                    last: None,
                };
                by_run
                    .entry(job.task.clone())
                    .or_default()
                    .insert(job.executor.clone(), handles.clone());
                handles
            }
        };
        drop(by_run);
        if watched(job) {
            handles.last = self.watched_job(&job.id);
        }
        handles
    }

    /// The last-success and last-failure gauges of a watched job, made on its first
    /// run; `None` past [`MAX_WATCHED_JOBS`].
    fn watched_job(&self, id: &str) -> Option<(Timestamp, Timestamp)> {
        let mut watched = lock(&self.watched);
        if let Some(gauges) = watched.get(id) {
            return Some(gauges.clone());
        }
        if watched.len() >= MAX_WATCHED_JOBS {
            if watched.len() == MAX_WATCHED_JOBS {
                tracing::warn!(
                    limit = MAX_WATCHED_JOBS,
                    "more watched jobs than metrics keep last-success series for; the others get none (docs/metrics.md)"
                );
                // One more entry than the limit marks the warning as given; it has
                // no series of its own.
                watched.insert(String::new(), (Timestamp::default(), Timestamp::default()));
            }
            return None;
        }
        let labels = JobLabels {
            job_id: id.to_owned(),
        };
        let gauges = (
            self.last_success.get_or_create_owned(&labels),
            self.last_failure.get_or_create_owned(&labels),
        );
        watched.insert(id.to_owned(), gauges.clone());
        Some(gauges)
    }

    /// Whether any of the jobs `ids` has series of its own here (a watched job that
    /// ran); one lock for them all.
    pub fn watches_any(&self, ids: &[String]) -> bool {
        let watched = lock(&self.watched);
        ids.iter().any(|id| watched.contains_key(id))
    }

    /// Forgets a removed job's per-job series (a config job that a reload removed).
    pub fn forget_job(&self, id: &str) {
        if lock(&self.watched).remove(id).is_some() {
            let labels = JobLabels {
                job_id: id.to_owned(),
            };
            self.last_success.remove(&labels);
            self.last_failure.remove(&labels);
        }
    }

    /// Counts a run that ended, with the handles taken when it was handed over
    /// (`None` for a run that never was, which counts its outcome only).
    /// `attempt` is which attempt of its scheduled time the run was.
    pub fn run_ended(&self, record: &RunRecord, handles: Option<&RunMetrics>, attempt: u32) {
        if let Some(index) = OUTCOMES.iter().position(|known| *known == record.outcome) {
            self.runs[index].inc();
        }
        let Some(handles) = handles else { return };
        if let Some(started) = record.started_at {
            let late = (started - record.scheduled_time).num_microseconds();
            handles
                .lateness
                .observe(late.unwrap_or(i64::MAX).max(0) as f64 / 1e6);
            let took = (record.finished_at - started).num_microseconds();
            handles
                .duration
                .observe(took.unwrap_or(i64::MAX).max(0) as f64 / 1e6);
        }
        if attempt > 1 {
            handles.retries.inc();
        }
        if let Some((success, failure)) = &handles.last {
            let at = record.finished_at.timestamp_micros() as f64 / 1e6;
            match record.outcome {
                RunOutcome::Success => {
                    success.set(at);
                }
                RunOutcome::Error | RunOutcome::Timeout => {
                    failure.set(at);
                }
                RunOutcome::Missed | RunOutcome::Skipped => {}
            }
        }
    }

    /// Counts an alert raised by this node.
    pub fn alert_raised(&self, kind: AlertKind) {
        if let Some(index) = AlertKind::ALL.iter().position(|known| *known == kind) {
            self.alerts[index].inc();
        }
    }

    /// Counts an alert delivery: delivered, failed (`attempts > 0`) or dropped.
    pub fn alert_delivery(&self, delivered: bool, attempts: u32) {
        let index = match (delivered, attempts) {
            (true, _) => 0,
            (false, 0) => 2,
            (false, _) => 1,
        };
        self.deliveries[index].inc();
    }

    /// Counts a store's backlog of run records reaching the cap.
    pub fn records_backlogged(&self) {
        self.backlogged.inc();
    }
}

/// Whether a job gets last-success and last-failure series: a job of the config
/// files, or one with a dead-man's switch (its opt-in: a job someone watches).
pub fn watched(job: &Job) -> bool {
    job.is_from_config() || job.expect_success.is_some()
}

/// Locks a cache; a panic elsewhere while it was held leaves it usable (it holds
/// only handles).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_keep_their_names_and_zero_series() {
        let metrics = Metrics::new();
        let mut text = String::new();
        metrics.encode(&mut text).expect("encoding into a String");
        for line in [
            "# TYPE kairos_runs_total counter",
            "kairos_runs_total{outcome=\"success\"} 0",
            "kairos_alerts_total{event=\"failed\"} 0",
            "kairos_alert_deliveries_total{result=\"dropped\"} 0",
            "kairos_records_backlogged_total 0",
            "kairos_metrics_events_lost_total 0",
            "# TYPE kairos_unwritten_runs gauge",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }
}
