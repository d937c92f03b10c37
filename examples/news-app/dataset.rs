//! The news app's demo data: the schema files of this folder and a generator that fills
//! the tables with a deterministic, random-looking dataset of a chosen size.
//!
//! Shared by the `news-seed` example (`seed.rs`) and the `stats_correct` benchmark
//! (`benches/stats_correct.rs`, which includes this file with `#[path]`), so the data a
//! newcomer plays with is the data the benchmark measures.
//!
//! `size` is the number of attitudes (likes and dislikes); the other tables scale with
//! it so that the counters look like a small news site's:
//!
//! | table | rows |
//! | --- | --- |
//! | `news_attitude`, `news_collection` | size |
//! | `news_comment`, `news_comment_liking`, `user_relation` | size / 5 |
//! | `news_article_basic` | size / 10 |
//! | `user_basic` | size / 50 |
//! | `orders` | size / 100, ids from [`FIRST_ORDER_ID`] |
//!
//! Rows are written as multi-row INSERTs of literal values the generator made itself
//! (integers and fixed words), one transaction per table, so a million rows take
//! seconds, not minutes. Memory is one statement at a time.

// Each user of this file uses part of it.
#![allow(dead_code)]

use std::time::Instant;

use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::Connection;

/// The schema for MySQL/MariaDB.
pub const MYSQL_SCHEMA: &str = include_str!("schema.mysql.sql");
/// The schema for PostgreSQL.
pub const POSTGRES_SCHEMA: &str = include_str!("schema.postgres.sql");

/// The tables, children first, so they can be emptied in this order.
pub const TABLES: &[&str] = &[
    "news_comment_liking",
    "news_comment",
    "news_attitude",
    "news_collection",
    "user_relation",
    "news_article_basic",
    "user_basic",
    "orders",
];

/// Seeded orders start here, so ids below it are free for trying orders.cancel by hand.
pub const FIRST_ORDER_ID: u64 = 1000;

/// Rows per INSERT: large enough that round trips do not matter, small enough to stay
/// far below MySQL's default 16 MiB `max_allowed_packet`.
const ROWS_PER_INSERT: usize = 2000;

/// How many rows each table gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub users: u64,
    pub articles: u64,
    pub relations: u64,
    pub collections: u64,
    pub attitudes: u64,
    pub comments: u64,
    pub comment_likes: u64,
    pub orders: u64,
}

impl Sizes {
    /// The sizes for `size` attitudes (see the module docs); at least 20 users and
    /// articles, so even a tiny dataset has every counter.
    pub fn for_size(size: u64) -> Sizes {
        Sizes {
            users: (size / 50).max(20),
            articles: (size / 10).max(20),
            relations: size / 5,
            collections: size,
            attitudes: size,
            comments: size / 5,
            comment_likes: size / 5,
            orders: (size / 100).max(10),
        }
    }

    /// All rows together.
    pub fn total(&self) -> u64 {
        self.users
            + self.articles
            + self.relations
            + self.collections
            + self.attitudes
            + self.comments
            + self.comment_likes
            + self.orders
    }
}

