//! Store URLs: which store a `[jobstores.NAME] url` names, with secrets taken from the
//! environment.
//!
//! `memory://`, `sqlite://PATH`, `postgres://…` (or `postgresql://`), `mysql://…` (also
//! `mariadb://`) and `redis://…` (`rediss://` over TLS). `${VAR}` anywhere in a URL is replaced by the
//! environment variable `VAR`, so passwords stay out of config files; an unset variable
//! is an error that names it. [`redact`] hides the password before a URL is logged.
//! [`open`] turns a URL into a store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{JobStore, StoreError};
use crate::secret_url::{self, ExpandError};
// Where it was first defined; benches and embedding programs name it here.
pub use crate::secret_url::redact;

/// A parsed store URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory://`: this process only.
    Memory,
    /// `sqlite://PATH`: an embedded database file, created if missing.
    Sqlite(String),
    /// `postgres://…`.
    Postgres(String),
    /// `mysql://…` (MySQL or MariaDB).
    Mysql(String),
    /// `redis://…`, or `rediss://…` over TLS.
    Redis(String),
}

/// Why a store URL was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    /// `${VAR}` names a variable that is not set.
    #[error("the environment variable {0:?} used in the store URL is not set")]
    MissingVariable(String),
    /// `${` without a closing `}`, or an empty name.
    #[error("the store URL has an unfinished ${{…}} at byte {0}")]
    BadVariable(usize),
    /// A scheme kairos has no store for.
    #[error("unknown store URL scheme {0:?} (expected memory://, sqlite://, postgres://, mysql:// or redis://)")]
    UnknownScheme(String),
    /// A `sqlite://` URL without a path.
    #[error("sqlite:// needs a file path, e.g. sqlite://kairos.db or sqlite:///var/lib/kairos/kairos.db")]
    MissingPath,
}

impl StoreUrl {
    /// Parses `url`, expanding `${VAR}` from the process environment.
    pub fn parse(url: &str) -> Result<StoreUrl, StoreUrlError> {
        StoreUrl::parse_with(url, |name| std::env::var(name).ok())
    }

    /// Parses `url`, expanding `${VAR}` with `lookup`.
    pub fn parse_with(
        url: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<StoreUrl, StoreUrlError> {
        let expanded = expand(url.trim(), lookup)?;
        let (scheme, rest) = expanded
            .split_once("://")
            .ok_or_else(|| StoreUrlError::UnknownScheme(expanded.clone()))?;
        Ok(match scheme.to_ascii_lowercase().as_str() {
            "memory" => StoreUrl::Memory,
            "sqlite" => {
                if rest.is_empty() {
                    return Err(StoreUrlError::MissingPath);
                }
                StoreUrl::Sqlite(expanded)
            }
            "postgres" | "postgresql" => StoreUrl::Postgres(expanded),
            "mysql" => StoreUrl::Mysql(expanded),
            "mariadb" => StoreUrl::Mysql(format!("mysql://{rest}")),
            "redis" | "rediss" => StoreUrl::Redis(expanded),
            other => return Err(StoreUrlError::UnknownScheme(other.to_owned())),
        })
    }

    /// The URL as the store's driver takes it.
    pub fn as_str(&self) -> &str {
        match self {
            StoreUrl::Memory => "memory://",
            StoreUrl::Sqlite(url)
            | StoreUrl::Postgres(url)
            | StoreUrl::Mysql(url)
            | StoreUrl::Redis(url) => url,
        }
    }
}

impl fmt::Debug for StoreUrl {
    /// Never prints a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(self.as_str()))
    }
}

/// Replaces each `${NAME}` with `lookup(NAME)`.
pub(crate) fn expand(
    url: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, StoreUrlError> {
    secret_url::expand(url, lookup).map_err(|error| match error {
        ExpandError::MissingVariable(name) => StoreUrlError::MissingVariable(name),
        ExpandError::BadVariable(at) => StoreUrlError::BadVariable(at),
    })
}

/// How to open a store besides its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Prefix of table names (SQL) or keys (Redis), so deployments can share a server.
    pub prefix: String,
    /// How long a running-instance slot of a scheduler that died keeps counting.
    pub instance_ttl: Duration,
}

