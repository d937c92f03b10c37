//! The config loader against real files: the shipped config, includes, every kind of
//! error with its file:line:column and key, and the reload diff.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kairos::config::{
    changed_settings, load, load_with, Config, ConfigErrorKind, ConfigErrors, ConfigJob,
    ExecutorKind, LogFormat,
};
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};

/// A fresh directory under the system's temp dir holding `files` (path, text).
struct TempConfig {
    dir: PathBuf,
}

impl TempConfig {
    fn new(files: &[(&str, &str)]) -> TempConfig {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kairos-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create the test directory");
            }
            std::fs::write(&path, text).expect("write a test file");
        }
        TempConfig { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        load(self.path())
    }

    /// The error lines, with the temp directory taken out of the file names.
    fn errors(&self) -> Vec<String> {
        match self.load() {
            Ok(config) => panic!("expected errors, loaded {} jobs", config.jobs.len()),
            Err(errors) => {
                let prefix = format!("{}/", self.dir.display());
                errors
                    .iter()
                    .map(|error| error.to_string().replace(&prefix, ""))
                    .collect()
            }
        }
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn loaded(config: &TempConfig) -> Config {
    match config.load() {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config:\n{errors}"),
    }
}

/// Asserts that `lines` holds exactly one line starting with `expected`.
#[track_caller]
fn assert_reported(lines: &[String], expected: &str) {
    let found = lines
        .iter()
        .filter(|line| line.starts_with(expected))
        .count();
    assert_eq!(
        found, 1,
        "expected one line starting with\n  {expected}\nin\n{lines:#?}"
    );
}

#[test]
fn the_shipped_config_loads_with_its_demo_jobs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let config = match load(&path) {
        Ok(config) => config,
        Err(errors) => panic!("config.toml does not load:\n{errors}"),
    };
    assert_eq!(
        config.files.len(),
        4,
        "config.toml, jobs/demo.toml, jobs/orders.toml and jobs/statistics.toml"
    );
    let ids: Vec<&str> = config.jobs.iter().map(ConfigJob::id).collect();
    assert_eq!(
        ids,
        ["demo-hello", "demo-uptime", "demo-disk", "fix-statistics"]
    );
    // Issue 8: shipped disabled until [tasks.stats] is set, on the process pool.
    let statistics = &config.jobs[3].spec;
    assert_eq!(statistics.task, "stats.correct");
    assert!(statistics.paused);
    assert_eq!(statistics.options.executor.as_deref(), Some("processpool"));
    assert_eq!(
        config.executors["processpool"].kind,
        ExecutorKind::ProcessPool
    );
    assert!(config.api.allowed_tasks.contains("orders.cancel"));
    let store = &config.jobstores["default"];
    assert_eq!(
        store.url,
        format!("sqlite://{}/var/kairos.db", env!("CARGO_MANIFEST_DIR"))
    );
    assert_eq!(config.executors["default"].kind, ExecutorKind::ThreadPool);
    assert_eq!(config.api.listen.to_string(), "127.0.0.1:8080");
    assert!(!config.api.allowed_tasks.contains("command"));
    assert_eq!(config.history.keep, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn an_empty_config_gets_the_defaults() {
    let config = TempConfig::new(&[("config.toml", "")]);
    let config = loaded(&config);
    assert_eq!(config.jobstores.len(), 1);
    assert!(config.jobstores["default"].url.ends_with("/kairos.db"));
    assert_eq!(config.executors["default"].max_workers, 10);
    assert_eq!(config.scheduler.shutdown_timeout, Duration::from_secs(30));
    assert!(!config.scheduler.node_id.is_empty());
    assert!(config.api.enabled);
    assert_eq!(config.log.level, "info");
    assert!(config.jobs.is_empty());
}

#[test]
fn includes_are_followed_in_sorted_order() {
    let job = |id: &str| {
        format!("[[jobs]]\nid = \"{id}\"\ntask = \"command\"\nargs = {{ argv = [\"true\"] }}\ntrigger = {{ type = \"interval\", minutes = 5 }}\n")
    };
    let config = TempConfig::new(&[
        (
            "config.toml",
            &format!(
                "include = [\"jobs/*.toml\", \"extra/one.toml\", \"missing/*.toml\"]\n{}",
                job("main")
            ),
        ),
        ("jobs/b.toml", &job("b")),
        ("jobs/a.toml", &job("a")),
        ("jobs/.#a.toml", "this is an editor lock file, not TOML"),
        ("jobs/notes.txt", "not matched"),
        ("extra/one.toml", &job("one")),
    ]);
    let loaded = loaded(&config);
    let ids: Vec<&str> = loaded.jobs.iter().map(ConfigJob::id).collect();
    assert_eq!(ids, ["main", "a", "b", "one"]);
    assert_eq!(loaded.files.len(), 4);
    let first_included = &loaded.jobs[1].origin;
    assert!(first_included.file.ends_with("jobs/a.toml"));
    assert_eq!((first_included.line, first_included.column), (1, 1));
}

#[test]
fn a_missing_explicit_include_is_an_error_at_its_entry() {
    let config = TempConfig::new(&[(
        "config.toml",
        "include = [\"jobs/*.toml\", \"jobs/nightly.toml\"]\n",
    )]);
    let lines = config.errors();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_reported(&lines, "config.toml:1:27: include[1]: included file");
}

#[test]
fn an_unknown_key_names_the_closest_one() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[scheduler]\ntimezon = \"UTC\"\n\n[[jobs]]\nid = \"a\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"cron\", hours = 3 }\nexecuter = \"default\"\n",
    )]);
    let lines = config.errors();
    assert_reported(
        &lines,
        "config.toml:2:1: scheduler.timezon: unknown key `timezon`; did you mean `timezone`?",
    );
    assert_reported(
        &lines,
        "config.toml:8:28: jobs[0].trigger.hours: unknown key `hours`; did you mean `hour`?",
    );
    assert_reported(
        &lines,
        "config.toml:9:1: jobs[0].executer: unknown key `executer`; did you mean `executor`?",
    );
    let errors = config.load().expect_err("errors");
    assert!(errors
        .iter()
        .all(|error| error.kind == ConfigErrorKind::UnknownKey));
    assert_eq!(errors.len(), 3);
}

