//! The runs half of the SQL store: running-instance slots (`max_instances` across a
//! cluster), the [`InstanceSlots`] impl, and the run history with its retention, the
//! [`RunHistory`] impl.
//!
//! # Instance slots
//! A running instance is a row `(job_id, slot)` with `slot < max_instances`; the
//! primary key is the lock. Claiming reads the job's live slots, and if fewer than
//! `max_instances` are taken inserts the lowest free one: two schedulers racing for
//! the same slot cannot both insert it, and the loser looks again. No transaction, no
//! row lock on the job (which may not even exist any more), and one read plus one
//! insert when nobody races. A slot whose owner died stops counting at `expires_at`
//! (claim time + the store's instance TTL) and is cleared by the next claim.
//!
//! # Waiters
//! A job's waiter ([`InstanceSlots::wait_for_instance`]) is a row of `{p}waiters`
//! keyed by `job_id`: the primary key keeps one per job. A claim that
//! [queues](InstanceClaim::queues) reads it in the same statement as the slots (a
//! `UNION ALL`, its limit given as a negative slot, [`WAITER_ROW`]), so it costs no
//! round trip more; any other claim's statement is as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::driver::{Arg, SqlDb};
use super::jobs::id_args;
use super::{
    duration_micros, execute_on, failure, instant, is_conflict, marks, padded, Dialect, SqlStore,
    CHUNK,
};
use crate::history::{RunOutcome, RunRecord};
use crate::store::{
    decode_run_times, encode_run_times, slot_to_free, FinishedRun, InstanceClaim, InstanceSlots,
    OrphanedRun, RunHistory, RunLimits, StoreError,
};

/// The columns a run read selects, in the order [`read_run`] expects.
const RUN_COLUMNS: &str =
    "run_id, job_id, scheduled_time, started_at, finished_at, outcome, error, output, attempt";

/// One row's placeholders, as many as [`RUN_COLUMNS`].
const RUN_VALUES: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// How many run records one insert carries (9 values each, well under every
/// database's limit on bound parameters).
const RECORD_CHUNK: usize = 128;

/// One of an owner's slots of a job: its number and the last of its run times.
type HeldSlot = (i64, Option<DateTime<Utc>>);

/// The owner of an orphaned run's slot: a node died while the run went
/// ([`crate::store::InstanceSlots::take_orphaned_runs`]). No node id is empty.
pub(super) const ORPHANED: &str = "";

/// A waiter's row in a claim's read has the slot `WAITER_ROW - max_instances` (no slot
/// is negative), its run's limit, so the read needs no column more ([`waiter_limit`]).
const WAITER_ROW: i64 = -1;

/// The `max_instances` of the waiter whose row a claim's read gave `slot`, or `None`
/// for a slot's row ([`WAITER_ROW`]).
fn waiter_limit(slot: Option<i64>) -> Option<i64> {
    slot.filter(|slot| *slot < 0).map(|slot| WAITER_ROW - slot)
}

/// How many times a claim looks again after losing a race for a slot. Each lost race
/// means another scheduler took a slot, so a few rounds settle it.
const MAX_SLOT_RACES: u32 = 16;

