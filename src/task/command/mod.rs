//! The built-in `command` task: runs a program, no shell unless asked for.
//!
//! Args (checked when the job is added, by [`CommandTask::check_args`]):
//!
//! | key | value | default |
//! | --- | --- | --- |
//! | `argv` | `["prog", "arg", …]`: the program and its arguments, run directly | — |
//! | `shell` | `true` to run `command` with `/bin/sh -c` instead of `argv` | `false` |
//! | `command` | the shell command line (only with `"shell": true`) | — |
//! | `env` | `{"NAME": "value"}` added to the environment | `{}` |
//! | `inherit_env` | `true` to pass on the scheduler's whole environment | `false` |
//! | `clear_env` | `true` to start from an empty environment (not even `PATH`) | `false` |
//! | `cwd` | the working directory | the scheduler's |
//! | `timeout` | `"30s"`, `"1h30m"` or a number of seconds | none |
//!
//! Exactly one of `argv` and `"shell": true` + `command` is given. The program also gets
//! `KAIROS_JOB_ID`, `KAIROS_RUN_ID` and `KAIROS_SCHEDULED_TIME` (RFC 3339, UTC).
//!
//! The program's environment is clean by default: only [`PASSED_ON`] (`PATH`, `HOME`,
//! `LANG`, `TZ`) of the scheduler's, plus the job's `env`. The daemon's environment
//! holds its secrets (the API token, database passwords from an `EnvironmentFile`),
//! which a job's program has no business reading (docs/threat-model.md, "Job authors").
//!
//! # Ground rules
//! - stdout and stderr are drained together, in the order chunks arrive (so their
//!   interleaving is only as exact as that), into one
//!   bounded capture that keeps the first and the last bytes (where the error usually
//!   is) and counts the rest, so a program printing 100 MB neither fills our memory nor
//!   blocks on a full pipe.
//! - The program runs in its own process group. On timeout, and when the run's future is
//!   dropped (the executor gave up on it, or shut down), the whole group gets `SIGKILL`,
//!   so `sh -c 'a & b'` leaves nothing behind. A program that moves itself into another
//!   group or session (a daemon) escapes this; only a cgroup would catch it.
//! - The group is only signalled while its leader is not yet reaped, so its id cannot
//!   have been reused by an unrelated group.
//! - When the program exits, output still buffered in the pipes is read for a short
//!   grace period; background processes it left behind (which keep the pipes open) are
//!   not waited for and not killed, as cron does.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use chrono::SecondsFormat;
use serde_json::{Map, Value};
use tokio::process::Command;

use self::output::Output;
use super::args::{duration_arg, kind, object};
use super::{Task, TaskFailure, TaskRun};

mod output;
use crate::process_group::{children_lead_their_group, signal_name, GroupGuard};

/// The variables of the scheduler's environment a program gets without
/// `inherit_env`: what finding programs, files and the locale needs, and no secret.
pub const PASSED_ON: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// Runs a program.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommandTask;

#[async_trait]
impl Task for CommandTask {
    fn check_args(&self, args: &Value) -> Result<(), String> {
        CommandArgs::parse(args).map(drop)
    }

    /// What [`CommandArgs::parse`] takes: `argv`, or `shell: true` with `command`.
    fn args_schema(&self) -> Option<Value> {
        Some(args_schema())
    }

    async fn run(&self, run: TaskRun) -> Result<String, TaskFailure> {
        let args = CommandArgs::parse(&run.args).map_err(TaskFailure::new)?;
        run_program(&args, &run).await
    }
}

const KEYS: &[&str] = &[
    "argv",
    "shell",
    "command",
    "env",
    "inherit_env",
    "clear_env",
    "cwd",
    "timeout",
];

