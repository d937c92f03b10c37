//! Waiting for the start time of runs handed over early (the fire-ahead window, or
//! jitter), with one timer per instant instead of one per run.
//!
//! Ten thousand recurring jobs due in the same second are handed over in the window
//! before it. Each waiting on its own timer would cost ten thousand timers and wake-ups
//! (BENCHMARKS.md, recurring). Here the runs due at one instant wait behind one gate;
//! one opener task sleeps until the instant ([`SystemClock::sleep_until`], precise to
//! microseconds) and opens it, waking them all.
//!
//! [`SystemClock::sleep_until`]: crate::clock::SystemClock

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::clock::Clock;

/// The open gates of one executor, by instant.
#[derive(Default)]
pub(crate) struct StartGates {
    /// A gate is a semaphore without permits, closed to open it: closing wakes every
    /// waiter at once, and a waiter that comes later sees it closed and goes on.
    gates: Arc<Mutex<hashbrown::HashMap<DateTime<Utc>, Arc<Semaphore>>>>,
}

impl StartGates {
    /// Returns once `clock` reads `at` or later.
    pub(crate) async fn wait(&self, clock: &Arc<dyn Clock>, at: DateTime<Utc>) {
        if clock.now() >= at {
            return;
        }
        let gate = {
            let mut gates = self
                .gates
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match gates.get(&at) {
                Some(gate) => Arc::clone(gate),
                None => {
                    let gate = Arc::new(Semaphore::new(0));
                    gates.insert(at, Arc::clone(&gate));
                    tokio::spawn(open_at(
                        Arc::clone(clock),
                        at,
                        Arc::clone(&gate),
                        Arc::clone(&self.gates),
                    ));
                    gate
                }
            }
        };
        // An error is the gate opening (closed); no permit is ever added.
        let _ = gate.acquire().await;
        // A clock set back in between (a test's manual clock) is waited out alone.
        while clock.now() < at {
            clock.sleep_until(at).await;
        }
    }
}

/// Opens the gate for `at` when the clock gets there.
async fn open_at(
    clock: Arc<dyn Clock>,
    at: DateTime<Utc>,
    gate: Arc<Semaphore>,
    gates: Arc<Mutex<hashbrown::HashMap<DateTime<Utc>, Arc<Semaphore>>>>,
) {
    while clock.now() < at {
        clock.sleep_until(at).await;
    }
    // Out of the map first: a run arriving after this sees the time has come, one
    // arriving before holds the gate and finds it open.
    gates
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&at);
    gate.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_due_together_wait_behind_one_gate_and_start_when_it_opens() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).expect("instant");
        let manual = ManualClock::new(start);
        let clock: Arc<dyn Clock> = Arc::new(manual.clone());
        let gates = Arc::new(StartGates::default());
        let due = start + chrono::TimeDelta::seconds(10);
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let (gates, clock) = (Arc::clone(&gates), Arc::clone(&clock));
                tokio::spawn(async move { gates.wait(&clock, due).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(gates.gates.lock().expect("lock").len(), 1, "one gate");
        assert!(waiters.iter().all(|waiter| !waiter.is_finished()));
        manual.set(due - chrono::TimeDelta::milliseconds(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(waiters.iter().all(|waiter| !waiter.is_finished()));
        manual.set(due);
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("every waiter starts once the gate opens")
                .expect("no panic");
        }
        assert!(
            gates.gates.lock().expect("lock").is_empty(),
            "the gate is gone"
        );
        // Later arrivals for a time that has come do not wait.
        tokio::time::timeout(Duration::from_secs(1), gates.wait(&clock, due))
            .await
            .expect("no wait for a time that has come");
    }
}
