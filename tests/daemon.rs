//! The daemon as systemd runs it: the real `kairos run` binary in a temporary
//! directory, steered by job files and signals.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use common::daemon::{lines, temp_dir, wait_until, write, Daemon};
use kairos::job::JobSpec;
use kairos::store::prelude::*;
use kairos::store::{self, OpenOptions};
use kairos::trigger::TriggerSpec;
use serde_json::json;

/// A config with an SQLite store in `state/`, a thread pool and a process pool.
fn write_config(dir: &Path, shutdown_timeout: &str) {
    write(
        dir,
        "config.toml",
        &format!(
            r#"include = ["jobs/*.toml"]

[scheduler]
shutdown_timeout = "{shutdown_timeout}"

[jobstores.default]
url = "sqlite://state/kairos.db"

[executors.default]
type = "threadpool"
max_workers = 4

[executors.children]
type = "processpool"
max_workers = 2

[api]
enabled = false
"#
        ),
    );
}

/// A job file with one shell-command job appending `marker` to `file` every `seconds`.
fn ticking_job(id: &str, seconds: u64, file: &str, marker: &str) -> String {
    format!(
        r#"[[jobs]]
id = "{id}"
task = "command"
args = {{ shell = true, command = "echo {marker} >> {file}" }}
trigger = {{ type = "interval", seconds = {seconds} }}
"#
    )
}

