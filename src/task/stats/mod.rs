//! The built-in `stats.correct` task: recompute the news app's counters from its SQL
//! database and replace the Redis sorted sets that cache them (member = id, score =
//! count), so whatever drifted during the day (lost increments, double counts, deleted
//! rows) is repaired (docs/news-app.md, docs/semantics.md "Built-in tasks").
//!
//! Settings, in `[tasks.stats]` of config.toml (checked by `kairos check`):
//!
//! | key | value | default |
//! | --- | --- | --- |
//! | `database_url` | `mysql://…`, `postgres://…` or `sqlite://…`; `${VAR}` is read from the environment | — |
//! | `replica_url` | a database URL the queries go to instead (a read replica) | none |
//! | `redis_url` | `redis://host:port/db`, or `rediss://…` for TLS (`?cacert=PATH` for a private CA, see [`crate::tls`]) | — |
//! | `key_prefix` | prepended to every counter key | `""` |
//! | `batch_size` | members per ZADD | 1000 |
//! | `counter_timeout` | the longest one counter may take, or `"none"` | `"30m"` |
//! | `concurrency` | counters corrected at once (each holds one database connection) | 2 |
//! | `counters` | `[{ key = "count:user:arts", query = "SELECT user_id, COUNT(*) …" }, …]` | the news app's ([`news_app_counters`]) |
//!
//! A job runs it with no args. The output has one line per counter (`count:art:liking:
//! 120 members; 3 added, 1 changed, 0 removed`), after a summary line.
//!
//! # Ground rules
//! - Counters run independently, `concurrency` at a time (each is one GROUP BY
//!   that the database runs on one core, so two at once use a two-core server fully):
//!   one that fails (bad SQL, a timeout, Redis unreachable) is reported and the others
//!   still run. The run fails if any counter failed, and its message lists every
//!   counter, in the configured order whatever order they finished in.
//! - Each counter is rewritten atomically (`refresh.rs`): readers never see its key
//!   missing or half-filled, and a failed counter leaves its old key intact.
//! - Idempotent: a second run over unchanged data reports no changes.
//! - Unconfigured (no `[tasks.stats]`), the task is still registered, so jobs that name
//!   it pass `kairos check`; a run then fails and says what to set.

mod counters;
mod refresh;

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde_json::Value;

use self::refresh::{refresh, CounterChanges, CounterError};
use super::args::kind;
use super::settings::{SettingsError, SettingsReader};
use super::sql::{DatabaseUrl, SqlSource};
use super::{Task, TaskFailure, TaskRun};
use crate::secret_url::{expand, redact};

/// The task's name in jobs.
pub const TASK_NAME: &str = "stats.correct";

/// Its settings section: `[tasks.stats]`.
pub const SECTION: &str = "stats";

const KEYS: &[&str] = &[
    "database_url",
    "replica_url",
    "redis_url",
    "key_prefix",
    "batch_size",
    "counter_timeout",
    "concurrency",
    "counters",
];

const DEFAULT_BATCH_SIZE: usize = 1000;

/// Two counters at once: measured best on a two-core MariaDB (benches/README.md); more
/// only queue on the database's cores and hold more rows in flight.
const DEFAULT_CONCURRENCY: usize = 2;

/// A runaway query must not hold the counters after it until the next night.
const DEFAULT_COUNTER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Long enough for the swap of a million-member key, whose old value Redis frees.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// One counter: a Redis sorted set and the query that recomputes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The key, before `key_prefix`: `count:user:arts`.
    pub key: String,
    /// SQL returning (member, count) rows: the member as an integer or text, the count
    /// as an integer (or a float); rows with a zero count should not be returned.
    pub query: String,
}

/// The news app's counters, the default set.
pub fn news_app_counters() -> Vec<Counter> {
    counters::news_app()
}

/// The checked `[tasks.stats]`.
#[derive(Debug)]
struct StatsSettings {
    /// Where the queries run: the replica if one is set, else the database.
    source: DatabaseUrl,
    /// `${VAR}` still unexpanded.
    redis_url: String,
    key_prefix: String,
    batch_size: usize,
    counter_timeout: Option<Duration>,
    /// Counters corrected at once.
    concurrency: usize,
    counters: Vec<Counter>,
}

