//! The HTTP API's client, behind `kairos jobs` and `kairos runs`.
//!
//! This module owns how a client finds the daemon ([`Endpoint::discover`]: `KAIROS_URL`
//! and `KAIROS_TOKEN`, else the config's `[api] listen` and `token`), the calls it makes
//! ([`ApiClient`], one typed method per route) and what can go wrong
//! ([`EndpointError`] before anything is sent, [`ClientError`] after). How answers are
//! shown to people is [`table`]'s business.
//!
//! The client's types mirror the API's JSON (`src/api/view.rs`) rather than sharing
//! the server's: they accept fields they do not know, so a newer daemon does not break
//! an older CLI. Each answer keeps its body as received ([`Fetched::body`]), so
//! `--json` prints exactly what the API said.

pub mod table;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{self, ApiConfig, ConfigErrors};
use crate::history::RunRecord;
use crate::job::JobOptions;
use crate::scheduler::ClusterNode;
use crate::task::http::{chain, innermost, io_error, tls_config};
use crate::task::TaskRegistry;
use crate::trigger::words::spec_from_words;
use crate::trigger::{Trigger, TriggerContext, TriggerError, TriggerSpec, Zone};

/// The environment variable with the API's base URL (`http://127.0.0.1:8080`); it
/// wins over the config's `[api] listen`.
pub const URL_VAR: &str = "KAIROS_URL";
/// The environment variable with the API's bearer token; it wins over the config's
/// `[api] token`.
pub const TOKEN_VAR: &str = "KAIROS_TOKEN";

/// How long to wait for a TCP connection: a loopback daemon answers at once, so a
/// slow connect means the address is wrong.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take; a little over the API's own 30 s request
/// timeout, so its 503 arrives rather than our timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);
/// How much of an unexpected (non-API) response body goes into an error message.
const EXCERPT_CHARS: usize = 200;

/// Where the API is and the token to show it.
#[derive(Clone)]
pub struct Endpoint {
    /// The base URL; routes are under `{base}/api/v1`.
    pub base_url: Url,
    /// The bearer token, if the API requires one.
    pub token: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url.as_str())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Why the client's settings are unusable; nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL cannot be parsed or is not http(s).
    #[error("{origin}: {value:?} is not an http:// or https:// URL{reason}")]
    BadUrl {
        /// Where the URL came from (`KAIROS_URL`).
        origin: &'static str,
        /// The URL as given.
        value: String,
        /// Why it was refused, with its leading separator.
        reason: String,
    },
    /// The token cannot go into an HTTP header.
    #[error("{origin}: the token must be visible ASCII characters, without spaces")]
    BadToken {
        /// Where the token came from (`KAIROS_TOKEN`, `api.token`).
        origin: &'static str,
    },
    /// The config file has problems; each is in `errors`.
    #[error(
        "{}: {} problem(s); fix them, or set {URL_VAR} (and {TOKEN_VAR})",
        path.display(),
        errors.len()
    )]
    Config {
        /// The file.
        path: PathBuf,
        /// Every problem, with its line and column.
        errors: ConfigErrors,
    },
    /// The config turns the API off and the environment names no other address.
    #[error("{}: [api] enabled = false, so the daemon serves no API", path.display())]
    ApiDisabled {
        /// The file.
        path: PathBuf,
    },
}

impl Endpoint {
    /// The endpoint of this process: `KAIROS_URL` and `KAIROS_TOKEN` from the
    /// environment, and for whichever is unset the config at `config_path` (default
    /// `./config.toml`, skipped when it does not exist), of which only `[api]` is read
    /// ([`config::load_api`]); see [`Endpoint::resolve`].
    pub fn discover(config_path: Option<&Path>) -> Result<Endpoint, EndpointError> {
        let env_url = std::env::var(URL_VAR).ok();
        let env_token = std::env::var(TOKEN_VAR).ok();
        // With both set the file is not needed, so a broken one is no obstacle.
        let needs_config = env_url.is_none() || env_token.is_none();
        let default_path = Path::new(DEFAULT_CONFIG);
        let path = match config_path {
            Some(path) => Some(path),
            None if default_path.exists() => Some(default_path),
            None => None,
        };
        let api = match path {
            Some(path) if needs_config => {
                // Only `[api]`: a broken job file is no reason to lose the daemon.
                let api =
                    config::load_api(path, &TaskRegistry::with_builtins()).map_err(|errors| {
                        EndpointError::Config {
                            path: path.to_owned(),
                            errors,
                        }
                    })?;
                if !api.enabled && env_url.is_none() {
                    return Err(EndpointError::ApiDisabled {
                        path: path.to_owned(),
                    });
                }
                Some(api)
            }
            _ => None,
        };
        Endpoint::resolve(env_url.as_deref(), env_token.as_deref(), api.as_ref())
    }

