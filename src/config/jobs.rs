//! The `[[jobs]]` of every file, checked together into [`ConfigJob`]s: required keys,
//! executors, stores and tasks that exist, args the task accepts, ids unique across
//! files (a duplicate names both places), and every option resolved against
//! `[job_defaults]` so that a change of defaults is a change of the jobs it reaches.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::check::{check_reference, invalid, missing, unknown_name, Names};
use super::error::{ConfigError, ConfigErrorKind};
use super::raw::RawJobEntry;
use super::read::backticked;
use super::source::{join_key, Source};
use super::{ConfigJob, Origin};
use crate::job::{JobDefaults, JobOptions, JobSpec};

/// Every `[[jobs]]` table of every file: required keys, names that exist, ids unique
/// across files, args the task accepts; options resolved against the defaults.
pub(crate) fn check_jobs(
    entries: &[RawJobEntry],
    names: &Names<'_>,
    defaults: &JobDefaults,
    default_jitter: Option<Duration>,
    errors: &mut Vec<ConfigError>,
) -> Vec<ConfigJob> {
    let mut first_seen: HashMap<String, Origin> = HashMap::new();
    let mut jobs = Vec::new();
    for entry in entries {
        let id_origin = entry
            .job
            .value
            .id
            .as_ref()
            .map(|id| (id.get_ref().clone(), origin(&entry.source, id.span())));
        let job = check_job(entry, names, defaults, default_jitter, errors);
        // Even a job with other errors claims its id, so a duplicate is reported once.
        if let Some((id, here)) = id_origin {
            if let Some(first) = first_seen.get(&id) {
                errors.push(ConfigError {
                    file: here.file,
                    line: here.line,
                    column: here.column,
                    key: format!("{}.id", entry.key()),
                    kind: ConfigErrorKind::Duplicate,
                    message: format!("duplicate job id {id:?}; it is also defined at {first}"),
                });
                continue;
            }
            first_seen.insert(id, here);
        }
        jobs.extend(job);
    }
    jobs
}

fn check_job(
    entry: &RawJobEntry,
    names: &Names<'_>,
    defaults: &JobDefaults,
    default_jitter: Option<Duration>,
    errors: &mut Vec<ConfigError>,
) -> Option<ConfigJob> {
    let source = &entry.source;
    let path = entry.key();
    let job = &entry.job.value;
    let before = errors.len();
    let required = |key: &str, expected: &str, errors: &mut Vec<ConfigError>| {
        if !entry.job.refused(key) {
            errors.push(missing(
                source,
                entry.job.span.clone(),
                &join_key(&path, key),
                expected,
            ));
        }
    };

    match &job.id {
        Some(id) if id.get_ref().trim().is_empty() => {
            errors.push(invalid(
                source,
                id,
                &join_key(&path, "id"),
                "must not be empty",
            ));
        }
        Some(_) => {}
        None => required(
            "id",
            "a unique id: a config job is matched by it on reload",
            errors,
        ),
    }
    let known_tasks: Vec<&str> = names.tasks.names().collect();
    let task = match &job.task {
        Some(task) => match names.tasks.get(task.get_ref()) {
            Some(found) => Some((task.get_ref().clone(), found)),
            None => {
                errors.push(unknown_name(
                    source,
                    task,
                    &join_key(&path, "task"),
                    "task",
                    &known_tasks,
                ));
                None
            }
        },
        None => {
            required(
                "task",
                &format!("a task name ({})", backticked(&known_tasks)),
                errors,
            );
            None
        }
    };
    let args = entry
        .args
        .as_ref()
        .map_or(serde_json::Value::Null, |args| args.get_ref().clone());
    if let (Some((_, found)), false) = (&task, entry.job.refused("args")) {
        if let Err(reason) = found.check_args(&args) {
            let span = entry
                .args
                .as_ref()
                .map(Spanned::span)
                .or_else(|| job.task.as_ref().map(Spanned::span))
                .unwrap_or_else(|| entry.job.span.clone());
            errors.push(source.error(
                span,
                join_key(&path, "args"),
                ConfigErrorKind::InvalidValue,
                reason,
            ));
        }
    }
    if entry.trigger.is_none() {
        required(
            "trigger",
            "a trigger such as { type = \"cron\", hour = 3 }",
            errors,
        );
    }
    if let Some(executor) = &job.executor {
        check_reference(
            source,
            executor,
            &join_key(&path, "executor"),
            "executor",
            names.executors,
            errors,
        );
    }
    if let Some(jobstore) = &job.jobstore {
        check_reference(
            source,
            jobstore,
            &join_key(&path, "jobstore"),
            "job store",
            names.jobstores,
            errors,
        );
    }
    let options = job.checked_options(source, &path, errors);
    let misfire_grace_time = match &job.misfire_grace_time {
        Some(grace) => match (grace.get_ref().0, defaults.misfire_grace_time) {
            // A `None` option means "the scheduler's default", so "no limit" cannot be
            // said for one job while the defaults set a limit.
            (None, Some(limit)) => {
                errors.push(invalid(
                    source,
                    grace,
                    &join_key(&path, "misfire_grace_time"),
                    format!(
                        "\"none\" cannot override [job_defaults] misfire_grace_time ({}) yet; give a long duration instead",
                        humantime::format_duration(limit)
                    ),
                ));
                None
            }
            (grace, _) => grace,
        },
        None => defaults.misfire_grace_time,
    };

    if errors.len() > before {
        return None;
    }
    let (Some(id), Some((task, _)), Some(trigger)) = (&job.id, task, &entry.trigger) else {
        return None;
    };
    let jitter = options.jitter.or(if entry.trigger_jitter.is_none() {
        default_jitter
    } else {
        None
    });
    let spec = JobSpec {
        id: Some(id.get_ref().clone()),
        name: job.name.clone(),
        task,
        args,
        trigger: trigger.clone(),
        options: JobOptions {
            executor: Some(
                job.executor
                    .as_ref()
                    .map_or_else(|| defaults.executor.clone(), |name| name.get_ref().clone()),
            ),
            jobstore: Some(
                job.jobstore
                    .as_ref()
                    .map_or_else(|| defaults.jobstore.clone(), |name| name.get_ref().clone()),
            ),
            misfire_grace_time,
            coalesce: Some(options.coalesce.unwrap_or(defaults.coalesce)),
            max_instances: Some(options.max_instances.unwrap_or(defaults.max_instances)),
            // Left out while it is `skip` everywhere, so the specs of config-owned jobs
            // written before `overlap` existed compare equal (a reload changes nothing).
            overlap: Some(options.overlap.unwrap_or(defaults.overlap))
                .filter(|overlap| !overlap.is_skip() || !defaults.overlap.is_skip()),
            jitter,
            // The job's own; else its task's, else [job_defaults]' (the scheduler's).
            retry: options.retry,
            expect_success_within: options
                .expect_success_within
                .or(defaults.expect_success_within),
        },
        paused: job.paused.unwrap_or(false),
        next_run_time: None,
        replace_existing: false,
        from_config: true,
        // The daemon stamps the whole config's version when it syncs.
        config_version: None,
    };
    Some(ConfigJob {
        spec,
        origin: origin(source, entry.job.span.clone()),
    })
}

fn origin(source: &Source, span: Range<usize>) -> Origin {
    let (line, column) = source.line_column(span.start);
    Origin {
        file: source.path().to_path_buf(),
        line,
        column,
    }
}