#[test]
fn an_out_of_range_cron_field_names_the_field() {
    let config = TempConfig::new(&[
        ("config.toml", "include = [\"jobs/*.toml\"]\n"),
        (
            "jobs/stats.toml",
            "[[jobs]]\nid = \"stats\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"cron\", hour = 25 }\n",
        ),
    ]);
    let lines = config.errors();
    assert_eq!(
        lines,
        ["jobs/stats.toml:5:35: jobs[0].trigger.hour: 25 is out of range 0-23"]
    );
}

#[test]
fn a_nested_trigger_error_names_its_path() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[[jobs]]\nid = \"both\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\n\n[jobs.trigger]\ntype = \"and\"\ntriggers = [\n  { type = \"cron\", day_of_week = \"mon-fri\" },\n  { type = \"cron\", minute = 61 },\n]\n",
    )]);
    let lines = config.errors();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_reported(
        &lines,
        "config.toml:10:29: jobs[0].trigger.triggers[1].minute: 61 is out of range",
    );
}

#[test]
fn a_swapped_pair_of_letters_is_one_edit_from_the_name_meant() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[scheduler]\ntimezone = \"Europe/Berln\"\n\n[[jobs]]\nid = \"a\"\ntask = \"stats.corerct\"\ntrigger = { type = \"cron\", huor = 3 }\n",
    )]);
    let lines = config.errors();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("did you mean `stats.correct`?")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.contains("Europe/Berlin")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("huor") && line.contains("hour")),
        "{lines:#?}"
    );
}

#[test]
fn unknown_tasks_executors_and_stores_are_named() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[[jobs]]\nid = \"a\"\ntask = \"comand\"\ntrigger = { type = \"interval\", hours = 1 }\nexecutor = \"defualt\"\njobstore = \"archive\"\n",
    )]);
    let lines = config.errors();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_reported(
        &lines,
        "config.toml:3:8: jobs[0].task: unknown task `comand`; did you mean `command`?",
    );
    assert_reported(
        &lines,
        "config.toml:5:12: jobs[0].executor: unknown executor `defualt`; did you mean `default`?",
    );
    assert_reported(
        &lines,
        "config.toml:6:12: jobs[0].jobstore: unknown job store `archive`; expected one of `default`",
    );
}

#[test]
fn tasks_come_from_the_registry_given() {
    let text = "[tasks.\"report.send\"]\ndatabase = \"mysql://localhost/news\"\n\n[[jobs]]\nid = \"stats\"\ntask = \"report.send\"\ntrigger = { type = \"cron\", hour = 3 }\n";
    let config = TempConfig::new(&[("config.toml", text)]);
    let lines = config.errors();
    assert_reported(
        &lines,
        "config.toml:1:8: tasks.\"report.send\": unknown task settings section `report.send`",
    );
    assert_reported(
        &lines,
        "config.toml:6:8: jobs[0].task: unknown task `report.send`",
    );

    let mut tasks = TaskRegistry::with_builtins();
    tasks.register_fn("report.send", |_run: TaskRun| async {
        Ok::<_, TaskFailure>(String::new())
    });
    let loaded = match load_with(config.path(), &tasks) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("{errors}"),
    };
    assert_eq!(
        loaded.tasks["report.send"]["database"],
        "mysql://localhost/news"
    );
    assert!(loaded.api.allowed_tasks.contains("report.send"));
}

#[test]
fn task_args_are_checked_by_the_task() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[[jobs]]\nid = \"a\"\ntask = \"command\"\nargs = { program = \"ls\" }\ntrigger = { type = \"interval\", hours = 1 }\n",
    )]);
    let lines = config.errors();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_reported(&lines, "config.toml:4:8: jobs[0].args: ");
}

