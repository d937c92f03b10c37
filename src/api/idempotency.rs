//! `Idempotency-Key` for `POST /jobs`: a client that retries a create (after a timeout
//! or a dropped connection) gets the first response back and never makes two jobs.
//!
//! The cache maps each key to a hash of the request body and, once the first request
//! is done, its response. A retry with the same key and body is answered from the
//! cache; the same key with another body is refused (422), as is a retry while the
//! first is still being handled (409). Only successful responses are kept: a failed
//! create made no job, so a retry may simply try again.
//!
//! # Ground rules
//! - Bounded: entries expire after the TTL and the oldest go first past the capacity,
//!   so a client cannot grow the map without limit.
//! - In memory and per process: a daemon restart forgets the keys (the job ids the
//!   client chose still guard against duplicates across restarts).
//! - A key is released if its request is abandoned before finishing ([`Pending`]'s
//!   drop), so a dropped connection never blocks the key for the TTL.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;

use super::error::ApiError;

/// The longest key accepted; keys are usually UUIDs.
pub(crate) const MAX_KEY_LENGTH: usize = 255;

/// A response to replay.
#[derive(Clone, Debug)]
pub(crate) struct StoredResponse {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    pub(crate) location: Option<String>,
    /// The created job's `ETag` (a replay answers the one it had when created).
    pub(crate) etag: Option<String>,
}

enum Slot {
    /// The first request with this key is still being handled.
    InFlight,
    Done(StoredResponse),
}

struct Entry {
    body_hash: u64,
    created: Instant,
    slot: Slot,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<String, Entry>,
    /// Keys in the order they were first seen, with that time, for expiry and eviction.
    /// A key that was released stays here until popped; popping checks the time.
    order: VecDeque<(Instant, String)>,
}

/// The keys seen recently.
pub(crate) struct IdempotencyCache {
    ttl: Duration,
    capacity: usize,
    entries: Arc<Mutex<Entries>>,
}

/// What to do with a request that carries a key.
pub(crate) enum Begin {
    /// First time: handle it, then [`Pending::finish`].
    Fresh(Pending),
    /// Seen and done: send this.
    Replay(StoredResponse),
}

/// A key whose request is being handled; released on drop unless finished.
pub(crate) struct Pending {
    key: String,
    created: Instant,
    entries: Arc<Mutex<Entries>>,
    finished: bool,
}

/// Checks an `Idempotency-Key` as the client sent it: 1 to [`MAX_KEY_LENGTH`]
/// characters (the header is visible ASCII, so characters are bytes).
pub(crate) fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_LENGTH {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"),
        ));
    }
    Ok(())
}

impl IdempotencyCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> IdempotencyCache {
        IdempotencyCache {
            ttl,
            capacity: capacity.max(1),
            entries: Arc::default(),
        }
    }

    /// Looks `key` up for a request with `body`. `key` is the client's key scoped to
    /// its caller, so it is [`check_key`]ed before the scope is added: the limit is on
    /// what the client sent, as openapi.json declares it.
    pub(crate) fn begin(&self, key: &str, body: &[u8]) -> Result<Begin, ApiError> {
        let body_hash = hash(body);
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        self.expire(&mut entries, now);
        if let Some(entry) = entries.by_key.get(key) {
            if entry.body_hash != body_hash {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request body; use a new \
                     key for a new request",
                ));
            }
            return match &entry.slot {
                Slot::Done(response) => Ok(Begin::Replay(response.clone())),
                Slot::InFlight => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is still being handled; retry shortly",
                )),
            };
        }
        // The queue also holds keys released since; bounding it too keeps a stream of
        // failing requests from growing it until they expire.
        while entries.by_key.len() >= self.capacity || entries.order.len() >= 2 * self.capacity {
            let Some((created, oldest)) = entries.order.pop_front() else {
                break;
            };
            remove_entry(&mut entries, &oldest, created);
        }
        entries.by_key.insert(
            key.to_owned(),
            Entry {
                body_hash,
                created: now,
                slot: Slot::InFlight,
            },
        );
        entries.order.push_back((now, key.to_owned()));
        Ok(Begin::Fresh(Pending {
            key: key.to_owned(),
            created: now,
            entries: Arc::clone(&self.entries),
            finished: false,
        }))
    }

    /// Drops entries older than the TTL.
    fn expire(&self, entries: &mut Entries, now: Instant) {
        while let Some((created, _)) = entries.order.front() {
            if now.saturating_duration_since(*created) < self.ttl {
                break;
            }
            if let Some((created, key)) = entries.order.pop_front() {
                remove_entry(entries, &key, created);
            }
        }
    }
}

