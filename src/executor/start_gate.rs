//! Waiting for the start time of runs handed over early (the fire-ahead window, or
//! jitter), with one timer per instant instead of one per run, and their start checks
//! made together by the gate's opener.
//!
//! Ten thousand recurring jobs due in the same second are handed over in the window
//! before it. Each waiting on its own timer would cost ten thousand timers and wake-ups
//! (BENCHMARKS.md, recurring). Here the runs due at one instant wait behind one gate;
//! one opener task sleeps until the instant ([`SystemClock::sleep_until`], precise to
//! microseconds) and opens it.
//!
//! Opening it, the opener asks for the waiting runs' checks itself
//! ([`StartCheck::may_start_together`]), the first few and then the rest, and wakes
//! each run once,
//! with its verdict: the scheduler's checks of a chunk share one read of their jobs
//! and one claim of their slots per store. When each run asked on its own, ten
//! thousand runs were woken by the gate and then by the answers of two batched store
//! calls, and those wake-ups were the tail of the recurring benchmark. A check that has
//! to wait (a slot held by a running run, a store out of reach) goes on in a task of
//! its own; the others' verdicts do not wait for it.
//!
//! A run taken back while it waits leaves before the gate opens. Once the opener has
//! begun its check, the run waits for the verdict: a check stopped halfway could have
//! claimed a slot nobody frees. A run whose future is dropped (a shutdown) before the
//! opener reaches it is not checked, and one dropped while its check waits ends that
//! wait, as when the run made the check itself; one dropped while its chunk is checked
//! leaves a verdict nobody reads.
//!
//! [`SystemClock::sleep_until`]: crate::clock::SystemClock

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::{StartAnswer, StartCheck, Withdrawal};
use crate::clock::Clock;

/// What a run learns at its gate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GateVerdict {
    /// Taken back ([`Withdrawal`]) before its time came: nothing was checked.
    Withdrawn,
    /// Its time came; the check's answer (`Ok` without a check).
    Checked(Result<(), String>),
}

/// Why a run got no verdict: the opener was dropped, which only a runtime shutting
/// down does (or a check that panicked, taking its instant's other checks with it).
const NO_VERDICT: &str =
    "the start check of this run's instant ended without an answer (the scheduler was stopping)";

/// A waiter's [`Waiter::state`]: still waiting, taken by the opener, or gone.
const WAITING: u8 = 0;
const TAKEN: u8 = 1;
const GONE: u8 = 2;

/// A run waiting behind a gate.
struct Waiter {
    check: Option<Arc<dyn StartCheck>>,
    verdict: oneshot::Sender<Result<(), String>>,
    /// [`WAITING`] until the opener takes it ([`TAKEN`]) or the run leaves, taken back
    /// ([`GONE`]); whoever moves it first decides, and counts the run out of `early`.
    state: Arc<AtomicU8>,
    early: Arc<AtomicUsize>,
}

