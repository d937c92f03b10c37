//! The raw config schema: serde types for each section, exactly as written, with the
//! spans of the values later checks point at, and the walk that fills them from a
//! spanned TOML document.
//!
//! The walk goes section by section and job by job (through `read.rs`), never through
//! one serde call for the whole file, because serde stops at its first error and
//! a user wants every problem at once. Turning raw values into the validated
//! [`Config`](super::Config) is `check.rs`'s and `jobs.rs`'s job; nothing here looks
//! across sections or files.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind};
use super::read::{
    expect_table, read_json, read_named, read_struct, read_value, unknown_key, Named, Section,
};
use super::source::{join_key, Source};
use super::trigger::{check_trigger, read_trigger};
use crate::job::options::{self, OptionKind};
use crate::job::{Overlap, RetryPolicy};
use crate::trigger::spec::humane_duration;
use crate::trigger::{TriggerContext, TriggerSpec};

/// The top-level keys of the main config file.
pub(crate) const ROOT_KEYS: &[&str] = &[
    "include",
    "scheduler",
    "jobstores",
    "executors",
    "job_defaults",
    "api",
    "log",
    "history",
    "tasks",
    "alerts",
    "jobs",
];

/// The keys of `[alerts]`.
pub(crate) const ALERT_KEYS: &[&str] = &["check_every", "webhooks"];

/// A duration: humane text (`"30s"`, `"1h30m"`) or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HumaneDuration(pub(crate) Duration);

/// A duration, or `"none"` for no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DurationOrNone(pub(crate) Option<Duration>);

impl<'de> Deserialize<'de> for HumaneDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(DurationVisitor {
            none_allowed: false,
        })? {
            Some(duration) => Ok(HumaneDuration(duration)),
            None => Err(de::Error::custom("expected a duration")),
        }
    }
}

impl<'de> Deserialize<'de> for DurationOrNone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(DurationVisitor { none_allowed: true })
            .map(DurationOrNone)
    }
}

struct DurationVisitor {
    none_allowed: bool,
}

impl Visitor<'_> for DurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30s\", \"1h30m\" or a number of seconds")?;
        if self.none_allowed {
            f.write_str(", or \"none\"")?;
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        u64::try_from(value)
            .map(|seconds| Some(Duration::from_secs(seconds)))
            .map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Some(Duration::from_secs(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Duration::try_from_secs_f64(value)
            .map(Some)
            .map_err(|_| E::custom(format!("{value} is not a valid number of seconds")))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        if self.none_allowed && value.trim().eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        humane_duration::parse(value).map(Some).map_err(E::custom)
    }
}

/// A count of at least 1, or `"none"` for no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CountOrNone(pub(crate) Option<u64>);

impl<'de> Deserialize<'de> for CountOrNone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CountVisitor).map(CountOrNone)
    }
}

struct CountVisitor;

impl Visitor<'_> for CountVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a count of at least 1, or \"none\"")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        u64::try_from(value)
            .map_err(|_| E::custom("a count cannot be negative"))
            .and_then(|count| self.visit_u64(count))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        // A job's newest records are what the dead-man's switch and `kairos jobs
        // explain` read (docs/alerts.md), so a per-job limit keeps at least one.
        if value == 0 {
            return Err(E::custom(
                "must be at least 1: a job's newest run is what alerts and explain read \
                 (\"none\" for no limit)",
            ));
        }
        Ok(Some(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        if value.trim().eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        Err(E::invalid_value(de::Unexpected::Str(value), &self))
    }
}

/// `[scheduler]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScheduler {
    pub(crate) timezone: Option<Spanned<String>>,
    pub(crate) tzdir: Option<Spanned<String>>,
    pub(crate) node_id: Option<Spanned<String>>,
    pub(crate) batch_size: Option<Spanned<usize>>,
    pub(crate) fire_ahead: Option<HumaneDuration>,
    pub(crate) shutdown_timeout: Option<HumaneDuration>,
    pub(crate) watch: Option<bool>,
    pub(crate) lease: Option<Spanned<HumaneDuration>>,
    pub(crate) heartbeat: Option<Spanned<HumaneDuration>>,
    pub(crate) node_timeout: Option<Spanned<HumaneDuration>>,
    pub(crate) poll_interval: Option<Spanned<HumaneDuration>>,
}

/// `[jobstores.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJobStore {
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) prefix: Option<Spanned<String>>,
    /// The SQL stores' word for `prefix`.
    pub(crate) table_prefix: Option<Spanned<String>>,
    pub(crate) instance_ttl: Option<HumaneDuration>,
}

