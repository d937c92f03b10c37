//! Sleeping to the deadline on the system clock without spinning: one thread of the
//! process waits for the earliest deadline of every sleeper and wakes those whose time
//! has come.
//!
//! tokio's timer ticks in whole milliseconds, so a run waiting on it starts up to a
//! millisecond late. The system clock used to sleep on tokio to within a millisecond
//! of the deadline and then yield in a loop until it: a runtime worker busy for that
//! millisecond per due instant, and with one-off jobs due every half millisecond (the
//! burst benchmark, BENCHMARKS.md) both workers of a two-core machine spinning while
//! the runs that had come due waited for a turn. Here a thread sleeps in the kernel
//! with its timer slack set to the minimum (Linux's default slack of 50 µs would make
//! every wake-up that much late), which costs nothing between deadlines.
//!
//! The deadlines are wall-clock instants, as everywhere in the scheduler. The thread
//! waits at most [`MAX_SLEEP`](super::MAX_SLEEP) at a time, so a step of the wall clock
//! is noticed as it is by the tokio sleeps it replaces.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The sleepers and the thread that wakes them; one per process.
struct PreciseTimer {
    state: Mutex<Sleepers>,
    /// Signalled when a sleeper with an earlier deadline than the thread waits for
    /// comes in.
    earlier: Condvar,
}

#[derive(Default)]
struct Sleepers {
    /// Deadlines, earliest first, with the sleeper's key; a key whose waker is gone
    /// (the sleep was dropped, or woken) is skipped when it comes up.
    deadlines: BinaryHeap<Reverse<(DateTime<Utc>, u64)>>,
    wakers: hashbrown::HashMap<u64, Waker>,
    next_key: u64,
    /// The deadline the thread waits for now (`None`: it waits for a sleeper).
    waiting_for: Option<DateTime<Utc>>,
}

impl PreciseTimer {
    /// The process's timer, its thread started on first use. `None` if the thread
    /// could not be started; the caller then sleeps on tokio.
    fn get() -> Option<&'static PreciseTimer> {
        static TIMER: OnceLock<Option<&'static PreciseTimer>> = OnceLock::new();
        *TIMER.get_or_init(|| {
            let timer: &'static PreciseTimer = Box::leak(Box::new(PreciseTimer {
                state: Mutex::new(Sleepers::default()),
                earlier: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("kairos-timer".to_owned())
                .spawn(move || timer.wake_sleepers())
                .ok()
                .map(|_| timer)
        })
    }

    fn lock(&self) -> MutexGuard<'_, Sleepers> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The thread: wakes every sleeper whose deadline has come, then waits for the
    /// next deadline, or for an earlier one to come in.
    fn wake_sleepers(&self) {
        least_timer_slack();
        let mut due = Vec::new();
        let mut sleepers = self.lock();
        loop {
            let now = Utc::now();
            while let Some(Reverse((deadline, key))) = sleepers.deadlines.peek().copied() {
                if deadline > now {
                    break;
                }
                sleepers.deadlines.pop();
                if let Some(waker) = sleepers.wakers.remove(&key) {
                    due.push(waker);
                }
            }
            let next = sleepers
                .deadlines
                .peek()
                .map(|Reverse((deadline, _))| *deadline);
            sleepers.waiting_for = next;
            if !due.is_empty() {
                // Woken outside the lock: a woken sleeper may register again at once.
                drop(sleepers);
                due.drain(..).for_each(Waker::wake);
                sleepers = self.lock();
                continue;
            }
            sleepers = match next {
                None => self
                    .earlier
                    .wait(sleepers)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                Some(next) => {
                    let wait = (next - now)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(super::MAX_SLEEP);
                    self.earlier
                        .wait_timeout(sleepers, wait)
                        .map(|(sleepers, _)| sleepers)
                        .unwrap_or_else(|poisoned| poisoned.into_inner().0)
                }
            };
        }
    }

    /// Registers (or renews the waker of) the sleeper `key`, giving it a key on first
    /// registration.
    fn register(&self, key: &mut Option<u64>, deadline: DateTime<Utc>, waker: &Waker) {
        let mut sleepers = self.lock();
        match key.and_then(|key| sleepers.wakers.get_mut(&key).map(|slot| (key, slot))) {
            Some((_, slot)) => {
                if !slot.will_wake(waker) {
                    slot.clone_from(waker);
                }
            }
            None => {
                let new_key = sleepers.next_key;
                sleepers.next_key = sleepers.next_key.wrapping_add(1);
                sleepers.wakers.insert(new_key, waker.clone());
                sleepers.deadlines.push(Reverse((deadline, new_key)));
                *key = Some(new_key);
                if sleepers
                    .waiting_for
                    .is_none_or(|waiting_for| deadline < waiting_for)
                {
                    sleepers.waiting_for = Some(deadline);
                    self.earlier.notify_one();
                }
            }
        }
    }

    fn deregister(&self, key: u64) {
        let mut sleepers = self.lock();
        sleepers.wakers.remove(&key);
        // Its deadline stays in the heap until it comes up, and is skipped then; a
        // loop that drops a far sleep on every pass would pile them up, so once most
        // are stale the heap is rebuilt from the live ones (amortised O(1) a drop).
        if sleepers.deadlines.len() > 2 * sleepers.wakers.len() + STALE_SLACK {
            let Sleepers {
                deadlines, wakers, ..
            } = &mut *sleepers;
            deadlines.retain(|Reverse((_, key))| wakers.contains_key(key));
        }
    }
}

