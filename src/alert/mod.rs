//! Alerts: what an alert is, the JSON every webhook receives, and how it is delivered
//! (`webhook.rs`). Which alerts are raised, and when, is the scheduler's
//! (`scheduler/alerts.rs`); this module knows nothing of jobs or stores beyond the
//! alert's fields, so config, scheduler and API can all name its types.
//!
//! ```json
//! {"event": "failed", "job_id": "orders.cancel-42", "scheduled_time": "2026-12-06T03:00:00Z",
//!  "attempt": 10, "message": "…", "node_id": "node-a", "at": "2026-12-06T03:11:42Z"}
//! ```
//!
//! See `docs/alerts.md` for the events, the payload and the delivery rules.

pub mod webhook;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use self::webhook::{Delivery, DeliveryOutcome, Webhooks};

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A run failed and has no attempt left (a one-off job is kept as failed).
    Failed,
    /// Run times older than the job's `misfire_grace_time` were not run.
    Missed,
    /// A run went past its executor's timeout and was stopped.
    Timeout,
    /// The job has not succeeded within its `expect_success_within`.
    Overdue,
}

impl AlertKind {
    /// Every kind, in the order docs and metrics list them.
    pub const ALL: [AlertKind; 4] = [
        AlertKind::Failed,
        AlertKind::Missed,
        AlertKind::Timeout,
        AlertKind::Overdue,
    ];

    /// The name in JSON, config and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Failed => "failed",
            AlertKind::Missed => "missed",
            AlertKind::Timeout => "timeout",
            AlertKind::Overdue => "overdue",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<AlertKind> {
        AlertKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert: the JSON body each webhook receives, and the data of the `alert` event on
/// `GET /events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What happened.
    pub event: AlertKind,
    /// The job it happened to.
    pub job_id: String,
    /// The run's scheduled time (`failed`, `timeout`), the earliest time missed
    /// (`missed`), or when the job became overdue (`overdue`).
    pub scheduled_time: DateTime<Utc>,
    /// Which attempt of the scheduled time (`failed`, `timeout`); `null` otherwise.
    pub attempt: Option<u32>,
    /// One sentence for people.
    pub message: String,
    /// The node that raised it.
    pub node_id: String,
    /// When it was raised.
    pub at: DateTime<Utc>,
}

impl Alert {
    /// The key that makes the alert once-only in a cluster: event, scheduled time,
    /// attempt and job, at most [`MAX_CLAIM_KEY`](crate::store::MAX_CLAIM_KEY) bytes
    /// (a long job id is cut and a hash of the whole key appended, so two keys stay
    /// apart).
    pub fn claim_key(&self) -> String {
        let attempt = self
            .attempt
            .map_or_else(|| "-".to_owned(), |attempt| attempt.to_string());
        let key = format!(
            "{}|{}|{attempt}|{}",
            self.event,
            self.scheduled_time.timestamp_micros(),
            self.job_id
        );
        let limit = crate::store::MAX_CLAIM_KEY;
        if key.len() <= limit {
            return key;
        }
        let hash = format!("#{:016x}", fnv1a(key.as_bytes()));
        let mut cut = limit - hash.len();
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}{hash}", &key[..cut])
    }
}

/// FNV-1a, 64 bits: a hash that every node computes the same, whatever its build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One `[[alerts.webhooks]]`: where alerts are POSTed and which.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The URL (`http` or `https`).
    pub url: String,
    /// Headers sent with every POST (an `Authorization`, say); their values are
    /// secrets and never shown.
    pub headers: Vec<(String, String)>,
    /// The kinds it receives; default all of them.
    pub events: Vec<AlertKind>,
    /// How long one POST may take.
    pub timeout: Duration,
    /// POSTs per alert in all, the first included; then it is given up (and counted).
    pub max_attempts: u32,
    /// The wait before the second POST; it doubles for each one after, up to
    /// [`WebhookSettings::max_backoff`].
    pub initial_backoff: Duration,
    /// The longest wait between two POSTs.
    pub max_backoff: Duration,
    /// Alerts waiting for this webhook at most; more are dropped (and counted), so a
    /// webhook that is down never holds the scheduler's memory.
    pub queue: usize,
}