/// `[executors.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExecutor {
    #[serde(rename = "type")]
    pub(crate) kind: Option<Spanned<String>>,
    pub(crate) max_workers: Option<Spanned<usize>>,
    pub(crate) timeout: Option<HumaneDuration>,
}

/// `[api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub(crate) enabled: Option<bool>,
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) token: Option<Spanned<String>>,
    pub(crate) token_file: Option<Spanned<String>>,
    pub(crate) read_tokens: Option<Vec<Spanned<String>>>,
    pub(crate) allowed_tasks: Option<Vec<Spanned<String>>>,
    pub(crate) rate_limit: Option<Spanned<u32>>,
    pub(crate) rate_limit_burst: Option<Spanned<u32>>,
    pub(crate) ui: Option<bool>,
    pub(crate) allowed_hosts: Option<Vec<Spanned<String>>>,
    pub(crate) http_allow: Option<Vec<Spanned<String>>>,
    pub(crate) max_connections: Option<Spanned<u32>>,
    pub(crate) header_timeout: Option<HumaneDuration>,
    pub(crate) idle_timeout: Option<HumaneDuration>,
    pub(crate) max_event_streams: Option<Spanned<u32>>,
    pub(crate) tokens: Option<std::collections::BTreeMap<String, Spanned<RawToken>>>,
}

/// `[api.tokens.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToken {
    pub(crate) token: Option<Spanned<String>>,
    pub(crate) token_file: Option<Spanned<String>>,
    pub(crate) access: Option<Spanned<String>>,
    pub(crate) tasks: Option<Vec<Spanned<String>>>,
    pub(crate) rate_limit: Option<Spanned<u32>>,
    pub(crate) rate_limit_burst: Option<Spanned<u32>>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub(crate) level: Option<Spanned<String>>,
    pub(crate) format: Option<Spanned<String>>,
}

/// `[alerts]`: read key by key ([`read_alerts`]), so each webhook's problems are named
/// by their place (`alerts.webhooks[1].url`).
#[derive(Debug, Default)]
pub(crate) struct RawAlerts {
    pub(crate) check_every: Option<Spanned<HumaneDuration>>,
    /// Each `[[alerts.webhooks]]` with its key path.
    pub(crate) webhooks: Vec<(String, Section<RawWebhook>)>,
}

/// One `[[alerts.webhooks]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) headers: Option<std::collections::BTreeMap<String, Spanned<String>>>,
    pub(crate) events: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) timeout: Option<Spanned<HumaneDuration>>,
    pub(crate) max_attempts: Option<Spanned<u32>>,
}

/// `[history]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistory {
    pub(crate) keep: Option<DurationOrNone>,
    pub(crate) max_rows: Option<u64>,
    pub(crate) successes_per_job: Option<CountOrNone>,
    pub(crate) failures_per_job: Option<CountOrNone>,
}

/// How a config file writes the values of a job option's kind (src/job/options.rs),
/// and what it makes of what is written. The kind then checks the value, as it does
/// for the API and the library.
pub(crate) trait ConfigOption<T>: OptionKind<T> {
    /// What the file holds.
    type Raw: DeserializeOwned;

    /// The value written, or why it is not one; `Ok(None)`: an explicit `"none"`.
    fn value(raw: &Self::Raw) -> Result<Option<T>, String>;
}

impl ConfigOption<String> for options::ExecutorName {
    type Raw = String;

    fn value(raw: &String) -> Result<Option<String>, String> {
        Ok(Some(raw.clone()))
    }
}

impl ConfigOption<String> for options::StoreName {
    type Raw = String;

    fn value(raw: &String) -> Result<Option<String>, String> {
        Ok(Some(raw.clone()))
    }
}

/// `"none"`: no limit.
impl ConfigOption<Duration> for options::DurationLimit {
    type Raw = DurationOrNone;

    fn value(raw: &DurationOrNone) -> Result<Option<Duration>, String> {
        Ok(raw.0)
    }
}

impl ConfigOption<Duration> for options::AnyDuration {
    type Raw = HumaneDuration;

    fn value(raw: &HumaneDuration) -> Result<Option<Duration>, String> {
        Ok(Some(raw.0))
    }
}

impl ConfigOption<Duration> for options::Within {
    type Raw = HumaneDuration;

    fn value(raw: &HumaneDuration) -> Result<Option<Duration>, String> {
        Ok(Some(raw.0))
    }
}

impl ConfigOption<bool> for bool {
    type Raw = bool;

    fn value(raw: &bool) -> Result<Option<bool>, String> {
        Ok(Some(*raw))
    }
}

impl ConfigOption<u32> for options::Instances {
    type Raw = u32;

