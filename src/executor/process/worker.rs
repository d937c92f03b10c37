//! The child side of the process pool: read one request from stdin, run the task, write
//! the reply to the result file the parent named, exit.
//!
//! The reply goes to a file and not to stdout because the task owns stdout and stderr:
//! whatever it prints is output for the run history, and nothing it prints can be
//! mistaken for a reply.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use crate::history::{bound_output, MAX_OUTPUT_BYTES};
use crate::task::{panic_message, TaskRegistry, TaskRun};

/// The environment variable that makes a process a worker; see
/// [`run_worker_if_requested`].
pub const WORKER_ENV: &str = "KAIROS_WORKER";

/// Bumped when [`Request`] or [`Reply`] change incompatibly, so a worker built from other
/// code says so instead of misreading the request. 2: requests carry the task's
/// settings, which a worker of protocol 1 would ignore and run the task unconfigured.
pub(crate) const PROTOCOL: u32 = 2;

/// The worker ran the task and the task succeeded.
const EXIT_SUCCESS: u8 = 0;
/// The worker ran the task (or found it unknown) and reported a failure.
const EXIT_TASK_FAILED: u8 = 1;
/// The worker could not read its request or write its reply.
const EXIT_PROTOCOL: u8 = 2;

/// A request is a task name and a `TaskRun`; anything near this size is not one.
const MAX_REQUEST_BYTES: u64 = 64 * 1024 * 1024;

/// What the parent writes to the worker's stdin (then it closes stdin).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) protocol: u32,
    pub(crate) task: String,
    /// The `[tasks.SECTION]` settings the parent's task was configured with
    /// ([`crate::task::Task::settings`]): the worker's registry has the task
    /// unconfigured, since the worker reads no config.
    #[serde(default)]
    pub(crate) settings: Option<serde_json::Value>,
    pub(crate) run: TaskRun,
    /// A file the parent created (mode 0600, exclusively) for the reply.
    pub(crate) result_path: PathBuf,
}

/// What the worker writes to the result file when the task has ended.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum Reply {
    Success {
        output: String,
    },
    Failure {
        message: String,
        output: String,
        /// The task's own time limit ran out (recorded as a timeout, not an error).
        #[serde(default)]
        timed_out: bool,
    },
}

/// Runs as a worker if this process was started as one, and returns the exit code to
/// leave `main` with; returns `None` in any other process.
///
/// A program that embeds kairos and uses the `processpool` executor calls this first
/// thing in `main`, with the same tasks it gives the scheduler, because the executor
/// starts the program's own binary (with the `worker` argument and [`WORKER_ENV`] set)
/// for every run:
///
/// ```no_run
/// use std::process::ExitCode;
/// use kairos::executor::process::run_worker_if_requested;
/// use kairos::task::TaskRegistry;
///
/// fn tasks() -> TaskRegistry {
///     let mut tasks = TaskRegistry::with_builtins();
///     tasks.register_fn("report.send", |_run| async { Ok("sent".to_owned()) });
///     tasks
/// }
///
/// fn main() -> ExitCode {
///     if let Some(code) = run_worker_if_requested(&tasks()) {
///         return code;
///     }
///     // ... parse the command line, build the scheduler with tasks() ...
///     ExitCode::SUCCESS
/// }
/// ```
pub fn run_worker_if_requested(registry: &TaskRegistry) -> Option<ExitCode> {
    std::env::var_os(WORKER_ENV)?;
    Some(run_worker(registry))
}

/// Runs one request read from stdin; what `kairos worker` does.
///
/// Call it before starting any thread: it removes [`WORKER_ENV`] from the environment.
pub fn run_worker(registry: &TaskRegistry) -> ExitCode {
    // Programs the task starts must not inherit the variable: a `kairos` (or the
    // embedding program) run by the `command` task would turn into a worker and wait on
    // stdin. Callers run this before starting threads (see above), so changing the
    // environment is sound here.
    std::env::remove_var(WORKER_ENV);
    crate::process_group::mark_inside_worker();
    let code = match serve(registry) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("kairos worker: {message}");
            EXIT_PROTOCOL
        }
    };
    // The parent reads the pipes until they close; flushing here keeps the last lines.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    ExitCode::from(code)
}

fn serve(registry: &TaskRegistry) -> Result<u8, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES)
        .read_to_end(&mut input)
        .map_err(|error| format!("reading the request from stdin: {error}"))?;
    let request: Request = serde_json::from_slice(&input).map_err(|error| {
        format!(
            "stdin does not hold a request ({error}); workers are started by the processpool \
             executor, not by hand"
        )
    })?;
    if request.protocol != PROTOCOL {
        return Err(format!(
            "the request uses protocol {} and this worker speaks {PROTOCOL}: the worker \
             program is not the scheduler's build",
            request.protocol
        ));
    }
    let reply = run_task(
        registry,
        &request.task,
        request.settings.as_ref(),
        request.run,
    )?;
    let code = match reply {
        Reply::Success { .. } => EXIT_SUCCESS,
        Reply::Failure { .. } => EXIT_TASK_FAILED,
    };
    write_reply(&request.result_path, &reply)?;
    Ok(code)
}

fn run_task(
    registry: &TaskRegistry,
    name: &str,
    settings: Option<&serde_json::Value>,
    run: TaskRun,
) -> Result<Reply, String> {
    let configured = settings.and_then(|settings| registry.configured(name, settings));
    let task = match configured {
        Some(Ok(task)) => Some(task),
        Some(Err(error)) => {
            return Ok(Reply::Failure {
                message: format!("the worker could not configure `{name}`: {error}"),
                output: String::new(),
                timed_out: false,
            })
        }
        None => registry.get(name),
    };
    let Some(task) = task else {
        let known: Vec<&str> = registry.names().collect();
        return Ok(Reply::Failure {
            message: format!(
                "unknown task `{name}`: this worker knows {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
            output: String::new(),
            timed_out: false,
        });
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("starting the runtime: {error}"))?;
    // Its own tokio task, so a panic comes back as a JoinError with its message rather
    // than unwinding out of the worker before the reply is written.
    let joined =
        runtime.block_on(async move { tokio::spawn(async move { task.run(run).await }).await });
    // Dropping the runtime would wait for blocking threads the task left behind; the
    // parent kills the process group once the worker exits, so do not wait for them.
    runtime.shutdown_background();
    Ok(match joined {
        Ok(Ok(output)) => Reply::Success {
            output: bound_output(output, MAX_OUTPUT_BYTES),
        },
        Ok(Err(failure)) => Reply::Failure {
            timed_out: failure.timed_out,
            message: bound_output(failure.message, MAX_OUTPUT_BYTES),
            output: bound_output(failure.output, MAX_OUTPUT_BYTES),
        },
        Err(error) => Reply::Failure {
            message: panic_message(error),
            output: String::new(),
            timed_out: false,
        },
    })
}

fn write_reply(path: &std::path::Path, reply: &Reply) -> Result<(), String> {
    let text = serde_json::to_vec(reply).map_err(|error| format!("encoding the reply: {error}"))?;
    // Never create: the parent made the file exclusively, so opening an existing one
    // cannot be turned into a write through someone's symlink in the temp directory.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut file| file.write_all(&text))
        .map_err(|error| format!("writing the reply to {}: {error}", path.display()))
}
