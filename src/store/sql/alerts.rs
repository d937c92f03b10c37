//! Alert claims in SQL: the `{p}alert_claims` table (schema version 7, MySQL 6), one
//! row per claimed key with when the claim ends, and the last success of a job read
//! from the run history.
//!
//! Claiming is an `INSERT`: two nodes claiming the same key at once collide on the
//! primary key and the loser is told `false`, the same compare-and-set as
//! `configs.rs`. A key whose claim has ended is taken over by an `UPDATE` that only
//! matches an ended claim, so again one node wins. Ended rows are deleted when a new
//! claim is made (alerts are rare, the table stays small).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::driver::SqlDb;
use super::{duration_micros, failure, instant, is_conflict, micros, Dialect, SqlStore};
use crate::store::StoreError;

impl<D: Dialect> SqlStore<D> {
    /// [`crate::store::JobStore::claim_alert`].
    pub(super) async fn insert_alert_claim(
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

    /// [`crate::store::JobStore::last_success`]: one indexed aggregate, however long
    /// the job's history.
    pub(super) async fn select_last_success(
        &self,
        job_id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
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
