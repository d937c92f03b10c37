//! One worker child, seen from the parent: start it, feed it its request, drain its
//! output, stop it on timeout or shutdown, kill its process group, and turn how it ended
//! into an outcome. The protocol and the ground rules are in the parent module's docs.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::worker::{Reply, Request, PROTOCOL, WORKER_ENV};
use super::{join_all, reached, Phase};
use crate::history::{bound_output, RunOutcome, MAX_OUTPUT_BYTES};
use crate::process_group::{signal_name, GroupGuard};
use crate::task::TaskRun;

/// How long the pipes are still read after the worker's group is gone: only a process
/// that left the group can hold them open that long.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// A reply holds at most two bounded strings; JSON escaping can grow them, nothing more.
const MAX_REPLY_BYTES: u64 = 16 * MAX_OUTPUT_BYTES as u64;

/// How to start a worker and how long to let it run.
#[derive(Clone, Debug)]
pub(super) struct Launch {
    /// `None`: this process's own binary; see the module docs.
    pub(super) program: Option<(PathBuf, Vec<OsString>)>,
    pub(super) timeout: Option<Duration>,
}

/// How a run ended, before it becomes a record.
pub(super) struct Ended {
    pub(super) outcome: RunOutcome,
    pub(super) error: Option<String>,
    pub(super) output: String,
}

impl Ended {
    pub(super) fn error(message: impl Into<String>) -> Ended {
        Ended {
            outcome: RunOutcome::Error,
            error: Some(message.into()),
            output: String::new(),
        }
    }

    /// A run that did not start, and why (taken back before its turn).
    pub(super) fn skipped(message: impl Into<String>) -> Ended {
        Ended {
            outcome: RunOutcome::Skipped,
            error: Some(message.into()),
            output: String::new(),
        }
    }
}

/// Why the parent stopped waiting for the worker.
#[derive(Clone)]
enum Stop {
    Exited,
    TimedOut(Duration),
    ShutDown,
    /// Replaced by a newer run (`overlap = "replace"`), with the reason.
    Replaced(String),
}

