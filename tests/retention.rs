//! History retention runs in the background on the scheduler's clock, trimming each
//! store in bounded batches until nothing is left, once per period.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::FaultyStore;
use kairos::clock::ManualClock;
use kairos::scheduler::{HistoryRetention, Scheduler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_in_batches_once_per_period() {
    let start = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let (store, faults) = FaultyStore::new();
    faults.prune_backlog.store(2_500, Ordering::SeqCst);
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .store("default", store)
        .history_retention(HistoryRetention {
            keep: Some(Duration::from_secs(86_400)),
            max_rows: Some(500),
            every: Duration::from_secs(600),
            batch: 1_000,
        })
        .build();
    scheduler.start();
    let calls = || faults.prune_calls.load(Ordering::SeqCst);
    let wait_for_calls = |expected: u64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while calls() < expected && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        calls()
    };
    // Nothing before the first period.
    clock.advance(Duration::from_secs(599));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls(), 0);
    // At the period: 1,000 + 1,000 + 500, then a call that finds nothing.
    clock.advance(Duration::from_secs(1));
    assert_eq!(wait_for_calls(4).await, 4);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls(), 4, "one round per period");
    assert_eq!(faults.prune_backlog.load(Ordering::SeqCst), 0);
    // The next period: one call, nothing left.
    clock.advance(Duration::from_secs(600));
    assert_eq!(wait_for_calls(5).await, 5);
    scheduler.shutdown(None).await;
}
