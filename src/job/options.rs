//! The job options, each defined once.
//!
//! [`job_options!`] is the one list: for each option its name, its value type, its
//! [kind](OptionKind) (how a value is checked, documented and shown), its doc and
//! serde attributes, whether `PATCH /jobs/{id}` may change (or clear) it, its
//! `[job_defaults]` default, its CLI flag and whether a job's view shows it. Everything
//! with one field per option is generated from it: here [`JobOptions`], [`JobChanges`],
//! [`JobDefaults`], [`OPTION_KEYS`], [`JobOptions::check`], [`option_schemas`] and
//! [`option_view_schemas`] (the OpenAPI properties) and [`option_views`]; above, the
//! config's raw job and `[job_defaults]` tables and their checks (`config/raw.rs`,
//! `config/check/job_options.rs`) and the CLI's flags (`main/args.rs`). How to add an
//! option: docs/architecture.md, "Job options".

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{Overlap, RetryPolicy, SuccessWatch};
use crate::trigger::TriggerSpec;

/// Calls `$callback!` with the tokens after its name (if any), then the list of job
/// options, one entry each:
///
/// ```text
/// /// doc (and any #[serde(...)] the JSON form needs)
/// name: ValueType as Kind {
///     change: set | clear(clear_name) | fixed,   // PATCH sets it / sets or clears it / never
///     default: [DefaultType = value] | [],       // its JobDefaults field, if it has one
///     cli: [ flag attributes ] | [],             // its `kairos jobs add` flag, if it has one
///     shown: yes | no,                           // in a job's `options` as the API shows it
/// }
/// ```
///
/// The order is the order of the fields in every generated struct and of the keys in
/// error messages that list them. Exported (hidden) because the `kairos` binary makes
/// its flags from it.
#[doc(hidden)]
#[macro_export]
macro_rules! job_options {
    ($callback:ident $($args:tt)*) => {
        $callback! {
            $($args)*
            /// The named executor that runs the job.
            executor: String as $crate::job::options::ExecutorName {
                change: set,
                default: [String = "default".to_owned()],
                cli: [
                    /// The executor that runs it [default: the daemon's].
                    #[arg(long)]
                ],
                shown: no,
            }
            /// The named store that keeps the job.
            jobstore: String as $crate::job::options::StoreName {
                change: fixed,
                default: [String = "default".to_owned()],
                cli: [],
                shown: no,
            }
            /// How late a run may start and still run; later ones are reported as missed.
            #[serde(with = "crate::trigger::spec::humane_duration")]
            misfire_grace_time: std::time::Duration as $crate::job::options::DurationLimit {
                change: clear(clear_misfire_grace_time),
                default: [Option<std::time::Duration> = None],
                cli: [
                    /// How late a run may start and still run ("30s", "1h"); later runs are missed.
                    #[arg(long, value_name = "DURATION", value_parser = $crate::job::options::parse_duration)]
                ],
                shown: yes,
            }
            /// Run only the latest of several overdue run times.
            coalesce: bool as bool {
                change: set,
                default: [bool = true],
                cli: [],
                shown: yes,
            }
            /// How many runs of this job may run at once.
            max_instances: u32 as $crate::job::options::Instances {
                change: set,
                default: [u32 = 1],
                cli: [
                    /// How many runs of the job may go at once.
                    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
                ],
                shown: yes,
            }
            /// What a run due while `max_instances` runs execute does ([`Overlap`]).
            overlap: $crate::job::Overlap as $crate::job::Overlap {
                change: set,
                default: [$crate::job::Overlap = $crate::job::Overlap::Skip],
                cli: [
                    /// What a run due while max_instances runs go does: skip, queue (wait for one to
                    /// end; one waits at most) or replace (stop the oldest) [default: the daemon's].
                    #[arg(long, value_name = "POLICY", value_parser = <$crate::job::Overlap as std::str::FromStr>::from_str)]
                ],
                shown: yes,
            }
            /// Delay each run at random by up to this much (overrides the trigger's jitter).
            #[serde(with = "crate::trigger::spec::humane_duration")]
            jitter: std::time::Duration as $crate::job::options::AnyDuration {
                change: set,
                default: [],
                cli: [],
                shown: yes,
            }
            /// How a failed run is tried again ([`RetryPolicy`]).
            retry: $crate::job::RetryPolicy as $crate::job::RetryPolicy {
                change: fixed,
                default: [Option<$crate::job::RetryPolicy> = None],
                cli: [
                    /// Try failed runs again: max_attempts=N[,initial_delay=1s][,multiplier=2][,max_delay=5m]
                    /// [default: the task's, else the daemon's job defaults].
                    #[arg(long, value_name = "FIELD=VALUE,...", value_parser = $crate::job::RetryPolicy::from_fields)]
                ],
                shown: yes,
            }
            /// The dead-man's switch: an `overdue` alert when the job has not succeeded for
            /// this long, whatever the cause ([`SuccessWatch`]).
            #[serde(with = "crate::trigger::spec::humane_duration")]
            expect_success_within: std::time::Duration as $crate::job::options::Within {
                change: clear(clear_expect_success_within),
                default: [Option<std::time::Duration> = None],
                cli: [
                    /// The dead-man's switch: raise an `overdue` alert when the job has not succeeded
                    /// for this long ("25h") [default: the daemon's job defaults].
                    #[arg(long, value_name = "DURATION", value_parser = $crate::job::options::parse_duration)]
                ],
                shown: yes,
            }
        }
    };
}
#[doc(hidden)]
pub use crate::job_options;