/// Starts the worker for one run and sees it to its end.
pub(super) async fn supervise(
    task_name: &str,
    settings: Option<serde_json::Value>,
    run: &TaskRun,
    launch: &Launch,
    phase: &mut watch::Receiver<Phase>,
    replaced: &crate::executor::RunStop,
) -> Ended {
    if std::env::var_os(WORKER_ENV).is_some() {
        return Ended::error(format!(
            "this process was started as a kairos worker ({WORKER_ENV} is set) but runs a \
             scheduler: its main must call kairos::executor::process::run_worker_if_requested \
             first; refusing to start workers from a worker"
        ));
    }
    let result = match ResultFile::create() {
        Ok(result) => result,
        Err(error) => {
            return Ended::error(format!(
                "could not create a result file in {}: {error}",
                std::env::temp_dir().display()
            ))
        }
    };
    let request = Request {
        protocol: PROTOCOL,
        task: task_name.to_owned(),
        settings,
        run: run.clone(),
        result_path: result.path.clone(),
    };
    let request = match serde_json::to_vec(&request) {
        Ok(request) => request,
        Err(error) => return Ended::error(format!("could not encode the request: {error}")),
    };
    let (program, mut command) = worker_command(launch);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return Ended::error(format!(
                "could not start the worker {}: {error}",
                program.display()
            ))
        }
    };
    // Armed before anything can fail or be cancelled: from here on, leaving this
    // function by any path (even a dropped future) kills the group.
    let mut group = GroupGuard::new(child.id());
    let output = Arc::new(Mutex::new(Captured::default()));
    let mut pipes = JoinSet::new();
    if let Some(mut stdin) = child.stdin.take() {
        // A worker that dies before reading its request closes the pipe; its exit
        // status tells that story better than the write error would.
        pipes.spawn(async move {
            let _ = stdin.write_all(&request).await;
        });
    }
    if let Some(stdout) = child.stdout.take() {
        pipes.spawn(capture(stdout, Arc::clone(&output)));
    }
    if let Some(stderr) = child.stderr.take() {
        pipes.spawn(capture(stderr, Arc::clone(&output)));
    }
    let limit = async {
        match launch.timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let (stop, exited) = tokio::select! {
        status = child.wait() => (Stop::Exited, Some(status)),
        () = limit => (Stop::TimedOut(launch.timeout.unwrap_or_default()), None),
        () = reached(phase, Phase::Killing) => (Stop::ShutDown, None),
        reason = replaced.stopped() => (Stop::Replaced(reason), None),
    };
    // On timeout and shutdown this kills the live worker and all it started. After a
    // clean exit it kills what the task left behind: the kernel does not hand out a pid
    // while a group of that id has members, and an empty group is signalled microseconds
    // after the reap, far sooner than pids wrap around.
    // ESRCH (nothing left in the group) is the usual answer after a clean exit.
    let _ = group.kill();
    let status = match exited {
        Some(status) => status,
        None => child.wait().await,
    };
    group.disarm();
    if tokio::time::timeout(DRAIN_GRACE, join_all(&mut pipes))
        .await
        .is_err()
    {
        tracing::warn!(
            task = %task_name,
            run_id = %run.run_id,
            "a process that left the worker's group still holds its output; stopped reading"
        );
    }
    drop(pipes);
    let captured = std::mem::take(&mut *output.lock().unwrap_or_else(|p| p.into_inner()));
    let mut ended = match stop {
        Stop::TimedOut(limit) => Ended {
            outcome: RunOutcome::Timeout,
            error: Some(format!(
                "the task ran longer than its timeout of {}; its process group was killed",
                humantime::format_duration(limit)
            )),
            output: String::new(),
        },
        Stop::ShutDown => Ended::error(
            "the scheduler shut down before the run finished; its process group was killed",
        ),
        Stop::Replaced(reason) => Ended::error(format!("{reason}; its process group was killed")),
        Stop::Exited => match status {
            Ok(status) => judge(status, result.read(), launch),
            Err(error) => Ended::error(format!("could not wait for the worker: {error}")),
        },
    };
    ended.output = combine(ended.output, captured);
    ended
}

/// The command that starts a worker, and the program's name for messages.
fn worker_command(launch: &Launch) -> (PathBuf, Command) {
    let (program, args, arg0) = match &launch.program {
        Some((program, args)) => (program.clone(), args.clone(), None),
        None => {
            let exe = std::env::current_exe().ok();
            let own = Path::new("/proc/self/exe");
            let program = if own.exists() {
                own.to_path_buf()
            } else {
                exe.clone().unwrap_or_else(|| own.to_path_buf())
            };
            (program, vec![OsString::from("worker")], exe)
        }
    };
    let mut command = Command::new(&program);
    if let Some(arg0) = arg0 {
        command.arg0(arg0);
    }
    command
        .args(args)
        .env(WORKER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    (program, command)
}

/// The outcome of a worker that exited on its own.
fn judge(status: ExitStatus, reply: Option<Result<Reply, String>>, launch: &Launch) -> Ended {
    match reply {
        Some(Ok(Reply::Success { output })) => Ended {
            outcome: RunOutcome::Success,
            error: None,
            output,
        },
        Some(Ok(Reply::Failure {
            message,
            output,
            timed_out,
        })) => Ended {
            outcome: if timed_out {
                RunOutcome::Timeout
            } else {
                RunOutcome::Error
            },
            error: Some(message),
            output,
        },
        Some(Err(garbled)) => Ended::error(format!(
            "the worker {} and left an unreadable result ({garbled})",
            describe(status)
        )),
        None => {
            let mut message = format!("the worker {} without reporting a result", describe(status));
            if launch.program.is_none() && status.code().is_some() {
                message.push_str(
                    " (does the program's main call \
                     kairos::executor::process::run_worker_if_requested first?)",
                );
            }
            Ended::error(message)
        }
    }
}

/// "exited with status 3", "was killed by signal 6 (SIGABRT)".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => {
            let name = signal_name(signal)
                .map(|name| format!(" ({name})"))
                .unwrap_or_default();
            let core = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            format!("was killed by signal {signal}{name}{core}")
        }
        (None, None) => format!("ended with {status}"),
    }
}

