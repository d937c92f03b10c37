//! `kairos jobs` and `kairos runs`, the real binary against an API served in this
//! process: a scheduler with a memory store and an `orders.cancel` task, on
//! 127.0.0.1 with a token, in a tokio runtime on its own thread.
//!
//! Covers the operator's round trip (add with a delay, list, show, pause, resume,
//! reschedule, run, runs, remove), the exit statuses (1 for what the API refuses or
//! an unreachable daemon, 2 for input refused before sending), finding the daemon
//! through `-c config.toml`, and `jobs reload` against a stand-in for the reload
//! route's contract.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use kairos::api::{app, serve, ApiSettings};
use kairos::executor::pool::ThreadPoolExecutor;
use kairos::scheduler::Scheduler;
use kairos::store::memory::MemoryStore;
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use common::daemon::{temp_dir, wait_until, write};

const TOKEN: &str = "cli-test-secret";

/// An API served on a background thread until dropped.
struct Server {
    url: String,
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// The kairos API over a running scheduler, requiring [`TOKEN`].
    fn with_scheduler() -> Server {
        Server::start(|| {
            let mut tasks = TaskRegistry::new();
            tasks.register_fn("orders.cancel", |_run: TaskRun| async {
                Ok::<String, TaskFailure>("cancelled".to_owned())
            });
            let scheduler = Scheduler::builder()
                .tasks(tasks)
                .store("default", MemoryStore::new())
                .executor("default", ThreadPoolExecutor::new(2))
                .build();
            scheduler.start();
            app(
                scheduler,
                ApiSettings {
                    tokens: vec![TOKEN.to_owned()],
                    ..ApiSettings::default()
                },
            )
        })
    }

