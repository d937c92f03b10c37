//! `kairos jobs`, `runs` and `cluster`: each command becomes one request to a running
//! daemon's API (`kairos::client`), and its answer is printed as a table or, with
//! `--json`, exactly as the API sent it.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use super::args::{Connection, JobsCommand};
use super::EXIT_INVALID_INPUT;
use kairos::client::{
    table, trigger_from_words, ApiClient, ClientError, Endpoint, EndpointError, JobFilter, JobView,
    NewJob, Resumed,
};
use kairos::job::JobOptions;
use kairos::trigger::{TriggerSpec, Zone};

/// What `kairos jobs`, `kairos runs` or `kairos cluster` was asked to do.
pub(super) enum ApiCommand {
    Jobs(JobsCommand),
    Cluster,
    Runs {
        job_id: Option<String>,
        limit: Option<usize>,
        output: bool,
        cursor: Option<String>,
    },
}

/// A request with its input checked, ready to send.
pub(super) enum ApiRequest {
    List(JobFilter),
    Show(String),
    Add {
        job: Box<NewJob>,
        idempotency_key: Option<String>,
    },
    Pause(String),
    Resume(String),
    Remove(String),
    Reschedule(String, TriggerSpec),
    Run(String, bool),
    Backfill {
        id: String,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    },
    Explain(String),
    Reload {
        force: bool,
    },
    Runs {
        job_id: Option<String>,
        limit: Option<usize>,
        output: bool,
        cursor: Option<String>,
    },
    Cluster,
}

/// Why an API command failed, which decides its exit status.
pub(super) enum ApiFailure {
    /// The input is wrong; nothing was sent (exit 2).
    Input(String),
    /// The API refused or could not be reached, or the answer could not be written
    /// (exit 1).
    Failed(String),
}

impl From<ClientError> for ApiFailure {
    fn from(error: ClientError) -> ApiFailure {
        ApiFailure::Failed(error.to_string())
    }
}

