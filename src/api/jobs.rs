//! `/jobs`: list, add, show, change and remove jobs, and act on one (pause, resume,
//! run now, reschedule).
//!
//! Each handler checks what only the API cares about (the task policy, config
//! ownership, idempotency) and leaves the rest to the [`Scheduler`] handle, whose
//! errors [`ApiError`] maps to statuses.
//!
//! Jobs defined in the daemon's config files (`from_config`) belong to those files: the
//! API may pause, resume and run them, but changing, rescheduling, removing or
//! replacing one is refused with 409, since the next reload would undo it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Grant};
use super::compute::{check_trigger, off_workers, too_costly};
use super::error::ApiError;
use super::extract::{bounded, parse_json, Json, JsonBody, NoFields, Path, Query};
use super::idempotency::{Begin, StoredResponse};
use super::view::JobView;
use super::{AppState, Routes, Verb, PREFIX};
use crate::job::{Job, JobChanges, JobOptions, JobSpec};
use crate::scheduler::Scheduler;
use crate::store::{JobQuery, SetAside};
use crate::task::outbound::never_reachable;
use crate::trigger::datetime::format_instant;
use crate::trigger::{TriggerContext, TriggerSpec};

/// The longest job id accepted, in bytes: ids go into URLs and store keys, and the
/// MySQL store's id columns are `VARCHAR(255)` (characters, so 255 bytes always fit).
const MAX_ID_LENGTH: usize = 255;

pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Verb::Get, "/jobs", list_jobs)
        .add(Verb::Post, "/jobs", add_job)
        .add(Verb::Get, "/jobs/{id}", get_job)
        .add(Verb::Patch, "/jobs/{id}", modify_job)
        .add(Verb::Delete, "/jobs/{id}", remove_job)
        .add(Verb::Post, "/jobs/{id}/pause", pause_job)
        .add(Verb::Post, "/jobs/{id}/resume", resume_job)
        .add(Verb::Post, "/jobs/{id}/run", run_job)
        .add(Verb::Post, "/jobs/{id}/reschedule", reschedule_job)
        .add(Verb::Get, "/jobs/{id}/fire_times", job_fire_times)
        .add(Verb::Post, "/jobs/{id}/backfill", backfill_job)
        .add(Verb::Get, "/jobs/{id}/explain", explain_job)
}

/// `GET /jobs/{id}/explain`: why the job's next run is when it is, and what became of
/// its recent scheduled times.
async fn explain_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<crate::scheduler::Explanation>, ApiError> {
    Ok(axum::Json(state.scheduler.explain_job(&id).await?))
}

/// The body of `POST /jobs/{id}/backfill`: the range of fire times to run, both ends
/// included.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillRange {
    from: chrono::DateTime<chrono::FixedOffset>,
    to: chrono::DateTime<chrono::FixedOffset>,
}

/// The answer to a backfill: how many runs were handed over, and the first's id.
#[derive(Debug, Serialize)]
struct BackfillStarted {
    job_id: String,
    runs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
}

async fn backfill_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(range): Json<BackfillRange>,
) -> Result<(StatusCode, axum::Json<BackfillStarted>), ApiError> {
    let (runs, run_id) = state
        .scheduler
        .backfill_job(&id, range.from.to_utc(), range.to.to_utc())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(BackfillStarted {
            job_id: id,
            runs,
            run_id: Some(run_id).filter(|run_id| !run_id.is_empty()),
        }),
    ))
}

/// The body of `POST /jobs`: a [`JobSpec`] with its options under `options`, the way
/// [`JobView`] shows them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewJob {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    task: String,
    #[serde(default)]
    args: serde_json::Value,
    trigger: TriggerSpec,
    #[serde(default)]
    options: JobOptions,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    next_run_time: Option<DateTime<Utc>>,
    #[serde(default)]
    replace_existing: bool,
}

