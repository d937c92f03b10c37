//! What the nodes sharing a SQL store agree on through it: the [`Cluster`] impl, with
//! the config generations, the settings (the zone rules) and the alert claims.
//!
//! # Config generations
//! The `{p}config_generations` table (schema version 5, MySQL 4), one row per
//! generation. Recording a generation is one `INSERT … SELECT` that writes only when
//! the newest recorded generation is the one before it; two nodes recording the same
//! generation at once collide on the primary key, and the loser is told `false`. No
//! clock and no lock of our own: the database's unique index is the compare-and-set.
//!
//! # Settings
//! What the store remembers about itself: the `{p}settings` table (schema version 9,
//! MySQL 8), one `value` per `name`. Written with an `UPDATE`, and an `INSERT` when
//! there was no row: the same two statements on every dialect. Two nodes inserting the
//! same name at once collide on the primary key; the loser updates the winner's row
//! instead.
//!
//! # Alert claims
//! The `{p}alert_claims` table (schema version 7, MySQL 6), one row per claimed key
//! with when the claim ends. Claiming is an `INSERT`: two nodes claiming the same key
//! at once collide on the primary key and the loser is told `false`, the same
//! compare-and-set as the config generations'. A key whose claim has ended is taken
//! over by an `UPDATE` that only matches an ended claim, so again one node wins. Ended
//! rows are deleted when a new claim is made (alerts are rare, the table stays small).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::driver::SqlDb;
use super::{duration_micros, failure, is_conflict, micros, Dialect, SqlStore};
use crate::store::{wake, Cluster, ConfigGeneration, StoreError, WakeUp};

/// The setting that holds the zone rules the stored next run times follow
/// ([`Cluster::zone_rules`]).
const ZONE_RULES: &str = "zone_rules";

#[async_trait]
impl<D: Dialect> Cluster for SqlStore<D> {
    fn is_shared(&self) -> bool {
        D::SHARED
    }

    /// A second: each of a due job's writes is a durable commit (a WAL flush, a few
    /// ms under load, more when a checkpoint or another writer holds the lock), and a
    /// stream of one-off jobs taken one pass each left the loop behind a 250 ms window
    /// now and then (BENCHMARKS.md, SQLite burst: p99 80 ms against 0.3 ms with a second).
    fn fire_ahead(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<WakeUp>> {
        D::listen(&self.pool, wake::channel_name(&self.prefix))
    }

    async fn config_generations(&self, limit: usize) -> Result<Vec<ConfigGeneration>, StoreError> {
        let sql = self.sql(
            "SELECT generation, hash, node_id, forced FROM {p}config_generations \
             ORDER BY generation DESC LIMIT ?",
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.fetch(&sql, vec![limit.into()]).await?;
        let mut generations = Vec::with_capacity(rows.len());
        for row in &rows {
            let null = || StoreError::corrupt("a config generation row with a NULL".to_owned());
            let int = |index| D::Database::int(row, index).map_err(failure::<D>);
            let text = |index| D::Database::text(row, index).map_err(failure::<D>);
            let generation = int(0)?.ok_or_else(null)?;
            generations.push(ConfigGeneration {
                generation: u64::try_from(generation).map_err(|_| {
                    StoreError::corrupt(format!("config generation {generation} is negative"))
                })?,
                hash: text(1)?.ok_or_else(null)?,
                node_id: text(2)?.ok_or_else(null)?,
                forced: int(3)?.ok_or_else(null)? != 0,
            });
        }
        Ok(generations)
    }

    async fn record_config_generation(&self, next: ConfigGeneration) -> Result<bool, StoreError> {
        let generation = i64::try_from(next.generation).map_err(|_| {
            StoreError::corrupt(format!(
                "config generation {} is too large",
                next.generation
            ))
        })?;
        // The derived table is read before the insert on every dialect (MySQL
        // materializes it), so the statement may read the table it writes.
        let sql = self.sql(
            "INSERT INTO {p}config_generations (generation, hash, node_id, forced) \
             SELECT ?, ?, ?, ? FROM \
             (SELECT COALESCE(MAX(generation), 0) AS newest FROM {p}config_generations) newest \
             WHERE newest.newest = ?",
        );
        let args = vec![
            generation.into(),
            next.hash.into(),
            next.node_id.into(),
            i64::from(next.forced).into(),
            generation.saturating_sub(1).into(),
        ];
        match self.run(&sql, args).await {
            Ok(inserted) => Ok(inserted > 0),
            Err(error) if is_conflict::<D>(&error) => Ok(false),
            Err(error) => Err(failure::<D>(error)),
        }
    }

    async fn zone_rules(&self) -> Result<Option<String>, StoreError> {
        self.select_setting(ZONE_RULES).await
    }

    async fn record_zone_rules(&self, fingerprint: &str) -> Result<(), StoreError> {
        self.write_setting(ZONE_RULES, fingerprint).await
    }

    async fn claim_alert(
        &self,
        key: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = micros(now);
        let until = now.saturating_add(duration_micros(ttl));
        let insert = self.sql("INSERT INTO {p}alert_claims (claim_key, expires_at) VALUES (?, ?)");
        match self.run(&insert, vec![key.into(), until.into()]).await {
            Ok(_) => {
                let prune = self.sql("DELETE FROM {p}alert_claims WHERE expires_at <= ?");
                if let Err(error) = self.execute(&prune, vec![now.into()]).await {
                    // The claim stands; ended rows go with the next one.
                    tracing::debug!(%error, "deleting ended alert claims failed");
                }
                Ok(true)
            }
            Err(error) if is_conflict::<D>(&error) => {
                let take_over = self.sql(
                    "UPDATE {p}alert_claims SET expires_at = ? \
                     WHERE claim_key = ? AND expires_at <= ?",
                );
                let taken = self
                    .execute(&take_over, vec![until.into(), key.into(), now.into()])
                    .await?;
                Ok(taken > 0)
            }
            Err(error) => Err(failure::<D>(error)),
        }
    }
}

impl<D: Dialect> SqlStore<D> {
    /// The value of setting `name`, `None` when it was never written.
    async fn select_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let sql = self.sql("SELECT value FROM {p}settings WHERE name = ?");
        let rows = self.fetch(&sql, vec![name.to_owned().into()]).await?;
        match rows.first() {
            None => Ok(None),
            Some(row) => D::Database::text(row, 0).map_err(failure::<D>),
        }
    }

    /// Sets `name` to `value`.
    async fn write_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let update = self.sql("UPDATE {p}settings SET value = ? WHERE name = ?");
        let update_args = || vec![value.to_owned().into(), name.to_owned().into()];
        // MySQL counts only rows it changed: a row that already holds `value` reads
        // as 0 here, and the insert below then collides and is taken as done.
        if self
            .run(&update, update_args())
            .await
            .map_err(failure::<D>)?
            > 0
        {
            return Ok(());
        }
        let insert = self.sql("INSERT INTO {p}settings (name, value) VALUES (?, ?)");
        match self
            .run(
                &insert,
                vec![name.to_owned().into(), value.to_owned().into()],
            )
            .await
        {
            Ok(_) => Ok(()),
            // Another node inserted it meanwhile: ours is the newer word.
            Err(error) if is_conflict::<D>(&error) => self
                .run(&update, update_args())
                .await
                .map(|_| ())
                .map_err(failure::<D>),
            Err(error) => Err(failure::<D>(error)),
        }
    }
}
