//! Store latency and errors: [`InstrumentedStore`] wraps each of a scheduler's stores,
//! so every call the scheduler (and through it the API) makes is timed in one place.
//!
//! A call costs two reads of the monotonic clock and one histogram update, on handles
//! made once per store and operation: nothing is allocated per call (errors, which
//! are rare, look their counter up by labels).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{Buckets, STORE_BUCKETS};
use crate::history::RunRecord;
use crate::job::Job;
use crate::store::{
    Cluster, ConfigGeneration, DueJobs, FinishedRun, InstanceClaim, InstanceSlots, JobCounts,
    JobListing, JobPage, JobQuery, JobSchedule, JobStore, Jobs, NodeInfo, Nodes, OrphanedRun,
    Release, RunHistory, RunLimits, StoreError, StoreErrorKind, WakeUp,
};

/// One [`JobStore`] method, as the `operation` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOperation {
    /// `Jobs::add_job`.
    AddJob,
    /// `Jobs::add_jobs`.
    AddJobs,
    /// `Jobs::replace_job`.
    ReplaceJob,
    /// `Jobs::update_job`.
    UpdateJob,
    /// `Jobs::update_job_if`.
    UpdateJobIf,
    /// `Jobs::remove_job`.
    RemoveJob,
    /// `Jobs::remove_all_jobs`.
    RemoveAllJobs,
    /// `Jobs::get_job`.
    GetJob,
    /// `JobListing::get_jobs`.
    GetJobs,
    /// `JobListing::get_config_jobs`.
    GetConfigJobs,
    /// `JobListing::count_jobs`.
    CountJobs,
    /// `JobListing::count_job_states`.
    CountJobStates,
    /// `JobListing::list_jobs`.
    ListJobs,
    /// `DueJobs::next_run_time`.
    NextRunTime,
    /// `DueJobs::job_schedules`.
    JobSchedules,
    /// `DueJobs::acquire_due_jobs`.
    AcquireDueJobs,
    /// `DueJobs::release_jobs`.
    ReleaseJobs,
    /// `InstanceSlots::claim_instance`.
    ClaimInstance,
    /// `InstanceSlots::release_instance`.
    ReleaseInstance,
    /// `InstanceSlots::claim_instances`.
    ClaimInstances,
    /// `DueJobs::renew_holdings`.
    RenewHoldings,
    /// `InstanceSlots::finish_runs`.
    FinishRuns,
    /// `InstanceSlots::recover_owner`.
    RecoverOwner,
    /// `InstanceSlots::take_orphaned_runs`.
    TakeOrphanedRuns,
    /// `InstanceSlots::running_times`.
    RunningTimes,
    /// `InstanceSlots::wait_for_instance`.
    WaitForInstance,
    /// `InstanceSlots::stop_waiting`.
    StopWaiting,
    /// `Nodes::register_node`.
    RegisterNode,
    /// `Nodes::heartbeat`.
    Heartbeat,
    /// `Nodes::heartbeat_node`.
    HeartbeatNode,
    /// `Nodes::deregister_node`.
    DeregisterNode,
    /// `Nodes::list_nodes`.
    ListNodes,
    /// `Nodes::reap_dead_nodes`.
    ReapDeadNodes,
    /// `Cluster::config_generations`.
    ConfigGenerations,
    /// `Cluster::record_config_generation`.
    RecordConfigGeneration,
    /// `Cluster::claim_alert`.
    ClaimAlert,
    /// `RunHistory::last_success`.
    LastSuccess,
    /// `RunHistory::record_run`.
    RecordRun,
    /// `RunHistory::runs`.
    Runs,
    /// `RunHistory::runs_from`.
    RunsFrom,
    /// `RunHistory::prune_runs`.
    PruneRuns,
    /// `RunHistory::count_runs`.
    CountRuns,
}

