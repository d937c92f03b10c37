//! `GET /openapi.json`: the API described as an OpenAPI 3.1 document.
//!
//! Written by hand as JSON rather than derived with `utoipa`: the request types are
//! the library's own serde types (`TriggerSpec`, `JobChanges`) with custom
//! deserializers that a derive would not describe faithfully, and the derive's compile
//! cost buys little for some fifteen routes. What keeps the document from drifting is
//! the test at the bottom: every route the router serves ([`super::routes`]) must be
//! in the document, and every operation in the document must be served.
//!
//! The document a daemon serves is its own ([`Served`]): the tasks a job added through
//! its API may name (with each task's args, where the task states their schema), its
//! executors and its job stores are listed, so that what the document allows is what
//! this daemon takes (tests/fuzz/api-fuzz.sh holds it to that with schemathesis).

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::{AppState, Routes, Verb, PREFIX};
use crate::job::options::{option_schemas, option_view_schemas, SchemaParts};
use crate::task::{DURATION_PATTERN, MAX_SCHEMA_SECONDS};

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Verb::Get, "/openapi.json", openapi_json)
}

async fn openapi_json(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(document(&Served::of(&state)))
}

/// What the document lists for the daemon that serves it; empty lists are not listed
/// (the field is then any string).
#[derive(Clone, Debug, Default)]
pub(crate) struct Served {
    /// The tasks jobs added through the API may name, sorted, each with its args'
    /// schema if the task states one.
    pub(crate) tasks: Vec<(String, Option<Value>)>,
    /// Of those, the tasks whose jobs' args `PATCH /jobs/{id}` may change.
    pub(crate) changeable_args: Vec<String>,
    /// The executor names a job may take.
    pub(crate) executors: Vec<String>,
    /// The job store names a new job may take.
    pub(crate) jobstores: Vec<String>,
}

impl Served {
    /// What `state`'s scheduler and settings take: the registered tasks the API's task
    /// policy allows or a write token is scoped to (`auth::Caller::may_use_task`), the
    /// executors the settings name, the scheduler's stores.
    fn of(state: &AppState) -> Served {
        Served::from_parts(
            state.scheduler.tasks(),
            &state.settings,
            state.scheduler.jobstore_names(),
        )
    }

    /// What a scheduler with `registry` and `jobstores` takes through an API with
    /// `settings`.
    pub(crate) fn from_parts(
        registry: &crate::task::TaskRegistry,
        settings: &super::ApiSettings,
        jobstores: Vec<String>,
    ) -> Served {
        let scoped = |task: &str| {
            settings.named_tokens.iter().any(|token| {
                token.write
                    && token
                        .tasks
                        .as_ref()
                        .is_some_and(|tasks| tasks.iter().any(|name| name == task))
            })
        };
        let tasks = registry
            .names()
            .filter(|task| settings.task_allowed(task) || scoped(task))
            .map(|task| (task.to_owned(), registry.args_schema(task)))
            .collect();
        // `modify_job` lets new args through only for tasks the API's own policy allows.
        let changeable_args = registry
            .names()
            .filter(|task| settings.task_allowed(task))
            .map(str::to_owned)
            .collect();
        Served {
            tasks,
            changeable_args,
            executors: settings.executors.clone().unwrap_or_default(),
            jobstores,
        }
    }
}

/// A reference to a schema in `components`.
fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A JSON response with `schema`.
fn json_response(description: &str, body: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": body}}})
}

/// The error responses an operation can give, each with the common error body.
fn errors(statuses: &[StatusCode]) -> Map<String, Value> {
    statuses
        .iter()
        .map(|status| {
            let reason = status.canonical_reason().unwrap_or("error");
            (
                status.as_u16().to_string(),
                json_response(reason, schema("Error")),
            )
        })
        .collect()
}

/// An operation: its summary, request body (if any), parameters and responses; the
/// errors every authenticated operation can give (401, 403, 429, 503) are added.
fn operation(
    summary: &str,
    parameters: &[Value],
    body: Option<Value>,
    mut responses: Map<String, Value>,
    extra_errors: &[StatusCode],
) -> Value {
    responses.extend(errors(extra_errors));
    responses.extend(errors(&[
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::SERVICE_UNAVAILABLE,
    ]));
    let mut operation = json!({
        "summary": summary,
        "parameters": parameters,
        "responses": responses,
    });
    if let (Some(body), Some(fields)) = (body, operation.as_object_mut()) {
        fields.insert(
            "requestBody".to_owned(),
            json!({"required": true, "content": {"application/json": {"schema": body}}}),
        );
    }
    operation
}

/// An operation whose request body may be left out: `body` describes it when sent.
/// Either way the request needs `Content-Type: application/json` (the 415 every
/// state-changing operation declares): the API refuses what a cross-site page can
/// send (docs/threat-model.md), so an empty body is sent with that type too.
fn with_optional_body(mut operation: Value, body: Value) -> Value {
    if let Some(fields) = operation.as_object_mut() {
        fields.insert(
            "requestBody".to_owned(),
            json!({"required": false,
                   "description": "May be left out (an empty body is the same as {}), but the request still needs Content-Type: application/json.",
                   "content": {"application/json": {"schema": body}}}),
        );
    }
    operation
}

/// The errors of reading an optional JSON body: not JSON (400), too large (413), a
/// field the operation does not take (422).
const BODY_ERRORS: [StatusCode; 3] = [
    StatusCode::BAD_REQUEST,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNPROCESSABLE_ENTITY,
];

fn ok(description: &str, body: Value) -> Map<String, Value> {
    let mut responses = Map::new();
    responses.insert("200".to_owned(), json_response(description, body));
    responses
}

fn job_id() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}})
}

fn count() -> Value {
    json!({"name": "count", "in": "query", "required": false,
           "description": "How many fire times: 1-100, default 10.",
           "schema": {"type": "integer", "minimum": 1, "maximum": 100}})
}

