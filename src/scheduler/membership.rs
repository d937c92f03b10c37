//! Cluster membership: a background task that registers this scheduler as a node in
//! every store, renews its heartbeat, and reaps nodes whose heartbeat stopped
//! (issue 10, item 1).
//!
//! ```text
//! start ──register──┬─ every `heartbeat` ─ beat ── reap the dead ──┐── stop: deregister
//!                   └──────────────────────────────────────────────┘
//! ```
//!
//! # Ground rules
//! - Any node may reap any other: there is no leader. The store makes a reap atomic,
//!   so two survivors reaping at once reap each node once.
//! - A node learns it was reaped from its own heartbeat (the store says it is not
//!   registered): it was paused or cut off past `node_timeout`, its leases and slots
//!   were freed and its jobs taken over. It registers again and carries on; what it
//!   still had in hand is fenced off by the store (`JobStore::release_jobs`).
//! - Every store error is logged and retried at the next beat; membership never
//!   stops the scheduler.
//! - It runs on the scheduler's clock (simulated time in tests); `node_timeout` is
//!   judged by the reaper's clock, so it must exceed the clock skew between hosts.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Inner, Scheduler, SchedulerError, SchedulerState};
use crate::store::NodeInfo;

/// How a scheduler takes part in a cluster's membership
/// ([`SchedulerBuilder::membership`](super::SchedulerBuilder::membership)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// How often this node renews its heartbeat and looks for dead nodes.
    pub heartbeat: Duration,
    /// How old a node's last heartbeat may be before a survivor reaps it.
    pub node_timeout: Duration,
    /// This host's name, as shown by `kairos cluster`.
    pub host: String,
}

impl Default for Membership {
    /// A beat every 10 s, dead after 60 s, the host name from the OS.
    fn default() -> Membership {
        Membership {
            heartbeat: Duration::from_secs(10),
            node_timeout: Duration::from_secs(60),
            host: host_name(),
        }
    }
}

/// This machine's host name, or `"unknown"`.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Registers, beats and reaps until the scheduler stops, then deregisters.
pub(crate) async fn run(inner: Arc<Inner>, membership: Membership) {
    let mut state = inner.state.subscribe();
    // To the microsecond, as every store keeps instants.
    let now = inner.clock.now();
    let started = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let every = TimeDelta::from_std(membership.heartbeat).unwrap_or(TimeDelta::MAX);
    let node = |now: DateTime<Utc>| NodeInfo {
        id: inner.id.clone(),
        host: membership.host.clone(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started,
        last_heartbeat: now,
    };
    for (name, store) in &inner.stores {
        if let Err(error) = store.register_node(node(started)).await {
            // The first beat finds it missing and registers it then.
            tracing::warn!(jobstore = name, %error, "could not register this node");
        }
    }
    let mut next = started;
    while let Some(after) = next.checked_add_signed(every) {
        next = after.max(inner.clock.now());
        let stopped = tokio::select! {
            () = inner.clock.sleep_until(next) => false,
            changed = async {
                loop {
                    if state.changed().await.is_err()
                        || *state.borrow_and_update() == SchedulerState::Stopped
                    {
                        return;
                    }
                }
            } => { let () = changed; true }
        };
        if stopped {
            break;
        }
        beat(&inner, &membership, &node).await;
    }
    for (name, store) in &inner.stores {
        if let Err(error) = store.deregister_node(&inner.id).await {
            tracing::warn!(jobstore = name, %error, "could not deregister this node; survivors will reap it");
        }
    }
}

/// One round: renew this node's heartbeat in every store and reap the dead.
async fn beat(inner: &Inner, membership: &Membership, node: &impl Fn(DateTime<Utc>) -> NodeInfo) {
    let mut reaped_any = false;
    for (name, store) in &inner.stores {
        let now = inner.clock.now();
        match store.heartbeat(&inner.id, now).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    jobstore = name,
                    node_id = inner.id,
                    "this node was reaped as dead (paused or cut off longer than node_timeout); \
                     its leases were taken over; registering again"
                );
                if let Err(error) = store.register_node(node(now)).await {
                    tracing::warn!(jobstore = name, %error, "could not register this node again");
                }
            }
            Err(error) => {
                tracing::warn!(jobstore = name, %error, "heartbeat failed; will retry");
                // A node that cannot beat cannot judge others either.
                continue;
            }
        }
        match store.reap_dead_nodes(now, membership.node_timeout).await {
            Ok(reaped) => {
                for node_id in &reaped {
                    tracing::warn!(
                        jobstore = name,
                        node_id,
                        node_timeout = ?membership.node_timeout,
                        "reaped a dead node: its leases and instance slots are free, its jobs run here or elsewhere"
                    );
                }
                reaped_any |= !reaped.is_empty();
            }
            Err(error) => {
                tracing::warn!(jobstore = name, %error, "looking for dead nodes failed; will retry");
            }
        }
    }
    if reaped_any {
        // Their jobs are due now, not when their leases would have expired.
        inner.wake.notify_one();
    }
}

/// One node of the cluster, as [`Scheduler::cluster`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterNode {
    /// Its registration and last heartbeat.
    #[serde(flatten)]
    pub node: NodeInfo,
    /// Whether its last heartbeat is within the node timeout, by this node's clock.
    pub alive: bool,
    /// Whether it is the node answering.
    pub this_node: bool,
    /// The stores it is registered in.
    pub jobstores: Vec<String>,
}

impl Scheduler {
    /// The nodes registered in this scheduler's stores, by id: a node registered in
    /// several stores is listed once, with its latest heartbeat. Empty when no store
    /// keeps a membership.
    pub async fn cluster(&self) -> Result<Vec<ClusterNode>, SchedulerError> {
        let timeout = self
            .inner
            .membership
            .as_ref()
            .map_or(Membership::default().node_timeout, |membership| {
                membership.node_timeout
            });
        let now = self.inner.clock.now();
        let cutoff = TimeDelta::from_std(timeout)
            .ok()
            .and_then(|timeout| now.checked_sub_signed(timeout))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut nodes: std::collections::BTreeMap<String, ClusterNode> =
            std::collections::BTreeMap::new();
        for (name, store) in &self.inner.stores {
            for node in store.list_nodes().await? {
                let entry = nodes.entry(node.id.clone()).or_insert_with(|| ClusterNode {
                    node: node.clone(),
                    alive: false,
                    this_node: node.id == self.inner.id,
                    jobstores: Vec::new(),
                });
                if node.last_heartbeat > entry.node.last_heartbeat {
                    entry.node = node;
                }
                entry.jobstores.push(name.clone());
            }
        }
        Ok(nodes
            .into_values()
            .map(|mut node| {
                node.alive = node.node.last_heartbeat >= cutoff;
                node
            })
            .collect())
    }
}
