//! Due jobs under leases: the [`DueJobs`] impl. Claiming due jobs for one scheduler and
//! releasing them with their next run times are the two statements-in-a-transaction
//! that make a shared store safe.
//!
//! A claim selects due, unleased (or lease-expired), unbroken rows earliest first
//! with the dialect's [`Dialect::CLAIM_LOCK`] (`FOR UPDATE SKIP LOCKED` on PostgreSQL
//! and MySQL, the `BEGIN IMMEDIATE` write lock on SQLite), writes the lease on them
//! and marks unreadable ones broken, all before committing. A release locks the rows
//! it writes back in id order, applies the fencing and schedule version rules of
//! [`crate::store`] in Rust (a row whose `lease_owner` is not the releasing owner is
//! left alone: its lease was taken over, recovered or reaped; a row whose
//! `schedule_version` moved past the `lease_schedule` its claim took keeps its schedule
//! and only its lease ends), and writes a whole batch with at most one `DELETE` and one
//! `UPDATE`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::driver::{Arg, SqlDb};
use super::jobs::{id_args, read_row, report_broken, JobRow, JOB_COLUMNS};
use super::{
    duration_micros, execute_on, failure, instant, marks, micros, padded, Dialect, SqlStore, CHUNK,
};
use crate::job::Job;
use crate::store::{wake, DueJobs, Release, StoreError};

/// What a release does to one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// The trigger is finished: the job goes.
    Delete,
    /// The next run time (µs) and revision to write; the lease ends.
    Set(i64, i64),
    /// The job changed meanwhile, schedule included: only the lease ends.
    EndLease,
}

