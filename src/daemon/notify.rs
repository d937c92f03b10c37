//! Telling systemd how the daemon is doing: the `sd_notify(3)` protocol, spoken directly.
//!
//! The protocol is small enough not to need a crate: one datagram of `KEY=VALUE` lines
//! to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or an abstract name when
//! it starts with `@`). `kairos run` uses it for `Type=notify-reload`: `READY=1` once jobs
//! are scheduled, `RELOADING=1` around a SIGHUP reload, `STOPPING=1` when shutdown begins,
//! `STATUS=` for `systemctl status`, and `WATCHDOG=1` keep-alives.
//!
//! # Ground rules
//! - Without systemd (no `$NOTIFY_SOCKET`) every method does nothing, so the daemon
//!   runs the same in a terminal, a container or a test.
//! - Notifying never fails the daemon: a lost datagram is logged at debug and dropped.
//!   A daemon that cannot reach PID 1 has bigger problems, which systemd will see.
//! - The environment is read once, in [`Notifier::from_env`], and never changed:
//!   unsetting `$NOTIFY_SOCKET` is not thread-safe, and the unit's `NotifyAccess=main`
//!   already makes systemd ignore what children the daemon starts may send.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use tracing::debug;

/// How long one notification may wait for room in systemd's queue. The socket is
/// blocking, as in `sd_notify(3)`, but bounded, so a wedged PID 1 cannot stall the
/// scheduler's thread for more than this.
const SEND_TIMEOUT: Duration = Duration::from_millis(500);

/// A handle for sending `sd_notify` messages to the service manager. Cheap to share
/// behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Notifier {
    /// Where to send, or `None` when not running under a service manager.
    target: Option<NotifyTarget>,
    /// How often to send `WATCHDOG=1`, when systemd's watchdog is on for this process.
    watchdog_interval: Option<Duration>,
}

/// An unbound datagram socket and the address of the service manager's socket.
#[derive(Debug)]
struct NotifyTarget {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The notifier systemd set up for this process: `$NOTIFY_SOCKET`, and
    /// `$WATCHDOG_USEC` when `$WATCHDOG_PID` is absent or is this process. Without
    /// `$NOTIFY_SOCKET` (not under systemd, or `Type=simple`) it is [`Notifier::disabled`].
    pub fn from_env() -> Notifier {
        Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET").as_deref(),
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// A notifier that sends nothing: for running outside systemd and for tests.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog_interval: None,
        }
    }

    /// A notifier that sends to the socket bound at `path`, without a watchdog: what
    /// `from_env` builds for `NOTIFY_SOCKET=path`, without reading the environment.
    pub fn to_socket(path: &Path) -> Notifier {
        Notifier::from_vars(Some(path.as_os_str()), None, None, std::process::id())
    }

    /// The notifier for these values of `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and
    /// `$WATCHDOG_PID`, as seen by the process `own_pid`.
    fn from_vars(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
        own_pid: u32,
    ) -> Notifier {
        let Some(notify_socket) = notify_socket.filter(|value| !value.is_empty()) else {
            return Notifier::disabled();
        };
        let target = match NotifyTarget::new(notify_socket) {
            Ok(target) => target,
            Err(error) => {
                debug!(socket = ?notify_socket, %error, "sd_notify disabled: unusable NOTIFY_SOCKET");
                return Notifier::disabled();
            }
        };
        Notifier {
            target: Some(target),
            watchdog_interval: watchdog_interval(watchdog_usec, watchdog_pid, own_pid),
        }
    }

    /// Whether notifications go anywhere (`$NOTIFY_SOCKET` was set and usable).
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: startup finished (jobs loaded and scheduled, API listening), or a
    /// reload announced with [`Notifier::reloading`] finished.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=`: a reload has begun. systemd (≥ 253, for
    /// `Type=notify-reload`) waits for the next [`Notifier::ready`] to call it finished,
    /// and uses the timestamp to tell this reload from an earlier one. Send `ready()`
    /// after the reload, whether it was applied or rejected.
    pub fn reloading(&self) {
        match monotonic_usec() {
            Ok(usec) => self.send(&reloading_message(usec)),
            Err(error) => {
                // Cannot happen on Linux; a bare RELOADING=1 still starts the reload.
                debug!(%error, "reading CLOCK_MONOTONIC failed; RELOADING=1 without timestamp");
                self.send("RELOADING=1");
            }
        }
    }

    /// `STOPPING=1`: shutdown has begun (running jobs are being drained).
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// `STATUS=…`: one line for `systemctl status`. Line breaks would end the value and
    /// start a new assignment, so they become spaces.
    pub fn status(&self, status: &str) {
        self.send(&status_message(status));
    }

    /// `WATCHDOG=1`: the daemon is alive. Send it every [`Notifier::watchdog_interval`].
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// How often to call [`Notifier::watchdog`]: half of `$WATCHDOG_USEC` (as
    /// `sd_watchdog_enabled(3)` advises, so one late ping is not fatal), or `None` when
    /// the watchdog is off or belongs to another process (`$WATCHDOG_PID`).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    /// Sends one datagram; failures are logged and dropped (see the ground rules).
    fn send(&self, message: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(error) = target
            .socket
            .send_to_addr(message.as_bytes(), &target.address)
        {
            debug!(%error, message, "sd_notify message not sent");
        }
    }
}