/// How many stale deadlines the heap may hold beyond twice the live ones.
const STALE_SLACK: usize = 64;

/// Asks the kernel to wake this thread as close to its deadlines as it can.
#[allow(unsafe_code)]
fn least_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only changes this
    // thread's timer slack; a failure leaves the default slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// A sleep until `deadline` on the process's timer thread.
pub(super) struct PreciseSleep {
    deadline: DateTime<Utc>,
    key: Option<u64>,
}

impl PreciseSleep {
    /// `None` if the timer thread could not be started.
    pub(super) fn until(deadline: DateTime<Utc>) -> Option<PreciseSleep> {
        PreciseTimer::get().map(|_| PreciseSleep {
            deadline,
            key: None,
        })
    }
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Utc::now() >= this.deadline {
            if let (Some(key), Some(timer)) = (this.key.take(), PreciseTimer::get()) {
                timer.deregister(key);
            }
            return Poll::Ready(());
        }
        match PreciseTimer::get() {
            Some(timer) => {
                timer.register(&mut this.key, this.deadline, context.waker());
                Poll::Pending
            }
            // Not reached: a sleep is only made once the timer exists.
            None => Poll::Ready(()),
        }
    }
}

impl Drop for PreciseSleep {
    fn drop(&mut self) {
        if let (Some(key), Some(timer)) = (self.key.take(), PreciseTimer::get()) {
            timer.deregister(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleepers_wake_at_their_deadline_not_before_and_in_order() {
        let start = Utc::now();
        let deadlines: Vec<DateTime<Utc>> = [30, 5, 20, 5, 12]
            .iter()
            .map(|ms| start + chrono::TimeDelta::milliseconds(*ms))
            .collect();
        let sleepers: Vec<_> = deadlines
            .iter()
            .map(|deadline| {
                let deadline = *deadline;
                tokio::spawn(async move {
                    PreciseSleep::until(deadline).expect("a timer thread").await;
                    Utc::now()
                })
            })
            .collect();
        for (sleeper, deadline) in sleepers.into_iter().zip(deadlines) {
            let woke = tokio::time::timeout(Duration::from_secs(5), sleeper)
                .await
                .expect("woke up")
                .expect("no panic");
            assert!(woke >= deadline, "woke at {woke}, before {deadline}");
        }
    }

    #[tokio::test]
    async fn a_dropped_sleep_is_forgotten_and_a_later_one_still_wakes() {
        let far = Utc::now() + chrono::TimeDelta::seconds(3600);
        let dropped = tokio::time::timeout(
            Duration::from_millis(10),
            PreciseSleep::until(far).expect("a timer thread"),
        )
        .await;
        assert!(dropped.is_err(), "an hour away is not reached");
        let soon = Utc::now() + chrono::TimeDelta::milliseconds(5);
        tokio::time::timeout(
            Duration::from_secs(5),
            PreciseSleep::until(soon).expect("a timer thread"),
        )
        .await
        .expect("the later sleep wakes");
        assert!(Utc::now() >= soon);
    }
}
