//! The built-in `http` task: calls a URL and checks the response status.
//!
//! Args (checked when the job is added, by [`HttpTask::check_args`]):
//!
//! | key | value | default |
//! | --- | --- | --- |
//! | `url` | an `http://` or `https://` URL | — |
//! | `method` | `"GET"`, `"POST"`, … | `"GET"` |
//! | `headers` | `{"Name": "value"}` | `{}` |
//! | `body` | a string, sent as is; or any other JSON value, sent as JSON with `Content-Type: application/json` unless `headers` sets one | none |
//! | `timeout` | `"30s"`, `"1h30m"` or a number of seconds, for the whole exchange | `"30s"` |
//! | `expect_status` | `200`, `[200, 204]`, `"2xx"`, or a list mixing codes and classes | `"2xx"` |
//!
//! The output is the status line and the start of the response body; a run fails when
//! the status is not the expected one (`expected status 2xx, got 503`), and when the
//! server cannot be reached, the exchange times out, or TLS fails.
//!
//! # Ground rules
//! - At most [`MAX_OUTPUT_BYTES`] of the body are read; the rest is not downloaded.
//! - Redirects are followed by hand (up to 10), and the status checked is the final
//!   one. A redirect to another host (or scheme or port) drops the job's `headers`, so
//!   a token meant for one server never reaches another.
//! - Jobs that do not come from the config files (added through the API or by a
//!   library user) connect only where the [`OutboundPolicy`] allows: every hop's URL
//!   is checked, and names are resolved through a resolver that drops refused
//!   addresses (see `outbound.rs`).
//! - One client per task, so connections are reused across runs. TLS is rustls with
//!   ring (or the process's default crypto provider, if the program installed one) and
//!   the system's trust store; we never install a process-wide default ourselves, which
//!   would break a program that embeds kairos and installs its own.
//! - Proxies come from `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`, as curl reads them. For
//!   restricted jobs the target is still checked on kairos's own resolution of it, and
//!   a proxy on a private address must be listed in `[api] http_allow`.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::args::{duration_arg, kind, object, utf8_prefix};
use super::outbound::{AllowRule, GuardedResolver, OutboundPolicy, Refusal};
use super::SettingsError;
use super::{Task, TaskFailure, TaskRun};
use crate::history::MAX_OUTPUT_BYTES;

/// Calls a URL.
#[derive(Clone, Debug, Default)]
pub struct HttpTask {
    /// Where jobs that are not from the config files may connect.
    policy: Arc<OutboundPolicy>,
    /// For config-file jobs. Built on first use; an error (no usable trust store, say)
    /// fails each run.
    open: OnceLock<Result<reqwest::Client, String>>,
    /// For the others: resolves names through [`GuardedResolver`].
    guarded: OnceLock<Result<reqwest::Client, String>>,
}

impl HttpTask {
    /// The task with `policy` for jobs that are not from the config files (the
    /// default policy allows no loopback or private address).
    pub fn with_policy(policy: OutboundPolicy) -> HttpTask {
        HttpTask {
            policy: Arc::new(policy),
            ..HttpTask::default()
        }
    }
}

impl HttpTask {
    /// Builds the task from its settings: `{"allow": ["10.0.0.0/8", "db.internal"]}`,
    /// the daemon's `[api] http_allow` (also how a process-pool worker gets them).
    pub fn from_settings(value: &Value) -> Result<HttpTask, Vec<SettingsError>> {
        let Some(object) = value.as_object() else {
            return Err(vec![SettingsError::new("", "must be a table")]);
        };
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (key, value) in object {
            match (key.as_str(), value) {
                ("allow", Value::Array(items)) => {
                    for (index, item) in items.iter().enumerate() {
                        match item.as_str().map(AllowRule::parse) {
                            Some(Ok(rule)) => rules.push(rule),
                            Some(Err(message)) => {
                                errors.push(SettingsError::new(format!("allow[{index}]"), message))
                            }
                            None => errors.push(SettingsError::new(
                                format!("allow[{index}]"),
                                "must be a string",
                            )),
                        }
                    }
                }
                ("allow", _) => errors.push(SettingsError::new("allow", "must be a list")),
                (other, _) => {
                    errors.push(SettingsError::new(other, "unknown key (only `allow`)"));
                }
            }
        }
        if errors.is_empty() {
            Ok(HttpTask::with_policy(OutboundPolicy::new(rules)))
        } else {
            Err(errors)
        }
    }
}