/// The JSON Schema of [`CommandArgs::parse`]'s input (see [`Task::args_schema`]).
fn args_schema() -> Value {
    // No NUL in what becomes a C string; `env` names without `=`.
    let no_nul = r"^[^\u0000]*$";
    let flag = serde_json::json!({"type": ["boolean", "null"]});
    serde_json::json!({
        "type": "object", "additionalProperties": false,
        "description": "A program run directly (argv), or a command line run with /bin/sh -c (shell: true and command, without argv); inherit_env and clear_env not both true.",
        "properties": {
            "argv": {"type": "array", "minItems": 1, "description": "The program and its arguments.",
                     "prefixItems": [{"type": "string", "minLength": 1, "pattern": no_nul}],
                     "items": {"type": "string", "pattern": no_nul}, "examples": [["echo", "hello"]]},
            "shell": {"type": ["boolean", "null"], "description": "Run command with /bin/sh -c."},
            "command": {"type": "string", "pattern": r"^[^\u0000]*[^\u0000\s][^\u0000]*$",
                        "description": "The command line, with shell: true."},
            "env": {"type": ["object", "null"], "description": "Variables to set.",
                    "propertyNames": {"pattern": r"^[^=\u0000]+$"},
                    "additionalProperties": {"type": "string"}},
            "inherit_env": flag.clone(), "clear_env": flag,
            "cwd": {"type": ["string", "null"], "minLength": 1, "pattern": no_nul},
            "timeout": super::args::duration_arg_schema("Kill the program after this long."),
        },
        "examples": [{"argv": ["echo", "hello"]}],
    })
}

/// How long output is still read after the program exited, for what its background
/// children may still hold open.
const DRAIN_GRACE: Duration = Duration::from_millis(250);

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Program {
    /// A program and its arguments, run directly.
    Argv(Vec<String>),
    /// A command line for `/bin/sh -c`.
    Shell(String),
}

/// The checked args of a `command` job.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CommandArgs {
    program: Program,
    env: BTreeMap<String, String>,
    inherit_env: bool,
    clear_env: bool,
    cwd: Option<PathBuf>,
    timeout: Option<Duration>,
}

impl CommandArgs {
    fn parse(args: &Value) -> Result<CommandArgs, String> {
        let fields = object(args, KEYS, r#"{"argv": ["echo", "hello"]}"#)?;
        let shell = match fields.get("shell") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(shell)) => *shell,
            Some(_) => return Err("shell: must be true or false".to_owned()),
        };
        let program = match (shell, fields.get("argv"), fields.get("command")) {
            (false, Some(argv), None) => Program::Argv(parse_argv(argv)?),
            (false, None, Some(_)) => {
                return Err(r#"command: runs only with "shell": true (or give the program and its arguments as "argv")"#.to_owned());
            }
            (false, Some(_), Some(_)) => {
                return Err(
                    r#"argv and command: give one of them ("command" needs "shell": true)"#
                        .to_owned(),
                );
            }
            (false, None, None) => {
                return Err(r#"argv: missing; give the program and its arguments, e.g. ["echo", "hello"], or "shell": true and a "command""#.to_owned());
            }
            (true, Some(_), _) => {
                return Err(r#"argv: not allowed with "shell": true; give the whole command line as "command""#.to_owned());
            }
            (true, None, Some(Value::String(line))) if !line.trim().is_empty() => {
                if line.contains('\0') {
                    return Err("command: must not contain a NUL character".to_owned());
                }
                Program::Shell(line.clone())
            }
            (true, None, Some(_)) => {
                return Err("command: must be a non-empty string".to_owned());
            }
            (true, None, None) => {
                return Err(
                    r#"command: missing; "shell": true runs the "command" string with /bin/sh -c"#
                        .to_owned(),
                );
            }
        };
        let env = match fields.get("env") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(env)) => parse_env(env)?,
            Some(_) => {
                return Err(
                    r#"env: must be an object of strings, e.g. {"LANG": "C.UTF-8"}"#.to_owned(),
                )
            }
        };
        let clear_env = match fields.get("clear_env") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(clear)) => *clear,
            Some(_) => return Err("clear_env: must be true or false".to_owned()),
        };
        let inherit_env = match fields.get("inherit_env") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(inherit)) => *inherit,
            Some(_) => return Err("inherit_env: must be true or false".to_owned()),
        };
        if inherit_env && clear_env {
            return Err("inherit_env: cannot go with clear_env: true".to_owned());
        }
        let cwd = match fields.get("cwd") {
            None | Some(Value::Null) => None,
            Some(Value::String(cwd)) if !cwd.is_empty() && !cwd.contains('\0') => {
                Some(PathBuf::from(cwd))
            }
            Some(_) => return Err("cwd: must be a non-empty path".to_owned()),
        };
        let timeout = fields
            .get("timeout")
            .map(|value| duration_arg("timeout", value))
            .transpose()?
            .flatten();
        Ok(CommandArgs {
            program,
            env,
            inherit_env,
            clear_env,
            cwd,
            timeout,
        })
    }

    /// The name to show in messages: the program, or the shell.
    fn program_name(&self) -> &str {
        match &self.program {
            Program::Argv(argv) => &argv[0],
            Program::Shell(_) => "/bin/sh",
        }
    }

    fn command(&self, run: &TaskRun) -> Command {
        let mut command = match &self.program {
            Program::Argv(argv) => {
                let mut command = Command::new(&argv[0]);
                command.args(&argv[1..]);
                command
            }
            Program::Shell(line) => {
                let mut command = Command::new("/bin/sh");
                command.arg("-c").arg(line);
                command
            }
        };
        if !self.inherit_env {
            command.env_clear();
            if !self.clear_env {
                for name in PASSED_ON {
                    if let Some(value) = std::env::var_os(name) {
                        command.env(name, value);
                    }
                }
            }
        }
        command
            .envs(&self.env)
            .env("KAIROS_JOB_ID", &run.job_id)
            .env("KAIROS_RUN_ID", &run.run_id)
            .env(
                "KAIROS_SCHEDULED_TIME",
                run.scheduled_time
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if children_lead_their_group() {
            // Its own group, so a timeout can kill whatever it started too. In a
            // process-pool worker it stays in the worker's group, which the pool kills
            // whole once the run ends, times out or is shut down.
            command.process_group(0);
        }
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
    }
}

