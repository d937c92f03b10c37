//! The `overlap` job option on the thread pool (docs/lifecycle.md, "When the limit is
//! reached"): what a run due while `max_instances` runs of its job execute does —
//! skipped, queued behind them (one waits per job), or replacing the oldest — for
//! scheduled runs and for runs started by hand (run now, with and without `force`).
//! The process pool's side is in tests/process_pool.rs.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{secs, step_to, t0};
use kairos::clock::ManualClock;
use kairos::history::{RunOutcome, RunRecord};
use kairos::job::{JobChanges, JobSpec, Overlap};
use kairos::scheduler::Scheduler;
use kairos::store::memory::MemoryStore;
use kairos::task::TaskRegistry;
use kairos::trigger::TriggerSpec;
use serde_json::json;

use common::{slow_task, Started};

fn every(seconds: u64) -> TriggerSpec {
    serde_json::from_value(json!({
        "type": "interval", "seconds": seconds, "start_date": t0().to_rfc3339(),
    }))
    .unwrap()
}

fn ms(millis: i64) -> TimeDelta {
    TimeDelta::milliseconds(millis)
}

/// Every run record of `job_id`, oldest scheduled time first (ties: by end).
async fn records(scheduler: &Scheduler, job_id: &str) -> Vec<RunRecord> {
    let mut runs = scheduler.runs(Some(job_id), 1000).await.unwrap();
    runs.sort_by_key(|run| (run.scheduled_time, run.finished_at));
    runs
}

/// A running scheduler on a manual clock at t0 with one job `j` of the `slow` task
/// (runs of `took_ms`), every `every_s` seconds, `max_instances = 1` and `overlap`.
async fn scheduler_with(
    overlap: Overlap,
    every_s: u64,
    took_ms: u64,
) -> (Scheduler, ManualClock, Started) {
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_millis(took_ms));
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .store("default", MemoryStore::new())
        .tasks(tasks)
        .build();
    let mut spec = JobSpec::new("slow", every(every_s)).with_id("j");
    spec.options.max_instances = Some(1);
    spec.options.overlap = Some(overlap);
    scheduler.add_job(spec).await.unwrap();
    scheduler.start();
    (scheduler, clock, started)
}

/// No two started runs overlap in time.
fn assert_one_at_a_time(runs: &[RunRecord]) {
    let mut ran: Vec<(DateTime<Utc>, DateTime<Utc>)> = runs
        .iter()
        .filter_map(|run| run.started_at.map(|start| (start, run.finished_at)))
        .collect();
    ran.sort();
    for pair in ran.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two runs at once: {pair:?}\n{runs:#?}"
        );
    }
}

/// Every 1 s, runs of 2.5 s, `max_instances = 1`, `overlap = "queue"`: the run of
/// 1 s waits and starts late, when the run of 0 s ends; the run of 2 s, due while it
/// waits, is skipped and says so; never two at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_starts_late_when_the_running_one_ends_and_one_waits_at_most() {
    let (scheduler, clock, _) = scheduler_with(Overlap::Queue, 1, 2500).await;
    step_to(&clock, t0() + ms(7_600), Duration::from_millis(50)).await;
    let runs = records(&scheduler, "j").await;
    scheduler.shutdown(None).await;
    assert_one_at_a_time(&runs);
    let find = |second: i64| {
        runs.iter()
            .filter(|run| run.scheduled_time == t0() + secs(second))
            .collect::<Vec<_>>()
    };
    // 0 s runs on time (within a step of the test's clock); 1 s waits for it and
    // starts at its end, about 2.5 s.
    let first = find(0)[0];
    assert!(first.started_at.unwrap() - t0() <= ms(100), "{runs:#?}");
    let queued = find(1);
    assert_eq!(queued.len(), 1, "{runs:#?}");
    assert_eq!(queued[0].outcome, RunOutcome::Success, "{runs:#?}");
    let late = queued[0].started_at.unwrap() - first.finished_at;
    assert!(
        late >= TimeDelta::zero() && late <= ms(200),
        "the queued run starts as the running one ends: {runs:#?}"
    );
    // 2 s came while 1 s waited: skipped, saying why.
    let skipped = find(2);
    assert_eq!(skipped.len(), 1, "{runs:#?}");
    assert_eq!(skipped[0].outcome, RunOutcome::Skipped);
    let why = skipped[0].error.clone().unwrap_or_default();
    assert!(
        why.contains("already waiting") && why.contains("overlap = queue"),
        "{why}"
    );
    // And so on: 3 s waits for 1 s (ends about 5 s), 4 s is skipped.
    assert_eq!(find(3)[0].outcome, RunOutcome::Success, "{runs:#?}");
    assert!(find(3)[0].started_at.unwrap() >= queued[0].finished_at);
    assert_eq!(find(4)[0].outcome, RunOutcome::Skipped, "{runs:#?}");
}

