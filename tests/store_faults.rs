//! The scheduler and a store that fails: it retries with backoff, catches up when the
//! store returns, and neither loses a job nor runs a time twice (docs/semantics.md, "Misfires"
//! and "Delivery"; issue: persistent stores, faults).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{recording_tasks, wait_for_runs, Faults, FaultyStore, Runs};
use kairos::clock::ManualClock;
use kairos::job::JobSpec;
use kairos::scheduler::Scheduler;
use kairos::trigger::TriggerSpec;
use serde_json::json;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn secs(seconds: i64) -> TimeDelta {
    TimeDelta::seconds(seconds)
}

fn trigger(value: serde_json::Value) -> TriggerSpec {
    serde_json::from_value(value).unwrap()
}

/// Moves the clock forward in steps, giving the loop time to react to each.
async fn advance(clock: &ManualClock, total: Duration, step: Duration) {
    let mut moved = Duration::ZERO;
    while moved < total {
        clock.advance(step);
        moved += step;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A scheduler on simulated time and a store that fails on command, holding a job that
/// runs every 10 s from 00:00:10 (not started yet).
async fn with_a_job_every_10s() -> (ManualClock, Arc<Faults>, Runs, Scheduler) {
    let clock = ManualClock::new(t0());
    let (store, faults) = FaultyStore::new();
    let (tasks, runs) = recording_tasks();
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .store("default", store)
        .tasks(tasks)
        .build();
    scheduler
        .add_job(
            JobSpec::new(
                "record",
                trigger(json!({"type": "interval", "seconds": 10, "start_date": "2030-01-01T00:00:10Z"})),
            )
            .with_id("every-10s"),
        )
        .await
        .unwrap();
    (clock, faults, runs, scheduler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_retried_and_nothing_is_lost_or_repeated() {
    let (clock, faults, runs, scheduler) = with_a_job_every_10s().await;
    scheduler
        .add_job(
            JobSpec::new(
                "record",
                trigger(json!({"type": "date", "run_date": "2030-01-01T00:00:25Z"})),
            )
            .with_id("one-off"),
        )
        .await
        .unwrap();
    scheduler.start();
    clock.set(t0() + secs(10));
    assert_eq!(wait_for_runs(&runs, 1).await.len(), 1);

    // The store goes away for fifty seconds: the one-off's time passes meanwhile.
    faults.down.store(true, Ordering::SeqCst);
    advance(&clock, Duration::from_secs(50), Duration::from_secs(5)).await;
    assert_eq!(
        runs.lock().unwrap().len(),
        1,
        "nothing runs while the store is down"
    );

    // It comes back (at 01:00); within the longest backoff the loop catches up, and
    // then the job goes on with its schedule.
    faults.down.store(false, Ordering::SeqCst);
    advance(&clock, Duration::from_secs(35), Duration::from_secs(5)).await;
    wait_for_runs(&runs, 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = runs.lock().unwrap().clone();
    let one_off: Vec<_> = seen.iter().filter(|(id, _)| id == "one-off").collect();
    assert_eq!(
        one_off,
        [&("one-off".to_owned(), t0() + secs(25))],
        "{seen:?}"
    );
    let interval: Vec<DateTime<Utc>> = seen
        .iter()
        .filter(|(id, _)| id == "every-10s")
        .map(|(_, time)| *time)
        .collect();
    assert!(
        interval.windows(2).all(|pair| pair[0] < pair[1]),
        "a time ran twice: {seen:?}"
    );
    // The times missed during the outage were coalesced into the first run after it.
    assert_eq!(interval[0], t0() + secs(10));
    assert!(interval.len() >= 2, "{seen:?}");
    assert!(
        interval[1..].iter().all(|time| *time >= t0() + secs(60)),
        "an outage time ran on its own: {seen:?}"
    );
    assert!(
        scheduler.get_job("one-off").await.unwrap().is_none(),
        "the one-off is done"
    );
    scheduler.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_release_is_retried_and_never_runs_a_time_twice() {
    let (clock, faults, runs, scheduler) = with_a_job_every_10s().await;
    faults.failing_releases.store(1, Ordering::SeqCst);
    scheduler.start();
    // The run for 00:10 is submitted, then the store refuses to write it back.
    clock.set(t0() + secs(10));
    assert_eq!(wait_for_runs(&runs, 1).await.len(), 1);
    // The loop retries after its backoff and writes the release first.
    advance(&clock, Duration::from_secs(5), Duration::from_secs(1)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while scheduler
        .get_job("every-10s")
        .await
        .unwrap()
        .unwrap()
        .next_run_time
        != Some(t0() + secs(20))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        scheduler
            .get_job("every-10s")
            .await
            .unwrap()
            .unwrap()
            .next_run_time,
        Some(t0() + secs(20))
    );
    // Well past the lease (five minutes), 00:10 never runs again.
    clock.set(t0() + secs(400));
    wait_for_runs(&runs, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = runs.lock().unwrap().clone();
    let times: Vec<DateTime<Utc>> = seen.iter().map(|(_, time)| *time).collect();
    let mut unique = times.clone();
    unique.dedup();
    assert_eq!(times, unique, "a time ran twice: {seen:?}");
    assert_eq!(times.first(), Some(&(t0() + secs(10))));
    assert!(faults.release_calls.load(Ordering::SeqCst) >= 2);
    scheduler.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_instance_claim_leaves_the_run_for_the_retry() {
    let (clock, faults, runs, scheduler) = with_a_job_every_10s().await;
    faults.failing_claims.store(1, Ordering::SeqCst);
    scheduler.start();
    // The store refuses the claim for 00:10; the job is written back as it was
    // acquired instead of moving on to 00:20, and the loop's retry runs it, once.
    clock.set(t0() + secs(10));
    advance(&clock, Duration::from_secs(2), Duration::from_millis(500)).await;
    let seen = wait_for_runs(&runs, 1).await;
    assert_eq!(seen[0].1, t0() + secs(10));
    assert_eq!(
        faults.failing_claims.load(Ordering::SeqCst),
        0,
        "a claim was refused"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runs.lock().unwrap().len(), 1, "00:10 ran once");
    let job = scheduler.get_job("every-10s").await.unwrap().unwrap();
    assert_eq!(job.next_run_time, Some(t0() + secs(20)));
    scheduler.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_run_records_are_written_later_and_free_their_slot() {
    let (clock, faults, runs, scheduler) = with_a_job_every_10s().await;
    faults.failing_finishes.store(1, Ordering::SeqCst);
    scheduler.start();
    clock.set(t0() + secs(10));
    wait_for_runs(&runs, 1).await;
    // The record task retries after half a second on the scheduler's clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while scheduler
        .runs(Some("every-10s"), 10)
        .await
        .unwrap()
        .is_empty()
        && std::time::Instant::now() < deadline
    {
        clock.advance(Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded = scheduler.runs(Some("every-10s"), 10).await.unwrap();
    assert_eq!(recorded.len(), 1, "the refused record was written on retry");
    // Its slot was freed with it: the next time is not refused for max_instances.
    clock.set(t0() + secs(20));
    let seen = wait_for_runs(&runs, 2).await;
    assert_eq!(seen[1].1, t0() + secs(20));
    scheduler.shutdown(None).await;
}

/// A pass stuck in a store call that never returns is not progress: the watchdog
/// question turns false once the pass is older than the stall bound, while a loop
/// asleep between passes (nothing due for a long time) is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_cannot_finish_is_not_progress() {
    let (clock, faults, _runs, scheduler) = with_a_job_every_10s().await;
    scheduler.start();
    let stall = Duration::from_millis(300);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Asleep until 00:10 (well past the stall bound): progress.
    tokio::time::sleep(stall * 2).await;
    assert!(scheduler.is_making_progress(stall));
    // The pass at 00:10 hangs in the store.
    faults.hang_acquire.store(true, Ordering::SeqCst);
    clock.set(t0() + secs(10));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(scheduler.is_alive(), "the task still exists");
    assert!(
        scheduler.is_making_progress(stall),
        "young passes are progress"
    );
    tokio::time::sleep(stall * 2).await;
    assert!(!scheduler.is_making_progress(stall), "a stuck pass is not");
}

/// A store that refuses run records (an outage of its writes) makes the node hold them,
/// up to a cap; then it takes no more jobs from that store, drops nothing, says so
/// once, and goes on when the records are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_records_a_store_refuses_are_capped_by_taking_no_more_jobs() {
    let clock = ManualClock::new(t0());
    let (store, faults) = FaultyStore::new();
    let (tasks, runs) = recording_tasks();
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .store("default", store)
        .tasks(tasks)
        .max_unwritten_runs(3)
        .build();
    let mut events = scheduler.subscribe();
    // Order-cancel jobs, one a second.
    for second in 1..=10 {
        let run_date = (t0() + secs(second)).to_rfc3339();
        scheduler
            .add_job(
                JobSpec::new(
                    "record",
                    trigger(json!({"type": "date", "run_date": run_date})),
                )
                .with_id(format!("cancel-{second}")),
            )
            .await
            .unwrap();
    }
    faults.failing_finishes.store(u32::MAX, Ordering::SeqCst);
    scheduler.start();
    advance(&clock, Duration::from_secs(10), Duration::from_millis(250)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ran = runs.lock().unwrap().len();
    assert!(
        (3..=4).contains(&ran),
        "{ran} runs went on while records piled up"
    );
    assert!(scheduler.unwritten_runs() >= 3);
    let mut backlogged = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, kairos::scheduler::Event::RecordsBacklogged { .. }) {
            backlogged += 1;
        }
    }
    assert_eq!(backlogged, 1, "said once");
    // Writes come back: every record is written, and the job runs again.
    faults.failing_finishes.store(0, Ordering::SeqCst);
    // The record task retries on the scheduler's clock, with a back-off that grew
    // while the store refused: move the clock on until its retry has come.
    for _ in 0..240 {
        if scheduler.unwritten_runs() == 0 {
            break;
        }
        advance(&clock, Duration::from_millis(250), Duration::from_millis(250)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    advance(&clock, Duration::from_secs(2), Duration::from_millis(250)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while scheduler.unwritten_runs() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = common::wait_for_runs(&runs, 10).await;
    assert_eq!(all.len(), 10, "every job ran, once: {all:?}");
    while scheduler.unwritten_runs() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(scheduler.unwritten_runs(), 0);
    let history = scheduler.runs(None, 100).await.unwrap();
    assert_eq!(history.len(), 10, "nothing dropped: {history:#?}");
    scheduler.shutdown(None).await;
}
