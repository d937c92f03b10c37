//! What a reload changes: the jobs of the running config against the jobs of the new
//! one, as add / change / remove sets compared with `Eq` on [`JobSpec`] (STYLE 18; no
//! diffing through JSON), and the names of the other sections that differ, so the
//! daemon can refuse, by name, the ones it cannot apply without a restart.
//!
//! A job's place in the files ([`ConfigJob::origin`]) is not part of the comparison:
//! moving a job to another file changes nothing.
//!
//! [`JobSpec`]: crate::job::JobSpec

use std::collections::HashMap;

use super::{Config, ConfigJob};

/// The jobs a reload adds, changes and removes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobsDiff {
    /// Jobs only in the new config, in its order.
    pub added: Vec<ConfigJob>,
    /// Jobs in both whose specs differ, in the new config's order.
    pub changed: Vec<ChangedJob>,
    /// Ids of jobs only in the old config, in its order.
    pub removed: Vec<String>,
}

/// A job whose spec differs between two configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedJob {
    /// The job as the new config defines it.
    pub job: ConfigJob,
    /// Whether the trigger differs. When it does not, the job keeps its next run time
    /// (docs/semantics.md, Reload): only its options, task or args changed.
    pub trigger_changed: bool,
}

impl JobsDiff {
    /// Compares the config jobs `old` (running) with `new` (just loaded), by id.
    pub fn between(old: &[ConfigJob], new: &[ConfigJob]) -> JobsDiff {
        let old_by_id: HashMap<&str, &ConfigJob> = old.iter().map(|job| (job.id(), job)).collect();
        let new_by_id: HashMap<&str, &ConfigJob> = new.iter().map(|job| (job.id(), job)).collect();
        let mut diff = JobsDiff::default();
        for job in new {
            match old_by_id.get(job.id()) {
                None => diff.added.push(job.clone()),
                Some(before) if before.spec != job.spec => diff.changed.push(ChangedJob {
                    job: job.clone(),
                    trigger_changed: before.spec.trigger != job.spec.trigger,
                }),
                Some(_) => {}
            }
        }
        diff.removed = old
            .iter()
            .filter(|job| !new_by_id.contains_key(job.id()))
            .map(|job| job.id().to_owned())
            .collect();
        diff
    }

    /// Whether the reload leaves every job as it is.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The sections other than `jobs` that differ between `old` and `new`, by their TOML
/// names (`scheduler`, `jobstores`, `executors`, `job_defaults`, `api`, `log`,
/// `history`, `tasks`), in that order.
///
/// Which of them a running daemon can apply is the daemon's decision; this only says
/// what changed. (`job_defaults` also shows up in [`JobsDiff`] for the config jobs it
/// affects, since their options are resolved against it.)
pub fn changed_settings(old: &Config, new: &Config) -> Vec<&'static str> {
    let sections = [
        ("scheduler", old.scheduler != new.scheduler),
        ("jobstores", old.jobstores != new.jobstores),
        ("executors", old.executors != new.executors),
        (
            "job_defaults",
            old.job_defaults != new.job_defaults || old.default_jitter != new.default_jitter,
        ),
        ("api", old.api != new.api),
        ("log", old.log != new.log),
        ("history", old.history != new.history),
        (
            "tasks",
            old.tasks != new.tasks || old.env_allow != new.env_allow,
        ),
        ("alerts", old.alerts != new.alerts),
    ];
    sections
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name)
        .collect()
}
