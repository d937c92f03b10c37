//! The built-in `orders.cancel` task: cancel an order that is still unpaid when its
//! payment window closes (docs/news-app.md, "The order-cancel
//! pattern").
//!
//! An order service creates the order as unpaid and, in the same request, adds a
//! one-off job through the API (`id = "order-cancel-<id>"`, `delay = "30m"`, task
//! `orders.cancel`, args `{"order_id": 42}`); paying removes the job. When the job
//! fires it runs one conditional statement,
//!
//! ```sql
//! UPDATE orders SET status = 'cancelled' [, cancelled_at = CURRENT_TIMESTAMP]
//!  WHERE id = 42 AND status = 'unpaid'
//! ```
//!
//! so a payment racing the cancel, a late run or a repeated run is harmless: the
//! database decides, row by row, and a paid order is never cancelled. The output is
//! `cancelled`, `left alone (status is paid)` or `no such order`.
//!
//! Settings, in `[tasks.orders]` of config.toml:
//!
//! | key | value |
//! | --- | --- |
//! | `database_url` | `mysql://…`, `postgres://…` or `sqlite://…`; `${VAR}` is read from the environment |
//! | `table` | `orders` or `shop.orders` |
//! | `id_column`, `status_column` | column names |
//! | `unpaid_value`, `cancelled_value` | the status values, text or integers |
//! | `cancelled_at_column` | optional: a column set to `CURRENT_TIMESTAMP` on cancel |
//!
//! # Ground rules
//! - Table and column names are validated as identifiers (`[A-Za-z_][A-Za-z0-9_]*`,
//!   tables optionally `schema.`-qualified) and quoted for the database, never spliced
//!   in raw; the order id and the status values are bound parameters.
//! - The order id is bound as it is given: a JSON number as a BIGINT, a string as
//!   text, so it must match the id column's type (PostgreSQL does not compare text
//!   with integers).
//! - The follow-up SELECT (to say why nothing changed) runs only when the UPDATE
//!   changed no row.

use async_trait::async_trait;
use serde_json::Value;

use super::args::{kind, object};
use super::settings::{SettingsError, SettingsReader};
use super::sql::{placeholder, DatabaseUrl, Identifier, SqlSource, SqlValue};
use super::{Task, TaskFailure, TaskRun};

/// The task's name in jobs.
pub const TASK_NAME: &str = "orders.cancel";

/// Its settings section: `[tasks.orders]`.
pub const SECTION: &str = "orders";

const KEYS: &[&str] = &[
    "database_url",
    "table",
    "id_column",
    "status_column",
    "unpaid_value",
    "cancelled_value",
    "cancelled_at_column",
];

/// Concurrent cancels share this many connections.
const MAX_CONNECTIONS: u32 = 4;

/// Cancels unpaid orders; see the module docs.
#[derive(Debug)]
pub struct CancelOrderTask {
    /// `None`: no `[tasks.orders]`.
    configured: Option<Configured>,
}

#[derive(Debug)]
struct Configured {
    /// As written, for a process-pool worker ([`Task::settings`]).
    raw: Value,
    database: SqlSource,
    /// `UPDATE … SET status = ? … WHERE id = ? AND status = ?`.
    cancel_sql: String,
    /// `SELECT status FROM … WHERE id = ?`.
    status_sql: String,
    unpaid: SqlValue,
    cancelled: SqlValue,
}

impl CancelOrderTask {
    /// The task without settings: every run fails and says what to configure.
    pub fn unconfigured() -> CancelOrderTask {
        CancelOrderTask { configured: None }
    }