#[async_trait]
impl<D: Dialect> DueJobs for SqlStore<D> {
    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Two index scans that stop at their first row; `ORDER BY … LIMIT 1` rather
        // than MIN() because MySQL only shortcuts MIN() without the extra conditions.
        // The unary `+` keeps SQLite off the lease index for `lease_expires IS NULL`,
        // which every pending job matches: it walked that index over all of them and
        // sorted, 0.4 s of a restart with a million pending (BENCHMARKS.md, restart).
        let sql = self.sql(
            "SELECT \
             (SELECT next_run_time FROM {p}jobs \
              WHERE next_run_time IS NOT NULL AND +lease_expires IS NULL AND broken = 0 \
              ORDER BY next_run_time LIMIT 1), \
             (SELECT lease_expires FROM {p}jobs \
              WHERE lease_expires IS NOT NULL AND broken = 0 \
              ORDER BY lease_expires LIMIT 1)",
        );
        let rows = self.fetch(&sql, Vec::new()).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let due = D::Database::int(row, 0).map_err(failure::<D>)?;
        // An expiring lease makes its job due again; wake up for that too.
        let expiry = D::Database::int(row, 1).map_err(failure::<D>)?;
        let earliest = wake::earliest([&due, &expiry]);
        earliest.map(instant).transpose()
    }

    async fn job_schedules(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<crate::store::JobSchedule>>, StoreError> {
        // A read by primary key, a chunk of ids per statement: runs due together ask
        // together (see `scheduler/start.rs`).
        let mut found: HashMap<String, crate::store::JobSchedule> =
            HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(super::CHUNK) {
            let sql = self.sql(&format!(
                "SELECT id, next_run_time, revision FROM {{p}}jobs WHERE id IN ({})",
                super::marks(super::padded(chunk.len()))
            ));
            let rows = self
                .fetch(&sql, id_args(chunk.iter().map(String::as_str)))
                .await?;
            for row in &rows {
                let id = D::Database::text(row, 0).map_err(failure::<D>)?;
                let next = D::Database::int(row, 1).map_err(failure::<D>)?;
                let revision = D::Database::int(row, 2).map_err(failure::<D>)?;
                let revision = revision
                    .and_then(|revision| u64::try_from(revision).ok())
                    .ok_or_else(|| StoreError::corrupt("a job row without a valid revision"))?;
                if let Some(id) = id {
                    found.insert(
                        id,
                        crate::store::JobSchedule {
                            next_run_time: next.map(instant).transpose()?,
                            revision,
                        },
                    );
                }
            }
        }
        Ok(ids.iter().map(|id| found.get(id).copied()).collect())
    }

    /// Claims up to `limit` due jobs in one transaction (see [`Dialect::CLAIM_LOCK`]).
    async fn acquire_due_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = micros(now);
        let expires = now.saturating_add(duration_micros(lease));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // The holder of an expired lease comes along (the fifth column): its slots
        // the job still shows are freed as the job is taken over.
        let select = self.sql(&format!(
            "SELECT {JOB_COLUMNS}, lease_owner FROM {{p}}jobs \
             WHERE next_run_time <= ? AND broken = 0 \
             AND (lease_expires IS NULL OR lease_expires <= ?) \
             ORDER BY next_run_time, id LIMIT ?{}",
            D::CLAIM_LOCK
        ));
        let mut transaction = self.begin().await?;
        let rows = D::Database::fetch_all(
            &mut transaction,
            &select,
            vec![now.into(), now.into(), limit.into()],
        )
        .await
        .map_err(failure::<D>)?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut broken = Vec::new();
        let mut taken_over = Vec::new();
        for row in &rows {
            let JobRow { id, job } = read_row::<D>(row)?;
            match job {
                Ok(job) => {
                    let holder = D::Database::text(row, 4).map_err(failure::<D>)?;
                    if let Some(holder) = holder.filter(|holder| holder != owner) {
                        taken_over.push((job.id.clone(), holder, job.next_run_time));
                    }
                    jobs.push(job);
                }
                Err(reason) => broken.push((id, reason)),
            }
        }
        // Rare: a holder that died or froze past its lease.
        for (job_id, holder, next) in &taken_over {
            self.free_slots_still_due_on(&mut transaction, job_id, holder, *next)
                .await?;
        }
        for chunk in jobs.chunks(CHUNK) {
            let sql = self.sql(&format!(
                "UPDATE {{p}}jobs SET lease_owner = ?, lease_expires = ?, \
                 lease_schedule = schedule_version WHERE id IN ({})",
                marks(padded(chunk.len()))
            ));
            let mut args = vec![owner.into(), expires.into()];
            args.extend(id_args(chunk.iter().map(|job| job.id.as_str())));
            execute_on::<D>(&mut transaction, &sql, args)
                .await
                .map_err(failure::<D>)?;
        }
        // Marked in the same transaction, so no other scheduler claims them meanwhile.
        for chunk in broken.chunks(CHUNK) {
            let ids = id_args(chunk.iter().map(|(id, _)| id.as_str()));
            execute_on::<D>(&mut transaction, &self.mark_broken_sql(chunk.len()), ids)
                .await
                .map_err(failure::<D>)?;
        }
        transaction.commit().await.map_err(failure::<D>)?;
        report_broken::<D>(&broken);
        // The scheduler's loop asks again when a batch came back short, so a broken
        // row taking a place in this batch delays nothing.
        jobs.sort_by(|left, right| {
            (left.next_run_time, &left.id).cmp(&(right.next_run_time, &right.id))
        });
        Ok(jobs)
    }

    async fn release_jobs(
        &self,
        owner: &str,
        releases: &[Release],
    ) -> Result<Vec<String>, StoreError> {
        let mut fenced = Vec::new();
        for chunk in releases.chunks(CHUNK) {
            fenced.extend(self.release_chunk(owner, chunk).await?);
        }
        Ok(fenced)
    }

    async fn renew_holdings(
        &self,
        owner: &str,
        job_ids: &[String],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let lease_expires = micros(now).saturating_add(super::duration_micros(lease));
        // Slots measure real time, as when they were claimed (`history.rs`).
        let slot_expires = chrono::Utc::now()
            .timestamp_micros()
            .saturating_add(super::duration_micros(self.instance_ttl));
        for chunk in job_ids.chunks(CHUNK) {
            let marks = marks(padded(chunk.len()));
            // Only while this owner still holds the job: a lease another scheduler
            // took over is not taken back.
            let leases = self.sql(&format!(
                "UPDATE {{p}}jobs SET lease_expires = ? \
                 WHERE lease_owner = ? AND lease_expires IS NOT NULL AND id IN ({marks})"
            ));
            let mut args = vec![Arg::from(lease_expires), Arg::from(owner)];
            args.extend(id_args(chunk.iter().map(String::as_str)));
            self.execute(&leases, args).await?;
            let slots = self.sql(&format!(
                "UPDATE {{p}}instances SET expires_at = ? WHERE owner = ? AND job_id IN ({marks})"
            ));
            let mut args = vec![Arg::from(slot_expires), Arg::from(owner)];
            args.extend(id_args(chunk.iter().map(String::as_str)));
            self.execute(&slots, args).await?;
        }
        Ok(())
    }

    async fn move_next_run_times(
        &self,
        moves: Vec<crate::store::NextRunMove>,
    ) -> Result<Vec<String>, StoreError> {
        // The columns only: reading a job overlays them on its JSON (see mod.rs).
        let update = self.sql(
            "UPDATE {p}jobs SET next_run_time = ?, revision = ?, \
             schedule_version = schedule_version + 1 WHERE id = ? AND revision = ?",
        );
        let mut moved = Vec::new();
        for chunk in moves.chunks(1_000) {
            let mut transaction = self.begin().await?;
            let mut written = Vec::with_capacity(chunk.len());
            for next in chunk {
                let Ok(read) = i64::try_from(next.revision) else {
                    continue;
                };
                let args = vec![
                    micros(next.next_run_time).into(),
                    self.revisions.after(read).into(),
                    next.job_id.clone().into(),
                    read.into(),
                ];
                if execute_on::<D>(&mut transaction, &update, args)
                    .await
                    .map_err(failure::<D>)?
                    > 0
                {
                    written.push(next.job_id.clone());
                }
            }
            transaction.commit().await.map_err(failure::<D>)?;
            moved.extend(written);
        }
        Ok(moved)
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Writes back up to [`CHUNK`] releases in one transaction: one locking read, at
    /// most one `DELETE` and one `UPDATE`, whatever the batch size.
    /// Returns the ids it fenced off (see [`crate::store::DueJobs::release_jobs`]).
    pub(super) async fn release_chunk(
        &self,
        owner: &str,
        releases: &[Release],
    ) -> Result<Vec<String>, StoreError> {
        let ids: BTreeSet<&str> = releases
            .iter()
            .map(|release| release.job_id.as_str())
            .collect();
        // In id order, so two transactions locking overlapping sets cannot deadlock.
        let select = self.sql(&format!(
            "SELECT id, revision, next_run_time, lease_owner, schedule_version, lease_schedule \
             FROM {{p}}jobs \
             WHERE id IN ({}) ORDER BY id{}",
            marks(padded(ids.len())),
            D::LOCK_ROWS
        ));
        let mut transaction = self.begin().await?;
        let rows = D::Database::fetch_all(&mut transaction, &select, id_args(ids.iter().copied()))
            .await
            .map_err(failure::<D>)?;
        let mut current: HashMap<String, (i64, Option<i64>)> = HashMap::new();
        // The schedule version of each row now, and the one its lease took (`None`
        // for a lease taken before the store kept them).
        let mut schedules: HashMap<String, (i64, Option<i64>)> = HashMap::new();
        let mut held_by_others: HashSet<String> = HashSet::new();
        for row in &rows {
            let id = D::Database::text(row, 0).map_err(failure::<D>)?;
            let revision = D::Database::int(row, 1).map_err(failure::<D>)?;
            let next = D::Database::int(row, 2).map_err(failure::<D>)?;
            let holder = D::Database::text(row, 3).map_err(failure::<D>)?;
            let schedule = D::Database::int(row, 4).map_err(failure::<D>)?;
            let taken = D::Database::int(row, 5).map_err(failure::<D>)?;
            if let Some(id) = id {
                if holder.as_deref() != Some(owner) {
                    held_by_others.insert(id.clone());
                }
                schedules.insert(id.clone(), (schedule.unwrap_or(0), taken));
                current.insert(id, (revision.unwrap_or(0), next));
            }
        }
        let mut actions: BTreeMap<&str, Action> = BTreeMap::new();
        let mut fenced = Vec::new();
        for release in releases {
            let id = release.job_id.as_str();
            if held_by_others.contains(id) {
                // Our lease is gone: the holder now (or nobody, after a recovery or a
                // reap) decides; the row is not touched at all.
                fenced.push(release.job_id.clone());
                continue;
            }
            let Some((revision, next)) = current.get_mut(id) else {
                continue; // removed while it ran: it stays removed
            };
            let changed = match schedules.get(id) {
                Some(&(now, Some(taken))) => now != taken,
                // A lease from before schedule versions: next run times decide, as
                // they did then.
                _ => {
                    let untouched = *next == release.acquired_next_run_time.map(micros);
                    let same =
                        i64::try_from(release.revision).is_ok_and(|acquired| acquired == *revision);
                    !same && !untouched
                }
            };
            if changed {
                // Its schedule changed while acquired: the change wins, even at the
                // next run time the job was taken at (the store's ground rules).
                actions.entry(id).or_insert(Action::EndLease);
                continue;
            }
            match release.next_run_time {
                None => {
                    actions.insert(id, Action::Delete);
                    current.remove(id);
                }
                Some(released) => {
                    *revision = self.revisions.after(*revision);
                    *next = Some(micros(released));
                    actions.insert(id, Action::Set(micros(released), *revision));
                }
            }
        }
        let deleted: Vec<&str> = actions
            .iter()
            .filter(|(_, action)| **action == Action::Delete)
            .map(|(id, _)| *id)
            .collect();
        if !deleted.is_empty() {
            let sql = self.sql(&format!(
                "DELETE FROM {{p}}jobs WHERE id IN ({})",
                marks(padded(deleted.len()))
            ));
            execute_on::<D>(&mut transaction, &sql, id_args(deleted))
                .await
                .map_err(failure::<D>)?;
        }
        let (sql, args) = self.end_leases(&actions);
        if !args.is_empty() {
            execute_on::<D>(&mut transaction, &sql, args)
                .await
                .map_err(failure::<D>)?;
        }
        transaction.commit().await.map_err(failure::<D>)?;
        Ok(fenced)
    }

    /// The one `UPDATE` that writes new next run times and ends leases; no args when
    /// there is nothing to update.
    fn end_leases(&self, actions: &BTreeMap<&str, Action>) -> (String, Vec<Arg>) {
        let mut sets: Vec<(&str, i64, i64)> = Vec::new();
        let mut ended: Vec<&str> = Vec::new();
        for (id, action) in actions {
            match *action {
                Action::Delete => {}
                Action::Set(next, revision) => {
                    sets.push((id, next, revision));
                    ended.push(id);
                }
                Action::EndLease => ended.push(id),
            }
        }
        if ended.is_empty() {
            return (String::new(), Vec::new());
        }
        let mut args = Vec::new();
        let mut assignments = String::new();
        if let Some(&last) = sets.last() {
            // Padded like the id list, repeating the last pair, to reuse statements.
            sets.resize(padded(sets.len()), last);
            let whens = "WHEN ? THEN ? ".repeat(sets.len());
            assignments = format!(
                "next_run_time = CASE id {whens}ELSE next_run_time END, \
                 revision = CASE id {whens}ELSE revision END, "
            );
            for (id, next, _) in &sets {
                args.push(Arg::from(*id));
                args.push(Arg::from(*next));
            }
            for (id, _, revision) in &sets {
                args.push(Arg::from(*id));
                args.push(Arg::from(*revision));
            }
        }
        let sql = self.sql(&format!(
            "UPDATE {{p}}jobs SET {assignments}lease_owner = NULL, lease_expires = NULL \
             WHERE id IN ({})",
            marks(padded(ended.len()))
        ));
        args.extend(id_args(ended));
        (sql, args)
    }
}
