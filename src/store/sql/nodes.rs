//! Cluster membership in SQL, the [`Nodes`] impl: the `{p}nodes` table (schema version
//! 2), one row per scheduler sharing the tables, renewed by its heartbeat.
//!
//! A reap is one transaction: it locks the dead rows (so two survivors reaping at once
//! reap each node once; the second finds the rows gone), ends their leases, frees their
//! instance slots and deletes them. Rows the dead node itself holds locked (it froze
//! inside a transaction) are skipped, not waited for. A node reaped while it was only paused finds its
//! row gone at its next heartbeat and registers again; its leases are gone, so the
//! releases it still had in hand are fenced off (see `leases.rs`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::driver::{Arg, SqlDb};
use super::history::ORPHANED;
use super::jobs::id_args;
use super::{
    duration_micros, execute_on, failure, instant, marks, micros, padded, Dialect, SqlStore, CHUNK,
};
use crate::store::{decode_run_times, times_still_due, NodeInfo, Nodes, StoreError};

#[async_trait]
impl<D: Dialect> Nodes for SqlStore<D> {
    /// A delete and an insert in one transaction, the same on every dialect (no dialect's
    /// upsert syntax needed).
    async fn register_node(&self, node: NodeInfo) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        let delete = self.sql("DELETE FROM {p}nodes WHERE id = ?");
        execute_on::<D>(&mut transaction, &delete, vec![node.id.as_str().into()])
            .await
            .map_err(failure::<D>)?;
        let insert = self.sql(
            "INSERT INTO {p}nodes (id, host, pid, version, started_at, heartbeat_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        );
        let args = vec![
            node.id.into(),
            node.host.into(),
            i64::from(node.pid).into(),
            node.version.into(),
            micros(node.started).into(),
            micros(node.last_heartbeat).into(),
        ];
        execute_on::<D>(&mut transaction, &insert, args)
            .await
            .map_err(failure::<D>)?;
        transaction.commit().await.map_err(failure::<D>)
    }

    async fn heartbeat(&self, node_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = self.sql("UPDATE {p}nodes SET heartbeat_at = ? WHERE id = ?");
        let changed = self
            .execute(&sql, vec![micros(now).into(), node_id.into()])
            .await?;
        self.beat_found(node_id, changed).await
    }

    /// The heartbeat and the stats in one statement.
    async fn heartbeat_node(&self, node: &NodeInfo) -> Result<bool, StoreError> {
        let stats = node
            .stats
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|error| StoreError::corrupt(format!("node {:?}: {error}", node.id)))?;
        let sql = self.sql("UPDATE {p}nodes SET heartbeat_at = ?, stats = ? WHERE id = ?");
        let args = vec![
            micros(node.last_heartbeat).into(),
            stats.into(),
            node.id.as_str().into(),
        ];
        let changed = self.execute(&sql, args).await?;
        self.beat_found(&node.id, changed).await
    }

    async fn deregister_node(&self, node_id: &str) -> Result<(), StoreError> {
        let sql = self.sql("DELETE FROM {p}nodes WHERE id = ?");
        self.execute(&sql, vec![node_id.into()]).await.map(drop)
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let sql = self.sql(
            "SELECT id, host, pid, version, started_at, heartbeat_at, stats FROM {p}nodes \
             ORDER BY id",
        );
        let rows = self.fetch(&sql, Vec::new()).await?;
        let mut nodes = Vec::with_capacity(rows.len());
        for row in &rows {
            let text = |index| -> Result<String, StoreError> {
                D::Database::text(row, index)
                    .map_err(failure::<D>)?
                    .ok_or_else(|| StoreError::corrupt("a node row with a NULL".to_owned()))
            };
            let int = |index| -> Result<i64, StoreError> {
                D::Database::int(row, index)
                    .map_err(failure::<D>)?
                    .ok_or_else(|| StoreError::corrupt("a node row with a NULL".to_owned()))
            };
            nodes.push(NodeInfo {
                id: text(0)?,
                host: text(1)?,
                pid: u32::try_from(int(2)?).unwrap_or(0),
                version: text(3)?,
                started: instant(int(4)?)?,
                last_heartbeat: instant(int(5)?)?,
                // Only shown, never acted on: unreadable stats are left out.
                stats: D::Database::text(row, 6)
                    .ok()
                    .flatten()
                    .and_then(|json| serde_json::from_str(&json).ok()),
            });
        }
        Ok(nodes)
    }

    /// In one transaction.
    async fn reap_dead_nodes(
        &self,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let cutoff = micros(now).saturating_sub(duration_micros(timeout));
        let dead_rows = "SELECT id FROM {p}nodes WHERE heartbeat_at < ? ORDER BY id";
        // Most beats find nobody dead: a plain read first keeps them from opening a
        // write transaction (on SQLite, the one write lock) every heartbeat.
        if self
            .fetch(&self.sql(dead_rows), vec![cutoff.into()])
            .await?
            .is_empty()
        {
            return Ok(Vec::new());
        }
        let select = self.sql(&format!("{dead_rows}{}", D::LOCK_ROWS));
        let mut transaction = self.begin().await?;
        let rows = D::Database::fetch_all(&mut transaction, &select, vec![cutoff.into()])
            .await
            .map_err(failure::<D>)?;
        let mut dead = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(id) = D::Database::text(row, 0).map_err(failure::<D>)? {
                dead.push(id);
            }
        }
        for id in &dead {
            self.free_rows_of(&mut transaction, id).await?;
            let node = self.sql("DELETE FROM {p}nodes WHERE id = ?");
            execute_on::<D>(&mut transaction, &node, vec![id.as_str().into()])
                .await
                .map_err(failure::<D>)?;
        }
        transaction.commit().await.map_err(failure::<D>)?;
        Ok(dead)
    }
}