#[async_trait]
impl<D: Dialect> InstanceSlots for SqlStore<D> {
    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
    ) -> Result<bool, StoreError> {
        self.claim_slot(job_id, owner, max_instances, &[], false)
            .await
    }

    /// Frees one of `owner`'s slots.
    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
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

    /// One read and one multi-row insert per chunk, in one transaction (one commit, which
    /// is what a busy second is made of). If another scheduler takes a slot between the
    /// read and the insert, the insert fails on the primary key, the chunk rolls back and
    /// its claims go one by one, which settles the race.
    async fn claim_instances(
        &self,
        owner: &str,
        claims: &[InstanceClaim],
    ) -> Result<Vec<bool>, StoreError> {
        let mut claimed = Vec::with_capacity(claims.len());
        for chunk in claims.chunks(CHUNK) {
            match self.try_claim_chunk(owner, chunk).await? {
                Some(chunk_claimed) => claimed.extend(chunk_claimed),
                None => {
                    for claim in chunk {
                        claimed.push(
                            self.claim_slot(
                                &claim.job_id,
                                owner,
                                claim.max_instances,
                                &claim.run_times,
                                claim.queues,
                            )
                            .await?,
                        );
                    }
                }
            }
        }
        Ok(claimed)
    }

    /// Frees the slots and inserts the records of a batch in one transaction per chunk.
    async fn finish_runs(&self, owner: &str, runs: Vec<FinishedRun>) -> Result<(), StoreError> {
        for chunk in runs.chunks(RECORD_CHUNK) {
            let mut transaction = self.begin().await?;
            // Each freeing run, by job: the last of its run times picks its own slot.
            let mut frees: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
            for run in chunk.iter().filter(|run| run.frees_instance) {
                frees
                    .entry(run.record.job_id.as_str())
                    .or_default()
                    .push(run.record.scheduled_time);
            }
            if !frees.is_empty() {
                // Which slot a run frees: `store::slot_to_free`. A plain read,
                // not a locking one: on MySQL a locking read locks every row it scans,
                // other owners' too, and waits for those another transaction holds, so
                // a node frozen inside its own finish would stall everyone's (found by
                // tests/cluster.rs). The DELETE below names each row by its
                // primary key, which locks only that row; a slot freed meanwhile by
                // this owner's own release_slot is simply not deleted twice.
                let select = self.sql(&format!(
                    "SELECT job_id, slot, run_times FROM {{p}}instances \
                     WHERE owner = ? AND job_id IN ({}) ORDER BY job_id, slot",
                    marks(padded(frees.len())),
                ));
                let mut args = vec![Arg::from(owner)];
                args.extend(id_args(frees.keys().copied()));
                let rows = D::Database::fetch_all(&mut transaction, &select, args)
                    .await
                    .map_err(failure::<D>)?;
                let mut held: BTreeMap<String, Vec<HeldSlot>> = BTreeMap::new();
                for row in &rows {
                    let job_id = D::Database::text(row, 0)
                        .map_err(failure::<D>)?
                        .unwrap_or_default();
                    let slot = D::Database::int(row, 1).map_err(failure::<D>)?;
                    let run_times = D::Database::text(row, 2).map_err(failure::<D>)?;
                    let last = run_times.and_then(|text| decode_run_times(&text).last().copied());
                    held.entry(job_id)
                        .or_default()
                        .push((slot.unwrap_or(0), last));
                }
                let mut freed: Vec<(String, i64)> = Vec::new();
                for (job_id, ends) in frees {
                    let Some(slots) = held.get_mut(job_id) else {
                        continue;
                    };
                    for end in ends {
                        let pick =
                            slot_to_free(slots.iter().map(|(_, last)| (true, *last)), Some(end));
                        if let Some(index) = pick {
                            let (slot, _) = slots.remove(index);
                            freed.push((job_id.to_owned(), slot));
                        }
                    }
                }
                self.delete_slots(&mut transaction, owner, &freed).await?;
            }
            let rows = vec![RUN_VALUES; chunk.len()].join(", ");
            let insert = self.sql(&format!(
                "INSERT INTO {{p}}runs ({RUN_COLUMNS}) VALUES {rows}"
            ));
            let mut args = Vec::with_capacity(chunk.len() * 9);
            for run in chunk {
                args.extend(record_args(run.record.clone()));
            }
            execute_on::<D>(&mut transaction, &insert, args)
                .await
                .map_err(failure::<D>)?;
            transaction.commit().await.map_err(failure::<D>)?;
        }
        Ok(())
    }

    /// Ends `owner`'s leases and frees its instance slots, in one transaction. The jobs
    /// keep their next run times, so runs that were in flight run again (at least once
    /// across a crash).
    async fn recover_owner(&self, owner: &str) -> Result<u64, StoreError> {
        // The same freeing as reaping a dead node: this owner's earlier life is one.
        let mut transaction = self.begin().await?;
        let freed = self.free_rows_of(&mut transaction, owner).await?;
        transaction.commit().await.map_err(failure::<D>)?;
        Ok(freed)
    }

    /// Each orphaned slot is taken by one conditional update (two takers race on it; one
    /// wins), then its job read; the slot of a job removed meanwhile is deleted. Orphans
    /// are rare (a node died during runs of jobs that allow several at once), so a
    /// statement each is cheap.
    async fn take_orphaned_runs(&self, owner: &str) -> Result<Vec<OrphanedRun>, StoreError> {
        let select = self.sql(&format!(
            "SELECT job_id, slot, run_times FROM {{p}}instances WHERE owner = '{ORPHANED}' \
             ORDER BY job_id, slot"
        ));
        let rows = self.fetch(&select, Vec::new()).await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let job_id = D::Database::text(row, 0).map_err(failure::<D>)?;
            let slot = D::Database::int(row, 1).map_err(failure::<D>)?;
            let run_times = D::Database::text(row, 2).map_err(failure::<D>)?;
            if let (Some(job_id), Some(slot)) = (job_id, slot) {
                found.push((job_id, slot, run_times.unwrap_or_default()));
            }
        }
        let take = self.sql(&format!(
            "UPDATE {{p}}instances SET owner = ?, claimed_at = ?, expires_at = ? \
             WHERE job_id = ? AND slot = ? AND owner = '{ORPHANED}'"
        ));
        let drop = self.sql("DELETE FROM {p}instances WHERE job_id = ? AND slot = ? AND owner = ?");
        let mut taken = Vec::new();
        for (job_id, slot, run_times) in found {
            let now = Utc::now().timestamp_micros();
            let expires = now.saturating_add(duration_micros(self.instance_ttl));
            let args = vec![
                Arg::from(owner),
                Arg::from(now),
                Arg::from(expires),
                Arg::from(job_id.as_str()),
                Arg::from(slot),
            ];
            if self.execute(&take, args).await? == 0 {
                continue; // another node took it
            }
            match crate::store::Jobs::get_job(self, &job_id).await? {
                Some(job) => taken.push(OrphanedRun {
                    job,
                    run_times: decode_run_times(&run_times),
                }),
                None => {
                    let args = vec![
                        Arg::from(job_id.as_str()),
                        Arg::from(slot),
                        Arg::from(owner),
                    ];
                    self.execute(&drop, args).await?;
                }
            }
        }
        Ok(taken)
    }

    /// One read of the job's live slots (the primary key's prefix), orphans left out.
    async fn running_times(&self, job_id: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let select = self.sql(&format!(
            "SELECT run_times FROM {{p}}instances \
             WHERE job_id = ? AND owner <> '{ORPHANED}' AND expires_at > ?"
        ));
        let now = Utc::now().timestamp_micros();
        let rows = self.fetch(&select, vec![job_id.into(), now.into()]).await?;
        let mut times = Vec::new();
        for row in &rows {
            if let Some(text) = D::Database::text(row, 0).map_err(failure::<D>)? {
                times.extend(decode_run_times(&text));
            }
        }
        Ok(times)
    }

    /// Takes the job's row if it is this owner's or ended (one update), else inserts
    /// it; the primary key refuses a second owner's.
    async fn wait_for_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now = Utc::now().timestamp_micros();
        let until = now.saturating_add(duration_micros(ttl));
        let take = self.sql(
            "UPDATE {p}waiters SET owner = ?, max_instances = ?, expires_at = ? \
             WHERE job_id = ? AND (owner = ? OR expires_at <= ?)",
        );
        let args = vec![
            Arg::from(owner),
            Arg::from(i64::from(max_instances)),
            Arg::from(until),
            Arg::from(job_id),
            Arg::from(owner),
            Arg::from(now),
        ];
        if self.execute(&take, args).await? > 0 {
            return Ok(true);
        }
        let insert = self.sql(
            "INSERT INTO {p}waiters (job_id, owner, max_instances, expires_at) \
             VALUES (?, ?, ?, ?)",
        );
        let args = vec![
            Arg::from(job_id),
            Arg::from(owner),
            Arg::from(i64::from(max_instances)),
            Arg::from(until),
        ];
        match self.run(&insert, args).await {
            Ok(_) => Ok(true),
            Err(error) if is_conflict::<D>(&error) => {
                // Another owner's, most likely; or this owner's own, if the update
                // changed nothing (MySQL counts only rows it changed).
                let select = self.sql("SELECT owner FROM {p}waiters WHERE job_id = ?");
                let rows = self.fetch(&select, vec![job_id.into()]).await?;
                let holder = match rows.first() {
                    Some(row) => D::Database::text(row, 0).map_err(failure::<D>)?,
                    None => None,
                };
                Ok(holder.as_deref() == Some(owner))
            }
            Err(error) => Err(failure::<D>(error)),
        }
    }

    async fn stop_waiting(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        let delete = self.sql("DELETE FROM {p}waiters WHERE job_id = ? AND owner = ?");
        self.execute(&delete, vec![job_id.into(), owner.into()])
            .await
            .map(drop)
    }
}