impl StoreOperation {
    /// Every operation, in declaration order.
    pub const ALL: [StoreOperation; 42] = [
        StoreOperation::AddJob,
        StoreOperation::AddJobs,
        StoreOperation::ReplaceJob,
        StoreOperation::UpdateJob,
        StoreOperation::UpdateJobIf,
        StoreOperation::RemoveJob,
        StoreOperation::RemoveAllJobs,
        StoreOperation::GetJob,
        StoreOperation::GetJobs,
        StoreOperation::GetConfigJobs,
        StoreOperation::CountJobs,
        StoreOperation::CountJobStates,
        StoreOperation::ListJobs,
        StoreOperation::NextRunTime,
        StoreOperation::JobSchedules,
        StoreOperation::AcquireDueJobs,
        StoreOperation::ReleaseJobs,
        StoreOperation::ClaimInstance,
        StoreOperation::ReleaseInstance,
        StoreOperation::ClaimInstances,
        StoreOperation::RenewHoldings,
        StoreOperation::FinishRuns,
        StoreOperation::RecoverOwner,
        StoreOperation::TakeOrphanedRuns,
        StoreOperation::RunningTimes,
        StoreOperation::WaitForInstance,
        StoreOperation::StopWaiting,
        StoreOperation::RegisterNode,
        StoreOperation::Heartbeat,
        StoreOperation::HeartbeatNode,
        StoreOperation::DeregisterNode,
        StoreOperation::ListNodes,
        StoreOperation::ReapDeadNodes,
        StoreOperation::ConfigGenerations,
        StoreOperation::RecordConfigGeneration,
        StoreOperation::ClaimAlert,
        StoreOperation::LastSuccess,
        StoreOperation::RecordRun,
        StoreOperation::Runs,
        StoreOperation::RunsFrom,
        StoreOperation::PruneRuns,
        StoreOperation::CountRuns,
    ];

    /// The `operation` label: the method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOperation::AddJob => "add_job",
            StoreOperation::AddJobs => "add_jobs",
            StoreOperation::ReplaceJob => "replace_job",
            StoreOperation::UpdateJob => "update_job",
            StoreOperation::UpdateJobIf => "update_job_if",
            StoreOperation::RemoveJob => "remove_job",
            StoreOperation::RemoveAllJobs => "remove_all_jobs",
            StoreOperation::GetJob => "get_job",
            StoreOperation::GetJobs => "get_jobs",
            StoreOperation::GetConfigJobs => "get_config_jobs",
            StoreOperation::CountJobs => "count_jobs",
            StoreOperation::CountJobStates => "count_job_states",
            StoreOperation::ListJobs => "list_jobs",
            StoreOperation::NextRunTime => "next_run_time",
            StoreOperation::JobSchedules => "job_schedules",
            StoreOperation::AcquireDueJobs => "acquire_due_jobs",
            StoreOperation::ReleaseJobs => "release_jobs",
            StoreOperation::ClaimInstance => "claim_instance",
            StoreOperation::ReleaseInstance => "release_instance",
            StoreOperation::ClaimInstances => "claim_instances",
            StoreOperation::RenewHoldings => "renew_holdings",
            StoreOperation::FinishRuns => "finish_runs",
            StoreOperation::RecoverOwner => "recover_owner",
            StoreOperation::TakeOrphanedRuns => "take_orphaned_runs",
            StoreOperation::RunningTimes => "running_times",
            StoreOperation::WaitForInstance => "wait_for_instance",
            StoreOperation::StopWaiting => "stop_waiting",
            StoreOperation::RegisterNode => "register_node",
            StoreOperation::Heartbeat => "heartbeat",
            StoreOperation::HeartbeatNode => "heartbeat_node",
            StoreOperation::DeregisterNode => "deregister_node",
            StoreOperation::ListNodes => "list_nodes",
            StoreOperation::ReapDeadNodes => "reap_dead_nodes",
            StoreOperation::ConfigGenerations => "config_generations",
            StoreOperation::RecordConfigGeneration => "record_config_generation",
            StoreOperation::ClaimAlert => "claim_alert",
            StoreOperation::LastSuccess => "last_success",
            StoreOperation::RecordRun => "record_run",
            StoreOperation::Runs => "runs",
            StoreOperation::RunsFrom => "runs_from",
            StoreOperation::PruneRuns => "prune_runs",
            StoreOperation::CountRuns => "count_runs",
        }
    }
}

/// The labels of a store call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    store: String,
    operation: &'static str,
}

/// The labels of a failed store call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    store: String,
    operation: &'static str,
    kind: &'static str,
}

/// The store-call families of a [`super::Metrics`].
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    duration: Family<OperationLabels, Histogram, Buckets>,
    errors: Family<ErrorLabels, Counter>,
}