/// The settings section the daemon fills from `[api] http_allow`.
pub const SETTINGS_SECTION: &str = "http";

/// The most redirects one run follows.
const MAX_REDIRECTS: usize = 10;

#[async_trait]
impl Task for HttpTask {
    fn check_args(&self, args: &Value) -> Result<(), String> {
        HttpArgs::parse(args).map(drop)
    }

    /// What [`HttpArgs::parse`] takes (the API refuses some addresses besides: see
    /// `outbound.rs`).
    fn args_schema(&self) -> Option<Value> {
        Some(args_schema())
    }

    async fn run(&self, run: TaskRun) -> Result<String, TaskFailure> {
        let args = HttpArgs::parse(&run.args).map_err(TaskFailure::new)?;
        let (client, policy) = if run.from_config {
            (self.open.get_or_init(|| build_client(None)), None)
        } else {
            let resolver = GuardedResolver {
                policy: self.policy.clone(),
            };
            (
                self.guarded.get_or_init(|| build_client(Some(resolver))),
                Some(&*self.policy),
            )
        };
        let client = client
            .as_ref()
            .map_err(|error| TaskFailure::new(error.clone()))?;
        call(client, &args, policy).await
    }

    fn settings(&self) -> Option<Value> {
        let allow = self.policy.rules();
        (!allow.is_empty()).then(|| serde_json::json!({ "allow": allow }))
    }
}

const KEYS: &[&str] = &[
    "url",
    "method",
    "headers",
    "body",
    "timeout",
    "expect_status",
];

/// Used when `timeout` is not given: a job should not hang on a server that never
/// answers, since `max_instances` would then keep its later runs from starting.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Room left for the status line and the cut marker within [`MAX_OUTPUT_BYTES`].
const OUTPUT_ROOM: usize = 512;

/// The JSON Schema of [`HttpArgs::parse`]'s input (see [`Task::args_schema`]).
fn args_schema() -> Value {
    // RFC 9110 token characters, for methods and header names.
    let token = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
    let status = serde_json::json!({"oneOf": [
        {"type": "integer", "minimum": 100, "maximum": 599},
        {"type": "string", "pattern": "^ *([1-5][0-9][0-9]|[1-5][xX][xX]) *$"}]});
    serde_json::json!({
        "type": "object", "required": ["url"], "additionalProperties": false,
        "description": "One HTTP request; the run fails on a status outside expect_status (default 2xx).",
        "properties": {
            "url": {"type": "string", "pattern": r"^ *[hH][tT][tT][pP][sS]?://[A-Za-z0-9.-]+(:[0-9]{1,4})?(/[A-Za-z0-9._~/-]*)? *$",
                    "description": "An http:// or https:// URL. Addresses no job added through the API may reach (loopback, link-local, ...) are refused.",
                    "examples": ["https://example.com/health"]},
            "method": {"type": ["string", "null"], "pattern": token, "examples": ["POST"]},
            "headers": {"type": ["object", "null"], "propertyNames": {"pattern": token},
                        "additionalProperties": {"type": "string", "pattern": r"^[^\u0000-\u0008\u000a-\u001f\u007f]*$"}},
            "body": {"description": "A string is sent as it is; other JSON as JSON."},
            "timeout": super::args::duration_arg_schema("Give up after this long (default 30s)."),
            "expect_status": {"description": "A status (200), a list of them ([200, 204]) or a class (\"2xx\").",
                              "anyOf": [{"type": "null"}, status.clone(),
                                        {"type": "array", "minItems": 1, "items": status}]},
        },
        "examples": [{"url": "https://example.com/health"}],
    })
}

