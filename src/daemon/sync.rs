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
//! # Several nodes, one store
//! Every node of a cluster syncs the same store from its own copy of the files, and
//! during a rollout the copies differ. Before it touches a job, a sync asks the store
//! where this node's config stands ([`Scheduler::claim_config_generation`]): the store
//! keeps a generation counter and the content hash of each config applied, and a
//! config whose content a newer generation replaced is not applied again unless the
//! reload is forced (see docs/config-reload.md for the whole table). The hash is of
//! the jobs the files define, so moving a job between files or editing a comment is
//! not a new config.
//!
//! Each job also carries the [`ConfigVersion`] (generation and hash) that last wrote
//! it, and a sync leaves a job written by a newer generation alone. So nodes
//! restarting or reloading in any order never duplicate a job (ids are the config's,
//! and a node that finds a job another node just added compares instead of failing),
//! and a node with a superseded config never undoes a newer one's changes, nor
//! brings back a job it removed. Each write is atomic but a sync as a whole is not: a
//! node that judged its config current just before another node recorded a newer one
//! may land some writes after it, so a sync that applied a config looks once more and
//! repairs them, and a node that finds itself overtaken says so.
//!
//! ---
#![doc = include_str!("../../docs/config-reload.md")]

use std::collections::{BTreeSet, HashMap};

use crate::api::{FailedJob, ReloadView};
use crate::job::{ConfigVersion, Job, JobSpec};
use crate::scheduler::{Scheduler, SchedulerError, Standing};
use crate::store::ConfigGeneration;

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
    /// The content hash of this node's config ([`config_hash`]).
    pub hash: String,
    /// Where this node's config stood against the store's generations; a superseded
    /// one changed nothing. `None` only in a report made by hand.
    pub standing: Option<Standing>,
    /// A newer generation another node recorded while this one synced: some of this
    /// sync's writes may have landed after that node's (see the module docs).
    pub overtaken_by: Option<ConfigGeneration>,
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
        if let Some(standing) = &self.standing {
            line.push_str("; ");
            line.push_str(&standing.describe());
        }
        if let Some(newer) = &self.overtaken_by {
            line.push_str(&format!(
                "; meanwhile node {:?} applied generation {} (hash {})",
                newer.node_id, newer.generation, newer.hash
            ));
        }
        line
    }

    /// Whether the sync left the store alone because the config is superseded.
    pub fn superseded(&self) -> bool {
        matches!(self.standing, Some(Standing::Superseded { .. }))
    }

    /// The answer `POST /scheduler/reload` sends for this sync.
    pub fn into_view(self) -> ReloadView {
        ReloadView {
            applied: !self.superseded(),
            message: self.summary(),
            hash: self.hash,
            config: self.standing,
            overtaken_by: self.overtaken_by,
            added: self.added,
            changed: self.changed,
            removed: self.removed,
            unchanged: self.unchanged,
            failed: self
                .failed
                .into_iter()
                .map(|(id, error)| FailedJob {
                    id,
                    error: error.to_string(),
                })
                .collect(),
        }
    }
}