/// `overlap = "skip"` (the default) on the same job: today's behaviour, the times
/// that come while a run goes are skipped and nothing runs late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_stays_the_default_and_skips_what_comes_during_a_run() {
    let (scheduler, clock, _) = scheduler_with(Overlap::Skip, 1, 2500).await;
    assert_eq!(
        scheduler.get_job("j").await.unwrap().unwrap().overlap,
        Overlap::Skip
    );
    step_to(&clock, t0() + ms(3_600), Duration::from_millis(50)).await;
    let runs = records(&scheduler, "j").await;
    scheduler.shutdown(None).await;
    assert_one_at_a_time(&runs);
    for run in &runs {
        if let Some(started) = run.started_at {
            assert!(
                started - run.scheduled_time < ms(200),
                "nothing runs late: {runs:#?}"
            );
        }
    }
    let skipped = |second: i64| {
        runs.iter().any(|run| {
            run.scheduled_time == t0() + secs(second) && run.outcome == RunOutcome::Skipped
        })
    };
    assert!(skipped(1) && skipped(2), "{runs:#?}");
}

/// Every 1 s, runs of 2.5 s, `overlap = "replace"`: at 1 s the run of 0 s is stopped
/// (its task cancelled) and recorded as replaced by the run of 1 s, which starts at
/// its time; and so on each second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacing_run_stops_the_running_one_and_starts_at_its_time() {
    let (scheduler, clock, started) = scheduler_with(Overlap::Replace, 1, 2500).await;
    step_to(&clock, t0() + ms(3_500), Duration::from_millis(50)).await;
    let runs = records(&scheduler, "j").await;
    scheduler.shutdown(None).await;
    assert_one_at_a_time(&runs);
    for second in 0..3 {
        let time = t0() + secs(second);
        let run = runs
            .iter()
            .find(|run| run.scheduled_time == time)
            .unwrap_or_else(|| panic!("no run of {time}: {runs:#?}"));
        let start = run.started_at.unwrap_or_else(|| panic!("{run:?}"));
        assert!(start - time <= ms(200), "starts at its time: {runs:#?}");
        assert_eq!(run.outcome, RunOutcome::Error, "{run:?}");
        let why = run.error.clone().unwrap_or_default();
        let by = (time + secs(1)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        assert_eq!(
            why,
            format!("replaced by the run of {by} (overlap = replace)")
        );
        assert!(run.finished_at - (time + secs(1)) <= ms(200), "{run:?}");
    }
    // The run of 3 s was still going at 3.5 s: it alone started after 2 s.
    let starts = started.lock().unwrap().clone();
    assert_eq!(starts.len(), 4, "{starts:?}");
}

