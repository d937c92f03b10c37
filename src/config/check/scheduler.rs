//! `[scheduler]`: the zone, the node id, the zone rules' directory and a cluster's
//! lease, heartbeat and node timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::super::error::ConfigError;
use super::super::raw::{HumaneDuration, RawRoot, RawScheduler};
use super::super::source::Source;
use super::super::SchedulerConfig;
use super::report::{at_least_one, invalid};
use crate::trigger::Zone;

/// `[scheduler]`, with the system's zone and `HOSTNAME-PID` as defaults.
pub(crate) fn check_scheduler(
    raw: &RawRoot,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> SchedulerConfig {
    let source = &raw.source;
    let mut config = SchedulerConfig {
        timezone: Zone::system(),
        tzdir: None,
        node_id: default_node_id(),
        batch_size: None,
        fire_ahead: None,
        shutdown_timeout: Duration::from_secs(30),
        watch: false,
        lease: DEFAULT_LEASE,
        heartbeat: DEFAULT_HEARTBEAT,
        node_timeout: DEFAULT_NODE_TIMEOUT,
        poll_interval: None,
    };
    let Some(section) = &raw.scheduler else {
        return config;
    };
    let scheduler = &section.value;
    if let Some(timezone) = &scheduler.timezone {
        match timezone.get_ref().parse::<Zone>() {
            Ok(zone) => config.timezone = zone,
            Err(error) => errors.push(invalid(source, timezone, "scheduler.timezone", error)),
        }
    }
    if let Some(tzdir) = &scheduler.tzdir {
        config.tzdir = check_tzdir(source, tzdir, config_dir, errors);
    }
    if let Some(node_id) = &scheduler.node_id {
        if node_id.get_ref().trim().is_empty() {
            errors.push(invalid(
                source,
                node_id,
                "scheduler.node_id",
                "must not be empty",
            ));
        } else {
            config.node_id = node_id.get_ref().clone();
        }
    }
    if let Some(batch_size) = &scheduler.batch_size {
        config.batch_size = at_least_one(source, batch_size, "scheduler.batch_size", errors);
    }
    config.fire_ahead = scheduler.fire_ahead.map(|duration| duration.0);
    if let Some(timeout) = scheduler.shutdown_timeout {
        config.shutdown_timeout = timeout.0;
    }
    config.watch = scheduler.watch.unwrap_or(false);
    check_cluster_timing(source, scheduler, &mut config, errors);
    config
}

/// `[scheduler] tzdir`: `"compiled-in"`, or a directory that exists (relative to the
/// config file's directory); a directory that is not there is an error naming the key,
/// not a silent fall back to the compiled-in rules (docs/semantics.md, "Zone rules").
fn check_tzdir(
    source: &Source,
    tzdir: &Spanned<String>,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Option<PathBuf>> {
    let text = tzdir.get_ref().trim();
    if text == crate::trigger::tzdata::COMPILED_IN {
        return Some(None);
    }
    if text.is_empty() {
        errors.push(invalid(
            source,
            tzdir,
            "scheduler.tzdir",
            "must name a zoneinfo directory (e.g. /usr/share/zoneinfo) or be \"compiled-in\"",
        ));
        return None;
    }
    let dir = config_dir.join(text);
    if !dir.is_dir() {
        errors.push(invalid(
            source,
            tzdir,
            "scheduler.tzdir",
            format!(
                "{} is not a directory (a zoneinfo directory such as /usr/share/zoneinfo, or \"compiled-in\")",
                dir.display()
            ),
        ));
        return None;
    }
    Some(Some(dir))
}

/// The lease, heartbeat and node timeout of a cluster. None may be zero,
/// and a node must get at least two heartbeats within the timeout, or one late beat
/// (a slow store, a GC pause) would get a live node reaped.
fn check_cluster_timing(
    source: &Source,
    scheduler: &RawScheduler,
    config: &mut SchedulerConfig,
    errors: &mut Vec<ConfigError>,
) {
    let positive = |value: &Option<Spanned<HumaneDuration>>,
                    key: &str,
                    errors: &mut Vec<ConfigError>|
     -> Option<Duration> {
        let value = value.as_ref()?;
        if value.get_ref().0.is_zero() {
            errors.push(invalid(source, value, key, "must be longer than zero"));
            return None;
        }
        Some(value.get_ref().0)
    };
    if let Some(lease) = positive(&scheduler.lease, "scheduler.lease", errors) {
        config.lease = lease;
    }
    if let Some(heartbeat) = positive(&scheduler.heartbeat, "scheduler.heartbeat", errors) {
        config.heartbeat = heartbeat;
    }
    if let Some(timeout) = positive(&scheduler.node_timeout, "scheduler.node_timeout", errors) {
        config.node_timeout = timeout;
    }
    config.poll_interval = positive(&scheduler.poll_interval, "scheduler.poll_interval", errors);
    if config.node_timeout < config.heartbeat.saturating_mul(2) {
        let message = format!(
            "must be at least two heartbeats ({:?}), or a live node with one late beat is reaped",
            config.heartbeat.saturating_mul(2)
        );
        let blamed = scheduler
            .node_timeout
            .as_ref()
            .or(scheduler.heartbeat.as_ref());
        let key = if scheduler.node_timeout.is_some() {
            "scheduler.node_timeout"
        } else {
            "scheduler.heartbeat"
        };
        if let Some(blamed) = blamed {
            errors.push(invalid(source, blamed, key, message));
        }
    }
}

/// The default lease (as [`crate::scheduler::Scheduler::builder`]'s).
const DEFAULT_LEASE: Duration = Duration::from_secs(300);
/// The default heartbeat.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// The default node timeout: six heartbeats.
const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// The host name: stable across restarts, unique among one daemon per host.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "kairos".to_owned());
    // The host name alone, so a daemon restarted after a crash has the same id and
    // frees the leases and instance slots it left at once (Scheduler::start). Two
    // daemons on one host sharing a store must set distinct node ids.
    host
}
