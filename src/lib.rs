//! kairos: an APScheduler-style job scheduler, as a library a tokio program embeds and
//! as a daemon (`kairos run`) that systemd supervises.
//!
//! # Embedding it
//!
//! What an embedding program uses is re-exported here:
//!
//! - [`Scheduler`], built by [`SchedulerBuilder`]: add, modify, pause, resume,
//!   reschedule and remove jobs, run them now, read their history, [`Event`]s;
//! - [`JobSpec`] and its [`JobOptions`] (`coalesce`, `max_instances` and its
//!   [`Overlap`], `misfire_grace_time`, [`RetryPolicy`], ...), and the [`Job`] a store
//!   keeps;
//! - [`TriggerSpec`] (`date`, `interval`, `cron`, `crontab`, `calendarinterval`,
//!   `and`/`or`) with its zone, [`Zone`], and the compiled [`Trigger`];
//! - [`TaskRegistry`] and [`TaskRun`]: the named tasks jobs run;
//! - the stores ([`JobStore`], opened from a URL by [`open_store`]: memory, SQLite,
//!   PostgreSQL, MySQL/MariaDB, Redis) and the executors ([`ThreadPoolExecutor`],
//!   [`ProcessPoolExecutor`]);
//! - [`RunRecord`] and [`RunOutcome`]: what became of each run.
//!
//! ```
//! use kairos::{Event, JobSpec, Scheduler, TaskRegistry, TaskRun, TriggerSpec};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut tasks = TaskRegistry::with_builtins();
//! tasks.register_fn("orders.cancel_if_unpaid", |run: TaskRun| async move {
//!     Ok(format!("order {} cancelled", run.args["order_id"]))
//! });
//! // The memory store and a thread pool of ten, unless told otherwise.
//! let scheduler = Scheduler::builder().tasks(tasks).build();
//! let mut events = scheduler.subscribe();
//! scheduler.start();
//!
//! // An order to cancel if still unpaid: a one-off job, due at once here.
//! let now: TriggerSpec = serde_json::from_value(json!({"type": "date", "delay": "0s"}))?;
//! let spec = JobSpec::new("orders.cancel_if_unpaid", now).with_args(json!({"order_id": 1042}));
//! scheduler.add_job(spec).await?;
//!
//! loop {
//!     if let Event::JobExecuted { run } = events.recv().await? {
//!         assert_eq!(run.output.as_deref(), Some("order 1042 cancelled"));
//!         break;
//!     }
//! }
//! scheduler.shutdown(None).await;
//! # Ok(())
//! # }
//! ```
//!
//! `cargo run --example embedded` is a longer one, and the trigger engine stands on its
//! own ([`trigger`]: `Trigger::next_fire_time` is pure).
//!
//! # The rest
//!
//! `docs/architecture.md` maps the layers, from the binary's `main` down to `trigger`.
//! The modules a program embedding kairos has no use for — the daemon, its HTTP API
//! and CLI client, its config files, metrics and terminal helpers — are public only so
//! the `kairos` binary and the tests can reach them; they are hidden from these docs
//! and promise no stability.

#![deny(missing_docs)]

#[doc(hidden)]
pub mod alert;
#[cfg(feature = "mimalloc")]
#[doc(hidden)]
pub mod allocator;
#[doc(hidden)]
pub mod api;
#[doc(hidden)]
pub mod client;
pub mod clock;
#[doc(hidden)]
pub mod color;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod daemon;
pub mod executor;
pub mod history;
pub mod job;
#[doc(hidden)]
pub mod metrics;
pub(crate) mod process_group;
pub mod scheduler;
#[doc(hidden)]
pub mod secret_url;
pub mod store;
#[doc(hidden)]
pub mod suggest;
pub mod task;
#[doc(hidden)]
pub mod tls;
pub mod trigger;

pub use executor::pool::ThreadPoolExecutor;
pub use executor::process::ProcessPoolExecutor;
pub use history::{RunOutcome, RunRecord};
pub use job::{Job, JobChanges, JobOptions, JobSpec, Overlap, RetryPolicy};
pub use scheduler::{Event, Scheduler, SchedulerBuilder, SchedulerError};
pub use store::{open as open_store, JobStore, OpenOptions};
pub use task::{TaskFailure, TaskRegistry, TaskRun};
pub use trigger::{Trigger, TriggerContext, TriggerError, TriggerSpec, Zone};
