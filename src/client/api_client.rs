//! [`ApiClient`]: one typed method per API route, each answer kept with its body as
//! received ([`Fetched::body`]) so that `--json` prints exactly what the API said.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::endpoint::Endpoint;
use super::error::{describe_error, excerpt, ClientError, ErrorBody};
use super::views::{
    BackfillStarted, ClusterList, Explained, Fetched, JobFilter, JobList, JobPage, JobView, NewJob,
    ReloadReport, Reschedule, Resumed, RunList, RunPage, RunStarted,
};
use crate::history::RunRecord;
use crate::scheduler::ClusterNode;
use crate::task::http::{chain, tls_config};
use crate::trigger::TriggerSpec;

/// How long to wait for a TCP connection: a loopback daemon answers at once, so a
/// slow connect means the address is wrong.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take; a little over the API's own 30 s request
/// timeout, so its 503 arrives rather than our timeout.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);

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
    pub(super) fn url(&self, path: &[&str], query: Option<&[(&str, String)]>) -> Url {
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