impl From<NewJob> for JobSpec {
    fn from(new: NewJob) -> JobSpec {
        JobSpec {
            id: new.id,
            name: new.name,
            task: new.task,
            args: new.args,
            trigger: new.trigger,
            options: new.options,
            paused: new.paused,
            next_run_time: new.next_run_time,
            replace_existing: new.replace_existing,
            // An API caller cannot claim config ownership.
            from_config: false,
            config_version: None,
        }
    }
}

#[derive(Serialize)]
struct JobList {
    jobs: Vec<JobView>,
    /// How many jobs match in all, when the request asked for a page.
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    /// What the filters can choose from, when the request asked for a page.
    #[serde(skip_serializing_if = "Option::is_none")]
    facets: Option<Facets>,
    /// Where the next page starts (pass it as `cursor`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct Facets {
    /// The registered tasks.
    tasks: Vec<String>,
    /// The job stores.
    jobstores: Vec<String>,
}

/// `GET /jobs` without parameters lists every job (scripts, `kairos jobs`); any of
/// these asks for one page of a filtered list instead (the web page).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
    /// Text in the id or name, ignoring case.
    #[serde(default)]
    q: Option<String>,
    /// `scheduled`, `paused`, `failed` (one-off jobs whose attempts were used up) or
    /// `broken` (jobs whose trigger could not be evaluated): each lists only its own.
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    jobstore: Option<String>,
    /// Include each job's latest run.
    #[serde(default)]
    last_run: Option<bool>,
    /// A `next_cursor` of an earlier page, with the same filters.
    #[serde(default)]
    cursor: Option<String>,
}

impl ListQuery {
    /// The filters, as a cursor is bound to them.
    fn filters(&self) -> String {
        format!(
            "q={:?};state={:?};task={:?};jobstore={:?}",
            self.q, self.state, self.task, self.jobstore
        )
    }
}

/// Jobs in one page when the request names no `limit`.
const DEFAULT_PAGE: usize = 50;
/// The largest page.
const MAX_PAGE: usize = 1000;
/// The most jobs an unpaged `GET /jobs` lists.
const MAX_UNPAGED: usize = 10_000;