impl Default for OpenOptions {
    /// Prefix `kairos_`, and slots that expire after an hour.
    fn default() -> OpenOptions {
        OpenOptions {
            prefix: "kairos_".to_owned(),
            instance_ttl: Duration::from_secs(3600),
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is wrong.
    #[error(transparent)]
    Url(#[from] StoreUrlError),
    /// The store refused or could not be reached.
    #[error("{url:?}: {source}")]
    Store {
        /// The URL, without its password.
        url: String,
        /// What the store said.
        source: StoreError,
    },
}

/// Opens the store `url` names (`${VAR}` expanded from the environment).
pub async fn open(url: &str, options: &OpenOptions) -> Result<Arc<dyn JobStore>, OpenError> {
    let parsed = StoreUrl::parse(url)?;
    let failed = |source: StoreError| OpenError::Store {
        url: redact(parsed.as_str()),
        source,
    };
    match &parsed {
        StoreUrl::Memory => Ok(Arc::new(super::memory::MemoryStore::new())),
        StoreUrl::Sqlite(url) | StoreUrl::Postgres(url) | StoreUrl::Mysql(url) => {
            let sql = super::sql::SqlOptions {
                table_prefix: options.prefix.clone(),
                instance_ttl: options.instance_ttl,
                ..super::sql::SqlOptions::default()
            };
            super::sql::connect(url, sql).await.map_err(failed)
        }
        StoreUrl::Redis(url) => {
            // Redis keys read better with a colon: `kairos:jobs`.
            let prefix = match options.prefix.strip_suffix('_') {
                Some(stem) => format!("{stem}:"),
                None => options.prefix.clone(),
            };
            super::redis::connect(url, &prefix, options.instance_ttl)
                .await
                .map_err(failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "PGPASSWORD" => Some("s3cret".to_owned()),
            "HOST" => Some("db.internal".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn recognises_every_scheme() {
        let parse = |url: &str| StoreUrl::parse_with(url, lookup);
        assert_eq!(parse("memory://"), Ok(StoreUrl::Memory));
        assert_eq!(
            parse("sqlite://kairos.db"),
            Ok(StoreUrl::Sqlite("sqlite://kairos.db".to_owned()))
        );
        assert_eq!(
            parse("postgresql://u@h/db"),
            Ok(StoreUrl::Postgres("postgresql://u@h/db".to_owned()))
        );
        assert_eq!(
            parse("mariadb://root@h/test"),
            Ok(StoreUrl::Mysql("mysql://root@h/test".to_owned()))
        );
        assert_eq!(
            parse("redis://h:6379"),
            Ok(StoreUrl::Redis("redis://h:6379".to_owned()))
        );
        assert_eq!(parse("sqlite://"), Err(StoreUrlError::MissingPath));
        assert_eq!(
            parse("mongodb://h"),
            Err(StoreUrlError::UnknownScheme("mongodb".to_owned()))
        );
        assert!(parse("kairos.db").is_err());
    }

    #[test]
    fn expands_variables_and_names_missing_ones() {
        let parsed = StoreUrl::parse_with("postgres://kairos:${PGPASSWORD}@${HOST}/jobs", lookup);
        assert_eq!(
            parsed,
            Ok(StoreUrl::Postgres(
                "postgres://kairos:s3cret@db.internal/jobs".to_owned()
            ))
        );
        assert_eq!(
            StoreUrl::parse_with("postgres://k:${NOPE}@h/db", lookup),
            Err(StoreUrlError::MissingVariable("NOPE".to_owned()))
        );
        assert_eq!(
            StoreUrl::parse_with("postgres://k:${PGPASSWORD@h/db", lookup),
            Err(StoreUrlError::BadVariable(13))
        );
        assert_eq!(
            StoreUrl::parse_with("postgres://k:${}@h/db", lookup),
            Err(StoreUrlError::BadVariable(13))
        );
    }

    #[test]
    fn never_shows_a_password() {
        assert_eq!(
            redact("postgres://kairos:s3cret@db/jobs?sslmode=require"),
            "postgres://kairos:***@db/jobs?sslmode=require"
        );
        assert_eq!(redact("redis://:pass@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("mysql://root@h/test"), "mysql://root@h/test");
        let parsed = StoreUrl::parse_with("postgres://k:${PGPASSWORD}@h/db", lookup)
            .unwrap_or(StoreUrl::Memory);
        assert!(!format!("{parsed:?}").contains("s3cret"));
    }
}
