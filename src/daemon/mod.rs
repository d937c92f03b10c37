//! The daemon, `kairos run`: a config turned into a running scheduler that systemd can
//! supervise.
//!
//! The daemon loads the config (the same path `kairos check` takes), opens the stores,
//! starts the executors and the scheduler, then waits on signals: SIGHUP reloads the
//! config (a rejected config keeps the running one), SIGTERM and SIGINT shut down
//! gracefully (stop taking jobs, let running ones finish within `shutdown_timeout`, then
//! stop the process-pool children). Throughout it tells systemd where it stands.
//!
//! What each part owns:
//! - [`logging`]: the process-wide `tracing` subscriber: level or `RUST_LOG`, text or
//!   JSON lines, and the journald conventions (no timestamps, priority prefixes).
//! - `run`: start-up, the reload path and graceful shutdown ([`run`]).
//! - [`sync`]: making the scheduler's config-owned jobs match the config files.
//! - [`notify`]: the `sd_notify` protocol: ready, reloading, stopping, status and
//!   watchdog keep-alives, all of which do nothing outside systemd.
//!
//! `systemd/kairos.service` is the unit these are written for (`Type=notify`,
//! `WatchdogSec=`, `KillMode=mixed`).

pub mod logging;
pub mod notify;
mod run;
pub mod sync;

pub use self::run::{build_scheduler, run, DaemonError};