/// The checked args of an `http` job.
#[derive(Clone, Debug)]
struct HttpArgs {
    url: Url,
    method: Method,
    headers: HeaderMap,
    body: Option<Body>,
    timeout: Duration,
    expect: StatusSpec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Body {
    /// Sent as is.
    Text(String),
    /// Sent as JSON.
    Json(String),
}

impl HttpArgs {
    fn parse(args: &Value) -> Result<HttpArgs, String> {
        let fields = object(args, KEYS, r#"{"url": "https://example.com/health"}"#)?;
        let url = match fields.get("url") {
            Some(Value::String(url)) => parse_url(url)?,
            Some(other) => return Err(format!("url: must be a string, not {}", kind(other))),
            None => return Err(r#"url: missing, e.g. "https://example.com/health""#.to_owned()),
        };
        let method = match fields.get("method") {
            None | Some(Value::Null) => Method::GET,
            Some(Value::String(method)) => parse_method(method)?,
            Some(other) => {
                return Err(format!(
                    "method: must be a string such as \"POST\", not {}",
                    kind(other)
                ))
            }
        };
        let headers = match fields.get("headers") {
            None | Some(Value::Null) => HeaderMap::new(),
            Some(Value::Object(headers)) => parse_headers(headers)?,
            Some(other) => {
                return Err(format!(
                    r#"headers: must be an object of strings, e.g. {{"Authorization": "Bearer …"}}, not {}"#,
                    kind(other)
                ))
            }
        };
        let body = match fields.get("body") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(Body::Text(text.clone())),
            Some(json) => Some(Body::Json(json.to_string())),
        };
        let timeout = fields
            .get("timeout")
            .map(|value| duration_arg("timeout", value))
            .transpose()?
            .flatten()
            .unwrap_or(DEFAULT_TIMEOUT);
        let expect = match fields.get("expect_status") {
            None | Some(Value::Null) => StatusSpec(vec![StatusMatch::Class(2)]),
            Some(value) => {
                StatusSpec::parse(value).map_err(|error| format!("expect_status: {error}"))?
            }
        };
        Ok(HttpArgs {
            url,
            method,
            headers,
            body,
            timeout,
            expect,
        })
    }
}

fn parse_url(text: &str) -> Result<Url, String> {
    let url =
        Url::parse(text.trim()).map_err(|error| format!("url: {text:?} is not a URL ({error})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "url: {text:?} is not an http:// or https:// URL (scheme {:?})",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("url: {text:?} has no host"));
    }
    Ok(url)
}

fn parse_method(text: &str) -> Result<Method, String> {
    // Methods are case-sensitive, but nobody means `get` to be a custom method.
    const STANDARD: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    let upper = text.to_ascii_uppercase();
    let name = if STANDARD.contains(&upper.as_str()) {
        upper.as_str()
    } else {
        text
    };
    Method::from_bytes(name.as_bytes())
        .ok()
        .filter(|_| !name.is_empty())
        .ok_or_else(|| format!("method: {text:?} is not an HTTP method (e.g. \"GET\", \"POST\")"))
}

fn parse_headers(headers: &serde_json::Map<String, Value>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
        let Value::String(value) = value else {
            return Err(format!(
                "headers.{name}: must be a string (write {})",
                Value::String(value.to_string())
            ));
        };
        let value = HeaderValue::from_str(value).map_err(|_| {
            format!(
                "headers.{name}: not a valid header value (no control characters or line breaks)"
            )
        })?;
        map.append(header, value);
    }
    Ok(map)
}

/// The statuses a run accepts: any of the codes and classes listed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StatusSpec(Vec<StatusMatch>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusMatch {
    /// One status code.
    Code(u16),
    /// A class: `2` for 2xx.
    Class(u8),
}

impl StatusSpec {
    const HINT: &'static str = r#"a status (200), a list of them ([200, 204]) or a class ("2xx")"#;

    fn parse(value: &Value) -> Result<StatusSpec, String> {
        match value {
            Value::Array(items) if items.is_empty() => Err(format!("must be {}", StatusSpec::HINT)),
            Value::Array(items) => items
                .iter()
                .map(StatusMatch::parse)
                .collect::<Result<Vec<_>, _>>()
                .map(StatusSpec),
            single => StatusMatch::parse(single).map(|one| StatusSpec(vec![one])),
        }
    }