    /// The task configured from a `[tasks.orders]` table; connects to nothing.
    pub fn from_settings(value: &Value) -> Result<CancelOrderTask, Vec<SettingsError>> {
        let mut reader = SettingsReader::new(value, "", KEYS).map_err(|error| vec![error])?;
        let database = reader
            .required_string(
                "database_url",
                "the orders database, e.g. \"mysql://shop:${SHOP_DB_PASSWORD}@127.0.0.1/shop\"",
            )
            .and_then(|url| {
                DatabaseUrl::parse(&url)
                    .map_err(|message| {
                        reader
                            .errors
                            .push(SettingsError::new("database_url", message))
                    })
                    .ok()
            });
        let table = identifier(&mut reader, "table", true, "e.g. \"orders\"");
        let id_column = identifier(&mut reader, "id_column", false, "e.g. \"id\"");
        let status_column = identifier(&mut reader, "status_column", false, "e.g. \"status\"");
        let cancelled_at = match reader.get("cancelled_at_column") {
            None => None,
            Some(_) => identifier(&mut reader, "cancelled_at_column", false, ""),
        };
        let unpaid = status_value(&mut reader, "unpaid_value");
        let cancelled = status_value(&mut reader, "cancelled_value");
        reader.finish()?;
        let (
            Some(database),
            Some(table),
            Some(id_column),
            Some(status_column),
            Some(unpaid),
            Some(cancelled),
        ) = (database, table, id_column, status_column, unpaid, cancelled)
        else {
            // finish() has reported why.
            return Err(vec![SettingsError::new("", "incomplete settings")]);
        };
        let dialect = database.dialect();
        let (table, id, status) = (
            table.quoted(dialect),
            id_column.quoted(dialect),
            status_column.quoted(dialect),
        );
        let stamp = cancelled_at
            .map(|column| format!(", {} = CURRENT_TIMESTAMP", column.quoted(dialect)))
            .unwrap_or_default();
        let cancel_sql = format!(
            "UPDATE {table} SET {status} = {}{stamp} WHERE {id} = {} AND {status} = {}",
            placeholder(dialect, 1),
            placeholder(dialect, 2),
            placeholder(dialect, 3),
        );
        let status_sql = format!(
            "SELECT {status} FROM {table} WHERE {id} = {}",
            placeholder(dialect, 1)
        );
        Ok(CancelOrderTask {
            configured: Some(Configured {
                raw: value.clone(),
                database: SqlSource::new(database, MAX_CONNECTIONS),
                cancel_sql,
                status_sql,
                unpaid,
                cancelled,
            }),
        })
    }
}

fn identifier(
    reader: &mut SettingsReader<'_>,
    key: &str,
    qualified: bool,
    hint: &str,
) -> Option<Identifier> {
    let text = reader.required_string(key, hint)?;
    Identifier::parse(&text, qualified)
        .map_err(|message| reader.errors.push(SettingsError::new(key, message)))
        .ok()
}

/// A status value: text (`"unpaid"`) or an integer (`0`).
fn status_value(reader: &mut SettingsReader<'_>, key: &str) -> Option<SqlValue> {
    match reader.get(key) {
        Some(Value::String(text)) => Some(SqlValue::Text(text.clone())),
        Some(Value::Number(number)) if number.as_i64().is_some() => {
            number.as_i64().map(SqlValue::Int)
        }
        Some(other) => {
            reader.errors.push(SettingsError::new(
                key,
                format!("must be text or a whole number, not {other}"),
            ));
            None
        }
        None => {
            reader.errors.push(SettingsError::missing(
                key,
                "missing; the status value as stored, e.g. \"unpaid\" or 0",
            ));
            None
        }
    }
}