fn list_parameters() -> Vec<Value> {
    let query = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    vec![
        query(
            "limit",
            "Jobs in the page: 1-1000, default 50.",
            json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
        query(
            "offset",
            "Matching jobs to skip.",
            json!({"type": "integer", "minimum": 0}),
        ),
        query(
            "q",
            "Text in the id or name, ignoring case.",
            json!({"type": "string"}),
        ),
        query(
            "state",
            "Only jobs in this state: scheduled, paused, failed (one-off jobs kept after their attempts failed) or broken (a trigger that cannot be evaluated).",
            json!({"enum": ["all", "scheduled", "paused", "failed", "broken"]}),
        ),
        query("task", "Only jobs of this task.", json!({"type": "string"})),
        query(
            "jobstore",
            "Only jobs of this store.",
            json!({"type": "string"}),
        ),
        query(
            "last_run",
            "Include each job's latest run.",
            json!({"type": "boolean"}),
        ),
    ]
}

fn limit() -> Value {
    json!({"name": "limit", "in": "query", "required": false,
           "description": "How many records, newest first: 1-1000, default 50.",
           "schema": {"type": "integer", "minimum": 1, "maximum": 1000}})
}

/// The whole document, for a daemon that takes what `served` lists.
pub(crate) fn document(served: &Served) -> Value {
    use StatusCode as S;
    let job = || schema("Job");
    // Pause, resume and run take no input: `{}` or nothing (`extract::NoFields`).
    let no_input = |operation: Value| with_optional_body(operation, schema("NoInput"));
    let job_action = |summary: &str| {
        no_input(operation(
            summary,
            &[job_id()],
            None,
            ok("The job after the change.", job()),
            &[&[S::NOT_FOUND][..], &BODY_ERRORS].concat(),
        ))
    };
    let mut created = Map::new();
    created.insert(
        "201".to_owned(),
        json_response(
            "The job as added (also the replay of an idempotent retry).",
            job(),
        ),
    );
    let mut removed = Map::new();
    removed.insert(
        "204".to_owned(),
        json!({"description": "The job was removed."}),
    );
    let mut started = Map::new();
    started.insert(
        "202".to_owned(),
        json_response(
            "The run was handed to the job's executor.",
            schema("RunStarted"),
        ),
    );
    let mut add_job = operation(
        "Add a job",
        &[
            json!({"name": "Idempotency-Key", "in": "header", "required": false,
                 "description": "A retry with the same key and body returns the first response (kept 24 h) and adds no second job; the same key with another body is 422, while the first is in flight 409.",
                 "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$", "examples": ["add-order-42-reminder"]}}),
        ],
        Some(schema("NewJob")),
        created,
        &[
            S::BAD_REQUEST,
            S::CONFLICT,
            S::PAYLOAD_TOO_LARGE,
            S::UNPROCESSABLE_ENTITY,
        ],
    );
    if let Some(fields) = add_job.as_object_mut() {
        fields.insert(
            "description".to_owned(),
            json!("403 also answers a task not in the API's allowed tasks (`command` must be allowed by name). 409: the id exists (without replace_existing) or belongs to the config files."),
        );
    }
    let mut health_responses = ok(
        "The scheduler is up and its store readable.",
        schema("Health"),
    );
    health_responses.insert(
        "503".to_owned(),
        json_response("The job store cannot be read.", schema("Health")),
    );
    health_responses.extend(errors(&[StatusCode::TOO_MANY_REQUESTS]));
    let mut metrics_responses = Map::new();
    metrics_responses.insert(
        "200".to_owned(),
        json!({"description": "Prometheus text format 0.0.4.",
               "content": {"text/plain": {"schema": {"type": "string"}}}}),
    );
    let mut events_responses = Map::new();
    events_responses.insert(
        "200".to_owned(),
        json!({"description": "Server-sent events: each named after the scheduler event's kind (job_added, job_executed, alert, alert_delivered, alert_undelivered, ...), its JSON as data (an `alert` event carries {\"alert\": the webhook payload}); `lagged` with {\"missed\": N} when the client fell behind.",
               "content": {"text/event-stream": {"schema": {"type": "string"}}}}),
    );
    let config_owned = "409 when the daemon's config files own the job.";
    let with_description = |mut operation: Value, description: &str| {
        if let Some(fields) = operation.as_object_mut() {
            fields.insert("description".to_owned(), json!(description));
        }
        operation
    };
    let paths = json!({
        "/jobs": {
            "get": with_description(operation("List jobs, by next run time, paused last", &list_parameters(), None,
                ok("Every job, or one page of the jobs that match.", json!({"type": "object", "properties": {
                    "jobs": {"type": "array", "items": job()},
                    "total": {"type": "integer", "description": "How many jobs match, when a page was asked for."},
                    "facets": {"type": "object", "description": "The tasks and stores the filters can choose from, when a page was asked for.",
                        "properties": {"tasks": {"type": "array", "items": {"type": "string"}},
                                       "jobstores": {"type": "array", "items": {"type": "string"}}}}}})),
                &[S::BAD_REQUEST]),
                "Without parameters every job is listed. Any parameter asks for one page of a filtered list instead, with the total count and each job's store."),
            "post": add_job,
        },
        "/jobs/{id}": {
            "get": operation("Show a job", &[job_id()], None, ok("The job.", job()), &[S::NOT_FOUND]),
            "patch": with_description(operation("Change a job", &[job_id()], Some(schema("JobChanges")),
                ok("The job after the change.", job()),
                &[S::BAD_REQUEST, S::NOT_FOUND, S::CONFLICT, S::PAYLOAD_TOO_LARGE, S::UNPROCESSABLE_ENTITY]), config_owned),
            "delete": with_description(operation("Remove a job", &[job_id()], None, removed, &[S::NOT_FOUND, S::CONFLICT]), config_owned),
        },
        "/jobs/{id}/pause": {"post": job_action("Pause a job (config-owned ones too)")},
        "/jobs/{id}/resume": {"post": with_description(job_action("Resume a paused job"),
            "A job whose trigger has no fire time left is removed; the answer is then {\"id\", \"removed\": true, \"message\"}.")},
        "/jobs/{id}/run": {"post": with_description(with_optional_body(operation("Run a job now, once, outside its schedule", &[job_id()],
            None, started, &[&[S::NOT_FOUND][..], &BODY_ERRORS].concat()),
            json!({"type": "object", "additionalProperties": false,
                   "properties": {"force": {"type": "boolean", "description": "Start the run whatever max_instances and overlap say."}}})),
            "The job's max_instances and overlap apply (the run may be skipped, wait for a running run to end, or replace the oldest one) unless force is true. The body is optional.")},
        "/jobs/{id}/reschedule": {"post": with_description(operation("Give a job a new trigger", &[job_id()],
            Some(json!({"type": "object", "required": ["trigger"], "additionalProperties": false,
                        "properties": {"trigger": schema("Trigger")}})),
            ok("The job with its new trigger and next run time.", job()),
            &[S::BAD_REQUEST, S::NOT_FOUND, S::CONFLICT, S::UNPROCESSABLE_ENTITY]), config_owned)},
        "/jobs/{id}/explain": {"get": operation("Why a job's next run is when it is, and what became of its recent times", &[job_id()], None,
            ok("One sentence, then the details.", json!({"type": "object", "properties": {
                "job_id": {"type": "string"}, "summary": {"type": "string"},
                "state": {"type": "string", "enum": ["scheduled", "paused", "failed", "broken"]},
                "next_run_time": {"type": ["string", "null"], "format": "date-time"},
                "next_run_reason": {"type": "string", "enum": ["trigger", "retry_wait", "paused", "failed", "queued", "running", "overdue", "finished"]},
                "recent": {"type": "array", "items": {"type": "object", "properties": {
                    "scheduled_time": {"type": "string", "format": "date-time"},
                    "outcome": {"type": "string", "enum": ["ran", "failed", "timed_out", "retried", "replaced", "skipped", "missed", "taken_back"]},
                    "attempts": {"type": "integer"}, "detail": {"type": "string"},
                    "started_at": {"type": "string", "format": "date-time", "description": "When its run started, if it did."},
                    "queued_behind": {"type": "string", "format": "date-time", "description": "The scheduled time of the run it waited behind (overlap = queue): still going at its time; it started when that one ended."}}}}}})),
            &[S::NOT_FOUND])},
        "/jobs/{id}/backfill": {"post": with_description(operation("Run a recurring job's fire times in a range, now", &[job_id()],
            Some(json!({"type": "object", "required": ["from", "to"], "additionalProperties": false, "properties": {
                "from": {"type": "string", "format": "date-time"},
                "to": {"type": "string", "format": "date-time"}}})),
            {
                let mut accepted = Map::new();
                accepted.insert("202".to_owned(), json_response(
                    "The runs were handed over, one after another as one submission.",
                    json!({"type": "object", "properties": {
                        "job_id": {"type": "string"}, "runs": {"type": "integer"}, "run_id": {"type": "string"}}})));
                accepted
            },
            &[S::BAD_REQUEST, S::NOT_FOUND, S::CONFLICT, S::UNPROCESSABLE_ENTITY]),
            "Each fire time from `from` to `to` (both included) runs once, at most 1,000; max_instances holds. A one-off job is refused with 409 one_off_job (it has no range of times; POST /jobs/{id}/run runs it).")},
        "/jobs/{id}/fire_times": {"get": operation("A job's coming fire times, from its next run time", &[job_id(), count()], None,
            ok("Fire times in the trigger's time zone (none while paused).", json!({"type": "object", "properties": {
                "fire_times": {"type": "array", "items": {"type": "string", "format": "date-time"}},
                "timezone": {"type": "string"}}})), &[S::BAD_REQUEST, S::NOT_FOUND])},
        "/preview": {"post": with_description(operation("Preview a trigger's fire times, as kairos next does", &[],
            Some(json!({"type": "object", "additionalProperties": false,
                "oneOf": [{"required": ["trigger"]}, {"required": ["words"]}],
                "properties": {
                "trigger": schema("Trigger"),
                "words": {"type": "string", "description": "kairos next words, e.g. cron hour=3 minute=30.", "examples": ["cron hour=3 minute=30"]},
                "count": {"type": "integer", "minimum": 1, "maximum": 100},
                "from": {"type": "string", "format": "date-time"}}})),
            ok("The trigger and its next fire times.", json!({"type": "object", "properties": {
                "trigger": schema("Trigger"), "trigger_text": {"type": "string"}, "trigger_words": {"type": "string"},
                "timezone": {"type": "string"},
                "fire_times": {"type": "array", "items": {"type": "string", "format": "date-time"}}}})),
            &[S::BAD_REQUEST, S::UNPROCESSABLE_ENTITY]), "Give either trigger or words.")},
        "/overview": {"get": operation("Fires of the next 24 hours, runs of the last hour, problems and nodes", &[], None,
            ok("What the web page's overview charts.", json!({"type": "object", "properties": {
                "now": {"type": "string", "format": "date-time"}, "scheduler_state": {"type": "string"},
                "jobs": {"type": "integer"},
                "job_states": {"type": "object", "description": "Jobs by state, as the stores count them; failed counts broken jobs too (as GET /jobs?state=failed lists them).",
                    "properties": {"scheduled": {"type": "integer"}, "paused": {"type": "integer"}, "failed": {"type": "integer"}}},
                "history_runs": {"type": ["integer", "null"], "description": "How many run records the stores hold."},
                "upcoming": {"type": "object", "properties": {"from": {"type": "string"},
                    "hourly": {"type": "array", "items": {"type": "integer"}}, "truncated": {"type": "boolean"}}},
                "runs": {"type": "object", "properties": {"from": {"type": "string"},
                    "minutes": {"type": "array", "items": {"type": "object"}}, "truncated": {"type": "boolean"}}},
                "problems": {"type": "array", "items": schema("RunRecord")},
                "nodes": {"type": "array", "items": schema("ClusterNode")}}})), &[])},
        "/access": {"get": operation("What the presented token may do", &[], None,
            ok("read_write or read_only.", json!({"type": "object", "properties": {
                "access": {"enum": ["read_write", "read_only"]}, "token_required": {"type": "boolean"}}})), &[])},
        "/jobs/{id}/runs": {"get": operation("A job's runs, newest first", &[job_id(), limit()], None,
            ok("The runs (also of a job removed since).", schema("RunList")), &[S::BAD_REQUEST])},
        "/runs": {"get": operation("Runs of all jobs, or of one, newest first",
            &[limit(), json!({"name": "job_id", "in": "query", "required": false, "schema": {"type": "string"}})],
            None, ok("The runs.", schema("RunList")), &[S::BAD_REQUEST])},
        "/scheduler/pause": {"post": no_input(operation("Pause the scheduler: no job is taken until resumed", &[], None,
            ok("The scheduler's state.", schema("SchedulerState")), &BODY_ERRORS))},
        "/scheduler/resume": {"post": no_input(operation("Resume the scheduler", &[], None,
            ok("The scheduler's state.", schema("SchedulerState")), &BODY_ERRORS))},
        "/scheduler/reload": {"post": with_optional_body(operation("Reload the daemon's config files, as SIGHUP does; with {\"force\": true}, also files whose content a newer config generation superseded (a rollback)",
            &[], None,
            ok("What the reload did to the config's jobs.", json!({"type": "object", "properties": {
                "applied": {"type": "boolean"},
                "hash": {"type": "string"},
                "message": {"type": "string"},
                "config": {"type": "object"},
                "overtaken_by": {"type": "object"},
                "added": {"type": "array", "items": {"type": "string"}},
                "changed": {"type": "array", "items": {"type": "string"}},
                "removed": {"type": "array", "items": {"type": "string"}},
                "unchanged": {"type": "integer"},
                "failed": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "error": {"type": "string"}}}}}})),
            &[S::BAD_REQUEST, S::CONFLICT, S::PAYLOAD_TOO_LARGE, S::UNPROCESSABLE_ENTITY, S::SERVICE_UNAVAILABLE]),
            json!({"type": "object", "additionalProperties": false, "properties": {
                "force": {"type": "boolean", "description": "Apply files whose content a newer config generation superseded (a rollback)."}}}))},
        "/cluster": {"get": operation("The nodes sharing this daemon's job stores", &[], None,
            ok("Every registered node, by id.", json!({"type": "object", "properties": {
                "nodes": {"type": "array", "items": schema("ClusterNode")}}})), &[])},
        "/health": {"get": {"summary": "Health (no authentication)", "security": [], "responses": health_responses}},
        "/events": {"get": operation("The scheduler's events as server-sent events", &[], None, events_responses, &[])},
        "/metrics": {"get": operation("Prometheus metrics", &[], None, metrics_responses, &[])},
        "/openapi.json": {"get": operation("This document", &[], None,
            ok("An OpenAPI 3.1 document.", json!({"type": "object"})), &[])},
    });
    let mut paths = paths;
    conventions(&mut paths);
    json!({
        "openapi": "3.1.0",
        "tags": TAGS.iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
        "info": {
            "title": "kairos",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "An APScheduler-style job scheduler. Durations are humane strings (\"30s\", \"1h30m\") or seconds; times are RFC 3339. Every error is {\"error\": {\"code\", \"message\", \"field\"?}}.",
        },
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(served),
        },
    })
}