/// Reads a duration flag of `kairos jobs add` ("30s", "1h30m", a bare number of
/// seconds) the way the config and the API read it: the same caps, so text too large
/// to add up is an error naming it, never a panic inside the parser.
#[doc(hidden)]
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::trigger::spec::humane_duration::parse(text)
}

/// Why a value of an option cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct OptionError {
    /// The key at fault: the option (`max_instances`), or a field of it
    /// (`retry.max_attempts`).
    pub key: &'static str,
    /// Why, for people.
    pub reason: String,
}

/// What a kind's check refuses: the field below the option at fault, if the fault is
/// in one (`retry.max_attempts`), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The full key of the field at fault, when it is not the option itself.
    pub field: Option<&'static str>,
    /// Why, for people.
    pub reason: String,
}

impl Refusal {
    /// A refusal of the option's value as a whole.
    pub fn new(reason: impl Into<String>) -> Refusal {
        Refusal {
            field: None,
            reason: reason.into(),
        }
    }
}

/// The shapes of the API document that depend on the daemon that serves it or that
/// other parts of the document share; an option's schema is made from them.
#[derive(Clone, Debug)]
pub struct SchemaParts<'a> {
    /// A humane duration (the one triggers use too).
    pub duration: &'a Value,
    /// One of the daemon's executors.
    pub executor: &'a Value,
    /// One of the daemon's job stores.
    pub jobstore: &'a Value,
}

/// How the values of an option of type `T` are checked and documented. One kind serves
/// every option of its shape: a new option of a shape already known is one entry in
/// [`job_options!`] and nothing else.
pub trait OptionKind<T> {
    /// Why `value` cannot be used, if it cannot. The same for a config file, the API
    /// and the library.
    fn check(value: &T) -> Result<(), Refusal>;

    /// The value's JSON Schema in a request; `None` leaves the option out of the
    /// document.
    fn schema(parts: &SchemaParts<'_>) -> Option<Value>;

    /// The value as the API shows it in a job (`null`: none).
    fn shown(value: Option<&T>) -> Value;

    /// The JSON Schema of [`shown`](Self::shown)'s value.
    fn shown_schema() -> Value;
}

/// A duration as the API shows it: humane text (`"1h 30m"`), or `null`.
fn shown_duration(value: Option<&Duration>) -> Value {
    value.map_or(Value::Null, |duration| {
        Value::String(humantime::format_duration(*duration).to_string())
    })
}

/// A name of one of the daemon's executors (checked against them where they are known).
#[derive(Debug)]
pub enum ExecutorName {}

impl OptionKind<String> for ExecutorName {
    fn check(_: &String) -> Result<(), Refusal> {
        Ok(())
    }

    fn schema(parts: &SchemaParts<'_>) -> Option<Value> {
        Some(parts.executor.clone())
    }

    fn shown(value: Option<&String>) -> Value {
        json!(value)
    }

    fn shown_schema() -> Value {
        json!({"type": "string"})
    }
}

/// A name of one of the daemon's job stores (checked against them where they are known).
#[derive(Debug)]
pub enum StoreName {}

impl OptionKind<String> for StoreName {
    fn check(_: &String) -> Result<(), Refusal> {
        Ok(())
    }