async fn open_store(dir: &Path) -> std::sync::Arc<dyn JobStore> {
    let url = format!("sqlite://{}", dir.join("state/kairos.db").display());
    store::open(&url, &OpenOptions::default())
        .await
        .expect("open the daemon's store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_file_edit_and_sighup_change_the_schedule_without_a_restart() {
    let dir = temp_dir("reload");
    write_config(&dir, "5s");
    write(
        &dir,
        "jobs/tick.toml",
        &ticking_job("tick", 1, "ticks.log", "fast"),
    );
    let daemon = Daemon::start(&dir);
    assert!(
        wait_until(Duration::from_secs(10), || lines(&dir, "ticks.log").len()
            >= 2),
        "the job fires every second:\n{}",
        daemon.log()
    );
    // Every hour from now on: the job changes in place.
    write(
        &dir,
        "jobs/tick.toml",
        &ticking_job("tick", 3600, "ticks.log", "slow"),
    );
    let reload = daemon.reload();
    assert!(reload.contains("1 changed"), "{reload}");
    let store = open_store(&dir).await;
    let job = store.get_job("tick").await.unwrap().expect("still there");
    let spec = job.config_spec.expect("owned by the config");
    assert_eq!(
        spec.trigger,
        serde_json::from_value::<TriggerSpec>(json!({"type": "interval", "seconds": 3600}))
            .unwrap()
    );
    let next = job.next_run_time.expect("scheduled");
    assert!(next > Utc::now() + chrono::TimeDelta::minutes(59), "{next}");
    // The running process went on: no restart happened.
    assert_eq!(daemon.log().matches("kairos is running").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_is_rejected_with_its_position_and_the_old_schedule_runs_on() {
    let dir = temp_dir("broken");
    write_config(&dir, "5s");
    write(
        &dir,
        "jobs/tick.toml",
        &ticking_job("tick", 1, "ticks.log", "tick"),
    );
    let daemon = Daemon::start(&dir);
    write(
        &dir,
        "jobs/tick.toml",
        "[[jobs]]\nid = \"tick\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"cron\", hour = 25 }\n",
    );
    let reload = daemon.reload();
    assert!(reload.contains("config rejected"), "{reload}");
    assert!(
        reload.contains("tick.toml:5:") && reload.contains("hour") && reload.contains("25"),
        "the error names the file, line and field:\n{reload}"
    );
    // Still firing every second.
    let before = lines(&dir, "ticks.log").len();
    assert!(
        wait_until(Duration::from_secs(5), || lines(&dir, "ticks.log").len()
            >= before + 2),
        "the old schedule stopped:\n{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_job_file_removes_its_job_and_other_jobs_survive_reload_and_restart() {
    let dir = temp_dir("remove");
    write_config(&dir, "5s");
    write(&dir, "jobs/a.toml", &ticking_job("a", 3600, "a.log", "a"));
    write(&dir, "jobs/b.toml", &ticking_job("b", 3600, "b.log", "b"));
    let mut daemon = Daemon::start(&dir);
    // A job added from outside the config (as the API would).
    let store = open_store(&dir).await;
    let mut spec = JobSpec::new(
        "command",
        serde_json::from_value(json!({"type": "interval", "hours": 1})).unwrap(),
    )
    .with_id("added-at-runtime")
    .with_args(json!({"argv": ["true"]}));
    spec.options.executor = Some("default".to_owned());
    let scheduler = kairos::scheduler::Scheduler::builder()
        .store_shared("default", store.clone())
        .build();
    scheduler.add_job(spec).await.expect("add a runtime job");
    std::fs::remove_file(dir.join("jobs/b.toml")).unwrap();
    let reload = daemon.reload();
    assert!(reload.contains("1 removed"), "{reload}");
    assert!(store.get_job("b").await.unwrap().is_none(), "b is gone");
    assert!(store.get_job("a").await.unwrap().is_some(), "a stays");
    assert!(
        store.get_job("added-at-runtime").await.unwrap().is_some(),
        "a reload never touches jobs the config does not own"
    );
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(15)).expect("it exits");
    assert!(status.success(), "{status:?}");
    let daemon = Daemon::start(&dir);
    let ids: Vec<String> = store
        .get_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert!(ids.contains(&"added-at-runtime".to_owned()), "{ids:?}");
    assert!(ids.contains(&"a".to_owned()), "{ids:?}");
    assert!(!ids.contains(&"b".to_owned()), "{ids:?}");
    assert!(daemon
        .log()
        .contains("0 added, 0 changed, 0 removed, 1 unchanged"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_a_running_job_and_exits_0() {
    let dir = temp_dir("drain");
    write_config(&dir, "20s");
    let run_date = (Utc::now() + chrono::TimeDelta::seconds(2)).to_rfc3339();
    write(
        &dir,
        "jobs/slow.toml",
        &format!(
            r#"[[jobs]]
id = "slow"
task = "command"
args = {{ shell = true, command = "touch started; sleep 2; touch finished" }}
trigger = {{ type = "date", run_date = "{run_date}" }}
"#
        ),
    );
    let mut daemon = Daemon::start(&dir);
    assert!(
        wait_until(Duration::from_secs(10), || dir.join("started").exists()),
        "the job did not start:\n{}",
        daemon.log()
    );
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(30)).expect("it exits");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert!(
        dir.join("finished").exists(),
        "the running job was waited for:\n{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_pool_children_are_gone_after_exit() {
    let dir = temp_dir("children");
    write_config(&dir, "1s");
    write(
        &dir,
        "jobs/long.toml",
        r#"[[jobs]]
id = "long"
task = "command"
executor = "children"
args = { shell = true, command = "echo $$ > child.pid; exec sleep 300" }
trigger = { type = "interval", seconds = 1 }
"#,
    );
    let mut daemon = Daemon::start(&dir);
    assert!(
        wait_until(Duration::from_secs(15), || !lines(&dir, "child.pid")
            .is_empty()),
        "the job did not start:\n{}",
        daemon.log()
    );
    let pid = lines(&dir, "child.pid")[0].trim().to_owned();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(30)).expect("it exits");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    // A killed child may linger for a moment as a zombie until init reaps it.
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.contains(") Z "))
            .unwrap_or(true)
    };
    assert!(
        wait_until(Duration::from_secs(5), gone),
        "the process-pool child {pid} outlived the daemon"
    );
}

#[test]
fn check_reports_every_mistake_with_its_position() {
    let dir = temp_dir("check");
    write(
        &dir,
        "config.toml",
        r#"include = ["jobs/*.toml"]

[scheduler]
shutdown_timout = "30s"

[executors.default]
type = "threadpool"
max_workers = 0
"#,
    );
    write(
        &dir,
        "jobs/bad.toml",
        r#"[[jobs]]
id = "one"
task = "no.such.task"
trigger = { type = "interval", minutes = 5 }

[[jobs]]
id = "two"
task = "command"
args = { argv = ["true"] }
trigger = { type = "cron", hour = 25 }
misfire_grace_time = "soon"
"#,
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["check", "-c"])
        .arg(dir.join("config.toml"))
        .output()
        .expect("run kairos check");
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "config.toml:4:1: scheduler.shutdown_timout",
        "config.toml:8:15: executors.default.max_workers",
        "bad.toml:3:8: jobs[0].task",
        "bad.toml:10:",
        "bad.toml:11:",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    assert!(errors.contains("did you mean"), "{errors}");
    assert!(errors.contains("5 problem(s)"), "{errors}");
}

#[test]
fn check_prints_the_job_table_of_the_shipped_config() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["check", "-c"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"))
        .output()
        .expect("run kairos check");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("demo-hello"), "{table}");
    assert!(table.contains("cron minute=*"), "{table}");
    assert!(table.contains("valid;"), "{table}");
}

async fn json_of(response: reqwest::Response) -> serde_json::Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_added_through_the_api_survive_reload_and_restart() {
    let dir = temp_dir("api");
    write_config(&dir, "5s");
    let config = std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .replace(
            "[api]\nenabled = false",
            "[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"secret\"\nallowed_tasks = [\"command\"]",
        );
    write(&dir, "config.toml", &config);
    write(&dir, "jobs/a.toml", &ticking_job("a", 3600, "a.log", "a"));
    let mut daemon = Daemon::start(&dir);
    // reqwest is built without a default TLS provider (plain HTTP here anyway).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = daemon.api_url();
    let added = client
        .post(format!("{base}/jobs"))
        .bearer_auth("secret")
        .header("content-type", "application/json")
        .body(
            json!({
                "id": "order-cancel-42",
                "task": "command",
                "args": {"argv": ["true"]},
                "trigger": {"type": "date", "delay": "30m"},
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201, "{}", added.text().await.unwrap());
    // `kairos jobs reload` goes through the same path as SIGHUP and says what it did.
    let reloaded = client
        .post(format!("{base}/scheduler/reload"))
        .bearer_auth("secret")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);
    let report = json_of(reloaded).await;
    assert_eq!(report["unchanged"], 1, "{report}");
    assert_eq!(report["removed"], json!([]), "{report}");
    // A broken config is refused with its problems, and nothing changes.
    write(&dir, "jobs/a.toml", "[[jobs]]\nid = \"a\"\n");
    let refused = client
        .post(format!("{base}/scheduler/reload"))
        .bearer_auth("secret")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let body = json_of(refused).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("a.toml:"), "{body}");
    write(&dir, "jobs/a.toml", &ticking_job("a", 3600, "a.log", "a"));
    daemon.signal("TERM");
    assert!(daemon
        .wait_exit(Duration::from_secs(15))
        .expect("it exits")
        .success());
    let daemon = Daemon::start(&dir);
    let base = daemon.api_url();
    let listed = json_of(
        client
            .get(format!("{base}/jobs"))
            .bearer_auth("secret")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = listed.to_string();
    assert!(text.contains("order-cancel-42"), "{text}");
    assert!(text.contains("\"a\""), "{text}");
}

/// A second `kairos run` under a live daemon's node id (the default id is the host
/// name: one started by hand next to the systemd one) refuses to start, naming the id
/// and where the live one runs, and leaves the first one's work alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_with_a_live_nodes_id_refuses_to_start() {
    let dir = temp_dir("node-id");
    write_config(&dir, "5s");
    write(
        &dir,
        "jobs/tick.toml",
        &ticking_job("tick", 1, "ticks", "t"),
    );
    let mut first = Daemon::start(&dir);
    // Registered with its first heartbeat by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["run", "-c"])
        .arg(dir.join("config.toml"))
        .current_dir(&dir)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "it started:\n{stderr}");
    let pid = first.child.id().to_string();
    assert!(
        stderr.contains("node id") && stderr.contains("live node") && stderr.contains(&pid),
        "{stderr}"
    );
    // The first goes on ticking.
    let before = lines(&dir, "ticks").len();
    assert!(
        wait_until(Duration::from_secs(5), || lines(&dir, "ticks").len()
            > before),
        "the first daemon stopped ticking:\n{}",
        first.log()
    );
    first.signal("TERM");
    let status = first.wait_exit(Duration::from_secs(30)).expect("it exits");
    assert!(status.success(), "{status:?}\n{}", first.log());
}

/// At least once across a crash, for a recurring job: a run that had started when its
/// daemon was killed (`kill -9`) runs again for the same scheduled time once the daemon
/// is back, and only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurring_run_killed_with_its_daemon_runs_again_after_restart() {
    let dir = temp_dir("kill-recurring");
    write_config(&dir, "1s");
    let start = (Utc::now() + chrono::TimeDelta::seconds(2)).to_rfc3339();
    write(
        &dir,
        "jobs/hourly.toml",
        &format!(
            r#"[[jobs]]
id = "hourly"
task = "command"
args = {{ shell = true, command = "echo $KAIROS_SCHEDULED_TIME >> starts; sleep 20" }}
trigger = {{ type = "interval", hours = 1, start_date = "{start}" }}
"#
        ),
    );
    let mut first = Daemon::start(&dir);
    assert!(
        wait_until(Duration::from_secs(10), || lines(&dir, "starts").len() == 1),
        "the run did not start:\n{}",
        first.log()
    );
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10)).expect("killed");
    let mut second = Daemon::start(&dir);
    assert!(
        wait_until(Duration::from_secs(10), || lines(&dir, "starts").len() == 2),
        "the killed run did not run again:\n{}",
        second.log()
    );
    let starts = lines(&dir, "starts");
    assert_eq!(starts[0], starts[1], "the same scheduled time");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lines(&dir, "starts").len(), 2, "once more, not twice");
    second.signal("TERM");
    second.wait_exit(Duration::from_secs(30)).expect("it exits");
}

