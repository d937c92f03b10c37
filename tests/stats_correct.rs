//! `stats.correct` against real databases and Redis.
//!
//! Each test seeds the news app's tables with a random small dataset (on SQLite, a
//! fresh MariaDB database and a fresh PostgreSQL schema), works out the counters from
//! the generated rows in Rust (the truth the queries must reproduce), scrambles the
//! Redis counters and runs the task. Every test uses its own database or schema and its
//! own Redis key prefix, so tests run in parallel. A server that cannot be reached
//! prints `SKIP <reason>` and passes, unless `KAIROS_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kairos::task::stats::{news_app_counters, StatsTask};
use kairos::task::{Task, TaskFailure, TaskRun};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};

mod news {
    //! The news app's tables, a random dataset and its counters.

    use std::collections::BTreeMap;

    pub const SCHEMA: &[&str] = &[
        "CREATE TABLE user_basic (user_id BIGINT PRIMARY KEY, user_name VARCHAR(64) NOT NULL, status INT NOT NULL)",
        "CREATE TABLE user_relation (relation_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, target_user_id BIGINT NOT NULL, relation INT NOT NULL)",
        "CREATE TABLE news_article_basic (article_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, title VARCHAR(128) NOT NULL, status INT NOT NULL)",
        "CREATE TABLE news_collection (collection_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, article_id BIGINT NOT NULL, is_deleted INT NOT NULL)",
        "CREATE TABLE news_attitude (attitude_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, article_id BIGINT NOT NULL, attitude INT NULL)",
        "CREATE TABLE news_comment (comment_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, article_id BIGINT NOT NULL, parent_id BIGINT NULL, status INT NOT NULL)",
        "CREATE TABLE news_comment_liking (liking_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, comment_id BIGINT NOT NULL, is_deleted INT NOT NULL)",
    ];

    /// Rows as SQL literals, per table.
    pub struct Dataset {
        pub inserts: Vec<String>,
        /// key -> member -> count: the truth.
        pub counters: BTreeMap<&'static str, BTreeMap<String, f64>>,
    }

    fn bump(map: &mut BTreeMap<String, f64>, member: i64) {
        *map.entry(member.to_string()).or_default() += 1.0;
    }

    fn inserts(table: &str, rows: &[String]) -> Vec<String> {
        rows.chunks(100)
            .map(|chunk| format!("INSERT INTO {table} VALUES {}", chunk.join(", ")))
            .collect()
    }

    /// Pairs (a, b) drawn from 1..=a_max × 1..=b_max, without repeats.
    fn distinct_pairs(
        rng: &mut fastrand::Rng,
        n: usize,
        a_max: i64,
        b_max: i64,
    ) -> Vec<(i64, i64)> {
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < n {
            seen.insert((rng.i64(1..=a_max), rng.i64(1..=b_max)));
        }
        let mut pairs: Vec<_> = seen.into_iter().collect();
        rng.shuffle(&mut pairs);
        pairs
    }