/// Run now obeys the job's policy, and `force` overrides it: with a run going and
/// `overlap = "queue"`, a run now waits (and starts when the running one ends), a
/// second one is skipped, and a forced one starts at once beside the running one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_waits_under_queue_and_force_starts_it_regardless() {
    let (scheduler, clock, started) = scheduler_with(Overlap::Queue, 100, 5_000).await;
    step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
    assert_eq!(started.lock().unwrap().len(), 1);
    let waiting = scheduler.run_job_now("j").await.unwrap();
    // Its executor has it waiting by the next step; a second one comes after.
    step_to(&clock, t0() + ms(600), Duration::from_millis(50)).await;
    let refused = scheduler.run_job_now("j").await.unwrap();
    step_to(&clock, t0() + ms(1_000), Duration::from_millis(50)).await;
    assert_eq!(started.lock().unwrap().len(), 1, "the run now waits");
    let forced = scheduler.run_job_now_with("j", true).await.unwrap();
    step_to(&clock, t0() + ms(1_500), Duration::from_millis(50)).await;
    assert_eq!(
        started.lock().unwrap().len(),
        2,
        "the forced run starts at once"
    );
    // The forced run counts: the waiting one starts when both have ended (about 6 s).
    step_to(&clock, t0() + ms(12_000), Duration::from_millis(50)).await;
    let runs = scheduler.runs(Some("j"), 100).await.unwrap();
    scheduler.shutdown(None).await;
    let by_id = |id: &str| runs.iter().find(|run| run.run_id == id).cloned().unwrap();
    let refused = by_id(&refused);
    assert_eq!(refused.outcome, RunOutcome::Skipped, "{runs:#?}");
    assert!(refused.error.unwrap().contains("already waiting"));
    let forced = by_id(&forced);
    assert_eq!(forced.outcome, RunOutcome::Success, "{runs:#?}");
    let forced_start = forced.started_at.unwrap();
    assert!(forced_start < t0() + ms(1_100), "{forced:?}");
    let waiting = by_id(&waiting);
    assert_eq!(waiting.outcome, RunOutcome::Success, "{runs:#?}");
    assert!(
        waiting.started_at.unwrap() >= forced.finished_at,
        "waits for both: {runs:#?}"
    );
}

/// Under `skip`, run now is skipped while the limit is reached, and `force` still
/// starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_is_skipped_under_skip_unless_forced() {
    let (scheduler, clock, started) = scheduler_with(Overlap::Skip, 100, 5_000).await;
    step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
    let skipped = scheduler.run_job_now("j").await.unwrap();
    let forced = scheduler.run_job_now_with("j", true).await.unwrap();
    step_to(&clock, t0() + ms(1_000), Duration::from_millis(50)).await;
    assert_eq!(started.lock().unwrap().len(), 2);
    let runs = scheduler.runs(Some("j"), 100).await.unwrap();
    scheduler.shutdown(None).await;
    let skipped = runs.iter().find(|run| run.run_id == skipped).unwrap();
    assert_eq!(skipped.outcome, RunOutcome::Skipped, "{runs:#?}");
    assert!(!runs
        .iter()
        .any(|run| run.run_id == forced && run.outcome == RunOutcome::Skipped));
}

/// Run now under `replace` stops the running run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_under_replace_stops_the_running_run() {
    let (scheduler, clock, started) = scheduler_with(Overlap::Replace, 100, 5_000).await;
    step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
    let replacing = scheduler.run_job_now("j").await.unwrap();
    step_to(&clock, t0() + ms(1_000), Duration::from_millis(50)).await;
    assert_eq!(started.lock().unwrap().len(), 2);
    let runs = scheduler.runs(Some("j"), 100).await.unwrap();
    scheduler.shutdown(None).await;
    let first = runs.iter().find(|run| run.scheduled_time == t0()).unwrap();
    assert!(
        first
            .error
            .as_deref()
            .unwrap_or("")
            .starts_with("replaced by the run of"),
        "{runs:#?}"
    );
    assert!(runs
        .iter()
        .all(|run| run.run_id != replacing || run.started_at.is_some()));
}

