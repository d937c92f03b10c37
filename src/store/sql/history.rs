//! The runs half of the SQL store: running-instance slots (`max_instances` across a
//! cluster) and the run history with its retention.
//!
//! # Instance slots
//! A running instance is a row `(job_id, slot)` with `slot < max_instances`; the
//! primary key is the lock. Claiming reads the job's live slots, and if fewer than
//! `max_instances` are taken inserts the lowest free one: two schedulers racing for
//! the same slot cannot both insert it, and the loser looks again. No transaction, no
//! row lock on the job (which may not even exist any more), and one read plus one
//! insert when nobody races. A slot whose owner died stops counting at `expires_at`
//! (claim time + the store's instance TTL) and is cleared by the next claim.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;

use super::driver::{Arg, SqlDb};
use super::{
    duration_micros, failure, instant, is_conflict, marks, padded, Dialect, SqlStore, CHUNK,
};
use crate::history::{RunOutcome, RunRecord};
use crate::store::StoreError;

/// The columns a run read selects, in the order [`read_run`] expects.
const RUN_COLUMNS: &str =
    "run_id, job_id, scheduled_time, started_at, finished_at, outcome, error, output";

/// How many times a claim looks again after losing a race for a slot. Each lost race
/// means another scheduler took a slot, so a few rounds settle it.
const MAX_SLOT_RACES: u32 = 16;