async fn list_jobs(
    State(state): State<AppState>,
    grant: Option<Extension<Grant>>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<JobList>, ApiError> {
    let hide = read_only(grant.as_ref());
    let paged = query.limit.is_some()
        || query.offset.is_some()
        || query.cursor.is_some()
        || query.q.is_some()
        || query.state.is_some()
        || query.task.is_some()
        || query.jobstore.is_some()
        || query.last_run.is_some();
    // Unpaged, every job up to [`MAX_UNPAGED`]; past that the first ones and `total`,
    // so no token makes one request read a million jobs.
    if !paged && state.scheduler.count_jobs().await? <= MAX_UNPAGED as u64 {
        let jobs = state.scheduler.get_jobs().await?;
        return Ok(axum::Json(JobList {
            jobs: jobs
                .iter()
                .map(|job| JobView::from(job).redacted_if(hide))
                .collect(),
            total: None,
            facets: None,
            next_cursor: None,
        }));
    }
    if !paged {
        let listed = state
            .scheduler
            .list_jobs(
                &JobQuery {
                    limit: MAX_UNPAGED,
                    ..JobQuery::default()
                },
                None,
            )
            .await?;
        return Ok(axum::Json(JobList {
            jobs: listed
                .jobs
                .iter()
                .map(|(store, job)| JobView::from(job).in_store(store.clone()).redacted_if(hide))
                .collect(),
            next_cursor: (listed.total > MAX_UNPAGED as u64)
                .then(|| super::cursor::encode("jobs", &query.filters(), MAX_UNPAGED)),
            total: Some(listed.total),
            facets: None,
        }));
    }
    let limit = bounded("limit", query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let filters = query.filters();
    let offset = match (query.offset, query.cursor.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "offset and cursor: give one or the other",
            ))
        }
        (_, Some(cursor)) => super::cursor::decode("jobs", &filters, cursor)?,
        (offset, None) => offset.unwrap_or(0),
    };
    let (paused, failed, set_aside) = match query.state.as_deref() {
        None | Some("" | "all") => (None, None, None),
        Some("scheduled") => (Some(false), Some(false), None),
        Some("paused") => (Some(true), None, None),
        // Set aside (neither paused nor with a next run time), each way apart; the way
        // implies the rest (`JobQuery::set_aside`).
        Some("failed") => (None, None, Some(SetAside::Failed)),
        Some("broken") => (None, None, Some(SetAside::Broken)),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("state: {other:?} is not one of all, scheduled, paused, failed, broken"),
            ))
        }
    };
    let job_query = JobQuery {
        paused,
        failed,
        set_aside,
        task: query.task.filter(|task| !task.is_empty()),
        text: query.q.filter(|text| !text.trim().is_empty()),
        offset,
        limit,
    };
    let jobstore = query.jobstore.filter(|name| !name.is_empty());
    let listed = state
        .scheduler
        .list_jobs(&job_query, jobstore.as_deref())
        .await?;
    let mut jobs = Vec::with_capacity(listed.jobs.len());
    for (store, job) in listed.jobs {
        // One read of the last success per watched job of the page (none for the
        // others): the list marks overdue jobs (docs/alerts.md).
        let watch = state.scheduler.success_watch(&store, &job).await?;
        let mut view = JobView::from(&job)
            .in_store(store)
            .with_success_watch(watch)
            .redacted_if(hide);
        if query.last_run == Some(true) {
            let latest = state.scheduler.runs(Some(&job.id), 1).await?;
            view = view.with_last_run(latest.first());
        }
        jobs.push(view);
    }
    let next = offset.saturating_add(jobs.len());
    Ok(axum::Json(JobList {
        next_cursor: (!jobs.is_empty() && (next as u64) < listed.total)
            .then(|| super::cursor::encode("jobs", &filters, next)),
        jobs,
        total: Some(listed.total),
        facets: Some(Facets {
            tasks: state.scheduler.tasks().names().map(str::to_owned).collect(),
            jobstores: state.scheduler.jobstore_names(),
        }),
    }))
}

/// `POST /jobs`, idempotent when the request carries an `Idempotency-Key`.
async fn add_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be visible ASCII",
            )
        })?),
    };
    let Some(key) = key else {
        return Ok(created_response(create_job(&state, &caller, &body).await?));
    };
    super::idempotency::check_key(key)?;
    // Keys are per token: one client's key never replays another client's answer.
    let key = format!("{}\u{0}{key}", caller.name);
    let pending = match state.idempotency.begin(&key, &body)? {
        Begin::Replay(stored) => return Ok(replay(stored)),
        Begin::Fresh(pending) => pending,
    };
    // Created in its own task, so a client that hangs up mid-request cannot cancel it
    // between the store write and the cache entry: the retry must find the entry.
    let handled = tokio::spawn(async move {
        let created = create_job(&state, &caller, &body).await;
        if let Ok(stored) = &created {
            pending.finish(stored.clone());
        }
        // A failure drops `pending`, which releases the key for a retry.
        created
    });
    match handled.await {
        Ok(created) => Ok(created_response(created?)),
        Err(join_error) => {
            tracing::error!(error = %join_error, "adding a job through the API failed");
            Err(ApiError::internal())
        }
    }
}

