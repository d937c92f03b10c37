//! Schema migrations: versioned, applied when a store opens, safe when several
//! schedulers open the same tables at once.
//!
//! Each dialect lists its migrations ([`Dialect::MIGRATIONS`]) and provides the lock
//! that serializes them (an advisory lock on PostgreSQL, `GET_LOCK` on MySQL, the write
//! transaction on SQLite). Under that lock the runner reads `{p}schema_version`,
//! applies what is missing and records it. The statements are idempotent, so a
//! migration interrupted on a database without transactional DDL runs again cleanly.

use sqlx::{Connection, Database};

use super::driver::SqlDb;
use super::{failure, render, Dialect, SqlStore};
use crate::store::StoreError;

/// Brings the store's tables to the newest schema version this build knows.
pub(super) async fn migrate<D: Dialect>(store: &SqlStore<D>) -> Result<(), StoreError> {
    // A connection of its own, out of the pool: if anything fails, or this future is
    // dropped half-way, dropping the connection closes it, which releases the lock
    // and rolls back what the lock left open, instead of handing a locked session
    // back to the pool.
    let mut connection = store.pool.acquire().await.map_err(failure::<D>)?.detach();
    let key = format!("kairos_schema_{}", store.prefix);
    D::lock_schema(&mut connection, &key)
        .await
        .map_err(failure::<D>)?;
    apply::<D>(&mut connection, &store.prefix).await?;
    D::unlock_schema(&mut connection, &key)
        .await
        .map_err(failure::<D>)?;
    if let Err(error) = connection.close().await {
        tracing::debug!(%error, "closing the migration connection failed");
    }
    Ok(())
}

/// Applies the missing migrations on a connection that holds the schema lock.
async fn apply<D: Dialect>(
    connection: &mut <D::Database as Database>::Connection,
    prefix: &str,
) -> Result<(), StoreError> {
    let run = |template: &str| render::<D>(template, prefix);
    D::Database::execute(
        connection,
        &run("CREATE TABLE IF NOT EXISTS {p}schema_version (\
              version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)"),
        Vec::new(),
    )
    .await
    .map_err(failure::<D>)?;
    let rows = D::Database::fetch_all(
        connection,
        &run("SELECT MAX(version) FROM {p}schema_version"),
        Vec::new(),
    )
    .await
    .map_err(failure::<D>)?;
    let current = match rows.first() {
        Some(row) => D::Database::int(row, 0).map_err(failure::<D>)?,
        None => None,
    }
    .unwrap_or(0);
    let newest = D::MIGRATIONS
        .last()
        .map_or(0, |migration| migration.version);
    if current > newest {
        // A newer kairos migrated these tables; this one would misread them.
        return Err(StoreError::corrupt(format!(
            "{}: the tables with prefix {prefix:?} are at schema version {current}, \
             newer than this kairos knows ({newest}); upgrade kairos",
            D::NAME
        )));
    }
    for migration in D::MIGRATIONS
        .iter()
        .filter(|migration| migration.version > current)
    {
        for statement in migration.statements {
            match D::Database::execute(connection, &run(statement), Vec::new()).await {
                Ok(_) => {}
                // Applied by a run that died before recording the version.
                Err(error)
                    if error
                        .as_database_error()
                        .is_some_and(|error| D::is_already_there(error)) => {}
                Err(error) => return Err(failure::<D>(error)),
            }
        }
        D::Database::execute(
            connection,
            &run("INSERT INTO {p}schema_version (version, applied_at) VALUES (?, ?)"),
            vec![
                migration.version.into(),
                chrono::Utc::now().timestamp_micros().into(),
            ],
        )
        .await
        .map_err(failure::<D>)?;
        tracing::info!(
            dialect = D::NAME,
            prefix,
            version = migration.version,
            "applied a job store schema migration"
        );
    }
    Ok(())
}