impl<D: Dialect> SqlStore<D> {
    /// The next run times of the jobs `ids` (a plain read in `transaction`); a job not
    /// found is left out, a paused one maps to `None`.
    pub(super) async fn next_run_times_on<'a>(
        &self,
        transaction: &mut <D::Database as sqlx::Database>::Connection,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, Option<DateTime<Utc>>>, StoreError> {
        let ids: BTreeSet<&str> = ids.collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        let mut next_times = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let select = self.sql(&format!(
                "SELECT id, next_run_time FROM {{p}}jobs WHERE id IN ({})",
                marks(padded(chunk.len()))
            ));
            let rows = D::Database::fetch_all(transaction, &select, id_args(chunk.iter().copied()))
                .await
                .map_err(failure::<D>)?;
            for row in &rows {
                if let Some(id) = D::Database::text(row, 0).map_err(failure::<D>)? {
                    let next = D::Database::int(row, 1).map_err(failure::<D>)?;
                    next_times.insert(id, next.map(instant).transpose()?);
                }
            }
        }
        Ok(next_times)
    }

    /// Frees `owner`'s slots of `job_id` whose run times the job, at `next`, still
    /// shows (`store::times_still_due`), in `transaction`: the job was taken over
    /// from `owner`'s expired lease, and its new holder runs those times. Rare (a node
    /// died or froze past its lease), so a statement or two each.
    pub(super) async fn free_slots_still_due_on(
        &self,
        transaction: &mut <D::Database as sqlx::Database>::Connection,
        job_id: &str,
        owner: &str,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let select =
            self.sql("SELECT slot, run_times FROM {p}instances WHERE job_id = ? AND owner = ?");
        let rows = D::Database::fetch_all(transaction, &select, vec![job_id.into(), owner.into()])
            .await
            .map_err(failure::<D>)?;
        let mut still_due = Vec::new();
        for row in &rows {
            let slot = D::Database::int(row, 0).map_err(failure::<D>)?;
            let run_times = D::Database::text(row, 1).map_err(failure::<D>)?;
            if let (Some(slot), Some(text)) = (slot, run_times) {
                if times_still_due(&decode_run_times(&text), next) {
                    still_due.push((job_id.to_owned(), slot));
                }
            }
        }
        if !still_due.is_empty() {
            self.delete_slots(transaction, owner, &still_due).await?;
        }
        Ok(())
    }

    /// Whether a heartbeat that changed `changed` rows found its node registered.
    async fn beat_found(&self, node_id: &str, changed: u64) -> Result<bool, StoreError> {
        // MySQL counts rows *changed*, not matched: a second beat in the same
        // microsecond changes nothing. Only a missing row means "reaped".
        if changed > 0 {
            return Ok(true);
        }
        let check = self.sql("SELECT id FROM {p}nodes WHERE id = ?");
        Ok(!self.fetch(&check, vec![node_id.into()]).await?.is_empty())
    }

    /// Ends an owner's leases and frees its instance slots; returns how many of both.
    /// Used for a dead node (reaping) and for this scheduler's own earlier life
    /// (`recover_owner`). Skips rows that are
    /// locked (`Dialect::CLAIM_LOCK`): those are held by the node's own transaction,
    /// open when it froze. Waiting for them would stall the reaper (and, behind it,
    /// everyone) for as long as the node stays frozen; left alone, they are its own to
    /// write once it resumes, and fencing refuses that write if the lease is gone.
    pub(super) async fn free_rows_of(
        &self,
        transaction: &mut <D::Database as sqlx::Database>::Connection,
        owner: &str,
    ) -> Result<u64, StoreError> {
        let mut freed = 0;
        let leased = self.sql(&format!(
            "SELECT id FROM {{p}}jobs WHERE lease_owner = ? ORDER BY id{}",
            D::CLAIM_LOCK
        ));
        let rows = D::Database::fetch_all(transaction, &leased, vec![owner.into()])
            .await
            .map_err(failure::<D>)?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(id) = D::Database::text(row, 0).map_err(failure::<D>)? {
                ids.push(id);
            }
        }
        for chunk in ids.chunks(CHUNK) {
            let sql = self.sql(&format!(
                "UPDATE {{p}}jobs SET lease_owner = NULL, lease_expires = NULL \
                 WHERE lease_owner = ? AND id IN ({})",
                marks(padded(chunk.len()))
            ));
            let mut args = vec![Arg::from(owner)];
            args.extend(id_args(chunk.iter().map(String::as_str)));
            freed += execute_on::<D>(transaction, &sql, args)
                .await
                .map_err(failure::<D>)?;
        }
        let held = self.sql(&format!(
            "SELECT job_id, slot, run_times FROM {{p}}instances WHERE owner = ? \
             ORDER BY job_id, slot{}",
            D::CLAIM_LOCK
        ));
        let rows = D::Database::fetch_all(transaction, &held, vec![owner.into()])
            .await
            .map_err(failure::<D>)?;
        let mut slots = Vec::with_capacity(rows.len());
        let mut with_times = Vec::new();
        for row in &rows {
            let job_id = D::Database::text(row, 0).map_err(failure::<D>)?;
            let slot = D::Database::int(row, 1).map_err(failure::<D>)?;
            let run_times = D::Database::text(row, 2).map_err(failure::<D>)?;
            if let (Some(job_id), Some(slot)) = (job_id, slot) {
                match run_times.filter(|text| !text.is_empty()) {
                    Some(text) => with_times.push((job_id, slot, decode_run_times(&text))),
                    None => slots.push((job_id, slot)),
                }
            }
        }
        // A slot that stands for run times nothing else remembers is kept, as an
        // orphaned run, still counted (`InstanceSlots::take_orphaned_runs`); one whose
        // job still shows its times is freed, and the job runs them
        // (`store::times_still_due`). The jobs are read as they are now: the leases
        // freed above keep their next run times.
        let next_times = self
            .next_run_times_on(
                transaction,
                with_times.iter().map(|(job_id, ..)| job_id.as_str()),
            )
            .await?;
        let mut orphans = Vec::with_capacity(with_times.len());
        for (job_id, slot, run_times) in with_times {
            let next = next_times.get(job_id.as_str()).copied().flatten();
            if times_still_due(&run_times, next) {
                slots.push((job_id, slot));
            } else {
                orphans.push((job_id, slot));
            }
        }
        let orphan = self.sql(&format!(
            "UPDATE {{p}}instances SET owner = '{ORPHANED}', expires_at = ? \
             WHERE job_id = ? AND slot = ? AND owner = ?"
        ));
        for (job_id, slot) in &orphans {
            let args = vec![
                Arg::from(i64::MAX),
                Arg::from(job_id.as_str()),
                Arg::from(*slot),
                Arg::from(owner),
            ];
            freed += execute_on::<D>(transaction, &orphan, args)
                .await
                .map_err(failure::<D>)?;
        }
        freed += self.delete_slots(transaction, owner, &slots).await?;
        // Its waiters end too, uncounted (`InstanceSlots::recover_owner`). The table
        // holds one row per job with a queued run at most, and no transaction keeps
        // one locked: its rows are written one statement at a time (`history.rs`).
        let waiters = self.sql("DELETE FROM {p}waiters WHERE owner = ?");
        execute_on::<D>(transaction, &waiters, vec![owner.into()])
            .await
            .map_err(failure::<D>)?;
        Ok(freed)
    }
}