    /// The endpoint from the environment's `url` and `token` (`KAIROS_URL`,
    /// `KAIROS_TOKEN`), each of which wins over the config's `[api]`; without either,
    /// the daemon's default address with no token. The config's token is only used
    /// with the config's address: a `KAIROS_URL` elsewhere gets `KAIROS_TOKEN` or none.
    ///
    /// A daemon listening on every interface (`0.0.0.0:8080`) is reached on loopback.
    pub fn resolve(
        env_url: Option<&str>,
        env_token: Option<&str>,
        api: Option<&ApiConfig>,
    ) -> Result<Endpoint, EndpointError> {
        let env_url = env_url.map(str::trim).filter(|url| !url.is_empty());
        let base_url = match env_url {
            Some(text) => parse_base_url(text, URL_VAR)?,
            None => {
                let listen = api.map_or(DEFAULT_LISTEN, |api| api.listen);
                url_for_listen(listen)?
            }
        };
        let (token, origin) = match env_token.filter(|token| !token.is_empty()) {
            Some(token) => (Some(token.to_owned()), TOKEN_VAR),
            // The config's token only goes to the config's daemon: with KAIROS_URL
            // pointing elsewhere, sending it would hand a secret to another host.
            None if env_url.is_some() => (None, TOKEN_VAR),
            None => (api.and_then(|api| api.token.clone()), "api.token"),
        };
        if let Some(token) = &token {
            let visible = !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_graphic());
            if !visible {
                return Err(EndpointError::BadToken { origin });
            }
        }
        Ok(Endpoint { base_url, token })
    }
}

/// The config file read when none is named, as `kairos run` reads it.
const DEFAULT_CONFIG: &str = "config.toml";

/// The daemon's default `[api] listen`.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

fn parse_base_url(text: &str, origin: &'static str) -> Result<Url, EndpointError> {
    let bad = |reason: String| EndpointError::BadUrl {
        origin,
        value: text.to_owned(),
        reason,
    };
    let url = Url::parse(text).map_err(|error| bad(format!(" ({error})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(bad(String::new()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(" (a base URL has no query or fragment)".to_owned()));
    }
    Ok(url)
}

/// The URL to reach a daemon listening on `listen`: an unspecified address (every
/// interface) is reached on loopback.
fn url_for_listen(listen: SocketAddr) -> Result<Url, EndpointError> {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    parse_base_url(
        &format!("http://{}/", SocketAddr::new(ip, listen.port())),
        "api.listen",
    )
}

/// What went wrong with a request that was (or was being) sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request with its error body.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's stable error code (`job_not_found`, `unauthorized`).
        code: String,
        /// The API's message for people.
        message: String,
        /// The input field at fault, when the API named one (`trigger.hour`).
        field: Option<String>,
    },
    /// No connection could be made.
    #[error(
        "cannot connect to {url}: {reason}; is `kairos run` running? \
         set {URL_VAR} to the API's address"
    )]
    Unreachable {
        /// The URL tried.
        url: String,
        /// Why the connection failed, in a few words.
        reason: String,
    },
    /// The connection failed mid-request, or the request timed out.
    #[error("{0}")]
    Transport(String),
    /// Something answered that is not the kairos API (a proxy's error page, another
    /// service on the port).
    #[error("{url} answered HTTP {status}, not as the kairos API does: {excerpt}")]
    Unexpected {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        excerpt: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

/// An answer of the API: the parsed value and the body exactly as it came.
#[derive(Clone, Debug)]
pub struct Fetched<T> {
    /// The body parsed.
    pub value: T,
    /// The body as received (empty for `204 No Content`), for `--json`.
    pub body: String,
}

/// A job as the API shows it (`src/api/view.rs`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// Its name, for people.
    pub name: String,
    /// The task it runs.
    pub task: String,
    /// The task's arguments.
    #[serde(default)]
    pub args: serde_json::Value,
    /// The trigger, structured, as `POST /jobs` takes it.
    pub trigger: serde_json::Value,
    /// The trigger in APScheduler's short form: `cron[hour='3']`.
    pub trigger_text: String,
    /// The executor that runs it.
    pub executor: String,
    /// Its options.
    pub options: JobOptionsView,
    /// Whether it is paused.
    pub paused: bool,
    /// `scheduled`, `paused` or `failed` (absent from daemons before failed jobs were
    /// kept).
    #[serde(default)]
    pub state: Option<String>,
    /// When it runs next; `None` while paused.
    pub next_run_time: Option<DateTime<Utc>>,
    /// The daemon's config files own it: pause, resume and run only.
    #[serde(default)]
    pub from_config: bool,
}