    /// Serves the router `make` builds (inside the runtime) on 127.0.0.1, any port.
    fn start(make: impl FnOnce() -> Router + Send + 'static) -> Server {
        let (address_sender, address) = std::sync::mpsc::channel::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let router = make();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                address_sender.send(listener.local_addr().unwrap()).unwrap();
                serve(listener, router, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let address = address.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            url: format!("http://{address}"),
            port: address.port(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `kairos ARGS` with `KAIROS_URL` and `KAIROS_TOKEN` set for this server.
    fn cli(&self, args: &[&str]) -> Run {
        kairos(args, &[("KAIROS_URL", &self.url), ("KAIROS_TOKEN", TOKEN)])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one run of the binary did.
struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }

    /// Asserts exit 0 and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.status, Some(0), "stderr: {}", self.stderr);
        &self.stdout
    }
}

/// Runs the binary in an empty directory (no `config.toml` to find) with `env` and
/// no inherited `KAIROS_*`, in UTC so times read the same everywhere.
fn kairos(args: &[&str], env: &[(&str, &str)]) -> Run {
    static EMPTY_DIR: OnceLock<PathBuf> = OnceLock::new();
    kairos_in(EMPTY_DIR.get_or_init(|| temp_dir("cli")), args, env)
}

fn kairos_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kairos"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("KAIROS_URL")
        .env_remove("KAIROS_TOKEN")
        .env("TZ", "UTC");
    for (name, value) in env {
        command.env(name, value);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    Run {
        status: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The table row (a line of stdout) that starts with `id`.
fn row<'a>(stdout: &'a str, id: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("no row for {id} in:\n{stdout}"))
}

#[test]
fn an_order_cancel_job_from_add_to_remove() {
    let server = Server::with_scheduler();
    let id = "order-cancel-42";

    let before = Utc::now();
    let added = server.cli(&[
        "jobs",
        "add",
        "--id",
        id,
        "--task",
        "orders.cancel",
        "--args",
        r#"{"order_id":42}"#,
        "--misfire-grace-time",
        "5m",
        "--max-instances",
        "2",
        "--no-coalesce",
        "date",
        "delay=30m",
    ]);
    let added_row = row(added.ok(), id);
    assert!(added_row.contains("orders.cancel"), "{added_row}");
    assert!(added_row.ends_with("scheduled"), "{added_row}");

    // The table: a header and the job's row, columns aligned.
    let listed = server.cli(&["jobs", "list"]);
    let stdout = listed.ok();
    let header = stdout.lines().next().unwrap();
    assert!(header.starts_with("ID "), "{header}");
    for column in ["NAME", "TASK", "TRIGGER", "NEXT RUN", "STATE"] {
        assert!(header.contains(column), "{header}");
    }
    let job_row = row(stdout, id);
    assert_eq!(header.find("TRIGGER"), job_row.find("date["), "{stdout}");
    assert_eq!(header.find("STATE"), job_row.find("scheduled"), "{stdout}");

    // --json: the API's own document, with the delay resolved on the server's clock.
    let listed = server.cli(&["jobs", "list", "--json"]).json();
    let job = &listed["jobs"][0];
    assert_eq!(job["id"], id);
    assert_eq!(job["args"], json!({"order_id": 42}));
    assert_eq!(job["options"]["misfire_grace_time"], "5m");
    assert_eq!(job["options"]["max_instances"], 2);
    assert_eq!(job["options"]["coalesce"], false);
    let next: DateTime<Utc> = job["next_run_time"].as_str().unwrap().parse().unwrap();
    let delay = next - before;
    assert!(
        delay >= chrono::TimeDelta::minutes(29) && delay <= chrono::TimeDelta::minutes(31),
        "next run {next}, {delay} after the add"
    );

    let shown = server.cli(&["jobs", "show", id]);
    let details = shown.ok();
    assert!(details.contains(r#"args:"#), "{details}");
    assert!(details.contains(r#"{"order_id":42}"#), "{details}");
    assert!(details.contains("defined in:"), "{details}");
    assert_eq!(server.cli(&["jobs", "show", id, "--json"]).json()["id"], id);

    let paused = server.cli(&["jobs", "pause", id]);
    assert!(
        row(paused.ok(), id).ends_with("paused"),
        "{}",
        paused.stdout
    );
    assert_eq!(
        server.cli(&["jobs", "show", id, "--json"]).json()["paused"],
        true
    );

    let resumed = server.cli(&["jobs", "resume", id]);
    assert!(
        row(resumed.ok(), id).ends_with("scheduled"),
        "{}",
        resumed.stdout
    );

    let rescheduled = server.cli(&["jobs", "reschedule", id, "interval", "hours=1"]);
    assert!(
        row(rescheduled.ok(), id).contains("interval[1h]"),
        "{}",
        rescheduled.stdout
    );

    let started = server.cli(&["jobs", "run", id, "--json"]).json();
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    assert_eq!(started["job_id"], id);
    let finished = wait_until(Duration::from_secs(10), || {
        let runs = server.cli(&["runs", id, "--json"]).json();
        runs["runs"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|run| run["run_id"] == run_id.as_str()))
    });
    assert!(finished, "run {run_id} never recorded");
    let runs = server.cli(&["runs", id, "--limit", "5"]);
    let stdout = runs.ok();
    assert!(stdout.starts_with("SCHEDULED "), "{stdout}");
    let run_row = stdout
        .lines()
        .find(|line| line.contains(&run_id))
        .unwrap_or_else(|| panic!("no row for run {run_id}:\n{stdout}"));
    assert!(run_row.contains("success"), "{run_row}");
    assert!(run_row.contains(id), "{run_row}");
    // --output: the table, then each run's whole output under a heading.
    let with_output = server.cli(&["runs", id, "--output"]);
    let stdout = with_output.ok();
    assert!(stdout.starts_with("SCHEDULED "), "{stdout}");
    let heading = stdout
        .lines()
        .position(|line| line.starts_with("== ") && line.contains(&run_id))
        .unwrap_or_else(|| panic!("no output heading for run {run_id}:\n{stdout}"));
    assert!(
        stdout.lines().nth(heading).unwrap().contains("success"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().nth(heading + 1),
        Some("cancelled"),
        "{stdout}"
    );
    let all_runs = server.cli(&["runs", "-n", "1", "--json"]).json();
    assert_eq!(all_runs["runs"].as_array().map(Vec::len), Some(1));

    let removed = server.cli(&["jobs", "remove", id]);
    assert!(removed.ok().contains("removed job"), "{}", removed.stdout);
    let gone = server.cli(&["jobs", "show", id]);
    assert_eq!(gone.status, Some(1));
    assert_eq!(gone.stderr, format!("kairos: no job with id {id:?}\n"));
    assert!(server.cli(&["jobs", "list", "--json"]).json()["jobs"]
        .as_array()
        .is_some_and(Vec::is_empty));
}

#[test]
fn what_the_api_refuses_is_one_line_and_exit_1() {
    let server = Server::with_scheduler();
    let wrong = kairos(
        &["jobs", "list"],
        &[
            ("KAIROS_URL", &server.url),
            ("KAIROS_TOKEN", "not-the-token"),
        ],
    );
    assert_eq!(wrong.status, Some(1));
    assert_eq!(wrong.stderr, "kairos: the bearer token is not valid\n");
    assert!(wrong.stdout.is_empty());

    let missing = kairos(&["jobs", "list"], &[("KAIROS_URL", &server.url)]);
    assert_eq!(missing.status, Some(1));
    assert!(
        missing
            .stderr
            .starts_with("kairos: this API needs a bearer token"),
        "{}",
        missing.stderr
    );

    // Checked on the server: a task it does not know.
    let unknown = server.cli(&["jobs", "add", "--task", "no.such.task", "date", "delay=1h"]);
    assert_eq!(unknown.status, Some(1), "{}", unknown.stderr);
    assert!(unknown.stderr.starts_with("kairos: "), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no.such.task"),
        "{}",
        unknown.stderr
    );
    assert_eq!(unknown.stderr.lines().count(), 1, "{}", unknown.stderr);

    let twice = ["jobs", "add", "--id", "dup", "--task", "orders.cancel"];
    server
        .cli(&[&twice[..], &["date", "delay=1h"]].concat())
        .ok();
    let conflict = server.cli(&[&twice[..], &["date", "delay=1h"]].concat());
    assert_eq!(conflict.status, Some(1));
    assert!(
        conflict.stderr.contains("already exists"),
        "{}",
        conflict.stderr
    );
    let replaced = server.cli(&[&twice[..], &["--replace-existing", "date", "delay=2h"]].concat());
    replaced.ok();
}

#[test]
fn an_unreachable_daemon_gets_a_hint() {
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = kairos(&["jobs", "list"], &[("KAIROS_URL", &url)]);
    assert_eq!(run.status, Some(1));
    assert!(run.stderr.contains("connection refused"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("is `kairos run` running? set KAIROS_URL"),
        "{}",
        run.stderr
    );
    let runs = kairos(&["runs"], &[("KAIROS_URL", &url)]);
    assert_eq!(runs.status, Some(1), "{}", runs.stderr);
}

#[test]
fn invalid_input_is_exit_2_naming_the_field() {
    // No daemon at all: input is checked before anything is sent.
    let nowhere = [("KAIROS_URL", "http://127.0.0.1:9")];
    let add = |words: &[&str]| {
        let args = [&["jobs", "add", "--task", "orders.cancel"][..], words].concat();
        kairos(&args, &nowhere)
    };
    let unknown_field = add(&["cron", "hourz=3"]);
    assert_eq!(unknown_field.status, Some(2), "{}", unknown_field.stderr);
    assert_eq!(
        unknown_field.stderr,
        "kairos: trigger.hourz: not a field of a cron trigger; did you mean hour?\n"
    );
    let out_of_range = add(&["cron", "hour=25"]);
    assert_eq!(out_of_range.status, Some(2));
    assert!(
        out_of_range.stderr.starts_with("kairos: trigger.hour"),
        "{}",
        out_of_range.stderr
    );
    let bad_delay = add(&["date", "delay=soon"]);
    assert_eq!(bad_delay.status, Some(2));
    assert!(
        bad_delay.stderr.starts_with("kairos: trigger.delay"),
        "{}",
        bad_delay.stderr
    );
    let bad_args = kairos(
        &[
            "jobs", "add", "--task", "t", "--args", "{oops", "date", "delay=1m",
        ],
        &nowhere,
    );
    assert_eq!(bad_args.status, Some(2));
    assert!(
        bad_args.stderr.starts_with("kairos: --args"),
        "{}",
        bad_args.stderr
    );
    let reschedule = kairos(&["jobs", "reschedule", "x", "weekly", "day=mon"], &nowhere);
    assert_eq!(reschedule.status, Some(2));
    assert!(
        reschedule.stderr.starts_with("kairos: trigger.type"),
        "{}",
        reschedule.stderr
    );
    let bad_url = kairos(&["jobs", "list"], &[("KAIROS_URL", "localhost:8080")]);
    assert_eq!(bad_url.status, Some(2));
    assert!(
        bad_url.stderr.starts_with("kairos: KAIROS_URL"),
        "{}",
        bad_url.stderr
    );
    // clap's own refusals are exit 2 too.
    let no_task = kairos(&["jobs", "add", "date", "delay=1m"], &nowhere);
    assert_eq!(no_task.status, Some(2));
    let zero = kairos(&["runs", "--limit", "0"], &nowhere);
    assert_eq!(zero.status, Some(2));
}

#[test]
fn a_duration_flag_too_large_to_add_up_is_exit_2_not_a_panic() {
    // The flags went straight to humantime, which panics when the seconds overflow
    // (found by the duration fuzz target); they now read durations as the config does.
    let nowhere = [("KAIROS_URL", "http://127.0.0.1:9")];
    for flag in ["--misfire-grace-time", "--expect-success-within"] {
        // The first is the fuzz target's input: seconds that add up past u64::MAX.
        for value in [
            "18446744073709551610 s0.0s1.30s01.70s1.29s01.71s1.30s0.0s1.70 s0.0s1.30s50s",
            "99999999999999999999999999999s",
        ] {
            let refused = kairos(
                &[
                    "jobs", "add", "--task", "t", flag, value, "date", "delay=1m",
                ],
                &nowhere,
            );
            assert_eq!(
                refused.status,
                Some(2),
                "{flag} {value}: {}",
                refused.stderr
            );
            assert!(
                refused.stderr.contains(flag) && !refused.stderr.contains("panicked"),
                "{flag} {value}: {}",
                refused.stderr
            );
        }
    }
    let accepted = kairos(
        &[
            "jobs",
            "add",
            "--task",
            "t",
            "--misfire-grace-time",
            "1h30m",
            "date",
            "delay=1m",
        ],
        &nowhere,
    );
    // Parsed, so it got as far as the (absent) daemon.
    assert_eq!(accepted.status, Some(1), "{}", accepted.stderr);
}

#[test]
fn the_config_file_says_where_the_daemon_is() {
    let server = Server::with_scheduler();
    let dir = temp_dir("cli-config");
    write(
        &dir,
        "config.toml",
        &format!(
            "[api]\nlisten = \"0.0.0.0:{port}\"\ntoken = \"${{CLI_TEST_TOKEN}}\"\n",
            port = server.port
        ),
    );
    let env = [("CLI_TEST_TOKEN", TOKEN)];
    // ./config.toml is found by itself; 0.0.0.0 is reached on loopback.
    let found = kairos_in(&dir, &["jobs", "list"], &env);
    assert!(found.ok().starts_with("ID "), "{}", found.stdout);
    let named = kairos(
        &[
            "jobs",
            "list",
            "-c",
            dir.join("config.toml").to_str().unwrap(),
        ],
        &env,
    );
    named.ok();
    // The environment wins over the file.
    let overridden = kairos_in(
        &dir,
        &["jobs", "list"],
        &[("CLI_TEST_TOKEN", TOKEN), ("KAIROS_TOKEN", "not-the-token")],
    );
    assert_eq!(overridden.status, Some(1));
    assert!(
        overridden.stderr.contains("not valid"),
        "{}",
        overridden.stderr
    );
    // A broken file is bad input, with its problems printed.
    write(&dir, "config.toml", "[api]\nlisten = \"nowhere\"\n");
    let broken = kairos_in(&dir, &["jobs", "list"], &[]);
    assert_eq!(broken.status, Some(2), "{}", broken.stderr);
    assert!(broken.stderr.contains("api.listen"), "{}", broken.stderr);
}

#[test]
fn reload_prints_what_changed_and_fails_on_what_could_not_be_applied() {
    // A stand-in for the daemon's reload route, answering as its contract says.
    let server = Server::start(|| {
        Router::new()
            .route(
                "/api/v1/scheduler/reload",
                post(|| async {
                    axum::Json(json!({
                        "added": ["new-a", "new-b"],
                        "changed": ["nightly"],
                        "removed": [],
                        "unchanged": 3,
                        "failed": [],
                    }))
                }),
            )
            .route(
                "/bad/api/v1/scheduler/reload",
                post(|| async {
                    (
                        StatusCode::OK,
                        axum::Json(json!({
                            "added": [], "changed": [], "removed": [], "unchanged": 0,
                            "failed": [{"id": "broken", "error": "unknown task \"nope\""}],
                        })),
                    )
                }),
            )
            .route(
                "/invalid/api/v1/scheduler/reload",
                post(|| async {
                    (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        axum::Json(json!({"error": {
                            "code": "invalid_config",
                            "message": "config.toml:3:9: api.listen: \"x\" is not an address",
                        }})),
                    )
                }),
            )
            // As the API answers a route it does not have (a daemon older than reload).
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": {
                        "code": "route_not_found",
                        "message": "no route for POST /old/api/v1/scheduler/reload",
                    }})),
                )
            })
    });
    let reloaded = server.cli(&["jobs", "reload"]);
    assert_eq!(
        reloaded.ok(),
        "added (2): new-a, new-b\nchanged (1): nightly\nunchanged: 3\n"
    );
    let json = server.cli(&["jobs", "reload", "--json"]).json();
    assert_eq!(json["unchanged"], 3);