    fn matches(&self, status: StatusCode) -> bool {
        self.0.iter().any(|one| one.matches(status.as_u16()))
    }
}

impl StatusMatch {
    fn parse(value: &Value) -> Result<StatusMatch, String> {
        let code = match value {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => {
                let text = text.trim();
                let bytes = text.as_bytes();
                if bytes.len() == 3 && bytes[1..].eq_ignore_ascii_case(b"xx") {
                    return match bytes[0] {
                        digit @ b'1'..=b'5' => Ok(StatusMatch::Class(digit - b'0')),
                        _ => Err(format!("{text:?} is not a status class (1xx to 5xx)")),
                    };
                }
                text.parse::<u64>().ok()
            }
            other => return Err(format!("must be {}, not {}", StatusSpec::HINT, kind(other))),
        };
        match code {
            Some(code @ 100..=599) => Ok(StatusMatch::Code(code as u16)),
            _ => Err(format!("{value} is not an HTTP status (100 to 599)")),
        }
    }

    fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(code) => code == status,
            StatusMatch::Class(class) => status / 100 == u16::from(class),
        }
    }
}

impl fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusMatch::Code(code) => write!(f, "{code}"),
            StatusMatch::Class(class) => write!(f, "{class}xx"),
        }
    }
}

impl fmt::Display for StatusSpec {
    /// `2xx`, `200 or 204`, `200, 204 or 3xx`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, one) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(if index + 1 == self.0.len() {
                    " or "
                } else {
                    ", "
                })?;
            }
            write!(f, "{one}")?;
        }
        Ok(())
    }
}

/// A client with the `http` task's setup (rustls, the system's trust store, no
/// redirects) and no outbound guard: for the operator's own endpoints, such as the
/// alert webhooks of the config file.
pub(crate) fn operator_client() -> Result<reqwest::Client, String> {
    build_client(None)
}

fn build_client(resolver: Option<GuardedResolver>) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .user_agent(concat!("kairos/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls_config()?);
    let builder = match resolver {
        Some(resolver) => builder.dns_resolver(Arc::new(resolver)),
        None => builder,
    };
    builder
        .build()
        .map_err(|error| format!("cannot set up the HTTP client: {}", chain(&error)))
}

/// Refuses `url` when `policy` refuses its host: an address as written, or any address
/// its name resolves to now (the resolver checks again when connecting).
async fn check_hop(url: &Url, policy: &OutboundPolicy) -> Result<(), TaskFailure> {
    let refuse = |refusal: Refusal| {
        TaskFailure::new(format!("refused to call {}: {refusal}", redacted(url)))
    };
    let Some(host) = url.host_str() else {
        return Err(TaskFailure::new(format!("{} has no host", redacted(url))));
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if let Ok(address) = host.parse::<IpAddr>() {
        return policy.check("", address).map_err(refuse);
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let found = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|error| TaskFailure::new(format!("cannot resolve {host}: {error}")))?;
    for address in found {
        policy.check(&host, address.ip()).map_err(refuse)?;
    }
    Ok(())
}

/// Whether `next` is on the same origin as `previous` (scheme, host and port).
fn same_origin(previous: &Url, next: &Url) -> bool {
    previous.scheme() == next.scheme()
        && previous.host_str() == next.host_str()
        && previous.port_or_known_default() == next.port_or_known_default()
}

/// The TLS setup of every reqwest client kairos builds (this task's and the CLI's API
/// client): rustls with the process's default crypto provider, else ring, and the
/// system's trust store. reqwest's `rustls-no-provider` panics without one, so no
/// client may be built without this.
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, String> {
    use rustls_platform_verifier::BuilderVerifierExt;

    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_platform_verifier())
        .map_err(|error| format!("cannot set up TLS: {error}"))?
        .with_no_client_auth())
}

