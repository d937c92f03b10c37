//! The run history in Redis: the [`RunHistory`] impl.

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};

use super::codec::{micros, micros_or_empty, store_error};
use super::{scripts, RedisStore, MAX_COUNT};
use crate::history::RunRecord;
use crate::store::{RunHistory, RunLimits, StoreError};

#[async_trait]
impl RunHistory for RedisStore {
    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(&record)
            .map_err(|error| StoreError::corrupt(format!("run {:?}: {error}", record.run_id)))?;
        let keys = &self.keys;
        self.invoke::<i64>(
            scripts::RECORD_RUN
                .key(&keys.runs)
                .key(keys.job_runs(&record.job_id))
                .key(&keys.run)
                .key(&keys.run_seq)
                .key(keys.job_class_runs(&record.job_id, is_success(&record)))
                .key(&keys.run_jobs)
                .arg(micros(record.finished_at))
                .arg(json)
                .arg(&record.job_id),
        )
        .await
        .map(drop)
    }

    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = match job_id {
            Some(id) => self.keys.job_runs(id),
            None => self.keys.runs.clone(),
        };
        let jsons: Vec<String> = self
            .invoke(
                scripts::RUNS
                    .key(index)
                    .key(&self.keys.run)
                    .arg(limit.min(MAX_COUNT)),
            )
            .await?;
        Ok(jsons
            .iter()
            .filter_map(|json| match serde_json::from_str(json) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::warn!(%error, "Redis job store: unreadable run record left out");
                    None
                }
            })
            .collect())
    }

    async fn prune_runs(&self, limits: &RunLimits, batch: usize) -> Result<u64, StoreError> {
        // A `keep` too long to subtract from now keeps everything.
        let cutoff = limits.keep.and_then(|keep| {
            let keep = TimeDelta::from_std(keep).ok()?;
            Utc::now().checked_sub_signed(keep)
        });
        let per_job = limits.successes_per_job.is_some() || limits.failures_per_job.is_some();
        if batch == 0 || (cutoff.is_none() && limits.max_rows.is_none() && !per_job) {
            return Ok(0);
        }
        let count = |limit: Option<u64>| limit.map(|limit| limit.to_string()).unwrap_or_default();
        let keys = &self.keys;
        let batch = batch.min(MAX_COUNT);
        let mut total = 0;
        // One call per SSCAN step of the run jobs set, each a bounded script, until the
        // set was walked through or the batch is full.
        let mut cursor = if per_job {
            "0".to_owned()
        } else {
            String::new()
        };
        loop {
            let (deleted, next): (i64, String) = self
                .invoke(
                    scripts::PRUNE_RUNS
                        .key(&keys.runs)
                        .key(&keys.run)
                        .key(&keys.run_jobs)
                        .arg(micros_or_empty(cutoff))
                        .arg(count(limits.max_rows))
                        .arg(batch - total)
                        .arg(&keys.prefix)
                        .arg(count(limits.successes_per_job))
                        .arg(count(limits.failures_per_job))
                        .arg(&cursor),
                )
                .await?;
            total += usize::try_from(deleted).unwrap_or(0);
            if total >= batch || cursor.is_empty() || next == "0" {
                break;
            }
            cursor = next;
        }
        Ok(u64::try_from(total).unwrap_or(u64::MAX))
    }

    async fn count_runs(&self) -> Result<u64, StoreError> {
        let mut connection = self.connection.clone();
        let count: u64 = ::redis::cmd("ZCARD")
            .arg(&self.keys.runs)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        Ok(count)
    }
}

/// Whether a record counts among its job's successes for the per-job limits.
pub(super) fn is_success(record: &RunRecord) -> bool {
    record.outcome == crate::history::RunOutcome::Success
}