pub(super) fn api_command(connection: &Connection, command: ApiCommand) -> ExitCode {
    match run_api_command(connection, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ApiFailure::Input(message)) => {
            eprintln!("kairos: {message}");
            ExitCode::from(EXIT_INVALID_INPUT)
        }
        Err(ApiFailure::Failed(message)) => {
            eprintln!("kairos: {message}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn run_api_command(
    connection: &Connection,
    command: ApiCommand,
) -> Result<(), ApiFailure> {
    // Input first: a mistake is reported as such even when the daemon is down.
    let request = prepare_request(command)?;
    let endpoint =
        Endpoint::discover(connection.config.as_deref()).map_err(|error| match error {
            EndpointError::ApiDisabled { .. } => ApiFailure::Failed(error.to_string()),
            EndpointError::Config { ref errors, .. } => {
                for problem in errors {
                    eprintln!("{problem}");
                }
                ApiFailure::Input(error.to_string())
            }
            _ => ApiFailure::Input(error.to_string()),
        })?;
    let client = ApiClient::new(endpoint)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| ApiFailure::Failed(format!("starting the async runtime: {error}")))?;
    runtime.block_on(send_request(&client, request, connection.json))
}

pub(super) fn prepare_request(command: ApiCommand) -> Result<ApiRequest, ApiFailure> {
    let trigger = |kind: &str, words: &[String]| {
        trigger_from_words(kind, words)
            .map_err(|error| ApiFailure::Input(format!("trigger.{error}")))
    };
    Ok(match command {
        ApiCommand::Runs {
            job_id,
            limit,
            output,
            cursor,
        } => ApiRequest::Runs {
            job_id,
            limit,
            output,
            cursor,
        },
        ApiCommand::Cluster => ApiRequest::Cluster,
        ApiCommand::Jobs(JobsCommand::List(list)) => ApiRequest::List(JobFilter {
            state: list.state,
            task: list.task,
            jobstore: list.jobstore,
            text: list.search,
            limit: list.limit.map(usize::from),
            offset: list.offset,
            cursor: list.cursor,
        }),
        ApiCommand::Jobs(JobsCommand::Show { id }) => ApiRequest::Show(id),
        ApiCommand::Jobs(JobsCommand::Pause { id }) => ApiRequest::Pause(id),
        ApiCommand::Jobs(JobsCommand::Resume { id }) => ApiRequest::Resume(id),
        ApiCommand::Jobs(JobsCommand::Remove { id }) => ApiRequest::Remove(id),
        ApiCommand::Jobs(JobsCommand::Run { id, force }) => ApiRequest::Run(id, force),
        ApiCommand::Jobs(JobsCommand::Explain { id }) => ApiRequest::Explain(id),
        ApiCommand::Jobs(JobsCommand::Backfill { id, from, to }) => {
            ApiRequest::Backfill { id, from, to }
        }
        ApiCommand::Jobs(JobsCommand::Reload { force }) => ApiRequest::Reload { force },
        ApiCommand::Jobs(JobsCommand::Reschedule { id, kind, words }) => {
            ApiRequest::Reschedule(id, trigger(&kind, &words)?)
        }
        ApiCommand::Jobs(JobsCommand::Add(add)) => {
            let args = match &add.args {
                None => serde_json::Value::Null,
                Some(text) => serde_json::from_str(text)
                    .map_err(|error| ApiFailure::Input(format!("--args: not JSON: {error}")))?,
            };
            let coalesce = match (add.coalesce, add.no_coalesce) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let job = NewJob {
                trigger: trigger(&add.kind, &add.words)?,
                id: add.id,
                name: add.name,
                task: add.task,
                args,
                options: JobOptions {
                    coalesce,
                    ..add.options.into_options()
                },
                paused: add.paused,
                replace_existing: add.replace_existing,
            };
            ApiRequest::Add {
                job: Box::new(job),
                idempotency_key: add.idempotency_key,
            }
        }
    })
}

pub(super) async fn send_request(
    client: &ApiClient,
    request: ApiRequest,
    json: bool,
) -> Result<(), ApiFailure> {
    let zone = Zone::system();
    let color = kairos::color::wanted(std::io::stdout().is_terminal());
    let one_job = |job: &JobView| {
        table::jobs(std::slice::from_ref(job), &zone)
            .with_color(color)
            .to_string()
    };
    match request {
        ApiRequest::List(filter) => {
            let page = client.list_jobs_filtered(&filter).await?;
            print_answer(&page.body, json, || {
                table::jobs(&page.value.jobs, &zone)
                    .with_color(color)
                    .to_string()
            })?;
            if !json {
                if let Some(cursor) = &page.value.next_cursor {
                    let total = page
                        .value
                        .total
                        .map_or_else(String::new, |total| format!(" of {total}"));
                    eprintln!(
                        "{} job(s){total} shown; the next page: kairos jobs list ... --cursor {cursor}",
                        page.value.jobs.len()
                    );
                }
            }
            Ok(())
        }
        ApiRequest::Show(id) => {
            let job = client.get_job(&id).await?;
            print_answer(&job.body, json, || table::job_details(&job.value, &zone))
        }
        ApiRequest::Add {
            job,
            idempotency_key,
        } => {
            let added = client.add_job(&job, idempotency_key.as_deref()).await?;
            print_answer(&added.body, json, || one_job(&added.value))
        }
        ApiRequest::Pause(id) => {
            let job = client.pause_job(&id).await?;
            print_answer(&job.body, json, || one_job(&job.value))
        }
        ApiRequest::Resume(id) => {
            let resumed = client.resume_job(&id).await?;
            print_answer(&resumed.body, json, || match &resumed.value {
                Resumed::Job(job) => one_job(job),
                Resumed::Removed { id, message, .. } => format!("job {id:?}: {message}\n"),
            })
        }
        ApiRequest::Remove(id) => {
            client.remove_job(&id).await?;
            // The API answers 204 with no body: --json prints nothing.
            print_answer("", json, || format!("removed job {id:?}\n"))
        }
        ApiRequest::Reschedule(id, trigger) => {
            let job = client.reschedule_job(&id, &trigger).await?;
            print_answer(&job.body, json, || one_job(&job.value))
        }
        ApiRequest::Run(id, force) => {
            let started = client.run_job_with(&id, force).await?;
            print_answer(&started.body, json, || table::run_started(&started.value))
        }
        ApiRequest::Explain(id) => {
            let explained = client.explain_job(&id).await?;
            print_answer(&explained.body, json, || {
                let mut text = format!("{}\n", explained.value.summary);
                for time in &explained.value.recent {
                    text.push_str(&format!(
                        "  {}  {:<10}  {}\n",
                        time.scheduled_time, time.outcome, time.detail
                    ));
                }
                text
            })
        }
        ApiRequest::Backfill { id, from, to } => {
            let started = client.backfill_job(&id, from, to).await?;
            print_answer(&started.body, json, || {
                format!(
                    "job {id:?}: {} fire time(s) from {from} to {to} handed over, one after another; `kairos runs {id}` shows how they end\n",
                    started.value.runs
                )
            })
        }
        ApiRequest::Reload { force } => {
            let report = client.reload(force).await?;
            print_answer(&report.body, json, || table::reload_summary(&report.value))?;
            if report.value.applied == Some(false) {
                return Err(ApiFailure::Failed(
                    "the config files were not applied: a newer config generation superseded \
                     them (kairos jobs reload --force rolls back to them)"
                        .to_owned(),
                ));
            }
            match report.value.failed.len() {
                0 => Ok(()),
                failed => Err(ApiFailure::Failed(format!(
                    "{failed} job(s) from the config files could not be applied"
                ))),
            }
        }
        ApiRequest::Cluster => {
            let nodes = client.cluster().await?;
            print_answer(&nodes.body, json, || {
                table::cluster(&nodes.value, chrono::Utc::now(), &zone)
                    .with_color(color)
                    .to_string()
            })
        }
        ApiRequest::Runs {
            job_id,
            limit,
            output,
            cursor,
        } => {
            let page = client
                .runs_page(job_id.as_deref(), limit, cursor.as_deref())
                .await?;
            let runs = &page.value.runs;
            print_answer(&page.body, json, || {
                let mut text = table::runs(runs, &zone).with_color(color).to_string();
                if output {
                    text.push_str(&table::run_outputs(runs, &zone));
                }
                text
            })?;
            if let (false, Some(cursor)) = (json, &page.value.next_cursor) {
                eprintln!("older runs: kairos runs ... --cursor {cursor}");
            }
            Ok(())
        }
    }
}

/// Prints the API's `body` as it is for `--json`, else what `human` makes of it.
pub(super) fn print_answer(
    body: &str,
    json: bool,
    human: impl FnOnce() -> String,
) -> Result<(), ApiFailure> {
    let text = match json {
        true if body.is_empty() => return Ok(()),
        true => format!("{}\n", body.trim_end()),
        false => human(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| ApiFailure::Failed(format!("writing the answer: {error}")))
}
