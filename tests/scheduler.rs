//! The scheduler end to end, on simulated time: jobs are added through the [`Scheduler`]
//! handle, the clock is a [`ManualClock`] the test moves, and the test waits for the
//! scheduler's events, never for real time to pass. Every wait has a real-time timeout
//! as a safety net, so a scheduler that does not do what it should fails the test
//! instead of hanging it. The only real sleeps are short (at most 200 ms): in
//! [`Harness::settle`], and in checks that something did *not* happen (a paused
//! scheduler, a shutdown that must still be waiting).
//!
//! docs/semantics.md, "Semantics users rely on": misfires, coalesce, max_instances, jitter and
//! delivery.
//!
//! # How a test knows the loop is done with a moment
//! [`Harness::settle`] adds a one-off "sentinel" job due at the clock's current time and
//! waits until the loop has removed it. Jobs are taken earliest first (ties by id, and
//! sentinel ids sort last), so by then the loop has handled everything due at that
//! moment: a job that did not run by then was not going to.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use kairos::clock::{Clock, ManualClock};
use kairos::executor::pool::ThreadPoolExecutor;
use kairos::history::{RunOutcome, RunRecord};
use kairos::job::{Job, JobChanges, JobSpec};
use kairos::scheduler::{Event, Scheduler, SchedulerBuilder, SchedulerError, SchedulerState};
use kairos::store::memory::MemoryStore;
use kairos::store::prelude::*;
use kairos::store::{Release, StoreError};
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::TriggerSpec;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, Notify, Semaphore};

/// How long any single wait may take in real time before the test fails.
const PATIENCE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Time and triggers
// ---------------------------------------------------------------------------------------

/// Where the simulated clock starts: 2024-01-01T00:00:00Z.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn secs(seconds: i64) -> TimeDelta {
    TimeDelta::seconds(seconds)
}

fn mins(minutes: i64) -> TimeDelta {
    TimeDelta::minutes(minutes)
}

fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339()
}

fn spec(value: serde_json::Value) -> TriggerSpec {
    serde_json::from_value(value).unwrap()
}

/// A one-off trigger at `at`.
fn date(at: DateTime<Utc>) -> TriggerSpec {
    spec(json!({"type": "date", "run_date": rfc3339(at)}))
}

/// Every `seconds`, the first run at `start`.
fn every(seconds: u64, start: DateTime<Utc>) -> TriggerSpec {
    spec(json!({"type": "interval", "seconds": seconds, "start_date": rfc3339(start)}))
}

// ---------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------

/// A registry with `ok`, a task that returns "out" at once (the sentinels use it).
fn tasks() -> TaskRegistry {
    let mut tasks = TaskRegistry::new();
    tasks.register_fn("ok", |_run: TaskRun| async move {
        Ok::<String, TaskFailure>("out".to_owned())
    });
    tasks
}

/// A task that announces each start and then waits for a permit the test hands out,
/// so the test decides when a run ends.
struct Blocker {
    started: mpsc::UnboundedReceiver<TaskRun>,
    permits: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    /// Set when a run's future is dropped or finishes (a stopped run drops it).
    dropped: Arc<AtomicBool>,
}

impl Blocker {
    /// Registers the task as `name`.
    fn register(tasks: &mut TaskRegistry, name: &str) -> Blocker {
        let (sender, started) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let most_running = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let blocker = Blocker {
            started,
            permits: Arc::clone(&permits),
            running: Arc::clone(&running),
            most_running: Arc::clone(&most_running),
            dropped: Arc::clone(&dropped),
        };
        tasks.register_fn(name, move |run: TaskRun| {
            let sender = sender.clone();
            let permits = Arc::clone(&permits);
            let running = Arc::clone(&running);
            let most_running = Arc::clone(&most_running);
            let dropped = Arc::clone(&dropped);
            async move {
                let _guard = SetOnDrop(dropped);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most_running.fetch_max(now, Ordering::SeqCst);
                let _ = sender.send(run.clone());
                permits.acquire().await.unwrap().forget();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<String, TaskFailure>(format!("done {}", run.scheduled_time))
            }
        });
        blocker
    }

    /// Waits until a run has started and returns it.
    async fn started(&mut self) -> TaskRun {
        tokio::time::timeout(PATIENCE, self.started.recv())
            .await
            .expect("a run of the blocking task to start")
            .unwrap()
    }

    /// Lets `count` runs finish.
    fn release(&self, count: usize) {
        self.permits.add_permits(count);
    }
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------

struct Harness {
    scheduler: Scheduler,
    clock: ManualClock,
    events: broadcast::Receiver<Event>,
    /// Every event received so far, in order.
    seen: Vec<Event>,
    /// Whether a wait took the event at the same index of `seen`.
    taken: Vec<bool>,
    sentinels: usize,
}

impl Harness {
    /// A scheduler on a manual clock at [`t0`], with a 4-worker `default` pool.
    fn new(tasks: TaskRegistry) -> Harness {
        Harness::with(tasks, |builder| builder)
    }

    fn with(
        tasks: TaskRegistry,
        configure: impl FnOnce(SchedulerBuilder) -> SchedulerBuilder,
    ) -> Harness {
        let clock = ManualClock::new(t0());
        let builder = Scheduler::builder()
            .clock(clock.clone())
            .tasks(tasks)
            .executor("default", ThreadPoolExecutor::new(4));
        let scheduler = configure(builder).build();
        let events = scheduler.subscribe();
        Harness {
            scheduler,
            clock,
            events,
            seen: Vec::new(),
            taken: Vec::new(),
            sentinels: 0,
        }
    }

    fn start(&mut self) {
        self.scheduler.start();
        assert_eq!(self.scheduler.state(), SchedulerState::Running);
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn advance(&self, step: TimeDelta) {
        self.clock.advance(step.to_std().unwrap());
    }

    async fn add(&self, spec: JobSpec) -> Job {
        self.scheduler.add_job(spec).await.unwrap()
    }

    async fn job(&self, id: &str) -> Option<Job> {
        self.scheduler.get_job(id).await.unwrap()
    }

    async fn runs(&self, id: &str) -> Vec<RunRecord> {
        let mut runs = self.scheduler.runs(Some(id), 1_000).await.unwrap();
        runs.sort_by_key(|run| (run.scheduled_time, run.finished_at));
        runs
    }

    /// Waits for the earliest event that `matches` and that no earlier wait took, and
    /// takes it. Events that did not match stay available to later waits, so waits for
    /// events whose order is not fixed can come in any order.
    async fn wait_for(&mut self, what: &str, matches: impl Fn(&Event) -> bool) -> Event {
        self.drain();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut index = 0;
        loop {
            while index < self.seen.len() {
                if !self.taken[index] && matches(&self.seen[index]) {
                    self.taken[index] = true;
                    return self.seen[index].clone();
                }
                index += 1;
            }
            let received = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match received {
                Err(_) => panic!(
                    "timed out waiting for {what}; clock at {}; events seen: {:#?}",
                    self.now(),
                    self.seen
                ),
                Ok(Err(broadcast::error::RecvError::Lagged(lost))) => {
                    panic!("lost {lost} events while waiting for {what}")
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    panic!("the scheduler is gone while waiting for {what}")
                }
                Ok(Ok(event)) => self.push(event),
            }
        }
    }

    fn push(&mut self, event: Event) {
        self.seen.push(event);
        self.taken.push(false);
    }

    /// Waits for the record of the next finished (or refused) run of `job_id`.
    async fn run_of(&mut self, job_id: &str) -> RunRecord {
        let event = self
            .wait_for(&format!("a run of {job_id}"), |event| {
                run_record(event).is_some_and(|run| run.job_id == job_id)
            })
            .await;
        run_record(&event).cloned().unwrap()
    }

    /// Waits until the loop has handled everything due at the clock's current time
    /// (see the module docs).
    async fn settle(&mut self) {
        self.sentinels += 1;
        let id = format!("~sentinel-{:04}", self.sentinels);
        let now = self.now();
        self.add(JobSpec::new("ok", date(now)).with_id(id.clone()))
            .await;
        self.wait_for(
            &format!("{id} to be removed"),
            |event| matches!(event, Event::JobRemoved { job_id, .. } if *job_id == id),
        )
        .await;
        // The loop stores its new deadline just after the JobRemoved event, and a job
        // added in between does not wake it (see `a_job_added_while_the_loop_is_busy_
        // still_wakes_it`); let it go back to sleep before the test moves on.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Receives the events that arrived without being waited for.
    fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.push(event);
        }
    }

