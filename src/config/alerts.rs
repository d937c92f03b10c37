//! `[alerts]` and `[[alerts.webhooks]]`: checked into [`AlertSettings`].
//!
//! ```toml
//! [alerts]
//! check_every = "1m"                      # the dead-man's switch; default 1 min
//!
//! [[alerts.webhooks]]
//! url = "https://hooks.example.com/kairos"
//! headers = { Authorization = "Bearer ${HOOK_TOKEN}" }
//! events = ["failed", "overdue"]          # default: all four
//! timeout = "10s"                         # per POST; default 10 s
//! max_attempts = 6                        # POSTs per alert; default 6
//! ```
//!
//! `${VAR}` in a URL or header value is read from the environment now, so a secret
//! can stay out of the file; a variable that is not set is an error naming the key.
//! The URLs are the operator's own: no outbound restriction applies (see
//! `docs/alerts.md`).

use std::time::Duration;

use toml::Spanned;

use super::check::invalid;
use super::error::{ConfigError, ConfigErrorKind};
use super::raw::{RawRoot, RawWebhook};
use super::read::backticked;
use super::source::{join_key, Source};
use crate::alert::webhook::{check_header, check_url};
use crate::alert::{AlertKind, AlertSettings, WebhookSettings};
use crate::store::url::{expand, StoreUrlError};

/// The most POSTs per alert a webhook may ask for.
const MAX_WEBHOOK_ATTEMPTS: u32 = 20;

/// `[alerts]`: the defaults of [`AlertSettings`] unless told otherwise.
pub(crate) fn check_alerts(raw: &RawRoot, errors: &mut Vec<ConfigError>) -> AlertSettings {
    let source = &raw.source;
    let mut settings = AlertSettings::default();
    let Some(alerts) = &raw.alerts else {
        return settings;
    };
    if let Some(every) = &alerts.check_every {
        let duration = every.get_ref().0;
        if duration < Duration::from_secs(1) {
            errors.push(invalid(
                source,
                every,
                "alerts.check_every",
                "must be at least 1s",
            ));
        } else {
            settings.check_every = duration;
        }
    }
    for (path, section) in &alerts.webhooks {
        if let Some(webhook) =
            check_webhook(source, path, &section.value, section.span.clone(), errors)
        {
            settings.webhooks.push(webhook);
        }
    }
    settings
}

fn check_webhook(
    source: &Source,
    path: &str,
    raw: &RawWebhook,
    span: std::ops::Range<usize>,
    errors: &mut Vec<ConfigError>,
) -> Option<WebhookSettings> {
    let before = errors.len();
    let url_key = join_key(path, "url");
    let url = match &raw.url {
        None => {
            errors.push(super::check::missing(
                source,
                span,
                &url_key,
                "the webhook's URL (url = \"https://…\")",
            ));
            None
        }
        Some(url) => {
            expand_value(source, url, &url_key, errors).and_then(|text| match check_url(&text) {
                Ok(_) => Some(text),
                Err(reason) => {
                    errors.push(invalid(source, url, &url_key, reason));
                    None
                }
            })
        }
    };
    let mut webhook = WebhookSettings::new(url.unwrap_or_default());
    for (name, value) in raw.headers.iter().flatten() {
        let key = format!("{}.{name}", join_key(path, "headers"));
        let Some(expanded) = expand_value(source, value, &key, errors) else {
            continue;
        };
        match check_header(name, &expanded) {
            Ok(_) => webhook.headers.push((name.clone(), expanded)),
            Err(reason) => errors.push(invalid(source, value, &key, reason)),
        }
    }
    if let Some(events) = &raw.events {
        let key = join_key(path, "events");
        let mut kinds = Vec::new();
        for event in events.get_ref() {
            match AlertKind::parse(event.get_ref()) {
                Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                Some(_) => {}
                None => errors.push(source.error(
                    event.span(),
                    key.clone(),
                    ConfigErrorKind::InvalidValue,
                    format!(
                        "unknown event {:?}; expected {}",
                        event.get_ref(),
                        backticked(&AlertKind::ALL.map(AlertKind::as_str))
                    ),
                )),
            }
        }
        if kinds.is_empty() && events.get_ref().is_empty() {
            errors.push(invalid(
                source,
                events,
                &key,
                "is empty; leave it out to send every event, or remove the webhook",
            ));
        }
        webhook.events = kinds;
    }
    if let Some(timeout) = &raw.timeout {
        let duration = timeout.get_ref().0;
        if duration.is_zero() {
            errors.push(invalid(
                source,
                timeout,
                &join_key(path, "timeout"),
                "must be longer than 0s",
            ));
        } else {
            webhook.timeout = duration;
        }
    }
    if let Some(attempts) = &raw.max_attempts {
        let attempts_value = *attempts.get_ref();
        if !(1..=MAX_WEBHOOK_ATTEMPTS).contains(&attempts_value) {
            errors.push(invalid(
                source,
                attempts,
                &join_key(path, "max_attempts"),
                format!("must be between 1 and {MAX_WEBHOOK_ATTEMPTS}, not {attempts_value}"),
            ));
        } else {
            webhook.max_attempts = attempts_value;
        }
    }
    (errors.len() == before).then_some(webhook)
}

/// `value` with `${VAR}` read from the environment, or an error naming `key`.
fn expand_value(
    source: &Source,
    value: &Spanned<String>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    match expand(value.get_ref(), |name| std::env::var(name).ok()) {
        Ok(expanded) => Some(expanded),
        Err(StoreUrlError::MissingVariable(name)) => {
            errors.push(invalid(
                source,
                value,
                key,
                format!("the environment variable {name:?} is not set"),
            ));
            None
        }
        Err(_) => {
            errors.push(invalid(
                source,
                value,
                key,
                "has an unfinished ${…}; write ${NAME} to read the variable NAME",
            ));
            None
        }
    }
}
