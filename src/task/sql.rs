//! The application databases the news tasks read (`stats.correct`) and write
//! (`orders.cancel`): URLs checked at config time, pools opened on first use, and the
//! few things both tasks need from sqlx — stream (member, count) rows, run one
//! statement with bound values, read one value back — on MySQL/MariaDB, PostgreSQL and
//! SQLite.
//!
//! This is not the job store's SQL layer (`store/sql/`): those are kairos's own tables
//! with known column types; here the tables are the application's, so columns are
//! decoded leniently (an id may be INT, BIGINT UNSIGNED or VARCHAR) and table and
//! column names come from config, validated as identifiers and quoted per dialect.
//!
//! # Ground rules
//! - Nothing here connects until a run needs it ([`SqlSource::pool`]), so `kairos check`
//!   and a daemon start work while a database is down.
//! - Values are always bound parameters; only validated, quoted identifiers are ever
//!   spliced into SQL.
//! - URLs may hold `${VAR}`; it is expanded when connecting, and errors print URLs with
//!   the password redacted.
//! - TLS is the URL's own business, as for the job store: `sslmode=verify-full` (and
//!   `sslrootcert=`) for PostgreSQL, `ssl-mode=VERIFY_IDENTITY` (and `ssl-ca=`) for
//!   MySQL/MariaDB, read by sqlx and done with rustls (`crate::tls`).

use std::fmt;
use std::time::Duration;

use futures_util::stream::{BoxStream, StreamExt};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, TypeInfo};
use tokio::sync::OnceCell;

use crate::secret_url::{expand, redact};

/// Which SQL database a URL is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `mysql://` or `mariadb://`.
    MySql,
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite://`.
    Sqlite,
}

/// A database URL whose scheme is known; `${VAR}` is still unexpanded.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DatabaseUrl {
    dialect: Dialect,
    text: String,
}

impl fmt::Debug for DatabaseUrl {
    /// Never prints a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.text))
    }
}

impl DatabaseUrl {
    /// Checks the scheme of `text`.
    pub(crate) fn parse(text: &str) -> Result<DatabaseUrl, String> {
        let text = text.trim();
        let scheme = text.split_once("://").map(|(scheme, _)| scheme);
        let dialect = match scheme.map(str::to_ascii_lowercase).as_deref() {
            Some("mysql" | "mariadb") => Dialect::MySql,
            Some("postgres" | "postgresql") => Dialect::Postgres,
            Some("sqlite") => Dialect::Sqlite,
            _ => {
                return Err(format!(
                    "{:?} is not a database URL; expected mysql://, postgres:// or sqlite://",
                    redact(text)
                ))
            }
        };
        // sqlx knows `mysql://`, not MariaDB's own scheme.
        let text = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
                format!("mysql://{rest}")
            }
            _ => text.to_owned(),
        };
        Ok(DatabaseUrl { dialect, text })
    }

    /// The dialect the URL is for.
    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqlError {
    /// `${VAR}` in the URL could not be expanded.
    #[error("database URL {url}: {reason}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// sqlx's error.
        source: sqlx::Error,
    },
}

/// A pool of one of the three databases.
#[derive(Clone, Debug)]
pub(crate) enum SqlPool {
    MySql(MySqlPool),
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A database URL and the pool opened for it on first use.
#[derive(Debug)]
pub(crate) struct SqlSource {
    url: DatabaseUrl,
    max_connections: u32,
    pool: OnceCell<SqlPool>,
}

/// How long a run waits for a connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl SqlSource {
    /// A source for `url` whose pool will hold at most `max_connections`.
    pub(crate) fn new(url: DatabaseUrl, max_connections: u32) -> SqlSource {
        SqlSource {
            url,
            max_connections,
            pool: OnceCell::new(),
        }
    }

    /// The pool, connecting first if no run has yet; a failed connect is tried again by
    /// the next caller.
    pub(crate) async fn pool(&self) -> Result<&SqlPool, SqlError> {
        self.pool.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<SqlPool, SqlError> {
        let redacted = redact(&self.url.text);
        let url = expand(&self.url.text, |name| std::env::var(name).ok()).map_err(|error| {
            SqlError::Url {
                url: redacted.clone(),
                reason: error.to_string(),
            }
        })?;
        let connect_error = |source| SqlError::Connect {
            url: redacted.clone(),
            source,
        };
        Ok(match self.url.dialect {
            Dialect::MySql => SqlPool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(&url)
                    .await
                    .map_err(connect_error)?,
            ),
            Dialect::Postgres => SqlPool::Postgres(
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(&url)
                    .await
                    .map_err(connect_error)?,
            ),
            Dialect::Sqlite => SqlPool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(&url)
                    .await
                    .map_err(connect_error)?,
            ),
        })
    }
}

/// A value bound to a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SqlValue {
    /// A BIGINT.
    Int(i64),
    /// Text.
    Text(String),
}