impl NotifyTarget {
    /// An unbound socket aimed at `notify_socket`: an absolute path, or `@name` for the
    /// abstract name `name`. Other forms (relative paths, systemd 254's `vsock:`) are
    /// refused, as `sd_notify(3)` refuses what it does not support.
    fn new(notify_socket: &OsStr) -> io::Result<NotifyTarget> {
        let bytes = notify_socket.as_bytes();
        let address = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(Path::new(notify_socket))?,
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "neither an absolute path nor @abstract",
                ))
            }
        };
        // std opens it with SOCK_CLOEXEC: children do not inherit it.
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        Ok(NotifyTarget { socket, address })
    }
}

/// The watchdog ping interval for these `$WATCHDOG_USEC` and `$WATCHDOG_PID` values, as
/// seen by process `own_pid`: `None` when the watchdog is off, malformed, zero, or set
/// up for another process (a parent that left the variables in its children's env).
fn watchdog_interval(
    watchdog_usec: Option<&OsStr>,
    watchdog_pid: Option<&OsStr>,
    own_pid: u32,
) -> Option<Duration> {
    let parse = |value: &OsStr| value.to_str()?.trim().parse::<u64>().ok();
    let for_us = match watchdog_pid {
        None => true,
        Some(pid) => parse(pid) == Some(u64::from(own_pid)),
    };
    let usec = parse(watchdog_usec?).filter(|usec| *usec > 0)?;
    for_us.then(|| Duration::from_micros(usec / 2))
}

fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")
}

fn status_message(status: &str) -> String {
    let one_line: String = status
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("STATUS={one_line}")
}