#[test]
fn a_duplicate_id_across_files_names_both_places() {
    let job = "[[jobs]]\nid = \"nightly\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"cron\", hour = 3 }\n";
    let config = TempConfig::new(&[
        (
            "config.toml",
            &format!("include = [\"jobs/*.toml\"]\n\n{job}"),
        ),
        ("jobs/copy.toml", job),
    ]);
    let lines = config.errors();
    assert_eq!(
        lines,
        ["jobs/copy.toml:2:6: jobs[0].id: duplicate job id \"nightly\"; it is also defined at config.toml:4:6"]
    );
}

#[test]
fn bad_durations_urls_and_addresses_are_refused() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[scheduler]\nshutdown_timeout = \"30 sec0nds\"\n\n[jobstores.default]\nurl = \"mongodb://localhost\"\n\n[api]\nlisten = \"localhost\"\n\n[history]\nkeep = -5\n",
    )]);
    let lines = config.errors();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_reported(
        &lines,
        "config.toml:2:20: scheduler.shutdown_timeout: \"30 sec0nds\" is not a duration",
    );
    assert_reported(
        &lines,
        "config.toml:5:7: jobstores.default.url: unknown store URL scheme \"mongodb\"",
    );
    assert_reported(
        &lines,
        "config.toml:8:10: api.listen: \"localhost\" is not an address",
    );
    assert_reported(
        &lines,
        "config.toml:11:8: history.keep: a duration cannot be negative",
    );
}

#[test]
fn history_keeps_runs_per_job_by_default_and_reads_its_limits() {
    let defaults = loaded(&TempConfig::new(&[("config.toml", "")])).history;
    assert_eq!(defaults.keep, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(defaults.successes_per_job, Some(100));
    assert_eq!(defaults.failures_per_job, Some(1_000));
    assert_eq!(defaults.max_rows, None);
    let set = TempConfig::new(&[(
        "config.toml",
        "[history]\nkeep = \"7d\"\nmax_rows = 500\nsuccesses_per_job = 3\nfailures_per_job = \"none\"\n",
    )]);
    let history = loaded(&set).history;
    assert_eq!(history.keep, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(history.max_rows, Some(500));
    assert_eq!(history.successes_per_job, Some(3));
    assert_eq!(history.failures_per_job, None);
    let zero = TempConfig::new(&[("config.toml", "[history]\nsuccesses_per_job = 0\n")]);
    let lines = zero.errors();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_reported(
        &lines,
        "config.toml:2:21: history.successes_per_job: must be at least 1",
    );
}

#[test]
fn cluster_timings_are_read_and_checked_with_positions() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[scheduler]\nlease = \"3s\"\nheartbeat = \"1s\"\nnode_timeout = \"4s\"\npoll_interval = \"2s\"\n",
    )]);
    let loaded = loaded(&config);
    assert_eq!(loaded.scheduler.poll_interval, Some(Duration::from_secs(2)));
    assert_eq!(loaded.scheduler.lease, Duration::from_secs(3));
    assert_eq!(loaded.scheduler.heartbeat, Duration::from_secs(1));
    assert_eq!(loaded.scheduler.node_timeout, Duration::from_secs(4));
    let defaults = loaded_defaults();
    assert_eq!(defaults.scheduler.lease, Duration::from_secs(300));
    assert_eq!(defaults.scheduler.heartbeat, Duration::from_secs(10));
    assert_eq!(defaults.scheduler.node_timeout, Duration::from_secs(60));
    assert_eq!(
        defaults.scheduler.poll_interval, None,
        "the daemon chooses by store"
    );

    let config = TempConfig::new(&[(
        "config.toml",
        "[scheduler]\nlease = \"0s\"\nheartbeat = \"10s\"\nnode_timeout = \"15s\"\n",
    )]);
    let lines = config.errors();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_reported(
        &lines,
        "config.toml:2:9: scheduler.lease: must be longer than zero",
    );
    assert_reported(
        &lines,
        "config.toml:4:16: scheduler.node_timeout: must be at least two heartbeats (20s)",
    );
}

fn loaded_defaults() -> Config {
    loaded(&TempConfig::new(&[("config.toml", "")]))
}

#[test]
fn store_urls_may_leave_variables_for_open_time() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[jobstores.default]\nurl = \"postgres://kairos:${KAIROS_TEST_UNSET_PASSWORD}@db/jobs\"\n\n[jobstores.other]\nurl = \"${KAIROS_TEST_UNSET_URL}\"\n",
    )]);
    let loaded = loaded(&config);
    assert_eq!(
        loaded.jobstores["default"].url,
        "postgres://kairos:${KAIROS_TEST_UNSET_PASSWORD}@db/jobs"
    );
    assert_eq!(loaded.jobstores["other"].url, "${KAIROS_TEST_UNSET_URL}");
}