    pub fn generate(seed: u64) -> Dataset {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (users, articles) = (30_i64, 60_i64);
        let mut counters: BTreeMap<&'static str, BTreeMap<String, f64>> = BTreeMap::new();
        for counter in kairos::task::stats::news_app_counters() {
            counters.insert(Box::leak(counter.key.into_boxed_str()), BTreeMap::new());
        }
        let mut count = |key: &str, member: i64| bump(counters.get_mut(key).unwrap(), member);
        let mut statements = Vec::new();

        let rows: Vec<String> = (1..=users)
            .map(|id| format!("({id}, 'user{id}', {})", rng.i64(0..=1)))
            .collect();
        statements.extend(inserts("user_basic", &rows));

        let mut article_owner = BTreeMap::new();
        let rows: Vec<String> = (1..=articles)
            .map(|id| {
                let (owner, status) = (rng.i64(1..=users), rng.i64(0..=5));
                article_owner.insert(id, owner);
                if status == 2 {
                    count("count:user:arts", owner);
                }
                format!("({id}, {owner}, 'article {id}', {status})")
            })
            .collect();
        statements.extend(inserts("news_article_basic", &rows));

        let rows: Vec<String> = distinct_pairs(&mut rng, 150, users, users)
            .into_iter()
            .enumerate()
            .map(|(index, (user, target))| {
                let relation = rng.i64(0..=2);
                if relation == 1 {
                    count("count:user:followings", user);
                    count("count:user:fans", target);
                }
                format!("({}, {user}, {target}, {relation})", index + 1)
            })
            .collect();
        statements.extend(inserts("user_relation", &rows));

        let rows: Vec<String> = distinct_pairs(&mut rng, 150, users, articles)
            .into_iter()
            .enumerate()
            .map(|(index, (user, article))| {
                let deleted = i64::from(rng.u8(..) < 50);
                if deleted == 0 {
                    count("count:art:collecting", article);
                    count("count:user:art:collecting", user);
                }
                format!("({}, {user}, {article}, {deleted})", index + 1)
            })
            .collect();
        statements.extend(inserts("news_collection", &rows));

        let rows: Vec<String> = distinct_pairs(&mut rng, 200, users, articles)
            .into_iter()
            .enumerate()
            .map(|(index, (user, article))| {
                let attitude = match rng.u8(0..3) {
                    0 => {
                        count("count:art:dislike", article);
                        "0".to_owned()
                    }
                    1 => {
                        count("count:art:liking", article);
                        count("count:user:liked", article_owner[&article]);
                        "1".to_owned()
                    }
                    _ => "NULL".to_owned(),
                };
                format!("({}, {user}, {article}, {attitude})", index + 1)
            })
            .collect();
        statements.extend(inserts("news_attitude", &rows));

        let comments = 120_i64;
        let rows: Vec<String> = (1..=comments)
            .map(|id| {
                let article = rng.i64(1..=articles);
                let parent = (id > 10 && rng.bool()).then(|| rng.i64(1..id));
                let status = rng.i64(0..=3);
                if status == 1 {
                    count("count:art:comm", article);
                    if let Some(parent) = parent {
                        count("count:art:reply", parent);
                    }
                }
                let parent = parent.map_or("NULL".to_owned(), |parent| parent.to_string());
                format!(
                    "({id}, {}, {article}, {parent}, {status})",
                    rng.i64(1..=users)
                )
            })
            .collect();
        statements.extend(inserts("news_comment", &rows));

        let rows: Vec<String> = distinct_pairs(&mut rng, 150, users, comments)
            .into_iter()
            .enumerate()
            .map(|(index, (user, comment))| {
                let deleted = i64::from(rng.u8(..) < 60);
                if deleted == 0 {
                    count("count:comm:liking", comment);
                }
                format!("({}, {user}, {comment}, {deleted})", index + 1)
            })
            .collect();
        statements.extend(inserts("news_comment_liking", &rows));

        Dataset {
            inserts: statements,
            counters,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
    Mysql,
}

const ALL: [Db; 3] = [Db::Sqlite, Db::Postgres, Db::Mysql];

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Skips (or, with `KAIROS_REQUIRE_SERVICES=1`, fails) a test that cannot run here.
fn skip(reason: &str) {
    let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
    assert!(!required, "{reason} (KAIROS_REQUIRE_SERVICES=1)");
    println!("SKIP {reason}");
}

/// A fresh database (MariaDB), schema (PostgreSQL) or file (SQLite) with the news
/// tables, and a fresh Redis key prefix.
struct Place {
    db: Db,
    name: String,
    url: String,
    prefix: String,
    redis: MultiplexedConnection,
}

impl Place {
    async fn new(db: Db) -> Result<Place, String> {
        let name = format!("kn{:08x}", fastrand::u32(..));
        let redis_url = env("KAIROS_TEST_REDIS_URL", "redis://127.0.0.1:6379/");
        let redis = redis::Client::open(redis_url)
            .map_err(|error| error.to_string())?
            .get_multiplexed_async_connection()
            .await
            .map_err(|error| format!("Redis: {error}"))?;
        let url = match db {
            Db::Sqlite => {
                let path = std::env::temp_dir().join(format!("kairos-{name}.db"));
                format!("sqlite://{}?mode=rwc", path.display())
            }
            Db::Postgres => {
                let base = env(
                    "KAIROS_TEST_POSTGRES_URL",
                    "postgres://postgres@127.0.0.1:5432/test",
                );
                let pool = sqlx::PgPool::connect(&base)
                    .await
                    .map_err(|error| format!("PostgreSQL: {error}"))?;
                sqlx::query(&format!("CREATE SCHEMA {name}"))
                    .execute(&pool)
                    .await
                    .map_err(|error| error.to_string())?;
                pool.close().await;
                let join = if base.contains('?') { '&' } else { '?' };
                format!("{base}{join}options=-c%20search_path%3D{name}")
            }
            Db::Mysql => {
                let base = env("KAIROS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
                let pool = sqlx::MySqlPool::connect(&base)
                    .await
                    .map_err(|error| format!("MariaDB: {error}"))?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .map_err(|error| error.to_string())?;
                pool.close().await;
                let (head, _) = base.rsplit_once('/').unwrap();
                format!("{head}/{name}")
            }
        };
        let place = Place {
            db,
            prefix: format!("{name}:"),
            name,
            url,
            redis,
        };
        for statement in news::SCHEMA {
            place.execute(statement).await;
        }
        Ok(place)
    }

    async fn execute(&self, statement: &str) {
        match self.db {
            Db::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                sqlx::query(statement).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Db::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                sqlx::query(statement).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Db::Mysql => {
                let pool = sqlx::MySqlPool::connect(&self.url).await.unwrap();
                sqlx::query(statement).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    async fn seed(&self, seed: u64) -> news::Dataset {
        let dataset = news::generate(seed);
        for statement in &dataset.inserts {
            self.execute(statement).await;
        }
        dataset
    }

    fn task(&self, extra: Value) -> StatsTask {
        let mut settings = json!({
            "database_url": self.url,
            "redis_url": env("KAIROS_TEST_REDIS_URL", "redis://127.0.0.1:6379/"),
            "key_prefix": self.prefix,
        });
        if let (Value::Object(settings), Value::Object(extra)) = (&mut settings, extra) {
            settings.extend(extra);
        }
        StatsTask::from_settings(&settings).unwrap()
    }

    fn key(&self, counter: &str) -> String {
        format!("{}{counter}", self.prefix)
    }

    async fn read(&self, counter: &str) -> BTreeMap<String, f64> {
        let pairs: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.key(counter))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.redis.clone())
            .await
            .unwrap();
        pairs.into_iter().collect()
    }

    /// Drops the database or schema and the keys.
    async fn cleanup(self) {
        let mut redis = self.redis.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut redis)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut redis)
                .await
                .unwrap();
        }
        match self.db {
            Db::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                let path = path.split('?').next().unwrap_or(path);
                let _ = std::fs::remove_file(path);
            }
            Db::Postgres => {
                let base = env(
                    "KAIROS_TEST_POSTGRES_URL",
                    "postgres://postgres@127.0.0.1:5432/test",
                );
                let pool = sqlx::PgPool::connect(&base).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            Db::Mysql => {
                let base = env("KAIROS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
                let pool = sqlx::MySqlPool::connect(&base).await.unwrap();
                sqlx::query(&format!("DROP DATABASE {}", self.name))
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
        }
    }
}

/// Runs `test` on every database that can be reached.
async fn on_each<F, Fut>(test: F)
where
    F: Fn(Place) -> Fut,
    Fut: std::future::Future<Output = Place>,
{
    for db in ALL {
        match Place::new(db).await {
            Ok(place) => test(place).await.cleanup().await,
            Err(error) => skip(&format!("{db:?}: {error}")),
        }
    }
}

fn run() -> TaskRun {
    TaskRun {
        job_id: "fix-statistics".to_owned(),
        run_id: format!("{:x}", fastrand::u64(..)),
        scheduled_time: chrono::Utc::now(),
        args: Value::Null,
        from_config: false,
    }
}

/// Writes a scrambled version of `truth` to `key`: wrong scores, extra members,
/// missing members, or no key at all, picked by `mode`.
async fn scramble(
    redis: &mut MultiplexedConnection,
    key: &str,
    truth: &BTreeMap<String, f64>,
    mode: usize,
    rng: &mut fastrand::Rng,
) {
    redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(redis)
        .await
        .unwrap();
    if mode % 5 == 4 {
        return; // missing key
    }
    let mut scrambled = truth.clone();
    for (index, (member, score)) in truth.iter().enumerate() {
        match mode % 5 {
            0 if index % 2 == 0 => {
                scrambled.insert(member.clone(), score + f64::from(rng.u8(1..9)));
            }
            1 if index % 3 == 0 => {
                scrambled.remove(member);
            }
            3 => {
                // Everything at once.
                if index % 4 == 0 {
                    scrambled.remove(member);
                } else if index % 4 == 1 {
                    scrambled.insert(member.clone(), score * 3.0);
                }
            }
            _ => {}
        }
    }
    if mode % 5 == 2 || mode % 5 == 3 {
        for extra in 0..5 {
            scrambled.insert(format!("{}", 9000 + extra), f64::from(rng.u8(1..9)));
        }
    }
    for (member, score) in scrambled {
        redis::cmd("ZADD")
            .arg(key)
            .arg(score)
            .arg(member)
            .query_async::<()>(redis)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_makes_every_counter_equal_to_the_sql_truth_and_a_second_changes_nothing() {
    on_each(|place| async move {
        let dataset = place.seed(fastrand::u64(..)).await;
        let mut rng = fastrand::Rng::new();
        let mut redis = place.redis.clone();
        for (mode, (counter, truth)) in dataset.counters.iter().enumerate() {
            scramble(&mut redis, &place.key(counter), truth, mode, &mut rng).await;
        }
        // A leftover temporary key of a crashed run must not leak into the result.
        redis::cmd("ZADD")
            .arg(format!("{}:kairos-tmp", place.key("count:user:arts")))
            .arg(1)
            .arg("424242")
            .query_async::<()>(&mut redis)
            .await
            .unwrap();

        let task = place.task(json!({"batch_size": 7}));
        let output = task.run(run()).await.unwrap();
        assert!(output.starts_with("11 counters corrected"), "{output}");
        for (counter, truth) in &dataset.counters {
            assert_eq!(
                &place.read(counter).await,
                truth,
                "{:?} {counter}\n{output}",
                place.db
            );
        }
        let leftovers: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*kairos-tmp", place.prefix))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let again = task.run(run()).await.unwrap();
        assert!(
            again.starts_with("11 counters corrected: 0 added, 0 changed, 0 removed"),
            "{:?}: {again}",
            place.db
        );
        place
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_what_changed() {
    on_each(|place| async move {
        let dataset = place.seed(7).await;
        let counter = "count:art:liking";
        let truth = &dataset.counters[counter];
        assert!(truth.len() >= 3, "the seed gives likes");
        let mut redis = place.redis.clone();
        let key = place.key(counter);
        // One member missing, one with a wrong score, two that should not be there.
        let mut members = truth.iter();
        let (missing, _) = members.next().unwrap();
        let (wrong, score) = members.next().unwrap();
        for (member, score) in truth.iter().filter(|(member, _)| *member != missing) {
            redis::cmd("ZADD")
                .arg(&key)
                .arg(*score)
                .arg(member)
                .query_async::<()>(&mut redis)
                .await
                .unwrap();
        }
        redis::cmd("ZADD")
            .arg(&key)
            .arg(score + 10.0)
            .arg(wrong)
            .arg(1)
            .arg("90001")
            .arg(2)
            .arg("90002")
            .query_async::<()>(&mut redis)
            .await
            .unwrap();
        let task = place.task(json!({"counters": [
            {"key": counter, "query": news_app_counters().iter().find(|c| c.key == counter).unwrap().query}
        ]}));
        let output = task.run(run()).await.unwrap();
        assert!(
            output.contains(&format!(
                "{key}: {} members; 1 added, 1 changed, 2 removed",
                truth.len()
            )),
            "{output}"
        );
        place
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_counter_missing_or_half_written() {
    on_each(|place| async move {
        let dataset = place.seed(11).await;
        let counter = "count:art:comm";
        let truth = dataset.counters[counter].clone();
        let key = place.key(counter);
        let mut redis = place.redis.clone();
        // The old set: one member, so any partial state would show as another size.
        redis::cmd("ZADD")
            .arg(&key)
            .arg(1)
            .arg("1")
            .query_async::<()>(&mut redis)
            .await
            .unwrap();
        let sizes = [1_u64, u64::try_from(truth.len()).unwrap()];
        let member = truth.keys().next().unwrap().clone();

        let done = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn({
            let (done, key, mut redis) = (Arc::clone(&done), key.clone(), redis.clone());
            async move {
                let mut reads = 0_u64;
                while !done.load(Ordering::Relaxed) {
                    let (size, _score): (u64, Option<f64>) = redis::pipe()
                        .atomic()
                        .cmd("ZCARD")
                        .arg(&key)
                        .cmd("ZSCORE")
                        .arg(&key)
                        .arg(&member)
                        .query_async(&mut redis)
                        .await
                        .unwrap();
                    assert!(sizes.contains(&size), "a reader saw {size} members");
                    reads += 1;
                }
                reads
            }
        });
        // Batches of one: as many steps as there are members for a reader to fall into.
        let task = place.task(json!({
            "batch_size": 1,
            "counters": [{"key": counter, "query": news_app_counters().iter().find(|c| c.key == counter).unwrap().query}],
        }));
        for _ in 0..3 {
            task.run(run()).await.unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let reads = reader.await.unwrap();
        assert!(reads > 0);
        assert_eq!(place.read(counter).await, truth);
        place
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_with_broken_sql_fails_alone_and_keeps_its_old_key() {
    on_each(|place| async move {
        let dataset = place.seed(3).await;
        let mut redis = place.redis.clone();
        let broken = place.key("count:broken");
        redis::cmd("ZADD")
            .arg(&broken)
            .arg(5)
            .arg("1")
            .query_async::<()>(&mut redis)
            .await
            .unwrap();
        let query = |key: &str| {
            news_app_counters()
                .into_iter()
                .find(|counter| counter.key == key)
                .unwrap()
                .query
        };
        let task = place.task(json!({"counters": [
            {"key": "count:user:arts", "query": query("count:user:arts")},
            {"key": "count:broken", "query": "SELECT nope FROM no_such_table GROUP BY nope"},
            {"key": "count:user:fans", "query": query("count:user:fans")},
        ]}));
        let failure: TaskFailure = task.run(run()).await.unwrap_err();
        let lines: Vec<&str> = failure.message.lines().collect();
        assert_eq!(lines.len(), 4, "{}", failure.message);
        assert!(lines[0].starts_with("1 of 3 counters failed"), "{lines:?}");
        assert!(
            lines[1].starts_with(&place.key("count:user:arts")),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with(&format!("{broken}: FAILED: the query failed")),
            "{lines:?}"
        );
        assert!(
            lines[3].starts_with(&place.key("count:user:fans")),
            "{lines:?}"
        );
        assert_eq!(
            place.read("count:user:arts").await,
            dataset.counters["count:user:arts"]
        );
        assert_eq!(
            place.read("count:user:fans").await,
            dataset.counters["count:user:fans"]
        );
        assert_eq!(
            place.read("count:broken").await,
            BTreeMap::from([("1".to_owned(), 5.0)])
        );
        place
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_result_deletes_the_key() {
    on_each(|place| async move {
        let mut redis = place.redis.clone();
        let key = place.key("count:user:arts");
        redis::cmd("ZADD")
            .arg(&key)
            .arg(3)
            .arg("1")
            .arg(4)
            .arg("2")
            .query_async::<()>(&mut redis)
            .await
            .unwrap();
        // No rows seeded: every counter is empty.
        let output = place.task(json!({})).run(run()).await.unwrap();
        assert!(
            output.contains(&format!("{key}: empty, key deleted; 2 removed")),
            "{output}"
        );
        let exists: u64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(exists, 0);
        place
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_redis_fails_every_counter_and_the_run() {
    let task = StatsTask::from_settings(&json!({
        "database_url": "sqlite://:memory:",
        "redis_url": "redis://127.0.0.1:1/",
        "counters": [{"key": "a", "query": "SELECT 1, 1"}, {"key": "b", "query": "SELECT 1, 1"}],
    }))
    .unwrap();
    let failure = task.run(run()).await.unwrap_err();
    assert!(
        failure.message.starts_with("2 of 2 counters failed"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("\na: FAILED: cannot connect"));
    assert!(failure.message.contains("\nb: FAILED: cannot connect"));
}

/// A `redis-server` of the test's own on a free port, without persistence; killed
/// (SIGKILL) when dropped if still running.
struct PrivateRedis {
    child: std::process::Child,
    url: String,
}

impl PrivateRedis {
    /// Starts one, or says why not (no `redis-server` on PATH, no start).
    async fn start() -> Result<PrivateRedis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| error.to_string())?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|error| format!("redis-server: {error}"))?;
        let server = PrivateRedis {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        for _ in 0..250 {
            if server.connect().await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(format!("redis-server on port {port} did not start"))
    }

    async fn connect(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        redis::Client::open(self.url.as_str())?
            .get_multiplexed_async_connection()
            .await
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// "Redis going away mid-run fails the run cleanly and leaves the old keys
/// intact". The server is killed while the first counter's new set is half built under
/// its temporary key. Without persistence nothing survives the kill, so what is
/// asserted is what can be known: a reader looping over the live key until the kill
/// only ever saw the old set (never a missing key, never a partial new one), the kill
/// came mid-way (the temporary key had members and fewer than all), and the run fails
/// promptly with one line per counter saying Redis failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_mid_run_fails_every_counter_and_readers_only_saw_the_old_sets() {
    let mut server = match PrivateRedis::start().await {
        Ok(server) => server,
        Err(reason) => return skip(&reason),
    };
    const ROWS: u32 = 30_000;
    let path = std::env::temp_dir().join(format!("kairos-outage-{:08x}.db", fastrand::u32(..)));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for statement in news::SCHEMA {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    // One like and one dislike on each of ROWS articles: two counters of ROWS members.
    sqlx::query(&format!(
        "INSERT INTO news_attitude \
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {ROWS}) \
         SELECT x, 1, x, 1 FROM n UNION ALL SELECT x + {ROWS}, 2, x, 0 FROM n"
    ))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let keys = ["count:art:liking", "count:art:dislike"];
    let mut redis = server.connect().await.unwrap();
    for key in keys {
        redis::cmd("ZADD")
            .arg(key)
            .arg(5)
            .arg("1")
            .arg(5)
            .arg("2")
            .arg(5)
            .arg("3")
            .query_async::<()>(&mut redis)
            .await
            .unwrap();
    }
    let task = StatsTask::from_settings(&json!({
        "database_url": url,
        "redis_url": server.url,
        // A round trip per member: the run takes long enough to be caught mid-way.
        "batch_size": 1,
        "counters": keys.iter().map(|key| json!({
            "key": key,
            "query": news_app_counters().into_iter().find(|c| c.key == *key).unwrap().query,
        })).collect::<Vec<_>>(),
    }))
    .unwrap();

    // Every (ZCARD, ZSCORE of "1") a reader saw of the first key, until Redis went away.
    let reader = tokio::spawn({
        let mut redis = server.connect().await.unwrap();
        async move {
            let mut seen = Vec::new();
            loop {
                let read: Result<(u64, Option<f64>), _> = redis::pipe()
                    .atomic()
                    .cmd("ZCARD")
                    .arg(keys[0])
                    .cmd("ZSCORE")
                    .arg(keys[0])
                    .arg("1")
                    .query_async(&mut redis)
                    .await;
                match read {
                    Ok(read) => seen.push(read),
                    Err(_) => return seen,
                }
            }
        }
    });
    let started = std::time::Instant::now();
    let run = tokio::spawn(async move { task.run(run()).await });

    let temp = format!("{}:kairos-tmp", keys[0]);
    let mut built = 0_u64;
    while built < 500 {
        built = redis::cmd("ZCARD")
            .arg(&temp)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(!run.is_finished(), "the run ended before Redis went away");
    }
    let built_at_kill: u64 = redis::cmd("ZCARD")
        .arg(&temp)
        .query_async(&mut redis)
        .await
        .unwrap();
    server.kill();
    assert!(
        built_at_kill < u64::from(ROWS),
        "killed mid-way: {built_at_kill} of {ROWS} built"
    );

    let failure = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("the run fails promptly once Redis is gone")
        .unwrap()
        .expect_err("the run fails");
    let lines: Vec<&str> = failure.message.lines().collect();
    assert_eq!(lines.len(), 3, "{}", failure.message);
    assert!(lines[0].starts_with("2 of 2 counters failed"), "{lines:?}");
    for (line, key) in lines[1..].iter().zip(keys) {
        assert!(
            line.starts_with(&format!("{key}: FAILED: Redis")),
            "{line:?}\n{}",
            failure.message
        );
    }
    let seen = reader.await.unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|read| *read == (3, Some(5.0))),
        "a reader saw something other than the old set: {:?}",
        seen.iter().find(|read| **read != (3, Some(5.0)))
    );
    println!(
        "killed Redis with {built_at_kill} of {ROWS} members built, {:?} into the run; \
         {} reads saw the old set; the run said:\n{}",
        started.elapsed(),
        seen.len(),
        failure.message
    );
    let _ = std::fs::remove_file(&path);
}