/// The order a run is for: `{"order_id": 42}` or `{"order_id": "A-42"}`.
fn order_id(args: &Value) -> Result<SqlValue, String> {
    let fields = object(args, &["order_id"], r#"{"order_id": 42}"#)?;
    match fields.get("order_id") {
        Some(Value::Number(number)) => number
            .as_i64()
            .map(SqlValue::Int)
            .ok_or_else(|| format!("order_id: {number} is not a whole number")),
        Some(Value::String(text)) if !text.is_empty() => Ok(SqlValue::Text(text.clone())),
        Some(Value::String(_)) => Err("order_id: is empty".to_owned()),
        Some(other) => Err(format!(
            "order_id: must be a number or a string, not {}",
            kind(other)
        )),
        None => Err(r#"order_id: missing, e.g. {"order_id": 42}"#.to_owned()),
    }
}

#[async_trait]
impl Task for CancelOrderTask {
    fn check_args(&self, args: &Value) -> Result<(), String> {
        order_id(args).map(drop)
    }

    /// What [`order_id`] takes: `{"order_id": N}`, a whole number or a non-empty string.
    fn args_schema(&self) -> Option<Value> {
        Some(serde_json::json!({
            "type": "object", "required": ["order_id"], "additionalProperties": false,
            "description": "The order to cancel if it is still unpaid.",
            "properties": {"order_id": {
                "type": ["integer", "string"], "minimum": i64::MIN, "maximum": i64::MAX,
                "minLength": 1, "description": "The order's id: a whole number or a non-empty string.",
                "examples": [42, "A-42"]}},
            "examples": [{"order_id": 42}],
        }))
    }

    /// An order left unpaid because its cancel ran while the shop's database restarted
    /// must still be cancelled: ten attempts, waits growing from 5 s to 5 min (full
    /// jitter), about ten minutes in all on average. Safe: the cancel is one
    /// conditional UPDATE, so a repeat changes nothing.
    fn default_retry(&self) -> Option<crate::job::RetryPolicy> {
        Some(crate::job::RetryPolicy {
            max_attempts: 10,
            initial_delay: Some(std::time::Duration::from_secs(5)),
            multiplier: Some(2.0),
            max_delay: Some(std::time::Duration::from_secs(300)),
        })
    }

    async fn run(&self, run: TaskRun) -> Result<String, TaskFailure> {
        let Some(configured) = &self.configured else {
            return Err(TaskFailure::new(format!(
                "{TASK_NAME} is not configured: set [tasks.{SECTION}] database_url, table, \
                 id_column, status_column, unpaid_value and cancelled_value in config.toml"
            )));
        };
        let id = order_id(&run.args).map_err(TaskFailure::new)?;
        configured
            .cancel(id)
            .await
            .map_err(|error| TaskFailure::new(error.to_string()))
    }

    fn settings(&self) -> Option<Value> {
        self.configured
            .as_ref()
            .map(|configured| configured.raw.clone())
    }
}

/// Why an order could not be looked at.
#[derive(Debug, thiserror::Error)]
enum CancelError {
    #[error("{0}")]
    Database(#[from] super::sql::SqlError),
    #[error("order {id}: {source}")]
    Statement {
        id: SqlValue,
        #[source]
        source: sqlx::Error,
    },
}

impl Configured {
    async fn cancel(&self, id: SqlValue) -> Result<String, CancelError> {
        let pool = self.database.pool().await?;
        let statement_error = |source| CancelError::Statement {
            id: id.clone(),
            source,
        };
        let values = [self.cancelled.clone(), id.clone(), self.unpaid.clone()];
        let changed = pool
            .execute(&self.cancel_sql, &values)
            .await
            .map_err(statement_error)?;
        if changed > 0 {
            return Ok("cancelled".to_owned());
        }
        let status = pool
            .fetch_text(&self.status_sql, std::slice::from_ref(&id))
            .await
            .map_err(statement_error)?;
        Ok(match status {
            None => "no such order".to_owned(),
            Some(status) => format!(
                "left alone (status is {})",
                status.as_deref().unwrap_or("NULL")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Value {
        json!({
            "database_url": "postgres://shop@db/shop",
            "table": "shop.orders",
            "id_column": "order_id",
            "status_column": "status",
            "unpaid_value": 0,
            "cancelled_value": 3,
            "cancelled_at_column": "cancelled_at",
        })
    }

    #[test]
    fn statements_quote_names_and_bind_values() {
        let task = CancelOrderTask::from_settings(&settings()).expect("valid");
        let configured = task.configured.expect("configured");
        assert_eq!(
            configured.cancel_sql,
            "UPDATE \"shop\".\"orders\" SET \"status\" = $1, \"cancelled_at\" = CURRENT_TIMESTAMP \
             WHERE \"order_id\" = $2 AND \"status\" = $3"
        );
        assert_eq!(
            configured.status_sql,
            "SELECT \"status\" FROM \"shop\".\"orders\" WHERE \"order_id\" = $1"
        );
        assert_eq!(configured.unpaid, SqlValue::Int(0));
    }

    #[test]
    fn names_that_are_not_identifiers_are_refused() {
        let mut bad = settings();
        bad["table"] = json!("orders; DROP TABLE users");
        bad["status_column"] = json!("a.b");
        bad["unpaid_value"] = json!(true);
        let errors = CancelOrderTask::from_settings(&bad).expect_err("invalid");
        let keys: Vec<&str> = errors.iter().map(|error| error.key.as_str()).collect();
        assert_eq!(keys, ["table", "status_column", "unpaid_value"]);
    }

    #[test]
    fn order_ids_are_numbers_or_strings() {
        assert_eq!(order_id(&json!({"order_id": 42})), Ok(SqlValue::Int(42)));
        assert_eq!(
            order_id(&json!({"order_id": "A-42"})),
            Ok(SqlValue::Text("A-42".to_owned()))
        );
        assert!(order_id(&json!({"order_id": 4.5})).is_err());
        assert!(order_id(&json!({"order": 4})).is_err());
        assert!(order_id(&json!({})).is_err());
    }
}
