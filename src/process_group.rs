//! Child processes that lead their own process group, and the one place that signals
//! such a group (one of the crate's three `unsafe` blocks, one `kill(2)` call; the
//! others read `CLOCK_MONOTONIC` in `daemon::notify` and set the timer thread's slack
//! in `clock::precise`).
//!
//! The process pool and the `command` task start children with `process_group(0)`, so
//! that a timeout or shutdown can kill everything a run started, grandchildren
//! included, with one signal to the group.
//!
//! # Ground rules
//! - Signal a group only while its leader is unreaped: until then its id cannot be
//!   reused by an unrelated process. [`GroupGuard::disarm`] once the leader is reaped.
//! - Never signal group 0 (our own) or 1 (as -1: every process we may signal).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in a process-pool worker: the worker's own group is the unit the pool kills, so
/// what a task starts there must stay in it rather than lead a group of its own (which
/// a `SIGKILL` to the worker's group would miss, leaving it running after shutdown).
static INSIDE_WORKER: AtomicBool = AtomicBool::new(false);

/// Marks this process as a process-pool worker (see [`INSIDE_WORKER`]).
pub(crate) fn mark_inside_worker() {
    INSIDE_WORKER.store(true, Ordering::SeqCst);
}

/// Whether children should lead their own process group: everywhere but in a worker.
pub(crate) fn children_lead_their_group() -> bool {
    !INSIDE_WORKER.load(Ordering::SeqCst)
}

/// Kills a child's process group when dropped, unless disarmed: a run whose future is
/// dropped (an aborted shutdown, a timeout) takes its whole group with it.
#[derive(Debug)]
pub(crate) struct GroupGuard {
    pgid: Option<u32>,
}

impl GroupGuard {
    /// Guards the group led by the child with this pid (`None`: it already exited).
    pub(crate) fn new(pgid: Option<u32>) -> GroupGuard {
        GroupGuard { pgid }
    }

    /// Kills the group now. `ESRCH` (an empty group) is the usual answer after the
    /// leader exited on its own.
    pub(crate) fn kill(&self) -> io::Result<()> {
        match self.pgid {
            Some(pgid) => kill_process_group(pgid),
            None => Ok(()),
        }
    }

    /// The leader was reaped: its id may be reused from now on, so never signal it.
    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // Nobody is left to tell about a failure here.
        let _ = self.kill();
    }
}

/// Sends `SIGKILL` to every process in the group `pgid`.
#[allow(unsafe_code)]
pub(crate) fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|pgid| *pgid > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process group id"))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours; a negative pid
    // addresses the process group, and `pgid > 1` rules out our own group and -1.
    let result = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The name of a signal, for messages: `SIGABRT`.
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_our_own_group_and_every_process() {
        assert!(kill_process_group(0).is_err());
        assert!(kill_process_group(1).is_err());
        assert!(kill_process_group(u32::MAX).is_err());
    }

    #[test]
    fn names_common_signals() {
        assert_eq!(signal_name(libc::SIGABRT), Some("SIGABRT"));
        assert_eq!(signal_name(libc::SIGKILL), Some("SIGKILL"));
        assert_eq!(signal_name(12345), None);
    }
}