async fn call(
    client: &reqwest::Client,
    args: &HttpArgs,
    policy: Option<&OutboundPolicy>,
) -> Result<String, TaskFailure> {
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut url = args.url.clone();
    let mut method = args.method.clone();
    let mut body = args.body.clone();
    let mut headers = args.headers.clone();
    let mut hops = 0;
    let mut response = loop {
        if let Some(policy) = policy {
            check_hop(&url, policy).await?;
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut request = client
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .timeout(remaining);
        match &body {
            None => {}
            Some(Body::Text(text)) => request = request.body(text.clone()),
            Some(Body::Json(json)) => {
                if !headers.contains_key(CONTENT_TYPE) {
                    request = request.header(CONTENT_TYPE, "application/json");
                }
                request = request.body(json.clone());
            }
        }
        let response = request.send().await.map_err(|error| {
            let message = describe_error(&error, args);
            if error.is_timeout() {
                TaskFailure::timeout(message)
            } else {
                TaskFailure::new(message)
            }
        })?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|location| url.join(location).ok());
        let next = match location {
            Some(next) if status.is_redirection() && status != StatusCode::NOT_MODIFIED => next,
            _ => break response,
        };
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(TaskFailure::new(format!(
                "{} {}: more than {MAX_REDIRECTS} redirects",
                args.method,
                redacted(&args.url)
            )));
        }
        if !matches!(next.scheme(), "http" | "https") {
            return Err(TaskFailure::new(format!(
                "{} {}: redirected to a {} URL",
                args.method,
                redacted(&args.url),
                next.scheme()
            )));
        }
        // 303, and 301/302 after a POST, turn into a GET without a body, as browsers
        // and curl do.
        let to_get = status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && method == Method::POST);
        if to_get {
            method = Method::GET;
            body = None;
            headers.remove(CONTENT_TYPE);
        }
        // The job's headers (tokens, cookies) were meant for the first server only.
        if !same_origin(&url, &next) {
            headers.clear();
        }
        url = next;
    };
    let status = response.status();
    let mut output = format!("{:?} {}", response.version(), status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        output.push(' ');
        output.push_str(reason);
    }
    output.push('\n');
    let length = response.content_length();
    let limit = MAX_OUTPUT_BYTES - OUTPUT_ROOM;
    let mut body = Vec::new();
    let mut cut = false;
    let mut body_error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                if chunk.len() > room {
                    // Enough for the history; the rest is not worth downloading.
                    cut = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                body_error = Some(describe_error(&error, args));
                break;
            }
        }
    }
    output.push_str(&utf8_prefix(&body));
    if cut {
        output.push_str(&match length {
            Some(length) => format!(
                "\n[response body cut: kept the first {} of {length} bytes]",
                body.len()
            ),
            None => format!(
                "\n[response body cut: kept the first {} bytes, did not read the rest]",
                body.len()
            ),
        });
    }
    if !args.expect.matches(status) {
        return Err(TaskFailure {
            output,
            ..TaskFailure::new(format!(
                "expected status {}, got {}",
                args.expect,
                status.as_u16()
            ))
        });
    }
    if let Some(error) = body_error {
        return Err(TaskFailure {
            output,
            ..TaskFailure::new(format!("reading the response body failed: {error}"))
        });
    }
    Ok(output)
}

/// Why a request failed, in a few words: reqwest's own message is a chain of
/// wrappers ("error sending request for url (…): client error (Connect): …").
fn describe_error(error: &reqwest::Error, args: &HttpArgs) -> String {
    if error.is_timeout() {
        return format!(
            "timed out after {}",
            humantime::format_duration(args.timeout)
        );
    }
    let target = match (args.url.host_str(), args.url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => args.url.to_string(),
    };
    if error.is_connect() {
        let reason = match io_error(error) {
            Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_owned()
            }
            _ => innermost(error),
        };
        return format!("cannot connect to {target}: {reason}");
    }
    if error.is_redirect() {
        return format!(
            "{} {}: {}",
            args.method,
            redacted(&args.url),
            innermost(error)
        );
    }
    // reqwest's own message names the URL, with its password; ours names it once.
    let reason = match std::error::Error::source(error) {
        Some(source) => chain(source),
        None => strip_os_error(error.to_string()),
    };
    format!("{} {} failed: {reason}", args.method, redacted(&args.url))
}

/// The URL without its password, for messages.
fn redacted(url: &Url) -> Url {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url
}

/// The first io error in the source chain.
pub(crate) fn io_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a std::io::Error> {
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = current.source();
    }
    None
}

/// The last message of the source chain: the root cause.
pub(crate) fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    strip_os_error(current.to_string())
}

/// The messages of the source chain, joined; repeats (wrappers that print their
/// source) are dropped.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(current) = source {
        let text = strip_os_error(current.to_string());
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = current.source();
    }
    parts.join(": ")
}