/// A queued run whose job is paused meanwhile is dropped, recorded as skipped with
/// the reason; so is one still waiting when the scheduler stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_is_dropped_with_the_reason_when_paused_or_stopped() {
    let (scheduler, clock, _) = scheduler_with(Overlap::Queue, 1, 5_000).await;
    step_to(&clock, t0() + ms(1_200), Duration::from_millis(50)).await;
    scheduler.pause_job("j").await.unwrap();
    step_to(&clock, t0() + ms(1_400), Duration::from_millis(50)).await;
    let runs = records(&scheduler, "j").await;
    let dropped = runs
        .iter()
        .find(|run| run.scheduled_time == t0() + secs(1))
        .unwrap_or_else(|| panic!("{runs:#?}"));
    assert_eq!(dropped.outcome, RunOutcome::Skipped);
    // Seen through this node's withdrawal or in the store, whichever looks first.
    let why = dropped.error.as_deref().unwrap_or("");
    assert!(
        why.contains("paused") && why.contains("while this run waited"),
        "{dropped:?}"
    );
    // Resumed, the next time waits again; a shutdown records it.
    scheduler.resume_job("j").await.unwrap();
    step_to(&clock, t0() + ms(3_300), Duration::from_millis(50)).await;
    scheduler.shutdown(Some(Duration::from_millis(500))).await;
    let runs = records(&scheduler, "j").await;
    assert!(
        runs.iter().any(|run| run.outcome == RunOutcome::Skipped
            && run
                .error
                .as_deref()
                .unwrap_or("")
                .starts_with("the scheduler stopped while this run waited")),
        "{runs:#?}"
    );
}

/// `overlap` is changed like the other options, and kept by the store.
#[tokio::test]
async fn overlap_is_modified_and_kept() {
    let (scheduler, _, _) = scheduler_with(Overlap::Skip, 100, 10).await;
    let changed = scheduler
        .modify_job(
            "j",
            JobChanges {
                overlap: Some(Overlap::Replace),
                ..JobChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.overlap, Overlap::Replace);
    assert_eq!(
        scheduler.get_job("j").await.unwrap().unwrap().overlap,
        Overlap::Replace
    );
    let json = serde_json::to_value(scheduler.get_job("j").await.unwrap().unwrap()).unwrap();
    assert_eq!(json["overlap"], "replace");
    scheduler.shutdown(None).await;
}

/// A run replaced by a newer one did not fail: a job with retries does not try the
/// replaced run's time again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_run_is_not_retried() {
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_secs(5));
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .store("default", MemoryStore::new())
        .tasks(tasks)
        .build();
    let mut spec = JobSpec::new("slow", every(100)).with_id("j");
    spec.options.overlap = Some(Overlap::Replace);
    spec.options.retry = Some(kairos::job::RetryPolicy::attempts(3));
    scheduler.add_job(spec).await.unwrap();
    scheduler.start();
    step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
    scheduler.run_job_now("j").await.unwrap();
    step_to(&clock, t0() + ms(1_000), Duration::from_millis(50)).await;
    assert_eq!(started.lock().unwrap().len(), 2);
    let runs = records(&scheduler, "j").await;
    let replaced = runs.iter().find(|run| run.scheduled_time == t0()).unwrap();
    assert!(
        replaced
            .error
            .as_deref()
            .unwrap_or("")
            .starts_with("replaced by the run of"),
        "{runs:#?}"
    );
    let job = scheduler.get_job("j").await.unwrap().unwrap();
    assert_eq!(job.retrying(), None, "{job:?}");
    assert_eq!(job.next_run_time, Some(t0() + secs(100)));
    scheduler.shutdown(None).await;
}

/// Backfill obeys the policy too: under `queue`, a backfill asked while a run goes
/// waits for it to end, then runs its times one after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_under_queue_waits_for_the_running_run() {
    let (scheduler, clock, started) = scheduler_with(Overlap::Queue, 100, 2_000).await;
    step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
    let (count, _) = scheduler
        .backfill_job("j", t0() + secs(100), t0() + secs(200))
        .await
        .unwrap();
    assert_eq!(count, 2);
    step_to(&clock, t0() + ms(1_500), Duration::from_millis(50)).await;
    assert_eq!(started.lock().unwrap().len(), 1, "the backfill waits");
    step_to(&clock, t0() + ms(6_500), Duration::from_millis(50)).await;
    let runs = records(&scheduler, "j").await;
    scheduler.shutdown(None).await;
    assert_one_at_a_time(&runs);
    let first = &runs[0];
    let filled: Vec<&RunRecord> = runs[1..].iter().collect();
    assert_eq!(filled.len(), 2, "{runs:#?}");
    for run in filled {
        assert_eq!(run.outcome, RunOutcome::Success, "{runs:#?}");
        assert!(run.started_at.unwrap() >= first.finished_at, "{runs:#?}");
    }
}