impl StatsSettings {
    fn parse(value: &Value) -> Result<StatsSettings, Vec<SettingsError>> {
        let mut reader = SettingsReader::new(value, "", KEYS).map_err(|error| vec![error])?;
        let database = reader
            .required_string(
                "database_url",
                "the news app's database, e.g. \"mysql://news:${NEWS_DB_PASSWORD}@127.0.0.1/toutiao\"",
            )
            .and_then(|url| parse_database_url(&mut reader, "database_url", &url));
        let replica = reader
            .optional_string("replica_url")
            .and_then(|url| parse_database_url(&mut reader, "replica_url", &url));
        let redis_url = reader
            .required_string(
                "redis_url",
                "where the counters live, e.g. \"redis://127.0.0.1:6379/0\"",
            )
            .filter(|url| check_redis_url(&mut reader, url));
        let key_prefix = match reader.get("key_prefix") {
            None => String::new(),
            Some(Value::String(prefix)) => prefix.clone(),
            Some(other) => {
                let message = format!("must be a string, not {}", kind(other));
                reader
                    .errors
                    .push(SettingsError::new("key_prefix", message));
                String::new()
            }
        };
        let batch_size = reader
            .optional_count("batch_size")
            .unwrap_or(DEFAULT_BATCH_SIZE);
        let counter_timeout = reader
            .optional_duration("counter_timeout")
            .unwrap_or(Some(DEFAULT_COUNTER_TIMEOUT));
        let concurrency = reader
            .optional_count("concurrency")
            .unwrap_or(DEFAULT_CONCURRENCY);
        let counters = match reader.get("counters") {
            None => counters::news_app(),
            Some(value) => parse_counters(value, &mut reader.errors),
        };
        reader.finish()?;
        match (database, redis_url) {
            (Some(database), Some(redis_url)) => Ok(StatsSettings {
                source: replica.unwrap_or(database),
                redis_url,
                key_prefix,
                batch_size,
                counter_timeout,
                concurrency,
                counters,
            }),
            // finish() has reported why.
            _ => Err(vec![SettingsError::new("", "incomplete settings")]),
        }
    }
}

fn parse_database_url(
    reader: &mut SettingsReader<'_>,
    key: &str,
    url: &str,
) -> Option<DatabaseUrl> {
    DatabaseUrl::parse(url)
        .map_err(|message| reader.errors.push(SettingsError::new(key, message)))
        .ok()
}

fn check_redis_url(reader: &mut SettingsReader<'_>, url: &str) -> bool {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    let known = matches!(
        scheme.as_deref(),
        Some("redis" | "rediss" | "redis+unix" | "unix")
    );
    if !known {
        reader.errors.push(SettingsError::new(
            "redis_url",
            format!(
                "{:?} is not a Redis URL; expected redis://host:port/db or rediss:// (TLS)",
                redact(url)
            ),
        ));
    }
    known
}

/// `counters`: a non-empty list of `{ key, query }` with distinct keys.
fn parse_counters(value: &Value, errors: &mut Vec<SettingsError>) -> Vec<Counter> {
    let Value::Array(items) = value else {
        errors.push(SettingsError::new(
            "counters",
            format!(
                "must be a list of {{ key = \"…\", query = \"SELECT …\" }}, not {}",
                kind(value)
            ),
        ));
        return Vec::new();
    };
    if items.is_empty() {
        errors.push(SettingsError::new(
            "counters",
            "is empty; leave it out for the news app's counters",
        ));
    }
    let mut counters: Vec<Counter> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("counters[{index}]");
        let mut reader = match SettingsReader::new(item, &path, &["key", "query"]) {
            Ok(reader) => reader,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        let key = reader.required_string("key", "the sorted set's key, e.g. \"count:user:arts\"");
        let query = reader.required_string("query", "SQL returning (member, count) rows");
        if let Some(key) = &key {
            if counters.iter().any(|counter| &counter.key == key) {
                let message = format!("{key:?} is already the key of an earlier counter");
                reader
                    .errors
                    .push(SettingsError::new(reader.key("key"), message));
            }
        }
        errors.append(&mut reader.errors);
        if let (Some(key), Some(query)) = (key, query) {
            counters.push(Counter { key, query });
        }
    }
    counters
}

/// Corrects counters; see the module docs.
#[derive(Debug)]
pub struct StatsTask {
    /// `None`: no `[tasks.stats]`.
    configured: Option<Configured>,
}

#[derive(Debug)]
struct Configured {
    /// As written, for a process-pool worker ([`Task::settings`]).
    raw: Value,
    settings: StatsSettings,
    database: SqlSource,
}

impl StatsTask {
    /// The task without settings: every run fails and says what to configure.
    pub fn unconfigured() -> StatsTask {
        StatsTask { configured: None }
    }

    /// The task configured from a `[tasks.stats]` table; connects to nothing.
    pub fn from_settings(value: &Value) -> Result<StatsTask, Vec<SettingsError>> {
        let settings = StatsSettings::parse(value)?;
        // One connection per counter running at once, and one more so a connection
        // being replaced does not stall the run.
        let connections = u32::try_from(settings.concurrency)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let database = SqlSource::new(settings.source.clone(), connections);
        Ok(StatsTask {
            configured: Some(Configured {
                raw: value.clone(),
                settings,
                database,
            }),
        })
    }
}

