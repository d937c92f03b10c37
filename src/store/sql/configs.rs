//! The configs applied to the store, in SQL: the `{p}config_generations` table
//! (schema version 5, MySQL 4), one row per generation.
//!
//! Recording a generation is one `INSERT … SELECT` that writes only when the newest
//! recorded generation is the one before it; two nodes recording the same generation
//! at once collide on the primary key, and the loser is told `false`. No clock and no
//! lock of our own: the database's unique index is the compare-and-set.

use super::driver::SqlDb;
use super::{failure, is_conflict, Dialect, SqlStore};
use crate::store::{ConfigGeneration, StoreError};

impl<D: Dialect> SqlStore<D> {
    /// [`crate::store::JobStore::config_generations`].
    pub(super) async fn select_config_generations(
        &self,
        limit: usize,
    ) -> Result<Vec<ConfigGeneration>, StoreError> {
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

    /// [`crate::store::JobStore::record_config_generation`].
    pub(super) async fn insert_config_generation(
        &self,
        next: ConfigGeneration,
    ) -> Result<bool, StoreError> {
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
}