fn parse_argv(argv: &Value) -> Result<Vec<String>, String> {
    const MESSAGE: &str = "argv: must be a non-empty array of strings";
    let Value::Array(items) = argv else {
        return Err(format!(r#"{MESSAGE}, e.g. ["echo", "hello"]"#));
    };
    if items.is_empty() {
        return Err(format!(r#"{MESSAGE}, e.g. ["echo", "hello"]"#));
    }
    let mut words = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::String(word) = item else {
            return Err(format!("{MESSAGE}; argv[{index}] is {}", kind(item)));
        };
        if word.contains('\0') {
            return Err(format!("argv[{index}]: must not contain a NUL character"));
        }
        words.push(word.clone());
    }
    if words[0].is_empty() {
        return Err("argv[0]: the program name is empty".to_owned());
    }
    Ok(words)
}

fn parse_env(env: &Map<String, Value>) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (name, value) in env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(format!(
                "env: {name:?} is not a variable name (it must be non-empty, without '=')"
            ));
        }
        let Value::String(value) = value else {
            return Err(format!(
                "env.{name}: must be a string (write {})",
                Value::String(value.to_string())
            ));
        };
        if value.contains('\0') {
            return Err(format!("env.{name}: must not contain a NUL character"));
        }
        vars.insert(name.clone(), value.clone());
    }
    Ok(vars)
}