    fn schema(parts: &SchemaParts<'_>) -> Option<Value> {
        Some(parts.jobstore.clone())
    }

    fn shown(value: Option<&String>) -> Value {
        json!(value)
    }

    fn shown_schema() -> Value {
        json!({"type": "string"})
    }
}

/// A duration that a config may also give as `"none"`: no limit.
#[derive(Debug)]
pub enum DurationLimit {}

impl OptionKind<Duration> for DurationLimit {
    fn check(_: &Duration) -> Result<(), Refusal> {
        Ok(())
    }

    fn schema(parts: &SchemaParts<'_>) -> Option<Value> {
        Some(parts.duration.clone())
    }

    fn shown(value: Option<&Duration>) -> Value {
        shown_duration(value)
    }

    fn shown_schema() -> Value {
        json!({"type": ["string", "null"]})
    }
}

/// Any duration.
#[derive(Debug)]
pub enum AnyDuration {}

impl OptionKind<Duration> for AnyDuration {
    fn check(_: &Duration) -> Result<(), Refusal> {
        Ok(())
    }

    fn schema(parts: &SchemaParts<'_>) -> Option<Value> {
        Some(parts.duration.clone())
    }

    fn shown(value: Option<&Duration>) -> Value {
        shown_duration(value)
    }

    fn shown_schema() -> Value {
        json!({"type": ["string", "null"]})
    }
}

impl OptionKind<bool> for bool {
    fn check(_: &bool) -> Result<(), Refusal> {
        Ok(())
    }

    fn schema(_: &SchemaParts<'_>) -> Option<Value> {
        Some(json!({"type": "boolean"}))
    }

    fn shown(value: Option<&bool>) -> Value {
        json!(value)
    }

    fn shown_schema() -> Value {
        json!({"type": "boolean"})
    }
}

/// A count of runs: at least 1.
#[derive(Debug)]
pub enum Instances {}

impl OptionKind<u32> for Instances {
    fn check(value: &u32) -> Result<(), Refusal> {
        if *value < 1 {
            return Err(Refusal::new("must be at least 1"));
        }
        Ok(())
    }

    fn schema(_: &SchemaParts<'_>) -> Option<Value> {
        Some(json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}))
    }

    fn shown(value: Option<&u32>) -> Value {
        json!(value)
    }

    fn shown_schema() -> Value {
        json!({"type": "integer"})
    }
}

impl OptionKind<Overlap> for Overlap {
    fn check(_: &Overlap) -> Result<(), Refusal> {
        Ok(())
    }

    fn schema(_: &SchemaParts<'_>) -> Option<Value> {
        Some(json!({"type": "string", "enum": Overlap::NAMES,
            "description": "What a run due while max_instances runs execute does: skip it (default), queue it (one waits per job), or replace the oldest running run."}))
    }

    fn shown(value: Option<&Overlap>) -> Value {
        json!(value)
    }

    fn shown_schema() -> Value {
        json!({"type": "string", "enum": Overlap::NAMES})
    }
}

impl OptionKind<RetryPolicy> for RetryPolicy {
    fn check(value: &RetryPolicy) -> Result<(), Refusal> {
        value.check().map_err(|(field, reason)| Refusal {
            field: Some(field),
            reason,
        })
    }

    /// What [`RetryPolicy::check`] takes, field by field; the one rule across fields
    /// (`initial_delay` not longer than `max_delay`) is said in the description, which
    /// JSON Schema cannot check.
    fn schema(parts: &SchemaParts<'_>) -> Option<Value> {
        Some(json!({
            "type": ["object", "null"],
            "additionalProperties": false,
            "description": "How failed runs (error or timeout) are tried again: attempt n + 1 waits a random time of up to min(max_delay, initial_delay × multiplier^(n-1)) after attempt n. initial_delay may not be longer than max_delay. null or absent: the task's own policy, else the daemon's job defaults.",
            "properties": {
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": RetryPolicy::MAX_ATTEMPTS,
                                 "description": "Runs of one scheduled time in all, the first included (1: no retry)."},
                "initial_delay": parts.duration,
                "multiplier": {"type": "number", "minimum": 1, "maximum": 100,
                               "description": "How much the longest wait grows per attempt (default 2)."},
                "max_delay": parts.duration,
            },
            "examples": [{"max_attempts": 5, "initial_delay": "1s", "multiplier": 2, "max_delay": "5m"}],
        }))
    }

    fn shown(value: Option<&RetryPolicy>) -> Value {
        value.map_or(Value::Null, |policy| {
            json!({
                "max_attempts": policy.max_attempts,
                "initial_delay": shown_duration(Some(&policy.initial_delay())),
                "multiplier": policy.multiplier(),
                "max_delay": shown_duration(Some(&policy.max_delay())),
            })
        })
    }

    fn shown_schema() -> Value {
        json!({"type": ["object", "null"], "description": "How failed runs are retried; null: they are not.", "properties": {
            "max_attempts": {"type": "integer"}, "initial_delay": {"type": "string"},
            "multiplier": {"type": "number"}, "max_delay": {"type": "string"}}})
    }
}