/// Two schedulers, `a` and `b`, on one shared memory store, with `tasks` and `clock`.
fn two_nodes(clock: &ManualClock, tasks: &TaskRegistry) -> (Scheduler, Scheduler) {
    let store: Arc<dyn kairos::store::JobStore> = Arc::new(MemoryStore::new());
    let node = |id: &str| {
        Scheduler::builder()
            .id(id)
            .clock(clock.clone())
            .store_shared("default", Arc::clone(&store))
            .tasks(tasks.clone())
            .build()
    };
    (node("a"), node("b"))
}

/// In a cluster the slots are the store's: a run now through a node that runs nothing
/// of the job waits for the run on the other node (found by its bounded back-off,
/// docs/lifecycle.md), and under `replace` does not stop a run of another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waits_for_a_run_on_another_node_and_replace_leaves_it_be() {
    for overlap in [Overlap::Queue, Overlap::Replace] {
        let clock = ManualClock::new(t0());
        let (tasks, started) = slow_task(&clock, Duration::from_secs(5));
        let (a, b) = two_nodes(&clock, &tasks);
        let mut spec = JobSpec::new("slow", every(100)).with_id("j");
        spec.options.overlap = Some(overlap);
        a.add_job(spec).await.unwrap();
        a.start();
        step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
        assert_eq!(started.lock().unwrap().len(), 1, "node a runs the job");
        b.start();
        let waiting = b.run_job_now("j").await.unwrap();
        step_to(&clock, t0() + ms(4_500), Duration::from_millis(50)).await;
        assert_eq!(started.lock().unwrap().len(), 1, "{overlap}: b's run waits");
        step_to(&clock, t0() + ms(12_000), Duration::from_millis(50)).await;
        let runs = records(&a, "j").await;
        a.shutdown(None).await;
        b.shutdown(None).await;
        assert_one_at_a_time(&runs);
        let first = runs.iter().find(|run| run.scheduled_time == t0()).unwrap();
        assert_eq!(first.outcome, RunOutcome::Success, "{overlap}: {runs:#?}");
        let waited = runs.iter().find(|run| run.run_id == waiting).unwrap();
        assert_eq!(waited.outcome, RunOutcome::Success, "{overlap}: {runs:#?}");
        let late = waited.started_at.unwrap() - first.finished_at;
        assert!(
            late >= TimeDelta::zero() && late <= secs(5),
            "{overlap}: found within the back-off: {runs:#?}"
        );
    }
}

/// Regression: a waiting run flushed this node's records before each claim, and the
/// flush (with no record in it) woke the waiting runs again, so a run waiting for a run
/// on another node claimed in a busy loop instead of on its back-off. With the clock
/// standing still, it claims a bounded number of times, however long it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_claims_on_its_back_off_not_in_a_busy_loop() {
    let clock = ManualClock::new(t0());
    let (tasks, _) = slow_task(&clock, Duration::from_secs(5));
    let (store, faults) = common::FaultyStore::new();
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .store("default", store)
        .tasks(tasks)
        .build();
    let mut spec = JobSpec::new("slow", every(100)).with_id("j");
    spec.options.overlap = Some(Overlap::Queue);
    scheduler.add_job(spec).await.unwrap();
    scheduler.start();
    step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
    scheduler.run_job_now("j").await.unwrap();
    step_to(&clock, t0() + ms(600), Duration::from_millis(50)).await;
    let before = faults.claim_calls.load(std::sync::atomic::Ordering::SeqCst);
    // Real time passes, simulated time does not: nothing is due to claim again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = faults.claim_calls.load(std::sync::atomic::Ordering::SeqCst);
    scheduler.shutdown(None).await;
    assert!(
        after - before <= 2,
        "{} claims while the clock stood still",
        after - before
    );
}