#[test]
fn the_api_rate_limit_defaults_and_is_checked_with_its_position() {
    let empty = TempConfig::new(&[("config.toml", "")]);
    let defaults = loaded(&empty);
    // No request limit by default: authenticated clients are not throttled (failed
    // authentications are, regardless).
    assert_eq!(defaults.api.rate_limit, None);
    assert_eq!(defaults.api.rate_limit_burst, None);
    let set = TempConfig::new(&[("config.toml", "[api]\nrate_limit = 50\n")]);
    let set = loaded(&set);
    assert_eq!(
        (set.api.rate_limit, set.api.rate_limit_burst),
        (Some(50), Some(100))
    );
    let burst = TempConfig::new(&[(
        "config.toml",
        "[api]\nrate_limit = 50\nrate_limit_burst = 5\n",
    )]);
    assert_eq!(loaded(&burst).api.rate_limit_burst, Some(5));
    let zero = TempConfig::new(&[(
        "config.toml",
        "[api]\nrate_limit = 0\nrate_limit_burst = 0\n",
    )]);
    assert_eq!(
        zero.errors(),
        [
            "config.toml:2:14: api.rate_limit: must be at least 1",
            "config.toml:3:20: api.rate_limit_burst: must be at least 1",
        ]
    );
}

#[test]
fn the_web_page_is_on_by_default_only_on_loopback() {
    let empty = TempConfig::new(&[("config.toml", "")]);
    assert!(loaded(&empty).api.ui, "the default listen is loopback");
    let public = TempConfig::new(&[(
        "config.toml",
        "[api]\nlisten = \"0.0.0.0:8080\"\ntoken = \"secret\"\n",
    )]);
    assert!(
        !loaded(&public).api.ui,
        "off by default where others can reach it"
    );
    let asked = TempConfig::new(&[(
        "config.toml",
        "[api]\nlisten = \"0.0.0.0:8080\"\ntoken = \"secret\"\nui = true\n",
    )]);
    assert!(loaded(&asked).api.ui);
    let off = TempConfig::new(&[("config.toml", "[api]\nui = false\n")]);
    assert!(!loaded(&off).api.ui);
    let wrong = TempConfig::new(&[("config.toml", "[api]\nui = \"yes\"\n")]);
    let errors = wrong.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("api") && errors[0].contains("ui"),
        "{errors:?}"
    );
}

#[test]
fn an_api_token_needs_its_variable() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[api]\ntoken = \"${KAIROS_TEST_UNSET_TOKEN}\"\n",
    )]);
    assert_eq!(
        config.errors(),
        ["config.toml:2:9: api.token: the environment variable \"KAIROS_TEST_UNSET_TOKEN\" is not set"]
    );
}

#[test]
fn a_toml_syntax_error_is_one_error_with_its_position() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[scheduler]\ntimezone = \"UTC\nwatch = true\n",
    )]);
    let lines = config.errors();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("config.toml:2:"), "{lines:#?}");
    let errors = config.load().expect_err("errors");
    assert_eq!(
        errors.iter().next().map(|error| error.kind),
        Some(ConfigErrorKind::Syntax)
    );
}

#[test]
fn a_syntax_error_in_one_job_file_does_not_hide_the_others() {
    let config = TempConfig::new(&[
        ("config.toml", "include = [\"jobs/*.toml\"]\n\n[log]\nformat = \"yaml\"\n"),
        ("jobs/a.toml", "[[jobs]\nid = \"a\"\n"),
        ("jobs/b.toml", "[[jobs]]\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"date\", run_date = \"2024-02-30 10:00:00\" }\n"),
    ]);
    let lines = config.errors();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    // In file order: the main file, then the included ones in load order.
    assert!(
        lines[0].starts_with("config.toml:4:10: log.format: `yaml` is not a log format"),
        "{lines:#?}"
    );
    assert!(lines[1].starts_with("jobs/a.toml:1:"), "{lines:#?}");
    assert!(
        lines[2].starts_with("jobs/b.toml:1:1: jobs[0].id: missing"),
        "{lines:#?}"
    );
    assert!(lines[3].starts_with("jobs/b.toml:4:39: jobs[0].trigger.run_date: \"2024-02-30 10:00:00\" is not a date-time"), "{lines:#?}");
}

#[test]
fn several_errors_in_one_job_are_all_reported() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[executors.default]\ntype = \"threadpol\"\nmax_workers = 0\n\n[[jobs]]\nid = \"a\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"crontab\", expression = \"61 * * * *\" }\nmax_instances = 0\nmisfire_grace_time = \"soon\"\ncoalesce = \"yes\"\n",
    )]);
    let lines = config.errors();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_reported(&lines, "config.toml:2:8: executors.default.type: `threadpol` is not an executor type; did you mean `threadpool`?");
    // The crontab line is one value, so the error points at the trigger.
    assert_reported(
        &lines,
        "config.toml:9:11: jobs[0].trigger.minute: 61 is out of range 0-59 (in the crontab line)",
    );
    assert_reported(
        &lines,
        "config.toml:10:17: jobs[0].max_instances: must be at least 1",
    );
    assert_reported(
        &lines,
        "config.toml:11:22: jobs[0].misfire_grace_time: \"soon\" is not a duration",
    );
    assert_reported(
        &lines,
        "config.toml:12:12: jobs[0].coalesce: invalid type: string \"yes\", expected a boolean",
    );
}

