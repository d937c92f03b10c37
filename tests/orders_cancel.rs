//! `orders.cancel` against real databases: unpaid orders are cancelled, paid
//! and missing ones are reported and left alone, and a payment racing the cancel never
//! ends with a paid order cancelled.
//!
//! Each test runs on SQLite (a temporary file), PostgreSQL and MariaDB with its own
//! orders table, dropped at the end. A server that cannot be reached prints
//! `SKIP <reason>` and passes, unless `KAIROS_REQUIRE_SERVICES=1`.

#![allow(clippy::unwrap_used)]

use kairos::task::orders::CancelOrderTask;
use kairos::task::{Task, TaskRun};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
    Mysql,
}

const ALL: [Db; 3] = [Db::Sqlite, Db::Postgres, Db::Mysql];

/// A pool of one of the databases, for the test's own statements.
#[derive(Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

/// Fetches one `(text, int)` row of `$sql` with `$id` bound, on whichever pool.
macro_rules! fetch_pair {
    ($pool:expr, $sql:expr, $id:expr) => {
        match $pool {
            Pool::Sqlite(pool) => {
                sqlx::query_as::<_, (String, i32)>($sql)
                    .bind($id)
                    .fetch_one(pool)
                    .await
            }
            Pool::Postgres(pool) => {
                sqlx::query_as::<_, (String, i32)>($sql)
                    .bind($id)
                    .fetch_one(pool)
                    .await
            }
            Pool::Mysql(pool) => {
                sqlx::query_as::<_, (String, i32)>($sql)
                    .bind($id)
                    .fetch_one(pool)
                    .await
            }
        }
    };
}

/// An orders table of its own on one database.
struct Place {
    db: Db,
    url: String,
    table: String,
    pool: Pool,
}