/// The statements of a schema file: comments dropped, split at `;`.
pub fn statements(schema: &str) -> Vec<String> {
    let without_comments: String = schema
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One connection to the database being seeded.
pub enum Database {
    MySql(MySqlConnection),
    Postgres(PgConnection),
}

impl Database {
    /// Connects to a `mysql://`, `mariadb://` or `postgres://` URL.
    pub async fn connect(url: &str) -> Result<Database, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a database URL"))?;
        match scheme {
            "mysql" | "mariadb" => MySqlConnection::connect(&format!("mysql://{rest}"))
                .await
                .map(Database::MySql)
                .map_err(|error| format!("cannot connect to MySQL/MariaDB: {error}")),
            "postgres" | "postgresql" => PgConnection::connect(url)
                .await
                .map(Database::Postgres)
                .map_err(|error| format!("cannot connect to PostgreSQL: {error}")),
            _ => Err(format!(
                "{scheme}:// is not supported here; use mysql:// or postgres://"
            )),
        }
    }

    /// Runs one statement.
    pub async fn execute(&mut self, sql: &str) -> Result<(), String> {
        let result = match self {
            Database::MySql(connection) => sqlx::raw_sql(sql).execute(connection).await.map(drop),
            Database::Postgres(connection) => {
                sqlx::raw_sql(sql).execute(connection).await.map(drop)
            }
        };
        result.map_err(|error| {
            let head: String = sql.chars().take(80).collect();
            format!("{head}…: {error}")
        })
    }

    /// The schema of this database's dialect.
    pub fn schema(&self) -> &'static str {
        match self {
            Database::MySql(_) => MYSQL_SCHEMA,
            Database::Postgres(_) => POSTGRES_SCHEMA,
        }
    }

    /// Creates the tables.
    pub async fn create_schema(&mut self) -> Result<(), String> {
        for statement in statements(self.schema()) {
            self.execute(&statement).await?;
        }
        Ok(())
    }

    /// Deletes every row of the tables (not the tables).
    pub async fn empty_tables(&mut self) -> Result<(), String> {
        for table in TABLES {
            // TRUNCATE: instant on millions of rows, where DELETE would log each one.
            self.execute(&format!("TRUNCATE TABLE {table}")).await?;
        }
        Ok(())
    }

    /// Inserts `count` rows into `table`, each made by `row(index)` as `(v1, v2, …)`,
    /// in multi-row INSERTs inside one transaction.
    async fn insert(
        &mut self,
        table: &str,
        columns: &str,
        count: u64,
        mut row: impl FnMut(u64) -> String,
    ) -> Result<(), String> {
        self.execute("BEGIN").await?;
        let mut statement = String::new();
        let mut in_statement = 0;
        for index in 0..count {
            if in_statement == 0 {
                statement.clear();
                statement.push_str(&format!("INSERT INTO {table} ({columns}) VALUES "));
            } else {
                statement.push(',');
            }
            statement.push_str(&row(index));
            in_statement += 1;
            if in_statement == ROWS_PER_INSERT || index + 1 == count {
                self.execute(&statement).await?;
                in_statement = 0;
            }
        }
        self.execute("COMMIT").await
    }

    /// Fills the (empty) tables with the dataset of `sizes`; the same `seed` gives the
    /// same rows. Reports each table on stderr as it is done.
    pub async fn seed(&mut self, sizes: Sizes, seed: u64) -> Result<(), String> {
        if let Database::MySql(_) = self {
            // The generator's ids are unique by construction; InnoDB need not check
            // them row by row.
            self.execute("SET SESSION unique_checks = 0").await?;
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let started = Instant::now();
        let report = |table: &str, rows: u64| {
            eprintln!(
                "  {table:<20} {rows:>9} rows  ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
        };

        let users = sizes.users;
        self.insert(
            "user_basic",
            "user_id, mobile, user_name, status",
            users,
            |index| {
                let id = index + 1;
                // 1 in 20 accounts is disabled.
                let status = u8::from(index % 20 != 0);
                format!("({id},'{:011}','user{id}',{status})", 13_000_000_000 + id)
            },
        )
        .await?;
        report("user_basic", users);

        let articles = sizes.articles;
        let mut statuses = rng.fork();
        self.insert(
            "news_article_basic",
            "article_id, user_id, channel_id, title, status",
            articles,
            |index| {
                let id = index + 1;
                // Most articles are published (2); the rest spread over the others.
                let status = match statuses.u8(0..10) {
                    0 => 0,
                    1 => 1,
                    2 => 3,
                    3 => 4,
                    4 => 5,
                    _ => 2,
                };
                format!(
                    "({id},{},{},'article {id}',{status})",
                    statuses.u64(1..=users),
                    statuses.u8(1..=20)
                )
            },
        )
        .await?;
        report("news_article_basic", articles);

        // Pairs (user, other) unique per user: user u's j-th row points at
        // (offset(u) + j * stride) mod n, distinct for every j < per_user.
        let pair_rows = |rng: &mut fastrand::Rng, rows: u64, others: u64| {
            let per_user = rows.div_ceil(users).max(1);
            let stride = (others / per_user).max(1);
            let offsets: Vec<u64> = (0..users).map(|_| rng.u64(0..others)).collect();
            move |index: u64| {
                let user = index / per_user;
                let other = (offsets[usize::try_from(user).unwrap_or(0) % offsets.len()]
                    + (index % per_user) * stride)
                    % others;
                (user + 1, other + 1)
            }
        };

        let relations = sizes.relations;
        // The target of a follow is any user but the follower: pick among the others.
        let relation_pair = pair_rows(&mut rng, relations, users - 1);
        let mut kinds = rng.fork();
        self.insert(
            "user_relation",
            "relation_id, user_id, target_user_id, relation",
            relations,
            |index| {
                let (user, other) = relation_pair(index);
                let target = (user - 1 + other) % users + 1;
                // 80 % follow, 15 % unfollowed, 5 % blocked.
                let relation = match kinds.u8(0..20) {
                    0..=15 => 1,
                    16..=18 => 0,
                    _ => 2,
                };
                format!("({},{user},{target},{relation})", index + 1)
            },
        )
        .await?;
        report("user_relation", relations);

        let collections = sizes.collections;
        let collection_pair = pair_rows(&mut rng, collections, articles);
        let mut deleted = rng.fork();
        self.insert(
            "news_collection",
            "collection_id, user_id, article_id, is_deleted",
            collections,
            |index| {
                let (user, article) = collection_pair(index);
                let is_deleted = u8::from(deleted.u8(0..10) == 0);
                format!("({},{user},{article},{is_deleted})", index + 1)
            },
        )
        .await?;
        report("news_collection", collections);

        let attitudes = sizes.attitudes;
        let attitude_pair = pair_rows(&mut rng, attitudes, articles);
        let mut kinds = rng.fork();
        self.insert(
            "news_attitude",
            "attitude_id, user_id, article_id, attitude",
            attitudes,
            |index| {
                let (user, article) = attitude_pair(index);
                // 60 % like, 15 % dislike, 25 % withdrawn.
                let attitude = match kinds.u8(0..20) {
                    0..=11 => "1",
                    12..=14 => "0",
                    _ => "NULL",
                };
                format!("({},{user},{article},{attitude})", index + 1)
            },
        )
        .await?;
        report("news_attitude", attitudes);

        let comments = sizes.comments;
        let mut picks = rng.fork();
        self.insert(
            "news_comment",
            "comment_id, user_id, article_id, parent_id, status, content",
            comments,
            |index| {
                let id = index + 1;
                // A third are replies to an earlier comment.
                let parent = if id > 1 && picks.u8(0..3) == 0 {
                    picks.u64(1..id).to_string()
                } else {
                    "NULL".to_owned()
                };
                // 85 % approved; the rest in review, rejected or deleted.
                let status = match picks.u8(0..20) {
                    0 => 0,
                    1 => 2,
                    2 => 3,
                    _ => 1,
                };
                format!(
                    "({id},{},{},{parent},{status},'comment {id}')",
                    picks.u64(1..=users),
                    picks.u64(1..=articles)
                )
            },
        )
        .await?;
        report("news_comment", comments);

        let comment_likes = sizes.comment_likes;
        let like_pair = pair_rows(&mut rng, comment_likes, comments.max(1));
        let mut deleted = rng.fork();
        self.insert(
            "news_comment_liking",
            "liking_id, user_id, comment_id, is_deleted",
            comment_likes,
            |index| {
                let (user, comment) = like_pair(index);
                let is_deleted = u8::from(deleted.u8(0..10) == 0);
                format!("({},{user},{comment},{is_deleted})", index + 1)
            },
        )
        .await?;
        report("news_comment_liking", comment_likes);

        let orders = sizes.orders;
        let mut picks = rng.fork();
        self.insert(
            "orders",
            "id, user_id, amount_cents, status",
            orders,
            |index| {
                let status = match picks.u8(0..4) {
                    0 => "unpaid",
                    1 => "cancelled",
                    _ => "paid",
                };
                format!(
                    "({},{},{},'{status}')",
                    FIRST_ORDER_ID + index,
                    picks.u64(1..=users),
                    picks.u32(100..100_000)
                )
            },
        )
        .await?;
        report("orders", orders);
        Ok(())
    }
}