impl Waiter {
    /// Moves the waiter out of [`WAITING`] to `to`; whether this call did.
    fn leave(state: &AtomicU8, early: &AtomicUsize, to: u8) -> bool {
        let left = state
            .compare_exchange(WAITING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if left {
            early.fetch_sub(1, Ordering::Relaxed);
        }
        left
    }
}

type Gates = Arc<Mutex<hashbrown::HashMap<DateTime<Utc>, Vec<Waiter>>>>;

/// The open gates of one executor, by instant.
#[derive(Default)]
pub(crate) struct StartGates {
    /// The runs waiting behind each gate. A gate leaves the map as it opens: a run
    /// arriving after that sees its time has come and makes its own check.
    gates: Gates,
}

impl StartGates {
    /// Returns once `clock` reads `at` or later, with `check`'s answer, or as soon as
    /// the run is taken back while it waits. The run is counted in `early` (the
    /// executor's [`super::ExecutorLoad::early`]) until its time comes or it leaves.
    pub(crate) async fn wait(
        &self,
        clock: &Arc<dyn Clock>,
        at: DateTime<Utc>,
        check: Option<&Arc<dyn StartCheck>>,
        withdrawal: &Withdrawal,
        early: &Arc<AtomicUsize>,
    ) -> GateVerdict {
        if clock.now() >= at {
            early.fetch_sub(1, Ordering::Relaxed);
            return checked_alone(check, withdrawal).await;
        }
        let (sender, mut verdict) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(WAITING));
        {
            let mut gates = self
                .gates
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let waiter = Waiter {
                check: check.cloned(),
                verdict: sender,
                state: Arc::clone(&state),
                early: Arc::clone(early),
            };
            match gates.get_mut(&at) {
                Some(waiters) => waiters.push(waiter),
                None => {
                    gates.insert(at, vec![waiter]);
                    tokio::spawn(open_at(Arc::clone(clock), at, Arc::clone(&self.gates)));
                }
            }
        }
        let answer = tokio::select! {
            answer = &mut verdict => answer,
            () = withdrawal.withdrawn() => {
                if Waiter::leave(&state, early, GONE) {
                    return GateVerdict::Withdrawn;
                }
                // The opener took it first: its check is under way.
                verdict.await
            }
        };
        // No answer because the opener was dropped before it took the run: it still
        // counts as early here.
        Waiter::leave(&state, early, GONE);
        // A clock set back in between (a test's manual clock) is waited out alone.
        while clock.now() < at {
            clock.sleep_until(at).await;
        }
        GateVerdict::Checked(answer.unwrap_or_else(|_| Err(NO_VERDICT.to_owned())))
    }
}

/// A run whose time had come when it arrived: it makes its own check.
async fn checked_alone(
    check: Option<&Arc<dyn StartCheck>>,
    withdrawal: &Withdrawal,
) -> GateVerdict {
    if withdrawal.is_withdrawn() {
        return GateVerdict::Withdrawn;
    }
    match check {
        Some(check) => GateVerdict::Checked(check.may_start().await),
        None => GateVerdict::Checked(Ok(())),
    }
}

/// Opens the gate for `at` when the clock gets there, and gives each run still
/// waiting behind it its check's answer.
///
/// The checks go in two chunks ([`StartCheck::may_start_together`]): the first
/// [`FIRST_CHUNK`] runs, which start while the opener checks all the others in one go.
/// One round of store calls for the rest keeps a store that answers over the network
/// or from disk to two rounds in all: with chunks that grew from 32 to 1,024, the
/// SQLite recurring benchmark's p99 got worse, its claims queueing behind the records
/// of the runs that had already started.
async fn open_at(clock: Arc<dyn Clock>, at: DateTime<Utc>, gates: Gates) {
    while clock.now() < at {
        clock.sleep_until(at).await;
    }
    // Out of the map first: a run arriving after this sees the time has come.
    let waiters = gates
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&at)
        .unwrap_or_default();
    let mut waiters = waiters.into_iter();
    let mut chunk = FIRST_CHUNK;
    loop {
        // Taken a chunk at a time: a run taken back meanwhile still leaves unchecked.
        let mut checks: Vec<Arc<dyn StartCheck>> = Vec::with_capacity(chunk.min(waiters.len()));
        let mut senders = Vec::with_capacity(chunk.min(waiters.len()));
        for waiter in waiters.by_ref() {
            // A run whose future was dropped (a shutdown) is not checked: a check
            // could claim a slot for a run that never starts. It is counted out of
            // `early` here, as nobody else will.
            let dropped = waiter.verdict.is_closed();
            let to = if dropped { GONE } else { TAKEN };
            if !Waiter::leave(&waiter.state, &waiter.early, to) || dropped {
                continue;
            }
            match waiter.check {
                // The run may be gone (a shutdown); nobody to tell.
                None => drop(waiter.verdict.send(Ok(()))),
                Some(check) => {
                    checks.push(check);
                    senders.push(waiter.verdict);
                    if checks.len() == chunk {
                        break;
                    }
                }
            }
        }
        let Some(first) = checks.first() else {
            break;
        };
        let mut answers = first.may_start_together(&checks).await.into_iter();
        for (check, sender) in checks.iter().zip(senders) {
            match answers.next().unwrap_or_else(|| StartAnswer::alone(check)) {
                StartAnswer::Now(verdict) => drop(sender.send(verdict)),
                StartAnswer::Later(rest) => {
                    tokio::spawn(answer_later(rest, sender));
                }
            }
        }
        chunk = usize::MAX;
    }
}

