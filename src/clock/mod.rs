//! The clock the scheduler reads and sleeps on, injectable so tests run on simulated
//! time instead of sleeping.
//!
//! # Ground rules
//! - [`Clock::now`] is the wall clock (UTC); schedules are wall-clock schedules.
//! - [`Clock::sleep_until`] may return early, never late on purpose: callers re-read
//!   `now` and go back to sleep. The system clock sleeps at most [`MAX_SLEEP`] at a
//!   time, because a monotonic sleep does not notice the wall clock jumping (an NTP
//!   step, a suspended laptop); waking that often costs nothing measurable and bounds
//!   how late a jump can make a job.
//! - tokio's timer ticks in whole milliseconds, which would make every run up to a
//!   millisecond late; the system clock's precise sleeps wait on one timer thread of
//!   the process instead ([`precise`]), which wakes them within microseconds of their
//!   deadline and costs nothing between deadlines.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

mod precise;

/// The longest the system clock sleeps before it looks at the wall clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(10);

/// A boxed future, as object-safe traits return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of wall-clock time that can also wait for a given instant.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// Waits until `deadline` or a little before; see the module's ground rules.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()>;

    /// Waits until about `deadline`, for a waiter that does not need it to the
    /// millisecond: the system clock sleeps on tokio's timer and may wake up to a
    /// millisecond after the deadline. By default, [`Clock::sleep_until`].
    fn sleep_until_coarse(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()> {
        self.sleep_until(deadline)
    }
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()> {
        match precise::PreciseSleep::until(deadline) {
            Some(sleep) => Box::pin(sleep),
            // No timer thread (the process may not start one): tokio's timer, up to a
            // millisecond late.
            None => self.sleep_until_coarse(deadline),
        }
    }

    fn sleep_until_coarse(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait.min(MAX_SLEEP)))
    }
}

/// A clock that only moves when told to: tests set or advance it, and every sleeper
/// whose deadline has been reached wakes up.
#[derive(Clone, Debug)]
pub struct ManualClock {
    time: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            time: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock to `instant` (backwards too, to simulate a clock step).
    pub fn set(&self, instant: DateTime<Utc>) {
        self.time.send_replace(instant);
    }

    /// Moves the clock forward by `step`.
    pub fn advance(&self, step: Duration) {
        let step = chrono::TimeDelta::from_std(step).unwrap_or(chrono::TimeDelta::MAX);
        self.time
            .send_modify(|time| *time = time.checked_add_signed(step).unwrap_or(*time));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.time.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'_, ()> {
        let mut time = self.time.subscribe();
        Box::pin(async move {
            // An error means the clock is gone, and nobody can wake us: just return.
            let _ = time.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_when_the_clock_reaches_them() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).expect("instant");
        let clock = ManualClock::new(start);
        let deadline = start + chrono::TimeDelta::seconds(60);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(deadline).await }
        });
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke up")
            .expect("no panic");
    }
}