#[async_trait]
impl Task for StatsTask {
    fn check_args(&self, args: &Value) -> Result<(), String> {
        match args {
            Value::Null => Ok(()),
            Value::Object(fields) if fields.is_empty() => Ok(()),
            _ => Err(format!(
                "{TASK_NAME} takes no args; its database, Redis and counters are set in \
                 [tasks.{SECTION}] of config.toml"
            )),
        }
    }

    /// No args: null (or none at all) or `{}`, as [`Task::check_args`] takes.
    fn args_schema(&self) -> Option<Value> {
        Some(serde_json::json!({
            "type": ["object", "null"], "additionalProperties": false, "properties": {},
            "description": "None: the database, Redis and counters are set in [tasks.stats] of config.toml.",
            "examples": [{}],
        }))
    }

    /// A nightly correction that failed (the database or Redis away for a moment) is
    /// worth doing again before morning: three attempts, waits from 1 min to 10 min.
    /// Safe: each counter's key is replaced whole.
    fn default_retry(&self) -> Option<crate::job::RetryPolicy> {
        Some(crate::job::RetryPolicy {
            max_attempts: 3,
            initial_delay: Some(std::time::Duration::from_secs(60)),
            multiplier: Some(2.0),
            max_delay: Some(std::time::Duration::from_secs(600)),
        })
    }

    async fn run(&self, _run: TaskRun) -> Result<String, TaskFailure> {
        let Some(configured) = &self.configured else {
            return Err(TaskFailure::new(format!(
                "{TASK_NAME} is not configured: set [tasks.{SECTION}] database_url and \
                 redis_url in config.toml"
            )));
        };
        configured.run().await
    }

    fn settings(&self) -> Option<Value> {
        self.configured
            .as_ref()
            .map(|configured| configured.raw.clone())
    }
}

/// How one counter ended.
type CounterOutcome = Result<CounterChanges, CounterError>;

impl Configured {
    async fn run(&self) -> Result<String, TaskFailure> {
        let settings = &self.settings;
        // Owned keys and indexes, not `&Counter`s: a stream closure over borrowed items
        // is not provably `Send` for `async_trait` (rust-lang/rust#102211).
        let keys: Vec<(usize, String)> = settings
            .counters
            .iter()
            .map(|counter| format!("{}{}", settings.key_prefix, counter.key))
            .enumerate()
            .collect();
        let outcomes: Vec<(String, CounterOutcome)> = match self.connect_redis().await {
            // `buffered` keeps the configured order in the report while up to
            // `concurrency` counters run; each counter's errors stay its own.
            Ok(redis) => {
                stream::iter(keys)
                    .map(|(index, key)| {
                        // A multiplexed connection is shared by cloning: each counter's
                        // pipelines interleave with the others' on one socket.
                        let mut redis = redis.clone();
                        async move {
                            let query = &self.settings.counters[index].query;
                            let outcome = self.correct(&mut redis, query, &key).await;
                            if let Err(error) = &outcome {
                                tracing::warn!(counter = key, %error, "counter not corrected");
                            }
                            (key, outcome)
                        }
                    })
                    .buffered(settings.concurrency)
                    .collect()
                    .await
            }
            // Without Redis no counter can run; each is reported as failed.
            Err(error) => keys
                .into_iter()
                .map(|(_, key)| (key, Err(CounterError::RedisUnreachable(error.clone()))))
                .collect(),
        };
        let report = report(&outcomes);
        let failed = outcomes
            .iter()
            .filter(|(_, outcome)| outcome.is_err())
            .count();
        if failed == 0 {
            Ok(report)
        } else {
            Err(TaskFailure {
                message: report.clone(),
                output: report,
                timed_out: false,
            })
        }
    }

    async fn correct(
        &self,
        redis: &mut MultiplexedConnection,
        query: &str,
        key: &str,
    ) -> CounterOutcome {
        let work = async {
            let pool = self.database.pool().await?;
            refresh(pool, redis, query, key, self.settings.batch_size).await
        };
        match self.settings.counter_timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .unwrap_or(Err(CounterError::Timeout(limit))),
            None => work.await,
        }
    }

    /// A connection for this run only: one connect a night costs nothing, and a
    /// connection kept between runs would be stale after a Redis restart.
    async fn connect_redis(&self) -> Result<MultiplexedConnection, String> {
        let url = &self.settings.redis_url;
        let expanded = expand(url, |name| std::env::var(name).ok())
            .map_err(|error| format!("redis_url {}: {error}", redact(url)))?;
        let client = crate::tls::redis_client(&expanded)
            .map_err(|error| format!("redis_url {}: {error}", redact(url)))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|error| {
                let hint = crate::tls::redis_connect_hint(url, &error);
                format!("cannot connect to {}: {error}{hint}", redact(url))
            })
    }
}