    fn value(raw: &u32) -> Result<Option<u32>, String> {
        Ok(Some(*raw))
    }
}

/// Read as text and parsed, so any bad value (a number too) is an invalid value naming
/// the policies, not a type error.
impl ConfigOption<Overlap> for Overlap {
    type Raw = String;

    fn value(raw: &String) -> Result<Option<Overlap>, String> {
        raw.parse().map(Some)
    }
}

impl ConfigOption<RetryPolicy> for RetryPolicy {
    type Raw = RetryPolicy;

    fn value(raw: &RetryPolicy) -> Result<Option<RetryPolicy>, String> {
        Ok(Some(raw.clone()))
    }
}

/// `[job_defaults]` and `[[jobs]]` from the list of job options: a key per option, read
/// as its kind's [`ConfigOption::Raw`].
macro_rules! define_raw_tables {
    ($(
        $(#[$attr:meta])*
        $name:ident: $ty:ty as $kind:ty { $($rest:tt)* }
    )*) => {
        /// `[job_defaults]`: a default for every job option.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct RawJobDefaults {
            $(pub(crate) $name: Option<Spanned<<$kind as ConfigOption<$ty>>::Raw>>,)*
        }

        /// One `[[jobs]]` table, except `args` and `trigger`, which are read on their own
        /// (into JSON, and through [`read_trigger`] so trigger errors keep their spans).
        /// They are listed here so that the key check knows them.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct RawJob {
            pub(crate) id: Option<Spanned<String>>,
            pub(crate) name: Option<String>,
            pub(crate) task: Option<Spanned<String>>,
            #[allow(dead_code)]
            args: Option<IgnoredAny>,
            #[allow(dead_code)]
            trigger: Option<IgnoredAny>,
            $(pub(crate) $name: Option<Spanned<<$kind as ConfigOption<$ty>>::Raw>>,)*
            pub(crate) paused: Option<bool>,
        }
    };
}

options::job_options!(define_raw_tables);

/// Everything in the main config file except its jobs (read later, once the scheduler's
/// zone is known).
#[derive(Debug)]
pub(crate) struct RawRoot {
    pub(crate) source: Arc<Source>,
    pub(crate) include: Vec<Spanned<String>>,
    pub(crate) scheduler: Option<Section<RawScheduler>>,
    pub(crate) jobstores: Vec<Named<RawJobStore>>,
    pub(crate) executors: Vec<Named<RawExecutor>>,
    pub(crate) job_defaults: Option<Section<RawJobDefaults>>,
    pub(crate) api: Option<Section<RawApi>>,
    pub(crate) log: Option<Section<RawLog>>,
    pub(crate) history: Option<Section<RawHistory>>,
    pub(crate) tasks: Vec<RawTaskSettings>,
    /// `[tasks] env_allow`: the variables `${NAME}` in job args may name.
    pub(crate) env_allow: Option<Vec<Spanned<String>>>,
    pub(crate) alerts: Option<RawAlerts>,
}

/// One `[tasks.NAME]` table: its settings as JSON for the task to read, and where each
/// key in it is, so a problem the task finds is reported at its position.
#[derive(Debug)]
pub(crate) struct RawTaskSettings {
    pub(crate) name: Spanned<String>,
    pub(crate) settings: serde_json::Value,
    /// Key paths below the section (`database_url`, `counters[1]`, `counters[1].query`)
    /// with the span of each key and of its value (both the item's, in arrays).
    pub(crate) spans: Vec<KeySpan>,
}

/// Where one key of a settings table is.
#[derive(Debug)]
pub(crate) struct KeySpan {
    path: String,
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

impl RawTaskSettings {
    /// The span of `key` (of its value when `value`), or of the closest enclosing key
    /// that was written (a missing key is reported at its table), or of the section's
    /// name.
    pub(crate) fn span_of(&self, key: &str, value: bool) -> std::ops::Range<usize> {
        let mut key = key;
        let mut value = value;
        loop {
            if let Some(found) = self.spans.iter().find(|span| span.path == key) {
                return if value {
                    found.value.clone()
                } else {
                    found.key.clone()
                };
            }
            // An enclosing table is pointed at by its key.
            value = false;
            match key.rfind(['.', '[']) {
                Some(end) => key = &key[..end],
                None => return self.name.span(),
            }
        }
    }
}

/// Every key path below `value` with its span, for [`RawTaskSettings::spans`].
fn key_spans(value: &Spanned<DeValue<'_>>, parent: &str, spans: &mut Vec<KeySpan>) {
    match value.get_ref() {
        DeValue::Table(table) => {
            for (key, child) in table.iter() {
                let path = if parent.is_empty() {
                    key.get_ref().to_string()
                } else {
                    format!("{parent}.{}", key.get_ref())
                };
                spans.push(KeySpan {
                    path: path.clone(),
                    key: key.span(),
                    value: child.span(),
                });
                key_spans(child, &path, spans);
            }
        }
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let path = format!("{parent}[{index}]");
                spans.push(KeySpan {
                    path: path.clone(),
                    key: item.span(),
                    value: item.span(),
                });
                key_spans(item, &path, spans);
            }
        }
        _ => {}
    }
}