/// A job's options as the API shows them.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JobOptionsView {
    /// How late a run may start (`"30s"`); `None`: never too late.
    pub misfire_grace_time: Option<String>,
    /// Whether overdue runs are folded into one.
    pub coalesce: bool,
    /// How many runs may go at once.
    pub max_instances: u32,
    /// What a run due while `max_instances` runs go does (absent from older daemons:
    /// `skip`).
    #[serde(default)]
    pub overlap: crate::job::Overlap,
    /// Random delay per run, at most this (`"5s"`).
    pub jitter: Option<String>,
    /// The dead-man's switch (`"25h"`); `None`: none.
    #[serde(default)]
    pub expect_success_within: Option<String>,
}

/// What resuming a job did.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Resumed {
    /// The job, running on its schedule again.
    Job(Box<JobView>),
    /// The job's trigger had no fire time left, so the scheduler removed it.
    Removed {
        /// The job's id.
        id: String,
        /// Always true.
        removed: bool,
        /// The API's explanation.
        message: String,
    },
}

/// The answer to `POST /jobs/{id}/run`: the run was submitted.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RunStarted {
    /// The job.
    pub job_id: String,
    /// The run's id, as `kairos runs` shows it; absent when a failed job was set to
    /// run again now with fresh attempts (through the scheduler's loop).
    #[serde(default)]
    pub run_id: Option<String>,
}

/// The answer to `GET /jobs/{id}/explain` (the parts the CLI prints).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Explained {
    /// One sentence: where the job stands and why.
    pub summary: String,
    /// Its recent scheduled times, newest first.
    #[serde(default)]
    pub recent: Vec<ExplainedTime>,
}

/// One recent scheduled time in [`Explained`].
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ExplainedTime {
    /// The scheduled time.
    pub scheduled_time: DateTime<Utc>,
    /// What became of it, in a word.
    pub outcome: String,
    /// In a sentence.
    pub detail: String,
}

/// The answer to `POST /jobs/{id}/backfill`: how many runs were handed over.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BackfillStarted {
    /// The job.
    pub job_id: String,
    /// How many of its fire times in the range were handed over.
    pub runs: usize,
    /// The first run's id (none when the range held no fire time).
    #[serde(default)]
    pub run_id: Option<String>,
}

/// The answer to `POST /scheduler/reload`: what the config files changed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ReloadReport {
    /// Ids of jobs new in the files.
    #[serde(default)]
    pub added: Vec<String>,
    /// Ids of jobs whose definition changed.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Ids of jobs no longer in the files.
    #[serde(default)]
    pub removed: Vec<String>,
    /// How many jobs stayed as they were.
    #[serde(default)]
    pub unchanged: usize,
    /// Jobs that could not be applied, with why.
    #[serde(default)]
    pub failed: Vec<ReloadFailure>,
    /// Whether the files were applied: `Some(false)` when a newer config generation
    /// superseded them; `None` from a daemon that predates config generations.
    #[serde(default)]
    pub applied: Option<bool>,
    /// The reload in one line, config generation included.
    #[serde(default)]
    pub message: Option<String>,
}

/// One job a reload could not apply.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ReloadFailure {
    /// The job's id.
    pub id: String,
    /// Why.
    pub error: String,
}

/// The body of `POST /jobs`: the job, with its options under `options`.
#[derive(Clone, Debug, Serialize)]
pub struct NewJob {
    /// The id; the server makes one up when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The name; the server uses the id when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The task to run.
    pub task: String,
    /// The task's arguments.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub args: serde_json::Value,
    /// When to run it.
    pub trigger: TriggerSpec,
    /// Executor, misfire grace time, coalescing, instances.
    pub options: JobOptions,
    /// Add it paused.
    pub paused: bool,
    /// Replace a job with the same id instead of failing with 409.
    pub replace_existing: bool,
}