#[test]
fn job_options_are_resolved_against_the_defaults() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[executors.default]\ntype = \"threadpool\"\n\n[executors.slow]\ntype = \"processpool\"\nmax_workers = 2\ntimeout = \"1h\"\n\n[job_defaults]\nexecutor = \"slow\"\nmisfire_grace_time = 60\njitter = \"5s\"\n\n[[jobs]]\nid = \"a\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"interval\", hours = 1 }\n\n[[jobs]]\nid = \"b\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"cron\", hour = 3, jitter = 30 }\nexecutor = \"default\"\nmax_instances = 3\nmisfire_grace_time = \"10m\"\n",
    )]);
    let loaded = loaded(&config);
    assert_eq!(
        loaded.executors["slow"].timeout,
        Some(Duration::from_secs(3600))
    );
    let (a, b) = (&loaded.jobs[0].spec.options, &loaded.jobs[1].spec.options);
    assert_eq!(a.executor.as_deref(), Some("slow"));
    assert_eq!(a.jobstore.as_deref(), Some("default"));
    assert_eq!(a.misfire_grace_time, Some(Duration::from_secs(60)));
    assert_eq!(a.coalesce, Some(true));
    assert_eq!(a.max_instances, Some(1));
    assert_eq!(a.jitter, Some(Duration::from_secs(5)));
    assert_eq!(b.executor.as_deref(), Some("default"));
    assert_eq!(b.max_instances, Some(3));
    assert_eq!(b.misfire_grace_time, Some(Duration::from_secs(600)));
    // The trigger's own jitter is kept: the default does not override it.
    assert_eq!(b.jitter, None);
}

/// Two jobs on a memory store (a SQLite path would differ between temp directories).
fn two_job_config(hour: u32, argv: &str, extra: &str) -> String {
    format!(
        "[jobstores.default]\nurl = \"memory://\"\n\n[[jobs]]\nid = \"keep\"\ntask = \"command\"\nargs = {{ argv = [\"true\"] }}\ntrigger = {{ type = \"interval\", minutes = 5 }}\n\n[[jobs]]\nid = \"nightly\"\ntask = \"command\"\nargs = {{ argv = [\"{argv}\"] }}\ntrigger = {{ type = \"cron\", hour = {hour} }}\n{extra}"
    )
}

#[test]
fn changed_sections_are_named_and_a_moved_job_changes_none() {
    let old = loaded(&TempConfig::new(&[(
        "config.toml",
        &two_job_config(3, "true", ""),
    )]));
    let new = loaded(&TempConfig::new(&[(
        "config.toml",
        &format!(
            "[job_defaults]\nmax_instances = 2\n\n[api]\nlisten = \"127.0.0.1:9090\"\n\n{}",
            two_job_config(3, "true", "")
        ),
    )]));
    // The jobs' side of it is tests/config_sync.rs's (the daemon's sync).
    assert_eq!(changed_settings(&old, &new), ["job_defaults", "api"]);
    let same = loaded(&TempConfig::new(&[(
        "config.toml",
        &format!("\n\n# moved down\n{}", two_job_config(3, "true", "")),
    )]));
    assert!(changed_settings(&old, &same).is_empty());
}

#[test]
fn an_included_file_holds_only_jobs() {
    let config = TempConfig::new(&[
        ("config.toml", "include = [\"jobs/*.toml\"]\n"),
        (
            "jobs/a.toml",
            "[scheduler]\nwatch = true\n\n[job]\nid = \"x\"\n",
        ),
    ]);
    assert_eq!(
        config.errors(),
        [
            "jobs/a.toml:1:2: scheduler: an included file may only hold [[jobs]] tables; move `scheduler` to the main config file",
            "jobs/a.toml:4:2: job: unknown key `job`; did you mean `jobs`?",
        ]
    );
}

/// Every value of a full config replaced by values of every other type: errors, never a
/// panic, and every error has a position.
#[test]
fn no_value_makes_loading_panic() {
    let main = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"))
        .expect("read config.toml");
    let main: String = main
        .lines()
        .filter(|line| !line.starts_with("include"))
        .map(|line| format!("{line}\n"))
        .collect();
    let jobs = "\n[[jobs]]\nid = \"a\"\ntask = \"command\"\nargs = { argv = [\"true\"], timeout = \"5s\" }\ntrigger = { type = \"cron\", hour = 3, timezone = \"Europe/Berlin\" }\nexecutor = \"default\"\nmisfire_grace_time = \"5m\"\n\n[[jobs]]\nid = \"b\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"or\", triggers = [{ type = \"interval\", minutes = 5 }, { type = \"date\", run_date = 2024-01-01T00:00:00Z }] }\nmax_instances = 2\n";
    let text = format!("{main}{jobs}");
    let weird = [
        "25",
        "-1",
        "0",
        "\"\"",
        "\"x\"",
        "[]",
        "[1, \"a\"]",
        "{}",
        "{ a = 1 }",
        "1e400",
        "nan",
        "9223372036854775807",
        "1979-05-27",
        "07:32:00",
        "true",
    ];
    let config = TempConfig::new(&[("config.toml", &text)]);
    let mut loads = 0;
    for (index, line) in text.lines().enumerate() {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if key.starts_with('#') {
            continue;
        }
        for value in weird {
            let mut edited: Vec<String> = text.lines().map(str::to_owned).collect();
            edited[index] = format!("{key} = {value}");
            std::fs::write(config.path(), edited.join("\n")).expect("write");
            if let Err(errors) = config.load() {
                assert!(errors.iter().all(|error| error.line > 0), "{errors}");
            }
            loads += 1;
        }
    }
    assert!(loads > 300, "only {loads} variants");
}