/// Checks and adds the job in `body`; the 201 response as it is kept for retries.
async fn create_job(
    state: &AppState,
    caller: &Caller,
    body: &Bytes,
) -> Result<StoredResponse, ApiError> {
    let new: NewJob = parse_json(body)?;
    // An unknown task is a typo to name as such (with the closest one), not a refusal.
    if state.scheduler.tasks().get(&new.task).is_none() {
        return Err(crate::scheduler::SchedulerError::unknown_task(
            &new.task,
            state.scheduler.tasks(),
        )
        .into());
    }
    if !caller.may_use_task(&new.task, &state.settings) {
        return Err(task_not_allowed(caller, &new.task));
    }
    // The `http` task refuses these when it runs; saying so now is kinder.
    if new.task == "http" {
        let url = new
            .args
            .get("url")
            .and_then(|url| url.as_str())
            .unwrap_or_default();
        if let Some(refusal) = never_reachable(url) {
            return Err(ApiError::invalid(
                "args.url",
                format!("args.url: {refusal}"),
            ));
        }
    }
    if let Some(id) = &new.id {
        check_id(id)?;
        // Replacing a config-owned job would take it from its file; a missing one is
        // simply added.
        if new.replace_existing {
            let existing = state.scheduler.get_job(id).await?;
            if let Some(existing) = existing {
                if existing.is_from_config() {
                    return Err(ApiError::config_owned(id));
                }
                check_scope(caller, &existing)?;
            }
        }
    }
    check_trigger(&new.trigger, trigger_context(state), "trigger").await?;
    let spec: JobSpec = new.into();
    let jobstore = state.scheduler.jobstore_for(&spec).to_owned();
    let job = state
        .scheduler
        .add_job(spec)
        .await
        .map_err(|error| ApiError::from(error).in_options())?;
    let view = JobView::from(&job).in_store(jobstore);
    let body = serde_json::to_vec(&view).map_err(|error| {
        tracing::error!(%error, job_id = job.id, "a job could not be written as JSON");
        ApiError::internal()
    })?;
    Ok(StoredResponse {
        status: StatusCode::CREATED,
        body: Bytes::from(body),
        location: Some(format!("{PREFIX}/jobs/{}", percent_encode_segment(&job.id))),
        etag: Some(etag(job.revision)),
    })
}

/// 403: `caller` may not add or change jobs of `task`.
fn task_not_allowed(caller: &Caller, task: &str) -> ApiError {
    let why = if caller.tasks.is_some() {
        format!(
            "token {:?} may only use the tasks listed for it",
            &*caller.name
        )
    } else {
        "see [api] allowed_tasks".to_owned()
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        "task_not_allowed",
        format!("task {task:?} may not be used through the API ({why})"),
    )
    .with_field("task")
}

/// 403 when a scoped token would change a job of a task outside its scope.
fn check_scope(caller: &Caller, job: &Job) -> Result<(), ApiError> {
    match &caller.tasks {
        Some(tasks) if !tasks.contains(&job.task) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "token_scope",
            format!(
                "token {:?} may not change job {:?}: its task {:?} is not one of the token's",
                &*caller.name, job.id, job.task
            ),
        )),
        _ => Ok(()),
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LENGTH {
        return Err(ApiError::invalid(
            "id",
            format!("id: must be 1 to {MAX_ID_LENGTH} bytes"),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "id",
            "id: must not contain control characters",
        ));
    }
    Ok(())
}

fn created_response(stored: StoredResponse) -> Response {
    json_response(stored, false)
}

fn replay(stored: StoredResponse) -> Response {
    json_response(stored, true)
}