/// The tags operations are grouped by, as generated clients name their classes.
const TAGS: [(&str, &str); 5] = [
    ("jobs", "Jobs and what can be done to one."),
    ("runs", "Run history."),
    (
        "scheduler",
        "The scheduler as a whole: pause, resume, reload, health, the cluster.",
    ),
    ("triggers", "Trigger previews."),
    (
        "meta",
        "The event stream, metrics, this document, the token's access and the overview.",
    ),
];

/// Every operation's `operationId` and tag, by method and path: names a generated
/// client uses for its methods (`list_jobs`, `get_job`, ...).
const OPERATIONS: [(&str, &str, &str, &str); 25] = [
    ("get", "/jobs", "list_jobs", "jobs"),
    ("post", "/jobs", "add_job", "jobs"),
    ("get", "/jobs/{id}", "get_job", "jobs"),
    ("patch", "/jobs/{id}", "modify_job", "jobs"),
    ("delete", "/jobs/{id}", "remove_job", "jobs"),
    ("post", "/jobs/{id}/pause", "pause_job", "jobs"),
    ("post", "/jobs/{id}/resume", "resume_job", "jobs"),
    ("post", "/jobs/{id}/run", "run_job", "jobs"),
    ("post", "/jobs/{id}/reschedule", "reschedule_job", "jobs"),
    ("get", "/jobs/{id}/explain", "explain_job", "jobs"),
    ("post", "/jobs/{id}/backfill", "backfill_job", "jobs"),
    ("get", "/jobs/{id}/fire_times", "job_fire_times", "jobs"),
    ("get", "/jobs/{id}/runs", "list_job_runs", "runs"),
    ("get", "/runs", "list_runs", "runs"),
    ("post", "/preview", "preview_trigger", "triggers"),
    ("post", "/scheduler/pause", "pause_scheduler", "scheduler"),
    ("post", "/scheduler/resume", "resume_scheduler", "scheduler"),
    ("post", "/scheduler/reload", "reload_config", "scheduler"),
    ("get", "/cluster", "list_nodes", "scheduler"),
    ("get", "/health", "health", "scheduler"),
    ("get", "/overview", "overview", "meta"),
    ("get", "/access", "access", "meta"),
    ("get", "/events", "events", "meta"),
    ("get", "/metrics", "metrics", "meta"),
    ("get", "/openapi.json", "openapi", "meta"),
];

