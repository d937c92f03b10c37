//! TLS to every database kairos talks to, against real servers with a CA the test
//! makes (README.md, "TLS to the databases").
//!
//! Each test starts its own temporary servers on free ports in a temp dir (the shared
//! servers on the standard ports are left as they are): first one without TLS, where a
//! URL that requires TLS must fail and say so; then one with a certificate for
//! `localhost` signed by the test's CA, which only accepts TLS. There the job store
//! opens over TLS (a job added and read back), a task connects over TLS, and a
//! verified connection to `127.0.0.1` (a name the certificate does not carry) fails
//! naming the cause.
//!
//! A server binary that is missing prints `SKIP <reason>` and passes, unless
//! `KAIROS_REQUIRE_SERVICES=1`, when it fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kairos::store::{open, OpenOptions};
use kairos::task::orders::CancelOrderTask;
use kairos::task::stats::StatsTask;
use kairos::task::{Task, TaskRun};
use serde_json::json;

fn required() -> bool {
    std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Passes with `SKIP` when services are optional, fails when they are required.
fn skip(reason: &str) {
    assert!(!required(), "{reason} (KAIROS_REQUIRE_SERVICES=1)");
    println!("SKIP {reason}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap()
}

/// A temp dir of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("kairos-tls-{what}-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test's CA and a server certificate for `localhost` only (not `127.0.0.1`), as
/// PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kairos test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
        std::fs::write(&pki.cert, server_cert.pem()).unwrap();
        std::fs::write(&pki.key, server_key.serialize_pem()).unwrap();
        pki
    }
}

/// A server process of the test's, stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    name: &'static str,
    child: Child,
}

impl Server {
    /// Starts `command`; its stderr goes where the command says (inherited if unset).
    fn start(name: &'static str, command: &mut Command) -> Server {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {name}: {error}"));
        Server { name, child }
    }

    fn stop(&mut self) {
        // A clean shutdown (PostgreSQL and MariaDB leave nothing behind), or, without
        // kill(1), SIGKILL at once.
        let asked = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = if asked {
            Instant::now() + Duration::from_secs(15)
        } else {
            Instant::now()
        };
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fails the test if the server exited (bad arguments, a port taken).
    fn check_alive(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{} exited with {status}:\n{log}", self.name);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits up to 30 s until `port` accepts TCP connections.
fn wait_for_port(server: &mut Server, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        server.check_alive(log);
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} did not listen on port {port}", server.name);
}

fn store_options() -> OpenOptions {
    OpenOptions {
        prefix: format!("t{:08x}_", fastrand::u32(..)),
        ..OpenOptions::default()
    }
}

/// Opens the store at `url` and proves it works: a job added is read back.
async fn store_round_trip(url: &str) {
    let store = open(url, &store_options())
        .await
        .unwrap_or_else(|error| panic!("{url}: {error}"));
    let job = common::job("over-tls", Some(common::t0()));
    store.add_job(job).await.unwrap();
    let read = store.get_job("over-tls").await.unwrap().unwrap();
    assert_eq!(read.id, "over-tls");
    assert_eq!(read.next_run_time, Some(common::t0()));
}

/// The error of opening the store at `url`, which must fail.
async fn open_error(url: &str) -> String {
    match open(url, &store_options()).await {
        Err(error) => error.to_string(),
        Ok(store) => {
            let _ = store.get_jobs().await;
            panic!("{url} opened")
        }
    }
}

/// `text` names a certificate that is not valid for the host connected to.
fn names_the_wrong_name(text: &str) {
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("certificate") && lower.contains("not valid for name"),
        "{text}"
    );
}

fn cancel_run(order_id: i64) -> TaskRun {
    TaskRun {
        job_id: format!("order-cancel-{order_id}"),
        run_id: format!("{:x}", fastrand::u64(..)),
        scheduled_time: chrono::Utc::now(),
        args: json!({ "order_id": order_id }),
        from_config: false,
    }
}

fn orders_task(url: &str, table: &str) -> CancelOrderTask {
    CancelOrderTask::from_settings(&json!({
        "database_url": url,
        "table": table,
        "id_column": "id",
        "status_column": "status",
        "unpaid_value": "unpaid",
        "cancelled_value": "cancelled",
    }))
    .unwrap()
}

/// The newest PostgreSQL server binaries: Debian keeps them out of PATH.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The `postgres` account's uid and gid, to run the server as when the test is root
/// (PostgreSQL refuses to run as root).
fn postgres_account() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres"))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_and_orders_task_over_tls() {
    use std::os::unix::process::CommandExt;
    let Some(bin) = postgres_bin() else {
        return skip("PostgreSQL: no initdb under /usr/lib/postgresql/*/bin");
    };
    let dir = TempDir::new("postgres");
    let pki = Pki::new(&dir.0);
    let data = dir.0.join("data");
    let log = dir.0.join("server.log");
    let account = if is_root() {
        let Some(account) = postgres_account() else {
            return skip("PostgreSQL: running as root and there is no postgres account");
        };
        let status = Command::new("chown")
            .args(["-R", &format!("{}:{}", account.0, account.1)])
            .arg(&dir.0)
            .status()
            .unwrap();
        assert!(status.success());
        Some(account)
    } else {
        None
    };
    // The key must be private to the server's account, or PostgreSQL refuses it.
    let status = Command::new("chmod")
        .arg("600")
        .arg(&pki.key)
        .status()
        .unwrap();
    assert!(status.success());
    let as_postgres = |command: &mut Command| {
        if let Some((uid, gid)) = account {
            command.uid(uid).gid(gid);
        }
    };
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    as_postgres(&mut initdb);
    assert!(initdb.status().unwrap().success(), "initdb failed");