/// "Why didn't it run?" for a job that queues (docs/lifecycle.md, "When the limit is
/// reached"): a scheduled time that waited behind a running run says so, with the run
/// it waited behind and when it started; and while a run waits on this node, the job's
/// own answer says it is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_labels_a_queued_run_and_a_run_waiting_now() {
    // Every 1 s, runs of 2.5 s: 1 s waits behind 0 s and starts at about 2.5 s.
    let (scheduler, clock, _) = scheduler_with(Overlap::Queue, 1, 2500).await;
    step_to(&clock, t0() + ms(3_600), Duration::from_millis(50)).await;
    // At 3.6 s, 1 s runs (until about 5 s) and 3 s waits behind it.
    let now = scheduler.explain_job("j").await.unwrap();
    assert_eq!(now.next_run_reason, "queued", "{now:#?}");
    assert!(
        now.summary.starts_with("Queued") && now.summary.contains("overlap = queue"),
        "{}",
        now.summary
    );
    // Once 1 s has ended (about 5 s), its record says it waited.
    step_to(&clock, t0() + ms(5_600), Duration::from_millis(50)).await;
    let now = scheduler.explain_job("j").await.unwrap();
    let runs = records(&scheduler, "j").await;
    let explained = now
        .recent
        .iter()
        .find(|time| time.scheduled_time == t0() + secs(1))
        .unwrap_or_else(|| panic!("1 s is explained: {now:#?}"));
    let first = runs.iter().find(|run| run.scheduled_time == t0()).unwrap();
    assert_eq!(explained.queued_behind, Some(t0()), "{explained:#?}");
    let started = explained.started_at.unwrap();
    assert!(started >= first.finished_at, "{explained:#?}\n{runs:#?}");
    assert!(
        explained.detail.contains("queued behind the run of")
            && explained.detail.contains(&started.to_string()),
        "{}",
        explained.detail
    );
    // The run of 0 s did not wait: it started on time.
    let on_time = now
        .recent
        .iter()
        .find(|time| time.scheduled_time == t0())
        .unwrap();
    assert_eq!(on_time.queued_behind, None, "{on_time:#?}");
    assert!(!on_time.detail.contains("queued"), "{}", on_time.detail);
    scheduler.shutdown(None).await;
}

/// With `overlap = "skip"` a late start is not labelled as queued: nothing waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_does_not_label_runs_of_a_job_that_skips_as_queued() {
    let (scheduler, clock, _) = scheduler_with(Overlap::Skip, 1, 2500).await;
    step_to(&clock, t0() + ms(3_600), Duration::from_millis(50)).await;
    let now = scheduler.explain_job("j").await.unwrap();
    assert_ne!(now.next_run_reason, "queued", "{now:#?}");
    assert!(
        now.recent.iter().all(|time| time.queued_behind.is_none()),
        "{now:#?}"
    );
    scheduler.shutdown(None).await;
}