/// A TZif file (version 2, RFC 8536) for a zone at a fixed `hours` east of UTC, with
/// no transitions: what a tzdata update that moves a zone writes, reduced to its
/// effect.
fn fixed_offset_tzif(hours: i32) -> Vec<u8> {
    let offset = hours * 3600;
    let designation = format!("<{hours:+03}>");
    let mut chars = designation.clone().into_bytes();
    chars.push(0);
    let block = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"TZif2");
        out.extend_from_slice(&[0; 15]);
        // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
        for count in [0, 0, 0, 0, 1, chars.len()] {
            out.extend_from_slice(&u32::try_from(count).unwrap().to_be_bytes());
        }
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&[0, 0]); // not DST, designation at 0
        out.extend_from_slice(&chars);
    };
    let mut tzif = Vec::new();
    block(&mut tzif); // the version 1 data block
    block(&mut tzif); // the version 2 one (no times either way)
                      // The footer: a POSIX TZ string, whose offset is west-positive.
    tzif.extend_from_slice(format!("\n{designation}{}\n", -hours).as_bytes());
    tzif
}

/// A tzdata update on the system moves fire times at the next reload, without a
/// rebuild: the daemon reads its zone rules from `KAIROS_TZDIR`, and `/health` and
/// `kairos check` name the release in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tzdata_update_moves_fire_times_after_a_reload() {
    let dir = temp_dir("tzdata");
    write_config(&dir, "5s");
    let config = std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .replace(
            "[api]\nenabled = false",
            "[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"secret\"",
        );
    write(&dir, "config.toml", &config);
    write(
        &dir,
        "jobs/berlin.toml",
        "[[jobs]]\nid = \"berlin-night\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\n\
         trigger = { type = \"cron\", hour = 3, timezone = \"Europe/Berlin\" }\n",
    );
    // Berlin at +09:00 in release 2099a, then at +02:00 all year in 2099b.
    let zoneinfo = dir.join("zoneinfo");
    std::fs::create_dir_all(zoneinfo.join("Europe")).unwrap();
    std::fs::write(zoneinfo.join("Europe/Berlin"), fixed_offset_tzif(9)).unwrap();
    std::fs::write(zoneinfo.join("+VERSION"), "2099a\n").unwrap();
    let tzdir = zoneinfo.display().to_string();
    let mut daemon = Daemon::start_with_env(&dir, &[("KAIROS_TZDIR", &tzdir)]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = daemon.api_url();
    let next_run_time = || async {
        let job = client
            .get(format!("{base}/jobs/berlin-night"))
            .bearer_auth("secret")
            .send()
            .await
            .unwrap();
        let job = json_of(job).await;
        let next = job["next_run_time"].as_str().unwrap().to_owned();
        chrono::DateTime::parse_from_rfc3339(&next).unwrap_or_else(|error| panic!("{error}: {job}"))
    };
    let health =
        || async { json_of(client.get(format!("{base}/health")).send().await.unwrap()).await };

    // 03:00 at +09:00 is 18:00 UTC the day before.
    let before = next_run_time().await.with_timezone(&Utc);
    assert_eq!(before.format("%H:%M").to_string(), "18:00", "{before}");
    assert_eq!(
        health().await["tzdata"],
        json!({"source": "system", "version": "2099a"})
    );

    std::fs::write(zoneinfo.join("Europe/Berlin"), fixed_offset_tzif(2)).unwrap();
    std::fs::write(zoneinfo.join("+VERSION"), "2099b\n").unwrap();
    let log = daemon.reload();
    assert!(log.contains("zone rules read"), "{log}");
    assert!(log.contains("moved=[\"berlin-night\"]"), "{log}");
    // 03:00 at +02:00 is 01:00 UTC.
    let after = next_run_time().await.with_timezone(&Utc);
    assert_eq!(after.format("%H:%M").to_string(), "01:00", "{after}");
    assert!(after > Utc::now());
    assert_eq!(
        health().await["tzdata"],
        json!({"source": "system", "version": "2099b"})
    );

    // Read again unchanged, the rules move nothing.
    let log = daemon.reload();
    assert!(log.contains("moved=[]"), "{log}");
    assert_eq!(next_run_time().await.with_timezone(&Utc), after);

    // `kairos check` reads the same rules from the same setting.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["check", "-c"])
        .arg(dir.join("config.toml"))
        .current_dir(&dir)
        .env("KAIROS_TZDIR", &tzdir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains(&format!("tzdata: 2099b (system, {tzdir})")),
        "{text}"
    );
    assert!(text.contains("+02:00"), "{text}");
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(15)).is_some());
}