impl StoreMetrics {
    pub(super) fn register(registry: &mut Registry) -> StoreMetrics {
        let duration = Family::new_with_constructor(Buckets(&STORE_BUCKETS));
        registry.register(
            "kairos_store_operation_duration_seconds",
            "How long job store calls took, by store and operation (failed ones too)",
            duration.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "kairos_store_errors",
            "Job store calls that failed, by store, operation and kind (unavailable, corrupt, conflict, not_found)",
            errors.clone(),
        );
        StoreMetrics { duration, errors }
    }

    /// Wraps `store` (named `name`) so that its calls are timed and counted.
    pub fn instrument(&self, name: &str, store: Arc<dyn JobStore>) -> InstrumentedStore {
        InstrumentedStore {
            inner: store,
            name: name.to_owned(),
            metrics: self.clone(),
            handles: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// A [`JobStore`] that times and counts each call of the store it wraps, and otherwise
/// passes everything through unchanged.
pub struct InstrumentedStore {
    inner: Arc<dyn JobStore>,
    name: String,
    metrics: StoreMetrics,
    /// Each operation's histogram, made on its first call.
    handles: [OnceLock<Histogram>; 37],
}

impl InstrumentedStore {
    fn observe(&self, operation: StoreOperation, started: Instant, error: Option<&StoreError>) {
        let took = started.elapsed().as_secs_f64();
        let index = operation as usize;
        if let Some(slot) = self.handles.get(index) {
            slot.get_or_init(|| {
                self.metrics.duration.get_or_create_owned(&OperationLabels {
                    store: self.name.clone(),
                    operation: operation.as_str(),
                })
            })
            .observe(took);
        }
        if let Some(error) = error {
            let kind = match error.kind() {
                StoreErrorKind::Conflict => "conflict",
                StoreErrorKind::NotFound => "not_found",
                StoreErrorKind::Unavailable => "unavailable",
                StoreErrorKind::Corrupt => "corrupt",
                StoreErrorKind::Config => "config",
            };
            self.metrics
                .errors
                .get_or_create(&ErrorLabels {
                    store: self.name.clone(),
                    operation: operation.as_str(),
                    kind,
                })
                .inc();
        }
    }
}

#[async_trait]
impl Jobs for InstrumentedStore {
    async fn add_job(&self, job: Job) -> Result<Job, StoreError> {
        let started = Instant::now();
        let result = self.inner.add_job(job).await;
        self.observe(StoreOperation::AddJob, started, result.as_ref().err());
        result
    }

    async fn add_jobs(&self, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        let started = Instant::now();
        let result = self.inner.add_jobs(jobs).await;
        self.observe(StoreOperation::AddJobs, started, result.as_ref().err());
        result
    }

    async fn replace_job(&self, job: Job) -> Result<Job, StoreError> {
        let started = Instant::now();
        let result = self.inner.replace_job(job).await;
        self.observe(StoreOperation::ReplaceJob, started, result.as_ref().err());
        result
    }

    async fn update_job(&self, job: Job) -> Result<Job, StoreError> {
        let started = Instant::now();
        let result = self.inner.update_job(job).await;
        self.observe(StoreOperation::UpdateJob, started, result.as_ref().err());
        result
    }

    async fn update_job_if(&self, job: Job, revision: u64) -> Result<Result<Job, u64>, StoreError> {
        let started = Instant::now();
        let result = self.inner.update_job_if(job, revision).await;
        self.observe(StoreOperation::UpdateJobIf, started, result.as_ref().err());
        result
    }

    async fn remove_job(&self, id: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.remove_job(id).await;
        self.observe(StoreOperation::RemoveJob, started, result.as_ref().err());
        result
    }

    async fn remove_all_jobs(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.remove_all_jobs().await;
        self.observe(
            StoreOperation::RemoveAllJobs,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get_job(id).await;
        self.observe(StoreOperation::GetJob, started, result.as_ref().err());
        result
    }
}
#[async_trait]
impl JobListing for InstrumentedStore {
    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get_jobs().await;
        self.observe(StoreOperation::GetJobs, started, result.as_ref().err());
        result
    }

    async fn get_config_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get_config_jobs().await;
        self.observe(
            StoreOperation::GetConfigJobs,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn count_jobs(&self) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = self.inner.count_jobs().await;
        self.observe(StoreOperation::CountJobs, started, result.as_ref().err());
        result
    }

    async fn count_job_states(&self) -> Result<JobCounts, StoreError> {
        let started = Instant::now();
        let result = self.inner.count_job_states().await;
        self.observe(
            StoreOperation::CountJobStates,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage, StoreError> {
        let started = Instant::now();
        let result = self.inner.list_jobs(query).await;
        self.observe(StoreOperation::ListJobs, started, result.as_ref().err());
        result
    }
}

#[async_trait]
impl DueJobs for InstrumentedStore {
    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let started = Instant::now();
        let result = self.inner.next_run_time().await;
        self.observe(StoreOperation::NextRunTime, started, result.as_ref().err());
        result
    }

    async fn job_schedules(&self, ids: &[String]) -> Result<Vec<Option<JobSchedule>>, StoreError> {
        let started = Instant::now();
        let result = self.inner.job_schedules(ids).await;
        self.observe(StoreOperation::JobSchedules, started, result.as_ref().err());
        result
    }

    async fn acquire_due_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        let started = Instant::now();
        let result = self.inner.acquire_due_jobs(owner, now, limit, lease).await;
        self.observe(
            StoreOperation::AcquireDueJobs,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn release_jobs(
        &self,
        owner: &str,
        releases: &[Release],
    ) -> Result<Vec<String>, StoreError> {
        let started = Instant::now();
        let result = self.inner.release_jobs(owner, releases).await;
        self.observe(StoreOperation::ReleaseJobs, started, result.as_ref().err());
        result
    }

    async fn renew_holdings(
        &self,
        owner: &str,
        job_ids: &[String],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.renew_holdings(owner, job_ids, now, lease).await;
        self.observe(
            StoreOperation::RenewHoldings,
            started,
            result.as_ref().err(),
        );
        result
    }

    // Once per start and reload each: passed on without a metric of their own.
    async fn move_next_run_times(
        &self,
        moves: Vec<crate::store::NextRunMove>,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.move_next_run_times(moves).await
    }
}

#[async_trait]
impl InstanceSlots for InstrumentedStore {
    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
    ) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self
            .inner
            .claim_instance(job_id, owner, max_instances)
            .await;
        self.observe(
            StoreOperation::ClaimInstance,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.release_instance(job_id, owner).await;
        self.observe(
            StoreOperation::ReleaseInstance,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn claim_instances(
        &self,
        owner: &str,
        claims: &[InstanceClaim],
    ) -> Result<Vec<bool>, StoreError> {
        let started = Instant::now();
        let result = self.inner.claim_instances(owner, claims).await;
        self.observe(
            StoreOperation::ClaimInstances,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn finish_runs(&self, owner: &str, runs: Vec<FinishedRun>) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.finish_runs(owner, runs).await;
        self.observe(StoreOperation::FinishRuns, started, result.as_ref().err());
        result
    }

    async fn recover_owner(&self, owner: &str) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = self.inner.recover_owner(owner).await;
        self.observe(StoreOperation::RecoverOwner, started, result.as_ref().err());
        result
    }

    async fn take_orphaned_runs(&self, owner: &str) -> Result<Vec<OrphanedRun>, StoreError> {
        let started = Instant::now();
        let result = self.inner.take_orphaned_runs(owner).await;
        self.observe(
            StoreOperation::TakeOrphanedRuns,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn running_times(&self, job_id: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let started = Instant::now();
        let result = self.inner.running_times(job_id).await;
        self.observe(StoreOperation::RunningTimes, started, result.as_ref().err());
        result
    }

    async fn wait_for_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self
            .inner
            .wait_for_instance(job_id, owner, max_instances, ttl)
            .await;
        self.observe(
            StoreOperation::WaitForInstance,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn stop_waiting(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.stop_waiting(job_id, owner).await;
        self.observe(StoreOperation::StopWaiting, started, result.as_ref().err());
        result
    }
}

#[async_trait]
impl RunHistory for InstrumentedStore {
    async fn last_success(&self, job_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let started = Instant::now();
        let result = self.inner.last_success(job_id).await;
        self.observe(StoreOperation::LastSuccess, started, result.as_ref().err());
        result
    }

    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.record_run(record).await;
        self.observe(StoreOperation::RecordRun, started, result.as_ref().err());
        result
    }

    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let started = Instant::now();
        let result = self.inner.runs(job_id, limit).await;
        self.observe(StoreOperation::Runs, started, result.as_ref().err());
        result
    }

    async fn runs_from(
        &self,
        job_id: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let started = Instant::now();
        let result = self.inner.runs_from(job_id, offset, limit).await;
        self.observe(StoreOperation::RunsFrom, started, result.as_ref().err());
        result
    }

    async fn prune_runs(&self, limits: &RunLimits, batch: usize) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = self.inner.prune_runs(limits, batch).await;
        self.observe(StoreOperation::PruneRuns, started, result.as_ref().err());
        result
    }

    async fn count_runs(&self) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = self.inner.count_runs().await;
        self.observe(StoreOperation::CountRuns, started, result.as_ref().err());
        result
    }
}

#[async_trait]
impl Nodes for InstrumentedStore {
    async fn register_node(&self, node: NodeInfo) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.register_node(node).await;
        self.observe(StoreOperation::RegisterNode, started, result.as_ref().err());
        result
    }

    async fn heartbeat(&self, node_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.heartbeat(node_id, now).await;
        self.observe(StoreOperation::Heartbeat, started, result.as_ref().err());
        result
    }

    async fn heartbeat_node(&self, node: &NodeInfo) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.heartbeat_node(node).await;
        self.observe(
            StoreOperation::HeartbeatNode,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn deregister_node(&self, node_id: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.deregister_node(node_id).await;
        self.observe(
            StoreOperation::DeregisterNode,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let started = Instant::now();
        let result = self.inner.list_nodes().await;
        self.observe(StoreOperation::ListNodes, started, result.as_ref().err());
        result
    }

    async fn reap_dead_nodes(
        &self,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let started = Instant::now();
        let result = self.inner.reap_dead_nodes(now, timeout).await;
        self.observe(
            StoreOperation::ReapDeadNodes,
            started,
            result.as_ref().err(),
        );
        result
    }
}

#[async_trait]
impl Cluster for InstrumentedStore {
    async fn zone_rules(&self) -> Result<Option<String>, StoreError> {
        self.inner.zone_rules().await
    }

    async fn record_zone_rules(&self, fingerprint: &str) -> Result<(), StoreError> {
        self.inner.record_zone_rules(fingerprint).await
    }

    async fn config_generations(&self, limit: usize) -> Result<Vec<ConfigGeneration>, StoreError> {
        let started = Instant::now();
        let result = self.inner.config_generations(limit).await;
        self.observe(
            StoreOperation::ConfigGenerations,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn record_config_generation(&self, next: ConfigGeneration) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.record_config_generation(next).await;
        self.observe(
            StoreOperation::RecordConfigGeneration,
            started,
            result.as_ref().err(),
        );
        result
    }

    async fn claim_alert(
        &self,
        key: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.claim_alert(key, now, ttl).await;
        self.observe(StoreOperation::ClaimAlert, started, result.as_ref().err());
        result
    }

    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<WakeUp>> {
        self.inner.wake_ups()
    }

    fn fire_ahead(&self) -> Duration {
        self.inner.fire_ahead()
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `fn` names of the block that opens with `start` and ends at a `}` in the
    /// first column.
    fn methods(source: &str, start: &str) -> std::collections::BTreeSet<String> {
        let block = source
            .split_once(start)
            .map(|(_, rest)| rest.split("\n}").next().unwrap_or(""))
            .unwrap_or("");
        block
            .lines()
            .filter_map(|line| {
                let line = line.trim_start();
                let line = line.strip_prefix("async ").unwrap_or(line);
                let name = line.strip_prefix("fn ")?;
                Some(name.split(['(', '<']).next()?.to_owned())
            })
            .collect()
    }

    /// A method the wrapper did not pass on would fall back to the trait's default and
    /// silently bypass the wrapped store's own (a full read instead of a count).
    #[test]
    fn every_store_method_is_passed_on() {
        let mut all = 0;
        for part in [
            "Jobs",
            "DueJobs",
            "InstanceSlots",
            "RunHistory",
            "Nodes",
            "Cluster",
        ] {
            let contract = methods(
                include_str!("../store/mod.rs"),
                &format!("pub trait {part}:"),
            );
            let wrapped = methods(
                include_str!("store.rs"),
                &format!("impl {part} for InstrumentedStore"),
            );
            assert!(!contract.is_empty(), "{part}");
            assert_eq!(contract, wrapped, "{part}");
            all += contract.len();
        }
        assert!(all > 30, "{all}");
    }

    #[test]
    fn operations_are_indexed_in_declaration_order() {
        for (index, operation) in StoreOperation::ALL.iter().enumerate() {
            assert_eq!(*operation as usize, index, "{}", operation.as_str());
        }
    }
}