/// The content hash of a config: FNV-1a over the canonical JSON of each job, by id
/// (16 hex digits). Every process and every kairos build that serializes specs alike
/// computes the same value (std's hasher is seeded per process); file names, layout,
/// comments and modification times do not count.
pub fn config_hash(wanted: &[JobSpec]) -> String {
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
/// `from_config` set; see [`crate::config`]), unless the store's generations say this
/// config was superseded and the reload is not `force`d (see the module docs). Jobs
/// are handled one by one, so a job the scheduler refuses is reported and the others
/// still sync.
pub async fn sync_config_jobs(
    scheduler: &Scheduler,
    wanted: Vec<JobSpec>,
    force: bool,
) -> Result<SyncReport, SchedulerError> {
    let hash = config_hash(&wanted);
    let standing = scheduler.claim_config_generation(&hash, force).await?;
    scheduler.set_config_status(hash.clone(), standing.clone());
    let generation = match &standing {
        Standing::Current { generation, .. } => generation.generation,
        Standing::Superseded { was, newest } => {
            tracing::warn!(
                store_generation = newest.generation,
                store_hash = newest.hash,
                store_applied_by = newest.node_id,
                this_config_generation = was,
                this_config_hash = hash,
                "this node's config was superseded by a newer one in the job store: leaving \
                 the jobs as they are; give this node the newer files, or roll back with a \
                 forced reload (kairos jobs reload --force)"
            );
            return Ok(SyncReport {
                unchanged: wanted.len(),
                hash,
                standing: Some(standing),
                ..SyncReport::default()
            });
        }
    };
    let version = ConfigVersion {
        generation,
        hash: hash.clone(),
    };
    let mut report = sync_once(scheduler, wanted.clone(), &version).await?;
    // Repairs what a node that judged an older config current wrote meanwhile;
    // normally a look that finds everything as it was just written.
    let again = match report.overtaken_by {
        Some(_) => SyncReport::default(),
        None => sync_once(scheduler, wanted, &version).await?,
    };
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
    report.hash = hash.clone();
    report.standing = Some(standing);
    let newest = match report.overtaken_by.take().or(again.overtaken_by) {
        Some(newer) => Some(newer),
        None => overtaken(scheduler, &version).await?,
    };
    if let Some(newest) = newest {
        tracing::warn!(
            this_config_generation = generation,
            store_generation = newest.generation,
            store_hash = newest.hash,
            store_applied_by = newest.node_id,
            "another node applied a newer config while this node synced its own; that \
             node's sync repairs the jobs, this node's config is superseded now"
        );
        let superseded = Standing::Superseded {
            was: generation,
            newest: newest.clone(),
        };
        if newest.hash != hash {
            scheduler.set_config_status(hash, superseded);
        }
        report.overtaken_by = Some(newest);
    }
    Ok(report)
}

/// Whether a stored job was written by a newer config generation than `version`'s,
/// which this sync must leave alone.
fn is_newer(stored: Option<&ConfigVersion>, version: &ConfigVersion) -> bool {
    stored.is_some_and(|stored| stored.generation > version.generation)
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
            Ok(Synced::Overtaken(newer)) => {
                report.overtaken_by = Some(newer);
                return Ok(report);
            }
            Err(error) => report.failed.push((id, error)),
        }
    }
    for job in current.values() {
        if job.is_from_config()
            && !defined.contains(&job.id)
            && !is_newer(job.config_version.as_ref(), version)
        {
            if let Some(newer) = overtaken(scheduler, version).await? {
                report.overtaken_by = Some(newer);
                return Ok(report);
            }
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
    /// Nothing: a newer generation was recorded since the sync began.
    Overtaken(ConfigGeneration),
}

/// The store's newest generation if it is newer than `version`'s: another node
/// recorded a newer config since this sync began, and this sync must stop writing.
///
/// Asked before every write, so a sync that judged its config current a moment before
/// another node recorded a newer one stops at its next write instead of going on
/// with stale reads; only a write already on its way can land after the newer
/// node's, and that node's repair pass is there for it. One read per write; a sync
/// that changes nothing reads nothing more.
async fn overtaken(
    scheduler: &Scheduler,
    version: &ConfigVersion,
) -> Result<Option<ConfigGeneration>, SchedulerError> {
    let newest = scheduler.config_generations(1).await?.into_iter().next();
    Ok(newest.filter(|newest| newest.generation > version.generation))
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
            // Jobs a newer config keeps as they are keep their older stamp: the stamp
            // only guards against writes landing late, and rewriting every job on each
            // reload would cost a write per job.
            Some(stored) if *stored == spec.canonical() => return Ok(Synced::Unchanged),
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
        if let Some(newer) = overtaken(scheduler, version).await? {
            return Ok(Synced::Overtaken(newer));
        }
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
        crate::store::StoreError::unavailable(
            "the job kept being added and removed by other nodes".to_owned(),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(generation: u64, hash: &str) -> ConfigVersion {
        ConfigVersion {
            generation,
            hash: hash.to_owned(),
        }
    }

    #[test]
    fn a_job_written_by_a_newer_generation_is_left_alone() {
        let mine = version(2, "bbbb");
        assert!(is_newer(Some(&version(3, "cccc")), &mine));
        assert!(!is_newer(Some(&version(2, "bbbb")), &mine));
        assert!(!is_newer(Some(&version(1, "aaaa")), &mine));
        // Written before generations were kept.
        assert!(!is_newer(Some(&version(0, "aaaa")), &mine));
        assert!(!is_newer(None, &mine));
    }

    #[test]
    fn the_config_hash_depends_on_the_jobs_not_their_order() {
        let spec = |id: &str, hour: u32| {
            let trigger = serde_json::from_value(serde_json::json!({"type": "cron", "hour": hour}))
                .unwrap_or_else(|error| panic!("{error}"));
            JobSpec::new("command", trigger).with_id(id)
        };
        let one = config_hash(&[spec("a", 1), spec("b", 2)]);
        assert_eq!(one, config_hash(&[spec("b", 2), spec("a", 1)]));
        assert_ne!(one, config_hash(&[spec("a", 1), spec("b", 3)]));
        assert_ne!(one, config_hash(&[spec("a", 1)]));
        assert_eq!(one.len(), 16);
        // How a job was handed over does not count.
        let mut replacing = spec("a", 1);
        replacing.replace_existing = true;
        assert_eq!(one, config_hash(&[replacing, spec("b", 2)]));
        // No jobs at all is a config too, with a hash of its own.
        assert_eq!(config_hash(&[]).len(), 16);
        assert_ne!(config_hash(&[]), one);
    }
}