/// The run's output: a summary line, then one line per counter in run order.
fn report(outcomes: &[(String, CounterOutcome)]) -> String {
    let failed = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_err())
        .count();
    let total = outcomes
        .iter()
        .filter_map(|(_, outcome)| outcome.as_ref().ok())
        .fold(CounterChanges::default(), |sum, changes| CounterChanges {
            members: sum.members + changes.members,
            added: sum.added + changes.added,
            changed: sum.changed + changes.changed,
            removed: sum.removed + changes.removed,
        });
    let mut text = if failed == 0 {
        format!(
            "{} counters corrected: {} added, {} changed, {} removed",
            outcomes.len(),
            total.added,
            total.changed,
            total.removed
        )
    } else {
        format!(
            "{failed} of {} counters failed; the others: {} added, {} changed, {} removed",
            outcomes.len(),
            total.added,
            total.changed,
            total.removed
        )
    };
    for (key, outcome) in outcomes {
        let _ = match outcome {
            Ok(changes) if changes.members == 0 => write!(
                text,
                "\n{key}: empty, key deleted; {} removed",
                changes.removed
            ),
            Ok(changes) => write!(
                text,
                "\n{key}: {} members; {} added, {} changed, {} removed",
                changes.members, changes.added, changes.changed, changes.removed
            ),
            Err(error) => write!(text, "\n{key}: FAILED: {error}"),
        };
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_default_to_the_news_app_counters() {
        let task = StatsTask::from_settings(&json!({
            "database_url": "mysql://news:pw@db/toutiao",
            "redis_url": "redis://127.0.0.1:6379/0",
        }))
        .expect("valid");
        let configured = task.configured.expect("configured");
        assert_eq!(configured.settings.counters, news_app_counters());
        assert_eq!(configured.settings.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(
            configured.settings.counter_timeout,
            Some(DEFAULT_COUNTER_TIMEOUT)
        );
        assert_eq!(configured.settings.concurrency, DEFAULT_CONCURRENCY);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let errors = StatsTask::from_settings(&json!({
            "database_url": "oracle://db",
            "redis_ulr": "redis://x",
            "counters": [{"key": "a", "query": "SELECT 1, 1"}, {"key": "a"}, 3],
        }))
        .expect_err("invalid");
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "redis_ulr",
                "database_url",
                "redis_url",
                "counters[1].query",
                "counters[1].key",
                "counters[2]"
            ],
            "{errors:?}"
        );
        assert!(errors[0].message.contains("did you mean `redis_url`"));
    }

    #[test]
    fn a_replica_takes_the_queries() {
        let task = StatsTask::from_settings(&json!({
            "database_url": "mysql://primary/x",
            "replica_url": "postgres://replica/x",
            "redis_url": "redis://r",
        }))
        .expect("valid");
        let source = task.configured.expect("configured").settings.source;
        assert_eq!(source.dialect(), crate::task::sql::Dialect::Postgres);
    }

    #[test]
    fn the_report_lists_every_counter() {
        let outcomes = vec![
            (
                "count:a".to_owned(),
                Ok(CounterChanges {
                    members: 3,
                    added: 1,
                    changed: 2,
                    removed: 0,
                }),
            ),
            (
                "count:b".to_owned(),
                Err(CounterError::Timeout(Duration::from_secs(60))),
            ),
            (
                "count:c".to_owned(),
                Ok(CounterChanges {
                    removed: 4,
                    ..CounterChanges::default()
                }),
            ),
        ];
        assert_eq!(
            report(&outcomes),
            "1 of 3 counters failed; the others: 1 added, 2 changed, 4 removed\n\
             count:a: 3 members; 1 added, 2 changed, 0 removed\n\
             count:b: FAILED: gave up after 1m (counter_timeout)\n\
             count:c: empty, key deleted; 4 removed"
        );
    }

    #[tokio::test]
    async fn unconfigured_runs_say_what_to_set() {
        let failure = StatsTask::unconfigured()
            .run(TaskRun {
                job_id: "fix-statistics".to_owned(),
                run_id: "1".to_owned(),
                scheduled_time: chrono::Utc::now(),
                args: Value::Null,
                from_config: false,
            })
            .await
            .expect_err("unconfigured");
        assert!(failure.message.contains("set [tasks.stats] database_url"));
    }
}