    let failing_url = format!("{}/bad", server.url);
    let failed = kairos(&["jobs", "reload"], &[("KAIROS_URL", &failing_url)]);
    assert_eq!(failed.status, Some(1));
    assert!(
        failed
            .stdout
            .contains("failed: broken: unknown task \"nope\""),
        "{}",
        failed.stdout
    );
    assert!(failed.stderr.contains("1 job(s)"), "{}", failed.stderr);
    let invalid_url = format!("{}/invalid", server.url);
    let invalid = kairos(&["jobs", "reload"], &[("KAIROS_URL", &invalid_url)]);
    let old_url = format!("{}/old", server.url);
    let old = kairos(&["jobs", "reload"], &[("KAIROS_URL", &old_url)]);
    assert_eq!(old.status, Some(1));
    assert!(old.stderr.contains("send it SIGHUP"), "{}", old.stderr);
    assert_eq!(invalid.status, Some(1));
    assert_eq!(
        invalid.stderr,
        "kairos: config.toml:3:9: api.listen: \"x\" is not an address\n"
    );
}

/// docs/threat-model.md, "Bounded work": `kairos next -n` is capped, and an interval
/// that runs off the end of representable time stops there (exit 0), never panics.
#[test]
fn next_count_is_capped_and_overflow_is_no_panic() {
    let capped = kairos(&["next", "cron", "hour=3", "-n", "1000000"], &[]);
    assert_eq!(capped.status, Some(2), "{}", capped.stderr);
    assert!(capped.stderr.contains("-n"), "{}", capped.stderr);
    let far = kairos(
        &[
            "next",
            "interval",
            "days=3069778",
            "start_date=9999-12-31T23:59:59Z",
            "-n",
            "10000",
        ],
        &[],
    );
    assert_ne!(far.status, Some(101), "{}", far.stderr);
    assert!(matches!(far.status, Some(0 | 2)), "{}", far.stderr);
    assert!(!far.stderr.contains("panicked"), "{}", far.stderr);
}

