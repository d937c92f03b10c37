//! Config-owned jobs: making the scheduler's jobs match the config files.
//!
//! Used at start and on every reload. A job defined in config carries the spec it was
//! made from ([`Job::config_spec`]), so the comparison is spec against spec, exact and
//! valid across restarts:
//! - a config job not in the store is added;
//! - one whose spec changed is replaced, keeping its next run time when its trigger
//!   did not change (editing a job's args must not make it skip or repeat a run);
//! - one whose spec is the same is left alone (an operator's pause stays);
//! - a store job that the config owned and no longer defines is removed;
//! - jobs added through the API or the library are never touched, except that a config
//!   job whose id one of them holds takes it over (the config file is the owner the
//!   operator edits), with a warning.
//!
//! # Several nodes, one store (issue 10, item 5)
//! Every node of a cluster syncs the same store from its own copy of the files, and
//! during a rollout the copies differ. Each config job therefore also keeps the
//! [`ConfigVersion`] of the config that wrote it: when the files were last changed,
//! and a hash of the jobs they define. The rule:
//!
//! ```text
//! store holds jobs of a config …        this node's config is …    the sync
//! with the same hash                     the same jobs              runs (changes nothing)
//! older (or with no version)             newer                      runs, and stamps kept jobs
//! newer, with another hash               older                      changes nothing, warns
//! ```
//!
//! So nodes restarting or reloading in any order never duplicate a job (ids are the
//! config's, and a node that finds a job another node just added compares instead of
//! failing), and a node with an older config never undoes a newer one's changes, nor
//! brings back a job it removed. The newer config is the one whose files were changed
//! last; copying an old file back counts as a change, so that is how to roll back.
//! Each write is atomic but a sync as a whole is not: a node with an older config
//! that syncs at the very moment a newer one does may land some writes after it, so a
//! sync that applied a config looks once more and repairs them.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::job::{ConfigVersion, Job, JobSpec};
use crate::scheduler::{Scheduler, SchedulerError};

/// What a sync did, by job id.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Config jobs that were not in the store.
    pub added: Vec<String>,
    /// Config jobs whose definition changed.
    pub changed: Vec<String>,
    /// Jobs the config no longer defines.
    pub removed: Vec<String>,
    /// Config jobs left as they were.
    pub unchanged: usize,
    /// Jobs the scheduler refused, with why (the others were still synced).
    pub failed: Vec<(String, SchedulerError)>,
    /// The version of a newer config whose jobs the store holds: this node's config is
    /// older, so the sync changed nothing.
    pub newer_in_store: Option<ConfigVersion>,
}

impl SyncReport {
    /// One line for the log and the reload answer.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} added, {} changed, {} removed, {} unchanged, {} failed",
            self.added.len(),
            self.changed.len(),
            self.removed.len(),
            self.unchanged,
            self.failed.len()
        );
        if let Some(newer) = &self.newer_in_store {
            line.push_str(&format!(
                "; left to a newer config in the store (changed {}, jobs {})",
                newer.modified.to_rfc3339(),
                newer.hash
            ));
        }
        line
    }
}

/// The version of a config: the newest modification time among its `files` and the
/// directories that hold them (a file that cannot be read counts as the epoch), and a
/// hash of the jobs it defines.
///
/// The directories count because removing a job file changes no file that is left,
/// only its directory: without them, a config with one file fewer would look older
/// than the one it replaces.
pub fn config_version(files: &[PathBuf], wanted: &[JobSpec]) -> ConfigVersion {
    let mut paths: BTreeSet<&std::path::Path> = BTreeSet::new();
    for file in files {
        paths.insert(file);
        if let Some(directory) = file
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            paths.insert(directory);
        }
    }
    let modified = paths
        .into_iter()
        .filter_map(|file| match std::fs::metadata(file).and_then(|meta| meta.modified()) {
            Ok(modified) => Some(DateTime::<Utc>::from(modified)),
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "cannot read a config file's modification time");
                None
            }
        })
        .max()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    // To the microsecond, as stores keep instants, so a version read back compares
    // equal to the one computed.
    let modified = DateTime::from_timestamp_micros(modified.timestamp_micros()).unwrap_or(modified);
    ConfigVersion {
        modified,
        hash: jobs_hash(wanted),
    }
}