/// Issue 8: `[tasks.stats]` and `[tasks.orders]` are checked by their tasks, and each
/// problem names its key and position.
#[test]
fn news_task_settings_are_checked_with_positions() {
    let text = r#"[tasks.stats]
database_url = "oracle://db/news"
redis_ulr = "redis://127.0.0.1/"

[[tasks.stats.counters]]
key = "count:user:arts"

[tasks.orders]
database_url = "mysql://shop@127.0.0.1/shop"
table = "orders; DROP TABLE users"
id_column = "id"
status_column = "status"
unpaid_value = "unpaid"
cancelled_value = "cancelled"
"#;
    let config = TempConfig::new(&[("config.toml", text)]);
    let lines = config.errors();
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_reported(
        &lines,
        "config.toml:2:16: tasks.stats.database_url: \"oracle://db/news\" is not a database URL",
    );
    assert_reported(
        &lines,
        "config.toml:3:1: tasks.stats.redis_ulr: unknown key `redis_ulr`; did you mean `redis_url`?",
    );
    assert_reported(&lines, "config.toml:1:8: tasks.stats.redis_url: missing");
    assert_reported(
        &lines,
        "config.toml:5:1: tasks.stats.counters[0].query: missing",
    );
    assert_reported(
        &lines,
        "config.toml:10:9: tasks.orders.table: \"orders; DROP TABLE users\" is not a name",
    );
}

/// `[tasks] env_allow`: the variables `${NAME}` in job args may name; each must be a
/// variable name, and it sits next to the task sections without being one.
#[test]
fn env_allow_lists_variable_names() {
    let text = "[tasks]\nenv_allow = [\"REPORT_TOKEN\", \"_X2\"]\n";
    let config = TempConfig::new(&[("config.toml", text)]);
    let loaded = config.load().unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(loaded.env_allow, ["REPORT_TOKEN", "_X2"]);
    assert!(loaded.tasks.is_empty());

    let text = "[tasks]\nenv_allow = [\"OK\", \"NOT-A-NAME\"]\n";
    let config = TempConfig::new(&[("config.toml", text)]);
    let lines = config.errors();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_reported(
        &lines,
        "config.toml:2:20: tasks.env_allow[1]: \"NOT-A-NAME\" is not an environment variable name",
    );
}

#[test]
fn news_task_settings_configure_the_registry() {
    let text = r#"[tasks.stats]
database_url = "sqlite:///tmp/news.db"
redis_url = "redis://127.0.0.1:6379/"
key_prefix = "test:"
"#;
    let config = TempConfig::new(&[("config.toml", text)]);
    let loaded = match config.load() {
        Ok(loaded) => loaded,
        Err(errors) => panic!("{errors}"),
    };
    let mut tasks = TaskRegistry::with_builtins();
    tasks.configure(&loaded.tasks).expect("valid settings");
    let stats = tasks.get("stats.correct").expect("a built-in task");
    assert_eq!(
        stats.settings().expect("configured")["key_prefix"],
        serde_json::json!("test:")
    );
    // Unconfigured sections leave their task as it was.
    let orders = tasks.get("orders.cancel").expect("a built-in task");
    assert!(orders.settings().is_none());
}

/// Nothing generated or specific to one machine is tracked: no tracked file matches
/// the repository's own ignore rules (a venv made on another machine once was).
#[test]
fn no_tracked_file_is_one_the_repository_ignores() {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "--cached", "--ignored", "--exclude-standard"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let Ok(listed) = listed.map_err(|error| println!("SKIP git: {error}")) else {
        return;
    };
    if !listed.status.success() {
        // A source tree that is not a git checkout (a crate download).
        println!(
            "SKIP not a git checkout: {}",
            String::from_utf8_lossy(&listed.stderr).trim()
        );
        return;
    }
    let tracked_but_ignored = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        tracked_but_ignored.trim().is_empty(),
        "tracked files the .gitignore excludes:\n{tracked_but_ignored}"
    );
}