/// The dead-man's switch's window: from [`SuccessWatch::MIN_WITHIN`] to
/// [`SuccessWatch::MAX_WITHIN`].
#[derive(Debug)]
pub enum Within {}

/// The pattern of an `expect_success_within` given as text: a duration of at least a
/// minute (its first part in minutes or more, or 60 seconds or more), and of at most
/// some decades, so that the deadline it sets stays within the years RFC 3339 can
/// write (the API refuses more than [`SuccessWatch::MAX_WITHIN`]).
const WITHIN_PATTERN: &str = r"^ *((6[0-9]|[7-9][0-9]|[1-9][0-9]{2,8})(\.[0-9]{1,9})?|[1-9][0-9]{0,2}(m|h|d|w)( ?[0-9]{1,3}(s|m|h|d|w))*) *$";

impl OptionKind<Duration> for Within {
    fn check(value: &Duration) -> Result<(), Refusal> {
        match SuccessWatch::refuse_within(*value) {
            Some(reason) => Err(Refusal::new(reason)),
            None => Ok(()),
        }
    }

    fn schema(_: &SchemaParts<'_>) -> Option<Value> {
        Some(json!({"type": ["string", "number", "null"], "minimum": 60,
            "maximum": SuccessWatch::MAX_WITHIN.as_secs(),
            "pattern": WITHIN_PATTERN,
            "description": "The dead-man's switch: an overdue alert when the job has not succeeded for this long (at least 1m), e.g. \"25h\"; a humane duration or seconds.",
            "examples": ["25h"]}))
    }

    fn shown(value: Option<&Duration>) -> Value {
        shown_duration(value)
    }

    fn shown_schema() -> Value {
        json!({"type": ["string", "null"]})
    }
}

