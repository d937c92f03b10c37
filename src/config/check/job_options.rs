//! `[job_defaults]`, and the options a job and the defaults share: `overlap`,
//! `retry` and `expect_success_within` (docs/semantics.md).

use std::time::Duration;

use toml::Spanned;

use super::super::error::{ConfigError, ConfigErrorKind};
use super::super::raw::{HumaneDuration, RawRoot};
use super::super::source::Source;
use super::report::{at_least_one, check_reference, invalid, Names};
use super::DEFAULT;
use crate::job::JobDefaults;

/// `[job_defaults]`: docs/semantics.md's defaults, with names that must exist. Also reports a
/// missing `default` executor or store when nothing names another one.
pub(crate) fn check_job_defaults(
    raw: &RawRoot,
    names: &Names<'_>,
    errors: &mut Vec<ConfigError>,
) -> (JobDefaults, Option<Duration>) {
    let (jobstores, executors) = (names.jobstores, names.executors);
    let source = &raw.source;
    let mut defaults = JobDefaults::default();
    let mut jitter = None;
    let (mut executor_named, mut jobstore_named) = (false, false);
    if let Some(section) = &raw.job_defaults {
        let raw_defaults = &section.value;
        if let Some(executor) = &raw_defaults.executor {
            executor_named = true;
            check_reference(
                source,
                executor,
                "job_defaults.executor",
                "executor",
                executors,
                errors,
            );
            defaults.executor = executor.get_ref().clone();
        }
        if let Some(jobstore) = &raw_defaults.jobstore {
            jobstore_named = true;
            check_reference(
                source,
                jobstore,
                "job_defaults.jobstore",
                "job store",
                jobstores,
                errors,
            );
            defaults.jobstore = jobstore.get_ref().clone();
        }
        if let Some(grace) = raw_defaults.misfire_grace_time {
            defaults.misfire_grace_time = grace.0;
        }
        if let Some(coalesce) = raw_defaults.coalesce {
            defaults.coalesce = coalesce;
        }
        if let Some(max_instances) = &raw_defaults.max_instances {
            if let Some(max_instances) =
                at_least_one(source, max_instances, "job_defaults.max_instances", errors)
            {
                defaults.max_instances = max_instances;
            }
        }
        if let Some(overlap) = &raw_defaults.overlap {
            if let Some(overlap) = check_overlap(source, overlap, "job_defaults.overlap", errors) {
                defaults.overlap = overlap;
            }
        }
        jitter = raw_defaults.jitter.map(|duration| duration.0);
        if let Some(retry) = &raw_defaults.retry {
            defaults.retry = check_retry(source, retry, "job_defaults", errors);
        }
        if let Some(within) = &raw_defaults.expect_success_within {
            defaults.expect_success_within = check_expect_success_within(
                source,
                within,
                "job_defaults.expect_success_within",
                errors,
            );
        }
    }
    // Jobs that name no executor run on `default`; say once, at the section, that it
    // is missing, rather than at every such job.
    if !executor_named && !executors.contains(DEFAULT) {
        if let Some(first) = raw.executors.first() {
            errors.push(source.error(
                first.name.span(),
                "executors",
                ConfigErrorKind::UnknownReference,
                "no executor is named `default`; name one `default` or set [job_defaults] executor",
            ));
        }
    }
    if !jobstore_named && !jobstores.contains(DEFAULT) {
        if let Some(first) = raw.jobstores.first() {
            errors.push(source.error(
                first.name.span(),
                "jobstores",
                ConfigErrorKind::UnknownReference,
                "no job store is named `default`; name one `default` or set [job_defaults] jobstore",
            ));
        }
    }
    (defaults, jitter)
}

/// `overlap`: one of `skip`, `queue`, `replace` (docs/semantics.md, "max_instances").
pub(crate) fn check_overlap(
    source: &Source,
    value: &Spanned<String>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<crate::job::Overlap> {
    match value.get_ref().parse() {
        Ok(overlap) => Some(overlap),
        Err(reason) => {
            errors.push(invalid(source, value, key, reason));
            None
        }
    }
}

/// A `retry` table under `parent` (`job_defaults`, `jobs[3]`), with the field that is
/// wrong named in the error.
pub(crate) fn check_retry(
    source: &Source,
    retry: &Spanned<crate::job::RetryPolicy>,
    parent: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<crate::job::RetryPolicy> {
    match retry.get_ref().check() {
        Ok(()) => Some(retry.get_ref().clone()),
        Err((field, reason)) => {
            errors.push(invalid(source, retry, &format!("{parent}.{field}"), reason));
            None
        }
    }
}

/// `expect_success_within`: at least [`SuccessWatch::MIN_WITHIN`](crate::job::SuccessWatch::MIN_WITHIN)
/// and at most [`SuccessWatch::MAX_WITHIN`](crate::job::SuccessWatch::MAX_WITHIN).
pub(crate) fn check_expect_success_within(
    source: &Source,
    within: &Spanned<HumaneDuration>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Duration> {
    let duration = within.get_ref().0;
    match crate::job::SuccessWatch::refuse_within(duration) {
        Some(reason) => {
            errors.push(invalid(source, within, key, reason));
            None
        }
        None => Some(duration),
    }
}
