//! `kairos::store::open`: a store from its URL, with `${VAR}` taken from the
//! environment and errors that name what is wrong.

#![allow(clippy::unwrap_used)]

use kairos::store::url::StoreUrlError;
use kairos::store::{open, OpenError, OpenOptions};

fn options() -> OpenOptions {
    OpenOptions {
        prefix: format!("o{:08x}_", fastrand::u32(..)),
        ..OpenOptions::default()
    }
}

fn required() -> bool {
    std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1")
}

#[tokio::test]
async fn memory_and_sqlite_open_and_keep_jobs() {
    let store = open("memory://", &options()).await.unwrap();
    assert!(store.get_jobs().await.unwrap().is_empty());

    let dir = std::env::temp_dir().join(format!("kairos-open-{:08x}", fastrand::u32(..)));
    let path = dir.join("nested").join("kairos.db");
    // The directory does not exist yet: the embedded default creates what it needs.
    let url = format!("sqlite://{}", path.display());
    let store = open(&url, &options()).await.unwrap();
    assert!(store.get_jobs().await.unwrap().is_empty());
    assert!(path.exists(), "{} was not created", path.display());
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn variables_come_from_the_environment() {
    // SAFETY of the test: no other test reads this variable.
    std::env::set_var("KAIROS_OPEN_TEST_DIR", std::env::temp_dir());
    let name = format!("kairos-open-{:08x}.db", fastrand::u32(..));
    let url = format!("sqlite://${{KAIROS_OPEN_TEST_DIR}}/{name}");
    let store = open(&url, &options()).await.unwrap();
    drop(store);
    let path = std::env::temp_dir().join(&name);
    assert!(path.exists());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    let missing = open(
        "postgres://kairos:${KAIROS_NO_SUCH_VARIABLE}@localhost/jobs",
        &options(),
    )
    .await;
    match missing {
        Err(OpenError::Url(StoreUrlError::MissingVariable(name))) => {
            assert_eq!(name, "KAIROS_NO_SUCH_VARIABLE")
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a missing variable was accepted"),
    }
}

#[tokio::test]
async fn unknown_schemes_are_named() {
    let error = match open("mongodb://localhost/jobs", &options()).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("an unknown scheme was accepted"),
    };
    assert!(error.contains("\"mongodb\""), "{error}");
}

#[tokio::test]
async fn servers_open_by_url() {
    let postgres = std::env::var("KAIROS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let redis = std::env::var("KAIROS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    for url in [postgres, redis] {
        let options = options();
        match open(&url, &options).await {
            Ok(store) => {
                assert!(store.get_jobs().await.unwrap().is_empty());
                drop(store);
                clean_up(&url, &options.prefix).await;
            }
            Err(error) if !required() => println!("SKIP {url}: {error}"),
            Err(error) => panic!("{url}: {error} (KAIROS_REQUIRE_SERVICES=1)"),
        }
    }
}

#[tokio::test]
async fn a_password_never_shows_in_an_error() {
    // Nothing listens on port 1, so the store cannot be reached.
    let error = match open("redis://:hunter2@127.0.0.1:1/", &options()).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("a closed port was reachable"),
    };
    assert!(!error.contains("hunter2"), "{error}");
    assert!(error.contains("***"), "{error}");
}

/// Drops what opening a store created on a shared server.
async fn clean_up(url: &str, prefix: &str) {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        for table in [
            "jobs",
            "instances",
            "runs",
            "nodes",
            "config_generations",
            "schema_version",
        ] {
            sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{table}"))
                .execute(&pool)
                .await
                .unwrap();
        }
    } else {
        let key_prefix = format!("{}:", prefix.trim_end_matches('_'));
        let client = redis::Client::open(url).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{key_prefix}*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<i64>(&mut connection)
                .await
                .unwrap();
        }
    }
}

/// A store configured wrong (a bad table prefix, URL options that do not parse, a
/// Redis URL whose CA file is missing) is a `Config` error with its cause kept, never
/// the retryable `Unavailable` (src/store/sql/mod.rs checks that a driver's outage is
/// `Unavailable` with its cause).
#[tokio::test]
async fn a_config_mistake_is_never_unavailable_and_causes_are_kept() {
    use kairos::store::StoreErrorKind;
    use std::error::Error as _;

    let store_error = |result: Result<_, OpenError>| match result {
        Err(OpenError::Store { source, .. }) => source,
        Err(other) => panic!("not a store error: {other}"),
        Ok(_) => panic!("opened"),
    };
    let bad_prefix = OpenOptions {
        prefix: "x; DROP TABLE jobs; --".to_owned(),
        ..OpenOptions::default()
    };
    let prefix = store_error(open("sqlite://never-created.db", &bad_prefix).await);
    assert_eq!(prefix.kind(), StoreErrorKind::Config, "{prefix}");
    assert!(
        prefix.to_string().contains("invalid table prefix"),
        "{prefix}"
    );

    let options_error =
        store_error(open("postgres://u@127.0.0.1:1/db?sslmode=bogus", &options()).await);
    assert_eq!(
        options_error.kind(),
        StoreErrorKind::Config,
        "{options_error}"
    );
    assert!(options_error.source().is_some(), "{options_error:?}");

    let redis = store_error(open("redis://127.0.0.1:6379/?cacert=/nope.pem", &options()).await);
    assert_eq!(redis.kind(), StoreErrorKind::Config, "{redis}");
}
