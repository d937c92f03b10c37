//! `[job_defaults]`, and the options a job and the defaults share, each read and
//! checked through the list of job options (src/job/options.rs): its kind reads it
//! ([`ConfigOption`]) and checks it, the same check the API and the library make.

use std::time::Duration;

use toml::Spanned;

use super::super::error::{ConfigError, ConfigErrorKind};
use super::super::raw::{ConfigOption, RawJob, RawJobDefaults, RawRoot};
use super::super::source::{join_key, Source};
use super::report::{check_reference, invalid, Names};
use super::DEFAULT;
use crate::job::options::job_options;
use crate::job::{JobDefaults, JobOptions};

/// `checked_options` of a raw table that holds every job option.
macro_rules! define_option_checks {
    ($raw:ident $(
        $(#[$attr:meta])*
        $name:ident: $ty:ty as $kind:ty { $($rest:tt)* }
    )*) => {
        impl $raw {
            /// The job options the table gives, each read as its kind writes it and
            /// checked by it; one that is refused is reported under `parent` and left
            /// out. Names that must exist (executors, stores) are checked by the caller.
            pub(crate) fn checked_options(
                &self,
                source: &Source,
                parent: &str,
                errors: &mut Vec<ConfigError>,
            ) -> JobOptions {
                JobOptions {
                    $($name: self.$name.as_ref().and_then(|raw| {
                        check_option::<$ty, $kind>(source, raw, parent, stringify!($name), errors)
                    }),)*
                }
            }
        }
    };
}

job_options!(define_option_checks RawJob);
job_options!(define_option_checks RawJobDefaults);

/// One option of a table under `parent` (`job_defaults`, `jobs[3]`): its value, or
/// `None` when it is refused (reported, naming the field at fault: `jobs[3].retry.max_attempts`)
/// or is an explicit `"none"`.
fn check_option<T, K: ConfigOption<T>>(
    source: &Source,
    raw: &Spanned<K::Raw>,
    parent: &str,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let value = match K::value(raw.get_ref()) {
        Ok(value) => value?,
        Err(reason) => {
            errors.push(invalid(source, raw, &join_key(parent, name), reason));
            return None;
        }
    };
    match K::check(&value) {
        Ok(()) => Some(value),
        Err(refusal) => {
            let key = match refusal.field {
                Some(field) => format!("{parent}.{field}"),
                None => join_key(parent, name),
            };
            errors.push(invalid(source, raw, &key, refusal.reason));
            None
        }
    }
}

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
        let options = raw_defaults.checked_options(source, "job_defaults", errors);
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
        }
        defaults = defaults.with_options(&options);
        // No default of its own: a job's trigger may set one (see `check_jobs`).
        jitter = options.jitter;
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
