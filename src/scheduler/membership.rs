//! Cluster membership: a background task that registers this scheduler as a node in
//! every store, renews its heartbeat, and reaps nodes whose heartbeat stopped.
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
//!   still had in hand is fenced off by the store (`DueJobs::release_jobs`).
//! - Every store error is logged and retried at the next beat; membership never
//!   stops the scheduler.
//! - It runs on the scheduler's clock (simulated time in tests); `node_timeout` is
//!   judged by the reaper's clock, so it must exceed the clock skew between hosts.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Inner, Scheduler, SchedulerError, SchedulerState};
use crate::store::{NodeInfo, NodeStats};

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
        stats: None,
    };
    for (name, store) in &inner.stores {
        if let Err(error) = store.register_node(node(started)).await {
            // The first beat finds it missing and registers it then.
            tracing::warn!(jobstore = name, %error, "could not register this node");
        }
    }
    let mut guards: std::collections::HashMap<String, ReapGuard> = std::collections::HashMap::new();
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
        beat(&inner, &membership, &node, &mut guards).await;
    }
    for (name, store) in &inner.stores {
        if let Err(error) = store.deregister_node(&inner.id).await {
            tracing::warn!(jobstore = name, %error, "could not deregister this node; survivors will reap it");
        }
    }
}

/// When this node may judge others dead in one store.
///
/// Heartbeats it could not see are no evidence: after its own heartbeat failed (a
/// store outage held everyone's back), or after its clock moved by more than two
/// heartbeats between two beats (a clock step, or this node frozen), every other node
/// looks as old as the gap. It reaps nobody until a whole `node_timeout` of fresh
/// heartbeats has had the chance to arrive. The same holds from its first beat: a
/// node just started cannot tell a dead peer from one whose clock, like its own,
/// just stepped (the checker's clock jumps found a node started a moment before a
/// step reaping every live peer).
#[derive(Default)]
struct ReapGuard {
    /// The time of this node's last heartbeat that the store took.
    last_ok: Option<DateTime<Utc>>,
    /// A heartbeat failed since then.
    failed: bool,
    /// No reaping before this.
    hold_until: Option<DateTime<Utc>>,
}

impl ReapGuard {
    /// Notes a heartbeat the store took at `now`; whether reaping is allowed now.
    fn beat_taken(&mut self, now: DateTime<Utc>, membership: &Membership) -> bool {
        let beat = TimeDelta::from_std(membership.heartbeat).unwrap_or(TimeDelta::MAX);
        let jumped = self.last_ok.is_some_and(|last| {
            now.signed_duration_since(last) > beat.checked_mul(2).unwrap_or(TimeDelta::MAX)
                || now < last
        });
        let first = self.last_ok.is_none();
        if std::mem::take(&mut self.failed) || jumped || first {
            let timeout = TimeDelta::from_std(membership.node_timeout).unwrap_or(TimeDelta::MAX);
            self.hold_until = now.checked_add_signed(timeout);
        }
        self.last_ok = Some(now);
        self.hold_until.is_none_or(|until| now >= until)
    }
}