    let port = free_port();
    let start = |settings: &[String]| {
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir.0)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        for setting in settings {
            postgres.arg("-c").arg(setting);
        }
        as_postgres(&mut postgres);
        // The log goes to a file the test prints if the server dies.
        postgres.stderr(std::fs::File::create(&log).unwrap());
        let mut server = Server::start("postgres", &mut postgres);
        wait_for_port(&mut server, port, &log);
        server
    };
    let server = start(&["ssl=off".to_owned()]);

    // No TLS on the server: requiring it fails, and says why.
    let plain = format!("postgres://postgres@localhost:{port}/postgres?sslmode=require");
    let error = open_error(&plain).await;
    assert!(error.contains("server does not support TLS"), "{error}");
    drop(server);

    // Now TLS, and only TLS over TCP (hostssl): a connection that works used it.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
    )
    .unwrap();
    let _server = start(&[
        "ssl=on".to_owned(),
        format!("ssl_cert_file={}", pki.cert.display()),
        format!("ssl_key_file={}", pki.key.display()),
    ]);

    let ca = pki.ca.display();
    let verified = format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    );
    store_round_trip(&verified).await;
    store_round_trip(&format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=require"
    ))
    .await;

    // Without TLS the server refuses (so the round trips above were over TLS).
    let error = open_error(&format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=disable"
    ))
    .await;
    assert!(error.contains("no encryption"), "{error}");
    // The certificate is for localhost, not 127.0.0.1.
    let error = open_error(&format!(
        "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    ))
    .await;
    names_the_wrong_name(&error);
    // Without the CA file, the system's store does not know the test's CA.
    let error = open_error(&format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full"
    ))
    .await;
    assert!(error.contains("UnknownIssuer"), "{error}");

    // orders.cancel connects over TLS with its own URL.
    let pool = sqlx::PgPool::connect(&verified).await.unwrap();
    sqlx::query("CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(16) NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO orders VALUES (1, 'unpaid')")
        .execute(&pool)
        .await
        .unwrap();
    let task = orders_task(&verified, "orders");
    assert_eq!(task.run(cancel_run(1)).await.unwrap(), "cancelled");
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "cancelled");
    pool.close().await;

    // The task's error names the cause too.
    let wrong = format!(
        "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    );
    let failure = orders_task(&wrong, "orders")
        .run(cancel_run(1))
        .await
        .unwrap_err();
    names_the_wrong_name(&failure.message);
}

