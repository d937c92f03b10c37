//! What the nodes sharing a Redis store agree on through it: the [`Cluster`] impl.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::store_error;
use super::{scripts, wake, RedisStore};
use crate::store::{Cluster, ConfigGeneration, StoreError, WakeUp};

#[async_trait]
impl Cluster for RedisStore {
    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<WakeUp>> {
        Some(wake::subscribe(self.client.clone(), self.keys.wake.clone()))
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn config_generations(&self, limit: usize) -> Result<Vec<ConfigGeneration>, StoreError> {
        let mut connection = self.connection.clone();
        // Generations have no gaps, so the hash's length is the newest and the newest
        // `limit` are named fields: `/health` reads one, not every config ever applied.
        let newest: u64 = ::redis::cmd("HLEN")
            .arg(&self.keys.configs)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let count = u64::try_from(limit).unwrap_or(u64::MAX).min(newest);
        if count == 0 {
            return Ok(Vec::new());
        }
        let fields: Vec<u64> = (newest - count + 1..=newest).rev().collect();
        let jsons: Vec<Option<String>> = ::redis::cmd("HMGET")
            .arg(&self.keys.configs)
            .arg(&fields)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let mut generations = Vec::with_capacity(jsons.len());
        for (field, json) in fields.iter().zip(jsons) {
            // Recorded after the HLEN above would be newer, never missing: a hole is
            // a hash someone edited by hand.
            let json = json.ok_or_else(|| {
                StoreError::corrupt(format!("config generation {field} is missing"))
            })?;
            let generation: ConfigGeneration = serde_json::from_str(&json).map_err(|error| {
                StoreError::corrupt(format!("config generation {field}: {error}"))
            })?;
            generations.push(generation);
        }
        Ok(generations)
    }

    async fn claim_alert(
        &self,
        key: &str,
        _now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        // `SET NX PX`: one atomic step; the claim ends by Redis's expiry, which measures
        // the real time it is meant to (how long an alert stays sent).
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = ::redis::cmd("SET")
            .arg(self.keys.alert_claim(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        Ok(set.is_some())
    }

    async fn record_config_generation(&self, next: ConfigGeneration) -> Result<bool, StoreError> {
        let json = serde_json::to_string(&next).map_err(|error| {
            StoreError::corrupt(format!("config generation {}: {error}", next.generation))
        })?;
        let recorded: i64 = self
            .invoke(
                scripts::RECORD_CONFIG
                    .key(&self.keys.configs)
                    .arg(next.generation)
                    .arg(json),
            )
            .await?;
        Ok(recorded == 1)
    }
}
