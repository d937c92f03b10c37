//! Request rate limiting: token buckets, 429 with `Retry-After` past them.
//!
//! Two kinds of bucket:
//! - **Requests**, per client, only where a limit is configured: a token's own
//!   `rate_limit`, else `[api] rate_limit` (none by default: a service that holds a
//!   valid token is the operator's own, and throttling it only makes it fail, as an
//!   order service adding 2,000 jobs at once would). A client is its bearer token
//!   when that token is a configured one, and otherwise its IP address.
//! - **Failed authentications**, per address, always ([`RateLimiter::failures`]): a
//!   client whose requests keep getting 401 for the token they present is held back
//!   (requests without `Authorization` are never), which slows down anyone
//!   guessing tokens without touching clients that have one. Keying unknown tokens by
//!   address also means a caller cannot mint a fresh bucket per request by sending
//!   made-up tokens. A router served without connection info (the in-process tests'
//!   `oneshot`) puts every such request into one shared bucket.
//!
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{bearer_token, Access};
use super::error::ApiError;

/// How many clients get a bucket of their own at most.
const MAX_CLIENTS: usize = 10_000;

/// A request rate: a sustained number of requests per second and a burst allowance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained; more than zero.
    pub per_second: f64,
    /// How many requests may come at once after a quiet spell; at least 1.
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` requests a second with a burst of twice that (at least 1).
    pub fn per_second(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            burst: per_second.saturating_mul(2).max(1),
        }
    }
}

/// Who a bucket belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Client {
    /// A configured token, by its index in [`Access`].
    Token(usize),
    /// No configured token: the peer's address.
    Address(IpAddr),
    /// No configured token and no known address, or the table was full.
    Shared,
}

/// What a bucket counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Requests,
    Failures,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The buckets of every client.
pub(crate) struct RateLimiter {
    /// Requests per client without a limit of their own; `None`: unlimited.
    general: Option<RateLimit>,
    /// Each token's own request limit, by its index in [`Access`].
    per_token: Vec<Option<RateLimit>>,
    /// Failed authentications per address.
    failures: RateLimit,
    access: Arc<Access>,
    buckets: Mutex<HashMap<(Kind, Client), Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(
        general: Option<RateLimit>,
        per_token: Vec<Option<RateLimit>>,
        failures: RateLimit,
        access: Arc<Access>,
    ) -> RateLimiter {
        RateLimiter {
            general,
            per_token,
            failures,
            access,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket of `kind` at `now`, `limit` filling
    /// it: `Ok` if it may go on, `Err(wait)` with how long until the next request
    /// would be allowed. With `peek`, nothing is taken.
    fn take(
        &self,
        kind: Kind,
        client: Client,
        limit: RateLimit,
        now: Instant,
        peek: bool,
    ) -> Result<(), Duration> {
        let capacity = f64::from(limit.burst.max(1));
        let rate = limit.per_second;
        // A poisoned lock only means another request panicked between two float
        // updates; the numbers are still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut key = (kind, client);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&key) {
            // Full buckets belong to idle clients, which would start afresh anyway.
            buckets.retain(|_, bucket| refill(bucket, now, rate, capacity) < capacity);
            if buckets.len() >= MAX_CLIENTS {
                key = (kind, Client::Shared);
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            refilled: now,
        });
        bucket.tokens = refill(bucket, now, rate, capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            if !peek {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::try_from_secs_f64(missing / rate).unwrap_or(Duration::MAX))
        }
    }

    /// Whose bucket `request` draws from.
    fn client(&self, request: &Request) -> Client {
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .and_then(|token| self.access.index_of(token.as_bytes()));
        if let Some(index) = token {
            return Client::Token(index);
        }
        match request.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => Client::Address(peer.ip()),
            None => Client::Shared,
        }
    }

    /// The request limit of `client`, if it has one.
    fn request_limit(&self, client: &Client) -> Option<RateLimit> {
        match client {
            Client::Token(index) => self
                .per_token
                .get(*index)
                .copied()
                .flatten()
                .or(self.general),
            _ => self.general,
        }
    }
}

/// The bucket's level at `now`, refilled at `rate` per second up to `capacity`.
fn refill(bucket: &Bucket, now: Instant, rate: f64, capacity: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(capacity)
}

/// The middleware in front of every route (`GET /health` included: it is cheap, but
/// an unlimited route is still a way to keep the server busy).
pub(crate) async fn limit(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let client = limiter.client(&request);
    let now = Instant::now();
    if let Some(limit) = limiter.request_limit(&client) {
        if let Err(wait) = limiter.take(Kind::Requests, client.clone(), limit, now, false) {
            return too_many_requests(wait);
        }
    }
    // Only a request that presents a token that is not one can be a guess: probes
    // without one (`GET /health` from a load balancer) are never held back.
    let unauthenticated = !matches!(client, Client::Token(_))
        && request.headers().contains_key(header::AUTHORIZATION);
    if unauthenticated {
        // Held back once its failures used up the bucket; a success costs nothing.
        if let Err(wait) = limiter.take(Kind::Failures, client.clone(), limiter.failures, now, true)
        {
            return too_many_requests(wait);
        }
    }
    let response = next.run(request).await;
    if unauthenticated && response.status() == StatusCode::UNAUTHORIZED {
        let _ = limiter.take(
            Kind::Failures,
            client,
            limiter.failures,
            Instant::now(),
            false,
        );
    }
    response
}

/// 429 with the error body and `Retry-After` in whole seconds, rounded up so that a
/// client that waits as told is let through (RFC 9110 §10.2.3 has no fractions).
fn too_many_requests(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {seconds} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(
            Some(RateLimit { per_second, burst }),
            Vec::new(),
            RateLimit::per_second(10),
            Arc::new(Access::new(&["rw".to_owned()], &[], &[])),
        )
    }

    fn take(limiter: &RateLimiter, client: Client, now: Instant) -> Result<(), Duration> {
        let limit = limiter
            .request_limit(&client)
            .unwrap_or(RateLimit::per_second(1));
        limiter.take(Kind::Requests, client, limit, now, false)
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = limiter(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(take(&limiter, Client::Token(0), start), Ok(()));
        }
        let wait = take(&limiter, Client::Token(0), start).expect_err("past the burst");
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        // Other clients have buckets of their own.
        assert_eq!(take(&limiter, Client::Shared, start), Ok(()));
        // 100 ms later one more request is allowed, and only one.
        let later = start + Duration::from_millis(100);
        assert_eq!(take(&limiter, Client::Token(0), later), Ok(()));
        assert!(take(&limiter, Client::Token(0), later).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = limiter(1.0, 1);
        let now = Instant::now();
        for index in 0..MAX_CLIENTS + 10 {
            let _ = take(&limiter, Client::Token(index), now);
        }
        let buckets = limiter.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // The clients with buckets of their own, and the shared overflow bucket.
        assert_eq!(buckets.len(), MAX_CLIENTS + 1);
        assert!(buckets.contains_key(&(Kind::Requests, Client::Shared)));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let response = too_many_requests(Duration::from_millis(1500));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = too_many_requests(Duration::from_millis(5));
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