/// A tzdata update while the daemon is down moves fire times at the next start, as a
/// reload does: the store records the zone rules its next run times follow, and a
/// start that finds other rules recomputes them (the same rules: nothing is read but
/// that record). The rules come from `[scheduler] tzdir` here, and `kairos check`
/// refuses one that is not a directory, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tzdata_update_moves_fire_times_at_a_restart() {
    let dir = temp_dir("tzdata-restart");
    write_config(&dir, "5s");
    let config = std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .replace("[scheduler]\n", "[scheduler]\ntzdir = \"zoneinfo\"\n")
        .replace(
            "[api]\nenabled = false",
            "[api]\nlisten = \"127.0.0.1:0\"\ntoken = \"secret\"\nallowed_tasks = [\"command\"]",
        );
    write(&dir, "config.toml", &config);
    // Berlin at +09:00 in release 2099a, then at +02:00 all year in 2099b.
    let zoneinfo = dir.join("zoneinfo");
    std::fs::create_dir_all(zoneinfo.join("Europe")).unwrap();
    std::fs::write(zoneinfo.join("Europe/Berlin"), fixed_offset_tzif(9)).unwrap();
    std::fs::write(zoneinfo.join("+VERSION"), "2099a\n").unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let next_run_time = |base: String| {
        let client = client.clone();
        async move {
            let job = client
                .get(format!("{base}/jobs/berlin-night"))
                .bearer_auth("secret")
                .send()
                .await
                .unwrap();
            let job = json_of(job).await;
            let next = job["next_run_time"].as_str().unwrap().to_owned();
            chrono::DateTime::parse_from_rfc3339(&next)
                .unwrap_or_else(|error| panic!("{error}: {job}"))
                .with_timezone(&Utc)
        }
    };

    let mut first = Daemon::start(&dir);
    assert!(first.log().contains("2099a (system, "), "{}", first.log());
    // A new store has no rules recorded: they are checked, and recorded, beside the
    // running scheduler.
    assert!(
        first.wait_for_log_after(0, "checked=Missing", Duration::from_secs(10)),
        "{}",
        first.log()
    );
    // Added through the API, not the config files: the config sync at start leaves
    // it alone, so only the zone rules check can move it.
    let added = client
        .post(format!("{}/jobs", first.api_url()))
        .bearer_auth("secret")
        .header("content-type", "application/json")
        .body(
            json!({"id": "berlin-night", "task": "command", "args": {"argv": ["true"]},
                   "trigger": {"type": "cron", "hour": 3, "timezone": "Europe/Berlin"}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), reqwest::StatusCode::CREATED);
    // 03:00 at +09:00 is 18:00 UTC the day before.
    let before = next_run_time(first.api_url()).await;
    assert_eq!(before.format("%H:%M").to_string(), "18:00", "{before}");
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(15)).is_some());

    // The same rules: the stored time stays, and no store is recomputed.
    let offset = std::fs::metadata(dir.join("daemon.log")).unwrap().len();
    let mut second = Daemon::start(&dir);
    assert!(second.wait_for_log_after(offset, "checked=Missing", Duration::from_secs(10)));
    let log = second.log()[usize::try_from(offset).unwrap()..].to_owned();
    assert!(log.contains("recomputed_stores=[]"), "{log}");
    assert!(!log.contains("recomputed_stores=[\"default\"]"), "{log}");
    assert_eq!(next_run_time(second.api_url()).await, before);
    second.signal("TERM");
    assert!(second.wait_exit(Duration::from_secs(15)).is_some());

    std::fs::write(zoneinfo.join("Europe/Berlin"), fixed_offset_tzif(2)).unwrap();
    std::fs::write(zoneinfo.join("+VERSION"), "2099b\n").unwrap();
    let offset = std::fs::metadata(dir.join("daemon.log")).unwrap().len();
    let mut third = Daemon::start(&dir);
    // Rules other than the recorded ones: checked before the scheduler runs.
    let log = third.log()[usize::try_from(offset).unwrap()..].to_owned();
    let checked = log
        .lines()
        .find(|line| line.contains("checked=Differing"))
        .unwrap_or_default();
    assert!(checked.contains("recomputed_stores=[\"default\"]"), "{log}");
    // 03:00 at +02:00 is 01:00 UTC.
    let after = next_run_time(third.api_url()).await;
    assert_eq!(after.format("%H:%M").to_string(), "01:00", "{after}");
    assert!(after > Utc::now());
    third.signal("TERM");
    assert!(third.wait_exit(Duration::from_secs(15)).is_some());

    // `kairos check` names the rules the key picks, and refuses a directory that is
    // not there, naming the key.
    let check = |config: &str| {
        write(&dir, "config.toml", config);
        std::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
            .args(["check", "-c"])
            .arg(dir.join("config.toml"))
            .current_dir(&dir)
            .env_remove("KAIROS_TZDIR")
            .output()
            .unwrap()
    };
    let checked = check(&config);
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(
        text.contains(&format!("tzdata: 2099b (system, {})", zoneinfo.display())),
        "{text}"
    );
    let missing = check(&config.replace("tzdir = \"zoneinfo\"", "tzdir = \"no-such-dir\""));
    assert!(!missing.status.success());
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(
        text.contains("scheduler.tzdir")
            && text.contains("no-such-dir")
            && text.contains("not a directory"),
        "{text}"
    );
}
