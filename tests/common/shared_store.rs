//! A run's own corner of a shared store (PostgreSQL, MariaDB, Redis): a random
//! prefix so concurrent tests never meet, and a clean-up that drops what it made.

use std::sync::Arc;

use kairos::store::prelude::*;
use kairos::store::{self, OpenOptions};

/// The shared stores several daemons can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Postgres,
    Mariadb,
    Redis,
}

/// Where one run's store lives.
pub struct Place {
    /// Which store.
    pub db: Db,
    /// The store's URL, from the environment or the local default.
    pub url: String,
    /// A random table or key prefix, so runs never meet.
    pub prefix: String,
}

impl Place {
    /// A fresh place on `db`; `tag` starts the prefix, naming the test file in leftovers.
    pub fn new(db: Db, tag: &str) -> Place {
        let env = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_owned());
        let url = match db {
            Db::Postgres => env(
                "KAIROS_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            Db::Mariadb => env("KAIROS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
            Db::Redis => env("KAIROS_TEST_REDIS_URL", "redis://127.0.0.1:6379/"),
        };
        Place {
            db,
            url,
            prefix: format!("{tag}{:08x}_", fastrand::u32(..)),
        }
    }

    /// Opens the store at this place.
    pub async fn open(&self) -> Result<Arc<dyn JobStore>, store::OpenError> {
        let options = OpenOptions {
            prefix: self.prefix.clone(),
            ..OpenOptions::default()
        };
        store::open(&self.url, &options).await
    }

    /// Drops the run's tables or keys.
    pub async fn clean(&self) {
        let tables = [
            "jobs",
            "instances",
            "runs",
            "nodes",
            "config_generations",
            "alert_claims",
            "waiters",
            "schema_version",
        ];
        let statements = tables.map(|table| format!("DROP TABLE IF EXISTS {}{table}", self.prefix));
        match self.db {
            Db::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                for statement in &statements {
                    sqlx::query(statement).execute(&pool).await.unwrap();
                }
                pool.close().await;
            }
            Db::Mariadb => {
                let pool = sqlx::MySqlPool::connect(&self.url).await.unwrap();
                for statement in &statements {
                    sqlx::query(statement).execute(&pool).await.unwrap();
                }
                pool.close().await;
            }
            Db::Redis => {
                let client = ::redis::Client::open(self.url.as_str()).unwrap();
                let mut connection = client.get_multiplexed_async_connection().await.unwrap();
                // The store turns the trailing `_` into `:`.
                let pattern = format!("{}*", self.prefix.trim_end_matches('_'));
                let keys: Vec<String> = ::redis::cmd("KEYS")
                    .arg(pattern)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                if !keys.is_empty() {
                    ::redis::cmd("DEL")
                        .arg(keys)
                        .query_async::<i64>(&mut connection)
                        .await
                        .unwrap();
                }
            }
        }
    }
}