impl WebhookSettings {
    /// A webhook at `url` for every kind, with the default delivery settings: 10 s per
    /// POST, 6 POSTs, waits from 1 s doubling to 1 min (about 1.5 min in all), 1,000
    /// alerts queued.
    pub fn new(url: impl Into<String>) -> WebhookSettings {
        WebhookSettings {
            url: url.into(),
            headers: Vec::new(),
            events: AlertKind::ALL.to_vec(),
            timeout: Duration::from_secs(10),
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            queue: 1000,
        }
    }

    /// Whether it receives alerts of `kind`.
    pub fn wants(&self, kind: AlertKind) -> bool {
        self.events.contains(&kind)
    }

    /// The URL for logs, metrics and events: without credentials, query or fragment.
    pub fn label(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(url) => {
                let port = url
                    .port()
                    .map(|port| format!(":{port}"))
                    .unwrap_or_default();
                format!(
                    "{}://{}{port}{}",
                    url.scheme(),
                    url.host_str().unwrap_or(""),
                    url.path()
                )
            }
            Err(_) => "(invalid URL)".to_owned(),
        }
    }
}

impl fmt::Debug for WebhookSettings {
    /// Header values and the URL's credentials and query are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.label())
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("queue", &self.queue)
            .finish()
    }
}

/// How a scheduler raises alerts (`[alerts]`): the webhooks, and how often the
/// dead-man's switch looks at the jobs that have one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSettings {
    /// Where alerts are POSTed; none: alerts are still events, log lines and metrics.
    pub webhooks: Vec<WebhookSettings>,
    /// How often the dead-man's switch (`expect_success_within`) checks, on the
    /// scheduler's clock; default 1 min. The first check is when the scheduler starts,
    /// so a daemon that was down past a job's window says so at once.
    pub check_every: Duration,
    /// How long a sent alert's claim is kept in the store, so no other node sends it
    /// again; default 7 days (an `overdue` claim at least twice the job's window).
    pub claim_ttl: Duration,
}

impl Default for AlertSettings {
    fn default() -> AlertSettings {
        AlertSettings {
            webhooks: Vec::new(),
            check_every: Duration::from_secs(60),
            claim_ttl: Duration::from_secs(7 * 86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(job_id: &str, attempt: Option<u32>) -> Alert {
        Alert {
            event: AlertKind::Failed,
            job_id: job_id.to_owned(),
            scheduled_time: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            attempt,
            message: String::new(),
            node_id: "a".to_owned(),
            at: DateTime::from_timestamp(1_700_000_001, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn claim_keys_name_the_alert_and_stay_short() {
        assert_eq!(
            alert("nightly", Some(3)).claim_key(),
            "failed|1700000000000000|3|nightly"
        );
        assert_eq!(
            alert("nightly", None).claim_key(),
            "failed|1700000000000000|-|nightly"
        );
        let long = alert(&"é".repeat(300), Some(1)).claim_key();
        let other = alert(&format!("{}x", "é".repeat(300)), Some(1)).claim_key();
        assert!(long.len() <= crate::store::MAX_CLAIM_KEY);
        assert_ne!(long, other);
    }

    #[test]
    fn the_payload_has_the_documented_fields() {
        let json = serde_json::to_value(alert("j", Some(2))).unwrap_or_default();
        let mut keys: Vec<&str> = json
            .as_object()
            .map(|object| object.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "at",
                "attempt",
                "event",
                "job_id",
                "message",
                "node_id",
                "scheduled_time"
            ]
        );
        assert_eq!(json["event"], "failed");
    }

    #[test]
    fn labels_and_debug_output_hide_secrets() {
        let mut webhook = WebhookSettings::new("https://user:pw@hooks.example/a/b?token=s3cret");
        webhook
            .headers
            .push(("Authorization".to_owned(), "Bearer s3cret".to_owned()));
        assert_eq!(webhook.label(), "https://hooks.example/a/b");
        let shown = format!("{webhook:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw"),
            "{shown}"
        );
    }
}