fn strip_os_error(text: String) -> String {
    match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(args: Value) -> String {
        HttpTask::default()
            .check_args(&args)
            .expect_err("the args should be refused")
    }

    fn spec(value: Value) -> StatusSpec {
        StatusSpec::parse(&value).expect("a valid status spec")
    }

    #[test]
    fn parses_args_with_defaults() {
        let args = HttpArgs::parse(&json!({"url": "https://example.com/x"})).expect("valid");
        assert_eq!(args.method, Method::GET);
        assert_eq!(args.timeout, DEFAULT_TIMEOUT);
        assert_eq!(args.expect.to_string(), "2xx");
        assert!(args.body.is_none());
        let args = HttpArgs::parse(&json!({
            "url": "http://127.0.0.1:8080/hook",
            "method": "post",
            "headers": {"X-Token": "secret"},
            "body": {"a": 1},
            "timeout": 5,
            "expect_status": [200, "3xx"],
        }))
        .expect("valid");
        assert_eq!(args.method, Method::POST);
        assert_eq!(args.headers["x-token"], "secret");
        assert_eq!(args.body, Some(Body::Json(r#"{"a":1}"#.to_owned())));
        assert_eq!(args.timeout, Duration::from_secs(5));
        assert_eq!(args.expect.to_string(), "200 or 3xx");
    }

    #[test]
    fn bad_args_name_their_field() {
        assert!(error(json!({})).starts_with("url: missing"));
        assert!(error(json!({"url": 3})).starts_with("url: must be a string"));
        assert!(error(json!({"url": "not a url"})).starts_with(r#"url: "not a url" is not a URL"#));
        assert!(error(json!({"url": "ftp://example.com/"}))
            .contains("is not an http:// or https:// URL"));
        assert!(error(json!({"url": "file:///etc/passwd"})).starts_with("url:"));
        assert!(error(json!({"url": "http://x", "method": "GE T"})).starts_with("method:"));
        assert!(error(json!({"url": "http://x", "method": ""})).starts_with("method:"));
        assert!(error(json!({"url": "http://x", "headers": {"a b": "1"}}))
            .starts_with("headers: \"a b\""));
        assert!(error(json!({"url": "http://x", "headers": {"A": 1}}))
            .starts_with("headers.A: must be a string"));
        assert!(
            error(json!({"url": "http://x", "headers": {"A": "x\ny"}})).starts_with("headers.A:")
        );
        assert!(error(json!({"url": "http://x", "headers": "A: 1"}))
            .starts_with("headers: must be an object"));
        assert!(error(json!({"url": "http://x", "timeout": "abc"}))
            .starts_with(r#"timeout: "abc" is not a duration"#));
        assert!(error(json!({"url": "http://x", "expect_status": 700}))
            .starts_with("expect_status: 700 is not an HTTP status"));
        assert!(error(json!({"url": "http://x", "expect_status": "6xx"}))
            .starts_with("expect_status: \"6xx\""));
        assert!(error(json!({"url": "http://x", "expect_status": []}))
            .starts_with("expect_status: must be"));
        assert!(error(json!({"url": "http://x", "expect_status": true}))
            .starts_with("expect_status: must be"));
        assert_eq!(
            error(json!({"url": "http://x", "metod": "GET"})),
            r#"metod: unknown key (did you mean "method"?)"#
        );
    }

    #[test]
    fn status_specs_match_codes_and_classes() {
        assert!(spec(json!(200)).matches(StatusCode::OK));
        assert!(!spec(json!(200)).matches(StatusCode::NO_CONTENT));
        assert!(spec(json!("204")).matches(StatusCode::NO_CONTENT));
        assert!(spec(json!([200, 204])).matches(StatusCode::NO_CONTENT));
        assert!(spec(json!("2XX")).matches(StatusCode::ACCEPTED));
        assert!(!spec(json!("2xx")).matches(StatusCode::SERVICE_UNAVAILABLE));
        assert!(spec(json!([404, "5xx"])).matches(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(
            spec(json!([200, 204, "3xx"])).to_string(),
            "200, 204 or 3xx"
        );
    }

    #[test]
    fn builds_a_client_with_rustls_and_ring() {
        // A TLS config reqwest did not recognise would make this fail.
        build_client(None).expect("the client builds");
    }

    #[test]
    fn hides_passwords_in_urls() {
        let url = Url::parse("https://user:hunter2@example.com/").expect("a URL");
        assert_eq!(redacted(&url).as_str(), "https://user:***@example.com/");
    }
}
