//! TLS to the databases kairos connects to: what kairos adds to the drivers' own URL
//! options.
//!
//! Every connection is rustls with ring (no OpenSSL), trusting the system's store
//! unless the URL names a CA file. PostgreSQL and MySQL/MariaDB need nothing here:
//! sqlx reads `sslmode=` / `sslrootcert=` and `ssl-mode=` / `ssl-ca=` from the URL
//! itself. Redis has no URL option for a CA file, so kairos adds one, `cacert=PATH`
//! (named after `redis-cli --cacert`), which [`redis_client`] takes out of the URL
//! before the redis crate reads it. README.md ("TLS to the databases") shows each
//! store's URL.

use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The query parameter of a `rediss://` URL that names a PEM file of CA certificates.
pub const REDIS_CA_PARAMETER: &str = "cacert";

/// Why a Redis client could not be made from a URL.
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    /// The URL does not parse, or the redis crate refused it.
    #[error("bad Redis URL: {0}")]
    Bad(String),
    /// `cacert=` on a URL that does not use TLS.
    #[error("`{REDIS_CA_PARAMETER}=` needs TLS: use rediss:// instead of redis://")]
    CaWithoutTls,
    /// `cacert=` names a file that cannot be read.
    #[error("cannot read the CA file {path:?} given by `{REDIS_CA_PARAMETER}=`: {source}")]
    CaFile {
        /// The file named.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// `cacert=` names a file that holds no PEM certificate.
    #[error("the CA file {0:?} given by `{REDIS_CA_PARAMETER}=` holds no PEM certificate")]
    NoCertificates(PathBuf),
}

/// A Redis client for `url` (`redis://`, `rediss://`, `redis+unix://`, `unix://`).
///
/// `rediss://…?cacert=/etc/kairos/redis-ca.pem` verifies the server against that CA
/// instead of the system's store; the certificate and the host name are always
/// checked (there is no insecure mode).
pub fn redis_client(url: &str) -> Result<redis::Client, RedisUrlError> {
    let bad = |error: &dyn std::fmt::Display| RedisUrlError::Bad(error.to_string());
    let mut parsed = url::Url::parse(url).map_err(|error| bad(&error))?;
    let mut ca_file = None;
    let mut kept = Vec::new();
    for (key, value) in parsed.query_pairs() {
        if key == REDIS_CA_PARAMETER {
            ca_file = Some(PathBuf::from(value.into_owned()));
        } else {
            kept.push((key.into_owned(), value.into_owned()));
        }
    }
    let Some(ca_file) = ca_file else {
        return redis::Client::open(url).map_err(|error| bad(&error));
    };
    if !parsed.scheme().eq_ignore_ascii_case("rediss") {
        return Err(RedisUrlError::CaWithoutTls);
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let root_cert = std::fs::read(&ca_file).map_err(|source| RedisUrlError::CaFile {
        path: ca_file.clone(),
        source,
    })?;
    // The redis crate would take a file without certificates as an empty trust store,
    // and every connection would then fail with an unknown issuer: say so now.
    let certificates = CertificateDer::pem_slice_iter(&root_cert).filter(Result::is_ok);
    if certificates.count() == 0 {
        return Err(RedisUrlError::NoCertificates(ca_file));
    }
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    redis::Client::build_with_tls(parsed, certificates).map_err(|error| bad(&error))
}

/// What to add to a failed Redis connection's error: a `rediss://` connection that
/// times out is most often a server without TLS on that port (it waits for a command
/// line and never answers the handshake), which the bare "timed out" does not say.
pub fn redis_connect_hint(url: &str, error: &redis::RedisError) -> &'static str {
    let tls = url
        .get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    if tls && error.is_timeout() {
        " (no answer to the TLS handshake: does the server serve TLS on this port?)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_urls_make_clients() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "rediss://cache.internal:6380/1",
            "rediss://:secret@cache.internal/0?protocol=resp3",
        ] {
            assert!(redis_client(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn a_ca_file_needs_tls_and_must_be_readable() {
        assert!(matches!(
            redis_client("redis://127.0.0.1:6379/0?cacert=/tmp/ca.pem"),
            Err(RedisUrlError::CaWithoutTls)
        ));
        let missing = "/nonexistent/kairos-ca.pem";
        let error = redis_client(&format!("rediss://127.0.0.1:6380/0?cacert={missing}"))
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.contains(missing) && error.contains("cacert"),
            "{error}"
        );
    }

    #[test]
    fn a_ca_file_that_is_no_certificate_is_refused() {
        let path = std::env::temp_dir().join(format!("kairos-ca-{:08x}.pem", fastrand::u32(..)));
        let _ = std::fs::write(&path, "not a certificate");
        let result = redis_client(&format!(
            "rediss://127.0.0.1:6380/0?cacert={}",
            path.display()
        ));
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(&result, Err(RedisUrlError::NoCertificates(named)) if *named == path),
            "{result:?}"
        );
    }

    #[test]
    fn a_tls_timeout_asks_whether_the_server_serves_tls() {
        let timeout = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(redis_connect_hint("rediss://h:6380/0", &timeout).contains("TLS"));
        assert_eq!(redis_connect_hint("redis://h:6379/0", &timeout), "");
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(redis_connect_hint("rediss://h:6380/0", &refused), "");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(
            redis_client("not a url"),
            Err(RedisUrlError::Bad(_))
        ));
        assert!(matches!(
            redis_client("http://127.0.0.1/"),
            Err(RedisUrlError::Bad(_))
        ));
    }
}