    /// The scheduled times of `job_id`'s runs handed to an executor so far.
    fn submitted(&mut self, job_id: &str) -> Vec<DateTime<Utc>> {
        self.drain();
        self.seen
            .iter()
            .filter_map(|event| match event {
                Event::JobSubmitted {
                    job_id: id,
                    scheduled_time,
                    ..
                } if id == job_id => Some(*scheduled_time),
                _ => None,
            })
            .collect()
    }

    /// The events about `job_id` seen so far.
    fn events_of(&mut self, job_id: &str) -> Vec<Event> {
        self.drain();
        self.seen
            .iter()
            .filter(|event| event_job(event) == Some(job_id))
            .cloned()
            .collect()
    }
}

fn run_record(event: &Event) -> Option<&RunRecord> {
    match event {
        Event::JobExecuted { run } | Event::JobError { run } => Some(run),
        _ => None,
    }
}

fn event_job(event: &Event) -> Option<&str> {
    match event {
        Event::JobAdded { job_id, .. }
        | Event::JobModified { job_id, .. }
        | Event::JobRemoved { job_id, .. }
        | Event::JobSubmitted { job_id, .. }
        | Event::JobMissed { job_id, .. }
        | Event::JobMaxInstances { job_id, .. } => Some(job_id),
        Event::JobExecuted { run } | Event::JobError { run } => Some(&run.job_id),
        _ => None,
    }
}

fn is_removed(event: &Event, id: &str) -> bool {
    matches!(event, Event::JobRemoved { job_id, .. } if job_id == id)
}

// ---------------------------------------------------------------------------------------
// One-off and interval jobs
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_job_runs_once_at_its_time_and_is_removed() {
    let mut h = Harness::new(tasks());
    h.start();
    let job = h
        .add(JobSpec::new("ok", date(t0() + secs(60))).with_id("once"))
        .await;
    assert_eq!(job.next_run_time, Some(t0() + secs(60)));

    h.advance(secs(60));
    let run = h.run_of("once").await;
    assert_eq!(run.outcome, RunOutcome::Success);
    assert_eq!(run.scheduled_time, t0() + secs(60));
    assert_eq!(run.started_at, Some(t0() + secs(60)));
    assert_eq!(run.output.as_deref(), Some("out"));
    h.wait_for("once to be removed", |event| is_removed(event, "once"))
        .await;
    assert_eq!(h.job("once").await, None);

    // It never runs again.
    h.advance(TimeDelta::days(1));
    h.settle().await;
    assert_eq!(h.submitted("once"), vec![t0() + secs(60)]);
    assert_eq!(h.runs("once").await.len(), 1);
}

/// A one-off job leaves the store only when its run has ended: a scheduler that dies
/// before then (its leases freed at restart, or expired) runs it again instead of
/// losing it (tests/crash_restart.rs kills the daemon to show it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_job_stays_in_the_store_until_its_run_ends() {
    let mut tasks = tasks();
    let mut blocker = Blocker::register(&mut tasks, "block");
    let mut h = Harness::new(tasks);
    h.start();
    h.add(JobSpec::new("block", date(t0() + secs(1))).with_id("once"))
        .await;
    h.advance(secs(1));
    blocker.started().await;
    h.settle().await;
    h.drain();
    let job = h.job("once").await.expect("kept while the run goes on");
    assert_eq!(job.next_run_time, Some(t0() + secs(1)));
    assert!(!h.seen.iter().any(|event| is_removed(event, "once")));