#[test]
fn completions_and_the_man_page_come_from_the_clap_definitions() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef kairos"),
        ("fish", "complete -c kairos"),
    ] {
        let script = kairos(&["completions", shell], &[]);
        let text = script.ok();
        assert!(text.contains(marker), "{shell}: {text}");
        for subcommand in ["jobs", "runs", "check", "next", "completions", "reschedule"] {
            assert!(text.contains(subcommand), "{shell} lacks {subcommand}");
        }
    }
    let page = kairos(&["man"], &[]);
    let roff = page.ok();
    assert!(roff.contains(".TH kairos 1"), "{roff}");
    for subcommand in ["jobs", "runs", "check", "next", "completions", "man"] {
        assert!(
            roff.contains(&format!("kairos\\-{subcommand}(1)")),
            "man page lacks {subcommand}: {roff}"
        );
    }
    let dir = temp_dir("man");
    kairos(&["man", "--dir", dir.to_str().unwrap()], &[]).ok();
    let list = std::fs::read_to_string(dir.join("kairos-jobs-list.1")).unwrap();
    assert!(list.contains("\\-\\-cursor"), "{list}");
    assert!(dir.join("kairos.1").exists());
}

#[test]
fn typos_get_the_name_meant_with_a_swap_counted_as_one_edit() {
    let field = kairos(&["next", "cron", "huor=3"], &[]);
    assert_eq!(field.status, Some(2));
    assert!(
        field.stderr.contains("did you mean hour?"),
        "{}",
        field.stderr
    );

    let zone = kairos(&["next", "cron", "hour=3", "timezone=Europe/Berln"], &[]);
    assert_eq!(zone.status, Some(2));
    assert!(
        zone.stderr.contains("did you mean \"Europe/Berlin\"?"),
        "{}",
        zone.stderr
    );

    for (args, meant) in [
        (&["jbos"][..], "'jobs'"),
        (&["jobs", "lsit"][..], "'list'"),
        (&["jobs", "--json", "reschdeule"][..], "'reschedule'"),
    ] {
        let typo = kairos(args, &[]);
        assert_eq!(typo.status, Some(2), "{args:?}");
        assert!(
            typo.stderr
                .contains(&format!("a similar subcommand exists: {meant}")),
            "{args:?}: {}",
            typo.stderr
        );
    }

    let server = Server::with_scheduler();
    let task = server.cli(&["jobs", "add", "--task", "ordres.cancel", "date", "delay=1h"]);
    assert_eq!(task.status, Some(1));
    assert_eq!(
        task.stderr,
        "kairos: task: unknown task \"ordres.cancel\" (did you mean \"orders.cancel\"?)\n"
    );
}