/// What every operation gets beyond its own description: its `operationId` and tag,
/// `ETag` and `If-Match` on the job routes that read or change one job, and the
/// `cursor` of the listings.
fn conventions(paths: &mut Value) {
    for (method, path, id, tag) in OPERATIONS {
        if let Some(operation) = paths.pointer_mut(&pointer(path, method)) {
            operation["operationId"] = json!(id);
            operation["tags"] = json!([tag]);
            // A state-changing request whose body is not declared JSON is refused before
            // it is read (`origin.rs`: the browser-origin defence, docs/threat-model.md).
            if matches!(method, "post" | "patch" | "delete") {
                operation["responses"]["415"] = json_response(
                    "The request has a body, or is a POST, without Content-Type: application/json.",
                    schema("Error"),
                );
            }
        }
    }
    let if_match = json!({"name": "If-Match", "in": "header", "required": false,
        "description": "Change the job only if its ETag (from a read or an earlier change) is still this; else 412 precondition_failed. `*` matches any existing job; weak tags never match.",
        "schema": {"type": "string"}});
    for (method, path) in [
        ("patch", "/jobs/{id}"),
        ("delete", "/jobs/{id}"),
        ("post", "/jobs/{id}/reschedule"),
    ] {
        if let Some(operation) = paths.pointer_mut(&pointer(path, method)) {
            if let Some(parameters) = operation["parameters"].as_array_mut() {
                parameters.push(if_match.clone());
            }
            operation["responses"]["412"] = json_response(
                "The job changed since the ETag in If-Match.",
                schema("Error"),
            );
        }
    }
    let etag = json!({"ETag": {"description": "The job's revision in its store: changes whenever the job does, the same on every node sharing the store.",
        "schema": {"type": "string"}}});
    for (method, path) in [
        ("get", "/jobs/{id}"),
        ("patch", "/jobs/{id}"),
        ("post", "/jobs/{id}/pause"),
        ("post", "/jobs/{id}/resume"),
        ("post", "/jobs/{id}/reschedule"),
    ] {
        if let Some(ok) = paths.pointer_mut(&format!("{}/responses/200", pointer(path, method))) {
            ok["headers"] = etag.clone();
        }
    }
    if let Some(created) = paths.pointer_mut(&format!("{}/responses/201", pointer("/jobs", "post")))
    {
        created["headers"] = etag;
    }
    let cursor = json!({"name": "cursor", "in": "query", "required": false,
        "description": "The next_cursor of the page before, with the same filters: the next page. Opaque; not with offset.",
        "schema": {"type": "string"}});
    let offset = json!({"name": "offset", "in": "query", "required": false,
        "description": "How many of the newest to skip.", "schema": {"type": "integer", "minimum": 0}});
    for (path, extra) in [
        ("/jobs", vec![cursor.clone()]),
        ("/runs", vec![offset.clone(), cursor.clone()]),
        ("/jobs/{id}/runs", vec![offset, cursor]),
    ] {
        if let Some(parameters) = paths
            .pointer_mut(&format!("{}/parameters", pointer(path, "get")))
            .and_then(Value::as_array_mut)
        {
            parameters.extend(extra);
        }
    }
    if let Some(list) = paths.pointer_mut(&format!(
        "{}/responses/200/content/application~1json/schema/properties",
        pointer("/jobs", "get")
    )) {
        list["next_cursor"] = json!({"type": "string", "description": "Where the next page starts; absent on the last page."});
    }
}

/// The JSON pointer of `method` `path` in the paths object.
fn pointer(path: &str, method: &str) -> String {
    format!("/{}/{method}", path.replace('~', "~0").replace('/', "~1"))
}