impl fmt::Display for SqlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlValue::Int(value) => write!(f, "{value}"),
            SqlValue::Text(value) => write!(f, "{value}"),
        }
    }
}

/// Binds `values` to `query` in order.
macro_rules! bind_all {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for value in $values {
            query = match value {
                SqlValue::Int(value) => query.bind(*value),
                SqlValue::Text(value) => query.bind(value.as_str()),
            };
        }
        query
    }};
}

impl SqlPool {
    /// Streams the rows of `sql` as (member, count) pairs: the first column as text,
    /// the second as a number. Rows are decoded as they arrive, so memory stays flat
    /// however many rows the query returns.
    pub(crate) fn pairs<'a>(
        &'a self,
        sql: &'a str,
    ) -> BoxStream<'a, Result<(String, f64), sqlx::Error>> {
        fn pair<R: LenientRow>(row: Result<R, sqlx::Error>) -> Result<(String, f64), sqlx::Error> {
            let row = row?;
            let member = row.text_at(0)?.ok_or_else(|| null_column(0))?;
            let count = row.number_at(1)?.ok_or_else(|| null_column(1))?;
            Ok((member, count))
        }
        match self {
            SqlPool::MySql(pool) => sqlx::query(sql).fetch(pool).map(pair).boxed(),
            SqlPool::Postgres(pool) => sqlx::query(sql).fetch(pool).map(pair).boxed(),
            SqlPool::Sqlite(pool) => sqlx::query(sql).fetch(pool).map(pair).boxed(),
        }
    }

    /// Runs one statement; returns how many rows it changed.
    pub(crate) async fn execute(&self, sql: &str, values: &[SqlValue]) -> Result<u64, sqlx::Error> {
        Ok(match self {
            SqlPool::MySql(pool) => bind_all!(sqlx::query(sql), values)
                .execute(pool)
                .await?
                .rows_affected(),
            SqlPool::Postgres(pool) => bind_all!(sqlx::query(sql), values)
                .execute(pool)
                .await?
                .rows_affected(),
            SqlPool::Sqlite(pool) => bind_all!(sqlx::query(sql), values)
                .execute(pool)
                .await?
                .rows_affected(),
        })
    }

    /// The first column of the first row of `sql`, as text: `None` when there is no
    /// row, `Some(None)` when the value is NULL.
    pub(crate) async fn fetch_text(
        &self,
        sql: &str,
        values: &[SqlValue],
    ) -> Result<Option<Option<String>>, sqlx::Error> {
        match self {
            SqlPool::MySql(pool) => bind_all!(sqlx::query(sql), values)
                .fetch_optional(pool)
                .await?
                .map(|row| row.text_at(0))
                .transpose(),
            SqlPool::Postgres(pool) => bind_all!(sqlx::query(sql), values)
                .fetch_optional(pool)
                .await?
                .map(|row| row.text_at(0))
                .transpose(),
            SqlPool::Sqlite(pool) => bind_all!(sqlx::query(sql), values)
                .fetch_optional(pool)
                .await?
                .map(|row| row.text_at(0))
                .transpose(),
        }
    }
}

fn null_column(index: usize) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: index.to_string(),
        source: "the value is NULL; filter NULLs out in the query".into(),
    }
}

/// Reads application columns whatever their declared type, within reason.
trait LenientRow: Row {
    /// An id or a status as text: integers in decimal, text as is.
    fn text_at(&self, index: usize) -> Result<Option<String>, sqlx::Error>;
    /// A count: an integer or a float.
    fn number_at(&self, index: usize) -> Result<Option<f64>, sqlx::Error>;
}

/// Tries each type in turn: the first whose SQL type matches the column decodes it,
/// and the function after `=>` turns it into the result.
macro_rules! first_decoding {
    ($row:expr, $index:expr; $($ty:ty => $map:expr),+ $(,)?) => {{
        $(
            if let Ok(value) = $row.try_get::<Option<$ty>, usize>($index) {
                return Ok(value.map($map));
            }
        )+
        Err(undecodable($row, $index))
    }};
}

fn undecodable<R: Row>(row: &R, index: usize) -> sqlx::Error {
    let type_name = row
        .columns()
        .get(index)
        .map(|column| column.type_info().name().to_owned())
        .unwrap_or_default();
    sqlx::Error::ColumnDecode {
        index: index.to_string(),
        source: format!(
            "a column of type {type_name} cannot be read here; cast it to BIGINT or text in the query"
        )
        .into(),
    }
}

fn int_text<T: ToString>(value: T) -> String {
    value.to_string()
}

fn bytes_text(value: Vec<u8>) -> String {
    String::from_utf8_lossy(&value).into_owned()
}

fn same<T>(value: T) -> T {
    value
}

// Counts are far below 2^53, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
fn int_number<T: Into<i128>>(value: T) -> f64 {
    value.into() as f64
}