/// What a worker printed: the first [`MAX_OUTPUT_BYTES`], and how much in all.
#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    total: u64,
}

impl Captured {
    fn push(&mut self, bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len() as u64);
        let room = MAX_OUTPUT_BYTES.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }
}

/// Reads a pipe to its end, keeping what fits; stdout and stderr share one `Captured`,
/// so their lines interleave roughly as they were written.
async fn capture(mut pipe: impl AsyncRead + Unpin, into: Arc<Mutex<Captured>>) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => into
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(&buffer[..read]),
        }
    }
}

/// The record's output: what the task returned, then what the worker printed, cut to
/// [`MAX_OUTPUT_BYTES`] with a note that counts everything, also what was never kept.
fn combine(returned: String, printed: Captured) -> String {
    let dropped = printed.total.saturating_sub(printed.kept.len() as u64);
    let mut text = returned;
    if !printed.kept.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&printed.kept));
    }
    if dropped == 0 {
        return bound_output(text, MAX_OUTPUT_BYTES);
    }
    let total = (text.len() as u64).saturating_add(dropped);
    let mut cut = text.len().min(MAX_OUTPUT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    // The same note as `bound_output`, with the real total.
    text.push_str(&format!(
        "\n[output cut: {total} bytes, kept the first {cut}]"
    ));
    text
}

/// The file a worker writes its reply to; removed when dropped.
struct ResultFile {
    path: PathBuf,
}

impl ResultFile {
    fn create() -> std::io::Result<ResultFile> {
        let directory = std::env::temp_dir();
        let mut attempt = 0;
        loop {
            let path = directory.join(format!(
                "kairos-run-{}-{:016x}.json",
                std::process::id(),
                fastrand::u64(..)
            ));
            // Exclusive and private: nobody else can have placed a file or a symlink
            // there, and nobody else can read the reply.
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match created {
                Ok(_) => return Ok(ResultFile { path }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The reply, if the worker wrote one.
    fn read(&self) -> Option<Result<Reply, String>> {
        let mut text = Vec::new();
        let read = std::fs::File::open(&self.path)
            .and_then(|file| file.take(MAX_REPLY_BYTES).read_to_end(&mut text));
        if let Err(error) = read {
            return Some(Err(error.to_string()));
        }
        if text.is_empty() {
            return None;
        }
        Some(serde_json::from_slice(&text).map_err(|error| error.to_string()))
    }
}

impl Drop for ResultFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove a result file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_output_is_bounded_and_counted() {
        let mut printed = Captured::default();
        for _ in 0..3 {
            printed.push(&vec![b'x'; MAX_OUTPUT_BYTES]);
        }
        assert_eq!(printed.kept.len(), MAX_OUTPUT_BYTES);
        let text = combine("returned".to_owned(), printed);
        let total = 3 * MAX_OUTPUT_BYTES + "returned\n".len();
        assert!(text.starts_with("returned\nxxx"));
        assert!(text.ends_with(&format!(
            "[output cut: {total} bytes, kept the first {MAX_OUTPUT_BYTES}]"
        )));
    }

    #[test]
    fn small_output_is_kept_whole() {
        let mut printed = Captured::default();
        printed.push(b"line\n");
        assert_eq!(combine(String::new(), printed), "line\n");
        assert_eq!(combine("ok".to_owned(), Captured::default()), "ok");
    }

    #[test]
    fn signals_are_named() {
        let aborted = ExitStatus::from_raw(libc::SIGABRT);
        assert_eq!(describe(aborted), "was killed by signal 6 (SIGABRT)");
        let exited = ExitStatus::from_raw(3 << 8);
        assert_eq!(describe(exited), "exited with status 3");
    }
}