async fn run_program(args: &CommandArgs, run: &TaskRun) -> Result<String, TaskFailure> {
    if let Some(cwd) = &args.cwd {
        // Checked here because spawn reports a missing cwd as a missing program. (A
        // stat is quick enough not to need the blocking pool.)
        match std::fs::metadata(cwd) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(TaskFailure::new(format!(
                    "cwd: {} is not a directory",
                    cwd.display()
                )))
            }
            Err(error) => {
                return Err(TaskFailure::new(format!(
                    "cwd: {}: {}",
                    cwd.display(),
                    describe_io(&error)
                )))
            }
        }
    }
    let mut child = args
        .command(run)
        .spawn()
        .map_err(|error| TaskFailure::new(spawn_error(args, &error)))?;
    // Declared after `child`, so it is dropped first: the group dies before tokio's
    // kill_on_drop gets to the leader alone.
    let mut group = GroupGuard::new(child.id().filter(|_| children_lead_their_group()));
    let mut output = Output::new(child.stdout.take(), child.stderr.take());
    let deadline = args
        .timeout
        .map(|timeout| tokio::time::Instant::now() + timeout);
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);

    let exited = loop {
        tokio::select! {
            status = child.wait() => break Some(status),
            () = &mut expired => break None,
            () = output.read_some(), if output.is_open() => {}
        }
    };
    let status = match exited {
        Some(status) => {
            group.disarm();
            status
        }
        None => {
            if let Err(error) = group.kill() {
                // The leader is unreaped, so ESRCH cannot happen; anything else is worth
                // seeing, but not worth failing the run over.
                tracing::warn!(%error, "could not kill the command's process group");
            }
            // Without a group of its own (in a worker) the program itself is stopped;
            // what it started goes with the worker's group.
            let _ = child.start_kill();
            let _ = child.wait().await;
            group.disarm();
            output.drain(DRAIN_GRACE).await;
            let timeout = args.timeout.unwrap_or_default();
            return Err(TaskFailure {
                output: output.into_text(),
                ..TaskFailure::timeout(format!(
                    "timed out after {}",
                    humantime::format_duration(timeout)
                ))
            });
        }
    };
    output.drain(DRAIN_GRACE).await;
    let text = output.into_text();
    match status {
        Ok(status) if status.success() => Ok(text),
        Ok(status) => Err(TaskFailure {
            output: text,
            ..TaskFailure::new(describe_status(status))
        }),
        Err(error) => Err(TaskFailure {
            output: text,
            ..TaskFailure::new(format!(
                "waiting for {} failed: {error}",
                args.program_name()
            ))
        }),
    }
}

fn spawn_error(args: &CommandArgs, error: &io::Error) -> String {
    let program = args.program_name();
    match error.kind() {
        io::ErrorKind::NotFound if program.contains('/') => {
            format!("program not found: {program}")
        }
        io::ErrorKind::NotFound => format!("program not found: {program} (looked in PATH)"),
        io::ErrorKind::PermissionDenied => {
            format!("cannot run {program}: permission denied (is it executable?)")
        }
        _ => format!("cannot run {program}: {}", describe_io(error)),
    }
}

