//! The handful of sqlx calls the shared SQL store code makes, written once for any
//! sqlx database.
//!
//! sqlx is generic over databases, but its bounds are higher-ranked
//! (`for<'c> &'c mut Connection: Executor<'c>`, `for<'q> Arguments<'q>: IntoArguments`,
//! `for<'q> i64: Encode<'q, DB>` …) and Rust does not carry such bounds along with a
//! type parameter: every generic function would have to repeat them. [`SqlDb`] states
//! them once, in a blanket impl, and offers what the store needs: run a statement,
//! fetch rows, read an integer or a text column. Values are bound through [`Arg`]: the
//! store uses only two SQL types, BIGINT and text, so the same Rust types bind alike on
//! every database.

use std::future::Future;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

/// A value bound to a `?` of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    /// A BIGINT (instants are microseconds since the epoch).
    Int(Option<i64>),
    /// A text value.
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Arg {
        Arg::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Arg {
        Arg::Int(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Arg {
        Arg::Text(Some(value.to_owned()))
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Arg {
        Arg::Text(Some(value))
    }
}

impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Arg {
        Arg::Text(value)
    }
}

/// A sqlx database the store can run on: the bounds the shared code needs, stated once.
pub(crate) trait SqlDb: Database {
    /// Runs one statement.
    fn execute<'c>(
        connection: &'c mut Self::Connection,
        sql: &'c str,
        args: Vec<Arg>,
    ) -> impl Future<Output = Result<Self::QueryResult, sqlx::Error>> + Send + 'c;

    /// Runs one query and collects its rows.
    fn fetch_all<'c>(
        connection: &'c mut Self::Connection,
        sql: &'c str,
        args: Vec<Arg>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'c;

    /// Column `index` of `row` as a nullable BIGINT.
    fn int(row: &Self::Row, index: usize) -> Result<Option<i64>, sqlx::Error>;

    /// Column `index` of `row` as nullable text.
    fn text(row: &Self::Row, index: usize) -> Result<Option<String>, sqlx::Error>;
}

impl<DB> SqlDb for DB
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    // Each driver implements Encode for Option<T> itself (there is no blanket impl).
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> String: Decode<'r, DB>,
    for<'r> Vec<u8>: Decode<'r, DB>,
    i64: Type<DB>,
    String: Type<DB>,
    Vec<u8>: Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn execute<'c>(
        connection: &'c mut DB::Connection,
        sql: &'c str,
        args: Vec<Arg>,
    ) -> impl Future<Output = Result<DB::QueryResult, sqlx::Error>> + Send + 'c {
        let mut query = sqlx::query::<DB>(sql);
        for arg in args {
            query = match arg {
                Arg::Int(value) => query.bind(value),
                Arg::Text(value) => query.bind(value),
            };
        }
        connection.execute(query)
    }

    fn fetch_all<'c>(
        connection: &'c mut DB::Connection,
        sql: &'c str,
        args: Vec<Arg>,
    ) -> impl Future<Output = Result<Vec<DB::Row>, sqlx::Error>> + Send + 'c {
        let mut query = sqlx::query::<DB>(sql);
        for arg in args {
            query = match arg {
                Arg::Int(value) => query.bind(value),
                Arg::Text(value) => query.bind(value),
            };
        }
        connection.fetch_all(query)
    }

    fn int(row: &DB::Row, index: usize) -> Result<Option<i64>, sqlx::Error> {
        row.try_get::<Option<i64>, usize>(index)
    }

    fn text(row: &DB::Row, index: usize) -> Result<Option<String>, sqlx::Error> {
        match row.try_get::<Option<String>, usize>(index) {
            // MySQL reports text in a binary collation (`utf8mb4_bin`, which ids use so
            // they compare by bytes) as VARBINARY, and sqlx then refuses `String`:
            // read the bytes, which must still be UTF-8.
            Err(sqlx::Error::ColumnDecode { .. }) => row
                .try_get::<Option<Vec<u8>>, usize>(index)?
                .map(String::from_utf8)
                .transpose()
                .map_err(|error| sqlx::Error::Decode(Box::new(error))),
            other => other,
        }
    }
}

/// Pool options shared by the dialects: the pool's size and its waits as configured,
/// and a health check only for connections that sat idle
/// ([`SqlOptions::idle_check_after`](super::SqlOptions::idle_check_after)).
///
/// sqlx pings every connection it hands out by default: a round trip per statement,
/// a third of a single add on PostgreSQL (BENCHMARKS.md). A connection in steady use is
/// checked by the statements it runs (sqlx pings it again when it comes back, and
/// closes it if that fails), so only one idle long enough for the server to have gone
/// away (a restart, a timeout) is pinged first, and replaced if it does not answer.
pub(super) fn pool_options<DB: Database>(
    options: &super::SqlOptions,
) -> sqlx::pool::PoolOptions<DB> {
    let idle_check_after = options.idle_check_after;
    sqlx::pool::PoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(move |connection, metadata| {
            Box::pin(async move {
                if metadata.idle_for < idle_check_after {
                    return Ok(true);
                }
                Ok(sqlx::Connection::ping(connection).await.is_ok())
            })
        })
}