/// The repository carries its own explanation: no tracked source or doc cites a file a
/// clone does not have (the project's planning notes) or an issue number of its tracker.
#[test]
fn nothing_cites_files_or_issues_a_clone_cannot_open() {
    let listed = std::process::Command::new("git")
        .args(["ls-files"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let Ok(listed) = listed.map_err(|error| println!("SKIP git: {error}")) else {
        return;
    };
    if !listed.status.success() {
        println!("SKIP not a git checkout");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let this_file = "tests/config.rs";
    let mut found = Vec::new();
    for file in String::from_utf8_lossy(&listed.stdout).lines() {
        let text_like = [".rs", ".toml", ".md", ".sh", ".js", ".py", ".service"]
            .iter()
            .any(|ext| file.ends_with(ext));
        if !text_like || file == this_file {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let cites_issue = lower.match_indices("issue ").any(|(at, _)| {
                lower[at + 6..]
                    .chars()
                    .next()
                    .is_some_and(|next| next.is_ascii_digit())
            });
            // "STYLE 15" and the like cite a style guide the repository does not hold.
            let cites_style = line.match_indices("STYLE").any(|(at, _)| {
                line[at + 5..].starts_with(".md")
                    || line[at + 5..]
                        .strip_prefix(' ')
                        .and_then(|rest| rest.chars().next())
                        .is_some_and(|next| next.is_ascii_digit())
            });
            if cites_issue || cites_style || line.contains("shared/") || line.contains("DESIGN.md")
            {
                found.push(format!("{file}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "citations a clone cannot follow:\n{}",
        found.join("\n")
    );
}

#[test]
fn named_tokens_and_the_security_keys_are_read_and_checked() {
    let good = TempConfig::new(&[(
        "config.toml",
        "[api]\nallowed_hosts = [\"Kairos.Internal\"]\nhttp_allow = [\"10.0.0.0/8\", \"db.internal\"]\n\
         max_connections = 100\nheader_timeout = \"5s\"\n\
         [api.tokens.orders]\ntoken = \"s3cret\"\naccess = \"write\"\ntasks = [\"orders.cancel\"]\nrate_limit = 50\n\
         [api.tokens.grafana]\ntoken = \"r3ad\"\n",
    )]);
    let config = loaded(&good);
    assert_eq!(config.api.allowed_hosts, ["kairos.internal"]);
    assert_eq!(config.api.http_allow, ["10.0.0.0/8", "db.internal"]);
    assert_eq!(config.api.max_connections, 100);
    assert_eq!(config.api.header_timeout, std::time::Duration::from_secs(5));
    let orders = &config
        .api
        .tokens
        .iter()
        .find(|token| token.name == "orders")
        .expect("the orders token");
    assert!(orders.write);
    assert_eq!(
        orders
            .tasks
            .as_ref()
            .map(|tasks| tasks.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["orders.cancel".to_owned()])
    );
    assert_eq!(
        (orders.rate_limit, orders.rate_limit_burst),
        (Some(50), Some(100))
    );
    let grafana = &config
        .api
        .tokens
        .iter()
        .find(|token| token.name == "grafana")
        .expect("the grafana token");
    assert!(!grafana.write);
    assert!(!format!("{:?}", config.api).contains("s3cret"));
    let bad = TempConfig::new(&[(
        "config.toml",
        "[api]\nhttp_allow = [\"10.0.0.0/33\"]\n[api.tokens.x]\naccess = \"admin\"\ntoken = \"t\"\n",
    )]);
    let errors = bad.errors();
    assert!(
        errors.iter().any(|line| line.contains("api.http_allow[0]")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|line| line.contains("api.tokens.x.access")),
        "{errors:?}"
    );
}

/// `[[alerts.webhooks]]` and `expect_success_within` are read with their defaults,
/// `${VAR}` expanded in header values.
#[test]
fn alerts_and_the_dead_mans_switch_are_read() {
    std::env::set_var("KAIROS_TEST_HOOK_TOKEN", "s3cret");
    let config = TempConfig::new(&[(
        "config.toml",
        r#"
[job_defaults]
expect_success_within = "2d"

[alerts]
check_every = "30s"

[[alerts.webhooks]]
url = "https://hooks.example/kairos"
headers = { Authorization = "Bearer ${KAIROS_TEST_HOOK_TOKEN}" }
events = ["failed", "overdue"]
max_attempts = 3

[[alerts.webhooks]]
url = "http://127.0.0.1:9000/all"

[[jobs]]
id = "nightly-stats"
task = "command"
args = { argv = ["true"] }
trigger = { type = "cron", hour = 3 }
expect_success_within = "25h"

[[jobs]]
id = "hourly"
task = "command"
args = { argv = ["true"] }
trigger = { type = "cron", minute = 0 }
"#,
    )]);
    let config = loaded(&config);
    let alerts = &config.alerts;
    assert_eq!(alerts.check_every, Duration::from_secs(30));
    assert_eq!(alerts.webhooks.len(), 2);
    let first = &alerts.webhooks[0];
    assert_eq!(
        first.headers,
        [("Authorization".to_owned(), "Bearer s3cret".to_owned())]
    );
    assert_eq!(
        first.events,
        [
            kairos::alert::AlertKind::Failed,
            kairos::alert::AlertKind::Overdue
        ]
    );
    assert_eq!(first.max_attempts, 3);
    assert_eq!(alerts.webhooks[1].events, kairos::alert::AlertKind::ALL);
    let within = |id: &str| {
        config
            .jobs
            .iter()
            .find(|job| job.id() == id)
            .and_then(|job| job.spec.options.expect_success_within)
    };
    assert_eq!(
        within("nightly-stats"),
        Some(Duration::from_secs(25 * 3600))
    );
    assert_eq!(within("hourly"), Some(Duration::from_secs(2 * 86_400)));
}

/// Every bad alert setting is reported at once, each naming its key.
#[test]
fn bad_alert_settings_name_their_keys() {
    let config = TempConfig::new(&[(
        "config.toml",
        r#"
[alerts]
check_evry = "1m"

[[alerts.webhooks]]
url = "ftp://hooks.example/x"
events = ["failed", "exploded"]
max_attempts = 0

[[alerts.webhooks]]
headers = { "Bad Header" = "x" }
timeout = "soon"

[[alerts.webhooks]]
url = "https://hooks.example/${KAIROS_TEST_UNSET_VARIABLE}"
retries = 3

[[jobs]]
id = "nightly-stats"
task = "command"
args = { argv = ["true"] }
trigger = { type = "cron", hour = 3 }
expect_success_within = "30s"

[[jobs]]
id = "other"
task = "command"
args = { argv = ["true"] }
trigger = { type = "cron", hour = 4 }
expect_success_within = "whenever"

[[jobs]]
id = "millennial"
task = "command"
args = { argv = ["true"] }
trigger = { type = "cron", hour = 5 }
expect_success_within = "1000years"
"#,
    )]);
    let errors = config.errors();
    let joined = errors.join("\n");
    for key in [
        "alerts.check_evry: unknown key `check_evry`; did you mean `check_every`?",
        "alerts.webhooks[0].url: ",
        "alerts.webhooks[0].events: unknown event \"exploded\"",
        "alerts.webhooks[0].max_attempts: must be between 1 and 20",
        "alerts.webhooks[1].url: missing",
        "alerts.webhooks[1].headers.Bad Header: ",
        "alerts.webhooks[1].timeout: ",
        "alerts.webhooks[2].url: the environment variable \"KAIROS_TEST_UNSET_VARIABLE\" is not set",
        "alerts.webhooks[2].retries: unknown key",
        "jobs[0].expect_success_within: must be at least 1m",
        "jobs[1].expect_success_within: ",
        "jobs[2].expect_success_within: must be at most 100years",
    ] {
        assert!(
            errors.iter().any(|line| line.contains(key)),
            "no error for {key:?} in:\n{joined}"
        );
    }
}

/// `overlap` in `[job_defaults]` and beside `coalesce` in a `[[jobs]]` table: a job's
/// own wins, the defaults fill in the rest.
#[test]
fn overlap_is_resolved_against_the_defaults() {
    use kairos::job::Overlap;
    let config = TempConfig::new(&[(
        "config.toml",
        "[job_defaults]\noverlap = \"queue\"\n\n[[jobs]]\nid = \"a\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"interval\", hours = 1 }\n\n[[jobs]]\nid = \"b\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"interval\", hours = 1 }\ncoalesce = false\noverlap = \"replace\"\n\n[[jobs]]\nid = \"c\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"interval\", hours = 1 }\noverlap = \"skip\"\n",
    )]);
    let loaded = loaded(&config);
    let overlap = |index: usize| loaded.jobs[index].spec.options.overlap;
    assert_eq!(overlap(0), Some(Overlap::Queue));
    assert_eq!(overlap(1), Some(Overlap::Replace));
    assert_eq!(overlap(2), Some(Overlap::Skip));
}

/// Without `overlap` anywhere, a config job's spec leaves it out: the specs stored by
/// kairos before it had the option compare equal, so a reload changes nothing.
#[test]
fn overlap_left_at_skip_is_left_out_of_a_config_jobs_spec() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[[jobs]]\nid = \"a\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"interval\", hours = 1 }\n",
    )]);
    let loaded = loaded(&config);
    assert_eq!(loaded.jobs[0].spec.options.overlap, None);
    let json = serde_json::to_value(&loaded.jobs[0].spec).expect("a spec is JSON");
    assert!(json.get("overlap").is_none(), "{json}");
}

/// A bad `overlap` names the field and the values it takes, in `[job_defaults]` and in
/// a job.
#[test]
fn a_bad_overlap_names_the_field_and_the_allowed_values() {
    let config = TempConfig::new(&[(
        "config.toml",
        "[job_defaults]\noverlap = \"wait\"\n\n[[jobs]]\nid = \"a\"\ntask = \"command\"\nargs = { argv = [\"true\"] }\ntrigger = { type = \"interval\", hours = 1 }\noverlap = \"sometimes\"\n",
    )]);
    let lines = config.errors();
    assert_reported(
        &lines,
        "config.toml:2:11: job_defaults.overlap: must be one of \"skip\", \"queue\", \"replace\", not \"wait\"",
    );
    assert_reported(
        &lines,
        "config.toml:9:11: jobs[0].overlap: must be one of \"skip\", \"queue\", \"replace\", not \"sometimes\"",
    );
}
