//! The cluster's membership in Redis: the [`Nodes`] impl.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::codec::{micros, parse_score, store_error};
use super::{scripts, RedisStore};
use crate::store::{NodeInfo, Nodes, StoreError};

#[async_trait]
impl Nodes for RedisStore {
    async fn register_node(&self, node: NodeInfo) -> Result<(), StoreError> {
        let json = serde_json::to_string(&node)
            .map_err(|error| StoreError::corrupt(format!("node {:?}: {error}", node.id)))?;
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        ::redis::pipe()
            .atomic()
            .hset(&keys.nodes, &node.id, json)
            .zadd(&keys.beats, &node.id, micros(node.last_heartbeat))
            .query_async::<()>(&mut connection)
            .await
            .map_err(store_error)
    }

    async fn heartbeat(&self, node_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let keys = &self.keys;
        let beat: i64 = self
            .invoke(
                scripts::HEARTBEAT
                    .key(&keys.nodes)
                    .key(&keys.beats)
                    .arg(node_id)
                    .arg(micros(now)),
            )
            .await?;
        Ok(beat == 1)
    }

    async fn heartbeat_node(&self, node: &NodeInfo) -> Result<bool, StoreError> {
        let json = serde_json::to_string(node)
            .map_err(|error| StoreError::corrupt(format!("node {:?}: {error}", node.id)))?;
        let keys = &self.keys;
        let beat: i64 = self
            .invoke(
                scripts::HEARTBEAT
                    .key(&keys.nodes)
                    .key(&keys.beats)
                    .arg(&node.id)
                    .arg(micros(node.last_heartbeat))
                    .arg(json),
            )
            .await?;
        Ok(beat == 1)
    }

    async fn deregister_node(&self, node_id: &str) -> Result<(), StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        ::redis::pipe()
            .atomic()
            .hdel(&keys.nodes, node_id)
            .zrem(&keys.beats, node_id)
            .query_async::<()>(&mut connection)
            .await
            .map_err(store_error)
    }

    async fn list_nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let keys = &self.keys;
        let mut connection = self.connection.clone();
        let (jsons, beats): (HashMap<String, String>, Vec<(String, String)>) = ::redis::pipe()
            .atomic()
            .hgetall(&keys.nodes)
            .cmd("ZRANGE")
            .arg(&keys.beats)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let beats: HashMap<String, String> = beats.into_iter().collect();
        let mut nodes = Vec::with_capacity(jsons.len());
        for (id, json) in &jsons {
            match serde_json::from_str::<NodeInfo>(json) {
                Ok(mut node) => {
                    // The beats set is the truth; the JSON holds the registration's.
                    if let Some(beat) = beats.get(id).and_then(|score| parse_score(score).ok()) {
                        node.last_heartbeat = beat;
                    }
                    nodes.push(node);
                }
                Err(error) => {
                    tracing::warn!(node_id = id, %error, "Redis job store: unreadable node left out");
                }
            }
        }
        nodes.sort_by(|left, right| left.id.cmp(&right.id));
        Ok(nodes)
    }

    async fn reap_dead_nodes(
        &self,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let cutoff = TimeDelta::from_std(timeout)
            .ok()
            .and_then(|timeout| now.checked_sub_signed(timeout))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let keys = &self.keys;
        let dead: Vec<String> = self
            .invoke(
                scripts::REAP_NODES
                    .key(&keys.nodes)
                    .key(&keys.beats)
                    .arg(micros(cutoff)),
            )
            .await?;
        if !dead.is_empty() {
            // The nodes are out of the membership, so no survivor reaps them again.
            // Their slots go first, their leases after (see reap_nodes.lua); if this
            // node fails in between, the leases expire on their own.
            self.free_slots_of(&dead).await?;
            self.end_waiters_of(&dead).await?;
            for owner in &dead {
                self.end_leases_of(owner).await?;
            }
        }
        Ok(dead)
    }
}