impl<D: Dialect> SqlStore<D> {
    /// [`crate::store::JobStore::claim_instance`].
    pub(super) async fn claim_slot(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
    ) -> Result<bool, StoreError> {
        let select = self.sql("SELECT slot, expires_at FROM {p}instances WHERE job_id = ?");
        let clear = self.sql("DELETE FROM {p}instances WHERE job_id = ? AND expires_at <= ?");
        let insert = self.sql(
            "INSERT INTO {p}instances (job_id, slot, owner, claimed_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        );
        let limit = usize::try_from(max_instances).unwrap_or(usize::MAX);
        for _ in 0..=max_instances.min(MAX_SLOT_RACES) {
            let now = Utc::now().timestamp_micros();
            let rows = self.fetch(&select, vec![job_id.into()]).await?;
            let mut live = BTreeSet::new();
            let mut expired = false;
            for row in &rows {
                let slot = D::Database::int(row, 0).map_err(failure::<D>)?;
                let expires = D::Database::int(row, 1).map_err(failure::<D>)?;
                if expires.is_some_and(|expires| expires > now) {
                    live.insert(slot.unwrap_or(0));
                } else {
                    expired = true;
                }
            }
            if live.len() >= limit {
                return Ok(false);
            }
            if expired {
                self.execute(&clear, vec![job_id.into(), now.into()])
                    .await?;
            }
            // Fewer than max_instances slots are live, so one below it is free.
            let slot = (0..).find(|slot| !live.contains(slot)).unwrap_or(0);
            let expires = now.saturating_add(duration_micros(self.instance_ttl));
            let args = vec![
                job_id.into(),
                slot.into(),
                owner.into(),
                now.into(),
                expires.into(),
            ];
            match self.run(&insert, args).await {
                Ok(_) => return Ok(true),
                Err(error) if is_conflict::<D>(&error) => continue,
                Err(error) => return Err(failure::<D>(error)),
            }
        }
        Ok(false)
    }

    /// [`crate::store::JobStore::release_instance`]: frees one of `owner`'s slots.
    pub(super) async fn release_slot(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let select = self.sql(
            "SELECT slot FROM {p}instances WHERE job_id = ? AND owner = ? \
             ORDER BY slot DESC LIMIT 1",
        );
        let delete =
            self.sql("DELETE FROM {p}instances WHERE job_id = ? AND slot = ? AND owner = ?");
        // Two releases by one owner may pick the same slot; the loser picks again.
        for _ in 0..MAX_SLOT_RACES {
            let rows = self
                .fetch(&select, vec![job_id.into(), owner.into()])
                .await?;
            let Some(row) = rows.first() else {
                return Ok(()); // none left (or it expired and another owner took it)
            };
            let slot = D::Database::int(row, 0).map_err(failure::<D>)?;
            let args = vec![job_id.into(), slot.into(), owner.into()];
            if self.execute(&delete, args).await? > 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    /// [`crate::store::JobStore::record_run`].
    pub(super) async fn insert_run(&self, record: RunRecord) -> Result<(), StoreError> {
        let sql = self.sql(&format!(
            "INSERT INTO {{p}}runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ));
        let args = vec![
            record.run_id.into(),
            record.job_id.into(),
            record.scheduled_time.timestamp_micros().into(),
            record.started_at.map(|at| at.timestamp_micros()).into(),
            record.finished_at.timestamp_micros().into(),
            record.outcome.as_str().into(),
            record.error.into(),
            record.output.into(),
        ];
        self.execute(&sql, args).await.map(drop)
    }

    /// [`crate::store::JobStore::runs`]: newest first, by finish time, then by
    /// insertion order.
    pub(super) async fn select_runs(
        &self,
        job_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (filter, mut args) = match job_id {
            Some(job_id) => ("WHERE job_id = ? ", vec![Arg::from(job_id)]),
            None => ("", Vec::new()),
        };
        args.push(limit.into());
        let sql = self.sql(&format!(
            "SELECT {RUN_COLUMNS} FROM {{p}}runs {filter}\
             ORDER BY finished_at DESC, seq DESC LIMIT ?"
        ));
        let rows = self.fetch(&sql, args).await?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            match read_run::<D>(row) {
                Ok(run) => runs.push(run),
                // One unreadable record must not hide the history.
                Err(error) => {
                    tracing::warn!(dialect = D::NAME, %error, "skipping an unreadable run record");
                }
            }
        }
        Ok(runs)
    }

    /// [`crate::store::JobStore::prune_runs`]: at most `batch` rows per call, older
    /// ones first, then the oldest beyond `max_rows`.
    pub(super) async fn delete_runs(
        &self,
        keep: Option<Duration>,
        max_rows: Option<u64>,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let batch = u64::try_from(batch).unwrap_or(u64::MAX);
        let mut deleted = 0;
        if let Some(keep) = keep {
            let cutoff = Utc::now()
                .timestamp_micros()
                .saturating_sub(duration_micros(keep));
            let sql = self
                .sql("SELECT seq FROM {p}runs WHERE finished_at < ? ORDER BY finished_at LIMIT ?");
            let rows = self
                .fetch(&sql, vec![cutoff.into(), to_i64(batch).into()])
                .await?;
            deleted += self.delete_seqs(&rows).await?;
        }
        if let Some(max_rows) = max_rows {
            let room = batch.saturating_sub(deleted);
            if room > 0 {
                let sql = self.sql(
                    "SELECT seq FROM {p}runs ORDER BY finished_at DESC, seq DESC LIMIT ? OFFSET ?",
                );
                let rows = self
                    .fetch(&sql, vec![to_i64(room).into(), to_i64(max_rows).into()])
                    .await?;
                deleted += self.delete_seqs(&rows).await?;
            }
        }
        Ok(deleted)
    }

    /// Deletes the runs whose `seq` the rows hold; returns how many went.
    async fn delete_seqs(&self, rows: &[super::RowOf<D>]) -> Result<u64, StoreError> {
        let mut seqs = Vec::with_capacity(rows.len());
        for row in rows {
            seqs.push(D::Database::int(row, 0).map_err(failure::<D>)?);
        }
        let mut deleted = 0;
        for chunk in seqs.chunks(CHUNK) {
            let mut args: Vec<Arg> = chunk.iter().map(|seq| Arg::Int(*seq)).collect();
            if let Some(last) = args.last().cloned() {
                args.resize(padded(args.len()), last);
            }
            let sql = self.sql(&format!(
                "DELETE FROM {{p}}runs WHERE seq IN ({})",
                marks(args.len())
            ));
            deleted += self.execute(&sql, args).await?;
        }
        Ok(deleted)
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads a row of [`RUN_COLUMNS`].
fn read_run<D: Dialect>(row: &super::RowOf<D>) -> Result<RunRecord, StoreError> {
    let text = |index| D::Database::text(row, index).map_err(failure::<D>);
    let int = |index| D::Database::int(row, index).map_err(failure::<D>);
    let required = |value: Option<i64>, column: &str| {
        value
            .ok_or_else(|| StoreError::Corrupt(format!("run record without {column}")))
            .and_then(instant)
    };
    let run_id = text(0)?.unwrap_or_default();
    let outcome_name = text(5)?.unwrap_or_default();
    let outcome: RunOutcome =
        serde_json::from_value(serde_json::Value::String(outcome_name.clone())).map_err(|_| {
            StoreError::Corrupt(format!(
                "run {run_id:?} has an unknown outcome {outcome_name:?}"
            ))
        })?;
    Ok(RunRecord {
        job_id: text(1)?.unwrap_or_default(),
        scheduled_time: required(int(2)?, "scheduled_time")?,
        started_at: int(3)?.map(instant).transpose()?,
        finished_at: required(int(4)?, "finished_at")?,
        outcome,
        error: text(6)?,
        output: text(7)?,
        run_id,
    })
}
