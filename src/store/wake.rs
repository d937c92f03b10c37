//! Wake-ups across a cluster: a write through any store handle tells the schedulers
//! sharing the store that a job may be due earlier than they planned.
//!
//! A store that can push changes (PostgreSQL's LISTEN/NOTIFY, Redis pub/sub) announces
//! every add, replace and update on a channel named after its table or key prefix, with
//! the earliest next run time written as the payload, and hands each scheduler a
//! receiver of [`WakeUp`]s fed by one dedicated listening connection
//! ([`Cluster::wake_ups`](super::Cluster::wake_ups)). Stores that cannot push
//! (MySQL/MariaDB, and the single-node SQLite and memory stores) hand out none; the
//! scheduler's safety-net poll bounds how late another node's change is seen there.
//!
//! ```text
//! node b: add job (due T) ──commit──NOTIFY/PUBLISH "T"──┐
//! node a: listener ──────────────────────────────────────┴─> WakeUp::Due(T)
//!         main loop: T earlier than its deadline? wake, acquire, fire at T
//! ```
//!
//! # Ground rules
//! - A notification is a hint, never the truth: the loop always re-reads the store, so
//!   a lost, late, duplicated or spurious wake-up costs at most a pass.
//! - Notifications are sent after the write committed (or in its transaction, delivered
//!   at commit), so a woken node always sees the change.
//! - Nothing is delivered while the listening connection is down. The listener
//!   reconnects with backoff ([`Backoff`]) and announces [`WakeUp::Resync`] each time
//!   it is (re)established, so the loop re-reads the store and nothing waits past the
//!   safety-net poll.
//! - The listener task ends when its receiver is dropped (the scheduler stopped).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

/// How many wake-ups may wait for the scheduler; the listener waits beyond that (the
/// server keeps the notifications meanwhile).
pub(crate) const WAKE_CAPACITY: usize = 1024;

/// The first delay before reconnecting a lost listening connection.
const MIN_RECONNECT: Duration = Duration::from_millis(100);
/// The longest delay between reconnection attempts.
const MAX_RECONNECT: Duration = Duration::from_secs(10);

/// What a store's listener tells a scheduler
/// ([`Cluster::wake_ups`](super::Cluster::wake_ups)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeUp {
    /// Jobs were added or changed through some store handle; the earliest next run
    /// time among them.
    Due(DateTime<Utc>),
    /// The listening connection was (re)established: changes made while it was down
    /// were not announced, so look at the store now.
    Resync,
}

/// The sending half a listener task feeds.
pub(crate) type WakeSender = mpsc::Sender<WakeUp>;

/// The channel a store announces on: its prefix and `wake`, so stores with different
/// prefixes on one server (tests, several clusters) do not wake each other.
pub(crate) fn channel_name(prefix: &str) -> String {
    format!("{prefix}wake")
}

/// The payload of a notification: the earliest next run time, in microseconds.
pub(crate) fn payload(earliest: DateTime<Utc>) -> String {
    earliest.timestamp_micros().to_string()
}

/// A notification's payload as a wake-up; one that cannot be read (another build, a
/// person with `psql`) asks for a look at the store rather than being dropped.
pub(crate) fn parse_payload(payload: &str) -> WakeUp {
    payload
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .map_or(WakeUp::Resync, WakeUp::Due)
}

/// The earliest of `times` that are present: of the next run times of jobs just
/// written (`None` when all are paused: nothing to wake for), or of a store's earliest
/// due job and earliest lease expiry (`DueJobs::next_run_time`; an SQL store's are
/// microseconds).
pub(crate) fn earliest<'a, T: Ord + Copy + 'a>(
    times: impl IntoIterator<Item = &'a Option<T>>,
) -> Option<T> {
    times.into_iter().flatten().min().copied()
}

/// Exponential backoff between reconnection attempts of a listener.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: MIN_RECONNECT,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt; each call doubles the one after, up to
    /// [`MAX_RECONNECT`].
    pub(crate) fn delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_RECONNECT);
        delay
    }

    /// A connection held: the next loss is retried quickly again.
    pub(crate) fn reset(&mut self) {
        self.next = MIN_RECONNECT;
    }

    /// Sleeps for [`Backoff::delay`]; `false` if the receiver went away meanwhile
    /// (the listener should end).
    pub(crate) async fn sleep(&mut self, sender: &WakeSender) -> bool {
        let delay = self.delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = sender.closed() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_garbage_asks_for_a_look() {
        let at = DateTime::from_timestamp_micros(1_893_456_000_123_456).unwrap_or_default();
        assert_eq!(parse_payload(&payload(at)), WakeUp::Due(at));
        assert_eq!(parse_payload(""), WakeUp::Resync);
        assert_eq!(parse_payload("soon"), WakeUp::Resync);
        assert_eq!(parse_payload("99999999999999999999"), WakeUp::Resync);
    }

    #[test]
    fn the_earliest_running_time_wins_and_paused_jobs_wake_nobody() {
        let at = |seconds| DateTime::from_timestamp(seconds, 0);
        assert_eq!(earliest(&[at(5), None, at(3)]), at(3));
        assert_eq!(earliest::<DateTime<Utc>>(&[None, None]), None);
    }

    #[test]
    fn backoff_doubles_up_to_a_cap_and_resets() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.delay(), MIN_RECONNECT);
        assert_eq!(backoff.delay(), MIN_RECONNECT * 2);
        for _ in 0..20 {
            backoff.delay();
        }
        assert_eq!(backoff.delay(), MAX_RECONNECT);
        backoff.reset();
        assert_eq!(backoff.delay(), MIN_RECONNECT);
    }
}