#[derive(Deserialize)]
struct JobList {
    jobs: Vec<JobView>,
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// The filters and the page of `GET /jobs`, as `kairos jobs list` passes them; all
/// `None` lists every job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// `scheduled`, `paused`, `failed` or `broken`.
    pub state: Option<String>,
    /// Only jobs of this task.
    pub task: Option<String>,
    /// Only jobs in this job store.
    pub jobstore: Option<String>,
    /// Text in the id or name, ignoring case.
    pub text: Option<String>,
    /// How many jobs in the page (the API's default: 50, at most 1,000).
    pub limit: Option<usize>,
    /// Skip this many matching jobs (offset paging).
    pub offset: Option<usize>,
    /// Go on after the page that answered with this `next_cursor` (cursor paging).
    pub cursor: Option<String>,
}

impl JobFilter {
    /// The query parameters this filter sends.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        let texts = [
            ("state", &self.state),
            ("task", &self.task),
            ("jobstore", &self.jobstore),
            ("q", &self.text),
            ("cursor", &self.cursor),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        for (name, value) in [("limit", self.limit), ("offset", self.offset)] {
            if let Some(value) = value {
                query.push((name, value.to_string()));
            }
        }
        query
    }
}

/// One page of `GET /jobs`.
#[derive(Clone, Debug)]
pub struct JobPage {
    /// The jobs in this page.
    pub jobs: Vec<JobView>,
    /// How many jobs match in all (absent from an unfiltered, unpaged list).
    pub total: Option<u64>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// One page of `GET /runs`.
#[derive(Clone, Debug)]
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<RunRecord>,
    /// Where the next (older) page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ClusterList {
    nodes: Vec<ClusterNode>,
}

#[derive(Deserialize)]
struct RunList {
    runs: Vec<RunRecord>,
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct Reschedule<'a> {
    trigger: &'a TriggerSpec,
}

/// The API's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    field: Option<String>,
}

/// A trigger from `kairos next`-style words, checked here as the server would, so a
/// mistake is named before anything is sent.
///
/// A `date` trigger with `delay` is sent as it is: the server resolves the delay on
/// its own clock.
pub fn trigger_from_words(kind: &str, words: &[String]) -> Result<TriggerSpec, TriggerError> {
    let spec = spec_from_words(kind, words)?;
    let context = TriggerContext::new(Utc::now()).with_timezone(Zone::system());
    Trigger::new(spec.clone(), &context)?;
    Ok(spec)
}

/// A client of one kairos daemon's API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    authorization: Option<HeaderValue>,
}

impl ApiClient {
    /// A client of the API at `endpoint`.
    pub fn new(endpoint: Endpoint) -> Result<ApiClient, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("kairos-cli/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls_config().map_err(ClientError::Setup)?)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| ClientError::Setup(chain(&error)))?;
        let authorization = match &endpoint.token {
            None => None,
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    // `Endpoint::resolve` lets only visible ASCII through.
                    .map_err(|_| ClientError::Setup("the token cannot be sent".to_owned()))?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(ApiClient {
            http,
            endpoint,
            authorization,
        })
    }

    /// Where this client sends its requests.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `GET /jobs`: every job, soonest next run first.
    pub async fn list_jobs(&self) -> Result<Fetched<Vec<JobView>>, ClientError> {
        let fetched: Fetched<JobList> = self.call(Method::GET, &["jobs"], None, None).await?;
        Ok(Fetched {
            value: fetched.value.jobs,
            body: fetched.body,
        })
    }

    /// `GET /jobs?state=STATE`: the first page (up to 1,000) of the jobs in one state
    /// (`scheduled`, `paused`, `failed`).
    pub async fn list_jobs_in_state(
        &self,
        state: &str,
    ) -> Result<Fetched<Vec<JobView>>, ClientError> {
        let path = ["jobs"];
        let query = [("state", state.to_owned()), ("limit", "1000".to_owned())];
        let (text, status) = self
            .send(Method::GET, &path, Some(&query), None, None)
            .await?;
        let list: JobList = self.parse(status, &path, &text)?;
        Ok(Fetched {
            value: list.jobs,
            body: text,
        })
    }

    /// `GET /jobs` with `filter`'s parameters: one page of the jobs it matches, or
    /// every job when the filter is empty.
    pub async fn list_jobs_filtered(
        &self,
        filter: &JobFilter,
    ) -> Result<Fetched<JobPage>, ClientError> {
        let path = ["jobs"];
        let query = filter.query();
        let (text, status) = self
            .send(Method::GET, &path, Some(&query), None, None)
            .await?;
        let list: JobList = self.parse(status, &path, &text)?;
        Ok(Fetched {
            value: JobPage {
                jobs: list.jobs,
                total: list.total,
                next_cursor: list.next_cursor,
            },
            body: text,
        })
    }

    /// `GET /jobs/{id}`.
    pub async fn get_job(&self, id: &str) -> Result<Fetched<JobView>, ClientError> {
        self.call(Method::GET, &["jobs", id], None, None).await
    }

    /// `POST /jobs`; with an `idempotency_key`, a retry returns the first answer
    /// instead of adding the job twice.
    pub async fn add_job(
        &self,
        job: &NewJob,
        idempotency_key: Option<&str>,
    ) -> Result<Fetched<JobView>, ClientError> {
        self.call(
            Method::POST,
            &["jobs"],
            Some(to_json(job)?),
            idempotency_key,
        )
        .await
    }

    /// `DELETE /jobs/{id}`.
    pub async fn remove_job(&self, id: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &["jobs", id], None, None, None)
            .await
            .map(drop)
    }