#[async_trait]
impl<D: Dialect> RunHistory for SqlStore<D> {
    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        let sql = self.sql(&format!(
            "INSERT INTO {{p}}runs ({RUN_COLUMNS}) VALUES {RUN_VALUES}"
        ));
        self.execute(&sql, record_args(record).into())
            .await
            .map(drop)
    }

    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.runs_from(job_id, 0, limit).await
    }

    /// Newest first, by finish time, then by insertion order, the newest `offset` skipped.
    async fn runs_from(
        &self,
        job_id: Option<&str>,
        offset: usize,
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
        args.push(i64::try_from(offset).unwrap_or(i64::MAX).into());
        let sql = self.sql(&format!(
            "SELECT {RUN_COLUMNS} FROM {{p}}runs {filter}\
             ORDER BY finished_at DESC, seq DESC LIMIT ? OFFSET ?"
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

    /// At most `batch` rows per call: older ones first, then those beyond each job's
    /// counts, then the oldest beyond `max_rows`. Each limit is one read of the rows to
    /// delete and one `DELETE … IN` per chunk of them, whatever the number of jobs.
    async fn prune_runs(&self, limits: &RunLimits, batch: usize) -> Result<u64, StoreError> {
        let batch = u64::try_from(batch).unwrap_or(u64::MAX);
        let mut deleted = 0;
        if let Some(keep) = limits.keep {
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
        if limits.successes_per_job.is_some() || limits.failures_per_job.is_some() {
            let room = batch.saturating_sub(deleted);
            if room > 0 {
                // Each job's records numbered newest first, successes and the other
                // outcomes apart; a window function (SQLite 3.25, PostgreSQL, MySQL 8,
                // MariaDB 10.2) finds every job's excess in one statement.
                let success = RunOutcome::Success.as_str();
                let sql = self.sql(&format!(
                    "SELECT seq FROM (\
                       SELECT seq, outcome, ROW_NUMBER() OVER (\
                         PARTITION BY job_id, CASE WHEN outcome = '{success}' THEN 1 ELSE 0 END \
                         ORDER BY finished_at DESC, seq DESC) AS newer \
                       FROM {{p}}runs) ranked \
                     WHERE (outcome = '{success}' AND newer > ?) \
                        OR (outcome <> '{success}' AND newer > ?) \
                     LIMIT ?"
                ));
                let limit = |count: Option<u64>| to_i64(count.unwrap_or(u64::MAX));
                let args = vec![
                    limit(limits.successes_per_job).into(),
                    limit(limits.failures_per_job).into(),
                    to_i64(room).into(),
                ];
                let rows = self.fetch(&sql, args).await?;
                deleted += self.delete_seqs(&rows).await?;
            }
        }
        if let Some(max_rows) = limits.max_rows {
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

    async fn count_runs(&self) -> Result<u64, StoreError> {
        let rows = self
            .fetch(&self.sql("SELECT COUNT(*) FROM {p}runs"), Vec::new())
            .await?;
        let count = match rows.first() {
            Some(row) => D::Database::int(row, 0).map_err(failure::<D>)?.unwrap_or(0),
            None => 0,
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// One indexed aggregate, however long the job's history.
    async fn last_success(&self, job_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = self
            .sql("SELECT MAX(finished_at) FROM {p}runs WHERE job_id = ? AND outcome = 'success'");
        let rows = self.fetch(&sql, vec![job_id.into()]).await?;
        let latest = match rows.first() {
            Some(row) => D::Database::int(row, 0).map_err(failure::<D>)?,
            None => None,
        };
        latest.map(instant).transpose()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// [`InstanceSlots::claim_instance`], with the run times the slot stands for
    /// ([`crate::store::InstanceClaim::run_times`]); for a job that `queues`, another
    /// owner's live waiter under a limit as high keeps one slot (read with the slots,
    /// [`WAITER_ROW`]).
    pub(super) async fn claim_slot(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
        run_times: &[DateTime<Utc>],
        queues: bool,
    ) -> Result<bool, StoreError> {
        let (select, select_args) = if queues {
            let select = self.sql(&format!(
                "SELECT slot, expires_at, owner FROM {{p}}instances WHERE job_id = ? \
                 UNION ALL SELECT {WAITER_ROW} - max_instances, expires_at, owner \
                 FROM {{p}}waiters WHERE job_id = ?"
            ));
            (select, vec![Arg::from(job_id), Arg::from(job_id)])
        } else {
            let select = self.sql("SELECT slot, expires_at FROM {p}instances WHERE job_id = ?");
            (select, vec![Arg::from(job_id)])
        };
        let clear = self.sql("DELETE FROM {p}instances WHERE job_id = ? AND expires_at <= ?");
        let insert = self.sql(
            "INSERT INTO {p}instances (job_id, slot, owner, claimed_at, expires_at, run_times) \
             VALUES (?, ?, ?, ?, ?, ?)",
        );
        let run_times = encode_run_times(run_times);
        for _ in 0..=max_instances.min(MAX_SLOT_RACES) {
            let now = Utc::now().timestamp_micros();
            let rows = self.fetch(&select, select_args.clone()).await?;
            let mut limit = usize::try_from(max_instances).unwrap_or(usize::MAX);
            let mut live = BTreeSet::new();
            let mut expired = false;
            for row in &rows {
                let slot = D::Database::int(row, 0).map_err(failure::<D>)?;
                let expires = D::Database::int(row, 1).map_err(failure::<D>)?;
                if let Some(waiter_max) = waiter_limit(slot) {
                    let holder = D::Database::text(row, 2).map_err(failure::<D>)?;
                    if holder.as_deref() != Some(owner)
                        && waiter_max >= i64::from(max_instances)
                        && expires.is_some_and(|expires| expires > now)
                    {
                        limit = limit.saturating_sub(1);
                    }
                } else if expires.is_some_and(|expires| expires > now) {
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
                Arg::from(run_times.clone()),
            ];
            match self.run(&insert, args).await {
                Ok(_) => return Ok(true),
                Err(error) if is_conflict::<D>(&error) => continue,
                Err(error) => return Err(failure::<D>(error)),
            }
        }
        Ok(false)
    }

    /// One chunk of [`InstanceSlots::claim_instances`]; `None` when it lost a race for a slot.
    async fn try_claim_chunk(
        &self,
        owner: &str,
        chunk: &[InstanceClaim],
    ) -> Result<Option<Vec<bool>>, StoreError> {
        let now = Utc::now().timestamp_micros();
        let expires = now.saturating_add(duration_micros(self.instance_ttl));
        let ids: BTreeSet<&str> = chunk.iter().map(|claim| claim.job_id.as_str()).collect();
        // The jobs whose claims look at waiters; for none (the claims of jobs that
        // skip), the read is the slots' alone.
        let queuing: BTreeSet<&str> = chunk
            .iter()
            .filter(|claim| claim.queues)
            .map(|claim| claim.job_id.as_str())
            .collect();
        let mut transaction = self.begin().await?;
        let mut args = id_args(ids.iter().copied());
        let select = if queuing.is_empty() {
            self.sql(&format!(
                "SELECT job_id, slot, expires_at FROM {{p}}instances WHERE job_id IN ({})",
                marks(padded(ids.len()))
            ))
        } else {
            args.extend(id_args(queuing.iter().copied()));
            self.sql(&format!(
                "SELECT job_id, slot, expires_at, owner FROM {{p}}instances WHERE job_id IN ({}) \
                 UNION ALL SELECT job_id, {WAITER_ROW} - max_instances, expires_at, owner \
                 FROM {{p}}waiters WHERE job_id IN ({})",
                marks(padded(ids.len())),
                marks(padded(queuing.len()))
            ))
        };
        let rows = D::Database::fetch_all(&mut transaction, &select, args)
            .await
            .map_err(failure::<D>)?;
        let mut live: HashMap<String, BTreeSet<i64>> = HashMap::new();
        // Jobs with another owner's live waiter, which keeps one of their slots from a
        // claim under a limit no higher than its own: job → the waiter's limit.
        let mut waited: HashMap<String, i64> = HashMap::new();
        let mut expired = false;
        for row in &rows {
            let job_id = D::Database::text(row, 0).map_err(failure::<D>)?;
            let slot = D::Database::int(row, 1).map_err(failure::<D>)?;
            let slot_expires = D::Database::int(row, 2).map_err(failure::<D>)?;
            if let Some(waiter_max) = waiter_limit(slot) {
                let holder = D::Database::text(row, 3).map_err(failure::<D>)?;
                if holder.as_deref() != Some(owner)
                    && slot_expires.is_some_and(|waiter_expires| waiter_expires > now)
                {
                    waited.insert(job_id.unwrap_or_default(), waiter_max);
                }
            } else if slot_expires.is_some_and(|slot_expires| slot_expires > now) {
                live.entry(job_id.unwrap_or_default())
                    .or_default()
                    .insert(slot.unwrap_or(0));
            } else {
                expired = true;
            }
        }
        if expired {
            let clear = self.sql(&format!(
                "DELETE FROM {{p}}instances WHERE expires_at <= ? AND job_id IN ({})",
                marks(padded(ids.len()))
            ));
            let mut args = vec![Arg::from(now)];
            args.extend(id_args(ids.iter().copied()));
            execute_on::<D>(&mut transaction, &clear, args)
                .await
                .map_err(failure::<D>)?;
        }
        let mut claimed = Vec::with_capacity(chunk.len());
        let mut inserts: Vec<Arg> = Vec::new();
        for claim in chunk {
            let mut limit = usize::try_from(claim.max_instances).unwrap_or(usize::MAX);
            if claim.queues
                && waited
                    .get(&claim.job_id)
                    .is_some_and(|waiter_max| *waiter_max >= i64::from(claim.max_instances))
            {
                limit = limit.saturating_sub(1);
            }
            let taken = live.entry(claim.job_id.clone()).or_default();
            if taken.len() >= limit {
                claimed.push(false);
                continue;
            }
            let slot = (0..).find(|slot| !taken.contains(slot)).unwrap_or(0);
            taken.insert(slot);
            claimed.push(true);
            inserts.extend([
                Arg::from(claim.job_id.as_str()),
                Arg::from(slot),
                Arg::from(owner),
                Arg::from(now),
                Arg::from(expires),
                Arg::from(encode_run_times(&claim.run_times)),
            ]);
        }
        if !inserts.is_empty() {
            let rows = vec!["(?, ?, ?, ?, ?, ?)"; inserts.len() / 6].join(", ");
            let insert = self.sql(&format!(
                "INSERT INTO {{p}}instances (job_id, slot, owner, claimed_at, expires_at, run_times) \
                 VALUES {rows}"
            ));
            match execute_on::<D>(&mut transaction, &insert, inserts).await {
                Ok(_) => {}
                // Dropping the transaction rolls it back.
                Err(error) if is_conflict::<D>(&error) => return Ok(None),
                Err(error) => return Err(failure::<D>(error)),
            }
        }
        transaction.commit().await.map_err(failure::<D>)?;
        Ok(Some(claimed))
    }

    /// Deletes `owner`'s instance slots `(job id, slot)`: in one statement, or one
    /// primary key at a time where the database would otherwise lock (and wait for)
    /// rows it only scans ([`Dialect::LOCKS_SCANNED_ROWS`]).
    pub(super) async fn delete_slots(
        &self,
        transaction: &mut <D::Database as sqlx::Database>::Connection,
        owner: &str,
        slots: &[(String, i64)],
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        if D::LOCKS_SCANNED_ROWS {
            let delete =
                self.sql("DELETE FROM {p}instances WHERE job_id = ? AND slot = ? AND owner = ?");
            for (job_id, slot) in slots {
                let args = vec![
                    Arg::from(job_id.as_str()),
                    Arg::from(*slot),
                    Arg::from(owner),
                ];
                deleted += execute_on::<D>(transaction, &delete, args)
                    .await
                    .map_err(failure::<D>)?;
            }
            return Ok(deleted);
        }
        for chunk in slots.chunks(CHUNK) {
            let pairs = vec!["(job_id = ? AND slot = ?)"; chunk.len()].join(" OR ");
            let delete = self.sql(&format!(
                "DELETE FROM {{p}}instances WHERE owner = ? AND ({pairs})"
            ));
            let mut args = vec![Arg::from(owner)];
            for (job_id, slot) in chunk {
                args.push(Arg::from(job_id.as_str()));
                args.push(Arg::from(*slot));
            }
            deleted += execute_on::<D>(transaction, &delete, args)
                .await
                .map_err(failure::<D>)?;
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

/// The values of one run row, in [`RUN_COLUMNS`] order.
fn record_args(record: RunRecord) -> [Arg; 9] {
    [
        record.run_id.into(),
        record.job_id.into(),
        record.scheduled_time.timestamp_micros().into(),
        record.started_at.map(|at| at.timestamp_micros()).into(),
        record.finished_at.timestamp_micros().into(),
        record.outcome.as_str().into(),
        record.error.into(),
        record.output.into(),
        i64::from(record.attempt).into(),
    ]
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
            .ok_or_else(|| StoreError::corrupt(format!("run record without {column}")))
            .and_then(instant)
    };
    let run_id = text(0)?.unwrap_or_default();
    let outcome_name = text(5)?.unwrap_or_default();
    let outcome: RunOutcome =
        serde_json::from_value(serde_json::Value::String(outcome_name.clone())).map_err(|_| {
            StoreError::corrupt(format!(
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
        // Rows written before attempts were counted were first attempts.
        attempt: int(8)?
            .and_then(|attempt| u32::try_from(attempt).ok())
            .unwrap_or(1),
        run_id,
    })
}