#[test]
fn check_json_gives_errors_with_positions_or_the_jobs() {
    let dir = temp_dir("check-json");
    write(
        &dir,
        "config.toml",
        "[[jobs]]\nid = \"a\"\ntask = \"stats.corerct\"\ntrigger = { type = \"cron\", hour = 25 }\n",
    );
    let bad = kairos_in(&dir, &["check", "--json"], &[]);
    assert_eq!(bad.status, Some(1), "{}", bad.stderr);
    assert!(bad.stderr.is_empty(), "{}", bad.stderr);
    let answer = bad.json();
    assert_eq!(answer["ok"], false);
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{answer}");
    let task = errors
        .iter()
        .find(|error| error["key"] == "jobs[0].task")
        .unwrap();
    assert_eq!(task["line"], 3);
    assert_eq!(task["column"], 8);
    assert_eq!(task["kind"], "unknown_reference");
    assert!(task["file"].as_str().unwrap().ends_with("config.toml"));
    assert!(task["message"].as_str().unwrap().contains("stats.correct"));

    write(
        &dir,
        "config.toml",
        "[[jobs]]\nid = \"nightly\"\ntask = \"stats.correct\"\ntrigger = { type = \"cron\", hour = 3, timezone = \"UTC\" }\n",
    );
    let good = kairos_in(&dir, &["check", "--json"], &[]);
    let answer = good.json();
    assert_eq!(good.status, Some(0), "{}", good.stderr);
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["errors"], json!([]));
    assert_eq!(answer["jobs"][0]["id"], "nightly");
    assert_eq!(
        answer["jobs"][0]["next_run_times"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(answer["jobs"][0]["next_run_times"][0]
        .as_str()
        .unwrap()
        .contains("03:00:00"));
}

#[test]
fn check_shows_the_history_size_and_its_limits() {
    let dir = temp_dir("check-history");
    let db = dir.join("history.db");
    let url = format!("sqlite://{}", db.display());
    // A store holding three run records, written as a daemon writes them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = kairos::store::sql::connect(&url, Default::default())
            .await
            .unwrap();
        for index in 0..3 {
            let finished = Utc::now();
            store
                .record_run(kairos::history::RunRecord {
                    run_id: format!("run{index}"),
                    job_id: "nightly".to_owned(),
                    scheduled_time: finished,
                    started_at: Some(finished),
                    finished_at: finished,
                    outcome: kairos::history::RunOutcome::Success,
                    error: None,
                    output: None,
                    attempt: 1,
                })
                .await
                .unwrap();
        }
    });
    write(
        &dir,
        "config.toml",
        &format!(
            "[jobstores.default]\nurl = \"{url}\"\n\n[history]\nsuccesses_per_job = 5\n\n\
             [[jobs]]\nid = \"nightly\"\ntask = \"stats.correct\"\n\
             trigger = {{ type = \"cron\", hour = 3, timezone = \"UTC\" }}\n"
        ),
    );
    let json = kairos_in(&dir, &["check", "--json"], &[]);
    assert_eq!(json.status, Some(0), "{}", json.stderr);
    let answer = json.json();
    assert_eq!(answer["history_runs"], 3, "{answer}");
    let text = kairos_in(&dir, &["check"], &[]);
    assert_eq!(text.status, Some(0), "{}", text.stderr);
    assert!(
        text.stdout.contains(
            "history: 3 run record(s); kept at most for 30d, 5 successes per job, \
             1000 other runs per job\n"
        ),
        "{}",
        text.stdout
    );
}