impl Place {
    async fn new(db: Db) -> Result<Place, String> {
        let env =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let table = format!("orders_{:08x}", fastrand::u32(..));
        let (url, pool) = match db {
            Db::Sqlite => {
                let path = std::env::temp_dir().join(format!("kairos-{table}.db"));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let pool = sqlx::SqlitePool::connect(&url)
                    .await
                    .map_err(|error| error.to_string())?;
                (url, Pool::Sqlite(pool))
            }
            Db::Postgres => {
                let url = env(
                    "KAIROS_TEST_POSTGRES_URL",
                    "postgres://postgres@127.0.0.1:5432/test",
                );
                let pool = sqlx::PgPool::connect(&url)
                    .await
                    .map_err(|error| format!("PostgreSQL: {error}"))?;
                (url, Pool::Postgres(pool))
            }
            Db::Mysql => {
                let url = env("KAIROS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
                let pool = sqlx::MySqlPool::connect(&url)
                    .await
                    .map_err(|error| format!("MariaDB: {error}"))?;
                (url, Pool::Mysql(pool))
            }
        };
        let place = Place {
            db,
            url,
            table,
            pool,
        };
        place
            .execute(&format!(
                "CREATE TABLE {} (id BIGINT PRIMARY KEY, status VARCHAR(16) NOT NULL, \
                 cancelled_at TIMESTAMP NULL)",
                place.table
            ))
            .await;
        Ok(place)
    }

    async fn execute(&self, sql: &str) {
        match &self.pool {
            Pool::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Pool::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Pool::Mysql(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap();
    }

    async fn insert(&self, id: i64, status: &str) {
        self.execute(&format!(
            "INSERT INTO {} (id, status) VALUES ({id}, '{status}')",
            self.table
        ))
        .await;
    }

    /// What the order service does on payment: paid only if still unpaid; returns
    /// whether the payment went through.
    async fn pay(&self, id: i64) -> bool {
        let sql = format!(
            "UPDATE {} SET status = 'paid' WHERE id = {} AND status = 'unpaid'",
            self.table,
            if self.db == Db::Postgres { "$1" } else { "?" }
        );
        let result = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query(&sql)
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            Pool::Postgres(pool) => sqlx::query(&sql)
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            Pool::Mysql(pool) => sqlx::query(&sql)
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
        };
        result.unwrap() == 1
    }

    /// The order's status and whether `cancelled_at` is set.
    async fn status(&self, id: i64) -> (String, bool) {
        let sql = format!(
            "SELECT status, CASE WHEN cancelled_at IS NULL THEN 0 ELSE 1 END FROM {} WHERE id = {}",
            self.table,
            if self.db == Db::Postgres { "$1" } else { "?" }
        );
        let row: (String, i32) = fetch_pair!(&self.pool, &sql, id).unwrap();
        (row.0, row.1 == 1)
    }

    fn task(&self) -> CancelOrderTask {
        CancelOrderTask::from_settings(&json!({
            "database_url": self.url,
            "table": self.table,
            "id_column": "id",
            "status_column": "status",
            "unpaid_value": "unpaid",
            "cancelled_value": "cancelled",
            "cancelled_at_column": "cancelled_at",
        }))
        .unwrap()
    }

    async fn cleanup(self) {
        self.execute(&format!("DROP TABLE {}", self.table)).await;
        if let Some(path) = self
            .url
            .strip_prefix("sqlite://")
            .and_then(|rest| rest.split('?').next())
        {
            let _ = std::fs::remove_file(path);
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
            Err(error) => {
                let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
                assert!(!required, "{db:?}: {error} (KAIROS_REQUIRE_SERVICES=1)");
                println!("SKIP {db:?}: {error}");
            }
        }
    }
}

fn cancel_run(order_id: Value) -> TaskRun {
    TaskRun {
        job_id: format!("order-cancel-{order_id}"),
        run_id: format!("{:x}", fastrand::u64(..)),
        scheduled_time: chrono::Utc::now(),
        args: json!({ "order_id": order_id }),
        from_config: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_is_cancelled_paid_is_left_alone_missing_is_reported() {
    on_each(|place| async move {
        place.insert(1, "unpaid").await;
        place.insert(2, "paid").await;
        let task = place.task();

        assert_eq!(task.run(cancel_run(json!(1))).await.unwrap(), "cancelled");
        assert_eq!(place.status(1).await, ("cancelled".to_owned(), true));

        assert_eq!(
            task.run(cancel_run(json!(2))).await.unwrap(),
            "left alone (status is paid)"
        );
        assert_eq!(place.status(2).await, ("paid".to_owned(), false));

        assert_eq!(
            task.run(cancel_run(json!(3))).await.unwrap(),
            "no such order"
        );
        // A repeated run is harmless.
        assert_eq!(
            task.run(cancel_run(json!(1))).await.unwrap(),
            "left alone (status is cancelled)"
        );
        place
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_racing_the_cancel_is_never_undone() {
    on_each(|place| async move {
        let task = std::sync::Arc::new(place.task());
        let place = std::sync::Arc::new(place);
        const ROUNDS: i64 = 200;
        for id in 1..=ROUNDS {
            place.insert(id, "unpaid").await;
        }
        // Every order is paid and cancelled at once, in waves of concurrent rounds.
        for wave in (1..=ROUNDS).collect::<Vec<_>>().chunks(20) {
            let rounds = wave.iter().map(|&id| {
                let (task, place) = (std::sync::Arc::clone(&task), std::sync::Arc::clone(&place));
                tokio::spawn(async move {
                    let cancel = tokio::spawn({
                        let task = std::sync::Arc::clone(&task);
                        async move { task.run(cancel_run(json!(id))).await.unwrap() }
                    });
                    let paid = place.pay(id).await;
                    let cancelled = cancel.await.unwrap();
                    let (status, stamped) = place.status(id).await;
                    if paid {
                        assert_eq!(status, "paid", "order {id}: paid, then {cancelled}");
                        assert_eq!(cancelled, "left alone (status is paid)", "order {id}");
                        assert!(!stamped);
                    } else {
                        assert_eq!(cancelled, "cancelled", "order {id}");
                        assert_eq!(status, "cancelled", "order {id}");
                    }
                })
            });
            for round in rounds.collect::<Vec<_>>() {
                round.await.unwrap();
            }
        }
        drop(task);
        std::sync::Arc::into_inner(place).unwrap()
    })
    .await;
}

#[tokio::test]
async fn string_ids_and_integer_statuses_bind_as_given() {
    let path = std::env::temp_dir().join(format!("kairos-orders-{:08x}.db", fastrand::u32(..)));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE shop_orders (code TEXT PRIMARY KEY, state INTEGER NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO shop_orders VALUES ('A-1', 0), ('A-2', 1)")
        .execute(&pool)
        .await
        .unwrap();
    let task = CancelOrderTask::from_settings(&json!({
        "database_url": url,
        "table": "shop_orders",
        "id_column": "code",
        "status_column": "state",
        "unpaid_value": 0,
        "cancelled_value": 3,
    }))
    .unwrap();
    assert_eq!(
        task.run(cancel_run(json!("A-1"))).await.unwrap(),
        "cancelled"
    );
    assert_eq!(
        task.run(cancel_run(json!("A-2"))).await.unwrap(),
        "left alone (status is 1)"
    );
    let state: i64 = sqlx::query_scalar("SELECT state FROM shop_orders WHERE code = 'A-1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, 3);
    pool.close().await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn unconfigured_runs_say_what_to_set() {
    let failure = CancelOrderTask::unconfigured()
        .run(cancel_run(json!(1)))
        .await
        .unwrap_err();
    assert!(
        failure.message.contains("set [tasks.orders] database_url"),
        "{}",
        failure.message
    );
}
