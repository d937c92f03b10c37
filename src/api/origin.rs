//! Browser-origin safety: what keeps a web page in the operator's browser from using
//! an API that listens on loopback without a token (docs/threat-model.md, "Web pages
//! in the operator's browser").
//!
//! Three checks, in front of every route and the web page:
//! - **Host.** The `Host` header must name a loopback host (`localhost`, a name under
//!   `.localhost`, `127.0.0.0/8`, `::1`), the address the API listens on, or a host
//!   in `[api] allowed_hosts`; anything else is 421. A page that rebinds its own name
//!   to 127.0.0.1 (DNS rebinding) still sends its own name as `Host`, so it is refused
//!   before it can read an answer.
//! - **Origin.** A request that may change something (any method but `GET`, `HEAD`,
//!   `OPTIONS`) and comes from a page must come from the API's own origin (the
//!   `Origin` names the `Host` it was sent to) or from a host in `allowed_hosts`;
//!   without `Origin`, a `Sec-Fetch-Site` other than `same-origin` or `none` is
//!   refused. Both answer 403.
//! - **Content type.** A `POST`, and any request with a body, must say
//!   `Content-Type: application/json`, else 415. A cross-site page can only send a
//!   `POST` without a CORS preflight (which kairos never approves) when its content
//!   type is missing, `text/plain` or a form type: this makes the API refuse every
//!   request such a page can send, even in a browser that sends no `Origin`. `PATCH`,
//!   `DELETE` and `PUT` always need a preflight, so a bodiless one is let through.
//!
//! Requests without `Host` (HTTP/1.0 clients, the in-process tests' `oneshot`) do not
//! come from a browser, which always sends it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The hosts a request may name, besides loopback ones.
#[derive(Debug, Default)]
pub(crate) struct AllowedHosts {
    /// Lower-case host names or IP addresses, without ports.
    hosts: Vec<String>,
}

impl AllowedHosts {
    /// `hosts` as configured (`[api] allowed_hosts`, plus the listen address): host
    /// names or addresses, case-insensitive; a port given with one is ignored.
    pub(crate) fn new(hosts: &[String]) -> AllowedHosts {
        AllowedHosts {
            hosts: hosts
                .iter()
                .filter_map(|host| split_authority(host.trim()).map(|(host, _)| host))
                .collect(),
        }
    }

    /// Whether `host` (lower case, no port, IPv6 without brackets) may be served.
    fn allows(&self, host: &str) -> bool {
        is_loopback_host(host) || self.listed(host)
    }

    fn listed(&self, host: &str) -> bool {
        self.hosts.iter().any(|allowed| allowed == host)
    }
}

/// Whether `host` always means this machine: `localhost` and names under it (which
/// browsers resolve to loopback themselves, RFC 6761 §6.3), and loopback addresses.
fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>()
        .is_ok_and(|address| address.is_loopback())
}

/// Splits `host[:port]` (or `[v6]:port`) into a lower-case host and its port, if any.
/// `None` when it cannot be read.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            // A bare IPv6 address (allowed_hosts may list one without brackets).
            Some(_) if authority.parse::<IpAddr>().is_ok() => (authority, None),
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._:".contains(&byte))
    {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// An `Origin` header's scheme, host and port (the scheme's default when absent).
fn parse_origin(origin: &str) -> Option<(String, Option<u16>)> {
    let (scheme, authority) = origin.split_once("://")?;
    let (host, port) = split_authority(authority)?;
    let port = port.or(match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    });
    Some((host, port))
}