/// The rest of a check that has to wait, in a task of its own so that the opener goes
/// on with the other runs; it ends halfway when its run's future is dropped.
async fn answer_later(
    rest: futures_util::future::BoxFuture<'static, Result<(), String>>,
    mut sender: oneshot::Sender<Result<(), String>>,
) {
    tokio::select! {
        verdict = rest => drop(sender.send(verdict)),
        () = sender.closed() => {}
    }
}

/// How many runs' checks an opener makes first ([`open_at`]), before the rest.
const FIRST_CHUNK: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    fn instant() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("instant")
    }

    /// A check that says what it was built to say, after `hold` lets it go, and
    /// remembers how often it was asked and whether it was dropped halfway.
    struct Scripted {
        answer: Result<(), String>,
        hold: Option<Arc<tokio::sync::Semaphore>>,
        asked: AtomicUsize,
        finished: AtomicBool,
    }

    impl Scripted {
        fn new(answer: Result<(), String>) -> Arc<Scripted> {
            Scripted::answering(answer, None)
        }

        fn held(hold: &Arc<tokio::sync::Semaphore>) -> Arc<Scripted> {
            Scripted::answering(Ok(()), Some(Arc::clone(hold)))
        }

        fn answering(
            answer: Result<(), String>,
            hold: Option<Arc<tokio::sync::Semaphore>>,
        ) -> Arc<Scripted> {
            Arc::new(Scripted {
                answer,
                hold,
                asked: AtomicUsize::new(0),
                finished: AtomicBool::new(false),
            })
        }
    }

    #[async_trait]
    impl StartCheck for Scripted {
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }

        async fn may_start(&self) -> Result<(), String> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if let Some(hold) = &self.hold {
                let _ = hold.acquire().await;
            }
            self.finished.store(true, Ordering::SeqCst);
            self.answer.clone()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_due_together_wait_behind_one_gate_and_start_when_it_opens() {
        let start = instant();
        let manual = ManualClock::new(start);
        let clock: Arc<dyn Clock> = Arc::new(manual.clone());
        let gates = Arc::new(StartGates::default());
        let early = Arc::new(AtomicUsize::new(0));
        let due = start + chrono::TimeDelta::seconds(10);
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let (gates, clock, early) =
                    (Arc::clone(&gates), Arc::clone(&clock), Arc::clone(&early));
                early.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    gates
                        .wait(&clock, due, None, &Withdrawal::new(), &early)
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(gates.gates.lock().expect("lock").len(), 1, "one gate");
        assert!(waiters.iter().all(|waiter| !waiter.is_finished()));
        manual.set(due - chrono::TimeDelta::milliseconds(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(waiters.iter().all(|waiter| !waiter.is_finished()));
        assert_eq!(early.load(Ordering::SeqCst), 100, "all still early");
        manual.set(due);
        for waiter in waiters {
            let verdict = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("every waiter starts once the gate opens")
                .expect("no panic");
            assert_eq!(verdict, GateVerdict::Checked(Ok(())));
        }
        assert!(
            gates.gates.lock().expect("lock").is_empty(),
            "the gate is gone"
        );
        assert_eq!(early.load(Ordering::SeqCst), 0, "none early any more");
        // Later arrivals for a time that has come do not wait.
        early.fetch_add(1, Ordering::SeqCst);
        tokio::time::timeout(
            Duration::from_secs(1),
            gates.wait(&clock, due, None, &Withdrawal::new(), &early),
        )
        .await
        .expect("no wait for a time that has come");
        assert_eq!(early.load(Ordering::SeqCst), 0);
    }

    /// Checks that answer together: each chunk the opener hands over is noted, and
    /// each check's answer is its own `answer`.
    struct Together {
        answer: Result<(), String>,
        chunks: Arc<Mutex<Vec<usize>>>,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl StartCheck for Together {
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }

        async fn may_start(&self) -> Result<(), String> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.answer.clone()
        }

        async fn may_start_together(&self, checks: &[Arc<dyn StartCheck>]) -> Vec<StartAnswer> {
            self.chunks.lock().expect("lock").push(checks.len());
            checks
                .iter()
                .map(|check| match check.as_any().downcast_ref::<Together>() {
                    Some(together) => {
                        together.asked.fetch_add(1, Ordering::SeqCst);
                        StartAnswer::Now(together.answer.clone())
                    }
                    None => StartAnswer::alone(check),
                })
                .collect()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_opener_checks_a_first_few_runs_then_the_rest_together_and_each_gets_its_own_answer(
    ) {
        let start = instant();
        let manual = ManualClock::new(start);
        let clock: Arc<dyn Clock> = Arc::new(manual.clone());
        let gates = Arc::new(StartGates::default());
        let early = Arc::new(AtomicUsize::new(0));
        let due = start + chrono::TimeDelta::seconds(1);
        let chunks = Arc::new(Mutex::new(Vec::new()));
        // One check of another kind among them is made on its own.
        let alone = Scripted::new(Err("refused alone".to_owned()));
        let checks: Vec<Arc<dyn StartCheck>> = (0..3000)
            .map(|index| -> Arc<dyn StartCheck> {
                if index == 1234 {
                    return Arc::clone(&alone) as Arc<dyn StartCheck>;
                }
                Arc::new(Together {
                    answer: if index % 7 == 0 {
                        Err(format!("refused {index}"))
                    } else {
                        Ok(())
                    },
                    chunks: Arc::clone(&chunks),
                    asked: AtomicUsize::new(0),
                })
            })
            .collect();
        let mut waiters = Vec::new();
        for check in &checks {
            let (gates, clock, early, check) = (
                Arc::clone(&gates),
                Arc::clone(&clock),
                Arc::clone(&early),
                Arc::clone(check),
            );
            early.fetch_add(1, Ordering::SeqCst);
            waiters.push(tokio::spawn(async move {
                gates
                    .wait(&clock, due, Some(&check), &Withdrawal::new(), &early)
                    .await
            }));
            // In the order they arrived (the chunks' sizes are asserted below).
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            chunks.lock().expect("lock").is_empty(),
            "nothing checked early"
        );
        manual.set(due);
        for (index, waiter) in waiters.into_iter().enumerate() {
            let verdict = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("each run gets its verdict")
                .expect("no panic");
            let expected = if index == 1234 {
                Err("refused alone".to_owned())
            } else if index % 7 == 0 {
                Err(format!("refused {index}"))
            } else {
                Ok(())
            };
            assert_eq!(verdict, GateVerdict::Checked(expected), "run {index}");
        }
        assert_eq!(alone.asked.load(Ordering::SeqCst), 1);
        for check in &checks {
            if let Some(together) = check.as_any().downcast_ref::<Together>() {
                assert_eq!(together.asked.load(Ordering::SeqCst), 1, "asked once");
            }
        }
        let chunks = chunks.lock().expect("lock").clone();
        assert_eq!(
            chunks,
            [FIRST_CHUNK, 3000 - FIRST_CHUNK],
            "the first few, then the rest"
        );
        assert_eq!(early.load(Ordering::SeqCst), 0);
    }

    /// One gate's set-up: a manual clock, the gates, the `early` count, and the due
    /// time one second after the start.
    struct Setup {
        manual: ManualClock,
        clock: Arc<dyn Clock>,
        gates: Arc<StartGates>,
        early: Arc<AtomicUsize>,
        due: DateTime<Utc>,
    }

    impl Setup {
        fn new() -> Setup {
            let manual = ManualClock::new(instant());
            Setup {
                clock: Arc::new(manual.clone()),
                manual,
                gates: Arc::new(StartGates::default()),
                early: Arc::new(AtomicUsize::new(0)),
                due: instant() + chrono::TimeDelta::seconds(1),
            }
        }

        /// A run that waits behind the gate with `check`, counted early.
        fn waiter(
            &self,
            check: &Arc<Scripted>,
            withdrawal: &Withdrawal,
        ) -> tokio::task::JoinHandle<GateVerdict> {
            let (gates, clock, early, withdrawal, due) = (
                Arc::clone(&self.gates),
                Arc::clone(&self.clock),
                Arc::clone(&self.early),
                withdrawal.clone(),
                self.due,
            );
            let check: Arc<dyn StartCheck> = Arc::clone(check) as Arc<dyn StartCheck>;
            early.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                gates
                    .wait(&clock, due, Some(&check), &withdrawal, &early)
                    .await
            })
        }

        /// Opens the gate (after its waiters have had time to arrive).
        async fn open(&self) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.manual.set(self.due);
        }

        fn early(&self) -> usize {
            self.early.load(Ordering::SeqCst)
        }
    }

    /// Waits until the opener has asked `check`.
    async fn asked(check: &Scripted) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while check.asked.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the opener asks");
    }

    /// `waiter`'s verdict, within five seconds.
    async fn verdict(waiter: tokio::task::JoinHandle<GateVerdict>) -> GateVerdict {
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a verdict comes")
            .expect("no panic")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_taken_back_before_its_time_leaves_at_once_and_is_never_checked() {
        let setup = Setup::new();
        let (taken_back, stays) = (Scripted::new(Ok(())), Scripted::new(Ok(())));
        let withdrawal = Withdrawal::new();
        let first = setup.waiter(&taken_back, &withdrawal);
        let second = setup.waiter(&stays, &Withdrawal::new());
        tokio::time::sleep(Duration::from_millis(50)).await;
        withdrawal.withdraw();
        assert_eq!(
            verdict(first).await,
            GateVerdict::Withdrawn,
            "leaves before its time"
        );
        assert_eq!(setup.early(), 1, "counted out as it left");
        setup.open().await;
        assert_eq!(verdict(second).await, GateVerdict::Checked(Ok(())));
        assert_eq!(taken_back.asked.load(Ordering::SeqCst), 0, "never checked");
        assert_eq!(setup.early(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_taken_back_while_its_check_goes_waits_for_the_verdict() {
        let setup = Setup::new();
        let hold = Arc::new(tokio::sync::Semaphore::new(0));
        let check = Scripted::held(&hold);
        let withdrawal = Withdrawal::new();
        let waiter = setup.waiter(&check, &withdrawal);
        setup.open().await;
        asked(&check).await;
        withdrawal.withdraw();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "a check under way is not cut off: it may have claimed a slot"
        );
        hold.add_permits(1);
        assert_eq!(verdict(waiter).await, GateVerdict::Checked(Ok(())));
        assert!(check.finished.load(Ordering::SeqCst));
        assert_eq!(setup.early(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_dropped_before_its_time_is_never_checked_and_is_counted_out() {
        let setup = Setup::new();
        let (dropped, stays) = (Scripted::new(Ok(())), Scripted::new(Ok(())));
        let gone = setup.waiter(&dropped, &Withdrawal::new());
        let other = setup.waiter(&stays, &Withdrawal::new());
        tokio::time::sleep(Duration::from_millis(50)).await;
        gone.abort();
        let _ = gone.await;
        setup.open().await;
        assert_eq!(verdict(other).await, GateVerdict::Checked(Ok(())));
        assert_eq!(dropped.asked.load(Ordering::SeqCst), 0, "never checked");
        assert_eq!(setup.early(), 0, "counted out as the gate opened");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_whose_future_is_dropped_ends_its_check_with_it() {
        let setup = Setup::new();
        let hold = Arc::new(tokio::sync::Semaphore::new(0));
        // A check of its kind is made on its own (the default `may_start_together`),
        // in a task of its own, while its run is dropped.
        let check = Scripted::held(&hold);
        let waiter = setup.waiter(&check, &Withdrawal::new());
        setup.open().await;
        asked(&check).await;
        waiter.abort();
        let _ = waiter.await;
        tokio::time::timeout(Duration::from_secs(5), async {
            // The check's future holds the only other reference once it is dropped.
            while Arc::strong_count(&check) > 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the check is dropped with its run");
        assert!(!check.finished.load(Ordering::SeqCst), "ended halfway");
        assert_eq!(setup.early(), 0);
    }
}