fn json_response(stored: StoredResponse, replayed: bool) -> Response {
    let mut response = (
        stored.status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        stored.body,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(location) = stored
        .location
        .and_then(|location| HeaderValue::try_from(location).ok())
    {
        headers.insert(header::LOCATION, location);
    }
    if let Some(etag) = stored
        .etag
        .and_then(|etag| HeaderValue::try_from(etag).ok())
    {
        headers.insert(header::ETAG, etag);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `id` as one URL path segment: everything but unreserved characters (RFC 3986
/// §2.3) percent-encoded.
fn percent_encode_segment(id: &str) -> String {
    let mut encoded = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

async fn get_job(
    State(state): State<AppState>,
    grant: Option<Extension<Grant>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (store, job) = state
        .scheduler
        .locate_job(&id)
        .await?
        .ok_or_else(|| ApiError::job_not_found(&id))?;
    let watch = state.scheduler.success_watch(&store, &job).await?;
    let view = JobView::from(&job)
        .in_store(store)
        .with_success_watch(watch)
        .redacted_if(read_only(grant.as_ref()));
    Ok(with_etag(&job, view))
}

/// The `ETag` of a job at `revision`: the revision its store gave its last write
/// (`Job::revision`), so every node sharing the store gives the same tag, and any
/// change to the job (by the API, the library, a reload, a run) gives a new one.
pub(super) fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

/// A job's view as JSON, with the job's `ETag`.
fn with_etag(job: &Job, view: JobView) -> Response {
    let mut response = axum::Json(view).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag(job.revision)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The revision a change must find the job at, from the request's `If-Match`: `None`
/// without the header (or with `*`: any job that exists), the job's current revision
/// when one of the listed tags is its `ETag`, else 412 at once. Tags are compared
/// strongly (RFC 9110, 13.1.1): a weak `W/"..."` never matches.
fn if_match(headers: &HeaderMap, job: &Job) -> Result<Option<u64>, ApiError> {
    let mut listed = headers.get_all(header::IF_MATCH).iter().peekable();
    if listed.peek().is_none() {
        return Ok(None);
    }
    let current = etag(job.revision);
    let mut tags = Vec::new();
    for value in listed {
        let value = value.to_str().map_err(|_| {
            ApiError::bad_request("invalid_if_match", "If-Match must be visible ASCII")
        })?;
        tags.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|tag| !tag.is_empty()),
        );
    }
    if tags.contains(&"*") {
        return Ok(None);
    }
    if tags.contains(&current.as_str()) {
        return Ok(Some(job.revision));
    }
    Err(crate::scheduler::SchedulerError::RevisionChanged {
        id: job.id.clone(),
        revision: job.revision,
    }
    .into())
}

/// Whether the request's token may only read: such a token sees job args with their
/// secrets hidden (`view::redact_args`).
fn read_only(grant: Option<&Extension<Grant>>) -> bool {
    matches!(grant, Some(Extension(Grant::ReadOnly)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FireTimesQuery {
    #[serde(default)]
    count: Option<usize>,
}

#[derive(Serialize)]
struct FireTimes {
    /// In the trigger's time zone, RFC 3339.
    fire_times: Vec<String>,
    timezone: String,
}

/// `GET /jobs/{id}/fire_times`: the job's coming fire times from its next run time,
/// by the same trigger code that fires it (none while paused).
async fn job_fire_times(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<FireTimesQuery>,
) -> Result<axum::Json<FireTimes>, ApiError> {
    let count = bounded(
        "count",
        query.count,
        super::preview::DEFAULT_COUNT,
        super::preview::MAX_COUNT,
    )?;
    let job = find(&state.scheduler, &id).await?;
    let zone = job.trigger.timezone();
    let fire_times = match job.next_run_time {
        None => Vec::new(),
        Some(next) => {
            let trigger = job.trigger.clone();
            off_workers(move |deadline| trigger.try_fire_times(next, count, Some(deadline)))
                .await?
                .map_err(|error| too_costly("trigger", error))?
                .into_iter()
                .map(|instant| format_instant(instant, &zone))
                .collect()
        }
    };
    Ok(axum::Json(FireTimes {
        fire_times,
        timezone: zone.name(),
    }))
}

async fn modify_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(changes): Json<JobChanges>,
) -> Result<Response, ApiError> {
    let job = refuse_config_owned(&state.scheduler, &id).await?;
    check_scope(&caller, &job)?;
    let revision = if_match(&headers, &job)?;
    // New args are the one change that alters what a job does on the host, so a job
    // whose task the API may not add may not be given new args either.
    if changes.args.is_some() && !state.settings.task_allowed(&job.task) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "task_not_allowed",
            format!(
                "the args of a {:?} job may not be changed through the API",
                job.task
            ),
        )
        .with_field("args"));
    }
    if let Some(trigger) = &changes.trigger {
        check_trigger(trigger, trigger_context(&state), "trigger").await?;
    }
    let job = state
        .scheduler
        .modify_job_if(&id, changes, revision)
        .await?;
    Ok(with_etag(&job, JobView::from(&job)))
}

async fn remove_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let job = refuse_config_owned(&state.scheduler, &id).await?;
    check_scope(&caller, &job)?;
    let revision = if_match(&headers, &job)?;
    state.scheduler.remove_job_if(&id, revision).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    NoFields: NoFields,
) -> Result<Response, ApiError> {
    check_scope(&caller, &find(&state.scheduler, &id).await?)?;
    let job = state.scheduler.pause_job(&id).await?;
    Ok(with_etag(&job, JobView::from(&job)))
}

/// The answer to resuming a job whose trigger has no fire time left: the scheduler
/// removed it, as APScheduler does.
#[derive(Serialize)]
struct Removed {
    id: String,
    removed: bool,
    message: &'static str,
}

async fn resume_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    NoFields: NoFields,
) -> Result<Response, ApiError> {
    check_scope(&caller, &find(&state.scheduler, &id).await?)?;
    Ok(match state.scheduler.resume_job(&id).await? {
        Some(job) => with_etag(&job, JobView::from(&job)),
        None => axum::Json(Removed {
            id,
            removed: true,
            message: "the job's trigger has no fire time left, so the job was removed",
        })
        .into_response(),
    })
}

#[derive(Serialize)]
struct RunStarted {
    job_id: String,
    /// Absent when a failed job was re-armed to run now with fresh attempts (its run
    /// goes through the scheduler's loop and has no id yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
}

/// The body of `POST /jobs/{id}/run`, which may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunNow {
    /// Start the run whatever `max_instances` and `overlap` say.
    #[serde(default)]
    force: bool,
}