/// In a cluster, a run waiting under `replace` behind the runs of another node, each
/// newer than it and each replacing the one before there, never got the slot: it
/// waited without end and left no trace. The newest run wins: once its claim is
/// refused while a newer run of its job goes (on any node), it ends, recorded as
/// skipped, "replaced by the run of T", and `explain` calls it replaced
/// (docs/lifecycle.md, "In a cluster").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_under_replace_is_replaced_by_a_newer_run_of_another_node() {
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_millis(2_500));
    let (a, b) = two_nodes(&clock, &tasks);
    let mut spec = JobSpec::new("slow", every(1)).with_id("j");
    spec.options.max_instances = Some(1);
    spec.options.overlap = Some(Overlap::Replace);
    a.add_job(spec).await.unwrap();
    a.start();
    // b takes no scheduled time: every one is a's, each replacing the one before.
    b.start();
    b.pause();
    step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
    assert_eq!(started.lock().unwrap().len(), 1, "node a runs the job");
    let waiting = b.run_job_now("j").await.unwrap();
    step_to(&clock, t0() + ms(4_600), Duration::from_millis(50)).await;
    // A loaded machine may write the record a moment later, in real time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut runs = records(&a, "j").await;
    while !runs.iter().any(|run| run.run_id == waiting) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        runs = records(&a, "j").await;
    }
    let explained = b.explain_job("j").await.unwrap();
    a.shutdown(None).await;
    b.shutdown(None).await;
    assert_one_at_a_time(&runs);
    let superseded = runs
        .iter()
        .find(|run| run.run_id == waiting)
        .unwrap_or_else(|| panic!("the run now has a record: {runs:#?}"));
    assert_eq!(superseded.outcome, RunOutcome::Skipped, "{runs:#?}");
    assert_eq!(superseded.started_at, None, "{runs:#?}");
    // Replaced by a newer run: the one at 1 s, or, when a loaded machine let simulated
    // time run ahead of the wait's claims, a later one of node a's.
    let error = superseded.error.as_deref().unwrap_or("");
    let newer = error
        .strip_prefix("replaced by the run of ")
        .and_then(|rest| rest.split(" (overlap = replace)").next())
        .and_then(|time| DateTime::parse_from_rfc3339(time).ok())
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("replaced by the run of a newer time: {error}"));
    assert!(newer > superseded.scheduled_time, "{error}");
    // Within the back-off after the newer run started.
    assert!(superseded.finished_at <= newer + secs(5), "{runs:#?}");
    let time = explained
        .recent
        .iter()
        .find(|time| time.scheduled_time == superseded.scheduled_time)
        .unwrap_or_else(|| panic!("the run now is explained: {explained:#?}"));
    assert_eq!(time.outcome, "replaced", "{time:#?}");
    assert!(
        time.detail.contains("replaced by the run of"),
        "{}",
        time.detail
    );
}

/// Regression: in a cluster, a queued run waiting on one node lost every freed slot to
/// the runs of another node that kept getting due times of its job. The node whose run
/// ended woke its own waiting run at once, and the first node learned of the free slot
/// only at its back-off: it waited without end. Now the waiting run is its job's
/// waiter in the store, which keeps its slot from the other node's runs: `a`'s run now
/// starts when `b`'s running run ends (within the back-off), and `b`'s times due while
/// it waits are skipped, at most one run of the job waiting in the cluster
/// (docs/lifecycle.md, "In a cluster").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_of_one_node_is_not_overtaken_by_the_runs_of_another() {
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_millis(2_500));
    let (a, b) = two_nodes(&clock, &tasks);
    let mut spec = JobSpec::new("slow", every(1)).with_id("j");
    spec.options.max_instances = Some(1);
    spec.options.overlap = Some(Overlap::Queue);
    b.add_job(spec).await.unwrap();
    // a takes no scheduled time: every one is b's.
    a.start();
    a.pause();
    b.start();
    step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
    assert_eq!(started.lock().unwrap().len(), 1, "node b runs the job");
    let waiting = a.run_job_now("j").await.unwrap();
    step_to(&clock, t0() + ms(9_000), Duration::from_millis(50)).await;
    // A loaded machine may write the record a moment later, in real time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut runs = records(&b, "j").await;
    while !runs.iter().any(|run| run.run_id == waiting) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        runs = records(&b, "j").await;
    }
    a.shutdown(None).await;
    b.shutdown(None).await;
    assert_one_at_a_time(&runs);
    let first = runs.iter().find(|run| run.scheduled_time == t0()).unwrap();
    assert_eq!(first.outcome, RunOutcome::Success, "{runs:#?}");
    let waited = runs
        .iter()
        .find(|run| run.run_id == waiting)
        .unwrap_or_else(|| panic!("the run now ran: {runs:#?}"));
    assert_eq!(waited.outcome, RunOutcome::Success, "{runs:#?}");
    let start = waited.started_at.unwrap();
    let late = start - first.finished_at;
    assert!(
        late >= TimeDelta::zero() && late <= secs(5),
        "it starts when b's run ends, within the back-off: {runs:#?}"
    );
    // b's times from 1 s to a's start came while a's run waited: skipped, saying why,
    // and none ran before it.
    let behind: Vec<&RunRecord> = runs
        .iter()
        .filter(|run| {
            run.run_id != waiting && run.scheduled_time > t0() && run.scheduled_time < start
        })
        .collect();
    assert!(behind.len() >= 2, "{runs:#?}");
    for run in behind {
        assert_eq!(run.outcome, RunOutcome::Skipped, "{runs:#?}");
        let why = run.error.clone().unwrap_or_default();
        assert!(
            why.contains("already waiting") && why.contains("overlap = queue"),
            "{why}"
        );
    }
}