/// An io error without Rust's " (os error 2)" suffix.
fn describe_io(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;

    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(signal) => match signal_name(signal) {
            Some(name) => format!("killed by signal {signal} ({name})"),
            None => format!("killed by signal {signal}"),
        },
        None => format!("ended with {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(args: Value) -> String {
        CommandTask
            .check_args(&args)
            .expect_err("the args should be refused")
    }

    fn task_run(args: Value) -> TaskRun {
        TaskRun {
            job_id: "job-1".to_owned(),
            run_id: "run-1".to_owned(),
            scheduled_time: "2024-03-10T07:00:00.25Z".parse().expect("a valid time"),
            args,
            from_config: false,
        }
    }

    #[test]
    fn parses_argv_and_options() {
        let args = CommandArgs::parse(&json!({
            "argv": ["echo", "hi"],
            "env": {"A": "1"},
            "clear_env": true,
            "cwd": "/tmp",
            "timeout": "1m30s",
        }))
        .expect("valid args");
        assert_eq!(
            args.program,
            Program::Argv(vec!["echo".into(), "hi".into()])
        );
        assert_eq!(args.env.get("A").map(String::as_str), Some("1"));
        assert!(args.clear_env);
        assert_eq!(args.cwd, Some(PathBuf::from("/tmp")));
        assert_eq!(args.timeout, Some(Duration::from_secs(90)));
        let args =
            CommandArgs::parse(&json!({"shell": true, "command": "echo hi", "timeout": 2.5}))
                .expect("valid args");
        assert_eq!(args.program, Program::Shell("echo hi".into()));
        assert_eq!(args.timeout, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn bad_args_name_their_field() {
        assert_eq!(
            error(json!({"argv": []})),
            r#"argv: must be a non-empty array of strings, e.g. ["echo", "hello"]"#
        );
        assert!(error(json!({"argv": "echo hi"}))
            .starts_with("argv: must be a non-empty array of strings"));
        assert!(error(json!({"argv": ["echo", 3]})).contains("argv[1] is a number"));
        assert!(error(json!({"argv": [""]})).starts_with("argv[0]:"));
        assert!(error(json!({"argv": ["a\u{0}b"]})).starts_with("argv[0]:"));
        assert!(error(json!({"argv": ["x"], "timeout": "abc"}))
            .starts_with(r#"timeout: "abc" is not a duration"#));
        assert_eq!(
            error(json!({"argv": ["x"], "timeout": 0})),
            "timeout: must be more than zero"
        );
        assert!(error(json!({"argv": ["x"], "timeout": -1})).starts_with("timeout:"));
        assert!(error(json!({"argv": ["x"], "timeout": true})).starts_with("timeout:"));
        assert_eq!(
            error(json!({"argv": ["x"], "timeot": "1s"})),
            r#"timeot: unknown key (did you mean "timeout"?)"#
        );
        assert!(error(json!({"argv": ["x"], "user": "root"}))
            .starts_with("user: unknown key (expected one of argv, "));
        assert!(error(json!(["echo"])).starts_with("args: must be an object"));
        assert!(error(json!({})).starts_with("argv: missing"));
        assert!(
            error(json!({"argv": ["x"], "env": {"A": 1}})).starts_with("env.A: must be a string")
        );
        assert!(error(json!({"argv": ["x"], "env": ["A=1"]})).starts_with("env: must be an object"));
        assert!(error(json!({"argv": ["x"], "env": {"A=B": "1"}})).starts_with("env: \"A=B\""));
        assert!(error(json!({"argv": ["x"], "cwd": 3})).starts_with("cwd:"));
        assert!(error(json!({"argv": ["x"], "clear_env": "yes"})).starts_with("clear_env:"));
        assert!(error(json!({"argv": ["x"], "shell": "yes"})).starts_with("shell:"));
    }

    #[test]
    fn exactly_one_of_argv_and_shell_command() {
        assert!(error(json!({"shell": true, "argv": ["x"], "command": "x"}))
            .starts_with("argv: not allowed with \"shell\": true"));
        assert!(error(json!({"command": "echo hi"})).starts_with("command: runs only with"));
        assert!(error(json!({"argv": ["x"], "command": "x"})).starts_with("argv and command:"));
        assert!(error(json!({"shell": true})).starts_with("command: missing"));
        assert!(error(json!({"shell": true, "command": "  "})).starts_with("command: must be"));
        assert!(CommandTask
            .check_args(&json!({"shell": false, "argv": ["true"]}))
            .is_ok());
    }

    #[test]
    fn describes_exit_statuses() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(9)),
            "killed by signal 9 (SIGKILL)"
        );
    }

    #[tokio::test]
    async fn runs_argv_with_the_run_identity() {
        let output = CommandTask
            .run(task_run(json!({
                "argv": ["sh", "-c", "echo \"$KAIROS_JOB_ID $KAIROS_RUN_ID $KAIROS_SCHEDULED_TIME\""],
            })))
            .await
            .expect("the command succeeds");
        assert_eq!(output, "job-1 run-1 2024-03-10T07:00:00.250Z\n");
    }

    #[tokio::test]
    async fn a_dropped_run_kills_its_process_group() {
        let dir = std::env::temp_dir().join(format!("kairos-cmd-drop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let pid_file = dir.join("pgid");
        let script = format!(
            // The background `sleep` is in the group before the pid file appears.
            "sleep 1000 & echo $$ > '{}'; sleep 1000",
            pid_file.display()
        );
        let mut run =
            Box::pin(CommandTask.run(task_run(json!({"shell": true, "command": script}))));
        let pgid: libc::pid_t = loop {
            tokio::select! {
                ended = &mut run => panic!("the run ended: {ended:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if let Ok(pgid) = written.trim().parse() {
                break pgid;
            }
        };
        // The executor gives up on the run: its future is dropped mid-way.
        drop(run);
        assert!(
            group_is_gone(pgid).await,
            "processes of group {pgid} are left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Whether no live (non-zombie) process is left in the group, waiting a little for
    /// the kernel to deliver the signal.
    async fn group_is_gone(pgid: libc::pid_t) -> bool {
        for _ in 0..50 {
            if live_members(pgid) == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Counts the live processes of a group from /proc (zombies are dead already; they
    /// wait for a parent that may be a container's init which does not reap them).
    fn live_members(pgid: libc::pid_t) -> usize {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
            .filter(|stat| {
                // pid (comm) state ppid pgrp …; comm may hold spaces, so split after ')'.
                let Some(rest) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
                    return false;
                };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
            })
            .count()
    }
}
