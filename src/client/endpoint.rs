//! Where the API is and the token to show it: [`Endpoint::discover`] reads
//! `KAIROS_URL` and `KAIROS_TOKEN`, else the config's `[api] listen` and `token`, and
//! refuses what cannot be a base URL or a token before anything is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use reqwest::Url;

use crate::config::{self, ApiConfig, ConfigErrors};
use crate::task::TaskRegistry;

/// The environment variable with the API's base URL (`http://127.0.0.1:8080`); it
/// wins over the config's `[api] listen`.
pub const URL_VAR: &str = "KAIROS_URL";
/// The environment variable with the API's bearer token; it wins over the config's
/// `[api] token`.
pub const TOKEN_VAR: &str = "KAIROS_TOKEN";

/// Where the API is and the token to show it.
#[derive(Clone)]
pub struct Endpoint {
    /// The base URL; routes are under `{base}/api/v1`.
    pub base_url: Url,
    /// The bearer token, if the API requires one.
    pub token: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url.as_str())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Why the client's settings are unusable; nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL cannot be parsed or is not http(s).
    #[error("{origin}: {value:?} is not an http:// or https:// URL{reason}")]
    BadUrl {
        /// Where the URL came from (`KAIROS_URL`).
        origin: &'static str,
        /// The URL as given.
        value: String,
        /// Why it was refused, with its leading separator.
        reason: String,
    },
    /// The token cannot go into an HTTP header.
    #[error("{origin}: the token must be visible ASCII characters, without spaces")]
    BadToken {
        /// Where the token came from (`KAIROS_TOKEN`, `api.token`).
        origin: &'static str,
    },
    /// The config file has problems; each is in `errors`.
    #[error(
        "{}: {} problem(s); fix them, or set {URL_VAR} (and {TOKEN_VAR})",
        path.display(),
        errors.len()
    )]
    Config {
        /// The file.
        path: PathBuf,
        /// Every problem, with its line and column.
        errors: ConfigErrors,
    },
    /// The config turns the API off and the environment names no other address.
    #[error("{}: [api] enabled = false, so the daemon serves no API", path.display())]
    ApiDisabled {
        /// The file.
        path: PathBuf,
    },
}

impl Endpoint {
    /// The endpoint of this process: `KAIROS_URL` and `KAIROS_TOKEN` from the
    /// environment, and for whichever is unset the config at `config_path` (default
    /// `./config.toml`, skipped when it does not exist), of which only `[api]` is read
    /// ([`config::load_api`]); see [`Endpoint::resolve`].
    pub fn discover(config_path: Option<&Path>) -> Result<Endpoint, EndpointError> {
        let env_url = std::env::var(URL_VAR).ok();
        let env_token = std::env::var(TOKEN_VAR).ok();
        // With both set the file is not needed, so a broken one is no obstacle.
        let needs_config = env_url.is_none() || env_token.is_none();
        let default_path = Path::new(DEFAULT_CONFIG);
        let path = match config_path {
            Some(path) => Some(path),
            None if default_path.exists() => Some(default_path),
            None => None,
        };
        let api = match path {
            Some(path) if needs_config => {
                // Only `[api]`: a broken job file is no reason to lose the daemon.
                let api =
                    config::load_api(path, &TaskRegistry::with_builtins()).map_err(|errors| {
                        EndpointError::Config {
                            path: path.to_owned(),
                            errors,
                        }
                    })?;
                if !api.enabled && env_url.is_none() {
                    return Err(EndpointError::ApiDisabled {
                        path: path.to_owned(),
                    });
                }
                Some(api)
            }
            _ => None,
        };
        Endpoint::resolve(env_url.as_deref(), env_token.as_deref(), api.as_ref())
    }

    /// The endpoint from the environment's `url` and `token` (`KAIROS_URL`,
    /// `KAIROS_TOKEN`), each of which wins over the config's `[api]`; without either,
    /// the daemon's default address with no token. The config's token is only used
    /// with the config's address: a `KAIROS_URL` elsewhere gets `KAIROS_TOKEN` or none.
    ///
    /// A daemon listening on every interface (`0.0.0.0:8080`) is reached on loopback.
    pub fn resolve(
        env_url: Option<&str>,
        env_token: Option<&str>,
        api: Option<&ApiConfig>,
    ) -> Result<Endpoint, EndpointError> {
        let env_url = env_url.map(str::trim).filter(|url| !url.is_empty());
        let base_url = match env_url {
            Some(text) => parse_base_url(text, URL_VAR)?,
            None => {
                let listen = api.map_or(DEFAULT_LISTEN, |api| api.listen);
                url_for_listen(listen)?
            }
        };
        let (token, origin) = match env_token.filter(|token| !token.is_empty()) {
            Some(token) => (Some(token.to_owned()), TOKEN_VAR),
            // The config's token only goes to the config's daemon: with KAIROS_URL
            // pointing elsewhere, sending it would hand a secret to another host.
            None if env_url.is_some() => (None, TOKEN_VAR),
            None => (api.and_then(|api| api.token.clone()), "api.token"),
        };
        if let Some(token) = &token {
            let visible = !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_graphic());
            if !visible {
                return Err(EndpointError::BadToken { origin });
            }
        }
        Ok(Endpoint { base_url, token })
    }
}

/// The config file read when none is named, as `kairos run` reads it.
pub(super) const DEFAULT_CONFIG: &str = "config.toml";

/// The daemon's default `[api] listen`.
pub(super) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

fn parse_base_url(text: &str, origin: &'static str) -> Result<Url, EndpointError> {
    let bad = |reason: String| EndpointError::BadUrl {
        origin,
        value: text.to_owned(),
        reason,
    };
    let url = Url::parse(text).map_err(|error| bad(format!(" ({error})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(bad(String::new()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(" (a base URL has no query or fragment)".to_owned()));
    }
    Ok(url)
}

/// The URL to reach a daemon listening on `listen`: an unspecified address (every
/// interface) is reached on loopback.
fn url_for_listen(listen: SocketAddr) -> Result<Url, EndpointError> {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    parse_base_url(
        &format!("http://{}/", SocketAddr::new(ip, listen.port())),
        "api.listen",
    )
}
