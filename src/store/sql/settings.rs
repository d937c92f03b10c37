//! What the store remembers about itself, in SQL: the `{p}settings` table (schema
//! version 9, MySQL 8), one `value` per `name`.
//!
//! Written with an `UPDATE`, and an `INSERT` when there was no row: the same two
//! statements on every dialect. Two nodes inserting the same name at once collide on
//! the primary key; the loser updates the winner's row instead.

use super::driver::SqlDb;
use super::{failure, is_conflict, Dialect, SqlStore};
use crate::store::StoreError;

/// The zone rules the stored next run times follow
/// ([`crate::store::JobStore::zone_rules`]).
pub(super) const ZONE_RULES: &str = "zone_rules";

impl<D: Dialect> SqlStore<D> {
    /// The value of setting `name`, `None` when it was never written.
    pub(super) async fn select_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let sql = self.sql("SELECT value FROM {p}settings WHERE name = ?");
        let rows = self.fetch(&sql, vec![name.to_owned().into()]).await?;
        match rows.first() {
            None => Ok(None),
            Some(row) => D::Database::text(row, 0).map_err(failure::<D>),
        }
    }

    /// Sets `name` to `value`.
    pub(super) async fn write_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
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
