//! Request rate limiting: one token bucket per client, 429 with `Retry-After` past it.
//!
//! A client is its bearer token when that token is a configured one, and otherwise its
//! IP address. Keying by any presented token would let a caller mint a fresh bucket per
//! request by sending made-up tokens; keying unknown tokens by address instead also
//! slows down anyone guessing tokens. A router served without connection info (the
//! in-process tests' `oneshot`) puts every such request into one shared bucket.
//!
//! # Ground rules
//! - The bucket table is behind a `std` mutex held only to update a few numbers, never
//!   across an `.await`.
//! - The table is bounded: when it holds [`MAX_CLIENTS`] buckets, the full ones (idle
//!   clients, which would start afresh anyway) are dropped; if none is full, the
//!   newcomer shares the one overflow bucket rather than growing the table further.

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

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The buckets of every client.
pub(crate) struct RateLimiter {
    limit: RateLimit,
    access: Arc<Access>,
    buckets: Mutex<HashMap<Client, Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit, access: Arc<Access>) -> RateLimiter {
        RateLimiter {
            limit,
            access,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket at `now`: `Ok` if it may go on,
    /// `Err(wait)` with how long until the next request would be allowed.
    fn take(&self, client: Client, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.limit.burst.max(1));
        let rate = self.limit.per_second;
        // A poisoned lock only means another request panicked between two float
        // updates; the numbers are still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let client = if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            buckets.retain(|_, bucket| refill(bucket, now, rate, capacity) < capacity);
            if buckets.len() >= MAX_CLIENTS {
                Client::Shared
            } else {
                client
            }
        } else {
            client
        };
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: capacity,
            refilled: now,
        });
        bucket.tokens = refill(bucket, now, rate, capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
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
    match limiter.take(client, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => too_many_requests(wait),
    }
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
            RateLimit { per_second, burst },
            Arc::new(Access::new(&["rw".to_owned()], &[])),
        )
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = limiter(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(Client::Token(0), start), Ok(()));
        }
        let wait = limiter
            .take(Client::Token(0), start)
            .expect_err("past the burst");
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        // Other clients have buckets of their own.
        assert_eq!(limiter.take(Client::Shared, start), Ok(()));
        // 100 ms later one more request is allowed, and only one.
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.take(Client::Token(0), later), Ok(()));
        assert!(limiter.take(Client::Token(0), later).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = limiter(1.0, 1);
        let now = Instant::now();
        for index in 0..MAX_CLIENTS + 10 {
            let _ = limiter.take(Client::Token(index), now);
        }
        let buckets = limiter.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // The clients with buckets of their own, and the shared overflow bucket.
        assert_eq!(buckets.len(), MAX_CLIENTS + 1);
        assert!(buckets.contains_key(&Client::Shared));
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
