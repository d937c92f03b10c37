//! Delivering alerts to webhooks: one JSON POST per alert and webhook, retried with
//! backoff, never in the scheduler's way.
//!
//! # Ground rules
//! - [`Webhooks::send`] never waits: each webhook has a bounded queue and a task of its
//!   own that POSTs from it. When the queue is full (the webhook has been down for a
//!   while and alerts keep coming) the alert is dropped for that webhook and reported
//!   as [`DeliveryOutcome::Dropped`], so memory stays bounded and nothing is dropped
//!   silently.
//! - A POST succeeds on a 2xx answer. Connection errors, timeouts, 408, 429 and 5xx
//!   are tried again after a wait that doubles from `initial_backoff` up to
//!   `max_backoff`, `max_attempts` POSTs in all; any other answer (a 4xx: the request
//!   itself is wrong) is not. Either way the end is reported once ([`Delivery`]).
//! - Waits are real time (they wait for a network), not the scheduler's clock.
//! - The URLs are the operator's own (`[[alerts.webhooks]]` in the config file), so
//!   the `http` task's outbound guard for API-made jobs does not apply; the client is
//!   the same otherwise (`task/http.rs`): rustls, the system's trust store, no
//!   redirects.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Alert, AlertKind, WebhookSettings};

/// What became of one alert at one webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The webhook ([`WebhookSettings::label`]).
    pub webhook: String,
    /// The alert's kind.
    pub alert: AlertKind,
    /// The alert's job.
    pub job_id: String,
    /// POSTs made.
    pub attempts: u32,
    /// How it ended.
    pub outcome: DeliveryOutcome,
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The webhook answered 2xx.
    Delivered,
    /// Every attempt failed, or the webhook refused the request; why, last.
    Failed(String),
    /// The webhook's queue was full: not sent at all.
    Dropped,
}

/// Who hears how deliveries ended.
pub type DeliveryReport = Arc<dyn Fn(Delivery) + Send + Sync>;

/// Why the webhooks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The HTTP client could not be built (TLS setup).
    #[error("alert webhooks: {0}")]
    Client(String),
    /// A URL or header is not usable.
    #[error("alert webhook {webhook}: {reason}")]
    Invalid {
        /// The webhook.
        webhook: String,
        /// Why.
        reason: String,
    },
}

/// The running webhooks: a queue and a sending task each.
pub struct Webhooks {
    senders: Vec<Sender>,
    report: DeliveryReport,
}

struct Sender {
    label: String,
    events: Vec<AlertKind>,
    queue: mpsc::Sender<Alert>,
}

impl Webhooks {
    /// Starts one sending task per webhook (inside a tokio runtime); each ends when
    /// this value is dropped and its queue is empty. `report` hears how every delivery
    /// ended.
    pub fn start(
        settings: &[WebhookSettings],
        report: DeliveryReport,
    ) -> Result<Webhooks, WebhookError> {
        let client = if settings.is_empty() {
            None
        } else {
            Some(crate::task::http::operator_client().map_err(WebhookError::Client)?)
        };
        let mut senders = Vec::with_capacity(settings.len());
        for webhook in settings {
            let target = Target::new(webhook)?;
            let (queue, receiver) = mpsc::channel(webhook.queue.max(1));
            let Some(client) = client.clone() else {
                break;
            };
            tokio::spawn(deliver(
                client,
                target,
                webhook.clone(),
                receiver,
                Arc::clone(&report),
            ));
            senders.push(Sender {
                label: webhook.label(),
                events: webhook.events.clone(),
                queue,
            });
        }
        Ok(Webhooks { senders, report })
    }

    /// Queues `alert` for every webhook that wants its kind; never waits.
    pub fn send(&self, alert: &Alert) {
        for sender in &self.senders {
            if !sender.events.contains(&alert.event) {
                continue;
            }
            if sender.queue.try_send(alert.clone()).is_err() {
                (self.report)(Delivery {
                    webhook: sender.label.clone(),
                    alert: alert.event,
                    job_id: alert.job_id.clone(),
                    attempts: 0,
                    outcome: DeliveryOutcome::Dropped,
                });
            }
        }
    }

