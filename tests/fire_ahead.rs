//! `fire_ahead`: jobs are taken from their store before they are due and start on
//! time, so a slow store is off the firing path.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{recording_tasks, secs, t0};
use kairos::clock::ManualClock;
use kairos::job::JobSpec;
use kairos::scheduler::{Event, Scheduler};
use kairos::trigger::TriggerSpec;
use serde_json::json;

fn at(second: i64) -> TriggerSpec {
    let run_date = (t0() + secs(second)).to_rfc3339();
    serde_json::from_value(json!({"type": "date", "run_date": run_date})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_handed_over_ahead_and_start_on_time() {
    let clock = ManualClock::new(t0());
    let (tasks, runs) = recording_tasks();
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .tasks(tasks)
        .fire_ahead(Duration::from_secs(10))
        .build();
    let mut events = scheduler.subscribe();
    for (id, second) in [("soon", 5), ("later", 8), ("beyond", 30)] {
        scheduler
            .add_job(JobSpec::new("record", at(second)).with_id(id))
            .await
            .unwrap();
    }
    scheduler.start();
    // At 00:00 the jobs due within ten seconds are handed over, not the one at 00:30.
    let mut submitted = handed_over(&mut events, 2).await;
    submitted.sort();
    assert_eq!(submitted, ["later", "soon"]);
    assert_eq!(kairos::clock::Clock::now(&clock), t0());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(runs.lock().unwrap().is_empty(), "nothing starts early");

    // Each starts at its own time.
    clock.set(t0() + secs(5));
    common::wait_for_runs(&runs, 1).await;
    clock.set(t0() + secs(8));
    common::wait_for_runs(&runs, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let history = scheduler.runs(None, 10).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    for run in &history {
        assert_eq!(run.started_at, Some(run.scheduled_time), "{run:?}");
    }
    assert!(scheduler.get_job("beyond").await.unwrap().is_some());
    scheduler.shutdown(None).await;
}

/// A recurring job handed over ahead of its time keeps its lease, and its old
/// next run time, until the run is due. A node that dies in between therefore leaves
/// the job to the others at the time it had (the run happens elsewhere, late), instead
/// of having already written the next time, which lost the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recurring_job_handed_over_early_keeps_its_time_until_the_run_is_due() {
    use kairos::store::memory::MemoryStore;
    use kairos::store::prelude::*;
    use std::sync::Arc;

    let clock = ManualClock::new(t0());
    let (tasks, runs) = recording_tasks();
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = Scheduler::builder()
        .id("early")
        .clock(clock.clone())
        .store_shared("default", Arc::clone(&store))
        .tasks(tasks)
        .fire_ahead(Duration::from_secs(2))
        .build();
    let mut events = scheduler.subscribe();
    let every_ten = every_ten_from(10);
    scheduler
        .add_job(JobSpec::new("record", every_ten).with_id("tick"))
        .await
        .unwrap();
    scheduler.start();
    clock.set(t0() + secs(9));
    handed_over(&mut events, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Still leased to this node, at its old time: nobody else may take it, and if this
    // node died now its lease would end with the run still to do.
    let stored = store.get_job("tick").await.unwrap().unwrap();
    assert_eq!(stored.next_run_time, Some(t0() + secs(10)));
    let later = t0() + secs(30);
    assert!(store
        .acquire_due_jobs("other", later, 10, Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
    assert!(runs.lock().unwrap().is_empty());
    // Due: it runs, and the job moves on to its next time.
    clock.set(t0() + secs(10));
    common::wait_for_runs(&runs, 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let next = store.get_job("tick").await.unwrap().unwrap().next_run_time;
        if next == Some(t0() + secs(20)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still at {next:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *runs.lock().unwrap(),
        [("tick".to_owned(), t0() + secs(10))]
    );
    scheduler.shutdown(None).await;
}

/// Waits until the scheduler has handed `count` runs over; their job ids.
async fn handed_over(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    count: usize,
) -> Vec<String> {
    let mut submitted = Vec::new();
    while submitted.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("handed over ahead of time")
            .unwrap();
        if let Event::JobSubmitted { job_id, .. } = event {
            submitted.push(job_id);
        }
    }
    submitted
}

/// An interval trigger firing every ten seconds from `second`.
fn every_ten_from(second: i64) -> TriggerSpec {
    serde_json::from_value(json!({
        "type": "interval", "seconds": 10, "start_date": (t0() + secs(second)).to_rfc3339(),
    }))
    .unwrap()
}

/// Waits for the run record of `job_id`.
async fn record_of(scheduler: &Scheduler, job_id: &str) -> kairos::history::RunRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(record) = scheduler.runs(Some(job_id), 10).await.unwrap().pop() {
            return record;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record of {job_id}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A run handed over early does not happen if its job is paused, rescheduled or
/// removed before it is due: the executor reports it as skipped, the change stays, and
/// the job's lease ends, so a resumed job runs at its new time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_handed_over_early_are_taken_back_when_their_job_is_paused_moved_or_removed() {
    let clock = ManualClock::new(t0());
    let (tasks, runs) = recording_tasks();
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .tasks(tasks)
        .fire_ahead(Duration::from_secs(10))
        .build();
    let mut events = scheduler.subscribe();
    let every_ten = every_ten_from(5);
    scheduler
        .add_job(JobSpec::new("record", every_ten).with_id("paused"))
        .await
        .unwrap();
    for id in ["moved", "removed", "kept"] {
        scheduler
            .add_job(JobSpec::new("record", at(5)).with_id(id))
            .await
            .unwrap();
    }
    scheduler.start();
    handed_over(&mut events, 4).await;
    scheduler.pause_job("paused").await.unwrap();
    scheduler.reschedule_job("moved", at(7)).await.unwrap();
    scheduler.remove_job("removed").await.unwrap();

    clock.set(t0() + secs(5));
    common::wait_for_runs(&runs, 1).await;
    for id in ["paused", "moved", "removed"] {
        let record = record_of(&scheduler, id).await;
        assert_eq!(
            record.outcome,
            kairos::history::RunOutcome::Skipped,
            "{record:?}"
        );
        assert_eq!(record.started_at, None);
        assert_eq!(record.scheduled_time, t0() + secs(5));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *runs.lock().unwrap(),
        [("kept".to_owned(), t0() + secs(5))],
        "only the unchanged job ran at 00:05"
    );
    let paused = scheduler.get_job("paused").await.unwrap().unwrap();
    assert!(paused.paused);
    assert_eq!(paused.next_run_time, None);
    assert!(scheduler.get_job("removed").await.unwrap().is_none());

    // The moved job runs at its new time, the resumed one at its next.
    clock.set(t0() + secs(7));
    common::wait_for_runs(&runs, 2).await;
    clock.set(t0() + secs(21));
    let resumed = scheduler.resume_job("paused").await.unwrap().unwrap();
    assert_eq!(resumed.next_run_time, Some(t0() + secs(25)));
    clock.set(t0() + secs(25));
    common::wait_for_runs(&runs, 3).await;
    let mut ran = runs.lock().unwrap().clone();
    ran.sort();
    assert_eq!(
        ran,
        [
            ("kept".to_owned(), t0() + secs(5)),
            ("moved".to_owned(), t0() + secs(7)),
            ("paused".to_owned(), t0() + secs(25)),
        ]
    );
    scheduler.shutdown(None).await;
}

/// Runs due at one instant are checked together by their start gate, the first few
/// and then the rest (`src/executor/start_gate.rs`), yet each is judged as if alone: a
/// job paused or removed through another node after its run was handed over is
/// skipped, whichever chunk it falls in, and every other run starts once, on time,
/// with its slot freed after it. Jobs held by their run (one-off) and jobs written
/// back at their run's time (`max_instances = 3`) are mixed, in both chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_checked_together_at_their_gate_are_each_judged_as_if_alone() {
    use kairos::store::memory::MemoryStore;
    use kairos::store::prelude::*;
    use std::sync::Arc;

    let clock = ManualClock::new(t0());
    let (tasks, runs) = recording_tasks();
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let scheduler = Scheduler::builder()
        .id("a")
        .clock(clock.clone())
        .store_shared("default", Arc::clone(&store))
        .tasks(tasks)
        .fire_ahead(Duration::from_secs(10))
        .build();
    // Another node on the same store; it only makes changes.
    let other = Scheduler::builder()
        .id("b")
        .clock(clock.clone())
        .store_shared("default", Arc::clone(&store))
        .tasks(recording_tasks().0)
        .build();
    let mut events = scheduler.subscribe();
    let jobs = 150;
    for index in 0..jobs {
        let mut spec = if index % 2 == 0 {
            JobSpec::new("record", at(5))
        } else {
            JobSpec::new("record", every_ten_from(5))
        };
        spec.options.max_instances = Some(if index % 2 == 0 { 1 } else { 3 });
        scheduler
            .add_job(spec.with_id(format!("job-{index:03}")))
            .await
            .unwrap();
    }
    scheduler.start();
    handed_over(&mut events, jobs).await;
    let (mut paused, mut removed) = (Vec::new(), Vec::new());
    for index in 0..jobs {
        let id = format!("job-{index:03}");
        match index % 10 {
            3 => {
                other.pause_job(&id).await.unwrap();
                paused.push(id);
            }
            7 => {
                other.remove_job(&id).await.unwrap();
                removed.push(id);
            }
            _ => {}
        }
    }
    clock.set(t0() + secs(5));
    let started = jobs - paused.len() - removed.len();
    common::wait_for_runs(&runs, started).await;
    for id in paused.iter().chain(&removed) {
        let record = record_of(&scheduler, id).await;
        assert_eq!(
            record.outcome,
            kairos::history::RunOutcome::Skipped,
            "{record:?}"
        );
        assert_eq!(record.started_at, None, "{record:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ran: Vec<String> = runs
        .lock()
        .unwrap()
        .iter()
        .map(|(id, time)| {
            assert_eq!(*time, t0() + secs(5), "{id} ran at its time");
            id.clone()
        })
        .collect();
    ran.sort();
    let expected: Vec<String> = (0..jobs)
        .filter(|index| index % 10 != 3 && index % 10 != 7)
        .map(|index| format!("job-{index:03}"))
        .collect();
    assert_eq!(ran, expected, "every unchanged job ran once");
    for record in scheduler.runs(None, 1000).await.unwrap() {
        if record.outcome == kairos::history::RunOutcome::Success {
            assert_eq!(record.started_at, Some(record.scheduled_time), "{record:?}");
        }
    }
    // Their slots were claimed at their time and freed by their records: a claim
    // under a limit of one finds each recurring job's slots all free (the one-off jobs
    // are gone, done).
    for index in (0..jobs).filter(|index| index % 2 == 1 && index % 10 != 3 && index % 10 != 7) {
        let id = format!("job-{index:03}");
        let probe = kairos::store::InstanceClaim {
            job_id: id.clone(),
            max_instances: 1,
            run_times: Vec::new(),
            queues: false,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store
            .claim_instances("probe", std::slice::from_ref(&probe))
            .await
            .unwrap()
            != [true]
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{id} still holds a slot"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store.release_instance(&id, "probe").await.unwrap();
    }
    for index in (0..jobs).filter(|index| index % 2 == 0 && index % 10 != 3 && index % 10 != 7) {
        let id = format!("job-{index:03}");
        assert!(
            store.get_job(&id).await.unwrap().is_none(),
            "{id} ran and is done"
        );
    }
    for id in &paused {
        assert!(store.get_job(id).await.unwrap().unwrap().paused, "{id}");
    }
    for id in &removed {
        assert!(store.get_job(id).await.unwrap().is_none(), "{id}");
    }
    scheduler.shutdown(None).await;
}