/// A run now of a job that queues obeys the cluster's one waiter as a due run does:
/// `a`'s run now waits as the job's waiter while `b` runs the job; `b`'s run ends,
/// and `b` is asked to run the job now, most often before `a`'s next claim (its
/// back-off) has heard of the free slot. `b`'s run now does not take the slot `a`
/// waits for: it is skipped behind the waiting run, saying why, or (if `a`'s run has
/// started by then) waits and runs after it (docs/lifecycle.md, "In a cluster").
///
/// Whether `a` hears of the free slot before `b`'s run now varies from play to play,
/// so three plays are made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_now_on_one_node_leaves_the_freed_slot_to_another_nodes_waiter() {
    for _ in 0..3 {
        run_now_beside_another_nodes_waiter().await;
    }
}

/// One play of [`a_run_now_on_one_node_leaves_the_freed_slot_to_another_nodes_waiter`].
async fn run_now_beside_another_nodes_waiter() {
    let clock = ManualClock::new(t0());
    let (tasks, started) = slow_task(&clock, Duration::from_millis(2_500));
    let (a, b) = two_nodes(&clock, &tasks);
    let mut spec = JobSpec::new("slow", every(60)).with_id("j");
    spec.options.max_instances = Some(1);
    spec.options.overlap = Some(Overlap::Queue);
    b.add_job(spec).await.unwrap();
    // a takes no scheduled time: the one that comes is b's.
    a.start();
    a.pause();
    b.start();
    step_to(&clock, t0() + ms(500), Duration::from_millis(50)).await;
    assert_eq!(started.lock().unwrap().len(), 1, "node b runs the job");
    let waiting = a.run_job_now("j").await.unwrap();
    // b's run ends at 2.5 s; a's claims come at its back-off (0.7 s, 1.1 s, 1.9 s,
    // 3.5 s), so at 2.6 s the slot is free and a has not claimed it yet.
    step_to(&clock, t0() + ms(2_600), Duration::from_millis(50)).await;
    let overtaking = b.run_job_now("j").await.unwrap();
    step_to(&clock, t0() + ms(9_000), Duration::from_millis(50)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut runs = records(&b, "j").await;
    let both = |runs: &[RunRecord]| {
        runs.iter().any(|run| run.run_id == waiting)
            && runs.iter().any(|run| run.run_id == overtaking)
    };
    while !both(&runs) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        runs = records(&b, "j").await;
    }
    a.shutdown(None).await;
    b.shutdown(None).await;
    assert_one_at_a_time(&runs);
    let waited = runs
        .iter()
        .find(|run| run.run_id == waiting)
        .unwrap_or_else(|| panic!("a's run now ran: {runs:#?}"));
    assert_eq!(waited.outcome, RunOutcome::Success, "{runs:#?}");
    let later = runs
        .iter()
        .find(|run| run.run_id == overtaking)
        .unwrap_or_else(|| panic!("b's run now is recorded: {runs:#?}"));
    match later.started_at {
        Some(start) => assert!(
            start >= waited.finished_at,
            "b's run now went after a's waiting run: {runs:#?}"
        ),
        None => {
            assert_eq!(later.outcome, RunOutcome::Skipped, "{runs:#?}");
            let why = later.error.clone().unwrap_or_default();
            assert!(
                why.contains("already waiting") && why.contains("overlap = queue"),
                "{why}"
            );
        }
    }
}