/// Each trigger `type` and the name of its schema in `components`.
const TRIGGER_SCHEMAS: [(&str, &str); 7] = [
    ("date", "DateTrigger"),
    ("interval", "IntervalTrigger"),
    ("cron", "CronTrigger"),
    ("crontab", "CrontabTrigger"),
    ("calendarinterval", "CalendarIntervalTrigger"),
    ("and", "AndTrigger"),
    ("or", "OrTrigger"),
];

/// The schema of one trigger type: `type` fixed to `kind`, then its own fields, no
/// others (the trigger specs deny unknown fields).
fn trigger_schema(kind: &str, description: &str, required: &[&str], properties: Value) -> Value {
    let mut fields = Map::new();
    fields.insert("type".to_owned(), json!({"type": "string", "const": kind}));
    if let Value::Object(properties) = properties {
        fields.extend(properties);
    }
    let mut required: Vec<&str> = required.to_vec();
    required.insert(0, "type");
    json!({
        "type": "object", "description": description, "required": required,
        "additionalProperties": false, "properties": fields,
    })
}

/// A string that is one of `names`, or any string when there are none to list.
fn one_of_names(names: &[String], description: &str) -> Value {
    let mut schema = json!({"type": "string", "description": description});
    if !names.is_empty() {
        schema["enum"] = json!(names);
        schema["examples"] = json!([names[0]]);
    }
    schema
}

fn schemas(served: &Served) -> Value {
    // Examples are what schema-driven tools (and readers) start from: each one is
    // taken by the API as it is (the trigger test below and api-fuzz.sh check that).
    let duration = json!({"type": ["string", "number", "null"], "minimum": 0, "maximum": MAX_SCHEMA_SECONDS,
                          "pattern": DURATION_PATTERN,
                          "description": "A humane duration such as \"30s\" or \"1h30m\", or seconds (not negative).",
                          "examples": ["30s", "1h30m", 90]});
    let executor = one_of_names(&served.executors, "An executor of the daemon's.");
    let jobstore = one_of_names(&served.jobstores, "A job store of the daemon's.");
    // The job options' properties come from their one list (src/job/options.rs).
    let parts = SchemaParts {
        duration: &duration,
        executor: &executor,
        jobstore: &jobstore,
    };
    let mut changes = option_schemas(&parts, true);
    changes.extend([
        ("name".to_owned(), json!({"type": "string"})),
        ("args".to_owned(), changed_args(served)),
        ("trigger".to_owned(), schema("Trigger")),
        (
            "next_run_time".to_owned(),
            json!({"type": "string", "format": "date-time"}),
        ),
    ]);
    let mut all = json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "description": "Stable, for scripts: job_not_found, job_exists, config_owned, invalid_input, malformed_json, unauthorized, read_only_token, task_not_allowed, body_too_large, idempotency_key_reused, one_off_job, ..."},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "The input field at fault, e.g. trigger.hour."},
            }}},
        },
        "JobOptions": {
            "type": "object", "additionalProperties": false,
            "properties": option_schemas(&parts, false),
        },
        "JobChanges": {
            "type": "object", "additionalProperties": false,
            "properties": changes,
        },
        "Job": {
            "type": "object",
            "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}, "task": {"type": "string"}, "args": {},
                "trigger": schema("Trigger"),
                "trigger_text": {"type": "string", "description": "For people, e.g. cron[hour='3']."},
                "trigger_words": {"type": "string", "description": "As kairos next takes it, e.g. cron hour=3."},
                "jobstore": {"type": "string", "description": "The store holding the job, where known."},
                "last_run": {"type": ["object", "null"], "description": "The latest run, when asked for.", "properties": {
                    "outcome": {"type": "string"}, "scheduled_time": {"type": "string", "format": "date-time"},
                    "finished_at": {"type": "string", "format": "date-time"}}},
                "executor": {"type": "string"},
                // Named, not inline: a generator names an inline `options` of `Job`
                // `JobOptions` and then fails on the request schema of that name.
                "options": schema("JobOptionsView"),
                "state": {"type": "string", "enum": ["scheduled", "paused", "failed", "broken"],
                    "description": "failed: a one-off job whose attempts were used up; broken: set aside, its trigger could not be computed."},
                "paused": {"type": "boolean"},
                "retrying": {"type": "object", "description": "A failed run waiting for its next attempt.", "properties": {
                    "scheduled_time": {"type": "string", "format": "date-time"}, "attempt": {"type": "integer"}}},
                "failure": {"type": "object", "description": "Why a failed job failed.", "properties": {
                    "scheduled_time": {"type": "string", "format": "date-time"}, "attempts": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"}, "error": {"type": "string"}}},
                "broken": {"type": "string", "description": "Why a broken job was set aside."},
                "success_watch": {"type": "object",
                    "description": "A job with expect_success_within against it, in GET /jobs/{id} and in pages of GET /jobs.",
                    "properties": {
                        "last_success": {"type": ["string", "null"], "format": "date-time"},
                        "deadline": {"type": "string", "format": "date-time", "description": "When it is, or became, overdue."},
                        "overdue": {"type": "boolean"}}},
                "next_run_time": {"type": ["string", "null"], "format": "date-time"},
                "from_config": {"type": "boolean", "readOnly": true},
            },
        },
        "JobOptionsView": {
            "type": "object",
            "description": "A job's options as stored (durations in humane form).",
            "properties": option_view_schemas(),
        },
        "RunRecord": {
            "type": "object",
            "properties": {
                "run_id": {"type": "string"}, "job_id": {"type": "string"},
                "scheduled_time": {"type": "string", "format": "date-time"},
                "started_at": {"type": ["string", "null"], "format": "date-time"},
                "finished_at": {"type": "string", "format": "date-time"},
                "outcome": {"enum": ["success", "error", "timeout", "missed", "skipped"]},
                "error": {"type": "string"}, "output": {"type": "string"},
            },
        },
        "RunList": {"type": "object", "properties": {"runs": {"type": "array", "items": schema("RunRecord")},
            "next_cursor": {"type": "string", "description": "Where the next (older) page starts; absent on the last page."}}},
        "NoInput": {"type": "object", "additionalProperties": false, "properties": {},
            "description": "An action that takes no input: {} (or no body at all)."},
        "RunStarted": {"type": "object", "properties": {"job_id": {"type": "string"}, "run_id": {"type": "string"}}},
        "SchedulerState": {"type": "object", "properties": {"state": {"enum": ["running", "paused", "stopped"]}}},
        "ClusterNode": {"type": "object", "properties": {
            "id": {"type": "string", "description": "The node id: the owner of its leases."},
            "host": {"type": "string"}, "pid": {"type": "integer"}, "version": {"type": "string"},
            "started": {"type": "string", "format": "date-time"},
            "last_heartbeat": {"type": "string", "format": "date-time", "description": "By the node's own clock."},
            "alive": {"type": "boolean", "description": "The last heartbeat is within node_timeout, by the answering node's clock."},
            "this_node": {"type": "boolean"},
            "jobstores": {"type": "array", "items": {"type": "string"}},
            "stats": {"type": "object", "description": "What the node reported with its last heartbeat (live for the answering node); absent before its first beat.",
                "properties": {
                    "running": {"type": "integer", "description": "Runs executing."},
                    "queued": {"type": "integer", "description": "Runs handed over and waiting for a worker."},
                    "capacity": {"type": "integer", "description": "Runs its executors execute at once."},
                    "running_jobs": {"type": "array", "items": {"type": "string"}, "description": "Jobs with runs in flight, sorted, at most 20."},
                    "ended": {"type": "integer", "description": "Runs that ended in its last heartbeat window."},
                    "lateness_p50_ms": {"type": "integer"},
                    "lateness_p99_ms": {"type": "integer"},
                    "lateness_max_ms": {"type": "integer", "description": "How late those runs started after their scheduled time."}}}}},
        "Health": {"type": "object", "properties": {
            "status": {"enum": ["ok", "unavailable"]},
            "scheduler": {"enum": ["running", "paused", "stopped"]},
            "jobs": {"type": ["integer", "null"]},
            "tzdata": {"type": "object", "description": "The zone rules in use.", "properties": {
                "source": {"enum": ["system", "compiled-in"]},
                "version": {"type": "string"}}},
            "config": {"type": "object", "properties": {
                "store_generation": {"type": ["integer", "null"]},
                "store_hash": {"type": ["string", "null"]},
                "node_hash": {"type": ["string", "null"]},
                "node_generation": {"type": ["integer", "null"]},
                "current": {"type": "boolean"},
                "node_state": {"enum": ["current", "superseded", "none"]}}}}},
    });
    if let Some(all) = all.as_object_mut() {
        all.extend(trigger_components(&duration));
        all.extend(new_job_components(served));
    }
    all
}