/// The middleware; see the module docs.
pub(crate) async fn check(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    match judge(&allowed, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// Why `method` with `headers` is refused, if it is.
fn judge(allowed: &AllowedHosts, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = match headers.get(header::HOST) {
        None => None,
        Some(value) => {
            let text = value.to_str().unwrap_or_default();
            let Some((host, port)) = split_authority(text.trim()) else {
                return Err(foreign_host(text));
            };
            if !allowed.allows(&host) {
                return Err(foreign_host(&host));
            }
            Some((host, port))
        }
    };
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe {
        return Ok(());
    }
    check_origin(allowed, host.as_ref(), headers)?;
    check_content_type(method, headers)
}

fn check_origin(
    allowed: &AllowedHosts,
    host: Option<&(String, Option<u16>)>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let text = origin.to_str().unwrap_or_default().trim();
        let Some((origin_host, origin_port)) = parse_origin(text) else {
            // `null` (sandboxed frames, file: pages, some redirects) and junk.
            return Err(cross_site(text));
        };
        let same_origin = match host {
            // A Host without a port means the scheme's default one.
            Some((host, port)) => {
                *host == origin_host
                    && (*port == origin_port
                        || (port.is_none() && matches!(origin_port, Some(80 | 443))))
            }
            // No Host: only a loopback page may ask.
            None => is_loopback_host(&origin_host),
        };
        if same_origin || allowed.listed(&origin_host) {
            return Ok(());
        }
        return Err(cross_site(text));
    }
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .map(str::to_ascii_lowercase);
    match fetch_site.as_deref() {
        None | Some("same-origin" | "none") => Ok(()),
        Some(other) => Err(cross_site(&format!("Sec-Fetch-Site: {other}"))),
    }
}

fn check_content_type(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|length| length.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if *method != Method::POST && !has_body {
        return Ok(());
    }
    match headers.get(header::CONTENT_TYPE) {
        Some(value) if is_json(value.to_str().unwrap_or_default()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "requests that change something need Content-Type: application/json (even \
             without a body), which a cross-site page cannot send without permission",
        )),
    }
}

/// Whether a `Content-Type` value is JSON: `application/json` or `application/*+json`.
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn foreign_host(host: &str) -> ApiError {
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "foreign_host",
        format!(
            "Host {host:?} is not served here: only loopback names, the listen address and \
             [api] allowed_hosts are (a page that rebinds its name to this machine is refused)"
        ),
    )
}

fn cross_site(origin: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        format!(
            "a request from {origin:?} may not change anything here: only the API's own \
             origin and [api] allowed_hosts may"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn status(
        allowed: &AllowedHosts,
        method: Method,
        pairs: &[(&'static str, &'static str)],
    ) -> u16 {
        match judge(allowed, &method, &headers(pairs)) {
            Ok(()) => 200,
            Err(error) => error.status().as_u16(),
        }
    }

    #[test]
    fn hosts_are_loopback_or_listed() {
        let allowed = AllowedHosts::new(&["Kairos.Example:8080".to_owned(), "10.0.0.5".to_owned()]);
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "app.localhost",
            "kairos.example",
            "10.0.0.5:80",
        ] {
            assert!(
                split_authority(host).is_some_and(|(host, _)| allowed.allows(&host)),
                "{host}"
            );
        }
        for host in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "10.0.0.6",
            "[::1",
        ] {
            assert!(
                !split_authority(host).is_some_and(|(host, _)| allowed.allows(&host)),
                "{host}"
            );
        }
    }

    #[test]
    fn only_the_own_origin_may_change_things() {
        let allowed = AllowedHosts::default();
        let json = ("content-type", "application/json");
        let own = [
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            json,
        ];
        assert_eq!(status(&allowed, Method::POST, &own), 200);
        let evil = [
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
            json,
        ];
        assert_eq!(status(&allowed, Method::POST, &evil), 403);
        // Another local app on another port is another origin.
        let other_port = [
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:3000"),
            json,
        ];
        assert_eq!(status(&allowed, Method::POST, &other_port), 403);
        let null = [("host", "localhost:8080"), ("origin", "null"), json];
        assert_eq!(status(&allowed, Method::DELETE, &null), 403);
        let fetch_site = [
            ("host", "localhost:8080"),
            ("sec-fetch-site", "cross-site"),
            json,
        ];
        assert_eq!(status(&allowed, Method::POST, &fetch_site), 403);
        // Reading is not refused by origin: without CORS the page cannot see the answer.
        assert_eq!(status(&allowed, Method::GET, &evil), 200);
        assert_eq!(
            status(&allowed, Method::GET, &[("host", "evil.example")]),
            421
        );
    }

    #[test]
    fn posts_need_json_and_bodiless_deletes_do_not() {
        let allowed = AllowedHosts::default();
        assert_eq!(status(&allowed, Method::POST, &[]), 415);
        assert_eq!(
            status(&allowed, Method::POST, &[("content-type", "text/plain")]),
            415
        );
        assert_eq!(
            status(
                &allowed,
                Method::POST,
                &[("content-type", "application/json; charset=utf-8")]
            ),
            200
        );
        assert_eq!(status(&allowed, Method::DELETE, &[]), 200);
        assert_eq!(
            status(&allowed, Method::PATCH, &[("content-length", "12")]),
            415
        );
    }
}
