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

use std::collections::{BTreeSet, HashMap};

use crate::job::{Job, JobSpec};
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
}

impl SyncReport {
    /// One line for the log and the reload answer.
    pub fn summary(&self) -> String {
        format!(
            "{} added, {} changed, {} removed, {} unchanged, {} failed",
            self.added.len(),
            self.changed.len(),
            self.removed.len(),
            self.unchanged,
            self.failed.len()
        )
    }
}

/// Makes the scheduler's config-owned jobs match `wanted` (each with an id and
/// `from_config` set; see [`crate::config`]). Jobs are handled one by one, so a job the
/// scheduler refuses is reported and the others still sync.
pub async fn sync_config_jobs(
    scheduler: &Scheduler,
    wanted: Vec<JobSpec>,
) -> Result<SyncReport, SchedulerError> {
    // Only the config's own jobs are read (a store may hold a million API jobs), plus
    // the config's ids one by one to find any an API job holds.
    let mut current: HashMap<String, Job> = scheduler
        .get_config_jobs()
        .await?
        .into_iter()
        .map(|job| (job.id.clone(), job))
        .collect();
    for spec in &wanted {
        if let Some(id) = &spec.id {
            if !current.contains_key(id) {
                if let Some(job) = scheduler.get_job(id).await? {
                    current.insert(id.clone(), job);
                }
            }
        }
    }
    let mut report = SyncReport::default();
    let mut defined = BTreeSet::new();
    for mut spec in wanted {
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
        spec.from_config = true;
        let existing = current.get(&id);
        match existing.and_then(|job| job.config_spec.as_deref()) {
            Some(stored) if *stored == spec.canonical() => {
                report.unchanged += 1;
                continue;
            }
            // Same trigger: the job keeps its place in the schedule.
            Some(stored)
                if stored.trigger == spec.trigger
                    && spec.next_run_time.is_none()
                    && !spec.paused =>
            {
                spec.next_run_time = existing.and_then(|job| job.next_run_time);
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
        spec.replace_existing = existing.is_some();
        match scheduler.add_job(spec).await {
            Ok(_) if existing.is_some() => report.changed.push(id),
            Ok(_) => report.added.push(id),
            Err(error) => report.failed.push((id, error)),
        }
    }
    for job in current.values() {
        if job.is_from_config() && !defined.contains(&job.id) {
            match scheduler.remove_job(&job.id).await {
                Ok(()) => report.removed.push(job.id.clone()),
                // Gone already (a one-off that finished meanwhile): nothing to do.
                Err(SchedulerError::JobNotFound(_)) => {}
                Err(error) => report.failed.push((job.id.clone(), error)),
            }
        }
    }
    report.removed.sort();
    Ok(report)
}