    /// `POST /jobs/{id}/pause`.
    pub async fn pause_job(&self, id: &str) -> Result<Fetched<JobView>, ClientError> {
        self.call(Method::POST, &["jobs", id, "pause"], None, None)
            .await
    }

    /// `POST /jobs/{id}/resume`.
    pub async fn resume_job(&self, id: &str) -> Result<Fetched<Resumed>, ClientError> {
        self.call(Method::POST, &["jobs", id, "resume"], None, None)
            .await
    }

    /// `POST /jobs/{id}/reschedule`: a new trigger, the rest of the job unchanged.
    pub async fn reschedule_job(
        &self,
        id: &str,
        trigger: &TriggerSpec,
    ) -> Result<Fetched<JobView>, ClientError> {
        let body = to_json(&Reschedule { trigger })?;
        self.call(Method::POST, &["jobs", id, "reschedule"], Some(body), None)
            .await
    }

    /// `GET /jobs/{id}/explain`.
    pub async fn explain_job(&self, id: &str) -> Result<Fetched<Explained>, ClientError> {
        self.call(Method::GET, &["jobs", id, "explain"], None, None)
            .await
    }

    /// `POST /jobs/{id}/backfill`: runs the job's fire times from `from` to `to`.
    pub async fn backfill_job(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Fetched<BackfillStarted>, ClientError> {
        let body = to_json(&serde_json::json!({
            "from": from.to_rfc3339(),
            "to": to.to_rfc3339(),
        }))?;
        self.call(Method::POST, &["jobs", id, "backfill"], Some(body), None)
            .await
    }

    /// `POST /jobs/{id}/run`: one run now, outside the schedule (the job's
    /// `max_instances` and `overlap` apply).
    pub async fn run_job(&self, id: &str) -> Result<Fetched<RunStarted>, ClientError> {
        self.run_job_with(id, false).await
    }

    /// [`ApiClient::run_job`]; with `force` the run starts whatever the limit says.
    pub async fn run_job_with(
        &self,
        id: &str,
        force: bool,
    ) -> Result<Fetched<RunStarted>, ClientError> {
        let body = if force {
            Some(to_json(&serde_json::json!({"force": true}))?)
        } else {
            None
        };
        self.call(Method::POST, &["jobs", id, "run"], body, None)
            .await
    }

    /// `GET /runs`: run records newest first, of one job or all; the API's default
    /// limit when `limit` is `None`.
    pub async fn runs(
        &self,
        job_id: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Fetched<Vec<RunRecord>>, ClientError> {
        let page = self.runs_page(job_id, limit, None).await?;
        Ok(Fetched {
            value: page.value.runs,
            body: page.body,
        })
    }

    /// `GET /runs` from `cursor` (a `next_cursor` of an earlier page) or from the
    /// newest run: one page, and where the next one starts.
    pub async fn runs_page(
        &self,
        job_id: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Fetched<RunPage>, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(job_id) = job_id {
            query.push(("job_id", job_id.to_owned()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        let (body, status) = self
            .send(Method::GET, &["runs"], Some(&query), None, None)
            .await?;
        let list: RunList = self.parse(status, &["runs"], &body)?;
        Ok(Fetched {
            value: RunPage {
                runs: list.runs,
                next_cursor: list.next_cursor,
            },
            body,
        })
    }

    /// `GET /cluster`: the nodes sharing the daemon's job stores.
    pub async fn cluster(&self) -> Result<Fetched<Vec<ClusterNode>>, ClientError> {
        let list: Fetched<ClusterList> = self.call(Method::GET, &["cluster"], None, None).await?;
        Ok(Fetched {
            value: list.value.nodes,
            body: list.body,
        })
    }

    /// `POST /scheduler/reload`: the daemon reads its config files again; `force`
    /// applies them even if a newer config generation superseded their content.
    pub async fn reload(&self, force: bool) -> Result<Fetched<ReloadReport>, ClientError> {
        let body = force.then(|| br#"{"force": true}"#.to_vec());
        let reloaded = self
            .call(Method::POST, &["scheduler", "reload"], body, None)
            .await;
        match reloaded {
            // A daemon older than the route: say what to do instead of "no route".
            Err(ClientError::Api {
                status,
                code,
                field,
                ..
            }) if code == "route_not_found" => Err(ClientError::Api {
                status,
                code,
                field,
                message: "this daemon's API cannot reload (it predates the route); \
                          send it SIGHUP instead (systemctl reload kairos)"
                    .to_owned(),
            }),
            other => other,
        }
    }

    /// Sends a request and parses a successful answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<Fetched<T>, ClientError> {
        let (text, status) = self.send(method, path, None, body, idempotency_key).await?;
        let value = self.parse(status, path, &text)?;
        Ok(Fetched { value, body: text })
    }

    fn parse<T: DeserializeOwned>(
        &self,
        status: StatusCode,
        path: &[&str],
        body: &str,
    ) -> Result<T, ClientError> {
        serde_json::from_str(body).map_err(|_| ClientError::Unexpected {
            url: self.url(path, None).to_string(),
            status: status.as_u16(),
            excerpt: excerpt(body),
        })
    }

    /// Sends a request; a success status gives the body and status, anything else the
    /// API's error.
    async fn send(
        &self,
        method: Method,
        path: &[&str],
        query: Option<&[(&str, String)]>,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<(String, StatusCode), ClientError> {
        let url = self.url(path, query);
        let method_changes = method != Method::GET;
        let mut request = self.http.request(method, url.clone());
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        // The API refuses a POST without a JSON content type, body or not: that is
        // what a cross-site page cannot send (docs/threat-model.md).
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        } else if method_changes {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let response = request
            .send()
            .await
            .map_err(|error| describe_error(&error, &url))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| describe_error(&error, &url))?;
        if status.is_success() {
            return Ok((text, status));
        }
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(ErrorBody { error }) => ClientError::Api {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
                field: error.field,
            },
            Err(_) => ClientError::Unexpected {
                url: url.to_string(),
                status: status.as_u16(),
                excerpt: excerpt(&text),
            },
        })
    }

    /// `{base}/api/v1/{path...}`, each part one percent-encoded path segment (a job id
    /// may hold `/` or spaces).
    fn url(&self, path: &[&str], query: Option<&[(&str, String)]>) -> Url {
        let mut url = self.endpoint.base_url.clone();
        // `parse_base_url` and `url_for_listen` only make URLs that can be a base.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["api", "v1"]).extend(path);
        }
        if let Some(query) = query.filter(|query| !query.is_empty()) {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, ClientError> {
    // Our request types hold only strings, numbers and JSON values: this cannot fail,
    // but a failure is still an error, not a panic.
    serde_json::to_vec(value)
        .map_err(|error| ClientError::Setup(format!("cannot write the request: {error}")))
}

/// The start of `body` on one line, for messages about answers that are not the API's.
fn excerpt(body: &str) -> String {
    let one_line: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(EXCERPT_CHARS)
        .collect();
    if one_line.is_empty() {
        "(empty body)".to_owned()
    } else {
        one_line
    }
}

/// Why a request failed, in a few words rather than reqwest's chain of wrappers.
fn describe_error(error: &reqwest::Error, url: &Url) -> ClientError {
    if error.is_connect() {
        let reason = match io_error(error) {
            Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_owned()
            }
            _ if error.is_timeout() => format!(
                "no connection within {}",
                humantime::format_duration(CONNECT_TIMEOUT)
            ),
            _ => innermost(error),
        };
        let mut base = url.clone();
        base.set_path("/");
        base.set_query(None);
        return ClientError::Unreachable {
            url: base.to_string(),
            reason,
        };
    }
    if error.is_timeout() {
        return ClientError::Transport(format!(
            "{url}: no answer within {}",
            humantime::format_duration(REQUEST_TIMEOUT)
        ));
    }
    let reason = match std::error::Error::source(error) {
        Some(source) => chain(source),
        None => error.to_string(),
    };
    ClientError::Transport(format!("{url}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(listen: &str, token: Option<&str>) -> ApiConfig {
        ApiConfig {
            enabled: true,
            listen: listen.parse().unwrap_or(DEFAULT_LISTEN),
            token: token.map(str::to_owned),
            read_tokens: Vec::new(),
            allowed_tasks: Default::default(),
            rate_limit: None,
            rate_limit_burst: None,
            tokens: Vec::new(),
            ui: true,
            allowed_hosts: Vec::new(),
            http_allow: Vec::new(),
            max_connections: 512,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(60),
            max_event_streams: 64,
        }
    }

    #[test]
    fn the_environment_wins_over_the_config() {
        let config = api("127.0.0.1:9000", Some("from-config"));
        let both = Endpoint::resolve(
            Some("http://example.test:1234"),
            Some("from-env"),
            Some(&config),
        )
        .expect("valid");
        assert_eq!(both.base_url.as_str(), "http://example.test:1234/");
        assert_eq!(both.token.as_deref(), Some("from-env"));
        let config_only = Endpoint::resolve(None, None, Some(&config)).expect("valid");
        assert_eq!(config_only.base_url.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(config_only.token.as_deref(), Some("from-config"));
        // The config's token is the config's daemon's: never sent to another URL.
        let elsewhere = Endpoint::resolve(Some("http://example.test:1234"), None, Some(&config))
            .expect("valid");
        assert_eq!(elsewhere.token, None);
        let neither = Endpoint::resolve(None, None, None).expect("valid");
        assert_eq!(neither.base_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(neither.token, None);
    }

    #[test]
    fn every_interface_is_reached_on_loopback() {
        let v4 = Endpoint::resolve(None, None, Some(&api("0.0.0.0:8080", None)));
        assert_eq!(
            v4.map(|endpoint| endpoint.base_url.to_string()).ok(),
            Some("http://127.0.0.1:8080/".to_owned())
        );
        let v6 = Endpoint::resolve(None, None, Some(&api("[::]:8080", None)));
        assert_eq!(
            v6.map(|endpoint| endpoint.base_url.to_string()).ok(),
            Some("http://[::1]:8080/".to_owned())
        );
    }

    #[test]
    fn bad_urls_and_tokens_are_named() {
        let error = |url: &str| {
            Endpoint::resolve(Some(url), None, None)
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default()
        };
        assert!(error("localhost:8080").starts_with("KAIROS_URL: \"localhost:8080\""));
        assert!(error("ftp://host/").contains("not an http:// or https:// URL"));
        assert!(error("http://host/?x=1").contains("no query"));
        let token = Endpoint::resolve(None, Some("two words"), None).err();
        assert!(token.is_some_and(|error| error.to_string().starts_with("KAIROS_TOKEN:")));
    }

    #[test]
    fn ids_are_one_path_segment_under_a_base_path() {
        let endpoint =
            Endpoint::resolve(Some("http://proxy.test/kairos/"), None, None).expect("valid");
        let client = ApiClient::new(endpoint).expect("client");
        let url = Some(client.url(&["jobs", "a/b c", "pause"], None).to_string());
        assert_eq!(
            url.as_deref(),
            Some("http://proxy.test/kairos/api/v1/jobs/a%2Fb%20c/pause")
        );
    }

    #[test]
    fn date_delay_words_make_a_delayed_trigger() {
        let spec = trigger_from_words("date", &["delay=30m".to_owned()]).expect("valid");
        let TriggerSpec::Date(date) = spec else {
            panic!("not a date trigger")
        };
        assert_eq!(date.delay, Some(Duration::from_secs(30 * 60)));
        let wrong = trigger_from_words("cron", &["hour=25".to_owned()]).err();
        assert!(wrong.is_some_and(|error| error.field() == "hour"));
    }
}