/// What [`job_options!`] makes at this floor: [`JobOptions`], [`JobDefaults`],
/// [`OPTION_KEYS`], the checks and the schemas; [`JobChanges`] comes from
/// `define_job_changes!`.
macro_rules! define_job_options {
    ($(
        $(#[$attr:meta])*
        $name:ident: $ty:ty as $kind:ty { $($rest:tt)* }
    )*) => {
        /// Job options that have scheduler-wide defaults (`[job_defaults]`).
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct JobOptions {
            $(
                $(#[$attr])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }

        /// The key of every job option, as config files and JSON spell it.
        pub const OPTION_KEYS: &[&str] = &[$(stringify!($name)),*];

        impl JobOptions {
            /// Why one of the options given cannot be used (the first such, in the
            /// order of [`OPTION_KEYS`]). Names that must exist (executors, stores)
            /// are checked where they are known.
            pub fn check(&self) -> Result<(), OptionError> {
                $(
                    if let Some(value) = &self.$name {
                        check_one::<$ty, $kind>(stringify!($name), value)?;
                    }
                )*
                Ok(())
            }
        }

        /// The OpenAPI properties of the job options: of a new job's `JobOptions`
        /// (every option), or of `JobChanges` (the options a change may set, and the
        /// `clear_*` flags of those it may clear).
        pub fn option_schemas(parts: &SchemaParts<'_>, changes: bool) -> Map<String, Value> {
            let mut properties = Map::new();
            $(
                option_schema::<$ty, $kind>(
                    &mut properties,
                    parts,
                    changes,
                    stringify!($name),
                    define_job_options!(@clear $($rest)*),
                );
            )*
            properties
        }

        /// A job's options as the API shows them (`options` of `GET /jobs/{id}`), in
        /// the list's order: those whose entry says `shown: yes`.
        pub fn option_views(options: &JobOptions) -> OptionViews {
            let mut views = Vec::new();
            $(
                if define_job_options!(@shown $($rest)*) {
                    views.push((
                        stringify!($name),
                        <$kind as OptionKind<$ty>>::shown(options.$name.as_ref()),
                    ));
                }
            )*
            OptionViews(views)
        }

        /// The OpenAPI properties of [`option_views`].
        pub fn option_view_schemas() -> Map<String, Value> {
            let mut properties = Map::new();
            $(
                if define_job_options!(@shown $($rest)*) {
                    properties.insert(
                        stringify!($name).to_owned(),
                        <$kind as OptionKind<$ty>>::shown_schema(),
                    );
                }
            )*
            properties
        }

        define_job_options!(@defaults [] [] [] $($name: $ty { $($rest)* })*);
    };

    // What a change may do: `Some(None)` set, `Some(Some(flag))` set or clear, `None`
    // nothing.
    (@clear change: set, $($rest:tt)*) => { Some(None) };
    (@clear change: clear($clear:ident), $($rest:tt)*) => { Some(Some(stringify!($clear))) };
    (@clear change: fixed, $($rest:tt)*) => { None };

    (@shown $($entry:tt)*) => { define_job_options!(@shown_flag $($entry)*) };
    (@shown_flag shown: yes, $($rest:tt)*) => { true };
    (@shown_flag shown: no, $($rest:tt)*) => { false };
    (@shown_flag $first:tt $($rest:tt)*) => { define_job_options!(@shown_flag $($rest)*) };

    (@defaults [$($fields:tt)*] [$($values:tt)*] [$($defaulted:ident)*]) => {
        /// The defaults of docs/semantics.md: `coalesce = true`, `max_instances = 1`, no
        /// misfire limit, the `default` executor and store; `[job_defaults]` sets them.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct JobDefaults {
            $($fields)*
        }

        impl Default for JobDefaults {
            fn default() -> JobDefaults {
                JobDefaults {
                    $($values)*
                }
            }
        }

        impl JobDefaults {
            /// The defaults with the options `options` gives in their place (those
            /// that have a default; `[job_defaults]` reads this way).
            pub fn with_options(mut self, options: &JobOptions) -> JobDefaults {
                $(
                    if let Some(value) = &options.$defaulted {
                        self.$defaulted = value.clone().into();
                    }
                )*
                self
            }
        }
    };
    (@defaults [$($fields:tt)*] [$($values:tt)*] [$($sets:tt)*]
        $name:ident: $ty:ty { change: $change:ident $(($clear:ident))?, default: [], $($entry:tt)* }
        $($rest:tt)*
    ) => {
        define_job_options!(@defaults [$($fields)*] [$($values)*] [$($sets)*] $($rest)*);
    };
    (@defaults [$($fields:tt)*] [$($values:tt)*] [$($sets:tt)*]
        $name:ident: $ty:ty { change: $change:ident $(($clear:ident))?, default: [$default_ty:ty = $default:expr], $($entry:tt)* }
        $($rest:tt)*
    ) => {
        define_job_options!(@defaults
            [$($fields)*
                #[doc = concat!("The `", stringify!($name), "` of jobs that set none.")]
                pub $name: $default_ty,
            ]
            [$($values)* $name: $default,]
            [$($sets)* $name]
            $($rest)*
        );
    };
}

/// Makes [`JobChanges`] from [`job_options!`]: the options a change may set, each
/// followed by its `clear_*` flag when it may be cleared.
macro_rules! define_job_changes {
    (@fields [$($fields:tt)*]) => {
        /// Changes to a job, each optional (`modify_job`, `PATCH /jobs/{id}`).
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct JobChanges {
            /// A new name.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            /// New task arguments.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub args: Option<serde_json::Value>,
            /// A new trigger; the next run time is recomputed from now.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub trigger: Option<TriggerSpec>,
            $($fields)*
            /// An explicit next run time.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub next_run_time: Option<chrono::DateTime<chrono::Utc>>,
        }
    };
    (@fields [$($fields:tt)*]
        $(#[$attr:meta])* $name:ident: $ty:ty as $kind:ty { change: fixed, $($entry:tt)* }
        $($rest:tt)*
    ) => {
        define_job_changes!(@fields [$($fields)*] $($rest)*);
    };
    (@fields [$($fields:tt)*]
        $(#[$attr:meta])* $name:ident: $ty:ty as $kind:ty { change: set, $($entry:tt)* }
        $($rest:tt)*
    ) => {
        define_job_changes!(@fields
            [$($fields)*
                #[doc = concat!("A new `", stringify!($name), "`:")]
                $(#[$attr])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            ]
            $($rest)*
        );
    };
    (@fields [$($fields:tt)*]
        $(#[$attr:meta])* $name:ident: $ty:ty as $kind:ty { change: clear($clear:ident), $($entry:tt)* }
        $($rest:tt)*
    ) => {
        define_job_changes!(@fields
            [$($fields)*
                #[doc = concat!("A new `", stringify!($name), "`:")]
                $(#[$attr])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
                #[doc = concat!("Remove `", stringify!($name), "` (set none).")]
                #[serde(default, skip_serializing_if = "std::ops::Not::not")]
                pub $clear: bool,
            ]
            $($rest)*
        );
    };
    ($($entries:tt)*) => {
        define_job_changes!(@fields [] $($entries)*);
    };
}

job_options!(define_job_options);
job_options!(define_job_changes);

/// A job's options as the API shows them, in the list's order ([`option_views`]).
#[derive(Clone, Debug, PartialEq)]
pub struct OptionViews(pub Vec<(&'static str, Value)>);

impl Serialize for OptionViews {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// [`OptionKind::check`] of one option, with the option's key.
fn check_one<T, K: OptionKind<T>>(key: &'static str, value: &T) -> Result<(), OptionError> {
    K::check(value).map_err(|refusal| OptionError {
        key: refusal.field.unwrap_or(key),
        reason: refusal.reason,
    })
}

/// Adds one option's schema (and its `clear_*` flag) to `properties`. `change`: what
/// a change may do with it (`None`: nothing; `Some(Some(flag))`: set or clear).
fn option_schema<T, K: OptionKind<T>>(
    properties: &mut Map<String, Value>,
    parts: &SchemaParts<'_>,
    changes: bool,
    key: &str,
    change: Option<Option<&str>>,
) {
    let Some(schema) = K::schema(parts) else {
        return;
    };
    if !changes {
        properties.insert(key.to_owned(), schema);
        return;
    }
    if let Some(clear) = change {
        properties.insert(key.to_owned(), schema);
        if let Some(clear) = clear {
            properties.insert(clear.to_owned(), json!({"type": "boolean"}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_are_the_fields_of_the_options() {
        assert_eq!(
            OPTION_KEYS,
            [
                "executor",
                "jobstore",
                "misfire_grace_time",
                "coalesce",
                "max_instances",
                "overlap",
                "jitter",
                "retry",
                "expect_success_within"
            ]
        );
        let defaults = JobDefaults::default();
        assert_eq!(defaults.executor, "default");
        assert!(defaults.coalesce);
        assert_eq!(defaults.max_instances, 1);
    }

    #[test]
    fn each_option_is_checked_by_its_kind() {
        let options = JobOptions {
            max_instances: Some(0),
            ..JobOptions::default()
        };
        assert_eq!(
            options.check().map_err(|error| error.to_string()),
            Err("max_instances: must be at least 1".to_owned())
        );
        let options = JobOptions {
            retry: Some(RetryPolicy::attempts(0)),
            ..JobOptions::default()
        };
        assert_eq!(
            options.check().map_err(|error| error.key),
            Err("retry.max_attempts")
        );
        let options = JobOptions {
            expect_success_within: Some(Duration::from_secs(30)),
            ..JobOptions::default()
        };
        assert!(options.check().is_err());
    }

    #[test]
    fn a_change_clears_only_what_may_be_cleared() {
        let changes: JobChanges = serde_json::from_value(json!({
            "clear_misfire_grace_time": true, "expect_success_within": "25h"
        }))
        .unwrap_or_default();
        assert!(changes.clear_misfire_grace_time);
        assert_eq!(
            changes.expect_success_within,
            Some(Duration::from_secs(25 * 3600))
        );
        for refused in ["jobstore", "retry", "clear_jitter"] {
            assert!(
                serde_json::from_value::<JobChanges>(json!({ refused: null })).is_err(),
                "{refused}"
            );
        }
    }
}