    blocker.release(1);
    h.wait_for("once to be removed", |event| is_removed(event, "once"))
        .await;
    assert_eq!(h.job("once").await, None);
    assert_eq!(h.run_of("once").await.outcome, RunOutcome::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_job_fires_at_each_step_on_time() {
    let mut h = Harness::new(tasks());
    h.start();
    h.add(JobSpec::new("ok", every(10, t0() + secs(10))).with_id("tick"))
        .await;
    for step in 1..=6 {
        h.advance(secs(10));
        let run = h.run_of("tick").await;
        let expected = t0() + secs(10 * step);
        assert_eq!(run.outcome, RunOutcome::Success);
        assert_eq!(run.scheduled_time, expected, "step {step}");
        assert_eq!(run.lateness(), Some(TimeDelta::zero()), "step {step}");
    }
    h.settle().await;
    assert_eq!(
        h.job("tick").await.unwrap().next_run_time,
        Some(t0() + secs(70))
    );
    let scheduled: Vec<_> = h
        .runs("tick")
        .await
        .iter()
        .map(|run| run.scheduled_time)
        .collect();
    let expected: Vec<_> = (1..=6).map(|step| t0() + secs(10 * step)).collect();
    assert_eq!(scheduled, expected);
    // Each run's end moved the job on; none removed it (the "job removed" event told
    // the metrics and the alerts to forget a job that was still there).
    assert!(
        !h.events_of("tick")
            .iter()
            .any(|event| is_removed(event, "tick")),
        "{:?}",
        h.events_of("tick")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_interval_job_is_removed_after_its_last_run() {
    let mut h = Harness::new(tasks());
    h.start();
    let trigger = spec(json!({
        "type": "interval", "seconds": 10,
        "start_date": rfc3339(t0() + secs(10)), "end_date": rfc3339(t0() + secs(30)),
    }));
    h.add(JobSpec::new("ok", trigger).with_id("bounded")).await;
    for step in 1..=3 {
        h.advance(secs(10));
        assert_eq!(
            h.run_of("bounded").await.scheduled_time,
            t0() + secs(10 * step)
        );
    }
    h.wait_for("bounded to be removed", |event| {
        is_removed(event, "bounded")
    })
    .await;
    assert_eq!(h.job("bounded").await, None);
    h.advance(secs(100));
    h.settle().await;
    assert_eq!(h.submitted("bounded").len(), 3);
}

// ---------------------------------------------------------------------------------------
// Misfires and coalescing
// ---------------------------------------------------------------------------------------

/// An every-10-s job added at t0 (first run t0 + 10 s) to a scheduler that is not
/// running, then the clock jumps to t0 + 105 s: 10 run times (10 ..= 100) went by
/// while the scheduler was "down"; it starts after that.
async fn down_for_ten_intervals(configure: impl FnOnce(&mut JobSpec)) -> Harness {
    let mut h = Harness::new(tasks());
    let mut spec = JobSpec::new("ok", every(10, t0() + secs(10))).with_id("late");
    configure(&mut spec);
    h.add(spec).await;
    h.advance(secs(105));
    h.start();
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_without_grace_coalesces_into_one_run_for_the_latest_time() {
    let mut h = down_for_ten_intervals(|_| {}).await;
    let run = h.run_of("late").await;
    assert_eq!(run.outcome, RunOutcome::Success);
    assert_eq!(run.scheduled_time, t0() + secs(100));
    h.settle().await;
    assert_eq!(h.submitted("late"), vec![t0() + secs(100)]);
    assert!(
        !h.events_of("late")
            .iter()
            .any(|event| matches!(event, Event::JobMissed { .. })),
        "no grace time: nothing is missed"
    );
    assert_eq!(h.runs("late").await.len(), 1);
    assert_eq!(
        h.job("late").await.unwrap().next_run_time,
        Some(t0() + secs(110)),
        "the first run time after now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_without_grace_and_without_coalesce_runs_every_time_with_enough_instances() {
    let mut h = down_for_ten_intervals(|spec| {
        spec.options.coalesce = Some(false);
        spec.options.max_instances = Some(10);
    })
    .await;
    let mut scheduled = Vec::new();
    for _ in 0..10 {
        let run = h.run_of("late").await;
        assert_eq!(run.outcome, RunOutcome::Success, "{run:?}");
        scheduled.push(run.scheduled_time);
    }
    scheduled.sort();
    let expected: Vec<_> = (1..=10).map(|step| t0() + secs(10 * step)).collect();
    assert_eq!(scheduled, expected);
    h.settle().await;
    assert_eq!(h.submitted("late").len(), 10);
    assert_eq!(
        h.job("late").await.unwrap().next_run_time,
        Some(t0() + secs(110))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_without_grace_and_without_coalesce_runs_every_time() {
    // docs/semantics.md: "with coalesce only the latest run time runs"; without, all of them
    // do, with the default max_instances = 1 too (APScheduler 3 hands the overdue run
    // times of a pass to one instance, which runs them one after the other).
    let mut h = down_for_ten_intervals(|spec| spec.options.coalesce = Some(false)).await;
    let mut runs = Vec::new();
    for _ in 0..10 {
        let run = h.run_of("late").await;
        runs.push((run.scheduled_time, run.outcome));
    }
    runs.sort_by_key(|(time, _)| *time);
    let expected: Vec<_> = (1..=10)
        .map(|step| (t0() + secs(10 * step), RunOutcome::Success))
        .collect();
    assert_eq!(runs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_with_grace_reports_the_old_runs_as_missed_and_runs_the_recent_one() {
    // Grace 20 s at t0 + 105 s: 10 ..= 80 are 95 ..= 25 s late (missed), 90 and 100
    // are within the grace; coalescing runs 100.
    let mut h = down_for_ten_intervals(|spec| {
        spec.options.misfire_grace_time = Some(Duration::from_secs(20));
    })
    .await;
    let missed = h
        .wait_for("JobMissed", |event| {
            matches!(event, Event::JobMissed { .. })
        })
        .await;
    assert_eq!(
        missed,
        Event::JobMissed {
            job_id: "late".to_owned(),
            scheduled_time: t0() + secs(10),
            count: 8,
        }
    );
    let run = h.run_of("late").await;
    assert_eq!(run.outcome, RunOutcome::Success);
    assert_eq!(run.scheduled_time, t0() + secs(100));
    h.settle().await;
    assert_eq!(h.submitted("late"), vec![t0() + secs(100)]);

    let runs = h.runs("late").await;
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let missed = &runs[0];
    assert_eq!(missed.outcome, RunOutcome::Missed);
    assert_eq!(missed.scheduled_time, t0() + secs(10));
    assert_eq!(missed.started_at, None);
    assert!(
        missed.error.as_deref().unwrap_or("").contains('8'),
        "{missed:?}"
    );
    assert_eq!(runs[1].outcome, RunOutcome::Success);
    assert_eq!(
        h.job("late").await.unwrap().next_run_time,
        Some(t0() + secs(110))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfire_with_grace_and_without_coalesce_runs_every_time_within_the_grace() {
    let mut h = down_for_ten_intervals(|spec| {
        spec.options.misfire_grace_time = Some(Duration::from_secs(20));
        spec.options.coalesce = Some(false);
        spec.options.max_instances = Some(2);
    })
    .await;
    let mut scheduled = vec![
        h.run_of("late").await.scheduled_time,
        h.run_of("late").await.scheduled_time,
    ];
    scheduled.sort();
    assert_eq!(scheduled, vec![t0() + secs(90), t0() + secs(100)]);
    h.settle().await;
    let missed: Vec<_> = h
        .events_of("late")
        .into_iter()
        .filter(|event| matches!(event, Event::JobMissed { .. }))
        .collect();
    assert_eq!(
        missed,
        vec![Event::JobMissed {
            job_id: "late".to_owned(),
            scheduled_time: t0() + secs(10),
            count: 8,
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_after_three_days_down_runs_a_per_minute_job_once() {
    // Added at t0 + 30 s, so the first run is t0 + 1 min; the clock then jumps three
    // days: t0 + 1 min ..= t0 + 3 days is 4320 run times.
    let mut h = Harness::new(tasks());
    h.advance(secs(30));
    let per_minute = || spec(json!({"type": "cron", "minute": "*"}));
    let job = h
        .add(JobSpec::new("ok", per_minute()).with_id("cron-coalesce"))
        .await;
    assert_eq!(job.next_run_time, Some(t0() + mins(1)));
    let mut with_grace = JobSpec::new("ok", per_minute()).with_id("cron-grace");
    with_grace.options.misfire_grace_time = Some(Duration::from_secs(60));
    h.add(with_grace).await;
    h.advance(TimeDelta::days(3));
    let started = Instant::now();
    h.start();

    let latest = t0() + TimeDelta::days(3);
    for id in ["cron-coalesce", "cron-grace"] {
        let run = h.run_of(id).await;
        assert_eq!(run.outcome, RunOutcome::Success, "{id}");
        assert_eq!(run.scheduled_time, latest, "{id}");
    }
    h.settle().await;
    eprintln!(
        "three days of a per-minute job handled in {:?}",
        started.elapsed()
    );
    for id in ["cron-coalesce", "cron-grace"] {
        assert_eq!(h.submitted(id), vec![latest], "{id}");
        assert_eq!(
            h.job(id).await.unwrap().next_run_time,
            Some(latest + mins(1)),
            "{id}"
        );
    }
    // Without grace nothing is missed; with 60 s of grace every run time but the last
    // (30 s late) is.
    let missed = |events: Vec<Event>| -> Vec<(DateTime<Utc>, u64)> {
        events
            .into_iter()
            .filter_map(|event| match event {
                Event::JobMissed {
                    scheduled_time,
                    count,
                    ..
                } => Some((scheduled_time, count)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(missed(h.events_of("cron-coalesce")), vec![]);
    assert_eq!(
        missed(h.events_of("cron-grace")),
        vec![(t0() + mins(1), 4319)]
    );
    assert_eq!(h.runs("cron-coalesce").await.len(), 1);
    let outcomes: Vec<_> = h
        .runs("cron-grace")
        .await
        .iter()
        .map(|run| run.outcome)
        .collect();
    assert_eq!(outcomes, vec![RunOutcome::Missed, RunOutcome::Success]);
}

// ---------------------------------------------------------------------------------------
// max_instances
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_due_while_max_instances_runs_go_on_is_skipped() {
    let mut tasks = tasks();
    let mut blocker = Blocker::register(&mut tasks, "block");
    let mut h = Harness::new(tasks);
    h.start();
    h.add(JobSpec::new("block", every(10, t0() + secs(10))).with_id("slow"))
        .await;

    h.advance(secs(10));
    assert_eq!(blocker.started().await.scheduled_time, t0() + secs(10));
    h.advance(secs(10));
    // The run holds its job (max_instances = 1, docs/lifecycle.md): the time that came
    // while it executed is skipped, and said so, when it ends.
    blocker.release(1);
    let event = h
        .wait_for("JobMaxInstances", |event| {
            matches!(event, Event::JobMaxInstances { .. })
        })
        .await;
    assert_eq!(
        event,
        Event::JobMaxInstances {
            job_id: "slow".to_owned(),
            scheduled_time: t0() + secs(20),
            max_instances: 1,
        }
    );
    let skipped = h.run_of("slow").await;
    assert_eq!(skipped.outcome, RunOutcome::Skipped);
    assert_eq!(skipped.scheduled_time, t0() + secs(20));
    assert_eq!(skipped.started_at, None);
    assert!(skipped
        .error
        .as_deref()
        .unwrap_or("")
        .contains("max_instances"));

    // The first run ended; the next run time starts normally.
    let first = h.run_of("slow").await;
    assert_eq!(first.outcome, RunOutcome::Success);
    assert_eq!(first.scheduled_time, t0() + secs(10));
    h.advance(secs(10));
    assert_eq!(blocker.started().await.scheduled_time, t0() + secs(30));
    blocker.release(1);
    assert_eq!(h.run_of("slow").await.outcome, RunOutcome::Success);
    let outcomes: Vec<_> = h.runs("slow").await.iter().map(|run| run.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            RunOutcome::Success,
            RunOutcome::Skipped,
            RunOutcome::Success
        ]
    );
    assert_eq!(blocker.most_running.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_go_on_at_once_with_max_instances_two() {
    let mut tasks = tasks();
    let mut blocker = Blocker::register(&mut tasks, "block");
    let mut h = Harness::new(tasks);
    h.start();
    let mut spec = JobSpec::new("block", every(10, t0() + secs(10))).with_id("pair");
    spec.options.max_instances = Some(2);
    h.add(spec).await;

    h.advance(secs(10));
    assert_eq!(blocker.started().await.scheduled_time, t0() + secs(10));
    h.advance(secs(10));
    assert_eq!(blocker.started().await.scheduled_time, t0() + secs(20));
    assert_eq!(blocker.running.load(Ordering::SeqCst), 2);
    h.advance(secs(10));
    let event = h
        .wait_for("JobMaxInstances", |event| {
            matches!(event, Event::JobMaxInstances { .. })
        })
        .await;
    assert_eq!(
        event,
        Event::JobMaxInstances {
            job_id: "pair".to_owned(),
            scheduled_time: t0() + secs(30),
            max_instances: 2,
        }
    );
    blocker.release(2);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(h.run_of("pair").await.outcome);
    }
    outcomes.sort_by_key(|outcome| outcome.as_str());
    assert_eq!(
        outcomes,
        vec![
            RunOutcome::Skipped,
            RunOutcome::Success,
            RunOutcome::Success
        ]
    );
    assert_eq!(blocker.most_running.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------
// Pause, resume, reschedule, modify, remove, run now
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_does_not_run_and_resumes_from_now_without_a_burst() {
    let mut h = Harness::new(tasks());
    h.start();
    h.add(JobSpec::new("ok", every(10, t0() + secs(10))).with_id("napper"))
        .await;
    let paused = h.scheduler.pause_job("napper").await.unwrap();
    assert!(paused.paused);
    assert_eq!(paused.next_run_time, None);
    h.wait_for(
        "JobModified",
        |event| matches!(event, Event::JobModified { job_id, .. } if job_id == "napper"),
    )
    .await;

    // 10, 20 and 30 go by.
    h.advance(secs(35));
    h.settle().await;
    assert!(h.submitted("napper").is_empty());

    let resumed = h.scheduler.resume_job("napper").await.unwrap().unwrap();
    assert!(!resumed.paused);
    assert_eq!(resumed.next_run_time, Some(t0() + secs(40)));
    h.advance(secs(5));
    let run = h.run_of("napper").await;
    assert_eq!(run.scheduled_time, t0() + secs(40));
    h.settle().await;
    assert_eq!(h.submitted("napper"), vec![t0() + secs(40)]);
    let runs = h.runs("napper").await;
    assert_eq!(runs.len(), 1, "no missed or coalesced records: {runs:#?}");
    assert!(!h
        .events_of("napper")
        .iter()
        .any(|event| matches!(event, Event::JobMissed { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_job_that_is_due_now_runs_it_now() {
    let mut h = Harness::new(tasks());
    h.start();
    h.add(JobSpec::new("ok", every(10, t0() + secs(10))).with_id("napper"))
        .await;
    h.scheduler.pause_job("napper").await.unwrap();
    h.advance(secs(30));
    let resumed = h.scheduler.resume_job("napper").await.unwrap().unwrap();
    // "the first fire time at/after now"
    assert_eq!(resumed.next_run_time, Some(t0() + secs(30)));
    assert_eq!(h.run_of("napper").await.scheduled_time, t0() + secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_wide_pause_takes_no_jobs_until_resumed() {
    let mut h = Harness::new(tasks());
    h.start();
    h.add(JobSpec::new("ok", every(10, t0() + secs(10))).with_id("tick"))
        .await;
    h.settle().await; // no pass of the loop is under way
    h.scheduler.pause();
    assert_eq!(h.scheduler.state(), SchedulerState::Paused);
    h.wait_for("SchedulerPaused", |event| *event == Event::SchedulerPaused)
        .await;

    h.advance(secs(35));
    // Nothing can be observed happening while paused; give a wrong loop a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.submitted("tick").is_empty());
    assert_eq!(
        h.job("tick").await.unwrap().next_run_time,
        Some(t0() + secs(10))
    );

    h.scheduler.resume();
    assert_eq!(h.scheduler.state(), SchedulerState::Running);
    h.wait_for("SchedulerResumed", |event| {
        *event == Event::SchedulerResumed
    })
    .await;
    // 10, 20 and 30 are overdue: coalesced into one run for 30.
    let run = h.run_of("tick").await;
    assert_eq!(run.scheduled_time, t0() + secs(30));
    h.settle().await;
    assert_eq!(h.submitted("tick"), vec![t0() + secs(30)]);
    assert_eq!(
        h.job("tick").await.unwrap().next_run_time,
        Some(t0() + secs(40))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescheduling_computes_the_next_run_time_from_now() {
    let mut h = Harness::new(tasks());
    h.start();
    let before = h
        .add(JobSpec::new("ok", every(3_600, t0() + TimeDelta::hours(1))).with_id("moved"))
        .await;
    h.advance(mins(10));
    // An interval without start_date starts one interval after now.
    let after = h
        .scheduler
        .reschedule_job("moved", spec(json!({"type": "interval", "minutes": 10})))
        .await
        .unwrap();
    assert!(after.revision > before.revision);
    assert_eq!(after.next_run_time, Some(t0() + mins(20)));
    assert_eq!(h.job("moved").await.unwrap(), after);
    h.wait_for(
        "JobModified",
        |event| matches!(event, Event::JobModified { job_id, .. } if job_id == "moved"),
    )
    .await;

    h.advance(mins(10));
    assert_eq!(h.run_of("moved").await.scheduled_time, t0() + mins(20));
    h.advance(mins(10));
    assert_eq!(h.run_of("moved").await.scheduled_time, t0() + mins(30));

    // A cron trigger: the first fire time at or after now.
    let cron = h
        .scheduler
        .reschedule_job("moved", spec(json!({"type": "cron", "minute": "45"})))
        .await
        .unwrap();
    assert_eq!(cron.next_run_time, Some(t0() + mins(45)));

    // A trigger that never fires from now on is refused; the job is kept as it was.
    let ended = spec(json!({
        "type": "interval", "minutes": 1,
        "start_date": rfc3339(t0() - TimeDelta::days(2)), "end_date": rfc3339(t0() - TimeDelta::days(1)),
    }));
    let cron_job = h.job("moved").await.unwrap();
    let error = h
        .scheduler
        .reschedule_job("moved", ended)
        .await
        .unwrap_err();
    assert!(
        matches!(error, SchedulerError::TriggerNeverFires),
        "{error}"
    );
    let unchanged = h.job("moved").await.unwrap();
    assert_eq!(unchanged.trigger, cron_job.trigger);
    assert_eq!(unchanged.next_run_time, cron_job.next_run_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modifying_a_job_changes_its_options_and_bumps_its_revision() {
    let mut tasks = tasks();
    tasks.register_fn("echo", |run: TaskRun| async move {
        Ok::<String, TaskFailure>(run.args.to_string())
    });
    let mut h = Harness::new(tasks);
    h.start();
    let before = h
        .add(
            JobSpec::new("echo", every(10, t0() + secs(10)))
                .with_id("tuned")
                .with_args(json!({"n": 1})),
        )
        .await;
    assert_eq!(before.name, "echo", "the name defaults to the task's");
    assert!(before.coalesce);
    assert_eq!(before.max_instances, 1);

    let after = h
        .scheduler
        .modify_job(
            "tuned",
            JobChanges {
                name: Some("renamed".to_owned()),
                args: Some(json!({"n": 2})),
                coalesce: Some(false),
                max_instances: Some(3),
                misfire_grace_time: Some(Duration::from_secs(30)),
                jitter: Some(Duration::ZERO),
                ..JobChanges::default()
            },
        )
        .await
        .unwrap();
    assert!(after.revision > before.revision);
    assert_eq!(after.name, "renamed");
    assert_eq!(after.args, json!({"n": 2}));
    assert!(!after.coalesce);
    assert_eq!(after.max_instances, 3);
    assert_eq!(after.misfire_grace_time, Some(Duration::from_secs(30)));
    assert_eq!(
        after.next_run_time, before.next_run_time,
        "trigger unchanged"
    );
    assert_eq!(after.trigger, before.trigger);
    assert_eq!(h.job("tuned").await.unwrap(), after);
    h.wait_for(
        "JobModified",
        |event| matches!(event, Event::JobModified { job_id, .. } if job_id == "tuned"),
    )
    .await;

    // A bad change is refused and changes nothing.
    let error = h
        .scheduler
        .modify_job(
            "tuned",
            JobChanges {
                name: Some("half-written".to_owned()),
                max_instances: Some(0),
                ..JobChanges::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SchedulerError::InvalidOption {
                field: "max_instances",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(h.job("tuned").await.unwrap(), after);
    let missing = h
        .scheduler
        .modify_job("nope", JobChanges::default())
        .await
        .unwrap_err();
    assert!(matches!(missing, SchedulerError::JobNotFound(id) if id == "nope"));

    // The next run uses the new args.
    h.advance(secs(10));
    let run = h.run_of("tuned").await;
    assert_eq!(run.outcome, RunOutcome::Success);
    assert_eq!(run.output.as_deref(), Some(r#"{"n":2}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_running_job_lets_the_run_finish_and_it_never_runs_again() {
    let mut tasks = tasks();
    let mut blocker = Blocker::register(&mut tasks, "block");
    let mut h = Harness::new(tasks);
    h.start();
    h.add(JobSpec::new("block", every(10, t0() + secs(10))).with_id("doomed"))
        .await;
    h.advance(secs(10));
    blocker.started().await;

    h.scheduler.remove_job("doomed").await.unwrap();
    h.wait_for("doomed to be removed", |event| is_removed(event, "doomed"))
        .await;
    assert_eq!(h.job("doomed").await, None);
    let again = h.scheduler.remove_job("doomed").await.unwrap_err();
    assert!(matches!(again, SchedulerError::JobNotFound(_)), "{again}");

    blocker.release(1);
    let run = h.run_of("doomed").await;
    assert_eq!(run.outcome, RunOutcome::Success);
    assert_eq!(run.scheduled_time, t0() + secs(10));
    assert_eq!(h.runs("doomed").await.len(), 1, "the run is recorded");

    h.advance(secs(30));
    h.settle().await;
    assert_eq!(h.submitted("doomed"), vec![t0() + secs(10)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_now_runs_at_once_and_keeps_the_next_run_time() {
    let mut h = Harness::new(tasks());
    h.start();
    h.add(JobSpec::new("ok", every(3_600, t0() + TimeDelta::hours(1))).with_id("hourly"))
        .await;
    h.advance(mins(5));
    let run_id = h.scheduler.run_job_now("hourly").await.unwrap();
    let run = h.run_of("hourly").await;
    assert_eq!(run.run_id, run_id);
    assert_eq!(run.outcome, RunOutcome::Success);
    assert_eq!(run.scheduled_time, t0() + mins(5));
    assert_eq!(run.started_at, Some(t0() + mins(5)));
    assert_eq!(
        h.job("hourly").await.unwrap().next_run_time,
        Some(t0() + TimeDelta::hours(1))
    );
    let missing = h.scheduler.run_job_now("nope").await.unwrap_err();
    assert!(matches!(missing, SchedulerError::JobNotFound(_)));

    // The schedule goes on as before.
    h.advance(mins(55));
    assert_eq!(
        h.run_of("hourly").await.scheduled_time,
        t0() + TimeDelta::hours(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_jobs_lists_by_next_run_time_and_remove_all_jobs_empties_the_scheduler() {
    let mut h = Harness::new(tasks());
    h.start();
    h.add(JobSpec::new("ok", date(t0() + mins(3))).with_id("c"))
        .await;
    h.add(JobSpec::new("ok", date(t0() + mins(1))).with_id("a"))
        .await;
    let mut paused = JobSpec::new("ok", date(t0() + mins(2))).with_id("b");
    paused.paused = true;
    h.add(paused).await;
    let ids: Vec<_> = h
        .scheduler
        .get_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(ids, ["a", "c", "b"], "by next run time, paused last");

    h.scheduler.remove_all_jobs().await.unwrap();
    assert!(h.scheduler.get_jobs().await.unwrap().is_empty());
    h.advance(mins(5));
    h.settle().await;
    assert!(h.submitted("a").is_empty() && h.submitted("c").is_empty());
}

// ---------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_wait_lets_a_running_task_finish() {
    let mut tasks = tasks();
    let mut blocker = Blocker::register(&mut tasks, "block");
    let mut h = Harness::new(tasks);
    h.start();
    h.add(JobSpec::new("block", date(t0() + secs(1))).with_id("busy"))
        .await;
    h.advance(secs(1));
    blocker.started().await;

    let shutdown = tokio::spawn({
        let scheduler = h.scheduler.clone();
        async move { scheduler.shutdown(Some(Duration::from_secs(30))).await }
    });
    tokio::time::timeout(PATIENCE, async {
        while h.scheduler.state() != SchedulerState::Stopped {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the running task"
    );

    blocker.release(1);
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown to finish once the task did")
        .unwrap();
    let run = h.run_of("busy").await;
    assert_eq!(run.outcome, RunOutcome::Success);
    h.wait_for("SchedulerShutdown", |event| {
        *event == Event::SchedulerShutdown
    })
    .await;
    let runs = h.runs("busy").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, RunOutcome::Success);
    assert_eq!(h.scheduler.state(), SchedulerState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_without_wait_records_a_running_task_as_an_error() {
    let mut tasks = tasks();
    let mut blocker = Blocker::register(&mut tasks, "block");
    let mut h = Harness::new(tasks);
    h.start();
    h.add(JobSpec::new("block", date(t0() + secs(1))).with_id("busy"))
        .await;
    h.advance(secs(1));
    blocker.started().await;

    tokio::time::timeout(PATIENCE, h.scheduler.shutdown(None))
        .await
        .expect("shutdown without wait returns at once");
    assert_eq!(h.scheduler.state(), SchedulerState::Stopped);
    let run = h.run_of("busy").await;
    assert_eq!(run.outcome, RunOutcome::Error);
    assert!(
        run.error.as_deref().unwrap_or("").contains("shut down"),
        "{run:?}"
    );
    let runs = h.runs("busy").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, RunOutcome::Error);
    // The run did not end: the one-off job stays, to run again at the next start.
    assert!(h.job("busy").await.is_some());
    h.wait_for("SchedulerShutdown", |event| {
        *event == Event::SchedulerShutdown
    })
    .await;

    // A stopped scheduler takes no more jobs.
    h.advance(TimeDelta::days(1));
    assert!(h
        .scheduler
        .add_job(JobSpec::new("ok", date(h.now())))
        .await
        .is_ok());
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.drain();
    assert!(!h
        .seen
        .iter()
        .any(|event| matches!(event, Event::JobSubmitted { job_id, .. } if job_id != "busy")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_without_wait_stops_the_running_task() {
    let mut tasks = tasks();
    let mut blocker = Blocker::register(&mut tasks, "block");
    let mut h = Harness::new(tasks);
    h.start();
    h.add(JobSpec::new("block", date(t0() + secs(1))).with_id("busy"))
        .await;
    h.advance(secs(1));
    blocker.started().await;
    h.scheduler.shutdown(None).await;
    // DESIGN/executor docs: "without [wait], they are stopped at once". A stopped async
    // task is dropped at its await point, which drops its locals.
    let stopped = tokio::time::timeout(PATIENCE, async {
        while !blocker.dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        stopped.is_ok(),
        "the task is still running after shutdown(None) (running = {})",
        blocker.running.load(Ordering::SeqCst)
    );
}

// ---------------------------------------------------------------------------------------
// Wall-clock jumps and wake-ups
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_clock_jump_runs_the_sleeping_loops_job_promptly() {
    let mut h = Harness::new(tasks());
    h.start();
    h.add(JobSpec::new("ok", date(t0() + TimeDelta::hours(1))).with_id("later"))
        .await;
    h.settle().await; // the loop is asleep until t0 + 1 h
    h.clock.set(t0() + TimeDelta::hours(2));
    let run = h.run_of("later").await;
    assert_eq!(run.outcome, RunOutcome::Success);
    assert_eq!(run.scheduled_time, t0() + TimeDelta::hours(1));
    assert_eq!(run.started_at, Some(t0() + TimeDelta::hours(2)));
    h.wait_for("later to be removed", |event| is_removed(event, "later"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_clock_jump_runs_nothing_twice() {
    let mut h = Harness::new(tasks());
    h.start();
    h.add(JobSpec::new("ok", every(600, t0() + mins(10))).with_id("steady"))
        .await;
    h.clock.set(t0() + mins(10));
    assert_eq!(h.run_of("steady").await.scheduled_time, t0() + mins(10));
    h.settle().await;

    // The clock steps back 40 minutes, then comes forward over the same times again.
    h.clock.set(t0() - mins(30));
    h.settle().await;
    h.clock.set(t0() + mins(10));
    h.settle().await;
    h.clock.set(t0() + mins(19));
    h.settle().await;
    assert_eq!(h.submitted("steady"), vec![t0() + mins(10)]);

    h.clock.set(t0() + mins(20));
    assert_eq!(h.run_of("steady").await.scheduled_time, t0() + mins(20));
    h.settle().await;
    assert_eq!(
        h.submitted("steady"),
        vec![t0() + mins(10), t0() + mins(20)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_job_that_is_due_earliest_wakes_the_loop() {
    let mut h = Harness::new(tasks());
    h.start();
    h.add(JobSpec::new("ok", date(t0() + TimeDelta::days(1))).with_id("tomorrow"))
        .await;
    h.settle().await; // the loop is asleep until tomorrow
    h.add(JobSpec::new("ok", date(t0() + mins(1))).with_id("soon"))
        .await;
    h.advance(mins(1));
    let run = h.run_of("soon").await;
    assert_eq!(run.scheduled_time, t0() + mins(1));
    h.settle().await;
    assert!(h.submitted("tomorrow").is_empty());

    // A change that makes a job due earlier wakes it too.
    h.scheduler
        .modify_job(
            "tomorrow",
            JobChanges {
                next_run_time: Some(t0() + mins(2)),
                ..JobChanges::default()
            },
        )
        .await
        .unwrap();
    h.advance(mins(1));
    assert_eq!(h.run_of("tomorrow").await.scheduled_time, t0() + mins(2));
}

// ---------------------------------------------------------------------------------------
// Races between the handle and a pass of the loop, made deterministic with a store
// that holds the loop at a chosen point.
// ---------------------------------------------------------------------------------------

/// A memory store that can hold the loop inside a store call until the test lets go.
#[derive(Clone, Default)]
struct Holds {
    /// Hold the `next_run_time` call of the pass that acquires jobs next.
    next_run_time_after_acquire: Arc<AtomicBool>,
    holding_next_run_time: Arc<AtomicBool>,
    /// Hold the next `release_jobs` call.
    release: Arc<AtomicBool>,
    entered: Arc<Notify>,
    go_on: Arc<Notify>,
}

impl Holds {
    async fn hold(&self) {
        self.entered.notify_one();
        self.go_on.notified().await;
    }

    async fn entered(&self) {
        tokio::time::timeout(PATIENCE, self.entered.notified())
            .await
            .expect("the loop to reach the held store call");
    }

    fn let_go(&self) {
        self.go_on.notify_one();
    }
}

struct HeldStore {
    inner: MemoryStore,
    holds: Holds,
}

#[async_trait]
impl Jobs for HeldStore {
    async fn add_job(&self, job: Job) -> Result<Job, StoreError> {
        self.inner.add_job(job).await
    }

    async fn replace_job(&self, job: Job) -> Result<Job, StoreError> {
        self.inner.replace_job(job).await
    }

    async fn update_job(&self, job: Job) -> Result<Job, StoreError> {
        self.inner.update_job(job).await
    }

    async fn remove_job(&self, id: &str) -> Result<(), StoreError> {
        self.inner.remove_job(id).await
    }

    async fn remove_all_jobs(&self) -> Result<(), StoreError> {
        self.inner.remove_all_jobs().await
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.inner.get_job(id).await
    }
}
#[async_trait]
impl JobListing for HeldStore {
    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        self.inner.get_jobs().await
    }
}

#[async_trait]
impl DueJobs for HeldStore {
    async fn next_run_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // Read first, answer later: the answer is in flight while the test acts, as
        // with a store across a network.
        let answer = self.inner.next_run_time().await;
        if self
            .holds
            .holding_next_run_time
            .swap(false, Ordering::SeqCst)
        {
            self.holds.hold().await;
        }
        answer
    }

    async fn acquire_due_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StoreError> {
        let jobs = self
            .inner
            .acquire_due_jobs(owner, now, limit, lease)
            .await?;
        if !jobs.is_empty()
            && self
                .holds
                .next_run_time_after_acquire
                .swap(false, Ordering::SeqCst)
        {
            self.holds
                .holding_next_run_time
                .store(true, Ordering::SeqCst);
        }
        Ok(jobs)
    }

    async fn release_jobs(
        &self,
        owner: &str,
        releases: &[Release],
    ) -> Result<Vec<String>, StoreError> {
        if self.holds.release.swap(false, Ordering::SeqCst) {
            self.holds.hold().await;
        }
        self.inner.release_jobs(owner, releases).await
    }
}

#[async_trait]
impl InstanceSlots for HeldStore {
    async fn claim_instance(
        &self,
        job_id: &str,
        owner: &str,
        max_instances: u32,
    ) -> Result<bool, StoreError> {
        self.inner
            .claim_instance(job_id, owner, max_instances)
            .await
    }

    async fn release_instance(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release_instance(job_id, owner).await
    }

    async fn running_times(&self, job_id: &str) -> Result<Vec<DateTime<Utc>>, StoreError> {
        self.inner.running_times(job_id).await
    }
}

#[async_trait]
impl RunHistory for HeldStore {
    async fn record_run(&self, record: RunRecord) -> Result<(), StoreError> {
        self.inner.record_run(record).await
    }

    async fn runs(&self, job_id: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.runs(job_id, limit).await
    }
}

/// Keeps no membership, as a store that cannot be shared.
impl Nodes for HeldStore {}

/// Has the defaults of a store that cannot be shared.
impl Cluster for HeldStore {}

fn held_harness(tasks: TaskRegistry) -> (Harness, Holds) {
    let holds = Holds::default();
    let store = HeldStore {
        inner: MemoryStore::new(),
        holds: holds.clone(),
    };
    (
        Harness::with(tasks, |builder| builder.store("default", store)),
        holds,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_added_while_the_loop_is_busy_still_wakes_it() {
    let (mut h, holds) = held_harness(tasks());
    h.add(JobSpec::new("ok", date(t0() + TimeDelta::days(1))).with_id("tomorrow"))
        .await;
    h.add(JobSpec::new("ok", date(t0() + mins(1))).with_id("first"))
        .await;
    h.start();
    h.settle().await; // the loop is asleep until t0 + 1 min

    // The loop wakes at t0 + 1 min for "first" and, after handing it over, asks the
    // store for its next deadline; the answer ("tomorrow") is on its way back when a
    // job due at t0 + 2 min is added.
    holds
        .next_run_time_after_acquire
        .store(true, Ordering::SeqCst);
    h.advance(mins(1));
    holds.entered().await;
    h.add(JobSpec::new("ok", date(t0() + mins(2))).with_id("second"))
        .await;
    holds.let_go();
    assert_eq!(h.run_of("first").await.scheduled_time, t0() + mins(1));

    h.advance(mins(1));
    let run = h.run_of("second").await;
    assert_eq!(run.scheduled_time, t0() + mins(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modifying_a_job_during_its_pass_does_not_run_the_same_time_twice() {
    let (mut h, holds) = held_harness(tasks());
    h.start();
    h.add(JobSpec::new("ok", every(600, t0() + mins(10))).with_id("edited"))
        .await;

    holds.release.store(true, Ordering::SeqCst);
    h.advance(mins(10));
    holds.entered().await; // the run was submitted, the release is held
    h.scheduler
        .modify_job(
            "edited",
            JobChanges {
                name: Some("renamed".to_owned()),
                ..JobChanges::default()
            },
        )
        .await
        .unwrap();
    holds.let_go();
    assert_eq!(h.run_of("edited").await.scheduled_time, t0() + mins(10));
    h.settle().await;

    let job = h.job("edited").await.unwrap();
    assert_eq!(job.name, "renamed", "the change is kept");
    assert_eq!(h.submitted("edited"), vec![t0() + mins(10)]);
    assert!(!h
        .events_of("edited")
        .iter()
        .any(|event| matches!(event, Event::JobMaxInstances { .. })));
    assert_eq!(job.next_run_time, Some(t0() + mins(20)));
}

// ---------------------------------------------------------------------------------------
// Volume
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_jobs_due_at_once_all_run_exactly_once() {
    const JOBS: usize = 100_000;
    let count = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let mut tasks = TaskRegistry::new();
    tasks.register_fn("count", {
        let count = Arc::clone(&count);
        let all_done = Arc::clone(&all_done);
        move |_run: TaskRun| {
            let count = Arc::clone(&count);
            let all_done = Arc::clone(&all_done);
            async move {
                if count.fetch_add(1, Ordering::SeqCst) + 1 == JOBS {
                    all_done.notify_one();
                }
                Ok::<String, TaskFailure>(String::new())
            }
        }
    });
    let clock = ManualClock::new(t0());
    let scheduler = Scheduler::builder()
        .clock(clock.clone())
        .tasks(tasks)
        .executor("default", ThreadPoolExecutor::new(16))
        .build();
    scheduler.start();

    let due = t0() + mins(1);
    let trigger = date(due);
    let adding = Instant::now();
    for index in 0..JOBS {
        scheduler
            .add_job(JobSpec::new("count", trigger.clone()).with_id(format!("job-{index:06}")))
            .await
            .unwrap();
    }
    let added_in = adding.elapsed();
    assert_eq!(scheduler.get_jobs().await.unwrap().len(), JOBS);

    let running = Instant::now();
    clock.set(due);
    tokio::time::timeout(Duration::from_secs(120), all_done.notified())
        .await
        .unwrap_or_else(|_| panic!("only {} of {JOBS} ran", count.load(Ordering::SeqCst)));
    let ran_in = running.elapsed();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !scheduler.get_jobs().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every finished one-off job to be removed");
    let removed_in = running.elapsed();
    // Nothing runs twice, even a while later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count.load(Ordering::SeqCst), JOBS);
    let runs = scheduler.runs(None, JOBS).await.unwrap();
    assert!(runs.iter().all(|run| run.outcome == RunOutcome::Success));
    eprintln!(
        "{JOBS} jobs: added in {added_in:?}, all ran in {ran_in:?}, all removed in {removed_in:?}"
    );
    scheduler.shutdown(Some(Duration::from_secs(10))).await;
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_job_with_an_unknown_task_fails_and_stores_nothing() {
    let mut h = Harness::new(tasks());
    h.start();
    let error = h
        .scheduler
        .add_job(JobSpec::new("nope", date(t0() + mins(1))).with_id("ghost"))
        .await
        .unwrap_err();
    match &error {
        SchedulerError::UnknownTask { name, known, .. } => {
            assert_eq!(name, "nope");
            assert!(known.contains("ok"), "{known}");
        }
        other => panic!("expected UnknownTask, got {other:?}"),
    }
    assert!(error.to_string().starts_with("task: "), "{error}");
    assert_eq!(h.job("ghost").await, None);
    assert!(h.scheduler.get_jobs().await.unwrap().is_empty());
    h.settle().await;
    assert!(h.events_of("ghost").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_is_refused_unless_replace_existing() {
    let mut h = Harness::new(tasks());
    h.start();
    let first = h
        .add(JobSpec::new("ok", date(t0() + mins(1))).with_id("dup"))
        .await;
    let error = h
        .scheduler
        .add_job(JobSpec::new("ok", date(t0() + mins(2))).with_id("dup"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SchedulerError::JobExists(id) if id == "dup"),
        "{error}"
    );
    assert_eq!(
        h.job("dup").await.unwrap(),
        first,
        "the stored job is untouched"
    );

    let mut replacement = JobSpec::new("ok", date(t0() + mins(2))).with_id("dup");
    replacement.replace_existing = true;
    let replaced = h.add(replacement).await;
    assert_eq!(replaced.next_run_time, Some(t0() + mins(2)));
    assert_eq!(h.job("dup").await.unwrap(), replaced);
    assert_eq!(h.scheduler.get_jobs().await.unwrap().len(), 1);

    // Only the replacement's time runs.
    h.advance(mins(2));
    assert_eq!(h.run_of("dup").await.scheduled_time, t0() + mins(2));
    h.settle().await;
    assert_eq!(h.submitted("dup"), vec![t0() + mins(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_trigger_is_refused_naming_the_field() {
    let h = Harness::new(tasks());
    let cases = [
        (json!({"type": "cron", "hour": "25"}), "hour"),
        (json!({"type": "interval"}), "interval"),
        (
            json!({"type": "interval", "seconds": 5, "start_date": "yesterday-ish"}),
            "start_date",
        ),
        (
            json!({"type": "cron", "hour": 3, "timezone": "Mars/Olympus"}),
            "timezone",
        ),
    ];
    for (trigger, field) in cases {
        let error = h
            .scheduler
            .add_job(JobSpec::new("ok", spec(trigger.clone())).with_id("bad"))
            .await
            .unwrap_err();
        match &error {
            SchedulerError::InvalidTrigger(inner) => assert_eq!(inner.field(), field, "{trigger}"),
            other => panic!("{trigger}: expected InvalidTrigger, got {other:?}"),
        }
        assert!(
            error.to_string().starts_with(&format!("trigger.{field}: ")),
            "{error}"
        );
    }
    // An unknown executor and a bad option name their field too.
    let mut spec_with_executor = JobSpec::new("ok", date(t0()));
    spec_with_executor.options.executor = Some("gpu".to_owned());
    let error = h.scheduler.add_job(spec_with_executor).await.unwrap_err();
    assert!(
        matches!(&error, SchedulerError::UnknownExecutor(name) if name == "gpu"),
        "{error}"
    );
    let mut zero = JobSpec::new("ok", date(t0()));
    zero.options.max_instances = Some(0);
    let error = h.scheduler.add_job(zero).await.unwrap_err();
    assert!(error.to_string().starts_with("max_instances: "), "{error}");
    assert!(h.scheduler.get_jobs().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// Failures and jitter
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_is_a_failed_run_and_the_scheduler_goes_on() {
    let mut tasks = tasks();
    tasks.register_fn("boom", |run: TaskRun| async move {
        if run.args.is_null() {
            panic!("kaboom");
        }
        Ok::<String, TaskFailure>(String::new())
    });
    tasks.register_fn("fail", |_run: TaskRun| async move {
        Err::<String, TaskFailure>(TaskFailure {
            output: "tried".to_owned(),
            ..TaskFailure::new("no luck")
        })
    });
    let mut h = Harness::new(tasks);
    h.start();
    h.add(JobSpec::new("boom", every(10, t0() + secs(10))).with_id("boom"))
        .await;
    h.add(JobSpec::new("fail", date(t0() + secs(10))).with_id("fail"))
        .await;
    h.add(JobSpec::new("ok", date(t0() + secs(20))).with_id("after"))
        .await;

    h.advance(secs(10));
    let run = h.run_of("boom").await;
    assert_eq!(run.outcome, RunOutcome::Error);
    assert!(
        run.error.as_deref().unwrap_or("").contains("kaboom"),
        "{run:?}"
    );
    let failed = h.run_of("fail").await;
    assert_eq!(failed.outcome, RunOutcome::Error);
    assert_eq!(failed.error.as_deref(), Some("no luck"));
    assert_eq!(failed.output.as_deref(), Some("tried"));

    h.advance(secs(10));
    assert_eq!(h.run_of("after").await.outcome, RunOutcome::Success);
    // The panicking job keeps its schedule (its instance slot was freed).
    let again = h.run_of("boom").await;
    assert_eq!(again.scheduled_time, t0() + secs(20));
    assert_eq!(again.outcome, RunOutcome::Error);
    assert_eq!(h.scheduler.state(), SchedulerState::Running);
    assert_eq!(h.runs("boom").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_runs_within_bounds_without_shifting_the_schedule() {
    let jitter = secs(30);
    let mut h = Harness::new(tasks());
    h.start();
    let mut spec = JobSpec::new("ok", every(60, t0() + secs(60))).with_id("jittery");
    spec.options.jitter = Some(jitter.to_std().unwrap());
    h.add(spec).await;
    // And a trigger-level jitter on another job.
    let trigger = spec_with_jitter();
    h.add(JobSpec::new("ok", trigger).with_id("jittery-trigger"))
        .await;

    let mut delays = Vec::new();
    for step in 1..=8 {
        let scheduled = t0() + secs(60 * step);
        h.clock.set(scheduled);
        let mut starts = Vec::new();
        for id in ["jittery", "jittery-trigger"] {
            let submitted = h
                .wait_for(
                    &format!("{id} submitted"),
                    |event| matches!(event, Event::JobSubmitted { job_id, .. } if job_id == id),
                )
                .await;
            let Event::JobSubmitted {
                scheduled_time,
                start_at,
                ..
            } = submitted
            else {
                unreachable!()
            };
            assert_eq!(scheduled_time, scheduled, "{id} step {step}");
            assert!(
                start_at >= scheduled && start_at <= scheduled + jitter,
                "{id} step {step}: start_at {start_at}"
            );
            delays.push((id, start_at - scheduled));
            starts.push(start_at);
        }
        // Let the delayed runs start, and check neither started before its start_at.
        h.clock.set(scheduled + jitter);
        for (id, start_at) in ["jittery", "jittery-trigger"].into_iter().zip(starts) {
            let run = h.run_of(id).await;
            assert_eq!(run.outcome, RunOutcome::Success);
            assert_eq!(run.scheduled_time, scheduled);
            let started = run.started_at.unwrap();
            assert!(
                started >= start_at && started <= scheduled + jitter,
                "{id} step {step}: started at {started}, start_at {start_at}"
            );
        }
        h.settle().await;
        for id in ["jittery", "jittery-trigger"] {
            assert_eq!(
                h.job(id).await.unwrap().next_run_time,
                Some(scheduled + secs(60)),
                "{id}: the delay must not feed the next run time"
            );
        }
    }
    for id in ["jittery", "jittery-trigger"] {
        assert!(
            delays
                .iter()
                .any(|(job, delay)| *job == id && *delay > TimeDelta::zero()),
            "{id}: jitter never delayed a run: {delays:?}"
        );
    }
}

fn spec_with_jitter() -> TriggerSpec {
    spec(json!({
        "type": "interval", "seconds": 60, "start_date": rfc3339(t0() + secs(60)), "jitter": "30s",
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_jobs_is_added_whole_or_not_at_all() {
    let h = Harness::new(tasks());
    let good: Vec<JobSpec> = (1..=3)
        .map(|index| JobSpec::new("ok", date(t0() + secs(index))).with_id(format!("batch-{index}")))
        .collect();
    let added = h.scheduler.add_jobs(good).await.unwrap();
    assert_eq!(added.len(), 3);
    assert_eq!(h.scheduler.get_jobs().await.unwrap().len(), 3);
    // One invalid spec: nothing of the batch is stored.
    let mixed = vec![
        JobSpec::new("ok", date(t0() + secs(9))).with_id("fine"),
        JobSpec::new("no.such.task", date(t0() + secs(9))).with_id("broken"),
    ];
    assert!(matches!(
        h.scheduler.add_jobs(mixed).await,
        Err(SchedulerError::UnknownTask { .. })
    ));
    assert!(h.scheduler.get_job("fine").await.unwrap().is_none());
    assert_eq!(h.scheduler.get_jobs().await.unwrap().len(), 3);
}

/// A job another node added to the shared store (this scheduler's handle
/// never saw it, so nothing wakes this loop) is found within the poll interval.
#[tokio::test]
async fn a_job_another_node_added_is_found_within_the_poll_interval() {
    let clock = ManualClock::new(t0());
    let ran: Arc<std::sync::Mutex<Vec<DateTime<Utc>>>> = Arc::default();
    let mut tasks = TaskRegistry::new();
    let seen = Arc::clone(&ran);
    tasks.register_fn("record", move |run: TaskRun| {
        seen.lock().unwrap().push(run.scheduled_time);
        async { Ok::<String, TaskFailure>(String::new()) }
    });
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let node = |tasks: TaskRegistry| {
        Scheduler::builder()
            .clock(clock.clone())
            .tasks(tasks)
            .store_shared("default", Arc::clone(&store))
            .executor("default", ThreadPoolExecutor::new(2))
    };
    let here = node(tasks.clone())
        .poll_interval(Duration::from_secs(5))
        .build();
    here.start();
    // Its first pass finds nothing; it sleeps until the poll.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let elsewhere = node(tasks).build();
    let spec: TriggerSpec =
        serde_json::from_value(json!({"type": "date", "run_date": (t0() + secs(2)).to_rfc3339()}))
            .unwrap();
    elsewhere
        .add_job(JobSpec::new("record", spec).with_id("added-elsewhere"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        ran.lock().unwrap().is_empty(),
        "due, but the loop sleeps until its poll"
    );
    clock.advance(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while ran.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*ran.lock().unwrap(), [t0() + secs(2)]);
    here.shutdown(None).await;
}

/// With `acquire_within_capacity`, a node whose workers are all busy
/// takes no due jobs, so another node sharing the store runs them; that node itself
/// takes only as many as it has free workers per pass and comes back for the rest as
/// its runs end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_full_executors_leaves_due_jobs_to_the_others() {
    let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(t0());
    let ran: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let node = |id: &str, workers: usize| {
        let mut tasks = tasks();
        let seen = Arc::clone(&ran);
        let node_id = id.to_owned();
        tasks.register_fn("mark", move |run: TaskRun| {
            seen.lock()
                .unwrap()
                .push((node_id.clone(), run.job_id.clone()));
            async { Ok::<String, TaskFailure>(String::new()) }
        });
        let blocker = Blocker::register(&mut tasks, "block");
        let scheduler = Scheduler::builder()
            .id(id)
            .clock(clock.clone())
            .store_shared("default", Arc::clone(&store))
            .tasks(tasks)
            .executor("default", ThreadPoolExecutor::new(workers))
            .acquire_within_capacity(true)
            // The memory store pushes no wake-ups: each node sees the other's jobs
            // at its poll.
            .poll_interval(Duration::from_secs(1))
            .build();
        (scheduler, blocker)
    };
    let (busy, mut busy_blocker) = node("busy", 1);
    busy.start();
    busy.add_job(JobSpec::new("block", date(t0())).with_id("hold"))
        .await
        .unwrap();
    busy_blocker.started().await;
    let (free, _free_blocker) = node("free", 2);
    free.start();
    // Added through the busy node: it wakes, finds its only worker taken, takes none.
    let specs = (0..5)
        .map(|index| JobSpec::new("mark", date(t0() + secs(10))).with_id(format!("job-{index}")))
        .collect();
    busy.add_jobs(specs).await.unwrap();
    clock.advance(Duration::from_secs(10));
    let deadline = Instant::now() + PATIENCE;
    while ran.lock().unwrap().len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ran_on: Vec<String> = ran
        .lock()
        .unwrap()
        .iter()
        .map(|(node, _)| node.clone())
        .collect();
    assert_eq!(ran_on, ["free"; 5], "{:?}", ran.lock().unwrap());
    // Once its worker is free, the busy node takes jobs again.
    busy_blocker.release(1);
    let mut events = busy.subscribe();
    busy.add_job(JobSpec::new("mark", date(t0() + secs(10))).with_id("after"))
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, async {
        while let Ok(event) = events.recv().await {
            if matches!(&event, Event::JobExecuted { run, .. } if run.job_id == "after") {
                break;
            }
        }
    })
    .await
    .ok();
    assert!(
        ran.lock().unwrap().iter().any(|(_, job)| job == "after"),
        "the job added after the busy node freed up ran"
    );
    busy.shutdown(None).await;
    free.shutdown(None).await;
}