#[test]
fn jobs_list_filters_and_pages_like_the_api() {
    let server = Server::with_scheduler();
    for index in 0..5 {
        let id = format!("订单取消-{index}");
        let name = "订".repeat(index + 1);
        server
            .cli(&[
                "jobs",
                "add",
                "--id",
                &id,
                "--name",
                &name,
                "--task",
                "orders.cancel",
                "date",
                "delay=1h",
            ])
            .ok();
    }
    server
        .cli(&[
            "jobs",
            "add",
            "--id",
            "x",
            "--task",
            "orders.cancel",
            "--paused",
            "date",
            "delay=1h",
        ])
        .ok();

    let first = server.cli(&["jobs", "list", "--state", "scheduled", "-n", "2"]);
    let table = first.ok();
    assert_eq!(table.lines().count(), 3, "{table}");
    // Every TASK cell starts at the same terminal column, after CJK ids and names
    // of different lengths.
    let columns: Vec<usize> = table
        .lines()
        .map(|line| {
            unicode_column(
                line,
                if line.starts_with("ID") {
                    "TASK"
                } else {
                    "orders.cancel"
                },
                0,
            )
        })
        .collect();
    assert!(columns.windows(2).all(|pair| pair[0] == pair[1]), "{table}");
    let hint = first.stderr.trim();
    let cursor = hint.rsplit(' ').next().unwrap();
    assert!(hint.contains("of 5"), "{hint}");
    assert!(!table.contains('\u{1b}'), "no color into a pipe");

    let mut seen: Vec<String> = table.lines().skip(1).map(str::to_owned).collect();
    let mut cursor = cursor.to_owned();
    loop {
        let next = server.cli(&[
            "jobs",
            "list",
            "--state",
            "scheduled",
            "-n",
            "2",
            "--cursor",
            &cursor,
        ]);
        seen.extend(next.ok().lines().skip(1).map(str::to_owned));
        match next.stderr.trim().rsplit(' ').next() {
            Some(more) if !more.is_empty() => cursor = more.to_owned(),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:#?}");
    assert!(seen.iter().all(|line| line.contains("scheduled")));

    let paused = server.cli(&["jobs", "list", "--state", "paused", "--json"]);
    assert_eq!(paused.json()["total"], 1);
    assert_eq!(paused.json()["jobs"][0]["id"], "x");
    let found = server.cli(&[
        "jobs",
        "list",
        "-q",
        "消-3",
        "--task",
        "orders.cancel",
        "--json",
    ]);
    assert_eq!(found.json()["jobs"][0]["id"], "订单取消-3");
    let skipped = server.cli(&["jobs", "list", "--offset", "5", "--json"]);
    assert_eq!(skipped.json()["jobs"].as_array().unwrap().len(), 1);
}

/// The terminal column (display width before it) of the `nth` match of `word`.
fn unicode_column(line: &str, word: &str, nth: usize) -> usize {
    let byte = line
        .match_indices(word)
        .nth(nth)
        .unwrap_or_else(|| panic!("{word} #{nth} in {line}"))
        .0;
    line[..byte]
        .chars()
        .map(|c| {
            if ('\u{4e00}'..='\u{9fff}').contains(&c) {
                2
            } else {
                1
            }
        })
        .sum()
}

/// `--overlap` on `jobs add` reaches the job and shows in `jobs show` (and so does
/// an option the client has no line for); `jobs run
/// --force` is accepted; a bad policy is exit 2 naming the values, before anything is
/// sent.
#[test]
fn overlap_is_set_by_add_and_run_takes_force() {
    let server = Server::with_scheduler();
    let added = server.cli(&[
        "jobs",
        "add",
        "--id",
        "q",
        "--task",
        "orders.cancel",
        "--overlap",
        "queue",
        "--retry",
        "max_attempts=3",
        "--json",
        "interval",
        "hours=1",
    ]);
    assert_eq!(
        added.json()["options"]["overlap"],
        "queue",
        "{}",
        added.stdout
    );
    let shown = server.cli(&["jobs", "show", "q"]);
    assert!(
        shown
            .ok()
            .lines()
            .any(|line| line.starts_with("overlap") && line.ends_with("queue")),
        "{}",
        shown.stdout
    );
    // An option the client has no line of its own for is shown as the daemon gives it.
    assert!(
        shown
            .ok()
            .lines()
            .any(|line| line.starts_with("retry:") && line.contains("\"max_attempts\":3")),
        "{}",
        shown.stdout
    );
    let started = server
        .cli(&["jobs", "run", "q", "--force", "--json"])
        .json();
    assert_eq!(started["job_id"], "q");
    assert!(started["run_id"].is_string(), "{started}");

    let nowhere = [("KAIROS_URL", "http://127.0.0.1:9")];
    let bad = kairos(
        &[
            "jobs",
            "add",
            "--task",
            "t",
            "--overlap",
            "sometimes",
            "date",
            "delay=1m",
        ],
        &nowhere,
    );
    assert_eq!(bad.status, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--overlap")
            && bad
                .stderr
                .contains("must be one of \"skip\", \"queue\", \"replace\""),
        "{}",
        bad.stderr
    );
}