/// `NewJob`: with tasks to list, a oneOf with one schema per task, chosen by `task`,
/// each with that task's args (with only one, that task's schema itself: client
/// generators refuse a oneOf of one); else one schema whose task is any string.
fn new_job_components(served: &Served) -> Map<String, Value> {
    // `check_id` in jobs.rs: 1 to 255 bytes, no control characters.
    let properties = json!({
        "id": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
               "description": "Generated when absent; at most 255 bytes of UTF-8, no control characters.",
               "examples": ["order-42-reminder"]},
        "name": {"type": "string", "examples": ["order 42 reminder"]},
        "task": {"type": "string", "description": "A task the daemon knows (command, http, orders.cancel, stats.correct and any a program embedding kairos registers) and the API allows ([api] allowed_tasks).", "examples": ["orders.cancel"]},
        "args": {"description": "The task's arguments, as the task defines them.", "examples": [{"order_id": 42}]},
        "trigger": schema("Trigger"), "options": schema("JobOptions"),
        "paused": {"type": "boolean"}, "next_run_time": {"type": "string", "format": "date-time"},
        "replace_existing": {"type": "boolean"},
    });
    let object = |properties: Value, required: &[&str]| {
        json!({"type": "object", "required": required, "additionalProperties": false,
               "properties": properties})
    };
    let mut components = Map::new();
    if served.tasks.is_empty() {
        components.insert(
            "NewJob".to_owned(),
            object(properties, &["task", "trigger"]),
        );
        return components;
    }
    let mut mapping = Map::new();
    let mut one_of = Vec::new();
    let only = served.tasks.len() == 1;
    for (task, args) in &served.tasks {
        let mut name = if only {
            "NewJob".to_owned()
        } else {
            format!("New{}Job", camel_case(task))
        };
        while components.contains_key(&name) || TRIGGER_SCHEMAS.iter().any(|(_, n)| *n == name) {
            name.push('_');
        }
        let mut own = properties.clone();
        own["task"] = json!({"type": "string", "const": task});
        // Args that must be an object are required: a job without args has null ones.
        let mut required = vec!["task", "trigger"];
        match args {
            Some(args) => {
                if args["type"] == "object" {
                    required.push("args");
                }
                own["args"] = args.clone();
            }
            None => {
                own["args"] = json!({"description": format!("{task}'s arguments, as the task defines them.")});
            }
        }
        let mut variant = object(own, &required);
        variant["description"] = json!(format!("A job of the task {task}."));
        mapping.insert(task.clone(), json!(format!("#/components/schemas/{name}")));
        one_of.push(schema(&name));
        components.insert(name, variant);
    }
    if only {
        return components;
    }
    components.insert(
        "NewJob".to_owned(),
        json!({
            "description": "A job: one schema per task the API takes, chosen by `task`.",
            "oneOf": one_of,
            "discriminator": {"propertyName": "task", "mapping": mapping},
        }),
    );
    components
}