/// One round: renew this node's heartbeat in every store and reap the dead.
async fn beat(
    inner: &Inner,
    membership: &Membership,
    node: &impl Fn(DateTime<Utc>) -> NodeInfo,
    guards: &mut std::collections::HashMap<String, ReapGuard>,
) {
    let mut reaped_any = false;
    // Taken once per beat: each run's lateness is reported once.
    let stats = inner.node_stats(true);
    for (name, store) in &inner.stores {
        let now = inner.clock.now();
        let beat = NodeInfo {
            stats: Some(stats.clone()),
            ..node(now)
        };
        match store.heartbeat_node(&beat).await {
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
                guards.entry(name.clone()).or_default().failed = true;
                continue;
            }
        }
        if !guards
            .entry(name.clone())
            .or_default()
            .beat_taken(now, membership)
        {
            continue;
        }
        match store.reap_dead_nodes(now, membership.node_timeout).await {
            Ok(reaped) => {
                // The runs of dead nodes that nothing else would run again: taken by
                // the loop's next pass, this beat's reaps' and any a reaper that
                // died before taking them left (`recovery::replay_orphaned_runs`).
                inner.lock().orphans_to_take.insert(name.clone());
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

/// The most lateness samples kept between two heartbeats; beyond it runs are counted
/// but not sampled (a node ending 10 000 runs a second with a 10 s beat).
const MAX_LATENESS_SAMPLES: usize = 100_000;

/// How late the runs that ended since the last heartbeat started.
#[derive(Debug, Default)]
pub(crate) struct LatenessWindow {
    ended: u64,
    /// In milliseconds; negative lateness (a run started early) counts as on time.
    samples: Vec<u64>,
}

impl LatenessWindow {
    /// Notes one run that ended, started `late` after its scheduled time.
    pub(crate) fn add(&mut self, late: TimeDelta) {
        self.ended = self.ended.saturating_add(1);
        if self.samples.len() < MAX_LATENESS_SAMPLES {
            self.samples
                .push(u64::try_from(late.num_milliseconds()).unwrap_or(0));
        }
    }

    /// The window's figures, into `stats`.
    fn report(mut self, stats: &mut NodeStats) {
        stats.ended = self.ended;
        self.samples.sort_unstable();
        let at = |fraction: f64| {
            // The nearest rank: the smallest sample at or above the fraction.
            let rank = (fraction * self.samples.len() as f64).ceil() as usize;
            self.samples
                .get(
                    rank.saturating_sub(1)
                        .min(self.samples.len().saturating_sub(1)),
                )
                .copied()
                .unwrap_or(0)
        };
        stats.lateness_p50_ms = at(0.5);
        stats.lateness_p99_ms = at(0.99);
        stats.lateness_max_ms = self.samples.last().copied().unwrap_or(0);
    }
}

impl Inner {
    /// What this node reports about itself ([`NodeStats`]): its executors' load, the
    /// jobs of its runs in flight, and the lateness of the runs that ended since the
    /// last heartbeat, which `drain` takes (a beat reports each run once; a look from
    /// `kairos cluster` leaves them).
    pub(crate) fn node_stats(&self, drain: bool) -> NodeStats {
        let (window, jobs) = {
            let mut mutable = self.lock();
            let window = if drain {
                std::mem::take(&mut mutable.lateness)
            } else {
                LatenessWindow {
                    ended: mutable.lateness.ended,
                    samples: mutable.lateness.samples.clone(),
                }
            };
            let jobs: std::collections::BTreeSet<String> = mutable
                .run_stores
                .values()
                .map(|place| place.job_id.clone())
                .collect();
            (window, jobs)
        };
        let mut stats = NodeStats {
            running_jobs: jobs.into_iter().take(NodeStats::MAX_JOBS).collect(),
            ..NodeStats::default()
        };
        for executor in self.executors.values() {
            let load = executor.load();
            let count = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
            stats.running = stats.running.saturating_add(count(load.running));
            stats.queued = stats.queued.saturating_add(count(load.queued));
            stats.capacity = stats.capacity.saturating_add(count(load.max_workers));
        }
        window.report(&mut stats);
        stats
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
    /// Makes sure no other live process holds this scheduler's id, before it
    /// [starts](Scheduler::start) and frees what an earlier process with its id left
    /// behind (which, with that process alive, would run its jobs twice).
    ///
    /// A registration under this id with a heartbeat within `node_timeout` belongs to:
    /// - a dead predecessor on this host when its process is gone (a restart after a
    ///   crash): fine, its work is recovered at once;
    /// - a live node when its process still runs on this host, or, on another host,
    ///   when its heartbeat moves within two heartbeats: [`SchedulerError::NodeIdInUse`].
    ///
    /// Does nothing without [membership](super::SchedulerBuilder::membership).
    pub async fn check_node_id(&self) -> Result<(), SchedulerError> {
        let Some(membership) = self.inner.membership.clone() else {
            return Ok(());
        };
        let timeout = TimeDelta::from_std(membership.node_timeout).unwrap_or(TimeDelta::MAX);
        for store in self.inner.stores.values() {
            let Some(seen) = self.registration(store.as_ref()).await? else {
                continue;
            };
            let now = self.inner.clock.now();
            let fresh = now.signed_duration_since(seen.last_heartbeat).lt(&timeout);
            let this_process = seen.host == membership.host && seen.pid == std::process::id();
            if !fresh || this_process {
                continue;
            }
            let in_use = || SchedulerError::NodeIdInUse {
                id: seen.id.clone(),
                host: seen.host.clone(),
                pid: seen.pid,
                last_heartbeat: seen.last_heartbeat,
            };
            if seen.host == membership.host {
                if process_runs(seen.pid) {
                    return Err(in_use());
                }
                continue;
            }
            // On another host: alive if it beats again.
            let beat = TimeDelta::from_std(membership.heartbeat).unwrap_or(TimeDelta::MAX);
            let until = now
                .checked_add_signed(beat.checked_mul(2).unwrap_or(TimeDelta::MAX))
                .unwrap_or(now);
            let step = (membership.heartbeat / 4).max(Duration::from_millis(10));
            while self.inner.clock.now() < until {
                let wake = self
                    .inner
                    .clock
                    .now()
                    .checked_add_signed(TimeDelta::from_std(step).unwrap_or(TimeDelta::MAX))
                    .unwrap_or(until)
                    .min(until);
                self.inner.clock.sleep_until(wake).await;
                let again = self.registration(store.as_ref()).await?;
                if again.is_some_and(|again| again.last_heartbeat > seen.last_heartbeat) {
                    return Err(in_use());
                }
            }
        }
        Ok(())
    }

    /// This scheduler's id's entry in `store`'s membership.
    async fn registration(
        &self,
        store: &dyn crate::store::JobStore,
    ) -> Result<Option<NodeInfo>, SchedulerError> {
        Ok(store
            .list_nodes()
            .await?
            .into_iter()
            .find(|node| node.id == self.inner.id))
    }

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
                if node.this_node {
                    // Fresher than what the last beat wrote.
                    node.node.stats = Some(self.inner.node_stats(false));
                }
                node
            })
            .collect())
    }
}

/// Whether a process with this id runs on this host (`/proc`, where there is one;
/// elsewhere it is assumed to run, which errs on the side of not running jobs twice).
fn process_runs(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    // A zombie has exited; only its parent has not collected it yet.
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
