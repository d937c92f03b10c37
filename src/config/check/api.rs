//! `[api]`: the listen address, the tokens (inline, from files, named with their
//! access, tasks and rates), the allowed tasks and hosts, and the server's limits.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::super::error::ConfigError;
use super::super::raw::{RawApi, RawRoot};
use super::super::source::Source;
use super::super::{ApiConfig, TokenConfig};
use super::report::{at_least_one, invalid, unknown_name};
use crate::store::url::{expand, StoreUrlError};
use crate::task::outbound::AllowRule;
use crate::task::TaskRegistry;

/// `[api]`: a parseable listen address, a token with `${VAR}` expanded, task names that
/// exist.
pub(crate) fn check_api(
    raw: &RawRoot,
    tasks: &TaskRegistry,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> ApiConfig {
    let source = &raw.source;
    let mut api = ApiConfig {
        enabled: true,
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        token: None,
        read_tokens: Vec::new(),
        allowed_tasks: tasks
            .names()
            .filter(|name| *name != "command")
            .map(str::to_owned)
            .collect(),
        rate_limit: None,
        rate_limit_burst: None,
        tokens: Vec::new(),
        ui: true,
        allowed_hosts: Vec::new(),
        http_allow: Vec::new(),
        max_connections: 512,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_event_streams: 64,
    };
    let Some(section) = &raw.api else {
        return api;
    };
    let raw_api = &section.value;
    api.enabled = raw_api.enabled.unwrap_or(true);
    if let Some(listen) = &raw_api.listen {
        match listen.get_ref().trim().parse::<SocketAddr>() {
            Ok(address) => api.listen = address,
            Err(_) => errors.push(invalid(
                source,
                listen,
                "api.listen",
                format!(
                    "{:?} is not an address and port such as \"127.0.0.1:8080\" or \"[::1]:8080\"",
                    listen.get_ref()
                ),
            )),
        }
    }
    if let Some(token) = &raw_api.token {
        api.token = check_token(source, token, "api.token", errors);
    }
    if let Some(file) = &raw_api.token_file {
        if raw_api.token.is_some() {
            errors.push(invalid(
                source,
                file,
                "api.token_file",
                "give `token` or `token_file`, not both",
            ));
        } else {
            api.token = read_token_file(source, file, "api.token_file", config_dir, errors);
        }
    }
    for (index, token) in raw_api.read_tokens.iter().flatten().enumerate() {
        let key = format!("api.read_tokens[{index}]");
        if let Some(token) = check_token(source, token, &key, errors) {
            api.read_tokens.push(token);
        }
    }
    check_named_tokens(source, raw_api, tasks, config_dir, &mut api, errors);
    // Without a token anyone who reaches the port controls the scheduler: only this
    // machine may, then. (A read token alone does not protect the write routes.)
    let write_token = api.token.is_some() || api.tokens.iter().any(|token| token.write);
    if api.enabled && !write_token && !api.listen.ip().is_loopback() {
        // The default is loopback, so a non-loopback address was written down.
        if let Some(listen) = &raw_api.listen {
            let message = format!(
                "{} is not a loopback address, so the API needs a `token` (or `token_file`)",
                api.listen
            );
            errors.push(invalid(source, listen, "api.listen", message));
        }
    }
    if let Some(allowed) = &raw_api.allowed_tasks {
        let known: Vec<&str> = tasks.names().collect();
        api.allowed_tasks = BTreeSet::new();
        for (index, task) in allowed.iter().enumerate() {
            let key = format!("api.allowed_tasks[{index}]");
            if known.contains(&task.get_ref().as_str()) {
                api.allowed_tasks.insert(task.get_ref().clone());
            } else {
                errors.push(unknown_name(source, task, &key, "task", &known));
            }
        }
    }
    check_rate_limit(source, raw_api, &mut api, errors);
    for (index, host) in raw_api.allowed_hosts.iter().flatten().enumerate() {
        let name = host.get_ref().trim();
        let readable = !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-._:[]".contains(&byte));
        if readable {
            api.allowed_hosts.push(name.to_ascii_lowercase());
        } else {
            let key = format!("api.allowed_hosts[{index}]");
            let message = format!(
                "{name:?} is not a host name or address such as \"kairos.internal\" or \"10.0.0.5\""
            );
            errors.push(invalid(source, host, &key, message));
        }
    }
    for (index, rule) in raw_api.http_allow.iter().flatten().enumerate() {
        match AllowRule::parse(rule.get_ref()) {
            Ok(_) => api.http_allow.push(rule.get_ref().trim().to_owned()),
            Err(message) => {
                let key = format!("api.http_allow[{index}]");
                errors.push(invalid(source, rule, &key, message));
            }
        }
    }
    check_server_limits(source, raw_api, &mut api, errors);
    // On by default only where the API is private to the machine; elsewhere the
    // operator turns it on knowingly (the page still needs a token to show anything).
    api.ui = raw_api.ui.unwrap_or(api.listen.ip().is_loopback());
    api
}

/// `rate_limit` and `rate_limit_burst`: at least 1 each; the burst defaults to twice
/// the rate, so a client that was quiet for two seconds may catch up at once.
fn check_rate_limit(
    source: &Source,
    raw_api: &RawApi,
    api: &mut ApiConfig,
    errors: &mut Vec<ConfigError>,
) {
    (api.rate_limit, api.rate_limit_burst) = check_rate(
        source,
        raw_api.rate_limit.as_ref(),
        raw_api.rate_limit_burst.as_ref(),
        "api",
        errors,
    );
}

/// A rate and its burst under `prefix`, each at least 1.
fn check_rate(
    source: &Source,
    rate: Option<&Spanned<u32>>,
    burst: Option<&Spanned<u32>>,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) -> (Option<u32>, Option<u32>) {
    let rate =
        rate.and_then(|rate| at_least_one(source, rate, &format!("{prefix}.rate_limit"), errors));
    let burst = burst.and_then(|burst| {
        at_least_one(source, burst, &format!("{prefix}.rate_limit_burst"), errors)
    });
    (rate, burst.or(rate.map(|rate| rate.saturating_mul(2))))
}

/// `[api.tokens.NAME]`: `token` or `token_file`, `access` read or write, `tasks` that
/// exist (only for a write token), and a rate.
fn check_named_tokens(
    source: &Source,
    raw_api: &RawApi,
    tasks: &TaskRegistry,
    config_dir: &Path,
    api: &mut ApiConfig,
    errors: &mut Vec<ConfigError>,
) {
    for (name, raw) in raw_api.tokens.iter().flatten() {
        let prefix = format!("api.tokens.{name}");
        let raw_token = raw.get_ref();
        let secret = match (&raw_token.token, &raw_token.token_file) {
            (Some(token), None) => check_token(source, token, &format!("{prefix}.token"), errors),
            (None, Some(file)) => read_token_file(
                source,
                file,
                &format!("{prefix}.token_file"),
                config_dir,
                errors,
            ),
            (Some(_), Some(file)) => {
                errors.push(invalid(
                    source,
                    file,
                    &format!("{prefix}.token_file"),
                    "give `token` or `token_file`, not both",
                ));
                None
            }
            (None, None) => {
                errors.push(invalid(
                    source,
                    raw,
                    &prefix,
                    "needs `token` or `token_file`",
                ));
                None
            }
        };
        let write = match &raw_token.access {
            None => false,
            Some(access) => match access.get_ref().as_str() {
                "read" => false,
                "write" => true,
                other => {
                    errors.push(invalid(
                        source,
                        access,
                        &format!("{prefix}.access"),
                        format!("{other:?} is not \"read\" or \"write\""),
                    ));
                    false
                }
            },
        };
        let token_tasks = raw_token.tasks.as_ref().map(|listed| {
            let known: Vec<&str> = tasks.names().collect();
            let mut chosen = BTreeSet::new();
            for (index, task) in listed.iter().enumerate() {
                let key = format!("{prefix}.tasks[{index}]");
                if !write {
                    errors.push(invalid(
                        source,
                        task,
                        &key,
                        "only a token with access = \"write\" schedules tasks",
                    ));
                } else if known.contains(&task.get_ref().as_str()) {
                    chosen.insert(task.get_ref().clone());
                } else {
                    errors.push(unknown_name(source, task, &key, "task", &known));
                }
            }
            chosen
        });
        let (rate_limit, rate_limit_burst) = check_rate(
            source,
            raw_token.rate_limit.as_ref(),
            raw_token.rate_limit_burst.as_ref(),
            &prefix,
            errors,
        );
        if let Some(token) = secret {
            api.tokens.push(TokenConfig {
                name: name.clone(),
                token,
                write,
                tasks: token_tasks,
                rate_limit,
                rate_limit_burst,
            });
        }
    }
}

/// `max_connections`, `header_timeout`, `idle_timeout`, `max_event_streams`: the
/// API server's limits (see `api/server.rs`); counts at least 1, durations as given.
fn check_server_limits(
    source: &Source,
    raw_api: &RawApi,
    api: &mut ApiConfig,
    errors: &mut Vec<ConfigError>,
) {
    if let Some(count) = &raw_api.max_connections {
        if let Some(count) = at_least_one(source, count, "api.max_connections", errors) {
            api.max_connections = count as usize;
        }
    }
    if let Some(count) = &raw_api.max_event_streams {
        if let Some(count) = at_least_one(source, count, "api.max_event_streams", errors) {
            api.max_event_streams = count as usize;
        }
    }
    if let Some(timeout) = raw_api.header_timeout {
        api.header_timeout = timeout.0;
    }
    if let Some(timeout) = raw_api.idle_timeout {
        api.idle_timeout = timeout.0;
    }
}

/// `token_file`: the token is its first line (a secret kept out of the config, e.g. a
/// systemd credential); relative to the config file's directory, `${VAR}` expanded.
fn read_token_file(
    source: &Source,
    file: &Spanned<String>,
    key: &str,
    config_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    // `${VAR}` expanded, for `token_file = "${CREDENTIALS_DIRECTORY}/api-token"`
    // (a systemd credential, see systemd/kairos.service).
    let expanded = match expand(file.get_ref(), |name| std::env::var(name).ok()) {
        Ok(expanded) => expanded,
        Err(StoreUrlError::MissingVariable(name)) => {
            errors.push(invalid(
                source,
                file,
                key,
                format!("the environment variable {name:?} is not set"),
            ));
            return None;
        }
        Err(_) => {
            errors.push(invalid(
                source,
                file,
                key,
                "has an unfinished ${…}; write ${NAME} to read the variable NAME",
            ));
            return None;
        }
    };
    let path = config_dir.join(expanded);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.lines().next().map(str::trim) {
            Some(token) if !token.is_empty() => Some(token.to_owned()),
            _ => {
                errors.push(invalid(
                    source,
                    file,
                    key,
                    format!("{} is empty", path.display()),
                ));
                None
            }
        },
        Err(error) => {
            errors.push(invalid(
                source,
                file,
                key,
                format!("cannot read {}: {error}", path.display()),
            ));
            None
        }
    }
}

/// The API token, with `${VAR}` expanded now: unlike a store URL nothing expands it
/// later, and a literal `${KAIROS_TOKEN}` accepted as a token would be a silent hole.
fn check_token(
    source: &Source,
    token: &Spanned<String>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let expanded = expand(token.get_ref(), |name| std::env::var(name).ok());
    match expanded {
        Ok(expanded) if expanded.is_empty() => {
            errors.push(invalid(
                source,
                token,
                key,
                "is empty; leave `token` out to run without one",
            ));
            None
        }
        Ok(expanded) => Some(expanded),
        Err(StoreUrlError::MissingVariable(name)) => {
            errors.push(invalid(
                source,
                token,
                key,
                format!("the environment variable {name:?} is not set"),
            ));
            None
        }
        Err(_) => {
            errors.push(invalid(
                source,
                token,
                key,
                "has an unfinished ${…}; write ${NAME} to read the variable NAME",
            ));
            None
        }
    }
}