fn float_number<T: Into<f64>>(value: T) -> f64 {
    value.into()
}

impl LenientRow for MySqlRow {
    fn text_at(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        // Text first, so VARCHAR ids stay exactly as stored; VARBINARY (a `_bin`
        // collation) comes as bytes.
        first_decoding!(self, index;
            String => same, i64 => int_text, u64 => int_text, Vec<u8> => bytes_text)
    }

    fn number_at(&self, index: usize) -> Result<Option<f64>, sqlx::Error> {
        // `SUM(...)` is DECIMAL on MySQL, which the binary protocol sends as text.
        let is_decimal = self
            .columns()
            .get(index)
            .is_some_and(|column| column.type_info().name() == "DECIMAL");
        if is_decimal {
            let text = self.try_get_unchecked::<Option<String>, usize>(index)?;
            return text
                .map(|text| {
                    text.parse::<f64>()
                        .map_err(|error| sqlx::Error::Decode(Box::new(error)))
                })
                .transpose();
        }
        first_decoding!(self, index;
            i64 => int_number, u64 => int_number, f64 => same, f32 => float_number)
    }
}

impl LenientRow for PgRow {
    fn text_at(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        first_decoding!(self, index;
            i64 => int_text, i32 => int_text, i16 => int_text, String => same)
    }

    fn number_at(&self, index: usize) -> Result<Option<f64>, sqlx::Error> {
        // NUMERIC (`SUM` of a BIGINT) has no decoder without sqlx's decimal features:
        // the error says to cast it.
        first_decoding!(self, index;
            i64 => int_number, i32 => int_number, i16 => int_number, f64 => same, f32 => float_number)
    }
}

impl LenientRow for SqliteRow {
    fn text_at(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
        first_decoding!(self, index; i64 => int_text, String => same)
    }

    fn number_at(&self, index: usize) -> Result<Option<f64>, sqlx::Error> {
        first_decoding!(self, index; i64 => int_number, f64 => same)
    }
}

/// A table or column name from config: `name` or `schema.name`, each part
/// `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identifier {
    parts: Vec<String>,
}

impl Identifier {
    /// Checks `text`; `qualified` allows a `schema.` part (tables, not columns).
    pub(crate) fn parse(text: &str, qualified: bool) -> Result<Identifier, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let valid_part = |part: &&str| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let allowed_parts = if qualified { 2 } else { 1 };
        if parts.len() > allowed_parts || !parts.iter().all(valid_part) {
            let shape = if qualified {
                "a name such as `orders` or `shop.orders`"
            } else {
                "a name such as `status`"
            };
            return Err(format!(
                "{text:?} is not {shape}: letters, digits and `_`, not starting with a digit"
            ));
        }
        Ok(Identifier {
            parts: parts.into_iter().map(str::to_owned).collect(),
        })
    }

    /// The name quoted for `dialect`: `` `a`.`b` `` on MySQL, `"a"."b"` elsewhere.
    pub(crate) fn quoted(&self, dialect: Dialect) -> String {
        let quote = match dialect {
            Dialect::MySql => '`',
            Dialect::Postgres | Dialect::Sqlite => '"',
        };
        self.parts
            .iter()
            .map(|part| format!("{quote}{part}{quote}"))
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// The `n`th (1-based) placeholder of a statement in `dialect`.
pub(crate) fn placeholder(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Postgres => format!("${n}"),
        Dialect::MySql | Dialect::Sqlite => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_dialect_and_hide_passwords() {
        let url = DatabaseUrl::parse("mariadb://news:secret@db/toutiao").expect("a URL");
        assert_eq!(url.dialect(), Dialect::MySql);
        assert_eq!(format!("{url:?}"), "mysql://news:***@db/toutiao");
        assert_eq!(
            DatabaseUrl::parse("postgresql://db/x").map(|url| url.dialect()),
            Ok(Dialect::Postgres)
        );
        let error = DatabaseUrl::parse("redis://u:pw@h/0").expect_err("not SQL");
        assert!(error.contains("u:***@h"), "{error}");
    }

    #[test]
    fn identifiers_are_checked_and_quoted_per_dialect() {
        let table = Identifier::parse("shop.orders", true).expect("valid");
        assert_eq!(table.quoted(Dialect::MySql), "`shop`.`orders`");
        assert_eq!(table.quoted(Dialect::Postgres), "\"shop\".\"orders\"");
        for bad in [
            "",
            "1st",
            "a-b",
            "a.b.c",
            "x;drop table y",
            "a`b",
            "a\"b",
            "a.",
        ] {
            assert!(Identifier::parse(bad, true).is_err(), "{bad:?}");
        }
        assert!(Identifier::parse("shop.orders", false).is_err());
        assert_eq!(placeholder(Dialect::Postgres, 2), "$2");
        assert_eq!(placeholder(Dialect::MySql, 2), "?");
    }
}