/// FNV-1a over the canonical JSON of each job, by id: every process and every kairos
/// build that serializes specs alike computes the same value (std's hasher is seeded
/// per process).
fn jobs_hash(wanted: &[JobSpec]) -> String {
    let mut specs: Vec<(Option<&String>, String)> = wanted
        .iter()
        .map(|spec| {
            let json = serde_json::to_string(&spec.canonical()).unwrap_or_default();
            (spec.id.as_ref(), json)
        })
        .collect();
    specs.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, json) in &specs {
        // A separator no JSON text holds, so job boundaries count.
        for byte in json.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Makes the scheduler's config-owned jobs match `wanted` (each with an id and
/// `from_config` set; see [`crate::config`]), the config of `version`, unless the store
/// holds a newer config's jobs (see the module docs). Jobs are handled one by one, so
/// a job the scheduler refuses is reported and the others still sync.
pub async fn sync_config_jobs(
    scheduler: &Scheduler,
    wanted: Vec<JobSpec>,
    version: &ConfigVersion,
) -> Result<SyncReport, SchedulerError> {
    let mut report = sync_once(scheduler, wanted.clone(), version).await?;
    if report.newer_in_store.is_none() {
        // Repairs what a node with an older config wrote meanwhile; normally a look
        // that finds everything as it was just written.
        let again = sync_once(scheduler, wanted, version).await?;
        if !(again.added.is_empty() && again.changed.is_empty() && again.removed.is_empty()) {
            tracing::warn!(
                added = ?again.added,
                changed = ?again.changed,
                removed = ?again.removed,
                "config jobs were changed by a node with an older config while this node synced them; repaired"
            );
        }
        report.added.extend(again.added);
        report.changed.extend(again.changed);
        report.removed.extend(again.removed);
        report.failed.extend(again.failed);
        report.newer_in_store = again.newer_in_store;
    }
    Ok(report)
}

/// Whether a stored job's version is one this node's config must leave alone: newer,
/// and a different set of jobs.
fn is_newer(stored: Option<&ConfigVersion>, version: &ConfigVersion) -> bool {
    stored.is_some_and(|stored| stored > version && stored.hash != version.hash)
}

/// Whether a job this node's config keeps as it is should carry its version: it was
/// written by an older config with other jobs (or before versions were kept), and
/// without the stamp a node still on that older config would count as current.
fn needs_stamp(stored: Option<&ConfigVersion>, version: &ConfigVersion) -> bool {
    stored.is_none_or(|stored| stored < version && stored.hash != version.hash)
}

/// One pass of [`sync_config_jobs`].
async fn sync_once(
    scheduler: &Scheduler,
    wanted: Vec<JobSpec>,
    version: &ConfigVersion,
) -> Result<SyncReport, SchedulerError> {
    // Only the config's own jobs are read (a store may hold a million API jobs), plus
    // the config's ids one by one to find any an API job holds.
    let mut current: HashMap<String, Job> = scheduler
        .get_config_jobs()
        .await?
        .into_iter()
        .map(|job| (job.id.clone(), job))
        .collect();
    let mut report = SyncReport::default();
    let newest = current
        .values()
        .filter_map(|job| job.config_version.as_ref())
        .max();
    if let Some(newest) = newest.filter(|newest| is_newer(Some(newest), version)) {
        tracing::warn!(
            store_config_changed = %newest.modified.to_rfc3339(),
            store_config_jobs = newest.hash,
            this_config_changed = %version.modified.to_rfc3339(),
            this_config_jobs = version.hash,
            "the job store holds the jobs of a newer config than this node's: leaving them \
             as they are; give this node the same config files"
        );
        report.newer_in_store = Some(newest.clone());
        report.unchanged = wanted.len();
        return Ok(report);
    }
    for spec in &wanted {
        if let Some(id) = &spec.id {
            if !current.contains_key(id) {
                if let Some(job) = scheduler.get_job(id).await? {
                    current.insert(id.clone(), job);
                }
            }
        }
    }
    let mut defined = BTreeSet::new();
    for spec in wanted {
        let Some(id) = spec.id.clone() else {
            report.failed.push((
                String::new(),
                SchedulerError::InvalidOption {
                    field: "id",
                    reason: "a job defined in config needs an id".to_owned(),
                },
            ));
            continue;
        };
        defined.insert(id.clone());
        let outcome = sync_job(scheduler, spec, current.get(&id), version).await;
        match outcome {
            Ok(Synced::Added) => report.added.push(id),
            Ok(Synced::Changed) => report.changed.push(id),
            Ok(Synced::Unchanged) => report.unchanged += 1,
            Err(error) => report.failed.push((id, error)),
        }
    }
    for job in current.values() {
        if job.is_from_config()
            && !defined.contains(&job.id)
            && !is_newer(job.config_version.as_ref(), version)
        {
            match scheduler.remove_job(&job.id).await {
                Ok(()) => report.removed.push(job.id.clone()),
                // Gone already (a one-off that finished meanwhile, or another node
                // removed it): nothing to do.
                Err(SchedulerError::JobNotFound(_)) => {}
                Err(error) => report.failed.push((job.id.clone(), error)),
            }
        }
    }
    report.removed.sort();
    Ok(report)
}

/// What a sync did to one job.
enum Synced {
    Added,
    Changed,
    Unchanged,
}

/// Makes one stored job (`existing`, as read) match `spec`.
async fn sync_job(
    scheduler: &Scheduler,
    mut spec: JobSpec,
    existing: Option<&Job>,
    version: &ConfigVersion,
) -> Result<Synced, SchedulerError> {
    spec.from_config = true;
    spec.config_version = Some(version.clone());
    let mut existing = existing.cloned();
    // At most twice: a second time when another node added the job between our read
    // and our add (it is not duplicated; we look at what that node wrote).
    for _ in 0..2 {
        let id = spec.id.clone().unwrap_or_default();
        let mut attempt = spec.clone();
        if let Some(job) = &existing {
            if is_newer(job.config_version.as_ref(), version) {
                return Ok(Synced::Unchanged);
            }
        }
        match existing.as_ref().and_then(|job| job.config_spec.as_deref()) {
            Some(stored) if *stored == spec.canonical() => {
                let stamp = existing
                    .as_ref()
                    .is_some_and(|job| needs_stamp(job.config_version.as_ref(), version));
                if stamp {
                    scheduler.stamp_config_version(&id, version).await?;
                }
                return Ok(Synced::Unchanged);
            }
            // Same trigger: the job keeps its place in the schedule.
            Some(stored)
                if stored.trigger == spec.trigger
                    && spec.next_run_time.is_none()
                    && !spec.paused =>
            {
                attempt.next_run_time = existing.as_ref().and_then(|job| job.next_run_time);
            }
            Some(_) => {}
            None if existing.is_some() => {
                tracing::warn!(
                    job_id = id,
                    "a job added through the API had this id; the config file's job replaces it"
                );
            }
            None => {}
        }
        attempt.replace_existing = existing.is_some();
        match scheduler.add_job(attempt).await {
            Ok(_) if existing.is_some() => return Ok(Synced::Changed),
            Ok(_) => return Ok(Synced::Added),
            Err(SchedulerError::JobExists(_)) if existing.is_none() => {
                existing = scheduler.get_job(&id).await?;
                if existing.is_none() {
                    // Added and removed again meanwhile: add it the second time round.
                    continue;
                }
            }
            Err(error) => return Err(error),
        }
    }
    Err(SchedulerError::Store(
        crate::store::StoreError::Unavailable(
            "the job kept being added and removed by other nodes".to_owned(),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(seconds: i64, hash: &str) -> ConfigVersion {
        ConfigVersion {
            modified: DateTime::from_timestamp(seconds, 0).unwrap_or_default(),
            hash: hash.to_owned(),
        }
    }

    #[test]
    fn a_newer_config_with_other_jobs_is_left_alone_and_an_older_one_stamped() {
        let mine = version(100, "bbbb");
        assert!(is_newer(Some(&version(200, "cccc")), &mine));
        // The same jobs, written later elsewhere: not a newer config.
        assert!(!is_newer(Some(&version(200, "bbbb")), &mine));
        assert!(!is_newer(Some(&version(50, "aaaa")), &mine));
        assert!(!is_newer(None, &mine));
        // The same instant: the hash orders them, the same way on every node.
        assert!(is_newer(Some(&version(100, "cccc")), &mine));
        assert!(!is_newer(Some(&version(100, "aaaa")), &mine));

        assert!(needs_stamp(None, &mine));
        assert!(needs_stamp(Some(&version(50, "aaaa")), &mine));
        assert!(!needs_stamp(Some(&version(50, "bbbb")), &mine));
        assert!(!needs_stamp(Some(&mine), &mine));
        assert!(!needs_stamp(Some(&version(200, "cccc")), &mine));
    }

    #[test]
    fn the_jobs_hash_depends_on_the_jobs_not_their_order() {
        let spec = |id: &str, hour: u32| {
            let trigger = serde_json::from_value(serde_json::json!({"type": "cron", "hour": hour}))
                .unwrap_or_else(|error| panic!("{error}"));
            JobSpec::new("command", trigger).with_id(id)
        };
        let one = jobs_hash(&[spec("a", 1), spec("b", 2)]);
        assert_eq!(one, jobs_hash(&[spec("b", 2), spec("a", 1)]));
        assert_ne!(one, jobs_hash(&[spec("a", 1), spec("b", 3)]));
        assert_ne!(one, jobs_hash(&[spec("a", 1)]));
        assert_eq!(one.len(), 16);
        // How a job was handed over does not count.
        let mut replacing = spec("a", 1);
        replacing.replace_existing = true;
        assert_eq!(one, jobs_hash(&[replacing, spec("b", 2)]));
    }
}