async fn run_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, axum::Json<RunStarted>), ApiError> {
    // No body (nothing or white space) is `{}`: the job's policy applies. Anything
    // else is an object (serde would take `[]` for a struct of defaults).
    let run_now: RunNow = if body.iter().all(u8::is_ascii_whitespace) {
        RunNow::default()
    } else {
        parse_json::<serde_json::Map<String, serde_json::Value>>(&body)?;
        parse_json::<RunNow>(&body)?
    };
    check_scope(&caller, &find(&state.scheduler, &id).await?)?;
    let run_id = state.scheduler.run_job_now_with(&id, run_now.force).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(RunStarted {
            job_id: id,
            run_id: Some(run_id).filter(|run_id| !run_id.is_empty()),
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reschedule {
    trigger: TriggerSpec,
}

async fn reschedule_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(reschedule): Json<Reschedule>,
) -> Result<Response, ApiError> {
    let job = refuse_config_owned(&state.scheduler, &id).await?;
    check_scope(&caller, &job)?;
    let revision = if_match(&headers, &job)?;
    check_trigger(&reschedule.trigger, trigger_context(&state), "trigger").await?;
    let job = state
        .scheduler
        .reschedule_job_if(&id, reschedule.trigger, revision)
        .await?;
    Ok(with_etag(&job, JobView::from(&job)))
}

/// What the scheduler builds a request's trigger against: its clock and zone.
fn trigger_context(state: &AppState) -> TriggerContext {
    TriggerContext::new(state.scheduler.clock().now()).with_timezone(state.scheduler.timezone())
}

async fn find(scheduler: &Scheduler, id: &str) -> Result<Job, ApiError> {
    scheduler
        .get_job(id)
        .await?
        .ok_or_else(|| ApiError::job_not_found(id))
}

/// The job `id` (404 if there is none), unless the config files own it (409).
async fn refuse_config_owned(scheduler: &Scheduler, id: &str) -> Result<Job, ApiError> {
    let job = find(scheduler, id).await;
    match job {
        Ok(job) if job.is_from_config() => Err(ApiError::config_owned(id)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_encoded_as_one_path_segment() {
        assert_eq!(percent_encode_segment("order-42_a.b~"), "order-42_a.b~");
        assert_eq!(percent_encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(percent_encode_segment("é"), "%C3%A9");
    }
}