/// `orders.cancel` as `OrdersCancel`: a schema name part.
fn camel_case(task: &str) -> String {
    task.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// What `PATCH /jobs/{id}` takes as new args: the args of one of the tasks whose args
/// the API may change (the job's own, which the request does not say); any JSON when
/// one of them states no schema, or when none are listed.
fn changed_args(served: &Served) -> Value {
    let description = "New arguments, as the job's task defines them.";
    let mut schemas: Vec<Value> = Vec::new();
    for task in &served.changeable_args {
        let Some((_, args)) = served.tasks.iter().find(|(name, _)| name == task) else {
            continue;
        };
        let Some(args) = args else {
            return json!({ "description": description });
        };
        if !schemas.contains(args) {
            schemas.push(args.clone());
        }
    }
    match schemas.len() {
        0 => json!({ "description": description }),
        1 => {
            let mut only = schemas.remove(0);
            only["description"] = json!(description);
            only
        }
        _ => json!({"description": description, "anyOf": schemas}),
    }
}

/// `Trigger` (a oneOf over the trigger types) and one schema per type.
fn trigger_components(duration: &Value) -> Map<String, Value> {
    let date_time = json!({"type": "string",
                           "description": "RFC 3339, or a civil time (2024-03-01 12:00:00) read in timezone.",
                           "examples": ["2030-01-01 03:00:00", "2030-01-01T03:00:00Z"]});
    let zone = json!({"type": "string", "description": "An IANA zone (Europe/Berlin), UTC or an offset (+08:00).",
                      "examples": ["Europe/Berlin", "UTC", "+08:00"]});
    // Exactly what the trigger specs take: the Trigger schema is also that of what the
    // API answers with, so a bound tighter than the API's would be broken by the
    // answer to any request past it.
    let count = json!({"type": "integer", "minimum": 0, "maximum": u64::MAX});
    let count32 = json!({"type": "integer", "minimum": 0, "maximum": u32::MAX});
    let field = json!({"type": ["string", "integer"],
                       "description": "An APScheduler cron field: 3, \"*/15\", \"1-5\", \"mon-fri\", \"last\" ...",
                       "examples": ["*"]});
    let mut components = Map::new();
    let mut add = |name: &str, value: Value| {
        components.insert(name.to_owned(), value);
    };
    let mapping: Map<String, Value> = TRIGGER_SCHEMAS
        .iter()
        .map(|(kind, name)| {
            (
                (*kind).to_owned(),
                json!(format!("#/components/schemas/{name}")),
            )
        })
        .collect();
    let one_of: Vec<Value> = TRIGGER_SCHEMAS
        .iter()
        .map(|(_, name)| schema(name))
        .collect();
    add(
        "Trigger",
        json!({
            "description": "APScheduler 3.x trigger fields, one schema per type, chosen by `type`. A date's delay is resolved against the scheduler's clock when the job is added.",
            "oneOf": one_of,
            "discriminator": {"propertyName": "type", "mapping": mapping},
        }),
    );
    add(
        "DateTrigger",
        trigger_schema(
            "date",
            "Fire once, at run_date or delay after the job is added.",
            &[],
            json!({
            "run_date": date_time.clone(), "delay": duration.clone(), "timezone": zone.clone()}),
        ),
    );
    add(
        "IntervalTrigger",
        trigger_schema(
            "interval",
            "Fire every fixed elapsed duration (one of weeks to seconds above zero).",
            &[],
            json!({
            "weeks": count.clone(), "days": count.clone(), "hours": count.clone(),
            "minutes": count.clone(), "seconds": count.clone(),
            "start_date": date_time.clone(), "end_date": date_time.clone(),
            "timezone": zone.clone(), "jitter": duration.clone()}),
        ),
    );
    add(
        "CronTrigger",
        trigger_schema(
            "cron",
            "Fire when the calendar fields match (APScheduler 3.x cron expressions per field).",
            &[],
            json!({
            "year": field.clone(), "month": field.clone(), "day": field.clone(), "week": field.clone(),
            "day_of_week": field.clone(), "hour": field.clone(), "minute": field.clone(), "second": field.clone(),
            "start_date": date_time.clone(), "end_date": date_time.clone(),
            "timezone": zone.clone(), "jitter": duration.clone()}),
        ),
    );
    add(
        "CrontabTrigger",
        trigger_schema(
            "crontab",
            "Fire on a classic 5-field crontab line.",
            &["expression"],
            json!({
            "expression": {"type": "string", "description": "e.g. */15 9-17 * * mon-fri", "examples": ["*/15 9-17 * * mon-fri"]},
            "start_date": date_time.clone(), "end_date": date_time.clone(),
            "timezone": zone.clone(), "jitter": duration.clone()}),
        ),
    );
    add(
        "CalendarIntervalTrigger",
        trigger_schema(
            "calendarinterval",
            "Fire every N years, months, weeks or days at a wall-clock time (one of them above zero).",
            &[],
            json!({
            "years": count32.clone(), "months": count32.clone(), "weeks": count32.clone(), "days": count32,
            "hour": {"type": "integer", "minimum": 0, "maximum": 23},
            "minute": {"type": "integer", "minimum": 0, "maximum": 59},
            "second": {"type": "integer", "minimum": 0, "maximum": 59},
            "start_date": date_time.clone(), "end_date": date_time.clone(),
            "timezone": zone.clone(), "jitter": duration.clone()}),
        ),
    );
    add(
        "AndTrigger",
        trigger_schema(
            "and",
            "Fire when all the given triggers agree.",
            &["triggers"],
            json!({
            "triggers": {"type": "array", "minItems": 1, "items": schema("Trigger")}, "jitter": duration.clone()}),
        ),
    );
    add(
        "OrTrigger",
        trigger_schema(
            "or",
            "Fire when any of the given triggers fires.",
            &["triggers"],
            json!({
            "triggers": {"type": "array", "minItems": 1, "items": schema("Trigger")}, "jitter": duration.clone()}),
        ),
    );
    components
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_is_one_of_a_schema_per_type() {
        let document = document(&Served::default());
        let schemas = &document["components"]["schemas"];
        let one_of = schemas["Trigger"]["oneOf"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(one_of.len(), 7);
        for (kind, name) in TRIGGER_SCHEMAS {
            let own = &schemas[name];
            assert_eq!(own["properties"]["type"]["const"], kind, "{name}");
            assert_eq!(own["additionalProperties"], false, "{name}");
            assert_eq!(
                schemas["Trigger"]["discriminator"]["mapping"][kind],
                format!("#/components/schemas/{name}")
            );
        }
        // What the schema allows, the API takes: each example parses as a trigger.
        for example in [
            json!({"type": "cron", "hour": 3, "minute": "*/15", "timezone": "Europe/Berlin"}),
            json!({"type": "date", "delay": "30m"}),
            json!({"type": "interval", "minutes": 90, "jitter": "10s"}),
            json!({"type": "crontab", "expression": "*/15 9-17 * * mon-fri"}),
            json!({"type": "calendarinterval", "months": 1, "hour": 9}),
            json!({"type": "or", "triggers": [{"type": "cron", "hour": 1}, {"type": "cron", "hour": 2}]}),
        ] {
            let kind = example["type"].as_str().unwrap_or_default().to_owned();
            let name = TRIGGER_SCHEMAS
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, name)| *name)
                .unwrap_or_default();
            let properties = &schemas[name]["properties"];
            for field in example
                .as_object()
                .into_iter()
                .flatten()
                .map(|(field, _)| field)
            {
                assert!(
                    properties[field].is_object(),
                    "{kind}.{field} not in {name}"
                );
            }
            assert!(
                serde_json::from_value::<crate::trigger::TriggerSpec>(example.clone()).is_ok(),
                "{example}"
            );
        }
    }

    /// Schema-driven tools start from the examples (api-fuzz.sh's schemathesis does):
    /// each must be what the API takes, or they generate nothing but rejections.
    #[test]
    fn the_examples_in_the_document_are_taken_by_the_api() {
        let document = document(&Served::default());
        let schemas = &document["components"]["schemas"];
        for (kind, name) in TRIGGER_SCHEMAS {
            let mut trigger = Map::new();
            trigger.insert("type".to_owned(), json!(kind));
            for (field, property) in schemas[name]["properties"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if let Some(example) = property["examples"].get(0) {
                    trigger.insert(field.clone(), example.clone());
                }
            }
            if matches!(kind, "and" | "or") {
                trigger.insert("triggers".to_owned(), json!([{"type": "cron", "hour": 3}]));
            }
            let trigger = Value::Object(trigger);
            assert!(
                serde_json::from_value::<crate::trigger::TriggerSpec>(trigger.clone()).is_ok(),
                "{trigger}"
            );
        }
        for (schema_name, field) in [
            ("JobChanges", "jitter"),
            ("JobChanges", "expect_success_within"),
        ] {
            for example in schemas[schema_name]["properties"][field]["examples"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let changes = json!({ field: example });
                assert!(
                    serde_json::from_value::<crate::job::JobChanges>(changes.clone()).is_ok(),
                    "{changes}"
                );
            }
        }
        // A new job's retry policy is documented, and its example is one the API takes.
        let retry = &schemas["JobOptions"]["properties"]["retry"];
        let examples = retry["examples"].as_array().cloned().unwrap_or_default();
        assert!(!examples.is_empty(), "{retry}");
        for example in examples {
            let policy: crate::job::RetryPolicy =
                serde_json::from_value(example.clone()).expect("the retry example parses");
            assert_eq!(policy.check(), Ok(()), "{example}");
        }
    }

    /// A daemon with the built-in tasks, the default task policy, two executors and
    /// one store.
    fn builtin_daemon() -> (crate::task::TaskRegistry, Served) {
        let registry = crate::task::TaskRegistry::with_builtins();
        let settings = crate::api::ApiSettings {
            executors: Some(vec!["default".to_owned(), "processes".to_owned()]),
            ..crate::api::ApiSettings::default()
        };
        let served = Served::from_parts(&registry, &settings, vec!["default".to_owned()]);
        (registry, served)
    }

    #[test]
    fn the_served_document_lists_the_daemons_tasks_executors_and_stores() {
        let (_, served) = builtin_daemon();
        let document = document(&served);
        let schemas = &document["components"]["schemas"];
        let new_job = &schemas["NewJob"];
        let variants: Vec<&str> = new_job["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|variant| variant["$ref"].as_str())
            .collect();
        // `command` runs programs: the default policy leaves it out, so does the document.
        assert_eq!(
            variants,
            [
                "#/components/schemas/NewHttpJob",
                "#/components/schemas/NewOrdersCancelJob",
                "#/components/schemas/NewStatsCorrectJob",
            ]
        );
        assert_eq!(new_job["discriminator"]["propertyName"], "task");
        for (task, name) in [
            ("http", "NewHttpJob"),
            ("orders.cancel", "NewOrdersCancelJob"),
            ("stats.correct", "NewStatsCorrectJob"),
        ] {
            assert_eq!(
                new_job["discriminator"]["mapping"][task],
                format!("#/components/schemas/{name}")
            );
            assert_eq!(schemas[name]["properties"]["task"]["const"], task);
            assert_eq!(schemas[name]["additionalProperties"], false);
        }
        // Args that must be an object are required; stats.correct takes none.
        assert!(schemas["NewOrdersCancelJob"]["required"]
            .as_array()
            .is_some_and(|required| required.contains(&json!("args"))));
        assert!(!schemas["NewStatsCorrectJob"]["required"]
            .as_array()
            .is_some_and(|required| required.contains(&json!("args"))));
        assert_eq!(
            schemas["NewOrdersCancelJob"]["properties"]["args"]["required"],
            json!(["order_id"])
        );
        let executors = json!(["default", "processes"]);
        assert_eq!(
            schemas["JobOptions"]["properties"]["executor"]["enum"],
            executors
        );
        assert_eq!(
            schemas["JobChanges"]["properties"]["executor"]["enum"],
            executors
        );
        assert_eq!(
            schemas["JobOptions"]["properties"]["jobstore"]["enum"],
            json!(["default"])
        );
        // New args: those of one of the tasks the API may change.
        assert_eq!(
            schemas["JobChanges"]["properties"]["args"]["anyOf"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
    }

    /// Only the tasks a daemon allows are listed; with one, PATCH's args are its args.
    #[test]
    fn an_allowed_tasks_list_is_what_the_document_lists() {
        let registry = crate::task::TaskRegistry::with_builtins();
        let settings = crate::api::ApiSettings {
            allowed_tasks: Some(vec!["orders.cancel".to_owned(), "no.such".to_owned()]),
            ..crate::api::ApiSettings::default()
        };
        let served = Served::from_parts(&registry, &settings, Vec::new());
        let document = document(&served);
        let schemas = &document["components"]["schemas"];
        // One task: NewJob is its schema, not a oneOf of one.
        assert_eq!(
            schemas["NewJob"]["properties"]["task"]["const"],
            "orders.cancel"
        );
        assert!(schemas["NewJob"]["oneOf"].is_null());
        assert_eq!(
            schemas["JobChanges"]["properties"]["args"]["properties"]["order_id"],
            registry.args_schema("orders.cancel").unwrap_or_default()["properties"]["order_id"]
        );
        // Nothing listed: any store name, as a library's document without settings.
        assert!(schemas["JobOptions"]["properties"]["jobstore"]["enum"].is_null());
        assert!(schemas["JobOptions"]["properties"]["executor"]["enum"].is_null());
    }

    /// What each built-in task's args schema gives as an example, the task takes.
    #[test]
    fn every_builtin_task_states_its_args_and_takes_their_examples() {
        let (registry, _) = builtin_daemon();
        for task in registry.names() {
            let schema = registry.args_schema(task);
            let Some(schema) = schema else {
                panic!("{task} states no args schema");
            };
            let examples = schema["examples"].as_array().cloned().unwrap_or_default();
            assert!(!examples.is_empty(), "{task}: no example");
            let Some(checker) = registry.get(task) else {
                panic!("{task} is not registered");
            };
            for example in examples {
                assert!(
                    checker.check_args(&example).is_ok(),
                    "{task}: {example} is refused"
                );
            }
        }
    }

    #[test]
    fn every_served_route_is_documented_and_every_documented_one_served() {
        let document = document(&Served::default());
        let served = super::super::routes().table;
        for (verb, path) in &served {
            assert!(
                document["paths"][*path][verb.openapi_name()].is_object(),
                "{} {path} is served but not in openapi.json",
                verb.openapi_name()
            );
        }
        let Some(paths) = document["paths"].as_object() else {
            panic!("the document has no paths");
        };
        let tags: Vec<&Value> = document["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|tag| &tag["name"])
            .collect();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let id = operation["operationId"].as_str();
                assert!(
                    id.is_some_and(|id| ids.insert(id.to_owned())),
                    "{method} {path}: no operationId, or one used twice"
                );
                let tagged = operation["tags"].as_array().map_or(0, Vec::len);
                assert_eq!(tagged, 1, "{method} {path}: one tag");
                assert!(
                    tags.contains(&&operation["tags"][0]),
                    "{method} {path}: tag not declared"
                );
            }
        }
        for (path, item) in paths {
            let Some(operations) = item.as_object() else {
                panic!("{path} is not an object");
            };
            for method in operations.keys() {
                assert!(
                    served
                        .iter()
                        .any(|(verb, served)| served == path && verb.openapi_name() == method),
                    "{method} {path} is in openapi.json but not served"
                );
            }
        }
    }
}
