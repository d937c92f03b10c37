//! The HTTP API's client, behind `kairos jobs` and `kairos runs`.
//!
//! This module owns how a client finds the daemon ([`Endpoint::discover`]: `KAIROS_URL`
//! and `KAIROS_TOKEN`, else the config's `[api] listen` and `token`), the calls it makes
//! ([`ApiClient`], one typed method per route) and what can go wrong
//! ([`EndpointError`] before anything is sent, [`ClientError`] after). How answers are
//! shown to people is [`table`]'s business.
//!
//! The files: `endpoint.rs` (finding the daemon), `api_client.rs` (the calls),
//! `views.rs` (the answers' types), `error.rs` (what went wrong), `table.rs` (showing
//! answers to people).
//!
//! The client's types mirror the API's JSON (`src/api/view.rs`) rather than sharing
//! the server's: they accept fields they do not know, so a newer daemon does not break
//! an older CLI. Each answer keeps its body as received ([`Fetched::body`]), so
//! `--json` prints exactly what the API said.

mod api_client;
mod endpoint;
mod error;
pub mod table;
mod views;

use chrono::Utc;

pub use self::api_client::ApiClient;
pub use self::endpoint::{Endpoint, EndpointError, TOKEN_VAR, URL_VAR};
pub use self::error::ClientError;
pub use self::views::{
    BackfillStarted, Explained, ExplainedTime, Fetched, JobFilter, JobOptionsView, JobPage,
    JobView, NewJob, ReloadFailure, ReloadReport, Resumed, RunPage, RunStarted,
};
use crate::trigger::words::spec_from_words;
use crate::trigger::{Trigger, TriggerContext, TriggerError, TriggerSpec, Zone};

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::endpoint::DEFAULT_LISTEN;
    use super::*;
    use crate::config::ApiConfig;

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