/// One `[[jobs]]` table as read, with where it came from.
#[derive(Debug)]
pub(crate) struct RawJobEntry {
    pub(crate) source: Arc<Source>,
    /// The position in its file's `jobs` array, for key paths (`jobs[2]`).
    pub(crate) index: usize,
    pub(crate) job: Section<RawJob>,
    pub(crate) args: Option<Spanned<serde_json::Value>>,
    /// The trigger, read and built once without error.
    pub(crate) trigger: Option<TriggerSpec>,
    /// The jitter the trigger itself sets, if any.
    pub(crate) trigger_jitter: Option<Duration>,
}

impl RawJobEntry {
    /// The job's key path: `jobs[2]`.
    pub(crate) fn key(&self) -> String {
        format!("jobs[{}]", self.index)
    }
}

/// Reads the main config file's sections, except `jobs`.
/// `[api]` of the main file and nothing else: what `kairos jobs` needs to find the
/// daemon. The other sections, known or not, are not read, so a mistake in them (or in
/// a job file) does not keep the client from a daemon that runs.
pub(crate) fn read_api_only(
    source: &Arc<Source>,
    table: &Spanned<DeTable<'_>>,
    errors: &mut Vec<ConfigError>,
) -> RawRoot {
    let mut root = RawRoot::empty(source);
    for (key, value) in table.get_ref().iter() {
        if key.get_ref() == "api" {
            root.api = read_struct(source, value, "api", errors);
        }
    }
    root
}

impl RawRoot {
    /// A root with no section.
    fn empty(source: &Arc<Source>) -> RawRoot {
        RawRoot {
            source: Arc::clone(source),
            include: Vec::new(),
            scheduler: None,
            jobstores: Vec::new(),
            executors: Vec::new(),
            job_defaults: None,
            api: None,
            log: None,
            history: None,
            tasks: Vec::new(),
            env_allow: None,
            alerts: None,
        }
    }
}

pub(crate) fn read_root(
    source: &Arc<Source>,
    table: &Spanned<DeTable<'_>>,
    errors: &mut Vec<ConfigError>,
) -> RawRoot {
    let mut root = RawRoot::empty(source);
    for (key, value) in table.get_ref().iter() {
        let path = join_key("", key.get_ref());
        match key.get_ref().as_ref() {
            "include" => {
                root.include = read_value::<Vec<Spanned<String>>>(source, value, &path, errors)
                    .unwrap_or_default();
            }
            "scheduler" => root.scheduler = read_struct(source, value, &path, errors),
            "jobstores" => root.jobstores = read_named(source, value, &path, errors),
            "executors" => root.executors = read_named(source, value, &path, errors),
            "job_defaults" => root.job_defaults = read_struct(source, value, &path, errors),
            "api" => root.api = read_struct(source, value, &path, errors),
            "log" => root.log = read_struct(source, value, &path, errors),
            "history" => root.history = read_struct(source, value, &path, errors),
            "tasks" => {
                (root.tasks, root.env_allow) = read_tasks(source, value, &path, errors);
            }
            "alerts" => root.alerts = read_alerts(source, value, &path, errors),
            "jobs" => {}
            other => errors.push(unknown_key(source, key.span(), &path, other, ROOT_KEYS)),
        }
    }
    root
}

