//! History retention runs in the background on the scheduler's clock, trimming each
//! store in bounded batches until nothing is left, once per period.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kairos::clock::ManualClock;
use kairos::history::RunRecord;
use kairos::job::Job;
use kairos::scheduler::{HistoryRetention, Scheduler};
use kairos::store::memory::MemoryStore;
use kairos::store::{JobStore, Release, StoreError};

/// A memory store whose history has `backlog` old records to delete, counting calls.
struct Backlogged {
    jobs: MemoryStore,
    backlog: AtomicU64,
    calls: Arc<AtomicU64>,
}

#[async_trait]
impl JobStore for Backlogged {
    async fn add_job(&self, job: Job) -> Result<Job, StoreError> {
        self.jobs.add_job(job).await
    }
    async fn replace_job(&self, job: Job) -> Result<Job, StoreError> {
        self.jobs.replace_job(job).await
    }
    async fn update_job(&self, job: Job) -> Result<Job, StoreError> {
        self.jobs.update_job(job).await
    }
    async fn remove_job(&self, id: &str) -> Result<(), StoreError> {
        self.jobs.remove_job(id).await
    }
    async fn remove_all_jobs(&self) -> Result<(), StoreError> {
        self.jobs.remove_all_jobs().await
    }
    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.jobs.get_job(id).await
    }
    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        self.jobs.get_jobs().await
    }
    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.jobs.next_run_time().await
    }
    async fn acquire_due_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        self.jobs.acquire_due_jobs(owner, now, limit, lease).await
    }
    async fn release_jobs(&self, owner: &str, releases: Vec<Release>) -> Result<(), StoreError> {
        self.jobs.release_jobs(owner, releases).await
    }
    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max: u32,
    ) -> Result<bool, StoreError> {
        self.jobs.claim_instance(job_id, owner, max).await
    }
    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.jobs.release_instance(job_id, owner).await
    }
    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        self.jobs.record_run(record).await
    }
    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.jobs.runs(job_id, limit).await
    }
    async fn prune_runs(
        &self,
        keep: Option<Duration>,
        max_rows: Option<u64>,
        batch: usize,
    ) -> Result<u64, StoreError> {
        assert_eq!(keep, Some(Duration::from_secs(86_400)));
        assert_eq!(max_rows, Some(500));
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.backlog.load(Ordering::SeqCst);
        let deleted = left.min(batch as u64);
        self.backlog.store(left - deleted, Ordering::SeqCst);
        Ok(deleted)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_in_batches_once_per_period() {
    let start = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let calls = Arc::new(AtomicU64::new(0));
    let store = Backlogged {
        jobs: MemoryStore::new(),
        backlog: AtomicU64::new(2_500),
        calls: Arc::clone(&calls),
    };
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .store("default", store)
        .history_retention(HistoryRetention {
            keep: Some(Duration::from_secs(86_400)),
            max_rows: Some(500),
            every: Duration::from_secs(600),
            batch: 1_000,
        })
        .build();
    scheduler.start();
    let wait_for_calls = |expected: u64| {
        let calls = Arc::clone(&calls);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while calls.load(Ordering::SeqCst) < expected && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            calls.load(Ordering::SeqCst)
        }
    };
    // Nothing before the first period.
    clock.advance(Duration::from_secs(599));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // At the period: 1,000 + 1,000 + 500, then a call that finds nothing.
    clock.advance(Duration::from_secs(1));
    assert_eq!(wait_for_calls(4).await, 4);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one round per period");
    // The next period: one call, nothing left.
    clock.advance(Duration::from_secs(600));
    assert_eq!(wait_for_calls(5).await, 5);
    scheduler.shutdown(None).await;
}