/// `mariadbd` with the test's data dir, on `port`, and `extra` arguments.
fn mariadbd(data: &Path, dir: &Path, port: u16, extra: &[String]) -> Server {
    let mut command = Command::new("mariadbd");
    command
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .arg(format!("--log-error={}", dir.join("server.log").display()))
        .arg(format!("--port={port}"))
        .args(["--bind-address=127.0.0.1", "--innodb-buffer-pool-size=16M"])
        .args(["--skip-log-bin", "--innodb-flush-log-at-trx-commit=0"])
        .args(extra)
        .stderr(Stdio::null());
    if is_root() {
        command.arg("--user=root");
    }
    let mut server = Server::start("mariadbd", &mut command);
    wait_for_port(&mut server, port, &dir.join("server.log"));
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_and_orders_task_over_tls() {
    let installed = Command::new("mariadbd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        return skip("MariaDB: no mariadbd");
    }
    let dir = TempDir::new("mariadb");
    let pki = Pki::new(&dir.0);
    let data = dir.0.join("data");
    let mut install = Command::new("mariadb-install-db");
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-name-resolve",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if is_root() {
        install.arg("--user=root");
    }
    assert!(
        install.status().unwrap().success(),
        "mariadb-install-db failed"
    );

    let port = free_port();
    let server = mariadbd(&data, &dir.0, port, &["--skip-ssl".to_owned()]);
    let plain = format!("mysql://root@localhost:{port}/test?ssl-mode=REQUIRED");
    let error = open_error(&plain).await;
    assert!(error.contains("server does not support TLS"), "{error}");
    drop(server);

    let tls = [
        format!("--ssl-cert={}", pki.cert.display()),
        format!("--ssl-key={}", pki.key.display()),
        format!("--ssl-ca={}", pki.ca.display()),
        "--require-secure-transport=ON".to_owned(),
    ];
    let _server = mariadbd(&data, &dir.0, port, &tls);
    let ca = pki.ca.display();
    let verified =
        format!("mysql://root@localhost:{port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}");
    store_round_trip(&verified).await;
    store_round_trip(&format!(
        "mariadb://root@localhost:{port}/test?ssl-mode=VERIFY_CA&ssl-ca={ca}"
    ))
    .await;
    // The server takes TCP connections over TLS only (MariaDB 10.11 answers a plain
    // login with "Access denied", newer servers name the secure transport).
    let error = open_error(&format!(
        "mysql://root@localhost:{port}/test?ssl-mode=DISABLED"
    ))
    .await;
    assert!(
        error.contains("Access denied") || error.contains("secure transport"),
        "{error}"
    );
    let error = open_error(&format!(
        "mysql://root@127.0.0.1:{port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"
    ))
    .await;
    names_the_wrong_name(&error);

    let pool = sqlx::MySqlPool::connect(&verified).await.unwrap();
    sqlx::query("CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(16) NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO orders VALUES (1, 'unpaid')")
        .execute(&pool)
        .await
        .unwrap();
    let task = orders_task(&verified, "orders");
    assert_eq!(task.run(cancel_run(1)).await.unwrap(), "cancelled");
    pool.close().await;
}

/// `redis-server` on `dir` with `arguments`, listening on `port` (plain or TLS).
fn redis_server(dir: &Path, port: u16, arguments: &[String]) -> Server {
    let log = dir.join("redis.log");
    let mut command = Command::new("redis-server");
    command
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(arguments)
        .stderr(Stdio::null());
    let mut server = Server::start("redis-server", &mut command);
    wait_for_port(&mut server, port, &log);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_and_stats_task_over_tls() {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        return skip("Redis: no redis-server");
    }
    let dir = TempDir::new("redis");
    let pki = Pki::new(&dir.0);
    let ca = pki.ca.display();

    let plain_port = free_port();
    let _plain = redis_server(
        &dir.0,
        plain_port,
        &["--port".to_owned(), plain_port.to_string()],
    );
    let error = open_error(&format!("rediss://localhost:{plain_port}/0?cacert={ca}")).await;
    assert!(error.contains("TLS handshake"), "{error}");

    let port = free_port();
    let tls = [
        "--port".to_owned(),
        "0".to_owned(),
        "--tls-port".to_owned(),
        port.to_string(),
        "--tls-cert-file".to_owned(),
        pki.cert.display().to_string(),
        "--tls-key-file".to_owned(),
        pki.key.display().to_string(),
        "--tls-ca-cert-file".to_owned(),
        pki.ca.display().to_string(),
        "--tls-auth-clients".to_owned(),
        "no".to_owned(),
        "--pidfile".to_owned(),
        dir.0.join("tls.pid").display().to_string(),
    ];
    let _server = redis_server(&dir.0, port, &tls);
    let verified = format!("rediss://localhost:{port}/0?cacert={ca}");
    store_round_trip(&verified).await;
    let error = open_error(&format!("rediss://127.0.0.1:{port}/0?cacert={ca}")).await;
    names_the_wrong_name(&error);
    let error = open_error(&format!("rediss://localhost:{port}/0")).await;
    assert!(error.contains("UnknownIssuer"), "{error}");

    // stats.correct writes its counters over TLS (its SQL side is a SQLite file).
    let db = dir.0.join("news.db");
    let db_url = format!("sqlite://{}?mode=rwc", db.display());
    let pool = sqlx::SqlitePool::connect(&db_url).await.unwrap();
    sqlx::query("CREATE TABLE likes (article_id INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO likes VALUES (1), (1), (2)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let task = StatsTask::from_settings(&json!({
        "database_url": db_url,
        "redis_url": verified,
        "counters": [{
            "key": "count:likes",
            "query": "SELECT article_id, COUNT(*) FROM likes GROUP BY article_id",
        }],
    }))
    .unwrap();
    let output = task
        .run(TaskRun {
            job_id: "stats".to_owned(),
            run_id: "1".to_owned(),
            scheduled_time: chrono::Utc::now(),
            args: json!({}),
            from_config: false,
        })
        .await
        .unwrap();
    assert!(output.contains("count:likes"), "{output}");
    let client = kairos::tls::redis_client(&verified).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let scores: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("count:likes")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(scores, [("2".to_owned(), 1.0), ("1".to_owned(), 2.0)]);
}
