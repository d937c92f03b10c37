//! From the raw schema to a validated [`Config`](super::Config): one small `check_*`
//! function per section, each taking what it needs, reporting every problem into the
//! shared error list and returning its best value anyway, so that the checks after it
//! still run and the user sees all problems at once.
//!
//! One file per section: `scheduler.rs`, `stores.rs` (`[jobstores]` and
//! `[executors]`), `job_options.rs` (`[job_defaults]` and the options jobs share),
//! `api.rs`, `log.rs`, `history.rs`, `tasks.rs`; the `[[jobs]]` tables have their own
//! file, `../jobs.rs`. The helpers that word errors the same way everywhere
//! (`invalid`, `missing`, `unknown_name`) are in `report.rs`.

mod api;
mod history;
mod job_options;
mod log;
mod report;
mod scheduler;
mod stores;
mod tasks;

pub(crate) use self::api::check_api;
pub(crate) use self::history::check_history;
pub(crate) use self::job_options::check_job_defaults;
pub(crate) use self::log::check_log;
pub(crate) use self::report::{check_reference, invalid, missing, unknown_name, Names};
pub(crate) use self::scheduler::check_scheduler;
pub(crate) use self::stores::{check_executors, check_jobstores, declared_names};
pub(crate) use self::tasks::{check_env_allow, check_task_settings};

/// The name of the executor and store used when none is named.
const DEFAULT: &str = "default";