impl Pending {
    /// Keeps `response` for retries if it is a success; otherwise releases the key.
    pub(crate) fn finish(mut self, response: StoredResponse) {
        self.finished = true;
        let mut entries = lock(&self.entries);
        if response.status.is_success() {
            if let Some(entry) = entries.by_key.get_mut(&self.key) {
                if entry.created == self.created {
                    entry.slot = Slot::Done(response);
                }
            }
        } else {
            release(&mut entries, &self.key, self.created);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.finished {
            release(&mut lock(&self.entries), &self.key, self.created);
        }
    }
}

/// Removes `key`'s entry if it is the one created at `created`: the key may have been
/// released and seen again since, and only the entry a queue slot stands for goes.
fn remove_entry(entries: &mut Entries, key: &str, created: Instant) {
    if entries
        .by_key
        .get(key)
        .is_some_and(|entry| entry.created == created)
    {
        entries.by_key.remove(key);
    }
}

fn release(entries: &mut Entries, key: &str, created: Instant) {
    if entries
        .by_key
        .get(key)
        .is_some_and(|entry| entry.created == created && matches!(entry.slot, Slot::InFlight))
    {
        entries.by_key.remove(key);
    }
}

fn lock(entries: &Mutex<Entries>) -> MutexGuard<'_, Entries> {
    entries
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SipHash with fixed keys: stable within the process, which is all the cache needs.
fn hash(body: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> StoredResponse {
        StoredResponse {
            status: StatusCode::CREATED,
            body: Bytes::from_static(b"{}"),
            location: None,
            etag: None,
        }
    }

    fn fresh(cache: &IdempotencyCache, key: &str, body: &[u8]) -> Pending {
        match cache.begin(key, body) {
            Ok(Begin::Fresh(pending)) => pending,
            _ => panic!("expected a fresh key"),
        }
    }

    #[test]
    fn a_finished_key_replays_and_refuses_another_body() {
        let cache = IdempotencyCache::new(Duration::from_secs(60), 10);
        fresh(&cache, "k", b"a").finish(created());
        assert!(matches!(cache.begin("k", b"a"), Ok(Begin::Replay(_))));
        assert!(cache
            .begin("k", b"b")
            .is_err_and(|error| error.status() == StatusCode::UNPROCESSABLE_ENTITY));
    }

    #[test]
    fn an_abandoned_or_failed_request_releases_its_key() {
        let cache = IdempotencyCache::new(Duration::from_secs(60), 10);
        let pending = fresh(&cache, "k", b"a");
        assert!(cache
            .begin("k", b"a")
            .is_err_and(|error| error.status() == StatusCode::CONFLICT));
        drop(pending);
        fresh(&cache, "k", b"a").finish(StoredResponse {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            ..created()
        });
        fresh(&cache, "k", b"a").finish(created());
    }

    #[test]
    fn the_oldest_keys_go_past_the_capacity_and_after_the_ttl() {
        let cache = IdempotencyCache::new(Duration::from_secs(60), 2);
        for key in ["a", "b", "c"] {
            fresh(&cache, key, b"x").finish(created());
        }
        assert!(matches!(cache.begin("a", b"x"), Ok(Begin::Fresh(_))));
        assert!(matches!(cache.begin("c", b"x"), Ok(Begin::Replay(_))));

        let expiring = IdempotencyCache::new(Duration::ZERO, 10);
        fresh(&expiring, "a", b"x").finish(created());
        assert!(matches!(expiring.begin("a", b"x"), Ok(Begin::Fresh(_))));
    }
}
