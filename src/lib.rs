//! kairos: an APScheduler-style job scheduler, as a library a tokio program embeds and
//! as a daemon (`kairos run`) that systemd supervises.
//!
//! This release holds the part everything else stands on: [`trigger`], which decides
//! when a job fires. Its types:
//!
//! - [`TriggerSpec`]: what users write — `date`, `interval`, `cron` (APScheduler 3.x
//!   field syntax), `crontab` (Vixie cron), `calendarinterval`, `and`/`or`.
//! - [`Trigger`]: a checked, compiled spec; [`Trigger::next_fire_time`] is pure.
//! - [`Zone`]: an IANA zone or a fixed offset; DST rules live in one place.
//!
//! ```
//! use chrono::{DateTime, Utc};
//! use kairos::trigger::{words::spec_from_words, Trigger, TriggerContext};
//!
//! // Weekdays at 09:30 in New York, as `kairos next cron …` reads it.
//! let words: Vec<String> = ["day_of_week=mon-fri", "hour=9", "minute=30", "timezone=America/New_York"]
//!     .iter().map(|word| word.to_string()).collect();
//! let spec = spec_from_words("cron", &words)?;
//! let from: DateTime<Utc> = "2024-03-08T15:00:00Z".parse()?; // a Friday, 10:00 EST
//! let trigger = Trigger::new(spec, &TriggerContext::new(from))?;
//! let next: Vec<String> = trigger.fire_times(from).take(2).map(|t| t.to_rfc3339()).collect();
//! // Monday 09:30 is EDT: the clocks moved on Sunday, the wall-clock time did not.
//! assert_eq!(next, ["2024-03-11T13:30:00+00:00", "2024-03-12T13:30:00+00:00"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod alert;
pub mod api;
pub mod client;
pub mod clock;
pub mod color;
pub mod config;
pub mod daemon;
pub mod executor;
pub mod history;
pub mod job;
pub mod metrics;
pub(crate) mod process_group;
pub mod scheduler;
pub mod secret_url;
pub mod store;
pub mod suggest;
pub mod task;
pub mod tls;
pub mod trigger;

pub use trigger::{Trigger, TriggerContext, TriggerError, TriggerSpec, Zone};