    /// How many webhooks there are.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

/// A webhook's URL and headers, checked once.
struct Target {
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
}

impl Target {
    fn new(webhook: &WebhookSettings) -> Result<Target, WebhookError> {
        let invalid = |reason: String| WebhookError::Invalid {
            webhook: webhook.label(),
            reason,
        };
        let url = check_url(&webhook.url).map_err(invalid)?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &webhook.headers {
            let (name, value) = check_header(name, value).map_err(invalid)?;
            headers.insert(name, value);
        }
        Ok(Target { url, headers })
    }
}

/// The URL, if it is an `http` or `https` URL with a host.
pub fn check_url(text: &str) -> Result<reqwest::Url, String> {
    let url =
        reqwest::Url::parse(text).map_err(|error| format!("{text:?} is not a URL ({error})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?} is not an http:// or https:// URL with a host"
        ));
    }
    Ok(url)
}

/// The header, if its name and value can be sent.
pub fn check_header(
    name: &str,
    value: &str,
) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), String> {
    let header_name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let mut header_value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        format!("the value of header {name:?} has characters a header cannot carry")
    })?;
    header_value.set_sensitive(true);
    Ok((header_name, header_value))
}

/// The sending task of one webhook: POSTs its queue in order until it closes.
async fn deliver(
    client: reqwest::Client,
    target: Target,
    settings: WebhookSettings,
    mut queue: mpsc::Receiver<Alert>,
    report: DeliveryReport,
) {
    let label = settings.label();
    while let Some(alert) = queue.recv().await {
        let (attempts, outcome) = post_with_retries(&client, &target, &settings, &alert).await;
        report(Delivery {
            webhook: label.clone(),
            alert: alert.event,
            job_id: alert.job_id.clone(),
            attempts,
            outcome,
        });
    }
}

/// POSTs `alert` until it is delivered, refused or out of attempts.
async fn post_with_retries(
    client: &reqwest::Client,
    target: &Target,
    settings: &WebhookSettings,
    alert: &Alert,
) -> (u32, DeliveryOutcome) {
    let max_attempts = settings.max_attempts.max(1);
    let mut backoff = settings.initial_backoff;
    let mut attempt = 1;
    let body = match serde_json::to_vec(alert) {
        Ok(body) => body,
        Err(error) => {
            return (
                0,
                DeliveryOutcome::Failed(format!("the alert could not be written as JSON: {error}")),
            )
        }
    };
    loop {
        let sent = client
            .post(target.url.clone())
            .headers(target.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(settings.timeout)
            .body(body.clone())
            .send()
            .await;
        let (retry, reason) = match sent {
            Ok(response) if response.status().is_success() => {
                return (attempt, DeliveryOutcome::Delivered)
            }
            Ok(response) => {
                let status = response.status();
                let retry = status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                (retry, format!("the webhook answered {status}"))
            }
            Err(error) => (
                true,
                format!("POST failed: {}", crate::task::http::chain(&error)),
            ),
        };
        if !retry || attempt >= max_attempts {
            return (attempt, DeliveryOutcome::Failed(reason));
        }
        tracing::debug!(
            webhook = settings.label(),
            attempt,
            reason,
            "alert POST failed; trying again"
        );
        tokio::time::sleep(backoff).await;
        backoff = next_backoff(backoff, settings.max_backoff);
        attempt += 1;
    }
}

/// The wait after `backoff`: twice as long, at most `max`.
fn next_backoff(backoff: Duration, max: Duration) -> Duration {
    backoff.saturating_mul(2).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let max = Duration::from_secs(60);
        let mut wait = Duration::from_secs(1);
        let mut waits = Vec::new();
        for _ in 0..8 {
            waits.push(wait.as_secs());
            wait = next_backoff(wait, max);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn urls_and_headers_are_checked() {
        assert!(check_url("https://hooks.example/x").is_ok());
        assert!(check_url("ftp://hooks.example/x").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_header("Authorization", "Bearer x").is_ok());
        assert!(check_header("Bad Name", "x").is_err());
        assert!(check_header("X-Ok", "line\nbreak").is_err());
    }
}