/// `[alerts]` and its `[[alerts.webhooks]]`, each webhook read on its own.
fn read_alerts(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<RawAlerts> {
    let table = expect_table(source, value, path, errors)?;
    let mut alerts = RawAlerts::default();
    for (key, item) in table.iter() {
        let key_path = join_key(path, key.get_ref());
        match key.get_ref().as_ref() {
            "check_every" => {
                alerts.check_every = read_value(source, item, &key_path, errors);
            }
            "webhooks" => match item.get_ref() {
                DeValue::Array(entries) => {
                    for (index, entry) in entries.iter().enumerate() {
                        let entry_path = format!("{key_path}[{index}]");
                        if let Some(webhook) = read_struct(source, entry, &entry_path, errors) {
                            alerts.webhooks.push((entry_path, webhook));
                        }
                    }
                }
                _ => errors.push(source.error(
                    item.span(),
                    key_path,
                    ConfigErrorKind::InvalidValue,
                    "must be a list of tables: write each webhook as [[alerts.webhooks]]",
                )),
            },
            other => errors.push(unknown_key(
                source,
                key.span(),
                &key_path,
                other,
                ALERT_KEYS,
            )),
        }
    }
    Some(alerts)
}

/// Checks that an included file holds nothing but `[[jobs]]`: the other sections
/// belong to the main config, where there is one of each.
pub(crate) fn check_included_keys(
    source: &Source,
    table: &Spanned<DeTable<'_>>,
    errors: &mut Vec<ConfigError>,
) {
    for (key, _) in table.get_ref().iter() {
        let name = key.get_ref().as_ref();
        if name == "jobs" {
            continue;
        }
        let path = join_key("", name);
        if ROOT_KEYS.contains(&name) {
            errors.push(source.error(
                key.span(),
                path,
                ConfigErrorKind::UnknownKey,
                format!(
                    "an included file may only hold [[jobs]] tables; move `{name}` to the main config file"
                ),
            ));
        } else {
            errors.push(unknown_key(source, key.span(), &path, name, &["jobs"]));
        }
    }
}

/// Reads the `[[jobs]]` tables of one file, building each trigger with `context` to
/// check it.
pub(crate) fn read_jobs(
    source: &Arc<Source>,
    table: &Spanned<DeTable<'_>>,
    context: &TriggerContext,
    errors: &mut Vec<ConfigError>,
) -> Vec<RawJobEntry> {
    let Some(jobs) = table.get_ref().get("jobs") else {
        return Vec::new();
    };
    let Some(items) = jobs.get_ref().as_array() else {
        errors.push(source.error(
            jobs.span(),
            "jobs",
            ConfigErrorKind::InvalidValue,
            format!(
                "expected [[jobs]] tables, found {}",
                jobs.get_ref().type_str()
            ),
        ));
        return Vec::new();
    };
    let mut entries = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("jobs[{index}]");
        let Some(mut job) = read_struct::<RawJob>(source, item, &path, errors) else {
            continue;
        };
        let Some(table) = item.get_ref().as_table() else {
            continue;
        };
        let args = table.get("args").and_then(|value| {
            let read = read_json(source, value, &join_key(&path, "args"), errors);
            if read.is_none() {
                job.failed.insert("args".to_owned());
            }
            read.map(|json| Spanned::new(value.span(), json))
        });
        let mut trigger = None;
        let mut trigger_jitter = None;
        if let Some(value) = table.get("trigger") {
            let trigger_path = join_key(&path, "trigger");
            let built = read_trigger(source, value, &trigger_path, errors).and_then(|spec| {
                check_trigger(source, value, spec, &trigger_path, context, errors)
            });
            match built {
                Some((spec, jitter)) => {
                    trigger = Some(spec);
                    trigger_jitter = jitter;
                }
                None => {
                    job.failed.insert("trigger".to_owned());
                }
            }
        }
        entries.push(RawJobEntry {
            source: Arc::clone(source),
            index,
            job,
            args,
            trigger,
            trigger_jitter,
        });
    }
    entries
}

/// `[tasks.NAME]` tables, each kept as JSON for its task to read, and `[tasks]
/// env_allow`, the one key of `[tasks]` itself.
fn read_tasks(
    source: &Source,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> (Vec<RawTaskSettings>, Option<Vec<Spanned<String>>>) {
    let Some(table) = expect_table(source, value, path, errors) else {
        return (Vec::new(), None);
    };
    let mut tasks = Vec::new();
    let mut env_allow = None;
    for (name, settings) in table.iter() {
        let settings_path = join_key(path, name.get_ref());
        if name.get_ref() == "env_allow" {
            env_allow =
                read_value::<Vec<Spanned<String>>>(source, settings, &settings_path, errors);
            continue;
        }
        if !settings.get_ref().is_table() {
            errors.push(source.error(
                settings.span(),
                settings_path,
                ConfigErrorKind::InvalidValue,
                format!(
                    "expected a table of the task's settings, found {}",
                    settings.get_ref().type_str()
                ),
            ));
            continue;
        }
        if let Some(json) = read_json(source, settings, &settings_path, errors) {
            let mut spans = Vec::new();
            key_spans(settings, "", &mut spans);
            tasks.push(RawTaskSettings {
                name: Spanned::new(name.span(), name.get_ref().to_string()),
                settings: json,
                spans,
            });
        }
    }
    (tasks, env_allow)
}