/// `CLOCK_MONOTONIC` in microseconds, the clock `MONOTONIC_USEC=` is read against.
/// `std::time::Instant` reads the same clock but never shows its absolute value, and
/// the crate has no safe wrapper (rustix, nix) for `clock_gettime(2)`.
#[allow(unsafe_code)]
fn monotonic_usec() -> io::Result<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one `timespec` through the pointer, which points
    // to a live, properly aligned local that outlives the call.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    let seconds = u64::try_from(now.tv_sec).map_err(io::Error::other)?;
    let nanos = u64::try_from(now.tv_nsec).map_err(io::Error::other)?;
    Ok(seconds
        .saturating_mul(1_000_000)
        .saturating_add(nanos / 1_000))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::PathBuf;

    use super::*;

    /// A datagram socket bound in its own temporary directory, standing in for PID 1's
    /// notify socket; the directory goes when it drops.
    struct FakeSystemd {
        directory: PathBuf,
        socket: UnixDatagram,
    }

    impl FakeSystemd {
        fn bind(test: &str) -> io::Result<FakeSystemd> {
            let directory =
                std::env::temp_dir().join(format!("kairos-notify-{}-{test}", std::process::id()));
            // A directory left by a crashed run of this test is ours to replace.
            let _ = std::fs::remove_dir_all(&directory);
            std::fs::create_dir(&directory)?;
            let socket = UnixDatagram::bind(directory.join("notify"))?;
            socket.set_read_timeout(Some(Duration::from_secs(5)))?;
            Ok(FakeSystemd { directory, socket })
        }

        fn path(&self) -> PathBuf {
            self.directory.join("notify")
        }

        fn receive(&self) -> io::Result<String> {
            let mut buffer = [0_u8; 4096];
            let length = self.socket.recv(&mut buffer)?;
            Ok(String::from_utf8_lossy(&buffer[..length]).into_owned())
        }
    }

    impl Drop for FakeSystemd {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.directory);
        }
    }

    #[test]
    fn sends_the_exact_datagrams() -> io::Result<()> {
        let systemd = FakeSystemd::bind("datagrams")?;
        let notifier = Notifier::to_socket(&systemd.path());
        assert!(notifier.is_enabled());

        notifier.ready();
        assert_eq!(systemd.receive()?, "READY=1");
        notifier.status("42 jobs scheduled");
        assert_eq!(systemd.receive()?, "STATUS=42 jobs scheduled");
        notifier.watchdog();
        assert_eq!(systemd.receive()?, "WATCHDOG=1");
        notifier.stopping();
        assert_eq!(systemd.receive()?, "STOPPING=1");
        Ok(())
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() -> io::Result<()> {
        let systemd = FakeSystemd::bind("reloading")?;
        let notifier = Notifier::to_socket(&systemd.path());
        let before = monotonic_usec()?;
        notifier.reloading();
        let after = monotonic_usec()?;

        let message = systemd.receive()?;
        let usec = message
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|usec| usec.parse::<u64>().ok());
        assert!(
            usec.is_some_and(|usec| (before..=after).contains(&usec)),
            "{message:?} not within {before}..={after}"
        );
        Ok(())
    }

    #[test]
    fn reloading_message_format() {
        assert_eq!(
            reloading_message(123_456_789),
            "RELOADING=1\nMONOTONIC_USEC=123456789"
        );
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(
            status_message("reload rejected:\nconfig.toml:3:1"),
            "STATUS=reload rejected: config.toml:3:1"
        );
    }

    #[test]
    fn abstract_socket_names_start_with_at() -> io::Result<()> {
        let name = format!("kairos-notify-test-{}", std::process::id());
        let systemd = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
        systemd.set_read_timeout(Some(Duration::from_secs(5)))?;
        let notifier = Notifier::from_vars(Some(OsStr::new(&format!("@{name}"))), None, None, 1);

        notifier.ready();
        let mut buffer = [0_u8; 64];
        let length = systemd.recv(&mut buffer)?;
        assert_eq!(&buffer[..length], b"READY=1");
        Ok(())
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        let notifier = Notifier::from_vars(None, Some(OsStr::new("30000000")), None, 1);
        assert!(!notifier.is_enabled());
        assert_eq!(notifier.watchdog_interval(), None);
        notifier.ready(); // does nothing, and does not fail

        for unusable in ["", "relative/notify", "vsock:2:1234"] {
            assert!(!Notifier::from_vars(Some(OsStr::new(unusable)), None, None, 1).is_enabled());
        }
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec() {
        let usec = Some(OsStr::new("30000000"));
        let half = Some(Duration::from_secs(15));
        // No WATCHDOG_PID: the watchdog is ours.
        assert_eq!(watchdog_interval(usec, None, 4242), half);
        // WATCHDOG_PID names us.
        assert_eq!(
            watchdog_interval(usec, Some(OsStr::new("4242")), 4242),
            half
        );
        // WATCHDOG_PID names another process: it is that one's watchdog.
        assert_eq!(watchdog_interval(usec, Some(OsStr::new("1")), 4242), None);
        assert_eq!(watchdog_interval(usec, Some(OsStr::new("x")), 4242), None);
        // Off, zero or malformed.
        assert_eq!(watchdog_interval(None, None, 4242), None);
        assert_eq!(watchdog_interval(Some(OsStr::new("0")), None, 4242), None);
        assert_eq!(watchdog_interval(Some(OsStr::new("30s")), None, 4242), None);
    }

    #[test]
    fn from_vars_keeps_the_watchdog_for_its_socket() -> io::Result<()> {
        let systemd = FakeSystemd::bind("watchdog")?;
        let socket: OsString = systemd.path().into_os_string();
        let notifier = Notifier::from_vars(
            Some(&socket),
            Some(OsStr::new("2000000")),
            Some(OsStr::new("77")),
            77,
        );
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(1)));
        Ok(())
    }
}
