//! The messages between `POST /scheduler/reload` and the daemon that owns the config
//! files: the API asks, the daemon reloads and answers. They live here, with the route
//! that sends them, so that the daemon (above) imports the API and never the other way
//! round (docs/architecture.md).

use serde::Serialize;
use tokio::sync::oneshot;

use crate::scheduler::Standing;
use crate::store::ConfigGeneration;

/// What asks for a reload.
#[derive(Debug)]
pub enum ReloadRequest {
    /// SIGHUP (`systemctl reload`).
    Signal,
    /// A config or job file changed (`watch = true`).
    FileChanged,
    /// `POST /api/v1/scheduler/reload` (`kairos jobs reload`), which waits for the
    /// outcome.
    Api {
        /// Where the outcome goes.
        reply: oneshot::Sender<ReloadOutcome>,
        /// Apply the config even if the store's generations say it was superseded:
        /// the explicit rollback (`kairos jobs reload --force`).
        force: bool,
    },
}

/// How a reload ended, for the caller that asked through the API.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The config was valid and its jobs were synced (or, superseded, left alone).
    Applied(Box<ReloadView>),
    /// The config was rejected (one line per problem); the running one stays.
    Rejected(Vec<String>),
}

/// The answer to a reload whose config was valid, as the API sends it.
#[derive(Debug, Serialize)]
pub struct ReloadView {
    /// Config jobs that were not in the store.
    pub added: Vec<String>,
    /// Config jobs whose definition changed.
    pub changed: Vec<String>,
    /// Jobs the config no longer defines.
    pub removed: Vec<String>,
    /// Config jobs left as they were.
    pub unchanged: usize,
    /// Jobs the scheduler refused, with why.
    pub failed: Vec<FailedJob>,
    /// Whether the files were applied (`false`: superseded, the store left alone).
    pub applied: bool,
    /// The content hash of the files.
    pub hash: String,
    /// Where the files stand against the store's config generations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Standing>,
    /// A newer generation another node recorded while this one synced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overtaken_by: Option<ConfigGeneration>,
    /// The reload in one line.
    pub message: String,
}

/// A job a reload could not apply.
#[derive(Debug, Serialize)]
pub struct FailedJob {
    /// The job's id.
    pub id: String,
    /// Why the scheduler refused it.
    pub error: String,
}
